"""PEVI against a straightforward NumPy reference, and the vmapped entry point."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax.offline.linear import dataset as ds
from zsgjax.offline.linear import mdp as lm
from zsgjax.offline.linear import pevi as pv

S, A, D, H, K, N = 5, 3, 4, 3, 12, 3


def numpy_pevi(phi, states, actions, rewards, next_states, policy, beta, lam):
    """Loops and np.linalg.solve, float64; policy None = greedy."""
    Sn, An, d = phi.shape
    Kn, Hn = states.shape
    q_all = np.zeros((Hn, Sn, An))
    v_next = np.zeros(Sn)
    for h in reversed(range(Hn)):
        lam_mat = lam * np.eye(d)
        rhs = np.zeros(d)
        for k in range(Kn):
            f = phi[states[k, h], actions[k, h]]
            lam_mat += np.outer(f, f)
            rhs += f * (rewards[k, h] + v_next[next_states[k, h]])
        w = np.linalg.solve(lam_mat, rhs)
        v = np.zeros(Sn)
        for x in range(Sn):
            for a in range(An):
                f = phi[x, a]
                bonus = beta * np.sqrt(f @ np.linalg.solve(lam_mat, f))
                q_all[h, x, a] = min(max(f @ w - bonus, 0.0), Hn - h)
            v[x] = q_all[h, x].max() if policy is None else policy[h, x] @ q_all[h, x]
        v_next = v
        if h == 0:
            v0 = v
    return q_all, np.mean(v0[states[:, 0]])


@pytest.fixture(scope="module")
def problem():
    key = jax.random.PRNGKey(3)
    fam = lm.random_contextual_mdp(key, S, A, H, num_bases=2, dim=D)
    contexts = jax.random.dirichlet(jax.random.PRNGKey(4), jnp.ones(2), (N,))
    data = ds.collect_dataset(jax.random.PRNGKey(5), fam, contexts, ds.uniform_policy(H, S, A), K)
    policy = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(6), (H, S, A)), -1)
    return fam, data, policy


@pytest.mark.parametrize("greedy", [True, False])
def test_pevi_matches_numpy_reference_float64(problem, greedy):
    fam, data, policy = problem
    beta, lam = 0.7, 0.5
    with jax.enable_x64(True):
        phi = jnp.asarray(np.asarray(fam.phi, np.float64))
        pol = None if greedy else jnp.asarray(np.asarray(policy, np.float64))
        data64 = data.replace(rewards=jnp.asarray(np.asarray(data.rewards, np.float64)))
        res = pv.pevi(phi, data64, pol, beta=beta, lam=lam)
        assert res.q.dtype == jnp.float64
        for i in range(N):
            q_ref, v_ref = numpy_pevi(
                np.asarray(phi), np.asarray(data.states[i]), np.asarray(data.actions[i]),
                np.asarray(data.rewards[i], np.float64), np.asarray(data.next_states[i]),
                None if greedy else np.asarray(pol), beta, lam,
            )
            np.testing.assert_allclose(np.asarray(res.q[i]), q_ref, atol=1e-5, rtol=0)
            np.testing.assert_allclose(float(res.value[i]), v_ref, atol=1e-5)
    # the check covers both the lower clip and unclipped entries
    assert np.any(q_ref == 0.0) and np.any(q_ref > 0.0)


@pytest.mark.parametrize("greedy", [True, False])
def test_pevi_upper_clip_binds_and_matches_numpy_reference(problem, greedy):
    """Rewards scaled up 8x: the regression exceeds the bound ``H - h`` at many (h, x, a),
    so the upper clip is active (and feeds the earlier steps' targets)."""
    fam, data, policy = problem
    beta, lam = 0.1, 1.0
    with jax.enable_x64(True):
        phi = jnp.asarray(np.asarray(fam.phi, np.float64))
        pol = None if greedy else jnp.asarray(np.asarray(policy, np.float64))
        rewards = 8.0 * np.asarray(data.rewards, np.float64)
        res = pv.pevi(phi, data.replace(rewards=jnp.asarray(rewards)), pol, beta=beta, lam=lam)
        bound = (H - np.arange(H))[:, None, None].astype(np.float64)
        for i in range(N):
            q_ref, v_ref = numpy_pevi(
                np.asarray(phi), np.asarray(data.states[i]), np.asarray(data.actions[i]), rewards[i],
                np.asarray(data.next_states[i]), None if greedy else np.asarray(pol), beta, lam,
            )
            at_bound = q_ref == np.broadcast_to(bound, q_ref.shape)
            assert at_bound.sum() >= 5 and not at_bound.all()
            np.testing.assert_allclose(np.asarray(res.q[i]), q_ref, atol=1e-6, rtol=0)
            np.testing.assert_allclose(float(res.value[i]), v_ref, atol=1e-6)
    assert np.all(np.asarray(res.q) <= bound[None] + 1e-12)


def test_vmapped_pevi_equals_per_environment_calls(problem):
    fam, data, policy = problem
    for pol in (None, policy):
        batched = pv.pevi(fam.phi, data, pol, beta=0.3, lam=1.0)
        for i in range(N):
            single = pv.pevi_env(fam.phi, data.states[i], data.actions[i], data.rewards[i], data.next_states[i], pol, 0.3, 1.0)
            np.testing.assert_allclose(np.asarray(batched.q[i]), np.asarray(single.q), atol=1e-6)
            np.testing.assert_allclose(np.asarray(batched.value[i]), np.asarray(single.value), atol=1e-6)
            np.testing.assert_array_equal(np.asarray(batched.policy[i]), np.asarray(single.policy))


def test_pessimism_lowers_values_and_greedy_policy_is_argmax(problem):
    fam, data, _ = problem
    opt = pv.pevi(fam.phi, data, None, beta=0.0)
    pes = pv.pevi(fam.phi, data, None, beta=1.0)
    assert np.all(np.asarray(pes.value) <= np.asarray(opt.value) + 1e-6)
    assert np.all(np.asarray(pes.value) < np.asarray(opt.value))
    np.testing.assert_array_equal(np.asarray(pes.policy.argmax(-1)), np.asarray(pes.q.argmax(-1)))
    assert np.all(np.asarray(pes.q) <= (H - np.arange(H))[None, :, None, None] + 1e-6)


def test_pevi_rejects_bad_arguments(problem):
    fam, data, policy = problem
    with pytest.raises(ValueError, match="phi"):
        pv.pevi(fam.phi[:, :2], data)
    with pytest.raises(ValueError, match="policy"):
        pv.pevi(fam.phi, data, policy[:, :, :2])
    with pytest.raises(ValueError, match="beta"):
        pv.pevi(fam.phi, data, None, beta=-1.0)
    with pytest.raises(ValueError, match="lam"):
        pv.pevi(fam.phi, data, None, beta=1.0, lam=0.0)


def test_theory_beta_formula():
    d, h, k, xi = 4, 3, 100, 0.05
    assert pv.theory_beta(d, h, k, xi) == pytest.approx(d * h * np.sqrt(np.log(2 * d * h * k / xi)))
    assert pv.default_beta(d, h, k, xi) == pytest.approx(pv.DEFAULT_BETA_SCALE * pv.theory_beta(d, h, k, xi))
    with pytest.raises(ValueError, match="xi"):
        pv.theory_beta(d, h, k, 1.5)
    with pytest.raises(ValueError, match="num_episodes"):
        pv.theory_beta(d, h, 0)
