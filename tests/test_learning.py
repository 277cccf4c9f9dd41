"""Learning tests: they fail when learning is broken.

Thresholds are calibrated from measured runs (numbers in the README, "Measured learning");
each run trains several seeds in one program (``jax.vmap(trainer.train)``) and
evaluates the deterministic policy with a small local greedy rollout.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax.train import TrainConfig, make_train

SD_EVAL = jnp.array([[0.8, 0.8], [0.8, -0.8], [-0.8, 0.8], [-0.8, -0.8]])


def greedy_returns(trainer, params, contexts, rng, episodes=16):
    """``(K,)`` mean undiscounted return of ``trainer.act(params, .)`` at each of ``contexts (K, dim)``."""
    env = trainer.env

    def episode(context, key):
        def body(carry, _):
            state, alive = carry
            state = env.step(state, trainer.act(params, state.obs))
            return (state, alive * (1.0 - state.done)), state.reward * alive

        _, rewards = jax.lax.scan(body, (env.reset(key, context), jnp.ones(())), None, length=env.horizon)
        return rewards.sum()

    keys = jax.random.split(rng, episodes)
    return jax.vmap(lambda c: jax.vmap(lambda k: episode(c, k))(keys).mean())(contexts)


def train_and_evaluate(config, seeds, contexts=None):
    """Train ``seeds`` seeds in one program; returns ``(returns (seeds, K), untrained (seeds, K), metrics)``."""
    trainer = make_train(config)
    contexts = trainer.env.context_space.default_array[None] if contexts is None else contexts
    rngs = jax.random.split(jax.random.PRNGKey(config.seed), seeds)
    states, metrics = jax.jit(jax.vmap(trainer.train))(rngs)
    evaluate = jax.jit(jax.vmap(lambda s: greedy_returns(trainer, trainer.policy_params(s), contexts, jax.random.PRNGKey(1))))
    init = jax.jit(jax.vmap(trainer.init))(rngs)
    return np.asarray(evaluate(states)), np.asarray(evaluate(init)), metrics


# ------------------------------------------------------------- simple_direction
# zsgjax's short-run settings, not the paper's preset (init_alpha 1.0, prioritized replay): at
# 3,000 steps the preset's high initial entropy has not decayed yet (the main job, 20,000
# steps with the preset, shows CSE ahead: tests/test_cli.py::test_default_main_job...).
SD = dict(env="simple_direction", num_envs=8, hidden_sizes=(64, 64), batch_size=128, learning_starts=400,
          grad_updates_per_step=2, init_alpha=0.1, prioritized_replay=False, buffer_size=20_000)


@pytest.mark.parametrize("steps, seeds", [pytest.param(3000, 3, id="fast"),
                                          pytest.param(8000, 6, id="slow", marks=pytest.mark.slow)])
def test_cse_beats_vanilla_on_unseen_contexts(steps, seeds):
    """Trained at c = (0, 0) where the reward is 0 everywhere; evaluated at (+-0.8, +-0.8).

    The best policy moves along sign(c) (return about 158); a policy blind to the
    context gets about 70 on average. Measured (fast): CSE 122-146 per seed,
    vanilla 49-74.
    """
    cse, _, m_cse = train_and_evaluate(TrainConfig(method="cse", total_steps=steps, **SD), seeds, SD_EVAL)
    vanilla, _, _ = train_and_evaluate(TrainConfig(method="vanilla", total_steps=steps, **SD), seeds, SD_EVAL)
    cse_seed, vanilla_seed = cse.mean(1), vanilla.mean(1)
    assert cse_seed.mean() > vanilla_seed.mean() + 30, (cse_seed, vanilla_seed)
    assert cse_seed.min() > 100 > vanilla_seed.max(), (cse_seed, vanilla_seed)
    assert int(np.asarray(m_cse["cse_invalid"]).sum()) == 0


@pytest.mark.slow
def test_cse_modes_and_baselines_on_simple_direction():
    """Exact CSE and jvp storage match first-order CSE; LDR and DR also generalise (DR sees the eval contexts).

    Measured (4 seeds): jvp 150.8-157.6, exact 153.2-156.7, LDR 158.3-158.4, DR 154.3-155.5.
    """
    results = {}
    for name, kw in {
        "jvp": dict(method="cse", cse_storage="jvp"),
        "exact": dict(method="cse", cse_mode="exact"),
        "ldr": dict(method="ldr"),
        "dr": dict(method="dr"),
    }.items():
        returns, _, _ = train_and_evaluate(TrainConfig(total_steps=8000, **kw, **SD), 4, SD_EVAL)
        results[name] = returns.mean(1)
    for name in ("jvp", "exact", "ldr", "dr"):
        assert results[name].min() > 120, results


# ------------------------------------------------------------------ pendulum_goal
@pytest.mark.parametrize("steps, seeds, hidden", [pytest.param(8000, 2, (64, 64), id="fast"),
                                                  pytest.param(16000, 3, (128, 128), id="slow", marks=pytest.mark.slow)])
def test_sac_learns_pendulum_goal(steps, seeds, hidden):
    """Swing-up and balance at the default context; measured (fast): -77 and -79 per seed,
    untrained policy about -1000 or worse."""
    cfg = TrainConfig(env="pendulum_goal", method="vanilla", total_steps=steps, num_envs=8, hidden_sizes=hidden,
                      batch_size=128, grad_updates_per_step=4)
    trained, untrained, _ = train_and_evaluate(cfg, seeds)
    assert np.all(trained[:, 0] > -200), trained
    assert np.all(untrained[:, 0] < -500), untrained


# ---------------------------------------------------------------------- cart_goal
@pytest.mark.parametrize("steps, seeds", [pytest.param(30000, 3, id="fast"),
                                          pytest.param(100000, 4, id="slow", marks=pytest.mark.slow)])
def test_dqn_learns_cart_goal(steps, seeds):
    """Balance near the goal at the default context; the untrained greedy policy falls in
    about 10 steps. Measured (fast): 201, 95, 219 per seed."""
    cfg = TrainConfig(env="cart_goal", method="vanilla", total_steps=steps, num_envs=8, hidden_sizes=(64, 64),
                      batch_size=128, grad_updates_per_step=2, gamma=0.95, target_update_period=100,
                      dqn_activation="relu", dqn_head_hidden_size=0)  # the network this was measured with
    trained, untrained, _ = train_and_evaluate(cfg, seeds)
    assert trained[:, 0].mean() > 80 and trained[:, 0].min() > 40, trained
    assert untrained[:, 0].max() < 20, untrained
