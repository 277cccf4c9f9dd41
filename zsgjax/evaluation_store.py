"""Finished zero-shot evaluations kept beside a label's checkpoints, so a resumed run does not redo them.

A run of several labels that is cut off after evaluating the first resumes by restoring that
label's final checkpoint and, without this store, evaluating it again (the cheetah_velocity
paper run: 23 minutes a method). :func:`evaluation_digest` names one evaluation by everything
its returns depend on: the policy parameters (dtype, shape and bytes of every leaf), the grid
(contexts and labels), the episode count, the action mode, the evaluation key, the training
config record and :data:`EVALUATION_FORMAT`. :func:`save` writes the returns ``(S, C, E)`` to
``<directory>/<digest>.npz`` atomically; :func:`load` gives them back only from the file of
the same digest holding that digest and that shape.

Bump :data:`EVALUATION_FORMAT` when what an evaluation returns changes for the same inputs
(the episode loop, the action modes, an environment's dynamics or reward), so that stored
evaluations are not reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from zsgjax.checkpoint import leaf_digests
from zsgjax.reporting.files import atomic_path
from zsgjax.reporting.results import ContextGrid

EVALUATION_FORMAT = 1


def evaluation_digest(params: Any, grid: ContextGrid, num_episodes: int, actions: str, rng: jax.Array,
                      record: Mapping[str, Any]) -> str:
    """Hex BLAKE2b (32 hex digits) of one evaluation's inputs.

    ``params``: every seed's policy parameters (leading seed axis ``S``), as evaluated;
    ``grid``: the ``C`` contexts; ``num_episodes``: ``E``; ``actions``: the action mode;
    ``rng``: the evaluation key; ``record``: the training config (``TrainConfig.record()``,
    which names the environment, its options and the agent) as JSON-able data.
    """
    return digest_of_leaves(leaf_digests(params), jax.tree.structure(params), grid, num_episodes, actions, rng,
                            record)


def digest_of_leaves(param_digests: Sequence[str], structure: Any, grid: ContextGrid, num_episodes: int,
                     actions: str, rng: jax.Array, record: Mapping[str, Any]) -> str:
    """:func:`evaluation_digest` from the parameters' leaf digests
    (:func:`zsgjax.checkpoint.leaf_digests`, e.g. as a checkpoint records them) and tree
    ``structure`` instead of their arrays: the same digest, with nothing read but the record."""
    inputs = {
        "format": EVALUATION_FORMAT,
        "params": list(param_digests),
        "structure": str(structure),
        "contexts": leaf_digests(np.asarray(grid.contexts, np.float32)),
        "labels": list(grid.labels),
        "num_episodes": int(num_episodes),
        "actions": actions,
        "rng": leaf_digests(jax.random.key_data(rng) if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key)
                            else rng),
        "record": record,
    }
    text = json.dumps(inputs, sort_keys=True, default=repr)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def stored_path(directory: str | os.PathLike, digest: str) -> str:
    """Where the evaluation named ``digest`` is kept under ``directory``."""
    return os.path.join(os.fspath(directory), f"{digest}.npz")


def save(directory: str | os.PathLike, digest: str, returns: np.ndarray) -> str:
    """Write ``returns`` ``(S, C, E)`` as the evaluation named ``digest`` (atomically); its path."""
    path = stored_path(directory, digest)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, digest=np.asarray(digest), returns=np.asarray(returns))
            f.flush()
            os.fsync(f.fileno())
    return path


def load(directory: str | os.PathLike, digest: str, shape: tuple[int, int, int]) -> np.ndarray | None:
    """The returns ``shape`` = ``(S, C, E)`` stored as the evaluation named ``digest``, or ``None``
    when there are none. ``ValueError`` naming the file when it exists but cannot be read or
    holds another digest, shape or non-float returns (the caller evaluates again)."""
    path = stored_path(directory, digest)
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            stored, returns = str(f["digest"]), np.asarray(f["returns"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"stored evaluation '{path}' cannot be read ({type(e).__name__}: {e})") from None
    if stored != digest:
        raise ValueError(f"stored evaluation '{path}' holds the evaluation {stored}, not {digest}")
    if returns.shape != tuple(shape) or not np.issubdtype(returns.dtype, np.floating):
        raise ValueError(f"stored evaluation '{path}' holds returns of shape {returns.shape} ({returns.dtype}); "
                         f"expected float returns of shape {tuple(shape)} (seeds, contexts, episodes)")
    return returns
