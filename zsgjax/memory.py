"""How many bytes a training state needs, and whether it fits, before anything is allocated.

:func:`estimate_state_bytes` sums ``size * itemsize`` over the leaves of
``jax.eval_shape(vmap(trainer.init))`` (traced only: nothing compiled or allocated);
:func:`memory_error` compares it with what the device can still allocate
(:func:`available_memory`: an accelerator's ``memory_stats``, else the host's
``MemAvailable``) with a :data:`MEMORY_MARGIN`. The run driver
(:func:`zsgjax.runner.check_memory`) refuses a run with that message before it
compiles anything.
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import numpy as np

from zsgjax.checkpoint import restore_concurrent_gb
from zsgjax.sharding import SEEDS
from zsgjax.train import Trainer

# The state must fit in this share of the memory available: the rest is left for the
# training program's temporaries (rollout batch, gradients), the compiled programs and
# the runtime, which the estimate does not count.
MEMORY_MARGIN = 0.9


def state_shapes(trainer: Trainer, seeds: int) -> Any:
    """The ``jax.ShapeDtypeStruct`` tree of the training state of ``seeds`` seeds
    (``vmap(trainer.init)`` on ``(seeds, 2)`` keys): traced only, nothing compiled or allocated."""
    keys = jax.eval_shape(lambda: jax.random.split(jax.random.PRNGKey(trainer.config.seed), seeds))
    return jax.eval_shape(jax.vmap(trainer.init), keys)


def tree_bytes(tree: Any) -> int:
    """Sum of ``size * itemsize`` over the leaves of a tree of arrays or ``ShapeDtypeStruct``."""
    return sum(math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(tree))


def estimate_state_bytes(trainer: Trainer, seeds: int) -> int:
    """Bytes of the training state of ``seeds`` seeds of ``trainer`` (replay buffers included),
    from its shapes alone (:func:`state_shapes`)."""
    return tree_bytes(state_shapes(trainer, seeds))


def available_memory(device: Any) -> tuple[int, str]:
    """``(bytes, where)``: what ``device`` can still allocate. An accelerator's
    ``memory_stats()`` (``bytes_limit - bytes_in_use``) when it reports them, else the
    host's ``MemAvailable`` (``/proc/meminfo``; its free pages when that is missing)."""
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), f"free on {device}"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "MemAvailable of this host"
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free memory of this host"


def restore_buffer_bytes(shapes: Any) -> int:
    """Bytes a resume reads into at once on top of the state it restores into (at most the state):
    :func:`zsgjax.checkpoint.restore_concurrent_gb` GB. Measured (``benchmarks/resume_memory.py``,
    docs/performance.md §9): a resume's peak adds 1.44-1.50x a 2 GB state, the state and a 1 GB read."""
    return min(tree_bytes(shapes), restore_concurrent_gb(shapes) * 10**9)


def memory_error(trainer: Trainer, seeds: int, mesh: Any = None, shapes: Any = None,
                 restoring: bool = False) -> str | None:
    """Why the training state of ``seeds`` seeds cannot fit, or ``None`` when it does: its
    bytes (:func:`estimate_state_bytes`) must be at most :data:`MEMORY_MARGIN` of what the
    device can allocate (:func:`available_memory`). On a ``mesh`` the state is split over the
    ``seeds`` axis and replicated over ``envs``: each accelerator holds ``1/seeds-axis`` of
    it; on a CPU this process's devices share the host's memory, so their shares add up.
    ``shapes``: the state's ``ShapeDtypeStruct`` tree when the caller traced it already
    (default: :func:`state_shapes`). ``restoring``: the state is read from a checkpoint; on a
    CPU its read buffer (:func:`restore_buffer_bytes`) must fit beside it (an accelerator
    holds the state alone: the checkpoint is read on the host)."""
    shapes = state_shapes(trainer, seeds) if shapes is None else shapes
    total = needed = tree_bytes(shapes)
    device, share = jax.devices()[0], ""
    if mesh is not None:
        local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
        device = local[0]
        per_device = -(-total // mesh.shape[SEEDS])
        needed = per_device * (len(local) if device.platform == "cpu" else 1)
        share = f", {format_bytes(needed)} of it on {'this host' if device.platform == 'cpu' else 'each device'}"
    if restoring and device.platform == "cpu":
        buffer = restore_buffer_bytes(shapes)
        needed += buffer
        share += f", and {format_bytes(buffer)} more while a checkpoint is read into it"
    free, where = available_memory(device)
    if needed <= MEMORY_MARGIN * free:
        return None
    c = trainer.config
    return (f"the training state needs {format_bytes(total)}{share} (seeds={seeds}, buffer_size={c.buffer_size:,}, "
            f"num_envs={c.num_envs}, observation size={trainer.env.observation_size}; replay buffers "
            f"{format_bytes(tree_bytes(shapes.replay))}) but {format_bytes(free)} is available ({where}) and at most "
            f"{MEMORY_MARGIN:.0%} of it may be used: lower buffer_size, seeds or num_envs")


def format_bytes(n: int) -> str:
    """``n`` bytes with 3 significant digits in B, KiB, MiB, GiB or TiB (the largest unit not above ``n``)."""
    exponent = min(4, max(0, (int(n).bit_length() - 1) // 10))
    return f"{n} B" if exponent == 0 else f"{n / 1024 ** exponent:.3g} {('KiB', 'MiB', 'GiB', 'TiB')[exponent - 1]}"
