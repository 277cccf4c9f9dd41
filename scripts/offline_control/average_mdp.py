"""Experiment (a): the average-MDP failure in continuous control (FlipGate, FlipCart).

n environments whose contexts come in exact pairs (-u_k, +u_k), u_k ~ U[0.5, 1]
(``sample_contexts(paired=True)``: the finite context sets for which docs/offline_control.md
derives the average MDP's optimum), N uniform-random transitions each; per seed its own
contexts, data and training key, the seeds of a method in one ``vmap`` (one checkpointed
cell of :class:`zsgjax.offline.runner.OfflineRun`). Held-out return (true rollouts on ten
contexts over both signs) of

* PERM (per-environment critics, beta = 1),
* the same algorithm on the merged data (the "average MDP"),
* TD3+BC on the merged data (``--env flip_gate`` only),

against the derived bound on the average MDP's optimum (:func:`merged_return_bound`) and
closed-form values of fixed policies. The claims are pre-registered below (:data:`CLAIMS`)
and written to ``OUT.json`` before training; paired per-seed Student-t verdicts.

    python scripts/offline_control/average_mdp.py                       # FlipGate, 12 seeds (CPU-sized)
    python scripts/offline_control/average_mdp.py --env flip_cart \\
        --out docs/experiments/offline_control/average_mdp_cart         # FlipCart (momentum 0.5)
    python scripts/offline_control/average_mdp.py --seeds 32 --scale 2  # GPU-sized
"""

from __future__ import annotations

import argparse
import math
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
from zsgjax.offline.control import flip_gate as F  # noqa: E402
from zsgjax.offline.runner import open_run  # noqa: E402
from zsgjax.reporting import files, machine, stats  # noqa: E402

OUT = "docs/experiments/offline_control/average_mdp"
ENVS = {"flip_gate": "zsgjax.offline.control.flip_gate:FlipGate", "flip_cart": "zsgjax.offline.control.flip_gate:FlipCart"}
for _name, _target in ENVS.items():
    if _name not in registry.registered_names():
        registry.register(_name, _target)

BOUND = "merged bound (derived)"
CLAIMS = {
    "flip_gate": [
        P.claim("perm>merged", "PERM scores above the same algorithm on merged data", "PERM (beta=1)", "merged data"),
        P.claim("perm>td3bc", "PERM scores above TD3+BC on merged data", "PERM (beta=1)", "TD3+BC (merged data)"),
        P.claim("bound>merged", "merged data score below the derived bound on the average MDP's optimum", BOUND,
                "merged data"),
    ],
    "flip_cart": [
        P.claim("perm>merged", "PERM scores above the same algorithm on merged data", "PERM (beta=1)", "merged data"),
        P.claim("bound>merged", "merged data score below the derived bound on the average MDP's optimum", BOUND,
                "merged data"),
    ],
}


def make_env(name: str) -> F.FlipGate:
    return F.FlipCart() if name == "flip_cart" else F.FlipGate()


def datasets(env_name: str, num_seeds: int, num_envs: int, num_transitions: int, seed: int = 0) -> C.Transitions:
    """Per seed its own paired contexts and uniform-random data; leaves ``(S, n, N, ...)``."""
    out = []
    for s in range(num_seeds):
        k_ctx, k_data = jax.random.split(jax.random.PRNGKey(1000 * seed + s))
        contexts = np.asarray(F.sample_contexts(k_ctx, num_envs, paired=True))
        data, _ = collect_mod.collect(k_data, env_name, contexts, E.random_behaviour(), num_transitions,
                                      streams=math.gcd(20, num_transitions))
        out.append(data)
    return jax.tree.map(lambda *xs: jnp.stack(xs), *out)


def fixed_policy_return(env: F.FlipGate, c: float, first: float, then: float) -> float:
    """True return in context ``c`` of the blind policy "``first``, then ``then`` at every later step"."""
    ctx = jnp.array([c], jnp.float32)

    def body(carry, t):
        state, done, total = carry
        a = jnp.where(t == 0, first, then)[None].astype(jnp.float32)
        state, _, reward, terminated = env.env_step(state, a, ctx)
        return (state, done | terminated, total + jnp.where(done, 0.0, reward)), None

    init = (env.init_env_state(None, ctx), jnp.zeros((), bool), jnp.zeros(()))
    (_, _, total), _ = jax.lax.scan(body, init, jnp.arange(env.horizon))
    return float(total)


def reference_values(env: F.FlipGate) -> dict:
    """Held-out means (on :data:`common.HELD_OUT`) of fixed blind policies and the derived bound."""
    c = E.HELD_OUT[:, 0]
    mean = lambda first, then: float(np.mean([fixed_policy_return(env, float(x), first, then) for x in c]))  # noqa: E731
    return {"a=-1 throughout": mean(-1.0, -1.0), "a=+1 throughout": mean(1.0, 1.0),
            "+1 then -1 (the average MDP's optimum on FlipGate)": mean(1.0, -1.0),
            BOUND: float(np.mean(F.merged_return_bound(env, E.HELD_OUT)))}


def evaluate(env: F.FlipGate, policy: C.Policy, params, seconds: float) -> dict:
    """Held-out returns (per seed, both signs) and each seed's first action."""
    res = C.zero_shot(env, policy, params, C.held_out_grid(env, E.HELD_OUT), num_episodes=1,
                      rng=jax.random.PRNGKey(0))
    per_seed = res.per_seed(range(10))
    mean, ci = stats.mean_ci(per_seed)
    start = np.asarray(env.init_env_state(None, None))[None]
    first = jax.vmap(lambda p: policy.act(p, jnp.asarray(start), jnp.zeros((policy.context_dim,)))[0, 0])(params)
    return {"per_seed": per_seed.tolist(), "mean": float(mean), "ci95": float(ci),
            "mean_c_neg": float(res.per_seed(range(5)).mean()), "mean_c_pos": float(res.per_seed(range(5, 10)).mean()),
            "first_action": np.asarray(first).tolist(), "train_seconds_incl_compile": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", choices=sorted(ENVS), default="flip_gate")
    p.add_argument("--num-envs", type=int, default=8, help="even: the contexts come in pairs (-u, +u)")
    p.add_argument("--transitions", type=int, default=2000)
    E.add_run_options(p, OUT, iterations=None)
    p.set_defaults(seeds=12)
    args = p.parse_args()
    if args.num_envs < 2 or args.num_envs % 2:
        p.error("--num-envs must be even and >= 2 (pairs of contexts)")
    if args.seeds < 2:
        p.error("--seeds must be >= 2 (Student-t intervals over seeds)")
    t0 = time.time()
    run = open_run(args.out, vars(args), args.resume)  # (common.open_run shadows the runner's: not used)
    claims = CLAIMS[args.env]
    P.preregister(run.path(".json"), claims, vars(args))
    env = make_env(args.env)
    cfg = E.small_perm_config(args.scale)
    data_s = datasets(args.env, args.seeds, args.num_envs, args.transitions)
    policy = C.policy_of(cfg, E.first_seed(data_s))
    trainers = {"PERM (beta=1)": (C.make_perm(cfg), "PERM"), "merged data": (C.make_merged(cfg), "merged")}
    if args.env == "flip_gate":
        trainers["TD3+BC (merged data)"] = (C.make_td3_bc(cfg), "TD3+BC")
    print(f"{type(env).__name__}, n={args.num_envs} (paired), N={args.transitions} per env, {args.seeds} seeds",
          flush=True)
    methods = {}
    for label, (train, cell) in trainers.items():
        res, seconds = E.train_seeds(run, cell, train, data_s, 0, cfg)
        methods[label] = evaluate(env, policy, res.policy_params, seconds)
        r = methods[label]
        print(f"  {label}: {E.fmt(r)} (c<0 {r['mean_c_neg']:.2f}, c>0 {r['mean_c_pos']:.2f}; "
              f"first a {np.round(r['first_action'], 2).tolist()}; {seconds:.0f} s)", flush=True)
    refs = reference_values(env)
    values = {m: r["per_seed"] for m, r in methods.items()}
    values[BOUND] = [refs[BOUND]] * args.seeds
    verdicts = [P.judge(c, values) for c in claims]
    contexts = np.asarray(data_s.contexts)[..., 0]
    result = {"experiment": "offline_control/average_mdp", "env": type(env).__name__, "status": "complete",
              "commit": P.commit(), "settings": vars(args), "test": "paired per-seed Student-t, two-sided 95%",
              "preregistered": claims, "verdicts": verdicts, "machine": machine.machine_description(),
              "config": E.config_dict(cfg), "env_params": {"delta": env.delta, "momentum": getattr(env, "momentum", 0.0)},
              "held_out_contexts": E.HELD_OUT[:, 0].tolist(), "closed_form_reference": refs,
              "training_contexts": contexts.tolist(),
              "exact_pairs": bool(np.allclose(contexts[:, 0::2], -contexts[:, 1::2])),
              "methods": methods, "wall_seconds": time.time() - t0}
    files.write_json(run.path(".json"), result)
    write_markdown(run.path(".md"), args, env, methods, refs, verdicts, result)
    plot(methods, refs, env, run.path(".png"))
    print(open(run.path(".md")).read())


def write_markdown(path, args, env, methods, refs, verdicts, result) -> None:
    name = type(env).__name__ + (f" (momentum {env.momentum:g})" if hasattr(env, "momentum") else "")
    lines = [f"# Average-MDP failure on {name} (n = {args.num_envs} in ± pairs, N = {args.transitions}, "
             f"{args.seeds} seeds)", "",
             "Held-out return (10 contexts, both signs), mean ± 95% Student-t half-width over seeds; `first a` = "
             "the action at the start state, per seed.", "",
             "| method | held-out return | c < 0 | c > 0 | per seed | first a |", "|---|---|---|---|---|---|"]
    for m, r in methods.items():
        seeds = ", ".join(f"{v:.2f}" for v in r["per_seed"])
        first = ", ".join(f"{a:+.2f}" for a in r["first_action"])
        lines.append(f"| {m} | {E.fmt(r)} | {r['mean_c_neg']:.2f} | {r['mean_c_pos']:.2f} | {seeds} | {first} |")
    lines += ["", "Closed-form held-out values (docs/offline_control.md):", ""]
    lines += [f"* {k}: {v:.3f}" for k, v in refs.items()]
    lines += ["", "Pre-registered verdicts (paired per-seed difference, two-sided 95% Student-t):", ""]
    lines += P.markdown(verdicts)
    lines += ["", f"Training contexts in exact ± pairs: {result['exact_pairs']}. Commit {result['commit']}; "
              f"wall time {result['wall_seconds']:.0f} s ({result['machine'].get('cpu_model', '?')}, "
              f"{result['machine'].get('cpu_count', '?')} cores, shared)."]
    files.atomic_write(path, "\n".join(lines) + "\n")


def plot(methods: dict, refs: dict, env, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    names = list(methods)
    for i, m in enumerate(names):
        r = methods[m]
        ax.bar(i, r["mean"], yerr=np.nan_to_num(r["ci95"]), capsize=4, color="tab:blue", alpha=0.6)
        ax.scatter(np.full(len(r["per_seed"]), i) + np.linspace(-0.2, 0.2, len(r["per_seed"])), r["per_seed"],
                   s=10, color="k", zorder=3)
    for (k, v), style in zip(refs.items(), ("--", ":", "-.", "-")):
        ax.axhline(v, ls=style, color="tab:red" if k == BOUND else "k", lw=1, label=k)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylabel("held-out return")
    ax.set_title(f"{type(env).__name__}: per-environment critics vs the merged data (dots: seeds)", fontsize="medium")
    ax.legend(fontsize=7)
    files.save_figure(fig, path)


if __name__ == "__main__":
    main()
