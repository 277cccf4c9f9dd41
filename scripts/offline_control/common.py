"""Shared pieces of the neural offline experiments (scripts/offline_control/*.py).

FlipGate (zsgjax.offline.control.flip_gate) is registered as ``flip_gate`` so that the
data helper's :func:`zsgjax.offline.control.collect.collect` can roll it out. Every
seed is one independent replicate: its own training contexts, its own dataset, its own
training key; the S seeds of a method train in one ``jax.vmap`` (through the run driver
:class:`zsgjax.offline.runner.OfflineRun`: checkpointed, ``--resume``-able) and are
evaluated by true rollouts on a fixed set of held-out contexts (95% Student-t intervals
over seeds).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from zsgjax.envs import registry  # noqa: E402
from zsgjax.offline import control as C  # noqa: E402
from zsgjax.offline.control import collect as collect_mod  # noqa: E402
from zsgjax.offline import runner as offline_runner  # noqa: E402
from zsgjax.offline.runner import OfflineRun  # noqa: E402
from zsgjax.reporting import stats  # noqa: E402

ENV_NAME = "flip_gate"
if ENV_NAME not in registry.registered_names():
    registry.register(ENV_NAME, "zsgjax.offline.control.flip_gate:FlipGate")

HELD_OUT = np.concatenate([-np.linspace(0.5, 1.0, 5), np.linspace(0.5, 1.0, 5)])[:, None].astype(np.float32)
"""Ten held-out contexts covering both signs of the training distribution c = +-U[0.5, 1]."""


def add_run_options(p, out: str, iterations: int | None = 1000) -> None:
    """The options every offline-control experiment shares: seeds, training length, output."""
    p.add_argument("--seeds", type=int, default=3)
    if iterations is not None:
        p.add_argument("--iterations", type=int, default=iterations)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies the training iterations")
    p.add_argument("--out", default=out)
    p.add_argument("--resume", action="store_true",
                   help="reuse the trained cells checkpointed by an earlier run with the same settings (OUT.checkpoints/)")


def open_run(args, **settings) -> OfflineRun:
    """The run driver for ``args.out`` (checked before any training), settings = the parsed options + ``settings``."""
    return offline_runner.open_run(args.out, {**vars(args), **settings}, args.resume)


def small_perm_config(scale: float = 1.0, iterations: int = 1500) -> C.PERMConfig:
    """The CPU-sized PERM config (``scale`` multiplies the iterations; hidden 32x32)."""
    return C.PERMConfig(
        critic=C.CriticConfig(hidden_sizes=(32, 32), num_critics=4, batch_size=64, learning_rate=1e-3, gamma=0.9),
        actor=C.ActorConfig(hidden_sizes=(32, 32), batch_size=64, learning_rate=1e-3),
        iterations=int(iterations * scale))


def random_behaviour() -> C.Behaviour:
    return C.Behaviour(action_scale=1.0, label="random")


def narrow_behaviour(std: float = 0.15) -> C.Behaviour:
    """Actions ``clip(N(0, std^2), -1, 1)``: poor coverage of the rewarded actions +-1."""
    return C.Behaviour(policy_fn=lambda p, obs, rng: jnp.zeros((1,), jnp.float32), noise_std=std, policy_prob=1.0,
                       action_scale=1.0, label=f"narrow(std={std})")


def datasets(seed: int, num_seeds: int, num_envs: int, num_transitions: int, behaviour: C.Behaviour,
             streams: int = 20, balanced: bool = False) -> C.Transitions:
    """``num_seeds`` independent datasets stacked on a leading seed axis (contexts ~ +-U[0.5, 1];
    ``balanced``: the signs alternate -, +, -, ... so half the environments have c < 0)."""
    out = []
    for s in range(num_seeds):
        k_ctx, k_data = jax.random.split(jax.random.PRNGKey(1000 * seed + s))
        contexts = np.asarray(C.sample_contexts(k_ctx, num_envs))
        if balanced:
            contexts = np.abs(contexts) * np.where(np.arange(num_envs) % 2 == 0, -1.0, 1.0)[:, None].astype(np.float32)
        data, _ = collect_mod.collect(k_data, ENV_NAME, contexts, behaviour, num_transitions,
                                      streams=math.gcd(streams, num_transitions))
        out.append(data)
    return jax.tree.map(lambda *xs: jnp.stack(xs), *out)


def train_seeds(run: OfflineRun, name: str, train: Callable, data_s: C.Transitions, seed: int, config=None):
    """``jit(vmap(train))`` over the seed axis, as the run's cell ``name``; returns (result, seconds incl. compile;
    0 when restored)."""
    keys = jax.random.split(jax.random.PRNGKey(seed + 7), data_s.obs.shape[0])
    return run.train(name, train, keys, data_s, config)


def held_out(policy: C.Policy, params_s, num_episodes: int = 1) -> dict:
    """Held-out returns ``(S, C, E)`` -> per-seed mean, mean and 95% half-width over seeds."""
    env = C.FlipGate()
    res = C.zero_shot(env, policy, params_s, C.held_out_grid(env, HELD_OUT), num_episodes=num_episodes,
                      rng=jax.random.PRNGKey(0))
    per_seed = res.per_seed(range(len(HELD_OUT)))
    mean, ci = stats.mean_ci(per_seed)
    neg = res.per_seed(range(5)).mean()
    pos = res.per_seed(range(5, 10)).mean()
    return {"per_seed": per_seed.tolist(), "mean": float(mean), "ci95": float(ci), "mean_c_neg": float(neg),
            "mean_c_pos": float(pos)}


def reference_values(delta: float = 0.1) -> dict:
    """Closed-form held-out means of the two policies of the derivation (docs/offline_control.md)."""
    env = C.FlipGate(delta)
    c = HELD_OUT[:, 0]
    w = np.asarray(env.weight(jnp.asarray(c)))
    blind_opt = np.where(c < 0, -delta + (env.horizon - 1) * w * np.abs(c), -delta)  # a = -1 throughout
    plus = np.where(c > 0, delta + (env.horizon - 1) * w * c, delta)  # a = +1 throughout
    merged_opt = np.where(c > 0, delta - w * c, delta)  # +1 first, then -1
    return {"a=-1 throughout (PERM's target)": float(blind_opt.mean()),
            "a=+1 throughout": float(plus.mean()),
            "+1 then -1 (merged data's optimum)": float(merged_opt.mean())}


def fmt(r: dict) -> str:
    return f"{r['mean']:.2f} ± {r['ci95']:.2f}"


def config_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def first_seed(data_s: C.Transitions) -> C.Transitions:
    """The dataset of seed 0 (for shapes: ``policy_of(config, first_seed(data_s))``)."""
    return jax.tree.map(lambda x: x[0], data_s)


PROBES = np.array([[0.0, 1.0], [0.5, 0.0], [2.0, 0.0]], np.float32)
"""Observations (x, first) at which the learned actions are reported: the start, and x = 0.5, 2 later."""


def run_method(run: OfflineRun, name: str, train: Callable, policy: C.Policy, data_s: C.Transitions, seed: int,
               params_of: Callable = lambda r: r.policy_params, config=None) -> dict:
    """Train S seeds in one vmap (the run's cell ``name``), evaluate held out, report actions at :data:`PROBES`."""
    res, seconds = train_seeds(run, name, train, data_s, seed, config)
    return report(name, policy, params_of(res), seconds)


def report(name: str, policy: C.Policy, params, seconds: float) -> dict:
    """Held-out returns of trained parameters (leading seed axis) and their actions at :data:`PROBES`."""
    out = held_out(policy, params)
    acts = jax.vmap(lambda p: policy.act(p, jnp.asarray(PROBES), jnp.zeros((policy.context_dim,))))(params)
    out["actions_at_probes"] = np.asarray(acts)[..., 0].tolist()  # (S, 3)
    out["train_seconds_incl_compile"] = seconds
    print(f"  {name}: {fmt(out)}  (c<0: {out['mean_c_neg']:.2f}, c>0: {out['mean_c_pos']:.2f}; "
          f"first action {np.round(np.asarray(acts)[:, 0, 0], 2).tolist()}; {seconds:.0f} s)", flush=True)
    return out
