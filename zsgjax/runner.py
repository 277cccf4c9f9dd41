"""The run driver: chunked, checkpointed training of many seeds, then zero-shot evaluation.

What the CLI (``zsgjax train``) and the experiment scripts both run. For every
labelled :class:`~zsgjax.train.Trainer` (a method, or a variant of one):

1. all seeds are initialised and trained in **one** jitted program
   (``trainer.run_seeds``, a ``vmap`` of ``trainer.run``), in ``chunks`` pieces;
   after each piece the state is checkpointed (orbax, under
   ``<root>/<label>/checkpoints``), the metrics appended to
   ``<root>/<label>/metrics.csv`` (and TensorBoard), and a :class:`ChunkReport`
   handed to ``on_event``;
2. every seed's deterministic policy is evaluated over the context grid (one
   jitted ``vmap(seeds) x vmap(contexts) x vmap(episodes)`` program); seeds of all
   labels share their episode starts, so differences between labels are paired.

Each evaluation's returns are kept in ``<root>/<label>/evaluations/``
(:mod:`zsgjax.evaluation_store`), so a resumed label that had finished is neither
restored nor evaluated again (:func:`finished_evaluation`, a :class:`Reused` event).

Everything the caller might want to print or store comes back as data
(:class:`ChunkReport`, :class:`TrainReport`, :class:`MethodRun`): timings (compile
apart from the run), metrics, the evaluation result. ``resume=True`` continues
from the latest checkpoints; the result equals an uninterrupted run.

**Where it runs** (``mesh``): ``None`` is the default device; a ``(seeds, envs)``
mesh (:func:`zsgjax.sharding.make_mesh`) splits the seeds and each seed's batch over
the devices of this process; a mesh over the devices of several processes
(:func:`zsgjax.distributed.global_mesh`, after :func:`zsgjax.distributed.initialize`)
runs the same loop on every process. There, **process 0 alone touches the output
directory**: it holds the locks, writes the checkpoints (the state gathered to NumPy
on every process, then written by process 0 with the same atomic, digest-checked
:class:`~zsgjax.checkpoint.Checkpointer` as a one-device run) and the metrics; on
``resume`` it restores the latest good checkpoint and sends it to the others bit for
bit (:func:`zsgjax.distributed.broadcast_from_0`), so only process 0 needs to see the
directory. Its errors (a locked or unwritable directory, a checkpoint conflict, a
full disk) stop every process with the same message (:func:`zsgjax.distributed.share_errors`).

**Up front**, before any training: the output directory must be writable and each
label's directory free (a :class:`~zsgjax.reporting.files.DirectoryLock` on
``<root>/<label>``, held until the label is trained and evaluated: a second run of
the same label into the same root fails at once, naming the holder), and existing
checkpoints must match (:func:`preflight`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
import contextlib
from typing import Any, Callable, Iterator, Mapping, TypeVar

import jax
import numpy as np

from zsgjax import distributed, evaluation_store, memory, rollout
from zsgjax.checkpoint import Checkpointer, CorruptCheckpoint
from zsgjax.configs import param, validate
from zsgjax.evaluate import ACTION_MODES, evaluate_grid, make_evaluator, make_grid, piece_size, policy_action
from zsgjax.reporting.compiles import CompileEvents, compile_cache_dir
from zsgjax.reporting.files import DirectoryLock, check_writable_directory
from zsgjax.reporting import tables
from zsgjax.reporting.metrics_log import MetricsLog
from zsgjax.reporting.results import ContextGrid, EvalResult
from zsgjax.sharding import Placement
from zsgjax.train import Trainer

T = TypeVar("T")

# Version of the config record stored with every checkpoint. Bump it when the
# shape of TrainConfig changes, so that older checkpoints fail with a clear message.
# 3: TrainConfig.env_kwargs (the environment's constructor options).
# 4: TrainConfig.flat_optimizer; SAC optimiser states per leaf by default.
# 5: TrainConfig.dqn_activation / dqn_head_hidden_size (the paper's cart_goal Q-network).
CHECKPOINT_FORMAT = 5


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """How to run trainers: seeds, chunking, checkpoints, evaluation size.

    seeds: seeds per label, vmapped in one program; chunks: training runs in this
    many jitted pieces (a checkpoint and a report after each); keep: checkpoints
    kept per label; eval_episodes: episodes per context and seed; sweep_points:
    points per swept context dimension; sweep_dims: the context dimensions swept (``None``:
    every one; ``()``: none, the environment's named contexts only); eval_actions: how the evaluated policies act
    (:data:`zsgjax.evaluate.ACTION_MODES`: ``"mean"`` deterministic, ``"sample"``,
    ``"sample_unscaled"`` the CSE paper's sampling); tensorboard: also write TensorBoard events
    (when ``tensorboardX`` is installed); resume: continue existing checkpoints
    (without it, existing checkpoints are an error); wandb_project: also log the
    metrics to this Weights & Biases project (one W&B run per label; ``None``: off;
    ``WANDB_MODE=offline`` logs to local files with no network; wandb is imported
    only when this is set).
    """

    seeds: int = param(3, kind=int, low=1)
    chunks: int = param(10, kind=int, low=1)
    keep: int = param(2, kind=int, low=1)
    eval_episodes: int = param(10, kind=int, low=1)
    sweep_points: int = param(9, kind=int, low=2)
    sweep_dims: tuple[str, ...] | None = None  # checked in validate (a tuple of names), against the env by make_grid
    eval_actions: str = param("mean", kind=str, choices=ACTION_MODES)
    tensorboard: bool = param(True, kind=bool)
    resume: bool = param(False, kind=bool)
    wandb_project: str | None = param(None, kind=str)

    def validate(self) -> "RunSpec":
        validate(self)
        if self.sweep_dims is not None and not (isinstance(self.sweep_dims, tuple)
                                                and all(isinstance(d, str) and d for d in self.sweep_dims)):
            raise ValueError("RunSpec.sweep_dims must be None (every dimension) or a tuple of context dimension names "
                             f"(() for the named contexts only), got {self.sweep_dims!r}")
        if self.wandb_project is not None and not self.wandb_project.strip():
            raise ValueError("RunSpec.wandb_project must be a non-empty W&B project name or None (off); got ''")
        return self


@dataclasses.dataclass(frozen=True)
class Resumed:
    """A label continues from checkpoint ``iteration`` of ``total_iterations``."""

    label: str
    iteration: int
    total_iterations: int


@dataclasses.dataclass(frozen=True)
class ChunkReport:
    """One trained chunk of one label.

    iteration / total_iterations: iterations done after the chunk / in all;
    env_steps / total_env_steps: the same in environment steps per seed;
    compile_s: seconds spent compiling the chunk's program (0 when reused; the
    first chunk's includes compiling the seeds' initialisation);
    run_s: seconds in the compiled program; steps_per_s: environment steps per
    second over all seeds; episode_return: mean over seeds of the mean return of
    the episodes that ended in the chunk (NaN when none did); metrics: name ->
    ``(S, n)`` per-iteration metrics of the chunk's ``n`` iterations; eta_s: the
    estimated seconds until the label's training ends (the remaining iterations
    at the mean wall time per iteration of this session's chunks, compilation
    excluded; 0 after the last chunk).
    """

    label: str
    iteration: int
    total_iterations: int
    env_steps: int
    total_env_steps: int
    compile_s: float
    run_s: float
    steps_per_s: float
    episode_return: float
    metrics: Mapping[str, np.ndarray]
    eta_s: float = 0.0


@dataclasses.dataclass(frozen=True)
class TrainReport:
    """All chunks of one label: ``wall_s`` (initialisation, compilation, training and
    checkpoints), ``compile_s`` and ``program_s`` (sums over the chunks)."""

    label: str
    resumed_from: int | None
    chunks: tuple[ChunkReport, ...]
    wall_s: float

    @property
    def compile_s(self) -> float:
        return float(sum(c.compile_s for c in self.chunks))

    @property
    def program_s(self) -> float:
        return float(sum(c.run_s for c in self.chunks))


@dataclasses.dataclass(frozen=True)
class MethodRun:
    """A trained and evaluated label; ``reused_from``: the stored evaluation its result was read
    from (:class:`Reused`), ``None`` when it was evaluated in this run."""

    label: str
    trainer: Trainer
    train: TrainReport
    result: EvalResult
    eval_s: float
    reused_from: str | None = None

    @property
    def timings(self) -> dict[str, float]:
        return {"train_s": self.train.wall_s, "compile_s": self.train.compile_s,
                "program_s": self.train.program_s, "eval_s": self.eval_s}


@dataclasses.dataclass(frozen=True)
class Notice:
    """Something the user should know that does not stop the run (a corrupt checkpoint skipped)."""

    label: str
    message: str


@dataclasses.dataclass(frozen=True)
class Compiling:
    """A program of ``label`` is about to be traced and compiled, or loaded from JAX's
    persistent compilation cache: ``program`` says which (``"training programs for 3
    seeds"``: the seeds' initialisation and the training chunk; ``"evaluation program
    for ..."``), ``env`` the environment, ``cache_dir`` the persistent cache in use
    (``None``: off)."""

    label: str
    env: str
    program: str
    cache_dir: str | None


@dataclasses.dataclass(frozen=True)
class Compiled:
    """The program announced by :class:`Compiling` is ready after ``seconds`` (wall time,
    tracing included); ``loaded_from_cache``: XLA compiled none of it, every part came
    from the persistent compilation cache."""

    label: str
    program: str
    seconds: float
    loaded_from_cache: bool


@dataclasses.dataclass(frozen=True)
class Evaluating:
    """A piece of the zero-shot evaluation of ``label`` is done: ``contexts_done`` of
    ``contexts_total`` contexts (each with ``episodes`` episodes for each of ``seeds``
    seeds) after ``elapsed_s`` seconds; ``eta_s``: the seconds left at that rate."""

    label: str
    contexts_done: int
    contexts_total: int
    episodes: int
    seeds: int
    elapsed_s: float
    eta_s: float


@dataclasses.dataclass(frozen=True)
class Reused:
    """The evaluation of ``label`` was not run again: its returns came from ``path``, stored by an
    earlier run of the same policy parameters, grid, episodes and action mode
    (:mod:`zsgjax.evaluation_store`)."""

    label: str
    path: str


class Diverged(ValueError):
    """Training produced non-finite losses or parameters; the last finite checkpoint is kept."""


Event = Resumed | ChunkReport | Notice | Compiling | Compiled | Evaluating | Reused
OnEvent = Callable[[Event], None]


def format_event(event: Event, seeds: int) -> list[str]:
    """The progress lines of one event, as ``zsgjax train`` prints them."""
    if isinstance(event, Resumed):
        return [f"[{event.label}] resumed from iteration {event.iteration}/{event.total_iterations}"]
    if isinstance(event, Notice):
        return [f"[{event.label}] warning: {event.message}"]
    if isinstance(event, Compiling):
        cache = "kept in the compilation cache for the next run" if event.cache_dir else "compilation cache off"
        return [f"[{event.label}] compiling the {event.env} {event.program} ({cache})"]
    if isinstance(event, Compiled):
        if event.loaded_from_cache:
            return [f"[{event.label}] loaded the {event.program} from the compilation cache in {event.seconds:.1f} s"]
        return [f"[{event.label}] compiled the {event.program} in {event.seconds:.1f} s"]
    if isinstance(event, Reused):
        return [f"[{event.label}] reused its evaluation from {event.path} (the same policy parameters, grid, episodes "
                "and actions; delete the file to evaluate again)"]
    if isinstance(event, Evaluating):  # the last piece is the caller's to report, with the total time
        if event.contexts_done >= event.contexts_total:
            return []
        return [f"[{event.label}] evaluated {event.contexts_done}/{event.contexts_total} contexts x {event.episodes} "
                f"episodes x {event.seeds} seeds  ETA {format_seconds(event.eta_s)}"]
    ret = f"{event.episode_return:.2f}" if np.isfinite(event.episode_return) else "n/a (no episode ended yet)"
    eta = f"  ETA {format_seconds(event.eta_s)}" if event.iteration < event.total_iterations else ""
    return [
        f"[{event.label}] iteration {event.iteration}/{event.total_iterations}  "
        f"steps {event.env_steps:,}/{event.total_env_steps:,}  {event.steps_per_s:,.0f} steps/s  return {ret}{eta}"
    ]


def format_seconds(seconds: float) -> str:
    """``<1s``, ``42s``, ``3m05s``, ``2h07m``: a duration for progress lines."""
    s = max(0, int(round(seconds)))
    if s == 0:
        return "<1s"
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


# ------------------------------------------------------------------ checkpoints
def checkpoint_config(trainer: Trainer, seeds: int) -> dict[str, Any]:
    """The record stored with (and compared against) every checkpoint of a label."""
    return {"format": CHECKPOINT_FORMAT, **trainer.config.record(), "num_seeds": seeds}


def open_checkpointer(trainer: Trainer, directory: str, spec: RunSpec) -> Checkpointer:
    """The checkpointer of one label under ``directory``, checked against ``spec.resume``.

    ``ValueError`` when checkpoints exist but ``resume`` is off, or when they were
    written by another config, another number of seeds or an older zsgjax.
    """
    checkpointer = Checkpointer(os.path.join(directory, "checkpoints"), checkpoint_config(trainer, spec.seeds),
                                max_to_keep=spec.keep)
    try:
        latest = checkpointer.latest_step()
        if latest is None:
            return checkpointer
        if not spec.resume:
            raise ValueError(
                f"'{directory}' already holds checkpoints (iteration {latest}); "
                "continue them with RunSpec.resume or choose another output directory"
            )
        stored = checkpointer.restore_config(latest)
        if stored.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"checkpoint {latest} in '{checkpointer.directory}' was written by an older zsgjax (config format "
                f"{stored.get('format', 1)}; this version reads format {CHECKPOINT_FORMAT}) and cannot be resumed; "
                "start a new run in another output directory"
            )
        check_env_options(stored.get("env_kwargs", {}), checkpointer.config.get("env_kwargs", {}),
                          f"checkpoint {latest} in '{checkpointer.directory}'")
        checkpointer.verify_config(latest)
    except ValueError:
        checkpointer.close()
        raise
    return checkpointer


def check_env_options(stored: Mapping[str, Any], now: Mapping[str, Any], where: str) -> None:
    """``ValueError`` naming every environment option (``TrainConfig.env_kwargs`` entry) that
    differs between a stored record (JSON) and the current config."""
    stored, now = dict(stored or {}), dict(now or {})
    if stored == now:
        return
    missing = "<not given>"
    diff = [f"environment option {k}: there={stored.get(k, missing)!r} vs now={now.get(k, missing)!r}"
            for k in sorted(set(stored) | set(now)) if stored.get(k, missing) != now.get(k, missing)]
    raise ValueError(f"{where} was trained with other environment options ({'; '.join(diff)}); give the same "
                     "environment options (TrainConfig.env_kwargs) or use another output directory")


def on_process_0(fn: Callable[[], T], placement: Placement) -> T | None:
    """``fn()`` on process 0 only (``None`` elsewhere) in a multi-process run, with its
    ``ValueError``/``OSError`` raised on every process (:func:`zsgjax.distributed.share_errors`);
    just ``fn()`` otherwise."""
    if not placement.multiprocess:
        return fn()
    result, error = None, None
    if jax.process_index() == 0:
        try:
            result = fn()
        except (ValueError, OSError) as e:
            error = str(e)
    distributed.share_errors(error)
    return result


def check_mesh_spans_processes(placement: Placement) -> None:
    """``ValueError`` when this is one process of several but the mesh does not span them all."""
    n = jax.process_count()
    if n == 1:
        return
    if placement.mesh is None:
        raise ValueError(f"this is one of {n} processes (jax.distributed): give a mesh over every process's devices "
                         "(zsgjax.distributed.global_mesh)")
    spanned = {d.process_index for d in placement.mesh.devices.flat}
    if spanned != set(range(n)):
        raise ValueError(f"the mesh spans processes {sorted(spanned)} of {n}: give a mesh over every process's "
                         "devices (zsgjax.distributed.global_mesh)")


def preflight(trainers: Mapping[str, Trainer], root: str, spec: RunSpec, mesh: Any = None) -> None:
    """Before any training: every label's training state must fit in memory
    (:func:`check_memory`), ``root`` must be a writable directory (or creatable) and every
    label's checkpoints must match ``spec`` (``ValueError`` on a conflict; checked by
    process 0 in a multi-process run, raised on every process)."""
    spec.validate()
    placement = Placement(mesh)
    check_mesh_spans_processes(placement)
    for label, trainer in trainers.items():
        restoring = spec.resume and has_checkpoints(os.path.join(root, label))
        check_memory(placement.prepare(trainer, spec.seeds), spec.seeds, placement, label, restoring=restoring)

    def check() -> None:
        check_writable_directory(root, "the output directory")
        for label, trainer in trainers.items():
            open_checkpointer(trainer, os.path.join(root, label), spec).close()

    on_process_0(check, placement)


def check_memory(trainer: Trainer, seeds: int, placement: Placement = Placement(), label: str | None = None,
                 shapes: Any = None, restoring: bool = False) -> None:
    """``ValueError`` (with :func:`zsgjax.memory.memory_error`, prefixed by ``[label]``) when the training
    state (and, ``restoring``, the checkpoint's read buffer) cannot fit; checked by every process of a
    multi-process run, raised on all."""
    error = memory.memory_error(trainer, seeds, placement.mesh, shapes, restoring)
    distributed.share_errors(None if error is None else f"[{label}] {error}" if label else error)


def has_checkpoints(directory: str) -> bool:
    """Whether ``<directory>/checkpoints`` holds a checkpoint's step folder (its name a number), read
    without creating anything (a resume's memory check runs before the checkpointer is opened)."""
    try:
        return any(name.isdigit() for name in os.listdir(os.path.join(directory, "checkpoints")))
    except OSError:
        return False


@contextlib.contextmanager
def label_locks(root: str, labels: list[str], placement: Placement) -> Iterator[None]:
    """Hold a :class:`~zsgjax.reporting.files.DirectoryLock` on every ``root/<label>`` (process 0
    only); ``ValueError`` naming the holder when another run holds one."""
    locks = [DirectoryLock(os.path.join(root, label), what=f"the directory of '{label}'") for label in labels]

    def take() -> None:
        try:
            for lock in locks:
                lock.acquire()
        except BaseException:
            for lock in locks:
                lock.release()
            raise

    on_process_0(take, placement)
    try:
        yield
    finally:
        for lock in locks:
            lock.release()


# --------------------------------------------------------------------- training
def chunk_return(metrics: Mapping[str, np.ndarray]) -> float:
    """Mean over seeds of the mean return of the episodes finished in the chunk (NaN if none)."""
    episodes = metrics["episodes"].sum(axis=1)
    total = (metrics["episode_return"] * metrics["episodes"]).sum(axis=1)
    done = episodes > 0
    return float(np.mean(total[done] / episodes[done])) if done.any() else float("nan")


def first_nonfinite(metrics: Mapping[str, Any]) -> tuple[int, list[str], list[int]] | None:
    """Where the floating-point ``metrics`` first stop being finite: ``(iteration, names,
    seeds)``, or ``None`` when every value is finite.

    ``metrics``: name -> ``(S, n)`` (seeds, iterations; as ``jax.vmap(trainer.train)``
    returns them) or ``(n,)`` (one seed). ``iteration`` is the 0-based index of the
    first iteration at which any seed has a non-finite value in any metric; ``names``
    and ``seeds`` (sorted) are those non-finite at that iteration. Integer metrics are
    skipped.
    """
    first, names, seeds = None, [], set()
    for name in sorted(metrics):
        v = np.asarray(metrics[name])
        if not np.issubdtype(v.dtype, np.floating):
            continue
        v = v.reshape(1, -1, 1) if v.ndim == 1 else v.reshape(v.shape[0], v.shape[1], -1)  # (S, n, rest)
        bad = ~np.isfinite(v).all(axis=2)  # (S, n)
        if not bad.any():
            continue
        its = np.nonzero(bad.any(axis=0))[0]
        it = int(its[0])
        if first is None or it < first:
            first, names, seeds = it, [], set()
        if it == first:
            names.append(name)
            seeds.update(np.nonzero(bad[:, it])[0].tolist())
    return None if first is None else (first, names, sorted(seeds))


def check_finite_metrics(metrics: Mapping[str, Any], label: str | None = None, done: int = 0) -> None:
    """Raise :class:`Diverged` when any seed has a non-finite value of any floating-point
    metric at any iteration (see :func:`first_nonfinite` for the shapes).

    The message names the metric(s), the first non-finite iteration counted from 1 as
    the progress lines count them (``done`` + its index + 1; ``done``: iterations done
    before these metrics) and the seeds. The run driver calls it after every chunk; call
    it on the metrics of your own ``jax.vmap(trainer.train)`` too (a NaN there trains on
    silently).
    """
    found = first_nonfinite(metrics)
    if found is None:
        return
    it, names, seeds = found
    prefix = f"[{label}] " if label else ""
    raise Diverged(f"{prefix}training diverged: metric {', '.join(repr(n) for n in names)} is not finite from "
                   f"iteration {done + it + 1} (seeds {seeds}); the last finite checkpoint is iteration {done}")


def check_finite(label: str, trainer: Trainer, state: Any, metrics: Mapping[str, np.ndarray], done: int,
                 placement: Placement = Placement()) -> None:
    """Raise :class:`Diverged` when a chunk's metrics ``(S, n)`` or the policy are not finite.

    ``done``: iterations completed before the chunk (the last finite checkpoint).
    """
    check_finite_metrics(metrics, label, done)
    for leaf in jax.tree.leaves(placement.to_host(jax.vmap(trainer.policy_params)(state))):
        if not bool(np.all(np.isfinite(np.asarray(leaf)))):
            raise Diverged(f"[{label}] training diverged: the policy parameters are not finite after iteration "
                           f"{done + len(next(iter(metrics.values()))[0])}; the last finite checkpoint is iteration {done}")


def seed_keys(trainer: Trainer, seeds: int) -> jax.Array:
    """Seed ``k`` trains from ``split(PRNGKey(config.seed), seeds)[k]``."""
    return jax.random.split(jax.random.PRNGKey(trainer.config.seed), seeds)


def restore(checkpointer: Checkpointer | None, like: Any, placement: Placement,
            warn: Callable[[str], None]) -> tuple[int | None, Any]:
    """``(iteration, state)`` of the latest good checkpoint, or ``(None, None)`` when there is none.

    ``like``: the state's ``jax.ShapeDtypeStruct`` s (e.g. the initialisation's ``out_info``;
    or a state). One process: restored into that structure and placement. Several: process
    0 restores (``checkpointer`` is ``None`` elsewhere) and sends the state to the others bit
    for bit; every process places it on the mesh.
    """
    if not placement.multiprocess:
        if checkpointer.latest_step() is None:
            return None, None
        step, restored = checkpointer.restore_latest_good(like, warn=warn)
        return step, placement.place(restored) if placement.mesh is not None else restored
    host_like = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), like)  # unplaced, on the host
    found = on_process_0(lambda: checkpointer.restore_latest_good(host_like, warn=warn)
                         if checkpointer.latest_step() is not None else None, placement)
    step = int(distributed.broadcast_from_0(np.asarray(-1 if found is None else found[0], np.int64)))
    if step < 0:
        return None, None
    # the other processes receive into zeros of the state's shapes
    host = found[1] if found is not None else jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), host_like)
    return step, placement.place(distributed.broadcast_from_0(jax.tree.map(np.asarray, host)))


def save(checkpointer: Checkpointer | None, step: int, state: Any, placement: Placement) -> None:
    """Checkpoint ``step``: on one device the state as it is; on a mesh the state gathered to
    NumPy (the format of a one-device checkpoint, with no device layout recorded), in a
    multi-process run gathered to every process and written by process 0."""
    host = state if placement.mesh is None else placement.to_host(state)
    on_process_0(lambda: write_checkpoint(checkpointer, step, host), placement)


class _HeldOrbaxErrors(logging.Filter):
    """Holds back the error records (with their tracebacks) that orbax's writer threads log
    while a save fails, so that a failed save ends in one line instead of pages."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and "orbax" in record.pathname:
            self.records.append(record)
            return False
        return True


def write_checkpoint(checkpointer: Checkpointer, step: int, state: Any) -> None:
    """:meth:`Checkpointer.save`, with a failure to write (a full disk, a lost mount) as one
    ``OSError`` naming the checkpoint directory and the cause (orbax's own error logs of
    the failed write are held back; they are logged as usual when the save succeeds)."""
    held = _HeldOrbaxErrors()
    loggers = [logging.getLogger("absl"), logging.getLogger()]
    for logger in loggers:
        logger.addFilter(held)
    try:
        checkpointer.save(step, state)
    except Exception as e:  # orbax wraps the OSError in its own types, or in a ValueError with the errno
        raise OSError(f"cannot write checkpoint {step} in '{checkpointer.directory}': {write_error(e)}") from None
    finally:
        for logger in loggers:
            logger.removeFilter(held)
    for record in held.records:
        logging.getLogger(record.name).handle(record)


def write_error(error: BaseException) -> str:
    """The reason of a failed write: the first ``OSError``'s text in the exception chain,
    else the errno of a ``[os_error_code='N']`` note (TensorStore's), else the error itself."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError):
            return f"{cause.strerror or cause}"
        match = re.search(r"os_error_code='(\d+)'", str(cause))
        if match:
            return f"{os.strerror(int(match.group(1)))} (errno {match.group(1)})"
        cause = cause.__cause__ or cause.__context__
    return f"{type(error).__name__}: {error}"


def train(trainer: Trainer, directory: str, spec: RunSpec, label: str | None = None,
          on_event: OnEvent | None = None, mesh: Any = None,
          evaluation: Callable[[Any], EvalResult] | None = None) -> tuple[Any, TrainReport]:
    """Train all ``spec.seeds`` seeds of ``trainer`` in chunks, checkpointed under ``directory``.

    Returns the final state (leading seed axis ``S`` on every leaf; on a mesh, split over
    its ``seeds`` axis) and the report. ``mesh``: see the module docstring; every process
    of a multi-process run calls this with the same arguments (events are emitted on
    every process; notices of skipped checkpoints on process 0). ``evaluation``: called
    with the final state (on every process) before the loggers close; its result reaches
    TensorBoard and W&B per context and seed
    (:meth:`~zsgjax.reporting.metrics_log.MetricsLog.add_generalization`).
    """
    spec.validate()
    placement = Placement(mesh)
    check_mesh_spans_processes(placement)
    trainer = placement.prepare(trainer, spec.seeds)
    label = label or trainer.config.method
    emit = on_event or (lambda event: None)
    t_start = time.perf_counter()
    program = f"training programs for {spec.seeds} seeds"
    emit(Compiling(label, trainer.config.env, program, compile_cache_dir()))
    compiles = CompileEvents()
    t0 = time.perf_counter()
    keys = placement.place(seed_keys(trainer, spec.seeds))
    init = lower_init(trainer, keys, placement)
    restoring = spec.resume and has_checkpoints(directory)  # read before anything is created (as process 0 sees it)
    check_memory(trainer, spec.seeds, placement, label, shapes=init.out_info, restoring=restoring)  # before compiling
    pending_compile_s = time.perf_counter() - t0  # tracing and compiling, reported with the first chunk
    checkpointer = on_process_0(lambda: open_checkpointer(trainer, directory, spec), placement)
    total = trainer.num_iterations
    metrics_log = None
    chunks: list[ChunkReport] = []
    try:
        # Restored into the state's shapes: a resumed run never compiles, runs or holds a fresh state.
        resumed, state = restore(checkpointer, init.out_info, placement, warn=lambda m: emit(Notice(label, m)))
        if resumed is None:
            t0 = time.perf_counter()
            with compiles:  # around XLA's part alone: tracing may compile small eager operations of its own
                init = init.compile(compiler_options("init"))
            pending_compile_s += time.perf_counter() - t0
            state = init(keys)
        else:
            emit(Resumed(label, resumed, total))
        done = resumed or 0
        spi = trainer.steps_per_iteration
        size = max(1, -(-total // spec.chunks))  # iterations per chunk
        programs: dict[int, Any] = {}
        if done < total:  # the first chunk's program, reported with the initialisation
            t0 = time.perf_counter()
            lowered = lower_chunk(trainer, min(size, total - done), state, placement)
            with compiles:
                programs[min(size, total - done)] = lowered.compile(compiler_options("chunk"))
            pending_compile_s += time.perf_counter() - t0
        emit(Compiled(label, program, pending_compile_s, compiles.loaded_from_cache))
        wandb = wandb_settings(spec, label, trainer) if spec.wandb_project else None
        metrics_log = on_process_0(lambda: MetricsLog(directory, spec.tensorboard, done, done * spi, wandb=wandb),
                                   placement)
        first_done, busy_s = done, 0.0  # wall time of this session's chunks without compilation, for the ETA
        while done < total:
            n = min(size, total - done)
            t_chunk = time.perf_counter()
            compile_s, pending_compile_s = pending_compile_s, 0.0
            if n not in programs:  # a shorter last chunk
                last = f"training program for the last {n} iterations"
                emit(Compiling(label, trainer.config.env, last, compile_cache_dir()))
                t0 = time.perf_counter()
                lowered = lower_chunk(trainer, n, state, placement)
                with CompileEvents() as compiles:
                    programs[n] = lowered.compile(compiler_options("chunk"))
                compile_s += time.perf_counter() - t0
                emit(Compiled(label, last, time.perf_counter() - t0, compiles.loaded_from_cache))
            t0 = time.perf_counter()
            # The chunk program donates `state`: its buffers are reused for the new state,
            # so the old `state` is never read again (it is rebound here at once).
            state, metrics = programs[n](state)
            metrics = placement.to_host(metrics)
            run_s = time.perf_counter() - t0
            if metrics_log is not None:
                metrics_log.add(done, metrics)
            check_finite(label, trainer, state, metrics, done, placement)
            for message in rollout.instability_warnings(metrics, done):
                emit(Notice(label, message))
            done += n
            save(checkpointer, done, state, placement)  # synchronous: done reading `state` before the next chunk
            busy_s += time.perf_counter() - t_chunk - compile_s
            report = ChunkReport(
                label=label, iteration=done, total_iterations=total, env_steps=done * spi,
                total_env_steps=total * spi, compile_s=compile_s, run_s=run_s,
                steps_per_s=spec.seeds * n * spi / max(run_s, 1e-9), episode_return=chunk_return(metrics),
                metrics=metrics, eta_s=(total - done) * busy_s / (done - first_done),
            )
            chunks.append(report)
            emit(report)
        if evaluation is not None:
            result = evaluation(state)
            if metrics_log is not None:
                metrics_log.add_generalization(result, total * spi,
                                               tables.format_table({label: result}, detail=False))
    finally:
        if metrics_log is not None:
            metrics_log.close()
        if checkpointer is not None:
            checkpointer.close()
    jax.block_until_ready(state)
    return state, TrainReport(label, resumed, tuple(chunks), time.perf_counter() - t_start)


# XLA's LLVM optimisation level for the runner's programs on a CPU (unless XLA_FLAGS sets
# one): the initialisation runs once (level 0 compiles it in a third of the time), and
# the training chunk's time is in matmuls that XLA hands to its library kernels either
# way (level 1 compiled it 20-40% faster, within 1-4% of the steps/s of XLA's default;
# docs/cli.md, "Compile time"). The test suite sets level 0 in XLA_FLAGS, which wins.
CPU_OPTIMIZATION_LEVEL = {"init": 0, "chunk": 1}


def compiler_options(program: str) -> dict[str, Any] | None:
    """The XLA compile options of the runner's ``program`` (``"init"`` or ``"chunk"``):
    :data:`CPU_OPTIMIZATION_LEVEL` on a CPU backend, none elsewhere or when
    ``XLA_FLAGS`` names ``--xla_backend_optimization_level`` itself."""
    if jax.default_backend() != "cpu" or "xla_backend_optimization_level" in os.environ.get("XLA_FLAGS", ""):
        return None
    return {"xla_backend_optimization_level": CPU_OPTIMIZATION_LEVEL[program]}


def compile_init(trainer: Trainer, keys: jax.Array, placement: Placement = Placement()):
    """The compiled ``vmap(trainer.init)`` for seed keys like ``keys (S, 2)`` (on a mesh:
    keys and state split over its ``seeds`` axis)."""
    return lower_init(trainer, keys, placement).compile(compiler_options("init"))


def lower_init(trainer: Trainer, keys: jax.Array, placement: Placement = Placement()):
    """:func:`compile_init` before compilation (its ``out_info``: the state's shapes)."""
    return placement.jit(jax.vmap(trainer.init)).lower(keys)


def compile_chunk(trainer: Trainer, num_iterations: int, state: Any, placement: Placement = Placement()):
    """The compiled :func:`chunk_program` for states like ``state`` (donates its argument)."""
    return lower_chunk(trainer, num_iterations, state, placement).compile(compiler_options("chunk"))


def lower_chunk(trainer: Trainer, num_iterations: int, state: Any, placement: Placement = Placement()):
    """:func:`compile_chunk` before compilation: :func:`chunk_program` lowered for
    :func:`state_spec` of ``state``."""
    return chunk_program(trainer, num_iterations, placement).lower(state_spec(state))


def state_spec(state: Any) -> Any:
    """Every leaf of ``state`` as a :class:`jax.ShapeDtypeStruct` of its shape and dtype, with no
    weak type and no device: what the runner compiles its chunk program for.

    A freshly initialised state and the same state restored from a checkpoint hold equal
    values but not equal arrays (the initialisation's outputs carry weak types and are
    not committed to a device; restored arrays are committed and strongly typed); a
    program lowered for the arrays themselves would differ between the two (sharding
    annotations, a different jaxpr) and miss JAX's persistent compilation cache on
    ``resume``. Lowered for this spec, both give the same program.
    """
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), state)


def chunk_program(trainer: Trainer, num_iterations: int, placement: Placement = Placement()):
    """``jax.jit`` of ``trainer.run_seeds(state, num_iterations)`` with the state donated
    (on a mesh: state and metrics split over its ``seeds`` axis).

    Donation lets XLA write the new training state (replay buffer included) into the
    buffers of the old one instead of allocating a second copy; the caller must not
    read the state it passed in after the call.
    """
    return placement.jit(lambda s: trainer.run_seeds(s, num_iterations), donate=True)


def wandb_settings(spec: RunSpec, label: str, trainer: Trainer) -> dict[str, Any]:
    """The ``wandb.init`` arguments of one label's W&B run (project, name, config)."""
    c = trainer.config
    return {"project": spec.wandb_project, "name": f"{c.env}-{label}", "group": c.env,
            "config": {**c.record(), "label": label, "num_seeds": spec.seeds}}


# The zero-shot evaluation runs in this many calls of one compiled program, each over an
# equal share of the grid's contexts (zsgjax.evaluate.evaluate's `pieces`), so that its
# progress can be reported; the returns are the same in any number of pieces.
EVAL_PIECES = 4


def evaluation_key(seed: int) -> jax.Array:
    """The key of the zero-shot evaluation of a run with base seed ``seed`` (``TrainConfig.seed``):
    ``fold_in(PRNGKey(seed), 1)``. Policies evaluated with it, by :func:`evaluate` or from
    elsewhere (``scripts/experiments/paper_code_policies.py``), share episode starts and
    action noise by seed index."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), 1)


def evaluate(trainer: Trainer, state: Any, grid: ContextGrid, num_episodes: int, actions: str = "mean",
             mesh: Any = None, evaluators: dict | None = None, on_event: OnEvent | None = None,
             label: str | None = None, store: str | None = None) -> EvalResult:
    """Zero-shot returns ``(S, C, E)`` of every seed's policy over ``grid``, acting by
    ``actions`` (:func:`zsgjax.evaluate.policy_action`; default the deterministic policy).

    Episode starts (and sampled actions) come from ``fold_in(PRNGKey(config.seed), 1)``:
    the same for every label with the same base seed, so the seeds of two labels are
    paired. The policy parameters are copied to NumPy first (on a mesh, gathered from
    every device; every process then evaluates them on its own default device), so the
    program is the same whatever produced ``state`` (the last training chunk or a
    restored checkpoint) and a resumed run finds it in JAX's persistent compilation cache.
    The grid runs in :data:`EVAL_PIECES` calls of one program compiled ahead of time.
    ``evaluators``: a dict kept across calls, keyed by environment (name and options),
    agent (network and settings), action mode, episode count, seeds and piece size, so
    every label whose policies have the same shape shares one traced and compiled
    evaluation program (:func:`zsgjax.evaluate.make_evaluator`). ``on_event``: receives
    :class:`Compiling` / :class:`Compiled` around a compilation and :class:`Evaluating`
    after each piece, for ``label`` (default: the method's name). ``store``: a directory of
    finished evaluations (:mod:`zsgjax.evaluation_store`; ``None``: off): returns stored there
    for the same parameters, grid, episodes, actions and config are reused (a :class:`Reused`
    event; nothing is compiled or run), and a new evaluation is stored (in a multi-process
    run, by process 0, which alone reads it and sends the returns to the others).
    """
    label = label or trainer.config.method
    emit = on_event or (lambda event: None)
    placement = Placement(mesh)
    params = placement.to_host(jax.vmap(trainer.policy_params)(state))
    seeds = jax.tree.leaves(params)[0].shape[0]
    rng = evaluation_key(trainer.config.seed)
    if store is not None:
        digest = evaluation_store.evaluation_digest(params, grid, num_episodes, actions, rng,
                                                    checkpoint_config(trainer, seeds))
        shape = (seeds, len(grid), num_episodes)
        returns = load_stored_evaluation(store, digest, shape, placement, lambda m: emit(Notice(label, m)))
        if returns is not None:
            emit(Reused(label, evaluation_store.stored_path(store, digest)))
            return EvalResult(grid, returns)
    act_fn, sampled = policy_action(trainer.agent, actions)
    evaluators = {} if evaluators is None else evaluators
    size = piece_size(len(grid.contexts), EVAL_PIECES)
    key = (trainer.config.env, trainer.config.env_kwargs, trainer.agent, actions, num_episodes, seeds, size)
    if key not in evaluators:  # labels with the same environment, agent, action mode and episodes share it
        program = f"evaluation program for {seeds} seeds x {num_episodes} episodes x {size} contexts per call"
        emit(Compiling(label, trainer.config.env, program, compile_cache_dir()))
        t0 = time.perf_counter()
        evaluator = make_evaluator(trainer.env, act_fn, num_episodes, sampled)
        lowered = evaluator.lower(params, jax.numpy.asarray(grid.contexts[:size]), rng)
        with CompileEvents() as compiles:  # around XLA's part alone (tracing may compile eager operations)
            evaluators[key] = lowered.compile()
        emit(Compiled(label, program, time.perf_counter() - t0, compiles.loaded_from_cache))
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        elapsed = time.perf_counter() - t0
        emit(Evaluating(label, done, total, num_episodes, seeds, elapsed, elapsed / done * (total - done)))

    result = evaluate_grid(trainer.env, act_fn, params, grid, num_episodes=num_episodes, rng=rng, sampled=sampled,
                           evaluator=evaluators[key], pieces=EVAL_PIECES, progress=progress)
    if store is not None:
        on_process_0(lambda: evaluation_store.save(store, digest, result.returns), placement)
    return result


def finished_evaluation(trainer: Trainer, directory: str, spec: RunSpec, grid: ContextGrid,
                        placement: Placement = Placement()) -> tuple[int, np.ndarray, str] | None:
    """A finished label's stored evaluation, found without restoring its state:
    ``(iteration, returns (S, C, E), path)`` when ``spec.resume`` is set, the latest checkpoint
    under ``directory`` is the last iteration and ``<directory>/evaluations`` holds the
    evaluation on ``grid`` of the policy that checkpoint holds (named from the leaf digests the
    checkpoint records: the digest :func:`evaluate` computes from the restored parameters,
    :func:`zsgjax.evaluation_store.digest_of_leaves`); else ``None``, and the label goes
    through :func:`train` (which restores it and evaluates, or reuses what it finds). ``None``
    in a multi-process run, whose process 0 alone sees the directory.
    """
    if placement.multiprocess or not spec.resume or not has_checkpoints(directory):
        return None
    checkpointer = open_checkpointer(trainer, directory, spec)  # a conflicting config is refused here as in train
    try:
        step = checkpointer.latest_step()
        digests = checkpointer.stored_leaf_digests(step) if step == trainer.num_iterations else None
    except CorruptCheckpoint:
        digests = None
    finally:
        checkpointer.close()
    if digests is None:
        return None
    like = memory.state_shapes(trainer, spec.seeds)  # traced only; its leaves are the checkpoint's, in order
    position = {id(leaf): i for i, leaf in enumerate(jax.tree.leaves(like))}
    params = trainer.policy_params(like)  # a selection of the state's leaves (the same objects)
    chosen = [position.get(id(leaf)) for leaf in jax.tree.leaves(params)]
    if None in chosen or len(digests) != len(position):
        return None
    digest = evaluation_store.digest_of_leaves([digests[i] for i in chosen], jax.tree.structure(params), grid,
                                               spec.eval_episodes, spec.eval_actions,
                                               evaluation_key(trainer.config.seed),
                                               checkpoint_config(trainer, spec.seeds))
    store = os.path.join(directory, "evaluations")
    try:
        returns = evaluation_store.load(store, digest, (spec.seeds, len(grid), spec.eval_episodes))
    except ValueError:  # evaluate() names the damaged file when it evaluates again
        return None
    return None if returns is None else (step, returns, evaluation_store.stored_path(store, digest))


def load_stored_evaluation(store: str, digest: str, shape: tuple[int, int, int], placement: Placement,
                           warn: Callable[[str], None]) -> np.ndarray | None:
    """The returns ``shape`` = ``(S, C, E)`` stored under ``store`` as ``digest``
    (:func:`zsgjax.evaluation_store.load`), or ``None``; an unreadable or mismatched file is
    ``warn``-ed about and ignored (the evaluation runs again and replaces it). Several
    processes: process 0 reads it and sends the returns to the others bit for bit."""

    def read() -> np.ndarray | None:
        try:
            return evaluation_store.load(store, digest, shape)
        except ValueError as e:
            warn(f"{e}; evaluating again")
            return None

    if not placement.multiprocess:
        return read()
    found = on_process_0(read, placement)
    if not int(distributed.broadcast_from_0(np.asarray(found is not None, np.int64))):
        return None
    like = np.asarray(found, np.float64) if found is not None else np.zeros(shape, np.float64)  # float32 exactly
    return distributed.broadcast_from_0(like)


def evaluation_grid(env: Any, spec: RunSpec) -> ContextGrid:
    """The grid every label of a run is evaluated on: :func:`zsgjax.evaluate.make_grid` with
    ``spec.sweep_points`` points over each dimension of ``spec.sweep_dims``, plus the named
    contexts. ``ValueError`` naming ``RunSpec.sweep_dims`` and the environment's dimensions
    when it names another."""
    names = list(env.context_space.names)
    unknown = [d for d in spec.sweep_dims or () if d not in names]
    if unknown:
        raise ValueError(f"RunSpec.sweep_dims names {unknown}, not context dimensions of this environment; its "
                         f"dimensions are {names} (or give () for the named contexts only)")
    return make_grid(env, spec.sweep_points, dims=spec.sweep_dims)


def run(trainers: Mapping[str, Trainer], root: str, spec: RunSpec,
        on_event: OnEvent | None = None, mesh: Any = None, lock_labels: bool = True,
        evaluators: dict | None = None, preflighted: bool = False) -> dict[str, MethodRun]:
    """Train and evaluate every labelled trainer under ``root/<label>``; ``{label: MethodRun}``.

    All trainers must share one environment (their results share one grid). Before any
    training: every label's directory is locked (held until the end; ``ValueError``
    naming the holder when another run has it), ``root`` must be writable and no label's
    checkpoints may conflict with ``spec`` (:func:`preflight`). ``mesh``: see the module
    docstring. ``lock_labels=False``: the caller already holds :func:`label_locks` (a
    second lock on the same directory, even in this process, would be refused).
    ``evaluators``: evaluation programs shared across calls (see :func:`evaluate`); by
    default the labels of this call share theirs. ``preflighted=True``: the caller
    already ran :func:`preflight` on these trainers (the CLI does, for every method at
    once), so its memory estimates are not traced again.
    """
    if not trainers:
        raise ValueError("`trainers` is empty: give at least one label")
    envs = {t.config.env for t in trainers.values()}
    if len(envs) != 1:
        raise ValueError(f"all trainers must share one environment, got {sorted(envs)}")
    placement = Placement(mesh)
    check_mesh_spans_processes(placement)
    evaluators = {} if evaluators is None else evaluators
    on_process_0(lambda: check_writable_directory(root, "the output directory"), placement)
    with label_locks(root, list(trainers) if lock_labels else [], placement):
        if not preflighted:
            preflight(trainers, root, spec, mesh)
        grid = evaluation_grid(next(iter(trainers.values())).env, spec)
        out: dict[str, MethodRun] = {}
        for label, trainer in trainers.items():
            t0 = time.perf_counter()
            prepared = placement.prepare(trainer, spec.seeds)
            finished = finished_evaluation(prepared, os.path.join(root, label), spec, grid, placement)
            if finished is not None:  # trained and evaluated before: nothing is restored, compiled or run
                step, returns, path = finished
                for event in (Resumed(label, step, prepared.num_iterations), Reused(label, path)):
                    if on_event is not None:
                        on_event(event)
                report = TrainReport(label, step, (), time.perf_counter() - t0)
                out[label] = MethodRun(label, trainer, report, EvalResult(grid, returns), 0.0, path)
                continue
            evaluated: list[tuple[EvalResult, float]] = []
            reused: list[str] = []

            def seen(event: Event, reused=reused) -> None:
                if isinstance(event, Reused):
                    reused.append(event.path)
                if on_event is not None:
                    on_event(event)

            def evaluation(state, trainer=trainer, label=label, evaluated=evaluated, seen=seen):
                t0 = time.perf_counter()
                result = evaluate(trainer, state, grid, spec.eval_episodes, spec.eval_actions, mesh, evaluators,
                                  seen, label, store=os.path.join(root, label, "evaluations"))
                evaluated.append((result, time.perf_counter() - t0))
                return result

            state, report = train(trainer, os.path.join(root, label), spec, label, on_event, mesh, evaluation)
            (result, eval_s), = evaluated
            out[label] = MethodRun(label, trainer, report, result, eval_s, reused[0] if reused else None)
            del state
    return out
