"""The CSE paper's own code (RLlib) on pendulum_goal, evaluated by zsgjax's paper-protocol evaluator.

    python scripts/experiments/paper_code_policies.py --paper-code /work/paper_code \\
        --paper-python /work/venvs/paper/bin/python --seeds 0 1 2 --epochs 1000 \\
        [--zsgjax-results docs/experiments/paper20/pendulum_goal/results.json] [--zsgjax-work DIR]

Why: zsgjax does not reproduce "CSE outperforms LDR for tau > 0.6" on pendulum_goal.
This runs the paper's code itself (chapman20j/ZeroShotGeneralization-CMDPs, RLlib 2.44,
in its own virtualenv: RLlib and torch are never zsgjax dependencies) and judges its
policies exactly as zsgjax's are judged, so the question becomes "not reproduced; the
paper's code gives X here". For every method and seed:

1. **train** (unless already done): the paper's unchanged ``main.py`` with the settings
   of its ``scripts/pen_goal.sh`` (``--env pen_goal --epochs 1000 --vectorization 8
   --custom_eval --eval_interval 20``; ``--se_delta 0.1``, its default) and the
   method's flags: vanilla ``--cse 0 --dr 0``, CSE ``--cse 1`` (first order, actions
   unchanged, a context step of length ``se_delta`` on the unit sphere), LDR ``--dr 1``
   (each episode's context ``N(default, se_delta^2)`` per coordinate). One Tune trial
   per seed, in ``<root>/<method>/seed<k>`` (``paper_code_export.py train`` sets the
   storage folder and ``AlgorithmConfig.seed = k``, which does not make RLlib's runs
   reproducible: seeds are independent trials, paired across methods only by their
   evaluation keys); a finished seed has a
   ``done.json`` and is never retrained; an unfinished one is started over (main.py
   cannot resume a trial);
2. **export** its final checkpoint's actor to ``policy.npz`` (``paper_code_export.py
   export``, atomically);
3. **evaluate** all seeds' policies with zsgjax's evaluator
   (:func:`zsgjax.evaluate.evaluate_grid`, the port of RLlib's actor in
   :mod:`rllib_sac_policy`) on the grid, episodes, action mode and evaluation key of
   ``pendulum_goal.py --scale paper`` (:data:`pendulum_goal.EXPERIMENT`'s paper scale;
   key :func:`zsgjax.runner.evaluation_key`): seed ``k`` in the ``--seeds`` list gets the
   episode starts and action noise of zsgjax's seed ``k`` when the lists are ``0 .. n-1``;
4. **judge** the pre-registered claims of ``docs/experiments/claims.json``
   (:func:`zsgjax.reporting.verdicts.judge_env`: paired per-seed differences,
   Student-t 95%), beside zsgjax's own run's verdicts when ``--zsgjax-results`` names
   its ``results.json``, with each method's RLlib-minus-zsgjax difference on the claim rows;
5. **learning curves** at equal environment steps: each seed's training return
   (RLlib's ``env_runners/episode_return_mean`` from ``progress.csv``: its running mean
   over the last 100 episodes, ``metrics_num_episodes_for_smoothing``), interpolated on
   common steps, beside zsgjax's (``<zsgjax-work>/<method>/metrics.csv``) when given,
   and the paper's own in-training evaluation at its three contexts.

Writes ``results.json`` (raw returns, settings, verdicts, curves, costs), ``results.md``
and ``learning_curves.png`` under ``--out``. Training costs about 19 (CSE) and 18 (LDR)
CPU-minutes per seed at 1000 epochs (about 104 000 environment steps; measured at 20
and 100 epochs, about 1.1 and 1.0 CPU-s per epoch plus 10 s for Ray's start) and uses
about one core: run one driver per method in parallel (each run folder has its own
lock), then evaluate with ``--no-train``. The CPU seconds of every run are in its
``done.json`` and in ``results.json``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.stats import ttest_ind

import common
import pendulum_goal
from rllib_sac_policy import load_policy, stack_seeds
from zsgjax import envs, runner
from zsgjax.evaluate import ACTION_MODES, evaluate_grid, make_evaluator, make_grid, policy_action
from zsgjax.reporting import machine, plots, tables, verdicts
from zsgjax.reporting.files import DirectoryLock, atomic_write, write_json
from zsgjax.reporting.metrics_log import learning_curve
from zsgjax.reporting.results import EvalResult
from zsgjax.reporting.stats import difference_ci, mean_ci

ENV = "pendulum_goal"
PAPER_ENV = "pen_goal"
EXPORT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "paper_code_export.py")
# scripts/pen_goal.sh of the paper's code (--samples 10 there: here one trial per seed)
PAPER_MAIN_ARGS = ("--env", PAPER_ENV, "--samples", "1", "--max_concurrent", "1", "--vectorization", "8",
                   "--custom_eval", "--eval_interval", "20", "--se_delta", "0.1")
METHOD_ARGS = {"vanilla": ("--cse", "0", "--dr", "0"), "cse": ("--cse", "1", "--dr", "0"),
               "ldr": ("--cse", "0", "--dr", "1")}
# the contexts of the paper's in-training evaluation (environments/common.py, "perturbations")
PAPER_EVAL_CONTEXTS = ("(2,1,1,0)", "(2,1,1,0.75)", "(2,1.2,1,-0.75)")
STEPS_COLUMN, RETURN_COLUMN = "num_env_steps_sampled_lifetime", "env_runners/episode_return_mean"
CURVE_POINTS = 10


@dataclasses.dataclass(frozen=True)
class PaperCode:
    """Where the paper's code and its virtualenv's Python are."""

    repo: str
    python: str

    def __post_init__(self):
        if not os.path.isfile(os.path.join(self.repo, "main.py")):
            raise ValueError(f"--paper-code: {self.repo!r} holds no main.py (the paper's repository is needed)")
        if not (os.path.isfile(self.python) and os.access(self.python, os.X_OK)):
            raise ValueError(f"--paper-python: {self.python!r} is not an executable Python (the paper's virtualenv)")


# ------------------------------------------------------------------ training
def main_args(method: str, epochs: int) -> list[str]:
    """The paper's ``main.py`` arguments for ``method`` trained ``epochs`` RLlib iterations."""
    if method not in METHOD_ARGS:
        raise ValueError(f"method must be one of {', '.join(METHOD_ARGS)}; got {method!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"--epochs must be a positive integer, got {epochs!r}")
    return [*PAPER_MAIN_ARGS, *METHOD_ARGS[method], "--epochs", str(epochs)]


def run_dir(root: str, method: str, seed: int) -> str:
    return os.path.join(root, method, f"seed{seed}")


def read_progress(path: str) -> list[dict[str, str]]:
    """The rows of an RLlib/Tune ``progress.csv`` (its columns are those of the first iteration only)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_results(trial_dir: str) -> list[dict[str, Any]]:
    """Every iteration's result of a Tune trial (``result.json``, one JSON object a line), flattened to
    ``"a/b/c"`` keys. Unlike ``progress.csv`` it holds metrics that first appear after the first iteration
    (the training return appears once an episode has ended)."""
    def flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}/") if isinstance(v, Mapping) else {f"{prefix}{k}": v})
        return out

    with open(os.path.join(trial_dir, "result.json")) as f:
        return [flat(json.loads(line)) for line in f if line.strip()]


def finished_trial(storage: str, epochs: int) -> str | None:
    """The trial folder under ``storage`` that ran ``epochs`` iterations and holds a checkpoint, or ``None``."""
    if not os.path.isdir(storage):
        return None
    for experiment in sorted(os.listdir(storage)):
        exp_dir = os.path.join(storage, experiment)
        for trial in sorted(os.listdir(exp_dir)) if os.path.isdir(exp_dir) else ():
            trial_dir = os.path.join(exp_dir, trial)
            progress = os.path.join(trial_dir, "progress.csv")
            if not (os.path.isfile(progress) and checkpoints(trial_dir)):
                continue
            rows = read_progress(progress)
            if rows and int(rows[-1]["training_iteration"]) == epochs:
                return trial_dir
    return None


def checkpoints(trial_dir: str) -> list[str]:
    """The trial's ``checkpoint_*`` folders, oldest first."""
    return sorted(os.path.join(trial_dir, d) for d in os.listdir(trial_dir) if d.startswith("checkpoint_"))


def process_tree_cpu(root_pid: int, seen: dict[tuple[int, int], float]) -> None:
    """Record in ``seen`` (``{(pid, start time): CPU seconds}``) the user + system CPU time of ``root_pid`` and
    of every descendant now alive, read from ``/proc`` (Ray's raylet, GCS and workers are descendants of
    main.py, but not all of them are reaped by their parents, so ``getrusage`` misses them)."""
    parent, stat = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        pid = int(entry)
        parent[pid] = int(fields[1])
        stat[pid] = (int(fields[19]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    for pid, (start, cpu) in stat.items():
        p = pid
        while p not in (root_pid, 0, 1) and p in parent:
            p = parent[p]
        if p == root_pid:
            seen[(pid, start)] = max(cpu, seen.get((pid, start), 0.0))


def run_measured(command: Sequence[str], out, cwd: str, interval_s: float = 1.0) -> tuple[int, float]:
    """Run ``command`` (output to the file ``out``); ``(exit code, CPU seconds of its process tree)``, the CPU
    time polled every ``interval_s`` (a process that lives shorter than that is missed) and, where
    ``/proc`` is missing, that of the reaped children (``getrusage``)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    seen: dict[tuple[int, int], float] = {}
    while proc.poll() is None:
        if os.path.isdir("/proc"):
            process_tree_cpu(proc.pid, seen)
        try:
            proc.wait(timeout=interval_s)
        except subprocess.TimeoutExpired:
            pass
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    reaped = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc.returncode, max(sum(seen.values()), reaped)


def train_seed(code: PaperCode, root: str, method: str, seed: int, epochs: int, log=print) -> dict[str, Any]:
    """Train one seed of ``method`` unless its ``done.json`` says it is done; returns that record."""
    directory = run_dir(root, method, seed)
    done_path = os.path.join(directory, "done.json")
    args = main_args(method, epochs)
    if os.path.isfile(done_path):
        with open(done_path) as f:
            done = json.load(f)
        if done.get("main_args") == args:
            return done
        raise ValueError(f"{directory} was trained with other settings ({done.get('main_args')}); "
                         f"use another --root for {args}")
    storage = os.path.join(directory, "ray")
    if os.path.isdir(storage):  # an interrupted run: main.py cannot resume a trial
        log(f"[{method} seed {seed}] removing the unfinished run in {storage}")
        shutil.rmtree(storage)
    os.makedirs(directory, exist_ok=True)
    command = [code.python, EXPORT_SCRIPT, "train", "--paper-code", code.repo, "--storage", storage,
               "--seed", str(seed), "--", *args]
    log(f"[{method} seed {seed}] training: {' '.join(args)}")
    t0 = time.perf_counter()
    with open(os.path.join(directory, "train.log"), "w") as out:
        returncode, cpu_s = run_measured(command, out, cwd=code.repo)
    wall = time.perf_counter() - t0
    trial = finished_trial(storage, epochs)
    if trial is None:
        raise RuntimeError(f"[{method} seed {seed}] the paper's main.py ended (exit {returncode}) without a trial of "
                           f"{epochs} iterations and a checkpoint; see {os.path.join(directory, 'train.log')}")
    rows = read_progress(os.path.join(trial, "progress.csv"))
    done = {"method": method, "seed": seed, "epochs": epochs, "main_args": args, "trial": os.path.relpath(trial, root),
            "env_steps": int(float(rows[-1][STEPS_COLUMN])), "wall_s": round(wall, 1),
            "cpu_s": round(cpu_s, 1),
            "main_py_exit": returncode}
    if returncode != 0:  # main.py's plotting after training fails when no episode ended; the trial is complete
        log(f"[{method} seed {seed}] main.py exited {returncode} after a complete trial (see train.log)")
    write_json(done_path, done)
    log(f"[{method} seed {seed}] trained {done['env_steps']:,} steps in {wall:.0f} s wall, {done['cpu_s']:.0f} CPU-s")
    return done


def export_seed(code: PaperCode, root: str, done: Mapping[str, Any]) -> str:
    """``policy.npz`` of a trained seed (exported from its last checkpoint unless present)."""
    directory = run_dir(root, done["method"], done["seed"])
    path = os.path.join(directory, "policy.npz")
    if not os.path.isfile(path):
        checkpoint = checkpoints(os.path.join(root, done["trial"]))[-1]
        with open(os.path.join(directory, "export.log"), "w") as out:
            subprocess.run([code.python, EXPORT_SCRIPT, "export", "--checkpoint", checkpoint, "--out", path],
                           stdout=out, stderr=subprocess.STDOUT, check=True)
    return path


# ---------------------------------------------------------------- evaluation
@dataclasses.dataclass(frozen=True)
class Evaluation:
    """zsgjax's paper-protocol evaluation (``pendulum_goal.py --scale paper`` unless overridden)."""

    episodes: int
    sweep_points: int
    actions: str
    key_seed: int = 0

    @classmethod
    def paper(cls, **overrides) -> "Evaluation":
        scale = pendulum_goal.EXPERIMENT.paper
        base = dict(episodes=scale.eval_episodes, sweep_points=scale.sweep_points, actions=scale.eval_actions)
        return cls(**{**base, **{k: v for k, v in overrides.items() if v is not None}})

    def __post_init__(self):
        if self.actions not in ACTION_MODES:
            raise ValueError(f"--eval-actions must be one of {', '.join(ACTION_MODES)}; got {self.actions!r}")


def evaluate_policies(paths: Mapping[str, Sequence[str]], evaluation: Evaluation) -> dict[str, EvalResult]:
    """``{method: EvalResult}`` (returns ``(S, C, E)``, seed ``s`` = ``paths[method][s]``) of exported policies
    on zsgjax's grid; every method runs in one compiled evaluation program with the same key."""
    env = envs.make(ENV)
    loaded = {m: [load_policy(p) for p in ps] for m, ps in paths.items()}
    policies = {policy for pairs in loaded.values() for policy, _ in pairs}
    if len(policies) != 1:
        raise ValueError(f"the exported policies differ in activations or action box: {sorted(map(str, policies))}")
    (policy,) = policies
    act_fn, sampled = policy_action(policy, evaluation.actions)
    evaluator = make_evaluator(env, act_fn, evaluation.episodes, sampled)
    grid = make_grid(env, evaluation.sweep_points)
    rng = runner.evaluation_key(evaluation.key_seed)
    return {m: evaluate_grid(env, act_fn, stack_seeds([p for _, p in pairs]), grid, num_episodes=evaluation.episodes,
                             rng=rng, sampled=sampled, evaluator=evaluator, pieces=runner.EVAL_PIECES)
            for m, pairs in loaded.items()}


# ------------------------------------------------------------- comparisons
def paper_evaluation_check(code: PaperCode, root: str, record: Mapping[str, Any], result: EvalResult,
                           seed_index: int, episodes: int) -> list[dict[str, Any]]:
    """The paper's own evaluation loop (``evaluate_policies.get_returns`` on its environment, run by
    ``paper_code_export.py paper-eval``) of one seed's final checkpoint at the paper's named contexts,
    against zsgjax's evaluation of the exported policy (``result``'s seed ``seed_index``): per context the
    two means and their difference with Welch's 95% interval (independent episodes). The paper's loop
    leaves out each episode's last reward, zsgjax's counts it."""
    grid = result.grid
    rows = [grid.labels.index(name) for name in PAPER_EVAL_CONTEXTS]
    directory = run_dir(root, record["method"], record["seed"])
    path = os.path.join(directory, f"paper_eval_{episodes}.npz")
    if not os.path.isfile(path):
        checkpoint = checkpoints(os.path.join(root, record["trial"]))[-1]
        contexts = [",".join(f"{x:g}" for x in grid.contexts[r]) for r in rows]
        with open(os.path.join(directory, "paper_eval.log"), "w") as out:
            subprocess.run([code.python, EXPORT_SCRIPT, "paper-eval", "--paper-code", code.repo, "--checkpoint",
                            checkpoint, "--episodes", str(episodes), "--out", path, "--contexts", *contexts,
                            "--vectorization", str(32 if episodes % 32 == 0 else episodes)],  # the paper's 32
                           stdout=out, stderr=subprocess.STDOUT, check=True)
    with np.load(path) as f:
        theirs = f["returns"]
    out = []
    for k, r in enumerate(rows):
        ours = np.asarray(result.returns, np.float64)[seed_index, r]
        low, high = ttest_ind(ours, theirs[k], equal_var=False).confidence_interval(0.95)  # Welch
        diff, half = (low + high) / 2.0, (high - low) / 2.0
        out.append({"method": record["method"], "seed": record["seed"], "context": grid.labels[r],
                    "paper": float(theirs[k].mean()), "paper_episodes": int(theirs[k].size),
                    "zsgjax": float(ours.mean()), "zsgjax_episodes": int(ours.size), "diff": diff,
                    "half_width": half})
    return out


def compare_methods(rllib: Mapping[str, EvalResult], zsgjax: Mapping[str, EvalResult],
                    claims: verdicts.Claims) -> list[dict[str, Any]]:
    """Per claim and method: RLlib's mean minus zsgjax's on the claim's rows (:func:`difference_ci`: paired by
    seed index, which shares evaluation keys, when the seed counts are equal; Welch otherwise)."""
    out = []
    for claim in claims.for_env(ENV):
        for method in (claim.a, claim.b):
            if method not in rllib or method not in zsgjax:
                continue
            grid = rllib[method].grid
            if grid.labels != zsgjax[method].grid.labels:
                raise ValueError("--zsgjax-results was evaluated on another grid (other sweep points?) than "
                                 f"these policies ({len(zsgjax[method].grid)} vs {len(grid)} contexts)")
            rows = verdicts.select_rows(grid, claim.rows)
            a, b = rllib[method].per_seed(rows), zsgjax[method].per_seed(rows)
            diff, half = difference_ci(a, b)
            out.append({"id": claim.id, "method": method, "rllib": float(a.mean()), "rllib_seeds": len(a),
                        "zsgjax": float(b.mean()), "zsgjax_seeds": len(b), "diff": diff, "half_width": half})
    return out


def rllib_curves(root: str, records: Sequence[Mapping[str, Any]], column: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps (S, n), values (S, n))`` of ``column`` against environment steps from every seed's
    ``result.json`` (NaN where an iteration lacks it); ``n`` is the shortest run's iteration count."""
    steps, values = [], []
    for r in records:
        rows = read_results(os.path.join(root, r["trial"]))
        steps.append([float(row[STEPS_COLUMN]) for row in rows])
        values.append([np.nan if row.get(column) is None else float(row[column]) for row in rows])
    n = min(len(s) for s in steps)
    return np.array([s[:n] for s in steps]), np.array([v[:n] for v in values])


def at_steps(steps: np.ndarray, values: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Each seed's curve linearly interpolated at ``points``: ``steps``/``values`` ``(S, n)`` (or ``steps (n,)``)
    -> ``(S, len(points))``; NaN outside the steps where the seed's curve is finite."""
    steps = np.broadcast_to(np.asarray(steps, np.float64), np.shape(values))
    out = np.full((values.shape[0], len(points)), np.nan)
    for s in range(values.shape[0]):
        ok = np.isfinite(values[s])
        if ok.sum() >= 1:
            x, y = steps[s][ok], values[s][ok]
            inside = (points >= x[0]) & (points <= x[-1])
            out[s, inside] = np.interp(points[inside], x, y)
    return out


def learning_curves(root: str, records: Mapping[str, Sequence[Mapping[str, Any]]],
                    zsgjax_work: str | None) -> dict[str, Any]:
    """Training-return curves at common steps ``{"steps" (K,), "curves": {label: (S, K)}, "paper_eval": {label:
    {"steps" (S, n), "returns" (S, n)}}}``, the last the paper's in-training evaluation at its contexts."""
    raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for method, recs in records.items():
        raw[f"RLlib {method}"] = rllib_curves(root, recs, RETURN_COLUMN)
        if zsgjax_work:
            path = os.path.join(zsgjax_work, method, "metrics.csv")
            if os.path.isfile(path):
                raw[f"zsgjax {method}"] = learning_curve(path)
    end = min(float(np.max(s)) for s, _ in raw.values())
    points = np.linspace(end / CURVE_POINTS, end, CURVE_POINTS).round()
    curves = {label: at_steps(s, v, points) for label, (s, v) in raw.items()}
    paper_eval = {}
    for method, recs in records.items():
        for i, name in enumerate(PAPER_EVAL_CONTEXTS):
            s, v = rllib_curves(root, recs, f"evaluation/env_runners/{i}/episode_return_mean")
            finite = np.isfinite(v).all(axis=0)  # the evaluated iterations (every --eval_interval)
            paper_eval[f"RLlib {method} at {name}"] = {"steps": s[:, finite], "returns": v[:, finite]}
    return {"steps": points, "curves": curves, "paper_eval": paper_eval}


# ------------------------------------------------------------------- output
def curves_markdown(curves: Mapping[str, Any]) -> str:
    labels = list(curves["curves"])
    lines = ["| env steps | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for j, step in enumerate(curves["steps"]):
        cells = []
        for label in labels:
            column = curves["curves"][label][:, j]
            finite = column[np.isfinite(column)]
            if finite.size == 0:
                cells.append("–")
            else:
                m, h = mean_ci(finite)
                cells.append(f"{float(m):.1f}" + (f" ± {float(h):.1f}" if np.isfinite(h) else "") +
                             ("" if finite.size == column.size else f" ({finite.size} seeds)"))
        lines.append(f"| {int(step):,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = ["| claim | method | RLlib (seeds) | zsgjax (seeds) | RLlib − zsgjax (95% t) |", "|---|---|---|---|---|"]
    for r in rows:
        half = f" ± {r['half_width']:.3g}" if np.isfinite(r["half_width"]) else ""
        lines.append(f"| {r['id']} | {r['method']} | {r['rllib']:.2f} ({r['rllib_seeds']}) | {r['zsgjax']:.2f} "
                     f"({r['zsgjax_seeds']}) | {r['diff']:+.3g}{half} |")
    return "\n".join(lines)


def checks_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = ["| method | seed | context | paper's loop (episodes) | zsgjax (episodes) | zsgjax − paper (95% Welch) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['seed']} | {r['context']} | {r['paper']:.1f} ({r['paper_episodes']}) | "
                     f"{r['zsgjax']:.1f} ({r['zsgjax_episodes']}) | {r['diff']:+.1f} ± {r['half_width']:.1f} |")
    return "\n".join(lines)


def costs_markdown(records: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    lines = ["| method | seed | epochs | env steps | wall s | CPU s |", "|---|---|---|---|---|---|"]
    for method, recs in records.items():
        for r in recs:
            lines.append(f"| {method} | {r['seed']} | {r['epochs']} | {r['env_steps']:,} | {r['wall_s']:.0f} | "
                         f"{r['cpu_s']:.0f} |")
    return "\n".join(lines)


def write_outputs(out: str, results: Mapping[str, EvalResult], info: Mapping[str, Any],
                  judged: Sequence[Mapping[str, Any]], zsgjax_judged: Sequence[Mapping[str, Any]],
                  comparison: Sequence[Mapping[str, Any]], curves: Mapping[str, Any],
                  records: Mapping[str, Sequence[Mapping[str, Any]]],
                  checks: Sequence[Mapping[str, Any]] = ()) -> str:
    """Write ``results.json``, ``results.md`` and ``learning_curves.png`` under ``out``; returns the markdown."""
    os.makedirs(out, exist_ok=True)
    tables.write_json(results, os.path.join(out, "results.json"),
                      extra={**info, "verdicts": list(judged), "zsgjax_verdicts": list(zsgjax_judged),
                             "rllib_minus_zsgjax": list(comparison), "paper_evaluation_check": list(checks),
                             "learning_curves": curves,
                             "runs": {m: list(r) for m, r in records.items()}})
    plotted = {label: (curves["steps"], c) for label, c in curves["curves"].items() if np.isfinite(c).any()}
    if plotted:
        plots.plot_learning_curves(plotted, os.path.join(out, "learning_curves.png"),
                                   title=f"{ENV}: training return at equal steps")
    label = common.protocol_label({**info, "seeds": next(iter(results.values())).num_seeds})
    md = "\n\n".join([
        f"# {ENV}: the CSE paper's own code (RLlib) judged by zsgjax's paper-protocol evaluation",
        f"Command: `{info['command']}`",
        f"Training: the paper's `main.py {' '.join(info['main_args_template'])}` (its scripts/pen_goal.sh; "
        f"{info['epochs']} RLlib iterations, about {info['env_steps']:,} environment steps per seed), seeds "
        f"{info['seeds']} (RLlib `AlgorithmConfig.seed`). Evaluation: zsgjax's evaluator on the grid of "
        f"`pendulum_goal.py --scale paper`, {label}; evaluation key `runner.evaluation_key({info['eval_key_seed']})`.",
        "## Verdicts on the paper's claims (pre-registered rows, docs/experiments/claims.json): the paper's code\n\n"
        + (verdicts.markdown_table(judged, f"RLlib, {label}") if judged else "(no claim applies to these methods)"),
        *(["## zsgjax's own run (the same claims)\n\n" + verdicts.markdown_table(zsgjax_judged, info["zsgjax_results"]),
           "## Each method on the claim rows: the paper's code against zsgjax\n\n" + comparison_markdown(comparison)]
          if zsgjax_judged else []),
        *(["## The paper's own evaluation loop against zsgjax's (the same checkpoint)\n\n"
           "The paper's `evaluate_policies.get_returns` on its environment leaves out each episode's last "
           "reward; zsgjax's evaluator counts all 200.\n\n" + checks_markdown(checks)] if checks else []),
        "## Learning curves at equal steps (training return, mean ± 95% t over seeds)\n\n"
        "RLlib's training return is its running mean over the last 100 episodes (about 20 000 steps with 8 "
        "environments); zsgjax's is the mean of the episodes that ended in an iteration.\n\n" + curves_markdown(curves),
        "## Summary (named contexts and sweep means)\n\n```\n" + tables.format_table(results, detail=False) + "\n```",
        "## Training cost\n\n" + costs_markdown(records),
        *(["![learning curves](learning_curves.png)"] if plotted else []),
    ]) + "\n"
    atomic_write(os.path.join(out, "results.md"), md)
    return md


# --------------------------------------------------------------------- main
def run(code: PaperCode, *, seeds: Sequence[int], methods: Sequence[str], epochs: int, root: str, out: str,
        evaluation: Evaluation, train: bool = True, zsgjax_results: str | None = None,
        zsgjax_work: str | None = None, paper_eval_episodes: int = 0, command: str = "",
        log=print) -> dict[str, Any]:
    """Train (what is missing), export, evaluate and judge; returns ``{"results", "verdicts", "out"}``.
    ``paper_eval_episodes > 0``: also run the paper's own evaluation loop on the first seed of every method
    (:func:`paper_evaluation_check`)."""
    if not seeds or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ValueError(f"--seeds must be distinct non-negative integers, got {list(seeds)}")
    unknown = [m for m in methods if m not in METHOD_ARGS]
    if not methods or unknown:
        raise ValueError(f"--methods must be among {', '.join(METHOD_ARGS)}; got {list(methods)}")
    main_args(methods[0], epochs)  # checks epochs
    records: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    paths: dict[str, list[str]] = {m: [] for m in methods}
    for method in methods:
        for seed in seeds:
            done_path = os.path.join(run_dir(root, method, seed), "done.json")
            if not train and not os.path.isfile(done_path):
                raise ValueError(f"--no-train: {method} seed {seed} has not been trained ({done_path} missing)")
            # one driver per run at a time; drivers for other methods or seeds can share the root
            with DirectoryLock(run_dir(root, method, seed), what=f"the run folder of {method} seed {seed}"):
                records[method].append(train_seed(code, root, method, seed, epochs, log))
                paths[method].append(export_seed(code, root, records[method][-1]))
    t0 = time.perf_counter()
    results = evaluate_policies(paths, evaluation)
    log(f"evaluated {len(methods)} methods x {len(seeds)} seeds in {time.perf_counter() - t0:.0f} s")
    claims = verdicts.load_claims(common.CLAIMS)
    judged = verdicts.judge_env(ENV, results, claims)
    zsgjax_judged, comparison = [], []
    if zsgjax_results:
        theirs = tables.load_json(zsgjax_results)
        zsgjax_judged = verdicts.judge_env(ENV, theirs, claims)
        comparison = compare_methods(results, theirs, claims)
    checks = [row for m in methods for row in paper_evaluation_check(code, root, records[m][0], results[m], 0,
                                                                     paper_eval_episodes)] \
        if paper_eval_episodes > 0 else []
    first = records[methods[0]][0]
    info = {"env": ENV, "paper_env": PAPER_ENV, "seeds": list(seeds), "epochs": epochs, "env_steps": first["env_steps"],
            "main_args_template": main_args(methods[0], epochs)[:-len(METHOD_ARGS[methods[0]]) - 2]
            + ["<method flags>", "--epochs", str(epochs)],
            "method_args": {m: list(METHOD_ARGS[m]) for m in methods}, "eval_episodes": evaluation.episodes,
            "sweep_points": evaluation.sweep_points, "eval_actions": evaluation.actions,
            "eval_key_seed": evaluation.key_seed, "zsgjax_results": zsgjax_results, "zsgjax_work": zsgjax_work,
            "network": network_description(paths[methods[0]][0]), "machine": machine.machine_description(),
            "command": command}
    curves = learning_curves(root, records, zsgjax_work)
    md = write_outputs(out, results, info, judged, zsgjax_judged, comparison, curves, records, checks)
    log(md.split("## Learning curves")[0])
    log(f"wrote {out}/results.md, results.json, learning_curves.png")
    return {"results": results, "verdicts": judged, "out": out}


def network_description(path: str) -> str:
    """E.g. ``"7-256-256-2 (relu, relu, linear), log_std clamped to [-5, 2], actions in [-2, 2]"``."""
    policy, params = load_policy(path)
    sizes = [params["w"][0].shape[0]] + [w.shape[1] for w in params["w"]]
    return (f"{'-'.join(map(str, sizes))} ({', '.join(policy.activations)}), log_std clamped to "
            f"[{policy.log_std_min:g}, {policy.log_std_max:g}], action box "
            f"{_vector(policy.action_low)} to {_vector(policy.action_high)}")


def _vector(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{x:g}" for x in values) + "]"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--paper-code", default=os.environ.get("PAPER_CODE"),
                   help="the paper's repository (default: $PAPER_CODE)")
    p.add_argument("--paper-python", default=os.environ.get("PAPER_PYTHON"),
                   help="the Python of the paper's virtualenv, with ray 2.44 and torch (default: $PAPER_PYTHON)")
    p.add_argument("--seeds", type=int, nargs="+", required=True, help="RLlib seeds to train (or find) and evaluate")
    p.add_argument("--methods", nargs="+", default=["cse", "ldr"], choices=list(METHOD_ARGS),
                   help="methods (default: cse ldr)")
    p.add_argument("--epochs", type=int, default=1000, help="RLlib iterations (the paper: 1000, about 104k steps)")
    p.add_argument("--root", default=os.path.join(common.REPO, "runs", "paper_code", PAPER_ENV),
                   help="the runs' folder (default: runs/paper_code/pen_goal)")
    p.add_argument("--out", default=None, help="results folder (default: <root>/results)")
    p.add_argument("--no-train", action="store_true", help="only evaluate seeds already trained")
    p.add_argument("--eval-episodes", type=int, default=None, help="episodes per context and seed (default: paper, 64)")
    p.add_argument("--sweep-points", type=int, default=None, help="points per swept dimension (default: paper, 50)")
    p.add_argument("--eval-actions", choices=ACTION_MODES, default=None,
                   help="action mode (default: paper, sample_unscaled)")
    p.add_argument("--eval-key-seed", type=int, default=0,
                   help="base seed of the evaluation key (default 0, that of pendulum_goal.py)")
    p.add_argument("--zsgjax-results", default=None, help="results.json of zsgjax's pendulum_goal paper-scale run")
    p.add_argument("--zsgjax-work", default=None, help="checkpoint folder of that run (its <method>/metrics.csv)")
    p.add_argument("--paper-eval-check", type=int, default=0, metavar="EPISODES",
                   help="also run the paper's own evaluation loop with this many episodes (the paper: 64) on the "
                   "first seed of every method at its named contexts, beside zsgjax's (default 0: not run)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not args.paper_code or not args.paper_python:
        p.error("--paper-code and --paper-python (or $PAPER_CODE and $PAPER_PYTHON) are needed")
    command = "python " + " ".join([os.path.relpath(__file__, common.REPO), *(sys.argv[1:] if argv is None else argv)])
    try:
        code = PaperCode(os.path.abspath(args.paper_code), os.path.abspath(args.paper_python))
        evaluation = Evaluation.paper(episodes=args.eval_episodes, sweep_points=args.sweep_points,
                                      actions=args.eval_actions, key_seed=args.eval_key_seed)
        root = os.path.abspath(args.root)
        run(code, seeds=args.seeds, methods=args.methods, epochs=args.epochs, root=root,
            out=args.out or os.path.join(root, "results"), evaluation=evaluation, train=not args.no_train,
            zsgjax_results=args.zsgjax_results, zsgjax_work=args.zsgjax_work,
            paper_eval_episodes=args.paper_eval_check, command=command)
    except ValueError as e:
        p.error(str(e))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
