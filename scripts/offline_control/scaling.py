"""Experiment (b): PERM's held-out regret against n (and N) on GoalLine, against the exact SL error.

GoalLine (zsgjax.offline.control.goal_line): x' = clip(x + a, -2, 2), H = 10, the policy
sees x only. Two families (``--family``):

* ``square``: r = -(x' - g)^2, goals g = 2 u^2 - 1 (u ~ U[0, 1]); held out: 64 goal
  quantiles. The exact SL regret H (gbar_n - hbar)^2 falls as 1/n: its square root as
  1/sqrt(n).
* ``two_point``: r = -|x' - g|, goals +-1 with P(+1) = 1/2 + kappa / (2 sqrt(n)); held out:
  the law itself (the two atoms, weighted). A blind target y loses H |2p - 1| |y - y*|
  (linear in the decision error), and the exact expected SL regret
  (:func:`goal_line.two_point_sl_regret`) falls as 1/sqrt(n). Every run of this family also
  reports the exact SL regret of reward ``abs`` on the *fixed* law g = 2 u^2 - 1, which
  falls as 1/n (the expected |.| loss is smooth at the median).

Per point and seed: PERM (beta = 1) regret (exact, from its learned trajectory; checked
against true rollouts), the exact SL regret of the seed's training goals, PERM's regret on
its own training goals. Per-seed log-log slopes (Student-t intervals over seeds) and the
slope of the mean (seed-bootstrap interval). The claims are pre-registered in
:data:`CLAIMS` and written to ``OUT.json`` before training.

    python scripts/offline_control/scaling.py --family two_point --out docs/experiments/offline_control/scaling_two_point
    python scripts/offline_control/scaling.py --family square --transitions   # n sweep only
    python scripts/offline_control/scaling.py --seeds 32 --iterations 600 --hidden 32 32 --num-critics 4  # GPU-sized
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
import preregistered as P  # noqa: E402

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
REWARD = {"square": "square", "two_point": "abs"}
CLAIMS = {
    "two_point": [
        P.claim("slope-mean", "PERM's mean regret falls as 1/sqrt(n) (log-log slope of the mean over n, "
                "seed-bootstrap 95% interval, contains -1/2)", "slope of mean PERM regret", kind="contains",
                value=-0.5),
        P.claim("slope-per-seed", "PERM's per-seed log-log slope of regret against n is above -1 (slower than 1/n)",
                "per-seed slope of PERM regret", "-1", kind="greater"),
    ],
    "square": [
        P.claim("sqrt-slope", "sqrt(PERM regret) falls as 1/sqrt(n) (per-seed log-log slope contains -1/2)",
                "per-seed slope of sqrt(PERM regret)", kind="contains", value=-0.5),
        P.claim("sqrt-slope-sl", "sqrt(exact SL regret) falls as 1/sqrt(n) (per-seed log-log slope contains -1/2)",
                "per-seed slope of sqrt(SL regret)", kind="contains", value=-0.5),
        P.claim("floor-512", "at n = 512 PERM's regret exceeds the exact SL regret of its training goals",
                "PERM regret n=512", "SL regret n=512", kind="greater"),
    ],
}


def perm_config(args) -> C.PERMConfig:
    """PERM (beta = 1); networks and schedule from the command line."""
    base = E.small_perm_config(1.0, args.iterations)
    return dataclasses.replace(
        base, critic=dataclasses.replace(base.critic, hidden_sizes=tuple(args.hidden), batch_size=args.batch_size,
                                         learning_rate=args.critic_lr, beta=1.0, num_critics=args.num_critics),
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


@dataclasses.dataclass(frozen=True)
class Family:
    """One GoalLine family: its reward, training-goal law (which may depend on n) and held-out goals."""

    name: str
    horizon: int
    kappa: float = 0.75

    @property
    def reward(self) -> str:
        return REWARD[self.name]

    def env(self) -> G.GoalLine:
        return G.GoalLine(horizon=self.horizon, reward=self.reward)

    def p_plus(self, n: int) -> float:
        return G.two_point_probability(n, self.kappa)

    def train_goals(self, key: jax.Array, n: int) -> np.ndarray:
        if self.name == "two_point":
            return np.asarray(G.sample_two_point_goals(key, n, self.p_plus(n)))
        return np.asarray(G.sample_goals(key, n, POWER))

    def held_out(self, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``(goals (m, 1), weights (m,) or None)``."""
        if self.name == "two_point":
            p = self.p_plus(n)
            return np.array([[-1.0], [1.0]], np.float32), np.array([1.0 - p, p])
        return G.goal_quantiles(NUM_HELD_OUT, POWER), None

    def expected_sl(self, n: int, held: np.ndarray) -> float:
        """The exact mean SL regret over training draws."""
        if self.name == "two_point":
            return G.two_point_sl_regret(n, self.p_plus(n), self.horizon)
        return self.horizon * (G.goal_variance(POWER) / n + (G.goal_mean(POWER) - float(held.mean())) ** 2)


def datasets(family: Family, n: int, N: int, seeds: int, goals_N: int):
    """Per seed its own n goals and N uniform-random transitions per environment; leaves ``(S, n, N, ...)``.
    The goals of seed s depend on (n, ``goals_N``, s) only, not on N."""
    out, goals = [], []
    for s in range(seeds):
        k_ctx = jax.random.split(point_key(n, goals_N, s))[0]
        k_data = jax.random.split(point_key(n, N, s))[1]
        g = family.train_goals(k_ctx, n)
        data, _ = collect_mod.collect(k_data, ENV_NAME, g, E.random_behaviour(), N,
                                      streams=streams_for(N, family.horizon),
                                      env_kwargs={"horizon": family.horizon, "reward": family.reward})
        out.append(data)
        goals.append(g[:, 0])
    return jax.tree.map(lambda *xs: jnp.stack(xs), *out), np.stack(goals)


def summary(per_seed) -> dict:
    m, ci = stats.mean_ci(np.asarray(per_seed, np.float64))
    return {"mean": float(m), "ci95": float(ci), "per_seed": np.asarray(per_seed).tolist()}


def one(run: OfflineRun, family: Family, n: int, N: int, args) -> dict:
    t0 = time.perf_counter()
    cfg = perm_config(args)
    env = family.env()
    held, held_w = family.held_out(n)
    data_s, train_goals = datasets(family, n, N, args.seeds, args.fixed_transitions)
    policy = C.policy_of(cfg, E.first_seed(data_s))
    res, train_s = E.train_seeds(run, f"n={n} N={N}", C.make_perm(cfg), data_s, n + N, cfg)
    params = res.policy_params
    ev = C.zero_shot(env, policy, params, C.held_out_grid(env, held), num_episodes=1, rng=jax.random.PRNGKey(0))
    per_context = np.asarray(ev.returns, np.float64).mean(-1)  # (S, m)
    w = np.full(len(held), 1.0 / len(held)) if held_w is None else held_w
    returns = per_context @ w
    reward = family.reward
    opt = G.population_optimum(held[:, 0], env.horizon, reward, held_w)
    act = lambda p, x: policy.act(p, x[None], jnp.zeros((policy.context_dim,)))[0]  # noqa: E731
    pos = np.asarray(jax.jit(jax.vmap(lambda p: G.blind_positions(env, act, p)))(params), np.float64)  # (S, H)
    perm = G.blind_regret(pos, held[:, 0], reward, held_w)
    sl = G.sl_regret(train_goals, held[:, 0], env.horizon, reward, eval_weights=held_w)
    r = {"num_envs": n, "transitions": N, "goals_drawn_for_transitions": args.fixed_transitions,
         "perm_regret": summary(perm), "sl_regret": summary(sl), "difference": summary(perm - sl),
         "train_regret": summary(G.blind_regret(pos, train_goals, reward)),
         "sqrt_perm_regret": summary(np.sqrt(perm)), "sqrt_sl_regret": summary(np.sqrt(sl)),
         "expected_sl_regret": family.expected_sl(n, held), "held_out_return": summary(returns),
         "closed_form_vs_rollout_max_abs": float(np.max(np.abs((opt - perm) - returns))),
         "positions": pos.tolist(), "train_goal_center": G.goal_center(train_goals, reward).tolist(),
         "train_seconds_incl_compile": train_s, "seconds": time.perf_counter() - t0}
    if family.name == "two_point":
        r["p_plus"] = family.p_plus(n)
        fixed = np.stack([np.asarray(G.sample_goals(jax.random.split(point_key(n, args.fixed_transitions, s))[0], n,
                                                    POWER))[:, 0] for s in range(args.seeds)])
        r["fixed_law_abs_sl_regret"] = summary(G.sl_regret(fixed, G.goal_quantiles(NUM_HELD_OUT, POWER)[:, 0],
                                                           env.horizon, "abs"))
    print(f"  n={n:4d} N={N:5d}: PERM regret {fmt(r['perm_regret'])}  SL {fmt(r['sl_regret'])}  "
          f"E[SL] {r['expected_sl_regret']:.4f}  train-goal regret {fmt(r['train_regret'])}  ({r['seconds']:.0f} s)",
          flush=True)
    return r


def fmt(s: dict, digits: int = 4) -> str:
    return f"{s['mean']:.{digits}f} ± {s['ci95']:.{digits}f}"


def settings(args) -> dict:
    """What a trained point depends on besides its data (``--resume`` reuses points only when these match)."""
    return {"family": args.family, "kappa": args.kappa, "seeds": args.seeds, "iterations": args.iterations,
            "hidden": list(args.hidden), "num_critics": args.num_critics, "batch_size": args.batch_size,
            "critic_lr": args.critic_lr, "actor_lr": args.actor_lr, "horizon": args.horizon, "power": POWER,
            "held_out": NUM_HELD_OUT}


def per_seed_slopes(rows: list, key: str, transform=lambda v: v) -> list:
    """Each seed's least-squares log-log slope of ``transform(rows[k][key])`` against n (values <= 0 dropped)."""
    n = np.asarray([r["num_envs"] for r in rows], np.float64)
    y = transform(np.asarray([r[key]["per_seed"] for r in rows], np.float64))  # (K, S)
    out = []
    for s in range(y.shape[1]):
        try:
            out.append(stats.loglog_slope(n, y[:, s], drop_nonpositive=True))
        except ValueError:
            out.append(float("nan"))
    return out


def bootstrap_slope(rows: list, key: str, draws: int = 4000, seed: int = 0) -> dict:
    """Log-log slope of the mean over seeds against n, and its 95% percentile interval over
    ``draws`` resamplings of the seeds (the same resampled seeds at every n)."""
    n = np.asarray([r["num_envs"] for r in rows], np.float64)
    y = np.asarray([r[key]["per_seed"] for r in rows], np.float64)  # (K, S)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(draws):
        idx = rng.integers(0, y.shape[1], y.shape[1])
        m = y[:, idx].mean(1)
        if np.sum(m > 0) >= 2:
            boot.append(stats.loglog_slope(n, m, drop_nonpositive=True))
    if not boot:
        return {"slope": float("nan"), "interval": [float("nan"), float("nan")], "draws": 0}
    lo, hi = np.percentile(boot, [2.5, 97.5])
    mean = y.mean(1)
    slope = stats.loglog_slope(n, mean, drop_nonpositive=True) if np.sum(mean > 0) >= 2 else float("nan")
    return {"slope": slope, "interval": [float(lo), float(hi)], "draws": len(boot)}


def verdicts(args, vs_n: list) -> list:
    out = []
    for c in CLAIMS[args.family]:
        if c["id"] == "slope-mean":
            b = bootstrap_slope(vs_n, "perm_regret")
            lo, hi = b["interval"]
            out.append({**c, "seeds": args.seeds, "mean": b["slope"], "half_width": (hi - lo) / 2,
                        "interval": [lo, hi], "test": "seed bootstrap (percentile)",
                        "verdict": "holds" if lo <= c["value"] <= hi else "contradicted"})
        elif c["id"] == "slope-per-seed":
            out.append(P.judge(c, {c["a"]: per_seed_slopes(vs_n, "perm_regret"), "-1": [-1.0] * args.seeds}))
        elif c["id"] == "sqrt-slope":
            out.append(P.judge(c, {c["a"]: per_seed_slopes(vs_n, "perm_regret", np.sqrt)}))
        elif c["id"] == "sqrt-slope-sl":
            out.append(P.judge(c, {c["a"]: per_seed_slopes(vs_n, "sl_regret", np.sqrt)}))
        elif c["id"] == "floor-512":
            row = next((r for r in vs_n if r["num_envs"] == 512), None)
            if row is not None:
                out.append(P.judge(c, {c["a"]: row["perm_regret"]["per_seed"], c["b"]: row["sl_regret"]["per_seed"]}))
    return out


def write(run: OfflineRun, args, family: Family, points: dict, t0: float, done: bool) -> None:
    vs_n = [points[(n, args.fixed_transitions)] for n in args.envs if (n, args.fixed_transitions) in points]
    vs_N = [points[(args.fixed_envs, N)] for N in args.transitions if (args.fixed_envs, N) in points]
    held, held_w = family.held_out(1)
    result = {"experiment": "offline_control/scaling", "env": "GoalLine", "family": args.family,
              "reward": family.reward, "status": "complete" if done else "partial", "complete": done,
              "commit": P.commit(), "args": vars(args), "settings": settings(args),
              "test": "paired per-seed Student-t, two-sided 95% (slope of the mean: seed bootstrap)",
              "preregistered": CLAIMS[args.family], "machine": machine.machine_description(),
              "config": E.config_dict(perm_config(args)),
              "held_out_goals": held[:, 0].tolist() if held_w is None else "the two-point law at each n (p_plus)",
              "vs_num_envs": vs_n, "vs_transitions": vs_N, "wall_seconds": time.time() - t0,
              "points_seconds_total": sum(r["seconds"] for r in vs_n + vs_N)}
    if len(vs_n) >= 2:
        n = [r["num_envs"] for r in vs_n]
        result["slopes_vs_n"] = {
            "per_seed_perm": summary(per_seed_slopes(vs_n, "perm_regret")),
            "per_seed_sl": summary(per_seed_slopes(vs_n, "sl_regret")),
            "per_seed_sqrt_perm": summary(per_seed_slopes(vs_n, "perm_regret", np.sqrt)),
            "mean_perm_bootstrap": bootstrap_slope(vs_n, "perm_regret"),
            "mean_sl_bootstrap": bootstrap_slope(vs_n, "sl_regret"),
            "expected_sl": stats.loglog_slope(n, [r["expected_sl_regret"] for r in vs_n]),
        }
        if args.family == "two_point":
            result["slopes_vs_n"]["fixed_law_abs_sl_bootstrap"] = bootstrap_slope(vs_n, "fixed_law_abs_sl_regret")
        if done:
            result["verdicts"] = verdicts(args, vs_n)
    files.write_json(run.path(".json"), result)
    write_markdown(run, args, family, result, vs_n, vs_N)
    if vs_n or vs_N:
        plot(vs_n, vs_N, args, family, run.path(".png"))


def write_markdown(run, args, family, result, vs_n, vs_N) -> None:
    sq = family.name == "square"
    head = ("| n | N | PERM regret | SL only (exact) | E[SL] (exact) | sqrt PERM regret | PERM on its training goals |"
            + ("" if sq else " p(+1) | fixed-law abs SL |"))
    sep = "|---" * (7 if sq else 9) + "|"

    def row(r):
        s = (f"| {r['num_envs']} | {r['transitions']} | {fmt(r['perm_regret'])} | {fmt(r['sl_regret'])} | "
             f"{r['expected_sl_regret']:.4f} | {fmt(r['sqrt_perm_regret'])} | {fmt(r['train_regret'])} |")
        return s if sq else s + f" {r['p_plus']:.3f} | {fmt(r['fixed_law_abs_sl_regret'])} |"

    what = ("r = -(x' - g)^2, goals 2u^2 - 1, held out: 64 quantiles" if sq else
            f"r = -|x' - g|, goals ±1 with P(+1) = 1/2 + {args.kappa:g} / (2 sqrt(n)), held out: the law itself")
    lines = [f"# PERM's held-out regret on GoalLine ({args.family}: {what}; {args.seeds} seeds)", "",
             "Mean ± 95% Student-t half-width over seeds. `SL only` = exact regret of the best blind policy of the "
             "seed's training goals; `E[SL]` = its exact expectation over training draws.", "",
             f"## Against n (N = {args.fixed_transitions} per environment)", "", head, sep]
    lines += [row(r) for r in vs_n]
    if vs_N:
        lines += ["", f"## Against N (n = {args.fixed_envs})", "", head, sep] + [row(r) for r in vs_N]
    sl = result.get("slopes_vs_n")
    if sl:
        ps, bs = sl["per_seed_perm"], sl["mean_perm_bootstrap"]
        lines += ["", "Log-log slopes against n: "
                  f"PERM per seed {ps['mean']:.3f} ± {ps['ci95']:.3f} (t); PERM mean {bs['slope']:.3f} "
                  f"[{bs['interval'][0]:.3f}, {bs['interval'][1]:.3f}] (bootstrap); sqrt(PERM) per seed "
                  f"{sl['per_seed_sqrt_perm']['mean']:.3f} ± {sl['per_seed_sqrt_perm']['ci95']:.3f}; SL per seed "
                  f"{sl['per_seed_sl']['mean']:.3f} ± {sl['per_seed_sl']['ci95']:.3f}; SL mean "
                  f"{sl['mean_sl_bootstrap']['slope']:.3f} [{sl['mean_sl_bootstrap']['interval'][0]:.3f}, "
                  f"{sl['mean_sl_bootstrap']['interval'][1]:.3f}]; E[SL] {sl['expected_sl']:.3f}"
                  + ("" if sq else f"; fixed-law abs SL mean {sl['fixed_law_abs_sl_bootstrap']['slope']:.3f} "
                     f"[{sl['fixed_law_abs_sl_bootstrap']['interval'][0]:.3f}, "
                     f"{sl['fixed_law_abs_sl_bootstrap']['interval'][1]:.3f}]") + "."]
    if result.get("verdicts"):
        lines += ["", "Pre-registered verdicts:", ""] + P.markdown(result["verdicts"])
    lines += ["", f"{'Complete' if result['complete'] else 'Partial (still running or cut off)'}; commit "
              f"{result['commit']}; {result['points_seconds_total']:.0f} s of training and evaluation "
              f"(this invocation {result['wall_seconds']:.0f} s wall, shared 2-core CPU)."]
    files.atomic_write(run.path(".md"), "\n".join(lines) + "\n")


def plot(vs_n, vs_N, args, family: Family, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if vs_N else 1, squeeze=False)[0]
    means = [r[name]["mean"] for r in vs_n + vs_N for name in LABELS]
    floor = 0.3 * min([m for m in means if m > 0] or [1e-3])
    for ax, rows, key, label in ((axes[0], vs_n, "num_envs", f"n environments (N = {args.fixed_transitions})"),
                                 (axes[-1], vs_N, "transitions", f"N per environment (n = {args.fixed_envs})")):
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
            ax.plot(x, [r["expected_sl_regret"] for r in rows], color="k", lw=1, label="E[SL] (exact)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_ylim(bottom=floor)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("regret")
    axes[0].legend(fontsize="small")
    fig.suptitle(f"PERM (beta = 1) on GoalLine, {args.family} family: regret against n (mean ± 95% t band, "
                 f"{args.seeds} seeds)", fontsize="medium")
    files.save_figure(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=sorted(REWARD), default="square")
    p.add_argument("--kappa", type=float, default=0.75, help="two_point: P(+1) = 1/2 + kappa / (2 sqrt(n))")
    p.add_argument("--envs", type=int, nargs="*", default=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
    p.add_argument("--transitions", type=int, nargs="*", default=[16, 64, 256, 1024, 2048])
    p.add_argument("--fixed-transitions", type=int, default=128, help="N of the sweep over n")
    p.add_argument("--fixed-envs", type=int, default=64, help="n of the sweep over N")
    p.add_argument("--seeds", type=int, default=12)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--hidden", type=int, nargs="+", default=[16, 16], help="critic and actor hidden sizes")
    p.add_argument("--num-critics", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
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
    if not 0.0 < args.kappa <= 1.0:
        p.error("--kappa must lie in (0, 1]")
    run = open_run(args.out, settings(args), args.resume)
    P.preregister(run.path(".json"), CLAIMS[args.family], settings(args))
    t0 = time.time()
    family = Family(args.family, args.horizon, args.kappa)
    points = {}
    todo = [(n, args.fixed_transitions) for n in args.envs] + [(args.fixed_envs, N) for N in args.transitions]
    print(f"GoalLine {args.family}, H = {args.horizon}, {args.seeds} seeds; {len(set(todo))} points", flush=True)
    for key in sorted(dict.fromkeys(todo), key=lambda k: (k[0], k[1])):  # cheap (small n) first
        points[key] = one(run, family, *key, args)
        write(run, args, family, points, t0, done=False)
    write(run, args, family, points, t0, done=True)
    with open(run.path(".md")) as f:
        print(f.read())


if __name__ == "__main__":
    main()
