"""CSE variants on one environment: ``first_order`` against ``exact`` enhancement and
``jacobian`` against ``jvp`` storage (vanilla as the reference without CSE).

Every variant trains with the environment script's settings (``--scale``), all seeds in
one jit(vmap) program, and is evaluated zero-shot on the same grid with the same
episode starts. Reported per variant: the mean zero-shot return (± 95% Student-t interval over
seeds) over the whole grid and over the contexts far from the training context, the
difference to ``first_order/jacobian`` (the default), and wall times (training
including compilation, compilation, evaluation). Writes ``cse_variants.{md,json,png}``.

    python scripts/experiments/compare_cse_variants.py                      # simple_direction, cpu scale
    python scripts/experiments/compare_cse_variants.py --env pendulum_goal
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import time

import numpy as np

import common
from zsgjax.reporting import plots, tables
from zsgjax.reporting.files import atomic_write
from zsgjax.train import make_train

VARIANTS = {
    "vanilla": dict(method="vanilla"),
    "first_order/jacobian": dict(method="cse", cse_mode="first_order", cse_storage="jacobian"),
    "first_order/jvp": dict(method="cse", cse_mode="first_order", cse_storage="jvp"),
    "exact": dict(method="cse", cse_mode="exact"),  # recomputes the transition: storage does not apply
}
REFERENCE = "first_order/jacobian"


def run(env: str = "simple_direction", scale: str = "cpu", seeds: int | None = None, steps: int | None = None,
        out: str | None = None, work: str | None = None, command: str = "", log=print) -> dict:
    exp = dataclasses.replace(importlib.import_module(env).EXPERIMENT, methods=tuple(VARIANTS),
                              method_config=VARIANTS)
    sc = exp.scale(scale)
    num_seeds, total = seeds or sc.seeds, steps or sc.steps
    out = out or os.path.join(common.REPO, "runs", "experiments", f"cse_variants-{exp.env}-{scale}")
    work = work or os.path.join(common.REPO, "runs", "experiments",
                                f"cse_variants-{env}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    configs = common.configs_for(exp, sc, total, seed=0)
    log(f"CSE variants on {env} ({scale} scale): {num_seeds} seeds, {total:,} steps per seed; out {out}")
    results, timings = common.run_variants(configs, num_seeds=num_seeds, work=work, eval_episodes=sc.eval_episodes,
                                           sweep_points=sc.sweep_points, eval_actions=sc.eval_actions, chunks=sc.chunks,
                                           log=log)
    space = make_train(configs[REFERENCE]).env.context_space
    grid = results[REFERENCE].grid
    far = common.far_rows(grid, space.low, space.high, exp.far_fraction)
    everywhere = np.arange(len(grid))
    rows = []
    for label in VARIANTS:
        m_all, c_all = results[label].aggregate(everywhere)
        m_far, c_far = results[label].aggregate(far)
        vs = common.compare(results, label, REFERENCE, far) if label != REFERENCE else None
        rows.append({"variant": label, **{k: v for k, v in VARIANTS[label].items()},
                     "mean_all": m_all, "ci_all": c_all, "mean_far": m_far, "ci_far": c_far,
                     "diff_far_vs_reference": None if vs is None else vs["diff"],
                     "diff_far_ci": None if vs is None else vs["diff_ci"],
                     "verdict_vs_reference": "reference" if vs is None else vs["verdict"], **timings[label]})
    ref_time = timings[REFERENCE]["program_s"]
    lines = ["| variant | return, whole grid | return, far contexts | far: difference to first_order/jacobian "
             "| training program s | / reference | compile s | train wall s (all) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        diff = "reference" if r["diff_far_vs_reference"] is None else (
            f"{r['diff_far_vs_reference']:+.2f} ± {r['diff_far_ci']:.2f} ({r['verdict_vs_reference']})")
        lines.append(f"| {r['variant']} | {r['mean_all']:.2f} ± {r['ci_all']:.2f} | {r['mean_far']:.2f} ± "
                     f"{r['ci_far']:.2f} | {diff} | {r['program_s']:.1f} | {r['program_s'] / ref_time:.2f} | "
                     f"{r['compile_s']:.1f} | {r['train_s']:.1f} |")
    title = f"CSE variants on {env}, {scale} scale ({total:,} steps x {num_seeds} seeds)"
    info = {"env": env, "scale": scale, "seeds": num_seeds, "steps_per_seed": total, "eval_episodes": sc.eval_episodes,
            "far_fraction": exp.far_fraction, "far_contexts": [grid.labels[i] for i in far], "command": command,
            "configs": {k: dataclasses.asdict(make_train(c).config) for k, c in configs.items()}}
    md = "\n\n".join([
        f"# {title}",
        f"Command: `{command}`",
        f"Mean ± 95% Student-t interval over {num_seeds} seeds of each seed's mean zero-shot return; far contexts: the "
        f"{len(far)} grid points with a dimension at least {exp.far_fraction:g} of its range from the training "
        "context. Times on a shared 2-core CPU (noisy): 'training program s' is the time spent in the compiled "
        "training chunks (all seeds together, compilation excluded), 'train wall s' adds compilation, "
        "initialisation and checkpointing.",
        "\n".join(lines),
        "## Summary table\n\n```\n" + tables.format_table(results, detail=False) + "\n```",
        "![CSE variants](cse_variants.png)",
    ]) + "\n"
    os.makedirs(out, exist_ok=True)
    plots.plot_sweeps(results, os.path.join(out, "cse_variants.png"), title=title)
    tables.write_json(results, os.path.join(out, "cse_variants.json"), extra={**info, "variants": rows})
    atomic_write(os.path.join(out, "cse_variants.md"), md)
    log(md)
    return {"results": results, "rows": rows}


def main(argv=None) -> int:
    p = common.options.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", choices=("simple_direction", "pendulum_goal"), default="simple_direction")
    p.add_argument("--scale", choices=common.SCALES, default="cpu")
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--out", default=None, help="output folder (default: docs/experiments)")
    p.add_argument("--work", default=None, help="checkpoint folder (default: under runs/experiments)")
    p.add_argument("--no-compile-cache", dest="compile_cache", action="store_false",
                   help="do not use JAX's persistent compilation cache (default: on)")
    args = p.parse_args(argv)
    common.options.configure_compile_cache(args.compile_cache)
    command = "python scripts/experiments/compare_cse_variants.py " + " ".join(sys.argv[1:] if argv is None else argv)
    run(args.env, args.scale, args.seeds, args.steps, args.out, args.work, command.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
