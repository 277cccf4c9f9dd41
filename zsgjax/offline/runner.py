"""The run driver of the offline experiments: checkpointed, resumable training cells.

An offline experiment trains several methods (PERM, PPPO, baselines; linear or neural)
at several points (n, K, N, beta, ...), each with S seeds vmapped in one program. An
:class:`OfflineRun` owns one experiment's output prefix ``out`` (results go to
``out.json`` / ``.md`` / ``.png``) and its checkpoint directory ``out.checkpoints/``:

* :meth:`OfflineRun.train` runs ``jit(vmap(train))(keys, data)`` for a ``train(key,
  data)`` of :mod:`zsgjax.offline.linear` or :mod:`zsgjax.offline.control` (the
  shared call shape) and checkpoints the result (all seeds) under the cell's name;
* :meth:`OfflineRun.compute` does the same for any host computation returning a pytree
  of arrays of a known structure (``like``), e.g. a table of exact values per seed.

Checkpoints are :class:`zsgjax.checkpoint.Checkpointer`'s (atomic, digest-checked on
restore). Each cell's stored config holds the run's settings, the cell's name and
config, and digests of its keys and data, so a resumed cell is used only when all of
them match (``ValueError`` listing the differences otherwise). A cell whose files fail
their digest is reported through ``log`` and trained again. The granularity is one
cell: a run killed mid-way keeps every finished cell and repeats the one in progress.

The output path is checked when the run is opened, before any training: an unwritable
``out`` fails at once, naming the path. Without ``resume``, a checkpoint directory left
by an earlier run is refused (it is never deleted or silently reused).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from zsgjax.checkpoint import Checkpointer, CorruptCheckpoint, config_to_dict, leaf_digests
from zsgjax.reporting.files import check_file_path, check_writable_directory

PyTree = Any
CHECKPOINT_SUFFIX = ".checkpoints"
_CELL_NAME = re.compile(r"[^A-Za-z0-9_.=+-]+")


def tree_digest(tree: PyTree) -> str:
    """One BLAKE2b hex digest of every leaf of ``tree`` (dtype, shape and bytes) and of its structure."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(jax.tree.structure(tree)).encode())
    for d in leaf_digests(tree):
        h.update(d.encode())
    return h.hexdigest()


def _as_stored(tree: PyTree) -> PyTree:
    """NumPy leaves in the precision a checkpoint restores without x64: float64 -> float32, int64 -> int32."""
    def cast(x):
        a = np.asarray(x)
        return a.astype({"f": np.float32, "i": np.int32, "u": np.uint32}.get(a.dtype.kind, a.dtype)) \
            if a.dtype.itemsize == 8 else a

    return jax.tree.map(cast, tree)


def _zeros_like(shapes: PyTree) -> PyTree:
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


class OfflineRun:
    """One offline experiment's outputs and checkpoints.

    Args:
      out: the output prefix (``out.json``, ``out.md``, ``out.png``; checkpoints in
        ``out.checkpoints/``); its directory is created and must be writable.
      settings: what every cell depends on (a mapping or dataclass, JSON-serialisable);
        stored with each checkpoint and compared on resume.
      resume: reuse the cells of an earlier run with the same settings.
      log: where progress and warnings go (``print`` by default).
    """

    def __init__(self, out: str | os.PathLike, settings: Any, resume: bool = False,
                 log: Callable[[str], None] = print):
        self.out = check_file_path(os.fspath(out) + ".json", "out").removesuffix(".json")
        self.directory = self.out + CHECKPOINT_SUFFIX
        self.settings = config_to_dict(settings)
        self.resume = bool(resume)
        self.log = log
        self._names: set[str] = set()
        check_writable_directory(os.path.dirname(os.path.abspath(self.out)), f"`out` '{self.out}': its directory")
        if not self.resume and os.path.isdir(self.directory) and os.listdir(self.directory):
            raise ValueError(f"`out`: '{self.directory}' holds the checkpoints of an earlier run; pass --resume to "
                             f"continue it (same settings), or delete it or choose another --out")
        os.makedirs(self.directory, exist_ok=True)

    def path(self, suffix: str) -> str:
        """``out + suffix`` (e.g. ``".json"``)."""
        return self.out + suffix

    # ------------------------------------------------------------------ cells
    def _checkpointer(self, name: str, extra: Mapping[str, Any]) -> Checkpointer:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"cell name must be a non-empty string, got {name!r}")
        folder = _CELL_NAME.sub("_", name).strip("_") or "cell"
        if folder in self._names:
            raise ValueError(f"cell {name!r}: a cell of this run already uses the checkpoint folder {folder!r}; "
                             "give the cells distinct names")
        self._names.add(folder)
        config = {"cell": name, "settings": self.settings, **extra}
        return Checkpointer(os.path.join(self.directory, folder), config, max_to_keep=2)

    def _restore(self, ckpt: Checkpointer, name: str, like: PyTree) -> PyTree | None:
        """The newest good checkpoint of the cell, or ``None`` (none, or every one corrupt: reported)."""
        if not self.resume:
            return None
        for step in reversed(ckpt.all_steps()):
            try:
                return ckpt.restore(like, step)
            except CorruptCheckpoint as e:
                self.log(f"  cell {name!r}: {e}; training it again")
        return None

    def compute(self, name: str, fn: Callable[[], PyTree], like: PyTree, config: Any = None) -> PyTree:
        """``fn()``, or its checkpoint from an earlier run (``resume``); the result is checkpointed.

        ``like``: a pytree of arrays with the structure and shapes ``fn`` returns;
        ``config``: what the cell depends on beyond the run's settings (JSON-able). The
        result comes back as NumPy arrays of 32-bit (float64 is stored as float32), the
        same whether computed now or restored.
        """
        like = _as_stored(like)
        extra = {"config": None if config is None else config_to_dict(config)}
        with self._checkpointer(name, extra) as ckpt:
            restored = self._restore(ckpt, name, like)
            if restored is not None:
                self.log(f"  {name}: restored from '{ckpt.directory}'")
                return jax.tree.map(np.asarray, restored)
            result = _as_stored(jax.block_until_ready(fn()))
            if jax.tree.structure(result) != jax.tree.structure(like):
                raise ValueError(f"cell {name!r}: the result's structure {jax.tree.structure(result)} differs from "
                                 f"`like`'s {jax.tree.structure(like)}")
            latest = ckpt.latest_step()
            ckpt.save(0 if latest is None else latest + 1, result)
            return result

    def train(self, name: str, train: Callable[[jax.Array, Any], PyTree], keys: jax.Array, data: PyTree,
              config: Any = None) -> tuple[PyTree, float]:
        """``jit(vmap(train))(keys, data)`` (seeds on the leading axis), checkpointed.

        Returns ``(result, seconds)``; ``seconds`` is the training time including
        compilation, or 0.0 for a cell restored from its checkpoint. The cell's
        checkpoint is tied to ``config`` and to digests of ``keys`` and ``data``.
        """
        program = jax.vmap(train)
        like = _zeros_like(jax.eval_shape(program, keys, data))
        key_data = jax.random.key_data(keys) if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key) else keys
        extra = {"config": None if config is None else config_to_dict(config), "keys": tree_digest(key_data),
                 "data": tree_digest(data)}
        with self._checkpointer(name, extra) as ckpt:
            restored = self._restore(ckpt, name, like)
            if restored is not None:
                self.log(f"  {name}: restored from '{ckpt.directory}'")
                return restored, 0.0
            t = time.perf_counter()
            result = jax.block_until_ready(jax.jit(program)(keys, data))
            seconds = time.perf_counter() - t
            latest = ckpt.latest_step()
            ckpt.save(0 if latest is None else latest + 1, result)
            return result, seconds


def open_run(out: str | os.PathLike, settings: Any, resume: bool = False) -> OfflineRun:
    """:class:`OfflineRun` for a script: the options ``out`` and ``resume`` are dropped from
    ``settings`` (a mapping or dataclass), and a refusal exits with its message (no traceback)."""
    settings = {k: v for k, v in config_to_dict(settings).items() if k not in ("out", "resume")}
    try:
        return OfflineRun(out, settings, resume=resume)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
