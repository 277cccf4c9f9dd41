"""The neural offline algorithms' update rules against hand computations in NumPy.

Each test recomputes one rule from its formula with NumPy (linear critics ``Q = w . [s, a] + b``
and a one-hidden-layer policy written out by hand), never through zsgjax's loss code:
the FQE step of all n x M critics (its bootstrap target ``own`` / ``min``, the loss, Adam's
first step, the Polyak rate ``tau``), PERM's actor loss (pessimism ``std`` / ``min`` and
TD3+BC's term with its sign), PPPO's KL-proximal loss (its sign, and the anchor held fixed:
float64 central differences) and PPPO's output iterate (uniform over all n).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax.offline import control as C
from zsgjax.offline import linear as L
from zsgjax.offline.control import perm as perm_mod
from zsgjax.offline.control import pppo as pppo_mod

N_ENVS, N, OBS, ACT = 3, 20, 2, 2


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    f = lambda *shape: rng.uniform(-1, 1, shape).astype(np.float32)  # noqa: E731
    return C.Transitions(obs=jnp.asarray(f(N_ENVS, N, OBS)), action=jnp.asarray(f(N_ENVS, N, ACT)),
                         reward=jnp.asarray(f(N_ENVS, N)), next_obs=jnp.asarray(f(N_ENVS, N, OBS)),
                         terminal=jnp.asarray(rng.random((N_ENVS, N)) < 0.3),
                         truncated=jnp.zeros((N_ENVS, N), bool), contexts=jnp.asarray(f(N_ENVS, 2)))


def linear_weights(params):
    """``(w (..., obs + act), b (...))`` of stacked linear critics."""
    dense = params["params"]["Dense_0"]
    return np.asarray(dense["kernel"], np.float64)[..., 0], np.asarray(dense["bias"], np.float64)[..., 0]


def policy_mean(params, obs):
    """The hand-written forward pass of a one-hidden-layer policy (ReLU): ``m(x)``."""
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params["params"])
    h = np.maximum(obs @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"], 0.0)
    return h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]


def q_linear(w, b, obs, action):
    """``(M, B)`` values of M linear critics."""
    return np.einsum("mf,bf->mb", w, np.concatenate([obs, action], -1)) + b[:, None]


# ---------------------------------------------------------------- FQE step
@pytest.mark.parametrize("target", ["own", "min"])
def test_fqe_step_matches_a_numpy_loop(data, target):
    """The one vmapped program over n x M critics against a NumPy loop over environments and members."""
    gamma, tau, lr, B = 0.7, 0.3, 0.05, 8
    cfg = C.CriticConfig(features="linear", num_critics=3, batch_size=B, gamma=gamma, tau=tau, learning_rate=lr,
                         target=target)
    critics = C.make_critics(cfg, OBS, ACT)
    state = critics.init(jax.random.PRNGKey(5), N_ENVS)
    noise = jax.tree.map(lambda x: 0.5 * jax.random.normal(jax.random.PRNGKey(9), x.shape), state.params)
    state = state.replace(target_params=jax.tree.map(jnp.add, state.params, noise))  # members' targets differ
    key = jax.random.PRNGKey(6)
    new, metrics = jax.jit(lambda s: critics.update(s, data, lambda o, c, k: jnp.tanh(o + c), key))(state)

    w, b = linear_weights(state.params)
    wt, bt = linear_weights(state.target_params)
    keys = jax.random.split(key, N_ENVS)
    for i in range(N_ENVS):
        idx = np.asarray(jax.random.randint(jax.random.split(keys[i], 3)[0], (B,), 0, N))  # the batch drawn
        o, a, r, o2 = (np.asarray(x[i], np.float64)[idx] for x in (data.obs, data.action, data.reward, data.next_obs))
        cont = 1.0 - np.asarray(data.terminal[i])[idx]
        a2 = np.tanh(o2 + np.asarray(data.contexts[i], np.float64))
        qbar = q_linear(wt[i], bt[i], o2, a2)  # (M, B)
        boot = np.broadcast_to(qbar.min(0), qbar.shape) if target == "min" else qbar
        y = r[None] + gamma * cont[None] * boot
        x = np.concatenate([o, a], -1)
        err = q_linear(w[i], b[i], o, a) - y  # (M, B)
        np.testing.assert_allclose(np.asarray(metrics["loss"][i]), 0.5 * np.mean(err**2, 1), rtol=1e-5)
        g_w, g_b = np.einsum("mb,bf->mf", err, x) / B, err.mean(1)
        w1 = w[i] - lr * g_w / (np.abs(g_w) + 1e-8)  # Adam's first step: lr * m_hat / (sqrt(v_hat) + eps)
        b1 = b[i] - lr * g_b / (np.abs(g_b) + 1e-8)
        got_w, got_b = linear_weights(jax.tree.map(lambda t: t[i], new.params))
        np.testing.assert_allclose(got_w, w1, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got_b, b1, rtol=1e-5, atol=1e-6)
        got_wt, got_bt = linear_weights(jax.tree.map(lambda t: t[i], new.target_params))
        np.testing.assert_allclose(got_wt, (1 - tau) * wt[i] + tau * w1, rtol=1e-5, atol=1e-6)  # Polyak, rate tau
        np.testing.assert_allclose(got_bt, (1 - tau) * bt[i] + tau * b1, rtol=1e-5, atol=1e-6)
    assert int(new.steps) == 1


# ---------------------------------------------------------------- PERM's actor loss
@pytest.mark.parametrize("bc_alpha, pessimism, env_weights", [(None, "std", None), (2.5, "std", None), (2.5, "min", None),
                                                              (None, "std", (3.0, 0.0, 1.0)),
                                                              (2.5, "std", (0.5, 2.0, 1.5))])
def test_perm_actor_loss_matches_hand_computation(bc_alpha, pessimism, env_weights):
    beta, scale, B = 0.7, 0.8, 6
    critics = C.make_critics(C.CriticConfig(features="linear", num_critics=3, beta=beta, pessimism=pessimism),
                             OBS, ACT, scale)
    policy = C.make_policy(C.ActorConfig(hidden_sizes=(5,), action_scale=scale), OBS, 2, ACT)
    pp = policy.init(jax.random.PRNGKey(1))
    cs = critics.init(jax.random.PRNGKey(2), N_ENVS)
    rng = np.random.default_rng(3)
    obs, action = (rng.uniform(-1, 1, (N_ENVS, B, d)).astype(np.float32) for d in (OBS, ACT))
    loss, (objective, bc) = perm_mod.actor_loss(policy, critics, bc_alpha, pp, cs.params, jnp.asarray(obs),
                                                jnp.asarray(action), jnp.zeros((N_ENVS, 2)),
                                                None if env_weights is None else jnp.asarray(env_weights))
    w, b = linear_weights(cs.params)
    pi = scale * np.tanh(policy_mean(pp, obs.astype(np.float64)))  # (n, B, act)
    q = np.stack([q_linear(w[i], b[i], obs[i], pi[i]) for i in range(N_ENVS)])  # (n, M, B)
    q_minus = q.min(1) if pessimism == "min" else q.mean(1) - beta * q.std(1)
    omega = np.ones(N_ENVS) if env_weights is None else np.asarray(env_weights)
    omega = omega / omega.sum()  # sum_i w_i (.)_i / sum_i w_i over the per-environment batch means
    want_obj = float(omega @ q_minus.mean(1))
    want_bc = float(omega @ np.mean(np.sum((pi - action) ** 2, -1), 1))
    want = -want_obj if bc_alpha is None else -(bc_alpha / np.mean(np.abs(q_minus))) * want_obj + want_bc
    np.testing.assert_allclose([float(objective), float(bc), float(loss)], [want_obj, want_bc, want], rtol=2e-5,
                               atol=1e-6)


def test_perm_env_weights_are_checked():
    data = C.Transitions(obs=jnp.zeros((2, 4, 1)), action=jnp.zeros((2, 4, 1)), reward=jnp.zeros((2, 4)),
                         next_obs=jnp.zeros((2, 4, 1)), terminal=jnp.zeros((2, 4), bool),
                         truncated=jnp.zeros((2, 4), bool), contexts=jnp.zeros((2, 1)))
    cfg = C.PERMConfig(critic=C.CriticConfig(hidden_sizes=(2,), num_critics=1, batch_size=2),
                       actor=C.ActorConfig(hidden_sizes=(2,), batch_size=2), iterations=1)
    for bad, what in (([1.0], "shape"), ([1.0, -0.5], ">= 0"), ([0.0, 0.0], "positive sum"),
                      ([1.0, np.nan], "finite"), ("ab", "numeric"), ([[1.0, 1.0]], "shape")):
        with pytest.raises(ValueError, match=f"env_weights.*{what}|{what}.*env_weights"):
            C.run_perm(jax.random.PRNGKey(0), data, cfg, env_weights=bad)
    with pytest.raises(ValueError, match="env_weights.*shape"):  # traced: the shape is still checked
        jax.jit(perm_mod.make_perm(cfg))(jax.random.PRNGKey(0), data, jnp.ones(3))
    assert perm_mod.check_env_weights(None, 2) is None


# ---------------------------------------------------------------- PPPO's proximal loss
@pytest.mark.parametrize("bc_alpha", [None, 2.5])
def test_pppo_proximal_loss_matches_hand_computation(bc_alpha):
    """Value: -Q^- + (1/step) |m - m_k|^2 / (2 sigma^2) (+ TD3+BC); gradient: the anchor pi_k is held fixed."""
    step, sigma, scale, B = 0.4, 0.3, 1.0, 6
    cfg = C.PPPOConfig(critic=C.CriticConfig(features="linear", num_critics=2, beta=0.5),
                       actor=C.ActorConfig(hidden_sizes=(5,), bc_alpha=bc_alpha), step_size=step, policy_std=sigma)
    critics = C.make_critics(cfg.critic, OBS, ACT, scale)
    policy = C.make_policy(cfg.actor, OBS, 2, ACT)
    params, anchor = policy.init(jax.random.PRNGKey(1)), policy.init(jax.random.PRNGKey(2))
    cparams = jax.tree.map(lambda x: x[0], critics.init(jax.random.PRNGKey(3), 1).params)  # (M, ...)
    rng = np.random.default_rng(4)
    obs, action = (rng.uniform(-1, 1, (B, d)) for d in (OBS, ACT))
    w, b = linear_weights(cparams)

    def q_minus(p):
        q = q_linear(w, b, obs, scale * np.tanh(policy_mean(p, obs)))
        return q.mean(0) - 0.5 * q.std(0)

    lam = None if bc_alpha is None else bc_alpha / np.mean(np.abs(q_minus(params)))  # a constant: no gradient

    def hand(p):
        m, m_k = policy_mean(p, obs), policy_mean(anchor, obs)
        pg = -q_minus(p).mean()
        if bc_alpha is not None:
            pg = lam * pg + np.mean(np.sum((scale * np.tanh(m) - action) ** 2, -1))
        return pg + np.mean(np.sum((m - m_k) ** 2, -1)) / (2 * sigma**2) / step

    def zs(p):
        return pppo_mod.proximal_loss(cfg, policy, critics, p, anchor, cparams, jnp.asarray(obs, jnp.float32),
                                      jnp.asarray(action, jnp.float32), jnp.zeros(2))[0]

    assert float(zs(params)) == pytest.approx(hand(params), rel=2e-5)
    grad = np.asarray(jax.grad(zs)(params)["params"]["Dense_1"]["bias"])
    eps = 1e-4
    for j in range(ACT):
        plus, minus = (jax.tree.map(lambda x: np.array(x, np.float64), params) for _ in range(2))
        plus["params"]["Dense_1"]["bias"][j] += eps
        minus["params"]["Dense_1"]["bias"][j] -= eps
        assert grad[j] == pytest.approx((hand(plus) - hand(minus)) / (2 * eps), rel=1e-3, abs=1e-5)


# ---------------------------------------------------------------- PPPO's output iterate
def test_pppo_output_iterate_is_uniform_over_all_n():
    """Both PPPOs draw ``index`` uniformly from 0..T-1 (the last iterate included) and output ``iterates[index]``;
    T = n for the linear PPPO, T = 2n for the neural one run with ``passes = 2``."""
    n, draws = 3, 120
    keys = jax.random.split(jax.random.PRNGKey(0), draws)
    fam = L.mdp.random_contextual_mdp(jax.random.PRNGKey(1), 2, 2, 2, num_bases=2, features="tabular")
    lin = L.LinearData(fam.phi, L.dataset.collect_dataset(jax.random.PRNGKey(2), fam, jnp.eye(2)[jnp.arange(n) % 2],
                                                          L.dataset.uniform_policy(2, 2, 2), 4))
    lin_res = jax.jit(jax.vmap(L.make_pppo(L.PPPOConfig(beta=0.1)), in_axes=(0, None)))(keys, lin)
    tiny = C.PPPOConfig(critic=C.CriticConfig(hidden_sizes=(2,), num_critics=1, batch_size=2),
                        actor=C.ActorConfig(hidden_sizes=(2,), batch_size=2), eval_steps=1, improve_steps=1, passes=2)
    rng = np.random.default_rng(5)
    ctl = C.Transitions(obs=jnp.asarray(rng.normal(size=(n, 4, 1)), jnp.float32),
                        action=jnp.zeros((n, 4, 1)), reward=jnp.zeros((n, 4)), next_obs=jnp.zeros((n, 4, 1)),
                        terminal=jnp.ones((n, 4), bool), truncated=jnp.zeros((n, 4), bool), contexts=jnp.zeros((n, 1)))
    ctl_res = jax.jit(jax.vmap(C.make_pppo(tiny), in_axes=(0, None)))(keys[:draws // 2], ctl)
    for res, count, T in ((lin_res, draws, n), (ctl_res, draws // 2, 2 * n)):
        index = np.asarray(res.index)
        assert np.asarray(res.values).shape == (len(index), T)
        freq = np.bincount(index, minlength=T + 1)
        assert freq[T] == 0 and index.min() >= 0
        # each of the T values: binomial(count, 1/T); 5 standard deviations either side
        sd = np.sqrt(count * (1 / T) * (1 - 1 / T))
        assert np.all(np.abs(freq[:T] - count / T) < 5 * sd), freq
        assert freq[T - 1] > 0  # the last iterate is drawn too
        for got, its in zip(jax.tree.leaves(res.policy), jax.tree.leaves(res.iterates)):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(its)[np.arange(len(index)), index])
