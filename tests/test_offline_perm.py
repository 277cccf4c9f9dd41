"""PERM against exact enumeration, PPPO's update, and the average-MDP failure."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax.offline import baselines as bl
from zsgjax.offline import dataset as ds
from zsgjax.offline import linear_mdp as lm
from zsgjax.offline import perm as pm
from zsgjax.offline import pevi as pv
from zsgjax.offline import policies as po
from zsgjax.offline import pppo as pp

S, A, H, N, K = 3, 2, 2, 6, 30


@pytest.fixture(scope="module")
def tiny():
    fam = lm.random_contextual_mdp(jax.random.PRNGKey(10), S, A, H, num_bases=2, features="tabular")
    contexts = jax.random.dirichlet(jax.random.PRNGKey(11), jnp.full((2,), 0.5), (N,))
    data = ds.collect_dataset(jax.random.PRNGKey(12), fam, contexts, ds.uniform_policy(H, S, A), K)
    return fam, contexts, data


def test_enumeration_objectives_are_mean_pessimistic_values(tiny):
    fam, _, data = tiny
    enum = pm.perm_enumerate(fam.phi, data, beta=0.3)
    actions = po.enumerate_deterministic_policies(S, A, H)
    for i in (0, 5, 33, 63):
        pi = po.deterministic_policy(actions[i], A)
        ref = float(pv.pevi(fam.phi, data, pi, beta=0.3).value.mean())
        assert float(enum.objectives[i]) == pytest.approx(ref, abs=1e-5)
    assert float(enum.objective) == pytest.approx(float(np.max(np.asarray(enum.objectives))))


def test_perm_gradient_reaches_the_enumerated_optimum(tiny):
    fam, _, data = tiny
    enum = pm.perm_enumerate(fam.phi, data, beta=0.3)
    res = pm.perm_gradient(jax.random.PRNGKey(0), fam.phi, data, beta=0.3, steps=300, num_restarts=4)
    assert res.trace.shape == (300,) and res.policy.shape == (H, S, A)
    assert float(res.trace[-1]) > float(res.trace[0])
    assert float(res.objective) >= float(enum.objective) - 0.02
    # the ascent's policy class is softmax-linear in the features
    np.testing.assert_allclose(np.asarray(res.policy), np.asarray(po.softmax_linear_policy(fam.phi, res.theta)), atol=1e-6)


def test_pppo_update_rule_and_improvement(tiny):
    fam, contexts, data = tiny
    alpha = 1.0
    out = pp.pppo(jax.random.PRNGKey(1), fam.phi, data, beta=0.3, step_size=alpha)
    assert out.iterates.shape == (N, H, S, A) and 0 <= int(out.index) < N
    np.testing.assert_array_equal(np.asarray(out.policy), np.asarray(out.iterates[int(out.index)]))
    np.testing.assert_allclose(np.asarray(out.iterates[0]), 1.0 / A, atol=1e-7)
    q0 = pv.pevi(fam.phi, data.subset(1), out.iterates[0], beta=0.3).q[0]
    expected = jax.nn.softmax(jnp.log(out.iterates[0]) + alpha * q0, axis=-1)
    np.testing.assert_allclose(np.asarray(out.iterates[1]), np.asarray(expected), atol=1e-5)
    uniform = ds.uniform_policy(H, S, A)
    j = lambda pi: float(pv.pevi(fam.phi, data, pi, beta=0.3).value.mean())  # noqa: E731
    assert j(out.final) > j(uniform) + 0.05
    test_contexts = jax.random.dirichlet(jax.random.PRNGKey(13), jnp.full((2,), 0.5), (64,))
    mix = float(pp.mixture_zero_shot_value(fam, test_contexts, out.iterates))
    assert mix > float(lm.zero_shot_value(fam, test_contexts, uniform))
    assert pp.default_step_size(2, 2, 4) == pytest.approx(np.sqrt(2 * np.log(2) / 16))
    with pytest.raises(ValueError, match="step_size"):
        pp.pppo(jax.random.PRNGKey(1), fam.phi, data, beta=0.3, step_size=-1.0)


def test_average_mdp_fails_where_perm_succeeds():
    fam, support = lm.two_context_mdp(delta=0.05)
    ids = np.arange(10) % 2
    data = ds.collect_dataset(jax.random.PRNGKey(20), fam, support[ids], ds.uniform_policy(2, 3, 2), 500, context_ids=ids)
    beta = 0.5
    merged = bl.merged_pevi(fam.phi, data, beta)
    merged_value = float(lm.zero_shot_value(fam, support, merged.policy))
    perm = pm.perm_gradient(jax.random.PRNGKey(0), fam.phi, data, beta=beta)
    perm_value = float(lm.zero_shot_value(fam, support, perm.policy))
    assert merged_value < 0.1
    assert perm_value > 0.45
    # the merged baseline is PEVI on the pooled episodes
    pooled = pv.pevi(fam.phi, ds.merge_environments(data), None, beta)
    np.testing.assert_allclose(np.asarray(merged.q), np.asarray(pooled.q[0]), atol=1e-6)


def test_perm_without_pessimism_and_bad_arguments(tiny):
    fam, _, data = tiny
    r0 = bl.perm_without_pessimism(jax.random.PRNGKey(0), fam.phi, data, steps=50)
    ref = float(pv.pevi(fam.phi, data, r0.policy, beta=0.0).value.mean())
    assert float(r0.objective) == pytest.approx(ref, abs=1e-5)
    with pytest.raises(ValueError, match="steps"):
        pm.perm_gradient(jax.random.PRNGKey(0), fam.phi, data, beta=0.3, steps=0)
    with pytest.raises(ValueError, match="learning_rate"):
        pm.perm_gradient(jax.random.PRNGKey(0), fam.phi, data, beta=0.3, learning_rate=0.0)
    with pytest.raises(ValueError, match="phi"):
        pm.perm_enumerate(fam.phi[:2], data, beta=0.3)
    with pytest.raises(ValueError, match="max_policies"):
        pm.perm_enumerate(fam.phi, data, beta=0.3, max_policies=10)
