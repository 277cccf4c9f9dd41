"""Offline datasets from continuous-control contextual envs: collection, storage, Minari.

References: a plain Python loop over one environment with ``env.reset``/``env.step``
(episode boundaries, time limits, terminal vs truncated), NumPy dynamics of
simple_direction, and exact round trips through the ``.npz`` file and Minari.
"""

import json
import re
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax.envs import registry
from zsgjax.envs.base import ContextualEnv
from zsgjax.envs.context import ContextSpace
from zsgjax.offline.control import minari_io, storage
from zsgjax.offline.control.behaviour import QUALITY_LEVELS, Behaviour, env_action_scale, quality_preset
from zsgjax.offline.control.collect import collect, uniform_contexts
from zsgjax.offline.control.transitions import FIELDS, check_transitions

WALK = "test_offline_walk1d"


class Walk1D(ContextualEnv):
    """``s' = s + clip(a, -1, 1) + c``, ``r = -|s'|``, terminates when ``|s'| > 1.2``; horizon 4."""

    context_space = ContextSpace(("drift",), low=(-0.5,), high=(0.5,), default=(0.0,))
    horizon = 4
    state_obs_size = 1

    @property
    def action_size(self):
        return 1

    def init_env_state(self, rng, context):
        return jax.random.uniform(rng, (1,), minval=-0.5, maxval=0.5)

    def observe(self, env_state, context):
        return env_state

    def env_step(self, env_state, action, context):
        s = env_state + jnp.clip(action, -1.0, 1.0) + context
        return s, s, -jnp.abs(s[0]), jnp.abs(s[0]) > 1.2


@pytest.fixture(scope="module")
def walk_env():
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry._REGISTRY, WALK, Walk1D)
        yield WALK


@pytest.fixture(scope="module")
def walk_data(walk_env):
    contexts = np.array([[-0.4], [0.0], [0.45]], np.float32)
    return collect(jax.random.PRNGKey(3), walk_env, contexts, quality_preset("random"), 24, streams=2)


def _context_policy(params, obs, rng):
    """simple_direction: act along the context (the last two entries of the agent observation)."""
    return params * obs[-2:]


@pytest.fixture(scope="module")
def direction_data():
    contexts = np.array([[0.5, -0.25], [-0.75, 0.5], [0.25, 0.125], [1.0, -1.0]], np.float32)
    behaviour = Behaviour(policy_fn=_context_policy, params=jnp.float32(0.5), noise_std=0.0, policy_prob=0.5,
                          label="mixed")
    return collect(jax.random.PRNGKey(5), "simple_direction", contexts, behaviour, 40, streams=1)


# ------------------------------------------------------------------ collection
def test_collection_matches_python_loop(walk_data):
    """Shapes, dynamics, auto-reset, terminal vs truncated: against env.reset / env.step in a Python loop."""
    data, info = walk_data
    env = Walk1D()
    assert (data.num_envs, data.num_transitions, data.obs_dim, data.action_dim, data.context_dim) == (3, 24, 1, 1, 1)
    assert data.reward.shape == data.terminal.shape == data.truncated.shape == (3, 24)
    assert data.terminal.dtype == jnp.bool_ and data.obs.dtype == jnp.float32
    assert info.env == WALK and info.horizon == 4 and info.context_names == ("drift",)
    assert info.behaviour["kind"] == "random" and info.behaviour["action_scale"] == 1.0
    obs, act, rew, nxt, term, trunc = (np.asarray(getattr(data, f)) for f in FIELDS[:6])
    assert np.all(np.abs(act) <= 1.0)
    streams, T = 2, 12
    n_term = n_limit = 0
    for i in range(3):
        ctx = jnp.asarray(data.contexts[i])
        for b in range(streams):
            rows = range(b * T, (b + 1) * T)
            new_episode, steps = True, 0
            for t in rows:
                if new_episode:
                    assert -0.5 <= obs[i, t, 0] <= 0.5  # a fresh initial state
                    state = env.reset(jax.random.PRNGKey(0), ctx)
                    s0 = jnp.asarray(obs[i, t])
                    state = state.replace(pipeline_state=s0, obs=env.make_obs(s0, ctx))
                    steps = 0
                else:
                    np.testing.assert_array_equal(obs[i, t], nxt[i, t - 1])
                state = env.step(state, jnp.asarray(act[i, t]))
                steps += 1
                np.testing.assert_allclose(nxt[i, t], np.asarray(state.obs)[:1], atol=1e-6)
                np.testing.assert_allclose(rew[i, t], float(state.reward), atol=1e-6)
                done = bool(state.done)
                assert term[i, t] == done, (i, t)
                limit = steps >= env.horizon
                assert trunc[i, t] == (not done and (limit or t == rows[-1])), (i, t)
                n_term += done
                n_limit += (not done) and limit
                new_episode = done or limit
    assert n_term >= 1 and n_limit >= 1  # both kinds of episode end occur in this data


def test_collection_is_deterministic(walk_env, walk_data):
    data, _ = walk_data
    contexts = np.asarray(data.contexts)
    again, _ = collect(jax.random.PRNGKey(3), walk_env, contexts, quality_preset("random"), 24, streams=2)
    other, _ = collect(jax.random.PRNGKey(4), walk_env, contexts, quality_preset("random"), 24, streams=2)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(again, f), getattr(data, f))
    assert not np.array_equal(other.action, data.action)


def test_obs_without_context_and_mixture(direction_data):
    """simple_direction: obs is the state only, the policy sees the context, episodes follow one behaviour."""
    data, info = direction_data
    c = np.asarray(data.contexts)
    obs, act, rew, nxt = (np.asarray(getattr(data, f)) for f in ("obs", "action", "reward", "next_obs"))
    assert obs.shape == (4, 40, 2) and act.shape == (4, 40, 2)
    ref_next = obs + np.clip(act, -1, 1) + c[:, None, :]  # NumPy reference dynamics
    np.testing.assert_allclose(nxt, ref_next, atol=1e-5)
    np.testing.assert_allclose(rew, np.sum(ref_next * c[:, None, :], -1), atol=1e-5)
    assert not np.asarray(data.terminal).any() and np.asarray(data.truncated).sum() == 4 * 4  # horizon 10
    kinds = []
    for i in range(4):
        for s, e in minari_io.episode_slices(data.terminal[i], data.truncated[i]):
            follows = np.allclose(act[i, s:e], 0.5 * c[i], atol=1e-6)
            assert follows or not np.any(np.all(np.isclose(act[i, s:e], 0.5 * c[i], atol=1e-6), -1))
            kinds.append(follows)
    assert any(kinds) and not all(kinds)  # policy_prob 0.5: both kinds of episode
    assert info.behaviour == {"kind": "mixture", "label": "mixed", "noise_std": 0.0, "policy_prob": 0.5,
                              "action_scale": 1.0, "source": ""}


def test_uniform_contexts_inside_box():
    c = uniform_contexts(jax.random.PRNGKey(0), "pendulum_goal", 64, low=(1.0, 0.5, 0.5, -0.5),
                         high=(2.0, 1.0, 1.0, 0.5))
    assert c.shape == (64, 4) and c.dtype == np.float32
    assert np.all(c >= [1.0, 0.5, 0.5, -0.5]) and np.all(c <= [2.0, 1.0, 1.0, 0.5])
    full = uniform_contexts(jax.random.PRNGKey(0), "simple_direction", 8)
    assert np.all(np.abs(full) <= 1.0) and len(np.unique(full[:, 0])) == 8
    with pytest.raises(ValueError, match=r"`high` dimension 'g' = 9 is outside its range \[0.5, 5\]"):
        uniform_contexts(jax.random.PRNGKey(0), "pendulum_goal", 4, high=(9.0, 1.0, 1.0, 0.0))
    with pytest.raises(ValueError, match="dimension 'c_x' has `low` 0.5 > `high` 0.1"):
        uniform_contexts(jax.random.PRNGKey(0), "simple_direction", 4, low=0.5, high=0.1)
    with pytest.raises(ValueError, match="`num_envs` must be an integer >= 1"):
        uniform_contexts(jax.random.PRNGKey(0), "simple_direction", 0)


def test_quality_presets():
    assert set(QUALITY_LEVELS) == {"random", "medium", "expert", "mixed"}
    assert env_action_scale("pendulum_goal") == 2.0 and env_action_scale("simple_direction") == 1.0
    assert quality_preset("random").describe("pendulum_goal") == {
        "kind": "random", "label": "random", "noise_std": 0.0, "policy_prob": 0.0, "action_scale": 2.0, "source": ""}
    expert = quality_preset("expert", _context_policy, 1.0, source="ckpt")
    assert expert.kind == "policy" and expert.noise_std == 0.1 and expert.source == "ckpt"
    assert quality_preset("mixed", _context_policy).kind == "mixture"
    assert quality_preset("medium", _context_policy).noise_std == 0.3
    with pytest.raises(ValueError, match="`level` must be one of random, medium, expert, mixed"):
        quality_preset("replay")
    with pytest.raises(ValueError, match="level 'expert' follows a policy: give `policy_fn`"):
        quality_preset("expert")
    with pytest.raises(ValueError, match=r"Behaviour.policy_prob must be a finite number in \[0, 1\]"):
        Behaviour(policy_fn=_context_policy, policy_prob=1.5).validate()
    with pytest.raises(ValueError, match="Behaviour.noise_std must be a finite number >= 0"):
        Behaviour(noise_std=-0.1).validate()


def test_collect_bad_input(walk_env):
    rnd = quality_preset("random")
    key = jax.random.PRNGKey(0)
    ok = np.zeros((2, 1), np.float32)
    with pytest.raises(ValueError, match=r"`contexts` must hold n >= 1 contexts, got shape \(0, 1\)"):
        collect(key, walk_env, np.zeros((0, 1)), rnd, 8)
    with pytest.raises(ValueError, match="`num_transitions` must be an integer >= 1, got 0"):
        collect(key, walk_env, ok, rnd, 0)
    with pytest.raises(ValueError, match=r"`contexts` dimension 'drift' = 0.7 is outside its range \[-0.5, 0.5\]"):
        collect(key, walk_env, [[0.0], [0.7]], rnd, 8)
    with pytest.raises(ValueError, match=r"`contexts` must have shape \(n, 1\) \(drift\)"):
        collect(key, walk_env, [0.0, 0.1], rnd, 8)
    with pytest.raises(ValueError, match="`env`: unknown environment 'no_such_env'; known environments: .*pendulum"):
        collect(key, "no_such_env", ok, rnd, 8)
    with pytest.raises(ValueError, match="`env` 'cart_goal' has discrete actions"):
        collect(key, "cart_goal", np.zeros((1, 5)), rnd, 8)
    with pytest.raises(ValueError, match=r"`num_transitions` \(9\) must be a multiple of `streams` \(2\)"):
        collect(key, walk_env, ok, rnd, 9, streams=2)
    bad_policy = Behaviour(policy_fn=lambda p, o, k: jnp.zeros((3,)), label="bad")
    with pytest.raises(ValueError, match=r"`behaviour.policy_fn` must return one float action of shape \(1,\) for an "
                                         r"observation of shape \(2,\), got shape \(3,\)"):
        collect(key, walk_env, ok, bad_policy, 8)
    with pytest.raises(ValueError, match="`behaviour` must be a Behaviour"):
        collect(key, walk_env, ok, "random", 8)


def test_check_transitions_and_subset(walk_data):
    data, _ = walk_data
    with pytest.raises(ValueError, match=r"`data.reward` must be finite, got 1 non-finite value\(s\)"):
        check_transitions(data.replace(reward=data.reward.at[1, 2].set(jnp.nan)))
    with pytest.raises(ValueError, match=r"`data.action` must have shape \(3, 24, \*\), got \(2, 24, 1\)"):
        check_transitions(data.replace(action=data.action[:2]))
    with pytest.raises(ValueError, match=r"`data.next_obs` must have shape \(3, 24, 1\), got \(3, 23, 1\)"):
        check_transitions(data.replace(next_obs=data.next_obs[:, :23]))
    with pytest.raises(ValueError, match=r"`data` must have N \(transitions per environment\) >= 1, got 0"):
        check_transitions(jax.tree.map(lambda x: x[:, :0] if x.ndim > 2 or x.shape == (3, 24) else x, data))
    with pytest.raises(ValueError, match="both `terminal` and `truncated`"):
        check_transitions(data.replace(terminal=data.truncated))
    sub = data.subset(num_envs=2, num_transitions=7)
    assert sub.obs.shape == (2, 7, 1) and sub.contexts.shape == (2, 1)
    assert np.all(np.asarray(sub.episode_ends()[:, -1]))
    merged = data.merge()
    assert merged.obs.shape == (1, 72, 1) and merged.contexts.shape == (1, 1)
    with pytest.raises(ValueError, match=r"`num_envs` must be an integer in \[1, 3\], got 4"):
        data.subset(num_envs=4)


# --------------------------------------------------------------------- storage
def _member_data_offset(path, member):
    """Byte offset of the first data byte of ``member``'s ``.npy`` payload inside the zip."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member + ".npy")
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), "<u2")
    return info.header_offset + 30 + int(name_len) + int(extra_len) + 128  # past the .npy header


def _rewrite(path, change):
    """Rewrite ``path`` with ``change(arrays)`` applied and the original header kept."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_save_load_roundtrip(tmp_path, walk_data):
    data, info = walk_data
    path = storage.save(tmp_path / "walk.npz", data, info)
    back, info2 = storage.load(path)
    assert info2 == info
    for f in FIELDS:
        got, want = np.asarray(getattr(back, f)), np.asarray(getattr(data, f))
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    with np.load(path) as z:
        header = json.loads(str(z["header"]))
    assert header["format_name"] == storage.FORMAT_NAME and header["format_version"] == storage.FORMAT_VERSION
    assert header["info"]["env"] == WALK and header["fields"]["obs"]["shape"] == [3, 24, 1]
    assert [p.name for p in tmp_path.iterdir()] == ["walk.npz"]  # no temporary file left
    with pytest.raises(ValueError, match=r"`data.reward` must be finite"):
        storage.save(tmp_path / "nan.npz", data.replace(reward=data.reward.at[0, 0].set(jnp.nan)), info)
    assert not (tmp_path / "nan.npz").exists()


def test_load_rejects_corruption(tmp_path, walk_data):
    data, info = walk_data
    good = storage.save(tmp_path / "good.npz", data, info)
    raw = open(good, "rb").read()

    def variant(name, content):
        p = tmp_path / name
        p.write_bytes(content)
        return p

    flipped = bytearray(raw)
    flipped[_member_data_offset(good, "reward") + 5] ^= 0xFF
    with pytest.raises(ValueError, match="field `reward` is unreadable"):
        storage.load(variant("flip.npz", bytes(flipped)))
    cut = _member_data_offset(good, "next_obs") + 8
    with pytest.raises(ValueError, match="truncated inside field `next_obs`"):
        storage.load(variant("cut.npz", raw[:cut]))
    with pytest.raises(ValueError, match="not a readable"):
        storage.load(variant("empty.npz", b""))

    def bump_version(a):
        h = json.loads(str(a["header"]))
        h["format_version"] = 99
        a["header"] = np.asarray(json.dumps(h))

    p = variant("v99.npz", raw)
    _rewrite(p, bump_version)
    with pytest.raises(ValueError, match="header field `format_version` is 99; this zsgjax reads version 1"):
        storage.load(p)
    p = variant("nan.npz", raw)
    _rewrite(p, lambda a: a["reward"].__setitem__((1, 3), np.nan))
    with pytest.raises(ValueError, match=r"field `reward` has 1 non-finite value\(s\)"):
        storage.load(p)
    p = variant("changed.npz", raw)
    _rewrite(p, lambda a: a["action"].__setitem__((0, 0, 0), 0.123))
    with pytest.raises(ValueError, match="field `action` does not match its stored checksum"):
        storage.load(p)
    p = variant("dtype.npz", raw)
    _rewrite(p, lambda a: a.__setitem__("obs", a["obs"].astype(np.float64)))
    with pytest.raises(ValueError, match="field `obs` has dtype float64"):
        storage.load(p)
    p = variant("shape.npz", raw)
    _rewrite(p, lambda a: a.__setitem__("terminal", a["terminal"][:, :5]))
    with pytest.raises(ValueError, match=r"field `terminal` has shape \(3, 5\); the header's sizes give \(3, 24\)"):
        storage.load(p)
    p = variant("missing.npz", raw)
    _rewrite(p, lambda a: a.pop("truncated"))
    with pytest.raises(ValueError, match="field `truncated` is missing"):
        storage.load(p)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(ValueError, match="field `header` is missing"):
        storage.load(foreign)
    with pytest.raises(ValueError, match="is not a file"):
        storage.load(tmp_path / "absent.npz")


# ---------------------------------------------------------------------- Minari
def test_minari_roundtrip(tmp_path, walk_data, monkeypatch):
    import minari

    data, info = walk_data
    root = tmp_path / "minari"
    ids = minari_io.to_minari(data, info, root, "zsgjax/walk-random")
    assert ids == [f"zsgjax/walk-random/env-{i:05d}-v0" for i in range(3)]
    back, info2 = minari_io.from_minari(root, "zsgjax/walk-random")
    assert info2 == info
    for f in FIELDS:
        np.testing.assert_array_equal(np.asarray(getattr(back, f)), np.asarray(getattr(data, f)))
        assert getattr(back, f).dtype == getattr(data, f).dtype
    # the standard Minari API reads the same files (no network: local load only)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    assert sorted(minari.list_local_datasets()) == ids
    ds = minari.load_dataset(ids[2])
    ends = np.asarray(data.episode_ends()[2])
    assert ds.total_steps == 24 and ds.total_episodes == int(ends.sum())
    ep = ds[0]
    k = int(np.argmax(ends)) + 1
    np.testing.assert_array_equal(ep.observations, np.concatenate([data.obs[2, :k], data.next_obs[2, k - 1:k]]))
    assert ds.storage.metadata["zsgjax"]["context"] == [float(data.contexts[2, 0])]
    np.testing.assert_array_equal(ep.infos["context"], np.full((len(ep.observations), 1), data.contexts[2, 0]))
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # the temporary root is gone
    with pytest.raises(ValueError, match="`name` 'zsgjax/walk-random' exists already"):
        minari_io.to_minari(data, info, root, "zsgjax/walk-random")
    with pytest.raises(ValueError, match="no Minari dataset 'other/env-00000-v0'"):
        minari_io.from_minari(root, "other")
    with pytest.raises(ValueError, match="`name` must be a Minari namespace"):
        minari_io.to_minari(data, info, root, "bad name!")
    broken = data.replace(next_obs=data.next_obs.at[1, 0, 0].add(1.0))
    first_end = int(np.argmax(np.asarray(data.episode_ends()[1])))
    if first_end > 0:  # transition 0 of env 1 does not end an episode: the sequence breaks there
        with pytest.raises(ValueError, match="environment 1, transition 0: `next_obs` differs"):
            minari_io.to_minari(broken, info, root, "zsgjax/broken")
        assert not (root / "zsgjax" / "broken").exists()


def test_minari_refuses_rotten_files(tmp_path, walk_data):
    """Before: a flipped byte loaded a wrong reward, an edited num_envs dropped an environment, and
    deleted / truncated files gave h5py's errors without the file's name."""
    import shutil

    data, info = walk_data
    good = tmp_path / "good"
    minari_io.to_minari(data, info, good, "zsgjax/walk")
    env1 = "zsgjax/walk/env-00001-v0"

    def variant(change):
        root = tmp_path / f"v{len(list(tmp_path.iterdir()))}"
        shutil.copytree(good, root)
        change(root / env1 / "data")
        return root

    def flip_reward(folder):
        path = folder / "main_data.hdf5"
        raw = bytearray(path.read_bytes())
        raw[raw.index(np.asarray(data.reward[1, :3]).tobytes()) + 2] ^= 0x40
        path.write_bytes(bytes(raw))

    def edit_metadata(key, value):
        def change(folder):
            meta = json.loads((folder / "metadata.json").read_text())
            meta["zsgjax"][key] = value
            (folder / "metadata.json").write_text(json.dumps(meta))
        return change

    def truncate(folder):
        path = folder / "main_data.hdf5"
        path.write_bytes(path.read_bytes()[:2000])

    data_file = re.escape(f"'{tmp_path}/") + r"v\d+/" + re.escape(f"{env1}/data/main_data.hdf5'")
    meta_file = re.escape(f"'{tmp_path}/") + r"v\d+/" + re.escape(f"{env1}/data/metadata.json'")
    for change, match in (
        (flip_reward, rf"the data in {data_file} do not match the digest stored in its metadata"),
        (truncate, rf"cannot read the episodes in {data_file} \(OSError: .*truncated file"),
        (lambda folder: (folder / "main_data.hdf5").unlink(), rf"file {data_file} is missing"),
        (edit_metadata("num_envs", 2), rf"\({meta_file}\): its 'zsgjax' metadata do not match their digest"),
        (edit_metadata("context", [0.3]), rf"\({meta_file}\): its 'zsgjax' metadata do not match their digest"),
        (lambda folder: (folder / "metadata.json").write_text("{"), rf"cannot read {meta_file}"),
    ):
        with pytest.raises(ValueError, match=rf"from_minari: '{env1}'.*{match}"):
            minari_io.from_minari(variant(change), "zsgjax/walk")
    def other_context(folder):
        import h5py

        with h5py.File(folder / "main_data.hdf5", "r+") as f:
            f["episode_0/infos/context"][0] = 0.25

    with pytest.raises(ValueError, match=rf"from_minari: '{env1}': episode 0 in {data_file} has `infos\['context'\]`"):
        minari_io.from_minari(variant(other_context), "zsgjax/walk")
    # an edited num_envs with a recomputed record digest still cannot drop an environment silently
    def fewer(folder):
        meta = json.loads((folder / "metadata.json").read_text())
        record = {**meta["zsgjax"], "num_envs": 2}
        meta["zsgjax"] = {**record, "record_digest": minari_io.record_digest(record)}
        (folder / "metadata.json").write_text(json.dumps(meta))

    root = tmp_path / "fewer"
    shutil.copytree(good, root)
    fewer(root / "zsgjax/walk/env-00000-v0/data")
    with pytest.raises(ValueError, match=r"env-00001-v0'.*disagrees with environment 0"):
        minari_io.from_minari(root, "zsgjax/walk")
    fewer(root / env1 / "data")
    with pytest.raises(ValueError, match=r"env-00002-v0' exists, but the set's metadata say it has 2 environments"):
        minari_io.from_minari(root, "zsgjax/walk")


# ---------------------------------------------------------------------- docs
# ---------------------------------------------------------------------- slow
@pytest.mark.slow
def test_mjx_cheetah_physical_contexts():
    """A tiny MJX collection with a physical context (gravity): obs without the context, flags, finiteness."""
    contexts = uniform_contexts(jax.random.PRNGKey(0), "cheetah_velocity", 2, env_kwargs={"physical": ("gravity",)})
    data, info = collect(jax.random.PRNGKey(1), "cheetah_velocity", contexts, quality_preset("random"), 6,
                         env_kwargs={"physical": ("gravity",)})
    assert data.obs.shape == (2, 6, 17) and data.action.shape == (2, 6, 6) and data.contexts.shape == (2, 2)
    assert info.context_names == ("target_velocity", "gravity") and info.env_kwargs == {"physical": ["gravity"]}
    np.testing.assert_array_equal(data.obs[:, 1:], data.next_obs[:, :-1])
    assert np.asarray(data.truncated).sum() == 2 and not np.asarray(data.terminal).any()
    assert info.make_env().context_space.names == info.context_names


@pytest.mark.slow
def test_sac_checkpoint_policy(tmp_path):
    """load_sac_policy restores a runner checkpoint's policy; collection with it follows agent.act."""
    from zsgjax.checkpoint import Checkpointer
    from zsgjax.offline.control.behaviour import load_sac_policy
    from zsgjax.runner import checkpoint_config, seed_keys
    from zsgjax.train import TrainConfig, make_train

    from _tiny import TINY_TRAIN

    config = TrainConfig(**TINY_TRAIN)
    trainer = make_train(config)
    state = jax.jit(jax.vmap(trainer.init))(seed_keys(trainer, 2))
    with Checkpointer(tmp_path / "checkpoints", checkpoint_config(trainer, 2)) as ckpt:
        ckpt.save(0, state)
    policy_fn, params = load_sac_policy(tmp_path, config, num_seeds=2, seed=1)
    want = trainer.policy_params(jax.tree.map(lambda x: x[1], state))
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(want)):
        np.testing.assert_array_equal(a, b)
    behaviour = Behaviour(policy_fn=policy_fn, params=params, noise_std=0.0, label="expert")
    data, _ = collect(jax.random.PRNGKey(0), "simple_direction", np.array([[0.5, 0.5]]), behaviour, 10)
    env_obs = jnp.concatenate([data.obs[0], jnp.broadcast_to(data.contexts[0], (10, 2))], -1)
    np.testing.assert_allclose(data.action[0], trainer.act(params, env_obs), atol=1e-5)
    with pytest.raises(ValueError, match=r"`seed` must be an integer in \[0, 1\], got 2"):
        load_sac_policy(tmp_path, config, num_seeds=2, seed=2)
