"""Networks, observation normalisation, SAC and DQN update steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax.agents import DQN, SAC, DQNConfig, ObsNormalizer, SACConfig
from zsgjax.agents.networks import EnsembleCritic, tanh_gaussian
from zsgjax.envs.context import ContextSpace
from zsgjax.types import Transition

SPACE = ContextSpace(("a", "b"), low=(-1.0, 0.0), high=(1.0, 4.0), default=(0.0, 1.0))
NORM = ObsNormalizer(state_obs_size=3, context_space=SPACE)
OBS = 5


def batch(rng, n, action_size=2, discrete=False):
    k = jax.random.split(rng, 4)
    action = (jax.random.randint(k[1], (n,), 0, 3) if discrete else jax.random.uniform(k[1], (n, action_size), minval=-1, maxval=1))
    return Transition(
        obs=jax.random.normal(k[0], (n, OBS)),
        action=action,
        reward=jax.random.normal(k[2], (n,)),
        next_obs=jax.random.normal(k[3], (n, OBS)),
        done=(jnp.arange(n) % 5 == 0).astype(jnp.float32),
        context=jnp.zeros((n, 2)),
    )


def test_ensemble_critic_is_one_vmapped_module():
    critic = EnsembleCritic((8, 8), num_critics=2)
    params = critic.init(jax.random.PRNGKey(0), jnp.zeros((1, OBS)), jnp.zeros((1, 2)))
    kernels = [x for x in jax.tree.leaves(params) if x.ndim == 3]
    assert len(kernels) == 3 and all(k.shape[0] == 2 for k in kernels)
    assert not np.allclose(kernels[0][0], kernels[0][1])  # independent initialisations
    q = critic.apply(params, jnp.ones((7, OBS)), jnp.ones((7, 2)))
    assert q.shape == (2, 7) and not np.allclose(q[0], q[1])


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    mean, log_std = jnp.array([0.3, -1.0]), jnp.array([-0.5, 0.2])
    d = tanh_gaussian(mean, log_std)
    x, logp = d.sample_and_log_prob(seed=jax.random.PRNGKey(0), sample_shape=(100,))
    assert np.all(np.abs(np.asarray(x)) < 1)
    u = jnp.arctanh(jnp.clip(x, -1 + 1e-6, 1 - 1e-6))
    std = jnp.exp(log_std)
    gauss = jnp.sum(-0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi), -1)
    np.testing.assert_allclose(logp, gauss - jnp.sum(jnp.log(1 - x**2), -1), rtol=2e-3, atol=2e-3)


def test_normalizer_matches_numpy_moments_and_maps_context_box():
    stats = NORM.init()
    data = np.random.default_rng(0).normal(3.0, 2.0, size=(3, 50, OBS)).astype(np.float32)
    for chunk in data:
        stats = NORM.update(stats, jnp.asarray(chunk))
    flat = data.reshape(-1, OBS)[:, :3]
    np.testing.assert_allclose(stats.mean, flat.mean(0), rtol=1e-4)
    np.testing.assert_allclose(stats.var, flat.var(0), rtol=1e-3)
    obs = jnp.array([[0.0, 0.0, 0.0, -1.0, 4.0], [0.0, 0.0, 0.0, 1.0, 0.0]])
    np.testing.assert_allclose(NORM.normalize(stats, obs)[:, 3:], [[-1.0, 1.0], [1.0, -1.0]])
    np.testing.assert_array_equal(NORM.normalize(None, obs), obs)


@pytest.fixture(scope="module")
def sac():
    return SAC(OBS, 2, NORM, SACConfig(hidden_sizes=(16, 16), tau=0.1, critic_lr=3e-3, action_scale=2.0, normalize_obs=True))


def test_sac_update_masks_zero_weight_samples(sac):
    state = sac.init(jax.random.PRNGKey(0))
    state = sac.observe(state, jax.random.normal(jax.random.PRNGKey(5), (20, OBS)))
    b = batch(jax.random.PRNGKey(1), 16)
    weight = (jnp.arange(16) < 12).astype(jnp.float32)
    poisoned = b.replace(reward=b.reward.at[12:].set(jnp.nan), next_obs=b.next_obs.at[12:].set(jnp.inf))
    other = b.replace(reward=b.reward.at[12:].set(1e3))
    update = jax.jit(sac.update)
    s1, m1 = update(state, poisoned, weight, jax.random.PRNGKey(2))
    s2, m2 = update(state, other, weight, jax.random.PRNGKey(2))
    for x, y in zip(jax.tree.leaves(s1), jax.tree.leaves(s2), strict=True):
        assert np.all(np.isfinite(np.asarray(x)))
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
    # Polyak averaging of the targets with tau = 0.1
    for new, old, tgt in zip(jax.tree.leaves(s1.critic_params), jax.tree.leaves(state.critic_params),
                             jax.tree.leaves(s1.target_critic_params)):
        np.testing.assert_allclose(tgt, 0.1 * new + 0.9 * old, rtol=1e-5, atol=1e-7)
    assert int(s1.updates) == 1 and set(m1) >= {"critic_loss", "actor_loss", "alpha_loss"}


def test_sac_actions_and_critic_fit(sac):
    state = sac.init(jax.random.PRNGKey(0))
    params = sac.policy_params(state)
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, OBS))
    a = sac.act(params, obs, jax.random.PRNGKey(2))
    assert a.shape == (64, 2) and np.abs(np.asarray(a)).max() <= 2.0 and np.abs(np.asarray(a)).max() > 1.0
    assert sac.act(params, obs[0]).shape == (2,)
    # terminal one-step data: the critics regress onto the reward
    b = batch(jax.random.PRNGKey(3), 64).replace(done=jnp.ones((64,)))
    b = b.replace(reward=b.action[:, 0] - 0.5 * b.obs[:, 0])
    update = jax.jit(sac.update)

    def body(s, k):
        s, m = update(s, b, jnp.ones((64,)), k)
        return s, m["critic_loss"]

    losses = [body(state, jax.random.PRNGKey(0))[1]]
    for k in jax.random.split(jax.random.PRNGKey(4), 150):
        state, loss = body(state, k)
        losses.append(loss)
    assert losses[-1] < 0.2 * losses[0]


def test_dqn_double_dueling_target_and_epsilon():
    dqn = DQN(OBS, 3, NORM, DQNConfig(hidden_sizes=(16,), gamma=0.9, target_update_period=2, epsilon_decay_steps=100))
    state = dqn.init(jax.random.PRNGKey(0))
    state = state.replace(target_params=dqn.init(jax.random.PRNGKey(1)).params)
    b = batch(jax.random.PRNGKey(2), 8, discrete=True)
    loss, _ = jax.jit(dqn.loss)(state.params, state, b, jnp.ones((8,)))
    q = dqn.network.apply(state.params, b.obs)
    a_star = jnp.argmax(dqn.network.apply(state.params, b.next_obs), -1)
    q_next = jnp.take_along_axis(dqn.network.apply(state.target_params, b.next_obs), a_star[:, None], -1)[:, 0]
    target = b.reward + 0.9 * (1 - b.done) * q_next
    td = q[jnp.arange(8), b.action] - target
    huber = jnp.where(jnp.abs(td) < 1, 0.5 * td**2, jnp.abs(td) - 0.5)
    np.testing.assert_allclose(loss, huber.mean(), rtol=1e-5)
    # target refreshed every 2nd update
    update = jax.jit(dqn.update)
    s1, _ = update(state, b, jnp.ones((8,)), jax.random.PRNGKey(0))
    assert not np.allclose(jax.tree.leaves(s1.target_params)[0], jax.tree.leaves(s1.params)[0])
    s2, _ = update(s1, b, jnp.ones((8,)), jax.random.PRNGKey(0))
    for x, y in zip(jax.tree.leaves(s2.target_params), jax.tree.leaves(s2.params)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose([dqn.epsilon(0), dqn.epsilon(50), dqn.epsilon(100), dqn.epsilon(500)],
                               [1.0, 0.525, 0.05, 0.05], rtol=1e-6)
    greedy = dqn.act(dqn.policy_params(state), b.obs)
    np.testing.assert_array_equal(greedy, jnp.argmax(q, -1))
    explore = jax.jit(dqn.explore)(state, jnp.tile(b.obs[:1], (400, 1)), jax.random.PRNGKey(3), jnp.asarray(0))
    assert np.all(np.bincount(np.asarray(explore), minlength=3) > 100)  # epsilon 1: uniform
