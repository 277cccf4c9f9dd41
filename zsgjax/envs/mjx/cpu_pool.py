"""An XLA:CPU intra-op pool large enough that batched MJX steps cannot deadlock.

jaxlib up to at least 0.11.0 runs a batched LAPACK call (MJX's Cholesky factors
``lapack_spotrf_ffi`` of the ``nv x nv`` mass and Newton matrices, their triangular
solves ``lapack_strsm_ffi``) in chunks on XLA:CPU's intra-op thread pool once
``batch * n**3 / 3 >= 200000`` (half-cheetah, ``nv = 9``: 824 or more
environments; ant, ``nv = 14``: 219 or more), and the calling pool thread blocks
until its chunks are done. XLA:CPU runs independent operations concurrently, and
an MJX step has two independent factorizations (``M`` in ``fwd_position``,
``M + dt * damping`` in the Euler step): when every pool thread is inside such a
call, no thread is left to run the chunks and the process hangs at 0% CPU
(reproducer, stacks and measurements: ``benchmarks/mjx_hang_repro.py`` and
docs/performance.md, "Batched MJX steps hang on XLA:CPU"). jax removed the
parallel path from open-source builds after 0.11.0 (jax commit ``859992407d``,
jax-ml/jax#36927).

So the hang needs a pool of exactly as many threads as there are such calls at
once: one thread never splits a batch, and with more threads than concurrent
calls one is always free to run the chunks. jax sizes the pool from the usable
cores, so a 2-core machine gets the one dangerous size. :func:`ensure_spare_threads`
gives the pool at least :data:`MIN_POOL_THREADS` (4) threads where it would have
2 or 3: two more than MJX's two concurrent factorizations. It costs about 10% on
a 2-core CPU's matmuls (256-wide MLP gradient: 1.34 ms with 4 threads, 1.21 ms
with 2, 1.66 ms with 1, same machine and run), where one thread, the other way to
avoid the hang, costs 37%. XLA reads the pool size once, when the CPU backend
starts, from the ``NPROC`` environment variable (else the number of usable cores).
``zsgjax.envs.mjx`` calls :func:`ensure_spare_threads` on import. It leaves a
user's own ``NPROC`` alone (``NPROC=1`` is the setting that cannot hang whatever
the program) and warns when the CPU backend has already started with a pool of a
size that can hang.
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
#: Independent batched LAPACK calls one MJX step runs at the same time (the two Cholesky factorizations).
CONCURRENT_LAPACK_CALLS = 2
#: The smallest pool :func:`ensure_spare_threads` leaves (two spare threads over the concurrent calls).
MIN_POOL_THREADS = CONCURRENT_LAPACK_CALLS + 2


def can_deadlock(pool_threads: int) -> bool:
    """Whether a pool of ``pool_threads`` threads can be filled by the concurrent split calls
    of an MJX step (one thread never splits a batch)."""
    return 1 < pool_threads <= CONCURRENT_LAPACK_CALLS


def default_pool_threads() -> int:
    """The pool size jax would choose: the usable cores of this process."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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


def ensure_spare_threads() -> bool:
    """Give XLA:CPU's intra-op pool at least :data:`MIN_POOL_THREADS` threads where jax's default
    (the usable cores) would be 2 or 3 and the installed jaxlib splits LAPACK batches;
    ``True`` if ``NPROC`` was set.

    Leaves a user's ``NPROC`` alone. Effective only before the CPU backend starts: if
    it already runs a pool of a size that can deadlock (:func:`can_deadlock`), warns
    that batched MJX steps may hang and how to avoid it.
    """
    if not jaxlib_splits_lapack_batches() or POOL_SIZE_VARIABLE in os.environ:
        return False
    cores = default_pool_threads()
    if not 1 < cores < MIN_POOL_THREADS:
        return False
    os.environ[POOL_SIZE_VARIABLE] = str(MIN_POOL_THREADS)
    running = intra_op_pool_threads()
    if running is not None and can_deadlock(running):
        warnings.warn(
            f"JAX's CPU backend already runs {running} intra-op threads: with jaxlib {jaxlib.__version__}, "
            "batched MJX steps can deadlock on it (jaxlib's parallel LAPACK batch map; see "
            "zsgjax.envs.mjx.cpu_pool). Import zsgjax.envs.mjx before running any JAX computation, "
            f"or start Python with {POOL_SIZE_VARIABLE}={MIN_POOL_THREADS}.",
            RuntimeWarning,
            stacklevel=2,
        )
    return True
