"""The CSE paper's experiment protocol, shared by every ``scripts/experiments/<env>.py``.

Each environment script is data: an :class:`Experiment` (methods, a ``cpu`` and a
``paper`` :class:`Scale`, which contexts count as "far" from the training context)
handed to :func:`main`. The protocol, for every method (or variant):

1. train all seeds in **one** ``jax.jit(jax.vmap(trainer.run))`` program, chunked and
   checkpointed by the run driver (:func:`zsgjax.runner.run`; checkpoints go to
   ``--work``, by default under the git-ignored ``runs/``, so ``--resume`` continues a
   long paper-scale run);
2. evaluate every seed's policy zero-shot over the grid of ``zsgjax.evaluate.make_grid``
   (each context dimension swept over its range with the others at default, plus the
   environment's named evaluation contexts), with the same episode keys for every
   method (:func:`zsgjax.runner.evaluate`): at the ``paper`` scale the paper's
   ``evaluate_policies.py`` (:data:`PAPER_EVAL`: 64 episodes, 50 points per dimension,
   actions sampled as it samples them), elsewhere the deterministic policy;
3. write to ``--out`` (default: the git-ignored ``runs/experiments/<env>-<scale>``; the
   committed results under ``docs/experiments`` change only with ``--out docs/...``):
   ``generalization.png`` (``plot_sweeps``), ``learning_curves.png`` (training return
   vs environment steps, from the metrics CSVs), ``results.md`` (settings, claims,
   the summary and the full table), ``results.csv`` (every grid point) and
   ``results.json`` (raw returns, settings, wall times, claims).

The environment's constructor options (``TrainConfig.env_kwargs``) are the same
flags as ``zsgjax train``'s: ``--physical``, ``--physical-range``, ``--env-option``
(e.g. ``cheetah_velocity.py --physical gravity --physical-range gravity=6,12``);
``--wandb`` logs to Weights & Biases; JAX's persistent compilation cache is on
unless ``--no-compile-cache``.

Verdicts on the paper's claims come only from the pre-registered claims file
``docs/experiments/claims.json`` (:mod:`zsgjax.reporting.verdicts`: the paper's named
contexts and the sweep ranges its text names, a paired Student-t test). The
"far contexts" aggregates (:func:`check_claims`: some dimension at least
``far_fraction`` of its range from default; CSE against LDR on a ``focus``) are
zsgjax's own summaries, written apart and labelled "not the paper's protocol". Seed
``k`` of every method starts its training and its evaluation episodes from the same
keys, so the seeds are paired.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from zsgjax import envs, options, runner
from zsgjax.evaluate import ACTION_MODES
from zsgjax.reporting import machine, plots, tables, verdicts
from zsgjax.reporting.files import atomic_write
from zsgjax.reporting.results import ContextGrid, EvalResult
from zsgjax.train import TrainConfig, make_train

SCALES = ("cpu", "paper")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass(frozen=True)
class Scale:
    """Training length and size of one scale. ``config``: TrainConfig overrides shared by all methods."""

    steps: int
    seeds: int
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    eval_episodes: int = 10
    sweep_points: int = 9
    eval_actions: str = "mean"  # zsgjax.evaluate.ACTION_MODES
    chunks: int = 1
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One environment's experiment.

    far_fraction: a grid context is "far" from the training context when some
      dimension differs from its default by at least this fraction of its range.
    focus: optional ``(dimension, min |value - default|, description)``: rows of that
      dimension's sweep at least that far from default, where CSE is compared with LDR.
    method_config: per-method TrainConfig overrides (e.g. a variant's cse_mode).
    """

    env: str
    methods: tuple[str, ...]
    cpu: Scale
    paper: Scale
    far_fraction: float = 0.25
    focus: tuple[str, float, str] | None = None
    method_config: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    notes: str = ""

    def scale(self, name: str) -> Scale:
        if name not in SCALES:
            raise ValueError(f"--scale must be one of {', '.join(SCALES)}; got {name!r}")
        return getattr(self, name)


# The MuJoCo (MJX) tasks share their scales: on CPU a short run that exercises the
# protocol end to end (compiling one MJX training chunk takes about 70 s there); at
# paper scale 1M steps, as in the paper's MuJoCo experiments.
MJX_CPU = Scale(steps=8_000, seeds=2, eval_episodes=2, sweep_points=7,
                config=dict(num_envs=16, hidden_sizes=(64, 64), batch_size=128, learning_starts=2_000,
                            buffer_size=20_000),
                note="far too short to learn locomotion; checks the protocol end to end on MJX")

# mujoco_playground's DM Control Suite tasks with physical contexts (zsgjax.adapters.playground;
# no experiment script of their own: the CSE paper has none). On CPU: 10 seeds of a small SAC with
# 8 gradient updates per batched step of 16 envs (CartpoleBalance learns to balance in ~20k steps;
# pass --env-option horizon=200 for the 2 s episodes it was sized with); for a GPU the paper's loop.
PLAYGROUND_CPU = Scale(steps=19_840, seeds=10, eval_episodes=4, sweep_points=7,
                       config=dict(num_envs=16, hidden_sizes=(64, 64), batch_size=128, learning_starts=992,
                                   buffer_size=20_000, grad_updates_per_step=8),
                       note="CPU scale: 19,840 env steps per seed, SAC 64x64, 9,920 gradient updates")
PLAYGROUND_FULL = Scale(steps=200_000, seeds=10, chunks=10, eval_episodes=16, sweep_points=9,
                        config=dict(num_envs=8, learning_starts=1_000, buffer_size=200_000, grad_updates_per_step=2))


def playground_experiment(env: str) -> Experiment:
    """The protocol for a ``playground:<Name>`` environment: :data:`PLAYGROUND_CPU` and, as the
    ``paper`` scale, :data:`PLAYGROUND_FULL` (the paper has no such task; a GPU size)."""
    from zsgjax.adapters.playground_envs import DM_CONTROL_ENVS, PREFIX

    if not env.startswith(PREFIX) or env[len(PREFIX):] not in DM_CONTROL_ENVS:
        raise ValueError(f"env must be {PREFIX}<Name> with <Name> one of {', '.join(DM_CONTROL_ENVS)}; got {env!r}")
    return Experiment(env=env, methods=("vanilla", "cse", "ldr", "dr"), cpu=PLAYGROUND_CPU, paper=PLAYGROUND_FULL)


# The paper's loop (8 envs, one gradient update per batched step); everything else is
# the environment's preset (zsgjax.presets: the paper's per-environment settings).
PAPER_LOOP = dict(num_envs=8, grad_updates_per_step=1)

# The paper's evaluation (evaluate_policies.py): 64 episodes per context and seed, each
# dimension swept with 50 points over its range (README: --nmesh 50), actions sampled as
# its RLlib module samples them: SAC tanh(z) in [-1, 1] without rescaling to the action
# box, DQN greedy (zsgjax.evaluate.policy_action).
PAPER_EVAL = dict(eval_episodes=64, sweep_points=50, eval_actions="sample_unscaled")
CLAIMS = os.path.join(REPO, "docs", "experiments", "claims.json")


# ----------------------------------------------------------------- training
def configs_for(exp: Experiment, scale: Scale, steps: int, seed: int,
                env_kwargs: Mapping[str, Any] | None = None) -> dict[str, TrainConfig]:
    """``{label: TrainConfig}`` of every method of ``exp`` at ``scale``; ``env_kwargs``: the
    environment's constructor options (``TrainConfig.env_kwargs``), shared by every method."""
    out = {}
    for label in exp.methods:
        extra = dict(exp.method_config.get(label, {}))
        method = extra.pop("method", label)
        out[label] = TrainConfig(env=exp.env, method=method, total_steps=steps, seed=seed,
                                 env_kwargs=dict(env_kwargs or {}), **{**dict(scale.config), **extra})
    return out


def run_variants(
    configs: Mapping[str, TrainConfig],
    *,
    num_seeds: int,
    work: str,
    resume: bool = False,
    eval_episodes: int = 10,
    sweep_points: int = 9,
    sweep_dims: Sequence[str] | None = None,
    eval_actions: str = "mean",
    chunks: int = 1,
    wandb_project: str | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, EvalResult], dict[str, dict[str, float]]]:
    """Train (one jit(vmap) over seeds per label) and evaluate every config on the env's grid.

    Returns ``({label: EvalResult}, {label: {"train_s", "compile_s", "program_s", "eval_s"}})``
    from the run driver's reports (:class:`zsgjax.runner.MethodRun`): ``train_s`` the
    wall time of training (compilation, initialisation and checkpoints included),
    ``compile_s`` the compile time, ``program_s`` the time in the compiled chunks.
    Configs with equal ``env``/``env_kwargs`` share one environment instance.
    """
    envs: dict[Any, Any] = {}
    trainers = {}
    for label, cfg in configs.items():
        key = (cfg.env, cfg.env_kwargs)
        if key not in envs:
            envs[key] = cfg.validate().make_env()
        trainers[label] = make_train(cfg, env=envs[key])
    spec = runner.RunSpec(seeds=num_seeds, chunks=chunks, keep=1, eval_episodes=eval_episodes,
                          sweep_points=sweep_points, sweep_dims=None if sweep_dims is None else tuple(sweep_dims),
                          eval_actions=eval_actions, tensorboard=False, resume=resume,
                          wandb_project=wandb_project)

    def on_event(event: runner.Event) -> None:
        for line in runner.format_event(event, num_seeds):
            log(line)

    runs = runner.run(trainers, work, spec, on_event)
    for label, r in runs.items():
        evaluated = f"evaluated in {r.eval_s:.1f} s" if r.reused_from is None else "its evaluation reused"
        log(f"[{label}] trained in {r.train.wall_s:.1f} s (compile {r.train.compile_s:.1f} s), {evaluated}")
    return {label: r.result for label, r in runs.items()}, {label: r.timings for label, r in runs.items()}


# ------------------------------------------------------------------- claims
def far_rows(grid: ContextGrid, low: Sequence[float], high: Sequence[float], fraction: float) -> np.ndarray:
    """Rows of ``grid`` with some dimension at least ``fraction`` of its range away from default."""
    span = np.maximum(np.asarray(high, np.float64) - np.asarray(low, np.float64), 1e-12)
    dist = np.abs(grid.contexts - grid.default[None]) / span[None]
    return np.flatnonzero(dist.max(axis=1) >= fraction - 1e-6)


def focus_rows(grid: ContextGrid, dim: str, min_distance: float) -> np.ndarray:
    rows = grid.sweep_rows(dim)
    i = grid.names.index(dim)
    return rows[np.abs(grid.contexts[rows, i] - grid.default[i]) >= min_distance - 1e-6]


def compare(results: Mapping[str, EvalResult], a: str, b: str, rows: np.ndarray) -> dict[str, Any]:
    """``a`` against ``b`` averaged over ``rows``: means, the paired per-seed difference and its
    95% Student-t interval, and the verdict (a difference only where the interval excludes 0)."""
    ma, ca = results[a].aggregate(rows)
    mb, cb = results[b].aggregate(rows)
    diff, ci = results[a].difference(results[b], rows)
    if not np.isfinite(ci):
        verdict = "n/a (one seed: no interval)"
    elif diff - ci > 0:
        verdict = f"{a} > {b}"
    elif diff + ci < 0:
        verdict = f"{a} < {b}"
    else:
        verdict = "no significant difference"
    return {"a": a, "b": b, "mean_a": ma, "ci_a": ca, "mean_b": mb, "ci_b": cb, "diff": diff, "diff_ci": ci,
            "verdict": verdict, "rows": [results[a].grid.labels[r] for r in rows]}


def check_claims(exp: Experiment, results: Mapping[str, EvalResult], low, high) -> list[dict[str, Any]]:
    """zsgjax's "far contexts" aggregates (not the paper's protocol; the verdicts are
    :func:`paper_verdicts`'): CSE against vanilla and LDR away from the training context."""
    grid = next(iter(results.values())).grid
    far = far_rows(grid, low, high, exp.far_fraction)
    where = f"contexts >= {exp.far_fraction:g} of a range from the training context ({len(far)} grid points)"
    claims = []
    if "cse" in results and "vanilla" in results:
        claims.append({"claim": "CSE beats vanilla away from the training context", "where": where,
                       **compare(results, "cse", "vanilla", far)})
    if "cse" in results and "ldr" in results:
        claims.append({"claim": "CSE is comparable to LDR", "where": where, **compare(results, "cse", "ldr", far)})
    if exp.focus and "cse" in results and "ldr" in results and exp.focus[0] in grid.swept_dims:
        dim, dist, text = exp.focus
        rows = focus_rows(grid, dim, dist)
        claims.append({"claim": f"CSE ahead of LDR {text}", "where": f"{dim} sweep, |{dim} - default| >= {dist:g}",
                       **compare(results, "cse", "ldr", rows)})
    return claims


def paper_verdicts(env: str, results: Mapping[str, EvalResult], claims_path: str = CLAIMS) -> list[dict[str, Any]]:
    """Verdicts on the paper's claims about ``env``, from the pre-registered claims file only."""
    return verdicts.judge_env(env, results, verdicts.load_claims(claims_path))


def protocol_label(info: Mapping[str, Any]) -> str:
    """What a run's verdicts stand on, e.g. "paper evaluation (sample_unscaled, 64 episodes, 50 points), 20 seeds"."""
    actions = info.get("eval_actions", "mean")
    kind = "deterministic evaluation" if actions == "mean" else f"sampled actions ({actions})"
    dims = info.get("sweep_dims")
    sweep = (f"{info.get('sweep_points', '?')} points per dimension" if dims is None
             else f"{info.get('sweep_points', '?')} points per dimension of {', '.join(dims)}" if dims
             else "the named contexts only")
    return f"{kind}, {info.get('eval_episodes', '?')} episodes, {sweep}, {info.get('seeds', '?')} seeds"


# ------------------------------------------------------------------ outputs
def _claims_markdown(claims: Sequence[Mapping[str, Any]]) -> str:
    lines = ["| claim | where | CSE | other | difference (95% CI) | measured |", "|---|---|---|---|---|---|"]
    for c in claims:
        c = {**c, "claim": c["claim"].replace("|", "\\|"), "where": c["where"].replace("|", "\\|")}
        lines.append(f"| {c['claim']} | {c['where']} | {c['mean_a']:.2f} ± {c['ci_a']:.2f} | "
                     f"{c['b']}: {c['mean_b']:.2f} ± {c['ci_b']:.2f} | {c['diff']:+.2f} ± {c['diff_ci']:.2f} | "
                     f"{c['verdict']} |")
    return "\n".join(lines)


def _timings_markdown(timings: Mapping[str, Mapping[str, float]]) -> str:
    lines = ["| method | train wall s (all) | compile s | training program s | eval wall s |", "|---|---|---|---|---|"]
    for m, t in timings.items():
        lines.append(f"| {m} | {t['train_s']:.1f} | {t['compile_s']:.1f} | {t['program_s']:.1f} | {t['eval_s']:.1f} |")
    return "\n".join(lines)


def run_title(env: str, scale: str, steps: int, seeds: int) -> str:
    return f"{env}: zero-shot return, {scale} scale ({steps:,} steps x {seeds} seeds)"


def write_outputs(out: str, results: Mapping[str, EvalResult], *, title: str, info: Mapping[str, Any],
                  claims: Sequence[Mapping[str, Any]], timings: Mapping[str, Mapping[str, float]],
                  work: str | None = None, judged: Sequence[Mapping[str, Any]] = ()) -> str:
    """Write ``generalization.png``, ``learning_curves.png`` (from ``<work>/<label>/metrics.csv``,
    when ``work`` is given) and ``results.{md,csv,json}`` under ``out``; returns the markdown."""
    os.makedirs(out, exist_ok=True)
    swept = plots.write_sweep_plot(results, os.path.join(out, "generalization.png"), title=title)
    curves = work is not None and plots.write_learning_curves(work, list(results), os.path.join(out, "learning_curves.png"),
                                                            f"{info.get('env', '')}: training return")
    tables.write_csv(results, os.path.join(out, "results.csv"))
    tables.write_json(results, os.path.join(out, "results.json"),
                  extra={**info, "timings": timings, "verdicts": list(judged), "claims": claims})
    settings = ", ".join(f"{k}={v}" for k, v in info.items() if k not in ("configs", "command", "machine"))
    m = info.get("machine", {})
    machine_line = (f"Machine: {m.get('cpu_model', '?')}, {m.get('cpu_usable', '?')} usable cores, "
                    f"{m.get('jax_backend', '?')} backend ({m.get('device_kind', '?')}), jax {m.get('jax', '?')}."
                    if isinstance(m, Mapping) else f"Machine: {m}.")
    md = "\n\n".join([
        f"# {title}",
        f"Command: `{info.get('command', '')}`",
        f"Settings: {settings}. Cells are mean ± 95% Student-t interval over seeds of each seed's mean return; "
        "differences are paired by seed.",
        machine_line,
        "## Verdicts on the paper's claims (pre-registered rows, docs/experiments/claims.json)\n\n"
        + (verdicts.markdown_table(judged, protocol_label(info)) if judged else "(no claim applies to these methods)")
        + "".join(f"\n\nNot judged here (its rows are not in this run's grid): {', '.join(unjudged)}."
                  for unjudged in [info.get("claims_not_judged_no_rows_in_this_grid")] if unjudged),
        "## Far-context aggregates (not the paper's protocol)\n\n"
        + (_claims_markdown(claims) if claims else "(no aggregate applies to these methods)"),
        "## Summary (named contexts and sweep means)\n\n```\n" + tables.format_table(results, detail=False) + "\n```",
        "## Wall time\n\n" + _timings_markdown(timings),
        "## Every grid point\n\n```\n" + tables.format_table(results, detail=True) + "\n```",
        *([f"![{title}](generalization.png)"] if swept else []),
        *(["![learning curves](learning_curves.png)"] if curves else []),
    ]) + "\n"
    atomic_write(os.path.join(out, "results.md"), md)
    return md


# -------------------------------------------------------------------- merge
# What every part of a merged run must share: the same protocol, so that the seeds stay paired.
SHARED_INFO = ("env", "env_kwargs", "scale", "seeds", "steps_per_seed", "steps_run", "eval_episodes", "sweep_points",
               "sweep_dims", "eval_actions", "training_context")


def merge_runs(exp: Experiment, sources: Sequence[str], out: str, work: str | None = None,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """One results folder from runs of ``exp`` that trained different methods apart (e.g. one
    process per method on a machine with a core each, ``--methods vanilla`` and ``--methods cse``).

    ``sources``: result folders (each with the ``results.json`` of :func:`write_outputs`); they
    must agree on :data:`SHARED_INFO` (environment, scale, seeds, steps, evaluation), the grid
    and the base seed (so seed ``k`` of every method trained and was evaluated from the same
    keys), and hold different methods. The claims and the pre-registered verdicts are judged
    again on the union, and ``out`` gets the same files as one run of all the methods
    (``work``: the shared checkpoint folder, for the learning curves). ``ValueError`` names
    the source and the setting that differs. Returns what :func:`run_experiment` returns.
    """
    if len(sources) < 2:
        raise ValueError(f"--merge: name at least two result folders, got {list(sources)}")
    results: dict[str, EvalResult] = {}
    infos, timings, configs, origin = [], {}, {}, {}
    for src in sources:
        path = os.path.join(src, "results.json")
        if not os.path.isfile(path):
            raise ValueError(f"--merge: {src} holds no results.json (a finished run's --out folder)")
        with open(path) as f:
            info = json.load(f).get("info", {})
        if info.get("env") != exp.env:
            raise ValueError(f"--merge: {src} is a run of {info.get('env')!r}, not {exp.env!r}")
        differing = [k for k in SHARED_INFO if infos and info.get(k) != infos[0].get(k)]
        if differing:
            k = differing[0]
            raise ValueError(f"--merge: {k} differs: {infos[0].get(k)!r} in {sources[0]}, {info.get(k)!r} in {src}")
        for label, result in tables.load_json(path).items():
            if label in results:
                raise ValueError(f"--merge: method {label!r} is in both {origin[label]} and {src}")
            first = next(iter(results.values()), None)
            if first is not None and (first.grid.labels != result.grid.labels
                                      or not np.array_equal(first.grid.contexts, result.grid.contexts)):
                raise ValueError(f"--merge: {src} was evaluated on another grid than {sources[0]}")
            results[label], origin[label] = result, src
            timings[label] = info.get("timings", {}).get(label)
            configs[label] = info.get("configs", {}).get(label, {})
        infos.append(info)
    base_seeds = {label: cfg.get("seed") for label, cfg in configs.items()}
    if len(set(base_seeds.values())) > 1:
        raise ValueError(f"--merge: the methods trained from different base seeds {base_seeds}: their seeds are not paired")
    order = sorted(results, key=lambda m: exp.methods.index(m) if m in exp.methods else len(exp.methods))
    results = {m: results[m] for m in order}
    first = infos[0]
    env = TrainConfig(env=exp.env, env_kwargs=first.get("env_kwargs") or {}).validate().make_env()
    claims = check_claims(exp, results, env.context_space.low, env.context_space.high)
    judged = paper_verdicts(exp.env, results)
    info = {**{k: first.get(k) for k in SHARED_INFO},  # the parts may have run at the same time: their walls apart
            "wall_s_of_parts": {src: i.get("wall_s") for src, i in zip(sources, infos)},
            "machine": first.get("machine"), "command": " && ".join(i.get("command", "") for i in infos),
            "merged_from": {label: origin[label] for label in results}, "configs": {m: configs[m] for m in results}}
    title = run_title(exp.env, first.get("scale"), first.get("steps_per_seed"), first.get("seeds"))
    md = write_outputs(out, results, title=title, info=info, claims=claims,
                       timings={m: timings[m] for m in results if timings[m]}, work=work, judged=judged)
    log(md.split("## Wall time")[0])
    log(f"merged {', '.join(results)} from {len(sources)} runs into {out}")
    return {"results": results, "verdicts": judged, "claims": claims, "timings": timings, "out": out}


# --------------------------------------------------------------------- main
def run_experiment(exp: Experiment, *, scale: str = "cpu", seeds: int | None = None, steps: int | None = None,
                   methods: Sequence[str] | None = None, out: str | None = None, work: str | None = None,
                   resume: bool = False, seed: int = 0, command: str = "", env_kwargs: Mapping[str, Any] | None = None,
                   wandb_project: str | None = None, eval_actions: str | None = None,
                   eval_episodes: int | None = None, sweep_points: int | None = None,
                   sweep_dims: Sequence[str] | None = None, log=print) -> dict[str, Any]:
    """Run the whole protocol for ``exp``; returns ``{"results", "verdicts", "claims", "timings", "out"}``.

    ``env_kwargs``: the environment's constructor options (``TrainConfig.env_kwargs``);
    ``wandb_project``: also log to this W&B project; ``eval_actions``, ``eval_episodes``,
    ``sweep_points``: override the scale's evaluation (``None``: the scale's); ``sweep_dims``:
    the dimensions swept (``None``: all; ``()``: the named contexts only, e.g. a second
    evaluation of finished checkpoints with ``resume=True`` and more episodes).
    """
    # The environment's module first, before anything starts JAX's CPU backend: the MJX envs size
    # XLA:CPU's thread pool on import so that batched steps cannot hang (zsgjax.envs.mjx.cpu_pool).
    envs.constructor(exp.env)
    sc = exp.scale(scale)
    overrides = {"eval_actions": eval_actions, "eval_episodes": eval_episodes, "sweep_points": sweep_points}
    sc = dataclasses.replace(sc, **{k: v for k, v in overrides.items() if v is not None})
    if methods:
        unknown = [m for m in methods if m not in exp.methods]
        if unknown:
            raise ValueError(f"--methods: {unknown} not among this experiment's {list(exp.methods)}")
        exp = dataclasses.replace(exp, methods=tuple(methods))
    num_seeds = seeds or sc.seeds
    total = steps or sc.steps
    stamp = time.strftime('%Y%m%d-%H%M%S', time.gmtime())
    out = out or os.path.join(REPO, "runs", "experiments", f"{exp.env}-{scale}-{stamp}", "results")
    work = work or os.path.join(REPO, "runs", "experiments", f"{exp.env}-{scale}-{stamp}", "checkpoints")
    configs = configs_for(exp, sc, total, seed, env_kwargs)
    env_text = "".join(f"; {k}={v}" for k, v in dict(env_kwargs or {}).items())
    launched_on = machine.machine_description()  # at launch: the zsgjax commit the run's code came from
    log(f"{exp.env} ({scale} scale){env_text}: methods {', '.join(configs)}; {num_seeds} seeds; {total:,} steps per "
        f"seed; out {out}; checkpoints {work}")
    t0 = time.perf_counter()
    results, timings = run_variants(configs, num_seeds=num_seeds, work=work, resume=resume,
                                    eval_episodes=sc.eval_episodes, sweep_points=sc.sweep_points,
                                    sweep_dims=sweep_dims, eval_actions=sc.eval_actions, chunks=sc.chunks, wandb_project=wandb_project,
                                    log=log)
    first = make_train(next(iter(configs.values())))
    env, steps_run = first.env, first.num_iterations * first.steps_per_iteration  # whole iterations
    default = ", ".join(f"{v:g}" for v in env.context_space.default)
    info = {
        "env": exp.env, "env_kwargs": json.loads(json.dumps(first.config.env_kwargs)), "scale": scale,
        "seeds": num_seeds, "steps_per_seed": total, "steps_run": steps_run,
        "eval_episodes": sc.eval_episodes, "sweep_points": sc.sweep_points,
        "sweep_dims": None if sweep_dims is None else list(sweep_dims), "eval_actions": sc.eval_actions,
        "training_context": f"({default})",
        "wall_s": round(time.perf_counter() - t0, 1), "machine": launched_on,
        "command": command, **({"note": sc.note} if sc.note else {}),
        "configs": {label: dataclasses.asdict(make_train(c).config) for label, c in configs.items()},
    }
    # The returns first (evaluation is not checkpointed): nothing that reports on them can lose them.
    os.makedirs(out, exist_ok=True)
    tables.write_json(results, os.path.join(out, "results.json"), extra={**info, "timings": timings})
    claims = check_claims(exp, results, env.context_space.low, env.context_space.high)
    unjudged = [c.id for c in verdicts.unjudged(exp.env, results, verdicts.load_claims(CLAIMS))]
    if unjudged:  # e.g. a sweep claim of a run evaluated on the named contexts alone
        info["claims_not_judged_no_rows_in_this_grid"] = unjudged
    title = run_title(exp.env, scale, total, num_seeds)
    judged = paper_verdicts(exp.env, results)
    md = write_outputs(out, results, title=title, info=info, claims=claims, timings=timings, work=work, judged=judged)
    log(md.split("## Wall time")[0])
    log(f"wrote {', '.join(sorted(os.listdir(out)))} in {out} in {info['wall_s']:.0f} s")
    return {"results": results, "verdicts": judged, "claims": claims, "timings": timings, "out": out}


def parser(exp: Experiment, description: str | None = None) -> argparse.ArgumentParser:
    p = options.ArgumentParser(description=description or f"The CSE paper's experiment on {exp.env}: train "
                                f"{', '.join(exp.methods)} for several seeds, sweep contexts, plot and tabulate.")
    p.add_argument("--scale", choices=SCALES, default="cpu",
                   help=f"cpu: minutes on 2 cores ({exp.cpu.steps:,} steps x {exp.cpu.seeds} seeds); paper: the "
                   f"paper's lengths for GPU machines ({exp.paper.steps:,} steps x {exp.paper.seeds} seeds)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the scale's)")
    p.add_argument("--steps", type=int, default=None, help="training steps per seed (default: the scale's)")
    p.add_argument("--methods", nargs="+", default=None, help=f"subset of {' '.join(exp.methods)}")
    p.add_argument("--seed", type=int, default=0, help="base seed (default: 0)")
    p.add_argument("--out", default=None, help="output folder (default: runs/experiments/<env>-<scale>-<time>/results; "
                   f"pass --out docs/experiments/{exp.env} to replace the committed results)")
    p.add_argument("--work", default=None, help="checkpoint folder (default: runs/experiments/<env>-<scale>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoints in --work")
    p.add_argument("--merge", nargs="+", default=None, metavar="RESULTS",
                   help="instead of running: merge the --out folders of runs that trained different methods of "
                   "the same protocol apart (one process per method) into --out, judging the claims on the union "
                   "(--work: their shared checkpoint folder, for the learning curves)")
    p.add_argument("--eval-episodes", type=int, default=None,
                   help=f"episodes per context and seed (default: the scale's; paper {PAPER_EVAL['eval_episodes']})")
    p.add_argument("--sweep-points", type=int, default=None,
                   help=f"points per swept dimension (default: the scale's; paper {PAPER_EVAL['sweep_points']})")
    options.add_sweep_dims_option(p)
    p.add_argument("--eval-actions", choices=ACTION_MODES, default=None,
                   help="how evaluated policies act (default: the scale's; paper: sample_unscaled, the paper's "
                   "evaluate_policies.py; cpu: mean, the deterministic policy)")
    options.add_env_options(p.add_argument_group("environment options (TrainConfig.env_kwargs), as in zsgjax train"))
    options.add_run_logging_options(p.add_argument_group("logging and compilation"), tensorboard_default=None)
    return p


def main(exp: Experiment, argv: Sequence[str] | None = None) -> int:
    p = parser(exp)
    args = p.parse_args(argv)
    if args.resume and not args.work:
        p.error("--resume needs --work naming the checkpoint folder")
    command = "python " + " ".join([os.path.relpath(sys.argv[0], REPO) if argv is None else exp.env,
                                    *(sys.argv[1:] if argv is None else argv)])
    if args.merge:
        if not args.out:
            p.error("--merge needs --out naming the merged result folder")
        try:
            merge_runs(exp, args.merge, args.out, work=args.work)
        except ValueError as e:
            p.error(str(e))
        return 0
    options.configure_compile_cache(args.compile_cache)
    try:
        run_experiment(exp, scale=args.scale, seeds=args.seeds, steps=args.steps, methods=args.methods,
                       out=args.out, work=args.work, resume=args.resume, seed=args.seed, command=command,
                       env_kwargs=options.env_kwargs_from_args(args), wandb_project=options.wandb_project(args),
                       eval_actions=args.eval_actions, eval_episodes=args.eval_episodes,
                       sweep_points=args.sweep_points, sweep_dims=options.sweep_dims_from_args(args))
    except ValueError as e:
        p.error(options.flag_message(str(e)))
    return 0
