"""A one-thread XLA:CPU intra-op pool, so that batched MJX steps cannot deadlock.

jaxlib up to at least 0.11.0 runs a batched LAPACK call (MJX's Cholesky factors
``lapack_spotrf_ffi`` of the ``nv x nv`` mass and Newton matrices, their triangular
solves ``lapack_strsm_ffi``) in chunks on XLA:CPU's intra-op thread pool once
``batch * n**3 / 3 >= 200000`` (half-cheetah, ``nv = 9``: 824 or more
environments; ant, ``nv = 14``: 219 or more), and the calling pool thread blocks
until its chunks are done. XLA:CPU runs independent operations concurrently, and
an MJX step has independent factorizations (``M`` in ``fwd_position``,
``M + dt * damping`` in the Euler step): when every pool thread is inside such a
call, no thread is left to run the chunks and the process hangs at 0% CPU
(reproducer, stacks and measurements: ``benchmarks/mjx_hang_repro.py`` and
docs/performance.md, "Batched MJX steps hang on XLA:CPU"). jax removed the
parallel path from open-source builds after 0.11.0 (jax commit ``859992407d``,
jax-ml/jax#36927).

With one pool thread jaxlib never splits a batch (``num_threads <= 1``), so the
hang cannot happen at any size. XLA reads the pool size once, when the CPU backend
starts, from the ``NPROC`` environment variable (else the number of usable
cores). :func:`limit_intra_op_pool` sets ``NPROC=1`` for the process;
``zsgjax.envs.mjx`` calls it on import. It leaves a user's own ``NPROC`` alone
(``NPROC=2`` restores jax's default on a 2-core machine, hang included) and
warns when the CPU backend has already started with more than one thread.
"""

from __future__ import annotations

import os
import re
import warnings

import jaxlib

#: Environment variable XLA:CPU sizes its intra-op thread pool from (read when the CPU backend starts).
POOL_SIZE_VARIABLE = "NPROC"
#: Name XLA gives the intra-op pool's threads (``/proc/<pid>/task/*/comm``).
POOL_THREAD_NAME = "tf_XLAEigen"
#: jaxlib versions below this one may split LAPACK batches over the pool (0.11.0's source still does).
UNAFFECTED_JAXLIB = (0, 11, 2)


def jaxlib_splits_lapack_batches(version: str = jaxlib.__version__) -> bool:
    """Whether jaxlib ``version`` (e.g. ``"0.10.2"``) may run a batched LAPACK call on the intra-op pool."""
    release = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    if release is None:
        raise ValueError(f"`version` must start with a release number like '0.10.2', got {version!r}")
    return tuple(int(p or 0) for p in release.groups()) < UNAFFECTED_JAXLIB


def intra_op_pool_threads() -> int | None:
    """Number of live XLA:CPU intra-op pool threads in this process (0 before the CPU backend starts).

    ``None`` where ``/proc/self/task`` is unavailable (not Linux).
    """
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    count = 0
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                count += f.read().strip() == POOL_THREAD_NAME
        except OSError:  # the thread ended meanwhile
            continue
    return count


def limit_intra_op_pool() -> bool:
    """Give XLA:CPU's intra-op pool one thread, where the installed jaxlib needs it; ``True`` if ``NPROC`` was set.

    Sets ``NPROC=1`` unless the user set ``NPROC`` or jaxlib no longer splits LAPACK
    batches. Effective only before the CPU backend starts: if it already runs a pool
    of more than one thread, warns that batched MJX steps may hang and how to avoid it.
    """
    if not jaxlib_splits_lapack_batches() or POOL_SIZE_VARIABLE in os.environ:
        return False
    os.environ[POOL_SIZE_VARIABLE] = "1"
    running = intra_op_pool_threads()
    if running is not None and running > 1:
        warnings.warn(
            f"JAX's CPU backend already runs {running} intra-op threads: with jaxlib {jaxlib.__version__}, "
            "batched MJX steps can deadlock on it (jaxlib's parallel LAPACK batch map; see "
            "zsgjax.envs.mjx.cpu_pool). Import zsgjax.envs.mjx before running any JAX computation, "
            f"or start Python with {POOL_SIZE_VARIABLE}=1.",
            RuntimeWarning,
            stacklevel=2,
        )
    return True
