"""The CSE paper's environments are the defaults; the options keep zsgjax's earlier ones.

Facts from the paper's code (chapman20j/ZeroShotGeneralization-CMDPs, arXiv 2507.07348):

* ``environments/ode_systems.py`` + ``ode_sympy.py`` (``solver="euler"``): pendulum_goal
  and cart_goal take one explicit Euler step of the whole state, ``s' = s + dt f(s)``,
  no speed clip; the reward is evaluated on the next state (``ode_env.py``).
* ``ode_env.py::CartPoleGoalAnalytic``: ``x_threshold = 2.4``.
* ``mujoco_context_envs/ant_dir.py`` / ``ant_goal.py`` on Gymnasium ``Ant-v5``: 2-vector
  contexts; ant_dir ``r = c . v + healthy - ctrl - contact``; ant_goal
  ``r = 1 - sqrt(1 + |p - g|^2) - ctrl - contact``, healthy reward 0, no termination.

Every check is an independent float64 NumPy re-implementation of those equations
compared with the JAX env (``jax.enable_x64``), plus context Jacobians
(``jax.jacfwd`` of ``transition``, or of the ant's reward function) against central
finite differences in float64. The ant checks here use the pure reward and
observation functions on constructed states (no MJX physics is compiled); the
physics path of the default ant is checked in ``test_mjx_jacobian.py``.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax.envs import make
from zsgjax.envs.cart_goal import CartGoal
from zsgjax.envs.pendulum_goal import PendulumGoal

DT_PENDULUM = 0.05
DT_CART = 0.02
FD_STEP = 1e-6


# ------------------------------------------------------------------ NumPy references
def np_pendulum(state, a, ctx, integrator):
    """``(next_state (2,), reward)`` of pendulum_goal in float64."""
    g, m, l, tau = ctx
    th, thd = state
    u = float(np.clip(a, -2.0, 2.0))
    acc = 3.0 * g / (2.0 * l) * math.sin(th) + 3.0 * u / (m * l * l)
    if integrator == "paper":  # ode_sympy.py: state += dt * f(state)
        th1, thd1 = th + DT_PENDULUM * thd, thd + DT_PENDULUM * acc
    else:  # gym Pendulum-v1
        thd1 = min(max(thd + DT_PENDULUM * acc, -8.0), 8.0)
        th1 = th + DT_PENDULUM * thd1
    goal = math.asin(-tau / (m * g * l))  # the paper's goal (no clip)
    r = -(math.pi**2 * math.sin((th1 - goal) / 2.0) ** 2 + 0.1 * thd1**2 + 0.001 * u**2)
    return np.array([th1, thd1]), r


def np_cart(state, action, ctx, x_threshold):
    """``(next_state (4,), reward, terminated)`` of cart_goal in float64 (ode_systems.py's equations)."""
    g, mp, mc, l, goal = ctx
    x, xd, th, thd = state
    f = 10.0 if action == 1 else -10.0
    s, c = math.sin(th), math.cos(th)
    thacc = (g * s + c * (-f - mp * l * thd**2 * s) / (mp + mc)) / (l * (4.0 / 3.0 - mp * c**2 / (mp + mc)))
    xacc = (f + mp * l * (thd**2 * s - c * thacc)) / (mp + mc)
    nxt = np.array([x + DT_CART * xd, xd + DT_CART * xacc, th + DT_CART * thd, thd + DT_CART * thacc])
    r = 1.0 + (1.0 - math.sqrt(1.0 + (nxt[0] - goal) ** 2))
    term = abs(nxt[0]) > x_threshold or abs(nxt[2]) > 12 * 2 * math.pi / 360
    return nxt, r, term


def _pendulum_contexts(rng, n):
    """Random contexts with ``|tau| < 0.9 m g l`` (where the paper's goal is defined), plus the eval ones."""
    c = rng.uniform((0.5, 0.5, 0.5, -1.0), (5.0, 2.0, 2.0, 1.0), size=(n, 4))
    c[:, 3] = np.clip(c[:, 3], -0.9 * c[:, :3].prod(1), 0.9 * c[:, :3].prod(1))
    return np.concatenate([np.asarray(list(PendulumGoal.eval_contexts.values())), c])


def _fd_check(env, states, actions, contexts, tol=1e-6):
    """``jax.jacfwd(env.transition, argnums=2)`` against central differences, float64; returns the Jacobians."""
    jac = jax.jit(jax.vmap(jax.jacfwd(env.transition, argnums=2)))
    d_obs, d_r = jac(states, actions, contexts)
    dim = contexts.shape[1]
    tr = jax.jit(jax.vmap(env.transition))
    for i in range(dim):
        h = FD_STEP * np.maximum(1.0, np.abs(contexts[:, i]))
        e = np.zeros_like(contexts)
        e[:, i] = h
        (op, rp), (om, rm) = tr(states, actions, contexts + e), tr(states, actions, contexts - e)
        fd_obs = (np.asarray(op) - np.asarray(om)) / (2 * h[:, None])
        fd_r = (np.asarray(rp) - np.asarray(rm)) / (2 * h)
        assert np.all(np.isfinite(d_obs[..., i])) and np.all(np.isfinite(d_r[:, i]))
        np.testing.assert_allclose(d_obs[..., i], fd_obs, rtol=tol, atol=tol, err_msg=f"d obs / d c[{i}]")
        np.testing.assert_allclose(d_r[:, i], fd_r, rtol=tol, atol=tol, err_msg=f"d r / d c[{i}]")
    return np.asarray(d_obs), np.asarray(d_r)


# ------------------------------------------------------------------------ pendulum
@pytest.mark.parametrize("integrator", ["paper", "gym"])
def test_pendulum_steps_match_numpy_reference(integrator):
    """Several contexts, 40 steps each from random states, random actions (some beyond +-2)."""
    rng = np.random.default_rng(10)
    contexts = _pendulum_contexts(rng, 5)
    env = make("pendulum_goal") if integrator == "paper" else make("pendulum_goal", integrator="gym")
    assert env.integrator == integrator
    with jax.enable_x64(True):
        step = jax.jit(env.env_step)
        for ctx in contexts:
            js = jnp.array([rng.uniform(-math.pi, math.pi), rng.uniform(-1, 1)])
            for a in rng.uniform(-2.5, 2.5, size=40):
                s, r_ref = np_pendulum(np.asarray(js), a, ctx, integrator)  # one step from the env's state
                js, obs, r, term = step(js, jnp.array([a]), jnp.asarray(ctx))
                np.testing.assert_allclose(js, s, rtol=1e-12, atol=1e-12)
                np.testing.assert_allclose(obs, [math.cos(s[0]), math.sin(s[0]), s[1]], rtol=1e-12, atol=1e-12)
                np.testing.assert_allclose(r, r_ref, rtol=1e-12, atol=1e-12)
                assert not bool(term)


def test_pendulum_paper_step_is_explicit_and_unclipped():
    """From thdot = 7.9 with full torque: the paper's step keeps the speed above 8 and moves theta by dt thdot."""
    ctx = jnp.array([2.0, 1.0, 1.0, 0.0])
    s = jnp.array([1.0, 7.9])
    a = jnp.array([2.0])
    paper, _, _, _ = PendulumGoal().env_step(s, a, ctx)
    gym, _, _, _ = PendulumGoal(integrator="gym").env_step(s, a, ctx)
    acc = 3.0 * 2.0 / 2.0 * math.sin(1.0) + 3.0 * 2.0
    np.testing.assert_allclose(paper, [1.0 + 0.05 * 7.9, 7.9 + 0.05 * acc], rtol=1e-6)
    assert float(paper[1]) > 8.0
    np.testing.assert_allclose(gym, [1.0 + 0.05 * 8.0, 8.0], rtol=1e-6)


def test_pendulum_goal_where_the_paper_is_undefined():
    """|tau| > m g l: the paper's asin is NaN; zsgjax saturates the goal at -+pi/2 (documented)."""
    ctx = np.array([0.5, 0.5, 0.5, 1.0])
    with np.errstate(invalid="ignore"):
        assert np.isnan(np.arcsin(-ctx[3] / ctx[:3].prod()))
    nxt, _, r, _ = PendulumGoal().env_step(jnp.array([-math.pi / 2, 0.0]), jnp.array([0.0]), jnp.asarray(ctx))
    # theta' = -pi/2 is the saturated goal: only the speed term is left
    np.testing.assert_allclose(nxt[0], -math.pi / 2, rtol=1e-7)
    np.testing.assert_allclose(r, -0.1 * float(nxt[1]) ** 2, rtol=1e-5)


@pytest.mark.parametrize("integrator", ["paper", "gym"])
def test_pendulum_context_jacobian_matches_finite_differences(integrator):
    rng = np.random.default_rng(11)
    contexts = _pendulum_contexts(rng, 13)
    n = contexts.shape[0]
    states = np.stack([rng.uniform(-math.pi, math.pi, n), rng.uniform(-1, 1, n)], axis=1)  # gym clip inactive
    actions = rng.uniform(-1.9, 1.9, size=(n, 1))
    with jax.enable_x64(True):
        d_obs, d_r = _fd_check(PendulumGoal(integrator=integrator), states, actions, contexts)
    assert d_obs.shape == (n, 3, 4) and d_r.shape == (n, 4)
    assert np.all(np.abs(d_r[:, 3]) > 0)  # tau moves the goal
    if integrator == "paper":
        # theta' = theta + dt thdot does not depend on the context: d cos/sin(theta') / dc = 0
        np.testing.assert_array_equal(d_obs[:, :2], 0.0)
    else:
        assert np.all(np.abs(d_obs[:, :2, 0]).max(1) > 0)


# ------------------------------------------------------------------------ cart_goal
@pytest.mark.parametrize("x_threshold", [None, 5.0])
def test_cart_steps_match_numpy_reference(x_threshold):
    """Contexts incl. far goals; episodes run (pushing mostly toward the goal) until termination."""
    env = make("cart_goal") if x_threshold is None else make("cart_goal", x_threshold=x_threshold)
    threshold = 2.4 if x_threshold is None else x_threshold
    assert env.x_threshold == threshold
    rng = np.random.default_rng(12)
    contexts = [np.asarray(CartGoal.context_space.default), (3.0, 0.5, 1.5, 1.2, -2.0), (10.0, 0.1, 1.0, 0.5, 4.0),
                (12.0, 0.05, 0.5, 0.3, -4.0)]  # fmt: skip
    ends = []
    with jax.enable_x64(True):
        step = jax.jit(env.env_step)
        for ctx in contexts:
            ctx = np.asarray(ctx, np.float64)
            s = rng.uniform(-0.05, 0.05, size=4)
            js = jnp.asarray(s)
            for t in range(300):
                # keep the pole up (push under it) with a bias toward the goal, so the cart travels
                if rng.uniform() < 0.9:
                    a = int(s[2] + 0.3 * s[3] + 0.02 * np.sign(ctx[4] - s[0]) > 0)
                else:
                    a = 1 - int(s[2] > 0)
                # one step from the env's own state: the upright pole is unstable, so two
                # float64 trajectories with different rounding drift apart over hundreds of steps
                s, r_ref, term_ref = np_cart(np.asarray(js), a, ctx, threshold)
                js, obs, r, term = step(js, jnp.int32(a), jnp.asarray(ctx))
                np.testing.assert_allclose(js, s, rtol=1e-12, atol=1e-12)
                np.testing.assert_array_equal(obs, js)
                np.testing.assert_allclose(r, r_ref, rtol=1e-12, atol=1e-12)
                assert bool(term) == term_ref
                if term_ref:
                    break
            ends.append((t, s[0]))
    # the cart travelled, and the track limit (not only the pole angle) ended an episode
    assert any(t < 299 and abs(x) > threshold for t, x in ends), ends


def test_cart_track_limit_default_and_option():
    ctx = jnp.asarray(CartGoal.context_space.default)
    for x, narrow, wide in [(2.39, False, False), (2.41, True, False), (-2.41, True, False), (4.99, True, False),
                            (5.01, True, True)]:  # fmt: skip
        s = jnp.array([x, 0.0, 0.0, 0.0])  # xdot = 0: x' = x
        assert bool(CartGoal().env_step(s, jnp.int32(1), ctx)[3]) == narrow, x
        assert bool(CartGoal(x_threshold=5.0).env_step(s, jnp.int32(1), ctx)[3]) == wide, x


@pytest.mark.parametrize("x_threshold", [2.4, 5.0])
def test_cart_context_jacobian_matches_finite_differences(x_threshold):
    rng = np.random.default_rng(13)
    n = 16
    space = CartGoal.context_space
    contexts = rng.uniform(space.low, space.high, size=(n, 5))
    states = np.stack([rng.uniform(-2, 2, n), rng.uniform(-2, 2, n), rng.uniform(-0.2, 0.2, n),
                       rng.uniform(-2, 2, n)], axis=1)  # fmt: skip
    actions = rng.integers(0, 2, size=(n,)).astype(np.int32)
    with jax.enable_x64(True):
        d_obs, d_r = _fd_check(CartGoal(x_threshold=x_threshold), states, actions, contexts)
    # x' = x + tau xdot and theta' = theta + tau thetadot do not depend on the context
    np.testing.assert_array_equal(d_obs[:, [0, 2]], 0.0)
    np.testing.assert_array_equal(d_obs[:, :, 4], 0.0)  # the goal enters the reward only
    assert np.all(np.abs(d_r[:, 4]) > 0)


# ------------------------------------------------------------------------------ ant
ANT_OPTIONS = [(context, reward) for context in ("vector", "angle") for reward in ("paper", "zsgjax")]


@pytest.fixture(scope="module")
def ants():
    """Every (task, context, reward) combination, built once (no physics is compiled here)."""
    return {
        (name, context, reward): make(name, context=context, reward=reward)
        for name in ("ant_direction", "ant_goal")
        for context, reward in ANT_OPTIONS
    }


def _ant_states(rng, n, nq=15, nv=14, nbody=14):
    """``n >= 4`` constructed ``(state, next_state)`` pairs: forces in and out of ``[-1, 1]``.

    The last three next states are unhealthy in three ways: ``z' = 0.1``, ``z' = 1.1`` and
    a NaN velocity (at ``z' = 0.5``); the others are healthy.
    """
    from zsgjax.envs.mjx.ant import AntState

    def one(z):
        qpos = rng.normal(size=(n, nq))
        qpos[:, 2] = z
        return AntState(
            qpos=jnp.asarray(qpos),
            qvel=jnp.asarray(rng.normal(size=(n, nv))),
            qacc_warmstart=jnp.asarray(rng.normal(size=(n, nv))),
            # the world body (row 0) has no external force, as in MuJoCo
            cfrc_ext=jnp.asarray(
                np.concatenate([np.zeros((n, 1, 6)), rng.normal(scale=2.0, size=(n, nbody - 1, 6))], axis=1)
            ),
        )

    state = one(rng.uniform(0.3, 0.9, n))
    nxt = one(np.concatenate([rng.uniform(0.3, 0.9, n - 3), [0.1, 1.1, 0.5]]))
    nxt = nxt.replace(qpos=nxt.qpos.at[:, :2].set(state.qpos[:, :2] + 0.05 * rng.normal(size=(n, 2))))
    nxt = nxt.replace(qvel=nxt.qvel.at[-1, 3].set(jnp.nan))  # last sample: non-finite, otherwise healthy
    return state, nxt


def np_ant(name, context, reward, qpos, qpos1, qvel1, cfrc1, a, c):
    """``(reward, terminated)`` of every ant option in float64 NumPy (one sample)."""
    if context == "vector":
        target = np.asarray(c[:2])
    else:
        radius = 1.0 if name == "ant_direction" else 3.0
        target = radius * np.array([math.cos(c[0]), math.sin(c[0])])
    ctrl = 0.5 * np.sum(a**2)
    in_z = 0.2 <= qpos1[2] <= 1.0
    if reward == "paper":  # Gymnasium Ant-v5 terms, as the paper's ant_dir.py / ant_goal.py
        contact = 5e-4 * np.sum(np.clip(cfrc1, -1.0, 1.0) ** 2)
        healthy = in_z and np.isfinite(qpos1).all() and np.isfinite(qvel1).all()
        if name == "ant_direction":
            return np.dot(target, (qpos1[:2] - qpos[:2]) / 0.05) + 1.0 * healthy - ctrl - contact, not healthy
        return 1.0 - np.sqrt(1.0 + np.linalg.norm(qpos1[:2] - target) ** 2) - ctrl - contact, False
    if name == "ant_direction":  # the earlier zsgjax ant
        return np.dot(target, (qpos1[:2] - qpos[:2]) / 0.05) + 1.0 - ctrl, not in_z
    progress = (np.linalg.norm(qpos[:2] - target) - np.linalg.norm(qpos1[:2] - target)) / 0.05
    return progress + 1.0 - ctrl, not in_z


@pytest.mark.parametrize("name", ["ant_direction", "ant_goal"])
@pytest.mark.parametrize("context, reward", ANT_OPTIONS)
def test_ant_reward_and_termination_match_numpy_reference(name, context, reward, ants):
    env = ants[(name, context, reward)]
    rng = np.random.default_rng(14)
    n = 12
    with jax.enable_x64(True):
        state, nxt = _ant_states(rng, n)
        actions = jnp.asarray(rng.uniform(-1, 1, size=(n, 8)))
        contexts = env.context_space.sample_uniform(jax.random.PRNGKey(0), (n,)).astype(jnp.float64)
        rew, term = jax.vmap(env.reward_and_termination)(state, nxt, actions, contexts)
        assert rew.dtype == jnp.float64 and term.dtype == jnp.bool_
        for i in range(n):
            r_ref, t_ref = np_ant(name, context, reward, *(np.asarray(x[i]) for x in (state.qpos, nxt.qpos, nxt.qvel,
                                  nxt.cfrc_ext, actions, contexts)))  # fmt: skip
            if np.isfinite(r_ref):
                np.testing.assert_allclose(rew[i], r_ref, rtol=1e-12, atol=1e-12)
            else:
                assert not np.isfinite(float(rew[i]))
            assert bool(term[i]) == t_ref, i
    if name == "ant_goal" and reward == "paper":
        assert not bool(jnp.any(term))  # no termination, even below z = 0.2, above 1 or non-finite
    else:
        np.testing.assert_array_equal(term[-3:-1], [True, True])  # z' = 0.1, z' = 1.1


@pytest.mark.parametrize("name", ["ant_direction", "ant_goal"])
@pytest.mark.parametrize("context, reward", ANT_OPTIONS)
def test_ant_observation_content(name, context, reward, ants):
    env = ants[(name, context, reward)]
    rng = np.random.default_rng(15)
    state, _ = _ant_states(rng, 4)
    state = jax.tree.map(lambda x: x[0].astype(jnp.float32), state)
    obs = env.observe(state, env.default_context())
    position = state.qpos[2:] if name == "ant_direction" else state.qpos
    parts = [position, state.qvel]
    if reward == "paper":  # contact forces follow the reward option by default
        assert env.include_cfrc_ext_in_observation
        parts.append(np.clip(state.cfrc_ext[1:], -1.0, 1.0).ravel())
    np.testing.assert_array_equal(obs, np.concatenate(parts))
    assert env.state_obs_size == obs.shape[0] == {"ant_direction": 27, "ant_goal": 29}[name] + 78 * (reward == "paper")
    # the option overrides the default both ways
    flipped = make(name, context=context, reward=reward, include_cfrc_ext_in_observation=reward != "paper")
    assert flipped.state_obs_size == env.state_obs_size + (78 if reward != "paper" else -78)


@pytest.mark.parametrize("name", ["ant_direction", "ant_goal"])
@pytest.mark.parametrize("context, reward", ANT_OPTIONS)
def test_ant_reward_context_derivatives(name, context, reward, ants):
    """``jacfwd`` of the reward in the reward context vs central FD (float64); the paper's own ``dr_dcontext``."""
    env = ants[(name, context, reward)]
    rng = np.random.default_rng(16)
    n = 8
    with jax.enable_x64(True):
        state, nxt = _ant_states(rng, n + 3)
        state, nxt = jax.tree.map(lambda x: x[:n], state), jax.tree.map(lambda x: x[:n], nxt)  # healthy, finite
        actions = jnp.asarray(rng.uniform(-1, 1, size=(n, 8)))
        contexts = env.context_space.sample_uniform(jax.random.PRNGKey(1), (n,)).astype(jnp.float64)

        def r(s, s1, a, c):
            return env.reward_and_termination(s, s1, a, c)[0]

        grad = jax.vmap(jax.jacfwd(r, argnums=3))(state, nxt, actions, contexts)
        k = env.num_reward_context
        for i in range(k):
            e = jnp.zeros((k,)).at[i].set(FD_STEP)
            fd = (jax.vmap(r)(state, nxt, actions, contexts + e) - jax.vmap(r)(state, nxt, actions, contexts - e))
            np.testing.assert_allclose(grad[:, i], fd / (2 * FD_STEP), rtol=1e-6, atol=1e-6)
        if context == "vector" and reward == "paper":
            # the paper's dr_dcontext: xy_velocity (ant_dir.py), (p' - g) / sqrt(1 + |p' - g|^2) (ant_goal.py)
            p, p1 = np.asarray(state.qpos[:, :2]), np.asarray(nxt.qpos[:, :2])
            if name == "ant_direction":
                want = (p1 - p) / 0.05
            else:
                diff = p1 - np.asarray(contexts)
                want = diff / np.sqrt(1.0 + np.sum(diff**2, axis=1, keepdims=True))
            np.testing.assert_allclose(grad, want, rtol=1e-12, atol=1e-12)


def test_ant_options_reach_make_and_keep_the_state_small():
    from zsgjax.envs.mjx import MjxState
    from zsgjax.envs.mjx.ant import AntState

    env = make("ant_goal", context="angle", reward="zsgjax", include_cfrc_ext_in_observation=True)
    assert (env.context_kind, env.reward_kind, env.include_cfrc_ext_in_observation) == ("angle", "zsgjax", True)
    assert env.context_space.names == ("goal_angle",) and env.state_obs_size == 107
    s = env.init_env_state(jax.random.PRNGKey(0), env.default_context())
    assert isinstance(s, AntState) and s.cfrc_ext.shape == (14, 6)
    np.testing.assert_array_equal(s.cfrc_ext, 0.0)  # as Gymnasium's reset: no contact forces computed yet
    # the earlier zsgjax ant keeps the plain MjxState (no contact forces computed or stored)
    old = make("ant_direction", context="angle", reward="zsgjax")
    assert type(old.init_env_state(jax.random.PRNGKey(0), old.default_context())) is MjxState
    assert not old.keeps_contact_forces and old.state_obs_size == 27


def test_cheetah_reward_matches_closed_form():
    """cheetah_velocity's reward ``1 - sqrt(1 + (v - v*)^2) - 0.1 |a|^2`` with ``v = (x' - x) / dt``, float64 NumPy."""
    from zsgjax.envs.mjx import MjxState

    env = make("cheetah_velocity")
    rng = np.random.default_rng(21)
    n = 6
    with jax.enable_x64(True):
        nq, nv = env.mj_model.nq, env.mj_model.nv
        q0, q1 = rng.normal(size=(n, nq)), rng.normal(size=(n, nq))
        state = MjxState(jnp.asarray(q0), jnp.zeros((n, nv)), jnp.zeros((n, nv)))
        nxt = MjxState(jnp.asarray(q1), jnp.zeros((n, nv)), jnp.zeros((n, nv)))
        actions = rng.uniform(-1, 1, size=(n, env.action_size))
        targets = rng.uniform(-1, 3, size=(n, 1))
        rew, term = jax.vmap(env.reward_and_termination)(state, nxt, jnp.asarray(actions), jnp.asarray(targets))
        v = (q1[:, 0] - q0[:, 0]) / env.dt
        want = 1.0 - np.sqrt(1.0 + (v - targets[:, 0]) ** 2) - 0.1 * np.sum(actions**2, axis=1)
        np.testing.assert_allclose(np.asarray(rew), want, rtol=1e-12, atol=1e-12)
        assert not np.any(np.asarray(term))
