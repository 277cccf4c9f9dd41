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
from zsgjax.evaluate import ACTION_MODES, evaluate_grid, make_grid, policy_action
from zsgjax.reporting.metrics_log import MetricsLog
from zsgjax.reporting.results import ContextGrid, EvalResult
from zsgjax.train import Trainer

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
    points per swept context dimension; eval_actions: how the evaluated policies act
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
    eval_actions: str = param("mean", kind=str, choices=ACTION_MODES)
    tensorboard: bool = param(True, kind=bool)
    resume: bool = param(False, kind=bool)
    wandb_project: str | None = param(None, kind=str)

    def validate(self) -> "RunSpec":
        validate(self)
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
        lines.append(f"[{event.label}] compiled the training programs for {seeds} seeds in {event.compile_s:.1f} s")
    ret = f"{event.episode_return:.2f}" if np.isfinite(event.episode_return) else "n/a (no episode ended yet)"
    eta = f"  ETA {format_seconds(event.eta_s)}" if event.iteration < event.total_iterations else ""
    lines.append(
        f"[{event.label}] iteration {event.iteration}/{event.total_iterations}  "
        f"steps {event.env_steps:,}/{event.total_env_steps:,}  {event.steps_per_s:,.0f} steps/s  return {ret}{eta}"
    )
    return lines


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``: a duration for progress lines."""
    s = max(0, int(round(seconds)))
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
    t0 = time.perf_counter()
    keys = seed_keys(trainer, spec.seeds)
    state = compile_init(trainer, keys)(keys)
    pending_compile_s = time.perf_counter() - t0  # reported with the first chunk
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
    try:
        metrics_log = MetricsLog(directory, spec.tensorboard, done, done * spi,
                                 wandb=wandb_settings(spec, label, trainer) if spec.wandb_project else None)
    except BaseException:
        checkpointer.close()
        raise
    first_done, busy_s = done, 0.0  # wall time of this session's chunks without compilation, for the ETA
    try:
        while done < total:
            n = min(size, total - done)
            t_chunk = time.perf_counter()
            compile_s, pending_compile_s = pending_compile_s, 0.0
            if n not in programs:
                t0 = time.perf_counter()
                programs[n] = compile_chunk(trainer, n, state)
                compile_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            # The chunk program donates `state`: its buffers are reused for the new state,
            # so the old `state` is never read again (it is rebound here at once).
            state, metrics = programs[n](state)
            metrics = jax.tree.map(np.asarray, metrics)
            run_s = time.perf_counter() - t0
            metrics_log.add(done, metrics)
            check_finite(label, trainer, state, metrics, done)
            done += n
            checkpointer.save(done, state)  # synchronous: done reading `state` before the next chunk donates it
            busy_s += time.perf_counter() - t_chunk - compile_s
            report = ChunkReport(
                label=label, iteration=done, total_iterations=total, env_steps=done * spi,
                total_env_steps=total * spi, compile_s=compile_s, run_s=run_s,
                steps_per_s=spec.seeds * n * spi / max(run_s, 1e-9), episode_return=chunk_return(metrics),
                metrics=metrics, eta_s=(total - done) * busy_s / (done - first_done),
            )
            chunks.append(report)
            emit(report)
    finally:
        metrics_log.close()
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


def compile_init(trainer: Trainer, keys: jax.Array):
    """The compiled ``vmap(trainer.init)`` for seed keys like ``keys (S, 2)``."""
    return jax.jit(jax.vmap(trainer.init)).lower(keys).compile(compiler_options("init"))


def compile_chunk(trainer: Trainer, num_iterations: int, state: Any):
    """The compiled :func:`chunk_program` for states like ``state`` (donates its argument)."""
    return chunk_program(trainer, num_iterations).lower(state).compile(compiler_options("chunk"))


def chunk_program(trainer: Trainer, num_iterations: int):
    """``jax.jit`` of ``trainer.run_seeds(state, num_iterations)`` with the state donated.

    Donation lets XLA write the new training state (replay buffer included) into the
    buffers of the old one instead of allocating a second copy; the caller must not
    read the state it passed in after the call.
    """
    return jax.jit(lambda s: trainer.run_seeds(s, num_iterations), donate_argnums=0)


def wandb_settings(spec: RunSpec, label: str, trainer: Trainer) -> dict[str, Any]:
    """The ``wandb.init`` arguments of one label's W&B run (project, name, config)."""
    c = trainer.config
    return {"project": spec.wandb_project, "name": f"{c.env}-{label}", "group": c.env,
            "config": {**dataclasses.asdict(c), "label": label, "num_seeds": spec.seeds}}


def evaluate(trainer: Trainer, state: Any, grid: ContextGrid, num_episodes: int, actions: str = "mean") -> EvalResult:
    """Zero-shot returns ``(S, C, E)`` of every seed's policy over ``grid``, acting by
    ``actions`` (:func:`zsgjax.evaluate.policy_action`; default the deterministic policy).

    Episode starts (and sampled actions) come from ``fold_in(PRNGKey(config.seed), 1)``:
    the same for every label with the same base seed, so the seeds of two labels are paired.
    """
    params = jax.vmap(trainer.policy_params)(state)
    rng = jax.random.fold_in(jax.random.PRNGKey(trainer.config.seed), 1)
    act_fn, sampled = policy_action(trainer.agent, actions)
    return evaluate_grid(trainer.env, act_fn, params, grid, num_episodes=num_episodes, rng=rng, sampled=sampled)


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
        result = evaluate(trainer, state, grid, spec.eval_episodes, spec.eval_actions)
        out[label] = MethodRun(label, trainer, report, result, time.perf_counter() - t0)
        del state
    return out
