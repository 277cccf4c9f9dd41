"""The ``zsgjax`` command line (also ``python -m zsgjax``).

``zsgjax train`` trains one or several methods on one environment with the run
driver (:mod:`zsgjax.runner`: every seed of a method in **one** jitted ``vmap``
program run in chunks, a checkpoint, metrics CSV and TensorBoard (optionally
W&B) scalars after each chunk), prints a progress line per chunk, evaluates each
method zero-shot on the environment's context grid and prints and writes the
generalization table with the plots. This module only parses options and prints:
the work is the runner's.

Output directory (``--out``, default ``runs/<env>-<UTC time>``)::

    run.json                    the command's options and each method's resolved config
    <method>/metrics.csv        one row per (iteration, seed)
    <method>/checkpoints/<it>/  orbax checkpoints (last --keep), <it> = iterations done
    <method>/tensorboard/       TensorBoard events (mean over seeds)
    <method>/wandb/             the W&B run (with --wandb)
    generalization.txt          the printed table (named contexts + sweep means)
    generalization.csv / .json  every grid point (JSON holds the raw returns)
    generalization.png          return vs context per swept dimension
    learning_curves.png         training return vs environment steps per method

``--resume`` continues every method from its latest checkpoint in ``--out`` (a
finished method is only re-evaluated); the result equals an uninterrupted run.

Every ``TrainConfig`` hyper-parameter is an option (``--cse-epsilon 0.05``,
``--hidden-sizes 64 64``, ``--no-normalize-obs`` ...); unset ones keep the
environment's defaults. The environment's constructor options are
``--physical``, ``--physical-range`` and ``--env-option`` (``TrainConfig.env_kwargs``).
Bad options exit with status 2 and one line naming the option and what it accepts.

Start-up: importing this module imports no JAX, brax or MuJoCo module. The option
table (the ``TrainConfig`` fields, environment and method names) is built from the
live classes once and kept in the user cache (:func:`cache_dir`), keyed by a hash
of zsgjax's sources, so ``--help`` and usage errors answer without loading JAX.
JAX's persistent compilation cache is on by default (:func:`configure_compile_cache`).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from typing import Any, Mapping, Sequence

import zsgjax

from zsgjax.options import (DEFAULT_ENV, DEFAULT_METHODS, OWN_FIELDS as _OWN_FIELDS, ArgumentParser,
                            add_env_options, add_run_logging_options, cache_dir, compile_cache_dir,
                            configure_compile_cache, env_kwargs_from_args, flag_message as _flag_message,
                            parse_dataclass, wandb_project)
SPEC_VERSION = 1  # of the cached option table's layout


# ---------------------------------------------------------------- caches
def _sources_fingerprint() -> str:
    """A hash of the zsgjax version, the Python version and every zsgjax source file."""
    h = hashlib.sha256(f"{SPEC_VERSION} {zsgjax.__version__} {sys.version}".encode())
    root = os.path.dirname(os.path.abspath(zsgjax.__file__))
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                h.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()[:20]


# ---------------------------------------------------------- option table
def option_spec() -> dict[str, Any]:
    """The ``zsgjax train`` option table, as JSON-able data, from the live classes
    (``TrainConfig``, ``RunSpec``, the environment and method registries)."""
    import typing
    import types as pytypes

    from zsgjax import runner
    from zsgjax import train as train_lib
    from zsgjax.configs import field_check
    from zsgjax.envs import registered_names
    from zsgjax.methods import method_names

    hints = typing.get_type_hints(train_lib.TrainConfig)
    hyper = []
    for field in dataclasses.fields(train_lib.TrainConfig):
        if field.name in _OWN_FIELDS:
            continue
        tp = hints[field.name]
        if typing.get_origin(tp) in (typing.Union, pytypes.UnionType):
            (tp,) = [a for a in typing.get_args(tp) if a is not type(None)]
        if field.default is not None:
            shown = repr(field.default)
        elif field.name == "steps_per_iteration":
            shown = "derived from the other options"
        elif field.name in ("dr_low", "dr_high"):
            shown = "the context space's bounds, one value per context dimension"
        else:
            shown = f"{train_lib.base_value(field.name)!r} unless the environment's preset sets its own"
        check = field_check(train_lib.TrainConfig, field.name)
        kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(tp)
        if kind is None and typing.get_origin(tp) is tuple:
            kind = "floats" if typing.get_args(tp)[0] is float else "ints"
        if kind is None:
            raise TypeError(f"zsgjax.cli: no option type for TrainConfig.{field.name}: {tp}")
        hyper.append({"dest": field.name, "flag": "--" + field.name.replace("_", "-"), "kind": kind,
                      "choices": list(check._choices()) if check is not None and check.choices is not None else None,
                      "help": f"TrainConfig.{field.name} (default: {shown})"})
    spec = runner.RunSpec()
    return {
        "version": SPEC_VERSION,
        "envs": list(registered_names()),
        "methods": list(method_names()),
        "run": {f.name: getattr(spec, f.name) for f in dataclasses.fields(runner.RunSpec)},
        "run_flags": {f.name: "--" + f.name.replace("_", "-") for f in dataclasses.fields(runner.RunSpec)},
        "train": {"seed": train_lib.TrainConfig.seed, "total_steps": train_lib.TrainConfig.total_steps,
                  "num_envs": train_lib.TrainConfig.num_envs},
        "hyper": hyper,
    }


def cached_option_spec() -> dict[str, Any]:
    """:func:`option_spec`, read from the user cache when it was built from these sources.

    With JAX already imported (a library user, the tests) the live table costs
    nothing more and is used directly; otherwise a cache miss builds it (importing
    zsgjax.train once) and writes ``<cache_dir()>/cli-options-<hash>.json`` (removing
    the tables of other sources).
    """
    if "jax" in sys.modules:
        return option_spec()
    path = os.path.join(cache_dir(), f"cli-options-{_sources_fingerprint()}.json")
    try:
        with open(path) as f:
            spec = json.load(f)
        if isinstance(spec, dict) and spec.get("version") == SPEC_VERSION:
            return spec
    except (OSError, ValueError):
        pass
    spec = option_spec()
    try:
        from zsgjax.reporting.files import atomic_write

        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, json.dumps(spec, indent=1) + "\n")
        for name in os.listdir(os.path.dirname(path)):  # tables of older sources are never read again
            if name.startswith("cli-options-") and name.endswith(".json") and name != os.path.basename(path):
                os.remove(os.path.join(os.path.dirname(path), name))
    except OSError:
        pass  # no writable cache: the next call builds the table again
    return spec


# ---------------------------------------------------------------- parser
def _add_hyper_options(group: argparse._ArgumentGroup, hyper: Sequence[Mapping[str, Any]]) -> None:
    """One option per TrainConfig hyper-parameter, from the option table."""
    types_ = {"int": int, "float": float, "str": str}
    for o in hyper:
        kwargs: dict[str, Any] = dict(dest=o["dest"], default=None, help=o["help"])
        if o["kind"] == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif o["kind"] == "ints":
            kwargs.update(nargs="+", type=int, metavar="N")
        elif o["kind"] == "floats":
            kwargs.update(nargs="+", type=float, metavar="X")
        else:
            kwargs["type"] = types_[o["kind"]]
            if o["choices"] is not None:
                kwargs["choices"] = o["choices"]
            else:
                kwargs["metavar"] = o["kind"].upper()
        group.add_argument(o["flag"], **kwargs)


def build_parser(spec: Mapping[str, Any] | None = None) -> argparse.ArgumentParser:
    """The ``zsgjax`` parser; ``spec``: an option table (default :func:`cached_option_spec`)."""
    spec = cached_option_spec() if spec is None else spec
    run_defaults, train_defaults = spec["run"], spec["train"]
    parser = ArgumentParser(prog="zsgjax", description="Zero-shot context generalization in RL, in JAX.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "train",
        help="train methods on an environment, evaluate them zero-shot, print the generalization table",
        description="Train one or several methods (all seeds of a method in one jitted vmap program), "
        "then evaluate every seed over the context grid and write table, CSV/JSON and plots.",
    )
    run = p.add_argument_group("run")
    run.add_argument("--env", default=DEFAULT_ENV, help=f"environment, one of: {', '.join(spec['envs'])} "
                     "(default: %(default)s)")
    run.add_argument("--method", nargs="+", default=list(DEFAULT_METHODS), metavar="METHOD",
                     help=f"one or several of: {', '.join(spec['methods'])} (default: {' '.join(DEFAULT_METHODS)})")
    run.add_argument("--seeds", type=int, default=run_defaults["seeds"],
                     help="number of seeds, vmapped in one program (default: %(default)s)")
    run.add_argument("--seed", type=int, default=train_defaults["seed"],
                     help="base seed; seed k uses split(PRNGKey(seed), seeds)[k] (default: %(default)s)")
    run.add_argument("--steps", type=int, default=train_defaults["total_steps"],
                     help="environment steps per seed, all parallel environments together (default: %(default)s)")
    run.add_argument("--num-envs", type=int, default=train_defaults["num_envs"],
                     help="parallel environments per seed (default: %(default)s)")
    run.add_argument("--out", default=None, help="output directory (default: runs/<env>-<UTC time>)")
    run.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    run.add_argument("--chunks", type=int, default=run_defaults["chunks"],
                     help="training runs in this many jitted chunks: a progress line and a checkpoint after each "
                     "(default: %(default)s)")
    run.add_argument("--keep", type=int, default=run_defaults["keep"],
                     help="checkpoints kept per method (default: %(default)s)")
    add_run_logging_options(run, tensorboard_default=run_defaults["tensorboard"])
    add_env_options(p.add_argument_group("environment options (TrainConfig.env_kwargs)"))
    evg = p.add_argument_group("evaluation")
    evg.add_argument("--eval-episodes", type=int, default=run_defaults["eval_episodes"],
                     help="episodes per context and seed (default: %(default)s)")
    evg.add_argument("--sweep-points", type=int, default=run_defaults["sweep_points"],
                     help="points per swept context dimension, >= 2 (default: %(default)s)")
    _add_hyper_options(p.add_argument_group("hyper-parameters (TrainConfig)"), spec["hyper"])
    p.set_defaults(handler=_train_command, subparser=p, run_flags=spec["run_flags"])
    parser.subcommands = {"train": p}  # the subcommands' parsers, for scripts that extend one
    return parser


# ------------------------------------------------------------------- the spec
@dataclasses.dataclass(frozen=True)
class TrainCommand:
    """A validated ``zsgjax train`` invocation: one trainer per method, the run spec, the output directory."""

    env: str
    trainers: Mapping[str, Any]  # {method: zsgjax.train.Trainer}
    spec: Any  # zsgjax.runner.RunSpec
    out: str


def command_from_args(args: argparse.Namespace) -> TrainCommand:
    """Check the options and build one trainer per method; ``ValueError`` (naming the option) on bad input."""
    try:
        return _command_from_args(args)
    except ValueError as e:
        raise ValueError(_flag_message(str(e), getattr(args, "run_flags", None))) from e


def _command_from_args(args: argparse.Namespace) -> TrainCommand:
    from zsgjax import runner
    from zsgjax import train as train_lib
    from zsgjax.envs import registered_names
    from zsgjax.methods import method_names

    if args.env not in registered_names():
        raise ValueError(f"--env: unknown environment '{args.env}'; choose one of: {', '.join(registered_names())}")
    methods = tuple(dict.fromkeys(args.method))
    unknown = [m for m in methods if m not in method_names()]
    if unknown:
        raise ValueError(f"--method: unknown method(s) {', '.join(unknown)}; choose from: {', '.join(method_names())}")
    spec = runner.RunSpec(seeds=args.seeds, chunks=args.chunks, keep=args.keep, eval_episodes=args.eval_episodes,
                          sweep_points=args.sweep_points, tensorboard=args.tensorboard, resume=args.resume,
                          wandb_project=wandb_project(args)).validate()
    hyper = {f.name: tuple(v) if isinstance(v := getattr(args, f.name), list) else v
             for f in dataclasses.fields(train_lib.TrainConfig)
             if f.name not in _OWN_FIELDS and getattr(args, f.name) is not None}
    configs = {m: train_lib.TrainConfig(env=args.env, method=m, total_steps=args.steps, num_envs=args.num_envs,
                                        seed=args.seed, env_kwargs=env_kwargs_from_args(args), **hyper)
               for m in methods}
    env = next(iter(configs.values())).validate().make_env()  # one instance shared by every method
    trainers = {m: train_lib.make_train(c, env=env) for m, c in configs.items()}  # validates each config
    if args.resume and not args.out:
        raise ValueError("--resume needs --out naming the run directory to continue")
    out = args.out or os.path.join("runs", f"{args.env}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    if args.resume and not os.path.isdir(out):
        raise ValueError(f"--resume: output directory '{out}' does not exist")
    check_output_directory(out, list(trainers))
    return TrainCommand(env=args.env, trainers=trainers, spec=spec, out=out)


OUTPUT_FILES = ("run.json", "generalization.txt", "generalization.csv", "generalization.json", "generalization.png",
                "learning_curves.png")


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
    from zsgjax import runner
    from zsgjax.reporting.metrics_log import read_metrics_csv

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


def _json_form(value: Any) -> Any:
    return json.loads(json.dumps(value))


def previous_results(command: TrainCommand) -> tuple[dict[str, Any], dict[str, Any]]:
    """The finished results already in ``--out`` that this run keeps: ``({method: EvalResult}, run_info)``.

    A finished result is never overwritten: a method that ``--out`` already holds a
    result of is an error unless ``--resume`` is given (then it is re-evaluated from
    its checkpoints); the others are merged into the new table. ``ValueError`` when the
    stored results are of another environment, other environment options or
    another grid (``--env``, ``--physical`` ..., ``--sweep-points``).
    """
    from zsgjax import runner
    from zsgjax.evaluate import make_grid
    from zsgjax.reporting import tables

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
    first = next(iter(command.trainers.values()))
    now = _json_form(first.config.env_kwargs)
    for m in stored:
        config = info.get("configs", {}).get(m, {})
        runner.check_env_options(config.get("env_kwargs", {}), now, f"the finished result of {m} in --out "
                                 f"'{command.out}'")
    grid = make_grid(first.env, command.spec.sweep_points)
    for m, r in stored.items():
        if r.grid.labels != grid.labels:
            raise ValueError(f"--out '{command.out}' holds '{m}' evaluated on another context grid; use the same "
                             f"--sweep-points ({len(r.grid.labels)} contexts there) or another --out")
    keep = {m: r for m, r in stored.items() if m not in command.trainers}
    return keep, info


def run_train(command: TrainCommand, log=_print) -> dict[str, Any]:
    """Train, evaluate and write every output of a ``zsgjax train`` run; returns ``{method: MethodRun}``.

    Finished results of other methods already in ``--out`` are kept and merged into
    the table. On divergence (:class:`zsgjax.runner.Diverged`) the results of the
    methods finished so far are still written, then the error is raised.
    """
    from zsgjax import runner
    from zsgjax.reporting import plots, tables
    from zsgjax.reporting.files import atomic_write

    spec, out = command.spec, command.out
    first = next(iter(command.trainers.values()))
    kept, kept_info = previous_results(command)
    os.makedirs(out, exist_ok=True)
    configs = {m: dataclasses.asdict(t.config) for m, t in command.trainers.items()}
    run_info = {
        "env": command.env,
        "env_kwargs": _json_form(first.config.env_kwargs),
        "methods": list(kept) + list(command.trainers),
        "num_seeds": spec.seeds,
        "eval_episodes": spec.eval_episodes,
        "sweep_points": spec.sweep_points,
        "configs": {**{m: c for m, c in kept_info.get("configs", {}).items() if m in kept}, **configs},
    }
    atomic_write(os.path.join(out, "run.json"), json.dumps(run_info, indent=1) + "\n")
    options = "".join(f" {k}={v}" for k, v in run_info["env_kwargs"].items())
    log(f"zsgjax train: env={command.env}{options} methods={','.join(command.trainers)} seeds={spec.seeds} "
        f"steps={first.config.total_steps:,} out={out}" + (f" (keeping finished {', '.join(kept)})" if kept else ""))
    t_start = time.perf_counter()

    def on_event(event) -> None:
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
        from zsgjax.reporting.plots import write_learning_curves

        curves = write_learning_curves(out, list(results), os.path.join(out, "learning_curves.png"),
                                       f"{command.env}: training return")
        log("\n" + text)
        also = " and learning_curves.png" if curves else ""
        log(f"wrote {out}/generalization.{{txt,csv,json,png}}{also} in {time.perf_counter() - t_start:.0f} s total")
    if diverged is not None:
        raise diverged
    return runs


def _train_command(args: argparse.Namespace) -> int:
    from zsgjax import runner

    configure_compile_cache(args.compile_cache)
    try:
        command = command_from_args(args)
        runner.preflight(command.trainers, command.out, command.spec)
        previous_results(command)
        check_resumable_metrics(command)
    except ValueError as e:
        args.subparser.error(_flag_message(str(e), args.run_flags))
    try:
        run_train(command)
    except runner.Diverged as e:
        print(f"zsgjax train: {e}. Results of the methods that finished are written; start again in another "
              "--out with other options (for example a smaller learning rate)", flush=True)
        return 1
    except ValueError as e:  # bad input found only once running (e.g. a file changed meanwhile): one line, no traceback
        args.subparser.exit(2, f"{args.subparser.prog}: error: {_flag_message(str(e), args.run_flags)}\n")
    except OSError as e:
        print(f"zsgjax train: error: cannot write the results under --out '{command.out}': {e}", file=sys.stderr,
              flush=True)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``zsgjax`` and ``python -m zsgjax``; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # reported by the subcommand's parser: its name and options in the message
        getattr(args, "subparser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
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
