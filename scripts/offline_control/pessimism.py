"""Experiment (c): is pessimism necessary? PERM with beta = 0 against beta > 0 under poor coverage.

CliffLine (zsgjax.offline.control.cliff_line): x' = max(x + 0.25 a, 0), r = x' below the edge e,
-1 and the end of the episode past it; the policy sees x only. The data come from a narrow
behaviour: the controller that walks to x = 0.2 (a mediocre blind policy: the edges lie in
[0.4, 1]) plus Gaussian action noise of std 0.1, so no transition passes an edge and the
actions that would are never seen. A critic fitted to these data sees the reward rise with
x' and, without a penalty, extrapolates the rise past the edge.

Per seed (its own training edges, data, validation edges and training key):

* PERM and the merged-data baseline (the same algorithm on ``data.merge()``), each with
  every beta of ``--betas`` (``Q^- = mean - beta std`` over M = 4 critics);
* the selection rule: for each seed and each method, the beta whose policy has the highest
  mean return on the seed's ``--num-val`` *validation* edges (drawn from the training law,
  independently of the training edges; true rollouts), ties to the smallest beta. The test
  edges are never used to select;
* test return: true rollouts on ``TEST`` (13 edges evenly spaced in [0.4, 1]).

The claims and their test are fixed in ``PREREGISTERED`` below (written to the JSON before
any training): paired per-seed differences of the test return, two-sided 95% Student-t
interval.

    python scripts/offline_control/pessimism.py                       # 10 seeds, CPU-sized
    python scripts/offline_control/pessimism.py --seeds 20 --scale 2 # on a GPU
"""

from __future__ import annotations

import argparse
import dataclasses
import math
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
from zsgjax.offline.control import cliff_line as CL  # noqa: E402
from zsgjax.offline.control import collect as collect_mod  # noqa: E402
from zsgjax.offline.runner import open_run  # noqa: E402
from zsgjax.reporting import files, machine, stats  # noqa: E402

OUT = "docs/experiments/offline_control/pessimism"
ENV_NAME = "cliff_line"
if ENV_NAME not in registry.registered_names():
    registry.register(ENV_NAME, "zsgjax.offline.control.cliff_line:CliffLine")

EDGE_LOW, EDGE_HIGH = 0.4, 1.0
TEST = np.linspace(EDGE_LOW, EDGE_HIGH, 13)[:, None].astype(np.float32)
"""The test edges (never used for selection)."""

PREREGISTERED = (
    {"id": "pessimism_helps_perm", "a": "PERM, selected beta", "b": "PERM, beta = 0", "kind": "greater",
     "claim": "PERM with beta selected on validation edges scores higher on the test edges than PERM with beta = 0"},
    {"id": "pessimism_helps_merged", "a": "merged, selected beta", "b": "merged, beta = 0", "kind": "greater",
     "claim": "the same for the merged-data baseline"},
    {"id": "perm_vs_merged", "a": "PERM, selected beta", "b": "merged, selected beta", "kind": "two-sided",
     "claim": "PERM against merged data, each with its selected beta (no sign predicted: no edge is seen in any "
              "environment's data, so the merged data lose no information that the per-environment critics use)"},
)
TEST_RULE = ("paired per-seed difference a - b of the mean test return, two-sided 95% Student-t interval over seeds; "
             "greater: holds if the interval lies above 0, contradicted if below, else not shown; two-sided: "
             "a > b / a < b if the interval excludes 0, else no significant difference")


def select(val_returns: np.ndarray, betas) -> np.ndarray:
    """Per seed, the index of the beta with the highest validation return ``val_returns (B, S)``;
    ties go to the smallest beta (``betas`` sorted ascending)."""
    order = np.argsort(betas, kind="stable")
    v = val_returns[order]
    return order[np.argmax(v >= v.max(0, keepdims=True) - 1e-6, axis=0)]


def edges(key, num: int) -> np.ndarray:
    return np.asarray(jax.random.uniform(key, (num, 1), jnp.float32, EDGE_LOW, EDGE_HIGH))


def datasets(args):
    """Per seed: training data ``Transitions`` (stacked on a leading seed axis) and validation edges ``(S, V)``."""
    behaviour = C.Behaviour(policy_fn=CL.approach_policy, params=jnp.float32(args.behaviour_target),
                            noise_std=args.noise_std, policy_prob=1.0, action_scale=1.0,
                            label=f"narrow(target={args.behaviour_target}, std={args.noise_std})")
    out, val = [], []
    for s in range(args.seeds):
        k_ctx, k_data, k_val = jax.random.split(jax.random.PRNGKey(5000 + s), 3)
        data, _ = collect_mod.collect(k_data, ENV_NAME, edges(k_ctx, args.num_envs), behaviour, args.transitions,
                                      streams=math.gcd(20, args.transitions))
        out.append(data)
        val.append(edges(k_val, args.num_val)[:, 0])
    return jax.tree.map(lambda *xs: jnp.stack(xs), *out), np.stack(val)


def evaluate(env, policy, params_s, contexts) -> np.ndarray:
    """Returns ``(S, C)`` of every seed's policy on ``contexts (C, 1)`` (deterministic: one episode)."""
    res = C.zero_shot(env, policy, params_s, C.held_out_grid(env, contexts), num_episodes=1,
                      rng=jax.random.PRNGKey(0))
    return np.asarray(res.returns).mean(-1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--betas", type=float, nargs="+", default=[0.0, 1.0, 4.0, 16.0])
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--num-val", type=int, default=16, help="validation edges per seed")
    p.add_argument("--transitions", type=int, default=1000)
    p.add_argument("--noise-std", type=float, default=0.1)
    p.add_argument("--behaviour-target", type=float, default=0.2)
    E.add_run_options(p, OUT, iterations=600)
    p.set_defaults(seeds=10)
    args = p.parse_args()
    if 0.0 not in args.betas:
        raise SystemExit("error: `--betas` must include 0 (the claims compare against beta = 0)")
    args.betas = sorted(args.betas)
    t0 = time.time()
    run = open_run(args.out, vars(args), args.resume)  # (common.open_run calls itself: not used)
    base = E.small_perm_config(args.scale, args.iterations)
    env = CL.CliffLine()
    result = {"experiment": "offline_control/pessimism", "env": "CliffLine()", "args": vars(args),
              "machine": machine.machine_description("2 CPU cores shared with other processes"),
              "config": E.config_dict(base), "test_edges": TEST[:, 0].tolist(), "preregistered": PREREGISTERED,
              "test_rule": TEST_RULE, "selection_rule": select.__doc__.strip(), "done": False}
    files.write_json(run.path(".json"), result)  # the claims are on disk before any training
    data_s, val = datasets(args)
    policy = C.policy_of(base, E.first_seed(data_s))
    union_val = val.reshape(-1, 1)
    S, V = val.shape
    methods = {"PERM": C.make_perm, "merged": C.make_merged}
    cells = {}
    for method, make in methods.items():
        for beta in args.betas:
            cfg = dataclasses.replace(base, critic=dataclasses.replace(base.critic, beta=float(beta)))
            res, seconds = E.train_seeds(run, f"{method} beta={beta:g}", make(cfg), data_s, 0, cfg)
            own_val = evaluate(env, policy, res.policy_params, union_val).reshape(S, S, V)[np.arange(S), np.arange(S)]
            test = evaluate(env, policy, res.policy_params, TEST)
            first = np.asarray(jax.vmap(lambda pp: policy.act(pp, jnp.zeros((1, 1)), jnp.zeros((policy.context_dim,))))(
                res.policy_params))[:, 0, 0]
            cells[(method, beta)] = {"method": method, "beta": float(beta), "val_per_seed": own_val.mean(1).tolist(),
                                     "test_per_seed": test.mean(1).tolist(),
                                     "fall_rate_per_seed": falls(env, policy, res.policy_params).tolist(),
                                     "first_action_per_seed": first.tolist(), "seconds": seconds}
            m, h = stats.mean_ci(test.mean(1))
            print(f"  {method} beta={beta:g}: test {m:.3f} ± {h:.3f}, val {own_val.mean():.3f}, "
                  f"first action {np.round(first, 2).tolist()}", flush=True)
    rows = list(cells.values())
    arms = {}
    for method in methods:
        val_m = np.array([cells[(method, b)]["val_per_seed"] for b in args.betas])  # (B, S)
        test_m = np.array([cells[(method, b)]["test_per_seed"] for b in args.betas])
        idx = select(val_m, args.betas)
        arms[f"{method}, selected beta"] = {"per_seed": test_m[idx, np.arange(S)].tolist(),
                                            "beta_per_seed": [args.betas[i] for i in idx]}
        arms[f"{method}, beta = 0"] = {"per_seed": test_m[args.betas.index(0.0)].tolist(), "beta_per_seed": [0.0] * S}
    for a in arms.values():
        a["mean"], a["ci95"] = (float(v) for v in stats.mean_ci(np.asarray(a["per_seed"])))
    verdicts = [{**c, **stats.paired_verdict(arms[c["a"]]["per_seed"], arms[c["b"]]["per_seed"], c["kind"])}
                for c in PREREGISTERED]
    refs = reference_values(env)
    result.update(rows=rows, arms=arms, verdicts=verdicts, references=refs, wall_seconds=time.time() - t0, done=True)
    files.write_json(run.path(".json"), result)
    write_markdown(run.path(".md"), args, rows, arms, verdicts, refs, result["wall_seconds"])
    plot(rows, arms, args.betas, refs, run.path(".png"))


def falls(env, policy, params_s) -> np.ndarray:
    """Per seed, the fraction of test edges at which the policy passes the edge (from its blind trajectory)."""
    xs = blind_positions(env, policy, params_s)  # (S, H)
    return (xs[:, None, :] > TEST[None, :, :]).any(-1).mean(-1)


def blind_positions(env, policy, params_s) -> np.ndarray:
    """``(S, H)`` positions of each seed's policy from the start, ignoring edges (its trajectory until it falls)."""
    def one(pp):
        def body(x, _):
            x = jnp.maximum(x + env.stride * jnp.clip(policy.act(pp, x[None], jnp.zeros((policy.context_dim,)))[0], -1.0, 1.0), 0.0)
            return x, x[0]
        return jax.lax.scan(body, jnp.zeros((1,), jnp.float32), None, length=env.horizon)[1]
    return np.asarray(jax.vmap(one)(params_s))


def reference_values(env) -> dict:
    """Closed-form test means of blind policies: walk to y at full speed and stay (y on a fine grid), and the behaviour."""
    ys = np.linspace(0.0, 1.0, 401)
    best = max((float(CL.blind_return(stay_positions(y, env), TEST[:, 0], env.fall).mean()), float(y)) for y in ys)
    behaviour = float(CL.blind_return(stay_positions(0.2, env), TEST[:, 0], env.fall).mean())
    full = float(CL.blind_return(env.stride * np.arange(1, env.horizon + 1), TEST[:, 0], env.fall).mean())
    return {"best walk-and-stay": best[0], "its target y": best[1], "behaviour target 0.2 (no noise)": behaviour,
            "a = +1 throughout": full}


def stay_positions(y: float, env) -> np.ndarray:
    """Positions of 'walk to y at full speed, then stay'."""
    return np.minimum(env.stride * np.arange(1, env.horizon + 1), y)


def write_markdown(path, args, rows, arms, verdicts, refs, wall) -> None:
    f = lambda m, h: f"{m:.3f} ± {h:.3f}"  # noqa: E731
    lines = [f"# Pessimism under poor coverage: PERM on CliffLine (n = {args.num_envs}, N = {args.transitions}, "
             f"{args.seeds} seeds)", "",
             f"Behaviour: walk to x = {args.behaviour_target} plus N(0, {args.noise_std}^2) action noise. Test return on "
             f"{len(TEST)} edges in [{EDGE_LOW}, {EDGE_HIGH}], mean ± 95% Student-t half-width over seeds; beta "
             f"selected per seed on {args.num_val} validation edges. {args.iterations} iterations x scale {args.scale}.",
             "", "| method | beta | test return | validation return | falls (share of test edges) | first action |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['beta']:g} | {f(*stats.mean_ci(np.asarray(r['test_per_seed'])))} | "
                     f"{np.mean(r['val_per_seed']):.3f} | {np.mean(r['fall_rate_per_seed']):.2f} | "
                     f"{np.mean(r['first_action_per_seed']):+.2f} |")
    lines += ["", "| arm | test return | beta per seed |", "|---|---|---|"]
    for name, a in arms.items():
        lines.append(f"| {name} | {f(a['mean'], a['ci95'])} | {', '.join(f'{b:g}' for b in a['beta_per_seed'])} |")
    lines += ["", "Pre-registered claims (paired per-seed difference, 95% Student-t):", "",
              "| claim | a - b | interval | verdict |", "|---|---|---|---|"]
    for v in verdicts:
        lines.append(f"| {v['claim']} | {v['diff']:+.3f} | [{v['interval'][0]:+.3f}, {v['interval'][1]:+.3f}] | "
                     f"**{v['verdict']}** |")
    lines += ["", "Closed form on the test edges: " + ", ".join(f"{k} {v:.3f}" for k, v in refs.items()) + ".",
              f"Wall time {wall:.0f} s."]
    files.atomic_write(path, "\n".join(lines) + "\n")
    print("\n".join(lines))


def plot(rows, arms, betas, refs, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for method, marker in (("PERM", "o"), ("merged", "s")):
        rr = [r for r in rows if r["method"] == method]
        mh = [stats.mean_ci(np.asarray(r["test_per_seed"])) for r in rr]
        x = np.arange(len(rr)) + (0.08 if method == "merged" else 0.0)
        ax.errorbar(x, [m for m, _ in mh], yerr=[h for _, h in mh], marker=marker, capsize=3, label=f"{method}, fixed beta")
        sel = arms[f"{method}, selected beta"]
        ax.errorbar([len(rr) + (0.08 if method == "merged" else 0.0)], [sel["mean"]], yerr=[sel["ci95"]],
                    marker=marker, capsize=3, ls="none", color=ax.lines[-1].get_color(), mfc="white")
    ax.set_xticks(list(range(len(betas))) + [len(betas)], [f"{b:g}" for b in betas] + ["selected\non val."])
    ax.axhline(refs["best walk-and-stay"], color="k", lw=1, ls=":", label="best blind (walk and stay)")
    ax.axhline(refs["behaviour target 0.2 (no noise)"], color="gray", lw=1, ls="--", label="behaviour (noise-free)")
    ax.set_xlabel("beta (Q^- = mean - beta std)")
    ax.set_ylabel("test return (CliffLine)")
    ax.legend(fontsize=7)
    files.save_figure(fig, path)
    plt.close(fig)


if __name__ == "__main__":
    main()
