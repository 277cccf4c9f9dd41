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

Everything the caller might want to print or store comes back as data
(:class:`ChunkReport`, :class:`TrainReport`, :class:`MethodRun`): timings (compile
apart from the run), metrics, the evaluation result. ``resume=True`` continues
from the latest checkpoints; the result equals an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Mapping

import jax
import numpy as np

from zsgjax.checkpoint import Checkpointer
from zsgjax.configs import param, validate
from zsgjax.evaluate import evaluate_grid, make_grid
from zsgjax.reporting.metrics_log import MetricsLog
from zsgjax.reporting.results import ContextGrid, EvalResult
from zsgjax.train import Trainer

# Version of the config record stored with every checkpoint. Bump it when the
# shape of TrainConfig changes, so that older checkpoints fail with a clear message.
CHECKPOINT_FORMAT = 2


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """How to run trainers: seeds, chunking, checkpoints, evaluation size.

    seeds: seeds per label, vmapped in one program; chunks: training runs in this
    many jitted pieces (a checkpoint and a report after each); keep: checkpoints
    kept per label; eval_episodes: episodes per context and seed; sweep_points:
    points per swept context dimension; tensorboard: also write TensorBoard events
    (when ``tensorboardX`` is installed); resume: continue existing checkpoints
    (without it, existing checkpoints are an error).
    """

    seeds: int = param(3, kind=int, low=1)
    chunks: int = param(10, kind=int, low=1)
    keep: int = param(2, kind=int, low=1)
    eval_episodes: int = param(10, kind=int, low=1)
    sweep_points: int = param(9, kind=int, low=2)
    tensorboard: bool = param(True, kind=bool)
    resume: bool = param(False, kind=bool)

    def validate(self) -> "RunSpec":
        return validate(self)


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
    compile_s: seconds spent compiling the chunk's program (0 when reused);
    run_s: seconds in the compiled program; steps_per_s: environment steps per
    second over all seeds; episode_return: mean over seeds of the mean return of
    the episodes that ended in the chunk (NaN when none did); metrics: name ->
    ``(S, n)`` per-iteration metrics of the chunk's ``n`` iterations.
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
    """A trained and evaluated label."""

    label: str
    trainer: Trainer
    train: TrainReport
    result: EvalResult
    eval_s: float

    @property
    def timings(self) -> dict[str, float]:
        return {"train_s": self.train.wall_s, "compile_s": self.train.compile_s,
                "program_s": self.train.program_s, "eval_s": self.eval_s}


@dataclasses.dataclass(frozen=True)
class Notice:
    """Something the user should know that does not stop the run (a corrupt checkpoint skipped)."""

    label: str
    message: str


class Diverged(ValueError):
    """Training produced non-finite losses or parameters; the last finite checkpoint is kept."""


Event = Resumed | ChunkReport | Notice
OnEvent = Callable[[Event], None]


def format_event(event: Event, seeds: int) -> list[str]:
    """The progress lines of one event, as ``zsgjax train`` prints them."""
    if isinstance(event, Resumed):
        return [f"[{event.label}] resumed from iteration {event.iteration}/{event.total_iterations}"]
    if isinstance(event, Notice):
        return [f"[{event.label}] warning: {event.message}"]
    lines = []
    if event.compile_s > 0:
        lines.append(f"[{event.label}] compiled a chunk for {seeds} seeds in {event.compile_s:.1f} s")
    ret = f"{event.episode_return:.2f}" if np.isfinite(event.episode_return) else "n/a (no episode ended yet)"
    lines.append(
        f"[{event.label}] iteration {event.iteration}/{event.total_iterations}  "
        f"steps {event.env_steps:,}/{event.total_env_steps:,}  {event.steps_per_s:,.0f} steps/s  return {ret}"
    )
    return lines


# ------------------------------------------------------------------ checkpoints
def checkpoint_config(trainer: Trainer, seeds: int) -> dict[str, Any]:
    """The record stored with (and compared against) every checkpoint of a label."""
    return {"format": CHECKPOINT_FORMAT, **dataclasses.asdict(trainer.config), "num_seeds": seeds}


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
        checkpointer.verify_config(latest)
    except ValueError:
        checkpointer.close()
        raise
    return checkpointer


def preflight(trainers: Mapping[str, Trainer], root: str, spec: RunSpec) -> None:
    """Check every label's checkpoints before any training starts (``ValueError`` on a conflict)."""
    spec.validate()
    for label, trainer in trainers.items():
        open_checkpointer(trainer, os.path.join(root, label), spec).close()


# --------------------------------------------------------------------- training
def chunk_return(metrics: Mapping[str, np.ndarray]) -> float:
    """Mean over seeds of the mean return of the episodes finished in the chunk (NaN if none)."""
    episodes = metrics["episodes"].sum(axis=1)
    total = (metrics["episode_return"] * metrics["episodes"]).sum(axis=1)
    done = episodes > 0
    return float(np.mean(total[done] / episodes[done])) if done.any() else float("nan")


def check_finite(label: str, trainer: Trainer, state: Any, metrics: Mapping[str, np.ndarray], done: int) -> None:
    """Raise :class:`Diverged` when a chunk's metrics ``(S, n)`` or the policy are not finite.

    ``done``: iterations completed before the chunk (the last finite checkpoint).
    """
    for name in sorted(metrics):
        v = np.asarray(metrics[name])
        if np.issubdtype(v.dtype, np.floating) and not np.all(np.isfinite(v)):
            seeds, its = np.nonzero(~np.isfinite(v))
            raise Diverged(
                f"[{label}] training diverged: metric '{name}' is not finite from iteration {done + int(its.min()) + 1} "
                f"(seeds {sorted(set(seeds.tolist()))}); the last finite checkpoint is iteration {done}"
            )
    for leaf in jax.tree.leaves(jax.vmap(trainer.policy_params)(state)):
        if not bool(np.all(np.isfinite(np.asarray(leaf)))):
            raise Diverged(f"[{label}] training diverged: the policy parameters are not finite after iteration "
                           f"{done + len(next(iter(metrics.values()))[0])}; the last finite checkpoint is iteration {done}")


def seed_keys(trainer: Trainer, seeds: int) -> jax.Array:
    """Seed ``k`` trains from ``split(PRNGKey(config.seed), seeds)[k]``."""
    return jax.random.split(jax.random.PRNGKey(trainer.config.seed), seeds)


def train(trainer: Trainer, directory: str, spec: RunSpec, label: str | None = None,
          on_event: OnEvent | None = None) -> tuple[Any, TrainReport]:
    """Train all ``spec.seeds`` seeds of ``trainer`` in chunks, checkpointed under ``directory``.

    Returns the final state (leading seed axis ``S`` on every leaf) and the report.
    """
    spec.validate()
    label = label or trainer.config.method
    emit = on_event or (lambda event: None)
    t_start = time.perf_counter()
    state = jax.jit(jax.vmap(trainer.init))(seed_keys(trainer, spec.seeds))
    checkpointer = open_checkpointer(trainer, directory, spec)
    total = trainer.num_iterations
    resumed = None
    if checkpointer.latest_step() is not None:
        try:
            resumed, state = checkpointer.restore_latest_good(state, warn=lambda m: emit(Notice(label, m)))
        except ValueError:
            checkpointer.close()
            raise
        emit(Resumed(label, resumed, total))
    done = resumed or 0
    spi = trainer.steps_per_iteration
    size = max(1, -(-total // spec.chunks))  # iterations per chunk
    programs: dict[int, Any] = {}
    chunks: list[ChunkReport] = []
    metrics_log = MetricsLog(directory, spec.tensorboard, done, done * spi)
    try:
        while done < total:
            n = min(size, total - done)
            compile_s = 0.0
            if n not in programs:
                t0 = time.perf_counter()
                programs[n] = jax.jit(lambda s, n=n: trainer.run_seeds(s, n)).lower(state).compile()
                compile_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            state, metrics = programs[n](state)
            metrics = jax.tree.map(np.asarray, metrics)
            run_s = time.perf_counter() - t0
            metrics_log.add(done, metrics)
            check_finite(label, trainer, state, metrics, done)
            done += n
            checkpointer.save(done, state)
            report = ChunkReport(
                label=label, iteration=done, total_iterations=total, env_steps=done * spi,
                total_env_steps=total * spi, compile_s=compile_s, run_s=run_s,
                steps_per_s=spec.seeds * n * spi / max(run_s, 1e-9), episode_return=chunk_return(metrics),
                metrics=metrics,
            )
            chunks.append(report)
            emit(report)
    finally:
        metrics_log.close()
        checkpointer.close()
    jax.block_until_ready(state)
    return state, TrainReport(label, resumed, tuple(chunks), time.perf_counter() - t_start)


def evaluate(trainer: Trainer, state: Any, grid: ContextGrid, num_episodes: int) -> EvalResult:
    """Zero-shot returns ``(S, C, E)`` of every seed's deterministic policy over ``grid``.

    Episode starts come from ``fold_in(PRNGKey(config.seed), 1)``: the same for every
    label with the same base seed, so the seeds of two labels are paired.
    """
    params = jax.vmap(trainer.policy_params)(state)
    rng = jax.random.fold_in(jax.random.PRNGKey(trainer.config.seed), 1)
    return evaluate_grid(trainer.env, lambda p, obs: trainer.act(p, obs), params, grid,
                         num_episodes=num_episodes, rng=rng)


def run(trainers: Mapping[str, Trainer], root: str, spec: RunSpec,
        on_event: OnEvent | None = None) -> dict[str, MethodRun]:
    """Train and evaluate every labelled trainer under ``root/<label>``; ``{label: MethodRun}``.

    All trainers must share one environment (their results share one grid).
    Checkpoint conflicts of any label fail before any training starts.
    """
    if not trainers:
        raise ValueError("`trainers` is empty: give at least one label")
    envs = {t.config.env for t in trainers.values()}
    if len(envs) != 1:
        raise ValueError(f"all trainers must share one environment, got {sorted(envs)}")
    preflight(trainers, root, spec)
    grid = make_grid(next(iter(trainers.values())).env, spec.sweep_points)
    out: dict[str, MethodRun] = {}
    for label, trainer in trainers.items():
        state, report = train(trainer, os.path.join(root, label), spec, label, on_event)
        t0 = time.perf_counter()
        result = evaluate(trainer, state, grid, spec.eval_episodes)
        out[label] = MethodRun(label, trainer, report, result, time.perf_counter() - t0)
        del state
    return out
