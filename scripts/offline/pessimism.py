"""Experiment (c): the pessimism ablation (Gamma = 0 against a validated beta > 0) under poor coverage.

The random contextual linear MDP of experiment (b) (simplex features, d = 4). The
variant ``--features tabular --num-episodes 20 --out docs/offline_pessimism_tabular``
uses one-hot features instead (each action valued from its own few samples). The behaviour policy is
``(1 - coverage) * expert + coverage * uniform``, the expert being the zero-shot optimal
deterministic policy on the test contexts: small ``coverage`` means the data concentrate
on the expert's actions and barely cover the others. PERM (exact, by enumeration) is run
with every multiple of the theory's beta in ``beta_scales`` (0 included: no pessimism).

Selection rule (never the test contexts): each seed draws ``val_contexts`` validation
contexts from the context law, independently of its training and of the test contexts;
for each coverage and seed, the selected beta is the one whose PERM policy has the highest
exact zero-shot value on the seed's validation contexts (ties: the smallest beta). The
suboptimality on the ``test_contexts`` test contexts is reported for every beta and for
the selected one. The claims and their test (``PREREGISTERED``) are written to the JSON
before any computation.

    python scripts/offline/pessimism.py            # writes docs/offline_pessimism.{png,json,md}
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

PREREGISTERED = {
    "claim": "at each coverage, PERM with beta selected on validation contexts has lower test suboptimality than "
             "PERM with beta = 0 (Gamma = 0)",
    "a": "beta = 0", "b": "selected beta", "kind": "greater",
    "test": "paired per-seed difference a - b of the test suboptimality, two-sided 95% Student-t interval over "
            "seeds; holds if the interval lies above 0, contradicted if below, else not shown",
}


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
    coverages: tuple[float, ...] = (0.01, 0.1, 1.0)
    beta_scales: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1)  # multiples of theory_beta (the grid)
    seeds: int = 10
    test_contexts: int = 1000
    val_contexts: int = 200  # per seed, for the selection of beta
    family_seed: int = 0
    out: str = "docs/offline_pessimism"
    resume: bool = False  # reuse the rows checkpointed by an earlier run with the same settings (OUT.checkpoints/)


def select(val_values: np.ndarray) -> np.ndarray:
    """Per seed, the index of the beta (grid sorted ascending) of highest validation value ``(B, S)``;
    ties go to the smallest beta."""
    return np.argmax(val_values >= val_values.max(0, keepdims=True) - 1e-6, axis=0)


def run(cfg: Config, driver: OfflineRun) -> dict:
    """Each coverage (all seeds) is a checkpointed cell of ``driver``."""
    if sorted(cfg.beta_scales) != list(cfg.beta_scales) or cfg.beta_scales[0] != 0.0:
        raise SystemExit("error: `beta_scales` must be ascending and start at 0 (the claims compare with beta = 0)")
    fam = mdp.random_contextual_mdp(
        jax.random.PRNGKey(cfg.family_seed), cfg.num_states, cfg.num_actions, cfg.horizon, cfg.num_bases,
        None if cfg.features == "tabular" else cfg.dim, features=cfg.features,
    )
    H, S, A, d = fam.horizon, fam.num_states, fam.num_actions, fam.dim
    conc = jnp.full((cfg.num_bases,), cfg.context_concentration)
    test = jax.random.dirichlet(jax.random.PRNGKey(10_000 + cfg.family_seed), conc, (cfg.test_contexts,))
    actions = policies.enumerate_deterministic_policies(S, A, H)
    test_values = np.asarray(mdp.deterministic_zero_shot_values(fam, test, actions))
    val_values = np.stack([np.asarray(mdp.deterministic_zero_shot_values(fam, jax.random.dirichlet(
        jax.random.fold_in(jax.random.PRNGKey(20_000 + cfg.family_seed), s), conc, (cfg.val_contexts,)), actions))
        for s in range(cfg.seeds)])  # (S, P): every policy's value on each seed's validation contexts
    best = int(test_values.argmax())
    optimum = float(test_values[best])
    expert = policies.deterministic_policy(actions[best], A)
    theory = pevi.theory_beta(d, H, cfg.num_episodes)
    B = len(cfg.beta_scales)
    sub = np.zeros((len(cfg.coverages), B, cfg.seeds))  # test suboptimality of each beta
    val = np.zeros((len(cfg.coverages), B, cfg.seeds))  # validation value of each beta
    for i, cov in enumerate(cfg.coverages):

        def row(cov=cov):
            behaviour = dataset.behaviour_policy(expert, cov)
            out = {"sub": np.zeros((B, cfg.seeds)), "val": np.zeros((B, cfg.seeds))}
            for s in range(cfg.seeds):
                k_ctx, k_data = jax.random.split(jax.random.PRNGKey(s), 3)[:2]
                contexts = jax.random.dirichlet(k_ctx, conc, (cfg.num_envs,))
                data = LinearData(fam.phi, dataset.collect_dataset(k_data, fam, contexts, behaviour, cfg.num_episodes))
                for j, scale in enumerate(cfg.beta_scales):
                    chosen = int(jnp.argmax(perm.perm_enumerate(data, scale * theory).objectives))
                    out["sub"][j, s] = optimum - test_values[chosen]
                    out["val"][j, s] = val_values[s, chosen]
            return out

        got = driver.compute(f"coverage={cov:g}", row, {"sub": np.zeros((B, cfg.seeds)), "val": np.zeros((B, cfg.seeds))})
        sub[i], val[i] = got["sub"], got["val"]
        print(f"coverage {cov}: " + ", ".join(f"{s:g}x: {sub[i, j].mean():.4f}" for j, s in enumerate(cfg.beta_scales)),
              flush=True)
    picked = np.stack([select(val[i]) for i in range(len(cfg.coverages))])  # (C, S)
    selected = np.take_along_axis(sub, picked[:, None, :], 1)[:, 0]  # (C, S)
    verdicts = [{"coverage": cov, **stats.paired_verdict(sub[i, 0], selected[i])} for i, cov in enumerate(cfg.coverages)]
    return dict(optimum=optimum, theory_beta=theory, sub=sub, val=val, picked=picked, selected=selected,
                verdicts=verdicts)


def ci_text(x) -> str:
    m, h = stats.mean_ci(np.asarray(x, np.float64))
    return f"{float(m):.4f} ± {float(h):.4f}"


def main(cfg: Config) -> None:
    driver = open_run(cfg.out, cfg, cfg.resume)
    t0 = time.time()
    files.write_json(cfg.out + ".json", {"experiment": "pessimism", "config": dataclasses.asdict(cfg),
                                         "preregistered": PREREGISTERED, "selection_rule": select.__doc__.strip(),
                                         "done": False})  # the claims are on disk before any computation
    res = run(cfg, driver)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.4))
    for j, scale in enumerate(cfg.beta_scales):
        m, h = stats.mean_ci(res["sub"][:, j].T)
        ax.errorbar(cfg.coverages, m, yerr=h, marker="o", ls="-", capsize=3, label=f"beta = {scale:g} x theory",
                    alpha=0.6 if scale else 1.0)
    m, h = stats.mean_ci(res["selected"].T)
    ax.errorbar(cfg.coverages, m, yerr=h, marker="s", ls="--", color="k", capsize=3, label="beta selected on validation")
    ax.set_xscale("log")
    ax.set_xlabel("coverage (weight of the uniform policy in the behaviour)")
    ax.set_ylabel("zero-shot suboptimality (test contexts)")
    ax.set_title(f"Pessimism ablation ({cfg.features}), n={cfg.num_envs}, K={cfg.num_episodes}, {cfg.seeds} seeds "
                 "(mean ± 95% t-interval)", fontsize=9)
    ax.legend(fontsize=7)
    files.save_figure(fig, cfg.out + ".png")
    names = [f"{s:g} x theory" for s in cfg.beta_scales]
    payload = {
        "experiment": "pessimism",
        "config": dataclasses.asdict(cfg),
        "preregistered": PREREGISTERED,
        "selection_rule": select.__doc__.strip(),
        "zero_shot_optimum": res["optimum"],
        "theory_beta": res["theory_beta"],
        "coverages": list(cfg.coverages),
        "beta_scales": list(cfg.beta_scales),
        "test_suboptimality_per_seed": {n: res["sub"][:, j] for j, n in enumerate(names)},
        "validation_value_per_seed": {n: res["val"][:, j] for j, n in enumerate(names)},
        "selected_scale_per_seed": np.asarray(cfg.beta_scales)[res["picked"]],
        "selected_test_suboptimality_per_seed": res["selected"],
        "verdicts": res["verdicts"],
        "wall_seconds": time.time() - t0,
        "machine": machine.machine_description("2 CPU cores shared with other processes"),
        "done": True,
    }
    files.write_json(cfg.out + ".json", payload)
    lines = [f"# Linear-MDP pessimism ablation ({cfg.features} features, n = {cfg.num_envs}, K = {cfg.num_episodes}, "
             f"{cfg.seeds} seeds)", "", f"Test suboptimality on {cfg.test_contexts} contexts (optimum "
             f"{res['optimum']:.4f}), mean ± 95% Student-t half-width over seeds; theory beta {res['theory_beta']:.1f}; "
             f"beta selected per seed on {cfg.val_contexts} validation contexts.", "",
             "| coverage | " + " | ".join(f"beta = {n}" for n in names) + " | selected | selected scales | "
             "beta = 0 minus selected | verdict |", "|---" * (len(names) + 5) + "|"]
    for i, cov in enumerate(cfg.coverages):
        v = res["verdicts"][i]
        lines.append(f"| {cov:g} | " + " | ".join(ci_text(res["sub"][i, j]) for j in range(len(names))) +
                     f" | {ci_text(res['selected'][i])} | "
                     + ", ".join(f"{x:g}" for x in np.asarray(cfg.beta_scales)[res["picked"][i]]) +
                     f" | {v['diff']:+.4f} [{v['interval'][0]:+.4f}, {v['interval'][1]:+.4f}] | **{v['verdict']}** |")
    lines.append(f"\nWall time {payload['wall_seconds']:.0f} s.")
    files.atomic_write(cfg.out + ".md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(parse_dataclass(Config, description=__doc__.split("\n\n")[0]))
