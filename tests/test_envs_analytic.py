"""The analytic environments: constants, options and dynamics against NumPy references.

The API every registered environment satisfies (shapes, jit/vmap, brax wrappers, context
Jacobians, bad input) is checked in ``test_contracts.py``. Every env here gets one jitted
``reset(rng, context)`` and one jitted ``step(state, action)`` (module fixture), shared by
the reference tests.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax.envs import make
from zsgjax.envs.cart_goal import CartGoal
from zsgjax.envs.pendulum_goal import PendulumGoal, goal_angle
from zsgjax.envs.simple_direction import SimpleDirection


class Jitted:
    """An env with jitted ``reset``/``step``."""

    def __init__(self, env):
        self.env = env
        self.reset = jax.jit(env.reset)
        self.step = jax.jit(env.step)


@pytest.fixture(scope="module")
def jitted():
    return {name: Jitted(make(name)) for name in ("simple_direction", "pendulum_goal", "cart_goal")}


# ---------------------------------------------------------------------- options
def test_constructor_options():
    """Each env's own options (the generic API, registry and bad-input checks are in test_contracts.py)."""
    assert type(make("simple_direction")) is SimpleDirection
    assert make("cart_goal", x_threshold=3.0).x_threshold == 3.0
    assert make("cart_goal").x_threshold == 2.4
    assert make("pendulum_goal").integrator == "paper"
    assert make("pendulum_goal", integrator="gym").integrator == "gym"
    with pytest.raises(ValueError, match="PendulumGoal: `integrator` must be one of 'paper', 'gym', got 'rk4'"):
        make("pendulum_goal", integrator="rk4")
    with pytest.raises(ValueError, match="`x_threshold` must be a finite number > 0"):
        make("cart_goal", x_threshold=-1.0)


def test_env_constants():
    p, c, s = PendulumGoal(), CartGoal(), SimpleDirection()
    assert (p.horizon, p.action_size, p.state_obs_size, p.discrete) == (200, 1, 3, False)
    assert p.context_space.default == (2.0, 1.0, 1.0, 0.0)
    assert p.context_space.low == (0.5, 0.5, 0.5, -1.0) and p.context_space.high == (5.0, 2.0, 2.0, 1.0)
    assert (c.horizon, c.action_size, c.num_actions, c.state_obs_size, c.discrete) == (500, 2, 2, 4, True)
    assert c.context_space.default == (10.0, 0.1, 1.0, 0.5, 0.0)
    assert c.context_space.low == (1.0, 0.01, 0.25, 0.1, -4.0) and c.context_space.high == (12.0, 2.0, 2.0, 2.0, 4.0)
    assert sorted(v[-1] for v in c.eval_contexts.values()) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert c.x_threshold == 2.4 and (s.horizon, s.action_size) == (10, 2)
    assert p.integrator == "paper"


# ------------------------------------------------------------ NumPy references
def np_pendulum_step(state, u, ctx, integrator="paper"):
    """One pendulum step (float64) with the goal reward on the next state.

    ``integrator="paper"``: the paper's explicit Euler step of the whole state, no
    speed clip; ``"gym"``: gym Pendulum-v1's semi-implicit step with its speed clip.
    """
    g, m, l, tau = ctx
    th, thdot = state
    u = np.clip(u, -2.0, 2.0)
    thacc = 3 * g / (2 * l) * np.sin(th) + 3.0 / (m * l**2) * u
    if integrator == "paper":
        newth = th + thdot * 0.05
        newthdot = thdot + thacc * 0.05
    else:
        newthdot = np.clip(thdot + thacc * 0.05, -8.0, 8.0)
        newth = th + newthdot * 0.05
    goal = math.asin(np.clip(-tau / (m * g * l), -1.0, 1.0))
    r = -(np.pi**2 * np.sin((newth - goal) / 2) ** 2 + 0.1 * newthdot**2 + 0.001 * u**2)
    return np.array([newth, newthdot]), r


def np_cartpole_step(state, action, ctx, x_threshold=2.4):
    """gym CartPole-v1's step (float64), written out as in gym, with the goal reward."""
    gravity, masspole, masscart, length, goal = ctx
    total_mass = masspole + masscart
    polemass_length = masspole * length
    force_mag, tau = 10.0, 0.02
    theta_threshold_radians = 12 * 2 * math.pi / 360
    x, x_dot, theta, theta_dot = state
    force = force_mag if action == 1 else -force_mag
    costheta, sintheta = math.cos(theta), math.sin(theta)
    temp = (force + polemass_length * theta_dot**2 * sintheta) / total_mass
    thetaacc = (gravity * sintheta - costheta * temp) / (
        length * (4.0 / 3.0 - masspole * costheta**2 / total_mass)
    )
    xacc = temp - polemass_length * thetaacc * costheta / total_mass
    x = x + tau * x_dot
    x_dot = x_dot + tau * xacc
    theta = theta + tau * theta_dot
    theta_dot = theta_dot + tau * thetaacc
    terminated = x < -x_threshold or x > x_threshold or theta < -theta_threshold_radians or theta > theta_threshold_radians
    reward = 1 + (1 - math.sqrt(1 + (x - goal) ** 2))
    return np.array([x, x_dot, theta, theta_dot]), reward, terminated


@pytest.fixture(scope="module")
def jitted_gym_pendulum():
    return Jitted(PendulumGoal(integrator="gym"))


@pytest.mark.parametrize("integrator", ["paper", "gym"])
@pytest.mark.parametrize("context", [None, (4.0, 1.5, 0.7, 0.4)])
def test_pendulum_matches_numpy_reference(context, integrator, jitted, jitted_gym_pendulum):
    j = jitted["pendulum_goal"] if integrator == "paper" else jitted_gym_pendulum
    assert j.env.integrator == integrator
    ctx = j.env.context_space.default_array if context is None else jnp.array(context, jnp.float32)
    state = j.reset(jax.random.PRNGKey(3), ctx)
    ref = np.asarray(state.pipeline_state, np.float64)
    actions = np.random.default_rng(0).uniform(-2.5, 2.5, size=(25,)).astype(np.float32)
    for a in actions:
        state = j.step(state, jnp.array([a]))
        ref, r = np_pendulum_step(ref, float(a), np.asarray(ctx, np.float64), integrator)
        np.testing.assert_allclose(state.pipeline_state, ref, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(state.obs[:3], [np.cos(ref[0]), np.sin(ref[0]), ref[1]], atol=1e-4)
        np.testing.assert_allclose(state.reward, r, rtol=1e-4, atol=1e-4)
        assert state.done == 0.0


@pytest.mark.parametrize("integrator", ["paper", "gym"])
def test_pendulum_goal_is_an_equilibrium(integrator):
    """At (goal, 0) the constant action u = tau / 2 holds the pendulum; reward is maximal there."""
    env = PendulumGoal(integrator=integrator)
    with jax.enable_x64(True):
        contexts = jnp.array([[2.0, 1.0, 1.0, 0.75], [2.0, 1.2, 1.0, -0.75], [5.0, 0.5, 2.0, 1.0], [1.0, 2.0, 0.7, -0.3]])
        step = jax.jit(jax.vmap(env.env_step))
        goals = jax.vmap(goal_angle)(contexts)
        np.testing.assert_allclose(goals, [math.asin(-tau / (m * g * l)) for g, m, l, tau in np.asarray(contexts)])
        u = contexts[:, 3:4] / 2
        states = jnp.stack([goals, jnp.zeros(4)], axis=1)
        nxt, _, r, term = step(states, u, contexts)
        np.testing.assert_allclose(nxt, states, atol=1e-12)
        np.testing.assert_allclose(r, -0.001 * u[:, 0] ** 2, rtol=1e-12)
        assert not bool(jnp.any(term))
        # Any other angle (same velocity and action) gives a lower reward.
        for shift in (-0.3, -0.01, 0.01, 0.3):
            _, _, r_off, _ = step(states.at[:, 0].add(shift), u, contexts)
            assert bool(jnp.all(r_off < r))


def test_pendulum_goal_saturates_with_finite_derivatives():
    # |tau| >= m g l: the goal saturates at -+pi/2 (clip), derivative zero, never NaN.
    ctx = jnp.array([[0.5, 0.5, 0.5, 1.0], [0.5, 0.5, 0.5, -1.0], [0.5, 1.0, 0.5, 0.25]])
    goals = jax.vmap(goal_angle)(ctx)
    np.testing.assert_allclose(goals, [-math.pi / 2, math.pi / 2, -math.pi / 2], rtol=1e-6)
    grads = jax.vmap(jax.jacfwd(goal_angle))(ctx)
    assert bool(jnp.all(jnp.isfinite(grads)))
    np.testing.assert_array_equal(grads, 0.0)


@pytest.mark.parametrize("context", [None, (3.0, 0.5, 1.5, 1.2, -2.0)])
def test_cartpole_matches_gym_numpy_reference(context, jitted):
    """The default track (the paper's x_threshold = 2.4); the wide one is checked in test_paper_envs.py."""
    j = jitted["cart_goal"]
    ctx = j.env.context_space.default_array if context is None else jnp.array(context, jnp.float32)
    state = j.reset(jax.random.PRNGKey(4), ctx)
    ref = np.asarray(state.pipeline_state, np.float64)
    actions = np.random.default_rng(1).integers(0, 2, size=(30,))
    for a in actions:
        state = j.step(state, jnp.int32(a))
        ref, r, term = np_cartpole_step(ref, int(a), np.asarray(ctx, np.float64))
        np.testing.assert_allclose(state.pipeline_state, ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(state.obs[:4], ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(state.reward, r, rtol=1e-5)
        assert bool(state.done) == term
        if term:
            break


def test_cartpole_termination_and_threshold():
    ctx = CartGoal.context_space.default_array
    a = jnp.int32(1)
    # Pole beyond 12 degrees after the step.
    lean = jnp.array([0.0, 0.0, 0.25, 0.0])
    assert bool(CartGoal().env_step(lean, a, ctx)[3])
    upright = jnp.array([0.0, 0.0, 0.0, 0.0])
    assert not bool(CartGoal().env_step(upright, a, ctx)[3])
    # x = 3: outside the default (the paper's) 2.4 track, inside the wide 5.0 one.
    far = jnp.array([3.0, 0.0, 0.0, 0.0])
    assert bool(CartGoal().env_step(far, a, ctx)[3])
    assert not bool(CartGoal(x_threshold=5.0).env_step(far, a, ctx)[3])
    assert not bool(CartGoal().env_step(jnp.array([2.35, 0.0, 0.0, 0.0]), a, ctx)[3])
    assert bool(CartGoal().env_step(jnp.array([-2.45, 0.0, 0.0, 0.0]), a, ctx)[3])
    assert bool(CartGoal(x_threshold=5.0).env_step(jnp.array([-5.1, 0.0, 0.0, 0.0]), a, ctx)[3])
    # Reward is 1 at the goal and 2 - sqrt(1 + d^2) away from it (next state), terminated or not.
    goal_ctx = ctx.at[4].set(3.0)
    for env in (CartGoal(), CartGoal(x_threshold=5.0)):
        _, nxt, r, _ = env.env_step(far, a, goal_ctx)
        np.testing.assert_allclose(r, 2.0 - np.sqrt(1.0 + (float(nxt[0]) - 3.0) ** 2), rtol=1e-6)
        np.testing.assert_allclose(r, 1.0)
        _, _, r_far, _ = env.env_step(far, a, ctx)
        np.testing.assert_allclose(r_far, 2.0 - np.sqrt(10.0), rtol=1e-6)
    # Action 0 pushes left, 1 pushes right.
    assert float(CartGoal().env_step(upright, jnp.int32(0), ctx)[0][1]) < 0
    assert float(CartGoal().env_step(upright, jnp.int32(1), ctx)[0][1]) > 0


def test_simple_direction_dynamics(jitted):
    j = jitted["simple_direction"]
    ctx = jnp.array([0.8, -0.3])
    state = j.reset(jax.random.PRNGKey(2), ctx)
    s = np.asarray(state.pipeline_state)
    assert np.all(np.abs(s) <= 1.0)
    a = jnp.array([0.5, -0.25], jnp.float32)
    nxt = j.step(state, a)
    np.testing.assert_allclose(nxt.pipeline_state, s + np.asarray(a) + np.asarray(ctx), rtol=1e-6)
    np.testing.assert_allclose(nxt.reward, np.dot(s + np.asarray(a) + np.asarray(ctx), ctx), rtol=1e-5)
