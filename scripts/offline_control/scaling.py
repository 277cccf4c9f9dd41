"""Experiment (b): held-out return against n (fixed N per environment) and against N (fixed n).

PERM (beta = 1) on FlipGate from uniform-random data, per seed its own contexts
c ~ +-U[0.5, 1] and data. Beside the learned policies, the exact held-out value of the
better of the two candidate blind policies *on the seed's training contexts* isolates the
part of the error due to having seen only n contexts (the "SL" error); the rest is the
learning ("RL") error from N transitions per environment.

    python scripts/offline_control/scaling.py              # n = 1..16 at N = 1000; N = 250..4000 at n = 8
    python scripts/offline_control/scaling.py --scale 2 --envs 1 2 4 8 16 32 64
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
from zsgjax.reporting import files, machine, stats  # noqa: E402

OUT = "docs/experiments/offline_control/scaling"


def one(n: int, N: int, seeds: int, scale: float, iterations: int) -> dict:
    cfg = E.small_perm_config(scale, iterations)
    data_s = E.datasets(10 + n, seeds, n, N, E.random_behaviour())
    r = E.run_method(f"PERM n={n} N={N}", C.make_perm(cfg), C.policy_of(cfg, E.first_seed(data_s)), data_s, n)
    sl = E.empirical_branch_held_out(np.asarray(data_s.contexts)[..., 0])
    m, ci = stats.mean_ci(sl)
    r.update(num_envs=n, transitions=N, sl_only_mean=float(m), sl_only_ci95=float(ci), sl_only_per_seed=sl.tolist())
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--transitions", type=int, nargs="+", default=[250, 1000, 4000])
    p.add_argument("--fixed-transitions", type=int, default=1000)
    p.add_argument("--fixed-envs", type=int, default=8)
    E.add_run_options(p, OUT, iterations=1000)
    args = p.parse_args()
    t0 = time.time()
    vs_n = [one(n, args.fixed_transitions, args.seeds, args.scale, args.iterations) for n in args.envs]
    done = {(r["num_envs"], r["transitions"]): r for r in vs_n}
    vs_N = [done.get((args.fixed_envs, N)) or one(args.fixed_envs, N, args.seeds, args.scale, args.iterations)
            for N in args.transitions]
    refs = E.reference_values()
    result = {"experiment": "offline_control/scaling", "args": vars(args), "machine": machine.machine_description(),
              "config": E.config_dict(E.small_perm_config(args.scale, args.iterations)),
              "closed_form_reference": refs, "vs_num_envs": vs_n, "vs_transitions": vs_N,
              "wall_seconds": time.time() - t0}
    files.write_json(args.out + ".json", result)
    lines = [f"# Held-out return of PERM on FlipGate against n and N ({args.seeds} seeds)", "",
             "Mean ± 95% Student-t half-width over seeds. `SL only` = exact held-out value of the better "
             "blind policy on the seed's training contexts (no learning error).", "",
             f"## Against n (N = {args.fixed_transitions} per environment)", "",
             "| n | PERM | SL only |", "|---|---|---|"]
    lines += [f"| {r['num_envs']} | {E.fmt(r)} | {r['sl_only_mean']:.2f} ± {r['sl_only_ci95']:.2f} |" for r in vs_n]
    lines += ["", f"## Against N (n = {args.fixed_envs})", "", "| N | PERM | SL only |", "|---|---|---|"]
    lines += [f"| {r['transitions']} | {E.fmt(r)} | {r['sl_only_mean']:.2f} ± {r['sl_only_ci95']:.2f} |" for r in vs_N]
    lines += ["", f"Best blind policy on the held-out contexts: {max(refs.values()):.2f}. "
              f"Wall time {result['wall_seconds']:.0f} s."]
    files.atomic_write(args.out + ".md", "\n".join(lines) + "\n")
    plot(vs_n, vs_N, refs, args, args.out + ".png")
    print("\n".join(lines))


def plot(vs_n, vs_N, refs, args, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    for ax, rows, key, label in ((axes[0], vs_n, "num_envs", f"n (N = {args.fixed_transitions})"),
                                 (axes[1], vs_N, "transitions", f"N per environment (n = {args.fixed_envs})")):
        x = [r[key] for r in rows]
        ax.errorbar(x, [r["mean"] for r in rows], yerr=[np.nan_to_num(r["ci95"]) for r in rows], marker="o",
                    capsize=3, label="PERM")
        ax.errorbar(x, [r["sl_only_mean"] for r in rows], yerr=[np.nan_to_num(r["sl_only_ci95"]) for r in rows],
                    marker="s", ls="--", capsize=3, label="SL only (exact)")
        ax.axhline(max(refs.values()), color="k", lw=1, ls=":", label="best blind policy")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(label)
    axes[0].set_ylabel("held-out return")
    axes[0].legend(fontsize=8)
    files.save_figure(fig, path)
    plt.close(fig)


if __name__ == "__main__":
    main()
