"""Networks, observation normalisation, SAC and DQN update steps."""

import dataclasses

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


# ------------------------------------------------- losses against NumPy formulas
# Each loss is recomputed in float64 NumPy from the network outputs: the flax modules
# are applied to hand-normalised observations, the policy sample is rebuilt from the
# same rng (``u = mean + std * N(0, 1)``, ``a = tanh(u)``) with its log-density written
# out (Gaussian minus ``log(1 - tanh(u)^2)``), and the losses follow the SAC formulas.
LOSS_N = 12
LOSS_ALPHA = 0.3
LOSS_WEIGHT = np.array([1.0, 1.0, 0.0, 0.5, 1.0, 2.0, 1.0, 0.0, 1.0, 1.0, 0.5, 1.0])


def _np_normalize(stats, obs):
    obs = np.asarray(obs, np.float64)
    s = np.clip((obs[:, :3] - np.asarray(stats.mean)) / np.maximum(np.sqrt(np.asarray(stats.var)), 1e-3), -10, 10)
    low, high = np.asarray(SPACE.low), np.asarray(SPACE.high)
    c = (obs[:, 3:] - (low + high) / 2) / ((high - low) / 2)
    return np.concatenate([s, c], axis=1)


def _np_policy_sample(sac_, actor_params, obs_n, rng):
    """Action in (-1, 1) and its log-density, by hand from the actor's (mean, log_std)."""
    mean, log_std = (np.asarray(x, np.float64) for x in sac_.actor.apply(actor_params, jnp.asarray(obs_n, jnp.float32)))
    eps = np.asarray(jax.random.normal(rng, mean.shape), np.float64)
    u = mean + np.exp(log_std) * eps
    log_det = 2.0 * (np.log(2.0) - u - np.logaddexp(0.0, -2.0 * u))  # log(1 - tanh(u)^2), stably
    logp = np.sum(-0.5 * eps**2 - log_std - 0.5 * np.log(2 * np.pi) - log_det, axis=-1)
    return np.tanh(u), logp


def _np_q(sac_, critic_params, obs_n, action):
    """``(num_critics, N)`` from the critic module."""
    return np.asarray(sac_.critic.apply(critic_params, jnp.asarray(obs_n, jnp.float32),
                                        jnp.asarray(action, jnp.float32)), np.float64)


@pytest.fixture(scope="module")
def sac_loss_setup():
    config = SACConfig(hidden_sizes=(16, 16), gamma=0.9, reward_scale=1.5, action_scale=2.0, normalize_obs=True)
    agent = SAC(OBS, 2, NORM, config)
    state = agent.init(jax.random.PRNGKey(10))
    state = agent.observe(state, 1.5 + 2.0 * jax.random.normal(jax.random.PRNGKey(11), (40, OBS)))
    # target critics differ from the online ones (as after training)
    state = state.replace(target_critic_params=agent.init(jax.random.PRNGKey(12)).critic_params)
    b = batch(jax.random.PRNGKey(13), LOSS_N)
    b = b.replace(action=2.0 * b.action,  # environment units, [-2, 2]
                  obs=b.obs.at[:, 3:].set(jax.random.uniform(jax.random.PRNGKey(14), (LOSS_N, 2), minval=-1, maxval=1)))
    losses = dict(
        critic=jax.jit(agent.critic_loss), actor=jax.jit(agent.actor_loss),
        alpha=jax.jit(jax.value_and_grad(agent.alpha_loss)), update=jax.jit(agent.update),
    )  # fmt: skip
    return agent, state, b, losses


def test_sac_critic_loss_matches_numpy(sac_loss_setup):
    agent, state, b, losses = sac_loss_setup
    rng = jax.random.PRNGKey(20)
    w = jnp.asarray(LOSS_WEIGHT, jnp.float32)
    loss, (q_mean, td) = losses["critic"](state.critic_params, state, jnp.float32(LOSS_ALPHA), b, w, rng)

    obs_n, next_n = _np_normalize(state.obs_stats, b.obs), _np_normalize(state.obs_stats, b.next_obs)
    next_a, next_logp = _np_policy_sample(agent, state.actor_params, next_n, rng)
    next_q = _np_q(agent, state.target_critic_params, next_n, next_a)  # target critics
    target = 1.5 * np.asarray(b.reward) + (1 - np.asarray(b.done)) * 0.9 * (next_q.min(0) - LOSS_ALPHA * next_logp)
    q = _np_q(agent, state.critic_params, obs_n, np.asarray(b.action) / 2.0)  # critics see action / scale
    want = 0.5 * np.sum(LOSS_WEIGHT * np.sum((q - target) ** 2, axis=0)) / LOSS_WEIGHT.sum()
    np.testing.assert_allclose(float(loss), want, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(td), np.abs(q - target).mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(q_mean), q.mean(), rtol=1e-4, atol=1e-6)
    # the check can tell the twin minimum from the maximum, and bootstrapping from none
    live = (LOSS_WEIGHT > 0) & (np.asarray(b.done) == 0)
    assert np.abs(next_q[0] - next_q[1])[live].min() > 1e-3 and live.sum() >= 6


def test_sac_actor_loss_matches_numpy(sac_loss_setup):
    agent, state, b, losses = sac_loss_setup
    rng = jax.random.PRNGKey(21)
    w = jnp.asarray(LOSS_WEIGHT, jnp.float32)
    loss, entropy = losses["actor"](state.actor_params, state, jnp.float32(LOSS_ALPHA), b, w, rng)

    obs_n = _np_normalize(state.obs_stats, b.obs)
    a, logp = _np_policy_sample(agent, state.actor_params, obs_n, rng)
    q = _np_q(agent, state.critic_params, obs_n, a)  # online critics, the policy's own action
    want = np.sum(LOSS_WEIGHT * (LOSS_ALPHA * logp - q.min(0))) / LOSS_WEIGHT.sum()
    np.testing.assert_allclose(float(loss), want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(entropy), -logp.mean(), rtol=1e-4, atol=1e-6)
    assert np.abs(q[0] - q[1])[LOSS_WEIGHT > 0].min() > 1e-3


def test_sac_alpha_loss_sign_and_temperature_step(sac_loss_setup):
    agent, state, b, losses = sac_loss_setup
    rng = jax.random.PRNGKey(22)
    w = jnp.asarray(LOSS_WEIGHT, jnp.float32)
    log_alpha = jnp.log(jnp.float32(LOSS_ALPHA))
    loss, grad = losses["alpha"](log_alpha, state, b, w, rng)

    def hand(key):
        _, logp = _np_policy_sample(agent, state.actor_params, _np_normalize(state.obs_stats, b.obs), key)
        gap = -logp - (-2.0)  # entropy estimate minus the target entropy -action_size
        return np.sum(LOSS_WEIGHT * gap) / LOSS_WEIGHT.sum()

    gap = hand(rng)
    assert abs(gap) > 0.1
    np.testing.assert_allclose(float(loss), LOSS_ALPHA * gap, rtol=1e-4)
    np.testing.assert_allclose(float(grad), LOSS_ALPHA * gap, rtol=1e-4)  # d/d log(alpha) of alpha * gap
    # One update (rng split into alpha, critic, actor keys): the temperature loss is
    # evaluated on the alpha key, and Adam's first step moves log(alpha) by -lr sign(grad):
    # alpha falls when the entropy is above its target (gap > 0) and rises when below.
    k_alpha = jax.random.split(jax.random.PRNGKey(23), 3)[0]
    gap_update = hand(k_alpha)
    assert abs(gap_update) > 0.05
    new, metrics = losses["update"](state.replace(log_alpha=log_alpha), b, w, jax.random.PRNGKey(23))
    np.testing.assert_allclose(float(new.log_alpha - log_alpha), -np.sign(gap_update) * agent.config.alpha_lr,
                               rtol=1e-3)
    np.testing.assert_allclose(float(metrics["alpha_loss"]), LOSS_ALPHA * gap_update, rtol=1e-4)


def test_dqn_single_target_weighted_loss_and_dueling_head_by_hand():
    """Non-double target ``max_a Q_target(s', a)``, sample weights, and the dueling head
    ``V + A - mean(A)`` recomputed from the parameters in NumPy."""
    dqn = DQN(OBS, 3, NORM, DQNConfig(hidden_sizes=(16,), gamma=0.8, double=False))
    state = dqn.init(jax.random.PRNGKey(30))
    state = state.replace(target_params=dqn.init(jax.random.PRNGKey(31)).params)
    b = batch(jax.random.PRNGKey(32), 10, discrete=True)
    b = b.replace(reward=3.0 * b.reward)  # some |TD| > 1: both branches of the Huber loss
    w = np.array([1.0, 0.0, 1.0, 0.5, 1.0, 1.0, 2.0, 0.0, 1.0, 1.0])
    loss, (q_mean, td) = jax.jit(dqn.loss)(state.params, state, b, jnp.asarray(w, jnp.float32))

    def q_np(params, obs):
        p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)["params"]
        h = np.maximum(np.asarray(obs, np.float64) @ p["MLP_0"]["Dense_0"]["kernel"] + p["MLP_0"]["Dense_0"]["bias"], 0)
        value = h @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
        adv = h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]
        return value + adv - adv.mean(-1, keepdims=True)

    np.testing.assert_allclose(np.asarray(dqn.network.apply(state.params, b.obs)), q_np(state.params, b.obs),
                               rtol=1e-5, atol=1e-5)
    q = q_np(state.params, b.obs)[np.arange(10), np.asarray(b.action)]
    next_t = q_np(state.target_params, b.next_obs)
    target = np.asarray(b.reward) + 0.8 * (1 - np.asarray(b.done)) * next_t.max(-1)
    d = q - target
    huber = np.where(np.abs(d) <= 1, 0.5 * d**2, np.abs(d) - 0.5)
    assert np.any(np.abs(d[w > 0]) > 1) and np.any(np.abs(d[w > 0]) < 1)
    np.testing.assert_allclose(float(loss), np.sum(w * huber) / w.sum(), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(td), np.abs(d), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(q_mean), q.mean(), rtol=1e-5, atol=1e-6)
    # max over the target's actions differs from the double-DQN choice here
    online_choice = q_np(state.params, b.next_obs).argmax(-1)
    assert np.any(next_t[np.arange(10), online_choice] != next_t.max(-1))


def test_sac_flat_optimizer_equals_per_leaf_adam(sac):
    """``flat_optimizer``: the networks' Adam on one flat vector (``optax.flatten``) gives the
    default per-leaf Adam's numbers."""
    config = dataclasses.replace(sac.config, normalize_obs=False, flat_optimizer=False)
    per_leaf = SAC(sac.obs_size, sac.action_size, sac.normalizer, config)
    sac = SAC(sac.obs_size, sac.action_size, sac.normalizer, dataclasses.replace(config, flat_optimizer=True))
    assert jax.tree.structure(sac.init(jax.random.PRNGKey(0)).critic_opt) != jax.tree.structure(
        per_leaf.init(jax.random.PRNGKey(0)).critic_opt)  # the two really are different optimisers
    b = batch(jax.random.PRNGKey(3), 16)
    weight = jnp.ones((16,))

    def three_updates(agent):
        state, update = agent.init(jax.random.PRNGKey(4)), jax.jit(agent.update)
        for k in jax.random.split(jax.random.PRNGKey(5), 3):
            state, _ = update(state, b, weight, k)
        return state

    flat, ref = three_updates(sac), three_updates(per_leaf)
    for name in ("actor_params", "critic_params", "target_critic_params", "log_alpha"):
        for x, y in zip(jax.tree.leaves(getattr(flat, name)), jax.tree.leaves(getattr(ref, name))):
            assert bool(jnp.all(jnp.isfinite(x))), name
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7, err_msg=name)
    moved = jax.tree.leaves(jax.tree.map(lambda a, b0: jnp.max(jnp.abs(a - b0)), flat.actor_params,
                                         sac.init(jax.random.PRNGKey(4)).actor_params))
    assert max(float(m) for m in moved) > 1e-4  # the updates did change the parameters


def test_sac_sample_draws_its_squashed_gaussian_scaled_or_not(sac):
    """``sample``: ``action_scale * tanh(z)``, ``z ~ N(mean, exp(log_std))`` (the actor's outputs);
    ``rescale=False`` the same draw in [-1, 1]; a fixed key gives a fixed draw."""
    params = sac.policy_params(sac.init(jax.random.PRNGKey(40)))
    obs = jnp.tile(jax.random.normal(jax.random.PRNGKey(41), (1, OBS)), (20_000, 1))
    mean, log_std = sac.actor.apply(params[1], NORM.normalize(params[0], obs[:1]))  # the distribution's parameters
    mean, std = np.asarray(mean[0], np.float64), np.exp(np.asarray(log_std[0], np.float64))
    key = jax.random.PRNGKey(42)
    scaled = np.asarray(jax.jit(sac.sample)(params, obs, key), np.float64)
    unit = np.asarray(jax.jit(lambda p, o, k: sac.sample(p, o, k, rescale=False))(params, obs, key), np.float64)
    scale = sac.config.action_scale
    assert scale != 1.0 and np.abs(unit).max() <= 1.0 and np.abs(scaled).max() > 1.0
    np.testing.assert_allclose(scaled, scale * unit, rtol=1e-6)
    z = np.arctanh(np.clip(unit, -1 + 1e-7, 1 - 1e-7))
    np.testing.assert_allclose(z.mean(0), mean, atol=4 * std.max() / np.sqrt(len(z)))
    np.testing.assert_allclose(z.std(0), std, rtol=0.03)
    first, again = sac.sample(params, obs[:3], key), sac.sample(params, obs[:3], key)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
    assert not np.allclose(sac.sample(params, obs[:3], key), sac.sample(params, obs[:3], jax.random.PRNGKey(43)))


def test_dqn_paper_network_by_hand_and_greedy_sample():
    """The CSE paper's cart_goal Q-network (RLlib: tanh trunk, dueling heads of one ReLU layer
    each) recomputed in NumPy; ``sample`` is the greedy action for any key (RLlib's inference)."""
    dqn = DQN(OBS, 3, NORM, DQNConfig(hidden_sizes=(8,), activation="tanh", head_hidden_size=6))
    params = dqn.init(jax.random.PRNGKey(50)).params
    obs = jax.random.normal(jax.random.PRNGKey(51), (7, OBS))
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)["params"]

    def dense(layer, x):
        return x @ layer["kernel"] + layer["bias"]

    h = np.tanh(dense(p["MLP_0"]["Dense_0"], np.asarray(obs, np.float64)))
    value = dense(p["MLP_1"]["Dense_1"], np.maximum(dense(p["MLP_1"]["Dense_0"], h), 0))
    adv = dense(p["MLP_2"]["Dense_1"], np.maximum(dense(p["MLP_2"]["Dense_0"], h), 0))
    q = value + adv - adv.mean(-1, keepdims=True)
    assert p["MLP_1"]["Dense_0"]["kernel"].shape == (8, 6) and adv.shape == (7, 3)
    np.testing.assert_allclose(np.asarray(dqn.network.apply(params, obs)), q, rtol=1e-5, atol=1e-6)
    for k in range(3):
        np.testing.assert_array_equal(np.asarray(dqn.sample((None, params), obs, jax.random.PRNGKey(k))), q.argmax(-1))
