"""Multi-host training through JAX's multi-controller runtime: joining it, the
process-spanning mesh, and the few collectives the run driver needs.

Every process (one per machine, or several on one machine) runs the same program:

1. :func:`initialize` -- checks its arguments, meets the other processes at the
   coordinator (:func:`rendezvous`: a busy coordinator port, a duplicate process id,
   processes started with different options or a missing peer each end in one
   clear error, instead of JAX's C++ abort), then ``jax.distributed.initialize``
   (on the CPU with a cross-process collectives implementation and the number of
   local CPU devices). Call it first, before anything runs a JAX computation.
2. :func:`global_mesh` -- the ``('seeds', 'envs')`` mesh of :mod:`zsgjax.sharding`
   over the devices of *all* processes (``jax.devices()``), each process's devices
   contiguous in row-major order: with ``envs`` equal to the local device count,
   each process holds whole rows of seeds and the gradient all-reduce of the
   ``envs`` axis stays inside a process.
3. :func:`zsgjax.runner.run` with that mesh -- the one run driver: chunks,
   checkpoints (written by process 0), ``resume``, divergence checks, evaluation
   and results (process 0 writes). It uses :func:`share_errors`,
   :func:`broadcast_from_0` and :func:`check_same_everywhere` from here.

The coordinator and the process count/index come from the arguments, else from the
environment variables ``JAX_COORDINATOR_ADDRESS`` (read by JAX itself too),
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (read here only).

Example, on each of 2 machines (``I`` = 0, 1)::

    from zsgjax import distributed, runner
    distributed.initialize("10.0.0.1:29400", num_processes=2, process_id=I)
    mesh = distributed.global_mesh(seeds=2)                # envs: the rest of the devices
    runs = runner.run({"cse": trainer}, "runs/multihost", runner.RunSpec(seeds=16), mesh=mesh)

``zsgjax train --coordinator ... --num-processes N --process-id I`` (and
``scripts/train_multihost.py``) is that, from the command line; docs/sharding.md.
"""

from __future__ import annotations

import json
import os
import socket
import time
import zlib
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

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



# ------------------------------------------------------------------ rendezvous (sockets, no JAX)
class RendezvousError(ValueError):
    """The processes of a multi-host run could not meet: a busy port, a duplicate id,
    different options or a missing process."""


def _send_line(conn: socket.socket, obj: Any) -> None:
    conn.sendall((json.dumps(obj) + "\n").encode())


def _recv_line(conn: socket.socket, deadline: float) -> Any:
    """One JSON line from ``conn`` before ``deadline`` (``time.monotonic``); ``None`` when the
    peer closed, timed out or sent something else."""
    data = b""
    while not data.endswith(b"\n"):
        conn.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = conn.recv(4096)
        except OSError:
            return None
        if not chunk or len(data) > 1 << 16:
            return None
        data += chunk
    try:
        return json.loads(data)
    except ValueError:
        return None


def rendezvous(coordinator_address: str, num_processes: int, process_id: int, timeout_s: float = 300.0,
               options: Any = None) -> None:
    """Meet every process of the run at the coordinator before ``jax.distributed.initialize``.

    Process 0 listens on the coordinator's port (on all interfaces, as JAX's
    coordinator service will) until processes ``1 .. N-1`` have each registered
    once; every other process connects (retrying until ``timeout_s``), sends its id,
    host and a fingerprint of ``options`` (any JSON-able value, e.g. the command line
    without the process id), and waits for process 0's verdict. Then process 0
    closes the port for JAX to use. :class:`RendezvousError` (the same message on
    every process that can be told) when the port is busy, an id is out of range or
    registered twice, a process's ``options`` differ from process 0's, or a process
    is missing at ``timeout_s`` (naming the coordinator and the missing ids).
    ``num_processes == 1``: nothing to meet.
    """
    host, port = check_coordinator(coordinator_address)
    n, me = check_processes(num_processes, process_id)
    if n == 1:
        return
    deadline = time.monotonic() + float(timeout_s)
    mine = fingerprint(options)
    if me == 0:
        _rendezvous_coordinator(coordinator_address, port, n, mine, deadline, timeout_s)
    else:
        _rendezvous_peer(coordinator_address, host, port, me, mine, deadline, timeout_s)


def _rendezvous_coordinator(address: str, port: int, n: int, mine: int, deadline: float, timeout_s: float) -> None:
    family = socket.AF_INET6 if socket.has_dualstack_ipv6() else socket.AF_INET
    try:
        server = socket.create_server(("", port), family=family, dualstack_ipv6=family == socket.AF_INET6)
    except OSError as e:
        raise RendezvousError(f"process 0 cannot open the coordinator port {port} of {address} ({e.strerror or e}): "
                              "another program (an earlier run?) is using it; choose another port in the "
                              "coordinator address") from None
    joined: dict[int, str] = {}  # process id -> where it runs
    peers: list[socket.socket] = []  # every registered connection, told the verdict
    error = None
    try:
        with server:
            while error is None and len(joined) < n - 1:
                server.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    conn, peer = server.accept()
                except socket.timeout:
                    missing = [i for i in range(1, n) if i not in joined]
                    error = (f"timed out after {timeout_s:g} s waiting at the coordinator {address} for process(es) "
                             f"{missing} of {n} (joined: {[0] + sorted(joined)}); start every process with the same "
                             "coordinator address and number of processes")
                    break
                hello = _recv_line(conn, min(deadline, time.monotonic() + 10.0))
                if not isinstance(hello, dict) or not isinstance(hello.get("process_id"), int):
                    conn.close()  # not one of ours (a port scanner, a stray client): ignore it
                    continue
                peers.append(conn)
                i, who = hello["process_id"], f"{hello.get('host', '?')} ({peer[0]})"
                if not 1 <= i < n:
                    error = f"a process on {who} says it is process {i}, outside 1..{n - 1} of {n} processes"
                elif i in joined:
                    error = (f"process id {i} was given to two processes, on {joined[i]} and on {who}; give each "
                             f"process its own id in 0..{n - 1}")
                elif hello.get("fingerprint") != mine:
                    error = (f"process {i} (on {who}) was started with other options than process 0; start every "
                             "process with the same options (only the process id differs)")
                joined[i] = who
        for conn in peers:
            try:
                _send_line(conn, {"error": error})
                _recv_line(conn, time.monotonic() + 5.0)  # the peer closes first: no TIME_WAIT on the port
            except OSError:
                pass
    finally:
        for conn in peers:
            conn.close()
    if error is not None:
        raise RendezvousError(f"process 0: {error}")


def _rendezvous_peer(address: str, host: str, port: int, me: int, mine: int, deadline: float,
                     timeout_s: float) -> None:
    host = host[1:-1] if host.startswith("[") else host
    while True:
        try:
            conn = socket.create_connection((host, port), timeout=max(0.01, min(5.0, deadline - time.monotonic())))
            break
        except OSError as e:
            if time.monotonic() >= deadline:
                raise RendezvousError(f"process {me}: could not reach the coordinator {address} within {timeout_s:g} s "
                                      f"({e.strerror or e}); is process 0 running there, with the same coordinator "
                                      "address?") from None
            time.sleep(0.1)
    with conn:
        try:
            _send_line(conn, {"process_id": me, "host": socket.gethostname(), "fingerprint": mine})
        except OSError:
            pass
        verdict = _recv_line(conn, deadline + 10.0)
    if not isinstance(verdict, dict):
        raise RendezvousError(f"process {me}: the coordinator {address} gave no answer within {timeout_s:g} s "
                              "(is it a zsgjax process 0, still waiting for others, or did it stop?)")
    if verdict.get("error"):
        raise RendezvousError(f"process {me}: {verdict['error']} (reported by process 0)")

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
               local_device_ids: Sequence[int] | None = None, initialization_timeout: int = 300,
               options: Any = None) -> None:
    """Join the multi-controller runtime: :func:`resolve` the arguments, :func:`rendezvous`
    with the other processes, :func:`configure_cpu`, then ``jax.distributed.initialize``.

    Call it once per process, before any JAX computation (JAX raises ``RuntimeError``
    otherwise). Process 0 also runs the coordinator service on the address's port.
    ``initialization_timeout`` (seconds): how long to wait for all processes to join;
    ``options``: a JSON-able value that must be equal on every process (e.g. the
    command line without the process id). :class:`RendezvousError` when the
    processes cannot meet (see :func:`rendezvous`).
    """
    address, n, i = resolve(coordinator_address, num_processes, process_id)
    if isinstance(initialization_timeout, bool) or not isinstance(initialization_timeout, int) \
            or initialization_timeout < 1:
        raise ValueError(f"`initialization_timeout` must be an integer number of seconds >= 1, "
                         f"got {initialization_timeout!r}")
    check_local_device_count(local_device_count)
    rendezvous(address, n, i, initialization_timeout, options)
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


def mismatched(fingerprints: Sequence[int]) -> list[int]:
    """The process indices whose fingerprint differs from process 0's."""
    values = [int(v) for v in fingerprints]
    return [p for p, v in enumerate(values) if v != values[0]]


def check_same_everywhere(obj: Any, what: str) -> None:
    """``ValueError`` on every process unless all processes pass an equal ``obj`` (a collective)."""
    if jax.process_count() == 1:
        return
    everyone = np.asarray(gather(np.asarray([fingerprint(obj)], dtype=np.uint32))).reshape(-1)
    differ = mismatched(everyone.tolist())
    if differ:
        raise ValueError(f"{what} differ between processes: processes {differ} do not match process 0 "
                         f"(start every process with the same options)")


MESSAGE_BYTES = 2048  # of an error message shared between processes (longer ones are cut)


def share_errors(error: str | None) -> None:
    """Raise on every process when any process has an ``error`` (a collective in a
    multi-process run; every process calls it, with ``None`` when all is well).

    The ``ValueError`` names the first failing process and its message. Used where one
    process checks what the others cannot see (process 0's output directory and
    checkpoints), so that no process goes on into a collective the failed one never
    joins. With one process: ``ValueError(error)`` when ``error`` is given.
    """
    if jax.process_count() == 1:
        if error is not None:
            raise ValueError(error)
        return
    data = np.zeros(MESSAGE_BYTES + 1, np.uint8)
    if error is not None:
        text = error.encode()[:MESSAGE_BYTES]
        data[0] = 1
        data[1:1 + len(text)] = np.frombuffer(text, np.uint8)
    everyone = np.asarray(gather(data[None])).reshape(jax.process_count(), MESSAGE_BYTES + 1)
    failed = [p for p in range(len(everyone)) if everyone[p, 0]]
    if failed:
        text = everyone[failed[0], 1:].tobytes().rstrip(b"\0").decode(errors="replace")
        raise ValueError(text if failed[0] == jax.process_index() else f"process {failed[0]}: {text}")


def broadcast_from_0(tree: Any) -> Any:
    """Process 0's values of a tree of NumPy-convertible leaves, on every process, bit for bit
    (the bytes travel, so ``-0.0`` and NaN payloads survive); a collective. Every process
    passes a tree of the same structure, shapes and dtypes."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    from jax.experimental import multihost_utils

    leaves, treedef = jax.tree.flatten(jax.tree.map(np.asarray, tree))
    raw = [np.ascontiguousarray(leaf).reshape(-1).view(np.uint8) for leaf in leaves]
    got = multihost_utils.broadcast_one_to_all(raw)
    out = [np.asarray(g).astype(np.uint8).view(leaf.dtype).reshape(leaf.shape) for g, leaf in zip(got, leaves)]
    return jax.tree.unflatten(treedef, out)
