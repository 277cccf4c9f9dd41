"""PERM against exact enumeration, PPPO's update, and the average-MDP failure."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax.offline.linear import baselines as bl
from zsgjax.offline.linear import dataset as ds
from zsgjax.offline.linear import mdp as lm
from zsgjax.offline.linear import perm as pm
from zsgjax.offline.linear import pevi as pv
from zsgjax.offline.linear import policies as po
from zsgjax.offline.linear import pppo as pp

S, A, H, N, K = 3, 2, 2, 6, 30


@pytest.fixture(scope="module")
def tiny():
    fam = lm.random_contextual_mdp(jax.random.PRNGKey(10), S, A, H, num_bases=2, features="tabular")
    contexts = jax.random.dirichlet(jax.random.PRNGKey(11), jnp.full((2,), 0.5), (N,))
    data = ds.collect_dataset(jax.random.PRNGKey(12), fam, contexts, ds.uniform_policy(H, S, A), K)
    return fam, contexts, ds.LinearData(fam.phi, data)


def test_enumeration_objectives_are_mean_pessimistic_values(tiny):
    fam, _, data = tiny
    enum = pm.perm_enumerate(data, beta=0.3)
    actions = po.enumerate_deterministic_policies(S, A, H)
    for i in (0, 5, 33, 63):
        pi = po.deterministic_policy(actions[i], A)
        ref = float(pv.pevi(fam.phi, data.dataset, pi, beta=0.3).value.mean())
        assert float(enum.objectives[i]) == pytest.approx(ref, abs=1e-5)
    assert float(enum.objective) == pytest.approx(float(np.max(np.asarray(enum.objectives))))


def test_perm_gradient_reaches_the_enumerated_optimum(tiny):
    fam, _, data = tiny
    enum = pm.perm_enumerate(data, beta=0.3)
    res = pm.run_perm(jax.random.PRNGKey(0), data, pm.PERMConfig(beta=0.3, iterations=300, num_restarts=4))
    trace = res.trace["objective"]
    assert trace.shape == (300,) and res.policy.shape == (H, S, A)
    assert float(trace[-1]) > float(trace[0])
    assert float(res.objective) >= float(enum.objective) - 0.02
    # the ascent's policy class is softmax-linear in the features
    np.testing.assert_allclose(np.asarray(res.policy), np.asarray(po.softmax_linear_policy(fam.phi, res.policy_params)), atol=1e-6)


def test_pppo_update_rule_and_improvement(tiny):
    fam, contexts, data = tiny
    alpha = 1.0
    out = pp.run_pppo(jax.random.PRNGKey(1), data, pp.PPPOConfig(beta=0.3, step_size=alpha))
    assert out.iterates.shape == (N, H, S, A) and 0 <= int(out.index) < N
    np.testing.assert_array_equal(np.asarray(out.policy), np.asarray(out.iterates[int(out.index)]))
    np.testing.assert_allclose(np.asarray(out.iterates[0]), 1.0 / A, atol=1e-7)
    q0 = pv.pevi(fam.phi, data.dataset.subset(1), out.iterates[0], beta=0.3).q[0]
    expected = jax.nn.softmax(jnp.log(out.iterates[0]) + alpha * q0, axis=-1)
    np.testing.assert_allclose(np.asarray(out.iterates[1]), np.asarray(expected), atol=1e-5)
    uniform = ds.uniform_policy(H, S, A)
    j = lambda pi: float(pv.pevi(fam.phi, data.dataset, pi, beta=0.3).value.mean())  # noqa: E731
    assert j(out.final) > j(uniform) + 0.05
    test_contexts = jax.random.dirichlet(jax.random.PRNGKey(13), jnp.full((2,), 0.5), (64,))
    mix = float(pp.mixture_zero_shot_value(fam, test_contexts, out.iterates))
    assert mix > float(lm.zero_shot_value(fam, test_contexts, uniform))
    assert pp.default_step_size(2, 2, 4) == pytest.approx(np.sqrt(2 * np.log(2) / 16))
    with pytest.raises(ValueError, match="PPPOConfig.step_size"):
        pp.run_pppo(jax.random.PRNGKey(1), data, pp.PPPOConfig(beta=0.3, step_size=-1.0))


def test_average_mdp_fails_where_perm_succeeds():
    fam, support = lm.two_context_mdp(delta=0.05)
    ids = np.arange(10) % 2
    data = ds.LinearData(fam.phi, ds.collect_dataset(jax.random.PRNGKey(20), fam, support[ids], ds.uniform_policy(2, 3, 2),
                                                     500, context_ids=ids))
    beta = 0.5
    merged = bl.merged_pevi(data, beta)
    merged_value = float(lm.zero_shot_value(fam, support, merged.policy))
    perm = pm.run_perm(jax.random.PRNGKey(0), data, pm.PERMConfig(beta=beta))
    perm_value = float(lm.zero_shot_value(fam, support, perm.policy))
    assert merged_value < 0.1
    assert perm_value > 0.45
    # the merged baseline is PEVI on the pooled episodes
    pooled = pv.pevi(fam.phi, ds.merge_environments(data.dataset), None, beta)
    np.testing.assert_allclose(np.asarray(merged.q), np.asarray(pooled.q[0]), atol=1e-6)


def test_perm_without_pessimism_and_bad_arguments(tiny):
    fam, _, data = tiny
    r0 = jax.jit(bl.make_no_pessimism(pm.PERMConfig(beta=0.3, iterations=50)))(jax.random.PRNGKey(0), data)
    ref = float(pv.pevi(fam.phi, data.dataset, r0.policy, beta=0.0).value.mean())
    assert float(r0.objective) == pytest.approx(ref, abs=1e-5)
    with pytest.raises(ValueError, match="PERMConfig.iterations"):
        pm.run_perm(jax.random.PRNGKey(0), data, pm.PERMConfig(beta=0.3, iterations=0))
    with pytest.raises(ValueError, match="PERMConfig.learning_rate"):
        pm.run_perm(jax.random.PRNGKey(0), data, pm.PERMConfig(beta=0.3, learning_rate=0.0))
    with pytest.raises(ValueError, match="PERMConfig.beta must be a finite number >= 0"):
        pm.run_perm(jax.random.PRNGKey(0), data, pm.PERMConfig(beta=-0.5))
    with pytest.raises(ValueError, match="PPPOConfig.lam"):
        pp.run_pppo(jax.random.PRNGKey(0), data, pp.PPPOConfig(lam=0.0))
    with pytest.raises(ValueError, match="`data` must be a zsgjax.offline.linear.LinearData"):
        pm.run_perm(jax.random.PRNGKey(0), data.dataset)
    with pytest.raises(ValueError, match="phi"):
        pm.perm_enumerate(data.replace(phi=fam.phi[:2]), beta=0.3)
    with pytest.raises(ValueError, match="max_policies"):
        pm.perm_enumerate(data, beta=0.3, max_policies=10)


def test_default_beta_is_pevis_default_of_the_data(tiny):
    """``beta=None`` in a config means PEVI's default for the data's d, H, K (the same run as passing it)."""
    fam, _, data = tiny
    beta = pv.default_beta(fam.dim, H, K)
    key = jax.random.PRNGKey(3)
    implicit = pm.run_perm(key, data, pm.PERMConfig(iterations=5))
    explicit = pm.run_perm(key, data, pm.PERMConfig(beta=beta, iterations=5))
    np.testing.assert_allclose(np.asarray(implicit.objective), np.asarray(explicit.objective), rtol=1e-6)
    assert float(pm.run_perm(key, data, pm.PERMConfig(beta=0.0, iterations=5)).objective) != pytest.approx(
        float(implicit.objective))
