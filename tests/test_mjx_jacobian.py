"""Exact context Jacobians of the MJX environments against finite differences.

Float64 throughout (``jax.enable_x64``; the ``mjx.Model`` is built inside the
block). States come from short random rollouts (10 steps of uniform random
actions from random initial states, each at a context drawn uniformly from the
space), so the bodies are moving and the feet are in and out of contact.

Central differences use ``h = 1e-6 * (high - low)`` per context dimension.
Measured (6 states per environment, all features): the largest error relative
to ``1 + |FD|`` is 3e-8 (cheetah) and 1e-8 (ant) at this ``h``, 2e-9 at
``h = 1e-5 * width`` and 2e-5 at ``1e-4 * width`` (friction, where contact
forces are most nonlinear; the error falls as ``h^2``, so the dynamics are
smooth at these states and FD is not crossing contact switches). The tolerance
``1e-6 * (1 + |FD|)`` leaves a margin of 30 over the measured error.

One jitted batched step (``vmap`` of ``env_step`` over ``2 * dim * n`` samples)
serves both the rollout and the finite differences, so each test compiles the
step once and the derivative once.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax import cse
from zsgjax.envs import make
from zsgjax.cse import finite_mask
from zsgjax.types import DirectionalGradients, Transition

ALL_FEATURES = ("gravity", "mass_scale", "mass_scale:torso", "friction_scale", "actuator_gain", "damping_scale")
NUM_STATES = 4
ROLLOUT_STEPS = 10
H_REL = 1e-6
TOL = 1e-6


def _repeat(tree, k):
    return jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), tree)


def _random_states(env, step_fn, rng, reps):
    """``NUM_STATES`` states after a random rollout, each repeated ``reps`` times (to reuse ``step_fn``'s shape)."""
    space = env.context_space
    k_init, k_ctx, k_act = jax.random.split(rng, 3)
    contexts = space.sample_uniform(k_ctx, (NUM_STATES,)).astype(jnp.float64)
    states = jax.vmap(env.init_env_state)(jax.random.split(k_init, NUM_STATES), contexts)
    actions = jax.random.uniform(k_act, (ROLLOUT_STEPS + 1, NUM_STATES, env.action_size), jnp.float64, -1.0, 1.0)
    states, ctx_rep = _repeat(states, reps), _repeat(contexts, reps)
    for t in range(ROLLOUT_STEPS):
        states = step_fn(states, _repeat(actions[t], reps), ctx_rep)[0]
    first = jax.tree.map(lambda x: x[::reps], states)
    return first, actions[-1], contexts


def _central_differences(env, step_fn, states, actions, contexts):
    """FD Jacobians ``(n, obs, dim)`` and ``(n, dim)`` from one batched call of ``step_fn``."""
    dim = env.context_dim
    widths = jnp.asarray(np.subtract(env.context_space.high, env.context_space.low))
    h = H_REL * widths
    plus_minus = jnp.concatenate([jnp.diag(h), -jnp.diag(h)])  # (2 dim, dim)
    ctx = (contexts[:, None, :] + plus_minus[None]).reshape(-1, dim)
    _, obs, rew, _ = step_fn(_repeat(states, 2 * dim), _repeat(actions, 2 * dim), ctx)
    obs = obs.reshape(NUM_STATES, 2, dim, -1)
    rew = rew.reshape(NUM_STATES, 2, dim)
    d_obs = jnp.swapaxes((obs[:, 0] - obs[:, 1]) / (2 * h[:, None]), 1, 2)
    d_rew = (rew[:, 0] - rew[:, 1]) / (2 * h)
    return d_obs, d_rew


def _assert_close(got, want, what):
    err = np.asarray(jnp.abs(got - want) / (1.0 + jnp.abs(want)))
    assert np.all(err <= TOL), f"{what}: max error {err.max():.3g} relative to 1 + |FD| (tolerance {TOL})"


@pytest.mark.parametrize(
    "name, seed", [("cheetah_velocity", 0), ("ant_direction", 1), ("ant_goal", 2)]
)
def test_context_jacobian_matches_finite_differences(name, seed):
    with jax.enable_x64(True):
        env = make(name, physical=ALL_FEATURES)
        assert env.model.body_mass.dtype == jnp.float64
        dim = env.context_dim
        step_fn = jax.jit(jax.vmap(env.env_step))
        states, actions, contexts = _random_states(env, step_fn, jax.random.PRNGKey(seed), 2 * dim)
        jac_fn = jax.jit(jax.vmap(lambda s, a, c: cse.context_jacobian(env, s, a, c)))
        grads = jac_fn(states, actions, contexts)
        assert grads.d_obs.shape == (NUM_STATES, env.state_obs_size, dim)
        assert grads.d_reward.shape == (NUM_STATES, dim)
        assert bool(jnp.all(finite_mask(grads)))

        fd_obs, fd_rew = _central_differences(env, step_fn, states, actions, contexts)
        for i, feature in enumerate(env.context_space.names):
            _assert_close(grads.d_obs[..., i], fd_obs[..., i], f"{name} d next_obs / d {feature}")
            _assert_close(grads.d_reward[:, i], fd_rew[:, i], f"{name} d reward / d {feature}")
        # the reward context does not enter the physics; every physical feature does
        np.testing.assert_array_equal(grads.d_obs[..., 0], 0.0)
        assert np.all(np.abs(grads.d_reward[:, 0]) > 0)
        assert np.all(np.max(np.abs(grads.d_obs[..., 1:]), axis=(0, 1)) > 1e-3)


def _step_padded(env, step_fn, states, actions, contexts):
    """``step_fn`` on ``k * NUM_STATES`` samples (``contexts (k n, dim)``), padded to its compiled batch size."""
    dim = env.context_dim
    k = contexts.shape[0] // NUM_STATES
    size = 2 * dim * NUM_STATES
    fill = lambda x: jnp.concatenate([x, jnp.repeat(x[:1], size - x.shape[0], axis=0)])  # noqa: E731
    tile = lambda x: jnp.concatenate([x] * k)  # noqa: E731
    _, obs, rew, _ = step_fn(jax.tree.map(lambda x: fill(tile(x)), states), fill(tile(actions)), fill(contexts))
    n = NUM_STATES
    return [(obs[j * n : (j + 1) * n], rew[j * n : (j + 1) * n]) for j in range(k)]


def test_context_jvp_and_forced_non_finite_derivatives():
    """``context_jvp`` agrees with FD along a direction; a zero mass gives non-finite derivatives that are masked."""
    with jax.enable_x64(True):
        env = make("cheetah_velocity", physical=ALL_FEATURES)
        dim = env.context_dim
        step_fn = jax.jit(jax.vmap(env.env_step))
        states, actions, contexts = _random_states(env, step_fn, jax.random.PRNGKey(7), 2 * dim)
        widths = jnp.asarray(np.subtract(env.context_space.high, env.context_space.low))
        directions = cse.sample_sphere(jax.random.PRNGKey(8), dim, (NUM_STATES,)).astype(jnp.float64)
        delta = 0.05 * directions * widths  # a CSE-sized step, comparable in every dimension
        jvp_fn = jax.jit(jax.vmap(lambda s, a, c, d: cse.context_jvp(env, s, a, c, d)))
        d_obs, d_rew = jvp_fn(states, actions, contexts, delta)
        assert d_obs.shape == (NUM_STATES, env.state_obs_size) and d_rew.shape == (NUM_STATES,)

        # directional central differences (relative step H_REL along delta / 0.05)
        h = H_REL / 0.05
        ctx = jnp.concatenate([contexts + h * delta, contexts - h * delta, contexts])
        (obs_p, rew_p), (obs_m, rew_m), (next_obs, reward) = _step_padded(env, step_fn, states, actions, ctx)
        _assert_close(d_obs, (obs_p - obs_m) / (2 * h), "cheetah jvp next_obs")
        _assert_close(d_rew, (rew_p - rew_m) / (2 * h), "cheetah jvp reward")

        # forced non-finite case: zero mass makes the mass matrix singular
        bad = contexts.at[1, env.context_space.index("mass_scale")].set(0.0)
        d_obs_bad, d_rew_bad = jvp_fn(states, actions, bad, delta)
        grads = DirectionalGradients(delta_c=delta, d_obs=d_obs_bad, d_reward=d_rew_bad)
        valid = finite_mask(grads)
        np.testing.assert_array_equal(valid, [True, False, True, True])
        np.testing.assert_array_equal(valid, jax.vmap(cse.gradients_finite)(grads))

        # downstream, CSE keeps the invalid sample unchanged and reports it
        transitions = Transition(
            obs=jax.vmap(env.make_obs)(jax.vmap(env.observe)(states, contexts), contexts),
            action=actions,
            reward=reward,
            next_obs=jax.vmap(env.make_obs)(next_obs, contexts),
            done=jnp.zeros((NUM_STATES,)),
            context=contexts,
        )
        enhanced, flags = jax.vmap(cse.enhance_with_directional)(transitions, grads)
        np.testing.assert_array_equal(flags, valid)
        assert bool(jnp.all(finite_mask(enhanced)))
        np.testing.assert_array_equal(enhanced.next_obs[1], transitions.next_obs[1])
        np.testing.assert_allclose(enhanced.next_obs[0, : env.state_obs_size], next_obs[0] + d_obs_bad[0])
