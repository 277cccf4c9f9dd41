"""Experiment (a): the average-MDP failure in continuous control (FlipGate).

n environments with contexts c = +-u, u ~ U[0.5, 1], half of each sign (as the paper's
equal-weight two-context example; FlipGate, delta = 0.1), N uniform-random transitions
each; per seed its own contexts and data. Held-out return (true rollouts,
ten held-out contexts over both signs) of

* PERM (per-environment critics, beta = 1) and PERM with beta = 0,
* the same algorithm on the merged data (the "average MDP"), and TD3+BC on the merged data,
* PPPO (the drawn iterate and the final one),

against the closed-form values of the derivation in docs/offline_control.md.

    python scripts/offline_control/average_mdp.py             # CPU-sized (a few minutes)
    python scripts/offline_control/average_mdp.py --scale 4   # 4x the iterations
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common as E  # noqa: E402
import numpy as np  # noqa: E402

from zsgjax.offline import control as C  # noqa: E402
from zsgjax.reporting import files, machine  # noqa: E402

OUT = "docs/experiments/offline_control/average_mdp"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--transitions", type=int, default=2000)
    E.add_run_options(p, OUT, iterations=None)
    args = p.parse_args()
    t0 = time.time()
    run = E.open_run(args)
    cfg = E.small_perm_config(args.scale)
    data_s = E.datasets(0, args.seeds, args.num_envs, args.transitions, E.random_behaviour(), balanced=True)
    policy = C.policy_of(cfg, E.first_seed(data_s))
    pppo_cfg = C.PPPOConfig(critic=cfg.critic, actor=cfg.actor, eval_steps=int(300 * args.scale),
                            improve_steps=int(100 * args.scale), step_size=1.0)
    methods = {}
    print(f"FlipGate, n={args.num_envs}, N={args.transitions} per env, {args.seeds} seeds")
    methods["PERM (beta=1)"] = E.run_method(run, "PERM (beta=1)", C.make_perm(cfg), policy, data_s, 0, config=cfg)
    methods["PERM (beta=0)"] = E.run_method(run, "PERM (beta=0)", C.make_no_pessimism(cfg), policy, data_s, 0,
                                            config=cfg)
    methods["merged data (average MDP)"] = E.run_method(run, "merged", C.make_merged(cfg), policy, data_s, 0,
                                                        config=cfg)
    methods["TD3+BC (merged data)"] = E.run_method(run, "TD3+BC", C.make_td3_bc(cfg), policy, data_s, 0, config=cfg)
    pppo, seconds = E.train_seeds(run, "PPPO", C.make_pppo(pppo_cfg), data_s, 0, pppo_cfg)
    methods["PPPO (drawn iterate)"] = E.report("PPPO drawn", policy, pppo.policy, seconds)
    methods["PPPO (final iterate)"] = E.report("PPPO final", policy, pppo.final, 0.0)
    refs = E.reference_values()
    neg_share = float(np.mean(np.asarray(data_s.contexts)[..., 0] < 0))
    result = {"experiment": "offline_control/average_mdp", "args": vars(args), "machine": machine.machine_description(),
              "config": E.config_dict(cfg), "pppo_config": E.config_dict(pppo_cfg),
              "held_out_contexts": E.HELD_OUT[:, 0].tolist(), "closed_form_reference": refs,
              "training_share_c_negative": neg_share,
              "training_contexts": np.asarray(data_s.contexts)[..., 0].tolist(), "methods": methods,
              "wall_seconds": time.time() - t0}
    files.write_json(run.path(".json"), result)
    lines = [f"# Average-MDP failure on FlipGate (n = {args.num_envs}, N = {args.transitions}, {args.seeds} seeds)", "",
             "Held-out return (10 contexts, both signs), mean ± 95% Student-t half-width over seeds; "
             "`first a` = the action at the start state, per seed.", "",
             "| method | held-out return | c < 0 | c > 0 | first a |", "|---|---|---|---|---|"]
    for m, r in methods.items():
        first = ", ".join(f"{a[0]:+.2f}" for a in r["actions_at_probes"])
        lines.append(f"| {m} | {E.fmt(r)} | {r['mean_c_neg']:.2f} | {r['mean_c_pos']:.2f} | {first} |")
    lines += ["", "Closed-form held-out values (docs/offline_control.md):", ""]
    lines += [f"* {k}: {v:.2f}" for k, v in refs.items()]
    lines += ["", f"Share of training contexts with c < 0: {neg_share:.2f}. Wall time {result['wall_seconds']:.0f} s."]
    files.atomic_write(run.path(".md"), "\n".join(lines) + "\n")
    plot(methods, refs, run.path(".png"))
    print("\n".join(lines))


def plot(methods: dict, refs: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    names = list(methods)
    means = [methods[m]["mean"] for m in names]
    cis = [0.0 if not np.isfinite(methods[m]["ci95"]) else methods[m]["ci95"] for m in names]
    ax.bar(range(len(names)), means, yerr=cis, capsize=4, color="tab:blue", alpha=0.8)
    for (k, v), style in zip(refs.items(), ("--", ":", "-.")):
        ax.axhline(v, ls=style, color="k", lw=1, label=k)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("held-out return")
    ax.set_title("FlipGate: per-environment pessimism vs the merged data")
    ax.legend(fontsize=7)
    files.save_figure(fig, path)
    plt.close(fig)


if __name__ == "__main__":
    main()
