"""High-dimensional contexts (the CSE paper's open question 2): CSE against LDR and DR as the
context dimension ``d`` grows, at equal environment steps.

    python scripts/experiments/context_dimension.py                # cpu scale (see SCALES)
    python scripts/experiments/context_dimension.py --scale full   # the full size, for a GPU
    python scripts/experiments/context_dimension.py --families cartpole_physical   # MJX physical features, cpu scale

For each family (``context_dim_direction``: reward-only context; ``context_dim_lq``: ``d``
physical gains in the dynamics; both :mod:`zsgjax.envs`), each ``d`` in :data:`DIMS` and each
method in :data:`METHODS`, every seed is trained in one ``jit(vmap)`` program (the run driver
:func:`zsgjax.runner.train`, checkpointed under ``--work``) for the same number of environment
steps, then evaluated with the deterministic policy at:

* the training (default) context, and
* ``heldout`` contexts drawn uniformly from the **whole** context box, from a key fixed per
  ``d`` (:func:`heldout_grid`): the same held-out set for every method and seed.

The MJX family ``cartpole_physical`` (:data:`CARTPOLE_FEATURES`): mujoco_playground's
``CartpoleBalance`` (MJX physics, 200-step episodes) whose context is its first ``d`` physical
features (:mod:`zsgjax.envs.mjx.features`), ``d`` in :data:`MJX_DIMS`, trained at :data:`MJX_SCALES`.
Its features: its two bodies' masses, all masses, actuator gain, gravity, all joints' damping,
friction (the model's 7 model-wide and per-body features; d = 1, 2, 4, 7 were registered and
judged first), then the damping of each of its two joints, ``slider`` and ``hinge_1`` (d = 9, an
extension registered afterwards, :data:`EXTENSION_CLAIMS`). The last four barely act on it: no
contacts, joint damping 5e-4 (slider) and 2e-6 (hinge), so they are near-irrelevant (nuisance)
dimensions that widen the context box without changing the task much.

**Generalization gap** (defined before running): for one seed, the mean over the held-out
contexts ``c_j`` of ``(optimal_return(c_j) - return(c_j)) / d`` (the return averaged over the
evaluation episodes, whose start states are shared by all methods; the optimum is each
family's closed form, the expected return of an optimal policy). Both families' rewards are
sums of ``d`` independent one-dimensional tasks, so the gap per dimension is comparable
across ``d`` (the mean optimum per dimension over the box is 27.5 for the direction task,
about -0.23 for the LQ family, for every ``d``). The MJX family has no closed-form optimum:
its gap is the shortfall from the return bound, ``horizon - return`` (the Control Suite's
rewards lie in [0, 1]), averaged over the held-out contexts and not divided by ``d`` (the
reward is not a sum over the context's dimensions); differences of gaps between methods are
differences of held-out returns. Beside it, the **return drop** from the training context
(``return(train) - mean held-out return``) is reported, not judged. Reported: the mean over
seeds with its 95% Student-t interval.

Pre-registered rows (:data:`CLAIMS`, written before any run; :func:`judge`): for each family a
per-seed statistic ``X_k`` and its 95% Student-t interval over the seed index ``k``; "supported"
when the interval lies above 0, "contradicted" when below, else "not significant". Runs of
different methods with seed index ``k`` share the training key and the evaluation episodes
(paired); the growth rows difference the slopes of two methods' gaps against ``log2 d``, each
fitted per seed index over the row's ``d`` (:func:`claim_dims`: six for the analytic families,
1, 2, 4, 7 for the MJX family's first rows, 1, 2, 4, 7, 9 for its extension rows).

Resumable: each finished (family, d, method) cell is written to ``<work>/cells/*.json`` and
skipped by a rerun with the same ``--work``; an interrupted cell continues from its checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any, Mapping, Sequence

import numpy as np

from common import PLAYGROUND_CPU, PLAYGROUND_FULL, REPO, Scale
from zsgjax import options, runner
from zsgjax.reporting import machine, stats
from zsgjax.reporting.files import atomic_write, json_text, save_figure, write_json
from zsgjax.reporting.results import ContextGrid, EvalResult
from zsgjax.train import TrainConfig, make_train

FAMILIES = ("context_dim_direction", "context_dim_lq")
DIMS = (1, 2, 4, 8, 16, 32)
METHODS = ("vanilla", "cse", "ldr", "dr")
SCALED_CSE = "cse_sqrt_d"
"""The exploratory label (``--scaled-cse EPS``, not in the pre-registered rows): CSE with
``epsilon = EPS * sqrt(d)``, a context step of ``EPS`` per component on average."""
LARGEST = max(DIMS)

MJX_FAMILIES = ("cartpole_physical",)
CARTPOLE_FEATURES = ("mass_scale:pole_1", "actuator_gain", "gravity", "mass_scale:cart", "mass_scale",
                     "damping_scale", "friction_scale", "damping_scale:slider", "damping_scale:hinge_1")
"""The MJX family's context: the first ``d`` of these physical features of ``playground:CartpoleBalance``
(the first 7 keep their order: the d <= 7 cells are those of the first registration)."""
MJX_DIMS = (1, 2, 4, 7, 9)
MJX_ENV = "playground:CartpoleBalance"
MJX_HORIZON = 200
ALL_FAMILIES = (*FAMILIES, *MJX_FAMILIES)

SMALL = dict(num_envs=16, hidden_sizes=(64, 64), batch_size=128, learning_starts=400, grad_updates_per_step=2,
             buffer_size=12_000)
SCALES = {
    # 2 shared CPU cores: 48 cells of 10 seeds; SAC 64x64, 12k steps per seed (750 batched steps of 16 envs,
    # 1,500 gradient updates)
    "cpu": Scale(steps=12_000, seeds=10, config=SMALL, eval_episodes=4,
                 note="CPU scale: 12k env steps per seed, SAC 64x64, 1,500 updates, 64 held-out contexts"),
    # a GPU: the paper's SAC size (256x256, batch 256), 10x the steps, 256 held-out contexts
    "full": Scale(steps=100_000, seeds=10, config=dict(num_envs=8, learning_starts=1_000, grad_updates_per_step=2,
                                                        buffer_size=100_000), eval_episodes=16, chunks=4),
}
HELDOUT = {"cpu": 64, "full": 256}
# The MJX family: the playground protocol's sizes (common.PLAYGROUND_CPU: CartpoleBalance balances within them)
MJX_SCALES = {"cpu": dataclasses.replace(PLAYGROUND_CPU, eval_episodes=4),
              "full": dataclasses.replace(PLAYGROUND_FULL, chunks=4)}


def dims_of(family: str) -> tuple[int, ...]:
    """The context dimensions the family is run at: :data:`DIMS`, or :data:`MJX_DIMS` for the MJX family."""
    return MJX_DIMS if family in MJX_FAMILIES else DIMS


def scale_of(family: str, name: str) -> Scale:
    return (MJX_SCALES if family in MJX_FAMILIES else SCALES)[name]

REGISTERED_DIMS = {**{family: DIMS for family in FAMILIES}, "cartpole_physical": (1, 2, 4, 7)}
"""Each family's dimensions at its first registration: a row without a ``dims`` key is at the
largest of them and fits its slopes over them (:func:`claim_dims`)."""


def _claim_rows(family: str, top: int, slope_id: str = "", note: str = "",
                **extra: Any) -> tuple[dict[str, Any], ...]:
    """The five rows of one registration: CSE below LDR, vanilla and DR at ``d = top``, and CSE's
    slope below DR's and LDR's (over :func:`claim_dims`); ``slope_id`` suffixes the slope rows' ids,
    ``note`` the claims, ``extra`` keys are added to every row."""
    return (
        {"id": f"{family}:cse<ldr@{top}", "family": family, "claim": f"CSE's gap is below LDR's at d = {top}{note}",
         "statistic": f"gap(ldr, {top}) - gap(cse, {top})", **extra},
        {"id": f"{family}:cse<vanilla@{top}", "family": family,
         "claim": f"CSE's gap is below vanilla's at d = {top}{note}",
         "statistic": f"gap(vanilla, {top}) - gap(cse, {top})", **extra},
        {"id": f"{family}:cse<dr@{top}", "family": family, "claim": f"CSE's gap is below DR's at d = {top}{note}",
         "statistic": f"gap(dr, {top}) - gap(cse, {top})", **extra},
        {"id": f"{family}:slope(cse)<slope(dr){slope_id}", "family": family,
         "claim": f"CSE's gap grows slower with d than DR's{note}", "statistic": "slope(dr) - slope(cse)", **extra},
        {"id": f"{family}:slope(cse)<slope(ldr){slope_id}", "family": family,
         "claim": f"CSE's gap grows slower with d than LDR's{note}", "statistic": "slope(ldr) - slope(cse)",
         **extra},
    )


EXTENSION_CLAIMS = _claim_rows(
    "cartpole_physical", max(MJX_DIMS), slope_id="@1-9", note=" (extension)", dims=list(MJX_DIMS),
    registration="extension of the judged d = 1, 2, 4, 7 run: + damping_scale:slider, damping_scale:hinge_1 "
    "(near-irrelevant nuisance dimensions), registered 2026-12-06 before any d = 9 cell ran")
"""The MJX family's second registration, written after its first rows were judged and before its
d = 9 cells ran: the same five rows at d = 9, slopes over 1, 2, 4, 7, 9."""
CLAIMS: tuple[dict[str, Any], ...] = (
    *(row for family in ALL_FAMILIES for row in _claim_rows(family, max(REGISTERED_DIMS[family]))),
    *EXTENSION_CLAIMS)
"""Pre-registered rows. ``gap(m, d)``: per-seed generalization gap; ``slope(m)``: per seed index,
the least-squares slope of ``gap(m, d)`` against ``log2 d`` over the row's dimensions
(:func:`claim_dims`). Each row holds when the 95% Student-t interval of the statistic over seed
indices lies above 0. The MJX family's first rows (at d = 7) were added before its first run,
:data:`EXTENSION_CLAIMS` (at d = 9) before its d = 9 cells ran; both are judged."""


def claim_dims(claim: Mapping[str, Any]) -> tuple[int, ...]:
    """The dimensions a row's slopes are fitted over: its ``dims``, else its family's at the first
    registration (:data:`REGISTERED_DIMS`)."""
    return tuple(claim["dims"]) if "dims" in claim else REGISTERED_DIMS[claim["family"]]


# ----------------------------------------------------------------- cells
def heldout_grid(env, num: int, dim: int) -> ContextGrid:
    """Row 0: the training (default) context, labelled ``"train"``; rows 1..num: contexts uniform
    over the whole box from ``default_rng(1000 + dim)`` (the same for every method and seed)."""
    space = env.context_space
    rng = np.random.default_rng(1000 + dim)
    heldout = rng.uniform(space.low, space.high, size=(num, dim))
    contexts = np.concatenate([np.asarray(space.default)[None], heldout]).astype(np.float32)
    labels = ("train", *(f"heldout_{j}" for j in range(num)))
    return ContextGrid(contexts=contexts, labels=labels, swept=(None,) * len(labels), names=space.names,
                       default=np.asarray(space.default, np.float32))


def cell_config(family: str, dim: int, method: str, scale: Scale, seed: int,
                scaled_epsilon: float | None = None) -> TrainConfig:
    """The cell's config; ``method == SCALED_CSE`` trains CSE with ``epsilon = scaled_epsilon * sqrt(dim)``.
    The analytic families are environments of their own (``dim`` their option); the MJX family is
    :data:`MJX_ENV` with the first ``dim`` of :data:`CARTPOLE_FEATURES` as its context."""
    if dim not in dims_of(family):
        raise ValueError(f"d = {dim} is not a dimension of family {family!r}: {dims_of(family)}")
    extra = {}
    if method == SCALED_CSE:
        method, extra = "cse", {"cse_epsilon": float(scaled_epsilon) * float(np.sqrt(dim))}
    if family in MJX_FAMILIES:
        env, env_kwargs = MJX_ENV, {"physical": CARTPOLE_FEATURES[:dim], "horizon": MJX_HORIZON}
    else:
        env, env_kwargs = family, {"dim": dim}
    return TrainConfig(env=env, env_kwargs=env_kwargs, method=method, total_steps=scale.steps, seed=seed,
                       **dict(scale.config), **extra)


def reference_returns(family: str, env, contexts: np.ndarray) -> np.ndarray:
    """``(C,)`` the return the gap is measured from at each context: the closed-form optimum of an
    analytic family, the return bound ``horizon`` (rewards in [0, 1]) of the MJX family."""
    if family in MJX_FAMILIES:
        return np.full((len(contexts),), float(env.horizon))
    return np.asarray([env.optimal_return(c) for c in contexts], np.float64)


def cell_statistics(family: str, dim: int, per_context: np.ndarray, optimum: np.ndarray) -> dict[str, Any]:
    """A cell's per-seed statistics from ``per_context (S, C)``, each seed's mean return at the
    grid's contexts (column 0 the training context, the rest held out), and ``optimum (C,)``,
    :func:`reference_returns`: ``gap``, ``heldout_return``, ``train_return``, ``drop`` (lists of
    ``S``) and the mean held-out and training references; divided by ``dim`` for the analytic
    families (sums of ``dim`` one-dimensional tasks), as they are for the MJX family."""
    norm = 1 if family in MJX_FAMILIES else dim
    heldout = per_context[:, 1:].mean(axis=1)
    return {
        "gap": ((optimum[None, 1:] - per_context[:, 1:]).mean(axis=1) / norm).tolist(),
        "heldout_return": (heldout / norm).tolist(),
        "train_return": (per_context[:, 0] / norm).tolist(),
        "drop": ((per_context[:, 0] - heldout) / norm).tolist(),
        "heldout_optimum": float(optimum[1:].mean() / norm), "train_optimum": float(optimum[0] / norm),
    }


def run_cell(family: str, dim: int, method: str, scale: Scale, num_heldout: int, seed: int, work: str,
             evaluators: dict, log=print, scaled_epsilon: float | None = None) -> dict[str, Any]:
    """Train and evaluate one (family, d, method); the record written to ``<work>/cells``."""
    path = os.path.join(work, "cells", f"{family}-d{dim}-{method}.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    trainer = make_train(cell_config(family, dim, method, scale, seed, scaled_epsilon))
    spec = runner.RunSpec(seeds=scale.seeds, chunks=scale.chunks, keep=1, eval_episodes=scale.eval_episodes,
                          tensorboard=False, resume=True)
    label = f"{family}-d{dim}-{method}"

    def on_event(event):
        for line in runner.format_event(event, scale.seeds):
            log(line)

    t0 = time.perf_counter()
    state, report = runner.train(trainer, os.path.join(work, label), spec, label, on_event)
    grid = heldout_grid(trainer.env, num_heldout, dim)
    t1 = time.perf_counter()
    result = runner.evaluate(trainer, state, grid, scale.eval_episodes, "mean", evaluators=evaluators)
    eval_s = time.perf_counter() - t1
    optimum = reference_returns(family, trainer.env, grid.contexts)
    per_context = np.asarray(result.returns, np.float64).mean(axis=2)  # (S, C)
    record = {
        "family": family, "dim": dim, "method": method,
        **({"cse_epsilon": trainer.config.cse_epsilon} if method == SCALED_CSE else {}),
        **cell_statistics(family, dim, per_context, optimum),
        "env_steps_per_seed": trainer.num_iterations * trainer.steps_per_iteration,
        "train_s": round(report.wall_s, 1), "compile_s": round(report.compile_s, 1), "eval_s": round(eval_s, 1),
        "total_s": round(time.perf_counter() - t0, 1),
    }
    write_json(path, record)
    log(f"[{label}] gap {np.mean(record['gap']):.3f} (optimum {record['heldout_optimum']:.3f}), train "
        f"{report.wall_s:.0f} s (compile {report.compile_s:.0f} s)")
    return record


# ------------------------------------------------------------- statistics
def slopes(dims: Sequence[int], gaps: np.ndarray) -> np.ndarray:
    """``gaps (len(dims), S)`` -> per seed index the least-squares slope against ``log2 d``: ``(S,)``."""
    x = np.log2(np.asarray(dims, np.float64))
    x = x - x.mean()
    return (x[:, None] * (gaps - gaps.mean(axis=0))).sum(axis=0) / (x @ x)


def statistic(claim: Mapping[str, Any], gap: Mapping[tuple[str, int], np.ndarray]) -> np.ndarray:
    """The per-seed values ``X_k`` of a pre-registered row from ``gap[(method, d)] (S,)``; ``KeyError``
    when a cell it needs was not run (slopes need every d of the row, :func:`claim_dims`)."""
    a, b = (part.strip() for part in claim["statistic"].split(" - "))
    dims = claim_dims(claim)

    def values(term: str) -> np.ndarray:
        name, args = term.rstrip(")").split("(")
        if name == "slope":
            return slopes(dims, np.stack([gap[(args, d)] for d in dims]))
        method, d = (x.strip() for x in args.split(","))
        return gap[(method, int(d))]

    return values(a) - values(b)


def judge(claim: Mapping[str, Any], gap: Mapping[tuple[str, int], np.ndarray]) -> dict[str, Any]:
    """The verdict of one row: ``supported`` / ``contradicted`` / ``not significant`` (95% Student-t
    interval of its statistic over seed indices above / below / around 0), or ``not run``."""
    try:
        x = statistic(claim, gap)
    except KeyError:
        return {**claim, "mean": float("nan"), "ci95": float("nan"), "per_seed": [], "verdict": "not run"}
    mean, half = stats.mean_ci(x)
    mean, half = float(mean), float(half)
    verdict = ("supported" if mean - half > 0 else "contradicted" if mean + half < 0 else "not significant")
    return {**claim, "mean": mean, "ci95": half, "per_seed": x.tolist(), "verdict": verdict}


# ----------------------------------------------------------------- outputs
def plot(records: Sequence[Mapping[str, Any]], families: Sequence[str], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(families), figsize=(6 * len(families), 4.2), squeeze=False)
    for ax, family in zip(axes[0], families):
        for method in labels_of(records):
            rows = sorted((r for r in records if r["family"] == family and r["method"] == method),
                          key=lambda r: r["dim"])
            if not rows:
                continue
            means, cis = zip(*(stats.mean_ci(np.asarray(r["gap"])) for r in rows))
            ax.errorbar([r["dim"] for r in rows], means, yerr=cis, marker="o", capsize=3, label=method)
        ax.set_xscale("log", base=2)
        if max(abs(y) for line in ax.lines for y in line.get_ydata()) > 50:  # a diverged point: keep the rest readable
            ax.set_yscale("symlog", linthresh=1.0)
        ax.set_xlabel("context dimension d")
        ax.set_ylabel("gap: horizon - return (rewards in [0, 1])" if family in MJX_FAMILIES
                      else "generalization gap per dimension, (optimum - return) / d")
        ax.set_title(family)
        ax.axhline(0.0, color="gray", lw=0.8)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def labels_of(records) -> list[str]:
    """The method labels present in ``records``, in :data:`METHODS` order, the exploratory one last."""
    present = {r["method"] for r in records}
    return [m for m in (*METHODS, SCALED_CSE) if m in present]


def _table(fam, methods, key: str, first: tuple[str, dict] | None = None) -> list[str]:
    """Rows ``d | [first column] | mean ± CI of record[key] per method`` of one family's records."""
    dims = sorted({r["dim"] for r in fam})
    head = "| d | " + (f"{first[0]} | " if first else "") + " | ".join(methods) + " |"
    lines = [head, "|---|" + ("---|" if first else "") + "---|" * len(methods)]
    for d in dims:
        cells = []
        for m in methods:
            r = next((r for r in fam if r["dim"] == d and r["method"] == m), None)
            cells.append("" if r is None or key not in r else "{:.3f} ± {:.3f}".format(*stats.mean_ci(np.asarray(r[key]))))
        lines.append(f"| {d} | " + (f"{first[1][d]:.3f} | " if first else "") + " | ".join(cells) + " |")
    return lines


def markdown(records, verdicts, info) -> str:
    methods = labels_of(records)
    lines = [f"# {info['title']}", "", f"Command: `{info['command']}`", "",
             f"Scale: {info['scale']}; {info['seeds']} seeds vmapped per cell; every method and d of a family "
             f"trains for the same env steps per seed; {info['heldout']} held-out contexts uniform over the whole "
             f"box per d (the same for every method), {info['eval_episodes']} episodes each, deterministic policy. "
             f"Commit {info['machine'].get('zsgjax_commit')}.", ""]
    for family in info["families"]:
        lines.append(f"* {family}: {info['notes'][family]}; {info['env_steps_per_seed'][family]:,} env steps per seed.")
    lines += ["", "Generalization gap, analytic families: (optimum - return) / d, averaged over the held-out contexts "
              "(closed-form optimum; returns and optima below are per dimension too). MJX family: horizon - return "
              "(the return bound; not per dimension), averaged over the held-out contexts. Cells: mean ± 95% "
              "Student-t interval over seeds.", "",
              "## Pre-registered verdicts (paired by seed index, 95% Student-t)", "",
              "| family | claim | statistic | mean ± 95% CI | verdict |", "|---|---|---|---|---|"]
    for v in verdicts:
        lines.append(f"| {v['family']} | {v['claim']} | {v['statistic']} | {v['mean']:+.3f} ± {v['ci95']:.3f} | "
                     f"{v['verdict']} |")
    for family in info["families"]:
        fam = [r for r in records if r["family"] == family]
        if not fam:
            continue
        reference = "return bound" if family in MJX_FAMILIES else "held-out optimum"
        lines += ["", f"## {family}: gap on held-out contexts", "",
                  *_table(fam, methods, "gap", (reference, {r["dim"]: r["heldout_optimum"] for r in fam})),
                  "", f"Return at the training context ({'bound' if family in MJX_FAMILIES else 'optimum'} "
                  f"{fam[0]['train_optimum']:.3f}):", "", *_table(fam, methods, "train_return"),
                  "", "Mean held-out return:", "", *_table(fam, methods, "heldout_return")]
        if all("drop" in r for r in fam):
            lines += ["", "Return drop from the training context, return(train) - mean held-out return (not judged):",
                      "", *_table(fam, methods, "drop")]
    total = sum(r["total_s"] for r in records)
    lines += ["", f"Wall time of the cells run: {total / 60:.0f} min (compilation included).", "",
              "![gap against d](context_dimension.png)", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    p = options.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=tuple(SCALES), default="cpu")
    p.add_argument("--families", nargs="+", choices=ALL_FAMILIES, default=list(FAMILIES),
                   help=f"default: the analytic {' '.join(FAMILIES)}; MJX: {' '.join(MJX_FAMILIES)}")
    p.add_argument("--dims", nargs="+", type=int, choices=sorted({*DIMS, *MJX_DIMS}), default=None,
                   help="context dimensions to run, those of each family among them (default each family's all; "
                   "the growth rows need all)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--scaled-cse", type=float, default=None, metavar="EPS",
                   help=f"also train '{SCALED_CSE}': CSE with epsilon = EPS * sqrt(d) (exploratory, not in the "
                   "pre-registered rows)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per cell (default: the scale's)")
    p.add_argument("--steps", type=int, default=None, help="env steps per seed (default: the scale's)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--out", default=None, help="results folder (default runs/experiments/context_dimension-<scale>; "
                   "docs/experiments/context_dimension holds the committed one)")
    p.add_argument("--work", default=None, help="checkpoints and finished cells (default <out>/work); rerun with the "
                   "same --work to resume")
    options.add_run_logging_options(p.add_argument_group("logging and compilation"), tensorboard_default=None)
    args = p.parse_args(argv)
    overrides = {k: v for k, v in (("seeds", args.seeds), ("steps", args.steps)) if v}
    scales = {f: dataclasses.replace(scale_of(f, args.scale), **overrides) for f in args.families}
    if len({sc.seeds for sc in scales.values()}) > 1 or len({sc.eval_episodes for sc in scales.values()}) > 1:
        p.error("--families: the chosen families' scales differ in seeds or episodes; run them separately")
    dims = {f: [d for d in dims_of(f) if args.dims is None or d in args.dims] for f in args.families}
    if not all(dims.values()):
        p.error(f"--dims: none of {args.dims} is a dimension of {[f for f, d in dims.items() if not d]} "
                f"({', '.join(f'{f}: {dims_of(f)}' for f in args.families)})")
    if args.scaled_cse is not None and set(args.families) & set(MJX_FAMILIES):
        p.error("--scaled-cse applies to the analytic families only")
    scale = next(iter(scales.values()))
    out = args.out or os.path.join(REPO, "runs", "experiments", f"context_dimension-{args.scale}")
    work = args.work or os.path.join(out, "work")
    os.makedirs(out, exist_ok=True)
    if set(args.families) & set(MJX_FAMILIES):
        from zsgjax import envs

        envs.constructor(MJX_ENV)  # before JAX starts: the MJX envs size XLA:CPU's thread pool (zsgjax.envs.mjx.cpu_pool)
    options.configure_compile_cache(args.compile_cache)
    command = "python " + " ".join([os.path.relpath(sys.argv[0], REPO) if argv is None else "context_dimension.py",
                                    *(sys.argv[1:] if argv is None else argv)])
    launched_on = machine.machine_description()
    write_json(os.path.join(out, "preregistered.json"), {"claims": CLAIMS, "definition": __doc__})
    evaluators: dict = {}
    records = []
    for family in args.families:
        for dim in dims[family]:
            for method in [*args.methods, *([SCALED_CSE] if args.scaled_cse is not None else [])]:
                records.append(run_cell(family, dim, method, scales[family], HELDOUT[args.scale], args.seed, work,
                                        evaluators, scaled_epsilon=args.scaled_cse))
    gap = {(r["family"], r["method"], r["dim"]): np.asarray(r["gap"]) for r in records}
    verdicts = [judge(c, {(m, d): g for (f, m, d), g in gap.items() if f == c["family"]})
                for c in CLAIMS if c["family"] in args.families]
    steps = {f: next(r["env_steps_per_seed"] for r in records if r["family"] == f) for f in args.families}
    info = {"title": f"Generalization gap against the context dimension ({args.scale} scale)", "command": command,
            "scale": args.scale, "notes": {f: scales[f].note or "" for f in args.families}, "seeds": scale.seeds,
            "env_steps_per_seed": steps, "heldout": HELDOUT[args.scale],
            "eval_episodes": scale.eval_episodes, "families": list(args.families), "dims": dims,
            "methods": labels_of(records), "scaled_cse": args.scaled_cse, "base_seed": args.seed,
            "config": {f: dict(scales[f].config) for f in args.families}, "machine": launched_on}
    write_json(os.path.join(out, "results.json"), {**info, "claims": CLAIMS, "verdicts": verdicts, "cells": records})
    plot(records, args.families, os.path.join(out, "context_dimension.png"),
         f"gap vs context dimension, {args.scale} scale ({', '.join(f'{f}: {n:,}' for f, n in steps.items())} "
         f"steps x {scale.seeds} seeds)")
    md = markdown(records, verdicts, info)
    atomic_write(os.path.join(out, "results.md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
