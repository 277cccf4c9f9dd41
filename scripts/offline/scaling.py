"""Experiment (b): suboptimality on held-out contexts against n (K fixed) and against K (n fixed).

A random contextual linear MDP (S=4 states, A=2 actions, H=3, d=4 simplex features,
3 bases; contexts ~ Dirichlet(0.3)). For each seed one dataset of n_max environments x
K_max uniform-behaviour episodes is collected, and the sweeps use its nested subsets
(the first n environments, the first K episodes). Methods: PERM (exact, by enumeration
over the 4096 deterministic Markov policies) and PPPO (mixture of iterates, with the
theory step and with step 1). Suboptimality = zero-shot optimum - zero-shot value, both exact on 1000
held-out contexts. Log-log slopes of the seed-mean suboptimality are fitted and put
next to the paper's 1/sqrt(n) rate (slope -0.5).

    python scripts/offline/scaling.py            # writes docs/offline_scaling.{png,json}
"""

from __future__ import annotations

import dataclasses
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from zsgjax.options import parse_dataclass  # noqa: E402
from zsgjax.offline.linear import LinearData, dataset, mdp, perm, pevi, policies, pppo  # noqa: E402
from zsgjax.offline.runner import OfflineRun, open_run  # noqa: E402
from zsgjax.reporting import files, machine, stats  # noqa: E402


@dataclasses.dataclass
class Config:
    num_states: int = 4
    num_actions: int = 2
    horizon: int = 3
    dim: int = 4
    num_bases: int = 3
    context_concentration: float = 0.3
    envs: tuple[int, ...] = (2, 4, 8, 16, 32, 64, 128, 256)
    episodes_fixed: int = 100
    episodes: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
    envs_fixed: int = 64
    seeds: int = 12
    test_contexts: int = 1000
    family_seed: int = 0
    out: str = "docs/offline_scaling"
    resume: bool = False  # reuse the seeds checkpointed by an earlier run with the same settings (OUT.checkpoints/)


def run(cfg: Config, driver: OfflineRun) -> dict:
    """Each seed (both sweeps) is a checkpointed cell of ``driver``."""
    fam = mdp.random_contextual_mdp(
        jax.random.PRNGKey(cfg.family_seed), cfg.num_states, cfg.num_actions, cfg.horizon, cfg.num_bases, cfg.dim
    )
    H, S, A, d = fam.horizon, fam.num_states, fam.num_actions, fam.dim
    conc = jnp.full((cfg.num_bases,), cfg.context_concentration)
    test = jax.random.dirichlet(jax.random.PRNGKey(10_000 + cfg.family_seed), conc, (cfg.test_contexts,))
    actions = policies.enumerate_deterministic_policies(S, A, H)
    test_values = np.asarray(mdp.deterministic_zero_shot_values(fam, test, actions))
    optimum = float(test_values.max())
    per_context_opt = float(jax.vmap(lambda c: mdp.optimal_value(fam.at(c)))(test).mean())
    uniform_value = float(mdp.zero_shot_value(fam, test, dataset.uniform_policy(H, S, A)))
    print(f"zero-shot optimum {optimum:.4f}, mean per-context optimum {per_context_opt:.4f}, uniform policy {uniform_value:.4f}", flush=True)

    n_max, k_max = max(max(cfg.envs), cfg.envs_fixed), max(max(cfg.episodes), cfg.episodes_fixed)
    sweeps = {"n": [(n, cfg.episodes_fixed) for n in cfg.envs], "K": [(cfg.envs_fixed, k) for k in cfg.episodes]}
    methods = ("PERM", "PPPO (theory step)", "PPPO (step 1)")
    sub = {name: {m: np.zeros((len(pts), cfg.seeds)) for m in methods} for name, pts in sweeps.items()}
    def one_seed(s: int) -> dict:
        k_ctx, k_data, k_pppo = jax.random.split(jax.random.PRNGKey(s), 3)
        contexts = jax.random.dirichlet(k_ctx, conc, (n_max,))
        full = dataset.collect_dataset(k_data, fam, contexts, dataset.uniform_policy(H, S, A), k_max)
        out = {name: {m: np.zeros(len(pts)) for m in methods} for name, pts in sweeps.items()}
        for name, pts in sweeps.items():
            for j, (n, K) in enumerate(pts):
                data = LinearData(fam.phi, full.subset(n, K))
                beta = pevi.default_beta(d, H, K)
                enum = perm.perm_enumerate(data, beta)
                out[name]["PERM"][j] = optimum - test_values[int(jnp.argmax(enum.objectives))]
                for m, step in (("PPPO (theory step)", None), ("PPPO (step 1)", 1.0)):
                    it = pppo.run_pppo(k_pppo, data, pppo.PPPOConfig(beta, step_size=step)).iterates
                    out[name][m][j] = optimum - float(pppo.mixture_zero_shot_value(fam, test, it))
        return out

    like = {name: {m: np.zeros(len(pts)) for m in methods} for name, pts in sweeps.items()}
    for s in range(cfg.seeds):
        got = driver.compute(f"seed={s}", lambda s=s: one_seed(s), like)
        for name in sweeps:
            for m in methods:
                sub[name][m][:, s] = got[name][m]
        print(f"seed {s}: PERM n-sweep {np.round(sub['n']['PERM'][:, s], 4).tolist()}", flush=True)
    xs = {"n": list(cfg.envs), "K": list(cfg.episodes)}
    slopes = {name: {m: stats.loglog_slope(xs[name], sub[name][m].mean(1), drop_nonpositive=True) for m in methods} for name in sweeps}
    fitted_points = {name: {m: int(np.sum(sub[name][m].mean(1) > 0)) for m in methods} for name in sweeps}
    return dict(optimum=optimum, per_context_opt=per_context_opt, uniform_value=uniform_value, sub=sub, xs=xs, slopes=slopes,
                methods=methods, fitted_points=fitted_points)


def main(cfg: Config) -> None:
    driver = open_run(cfg.out, cfg, cfg.resume)
    t0 = time.time()
    res = run(cfg, driver)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, name, fixed in ((axes[0], "n", f"K={cfg.episodes_fixed}"), (axes[1], "K", f"n={cfg.envs_fixed}")):
        x = np.asarray(res["xs"][name], float)
        for m, marker in zip(res["methods"], "osD"):
            vals = res["sub"][name][m]
            sem = stats.mean_ci(vals.T)[1]  # 95% Student-t half-width over seeds
            mean = vals.mean(1)
            keep = mean > 0  # a mean of exactly 0 (every seed optimal) cannot sit on a log axis
            ax.errorbar(x[keep], mean[keep], yerr=sem[keep], marker=marker, capsize=3, label=f"{m} (slope {res['slopes'][name][m]:.2f})")
        ref = res["sub"][name]["PERM"].mean(1)[0] * np.sqrt(x[0] / x)
        ax.plot(x, ref, "k--", lw=1, label="1/sqrt(.) reference (slope -0.5)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("environments n" if name == "n" else "episodes per environment K")
        ax.set_ylabel("zero-shot suboptimality (held-out contexts)")
        ax.set_title(f"vs {name} ({fixed}, {cfg.seeds} seeds, mean ± 95% t-interval)")
        ax.legend(fontsize=8)
    files.save_figure(fig, cfg.out + ".png")
    payload = {
        "experiment": "scaling",
        "config": dataclasses.asdict(cfg),
        "zero_shot_optimum": res["optimum"],
        "mean_per_context_optimum": res["per_context_opt"],
        "uniform_policy_value": res["uniform_value"],
        "x": res["xs"],
        "suboptimality_mean": {k: {m: v.mean(1) for m, v in d.items()} for k, d in res["sub"].items()},
        "suboptimality_sem": {k: {m: v.std(1, ddof=1) / np.sqrt(v.shape[1]) for m, v in d.items()} for k, d in res["sub"].items()},
        "suboptimality_per_seed": res["sub"],
        "loglog_slopes": res["slopes"],
        "loglog_fit_points": res["fitted_points"],
        "loglog_fit_note": "slopes fitted on the sweep points whose seed-mean suboptimality is > 0; points where every seed found the optimum (mean 0) are left out of the fit and the plot",
        "paper_rate_slope": -0.5,
        "wall_seconds": time.time() - t0,
        "machine": machine.machine_description("2 CPU cores shared with other processes"),
    }
    files.write_json(cfg.out + ".json", payload)
    print(f"slopes {res['slopes']}; wrote {cfg.out}.png/.json in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main(parse_dataclass(Config, description=__doc__.split("\n\n")[0]))
