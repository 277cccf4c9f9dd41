"""Experiment (b): the SL / RL split of PERM's held-out regret, against n and against N (GoalLine).

GoalLine (zsgjax.offline.control.goal_line): x' = clip(x + a, -2, 2), r = -(x' - g)^2,
H = 10, goals g = 2 u^2 - 1 (u ~ U[0, 1]), the policy sees x only. Its held-out regret
against the best blind policy of the held-out goals is exactly ``sum_t (x_t - hbar)^2``
(docs/offline_control.md), so per point and seed we report

* PERM (beta = 1) regret on 64 held-out goal quantiles, from true rollouts;
* ``SL only``: the exact regret ``H (gbar_n - hbar)^2`` of the best blind policy of the
  seed's n training goals (the error from seeing n contexts; mean H sigma^2 / n);
* their difference (learning + optimisation error plus a cross term of either sign), and
  PERM's exact regret on its own training goals ``sum_t (x_t - gbar_n)^2`` (the learning
  error alone, >= 0).

Per seed: its own goals, uniform-random data (N transitions per environment) and key;
the seeds train in one ``vmap``, one checkpointed cell of the run driver
(:class:`zsgjax.offline.runner.OfflineRun`) per point. Points are written as they finish
(JSON, table, plot); ``--resume`` reuses the trained points of an earlier run with the
same settings (``OUT.checkpoints/``) and trains the rest.

    python scripts/offline_control/scaling.py                 # n = 1..512 at N = 256; N = 16..2048 at n = 64
    python scripts/offline_control/scaling.py --envs 1 4 16 --transitions 64 256 --seeds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common as E  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from zsgjax.envs import registry  # noqa: E402
from zsgjax.offline import control as C  # noqa: E402
from zsgjax.offline.control import collect as collect_mod  # noqa: E402
from zsgjax.offline.control import goal_line as G  # noqa: E402
from zsgjax.offline.runner import OfflineRun, open_run  # noqa: E402
from zsgjax.reporting import files, machine, stats  # noqa: E402

OUT = "docs/experiments/offline_control/scaling"
ENV_NAME = "goal_line"
if ENV_NAME not in registry.registered_names():
    registry.register(ENV_NAME, "zsgjax.offline.control.goal_line:GoalLine")

POWER = 2.0  # goals g = 2 u^2 - 1: mean -1/3, variance 16/45
NUM_HELD_OUT = 64
LABELS = {"perm_regret": "PERM (held out)", "sl_regret": "SL only (exact)",
          "train_regret": "PERM on its training goals"}


def perm_config(args) -> C.PERMConfig:
    """PERM (beta = 1), M = 4 critics; CPU-sized networks and schedule from the command line."""
    base = E.small_perm_config(1.0, args.iterations)
    return dataclasses.replace(
        base, critic=dataclasses.replace(base.critic, hidden_sizes=tuple(args.hidden), batch_size=args.batch_size,
                                         learning_rate=args.critic_lr, beta=1.0, num_critics=4),
        actor=dataclasses.replace(base.actor, hidden_sizes=tuple(args.hidden), batch_size=args.batch_size,
                                  learning_rate=args.actor_lr)).validate()


def streams_for(num_transitions: int, horizon: int) -> int:
    """The most episode streams (a power of 2, at most 64) that divide N and keep >= H steps each."""
    s = 1
    while s < 64 and num_transitions % (2 * s) == 0 and num_transitions // (2 * s) >= horizon:
        s *= 2
    return s


def point_key(n: int, N: int, seed: int) -> jax.Array:
    """The PRNG key of seed ``seed`` of the point (n, N)."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(13), n * 100003 + N), seed)


def datasets(n: int, N: int, seeds: int, horizon: int, goals_N: int):
    """Per seed its own n goals and N uniform-random transitions per environment; leaves ``(S, n, N, ...)``.

    The goals of seed s depend on (n, ``goals_N``, s) only, not on N: the points of the sweep over N
    share their training goals (hence their SL regret) and differ in the data alone."""
    out, goals = [], []
    for s in range(seeds):
        k_ctx = jax.random.split(point_key(n, goals_N, s))[0]
        k_data = jax.random.split(point_key(n, N, s))[1]
        g = np.asarray(G.sample_goals(k_ctx, n, POWER))
        data, _ = collect_mod.collect(k_data, ENV_NAME, g, E.random_behaviour(), N, streams=streams_for(N, horizon),
                                      env_kwargs={"horizon": horizon})
        out.append(data)
        goals.append(g[:, 0])
    return jax.tree.map(lambda *xs: jnp.stack(xs), *out), np.stack(goals)


def summary(per_seed) -> dict:
    m, ci = stats.mean_ci(np.asarray(per_seed, np.float64))
    return {"mean": float(m), "ci95": float(ci), "per_seed": np.asarray(per_seed).tolist()}


def one(run: OfflineRun, n: int, N: int, args, env: G.GoalLine, held: np.ndarray) -> dict:
    t0 = time.perf_counter()
    cfg = perm_config(args)
    data_s, train_goals = datasets(n, N, args.seeds, env.horizon, args.fixed_transitions)
    policy = C.policy_of(cfg, E.first_seed(data_s))
    res, train_s = E.train_seeds(run, f"n={n} N={N}", C.make_perm(cfg), data_s, n + N, cfg)
    params = res.policy_params
    ev = C.zero_shot(env, policy, params, C.held_out_grid(env, held), num_episodes=1, rng=jax.random.PRNGKey(0))
    returns = ev.per_seed(range(len(held)))  # (S,) mean held-out return of each seed
    opt = G.population_optimum(held[:, 0], env.horizon)
    act = lambda p, x: policy.act(p, x[None], jnp.zeros((policy.context_dim,)))[0]  # noqa: E731
    pos = np.asarray(jax.jit(jax.vmap(lambda p: G.blind_positions(env, act, p)))(params), np.float64)  # (S, H)
    perm = opt - returns
    sl = G.sl_regret(train_goals, held[:, 0], env.horizon)
    r = {"num_envs": n, "transitions": N, "goals_drawn_for_transitions": args.fixed_transitions,
         "perm_regret": summary(perm), "sl_regret": summary(sl),
         "difference": summary(perm - sl), "train_regret": summary(G.blind_regret(pos, train_goals)),
         "held_out_return": summary(returns),
         "closed_form_vs_rollout_max_abs": float(np.max(np.abs(G.blind_return(pos, held[:, 0]) - returns))),
         "positions": pos.tolist(), "train_goal_mean": train_goals.mean(-1).tolist(),
         "train_seconds_incl_compile": train_s, "seconds": time.perf_counter() - t0}
    print(f"  n={n:4d} N={N:5d}: PERM regret {fmt(r['perm_regret'])}  SL {fmt(r['sl_regret'])}  "
          f"diff {fmt(r['difference'])}  train-goal regret {fmt(r['train_regret'])}  ({r['seconds']:.0f} s)",
          flush=True)
    return r


def fmt(s: dict, digits: int = 4) -> str:
    return f"{s['mean']:.{digits}f} ± {s['ci95']:.{digits}f}"


def settings(args) -> dict:
    """What a trained point depends on besides its data (``--resume`` reuses points only when these match)."""
    return {"seeds": args.seeds, "iterations": args.iterations, "hidden": list(args.hidden),
            "batch_size": args.batch_size, "critic_lr": args.critic_lr,
            "actor_lr": args.actor_lr, "horizon": args.horizon, "power": POWER, "held_out": NUM_HELD_OUT}


def write(run: OfflineRun, args, points: dict, t0: float, env: G.GoalLine, held: np.ndarray, done: bool) -> None:
    H, sigma2 = env.horizon, G.goal_variance(POWER)
    vs_n = [points[(n, args.fixed_transitions)] for n in args.envs if (n, args.fixed_transitions) in points]
    vs_N = [points[(args.fixed_envs, N)] for N in args.transitions if (args.fixed_envs, N) in points]
    result = {"experiment": "offline_control/scaling", "env": "GoalLine", "args": vars(args),
              "settings": settings(args),
              "complete": done, "machine": machine.machine_description(), "config": E.config_dict(perm_config(args)),
              "goal_distribution": {"formula": "g = 2 u^2 - 1, u ~ U[0, 1]", "mean": G.goal_mean(POWER),
                                    "variance": sigma2},
              "held_out_goals": held[:, 0].tolist(), "held_out_optimum": G.population_optimum(held[:, 0], H),
              "vs_num_envs": vs_n, "vs_transitions": vs_N, "wall_seconds": time.time() - t0,
              "points_seconds_total": sum(r["seconds"] for r in vs_n + vs_N),
              "loglog_slope_vs_n": slopes(vs_n, "num_envs"), "loglog_slope_vs_N": slopes(vs_N, "transitions")}
    files.write_json(run.path(".json"), result)
    head = "| n | N | PERM regret | SL only (exact) | difference | H sigma^2 / n | PERM regret on its training goals |"

    def row(r):
        return (f"| {r['num_envs']} | {r['transitions']} | {fmt(r['perm_regret'])} | {fmt(r['sl_regret'])} | "
                f"{fmt(r['difference'])} | {H * sigma2 / r['num_envs']:.4f} | {fmt(r['train_regret'])} |")

    lines = [f"# PERM's held-out regret on GoalLine against n and N ({args.seeds} seeds)", "",
             f"Regret against the best blind policy of the {NUM_HELD_OUT} held-out goal quantiles (true rollouts), "
             "mean ± 95% Student-t half-width over seeds. `SL only` = exact regret H (gbar_n - hbar)^2 of the best "
             "blind policy of the seed's training goals; `difference` = PERM - SL only (learning + optimisation "
             "error); the last column is PERM's exact regret on its own training goals, sum_t (x_t - gbar_n)^2.", "",
             f"## Against n (N = {args.fixed_transitions} per environment)", "", head, "|---|---|---|---|---|---|---|"]
    lines += [row(r) for r in vs_n]
    lines += ["", f"## Against N (n = {args.fixed_envs})", "", head, "|---|---|---|---|---|---|---|"]
    lines += [row(r) for r in vs_N]
    for key, what in (("loglog_slope_vs_n", "n (H sigma^2 / n has slope -1)"), ("loglog_slope_vs_N", "N")):
        if result[key]:
            lines += ["", f"Log-log slope of the mean against {what}, all points: "
                      + ", ".join(f"{LABELS[k]} {v:.2f}" for k, v in result[key].items()) + "."]
    lines += ["", f"{'Complete' if done else 'Partial (still running or cut off)'}; "
              f"{result['points_seconds_total']:.0f} s of training and evaluation in all (this invocation: "
              f"{result['wall_seconds']:.0f} s wall)."]
    files.atomic_write(run.path(".md"), "\n".join(lines) + "\n")
    if vs_n or vs_N:
        plot(vs_n, vs_N, args, H * sigma2, run.path(".png"))


def slopes(rows: list, key: str) -> dict:
    """Least-squares log-log slope of each mean regret against ``key`` (needs two points)."""
    if len(rows) < 2:
        return {}
    x = [r[key] for r in rows]
    return {name: stats.loglog_slope(x, [r[name]["mean"] for r in rows], drop_nonpositive=True)
            for name in ("perm_regret", "sl_regret", "train_regret")}


def plot(vs_n, vs_N, args, h_sigma2: float, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    means = [r[name]["mean"] for r in vs_n + vs_N for name in LABELS]
    floor = 0.3 * min([m for m in means if m > 0] or [1e-3])  # bands reaching below it are cut at the axis
    for ax, rows, key, label in ((axes[0], vs_n, "num_envs", f"n environments (N = {args.fixed_transitions})"),
                                 (axes[1], vs_N, "transitions",
                                  f"N transitions per environment (n = {args.fixed_envs})")):
        if not rows:
            continue
        x = np.asarray([r[key] for r in rows], np.float64)
        for name, style in (("perm_regret", dict(marker="o")), ("sl_regret", dict(marker="s", ls="--")),
                            ("train_regret", dict(marker="^", ls=":"))):
            y = np.asarray([r[name]["mean"] for r in rows])
            ci = np.nan_to_num(np.asarray([r[name]["ci95"] for r in rows]))
            (line,) = ax.plot(x, y, label=LABELS[name], **style)
            ax.fill_between(x, np.maximum(y - ci, floor), y + ci, color=line.get_color(), alpha=0.12, linewidth=0)
        if key == "num_envs":
            ax.plot(x, h_sigma2 / x, color="k", lw=1, label="H sigma^2 / n")
        else:
            ax.axhline(h_sigma2 / args.fixed_envs, color="k", lw=1, label="H sigma^2 / n")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_ylim(bottom=floor)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("regret")
    axes[0].legend(fontsize="small")
    fig.suptitle(f"PERM (beta = 1) on GoalLine: regret against n and N (mean ± 95% Student-t band, {args.seeds} "
                 "seeds; bands cut at the axis)",
                 fontsize="medium")
    files.save_figure(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", type=int, nargs="*", default=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
    p.add_argument("--transitions", type=int, nargs="*", default=[16, 64, 256, 1024, 2048])
    p.add_argument("--fixed-transitions", type=int, default=256, help="N of the sweep over n")
    p.add_argument("--fixed-envs", type=int, default=64, help="n of the sweep over N")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--iterations", type=int, default=600)
    p.add_argument("--hidden", type=int, nargs="+", default=[32, 32], help="critic and actor hidden sizes")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--critic-lr", type=float, default=1e-2)
    p.add_argument("--actor-lr", type=float, default=1e-2)
    p.add_argument("--horizon", type=int, default=10)
    p.add_argument("--resume", action="store_true",
                   help="reuse the trained points of an earlier run with the same settings (OUT.checkpoints/)")
    p.add_argument("--out", default=OUT)
    args = p.parse_args()
    for name in ("envs", "transitions"):
        if any(v < 1 for v in getattr(args, name)):
            p.error(f"--{name} values must be >= 1")
    if args.seeds < 2:
        p.error("--seeds must be >= 2 (Student-t intervals over seeds)")
    run = open_run(args.out, settings(args), args.resume)
    t0 = time.time()
    env = G.GoalLine(horizon=args.horizon)
    held = G.goal_quantiles(NUM_HELD_OUT, POWER)
    points = {}
    todo = [(n, args.fixed_transitions) for n in args.envs] + [(args.fixed_envs, N) for N in args.transitions]
    print(f"GoalLine, H = {env.horizon}, {args.seeds} seeds; {len(todo)} points", flush=True)
    for key in sorted(dict.fromkeys(todo), key=lambda k: (k[0], k[1])):  # cheap (small n) first
        points[key] = one(run, *key, args, env, held)
        write(run, args, points, t0, env, held, done=False)
    write(run, args, points, t0, env, held, done=True)
    with open(run.path(".md")) as f:
        print(f.read())


if __name__ == "__main__":
    main()
