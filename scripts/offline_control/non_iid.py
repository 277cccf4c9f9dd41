"""Experiment (d): training environments that are not i.i.d. from the test law (GoalLine, square reward).

The PERM paper's bounds assume i.i.d. training environments (its open question 2). Test
law: goals g = 2 u^2 - 1 (u ~ U[0, 1]; held out: its 64 quantiles). Per seed and n one
draw u_1..u_n, shared by the conditions (so the comparisons are paired):

* ``iid``: g_i = 2 u_i^2 - 1 (the test law);
* ``shifted``: g_i = 2 u_i^3 - 1 (another law, same support, mean -1/2 instead of -1/3);
* ``shifted+IS``: the same data, PERM's objective weighted by the importance weights
  w_i = f_2(g_i) / f_3(g_i) = 1.5 u_i^(1/2) of the known test law
  (``train(key, data, env_weights)``, :func:`goal_line.goal_density`);
* ``clustered``: correlated draws, blocks of ``--cluster`` environments share one goal
  (g_i = 2 u_{m floor(i/m)}^2 - 1): n environments, n/m independent goals.

Per condition: PERM (beta = 1) regret on the held-out quantiles (exact, from its learned
trajectory: sum_t (x_t - hbar)^2) and the exact SL regret of its (weighted) training goals.
Claims pre-registered in :data:`CLAIMS` (paired per-seed Student-t), written to ``OUT.json``
before training.

    python scripts/offline_control/non_iid.py                    # n = 16, 64, 256; 10 seeds (CPU-sized)
    python scripts/offline_control/non_iid.py --seeds 32 --envs 16 64 256 1024 --iterations 600   # GPU-sized
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import preregistered as P  # noqa: E402
import scaling as S  # noqa: E402

from zsgjax.offline import control as C  # noqa: E402
from zsgjax.offline.control import collect as collect_mod  # noqa: E402
from zsgjax.offline.control import goal_line as G  # noqa: E402
from zsgjax.offline.runner import OfflineRun, open_run  # noqa: E402
from zsgjax.reporting import files, machine  # noqa: E402

OUT = "docs/experiments/offline_control/non_iid"
TEST_POWER, SHIFT_POWER = 2.0, 3.0
CONDITIONS = ("iid", "shifted", "shifted+IS", "clustered")
CLAIMS = [
    P.claim("shift>iid@64", "n = 64: PERM's regret with shifted training goals exceeds the i.i.d. one",
            "shifted n=64", "iid n=64"),
    P.claim("shift>iid@256", "n = 256: PERM's regret with shifted training goals exceeds the i.i.d. one",
            "shifted n=256", "iid n=256"),
    P.claim("is<shift@64", "n = 64: importance weights lower PERM's regret on shifted training goals",
            "shifted n=64", "shifted+IS n=64"),
    P.claim("is<shift@256", "n = 256: importance weights lower PERM's regret on shifted training goals",
            "shifted n=256", "shifted+IS n=256"),
    P.claim("cluster>iid@256", "n = 256: PERM's regret with clustered (correlated) goals exceeds the i.i.d. one",
            "clustered n=256", "iid n=256"),
]


def goals_of(condition: str, key: jax.Array, n: int, cluster: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``(goals (n, 1), env_weights (n,) or None)`` of one seed (the same ``key``: the same u)."""
    if condition in ("shifted", "shifted+IS"):
        g = np.asarray(G.sample_goals(key, n, SHIFT_POWER))
        w = G.goal_density_ratio(g[:, 0], TEST_POWER, SHIFT_POWER)
        return g, (w.astype(np.float32) if condition == "shifted+IS" else None)
    g = np.asarray(G.sample_goals(key, n, TEST_POWER))
    if condition == "clustered":
        g = np.repeat(g[::cluster], cluster, axis=0)[:n]
    return g, None


def one(run: OfflineRun, condition: str, n: int, args, env: G.GoalLine, held: np.ndarray) -> dict:
    t0 = time.perf_counter()
    cfg = S.perm_config(args)
    data, goals, weights = [], [], []
    for s in range(args.seeds):
        k_goal, k_data = jax.random.split(S.point_key(n, args.transitions, s))
        g, w = goals_of(condition, k_goal, n, args.cluster)
        d, _ = collect_mod.collect(k_data, S.ENV_NAME, g, S.E.random_behaviour(), args.transitions,
                                   streams=S.streams_for(args.transitions, env.horizon),
                                   env_kwargs={"horizon": env.horizon})
        data.append(d)
        goals.append(g[:, 0])
        weights.append(np.ones(n, np.float32) if w is None else w)
    data_s = jax.tree.map(lambda *xs: jnp.stack(xs), *data)
    goals, weights = np.stack(goals), np.stack(weights)
    perm = C.make_perm(cfg)
    if condition == "shifted+IS":
        train, inputs = (lambda k, d: perm(k, d[0], d[1])), (data_s, jnp.asarray(weights))
    else:
        train, inputs = perm, data_s
    keys = jax.random.split(jax.random.PRNGKey(n + 7), args.seeds)  # the same training keys in every condition
    res, seconds = run.train(f"{condition} n={n}", train, keys, inputs, cfg)
    policy = C.policy_of(cfg, jax.tree.map(lambda x: x[0], data_s))
    act = lambda p, x: policy.act(p, x[None], jnp.zeros((policy.context_dim,)))[0]  # noqa: E731
    pos = np.asarray(jax.jit(jax.vmap(lambda p: G.blind_positions(env, act, p)))(res.policy_params), np.float64)
    perm_regret = G.blind_regret(pos, held)
    sl = G.sl_regret(goals, held, env.horizon, weights=weights)
    r = {"condition": condition, "num_envs": n, "perm_regret": S.summary(perm_regret), "sl_regret": S.summary(sl),
         "difference": S.summary(perm_regret - sl),
         "train_regret": S.summary(G.blind_regret(pos, goals, weights=weights)), "train_goal_mean": goals.mean(-1).tolist(),
         "weighted_train_goal_mean": G.goal_center(goals, weights=weights).tolist(),
         "effective_sample_size": (weights.sum(-1) ** 2 / np.square(weights).sum(-1)).tolist(),
         "positions": pos.tolist(), "train_seconds_incl_compile": seconds, "seconds": time.perf_counter() - t0}
    print(f"  {condition:11s} n={n:4d}: PERM regret {S.fmt(r['perm_regret'])}  SL {S.fmt(r['sl_regret'])}  "
          f"({r['seconds']:.0f} s)", flush=True)
    return r


def settings(args) -> dict:
    return {**S.settings(args), "transitions": args.transitions, "cluster": args.cluster, "envs": list(args.envs),
            "test_power": TEST_POWER, "shift_power": SHIFT_POWER}


def write(run: OfflineRun, args, points: dict, t0: float, done: bool, held: np.ndarray) -> None:
    H = args.horizon
    mu2, var2 = G.goal_mean(TEST_POWER), G.goal_variance(TEST_POWER)
    mu3, var3 = G.goal_mean(SHIFT_POWER), G.goal_variance(SHIFT_POWER)
    hbar = float(held.mean())
    expected = {n: {"iid": H * (var2 / n + (mu2 - hbar) ** 2), "shifted": H * (var3 / n + (mu3 - hbar) ** 2),
                    "clustered": H * (var2 / max(n // args.cluster, 1) + (mu2 - hbar) ** 2)} for n in args.envs}
    values = {f"{c} n={n}": r["perm_regret"]["per_seed"] for (c, n), r in points.items()}
    verdicts = [P.judge(c, values) for c in CLAIMS if c["a"] in values and c["b"] in values] if done else []
    result = {"experiment": "offline_control/non_iid", "env": "GoalLine (square)", "status":
              "complete" if done else "partial", "commit": P.commit(), "args": vars(args),
              "settings": settings(args), "test": "paired per-seed Student-t, two-sided 95%",
              "preregistered": CLAIMS, "verdicts": verdicts, "machine": machine.machine_description(),
              "config": S.E.config_dict(S.perm_config(args)), "held_out_goals": held.tolist(),
              "expected_sl_regret": {str(n): v for n, v in expected.items()},
              "points": [points[k] for k in sorted(points, key=lambda k: (k[1], CONDITIONS.index(k[0])))],
              "wall_seconds": time.time() - t0}
    files.write_json(run.path(".json"), result)
    lines = [f"# PERM on non-i.i.d. training environments (GoalLine, r = -(x' - g)^2; {args.seeds} seeds, "
             f"N = {args.transitions})", "",
             "Test law: g = 2u^2 - 1 (held out: 64 quantiles). Regret: exact, from PERM's learned trajectory; "
             "`SL` = exact regret of the best blind policy of the (weighted) training goals; mean ± 95% Student-t "
             "half-width over seeds; all conditions of a seed share its u draws and training key.", "",
             "| n | condition | PERM regret | SL (exact) | E[SL] (exact) | PERM on its (weighted) training goals | "
             "mean ESS of the weights |", "|---|---|---|---|---|---|---|"]
    for (c, n) in sorted(points, key=lambda k: (k[1], CONDITIONS.index(k[0]))):
        r = points[(c, n)]
        e = expected[n].get(c)
        lines.append(f"| {n} | {c} | {S.fmt(r['perm_regret'])} | {S.fmt(r['sl_regret'])} | "
                     f"{'—' if e is None else f'{e:.4f}'} | {S.fmt(r['train_regret'])} | "
                     f"{np.mean(r['effective_sample_size']):.1f} |")
    if verdicts:
        lines += ["", "Pre-registered verdicts (paired per-seed differences of PERM's regret):", ""]
        lines += P.markdown(verdicts)
    lines += ["", f"{'Complete' if done else 'Partial'}; commit {result['commit']}; "
              f"{result['wall_seconds']:.0f} s wall (shared 2-core CPU)."]
    files.atomic_write(run.path(".md"), "\n".join(lines) + "\n")
    plot(points, expected, args, run.path(".png"))


def plot(points: dict, expected: dict, args, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for c, marker in zip(CONDITIONS, "osD^"):
        rows = sorted((n, r) for (cc, n), r in points.items() if cc == c)
        if not rows:
            continue
        x = np.asarray([n for n, _ in rows], np.float64)
        y = np.asarray([r["perm_regret"]["mean"] for _, r in rows])
        ci = np.nan_to_num(np.asarray([r["perm_regret"]["ci95"] for _, r in rows]))
        (line,) = ax.plot(x, y, marker=marker, label=f"PERM, {c}")
        ax.fill_between(x, np.maximum(y - ci, 1e-4), y + ci, color=line.get_color(), alpha=0.12, linewidth=0)
        if c in ("iid", "shifted", "clustered"):
            ax.plot(x, [expected[int(n)][c] for n in x], ls=":", color=line.get_color(), lw=1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("n training environments")
    ax.set_ylabel("held-out regret")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    ax.set_title(f"GoalLine: non-i.i.d. training goals (dotted: exact E[SL]; {args.seeds} seeds)", fontsize="medium")
    files.save_figure(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--transitions", type=int, default=128)
    p.add_argument("--cluster", type=int, default=8, help="environments per shared goal in the clustered condition")
    p.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--hidden", type=int, nargs="+", default=[16, 16])
    p.add_argument("--num-critics", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--critic-lr", type=float, default=1e-2)
    p.add_argument("--actor-lr", type=float, default=1e-2)
    p.add_argument("--horizon", type=int, default=10)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--out", default=OUT)
    args = p.parse_args()
    args.family, args.kappa = "square", 0.75  # for scaling.settings / perm_config
    if args.seeds < 2:
        p.error("--seeds must be >= 2 (Student-t intervals over seeds)")
    if args.cluster < 1 or any(n < 1 for n in args.envs):
        p.error("--cluster and --envs must be >= 1")
    run = open_run(args.out, settings(args), args.resume)
    P.preregister(run.path(".json"), CLAIMS, settings(args))
    t0 = time.time()
    env = G.GoalLine(horizon=args.horizon)
    held = G.goal_quantiles(S.NUM_HELD_OUT, TEST_POWER)[:, 0]
    points = {}
    print(f"GoalLine non-i.i.d., {args.seeds} seeds, n = {args.envs}", flush=True)
    for n in sorted(args.envs):
        for c in args.conditions:
            points[(c, n)] = one(run, c, n, args, env, held)
            write(run, args, points, t0, False, held)
    write(run, args, points, t0, True, held)
    print(open(run.path(".md")).read())


if __name__ == "__main__":
    main()
