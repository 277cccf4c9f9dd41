"""The ``zsgjax`` command line (also ``python -m zsgjax``).

``zsgjax train`` trains one or several methods on one environment with the run
driver (:mod:`zsgjax.runner`: every seed of a method in **one** jitted ``vmap``
program run in chunks, a checkpoint, metrics CSV and TensorBoard scalars after each
chunk), prints a progress line per chunk, evaluates each method zero-shot on the
environment's context grid and prints and writes the generalization table with
the plot. This module only parses options and prints: the work is the runner's.

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
import dataclasses
import json
import os
import re
import sys
import tempfile
import time
import types
import typing
from typing import Any, Mapping, Sequence

from zsgjax import runner
from zsgjax import train as train_lib
from zsgjax.configs import field_check
from zsgjax.envs import make as make_env
from zsgjax.evaluate import make_grid
from zsgjax.envs import registered_names
from zsgjax.methods import method_names
from zsgjax.reporting import plots, tables
from zsgjax.reporting.files import atomic_write
from zsgjax.reporting.metrics_log import read_metrics_csv

# The README's main job: ``zsgjax train`` with no arguments.
DEFAULT_ENV = "simple_direction"
DEFAULT_METHODS = ("vanilla", "cse")

# TrainConfig fields with their own option names; the rest are generated.
_OWN_FIELDS = {"env": "--env", "method": "--method", "total_steps": "--steps", "num_envs": "--num-envs",
               "seed": "--seed"}
_RUN_FLAGS = {f.name: "--" + f.name.replace("_", "-") for f in dataclasses.fields(runner.RunSpec)}


# ---------------------------------------------------------------------- parser
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
        elif field.name == "steps_per_iteration":
            shown = "derived from the other options"
        else:
            shown = f"{train_lib.base_value(field.name)!r} unless the environment's preset sets its own"
        kwargs: dict[str, Any] = dict(dest=field.name, default=None, help=f"TrainConfig.{field.name} (default: {shown})")
        check = field_check(train_lib.TrainConfig, field.name)
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) is tuple:
            kwargs.update(nargs="+", type=int, metavar="N")
        else:
            kwargs["type"] = tp
            if check is not None and check.choices is not None:
                kwargs["choices"] = check._choices()
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
    defaults = runner.RunSpec()
    run = p.add_argument_group("run")
    run.add_argument("--env", default=DEFAULT_ENV, help=f"environment, one of: {', '.join(registered_names())} (default: %(default)s)")
    run.add_argument("--method", nargs="+", default=list(DEFAULT_METHODS), metavar="METHOD",
                     help=f"one or several of: {', '.join(method_names())} (default: {' '.join(DEFAULT_METHODS)})")
    run.add_argument("--seeds", type=int, default=defaults.seeds, help="number of seeds, vmapped in one program (default: %(default)s)")
    run.add_argument("--seed", type=int, default=train_lib.TrainConfig.seed,
                     help="base seed; seed k uses split(PRNGKey(seed), seeds)[k] (default: %(default)s)")
    run.add_argument("--steps", type=int, default=train_lib.TrainConfig.total_steps,
                     help="environment steps per seed, all parallel environments together (default: %(default)s)")
    run.add_argument("--num-envs", type=int, default=train_lib.TrainConfig.num_envs,
                     help="parallel environments per seed (default: %(default)s)")
    run.add_argument("--out", default=None, help="output directory (default: runs/<env>-<UTC time>)")
    run.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    run.add_argument("--chunks", type=int, default=defaults.chunks,
                     help="training runs in this many jitted chunks: a progress line and a checkpoint after each "
                     "(default: %(default)s)")
    run.add_argument("--keep", type=int, default=defaults.keep, help="checkpoints kept per method (default: %(default)s)")
    run.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=defaults.tensorboard,
                     help="write TensorBoard events when tensorboardX is installed (default: on)")
    evg = p.add_argument_group("evaluation")
    evg.add_argument("--eval-episodes", type=int, default=defaults.eval_episodes,
                     help="episodes per context and seed (default: %(default)s)")
    evg.add_argument("--sweep-points", type=int, default=defaults.sweep_points,
                     help="points per swept context dimension, >= 2 (default: %(default)s)")
    _add_config_options(p.add_argument_group("hyper-parameters (TrainConfig)"))
    p.set_defaults(handler=_train_command, subparser=p)
    return parser


def _flag_message(message: str) -> str:
    """``TrainConfig.total_steps must ...`` -> ``--steps must ...`` (the option the user typed)."""

    def flag(m: re.Match) -> str:
        owner, name = m.group(1), m.group(2)
        if owner == "RunSpec":
            return _RUN_FLAGS.get(name, name)
        return _OWN_FIELDS.get(name, "--" + name.replace("_", "-"))

    message = message.replace(" (or None for the preset)", "")
    return re.sub(r"\b(TrainConfig|RunSpec)\.(\w+)", flag, message)


# ------------------------------------------------------------------- the spec
@dataclasses.dataclass(frozen=True)
class TrainCommand:
    """A validated ``zsgjax train`` invocation: one trainer per method, the run spec, the output directory."""

    env: str
    trainers: Mapping[str, train_lib.Trainer]
    spec: runner.RunSpec
    out: str


def command_from_args(args: argparse.Namespace) -> TrainCommand:
    """Check the options and build one trainer per method; ``ValueError`` (naming the option) on bad input."""
    try:
        return _command_from_args(args)
    except ValueError as e:
        raise ValueError(_flag_message(str(e))) from e


def _command_from_args(args: argparse.Namespace) -> TrainCommand:
    if args.env not in registered_names():
        raise ValueError(f"--env: unknown environment '{args.env}'; choose one of: {', '.join(registered_names())}")
    methods = tuple(dict.fromkeys(args.method))
    unknown = [m for m in methods if m not in method_names()]
    if unknown:
        raise ValueError(f"--method: unknown method(s) {', '.join(unknown)}; choose from: {', '.join(method_names())}")
    spec = runner.RunSpec(seeds=args.seeds, chunks=args.chunks, keep=args.keep, eval_episodes=args.eval_episodes,
                          sweep_points=args.sweep_points, tensorboard=args.tensorboard, resume=args.resume).validate()
    hyper = {f.name: getattr(args, f.name) for f in dataclasses.fields(train_lib.TrainConfig)
             if f.name not in _OWN_FIELDS and getattr(args, f.name) is not None}
    env = make_env(args.env)
    trainers = {
        m: train_lib.make_train(  # validates: ValueError naming the field and its range
            train_lib.TrainConfig(env=args.env, method=m, total_steps=args.steps, num_envs=args.num_envs,
                                  seed=args.seed, **hyper),
            env=env,
        )
        for m in methods
    }
    if args.resume and not args.out:
        raise ValueError("--resume needs --out naming the run directory to continue")
    out = args.out or os.path.join("runs", f"{args.env}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    if args.resume and not os.path.isdir(out):
        raise ValueError(f"--resume: output directory '{out}' does not exist")
    check_output_directory(out, list(trainers))
    return TrainCommand(env=args.env, trainers=trainers, spec=spec, out=out)


OUTPUT_FILES = ("run.json", "generalization.txt", "generalization.csv", "generalization.json", "generalization.png")


def check_output_directory(out: str, labels: Sequence[str] | None = None) -> None:
    """``ValueError`` naming ``--out`` unless it is (or can be created as) a writable directory.

    An existing ``--out`` must be a directory we can create files in; a missing one
    needs its nearest existing parent to be such a directory. Nothing is created
    (a probe file is made and removed at once). With ``labels``, none of the files
    the run writes (:data:`OUTPUT_FILES`, ``<label>/metrics.csv``) may be a directory.
    """
    if not out or not out.strip():
        raise ValueError("--out must name a directory, got an empty string")
    path = os.path.abspath(out)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--out '{out}' is a file, not a directory; give a directory (new or existing) to write into")
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise ValueError(f"--out '{out}' cannot be created: '{probe}' is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise ValueError(f"--out '{out}' is not writable ('{probe}': {e.strerror or e}); give a directory you can "
                         "write to") from None
    if labels is None:
        return
    names = list(OUTPUT_FILES) + [os.path.join(label, "metrics.csv") for label in labels]
    for name in names:
        target = os.path.join(out, name)
        if os.path.isdir(target):
            raise ValueError(f"--out '{out}': '{target}' is a directory, but zsgjax writes a file there; "
                             "remove it or choose another --out")


def check_resumable_metrics(command: TrainCommand) -> None:
    """With ``--resume``, every method's ``metrics.csv`` must be continuable up to its latest checkpoint.

    ``ValueError`` naming ``--resume`` and the damaged file (see
    :func:`zsgjax.reporting.metrics_log.read_metrics_csv`); a missing file is fine.
    """
    if not command.spec.resume:
        return
    for label, trainer in command.trainers.items():
        directory = os.path.join(command.out, label)
        path = os.path.join(directory, "metrics.csv")
        if not os.path.exists(path):
            continue
        checkpointer = runner.open_checkpointer(trainer, directory, command.spec)
        try:
            latest = checkpointer.latest_step()
        finally:
            checkpointer.close()
        if latest:
            try:
                read_metrics_csv(path, latest)
            except ValueError as e:
                raise ValueError(f"--resume: {e}") from None


# -------------------------------------------------------------------- printing
def _print(message: str) -> None:
    print(message, flush=True)


def previous_results(command: TrainCommand) -> tuple[dict[str, Any], dict[str, Any]]:
    """The finished results already in ``--out`` that this run keeps: ``({method: EvalResult}, run_info)``.

    A finished result is never overwritten: a method that ``--out`` already holds a
    result of is an error unless ``--resume`` is given (then it is re-evaluated from
    its checkpoints); the others are merged into the new table. ``ValueError`` when the
    stored results are of another environment or grid (``--env``, ``--sweep-points``).
    """
    path = os.path.join(command.out, "generalization.json")
    if not os.path.exists(path):
        return {}, {}
    stored = tables.load_json(path)
    with open(path) as f:
        info = json.load(f).get("info", {})
    if info.get("env") not in (None, command.env):
        raise ValueError(f"--out '{command.out}' holds results of env '{info.get('env')}', not '{command.env}'; "
                         "choose another --out")
    clash = [m for m in command.trainers if m in stored]
    if clash and not command.spec.resume:
        raise ValueError(f"--out '{command.out}' already holds a finished result of {', '.join(clash)}; "
                         "pass --resume to re-evaluate it from its checkpoints or choose another --out")
    grid = make_grid(next(iter(command.trainers.values())).env, command.spec.sweep_points)
    for m, r in stored.items():
        if r.grid.labels != grid.labels:
            raise ValueError(f"--out '{command.out}' holds '{m}' evaluated on another context grid; use the same "
                             f"--sweep-points ({len(r.grid.labels)} contexts there) or another --out")
    keep = {m: r for m, r in stored.items() if m not in command.trainers}
    return keep, info


def run_train(command: TrainCommand, log=_print) -> dict[str, runner.MethodRun]:
    """Train, evaluate and write every output of a ``zsgjax train`` run; returns ``{method: MethodRun}``.

    Finished results of other methods already in ``--out`` are kept and merged into
    the table. On divergence (:class:`zsgjax.runner.Diverged`) the results of the
    methods finished so far are still written, then the error is raised.
    """
    spec, out = command.spec, command.out
    first = next(iter(command.trainers.values()))
    kept, kept_info = previous_results(command)
    os.makedirs(out, exist_ok=True)
    configs = {m: dataclasses.asdict(t.config) for m, t in command.trainers.items()}
    run_info = {
        "env": command.env,
        "methods": list(kept) + list(command.trainers),
        "num_seeds": spec.seeds,
        "eval_episodes": spec.eval_episodes,
        "sweep_points": spec.sweep_points,
        "configs": {**{m: c for m, c in kept_info.get("configs", {}).items() if m in kept}, **configs},
    }
    atomic_write(os.path.join(out, "run.json"), json.dumps(run_info, indent=1) + "\n")
    log(f"zsgjax train: env={command.env} methods={','.join(command.trainers)} seeds={spec.seeds} "
        f"steps={first.config.total_steps:,} out={out}" + (f" (keeping finished {', '.join(kept)})" if kept else ""))
    t_start = time.perf_counter()

    def on_event(event: runner.Event) -> None:
        for line in runner.format_event(event, spec.seeds):
            log(line)

    runs = {}
    diverged = None
    for label, trainer in command.trainers.items():  # one label at a time, so each prints its evaluation line
        try:
            (runs[label],) = runner.run({label: trainer}, out, spec, on_event).values()
        except runner.Diverged as e:
            diverged = e
            log(f"error: {e}")
            break
        log(f"[{label}] evaluated {len(runs[label].result.grid)} contexts x {spec.eval_episodes} episodes x "
            f"{spec.seeds} seeds in {runs[label].eval_s:.1f} s")
    results = {**kept, **{label: r.result for label, r in runs.items()}}
    if results:
        default = ", ".join(f"{v:g}" for v in results[next(iter(results))].grid.default)
        title = (f"{command.env}: zero-shot return after {first.config.total_steps:,} training steps per seed "
                 f"(default context ({default}))")
        text = tables.write_table(results, os.path.join(out, "generalization.txt"), detail=False, title=title)
        tables.write_csv(results, os.path.join(out, "generalization.csv"))
        tables.write_json(results, os.path.join(out, "generalization.json"),
                          extra={**run_info, "methods": list(results)})
        plots.plot_sweeps(results, os.path.join(out, "generalization.png"), title=f"{command.env}")
        log("\n" + text)
        log(f"wrote {out}/generalization.{{txt,csv,json,png}} in {time.perf_counter() - t_start:.0f} s total")
    if diverged is not None:
        raise diverged
    return runs


def _train_command(args: argparse.Namespace) -> int:
    try:
        command = command_from_args(args)
        runner.preflight(command.trainers, command.out, command.spec)
        previous_results(command)
        check_resumable_metrics(command)
    except ValueError as e:
        args.subparser.error(_flag_message(str(e)))
    try:
        run_train(command)
    except runner.Diverged as e:
        print(f"zsgjax train: {e}. Results of the methods that finished are written; start again in another "
              "--out with other options (for example a smaller learning rate)", flush=True)
        return 1
    except ValueError as e:  # bad input found only once running (e.g. a file changed meanwhile): one line, no traceback
        args.subparser.error(_flag_message(str(e)))
    except OSError as e:
        print(f"zsgjax train: error: cannot write the results under --out '{command.out}': {e}", file=sys.stderr,
              flush=True)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``zsgjax`` and ``python -m zsgjax``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        # One line, then leave at once: checkpoints and result files are written atomically,
        # and a normal interpreter exit would print the tracebacks of orbax's writer threads.
        out = getattr(args, "out", None)
        hint = f" --out {out} --resume" if out else " --resume"
        sys.stderr.write(f"zsgjax {args.command}: interrupted; the last checkpoint is kept (continue with the same "
                         f"options plus{hint})\n")
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(130)
