"""cheetah_velocity_noisy: cheetah_velocity with control noise (zsgjax.envs.mjx.noisy).

References: cheetah_velocity's own step (the deterministic env, with the noise added
to the action by hand) and central finite differences in float64. The MJX tests are
slow (each compiles a half-cheetah step).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax.envs import make
from zsgjax.envs.stochastic import NoisyState


def test_noisy_cheetah_options_and_preset():
    from zsgjax.presets import ENV_PRESETS

    assert ENV_PRESETS["cheetah_velocity_noisy"] == ENV_PRESETS["cheetah_velocity"]
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="CheetahVelocityNoisy: `noise_scale` must be"):
            make("cheetah_velocity_noisy", noise_scale=bad)


@pytest.mark.slow
def test_noisy_cheetah_step_is_the_cheetah_step_with_the_drawn_control_noise():
    """Against cheetah_velocity: with noise_scale=0 the same step bit for bit; otherwise its step
    at ``a + noise_scale * xi`` (``xi`` the env's next draw); the same key reproduces the step,
    the next key gives another noise."""
    physical = ("actuator_gain", "mass_scale")
    noisy = make("cheetah_velocity_noisy", noise_scale=0.3, physical=physical)
    silent = make("cheetah_velocity_noisy", noise_scale=0.0, physical=physical)
    plain = make("cheetah_velocity", physical=physical)
    assert noisy.context_space == plain.context_space and noisy.eval_contexts == plain.eval_contexts
    assert noisy.noise_shape == (plain.action_size,) and noisy.horizon == plain.horizon
    context = jnp.asarray([1.5, 1.4, 0.8])
    action = jnp.asarray([0.5, -0.2, 0.9, -0.7, 0.1, 0.3])

    @jax.jit
    def run(rng):
        state = noisy.init_env_state(rng, context)
        xi = noisy.next_noise(state)
        a, b, c = (noisy.env_step(state, action, context), noisy.env_step(state, action, context),
                   silent.env_step(state, action, context))
        d = plain.env_step(state.physics, action, context)
        e = plain.env_step(state.physics, action + 0.3 * xi, context)
        f = noisy.env_step(a[0], action, context)  # the next key
        g = plain.env_step(a[0].physics, action, context)
        return a, b, c, d, e, f, g, xi

    a, b, c, d, e, f, g, xi = run(jax.random.PRNGKey(3))
    assert isinstance(a[0], NoisyState) and float(jnp.abs(xi).max()) > 0.1
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(x, y)  # same key, same step
    for x, y in zip(jax.tree_util.tree_leaves(c[1:]), jax.tree_util.tree_leaves(d[1:])):
        np.testing.assert_array_equal(x, y)  # no noise: cheetah_velocity's step
    np.testing.assert_array_equal(c[0].physics.qpos, d[0].qpos)
    np.testing.assert_allclose(a[1], e[1], rtol=1e-5, atol=1e-5)  # the step at a + sigma xi
    np.testing.assert_allclose(a[2], e[2], rtol=1e-5, atol=1e-5)
    assert not np.allclose(a[1], d[1], atol=1e-4)  # the noise moved the state
    assert not np.allclose(f[1] - g[1], a[1] - d[1], atol=1e-4)  # another draw at the next step


@pytest.mark.slow
def test_noisy_cheetah_context_derivative_with_the_key_fixed_matches_central_differences():
    """d s'/dc and d r/dc through the noisy step (the key held fixed: the reparameterised
    derivative) against central differences of the same step in float64."""
    with jax.enable_x64(True):
        env = make("cheetah_velocity_noisy", noise_scale=0.3, physical=("actuator_gain", "mass_scale:bthigh"))
        context = jnp.asarray([1.5, 1.2, 0.9], jnp.float64)
        action = jnp.asarray([0.5, -0.2, 0.4, -0.7, 0.1, 0.3], jnp.float64)
        state = env.init_env_state(jax.random.PRNGKey(5), context)

        def step(c):
            _, obs, reward, _ = env.env_step(state, action, c)
            return jnp.concatenate([obs, reward[None]])

        exact = jax.jit(jax.jacfwd(step))(context)
        h = 1e-5
        eye = jnp.eye(3, dtype=jnp.float64)
        fd = jax.jit(jax.vmap(lambda e: (step(context + h * e) - step(context - h * e)) / (2 * h), out_axes=1))(eye)
    assert exact.shape == (env.state_obs_size + 1, 3)
    assert float(jnp.abs(exact[:, 1:]).max()) > 1e-3  # the physical features act on the step
    np.testing.assert_allclose(exact, fd, rtol=1e-4, atol=1e-6)
