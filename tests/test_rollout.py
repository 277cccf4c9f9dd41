"""Batched stepping: auto-reset with fresh contexts, bookkeeping, collectors that store gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax import context_gradients, rollout
from zsgjax.envs import make
from zsgjax.methods import CSE, DR, LDR, Vanilla
from zsgjax.types import ContextGradients, DirectionalGradients


def _uniform_policy(action_size):
    def policy(rng, obs):
        return jax.random.uniform(rng, (obs.shape[0], action_size), minval=-1.0, maxval=1.0)

    return policy


# ------------------------------------------------------- auto-reset, bookkeeping
B = 4


@pytest.fixture(scope="module")
def direction_rollout():
    """25 steps of 4 SimpleDirection envs (horizon 10) under DR on a sub-box."""
    env = make("simple_direction")
    box_low, box_high = (0.2, -1.0), (1.0, -0.2)
    sampler = DR(low=box_low, high=box_high).context_sampler(env.context_space)
    state0 = rollout.reset(env, jax.random.PRNGKey(0), B, sampler)
    run = jax.jit(lambda st, key: rollout.rollout(env, _uniform_policy(2), st, key, 25, sampler))
    final, outs = run(state0, jax.random.PRNGKey(1))
    return env, (box_low, box_high), state0, final, jax.tree.map(np.asarray, outs)


def test_reset_draws_contexts_from_sampler(direction_rollout):
    env, (lo, hi), state0, _, _ = direction_rollout
    ctx = np.asarray(state0.info["context"])
    assert ctx.shape == (B, 2) and np.all(ctx >= lo) and np.all(ctx <= hi)
    assert len({tuple(c) for c in ctx}) == B
    np.testing.assert_array_equal(state0.info["steps"], 0)
    np.testing.assert_array_equal(state0.info["episode_return"], 0.0)
    np.testing.assert_array_equal(state0.obs[:, 2:], ctx)
    assert np.all(np.abs(state0.obs[:, :2]) <= 1.0)


def test_auto_reset_at_horizon_with_fresh_context(direction_rollout):
    env, (lo, hi), state0, final, outs = direction_rollout
    tr = outs.transition
    T = tr.reward.shape[0]
    expected_end = np.array([(t + 1) % env.horizon == 0 for t in range(T)])
    np.testing.assert_array_equal(outs.episode_end, np.tile(expected_end[:, None], (1, B)))
    # Truncation at the horizon is not termination: never done.
    np.testing.assert_array_equal(tr.done, 0.0)
    contexts = tr.context  # (T, B, 2)
    assert np.all(contexts >= lo) and np.all(contexts <= hi)
    np.testing.assert_array_equal(contexts[0], state0.info["context"])
    for t in range(T - 1):
        if expected_end[t]:
            # A fresh episode: new context from the sampler, a fresh initial state.
            assert np.all(np.abs(contexts[t + 1] - contexts[t]).max(-1) > 1e-4)
            assert np.all(np.abs(tr.obs[t + 1][:, :2]) <= 1.0)
        else:
            np.testing.assert_array_equal(contexts[t + 1], contexts[t])
            np.testing.assert_array_equal(tr.obs[t + 1], tr.next_obs[t])
        np.testing.assert_array_equal(tr.obs[t + 1][:, 2:], contexts[t + 1])
    # Dynamics recorded before the reset: s' = s + a + c, r = s'.c, next_obs carries c.
    s_next = tr.obs[..., :2] + np.clip(tr.action, -1, 1) + contexts
    np.testing.assert_allclose(tr.next_obs[..., :2], s_next, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(tr.next_obs[..., 2:], contexts)
    np.testing.assert_allclose(tr.reward, np.sum(s_next * contexts, -1), rtol=1e-5, atol=1e-6)
    # Final state continues the third episode at step 5.
    np.testing.assert_array_equal(final.info["steps"], T % env.horizon)
    assert outs.extras is None  # the plain collector stores nothing beside the transition


def test_episode_return_bookkeeping(direction_rollout):
    env, _, _, final, outs = direction_rollout
    rewards = outs.transition.reward
    running = np.zeros(B, np.float64)
    for t in range(rewards.shape[0]):
        running = running + rewards[t]
        np.testing.assert_allclose(outs.episode_return[t], running, rtol=1e-5, atol=1e-5)
        if outs.episode_end[t].any():
            running = np.where(outs.episode_end[t], 0.0, running)
    np.testing.assert_allclose(final.info["episode_return"], running, rtol=1e-5, atol=1e-5)


def test_termination_is_done_truncation_is_not():
    """CartGoal pushed right falls over: done on that step, auto-reset, fresh state."""
    env = make("cart_goal")
    sampler = Vanilla().context_sampler(env.context_space)
    state = rollout.reset(env, jax.random.PRNGKey(2), 2, sampler)
    policy = lambda rng, obs: jnp.ones((obs.shape[0],), jnp.int32)  # noqa: E731
    _, outs = jax.jit(lambda st, key: rollout.rollout(env, policy, st, key, 40, sampler))(state, jax.random.PRNGKey(3))
    tr = jax.tree.map(np.asarray, outs.transition)
    done = tr.done.astype(bool)
    ends = np.asarray(outs.episode_end)
    # Well before the horizon: every episode end is a termination, and there were some.
    np.testing.assert_array_equal(done, ends)
    assert done[:, 0].sum() >= 2 and done[:, 1].sum() >= 2
    theta_next = tr.next_obs[..., 2]
    np.testing.assert_array_equal(done, np.abs(theta_next) > 12 * np.pi / 180)
    for t in np.nonzero(done[:-1, 0])[0]:
        assert np.all(np.abs(tr.obs[t + 1, 0, :4]) <= 0.05)  # fresh s0 ~ U[-0.05, 0.05]^4
        np.testing.assert_array_equal(tr.context[t + 1, 0], env.context_space.default_array)
    t0 = np.nonzero(done[:, 0])[0][0]
    np.testing.assert_allclose(outs.episode_return[t0, 0], tr.reward[: t0 + 1, 0].sum(), rtol=1e-5)
    np.testing.assert_allclose(outs.episode_return[t0 + 1, 0], tr.reward[t0 + 1, 0], rtol=1e-6)
    assert tr.action.dtype == np.int32


# ---------------------------------------------------------------------- gradients
@pytest.mark.parametrize("storage", ["jacobian", "jvp", "exact"])
def test_cse_collectors_store_what_enhancement_needs(storage):
    """CSE's collector stores the Jacobian, a directional derivative, or the pre-step state."""
    env = make("pendulum_goal")
    sampler = LDR(scale=0.1).context_sampler(env.context_space)
    mode = "exact" if storage == "exact" else "first_order"
    method = CSE(epsilon=0.1, mode=mode, storage="jvp" if storage == "jvp" else "jacobian", ratio=1.0)

    def collect(env, env_state, action, context, rng):  # also hand out the pre-step state for the reference
        out, extras = method.collect(env, env_state, action, context, rng)
        return out, (extras, env_state)

    T, n, eps = 5, 3, 0.1
    state = rollout.reset(env, jax.random.PRNGKey(4), n, sampler)
    run = jax.jit(lambda st, key: rollout.rollout(env, _uniform_policy(1), st, key, T, sampler, collect))
    _, outs = run(state, jax.random.PRNGKey(5))
    tr, (g, pre) = outs.transition, outs.extras
    flat = lambda x: x.reshape(T * n, *x.shape[2:])  # noqa: E731
    jac = jax.vmap(lambda s, a, c: context_gradients.context_jacobian(env, s, a, c))(flat(pre), flat(tr.action), flat(tr.context))
    if storage == "jacobian":
        assert isinstance(g, ContextGradients)
        assert g.d_obs.shape == (T, n, 3, 4) and g.d_reward.shape == (T, n, 4)
        np.testing.assert_allclose(flat(g.d_obs), jac.d_obs, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(flat(g.d_reward), jac.d_reward, rtol=1e-5, atol=1e-5)
    elif storage == "jvp":
        assert isinstance(g, DirectionalGradients)
        assert g.delta_c.shape == (T, n, 4) and g.d_obs.shape == (T, n, 3) and g.d_reward.shape == (T, n)
        norms = np.linalg.norm(g.delta_c, axis=-1)
        assert np.all(norms <= eps + 1e-6) and np.all(norms > 0)
        assert np.all(env.context_space.contains(tr.context + g.delta_c))
        np.testing.assert_allclose(flat(g.d_obs), jnp.einsum("noc,nc->no", jac.d_obs, flat(g.delta_c)), atol=1e-5)
        np.testing.assert_allclose(flat(g.d_reward), jnp.einsum("nc,nc->n", jac.d_reward, flat(g.delta_c)), atol=1e-5)
    else:
        np.testing.assert_array_equal(g, pre)  # exact CSE stores the state the step started from
    # The primal transitions are unaffected by the gradient computation.
    next_obs, reward = jax.vmap(env.transition)(flat(pre), flat(tr.action), flat(tr.context))
    np.testing.assert_allclose(flat(tr.next_obs)[:, :3], next_obs, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(flat(tr.reward), reward, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------- non-finite steps
def test_non_finite_reward_with_finite_observation_is_reset_and_masked():
    """A NaN or inf reward alone (the next observation finite) ends the episode like a
    non-finite observation: ``finite`` False (weight 0 in every loss), the environment
    reset with a fresh context, the return and the state's reward kept finite."""
    from zsgjax.envs.simple_direction import SimpleDirection

    class BadRewardDirection(SimpleDirection):
        """SimpleDirection whose reward is NaN where ``c_x > 0.5`` and +inf where ``c_x < -0.5``."""

        def env_step(self, env_state, action, context):
            next_s, obs, reward, term = super().env_step(env_state, action, context)
            reward = jnp.where(context[0] > 0.5, jnp.nan, jnp.where(context[0] < -0.5, jnp.inf, reward))
            return next_s, obs, reward, term

    env = BadRewardDirection()
    sampler = DR().context_sampler(env.context_space)
    n, T = 16, 6
    state = rollout.reset(env, jax.random.PRNGKey(6), n, sampler)
    final, outs = jax.jit(lambda st, key: rollout.rollout(env, _uniform_policy(2), st, key, T, sampler))(
        state, jax.random.PRNGKey(7))
    outs = jax.tree.map(np.asarray, outs)
    c_x = outs.transition.context[..., 0]
    bad = np.abs(c_x) > 0.5
    assert 0 < bad.sum() < bad.size
    assert np.all(np.isfinite(outs.transition.next_obs))
    np.testing.assert_array_equal(outs.finite, ~bad)
    np.testing.assert_array_equal(outs.episode_end, bad)  # horizon 10 > T: only the bad steps end episodes
    for t in range(T - 1):  # a bad step is followed by a fresh episode: step counter and return restart
        fresh = bad[t]
        first_reward = np.where(bad[t + 1], 0.0, outs.transition.reward[t + 1])
        np.testing.assert_array_equal(outs.episode_return[t + 1][fresh], first_reward[fresh])
    assert np.all(np.isfinite(outs.episode_return)) and np.all(np.isfinite(np.asarray(final.reward)))
    np.testing.assert_array_equal(np.asarray(final.info["steps"])[bad[-1]], 0)


def test_instability_warnings():
    quiet = {"nonfinite_resets": np.zeros((2, 3), np.int32), "critic_loss": np.full((2, 3), 1e3),
             "actor_loss": np.full((2, 3), -5.0), "episode_return": np.full((2, 3), 1e30)}
    assert rollout.instability_warnings(quiet) == []
    resets = np.zeros((2, 3), np.int32)
    resets[1, 1], resets[1, 2] = 3, 1
    loud = {**quiet, "nonfinite_resets": resets, "critic_loss": np.array([[1e3, 1e3, 1e3], [1e3, np.nan, 7e22]])}
    reset_msg, loss_msg = rollout.instability_warnings(loud, first_iteration=4)
    assert reset_msg.startswith("4 environment steps had a non-finite next observation or reward in iterations 6-7 "
                                "(seeds [1])")
    assert loss_msg.startswith("metric 'critic_loss' reached 7e+22 (above 1e+10) from iteration 7 (seeds [1])")
    # the limit is inclusive of itself, one seed may be given as (n,)
    assert rollout.instability_warnings({"q_loss": np.array([1e10, -1e10])}) == []
    assert len(rollout.instability_warnings({"q_loss": np.array([0.0, -2e10])})) == 1
    assert rollout.instability_warnings({"q_loss": np.array([np.inf, np.nan])}) == []  # the divergence check's
