"""Multi-device training with ``jax.sharding``.

A 2-D device :class:`~jax.sharding.Mesh` with axes ``('seeds', 'envs')``:

* ``seeds`` -- independent agents: the leading seed axis of the training state
  (``trainer.run_seeds``) is split over these devices by the programs' input and
  output shardings; no communication at all.
* ``envs`` -- data parallelism for one agent: the ``num_envs`` parallel
  environments and every replay batch are split over these devices; the losses
  are means over the batch, so XLA's SPMD partitioner inserts the all-reduce that
  averages the gradients. Parameters, optimiser states and the replay buffer are
  replicated.

Nothing here changes the program's mathematics: a sharded run computes what the
single-device run computes (up to float re-association in the gradient
all-reduce). Tested on CPU with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``.

The run driver (:func:`zsgjax.runner.train`, ``zsgjax train --mesh-seeds S``) trains
on a mesh through a :class:`Placement`; this module holds only the mesh and the
placement of the seed-batched state.

Example::

    mesh = make_mesh(seeds=2, envs=2)                   # 4 devices
    runner.run({"cse": trainer}, "runs/mesh", RunSpec(seeds=4), mesh=mesh)
"""

from __future__ import annotations

import dataclasses
from typing import Any

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


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where the seed-batched training state of a run lives, and how it comes back to the host.

    ``mesh=None``: the default device, and the programs are plain ``jax.jit`` ones (the
    single-device run, unchanged). Otherwise a ``(seeds, envs)`` mesh, possibly over the
    devices of several processes (:func:`zsgjax.distributed.global_mesh`): every leaf's
    leading seed axis ``S`` is split over ``seeds``; inside the program the trainer
    splits each seed's batch over ``envs``. Every process of a multi-process run calls
    the same methods in the same order (:meth:`place` and :meth:`to_host` are collectives
    there).
    """

    mesh: Mesh | None = None

    @property
    def seed_sharding(self) -> NamedSharding | None:
        """The sharding of every state leaf (leading axis over ``seeds``); ``None`` without a mesh."""
        return None if self.mesh is None else NamedSharding(self.mesh, PartitionSpec(SEEDS))

    @property
    def multiprocess(self) -> bool:
        """Whether the mesh holds devices of other processes (its arrays are not all addressable here)."""
        return self.mesh is not None and any(d.process_index != jax.process_index() for d in self.mesh.devices.flat)

    def prepare(self, trainer, seeds: int):
        """``trainer`` set to split its batches over the mesh (``ValueError`` when ``num_envs``,
        ``batch_size`` or ``seeds`` do not split over the mesh's axes); unchanged without a mesh."""
        if self.mesh is None:
            return trainer
        check_divisible(trainer, self.mesh)
        if seeds % self.mesh.shape[SEEDS]:
            raise ValueError(f"the number of seeds ({seeds}) must be a multiple of the mesh's seeds axis size "
                             f"{self.mesh.shape[SEEDS]}")
        return dataclasses.replace(trainer, mesh=self.mesh)

    def jit(self, fn, donate: bool = False):
        """``jax.jit(fn)`` of a function of one seed-batched tree whose outputs are seed-batched
        trees; on a mesh with inputs and outputs split over ``seeds``."""
        donate_argnums = (0,) if donate else ()
        if self.mesh is None:
            return jax.jit(fn, donate_argnums=donate_argnums)
        return jax.jit(fn, in_shardings=self.seed_sharding, out_shardings=self.seed_sharding,
                       donate_argnums=donate_argnums)

    def place(self, tree: Any) -> Any:
        """A seed-batched tree held in full by every process (NumPy or local arrays) as arrays
        split over ``seeds`` (each process places the slices its devices own); unchanged
        without a mesh."""
        if self.mesh is None:
            return tree
        sharding = self.seed_sharding
        if not self.multiprocess:
            return jax.device_put(tree, sharding)

        def one(leaf):
            value = np.asarray(leaf)
            return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

        return jax.tree.map(one, tree)

    def to_host(self, tree: Any) -> Any:
        """Every leaf as a full NumPy array on every process (an all-gather across processes)."""
        if not self.multiprocess:
            return jax.tree.map(np.asarray, tree)
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
