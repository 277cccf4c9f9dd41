"""Command-line options shared by ``zsgjax train`` and the scripts.

The pieces of an ``argparse`` command line that the CLI (:mod:`zsgjax.cli`) and the
experiment scripts (``scripts/``) both use, so that a script builds its own command
line from the library instead of importing the CLI: a parser with one-line errors
(:class:`ArgumentParser`), a dataclass's fields as options (:func:`parse_dataclass`),
the environment's constructor options (:func:`add_env_options`,
:func:`env_kwargs_from_args`), logging options (:func:`add_run_logging_options`,
:func:`wandb_project`), JAX's persistent compilation cache
(:func:`configure_compile_cache`) and :func:`flag_message`, which names the option a
user typed in a config error. Importing this module imports no JAX.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import os
import re
from typing import Any, Mapping, Sequence

# The README's main job: ``zsgjax train`` with no arguments.
DEFAULT_ENV = "simple_direction"
DEFAULT_METHODS = ("vanilla", "cse")

# TrainConfig fields with their own option names; the rest are generated from the field names.
OWN_FIELDS = {"env": "--env", "method": "--method", "total_steps": "--steps", "num_envs": "--num-envs",
              "seed": "--seed", "env_kwargs": "--physical/--physical-range/--env-option"}
# environment constructor options with their own flags (the rest: --env-option KEY=VALUE)
ENV_FLAGS = {"physical": "--physical", "physical_ranges": "--physical-range"}


# ---------------------------------------------------------------- caches
def cache_dir() -> str:
    """zsgjax's user cache: ``$ZSGJAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/zsgjax``, else ``~/.cache/zsgjax``."""
    if os.environ.get("ZSGJAX_CACHE_DIR"):
        return os.environ["ZSGJAX_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "zsgjax")


def compile_cache_dir() -> str:
    """Where the CLI and the scripts keep JAX's persistent compilation cache:
    ``$ZSGJAX_COMPILE_CACHE``, else ``<cache_dir()>/jax``."""
    return os.environ.get("ZSGJAX_COMPILE_CACHE") or os.path.join(cache_dir(), "jax")


def configure_compile_cache(enabled: bool = True) -> str | None:
    """Turn on JAX's persistent compilation cache (a repeated run loads its programs
    instead of compiling them); returns the directory in use, ``None`` when off.

    A cache directory set already (``JAX_COMPILATION_CACHE_DIR``, or by the caller,
    e.g. the test suite's ``conftest.py``) is kept as it is. ``enabled=False``
    (``--no-compile-cache``) changes nothing. Call it before the first compilation.
    """
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    if not enabled:
        return None
    path = compile_cache_dir()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None  # an unwritable cache is not an error: programs are compiled as without one
    jax.config.update("jax_compilation_cache_dir", path)
    return path



# ---------------------------------------------------------------- parsing
class ArgumentParser(argparse.ArgumentParser):
    """``argparse`` with one-line errors: ``<prog>: error: <message>; <hint>`` and exit status 2.

    The hint names the closest option for a misspelt one and points to ``--help``
    (instead of argparse's usage block).
    """

    def error(self, message: str):  # type: ignore[override]
        hint = f"see '{self.prog} --help'"
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown:
            flags = [s for a in self._actions for s in a.option_strings]
            for word in unknown.group(1).split():
                if word.startswith("-"):
                    close = difflib.get_close_matches(word.split("=")[0], flags, n=1, cutoff=0.75)
                    if close:
                        hint = f"did you mean {close[0]}? ({hint})"
                        break
        self.exit(2, f"{self.prog}: error: {message}; {hint}\n")


def parse_dataclass(cls: type, argv: Sequence[str] | None = None, *, description: str | None = None,
                    prog: str | None = None) -> Any:
    """An instance of the dataclass ``cls`` from the command line: one ``--field-name`` option per field.

    What the scripts use for their settings (``scripts/cebe_cliffwalking.py``,
    ``scripts/offline/*.py``). Field types: ``int``, ``float``, ``str``, ``bool``
    (``--x`` / ``--no-x``) and ``tuple[int, ...]`` / ``tuple[float, ...]`` /
    ``tuple[str, ...]`` (``--x 1 2 3``); defaults are the dataclass's. Errors are one
    line (:class:`ArgumentParser`).
    """
    import typing

    hints = typing.get_type_hints(cls)
    parser = ArgumentParser(prog=prog, description=description)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        kwargs: dict[str, Any] = dict(dest=f.name, default=default, help=f"(default: {default!r})")
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) is tuple:
            (item, *_rest) = typing.get_args(tp)
            kwargs.update(nargs="+", type=item, metavar=item.__name__.upper())
        elif tp in (int, float, str):
            kwargs.update(type=tp, metavar=tp.__name__.upper())
        else:
            raise TypeError(f"parse_dataclass: no option type for {cls.__name__}.{f.name}: {tp}")
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)
    ns = parser.parse_args(argv)
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in vars(ns).items()})


def _literal(text: str) -> Any:
    """An ``--env-option`` value: a Python/JSON literal (``0.1``, ``True``, ``[1, 2]``, ``null``) or else the string."""
    aliases = {"true": True, "false": False, "null": None, "none": None}
    if text.lower() in aliases:
        return aliases[text.lower()]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY a constructor argument name, got '{text}'")
    return key.strip(), _literal(value.strip())


def _named_range(text: str) -> tuple[str, tuple[float, float]]:
    name, sep, value = text.partition("=")
    parts = value.split(",")
    try:
        if not sep or not name or len(parts) != 2:
            raise ValueError
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=LOW,HIGH (e.g. gravity=6,12), got '{text}'") from None
    return name, (low, high)


def add_env_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The environment's constructor options (``TrainConfig.env_kwargs``): ``--physical``,
    ``--physical-range``, ``--env-option``; read them back with :func:`env_kwargs_from_args`."""
    parser.add_argument("--physical", nargs="+", default=None, metavar="FEATURE",
                        help="MJX envs: physical context features, e.g. gravity mass_scale:torso friction_scale "
                        "actuator_gain damping_scale (env option 'physical')")
    parser.add_argument("--physical-range", nargs="+", default=None, type=_named_range, metavar="NAME=LOW,HIGH",
                        help="range of a physical feature, e.g. gravity=6,12 (env option 'physical_ranges')")
    parser.add_argument("--env-option", nargs="+", default=None, type=key_value, metavar="KEY=VALUE",
                        help="any other constructor option of the environment, e.g. integrator=gym (pendulum_goal), "
                        "context=angle reward=brax (ants), reset_noise_scale=0.05; VALUE is read as a Python literal "
                        "when it is one, else as a string")


def env_kwargs_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ``TrainConfig.env_kwargs`` of :func:`add_env_options`; ``ValueError`` naming the option given twice."""
    kwargs: dict[str, Any] = {}
    for key, value in args.env_option or ():
        if key in kwargs:
            raise ValueError(f"--env-option: '{key}' is given twice")
        if key in ENV_FLAGS:
            raise ValueError(f"--env-option: give '{key}' with {ENV_FLAGS[key]}")
        kwargs[key] = value
    if args.physical:
        kwargs["physical"] = tuple(args.physical)
    if args.physical_range:
        ranges: dict[str, tuple[float, float]] = {}
        for name, value in args.physical_range:
            if name in ranges:
                raise ValueError(f"--physical-range: '{name}' is given twice")
            ranges[name] = value
        kwargs["physical_ranges"] = ranges
    return kwargs


def add_sweep_dims_option(group) -> None:
    """``--sweep-dims NAME [NAME ...]`` (or ``none``): read back with :func:`sweep_dims_from_args`."""
    group.add_argument("--sweep-dims", nargs="+", default=None, metavar="NAME",
                       help="context dimensions to sweep (default: every one; 'none': only the environment's named "
                       "contexts, e.g. to evaluate those with more episodes)")


def sweep_dims_from_args(args: argparse.Namespace) -> tuple[str, ...] | None:
    """``RunSpec.sweep_dims`` of :func:`add_sweep_dims_option`: ``None`` (all), ``()`` for ``none``, else the names."""
    if args.sweep_dims is None:
        return None
    if [d.lower() for d in args.sweep_dims] == ["none"]:
        return ()
    if any(d.lower() == "none" for d in args.sweep_dims):
        raise ValueError(f"--sweep-dims: 'none' stands alone (the named contexts only), got {args.sweep_dims}")
    return tuple(args.sweep_dims)


def add_run_logging_options(group, tensorboard_default: bool | None = True) -> None:
    """``--[no-]tensorboard`` (unless ``tensorboard_default`` is None), ``--wandb``, ``--wandb-project``,
    ``--no-compile-cache``: shared by ``zsgjax train`` and the experiment scripts."""
    if tensorboard_default is not None:
        group.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=tensorboard_default,
                           help="write TensorBoard events when tensorboardX is installed (default: on)")
    group.add_argument("--wandb", action="store_true",
                       help="also log the metrics to Weights & Biases (one W&B run per method; WANDB_MODE=offline "
                       "for no network)")
    group.add_argument("--wandb-project", default=None, metavar="NAME",
                       help="W&B project (implies --wandb; default: zsgjax)")
    group.add_argument("--no-compile-cache", dest="compile_cache", action="store_false",
                       help="do not use JAX's persistent compilation cache (default: on, in $ZSGJAX_COMPILE_CACHE or "
                       "~/.cache/zsgjax/jax)")


def wandb_project(args: argparse.Namespace) -> str | None:
    """The W&B project of ``--wandb`` / ``--wandb-project`` (``None``: no W&B)."""
    if args.wandb_project is not None:
        return args.wandb_project
    return "zsgjax" if args.wandb else None


def flag_message(message: str, run_flags: Mapping[str, str] | None = None) -> str:
    """``TrainConfig.total_steps must ...`` -> ``--steps must ...`` (the option the user typed).

    A setting of a method registered after import, ``TrainConfig.method_options['mine_x']``,
    is its flag ``--mine-x`` too."""

    def flag(m: re.Match) -> str:
        owner, name = m.group(1), m.group(2)
        if owner == "RunSpec":
            return (run_flags or {}).get(name, "--" + name.replace("_", "-"))
        return OWN_FIELDS.get(name, "--" + name.replace("_", "-"))

    def env_flag(m: re.Match) -> str:
        return f"environment option {m.group(1)} ({ENV_FLAGS.get(m.group(1), '--env-option ' + m.group(1))})"

    message = message.replace(" (or None for the preset)", "")
    message = re.sub(r"\bTrainConfig\.method_options\['(\w+)'\]", lambda m: "--" + m.group(1).replace("_", "-"), message)
    message = re.sub(r"\benvironment option (\w+)", env_flag, message)
    message = message.replace("TrainConfig.env_kwargs", "environment options (--physical/--physical-range/--env-option)")
    return re.sub(r"\b(TrainConfig|RunSpec)\.(\w+)", flag, message)
