"""Checkpoints of training-state pytrees and their config, with orbax.

A :class:`Checkpointer` keeps the last ``max_to_keep`` checkpoints of one run under
``directory/<step>/`` (``step`` = training iterations done). Each holds

* ``state``  -- any pytree of arrays (a ``flax.struct`` TrainState, possibly with a
  leading seed axis), saved with ``ocp.args.StandardSave``;
* ``config`` -- the run's config as JSON (a dataclass or a mapping);
* ``digest`` -- a BLAKE2b digest of every leaf of ``state`` (dtype, shape and bytes),
  recomputed and compared on restore, so that damaged data files are found instead
  of restoring silently wrong values (orbax reads flipped bytes back without error).

Atomicity is orbax's: a checkpoint is written into ``<step>.orbax-checkpoint-tmp``
and renamed to ``<step>`` only once complete (``orbax.checkpoint._src.path.
atomicity.AtomicRenameTemporaryPath``), so a crash mid-write leaves the earlier
checkpoints intact and the partial one is ignored (and removed when the directory
is opened again). Saving is synchronous.

A save that fails (a full disk, a leaf orbax cannot write) removes its temporary
folder before the error propagates. Zero-size leaves (MuJoCo's ``data.act`` of a
model without activations, an empty replay field), which orbax refuses to write,
are stored as a 0-d placeholder and restored as zeros of the expected shape and
dtype (their digest covers dtype and shape, which is all they hold).

Errors are ``ValueError``\\ s naming the directory: no checkpoint there, a corrupt
one (unreadable files, or data that do not match the stored digest: a
:class:`CorruptCheckpoint`), one written for a different config, or one whose state
does not have the expected structure. :meth:`Checkpointer.restore_latest_good` falls
back to the newest checkpoint that passes the digest check.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from zsgjax import checks

PyTree = Any


def config_to_dict(config: Any) -> dict:
    """A dataclass or mapping as a JSON-normalised dict (tuples become lists)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        data = dataclasses.asdict(config)
    elif isinstance(config, Mapping):
        data = dict(config)
    else:
        raise ValueError(f"`config` must be a dataclass instance or a mapping, got {type(config).__name__}")
    try:
        return json.loads(json.dumps(data, allow_nan=False, default=_json_scalar))
    except (TypeError, ValueError) as e:
        raise ValueError(f"`config` is not JSON-serializable: {e}") from e


def _json_scalar(value: Any) -> Any:
    """NumPy scalars (and 0-d arrays) in a config become the Python value they hold."""
    if isinstance(value, np.generic) or (isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0):
        return np.asarray(value).item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _check_state(state: PyTree, name: str, abstract: bool = False) -> None:
    """``ValueError`` unless ``state`` is a non-empty pytree whose leaves are arrays (NumPy, jax, typed keys),
    or with ``abstract`` also ``jax.ShapeDtypeStruct`` (typed keys among them: :func:`_concrete_keys`)."""
    leaves = jax.tree.leaves(state)
    if not leaves:
        raise ValueError(f"`{name}` must be a pytree of arrays, got one with no leaves ({type(state).__name__})")
    kinds = (jax.Array, np.ndarray, np.generic, int, float) + ((jax.ShapeDtypeStruct,) if abstract else ())
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        where = jax.tree_util.keystr(path) or "(root)"
        if not isinstance(leaf, kinds):
            raise ValueError(f"`{name}` must be a pytree of arrays{' or jax.ShapeDtypeStruct' if abstract else ''}; "
                             f"leaf {where} is a {type(leaf).__name__}")


def _concrete_keys(like: PyTree, name: str) -> PyTree:
    """``like`` with its abstract typed PRNG keys as concrete placeholder keys of their shape
    (:func:`_from_savable` takes the implementation from them); ``ValueError`` for one of another
    implementation than jax's default (a ``ShapeDtypeStruct`` does not give its implementation publicly)."""
    default = jax.random.key(0)

    def concrete(path, x):
        if not (isinstance(x, jax.ShapeDtypeStruct) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)):
            return x
        if x.dtype != default.dtype:
            raise ValueError(f"`{name}`: leaf {jax.tree_util.keystr(path)} is an abstract typed PRNG key of another "
                             f"implementation than jax's default ({x.dtype}); pass a concrete key array there "
                             "(restoring it needs its implementation)")
        return jax.random.wrap_key_data(jnp.zeros(x.shape + jax.random.key_data(default).shape, jnp.uint32))

    return jax.tree_util.tree_map_with_path(concrete, like)


class CorruptCheckpoint(ValueError):
    """A checkpoint whose files cannot be read or whose data do not match their digest."""


def leaf_digests(tree: PyTree) -> list[str]:
    """BLAKE2b hex digest of each leaf (dtype, shape and bytes), in ``jax.tree.leaves`` order."""
    out = []
    for leaf in jax.tree.leaves(_to_savable(tree)):
        a = np.ascontiguousarray(np.asarray(leaf))
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.reshape(-1).view(np.uint8))  # the bytes without a copy of them (tobytes would copy)
        out.append(h.hexdigest())
    return out


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_savable(tree: PyTree) -> PyTree:
    """Typed PRNG keys become their raw ``uint32`` data (orbax stores plain arrays)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _is_empty(x) -> bool:
    return int(np.prod(np.shape(x))) == 0


def _placeholders_for_empty(tree: PyTree) -> PyTree:
    """Zero-size leaves become 0-d zeros of their dtype (orbax cannot write size-0 arrays)."""
    return jax.tree.map(lambda x: np.zeros((), np.dtype(x.dtype)) if _is_empty(x) else x, tree)


def _partial_saves(directory: str, step: int) -> list[str]:
    """The temporary folders orbax writes checkpoint ``step`` into (``<step>.orbax-checkpoint-tmp...``)."""
    prefix = f"{step}.orbax-checkpoint-tmp"
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [os.path.join(directory, n) for n in names if n.startswith(prefix)]


def _remove_partial_saves(directory: str, step: int) -> None:
    """Remove what a failed save of ``step`` left (best effort: the error being raised matters more)."""
    for path in _partial_saves(directory, step):
        shutil.rmtree(path, ignore_errors=True)


def _from_savable(tree: PyTree, like: PyTree) -> PyTree:
    return jax.tree.map(
        lambda x, l: jax.random.wrap_key_data(x, impl=jax.random.key_impl(l)) if _is_key(l) else x, tree, like
    )


# GB of a checkpoint's state that orbax reads at once (at least the largest leaf, which orbax reads whole): a
# restore holds what it reads beside the arrays it fills, so a resume peaks at about the state plus this much
# (orbax's default, 96 GB, reads all of it at once; docs/performance.md §9).
RESTORE_CONCURRENT_GB = 1


def restore_concurrent_gb(shapes: PyTree) -> int:
    """Whole GB orbax may read at once to restore leaves of ``shapes``: :data:`RESTORE_CONCURRENT_GB`, or more
    than the largest leaf's bytes (orbax refuses a leaf that does not fit its reservation strictly)."""
    largest = max((int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(shapes)), default=0)
    return max(RESTORE_CONCURRENT_GB, largest // 10**9 + 1)


class Checkpointer:
    """Save / restore ``(state, config)`` under ``directory``, keeping the last ``max_to_keep``.

    Args:
      directory: created if missing.
      config: the run's config (dataclass or mapping); saved with every checkpoint
        and compared on restore.
      max_to_keep: number of most recent checkpoints kept (``>= 1``).
    """

    def __init__(self, directory: str | os.PathLike, config: Any, max_to_keep: int = 3):
        try:
            max_to_keep = checks.integer(max_to_keep, "`max_to_keep`", low=1)
        except ValueError:
            raise ValueError(f"`max_to_keep` must be a positive integer, got {max_to_keep!r}") from None
        try:
            self.directory = os.path.abspath(os.fspath(directory))
        except TypeError:
            raise ValueError(f"`directory` must be a path (str or os.PathLike), got {directory!r}") from None
        probe = self.directory
        while not os.path.exists(probe) and os.path.dirname(probe) != probe:
            probe = os.path.dirname(probe)
        if not os.path.isdir(probe):
            raise ValueError(f"`directory` '{self.directory}' cannot be a checkpoint directory: '{probe}' is a file")
        self.config = config_to_dict(config)
        # In a multi-process JAX run a Checkpointer belongs to the one process that opens it
        # (zsgjax.runner: process 0, with the state gathered to NumPy): no barriers with the others.
        me = jax.process_index()
        single = jax.process_count() == 1
        if not single:
            os.makedirs(self.directory, exist_ok=True)  # orbax's `create` needs every process
        processes = ocp.options.MultiprocessingOptions(primary_host=0 if single else me,
                                                       active_processes=None if single else {me})
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            create=single,
            enable_async_checkpointing=False,
            cleanup_tmp_directories=True,
            multiprocessing_options=processes,
        )
        self._processes = processes
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    # ----------------------------------------------------------------- queries
    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints, ascending."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The most recent complete checkpoint's step, or ``None``."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    # -------------------------------------------------------------------- save
    def save(self, step: int, state: PyTree) -> None:
        """Write ``state`` (and the config) as checkpoint ``step`` (``>= 0``), atomically."""
        try:
            step = checks.integer(step, "`step`", low=0)
        except ValueError:
            raise ValueError(f"`step` must be a non-negative integer, got {step!r}") from None
        _check_state(state, "state")
        savable = _to_savable(state)
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(_placeholders_for_empty(savable)),
            config=ocp.args.JsonSave(self.config),
            digest=ocp.args.JsonSave({"blake2b_16": leaf_digests(state),
                                      "dtypes": [np.dtype(x.dtype).str for x in jax.tree.leaves(savable)]}),
        )
        try:
            self._manager.save(int(step), args=args, force=True)
            self._manager.wait_until_finished()
        except BaseException:
            _remove_partial_saves(self.directory, int(step))
            self._manager.reload()
            raise

    # ----------------------------------------------------------------- restore
    def _resolve_step(self, step: int | None) -> int:
        steps = self.all_steps()
        if not steps:
            raise ValueError(f"no checkpoint found in '{self.directory}'")
        if step is None:
            return steps[-1]
        try:
            step = checks.integer(step, "`step`", low=0)
        except ValueError:
            raise ValueError(f"`step` must be a non-negative integer or None (the latest), got {step!r}") from None
        if step not in steps:
            raise ValueError(f"no checkpoint at step {step} in '{self.directory}'; available steps: {steps}")
        return int(step)

    def restore_config(self, step: int | None = None) -> dict:
        """The config stored with checkpoint ``step`` (default: latest)."""
        step = self._resolve_step(step)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
            config = restored["config"]
        except Exception as e:  # orbax raises many types for damaged files
            raise ValueError(f"checkpoint {step} in '{self.directory}' is corrupt or unreadable (config): {e}") from e
        if not isinstance(config, dict):
            raise ValueError(f"checkpoint {step} in '{self.directory}' is corrupt: its config is not a JSON object")
        return config

    def verify_config(self, step: int | None = None) -> int:
        """Check that checkpoint ``step`` (default: latest) was written with this config.

        Returns the step; ``ValueError`` listing the differing fields otherwise (or
        when there is no such checkpoint).
        """
        step = self._resolve_step(step)
        stored = self.restore_config(step)
        if stored != self.config:
            keys = sorted(set(stored) | set(self.config))
            diff = [f"{k}: checkpoint={stored.get(k, '<missing>')!r} vs now={self.config.get(k, '<missing>')!r}"
                    for k in keys if stored.get(k, "<missing>") != self.config.get(k, "<missing>")]
            raise ValueError(
                f"checkpoint {step} in '{self.directory}' was written with a different config ({'; '.join(diff)}); "
                "use another output directory or the same options"
            )
        return step

    def restore(self, like: PyTree, step: int | None = None) -> PyTree:
        """Restore checkpoint ``step`` (default: latest) into the structure of ``like``.

        ``like``: a state with the expected tree structure, shapes and dtypes: a freshly
        initialised one, or (so that a large state is not allocated twice) its
        ``jax.ShapeDtypeStruct`` s, e.g. ``jax.eval_shape(init, key)`` or a lowered
        program's ``out_info`` (typed PRNG keys of another implementation than jax's default
        must be concrete). Raises ``ValueError``
        when there is no checkpoint, its config differs from this checkpointer's (listing the
        differing fields), the files are corrupt, or the structure does not match.
        """
        _check_state(like, "like", abstract=True)
        like = _concrete_keys(like, "like")
        step = self.verify_config(step)
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_savable(like))
        stored, dtypes = self._stored_digests(step)
        leaves, treedef = jax.tree.flatten(target)
        if len(stored) != len(leaves) or len(dtypes) != len(leaves):
            raise ValueError(
                f"checkpoint {step} in '{self.directory}' has a different state structure than expected "
                f"({len(stored)} leaves stored, {len(leaves)} expected)"
            )
        # Read every leaf in the dtype it was written in (the digest is of those bytes), then cast.
        # Zero-size leaves were written as 0-d placeholders (see _placeholders_for_empty).
        exact = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(() if _is_empty(t) else t.shape, np.dtype(d))
                                             for t, d in zip(leaves, dtypes)])
        try:
            restored = self._reader(restore_concurrent_gb(exact)).restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(exact)))
            state = jax.tree.map(lambda x, t: np.zeros(t.shape, x.dtype) if _is_empty(t) else x,
                                 restored["state"], target)
        except Exception as e:  # orbax raises many types for damaged or mismatched files
            raise CorruptCheckpoint(
                f"cannot restore checkpoint {step} in '{self.directory}': corrupt files or a state structure "
                f"different from the expected one ({type(e).__name__}: {e})"
            ) from e
        if jax.tree.structure(state) != jax.tree.structure(target):
            raise ValueError(f"checkpoint {step} in '{self.directory}' has a different state structure than expected")
        for got, want in zip(jax.tree.leaves(state), leaves):
            if np.shape(got) != want.shape:
                raise ValueError(
                    f"checkpoint {step} in '{self.directory}': a leaf has shape {np.shape(got)}, expected {want.shape}"
                )
        got = leaf_digests(state)
        bad = [i for i, (a, b) in enumerate(zip(stored, got)) if a != b]
        if bad:
            paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(target)[0]]
            raise CorruptCheckpoint(
                f"checkpoint {step} in '{self.directory}' is corrupt: {len(bad)} of {len(got)} state leaves do not "
                f"match their stored digest (first: {paths[bad[0]]})"
            )
        state = jax.tree.map(lambda x, t: jnp.asarray(x, dtype=t.dtype), state, target)
        return _from_savable(state, like)

    def _reader(self, concurrent_gb: int) -> ocp.CheckpointManager:
        """A manager of this directory that only reads, its state ``concurrent_gb`` GB at a time."""
        options = ocp.CheckpointManagerOptions(create=False, enable_async_checkpointing=False,
                                               multiprocessing_options=self._processes)
        handlers = {"state": ocp.StandardCheckpointHandler(restore_concurrent_gb=concurrent_gb,
                                                           multiprocessing_options=self._processes)}
        return ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def stored_leaf_digests(self, step: int | None = None) -> list[str]:
        """The digest of every leaf of checkpoint ``step``'s state (default: latest) as it was written
        (:func:`leaf_digests`, in ``jax.tree.leaves`` order), read without its arrays."""
        return self._stored_digests(self._resolve_step(step))[0]

    def _stored_digests(self, step: int) -> tuple[list[str], list[str]]:
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(digest=ocp.args.JsonRestore()))
            digests, dtypes = restored["digest"]["blake2b_16"], restored["digest"]["dtypes"]
        except Exception as e:
            raise CorruptCheckpoint(
                f"checkpoint {step} in '{self.directory}' has no readable integrity digest (written by an older "
                f"zsgjax, or damaged): {type(e).__name__}: {e}"
            ) from e
        if not all(isinstance(x, list) and all(isinstance(d, str) for d in x) for x in (digests, dtypes)):
            raise CorruptCheckpoint(f"checkpoint {step} in '{self.directory}': malformed integrity digest")
        try:
            [np.dtype(d) for d in dtypes]
        except TypeError as e:
            raise CorruptCheckpoint(f"checkpoint {step} in '{self.directory}': malformed dtype record ({e})") from e
        return digests, dtypes

    def restore_latest_good(self, like: PyTree, warn=None) -> tuple[int, PyTree]:
        """Restore the newest checkpoint that reads back and matches its digest.

        Returns ``(step, state)``. Each corrupt checkpoint skipped is reported through
        ``warn(message)``; a config mismatch is raised at once (it is not corruption);
        ``ValueError`` when no checkpoint is good.
        """
        steps = self.all_steps()
        if not steps:
            raise ValueError(f"no checkpoint found in '{self.directory}'")
        errors = []
        for step in reversed(steps):
            try:
                state = self.restore(like, step)
            except CorruptCheckpoint as e:
                errors.append(str(e))
                continue
            for bad in (s for s in steps if s > step):  # kept for inspection, out of the way of new saves
                moved = self._quarantine(bad)
                if warn is not None:
                    warn(f"{errors[steps[::-1].index(bad)]}; moved it to '{moved}' and resumed from checkpoint {step}")
            return step, state
        raise ValueError(f"no good checkpoint in '{self.directory}' (steps {steps}): " + " | ".join(errors))

    def _quarantine(self, step: int) -> str:
        """Rename checkpoint ``step`` to ``<step>.corrupt[.k]`` (no data is deleted); returns the new path."""
        src = os.path.join(self.directory, str(step))
        dst = f"{src}.corrupt"
        k = 1
        while os.path.exists(dst):
            dst, k = f"{src}.corrupt.{k}", k + 1
        os.rename(src, dst)
        self._manager.reload()
        return dst

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
