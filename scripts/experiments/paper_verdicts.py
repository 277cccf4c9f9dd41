"""Verdicts on the paper's claims from committed results, and the ablations apart.

    python scripts/experiments/paper_verdicts.py                 # the committed docs/experiments/paper runs
    python scripts/experiments/paper_verdicts.py --out docs/experiments/paper/verdicts.md

The verdicts come only from ``docs/experiments/claims.json``
(:mod:`zsgjax.reporting.verdicts`), applied to each environment's ``results.json``
(raw returns per grid point). The ablation table applies the same claims to runs that
are not the paper's protocol: another training length, another ``cse_epsilon``
(a variant's ``results.json`` from ``ablation.py``, paired by seed with the committed
run it was compared with), and zsgjax's "far contexts" aggregate.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
from typing import Any, Mapping, Sequence


import common
from zsgjax.envs import make
from zsgjax.reporting import tables, verdicts
from zsgjax.reporting.files import atomic_write

PAPER = os.path.join(common.REPO, "docs", "experiments", "paper")
# committed runs of the paper's settings: {env: directory under docs/experiments/paper}
MAIN_RUNS = {"simple_direction": "simple_direction", "pendulum_goal": "pendulum_goal", "cart_goal": "cart_goal",
             "cheetah_velocity": "cheetah_velocity"}
# (env, directory, replaced method, what differs from the paper's protocol). ``replaced`` names the one method a
# variant run holds, judged paired by seed with the env's committed main run; None: the run holds every method.
ABLATIONS = (
    ("pendulum_goal", "pendulum_goal_cse_epsilon_0.2", "cse", "CSE with cse_epsilon 0.2 (the paper's code: 0.1)"),
    ("cart_goal", "cart_goal_100k", None, "100 000 training steps (the paper: 2 000 000)"),
    ("cart_goal", "cart_goal_500k", None, "500 000 training steps (the paper: 2 000 000)"),
    ("ant_direction", "ant_direction_520k_5seeds", None,
     "520 000 training steps x 5 seeds (the paper: 1 040 000 x 10); named angles only, 64 episodes"),
    ("ant_goal", "ant_goal_520k_5seeds", None,
     "520 000 training steps x 5 seeds (the paper: 1 040 000 x 10); named angles only, 64 episodes"),
)


def load_run(directory: str) -> tuple[dict, dict]:
    """``({method: EvalResult}, info)`` of a ``results.json`` written by the experiment scripts."""
    path = os.path.join(directory, "results.json")
    with open(path) as f:
        info = json.load(f).get("info", {})
    return tables.load_json(path), info


def run_label(info: Mapping[str, Any], results: Mapping[str, Any]) -> str:
    seeds = next(iter(results.values())).num_seeds
    return "committed runs, " + common.protocol_label({**info, "seeds": seeds})


def main_verdicts(paper_dir: str, claims: verdicts.Claims,
                  envs: Sequence[str] | None = None) -> list[tuple[str, list[dict]]]:
    """``[(label, verdicts)]`` of every committed main run (or of those of ``envs``)."""
    out = []
    for env, sub in MAIN_RUNS.items():
        if (envs is None or env in envs) and has_run(paper_dir, sub):
            results, info = load_run(os.path.join(paper_dir, sub))
            out.append((run_label(info, results), verdicts.judge_env(env, results, claims)))
    return out


def has_run(paper_dir: str, sub: str) -> bool:
    """Whether ``paper_dir/sub`` holds a ``results.json`` (runs that have not landed are left out)."""
    return os.path.isfile(os.path.join(paper_dir, sub, "results.json"))


def ablation_verdicts(paper_dir: str, claims: verdicts.Claims,
                      ablations: Sequence[tuple[str, str, str | None, str]] = ABLATIONS
                      ) -> list[tuple[str, list[dict]]]:
    """``[(what differs, verdicts)]``: the claims applied to runs that are not the paper's protocol
    (``ablations`` as in :data:`ABLATIONS`; runs that have not landed are left out, and so is a one-method
    variant whose env has no committed main run to pair it with)."""
    out = []
    for env, sub, replaced, text in ablations:
        paired_run = MAIN_RUNS.get(env)
        unpaired = replaced is not None and not (paired_run and has_run(paper_dir, paired_run))
        if not has_run(paper_dir, sub) or unpaired:
            continue
        results, _ = load_run(os.path.join(paper_dir, sub))
        if replaced is not None:  # a one-method variant, paired with the committed run
            committed, _ = load_run(os.path.join(paper_dir, paired_run))
            (variant,) = results.values()
            results = {**committed, replaced: variant}
        out.append((text, verdicts.judge_env(env, results, claims)))
    return out


def far_context_verdicts(paper_dir: str) -> list[tuple[str, list[dict]]]:
    """zsgjax's far-context aggregate (not the paper's protocol) on every committed main run."""
    out = []
    for env, sub in MAIN_RUNS.items():
        if not has_run(paper_dir, sub):
            continue
        results, _ = load_run(os.path.join(paper_dir, sub))
        space = make(env).context_space
        for c in common.check_claims(importlib.import_module(env).EXPERIMENT, results, space.low, space.high):
            out.append(("far contexts (zsgjax's aggregate)",
                        [{**c, "id": f"{env}/far", "rows": [c["where"]], "half_width": c["diff_ci"]}]))
    return out


def markdown(main: Sequence[tuple[str, list[dict]]], ablations: Sequence[tuple[str, list[dict]]]) -> str:
    lines = ["| claim | rows | seeds | difference (95% t) | run | verdict |", "|---|---|---|---|---|---|"]
    for label, vs in main:
        for v in vs:
            lines.append(_row(v, label))
    lines += ["", "Not the paper's protocol (ablations and aggregates; no verdict on a claim):", "",
              "| claim | rows | difference (95% t) | what differs | result |", "|---|---|---|---|---|"]
    for text, vs in ablations:
        for v in vs:
            rows = verdicts.rows_text(v["rows"]).replace("|", "\\|")
            lines.append(f"| {v['id'].split('/')[0]}: {v['claim']} | {rows} | "
                         f"{v['a']} − {v['b']}: {v['diff']:+.3g} ± {v['half_width']:.3g} | {text} | {_neutral(v)} |")
    return "\n".join(lines).replace("tau", "τ") + "\n"


def _neutral(v: Mapping[str, Any]) -> str:
    """The interval's reading without the word of a verdict: ``a > b``, ``a < b`` or no significant difference."""
    low, high = v["diff"] - v["half_width"], v["diff"] + v["half_width"]
    return f"{v['a']} > {v['b']}" if low > 0 else f"{v['a']} < {v['b']}" if high < 0 else "no significant difference"


def _row(v: Mapping[str, Any], label: str) -> str:
    margin = f" (margin ±{v['margin']:.3g})" if "margin" in v else ""
    return (f"| {v['id'].split('/')[0]}: {v['claim']} | {verdicts.rows_text(v['rows'])} | {v['seeds']} | "
            f"{v['a']} − {v['b']}: {v['diff']:+.3g} ± {v['half_width']:.3g}{margin} | {label} | **{v['verdict']}** |")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--paper-dir", default=PAPER, help="folder of the committed runs (default: docs/experiments/paper)")
    p.add_argument("--claims", default=common.CLAIMS, help="the pre-registered claims file")
    p.add_argument("--out", default=None, help="also write the tables to this markdown file")
    args = p.parse_args(argv)
    claims = verdicts.load_claims(args.claims)
    md = markdown(main_verdicts(args.paper_dir, claims),
                  ablation_verdicts(args.paper_dir, claims) + far_context_verdicts(args.paper_dir))
    print(md)
    if args.out:
        atomic_write(args.out, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
