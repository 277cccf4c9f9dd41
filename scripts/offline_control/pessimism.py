"""Experiment (c): pessimism ablation over beta (FlipGate, poor action coverage).

PERM with ``Q^- = mean - beta std`` over M = 4 critics, for several beta, on data whose
actions are ``clip(N(0, std^2), -1, 1)`` (std 0.15 by default: the rewarded actions +-1
are far outside the data), and, as a control, on uniform-random data. Per seed its own
contexts c ~ +-U[0.5, 1] and data; held-out return by true rollouts.

    python scripts/offline_control/pessimism.py
    python scripts/offline_control/pessimism.py --betas 0 1 4 --scale 2
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common as E  # noqa: E402
import numpy as np  # noqa: E402

from zsgjax.offline import control as C  # noqa: E402
from zsgjax.reporting import files, machine  # noqa: E402

OUT = "docs/experiments/offline_control/pessimism"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--betas", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 4.0])
    p.add_argument("--control-betas", type=float, nargs="*", default=[0.0, 4.0], help="betas run on random data")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--transitions", type=int, default=1000)
    p.add_argument("--noise-std", type=float, default=0.15)
    E.add_run_options(p, OUT, iterations=1000)
    args = p.parse_args()
    t0 = time.time()
    run = E.open_run(args)
    base = E.small_perm_config(args.scale, args.iterations)
    rows = []
    for label, behaviour, betas in (("narrow", E.narrow_behaviour(args.noise_std), args.betas),
                                    ("random", E.random_behaviour(), args.control_betas)):
        if not betas:
            continue
        data_s = E.datasets(3, args.seeds, args.num_envs, args.transitions, behaviour)
        policy = C.policy_of(base, E.first_seed(data_s))
        max_abs_action = float(np.abs(np.asarray(data_s.action)).max())
        for beta in betas:
            cfg = dataclasses.replace(base, critic=dataclasses.replace(base.critic, beta=float(beta)))
            r = E.run_method(run, f"{label} beta={beta:g}", C.make_perm(cfg), policy, data_s, 0, config=cfg)
            r.update(data=label, beta=float(beta), max_abs_data_action=max_abs_action)
            rows.append(r)
    refs = E.reference_values()
    result = {"experiment": "offline_control/pessimism", "args": vars(args), "machine": machine.machine_description(),
              "config": E.config_dict(base), "closed_form_reference": refs, "rows": rows,
              "wall_seconds": time.time() - t0}
    files.write_json(run.path(".json"), result)
    lines = [f"# Pessimism ablation: PERM on FlipGate (n = {args.num_envs}, N = {args.transitions}, {args.seeds} seeds)", "",
             f"`narrow`: behaviour actions clip(N(0, {args.noise_std}^2)); `random`: uniform. Held-out return, "
             "mean ± 95% Student-t half-width over seeds; `first a`: the learned action at the start, per seed.", "",
             "| data | beta | held-out return | c < 0 | c > 0 | first a | max abs data action |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        first = ", ".join(f"{a[0]:+.2f}" for a in r["actions_at_probes"])
        lines.append(f"| {r['data']} | {r['beta']:g} | {E.fmt(r)} | {r['mean_c_neg']:.2f} | {r['mean_c_pos']:.2f} | "
                     f"{first} | {r['max_abs_data_action']:.2f} |")
    lines += ["", f"Best blind policy on the held-out contexts: {max(refs.values()):.2f}. "
              f"Wall time {result['wall_seconds']:.0f} s."]
    files.atomic_write(run.path(".md"), "\n".join(lines) + "\n")
    plot(rows, refs, run.path(".png"))
    print("\n".join(lines))


def plot(rows, refs, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for label, marker in (("narrow", "o"), ("random", "s")):
        rr = [r for r in rows if r["data"] == label]
        if rr:
            ax.errorbar([r["beta"] for r in rr], [r["mean"] for r in rr], yerr=[np.nan_to_num(r["ci95"]) for r in rr],
                        marker=marker, capsize=3, label=f"{label} data")
    ax.axhline(max(refs.values()), color="k", lw=1, ls=":", label="best blind policy")
    ax.set_xlabel("beta (Q^- = mean - beta std)")
    ax.set_ylabel("held-out return")
    ax.legend(fontsize=8)
    files.save_figure(fig, path)
    plt.close(fig)


if __name__ == "__main__":
    main()
