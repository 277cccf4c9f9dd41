"""Stored evaluations: named by every input their returns depend on, read back only when they match.

The run driver's reuse of them (a resumed, finished label is not evaluated again; a damaged file
is evaluated again and replaced) is tested in ``tests/test_runner.py``.
"""

import os

import jax
import numpy as np
import pytest

from zsgjax import evaluation_store as store
from zsgjax.reporting.results import ContextGrid


def grid(contexts=((0.0,), (1.0,)), labels=("c=0", "c=1")):
    return ContextGrid(np.asarray(contexts, np.float32), tuple(labels), ("c",) * len(labels), ("c",),
                       np.zeros(1, np.float32))


def inputs():
    params = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros((2, 1), np.float32)}
    return dict(params=params, grid=grid(), num_episodes=4, actions="mean", rng=jax.random.PRNGKey(1),
                record={"env": "toy", "method": "cse", "hidden_sizes": [8, 8]})


def changed(name):
    """The inputs with ``name`` changed in the smallest way that changes what an evaluation returns."""
    x = inputs()
    if name == "params bytes":
        x["params"]["w"] = x["params"]["w"].copy()
        x["params"]["w"][1, 2] = np.nextafter(np.float32(5), np.float32(6))
    elif name == "params dtype":
        x["params"]["b"] = x["params"]["b"].astype(np.float64)
    elif name == "params structure":
        x["params"] = {"w": x["params"]["w"], "c": x["params"]["b"]}
    elif name == "contexts":
        x["grid"] = grid(contexts=((0.0,), (1.5,)))
    elif name == "labels":
        x["grid"] = grid(labels=("c=0", "named"))
    elif name == "episodes":
        x["num_episodes"] = 5
    elif name == "actions":
        x["actions"] = "sample"
    elif name == "rng":
        x["rng"] = jax.random.PRNGKey(2)
    elif name == "typed rng":
        x["rng"] = jax.random.key(1)
    elif name == "record":
        x["record"] = {**x["record"], "hidden_sizes": [8, 16]}
    return x


CHANGES = ["params bytes", "params dtype", "params structure", "contexts", "labels", "episodes", "actions", "rng",
           "record"]


def test_the_digest_is_stable_and_changes_with_every_input():
    base = store.evaluation_digest(**inputs())
    assert base == store.evaluation_digest(**inputs()) and len(base) == 32
    digests = {name: store.evaluation_digest(**changed(name)) for name in CHANGES}
    assert base not in digests.values() and len(set(digests.values())) == len(CHANGES)
    # a typed key holding the same bits as the raw key names the same episodes
    assert store.evaluation_digest(**changed("typed rng")) == base


def test_saved_returns_are_read_back_only_under_their_digest_and_shape(tmp_path):
    digest = store.evaluation_digest(**inputs())
    returns = np.random.default_rng(0).normal(size=(2, 2, 4)).astype(np.float32)
    assert store.load(tmp_path, digest, (2, 2, 4)) is None  # nothing stored yet
    path = store.save(tmp_path / "evaluations", digest, returns)
    assert path == store.stored_path(tmp_path / "evaluations", digest) and os.listdir(tmp_path / "evaluations") == [
        f"{digest}.npz"]  # no temporary file left
    got = store.load(tmp_path / "evaluations", digest, (2, 2, 4))
    np.testing.assert_array_equal(got, returns)
    assert got.dtype == np.float32
    with pytest.raises(ValueError, match=r"shape \(2, 2, 4\).*expected float returns of shape \(2, 2, 5\)"):
        store.load(tmp_path / "evaluations", digest, (2, 2, 5))
    other = store.evaluation_digest(**changed("episodes"))
    os.replace(path, store.stored_path(tmp_path / "evaluations", other))  # a file under another evaluation's name
    with pytest.raises(ValueError, match=f"holds the evaluation {digest}, not {other}"):
        store.load(tmp_path / "evaluations", other, (2, 2, 4))
    store.save(tmp_path / "evaluations", digest, returns.astype(np.int32))
    with pytest.raises(ValueError, match="int32"):
        store.load(tmp_path / "evaluations", digest, (2, 2, 4))
    for damaged in (b"", b"PK\x03\x04 truncated", b"\x93NUMPY not an archive"):
        with open(path, "wb") as f:
            f.write(damaged)
        with pytest.raises(ValueError, match=f"stored evaluation '{path}' cannot be read"):
            store.load(tmp_path / "evaluations", digest, (2, 2, 4))
