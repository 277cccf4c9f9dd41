"""Train one config over a ``(seeds, envs)`` mesh spanning several processes (machines).

Start one process per machine, all with the same options except ``--process-id``;
process 0 also runs the coordinator on ``--coordinator``'s port and writes the
result. On 2 machines with 8 GPUs each (16 seeds, 2 per mesh row, the gradient
all-reduce of each seed inside one machine)::

    # machine 0 (10.0.0.1)                  # machine 1
    python scripts/train_multihost.py \\      python scripts/train_multihost.py \\
      --coordinator 10.0.0.1:29400 \\           --coordinator 10.0.0.1:29400 \\
      --num-processes 2 --process-id 0 \\       --num-processes 2 --process-id 1 \\
      --env pendulum_goal --method cse \\       --env pendulum_goal --method cse \\
      --mesh-seeds 2 --seeds 16 \\              --mesh-seeds 2 --seeds 16 \\
      --out runs/multihost.json                 --out runs/multihost.json

(``--mesh-envs`` defaults to the devices left after ``--mesh-seeds``.) On one
machine, for testing, give each process its CPU devices with
``--local-device-count`` (``JAX_PLATFORMS=cpu``). With ``--num-processes 1`` (the
default) no coordinator is needed: one process, the same program.

Process 0 writes ``--out``: a JSON file (atomically) with the resolved config, the
mesh, the processes and their devices, the seed keys and the per-seed metrics
``(seeds, iterations)``; with ``--params-out``, also an ``.npz`` of the per-seed
final policy parameters (one array per leaf, leading seed axis). No checkpoints:
a multi-host run cannot be resumed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import time
from typing import Any, Sequence

from zsgjax import distributed
from zsgjax.options import ArgumentParser, add_env_options, configure_compile_cache, env_kwargs_from_args

PROG = "train_multihost"
FORMAT = 1
# TrainConfig fields with an option of their own here; any other field: --train-option NAME=VALUE
FLAGS = {"env": "--env", "method": "--method", "total_steps": "--steps", "num_envs": "--num-envs", "seed": "--seed",
         "steps_per_iteration": "--steps-per-iteration", "learning_starts": "--learning-starts",
         "batch_size": "--batch-size", "buffer_size": "--buffer-size", "hidden_sizes": "--hidden-sizes",
         "env_kwargs": "--physical/--physical-range/--env-option"}


def _train_option(text: str) -> tuple[str, Any]:
    from zsgjax.options import key_value  # KEY=VALUE, VALUE read as a Python literal

    return key_value(text)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Train one config over a (seeds, envs) mesh spanning processes "
                       "(jax.distributed); process 0 writes the per-seed result.")
    run = p.add_argument_group("processes")
    run.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                     help="address of process 0's coordinator service, the same for every process "
                     "(default: $JAX_COORDINATOR_ADDRESS; not needed with --num-processes 1)")
    run.add_argument("--num-processes", type=int, default=None, metavar="N",
                     help="number of processes (default: $JAX_NUM_PROCESSES, else 1)")
    run.add_argument("--process-id", type=int, default=None, metavar="I",
                     help="this process's index in [0, N) (default: $JAX_PROCESS_ID, else 0)")
    run.add_argument("--local-device-count", type=int, default=None, metavar="K",
                     help="CPU devices of this process (CPU backend only; default: JAX's)")
    run.add_argument("--init-timeout", type=int, default=300, metavar="SECONDS",
                     help="how long to wait for every process to join (default: 300)")
    mesh = p.add_argument_group("mesh and seeds")
    mesh.add_argument("--mesh-seeds", type=int, default=1, metavar="S",
                      help="devices along the mesh's seeds axis (default: 1)")
    mesh.add_argument("--mesh-envs", type=int, default=None, metavar="E",
                      help="devices along the envs axis (default: all devices / S); S * E must be every device")
    mesh.add_argument("--seeds", type=int, default=None, metavar="N",
                      help="number of seeds, a multiple of --mesh-seeds (default: --mesh-seeds)")
    cfg = p.add_argument_group("training (TrainConfig)")
    cfg.add_argument("--env", default="simple_direction")
    cfg.add_argument("--method", default="cse")
    cfg.add_argument("--steps", dest="total_steps", type=int, default=20_000, metavar="N",
                     help="environment steps per seed (default: 20000)")
    cfg.add_argument("--num-envs", type=int, default=8, metavar="N")
    cfg.add_argument("--seed", type=int, default=0, metavar="N",
                     help="seed k trains from split(PRNGKey(seed), seeds)[k] (as zsgjax train)")
    for dest in ("steps_per_iteration", "learning_starts", "batch_size", "buffer_size"):
        cfg.add_argument(FLAGS[dest], dest=dest, type=int, default=None, metavar="N",
                         help="default: the environment's preset")
    cfg.add_argument("--hidden-sizes", type=int, nargs="+", default=None, metavar="N")
    cfg.add_argument("--train-option", nargs="+", default=None, type=_train_option, metavar="NAME=VALUE",
                     help="any other TrainConfig field, e.g. gamma=0.98 critic_lr=1e-3")
    add_env_options(cfg)
    out = p.add_argument_group("output (process 0)")
    out.add_argument("--out", default=None, metavar="PATH.json",
                     help="result file (default: runs/multihost-<env>-<method>-<UTC time>.json)")
    out.add_argument("--params-out", default=None, metavar="PATH.npz",
                     help="also write the per-seed final policy parameters")
    out.add_argument("--no-compile-cache", dest="compile_cache", action="store_false",
                     help="do not use JAX's persistent compilation cache")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The checked command line; exits with a one-line error (status 2). Imports no trainer
    and starts no JAX backend."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        n = distributed.env_value(args.num_processes, distributed.ENV_NUM_PROCESSES)
        coordinator = distributed.env_value(args.coordinator, distributed.ENV_COORDINATOR, str)
        if (1 if n is None else n) == 1 and coordinator is None:  # one process: no runtime to join
            pid = distributed.env_value(args.process_id, distributed.ENV_PROCESS_ID)
            args.num_processes, args.process_id = distributed.check_processes(1, 0 if pid is None else pid)
        else:
            args.coordinator, args.num_processes, args.process_id = distributed.resolve(
                args.coordinator, n, args.process_id)
        distributed.check_local_device_count(args.local_device_count)
        if args.init_timeout < 1:
            raise ValueError(f"--init-timeout must be >= 1 second, got {args.init_timeout}")
        if args.mesh_seeds < 1:
            raise ValueError(f"--mesh-seeds must be >= 1, got {args.mesh_seeds}")
        if args.mesh_envs is not None and args.mesh_envs < 1:
            raise ValueError(f"--mesh-envs must be >= 1, got {args.mesh_envs}")
        args.seeds = args.mesh_seeds if args.seeds is None else args.seeds
        if args.seeds < 1 or args.seeds % args.mesh_seeds:
            raise ValueError(f"--seeds must be a positive multiple of --mesh-seeds={args.mesh_seeds}, got {args.seeds}")
        if args.local_device_count is not None:
            total = args.num_processes * args.local_device_count
            envs = total // args.mesh_seeds if args.mesh_envs is None else args.mesh_envs
            if args.mesh_seeds * envs != total:
                raise ValueError(f"--mesh-seeds {args.mesh_seeds} x --mesh-envs {envs} must equal the device count "
                                 f"{total} (--num-processes {args.num_processes} x --local-device-count "
                                 f"{args.local_device_count})")
    except ValueError as e:
        parser.error(option_message(str(e)))
    return args


def option_message(message: str) -> str:
    """A library message in this command's option names: ``coordinator_address`` ->
    ``--coordinator``, ``TrainConfig.batch_size`` -> ``--batch-size``, any other
    ``TrainConfig.x`` -> ``--train-option x``."""
    names = {"coordinator_address": "--coordinator", "num_processes": "--num-processes", "process_id": "--process-id",
             "local_device_count": "--local-device-count", "seeds": "--mesh-seeds"}
    message = re.sub(r"`(\w+)`", lambda m: names.get(m.group(1), m.group(0)), message)
    return re.sub(r"\bTrainConfig\.(\w+)", lambda m: FLAGS.get(m.group(1), f"--train-option {m.group(1)}"), message)


def train_config(args: argparse.Namespace):
    """The validated ``TrainConfig`` of the options (``ValueError`` naming the bad one)."""
    from zsgjax.train import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {}
    for name, value in args.train_option or ():
        if name not in fields:
            raise ValueError(f"--train-option: '{name}' is not a TrainConfig field")
        if name in FLAGS:
            raise ValueError(f"--train-option: give '{name}' with {FLAGS[name]}")
        if name in values:
            raise ValueError(f"--train-option: '{name}' is given twice")
        values[name] = tuple(value) if isinstance(value, list) else value
    for name in ("steps_per_iteration", "learning_starts", "batch_size", "buffer_size", "hidden_sizes"):
        if getattr(args, name) is not None:
            values[name] = tuple(args.hidden_sizes) if name == "hidden_sizes" else getattr(args, name)
    return TrainConfig(env=args.env, method=args.method, total_steps=args.total_steps, num_envs=args.num_envs,
                       seed=args.seed, env_kwargs=env_kwargs_from_args(args), **values).validate()


def flat_params(params: Any) -> dict[str, Any]:
    """``{leaf path: array}`` of a parameter tree (names as ``jax.tree_util.keystr``)."""
    import jax

    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    """Train; every process returns the same result dict (process 0 also writes it)."""
    import jax
    import numpy as np

    from zsgjax import runner
    from zsgjax.reporting.files import atomic_path, write_json
    from zsgjax.train import make_train

    config = train_config(args)  # before the runtime starts: a bad option fails at once
    if args.num_processes > 1:
        distributed.initialize(args.coordinator, args.num_processes, args.process_id, args.local_device_count,
                               initialization_timeout=args.init_timeout)
    else:
        distributed.configure_cpu(args.local_device_count)
    configure_compile_cache(args.compile_cache)
    trainer = make_train(config)
    mesh = distributed.global_mesh(args.mesh_seeds, args.mesh_envs)
    keys = np.asarray(runner.seed_keys(trainer, args.seeds))
    t0 = time.perf_counter()
    result = distributed.train(trainer, mesh, keys)
    train_s = time.perf_counter() - t0
    devices = {}
    for d in jax.devices():
        devices.setdefault(str(d.process_index), []).append(d.id)
    out = {
        "format": FORMAT,
        "config": dataclasses.asdict(trainer.config),
        "num_processes": jax.process_count(),
        "devices": devices,
        "platform": jax.devices()[0].platform,
        "mesh": {name: int(size) for name, size in mesh.shape.items()},
        "mesh_devices": np.vectorize(lambda d: d.id)(mesh.devices).tolist(),
        "seeds": args.seeds,
        "seed_keys": keys,
        "train_s": round(train_s, 3),  # compilation included
        "metrics": result.metrics,
        "final_metrics": {name: np.asarray(v)[:, -1] for name, v in result.metrics.items()},
        # CRC-32 of the gathered policy parameters and metrics: every process prints its own
        "digest": distributed.array_digest((result.policy_params, result.metrics)),
    }
    print(f"{PROG}: process {jax.process_index()} of {jax.process_count()}: result digest {out['digest']}")
    if jax.process_index() == 0:
        path = args.out or os.path.join(
            "runs", f"multihost-{config.env}-{config.method}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json")
        write_json(path, out)
        if args.params_out:
            with atomic_path(args.params_out) as tmp, open(tmp, "wb") as f:
                np.savez(f, **{k: np.asarray(v) for k, v in flat_params(result.policy_params).items()})
        print(f"{PROG}: wrote {path}" + (f" and {args.params_out}" if args.params_out else ""))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except ValueError as e:
        build_parser().exit(2, f"{PROG}: error: {option_message(str(e))}; process {args.process_id}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
