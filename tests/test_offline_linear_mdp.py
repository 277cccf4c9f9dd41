"""Exact dynamic programming on contextual linear MDPs against brute force."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax.offline.linear import mdp as lm
from zsgjax.offline.linear import policies as po

S, A, H = 3, 2, 3


def brute_force_value(P, r, init, policy):
    """Sum over every trajectory (x_0, a_0, ..., x_{H-1}, a_{H-1}) of prob * return."""
    total = 0.0
    for xs in itertools.product(range(S), repeat=H):
        for acts in itertools.product(range(A), repeat=H):
            prob, ret = init[xs[0]], 0.0
            for h in range(H):
                prob *= policy[h, xs[h], acts[h]]
                ret += r[xs[h], acts[h]]
                if h + 1 < H:
                    prob *= P[xs[h], acts[h], xs[h + 1]]
            total += prob * ret
    return total


@pytest.fixture(scope="module")
def family():
    return lm.random_contextual_mdp(jax.random.PRNGKey(0), S, A, H, num_bases=2, dim=4)


def test_policy_and_optimal_values_match_brute_force(family):
    ctx = jnp.array([0.3, 0.7])
    mdp = family.at(ctx)
    P, r, init = (np.asarray(x, np.float64) for x in (mdp.transitions, mdp.rewards, mdp.init))
    np.testing.assert_allclose(P.sum(-1), 1.0, atol=1e-5)
    policy = np.asarray(jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(1), (H, S, A)), -1), np.float64)
    assert float(lm.policy_value(mdp, jnp.asarray(policy, jnp.float32))) == pytest.approx(brute_force_value(P, r, init, policy), abs=1e-5)
    actions = po.enumerate_deterministic_policies(S, A, H)
    brute_best = max(brute_force_value(P, r, init, np.eye(A)[np.asarray(a)]) for a in actions)
    assert float(lm.optimal_value(mdp)) == pytest.approx(brute_best, abs=1e-5)


def test_zero_shot_values_of_enumerated_policies(family):
    contexts = jax.random.dirichlet(jax.random.PRNGKey(2), jnp.ones(2), (5,))
    actions = po.enumerate_deterministic_policies(S, A, H)
    values = lm.deterministic_zero_shot_values(family, contexts, actions, batch_size=64)
    assert values.shape == (A ** (S * H),)
    for i in (0, 7, 300, len(actions) - 1):
        pi = po.deterministic_policy(actions[i], A)
        assert float(values[i]) == pytest.approx(float(lm.zero_shot_value(family, contexts, pi)), abs=1e-5)
    # the zero-shot optimum cannot beat the mean of the per-context optima
    per_context = jax.vmap(lambda c: lm.optimal_value(family.at(c)))(contexts)
    assert float(values.max()) <= float(per_context.mean()) + 1e-5


def test_two_context_construction_values():
    fam, contexts = lm.two_context_mdp(delta=0.05)
    actions = po.enumerate_deterministic_policies(3, 2, 2)
    values = np.asarray(lm.deterministic_zero_shot_values(fam, contexts, actions))
    assert values.max() == pytest.approx(0.5, abs=1e-6)
    # (x0: a, s: b), other states arbitrary: the average-MDP policy, worth delta
    idx = [i for i, a in enumerate(np.asarray(actions)) if a[0, 0] == 0 and a[1, 1] == 1]
    np.testing.assert_allclose(values[idx], 0.05, atol=1e-6)


def test_construction_errors():
    phi = np.eye(4).reshape(2, 2, 4)
    mu = np.full((1, 4, 2), 0.5)
    theta = np.full((1, 4), 0.5)
    init = np.array([1.0, 0.0])
    lm.make_contextual_mdp(phi, mu, theta, init, 2)
    with pytest.raises(ValueError, match="mu_bases"):
        lm.make_contextual_mdp(phi, mu[:, :3], theta, init, 2)
    with pytest.raises(ValueError, match="probability distribution over next states"):
        lm.make_contextual_mdp(phi, mu * 2, theta, init, 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lm.make_contextual_mdp(phi, mu, theta + 1.0, init, 2)
    with pytest.raises(ValueError, match="horizon"):
        lm.make_contextual_mdp(phi, mu, theta, init, 0)
    with pytest.raises(ValueError, match="init"):
        lm.make_contextual_mdp(phi, mu, theta, np.array([0.5, 0.2]), 2)
    with pytest.raises(ValueError, match="contexts"):
        lm.check_contexts(np.ones((3, 2)), 2)
    with pytest.raises(ValueError, match="features"):
        lm.random_contextual_mdp(jax.random.PRNGKey(0), 2, 2, 2, features="cubic")
    with pytest.raises(ValueError, match="max_policies"):
        po.enumerate_deterministic_policies(10, 3, 5)
    with pytest.raises(ValueError, match="delta"):
        lm.two_context_mdp(0.3)
