"""Multi-device training with ``jax.sharding``.

A 2-D device :class:`~jax.sharding.Mesh` with axes ``('seeds', 'envs')``:

* ``seeds`` -- independent agents: the seed axis of ``vmap(trainer.train)`` is
  split over these devices (``vmap(..., spmd_axis_name='seeds')``); no
  communication at all.
* ``envs`` -- data parallelism for one agent: the ``num_envs`` parallel
  environments and every replay batch are split over these devices; the losses
  are means over the batch, so XLA's SPMD partitioner inserts the all-reduce that
  averages the gradients. Parameters, optimiser states and the replay buffer are
  replicated.

Nothing here changes the program's mathematics: a sharded run computes what the
single-device run computes (up to float re-association in the gradient
all-reduce). Tested on CPU with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``.

Example::

    mesh = make_mesh(seeds=2, envs=2)                   # 4 devices
    train = sharded_train(make_train(config), mesh)
    state, metrics = train(jax.random.split(key, 4))    # 4 seeds, 2 per device row
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

SEEDS = "seeds"
ENVS = "envs"


def make_mesh(seeds: int = 1, envs: int | None = None, devices=None) -> Mesh:
    """A ``(seeds, envs)`` mesh over ``devices`` (default: all devices).

    ``envs=None`` uses every device left after ``seeds``. Raises ``ValueError``
    when ``seeds * envs`` does not equal the number of devices used.
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if seeds < 1 or n % seeds:
        raise ValueError(f"`seeds` must be a positive divisor of the device count {n}; got {seeds}")
    envs = n // seeds if envs is None else envs
    if envs < 1 or seeds * envs > n:
        raise ValueError(f"`seeds * envs` must be at most the device count {n}; got {seeds} * {envs}")
    grid = np.asarray(devices[: seeds * envs], dtype=object).reshape(seeds, envs)
    return Mesh(grid, (SEEDS, ENVS))


def constrain_batch(x, mesh: Mesh | None):
    """Split the leading (batch) axis of every leaf of ``x`` over the mesh's ``envs`` axis.

    Identity when ``mesh`` is None or has a single ``envs`` device, so the trainer
    calls it unconditionally.
    """
    if mesh is None or mesh.shape[ENVS] == 1:
        return x
    sharding = NamedSharding(mesh, PartitionSpec(ENVS))
    return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, sharding), x)


def check_divisible(trainer, mesh: Mesh) -> None:
    """Raise ``ValueError`` unless ``num_envs`` and ``batch_size`` split evenly over ``envs``."""
    k = mesh.shape[ENVS]
    c = trainer.config
    for name in ("num_envs", "batch_size"):
        v = getattr(c, name)
        if v % k:
            raise ValueError(f"TrainConfig.{name}={v} must be a multiple of the mesh's envs axis size {k}")


def sharded_train(trainer, mesh: Mesh) -> Callable[[jax.Array], tuple]:
    """``jit(vmap(train))`` over a seed batch, split over ``mesh``.

    Returns ``train(rngs (S, ...)) -> (state, metrics)`` with leading seed axis
    ``S``, a multiple of the ``seeds`` axis size.
    """
    check_divisible(trainer, mesh)
    trainer = dataclasses.replace(trainer, mesh=mesh)
    seed_sharding = NamedSharding(mesh, PartitionSpec(SEEDS))
    fn = jax.jit(jax.vmap(trainer.train, spmd_axis_name=SEEDS), in_shardings=seed_sharding)

    def train(rngs: jax.Array):
        if rngs.shape[0] % mesh.shape[SEEDS]:
            raise ValueError(
                f"the number of seeds ({rngs.shape[0]}) must be a multiple of the mesh's seeds axis size "
                f"{mesh.shape[SEEDS]}"
            )
        return fn(rngs)

    return train
