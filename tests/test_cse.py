"""Context gradients and CSE enhancement against independent references.

The float64 checks compute everything for one env in a single jitted, vmapped
function (one compilation per env): the ``jacfwd`` Jacobian, central finite
differences, the ``jvp`` along a random step, and the fused step-and-gradient
variants.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax import context_gradients
from zsgjax.methods import enhancement
from zsgjax.envs import make
from zsgjax.types import ContextGradients, DirectionalGradients, Transition

ENV_NAMES = ("simple_direction", "pendulum_goal", "cart_goal")
N = 16  # samples per env
FD_STEP = 1e-6


def _random_inputs(name, env, n, seed):
    """Random float64 ``(states, actions, contexts)`` away from clip boundaries (NumPy)."""
    rng = np.random.default_rng(seed)
    space = env.context_space
    contexts = rng.uniform(space.low, space.high, size=(n, space.dim))
    if name == "simple_direction":
        states = rng.uniform(-1, 1, size=(n, 2))
        actions = rng.uniform(-0.9, 0.9, size=(n, 2))
    elif name == "pendulum_goal":
        states = np.stack([rng.uniform(-np.pi, np.pi, n), rng.uniform(-1, 1, n)], axis=1)
        actions = rng.uniform(-1.9, 1.9, size=(n, 1))
        # Keep -tau / (m g l) inside (-0.9, 0.9): away from the goal's asin clip.
        g, m, l = contexts[:, 0], contexts[:, 1], contexts[:, 2]
        contexts[:, 3] = np.clip(0.9 * m * g * l * rng.uniform(-1, 1, n), -1, 1)
    elif name == "cart_goal":
        states = np.stack(
            [rng.uniform(-4, 4, n), rng.uniform(-2, 2, n), rng.uniform(-0.2, 0.2, n), rng.uniform(-2, 2, n)], axis=1
        )
        actions = rng.integers(0, 2, size=(n,)).astype(np.int32)
    else:
        raise ValueError(name)
    return states, actions, contexts


def _all_gradients(env):
    """One sample: Jacobian, finite differences, jvp and the fused variants."""

    def f(env_state, action, context, delta_c):
        jac = context_gradients.context_jacobian(env, env_state, action, context)
        h = FD_STEP * jnp.maximum(1.0, jnp.abs(context))  # (dim,)
        basis = jnp.eye(context.shape[0]) * h[:, None]

        def diff(e):
            obs_p, r_p = env.transition(env_state, action, context + e)
            obs_m, r_m = env.transition(env_state, action, context - e)
            return obs_p - obs_m, r_p - r_m

        d_obs, d_r = jax.vmap(diff)(basis)  # (dim, obs), (dim,)
        fd_obs = (d_obs / (2 * h[:, None])).T
        fd_r = d_r / (2 * h)
        jvp_obs, jvp_r = context_gradients.context_jvp(env, env_state, action, context, delta_c)
        step_j, grads_j = context_gradients.step_and_jacobian(env, env_state, action, context)
        step_v, grads_v = context_gradients.step_and_jvp(env, env_state, action, context, delta_c)
        primal = env.env_step(env_state, action, context)
        return dict(
            jac=jac, fd_obs=fd_obs, fd_r=fd_r, jvp_obs=jvp_obs, jvp_r=jvp_r,
            step_j=step_j, grads_j=grads_j, step_v=step_v, grads_v=grads_v, primal=primal,
        )  # fmt: skip

    return jax.jit(jax.vmap(f))


@pytest.fixture(scope="module", params=ENV_NAMES)
def grads64(request):
    """Float64 results for ``N`` random samples of one env (as NumPy)."""
    name = request.param
    env = make(name)
    states, actions, contexts = _random_inputs(name, env, N, seed=ENV_NAMES.index(name))
    deltas = np.random.default_rng(7).normal(size=contexts.shape) * 0.1
    with jax.enable_x64(True):
        out = _all_gradients(env)(jnp.asarray(states), jnp.asarray(actions), jnp.asarray(contexts), jnp.asarray(deltas))
        out = jax.tree.map(np.asarray, out)
    return name, env, (states, actions, contexts, deltas), out


def _assert_rel_close(actual, expected, rtol=1e-5):
    """Per-sample norm-wise relative error below ``rtol``, and elementwise closeness."""
    actual = actual.reshape(actual.shape[0], -1)
    expected = expected.reshape(expected.shape[0], -1)
    scale = np.maximum(np.abs(expected).max(axis=1), 1e-12)
    rel = np.abs(actual - expected).max(axis=1) / scale
    assert rel.max() < rtol, rel
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale.min())


def test_jacobian_matches_finite_differences(grads64):
    name, env, _, out = grads64
    jac = out["jac"]
    assert jac.d_obs.dtype == np.float64
    assert jac.d_obs.shape == (N, env.state_obs_size, env.context_dim)
    assert jac.d_reward.shape == (N, env.context_dim)
    _assert_rel_close(jac.d_obs, out["fd_obs"])
    _assert_rel_close(jac.d_reward, out["fd_r"])
    # The Jacobians are not trivially zero: every env's reward depends on its context.
    assert np.all(np.abs(jac.d_reward).max(axis=1) > 1e-3)


def test_jvp_equals_jacobian_times_step(grads64):
    _, _, (_, _, _, deltas), out = grads64
    jac = out["jac"]
    assert out["jvp_obs"].shape == jac.d_obs.shape[:2] and out["jvp_r"].shape == (N,)
    np.testing.assert_allclose(out["jvp_obs"], np.einsum("noc,nc->no", jac.d_obs, deltas), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out["jvp_r"], np.einsum("nc,nc->n", jac.d_reward, deltas), rtol=1e-10, atol=1e-12)
    # And the jvp is itself a finite-difference directional derivative.
    np.testing.assert_allclose(out["jvp_r"], np.einsum("nc,nc->n", out["fd_r"], deltas), rtol=1e-5, atol=1e-9)


def test_fused_step_and_gradients(grads64):
    _, _, (_, _, _, deltas), out = grads64
    for fused in (out["step_j"], out["step_v"]):
        for a, b in zip(fused, out["primal"]):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(out["grads_j"].d_obs, out["jac"].d_obs, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out["grads_j"].d_reward, out["jac"].d_reward, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(out["grads_v"].delta_c, deltas)
    np.testing.assert_allclose(out["grads_v"].d_obs, out["jvp_obs"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out["grads_v"].d_reward, out["jvp_r"], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("grads64", ["simple_direction"], indirect=True)
def test_simple_direction_closed_form(grads64):
    _, _, (states, actions, contexts, _), out = grads64
    # s' = s + a + c, r = s'.c:  d s'/dc = I, d r/dc = s + a + 2c.
    np.testing.assert_allclose(out["jac"].d_obs, np.broadcast_to(np.eye(2), (N, 2, 2)), rtol=0, atol=1e-15)
    np.testing.assert_allclose(out["jac"].d_reward, states + actions + 2 * contexts, rtol=1e-14)


# -------------------------------------------------------------- enhancement
def _simple_direction_transitions(n, seed):
    """Float64 SimpleDirection transitions with their env states (call inside x64)."""
    env = make("simple_direction")
    states, actions, contexts = _random_inputs("simple_direction", env, n, seed)
    s, a, c = jnp.asarray(states), jnp.asarray(actions), jnp.asarray(contexts)
    next_s, r = jax.vmap(env.transition)(s, a, c)
    tr = Transition(
        obs=jnp.concatenate([s, c], -1), action=a, reward=r,
        next_obs=jnp.concatenate([next_s, c], -1), done=jnp.zeros(n), context=c,
    )  # fmt: skip
    return env, s, tr


def test_enhance_with_jacobian_first_order_error_is_exact():
    with jax.enable_x64(True):
        env, s, tr = _simple_direction_transitions(N, seed=11)
        keys = jax.random.split(jax.random.PRNGKey(0), N)
        delta = jax.vmap(lambda k, c: enhancement.draw_context_step(k, c, env.context_space, 0.1))(keys, tr.context)
        grads = jax.vmap(lambda st, a, c: context_gradients.context_jacobian(env, st, a, c))(s, tr.action, tr.context)
        enh, valid = jax.vmap(enhancement.enhance_with_jacobian)(tr, grads, delta)
        exact, valid_x = jax.vmap(lambda st, t, d: enhancement.enhance_exact(env, st, t, d))(s, tr, delta)
        assert bool(jnp.all(valid)) and bool(jnp.all(valid_x))
        new_c = tr.context + delta
        # Recomputation at the new context, by hand.
        next_true = s + tr.action + new_c
        r_true = jnp.sum(next_true * new_c, -1)
        np.testing.assert_allclose(exact.next_obs, jnp.concatenate([next_true, new_c], -1), rtol=1e-14)
        np.testing.assert_allclose(exact.reward, r_true, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(exact.obs, jnp.concatenate([s, new_c], -1), rtol=1e-15)
        # First order: dynamics are linear in c -> exact; r is quadratic -> error exactly |dc|^2.
        np.testing.assert_allclose(enh.next_obs, exact.next_obs, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(exact.reward - enh.reward, jnp.sum(delta**2, -1), rtol=1e-8, atol=1e-14)
        assert float(jnp.min(jnp.sum(delta**2, -1))) > 1e-4  # the steps were not trivially zero
        for t in (enh, exact):
            np.testing.assert_array_equal(t.context, new_c)
            np.testing.assert_array_equal(t.action, tr.action)
            np.testing.assert_array_equal(t.done, tr.done)
            np.testing.assert_array_equal(t.obs, jnp.concatenate([s, new_c], -1))
        # The directional route gives the same first-order transition.
        dgrads = jax.vmap(
            lambda st, a, c, d: DirectionalGradients(d, *context_gradients.context_jvp(env, st, a, c, d))
        )(s, tr.action, tr.context, delta)
        enh_d, valid_d = jax.vmap(enhancement.enhance_with_directional)(tr, dgrads)
        assert bool(jnp.all(valid_d))
        for a, b in zip(jax.tree.leaves(enh_d), jax.tree.leaves(enh)):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_gradients_leave_transition_unchanged(bad):
    env, s, tr = _simple_direction_transitions(4, seed=12)
    delta = jnp.full((4, 2), 0.05)
    good = jax.vmap(lambda st, a, c: context_gradients.context_jacobian(env, st, a, c))(s, tr.action, tr.context)
    # Sample 1: bad d_obs; sample 2: bad d_reward; samples 0 and 3 stay finite.
    grads = ContextGradients(d_obs=good.d_obs.at[1, 0, 1].set(bad), d_reward=good.d_reward.at[2, 0].set(bad))
    assert list(jax.vmap(context_gradients.gradients_finite)(grads)) == [True, False, False, True]
    enh, valid = jax.vmap(enhancement.enhance_with_jacobian)(tr, grads, delta)
    np.testing.assert_array_equal(valid, [True, False, False, True])
    for leaf_e, leaf_o in zip(jax.tree.leaves(enh), jax.tree.leaves(tr)):
        assert bool(jnp.all(jnp.isfinite(leaf_e)))
        np.testing.assert_array_equal(leaf_e[1:3], leaf_o[1:3])
    assert not np.allclose(enh.context[0], tr.context[0])

    dgrads = DirectionalGradients(
        delta_c=delta,
        d_obs=jnp.einsum("noc,nc->no", good.d_obs, delta).at[1, 0].set(bad),
        d_reward=jnp.einsum("nc,nc->n", good.d_reward, delta).at[2].set(bad),
    )
    enh_d, valid_d = jax.vmap(enhancement.enhance_with_directional)(tr, dgrads)
    np.testing.assert_array_equal(valid_d, [True, False, False, True])
    for leaf_e, leaf_o in zip(jax.tree.leaves(enh_d), jax.tree.leaves(tr)):
        assert bool(jnp.all(jnp.isfinite(leaf_e)))
        np.testing.assert_array_equal(leaf_e[1:3], leaf_o[1:3])

    # Exact mode: a non-finite recomputation (corrupt env state) is rejected too.
    bad_states = s.at[3, 0].set(bad)
    enh_x, valid_x = jax.vmap(lambda st, t, d: enhancement.enhance_exact(env, st, t, d))(bad_states, tr, delta)
    np.testing.assert_array_equal(valid_x, [True, True, True, False])
    for leaf_e, leaf_o in zip(jax.tree.leaves(enh_x), jax.tree.leaves(tr)):
        assert bool(jnp.all(jnp.isfinite(leaf_e)))
        np.testing.assert_array_equal(leaf_e[3], leaf_o[3])


# ------------------------------------------------------------- context steps
def test_draw_context_step_and_sphere():
    env = make("pendulum_goal")
    space = env.context_space
    eps = 0.1
    n = 512
    keys = jax.random.split(jax.random.PRNGKey(3), n)
    draw = jax.jit(jax.vmap(lambda k, c: enhancement.draw_context_step(k, c, space, eps)))
    # Interior contexts (at least eps from every bound): never clipped, norm exactly eps.
    interior = space.sample_uniform(jax.random.PRNGKey(4), (n,))
    interior = jnp.clip(interior, space.low_array + eps, space.high_array - eps)
    d = draw(keys, interior)
    np.testing.assert_allclose(jnp.linalg.norm(d, axis=-1), eps, rtol=1e-5)
    # Directions cover the sphere: mean near zero, each coordinate takes both signs.
    assert float(jnp.abs(d.mean(0)).max()) < 0.2 * eps
    assert bool(jnp.all(jnp.any(d > 0, 0))) and bool(jnp.all(jnp.any(d < 0, 0)))
    # At a corner of the box: the stepped context stays inside, the step is shorter.
    corner = jnp.broadcast_to(space.low_array, (n, space.dim))
    dc = draw(keys, corner)
    assert bool(jnp.all(space.contains(corner + dc)))
    assert bool(jnp.all(jnp.linalg.norm(dc, axis=-1) <= eps + 1e-6))
    assert float(jnp.mean(jnp.linalg.norm(dc, axis=-1))) < 0.9 * eps
    u = enhancement.sample_sphere(jax.random.PRNGKey(5), 3, (100,))
    np.testing.assert_allclose(jnp.linalg.norm(u, axis=-1), 1.0, rtol=1e-6)


def test_directional_gradients_match_jacobian():
    env = make("cart_goal")
    space = env.context_space
    state = jnp.array([0.3, -0.2, 0.05, 0.4])
    action = jnp.int32(1)
    context = jnp.array([6.0, 1.0, 1.0, 1.0, 0.0])  # at least 0.1 inside every bound
    dg = jax.jit(lambda k: enhancement.directional_gradients(k, env, state, action, context, 0.1))(jax.random.PRNGKey(6))
    jac = context_gradients.context_jacobian(env, state, action, context)
    np.testing.assert_allclose(jnp.linalg.norm(dg.delta_c), 0.1, rtol=1e-5)
    np.testing.assert_allclose(dg.d_obs, jac.d_obs @ dg.delta_c, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dg.d_reward, jac.d_reward @ dg.delta_c, rtol=1e-5, atol=1e-7)


# ------------------------------------------- the trainer's batch enhancement (CSE)
# A hand-made replay batch of pendulum_goal transitions goes through
# ``CSE.training_batch`` for each storage and mode; every output is compared with a
# NumPy computation of CSE's Eq. 11 (first order) or of the pendulum step (exact).
from zsgjax.methods import CSE  # noqa: E402
from zsgjax.replay import ReplayItem  # noqa: E402

PEN_DT = 0.05
CSE_N, CSE_EPS = 12, 0.1
CHOSEN = 6  # ratio 0.5 of 12: samples 0..5 are enhanced


def np_pendulum_step(state, action, context):
    """The paper's pendulum step in float64 NumPy: ``(next_state_obs (n, 3), reward (n,))``."""
    th, thd = state[..., 0], state[..., 1]
    g, m, l, tau = (context[..., i] for i in range(4))
    u = np.clip(action[..., 0], -2.0, 2.0)
    th1 = th + PEN_DT * thd
    thd1 = thd + PEN_DT * (3 * g / (2 * l) * np.sin(th) + 3 * u / (m * l**2))
    goal = np.arcsin(np.clip(-tau / (m * g * l), -1, 1))
    r = -(np.pi**2 * np.sin((th1 - goal) / 2) ** 2 + 0.1 * thd1**2 + 0.001 * u**2)
    return np.stack([np.cos(th1), np.sin(th1), thd1], axis=-1), r


def _pendulum_batch():
    """``CSE_N`` float32 transitions at interior contexts (>= CSE_EPS inside the box), as NumPy and jnp."""
    rng = np.random.default_rng(21)
    n = CSE_N
    states = np.stack([rng.uniform(-np.pi, np.pi, n), rng.uniform(-1, 1, n)], 1)
    actions = rng.uniform(-1.5, 1.5, (n, 1))
    contexts = rng.uniform([1.0, 0.7, 0.7, -0.5], [4.0, 1.8, 1.8, 0.5], (n, 4))
    states, actions, contexts = (x.astype(np.float32).astype(np.float64) for x in (states, actions, contexts))
    next_obs, r = np_pendulum_step(states, actions, contexts)
    obs = np.concatenate([np.cos(states[:, :1]), np.sin(states[:, :1]), states[:, 1:], contexts], 1)
    tr = Transition(obs=obs, action=actions, reward=r, next_obs=np.concatenate([next_obs, contexts], 1),
                    done=np.zeros(n), context=contexts)
    tr32 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tr)
    return states, tr, tr32


def _stored_validity():
    valid = np.ones(CSE_N, bool)
    valid[2] = False  # a chosen sample whose stored transition was marked invalid
    valid[7] = False  # and an unchosen one
    return valid


@pytest.fixture(scope="module")
def pendulum_cse():
    env = make("pendulum_goal")
    fns = {}
    for key, kw in {"jacobian": dict(storage="jacobian"), "jvp": dict(storage="jvp"),
                    "exact": dict(mode="exact", storage="jacobian")}.items():
        method = CSE(**{**dict(epsilon=CSE_EPS, mode="first_order", storage="jacobian", ratio=0.5), **kw})
        fns[key] = jax.jit(lambda items, rng, m=method: m.training_batch(env, items, rng))
    return env, fns


def _check_common(out, tr, bad_chosen):
    """Unchosen samples and chosen ones that failed are returned unchanged; weights and count."""
    batch, weight, dropped = out
    batch = jax.tree.map(lambda x: np.asarray(x, np.float64), batch)
    tr32 = jax.tree.map(lambda x: np.asarray(np.asarray(x, np.float32), np.float64), tr)
    keep = [i for i in range(CSE_N) if i >= CHOSEN or i in bad_chosen]
    for got, want in zip(jax.tree.leaves(batch), jax.tree.leaves(tr32)):
        np.testing.assert_array_equal(got[keep], want[keep])
        assert np.all(np.isfinite(got))
    want_w = _stored_validity().astype(np.float64)
    want_w[list(bad_chosen)] = 0.0
    np.testing.assert_array_equal(np.asarray(weight), want_w)
    assert int(dropped) == len(bad_chosen)
    good = [i for i in range(CHOSEN) if i not in bad_chosen]
    delta = batch.context[good] - tr.context[good]
    for got, want in ((batch.action, tr.action), (batch.done, tr.done), (batch.obs[:, :3], tr.obs[:, :3])):
        np.testing.assert_allclose(got[good], want[good], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(batch.obs[good, 3:], batch.context[good], rtol=0, atol=1e-6)  # the enhanced context, to float32 rounding
    np.testing.assert_allclose(batch.next_obs[good, 3:], batch.context[good], rtol=0, atol=1e-6)
    return batch, good, delta


def test_cse_training_batch_jacobian_storage(pendulum_cse):
    env, fns = pendulum_cse
    _, tr, tr32 = _pendulum_batch()
    rng = np.random.default_rng(3)
    d_obs = rng.normal(size=(CSE_N, 3, 4))
    d_r = rng.normal(size=(CSE_N, 4))
    d_obs[1, 2, 0] = np.nan  # chosen: enhancement fails, weight 0, counted
    d_r[4, 1] = -np.inf  # chosen, in the reward derivative
    d_r[9, 3] = np.inf  # unchosen: irrelevant, the original sample is used with weight 1
    items = ReplayItem(transition=tr32, extras=ContextGradients(jnp.asarray(d_obs, jnp.float32),
                                                                jnp.asarray(d_r, jnp.float32)),
                       valid=jnp.asarray(_stored_validity()))
    out = fns["jacobian"](items, jax.random.PRNGKey(0))
    batch, good, delta = _check_common(out, tr, bad_chosen=[1, 4])
    np.testing.assert_allclose(np.linalg.norm(delta, axis=1), CSE_EPS, rtol=1e-4)  # interior: a full step
    assert np.abs(delta).min(0).max() > 1e-3 and len({tuple(np.round(d, 6)) for d in delta}) == len(good)
    # Eq. 11 with the stored Jacobian: s'~ = s' + J_s delta, r~ = r + J_r delta
    want_next = tr.next_obs[good, :3] + np.einsum("noc,nc->no", d_obs[good], delta)
    np.testing.assert_allclose(batch.next_obs[good, :3], want_next, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batch.reward[good], tr.reward[good] + np.einsum("nc,nc->n", d_r[good], delta),
                               rtol=1e-5, atol=1e-5)
    # the step is redrawn at every replay
    other = np.asarray(fns["jacobian"](items, jax.random.PRNGKey(1))[0].context)[good] - tr.context[good]
    assert np.abs(other - delta).min() > 1e-4


def test_cse_training_batch_jvp_storage(pendulum_cse):
    env, fns = pendulum_cse
    _, tr, tr32 = _pendulum_batch()
    rng = np.random.default_rng(4)
    u = rng.normal(size=(CSE_N, 4))
    delta = (CSE_EPS * u / np.linalg.norm(u, axis=1, keepdims=True)).astype(np.float32)
    d_obs = rng.normal(size=(CSE_N, 3)).astype(np.float32)
    d_r = rng.normal(size=(CSE_N,)).astype(np.float32)
    d_r[3] = np.nan  # chosen: fails
    d_obs[5, 1] = -np.inf  # chosen: fails
    d_obs[10, 1] = -np.inf  # unchosen
    items = ReplayItem(transition=tr32, extras=DirectionalGradients(jnp.asarray(delta), jnp.asarray(d_obs),
                                                                    jnp.asarray(d_r)),
                       valid=jnp.asarray(_stored_validity()))
    out = fns["jvp"](items, jax.random.PRNGKey(0))
    batch, good, got_delta = _check_common(out, tr, bad_chosen=[3, 5])
    # the step stored at insertion is used, not a new one; the derivatives are added as stored
    np.testing.assert_allclose(got_delta, delta[good], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batch.next_obs[good, :3], tr.next_obs[good, :3] + d_obs[good], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batch.reward[good], tr.reward[good] + d_r[good], rtol=1e-5, atol=1e-5)
    again = fns["jvp"](items, jax.random.PRNGKey(1))
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(out)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_cse_training_batch_exact_mode(pendulum_cse):
    env, fns = pendulum_cse
    states, tr, tr32 = _pendulum_batch()
    stored = states.copy()
    stored[0, 1] = np.nan  # chosen: the recomputed transition is not finite
    items = ReplayItem(transition=tr32, extras=jnp.asarray(stored, jnp.float32), valid=jnp.asarray(_stored_validity()))
    out = fns["exact"](items, jax.random.PRNGKey(0))
    batch, good, delta = _check_common(out, tr, bad_chosen=[0])
    np.testing.assert_allclose(np.linalg.norm(delta, axis=1), CSE_EPS, rtol=1e-4)
    # the pendulum step recomputed from the stored state at the new context, by hand
    next_obs, r = np_pendulum_step(states[good], tr.action[good], tr.context[good] + delta)
    np.testing.assert_allclose(batch.next_obs[good, :3], next_obs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batch.reward[good], r, rtol=1e-5, atol=1e-5)
    assert np.abs(r - tr.reward[good]).min() > 1e-4  # the new context changed the reward


# ------------------------------------------- Eq. 11 where d s'/dc is not the identity
def test_first_order_error_is_second_order_on_pendulum_goal():
    """float64: ``enhance_with_jacobian`` at ``c + h u`` against the exact (NumPy) step there.

    The pendulum's ``thdot'`` is nonlinear in ``m`` and ``l`` and its reward in every
    context dimension, so the first-order error is ``O(h^2)``: it falls ~4x when ``h``
    halves, while the zeroth-order error (no enhancement) only halves.
    """
    n = 12
    rng = np.random.default_rng(31)
    env = make("pendulum_goal")
    states = np.stack([rng.uniform(-np.pi, np.pi, n), rng.uniform(-1, 1, n)], 1)
    actions = rng.uniform(-1.5, 1.5, (n, 1))
    contexts = rng.uniform([1.5, 0.8, 0.8, -0.4], [4.0, 1.8, 1.8, 0.4], (n, 4))
    u = rng.normal(size=(n, 4))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    hs = np.array([0.08, 0.04, 0.02])
    next_obs, r = np_pendulum_step(states, actions, contexts)
    tr = Transition(obs=np.concatenate([np.zeros((n, 3)), contexts], 1), action=actions, reward=r,
                    next_obs=np.concatenate([next_obs, contexts], 1), done=np.zeros(n), context=contexts)
    with jax.enable_x64(True):
        grads = jax.jit(jax.vmap(lambda s, a, c: context_gradients.context_jacobian(env, s, a, c)))(
            jnp.asarray(states), jnp.asarray(actions), jnp.asarray(contexts))
        tr64 = jax.tree.map(jnp.asarray, tr)
        enh = jax.jit(jax.vmap(jax.vmap(enhancement.enhance_with_jacobian), in_axes=(None, None, 0)))(
            tr64, grads, jnp.asarray(hs[:, None, None] * u[None]))[0]
        enh = jax.tree.map(np.asarray, enh)
    assert enh.reward.dtype == np.float64
    d_obs = np.asarray(grads.d_obs)
    assert np.abs(d_obs[:, 2, 1:3]).min() > 1e-3  # d thdot' / d(m, l): not the identity, state dependent
    err1, err0 = [], []
    for j, h in enumerate(hs):
        x_obs, x_r = np_pendulum_step(states, actions, contexts + h * u)
        np.testing.assert_allclose(enh.context[j], contexts + h * u, rtol=1e-15)
        err1.append(np.maximum(np.abs(enh.next_obs[j, :, :3] - x_obs).max(1), np.abs(enh.reward[j] - x_r)))
        err0.append(np.maximum(np.abs(next_obs - x_obs).max(1), np.abs(r - x_r)))
    err1, err0 = np.array(err1), np.array(err0)  # (len(hs), n)
    assert np.all(err1[-1] < 0.2 * err0[-1])
    ratio1 = err1[:-1] / err1[1:]
    ratio0 = err0[:-1] / err0[1:]
    assert np.all((ratio1 > 3.5) & (ratio1 < 4.5)), ratio1  # measured 3.85 to 4.17
    assert np.all((ratio0 > 1.7) & (ratio0 < 2.3)), ratio0
