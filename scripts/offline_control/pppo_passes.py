"""Experiment (d): what PPPO needs to reach PERM -- passes over the environments and the step size.

PPPO (zsgjax.offline.control.pppo) is online mirror descent over the environments: one
KL-proximal step per environment, so one pass (the paper's scheme) is T = n steps and its
output is an iterate drawn uniformly from pi_1..pi_T. This script measures, on the two
families of the other experiments and at n = 8, PPPO's held-out score against the number of
passes P (T = P n) and the step size (the KL coefficient is 1 / step_size), for the drawn
iterate and the last one, next to PERM on the same data and keys:

* FlipGate (delta = 0.1): n = 8 contexts (signs alternating), uniform-random data,
  N transitions each; score = held-out return on the ten contexts of
  scripts/offline_control/common.py (true rollouts; higher is better);
* GoalLine (H = 10): n = 8 goals g = 2 u^2 - 1, uniform-random data; score = minus the
  exact held-out regret on 64 goal quantiles (eq. (1) of docs/offline_control.md applied
  to the learned blind trajectory; higher is better).

Per seed: its own contexts, data and key; the seeds train in one vmap per cell (checkpointed).
The claims and their test are fixed in ``PREREGISTERED`` (written to the JSON before training).

    python scripts/offline_control/pppo_passes.py                      # 10 seeds, CPU-sized
    python scripts/offline_control/pppo_passes.py --seeds 20 --eval-steps 500 --improve-steps 100  # on a GPU
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
from zsgjax.offline.control import collect as collect_mod  # noqa: E402
from zsgjax.offline.control import goal_line as G  # noqa: E402
from zsgjax.offline.runner import open_run  # noqa: E402
from zsgjax.reporting import files, machine, stats  # noqa: E402

OUT = "docs/experiments/offline_control/pppo_passes"
if "goal_line" not in registry.registered_names():
    registry.register("goal_line", "zsgjax.offline.control.goal_line:GoalLine")
GOAL_POWER = 2.0
HELD_GOALS = G.goal_quantiles(64, GOAL_POWER)

PREREGISTERED = tuple(
    claim for task in ("flip_gate", "goal_line") for claim in (
        {"id": f"{task}_passes_help", "task": task, "a": "PPPO P=16 step=1 drawn", "b": "PPPO P=1 step=1 drawn",
         "kind": "greater", "claim": f"{task}: 16 passes score higher than the paper's single pass (drawn iterate)"},
        {"id": f"{task}_reaches_perm_drawn", "task": task, "a": "PERM", "b": "PPPO P=16 step=1 drawn",
         "kind": "two-sided", "claim": f"{task}: PERM against PPPO with 16 passes, drawn iterate"},
        {"id": f"{task}_reaches_perm_final", "task": task, "a": "PERM", "b": "PPPO P=16 step=1 final",
         "kind": "two-sided", "claim": f"{task}: PERM against PPPO with 16 passes, last iterate"},
        {"id": f"{task}_single_pass_below_perm", "task": task, "a": "PERM", "b": "PPPO P=1 step=1 drawn",
         "kind": "greater", "claim": f"{task}: PERM scores higher than the paper's single pass (drawn iterate)"},
    ))
TEST_RULE = ("paired per-seed difference a - b of the score, two-sided 95% Student-t interval over seeds; "
             "greater: holds if the interval lies above 0, contradicted if below, else not shown; two-sided: "
             "a > b / a < b if the interval excludes 0, else no significant difference")


def goal_data(args):
    """GoalLine: per seed its own n goals and uniform-random data; ``(data (S, n, N, ...), goals (S, n))``."""
    out, goals = [], []
    for s in range(args.seeds):
        k_ctx, k_data = jax.random.split(jax.random.PRNGKey(7000 + s))
        g = np.asarray(G.sample_goals(k_ctx, args.num_envs, GOAL_POWER))
        data, _ = collect_mod.collect(k_data, "goal_line", g, E.random_behaviour(), args.transitions,
                                      streams=math.gcd(16, args.transitions // 10))
        out.append(data)
        goals.append(g[:, 0])
    return jax.tree.map(lambda *xs: jnp.stack(xs), *out), np.stack(goals)


def goal_score(policy, params_s) -> np.ndarray:
    """``(S,)`` minus the exact held-out regret of each seed's blind policy (eq. (1))."""
    env = G.GoalLine()
    act = lambda p, x: policy.act(p, x[None], jnp.zeros((policy.context_dim,)))[0]  # noqa: E731
    pos = np.asarray(jax.jit(jax.vmap(lambda p: G.blind_positions(env, act, p)))(params_s), np.float64)
    return -G.blind_regret(pos, HELD_GOALS[:, 0])


def flip_score(policy, params_s) -> np.ndarray:
    return np.asarray(E.held_out(policy, params_s)["per_seed"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["flip_gate", "goal_line"], choices=["flip_gate", "goal_line"])
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--transitions", type=int, default=1000)
    p.add_argument("--passes", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--step-sizes", type=float, nargs="+", default=[0.1, 1.0, 10.0])
    p.add_argument("--eval-steps", type=int, default=200)
    p.add_argument("--improve-steps", type=int, default=50)
    E.add_run_options(p, OUT, iterations=1000)
    p.set_defaults(seeds=10)
    args = p.parse_args()
    if 1 not in args.passes or 16 not in args.passes or 1.0 not in args.step_sizes:
        raise SystemExit("error: the pre-registered claims need passes 1 and 16 and step size 1")
    t0 = time.time()
    run = open_run(args.out, vars(args), args.resume)  # (common.open_run calls itself: not used)
    result = {"experiment": "offline_control/pppo_passes", "args": vars(args),
              "machine": machine.machine_description("2 CPU cores shared with other processes"),
              "preregistered": [c for c in PREREGISTERED if c["task"] in args.tasks], "test_rule": TEST_RULE,
              "done": False}
    files.write_json(run.path(".json"), result)  # the claims are on disk before any training
    tasks = {}
    for task in args.tasks:
        if task == "flip_gate":
            data_s = E.datasets(11, args.seeds, args.num_envs, args.transitions, E.random_behaviour(), balanced=True)
            perm_cfg = E.small_perm_config(args.scale, args.iterations)
            score = flip_score
        else:
            data_s, _ = goal_data(args)
            base = E.small_perm_config(args.scale, args.iterations)
            perm_cfg = dataclasses.replace(  # GoalLine's setup (scripts/offline_control/scaling.py): Adam 1e-2
                base, critic=dataclasses.replace(base.critic, learning_rate=1e-2),
                actor=dataclasses.replace(base.actor, learning_rate=1e-2))
            score = goal_score
        policy = C.policy_of(perm_cfg, E.first_seed(data_s))
        arms, rows = {}, []
        res, sec = E.train_seeds(run, f"{task} PERM", C.make_perm(perm_cfg), data_s, 0, perm_cfg)
        arms["PERM"] = score(policy, res.policy_params)
        rows.append({"method": "PERM", "seconds": sec, "per_seed": arms["PERM"].tolist()})
        print(f"  {task} PERM: {summary(arms['PERM'])}", flush=True)
        for step in args.step_sizes:
            for passes in args.passes:
                cfg = C.PPPOConfig(critic=perm_cfg.critic, actor=perm_cfg.actor, eval_steps=args.eval_steps,
                                   improve_steps=args.improve_steps, step_size=step, passes=passes)
                res, sec = E.train_seeds(run, f"{task} PPPO P={passes} step={step:g}", C.make_pppo(cfg), data_s, 0, cfg)
                for which, params in (("drawn", res.policy), ("final", res.final)):
                    name = f"PPPO P={passes} step={step:g} {which}"
                    arms[name] = score(policy, params)
                    rows.append({"method": "PPPO", "passes": passes, "step_size": step, "iterate": which,
                                 "seconds": sec, "per_seed": arms[name].tolist(),
                                 **({"drawn_index": np.asarray(res.index).tolist()} if which == "drawn" else {})})
                    print(f"  {task} {name}: {summary(arms[name])}", flush=True)
        verdicts = [{**c, **stats.paired_verdict(arms[c["a"]], arms[c["b"]], c["kind"])}
                    for c in PREREGISTERED if c["task"] == task]
        tasks[task] = {"rows": rows, "verdicts": verdicts, "perm_config": E.config_dict(perm_cfg)}
        result.update(tasks=tasks)
        files.write_json(run.path(".json"), result)
    result.update(done=True, wall_seconds=time.time() - t0)
    files.write_json(run.path(".json"), result)
    write_markdown(run.path(".md"), args, tasks, result["wall_seconds"])
    plot(tasks, args, run.path(".png"))


def summary(per_seed) -> str:
    m, h = stats.mean_ci(np.asarray(per_seed, np.float64))
    return f"{float(m):.3f} ± {float(h):.3f}"


SCORE = {"flip_gate": "held-out return", "goal_line": "minus held-out regret"}


def write_markdown(path, args, tasks, wall) -> None:
    lines = [f"# PPPO against PERM: passes and step size (n = {args.num_envs}, N = {args.transitions}, "
             f"{args.seeds} seeds)", "",
             f"PPPO: {args.eval_steps} FQE steps per environment visit, {args.improve_steps} proximal Adam steps; "
             f"PERM: {args.iterations} iterations x scale {args.scale}. Mean ± 95% Student-t half-width over seeds.", ""]
    for task, t in tasks.items():
        lines += [f"## {task} ({SCORE[task]}; higher is better)", "", "| method | passes P | step size | iterate | score |",
                  "|---|---|---|---|---|"]
        for r in t["rows"]:
            if r["method"] == "PERM":
                lines.append(f"| PERM | | | | {summary(r['per_seed'])} |")
            else:
                lines.append(f"| PPPO | {r['passes']} | {r['step_size']:g} | {r['iterate']} | {summary(r['per_seed'])} |")
        lines += ["", "| pre-registered claim | a - b | interval | verdict |", "|---|---|---|---|"]
        for v in t["verdicts"]:
            lines.append(f"| {v['claim']} | {v['diff']:+.3f} | [{v['interval'][0]:+.3f}, {v['interval'][1]:+.3f}] | "
                         f"**{v['verdict']}** |")
        lines.append("")
    lines.append(f"Wall time {wall:.0f} s.")
    files.atomic_write(path, "\n".join(lines) + "\n")
    print("\n".join(lines))


def plot(tasks, args, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 3.8), squeeze=False)
    for ax, (task, t) in zip(axes[0], tasks.items()):
        perm = [r for r in t["rows"] if r["method"] == "PERM"][0]
        m, h = stats.mean_ci(np.asarray(perm["per_seed"]))
        ax.axhspan(m - h, m + h, color="k", alpha=0.12)
        ax.axhline(m, color="k", lw=1, label="PERM")
        for step in args.step_sizes:
            for which, ls in (("drawn", "-"), ("final", "--")):
                rr = [r for r in t["rows"] if r["method"] == "PPPO" and r["step_size"] == step and r["iterate"] == which]
                mh = [stats.mean_ci(np.asarray(r["per_seed"])) for r in rr]
                ax.errorbar([r["passes"] for r in rr], [a for a, _ in mh], yerr=[b for _, b in mh], ls=ls, marker="o",
                            capsize=3, label=f"PPPO step {step:g}, {which}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("passes over the n = %d environments" % args.num_envs)
        ax.set_ylabel(SCORE[task])
        ax.set_title(task)
        ax.legend(fontsize=7)
    files.save_figure(fig, path)
    plt.close(fig)


if __name__ == "__main__":
    main()
