"""Experiment (c): the pessimism ablation (beta = 0 against beta > 0) under poor coverage.

The random contextual linear MDP of experiment (b) (simplex features, d = 4). The
variant ``--features tabular --num-episodes 20 --out docs/offline_pessimism_tabular``
uses one-hot features instead (each action valued from its own few samples). The behaviour policy is
``(1 - coverage) * expert + coverage * uniform``, the expert being the zero-shot optimal
deterministic policy on the held-out contexts: small ``coverage`` means the data
concentrate on the expert's actions and barely cover the others. PERM (exact, by
enumeration) is run with beta = 0 and with several multiples of the theory's beta,
and PERM by gradient ascent with beta = 0 and the default beta; the suboptimality on
1000 held-out contexts is reported for each coverage level.

    python scripts/offline/pessimism.py            # writes docs/offline_pessimism.{png,json}
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
from zsgjax.offline.linear import LinearData, dataset, mdp, perm, pevi, policies  # noqa: E402
from zsgjax.offline.runner import OfflineRun, open_run  # noqa: E402
from zsgjax.reporting import files, machine, stats  # noqa: E402


@dataclasses.dataclass
class Config:
    num_states: int = 4
    num_actions: int = 2
    horizon: int = 3
    dim: int = 4
    features: str = "simplex"  # or "tabular" (one-hot phi, d = S*A; see the module docstring)
    num_bases: int = 3
    context_concentration: float = 0.3
    num_envs: int = 16
    num_episodes: int = 50
    coverages: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)
    beta_scales: tuple[float, ...] = (0.0, 0.005, 0.02, 0.1)  # multiples of theory_beta; 0.02 = default
    seeds: int = 8
    test_contexts: int = 1000
    family_seed: int = 0
    out: str = "docs/offline_pessimism"
    resume: bool = False  # reuse the rows checkpointed by an earlier run with the same settings (OUT.checkpoints/)


def run(cfg: Config, driver: OfflineRun) -> dict:
    """Each coverage (all seeds) is a checkpointed cell of ``driver``."""
    fam = mdp.random_contextual_mdp(
        jax.random.PRNGKey(cfg.family_seed), cfg.num_states, cfg.num_actions, cfg.horizon, cfg.num_bases,
        None if cfg.features == "tabular" else cfg.dim, features=cfg.features,
    )
    H, S, A, d = fam.horizon, fam.num_states, fam.num_actions, fam.dim
    conc = jnp.full((cfg.num_bases,), cfg.context_concentration)
    test = jax.random.dirichlet(jax.random.PRNGKey(10_000 + cfg.family_seed), conc, (cfg.test_contexts,))
    actions = policies.enumerate_deterministic_policies(S, A, H)
    test_values = np.asarray(mdp.deterministic_zero_shot_values(fam, test, actions))
    best = int(test_values.argmax())
    optimum = float(test_values[best])
    expert = policies.deterministic_policy(actions[best], A)
    theory = pevi.theory_beta(d, H, cfg.num_episodes)
    value = lambda pi: float(mdp.zero_shot_value(fam, test, pi))  # noqa: E731
    methods = [f"PERM enum, beta={s:g} x theory" for s in cfg.beta_scales] + ["PERM gradient, beta=0", "PERM gradient, default beta"]
    sub = {m: np.zeros((len(cfg.coverages), cfg.seeds)) for m in methods}
    for i, cov in enumerate(cfg.coverages):

        def row(cov=cov):
            behaviour = dataset.behaviour_policy(expert, cov)
            out = {m: np.zeros(cfg.seeds) for m in methods}
            for s in range(cfg.seeds):
                k_ctx, k_data, k_perm = jax.random.split(jax.random.PRNGKey(s), 3)
                contexts = jax.random.dirichlet(k_ctx, conc, (cfg.num_envs,))
                data = LinearData(fam.phi, dataset.collect_dataset(k_data, fam, contexts, behaviour, cfg.num_episodes))
                for scale in cfg.beta_scales:
                    enum = perm.perm_enumerate(data, scale * theory)
                    out[f"PERM enum, beta={scale:g} x theory"][s] = optimum - test_values[int(jnp.argmax(enum.objectives))]
                for name, beta in (("PERM gradient, beta=0", 0.0),
                                   ("PERM gradient, default beta", pevi.default_beta(d, H, cfg.num_episodes))):
                    out[name][s] = optimum - value(perm.run_perm(k_perm, data, perm.PERMConfig(beta)).policy)
            return out

        got = driver.compute(f"coverage={cov:g}", row, {m: np.zeros(cfg.seeds) for m in methods})
        for m in methods:
            sub[m][i] = got[m]
        print(f"coverage {cov}: " + ", ".join(f"{m}: {sub[m][i].mean():.4f}" for m in methods), flush=True)
    return dict(optimum=optimum, theory_beta=theory, methods=methods, sub=sub)


def main(cfg: Config) -> None:
    driver = open_run(cfg.out, cfg, cfg.resume)
    t0 = time.time()
    res = run(cfg, driver)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.4))
    for m in res["methods"]:
        vals = res["sub"][m]
        sem = stats.mean_ci(vals.T)[1]  # 95% Student-t half-width over seeds
        ax.errorbar(cfg.coverages, vals.mean(1), yerr=sem, marker="o" if "enum" in m else "s",
                    ls="-" if "enum" in m else "--", capsize=3, label=m)
    ax.set_xscale("log")
    ax.set_xlabel("coverage (weight of the uniform policy in the behaviour)")
    ax.set_ylabel("zero-shot suboptimality (held-out contexts)")
    ax.set_title(f"Pessimism ablation, n={cfg.num_envs}, K={cfg.num_episodes}, {cfg.seeds} seeds (mean ± 95% t-interval)")
    ax.legend(fontsize=7)
    files.save_figure(fig, cfg.out + ".png")
    payload = {
        "experiment": "pessimism",
        "config": dataclasses.asdict(cfg),
        "zero_shot_optimum": res["optimum"],
        "theory_beta": res["theory_beta"],
        "default_beta": pevi.default_beta(cfg.num_states * cfg.num_actions if cfg.features == "tabular" else cfg.dim, cfg.horizon, cfg.num_episodes),
        "coverages": list(cfg.coverages),
        "suboptimality_mean": {m: v.mean(1) for m, v in res["sub"].items()},
        "suboptimality_sem": {m: v.std(1, ddof=1) / np.sqrt(v.shape[1]) for m, v in res["sub"].items()},
        "suboptimality_per_seed": res["sub"],
        "wall_seconds": time.time() - t0,
        "machine": machine.machine_description("2 CPU cores shared with other processes"),
    }
    files.write_json(cfg.out + ".json", payload)
    print(f"wrote {cfg.out}.png/.json in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main(parse_dataclass(Config, description=__doc__.split("\n\n")[0]))
