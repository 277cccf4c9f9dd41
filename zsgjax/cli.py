"""The ``zsgjax`` command line (also ``python -m zsgjax``).

``zsgjax train`` trains one or several methods on one environment, every seed of a
method in **one** ``jax.jit(jax.vmap(trainer.run))`` program run in chunks; after
each chunk it prints a progress line, rewrites the metrics CSV, logs TensorBoard
scalars (when ``tensorboardX`` is installed) and saves an orbax checkpoint. At the
end each method is evaluated zero-shot on the environment's context grid and the
generalization table is printed and written with the plot.

Output directory (``--out``, default ``runs/<env>-<UTC time>``)::

    run.json                    the command's options and each method's resolved config
    <method>/metrics.csv        one row per (iteration, seed)
    <method>/checkpoints/<it>/  orbax checkpoints (last --keep), <it> = iterations done
    <method>/tensorboard/       TensorBoard events (mean over seeds)
    generalization.txt          the printed table (named contexts + sweep means)
    generalization.csv / .json  every grid point (JSON holds the raw returns)
    generalization.png          return vs context per swept dimension

``--resume`` continues every method from its latest checkpoint in ``--out`` (a
finished method is only re-evaluated); the result equals an uninterrupted run.

Every ``TrainConfig`` hyper-parameter is an option (``--cse-epsilon 0.05``,
``--hidden-sizes 64 64``, ``--no-normalize-obs`` ...); unset ones keep the
environment's defaults. Bad options exit with status 2 and a message naming the
option and what it accepts.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import os
import time
import types
import typing
from typing import Any, Sequence

import jax
import numpy as np

from zsgjax import evaluate as ev
from zsgjax import plotting
from zsgjax import train as train_lib
from zsgjax.checkpoint import Checkpointer
from zsgjax.envs import registered_names
from zsgjax.fileio import atomic_write

# The README's main job: ``zsgjax train`` with no arguments.
DEFAULT_ENV = "simple_direction"
DEFAULT_METHODS = ("vanilla", "cse")
DEFAULT_SEEDS = 3

# TrainConfig fields with their own option names; the rest are generated.
_OWN_FIELDS = {"env", "method", "total_steps", "num_envs", "seed"}
_CHOICES = {"cse_mode": train_lib.CSE_MODES, "cse_storage": train_lib.CSE_STORAGES}


# ---------------------------------------------------------------------- parser
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _add_config_options(group: argparse._ArgumentGroup) -> None:
    """One option per TrainConfig hyper-parameter, typed from its annotation."""
    hints = typing.get_type_hints(train_lib.TrainConfig)
    for field in dataclasses.fields(train_lib.TrainConfig):
        if field.name in _OWN_FIELDS:
            continue
        tp = hints[field.name]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            (tp,) = [a for a in typing.get_args(tp) if a is not type(None)]
        flag = "--" + field.name.replace("_", "-")
        if field.default is not None:
            shown = repr(field.default)
        elif field.name in train_lib.BASE_DEFAULTS:
            shown = f"{train_lib.BASE_DEFAULTS[field.name]!r} unless the environment sets its own"
        else:
            shown = "derived from the other options"
        kwargs: dict[str, Any] = dict(dest=field.name, default=None, help=f"TrainConfig.{field.name} (default: {shown})")
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) is tuple:
            kwargs.update(nargs="+", type=typing.get_args(tp)[0], metavar="N")
        elif typing.get_origin(tp) is typing.Literal:
            values = typing.get_args(tp)
            kwargs.update(type=type(values[0]), choices=values)
        else:
            kwargs["type"] = tp
            if field.name in _CHOICES:
                kwargs["choices"] = _CHOICES[field.name]
            else:
                kwargs["metavar"] = tp.__name__.upper()
        group.add_argument(flag, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zsgjax", description="Zero-shot context generalization in RL, in JAX.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "train",
        help="train methods on an environment, evaluate them zero-shot, print the generalization table",
        description="Train one or several methods (all seeds of a method in one jitted vmap program), "
        "then evaluate every seed over the context grid and write table, CSV/JSON and plot.",
    )
    run = p.add_argument_group("run")
    run.add_argument("--env", default=DEFAULT_ENV, help=f"environment, one of: {', '.join(registered_names())} (default: %(default)s)")
    run.add_argument("--method", nargs="+", default=list(DEFAULT_METHODS), metavar="METHOD",
                     help=f"one or several of: {', '.join(train_lib.METHODS)} (default: {' '.join(DEFAULT_METHODS)})")
    run.add_argument("--seeds", type=_positive_int, default=DEFAULT_SEEDS, help="number of seeds, vmapped in one program (default: %(default)s)")
    run.add_argument("--seed", type=int, default=0, help="base seed; seed k uses split(PRNGKey(seed), seeds)[k] (default: %(default)s)")
    run.add_argument("--steps", type=_positive_int, default=train_lib.TrainConfig.total_steps,
                     help="environment steps per seed, all parallel environments together (default: %(default)s)")
    run.add_argument("--num-envs", type=_positive_int, default=train_lib.TrainConfig.num_envs,
                     help="parallel environments per seed (default: %(default)s)")
    run.add_argument("--out", default=None, help="output directory (default: runs/<env>-<UTC time>)")
    run.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    run.add_argument("--chunks", type=_positive_int, default=10,
                     help="training runs in this many jitted chunks: a progress line and a checkpoint after each "
                     "(default: %(default)s)")
    run.add_argument("--keep", type=_positive_int, default=2, help="checkpoints kept per method (default: %(default)s)")
    run.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=True,
                     help="write TensorBoard events when tensorboardX is installed (default: on)")
    evg = p.add_argument_group("evaluation")
    evg.add_argument("--eval-episodes", type=_positive_int, default=10, help="episodes per context and seed (default: %(default)s)")
    evg.add_argument("--sweep-points", type=_positive_int, default=9, help="points per swept context dimension, >= 2 (default: %(default)s)")
    _add_config_options(p.add_argument_group("hyper-parameters (TrainConfig)"))
    p.set_defaults(handler=_train_command, subparser=p)
    return parser


# ------------------------------------------------------------------- the spec
@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """A validated ``zsgjax train`` invocation."""

    env: str
    methods: tuple[str, ...]
    num_seeds: int
    trainers: tuple[train_lib.Trainer, ...]  # one per method
    out: str
    resume: bool
    chunks: int
    keep: int
    tensorboard: bool
    eval_episodes: int
    sweep_points: int


def spec_from_args(args: argparse.Namespace) -> TrainSpec:
    """Check the options and build one trainer per method; ``ValueError`` on bad input."""
    if args.env not in registered_names():
        raise ValueError(f"--env: unknown environment '{args.env}'; choose one of: {', '.join(registered_names())}")
    methods = tuple(dict.fromkeys(args.method))
    unknown = [m for m in methods if m not in train_lib.METHODS]
    if unknown:
        raise ValueError(f"--method: unknown method(s) {', '.join(unknown)}; choose from: {', '.join(train_lib.METHODS)}")
    if args.sweep_points < 2:
        raise ValueError(f"--sweep-points must be >= 2, got {args.sweep_points}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    hyper = {f.name: getattr(args, f.name) for f in dataclasses.fields(train_lib.TrainConfig)
             if f.name not in _OWN_FIELDS and getattr(args, f.name) is not None}
    if "hidden_sizes" in hyper:
        hyper["hidden_sizes"] = tuple(hyper["hidden_sizes"])
    trainers = tuple(
        train_lib.make_train(  # validates: ValueError naming the field and its range
            train_lib.TrainConfig(env=args.env, method=m, total_steps=args.steps, num_envs=args.num_envs,
                                  seed=args.seed, **hyper)
        )
        for m in methods
    )
    if args.resume and not args.out:
        raise ValueError("--resume needs --out naming the run directory to continue")
    out = args.out or os.path.join("runs", f"{args.env}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    if args.resume and not os.path.isdir(out):
        raise ValueError(f"--resume: output directory '{out}' does not exist")
    return TrainSpec(
        env=args.env, methods=methods, num_seeds=args.seeds, trainers=trainers, out=out, resume=args.resume,
        chunks=args.chunks, keep=args.keep, tensorboard=args.tensorboard, eval_episodes=args.eval_episodes,
        sweep_points=args.sweep_points,
    )


# -------------------------------------------------------------------- metrics
class MetricsLog:
    """Per-iteration, per-seed metrics of one method as CSV (rewritten atomically) and TensorBoard."""

    def __init__(self, directory: str, tensorboard: bool, start_iteration: int, start_step: int):
        self.path = os.path.join(directory, "metrics.csv")
        self.header: list[str] | None = None
        self.rows: list[list[str]] = []
        if start_iteration > 0 and os.path.exists(self.path):
            with open(self.path, newline="") as f:
                reader = csv.reader(f)
                self.header = next(reader, None)
                self.rows = [r for r in reader if r and int(r[0]) <= start_iteration]
        self.writer = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(
                    os.path.join(directory, "tensorboard"), purge_step=start_step if start_iteration > 0 else None
                )

    def add(self, first_iteration: int, metrics: dict[str, np.ndarray]) -> None:
        """``metrics``: name -> ``(S, n)`` for iterations ``first_iteration + 1 ... + n``."""
        names = sorted(k for k, v in metrics.items() if v.ndim == 2)
        header = ["iteration", "seed", *names]
        if self.header is not None and self.header != header:
            raise ValueError(f"{self.path}: existing columns {self.header} differ from {header}")
        self.header = header
        num_seeds, n = metrics[names[0]].shape
        for j in range(n):
            for s in range(num_seeds):
                self.rows.append([str(first_iteration + j + 1), str(s)] + [_cell(metrics[k][s, j]) for k in names])
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(header)
        w.writerows(self.rows)
        atomic_write(self.path, buf.getvalue())
        if self.writer is not None:
            steps = metrics["env_steps"][0]
            for j in range(n):
                for k in names:
                    if k != "env_steps":
                        self.writer.add_scalar(k, float(np.mean(metrics[k][:, j])), int(steps[j]))
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _cell(value: np.generic) -> str:
    """A CSV cell: integers exactly, floats with 6 significant digits."""
    return str(int(value)) if np.issubdtype(np.asarray(value).dtype, np.integer) else f"{float(value):.6g}"


def _log(message: str) -> None:
    print(message, flush=True)


def _chunk_return(metrics: dict[str, np.ndarray]) -> float:
    """Mean over seeds of the mean return of the episodes finished in the chunk (NaN if none)."""
    episodes = metrics["episodes"].sum(axis=1)
    total = (metrics["episode_return"] * metrics["episodes"]).sum(axis=1)
    done = episodes > 0
    return float(np.mean(total[done] / episodes[done])) if done.any() else float("nan")


def _format_return(value: float) -> str:
    return f"{value:.2f}" if np.isfinite(value) else "n/a (no episode ended yet)"


# -------------------------------------------------------------------- training
def open_checkpointer(spec: TrainSpec, trainer) -> Checkpointer:
    """The checkpointer of one method under ``--out``, checked against ``--resume``.

    ``ValueError`` when checkpoints exist but ``--resume`` was not given, or when
    they were written with another config or number of seeds.
    """
    method = trainer.config.method
    config = {**dataclasses.asdict(trainer.config), "num_seeds": spec.num_seeds}
    checkpointer = Checkpointer(os.path.join(spec.out, method, "checkpoints"), config, max_to_keep=spec.keep)
    latest = checkpointer.latest_step()
    if latest is not None:
        if not spec.resume:
            checkpointer.close()
            raise ValueError(
                f"--out '{spec.out}' already holds checkpoints of '{method}' (iteration {latest}); "
                "pass --resume to continue them or choose another --out"
            )
        try:
            checkpointer.verify_config(latest)
        except ValueError:
            checkpointer.close()
            raise
    return checkpointer


def preflight(spec: TrainSpec) -> None:
    """Check every method's checkpoints before any training starts (``ValueError`` on a conflict)."""
    for trainer in spec.trainers:
        open_checkpointer(spec, trainer).close()


def train_method(spec: TrainSpec, trainer: train_lib.Trainer, log=_log):
    """Train all seeds of one method with chunked, checkpointed ``jit(trainer.run_seeds)`` (a vmap of ``run``).

    Returns the final state (leading seed axis ``S`` on every leaf).
    """
    config = trainer.config
    method = config.method
    directory = os.path.join(spec.out, method)
    rngs = jax.random.split(jax.random.PRNGKey(config.seed), spec.num_seeds)
    state = jax.jit(jax.vmap(trainer.init))(rngs)
    checkpointer = open_checkpointer(spec, trainer)
    start = checkpointer.latest_step()
    total = trainer.num_iterations
    if start is not None:
        state = checkpointer.restore(state)
        log(f"[{method}] resumed from iteration {start}/{total}")
    start = start or 0
    spi = trainer.steps_per_iteration
    size = max(1, -(-total // spec.chunks))  # iterations per chunk
    programs: dict[int, Any] = {}
    metrics_log = MetricsLog(directory, spec.tensorboard, start, start * spi)
    try:
        done = start
        while done < total:
            n = min(size, total - done)
            if n not in programs:
                t0 = time.perf_counter()
                programs[n] = jax.jit(lambda s, n=n: trainer.run_seeds(s, n)).lower(state).compile()
                log(f"[{method}] compiled a {n}-iteration chunk for {spec.num_seeds} seeds in {time.perf_counter() - t0:.1f} s")
            t0 = time.perf_counter()
            state, metrics = programs[n](state)
            metrics = jax.tree.map(np.asarray, metrics)
            elapsed = time.perf_counter() - t0
            metrics_log.add(done, metrics)
            done += n
            checkpointer.save(done, state)
            log(
                f"[{method}] iteration {done}/{total}  steps {done * spi:,}/{total * spi:,}  "
                f"{spec.num_seeds * n * spi / elapsed:,.0f} steps/s  return {_format_return(_chunk_return(metrics))}"
            )
    finally:
        metrics_log.close()
        checkpointer.close()
    return state


def evaluate_method(spec: TrainSpec, trainer, state, grid: ev.ContextGrid) -> ev.EvalResult:
    """Zero-shot returns ``(S, C, E)`` of every seed's deterministic policy over ``grid``."""
    params = jax.vmap(trainer.policy_params)(state)
    rng = jax.random.fold_in(jax.random.PRNGKey(trainer.config.seed), 1)
    return ev.evaluate_grid(
        trainer.env, lambda p, obs: trainer.act(p, obs), params, grid, num_episodes=spec.eval_episodes, rng=rng
    )


def run_train(spec: TrainSpec, log=_log) -> dict[str, ev.EvalResult]:
    """Train, evaluate and write every output of a ``zsgjax train`` run; returns ``{method: EvalResult}``."""
    os.makedirs(spec.out, exist_ok=True)
    run_info = {
        "env": spec.env,
        "methods": list(spec.methods),
        "num_seeds": spec.num_seeds,
        "eval_episodes": spec.eval_episodes,
        "sweep_points": spec.sweep_points,
        "configs": {t.config.method: dataclasses.asdict(t.config) for t in spec.trainers},
    }
    atomic_write(os.path.join(spec.out, "run.json"), json.dumps(run_info, indent=1) + "\n")
    log(f"zsgjax train: env={spec.env} methods={','.join(spec.methods)} seeds={spec.num_seeds} "
        f"steps={spec.trainers[0].config.total_steps:,} out={spec.out}")
    results: dict[str, ev.EvalResult] = {}
    grid = ev.make_grid(spec.trainers[0].env, spec.sweep_points)
    t_start = time.perf_counter()
    for trainer in spec.trainers:
        state = train_method(spec, trainer, log)
        t0 = time.perf_counter()
        results[trainer.config.method] = evaluate_method(spec, trainer, state, grid)
        log(f"[{trainer.config.method}] evaluated {len(grid)} contexts x {spec.eval_episodes} episodes x "
            f"{spec.num_seeds} seeds in {time.perf_counter() - t0:.1f} s")
        del state
    default = ", ".join(f"{v:g}" for v in grid.default)
    title = (f"{spec.env}: zero-shot return after {spec.trainers[0].config.total_steps:,} training steps per seed "
             f"(default context ({default}))")
    text = ev.write_table(results, os.path.join(spec.out, "generalization.txt"), detail=False, title=title)
    ev.write_csv(results, os.path.join(spec.out, "generalization.csv"))
    ev.write_json(results, os.path.join(spec.out, "generalization.json"), extra=run_info)
    plotting.plot_sweeps(results, os.path.join(spec.out, "generalization.png"), title=f"{spec.env}")
    log("\n" + text)
    log(f"wrote {spec.out}/generalization.{{txt,csv,json,png}} in {time.perf_counter() - t_start:.0f} s total")
    return results


def _train_command(args: argparse.Namespace) -> int:
    try:
        spec = spec_from_args(args)
        preflight(spec)
    except ValueError as e:
        args.subparser.error(str(e))
    run_train(spec)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``zsgjax`` and ``python -m zsgjax``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.handler(args)
