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
``1e-6 * (1 + |FD|)`` leaves a margin of 30 over the measured error. (Measured again
for the paper's default ant, 2-vector reward context and contact forces in the
observation and reward, on this test's 4 states: 6e-9.)

One jitted batched step (``vmap`` of ``env_step`` over ``2 * dim * n`` samples)
serves both the rollout and the finite differences, so each test compiles the
step once and the derivative once. The ant tests reuse that step for the paper's
reward, termination and observation (a float64 NumPy reference) and for a
comparison with MuJoCo C (``mj_step`` + ``mj_rnePostConstraint``, as Gymnasium's
``Ant-v5``): measured agreement 1e-13 in ``cfrc_ext``, 1e-14 in ``qvel``.
The environments are the defaults (the paper's 2-vector reward contexts, contact
forces in the observation and the contact cost in the reward). Slow (``-m slow``):
the Jacobian checks (the default suite checks the cheetah's in ``test_contracts.py``), the same Jacobian check for
the earlier zsgjax ant (``context="angle", reward="zsgjax"``), and the Jacobian of the raw contact forces ``cfrc_ext`` (which
the paper's clip to [-1, 1] hides from the default check in contact).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax import context_gradients
from zsgjax.methods import enhancement
from zsgjax.envs import make
from zsgjax.context_gradients import finite_mask
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


EARLIER_ANT = dict(context="angle", reward="zsgjax")  # the earlier zsgjax ant (an option now)


@pytest.mark.parametrize(
    "name, seed, kwargs",
    [
        # the default suite checks the cheetah's Jacobian (every physical feature) in test_contracts.py;
        # here, slow (about 36 CPU-s each): the structure checks and references below for every MJX env
        pytest.param("cheetah_velocity", 0, {}, marks=pytest.mark.slow, id="cheetah_velocity-0-kwargs0"),
        # the ant's reward function and its Jacobian are checked by default in test_paper_envs.py
        pytest.param("ant_direction", 1, {}, marks=pytest.mark.slow, id="ant_direction-1-kwargs1"),
        pytest.param("ant_goal", 2, {}, marks=pytest.mark.slow, id="ant_goal-2-kwargs2"),
        pytest.param("ant_direction", 3, EARLIER_ANT, marks=pytest.mark.slow, id="ant_direction-angle-zsgjax"),
        pytest.param("ant_goal", 4, EARLIER_ANT, marks=pytest.mark.slow, id="ant_goal-angle-zsgjax"),
    ],
)
def test_context_jacobian_matches_finite_differences(name, seed, kwargs):
    with jax.enable_x64(True):
        env = make(name, physical=ALL_FEATURES, **kwargs)
        assert env.model.body_mass.dtype == jnp.float64
        dim = env.context_dim
        step_fn = jax.jit(jax.vmap(env.env_step))
        states, actions, contexts = _random_states(env, step_fn, jax.random.PRNGKey(seed), 2 * dim)
        jac_fn = jax.jit(jax.vmap(lambda s, a, c: context_gradients.context_jacobian(env, s, a, c)))
        grads = jac_fn(states, actions, contexts)
        assert grads.d_obs.shape == (NUM_STATES, env.state_obs_size, dim)
        assert grads.d_reward.shape == (NUM_STATES, dim)
        assert bool(jnp.all(finite_mask(grads)))

        fd_obs, fd_rew = _central_differences(env, step_fn, states, actions, contexts)
        for i, feature in enumerate(env.context_space.names):
            _assert_close(grads.d_obs[..., i], fd_obs[..., i], f"{name} d next_obs / d {feature}")
            _assert_close(grads.d_reward[:, i], fd_rew[:, i], f"{name} d reward / d {feature}")
        # the reward context does not enter the physics; every physical feature does
        k = env.num_reward_context
        np.testing.assert_array_equal(grads.d_obs[..., :k], 0.0)
        assert np.all(np.abs(grads.d_reward[:, :k]) > 0)
        assert np.all(np.max(np.abs(grads.d_obs[..., k:]), axis=(0, 1)) > 1e-3)
        if name.startswith("ant") and not kwargs:
            # same compiled step: the paper's reward, termination and observation, and MuJoCo C
            _check_ant_against_references(name, env, step_fn, states, actions, contexts)


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


@pytest.mark.slow
def test_context_jvp_and_forced_non_finite_derivatives():
    """``context_jvp`` agrees with FD along a direction; a zero mass gives non-finite derivatives that are masked.

    Slow: the default suite checks ``context_jvp`` against FD for the cheetah in test_contracts.py and the
    masking of non-finite stored derivatives for every method there too."""
    with jax.enable_x64(True):
        env = make("cheetah_velocity", physical=ALL_FEATURES)
        dim = env.context_dim
        step_fn = jax.jit(jax.vmap(env.env_step))
        states, actions, contexts = _random_states(env, step_fn, jax.random.PRNGKey(7), 2 * dim)
        widths = jnp.asarray(np.subtract(env.context_space.high, env.context_space.low))
        directions = enhancement.sample_sphere(jax.random.PRNGKey(8), dim, (NUM_STATES,)).astype(jnp.float64)
        delta = 0.05 * directions * widths  # a CSE-sized step, comparable in every dimension
        jvp_fn = jax.jit(jax.vmap(lambda s, a, c, d: context_gradients.context_jvp(env, s, a, c, d)))
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
        np.testing.assert_array_equal(valid, jax.vmap(context_gradients.gradients_finite)(grads))

        # downstream, CSE keeps the invalid sample unchanged and reports it
        transitions = Transition(
            obs=jax.vmap(env.make_obs)(jax.vmap(env.observe)(states, contexts), contexts),
            action=actions,
            reward=reward,
            next_obs=jax.vmap(env.make_obs)(next_obs, contexts),
            done=jnp.zeros((NUM_STATES,)),
            context=contexts,
        )
        enhanced, flags = jax.vmap(enhancement.enhance_with_directional)(transitions, grads)
        np.testing.assert_array_equal(flags, valid)
        assert bool(jnp.all(finite_mask(enhanced)))
        np.testing.assert_array_equal(enhanced.next_obs[1], transitions.next_obs[1])
        np.testing.assert_allclose(enhanced.next_obs[0, : env.state_obs_size], next_obs[0] + d_obs_bad[0])


# ------------------------------------------------------------------ ant references
def np_ant_reward(name, qpos, qpos_next, qvel_next, cfrc_next, action, target, dt):
    """The paper's ant reward and termination (Gymnasium ``Ant-v5`` terms), float64 NumPy.

    ``qpos``/``qpos_next`` ``(15,)``, ``qvel_next`` ``(14,)``, ``cfrc_next`` ``(14, 6)``,
    ``action`` ``(8,)`` (already in ``[-1, 1]``), ``target``: the direction or goal ``(2,)``.
    """
    ctrl_cost = 0.5 * np.sum(np.square(action))
    contact_cost = 5e-4 * np.sum(np.square(np.clip(cfrc_next, -1.0, 1.0)))
    healthy = bool(np.isfinite(np.concatenate([qpos_next, qvel_next])).all() and 0.2 <= qpos_next[2] <= 1.0)
    if name == "ant_direction":
        velocity = (qpos_next[:2] - qpos[:2]) / dt
        return float(np.dot(target, velocity) + 1.0 * healthy - ctrl_cost - contact_cost), not healthy
    goal_reward = 1.0 - np.sqrt(1.0 + np.linalg.norm(qpos_next[:2] - target) ** 2)
    return float(goal_reward + 0.0 - ctrl_cost - contact_cost), False


def _check_ant_against_references(name, env, step_fn, states, actions, contexts):
    """Float64 ant checks on real MJX states: NumPy reward/termination/observation, and MuJoCo C.

    At the sampled contexts and at the same contexts with the physical part reset to
    its default, the env's reward, termination and next observation are compared
    with :func:`np_ant_reward` and the observation layout of ``Ant-v5``
    (``qpos[2:]`` or ``qpos``, ``qvel``, ``clip(cfrc_ext[1:], -1, 1)``). At the
    default physical context the MJX step (its ``cfrc_ext`` from
    ``mjx.rne_postconstraint``) is also compared with MuJoCo C's ``mj_step`` x 5 +
    ``mj_rnePostConstraint`` from the same ``(qpos, qvel, qacc_warmstart, ctrl)``:
    what Gymnasium's ``Ant-v5`` computes.
    """
    import mujoco

    k = env.num_reward_context
    at_default = contexts.at[:, k:].set(jnp.asarray(env.context_space.default[k:]))
    a = np.clip(np.asarray(actions), -1.0, 1.0)
    for ctx in (contexts, at_default):
        next_states, obs, rew, term = _step_full(env, step_fn, states, actions, ctx)
        for i in range(NUM_STATES):
            qpos, qpos1 = np.asarray(states.qpos[i]), np.asarray(next_states.qpos[i])
            qvel1, cfrc1 = np.asarray(next_states.qvel[i]), np.asarray(next_states.cfrc_ext[i])
            r, t = np_ant_reward(name, qpos, qpos1, qvel1, cfrc1, a[i], np.asarray(ctx[i, :2]), 0.05)
            np.testing.assert_allclose(rew[i], r, rtol=1e-12, atol=1e-12)
            assert bool(term[i]) == t
            position = qpos1[2:] if name == "ant_direction" else qpos1
            want = np.concatenate([position, qvel1, np.clip(cfrc1[1:], -1.0, 1.0).ravel()])
            np.testing.assert_array_equal(obs[i], want)

    # MuJoCo C at the default physical context (next_states are those of at_default)
    m = env.mj_model
    d = mujoco.MjData(m)
    in_contact = 0
    for i in range(NUM_STATES):
        d.qpos[:], d.qvel[:] = np.asarray(states.qpos[i]), np.asarray(states.qvel[i])
        d.qacc_warmstart[:] = np.asarray(states.qacc_warmstart[i])
        d.ctrl[:] = a[i]
        mujoco.mj_step(m, d, nstep=env.n_frames)
        mujoco.mj_rnePostConstraint(m, d)
        np.testing.assert_allclose(next_states.qpos[i], d.qpos, atol=1e-8)
        np.testing.assert_allclose(next_states.qvel[i], d.qvel, atol=1e-6)
        scale = 1.0 + np.abs(d.cfrc_ext).max()
        np.testing.assert_allclose(next_states.cfrc_ext[i], d.cfrc_ext, atol=1e-6 * scale)
        in_contact += bool(np.abs(d.cfrc_ext).max() > 1.0)
    assert in_contact >= 1, "no state with feet on the ground: the contact-force check is vacuous"


def _step_full(env, step_fn, states, actions, contexts):
    """``step_fn`` on ``NUM_STATES`` samples (padded to its compiled batch size): ``(next, obs, r, term)``."""
    size = 2 * env.context_dim * NUM_STATES
    fill = lambda x: jnp.concatenate([x, jnp.repeat(x[:1], size - x.shape[0], axis=0)])  # noqa: E731
    out = step_fn(jax.tree.map(fill, states), fill(actions), fill(contexts))
    return jax.tree.map(lambda x: x[:NUM_STATES], out)


@pytest.mark.slow
def test_ant_contact_force_jacobian_matches_finite_differences():
    """The raw ``cfrc_ext`` of the ant's state (before the paper's clip to [-1, 1]) against FD.

    In contact the feet's forces are far outside [-1, 1], so the clipped forces in the
    observation and the contact cost mostly have zero derivative and the default
    Jacobian test does not see this path; here the derivative through
    ``mjx.rne_postconstraint`` is checked directly.
    """
    with jax.enable_x64(True):
        env = make("ant_goal", physical=ALL_FEATURES)
        dim = env.context_dim
        step_fn = jax.jit(jax.vmap(env.env_step))
        states, actions, contexts = _random_states(env, step_fn, jax.random.PRNGKey(2), 2 * dim)
        forces = lambda s, a, c: env.env_step(s, a, c)[0].cfrc_ext  # noqa: E731
        jac = jax.jit(jax.vmap(jax.jacfwd(forces, argnums=2)))(states, actions, contexts)  # (n, nbody, 6, dim)
        assert bool(jnp.all(jnp.isfinite(jac)))
        widths = jnp.asarray(np.subtract(env.context_space.high, env.context_space.low))
        h = H_REL * widths
        ctx = (contexts[:, None, :] + jnp.concatenate([jnp.diag(h), -jnp.diag(h)])[None]).reshape(-1, dim)
        nxt = step_fn(_repeat(states, 2 * dim), _repeat(actions, 2 * dim), ctx)[0]
        f = nxt.cfrc_ext.reshape(NUM_STATES, 2, dim, *nxt.cfrc_ext.shape[1:])
        fd = jnp.moveaxis((f[:, 0] - f[:, 1]) / (2 * h[:, None, None]), 1, -1)  # (n, nbody, 6, dim)
        for i, feature in enumerate(env.context_space.names):
            _assert_close(jac[..., i], fd[..., i], f"ant_goal d cfrc_ext / d {feature}")
        assert float(jnp.max(jnp.abs(jac))) > 1.0  # a state in contact: the check is not vacuous


@pytest.mark.slow
def test_first_order_enhancement_is_second_order_on_mjx():
    """CSE's Eq. 11 through MJX physics (cheetah, physical ``mass_scale``, float64): the
    first-order enhanced next observation misses the exact one by O(|delta_c|^2)."""
    with jax.enable_x64(True):
        env = make("cheetah_velocity", physical=("mass_scale",))
        step_fn = jax.jit(jax.vmap(env.env_step))
        states, actions, contexts = _random_states(env, step_fn, jax.random.PRNGKey(11), 1)
        state = jax.tree.map(lambda x: x[0], states)
        action, context = actions[0], contexts[0]
        grads = jax.jit(lambda s, a, c: context_gradients.context_jacobian(env, s, a, c))(state, action, context)
        transition = jax.jit(env.transition)
        base_obs, _ = transition(state, action, context)
        errors = []
        for eps in (0.04, 0.02, 0.01):
            delta = jnp.zeros(env.context_dim).at[1].set(eps)  # along mass_scale
            exact_obs, _ = transition(state, action, context + delta)
            first_order = base_obs + grads.d_obs @ delta
            errors.append(float(jnp.linalg.norm(exact_obs - first_order)))
        ratios = [errors[0] / errors[1], errors[1] / errors[2]]
        assert all(3.0 < r < 5.0 for r in ratios), (errors, ratios)  # halving the step quarters the error


@pytest.mark.slow
def test_implicit_solver_tangent_matches_unrolled_and_keeps_the_primal():
    """The implicit-function-theorem tangent of the constraint solver (cheetah's default).

    Float64, one step from 2 states after a random rollout, at random contexts, with
    every physical feature: the primal step equals MJX's own step exactly, and the
    directional derivative equals the one differentiated through every solver and
    line-search iteration (measured: 3e-14 relative to ``1 + |unrolled|``; both are
    within 5e-8 of central differences, :func:`test_context_jacobian_matches_finite_differences`
    checks the implicit one against them).
    """
    with jax.enable_x64(True):
        envs = {k: make("cheetah_velocity", physical=ALL_FEATURES, solver_tangent=k) for k in ("implicit", "unrolled")}
        env = envs["implicit"]
        space = env.context_space
        k_init, k_ctx, k_act, k_dir = jax.random.split(jax.random.PRNGKey(5), 4)
        n = 2
        contexts = space.sample_uniform(k_ctx, (n,)).astype(jnp.float64)
        states = jax.vmap(env.init_env_state)(jax.random.split(k_init, n), contexts)
        actions = jax.random.uniform(k_act, (3, n, env.action_size), jnp.float64, -1.0, 1.0)
        delta = 0.1 * enhancement.sample_sphere(k_dir, env.context_dim, (n,)).astype(jnp.float64)

        def both(states, actions, contexts, delta):
            for t in range(2):  # move the bodies (feet in and out of contact)
                states = jax.vmap(env.env_step)(states, actions[t], contexts)[0]
            out = {}
            for k, e in envs.items():
                step = jax.vmap(lambda s, a, c, d, e=e: context_gradients.step_and_jvp(e, s, a, c, d))
                out[k] = step(states, actions[2], contexts, delta)
            return out

        out = jax.jit(both)(states, actions, contexts, delta)
        (p_impl, g_impl), (p_unr, g_unr) = out["implicit"], out["unrolled"]
        for a, b in zip(jax.tree.leaves(p_impl), jax.tree.leaves(p_unr)):
            np.testing.assert_array_equal(a, b)
        assert float(jnp.max(jnp.abs(g_unr.d_obs))) > 1e-3  # the physics does depend on the context
        for a, b in ((g_impl.d_obs, g_unr.d_obs), (g_impl.d_reward, g_unr.d_reward)):
            err = np.asarray(jnp.abs(a - b) / (1.0 + jnp.abs(b)))
            assert err.max() <= 1e-10, f"implicit vs unrolled tangent: max error {err.max():.3g}"
