"""One method with changed settings against committed results of the same protocol.

Trains ``--method`` with the environment script's settings at ``--scale`` plus the
``--set name=value`` overrides (TrainConfig fields), evaluates it zero-shot on the same
grid with the same episode starts, and compares it, seed-paired, with every method of
a committed ``results.json`` of that environment and scale (``--against``). Seed ``k``
of every run starts training and evaluation from the same keys, so the seeds pair.

    python scripts/experiments/ablation.py --env pendulum_goal --scale paper --method cse \\
        --set cse_epsilon=0.2 --against docs/experiments/paper/pendulum_goal \\
        --out docs/experiments/paper/pendulum_goal_cse_epsilon_0.2 --work runs/exp/pg_eps02

Writes ``ablation.{md,json}`` and the variant's ``results.json`` (readable with
``zsgjax.reporting.tables.load_json``) to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
import time

import numpy as np

import common
from zsgjax.reporting import machine, tables
from zsgjax.reporting.files import atomic_write
from zsgjax.train import TrainConfig, make_train


def parse_setting(text: str) -> tuple[str, object]:
    """``"name=value"`` -> ``(name, value)``, the value parsed as JSON when it can be."""
    name, sep, value = text.partition("=")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    if not sep or name not in fields:
        raise ValueError(f"--set: expected name=value with name a TrainConfig field ({', '.join(sorted(fields))}); "
                         f"got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def run(env: str, scale: str, method: str, settings: dict, against: str, out: str, work: str,
        resume: bool = False, command: str = "", log=print) -> dict:
    exp = importlib.import_module(env).EXPERIMENT
    sc = exp.scale(scale)
    committed_path = os.path.join(against, "results.json")
    committed = tables.load_json(committed_path)
    with open(committed_path) as f:
        committed_info = json.load(f).get("info", {})
    seeds = committed_info.get("seeds", sc.seeds)
    steps = committed_info.get("steps_per_seed", sc.steps)
    label = method + "".join(f"+{k}={v}" for k, v in settings.items())
    base = common.configs_for(dataclasses.replace(exp, methods=(method,)), sc, steps, seed=0)[method]
    config = dataclasses.replace(base, **settings)
    log(f"{env} ({scale} scale) ablation {label!r}: {seeds} seeds x {steps:,} steps; against {against}")
    t0, launched_on = time.perf_counter(), machine.machine_description()  # the commit at launch
    results, timings = common.run_variants({label: config}, num_seeds=seeds, work=work, resume=resume,
                                           # the committed run's evaluation (runs before eval_actions: deterministic)
                                           eval_episodes=committed_info.get("eval_episodes", sc.eval_episodes),
                                           sweep_points=committed_info.get("sweep_points", sc.sweep_points),
                                           eval_actions=committed_info.get("eval_actions", "mean"),
                                           chunks=sc.chunks, log=log)
    variant = results[label]
    reference_grid = next(iter(committed.values())).grid
    if variant.grid.labels != reference_grid.labels:
        raise ValueError(f"--against: {committed_path} was evaluated on another grid; cannot pair")
    space = make_train(config).env.context_space
    far = common.far_rows(variant.grid, space.low, space.high, exp.far_fraction)
    row_sets = {"far contexts": far}
    if exp.focus is not None:
        dim, distance, description = exp.focus
        row_sets[description] = common.focus_rows(variant.grid, dim, distance)
    both = {label: variant, **committed}
    comparisons = [{**common.compare(both, label, other, rows), "row_set": name}
                   for name, rows in row_sets.items() for other in committed]
    lines = [f"# {env}: ablation `{label}` ({scale} scale, {steps:,} steps x {seeds} seeds)", "",
             f"Command: `{command}`", "",
             f"Compared seed-paired with `{committed_path}` (same protocol, seeds and evaluation starts); "
             "mean ± 95% Student-t interval over seeds of each seed's mean return.", "",
             "| rows | variant | other | variant − other | verdict |", "|---|---|---|---|---|"]
    for c in comparisons:
        lines.append(f"| {c['row_set']} | {c['mean_a']:.1f} ± {c['ci_a']:.1f} | {c['b']} {c['mean_b']:.1f} ± "
                     f"{c['ci_b']:.1f} | {c['diff']:+.1f} ± {c['diff_ci']:.1f} | {c['verdict']} |")
    md = "\n".join(lines) + "\n"
    info = {"env": env, "scale": scale, "seeds": seeds, "steps_per_seed": steps, "method": method,
            "settings": settings, "against": committed_path, "command": command,
            "wall_s": round(time.perf_counter() - t0, 1), "timings": timings[label],
            "machine": launched_on, "config": dataclasses.asdict(make_train(config).config)}
    os.makedirs(out, exist_ok=True)
    tables.write_json({label: variant}, os.path.join(out, "results.json"))
    atomic_write(os.path.join(out, "ablation.json"), json.dumps(
        {"info": info, "comparisons": [{k: v for k, v in c.items()} for c in comparisons]}, indent=1, default=float))
    atomic_write(os.path.join(out, "ablation.md"), md)
    log(md)
    return {"result": variant, "comparisons": comparisons}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", required=True, help="an environment script under scripts/experiments (e.g. pendulum_goal)")
    p.add_argument("--scale", choices=common.SCALES, default="cpu")
    p.add_argument("--method", required=True, help="the method to train (e.g. cse)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a TrainConfig override; repeat")
    p.add_argument("--against", required=True, help="folder of a committed results.json of the same env and scale")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--work", required=True, help="checkpoint folder")
    p.add_argument("--resume", action="store_true", help="continue the checkpoints in --work")
    args = p.parse_args(argv)
    try:
        settings = dict(parse_setting(s) for s in args.set)
        run(args.env, args.scale, args.method, settings, args.against, args.out, args.work, args.resume,
            command="python " + " ".join([os.path.relpath(sys.argv[0], common.REPO), *sys.argv[1:]]))
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
