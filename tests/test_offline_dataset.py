"""Per-environment datasets: collection, merging, save/load and its failure modes."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax.offline.linear import dataset as ds
from zsgjax.offline.linear import mdp as lm

S, A, H = 4, 2, 3


@pytest.fixture(scope="module")
def setup():
    fam = lm.random_contextual_mdp(jax.random.PRNGKey(0), S, A, H, num_bases=2, dim=3)
    contexts = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    data = ds.collect_dataset(jax.random.PRNGKey(1), fam, contexts, ds.uniform_policy(H, S, A), 400, context_ids=[7, 8, 9])
    return fam, contexts, data


def test_collected_data_follow_the_mdp(setup):
    fam, contexts, data = setup
    assert data.states.shape == (3, 400, H) and data.contexts.shape == (3, 2)
    np.testing.assert_array_equal(np.asarray(data.context_ids), [7, 8, 9])
    np.testing.assert_array_equal(np.asarray(data.next_states[:, :, :-1]), np.asarray(data.states[:, :, 1:]))
    assert set(np.unique(np.asarray(data.rewards))) <= {0.0, 1.0}
    # empirical next-state frequencies of env 0 against its transition matrix
    P = np.asarray(fam.at(contexts[0]).transitions)
    x, a, xn = (np.asarray(v[0]).ravel() for v in (data.states, data.actions, data.next_states))
    counts = np.zeros((S, A, S))
    np.add.at(counts, (x, a, xn), 1)
    n_sa = counts.sum(-1, keepdims=True)
    seen = n_sa[..., 0] >= 60
    assert seen.sum() >= 4
    np.testing.assert_allclose((counts / np.maximum(n_sa, 1))[seen], P[seen], atol=0.2)


def test_poor_coverage_follows_the_anchor(setup):
    fam, contexts, _ = setup
    anchor = jax.nn.one_hot(jnp.zeros((H, S), jnp.int32), A)
    data = ds.collect_dataset(jax.random.PRNGKey(2), fam, contexts, ds.behaviour_policy(anchor, 0.0), 400)
    assert np.all(np.asarray(data.actions) == 0)
    with pytest.raises(ValueError, match="coverage"):
        ds.behaviour_policy(anchor, 1.5)
    with pytest.raises(ValueError, match="behaviour"):
        ds.collect_dataset(jax.random.PRNGKey(2), fam, contexts, anchor[:, :2], 10)
    with pytest.raises(ValueError, match="num_episodes"):
        ds.collect_dataset(jax.random.PRNGKey(2), fam, contexts, anchor, 0)
    with pytest.raises(ValueError, match="context_ids"):
        ds.collect_dataset(jax.random.PRNGKey(2), fam, contexts, anchor, 10, context_ids=[1, 2])


def test_merge_and_subset(setup):
    _, _, data = setup
    merged = ds.merge_environments(data)
    assert merged.states.shape == (1, 1200, H)
    assert int(merged.context_ids[0]) == -1 and np.all(np.isnan(np.asarray(merged.contexts)))
    np.testing.assert_array_equal(np.asarray(merged.rewards[0, 400:800]), np.asarray(data.rewards[1]))
    sub = data.subset(2, 50)
    assert sub.states.shape == (2, 50, H) and sub.contexts.shape == (2, 2)
    with pytest.raises(ValueError, match="num_envs"):
        data.subset(4)


def test_save_load_roundtrip(setup, tmp_path):
    fam, _, data = setup
    path = tmp_path / "data.npz"
    ds.save_dataset(path, data)
    back = ds.load_dataset(path, num_states=S, num_actions=A, horizon=H)
    for name in ("states", "actions", "rewards", "next_states", "context_ids", "contexts"):
        np.testing.assert_array_equal(np.asarray(getattr(back, name)), np.asarray(getattr(data, name)))
    assert (back.num_states, back.num_actions) == (S, A)
    ds.check_compatible(back, fam)
    assert os.listdir(tmp_path) == ["data.npz"]


def test_corrupt_and_mismatched_files(setup, tmp_path):
    _, _, data = setup
    good = tmp_path / "good.npz"
    ds.save_dataset(good, data)
    raw = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    for name in ("trunc.npz", "junk.npz"):
        with pytest.raises(ValueError, match="not a readable"):
            ds.load_dataset(tmp_path / name)
    with pytest.raises(ValueError, match="is not a file"):
        ds.load_dataset(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="num_states"):
        ds.load_dataset(good, num_states=S + 1)
    with pytest.raises(ValueError, match="horizon"):
        ds.load_dataset(good, horizon=H + 1)
    with np.load(good) as z:
        fields = {k: z[k] for k in z.files}
    for change, match in (
        ({"format_version": np.asarray(99)}, "format_version"),
        ({"format_name": np.asarray("something.else")}, "format_name"),
        ({"states": fields["states"][:, :5]}, "states"),
        ({"actions": np.full_like(fields["actions"], A)}, "actions"),
        ({"rewards": np.full_like(fields["rewards"], np.nan)}, "rewards"),
    ):
        bad = tmp_path / "bad.npz"
        np.savez(bad, **{**fields, **change})
        with pytest.raises(ValueError, match=match):
            ds.load_dataset(bad)
    np.savez(tmp_path / "partial.npz", states=fields["states"])
    with pytest.raises(ValueError, match="lacks fields"):
        ds.load_dataset(tmp_path / "partial.npz")
    fam_other = lm.random_contextual_mdp(jax.random.PRNGKey(0), S + 1, A, H, num_bases=2, dim=3)
    with pytest.raises(ValueError, match="does not match"):
        ds.check_compatible(data, fam_other)


def test_failed_write_leaves_no_partial_file(setup, tmp_path, monkeypatch):
    _, _, data = setup
    path = tmp_path / "data.npz"
    ds.save_dataset(path, data)
    before = path.read_bytes()

    def exploding_savez(f, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(ds.np, "savez", exploding_savez)
    with pytest.raises(OSError, match="disk full"):
        ds.save_dataset(path, data.subset(1))
    assert path.read_bytes() == before
    with pytest.raises(OSError):
        ds.save_dataset(tmp_path / "new.npz", data)
    assert sorted(os.listdir(tmp_path)) == ["data.npz"]


def test_load_refuses_bad_contexts_and_plain_npy(setup, tmp_path):
    """Before: NaN or off-simplex contexts loaded silently, and a plain .npy raised a TypeError."""
    _, _, data = setup
    good = tmp_path / "good.npz"
    ds.save_dataset(good, data)
    with np.load(good) as z:
        fields = {k: z[k] for k in z.files}
    for contexts, match in (
        (fields["contexts"].copy(), None),
        (np.where(np.arange(3)[:, None] == 1, np.nan, fields["contexts"]), r"row 1 is not finite"),
        (fields["contexts"] * 2.0, r"row 0 = \[2.0, 0.0\] is off the probability simplex"),
        (np.array([[1.5, -0.5], [0.0, 1.0], [0.5, 0.5]]), r"row 0 = \[1.5, -0.5\] is off the probability simplex"),
    ):
        bad = tmp_path / "ctx.npz"
        np.savez(bad, **{**fields, "contexts": contexts.astype(np.float32)})
        if match is None:
            np.testing.assert_array_equal(np.asarray(ds.load_dataset(bad).contexts), fields["contexts"])
            continue
        with pytest.raises(ValueError, match=f"load_dataset: '{bad}' field `contexts` {match}"):
            ds.load_dataset(bad)
    merged = tmp_path / "merged.npz"
    ds.save_dataset(merged, ds.merge_environments(data))  # id -1 with NaN contexts: the merged baseline's data
    assert np.isnan(np.asarray(ds.load_dataset(merged).contexts)).all()
    npy = tmp_path / "plain.npy"
    np.save(npy, fields["states"])
    with pytest.raises(ValueError, match=rf"load_dataset: '{npy}' holds a single \(3, 400, 3\) array \(a plain .npy "
                                         r"file\); expected a zsgjax.offline.dataset .npz archive"):
        ds.load_dataset(npy)


def test_unwritable_target_is_named(setup, tmp_path, monkeypatch):
    """Before: the error named only the temporary file (``.d.npz.xxxx.tmp``) that could not be created."""
    import errno

    from zsgjax.reporting import files

    _, _, data = setup
    target = tmp_path / "locked" / "d.npz"

    def denied(prefix, suffix, dir):  # what mkstemp raises in a directory without write permission
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, f"{prefix}abc{suffix}"))

    monkeypatch.setattr(files.tempfile, "mkstemp", denied)
    with pytest.raises(PermissionError, match=rf"cannot write '{target}': Permission denied \(temporary file "):
        ds.save_dataset(target, data)
