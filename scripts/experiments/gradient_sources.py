"""CSE without autodiff and with noisy gradients (the CSE paper's open question 3).

How does zero-shot return depend on the quality of the context derivatives CSE
extrapolates with? Variants, all with the environment script's settings (``--scale``),
all seeds in one jit(vmap) program, evaluated zero-shot on the same grid with the same
episode starts (seeds paired):

* ``vanilla`` -- no CSE (the floor);
* ``autodiff`` -- CSE with exact derivatives (``jax.jacfwd`` / ``jax.jvp``): the reference;
* ``noise_<s>`` -- exact derivatives plus relative noise ``s`` (``cse_gradient_noise``:
  ``g + s ||g|| xi / sqrt(size)``, so the RMS relative error is ``s``), s = 1%, 10%, 30%, 100%;
* ``fd_<h>`` -- central finite differences of the step (``cse_gradients="fd"``) with the
  offset ``h`` a fraction of each context dimension's range (``cse_fd_step``).

Besides returns, the relative error of each FD step's derivatives against autodiff is
measured on random transitions (float32, as in training), so the FD rows can be read
against the noise rows.

Pre-registered (:data:`PREREGISTERED`, committed before the runs): rows and test below;
a difference is claimed only where the paired 95% Student-t interval excludes 0.

    python scripts/experiments/gradient_sources.py                       # pendulum_goal, cpu scale, 10 seeds
    python scripts/experiments/gradient_sources.py --env playground:CartpoleBalance \\
        --physical mass_scale:pole_1 actuator_gain --env-option horizon=200 \\
        --variants vanilla,autodiff,noise_0.1,noise_0.3,noise_1,fd_0.01,fd_0.1   # MJX, cpu scale
    python scripts/experiments/gradient_sources.py --scale paper         # GPU: the paper's lengths

``--env`` is an experiment script's environment (its ``EXPERIMENT``: pendulum_goal,
simple_direction, cheetah_velocity) or any ``playground:<Name>`` of the DM Control Suite
(:func:`common.playground_experiment`: its physical features are the context, ``--physical``).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import common
from zsgjax import context_gradients, envs
from zsgjax.adapters.playground_envs import DM_CONTROL_ENVS, PREFIX
from zsgjax.reporting import machine, tables
from zsgjax.reporting.files import atomic_path, atomic_write, write_json
from zsgjax.train import make_train

NOISE_LEVELS = (0.01, 0.1, 0.3, 1.0)
FD_STEPS = (0.001, 0.01, 0.1, 0.5)
REFERENCE = "autodiff"
SCRIPT_ENVS = ("pendulum_goal", "simple_direction", "cheetah_velocity")
ENVS = (*SCRIPT_ENVS, *(PREFIX + name for name in DM_CONTROL_ENVS))
MJX_VARIANTS = ("vanilla", REFERENCE, "noise_0.1", "noise_0.3", "noise_1", "fd_0.01", "fd_0.1")
"""The reduced variant set of the MJX run (pre-registered with :data:`PREREGISTERED`): the 1%
noise and the 0.001 / 0.5 FD steps are left out to fit the CPU budget."""


def variants() -> dict[str, dict]:
    """``{label: TrainConfig overrides}`` of every variant (``cse_storage`` stays the env's ``auto``)."""
    out = {"vanilla": dict(method="vanilla"), REFERENCE: dict(method="cse")}
    out.update({f"noise_{s:g}": dict(method="cse", cse_gradient_noise=s) for s in NOISE_LEVELS})
    out.update({f"fd_{h:g}": dict(method="cse", cse_gradients="fd", cse_fd_step=h) for h in FD_STEPS})
    return out


PREREGISTERED = {
    "question": "Zero-shot return of SAC+CSE as the context derivatives degrade: injected relative noise "
                "(0, 1, 10, 30, 100%) and central finite differences at several steps, against exact autodiff.",
    "rows": {
        "whole_grid": "mean zero-shot return over every grid context (each dimension swept, plus the named contexts)",
        "far": "mean over grid contexts with some dimension >= far_fraction (0.25) of its range from the "
               "training context",
    },
    "test": "per row and variant: paired per-seed difference (variant - autodiff) and (variant - vanilla), "
            "95% Student-t interval over seeds; 'worse'/'better' only where the interval excludes 0, else "
            "'no significant difference'",
    "expectations": [
        "noise <= 10% and fd steps <= 0.1: no significant difference to autodiff (far row)",
        "noise 100%: below autodiff on the far row (the extrapolation is as large as its error)",
    ],
    "seeds": 10,
    "mjx_run": {
        "env": "playground:CartpoleBalance", "physical": ["mass_scale:pole_1", "actuator_gain"],
        "env_options": {"horizon": 200}, "variants": list(MJX_VARIANTS),
        "why": "the cheapest MJX task with a physical context that learns at CPU scale (no contacts; a vanilla "
               "SAC run of 19,840 steps balances the pole at the training context); reduced variant set "
               "to fit ~40 min on a loaded 2-core CPU",
    },
}


def derivative_errors(env, steps=FD_STEPS, n: int = 512, seed: int = 0) -> dict[str, dict[str, float]]:
    """Relative RMS error ``sqrt(mean ||J_fd - J||^2 / mean ||J||^2)`` of FD derivatives
    against autodiff (float32) on ``n`` transitions from random states (reset at
    uniform contexts, a few random steps) and uniform random actions, per FD step."""
    space = env.context_space
    k_c, k_s, k_a = jax.random.split(jax.random.PRNGKey(seed), 3)
    contexts = jax.random.uniform(k_c, (n, space.dim), minval=jnp.asarray(space.low), maxval=jnp.asarray(space.high))
    states = jax.vmap(env.init_env_state)(jax.random.split(k_s, n), contexts)
    shape = (n,) if env.discrete else (n, env.action_size)
    actions = (jax.random.randint(k_a, shape, 0, env.action_size) if env.discrete
               else jax.random.uniform(k_a, shape, minval=-1.0, maxval=1.0))
    exact = jax.jit(jax.vmap(lambda s, a, c: context_gradients.context_jacobian(env, s, a, c)))(states, actions, contexts)
    out = {}
    for h in steps:
        fd = jax.jit(jax.vmap(lambda s, a, c, h=h: context_gradients.fd_jacobian(env, s, a, c, h)))(
            states, actions, contexts)
        out[f"fd_{h:g}"] = {
            name: float(np.sqrt(np.mean(np.square(np.asarray(getattr(fd, name)) - np.asarray(getattr(exact, name))))
                                / np.mean(np.square(np.asarray(getattr(exact, name))))))
            for name in ("d_obs", "d_reward")}
    return out


def plot(rows: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    ref = next(r for r in rows if r["variant"] == REFERENCE)
    van = next((r for r in rows if r["variant"] == "vanilla"), None)
    for ax, kind, xlabel in ((axes[0], "noise", "injected relative noise s (0 drawn at 1e-3)"),
                             (axes[1], "fd", "finite-difference step (fraction of each range)")):
        pts = [r for r in rows if r["variant"].startswith(kind + "_")]
        if kind == "noise":
            pts = [{**ref, "x": 1e-3}] + [{**r, "x": r["cse_gradient_noise"]} for r in pts]
        else:
            pts = [{**r, "x": r["cse_fd_step"]} for r in pts]
        for key, label, fmt in (("all", "whole grid", "o-"), ("far", "far contexts", "s--")):
            if pts:
                ax.errorbar([p["x"] for p in pts], [p[f"mean_{key}"] for p in pts],
                            yerr=[p[f"ci_{key}"] for p in pts], fmt=fmt, capsize=3, label=f"CSE, {label}")
            ax.axhline(ref[f"mean_{key}"], color="C2" if key == "all" else "C3", lw=0.8,
                       label=f"autodiff, {label}")
            if van is not None:
                ax.axhline(van[f"mean_{key}"], color="grey", ls=":" if key == "all" else "-.", lw=0.8,
                           label=f"vanilla, {label}")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("zero-shot return (mean ± 95% CI over seeds)")
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _fmt(r: dict, key: str) -> str:
    return f"{r[f'mean_{key}']:.2f} ± {r[f'ci_{key}']:.2f}"


def _vs(c: dict | None) -> str:
    return "—" if c is None else f"{c['diff']:+.2f} ± {c['diff_ci']:.2f} ({c['verdict']})"


def experiment(env: str) -> common.Experiment:
    """``env``'s protocol: its experiment script's ``EXPERIMENT``, or :func:`common.playground_experiment`."""
    if env.startswith(PREFIX):
        return common.playground_experiment(env)
    if env not in SCRIPT_ENVS:
        raise ValueError(f"--env must be one of {', '.join(ENVS)}; got {env!r}")
    return importlib.import_module(env).EXPERIMENT


def run(env: str, scale: str, seeds: int | None, steps: int | None, labels: list[str], out: str, work: str | None,
        env_kwargs: dict, command: str, log=print, resume: bool = False) -> dict:
    all_variants = variants()
    unknown = [v for v in labels if v not in all_variants]
    if unknown:
        raise ValueError(f"--variants: unknown {unknown}; known: {', '.join(all_variants)}")
    if REFERENCE not in labels:
        raise ValueError(f"--variants must include the reference '{REFERENCE}'")
    chosen = {k: all_variants[k] for k in labels}
    exp = dataclasses.replace(experiment(env), methods=tuple(chosen), method_config=chosen)
    sc = exp.scale(scale)
    num_seeds, total = seeds or PREREGISTERED["seeds"], steps or sc.steps
    work = work or os.path.join(common.REPO, "runs", "experiments",
                                f"gradient_sources-{env}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    configs = common.configs_for(exp, sc, total, seed=0, env_kwargs=env_kwargs)
    launched_on = machine.machine_description()
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, "preregistration.json"), {
        **PREREGISTERED, "env": env, "env_kwargs": env_kwargs, "scale": scale, "variants": chosen,
        "seeds_run": num_seeds, "steps_per_seed": total, "machine": launched_on, "command": command})
    log(f"gradient sources on {env} ({scale} scale): {', '.join(chosen)}; {num_seeds} seeds, {total:,} steps; out {out}")
    t0 = time.perf_counter()
    results, timings = common.run_variants(configs, num_seeds=num_seeds, work=work, resume=resume,
                                           eval_episodes=sc.eval_episodes,
                                           sweep_points=sc.sweep_points, eval_actions=sc.eval_actions,
                                           chunks=sc.chunks, log=log)
    the_env = make_train(configs[REFERENCE]).env
    space = the_env.context_space
    grid = results[REFERENCE].grid
    row_sets = {"all": np.arange(len(grid)), "far": common.far_rows(grid, space.low, space.high, exp.far_fraction)}
    rows = []
    for label, overrides in chosen.items():
        r = {"variant": label, **overrides, **timings[label]}
        for key, idx in row_sets.items():
            r[f"mean_{key}"], r[f"ci_{key}"] = results[label].aggregate(idx)
            r[f"vs_{REFERENCE}_{key}"] = None if label == REFERENCE else common.compare(results, label, REFERENCE, idx)
            r[f"vs_vanilla_{key}"] = (None if label == "vanilla" or "vanilla" not in results
                                      else common.compare(results, label, "vanilla", idx))
        rows.append(r)
    fd_steps = [overrides["cse_fd_step"] for overrides in chosen.values() if "cse_fd_step" in overrides]
    num_transitions = 32 if hasattr(the_env, "mj_model") else 512
    errors = derivative_errors(the_env, fd_steps, n=num_transitions)
    title = f"CSE gradient sources on {env}{''.join(f', {k}={v}' for k, v in env_kwargs.items())}, {scale} scale " \
            f"({total:,} steps x {num_seeds} seeds)"
    lines = ["| variant | FD rel. error (d s'/dc, d r/dc) | whole grid | far contexts | far: − autodiff | "
             "far: − vanilla | whole grid: − autodiff | program s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        err = errors.get(r["variant"])
        err_text = "—" if err is None else f"{err['d_obs']:.2g}, {err['d_reward']:.2g}"
        lines.append(f"| {r['variant']} | {err_text} | {_fmt(r, 'all')} | {_fmt(r, 'far')} | "
                     f"{_vs(r[f'vs_{REFERENCE}_far'])} | {_vs(r['vs_vanilla_far'])} | {_vs(r[f'vs_{REFERENCE}_all'])} "
                     f"| {r['program_s']:.1f} |")
    info = {"env": env, "env_kwargs": env_kwargs, "scale": scale, "seeds": num_seeds, "steps_per_seed": total,
            "eval_episodes": sc.eval_episodes, "sweep_points": sc.sweep_points, "far_fraction": exp.far_fraction,
            "far_contexts": [grid.labels[i] for i in row_sets["far"]], "command": command, "machine": launched_on,
            "wall_s": round(time.perf_counter() - t0, 1), "preregistered": PREREGISTERED,
            "fd_relative_error": errors,
            "configs": {k: dataclasses.asdict(make_train(c).config) for k, c in configs.items()}}
    md = "\n\n".join([
        f"# {title}",
        f"Command: `{command}`",
        f"Launched from zsgjax commit {launched_on.get('zsgjax_commit')}; "
        f"{num_seeds} seeds, {sc.eval_episodes} episodes per context and seed, deterministic policy. Cells: mean ± 95% "
        f"Student-t interval over seeds of each seed's mean zero-shot return; differences paired by seed (the "
        f"pre-registered test, `preregistration.json`). Far contexts: the {len(row_sets['far'])} grid points with a "
        f"dimension at least {exp.far_fraction:g} of its range from the training context. FD relative error: "
        f"RMS over {num_transitions} random transitions of ||J_fd − J|| / ||J|| against autodiff (float32); the noise rows' "
        "RMS relative error is their level by construction.",
        "## Pre-registered\n\n" + f"Rows: {PREREGISTERED['rows']}.\n\nTest: {PREREGISTERED['test']}.\n\n"
        + "Expectations (written before the runs): " + "; ".join(PREREGISTERED["expectations"]) + ".",
        "## Results\n\n" + "\n".join(lines),
        "## Summary table\n\n```\n" + tables.format_table(results, detail=False) + "\n```",
        "![gradient sources](gradient_sources.png)",
    ]) + "\n"
    plot(rows, os.path.join(out, "gradient_sources.png"), title)
    tables.write_json(results, os.path.join(out, "gradient_sources.json"), extra={**info, "variants": rows})
    atomic_write(os.path.join(out, "gradient_sources.md"), md)
    log(md)
    return {"results": results, "rows": rows}


def main(argv=None) -> int:
    p = common.options.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", choices=ENVS, default="pendulum_goal", metavar="ENV",
                   help=f"{', '.join(SCRIPT_ENVS)} or {PREFIX}<Name> (DM Control Suite); default pendulum_goal")
    p.add_argument("--scale", choices=common.SCALES, default="cpu")
    p.add_argument("--seeds", type=int, default=None, help=f"default: {PREREGISTERED['seeds']} (pre-registered)")
    p.add_argument("--steps", type=int, default=None, help="training steps per seed (default: the scale's)")
    p.add_argument("--variants", default=",".join(variants()), help="comma-separated subset of the variants")
    p.add_argument("--out", default=None, help="output folder (default: runs/experiments/gradient_sources-<env>)")
    p.add_argument("--work", default=None, help="checkpoint folder (default: under runs/experiments)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --work")
    p.add_argument("--no-compile-cache", dest="compile_cache", action="store_false",
                   help="do not use JAX's persistent compilation cache (default: on)")
    common.options.add_env_options(p.add_argument_group("environment options (TrainConfig.env_kwargs)"))
    args = p.parse_args(argv)
    if args.resume and not args.work:
        p.error("--resume needs --work naming the checkpoint folder")
    # the environment's module before JAX starts: the MJX envs size XLA:CPU's thread pool (zsgjax.envs.mjx.cpu_pool)
    envs.constructor(args.env)
    common.options.configure_compile_cache(args.compile_cache)
    command = "python scripts/experiments/gradient_sources.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = args.out or os.path.join(common.REPO, "runs", "experiments", f"gradient_sources-{args.env}-{args.scale}")
    try:
        run(args.env, args.scale, args.seeds, args.steps, [v for v in args.variants.split(",") if v], out,
            args.work, common.options.env_kwargs_from_args(args), command.strip(), resume=args.resume)
    except ValueError as e:
        p.error(common.options.flag_message(str(e)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
