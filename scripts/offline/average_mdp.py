"""Experiment (a): the "average MDP" failure on the two-context construction.

n environments, half of them in each of the two contexts of
:func:`zsgjax.offline.linear.mdp.two_context_mdp` (so the pooled data are exactly those
of the equal-weight average MDP of the Proposition), K episodes each from the uniform
behaviour policy. Compares the zero-shot value (exact, uniform over both contexts) of

* merged PEVI (context labels dropped: the average MDP),
* PERM (gradient ascent over softmax-linear policies; and by enumeration),
* PPPO (mixture of the iterates, theory step and step 1; and its final iterate),
* PERM with beta = 0,

against the zero-shot optimum 0.5, for several K and seeds. A second panel runs PPPO
alone for growing n (K fixed): it takes one mirror-descent step per environment, so
it needs many environments on this construction.

    python scripts/offline/average_mdp.py            # writes docs/offline_average_mdp.{png,json}
"""

from __future__ import annotations

import dataclasses
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from zsgjax.options import parse_dataclass  # noqa: E402
from zsgjax.offline.linear import LinearData, baselines, dataset, mdp, perm, pevi, pppo  # noqa: E402
from zsgjax.offline.runner import OfflineRun, open_run  # noqa: E402
from zsgjax.reporting import files, machine, stats  # noqa: E402


@dataclasses.dataclass
class Config:
    delta: float = 0.05
    num_envs: int = 10  # even: half per context
    episodes: tuple[int, ...] = (10, 30, 100, 300, 1000)
    seeds: int = 5
    pppo_envs: tuple[int, ...] = (10, 40, 160, 640)
    pppo_episodes: int = 100
    out: str = "docs/offline_average_mdp"
    resume: bool = False  # reuse the rows checkpointed by an earlier run with the same settings (OUT.checkpoints/)


def run(cfg: Config, driver: OfflineRun) -> dict:
    """Each row (one K; one n of PPPO's sweep) is a checkpointed cell of ``driver``: all seeds' values."""
    if cfg.num_envs < 2 or cfg.num_envs % 2:
        raise ValueError(f"average_mdp: `num_envs` must be even and >= 2, got {cfg.num_envs}")
    fam, support = mdp.two_context_mdp(cfg.delta)
    H, S, A, d = fam.horizon, fam.num_states, fam.num_actions, fam.dim
    behaviour = dataset.uniform_policy(H, S, A)
    value = lambda pi: float(mdp.zero_shot_value(fam, support, pi))  # noqa: E731
    methods = ["merged PEVI", "PERM (gradient)", "PERM (enumeration)", "PPPO mixture (theory step)", "PPPO mixture (step 1)", "PPPO final iterate (step 1)", "PERM beta=0"]
    table = {m: np.zeros((len(cfg.episodes), cfg.seeds)) for m in methods}
    betas = {}
    like = {m: np.zeros(cfg.seeds) for m in methods}
    for i, K in enumerate(cfg.episodes):
        beta = pevi.default_beta(d, H, K)
        betas[K] = beta

        def row(K=K, beta=beta):
            out = {m: np.zeros(cfg.seeds) for m in methods}
            for s in range(cfg.seeds):
                key = jax.random.PRNGKey(1000 * s + K)
                k_data, k_perm, k_pppo = jax.random.split(key, 3)
                ids = np.arange(cfg.num_envs) % 2
                data = LinearData(fam.phi, dataset.collect_dataset(k_data, fam, support[ids], behaviour, K,
                                                                   context_ids=ids))
                merged = baselines.merged_pevi(data, pevi.default_beta(d, H, cfg.num_envs * K))
                out["merged PEVI"][s] = value(merged.policy)
                out["PERM (gradient)"][s] = value(perm.run_perm(k_perm, data, perm.PERMConfig(beta)).policy)
                out["PERM (enumeration)"][s] = value(perm.perm_enumerate(data, beta).policy)
                it = pppo.run_pppo(k_pppo, data, pppo.PPPOConfig(beta)).iterates
                out["PPPO mixture (theory step)"][s] = float(pppo.mixture_zero_shot_value(fam, support, it))
                out1 = pppo.run_pppo(k_pppo, data, pppo.PPPOConfig(beta, step_size=1.0))
                out["PPPO mixture (step 1)"][s] = float(pppo.mixture_zero_shot_value(fam, support, out1.iterates))
                out["PPPO final iterate (step 1)"][s] = value(out1.final)
                no_pess = jax.jit(baselines.make_no_pessimism(perm.PERMConfig()))(k_perm, data)
                out["PERM beta=0"][s] = value(no_pess.policy)
            return out

        got = driver.compute(f"K={K}", row, like)
        for m in methods:
            table[m][i] = got[m]
        print(f"K={K}: " + ", ".join(f"{m} {table[m][i].mean():.3f}" for m in methods), flush=True)
    pppo_table = {name: np.zeros((len(cfg.pppo_envs), cfg.seeds)) for name in ("theory step", "step 1")}
    beta = pevi.default_beta(d, H, cfg.pppo_episodes)
    for i, n in enumerate(cfg.pppo_envs):

        def pppo_row(n=n):
            ids = np.arange(n) % 2
            out = {name: np.zeros(cfg.seeds) for name in pppo_table}
            for s in range(cfg.seeds):
                k_data, k_pppo = jax.random.split(jax.random.PRNGKey(7919 * s + n))
                data = LinearData(fam.phi, dataset.collect_dataset(k_data, fam, support[ids], behaviour,
                                                                   cfg.pppo_episodes, context_ids=ids))
                for name, step in (("theory step", None), ("step 1", 1.0)):
                    it = pppo.run_pppo(k_pppo, data, pppo.PPPOConfig(beta, step_size=step)).iterates
                    out[name][s] = float(pppo.mixture_zero_shot_value(fam, support, it))
            return out

        got = driver.compute(f"PPPO n={n}", pppo_row, {name: np.zeros(cfg.seeds) for name in pppo_table})
        for name in pppo_table:
            pppo_table[name][i] = got[name]
        print(f"PPPO n={n}: " + ", ".join(f"{k} {v[i].mean():.3f}" for k, v in pppo_table.items()), flush=True)
    return {"methods": methods, "table": table, "betas": betas, "pppo_table": pppo_table}


def main(cfg: Config) -> None:
    driver = open_run(cfg.out, cfg, cfg.resume)
    t0 = time.time()
    res = run(cfg, driver)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for m in res["methods"]:
        vals = res["table"][m]
        ax.errorbar(cfg.episodes, vals.mean(1), yerr=vals.std(1), marker="o", capsize=3, label=m)
    ax.axhline(0.5, color="k", ls="--", lw=1, label="zero-shot optimum 0.5")
    ax.axhline(cfg.delta, color="gray", ls=":", lw=1, label=f"average-MDP policy (delta={cfg.delta})")
    ax.set_xscale("log")
    ax.set_xlabel("episodes per environment K")
    ax.set_ylabel("zero-shot value E_c[V_c^pi] (exact)")
    ax.set_title(f"Two-context construction, n={cfg.num_envs} environments, {cfg.seeds} seeds")
    ax.legend(fontsize=7, loc="center right")
    for name, vals in res["pppo_table"].items():
        ax2.errorbar(cfg.pppo_envs, vals.mean(1), yerr=vals.std(1), marker="s", capsize=3, label=f"PPPO mixture ({name})")
    ax2.axhline(0.5, color="k", ls="--", lw=1, label="zero-shot optimum 0.5")
    ax2.axhline(cfg.delta, color="gray", ls=":", lw=1, label="average-MDP policy")
    ax2.set_xscale("log")
    ax2.set_xlabel("environments n (one mirror-descent step each)")
    ax2.set_ylabel("zero-shot value (exact)")
    ax2.set_title(f"PPPO against n, K={cfg.pppo_episodes}")
    ax2.legend(fontsize=7)
    files.save_figure(fig, cfg.out + ".png")
    payload = {
        "experiment": "average_mdp",
        "config": dataclasses.asdict(cfg),
        "zero_shot_optimum": 0.5,
        "average_mdp_policy_value": cfg.delta,
        "beta_per_K": res["betas"],
        "mean": {m: res["table"][m].mean(1) for m in res["methods"]},
        "std": {m: res["table"][m].std(1) for m in res["methods"]},
        "per_seed": {m: res["table"][m] for m in res["methods"]},
        "pppo_vs_n": {
            "envs": list(cfg.pppo_envs),
            "mean": {k: v.mean(1) for k, v in res["pppo_table"].items()},
            "std": {k: v.std(1) for k, v in res["pppo_table"].items()},
        },
        "wall_seconds": time.time() - t0,
        "machine": machine.machine_description("2 CPU cores shared with other processes"),
    }
    files.write_json(cfg.out + ".json", payload)
    print(f"wrote {cfg.out}.png/.json in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main(parse_dataclass(Config, description=__doc__.split("\n\n")[0]))
