"""Multi-host training through JAX's multi-controller runtime.

Every process (one per machine, or several on one machine) runs the same program:

1. :func:`initialize` -- ``jax.distributed.initialize`` with checked arguments (and,
   on the CPU, a cross-process collectives implementation and the number of local
   CPU devices). Call it first, before anything runs a JAX computation.
2. :func:`global_mesh` -- the ``('seeds', 'envs')`` mesh of :mod:`zsgjax.sharding`
   over the devices of *all* processes (``jax.devices()``), each process's devices
   contiguous in row-major order: with ``envs`` equal to the local device count,
   each process holds whole rows of seeds and the gradient all-reduce of the
   ``envs`` axis stays inside a process.
3. :func:`train` -- :func:`zsgjax.sharding.sharded_train` on a process-spanning
   seed-key array; the per-seed policy parameters and metrics are gathered to every
   process as NumPy arrays, equal on all processes and equal to what one process
   with the same mesh shape computes.

Every process must be given the same trainer, mesh shape and keys;
:func:`check_same_everywhere` fails loudly when they differ (instead of a hang or
a silently wrong result).

The coordinator and the process count/index come from the arguments, else from the
environment variables ``JAX_COORDINATOR_ADDRESS`` (read by JAX itself too),
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (read here only).

Example, on each of 2 machines (``I`` = 0, 1)::

    from zsgjax import distributed
    distributed.initialize("10.0.0.1:29400", num_processes=2, process_id=I)
    mesh = distributed.global_mesh(seeds=2)                # envs: the rest of the devices
    result = distributed.train(make_train(config), mesh, keys)   # keys (S, 2), the same everywhere

See ``scripts/train_multihost.py`` for the command line and docs/sharding.md.
"""

from __future__ import annotations

import json
import os
import zlib
from typing import Any, NamedTuple, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from zsgjax import checks, sharding

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


# ------------------------------------------------------------------ checks (no JAX)
def check_coordinator(address: Any, name: str = "coordinator_address") -> tuple[str, int]:
    """``(host, port)`` of a ``host:port`` address, or ``ValueError`` naming ``name``.

    The host is a name or an IPv4 address, or an IPv6 address in brackets
    (``[::1]:1234``); the port an integer in [1, 65535].
    """
    if not isinstance(address, str) or not address.strip():
        raise ValueError(f"`{name}` must be 'host:port' (e.g. 10.0.0.1:29400), got {address!r}")
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or (":" in host and not (host.startswith("[") and host.endswith("]"))):
        raise ValueError(f"`{name}` must be 'host:port' (e.g. 10.0.0.1:29400; IPv6 as [::1]:29400), got {address!r}")
    if host.startswith("[") and len(host) == 2:
        raise ValueError(f"`{name}`: empty IPv6 host in {address!r}")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 1 <= number <= 65535 or not port.isdigit():
        raise ValueError(f"`{name}`: the port must be an integer in [1, 65535], got {port!r} in {address!r}")
    return host, number


def check_processes(num_processes: Any, process_id: Any) -> tuple[int, int]:
    """``(num_processes, process_id)`` as ints, or ``ValueError`` unless
    ``num_processes >= 1`` and ``process_id`` is in ``[0, num_processes)``."""
    n = checks.integer(num_processes, "`num_processes`")
    if n < 1:
        raise ValueError(f"`num_processes` must be >= 1, got {n}")
    i = checks.integer(process_id, "`process_id`")
    if not 0 <= i < n:
        raise ValueError(f"`process_id` must be in [0, num_processes={n}), i.e. 0..{n - 1}; got {i}")
    return n, i


def check_local_device_count(count: Any) -> int | None:
    """``None`` or an int >= 1, else ``ValueError`` naming ``local_device_count``."""
    if count is None:
        return None
    n = checks.integer(count, "`local_device_count`")
    if n < 1:
        raise ValueError(f"`local_device_count` must be >= 1 (CPU devices of this process), got {n}")
    return n


def env_value(value: Any, variable: str, cast=int) -> Any:
    """``value``, else the environment variable ``variable`` read with ``cast`` (``None`` when unset)."""
    if value is not None or variable not in os.environ:
        return value
    text = os.environ[variable]
    try:
        return cast(text)
    except ValueError:
        raise ValueError(f"environment variable {variable} must be an integer, got {text!r}") from None


def resolve(coordinator_address: str | None = None, num_processes: int | None = None,
            process_id: int | None = None) -> tuple[str, int, int]:
    """The checked ``(coordinator_address, num_processes, process_id)``: the arguments,
    else the environment variables (module docstring); ``ValueError`` for a missing
    or bad one. Imports and starts nothing."""
    address = env_value(coordinator_address, ENV_COORDINATOR, str)
    n = env_value(num_processes, ENV_NUM_PROCESSES)
    i = env_value(process_id, ENV_PROCESS_ID)
    for value, name, variable in ((address, "coordinator_address", ENV_COORDINATOR),
                                  (n, "num_processes", ENV_NUM_PROCESSES), (i, "process_id", ENV_PROCESS_ID)):
        if value is None:
            raise ValueError(f"`{name}` is not given (argument, or environment variable {variable})")
    check_coordinator(address)
    n, i = check_processes(n, i)
    return address.strip(), n, i


# ------------------------------------------------------------------ runtime
def configure_cpu(local_device_count: int | None = None) -> None:
    """Before the backends start: ``local_device_count`` CPU devices in this process
    (``jax_num_cpu_devices``; older JAX: ``--xla_force_host_platform_device_count``)
    and a cross-process CPU collectives implementation (``gloo``, unless one is set).

    Affects the CPU backend only; GPUs are chosen with ``CUDA_VISIBLE_DEVICES`` or
    ``local_device_ids`` of :func:`initialize`.
    """
    count = check_local_device_count(local_device_count)
    values = jax.config.values
    impl = "jax_cpu_collectives_implementation"
    if impl in values and values[impl] in (None, "none"):
        jax.config.update(impl, "gloo")
    elif impl not in values and "jax_cpu_enable_gloo_collectives" in values:
        jax.config.update("jax_cpu_enable_gloo_collectives", True)  # JAX < 0.4.36
    if count is None:
        return
    if "jax_num_cpu_devices" in values:
        jax.config.update("jax_num_cpu_devices", count)
    else:
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
        os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={count}"])


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, local_device_count: int | None = None, *,
               local_device_ids: Sequence[int] | None = None, initialization_timeout: int = 300) -> None:
    """Join the multi-controller runtime: :func:`resolve` the arguments, :func:`configure_cpu`,
    then ``jax.distributed.initialize``.

    Call it once per process, before any JAX computation (JAX raises ``RuntimeError``
    otherwise). Process 0 also runs the coordinator service on the address's port.
    ``initialization_timeout`` (seconds): how long to wait for all processes to join.
    """
    address, n, i = resolve(coordinator_address, num_processes, process_id)
    if isinstance(initialization_timeout, bool) or not isinstance(initialization_timeout, int) \
            or initialization_timeout < 1:
        raise ValueError(f"`initialization_timeout` must be an integer number of seconds >= 1, "
                         f"got {initialization_timeout!r}")
    configure_cpu(local_device_count)
    kwargs: dict[str, Any] = dict(coordinator_address=address, num_processes=n, process_id=i,
                                  initialization_timeout=initialization_timeout)
    if local_device_ids is not None:
        kwargs["local_device_ids"] = list(local_device_ids)
    jax.distributed.initialize(**kwargs)


def global_mesh(seeds: int = 1, envs: int | None = None) -> Mesh:
    """:func:`zsgjax.sharding.make_mesh` over all processes' devices, ordered by
    process then local id (row-major: one process's devices are adjacent along ``envs``).

    With several processes the mesh must use every device (``seeds * envs`` equal to
    ``jax.device_count()``): each process runs its share of the one program.
    """
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    mesh = sharding.make_mesh(seeds, envs, devices=devices)
    if jax.process_count() > 1 and mesh.devices.size != len(devices):
        raise ValueError(f"`seeds * envs` must equal the device count {len(devices)} of all "
                         f"{jax.process_count()} processes; got {seeds} * {mesh.shape[sharding.ENVS]}")
    return mesh


def global_array(local: Any, sharding_: NamedSharding) -> jax.Array:
    """A global ``jax.Array`` from the full value ``local``, which every process holds
    in full (each process places the slices its devices own)."""
    value = np.asarray(local)
    return jax.make_array_from_callback(value.shape, sharding_, lambda index: value[index])


def gather(tree: Any) -> Any:
    """Every leaf as a full NumPy array on every process (a collective: all processes call it)."""
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def fingerprint(obj: Any) -> int:
    """A CRC-32 of ``obj``'s JSON text (keys sorted; non-JSON values by ``repr``)."""
    return zlib.crc32(json.dumps(obj, sort_keys=True, default=repr).encode())


def array_digest(tree: Any) -> int:
    """A CRC-32 of every leaf's shape, dtype and bytes (in tree order): equal digests, equal values."""
    crc = 0
    for leaf in jax.tree.leaves(tree):
        a = np.ascontiguousarray(np.asarray(leaf))
        crc = zlib.crc32(f"{a.shape}{a.dtype}".encode(), crc)
        crc = zlib.crc32(a.tobytes(), crc)
    return crc


def check_same_everywhere(obj: Any, what: str) -> None:
    """``ValueError`` on every process unless all processes pass an equal ``obj`` (a collective)."""
    if jax.process_count() == 1:
        return
    mine = np.asarray([fingerprint(obj)], dtype=np.uint32)
    everyone = np.asarray(gather(mine)).reshape(-1)
    differ = [p for p, v in enumerate(everyone.tolist()) if v != everyone[0]]
    if differ:
        raise ValueError(f"{what} differ between processes: processes {differ} do not match process 0 "
                         f"(start every process with the same options)")


class Result(NamedTuple):
    """What :func:`train` returns. ``state``: the final ``TrainState`` as global arrays
    (leading seed axis ``S``, split over the mesh); ``policy_params`` and ``metrics``
    (each ``(S, num_iterations)``): NumPy, in full on every process."""

    state: Any
    policy_params: Any
    metrics: dict[str, np.ndarray]


def train(trainer, mesh: Mesh, keys: Any) -> Result:
    """Train the seeds ``keys (S, 2)`` (``uint32`` PRNG keys, the same on every process;
    ``S`` a multiple of the ``seeds`` axis) with :func:`zsgjax.sharding.sharded_train`
    over ``mesh``; every process must call it with the same arguments.

    ``ValueError`` when ``num_envs`` / ``batch_size`` do not split over ``envs``,
    ``S`` does not split over ``seeds``, or the processes were given different
    configs, mesh shapes or keys.
    """
    keys = np.asarray(keys)
    check_same_everywhere({"config": trainer.config, "mesh": dict(mesh.shape), "keys": keys.tolist()},
                          "the training config, mesh shape or seed keys")
    fn = sharding.sharded_train(trainer, mesh)
    if keys.ndim < 1 or keys.shape[0] % mesh.shape[sharding.SEEDS]:
        raise ValueError(f"the number of seeds ({keys.shape[0] if keys.ndim else 0}) must be a multiple of the "
                         f"mesh's seeds axis size {mesh.shape[sharding.SEEDS]}")
    spec = PartitionSpec(sharding.SEEDS, *([None] * (keys.ndim - 1)))
    state, metrics = fn(global_array(keys, NamedSharding(mesh, spec)))
    params, metrics = gather((jax.vmap(trainer.policy_params)(state), metrics))
    return Result(state=state, policy_params=params, metrics=dict(metrics))
