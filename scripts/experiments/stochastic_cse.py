"""CSE with stochastic transitions (the CSE paper's open question 1, "gradients of transport maps").

On a stochastic environment whose noise scale depends on the context
(:mod:`zsgjax.envs.noisy`), four methods trained at the default context and evaluated
zero-shot over the context grid, all seeds in one jit(vmap) program each, paired by
seed (same training and evaluation keys):

* ``vanilla``     -- no enhancement;
* ``cse_ignore``  -- first-order CSE whose derivatives hold the noise's scale sigma(c)
  constant (``cse_noise_scale_gradient="ignore"``): the spread of the enhanced next state
  does not move with the context;
* ``cse``         -- first-order CSE differentiating with the noise fixed (the
  reparameterised, transport-map derivative; the default);
* ``ldr``         -- local domain randomisation around the default context.

The verdicts come only from :data:`ROWS`, written before the first run: each row
compares two methods over a named set of grid points with a paired per-seed Student-t
interval (95%); a difference is claimed only where the interval excludes 0.

The script also measures what the tests assert (tests/test_stochastic.py), on
``linear_gaussian`` where the next-state law is known in closed form: the error of the
enhanced law's mean and std at ``c + dc`` for several ``dc`` and both noise gradients.

Writes ``stochastic_cse.{json,md,png}`` under ``--out``.

    python scripts/experiments/stochastic_cse.py                                 # pendulum_goal_noisy, cpu scale
    python scripts/experiments/stochastic_cse.py --env simple_direction_noisy
    python scripts/experiments/stochastic_cse.py --scale paper                   # GPU: the paper's lengths
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import common
import pendulum_goal
import simple_direction
from zsgjax.envs import make
from zsgjax.methods import enhancement
from zsgjax.methods.cse import CSE
from zsgjax.reporting import machine, plots, tables
from zsgjax.reporting.files import atomic_write
from zsgjax.types import Transition

VARIANTS = {
    "vanilla": dict(method="vanilla"),
    "cse_ignore": dict(method="cse", cse_noise_scale_gradient="ignore"),
    "cse": dict(method="cse"),
    "ldr": dict(method="ldr"),
}

# The deterministic task's scales with 10 seeds (16 evaluation episodes per context: the
# noise makes single episodes noisier).
EXPERIMENTS = {
    "pendulum_goal_noisy": dataclasses.replace(
        pendulum_goal.EXPERIMENT, env="pendulum_goal_noisy", methods=tuple(VARIANTS), method_config=VARIANTS,
        cpu=dataclasses.replace(pendulum_goal.EXPERIMENT.cpu, seeds=10, eval_episodes=16)),
    "simple_direction_noisy": dataclasses.replace(
        simple_direction.EXPERIMENT, env="simple_direction_noisy", methods=tuple(VARIANTS), method_config=VARIANTS,
        cpu=dataclasses.replace(simple_direction.EXPERIMENT.cpu, seeds=10)),
}

# Pre-registered rows (id, a, b, where, hypothesis), written before any run. "where" names a
# set of grid points (ROW_SETS); the hypothesis is "a > b" or "two-sided".
ROWS = {
    "pendulum_goal_noisy": [
        ("cse>vanilla", "cse", "vanilla", "far", "a > b"),
        ("cse_ignore>vanilla", "cse_ignore", "vanilla", "far", "a > b"),
        ("cse-vs-cse_ignore/noise-dims", "cse", "cse_ignore", "far sweeps of g, m, l", "two-sided"),
        ("cse-vs-cse_ignore/far", "cse", "cse_ignore", "far", "two-sided"),
        ("cse-vs-ldr/far", "cse", "ldr", "far", "two-sided"),
    ],
    "simple_direction_noisy": [
        ("cse>vanilla", "cse", "vanilla", "named off-default", "a > b"),
        ("cse_ignore>vanilla", "cse_ignore", "vanilla", "named off-default", "a > b"),
        ("cse-vs-cse_ignore/far", "cse", "cse_ignore", "far", "two-sided"),
        ("cse-vs-ldr/far", "cse", "ldr", "far", "two-sided"),
    ],
}
NOISE_DIMS = {"pendulum_goal_noisy": ("g", "m", "l"), "simple_direction_noisy": ("c_x", "c_y")}
LAW_DCS = (0.2, 0.1, 0.05, 0.025)


def row_sets(env_name: str, exp: common.Experiment, grid, space) -> dict[str, np.ndarray]:
    """The named sets of grid rows the pre-registered rows refer to."""
    far = common.far_rows(grid, space.low, space.high, exp.far_fraction)
    span = np.subtract(space.high, space.low)
    noise_far = [r for d in NOISE_DIMS[env_name] for r in grid.sweep_rows(d)
                 if abs(grid.contexts[r, grid.names.index(d)] - grid.default[grid.names.index(d)])
                 >= exp.far_fraction * span[grid.names.index(d)] - 1e-6]
    named = [r for r in grid.named_rows if not np.allclose(grid.contexts[r], grid.default)]
    return {"far": far, "far sweeps of " + ", ".join(NOISE_DIMS[env_name]): np.asarray(sorted(noise_far)),
            "named off-default": np.asarray(named)}


def judge(results, rows, sets) -> list[dict]:
    """Each pre-registered row: the paired comparison and whether the hypothesis held."""
    out = []
    for row_id, a, b, where, hypothesis in rows:
        c = common.compare(results, a, b, sets[where])
        if hypothesis == "a > b":
            outcome = ("supported" if c["verdict"] == f"{a} > {b}" else "contradicted" if c["verdict"] == f"{a} < {b}"
                       else "not significant")
        else:
            outcome = c["verdict"]
        stated = f"{a} > {b}" if hypothesis == "a > b" else hypothesis
        out.append({"id": row_id, "where": where, "hypothesis": stated, "outcome": outcome, **c})
    return out


def law_errors(dcs=LAW_DCS, context: float = 0.3, action: float = 0.4) -> dict:
    """On linear_gaussian (float64), first-order CSE of one ``(s, a, c)`` along ``+dc``: the enhanced
    next state is affine in xi, so two noise draws (two keys, the same ``s``) give its mean and
    std; their errors against the closed-form law at ``c + dc`` and the 1-D Wasserstein-2 distance."""
    out = {}
    with jax.enable_x64(True):
        env = make("linear_gaussian")
        c, a = jnp.array([context]), jnp.array([action])
        start = env.init_env_state(jax.random.PRNGKey(0), c)
        mean, std = env.next_state_law(start, a, c)
        for noise_scale_gradient in ("reparameterised", "ignore"):
            method = CSE(noise_scale_gradient=noise_scale_gradient, storage="jacobian")
            rows = []
            for dc in dcs:
                points = []
                for k in (1, 2):
                    state = start._replace(key=jax.random.PRNGKey(k))
                    (_, obs, reward, _), grads = method.collect(env, state, a, c, jax.random.PRNGKey(0))
                    stored = Transition(obs=jnp.concatenate([start.physics, c]), action=a, reward=reward,
                                        next_obs=jnp.concatenate([obs, c]), done=jnp.zeros(()), context=c)
                    enhanced, _ = enhancement.enhance_with_jacobian(stored, grads, jnp.array([dc]))
                    points.append((float((obs[0] - mean[0]) / std), float(enhanced.next_obs[0])))
                (x1, y1), (x2, y2) = points
                slope = (y1 - y2) / (x1 - x2)
                true_mean, true_std = env.next_state_law(start, a, c + dc)
                err_mean, err_std = y1 - slope * x1 - float(true_mean[0]), abs(slope) - float(true_std)
                rows.append({"dc": dc, "mean_error": err_mean, "std_error": err_std,
                             "w2": float(np.hypot(err_mean, err_std))})
            w2 = np.array([r["w2"] for r in rows])
            out[noise_scale_gradient] = {"rows": rows, "w2_slope": float(np.polyfit(np.log(dcs), np.log(w2), 1)[0])}
    return out


def _rows_markdown(judged) -> str:
    lines = ["| id | where | hypothesis | a | b | a - b (95% CI) | verdict | outcome |", "|---|---|---|---|---|---|---|---|"]
    for r in judged:
        lines.append(f"| {r['id']} | {r['where']} ({len(r['rows'])} points) | {r['hypothesis']} | {r['a']}: "
                     f"{r['mean_a']:.2f} ± {r['ci_a']:.2f} | {r['b']}: {r['mean_b']:.2f} ± {r['ci_b']:.2f} | "
                     f"{r['diff']:+.2f} ± {r['diff_ci']:.2f} | {r['verdict']} | {r['outcome']} |")
    return "\n".join(lines)


def _law_markdown(law) -> str:
    lines = ["| noise gradient | dc | mean error | std error | W2 |", "|---|---|---|---|---|"]
    for ng, v in law.items():
        for r in v["rows"]:
            lines.append(f"| {ng} | {r['dc']:g} | {r['mean_error']:+.2e} | {r['std_error']:+.2e} | {r['w2']:.2e} |")
    slopes = ", ".join(f"{ng}: {v['w2_slope']:.2f}" for ng, v in law.items())
    return "\n".join(lines) + f"\n\nSlope of log W2 against log dc: {slopes}."


def run(env: str = "pendulum_goal_noisy", scale: str = "cpu", seeds: int | None = None, steps: int | None = None,
        out: str | None = None, work: str | None = None, resume: bool = False, command: str = "", log=print) -> dict:
    exp = EXPERIMENTS[env]
    sc = exp.scale(scale)
    num_seeds, total = seeds or sc.seeds, steps or sc.steps
    out = out or os.path.join(common.REPO, "runs", "experiments", f"stochastic_cse-{env}-{scale}")
    work = work or os.path.join(common.REPO, "runs", "experiments",
                                f"stochastic_cse-{env}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    launched_on = machine.machine_description()
    configs = common.configs_for(exp, sc, total, seed=0)
    log(f"stochastic CSE on {env} ({scale} scale): {num_seeds} seeds, {total:,} steps per seed; out {out}")
    t0 = time.perf_counter()
    law = law_errors()
    results, timings = common.run_variants(configs, num_seeds=num_seeds, work=work, resume=resume,
                                           eval_episodes=sc.eval_episodes, sweep_points=sc.sweep_points,
                                           eval_actions=sc.eval_actions, chunks=sc.chunks, log=log)
    space = make(env).context_space
    grid = results["cse"].grid
    judged = judge(results, ROWS[env], row_sets(env, exp, grid, space))
    title = f"Stochastic CSE on {env}, {scale} scale ({total:,} steps x {num_seeds} seeds)"
    info = {"env": env, "scale": scale, "seeds": num_seeds, "steps_per_seed": total, "eval_episodes": sc.eval_episodes,
            "sweep_points": sc.sweep_points, "eval_actions": sc.eval_actions, "far_fraction": exp.far_fraction,
            "pre_registered_rows": [dict(zip(("id", "a", "b", "where", "hypothesis"), r)) for r in ROWS[env]],
            "wall_s": round(time.perf_counter() - t0, 1), "machine": launched_on, "command": command,
            "configs": {k: dataclasses.asdict(c) for k, c in configs.items()}}
    md = "\n\n".join([
        f"# {title}",
        f"Command: `{command}`. Commit: {launched_on.get('zsgjax_commit', '?') if isinstance(launched_on, dict) else '?'}.",
        f"Cells: mean ± 95% Student-t interval over {num_seeds} seeds of each seed's mean zero-shot return "
        f"({sc.eval_episodes} episodes per context, {sc.eval_actions} actions); differences paired by seed. "
        f"'far': the grid points with a dimension at least {exp.far_fraction:g} of its range from the training context.",
        "## Pre-registered rows\n\n" + _rows_markdown(judged),
        "## The enhanced next-state law on linear_gaussian (c = 0.3, closed form)\n\n" + _law_markdown(law),
        "## Summary (named contexts and sweep means)\n\n```\n" + tables.format_table(results, detail=False) + "\n```",
        "## Wall time\n\n" + common._timings_markdown(timings),
        "![generalization](stochastic_cse.png)",
    ]) + "\n"
    os.makedirs(out, exist_ok=True)
    plots.plot_sweeps(results, os.path.join(out, "stochastic_cse.png"), title=title)
    tables.write_json(results, os.path.join(out, "stochastic_cse.json"),
                      extra={**info, "timings": timings, "verdicts": judged, "law": law})
    atomic_write(os.path.join(out, "stochastic_cse.md"), md)
    log(md)
    return {"results": results, "verdicts": judged, "law": law, "out": out}


def main(argv=None) -> int:
    p = common.options.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", choices=tuple(EXPERIMENTS), default="pendulum_goal_noisy")
    p.add_argument("--scale", choices=common.SCALES, default="cpu")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the scale's, 10)")
    p.add_argument("--steps", type=int, default=None, help="training steps per seed (default: the scale's)")
    p.add_argument("--out", default=None, help="output folder (default: runs/experiments/stochastic_cse-<env>-<scale>)")
    p.add_argument("--work", default=None, help="checkpoint folder (default: under runs/experiments)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoints in --work")
    p.add_argument("--no-compile-cache", dest="compile_cache", action="store_false",
                   help="do not use JAX's persistent compilation cache (default: on)")
    args = p.parse_args(argv)
    if args.resume and not args.work:
        p.error("--resume needs --work naming the checkpoint folder")
    common.options.configure_compile_cache(args.compile_cache)
    command = "python scripts/experiments/stochastic_cse.py " + " ".join(sys.argv[1:] if argv is None else argv)
    run(args.env, args.scale, args.seeds, args.steps, args.out, args.work, args.resume, command.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
