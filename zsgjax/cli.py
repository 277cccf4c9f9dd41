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
    <method>/evaluations/       finished evaluations, reused by --resume (zsgjax.evaluation_store)
    <method>/tensorboard/       TensorBoard events (mean over seeds)
    <method>/wandb/             the W&B run (with --wandb)
    generalization.txt          the printed table (named contexts + sweep means)
    generalization.csv / .json  every grid point (JSON holds the raw returns)
    generalization.png          return vs context per swept dimension
    learning_curves.png         training return vs environment steps per method

``--resume`` continues every method from its latest checkpoint in ``--out`` (a
finished method is only evaluated, and not even that when ``<method>/evaluations/``
holds its evaluation on the same grid: :mod:`zsgjax.evaluation_store`); the result
equals an uninterrupted run.

``--config FILE`` takes the run's settings from a ``run.json`` (:func:`read_run_config`,
:func:`train_configs`): an option given on the command line replaces the file's value.

Every ``TrainConfig`` hyper-parameter is an option (``--cse-epsilon 0.05``,
``--hidden-sizes 64 64``, ``--no-normalize-obs`` ...); unset ones keep the
environment's defaults. The environment's constructor options are
``--physical``, ``--physical-range`` and ``--env-option`` (``TrainConfig.env_kwargs``).
Bad options exit with status 2 and one line naming the option and what it accepts.

Start-up: importing this module imports no JAX, brax or MuJoCo module. The option
table (the ``TrainConfig`` fields, environment and method names) is built from the
live classes once and kept in the user cache (:func:`cache_dir`), keyed by a hash
of zsgjax's sources, so ``--help`` and usage errors (an unknown ``--env``
included) answer without loading JAX.
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
import time
from typing import Any, Mapping, Sequence

import zsgjax

from zsgjax.options import (DEFAULT_ENV, DEFAULT_METHODS, OWN_FIELDS as _OWN_FIELDS, ArgumentParser,
                            add_env_options, add_run_logging_options, add_sweep_dims_option, cache_dir,
                            compile_cache_dir, configure_compile_cache, env_kwargs_from_args,
                            flag_message as _flag_message, parse_dataclass, sweep_dims_from_args, wandb_project)
SPEC_VERSION = 3  # of the cached option table's layout


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
    (``TrainConfig``, ``RunSpec``, the environment and method registries).

    ``hyper`` holds one entry per ``TrainConfig`` hyper-parameter and per setting of a
    method registered after ``zsgjax.train`` was imported (which ``TrainConfig.replace``
    puts in ``method_options``); each entry's help states the accepted range, from the
    one check that also judges the value.
    """
    from zsgjax import runner
    from zsgjax import train as train_lib
    from zsgjax.configs import field_check
    from zsgjax.envs import registered_names
    from zsgjax.envs.registry import ENTRY_POINT_GROUP
    from zsgjax.methods import method_names, registered_settings

    config = train_lib.TrainConfig
    settings = registered_settings()
    fields = [f.name for f in dataclasses.fields(config) if f.name not in _OWN_FIELDS and f.name != "method_options"]
    hyper = [_hyper_option(name, field_check(config, name), settings.get(name)) for name in fields]
    hyper += [_hyper_option(option, s.check, s) for option, s in settings.items()
              if option not in config.__dataclass_fields__]
    spec = runner.RunSpec()
    return {
        "version": SPEC_VERSION,
        "envs": list(registered_names()),
        "env_plugins": {"group": ENTRY_POINT_GROUP, "entries": env_plugin_entries(ENTRY_POINT_GROUP)},
        "methods": list(method_names()),
        "run": {f.name: getattr(spec, f.name) for f in dataclasses.fields(runner.RunSpec)},
        "run_flags": {f.name: "--" + f.name.replace("_", "-") for f in dataclasses.fields(runner.RunSpec)},
        "train": {"seed": config.seed, "total_steps": config.total_steps, "num_envs": config.num_envs},
        "hyper": hyper,
    }


def env_plugin_entries(group: str) -> list[str]:
    """The installed environment plugins of the entry-point ``group``, one ``"name=value (dist version)"``
    each, sorted: what the environment names of a cached option table depend on beyond zsgjax's sources."""
    import importlib.metadata

    entries = []
    for e in importlib.metadata.entry_points(group=group):
        dist = f" ({e.dist.name} {e.dist.version})" if e.dist is not None else ""
        entries.append(f"{e.name}={e.value}{dist}")
    return sorted(entries)


def _hyper_option(name: str, check: Any, setting: Any) -> dict[str, Any]:
    """One ``hyper`` entry of :func:`option_spec`: flag, value kind, choices and help (with the
    range); ``setting``: the method setting (:class:`zsgjax.methods.Setting`) ``name`` is, or ``None``."""
    from zsgjax.train import base_value

    if setting is not None:
        shown = repr(setting.default)
        what = f"{setting.owner.name}: {setting.help}"
    elif name == "steps_per_iteration":
        shown, what = "derived from the other options", f"TrainConfig.{name}"
    else:
        shown, what = f"{base_value(name)!r} unless the environment's preset sets its own", f"TrainConfig.{name}"
    if check.kind is tuple:
        kind = "floats" if check.element is float else "ints"
    else:
        kind = {bool: "bool", int: "int", float: "float", str: "str"}[check.kind]
    return {"dest": name, "flag": "--" + name.replace("_", "-"), "kind": kind,
            "choices": list(check.choices_now()) if check.choices is not None else None,
            "help": f"{what}; {check.describe()} (default: {shown})".replace("%", "%%")}


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


# ------------------------------------------------------------ --config FILE
# run.json key -> the train option it sets (the rest of the file: each method's TrainConfig record)
CONFIG_RUN_OPTIONS = {"env": "env", "methods": "method", "num_seeds": "seeds", "eval_episodes": "eval_episodes",
                      "sweep_points": "sweep_points", "sweep_dims": "sweep_dims"}


def read_run_config(path: str) -> dict[str, Any]:
    """The settings of a ``run.json`` written by ``zsgjax train``: ``{option dest: value}`` for
    :data:`CONFIG_RUN_OPTIONS` plus ``"configs"``, ``{method: TrainConfig record}`` (the
    methods in the file's order). ``ValueError`` naming ``--config`` and the file when it
    cannot be read, is not JSON or is not such a file. Imports no JAX."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise ValueError(f"--config '{path}': cannot read it ({e.strerror or e})") from None
    except ValueError as e:
        raise ValueError(f"--config '{path}' is not JSON ({e})") from None
    configs = data.get("configs") if isinstance(data, dict) else None
    if (not isinstance(configs, dict) or not configs or not isinstance(data.get("env"), str)
            or not all(isinstance(c, dict) and c.get("method") == m for m, c in configs.items())):
        raise ValueError(f"--config '{path}' is not a run.json written by zsgjax train (it needs 'env' and "
                         "'configs': {method: TrainConfig record})")
    methods = data.get("methods")
    if not isinstance(methods, list) or set(methods) != set(configs):
        methods = list(configs)
    settings = {dest: data[key] for key, dest in CONFIG_RUN_OPTIONS.items() if key in data}
    settings["method"] = list(methods)
    for dest in ("seeds", "eval_episodes", "sweep_points"):
        if dest in settings and not (isinstance(settings[dest], int) and not isinstance(settings[dest], bool)):
            raise ValueError(f"--config '{path}': '{dest}' must be an integer, got {settings[dest]!r}")
    dims = settings.get("sweep_dims")
    if dims is not None and not (isinstance(dims, list) and all(isinstance(d, str) and d for d in dims)):
        raise ValueError(f"--config '{path}': 'sweep_dims' must be a list of context dimension names, got {dims!r}")
    return {**settings, "configs": {m: configs[m] for m in methods}}


def train_configs(args: argparse.Namespace, methods: Sequence[str], hyper: Mapping[str, Any]) -> dict[str, Any]:
    """One ``TrainConfig`` per method from the options (``ValueError`` naming the bad one).

    With ``--config FILE`` each method starts from its record in the file (a method the
    file does not hold from the file's first record) and the options given on the
    command line replace the recorded values; ``--physical``, ``--physical-range`` and
    ``--env-option`` replace only the environment options they name. ``--steps`` or
    ``--num-envs`` without ``--steps-per-iteration`` derive ``steps_per_iteration``
    again (the file's was resolved for its own step count).
    """
    from zsgjax.train import TrainConfig

    env_kwargs = env_kwargs_from_args(args)
    records = getattr(args, "config_records", None)
    if not records:
        return {m: TrainConfig(env=args.env, method=m, total_steps=args.steps, num_envs=args.num_envs,
                               seed=args.seed, env_kwargs=env_kwargs).replace(**hyper) for m in methods}
    given = set(getattr(args, "explicit_options", ()))
    first = next(iter(records))
    configs = {}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for m in methods:
        source = m if m in records else first
        try:
            unknown = sorted(set(records[source]) - fields)
            if unknown:
                raise ValueError(f"'{unknown[0]}' is not a TrainConfig field")
            base = TrainConfig(**records[source])
        except ValueError as e:
            raise ValueError(f"--config '{args.config}': the config of {source}: {e}") from None
        changes = {"env": args.env, "method": m, "env_kwargs": {**base.env_kwargs, **env_kwargs}, **hyper}
        for dest, field in (("steps", "total_steps"), ("num_envs", "num_envs"), ("seed", "seed")):
            if dest in given:
                changes[field] = getattr(args, dest)
        if ({"steps", "num_envs"} & given) and "steps_per_iteration" not in hyper:
            changes["steps_per_iteration"] = None
        configs[m] = base.replace(**changes)
    return configs


# ---------------------------------------------------------------- parser
_UNSET = object()  # an option the command line does not give


class TrainParser(ArgumentParser):
    """The ``train`` subcommand's parser. After parsing, ``--config FILE`` supplies every
    run option the command line does not give (:func:`read_run_config`; the per-method
    records go to ``config_records`` for :func:`train_configs`), the options given are
    kept in ``explicit_options``, and an unknown ``--env`` is refused from the option
    table, before anything imports JAX (``explicit_options``: sorted, so that every process of a
    multi-host run fingerprints the same options)."""

    option_envs: Sequence[str] = ()
    env_plugins: Mapping[str, Any] | None = None

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        args = list(sys.argv[1:] if args is None else args)
        dests = {a.dest for a in self._actions if a.dest != argparse.SUPPRESS}
        probe, _ = super().parse_known_args(args, argparse.Namespace(**{dest: _UNSET for dest in dests}))
        namespace, extra = super().parse_known_args(args, namespace)
        namespace.explicit_options = tuple(sorted(d for d in dests if getattr(probe, d) is not _UNSET))
        namespace.config_records = None
        if extra:  # an unrecognized option is reported first, by the caller
            return namespace, extra
        if namespace.config is not None:
            try:
                settings = read_run_config(namespace.config)
            except ValueError as e:
                self.error(str(e))
            for dest, value in settings.items():
                if dest != "configs" and dest not in namespace.explicit_options:
                    setattr(namespace, dest, value)
            namespace.config_records = settings["configs"]
        self.check_env(namespace.env)
        return namespace, extra

    def check_env(self, name: str) -> None:
        """Exit with TrainConfig's message for an environment name the option table does not
        list, unless the installed environment plugins changed since the table was built."""
        from zsgjax.configs import Check

        if name in self.option_envs or self.env_plugins is None:
            return
        if env_plugin_entries(self.env_plugins["group"]) != self.env_plugins["entries"]:
            return  # a plugin was (un)installed: TrainConfig judges the name against the live registry
        self.error(_flag_message(Check(kind=str, choices=tuple(self.option_envs)).message("TrainConfig.env", name)))


def _add_hyper_options(group: argparse._ArgumentGroup, hyper: Sequence[Mapping[str, Any]]) -> None:
    """One option per TrainConfig hyper-parameter and method setting, from the option table.

    Only the value's type is parsed here (``--x abc`` for a number is argparse's error);
    its range and choices are judged once, when the ``TrainConfig`` is built, whose
    message :func:`zsgjax.options.flag_message` words with the flag.
    """
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
            choices = o["choices"]
            kwargs["metavar"] = "{" + ",".join(map(str, choices)) + "}" if choices is not None else o["kind"].upper()
        group.add_argument(o["flag"], **kwargs)


def build_parser(spec: Mapping[str, Any] | None = None) -> argparse.ArgumentParser:
    """The ``zsgjax`` parser; ``spec``: an option table (default :func:`cached_option_spec`)."""
    spec = cached_option_spec() if spec is None else spec
    run_defaults, train_defaults = spec["run"], spec["train"]
    parser = ArgumentParser(prog="zsgjax", description="Zero-shot context generalization in RL, in JAX.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=TrainParser)
    p = sub.add_parser(
        "train",
        help="train methods on an environment, evaluate them zero-shot, print the generalization table",
        description="Train one or several methods (all seeds of a method in one jitted vmap program), "
        "then evaluate every seed over the context grid and write table, CSV/JSON and plots.",
    )
    p.option_envs, p.env_plugins = tuple(spec["envs"]), spec.get("env_plugins")
    run = p.add_argument_group("run")
    run.add_argument("--config", default=None, metavar="FILE",
                     help="take the run's settings from a run.json written by zsgjax train (the environment and "
                     "its options, methods, seeds, evaluation and every method's TrainConfig); an option given "
                     "on the command line replaces the file's value")
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
    add_sweep_dims_option(evg)
    _add_hyper_options(p.add_argument_group("hyper-parameters (TrainConfig)"), spec["hyper"])
    add_mesh_options(p.add_argument_group("devices and processes (zsgjax.sharding, zsgjax.distributed)"))
    p.set_defaults(handler=_train_command, subparser=p, run_flags=spec["run_flags"],
                   hyper_options=[o["dest"] for o in spec["hyper"]])
    parser.subcommands = {"train": p}  # the subcommands' parsers, for scripts that extend one
    return parser


# ------------------------------------------------------------ devices and processes
def add_mesh_options(group: argparse._ArgumentGroup) -> None:
    """The options of where ``zsgjax train`` runs: a ``(seeds, envs)`` device mesh and the
    processes of a multi-host run (checked by :func:`mesh_options`)."""
    group.add_argument("--mesh-seeds", type=int, default=None, metavar="S",
                       help="train on a (seeds, envs) device mesh with S devices along seeds (--seeds a multiple of "
                       "S; default: one device, or 1 with several processes)")
    group.add_argument("--mesh-envs", type=int, default=None, metavar="E",
                       help="devices along the mesh's envs axis, splitting each seed's environments and replay "
                       "batches (default: the devices left after --mesh-seeds)")
    group.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="multi-host: address of process 0's coordinator, the same for every process "
                       "(default: $JAX_COORDINATOR_ADDRESS)")
    group.add_argument("--num-processes", type=int, default=None, metavar="N",
                       help="multi-host: number of processes (default: $JAX_NUM_PROCESSES, else 1)")
    group.add_argument("--process-id", type=int, default=None, metavar="I",
                       help="multi-host: this process's index in [0, N) (default: $JAX_PROCESS_ID, else 0)")
    group.add_argument("--local-device-count", type=int, default=None, metavar="K",
                       help="CPU devices of this process (CPU backend only; default: JAX's)")
    group.add_argument("--init-timeout", type=int, default=300, metavar="SECONDS",
                       help="multi-host: how long to wait for every process to join (default: %(default)s)")


@dataclasses.dataclass(frozen=True)
class MeshOptions:
    """The checked :func:`add_mesh_options`: ``mesh_seeds`` is ``None`` for one device."""

    mesh_seeds: int | None
    mesh_envs: int | None
    coordinator: str | None
    num_processes: int
    process_id: int
    local_device_count: int | None
    init_timeout: int


def mesh_options(args: argparse.Namespace) -> MeshOptions:
    """The checked device and process options (``ValueError`` naming the option); imports no
    JAX. Several processes need ``--coordinator``, ``--process-id`` and ``--out``."""
    from zsgjax import distributed

    n = distributed.env_value(args.num_processes, distributed.ENV_NUM_PROCESSES)
    coordinator = distributed.env_value(args.coordinator, distributed.ENV_COORDINATOR, str)
    if (1 if n is None else n) == 1 and coordinator is None:  # one process: no runtime to join
        pid = distributed.env_value(args.process_id, distributed.ENV_PROCESS_ID)
        n, pid = distributed.check_processes(1, 0 if pid is None else pid)
    else:
        coordinator, n, pid = distributed.resolve(coordinator, n, args.process_id)
    distributed.check_local_device_count(args.local_device_count)
    if args.init_timeout < 1:
        raise ValueError(f"--init-timeout must be >= 1 second, got {args.init_timeout}")
    for flag, value in (("--mesh-seeds", args.mesh_seeds), ("--mesh-envs", args.mesh_envs)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    mesh_seeds = args.mesh_seeds
    if mesh_seeds is None and (n > 1 or args.mesh_envs is not None):
        mesh_seeds = 1
    if mesh_seeds is not None and args.seeds % mesh_seeds:
        raise ValueError(f"--seeds must be a multiple of --mesh-seeds={mesh_seeds}, got {args.seeds}")
    if mesh_seeds is not None and args.local_device_count is not None:
        total = n * args.local_device_count
        envs = total // mesh_seeds if args.mesh_envs is None else args.mesh_envs
        if mesh_seeds * envs != total if n > 1 else mesh_seeds * envs > total:
            raise ValueError(f"--mesh-seeds {mesh_seeds} x --mesh-envs {envs} must {'equal' if n > 1 else 'be at most'}"
                             f" the device count {total} (--num-processes {n} x --local-device-count "
                             f"{args.local_device_count})")
    if n > 1 and not args.out:
        raise ValueError("--out must name the run directory when several processes run (their default names would "
                         "differ)")
    return MeshOptions(mesh_seeds, args.mesh_envs, coordinator, n, pid, args.local_device_count, args.init_timeout)


PROCESS_OPTIONS = ("process_id", "local_device_count", "handler", "subparser", "run_flags")


def start_processes(options: MeshOptions, args: argparse.Namespace) -> None:
    """Join the other processes (:func:`zsgjax.distributed.initialize`, which first meets them
    at the coordinator and compares their options) or, with one process, set the CPU device
    count. Before any JAX computation."""
    from zsgjax import distributed

    if options.num_processes == 1:
        if options.local_device_count is not None:
            distributed.configure_cpu(options.local_device_count)
        return
    same = {k: v for k, v in sorted(vars(args).items()) if k not in PROCESS_OPTIONS}
    distributed.initialize(options.coordinator, options.num_processes, options.process_id,
                           options.local_device_count, initialization_timeout=options.init_timeout, options=same)


def make_mesh(options: MeshOptions):
    """The run's mesh: ``None`` (one device), a mesh of this process's devices, or one over
    every process's devices."""
    from zsgjax import distributed, sharding

    if options.mesh_seeds is None:
        return None
    if options.num_processes > 1:
        return distributed.global_mesh(options.mesh_seeds, options.mesh_envs)
    return sharding.make_mesh(options.mesh_seeds, options.mesh_envs)


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

    methods = tuple(dict.fromkeys(args.method))
    spec = runner.RunSpec(seeds=args.seeds, chunks=args.chunks, keep=args.keep, eval_episodes=args.eval_episodes,
                          sweep_points=args.sweep_points, sweep_dims=sweep_dims_from_args(args),
                          tensorboard=args.tensorboard, resume=args.resume, wandb_project=wandb_project(args)).validate()
    hyper = {name: getattr(args, name) for name in args.hyper_options if getattr(args, name) is not None}
    configs = train_configs(args, methods, hyper)  # each value is checked here, once, by TrainConfig
    env = next(iter(configs.values())).make_env()  # one instance shared by every method
    trainers = {m: train_lib.make_train(c, env=env) for m, c in configs.items()}
    runner.evaluation_grid(env, spec)  # a --sweep-dims the env lacks is an error now, not after training
    if args.resume and not args.out:
        raise ValueError("--resume needs --out naming the run directory to continue")
    out = args.out or os.path.join("runs", f"{args.env}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    command = TrainCommand(env=args.env, trainers=trainers, spec=spec, out=out)
    if getattr(args, "process_id", None) in (None, 0):  # process 0 alone checks --out in a multi-host run
        check_out(command)
    return command


OUTPUT_FILES = ("run.json", "generalization.txt", "generalization.csv", "generalization.json", "generalization.png",
                "learning_curves.png")


def check_output_directory(out: str, labels: Sequence[str] | None = None) -> None:
    """``ValueError`` naming ``--out`` unless it is (or can be created as) a writable directory
    (:func:`zsgjax.reporting.files.check_writable_directory`; nothing is created). With
    ``labels``, none of the files the run writes (:data:`OUTPUT_FILES`,
    ``<label>/metrics.csv``) may be a directory."""
    from zsgjax.reporting.files import check_writable_directory

    check_writable_directory(out, "--out")
    if labels is None:
        return
    names = list(OUTPUT_FILES) + [os.path.join(label, "metrics.csv") for label in labels]
    for name in names:
        target = os.path.join(out, name)
        if os.path.isdir(target):
            raise ValueError(f"--out '{out}': '{target}' is a directory, but zsgjax writes a file there; "
                             "remove it or choose another --out")


def check_out(command: TrainCommand) -> None:
    """The up-front checks of ``--out`` (``ValueError`` naming it): it exists with
    ``--resume`` and is a writable directory (:func:`check_output_directory`)."""
    if command.spec.resume and not os.path.isdir(command.out):
        raise ValueError(f"--resume: output directory '{command.out}' does not exist")
    check_output_directory(command.out, list(command.trainers))


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
    result of is an error unless ``--resume`` is given (then it is evaluated from its
    checkpoints, or its stored evaluation is reused); the others are merged into the new table. ``ValueError`` when the
    stored results are of another environment, other environment options or
    another grid (``--env``, ``--physical`` ..., ``--sweep-points``, ``--sweep-dims``).
    """
    from zsgjax import runner
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
    grid = runner.evaluation_grid(first.env, command.spec)
    for m, r in stored.items():
        if r.grid.labels != grid.labels:
            raise ValueError(f"--out '{command.out}' holds '{m}' evaluated on another context grid; use the same "
                             f"--sweep-points and --sweep-dims ({len(r.grid.labels)} contexts there) or another --out")
    keep = {m: r for m, r in stored.items() if m not in command.trainers}
    return keep, info


MERGE_WAIT_S = 600.0  # how long a run waits for another run's merge into the same --out


def read_run_info(command: TrainCommand) -> dict[str, Any]:
    """``--out``'s ``run.json`` (``{}`` when missing or unreadable); ``ValueError`` when it
    records another environment."""
    path = os.path.join(command.out, "run.json")
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(info, dict):
        return {}
    if info.get("env") not in (None, command.env):
        raise ValueError(f"--out '{command.out}' holds a run of env '{info.get('env')}', not '{command.env}'; "
                         "choose another --out")
    return info


def start_results(command: TrainCommand) -> tuple[dict[str, Any], dict[str, Any]]:
    """Under the lock of ``--out``: the finished results kept (:func:`previous_results`), the
    ``--resume`` checks of the metrics, and ``run.json`` rewritten with this run's methods
    merged into what it lists (other runs into the same ``--out`` included).
    Returns ``(kept results, run info)``."""
    from zsgjax.reporting.files import atomic_write

    kept, kept_info = previous_results(command)
    check_resumable_metrics(command)
    recorded = read_run_info(command)
    first = next(iter(command.trainers.values()))
    configs = {m: t.config.record() for m, t in command.trainers.items()}
    spec = command.spec
    run_info = {
        "env": command.env,
        "env_kwargs": _json_form(first.config.env_kwargs),
        "methods": list(dict.fromkeys([*recorded.get("methods", []), *kept, *command.trainers])),
        "num_seeds": spec.seeds,
        "eval_episodes": spec.eval_episodes,
        "sweep_points": spec.sweep_points,
        **({"sweep_dims": list(spec.sweep_dims)} if spec.sweep_dims is not None else {}),
        "configs": {**recorded.get("configs", {}),
                    **{m: c for m, c in kept_info.get("configs", {}).items() if m in kept}, **configs},
    }
    atomic_write(os.path.join(command.out, "run.json"), json.dumps(_json_form(run_info), indent=1) + "\n")
    return kept, run_info


def write_results(command: TrainCommand, runs: Mapping[str, Any], log) -> None:
    """Under the lock of ``--out``: this run's results merged with the finished ones there now
    (another run's, finished meanwhile, included), written as the table, CSV, JSON and plots."""
    from zsgjax import evaluate
    from zsgjax.reporting import plots, tables

    out, first = command.out, next(iter(command.trainers.values()))
    kept, _ = previous_results(command)
    info = read_run_info(command)
    results = {**kept, **{label: r.result for label, r in runs.items()}}
    if not results:
        return
    t0 = time.perf_counter()
    default = ", ".join(f"{v:g}" for v in results[next(iter(results))].grid.default)
    title = (f"{command.env}: zero-shot return after {trained_steps(first):,} training steps per seed "
             f"(default context ({default}))")
    seeds = {r.num_seeds for r in results.values()}
    differences = evaluate.paired_differences(results) if len(seeds) == 1 else []
    optimum = evaluate.optimal_returns(first.env, results[next(iter(results))].grid)
    text = tables.write_table(results, os.path.join(out, "generalization.txt"), detail=False, title=title,
                              differences=differences, optimum=optimum)
    tables.write_csv(results, os.path.join(out, "generalization.csv"))
    configs = info.get("configs", {})
    tables.write_json(results, os.path.join(out, "generalization.json"),
                      extra={**info, "methods": list(results), "configs": {m: configs[m] for m in results
                                                                           if m in configs}})
    swept = plots.write_sweep_plot(results, os.path.join(out, "generalization.png"), title=f"{command.env}")
    curves = plots.write_learning_curves(out, list(results), os.path.join(out, "learning_curves.png"),
                                         f"{command.env}: training return")
    log("\n" + text)
    also = " and learning_curves.png" if curves else ""
    log(f"wrote {out}/generalization.{{txt,csv,json{',png' if swept else ''}}}{also} in {time.perf_counter() - t0:.1f} s")


def trained_steps(trainer) -> int:
    """Environment steps per seed a trainer runs: ``total_steps`` rounded up to whole iterations."""
    return trainer.num_iterations * trainer.steps_per_iteration


def describe_run(command: TrainCommand, options: str = "", kept: Sequence[str] = ()) -> list[str]:
    """The lines printed before training: what trains where, how many steps (the rounded
    number when ``--steps`` is not a whole number of iterations) and what the progress
    lines' return means."""
    first = next(iter(command.trainers.values()))
    steps = trained_steps(first)
    lines = [f"zsgjax train: env={command.env}{options} methods={','.join(command.trainers)} seeds={command.spec.seeds} "
             f"steps={steps:,} out={command.out}" + (f" (keeping finished {', '.join(kept)})" if kept else "")]
    if steps != first.config.total_steps:
        lines.append(f"  steps: {first.config.total_steps:,} asked, {steps:,} trained per seed "
                     f"({first.num_iterations} whole iterations of {first.steps_per_iteration:,} steps, "
                     f"{first.config.num_envs} environments)")
    space = first.env.context_space
    for label, trainer in command.trainers.items():
        lines.append(f"  {label} trains on {trainer.method.describe(space)}")
    note = ("  progress lines: 'return' is the mean return of the episodes that ended in the chunk, at the "
            "training contexts; the zero-shot table over unseen contexts comes after training")
    optimum = first.env.optimal_return(space.default_array)
    if optimum is not None:
        note += f" (the optimal return at the default context is {optimum:g})"
    lines.append(note)
    return lines


def run_train(command: TrainCommand, log=_print, mesh: Any = None) -> dict[str, Any]:
    """Train, evaluate and write every output of a ``zsgjax train`` run; returns ``{method: MethodRun}``.

    Before any training, each method's directory in ``--out`` is locked for the whole
    run (a second run of the same method into the same ``--out`` fails at once, naming
    the holder) and the finished results and checkpoints there are checked. ``run.json``
    and the results are merged under the lock of ``--out`` itself, so runs of different
    methods into one ``--out``, even at the same time, all keep their results. On
    divergence (:class:`zsgjax.runner.Diverged`) the results of the methods finished
    so far are still written, then the error is raised. ``mesh``: where to train (see
    :mod:`zsgjax.runner`); in a multi-process run process 0 alone logs and writes.
    """
    from zsgjax import runner
    from zsgjax.reporting.files import DirectoryLock
    from zsgjax.sharding import Placement

    import jax

    placement = Placement(mesh)
    writer = jax.process_index() == 0
    log = log if writer else (lambda message: None)
    spec, out = command.spec, command.out
    first = next(iter(command.trainers.values()))
    out_lock = DirectoryLock(out, what="--out")
    with runner.label_locks(out, list(command.trainers), placement):
        runner.preflight(command.trainers, out, spec, mesh)

        def start():
            with out_lock.acquire(MERGE_WAIT_S):
                return start_results(command)

        kept, run_info = runner.on_process_0(start, placement) or ({}, {})
        options = "".join(f" {k}={v}" for k, v in _json_form(first.config.env_kwargs).items())
        for line in describe_run(command, options, kept):
            log(line)

        def on_event(event) -> None:
            for line in runner.format_event(event, spec.seeds):
                log(line)

        runs = {}
        diverged = None
        evaluators: dict = {}  # one evaluation program for every method with the same policy shape
        for label, trainer in command.trainers.items():  # one label at a time, so each prints its evaluation line
            try:
                (runs[label],) = runner.run({label: trainer}, out, spec, on_event, mesh=mesh,
                                            lock_labels=False, evaluators=evaluators,
                                            preflighted=True).values()
            except runner.Diverged as e:
                diverged = e
                log(f"error: {e}")
                break
            if runs[label].reused_from is None:  # else its "reused its evaluation" line said so
                log(f"[{label}] evaluated {len(runs[label].result.grid)} contexts x {spec.eval_episodes} episodes x "
                    f"{spec.seeds} seeds in {runs[label].eval_s:.1f} s")
        if placement.multiprocess:
            from zsgjax import distributed

            digest = distributed.array_digest([r.result.returns for r in runs.values()])
            print(f"zsgjax train: process {jax.process_index()} of {jax.process_count()}: evaluation digest {digest}",
                  flush=True)

        def finish():
            with out_lock.acquire(MERGE_WAIT_S):
                write_results(command, runs, log)

        runner.on_process_0(finish, placement)
    if diverged is not None:
        raise diverged
    return runs


def _train_command(args: argparse.Namespace) -> int:
    from zsgjax import runner

    configure_compile_cache(args.compile_cache)
    try:
        options = mesh_options(args)
    except ValueError as e:
        args.subparser.error(_flag_message(str(e), args.run_flags))
    try:
        start_processes(options, args)
    except ValueError as e:  # a busy port, a duplicate id, a missing process: one line
        print(f"zsgjax train: error: {e}", file=sys.stderr, flush=True)
        return 2
    try:
        return _train(args, options)
    finally:
        if options.num_processes > 1:  # every process at the shutdown barrier before process 0's service stops
            import jax

            jax.distributed.shutdown()


def _train(args: argparse.Namespace, options: MeshOptions) -> int:
    from zsgjax import runner

    try:
        command = command_from_args(args)
        mesh = make_mesh(options)
    except ValueError as e:
        args.subparser.error(_flag_message(str(e), args.run_flags))
    try:
        run_train(command, mesh=mesh)
    except runner.Diverged as e:
        print(f"zsgjax train: {e}. Results of the methods that finished are written; start again in another "
              "--out with other options (for example a smaller learning rate)", flush=True)
        return 1
    except ValueError as e:  # bad input found only once running (a locked --out, a conflicting checkpoint): one line
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
