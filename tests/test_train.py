"""The jitted training loop: config validation, chunked runs, vmapped seeds, methods, CSE masking."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax.envs.simple_direction import SimpleDirection
from zsgjax.presets import ENV_PRESETS
from zsgjax.train import TrainConfig, make_train

TINY = dict(
    env="simple_direction",
    total_steps=160,
    num_envs=4,
    steps_per_iteration=40,
    learning_starts=40,
    buffer_size=1000,
    batch_size=32,
    hidden_sizes=(16, 16),
)


def tiny(**kw):
    return TrainConfig(**{**TINY, **kw})


def leaves_close(a, b, rtol=0.0, atol=0.0):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def cse_trainer():
    return make_train(tiny(method="cse"))


@pytest.fixture(scope="module")
def cse_train_fn(cse_trainer):
    return jax.jit(cse_trainer.train)


@pytest.fixture(scope="module")
def cse_result(cse_train_fn):
    return cse_train_fn(jax.random.PRNGKey(3))


# ------------------------------------------------------------------ config
@pytest.mark.parametrize(
    "field, value, match",
    [
        ("method", "foo", "method"),
        ("env", "nope", "env"),
        ("cse_mode", "second", "cse_mode"),
        ("cse_storage", "hessian", "cse_storage"),
        ("num_envs", 0, "num_envs"),
        ("cse_epsilon", 0.0, "cse_epsilon"),
        ("cse_ratio", 1.5, "cse_ratio"),
        ("gamma", 1.2, "gamma"),
        ("batch_size", 2000, "batch_size"),
        ("steps_per_iteration", 42, "steps_per_iteration"),
        ("hidden_sizes", (), "hidden_sizes"),
        ("actor_lr", -1.0, "actor_lr"),
        ("total_steps", 2.5, "total_steps"),
        ("critic_lr", float("inf"), "critic_lr"),
        ("cse_epsilon", float("nan"), "cse_epsilon"),
        ("epsilon_decay_steps", 0, "epsilon_decay_steps"),
    ],
)
def test_config_validation_names_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        make_train(dataclasses.replace(tiny(), **{field: value}))


def test_resolve_uses_per_env_table():
    sd = TrainConfig(env="simple_direction").resolve()
    assert (sd.gamma, sd.actor_lr, sd.critic_lr, sd.alpha_lr) == (0.9, 1e-3, 2e-3, 4e-4)
    pg = TrainConfig(env="pendulum_goal").resolve()
    assert (pg.gamma, pg.actor_lr, pg.critic_lr, pg.alpha_lr, pg.action_scale) == (0.99, 2e-4, 8e-4, 9e-4, 2.0)
    assert TrainConfig(env="simple_direction", actor_lr=5e-3).resolve().actor_lr == 5e-3
    assert ENV_PRESETS["ant_direction"]["actor_lr"] == 3e-5
    # without a preset row the base value is the agent config's own default (one source)
    from zsgjax.agents.dqn import DQNConfig
    from zsgjax.agents.sac import SACConfig
    assert sd.tau == SACConfig().tau and sd.hidden_sizes == SACConfig().hidden_sizes
    cg = TrainConfig(env="cart_goal").resolve()
    assert cg.epsilon_end == ENV_PRESETS["cart_goal"]["epsilon_end"] == 0.02 and cg.dqn_lr == 5e-4
    assert cg.normalize_obs == DQNConfig().normalize_obs  # not in the row: the DQN's own default
    # the paper's replay per environment (zsgjax.presets): fully prioritized pendulum, PER 0.6/0.4 elsewhere
    assert (pg.prioritized_replay, pg.priority_exponent, pg.importance_exponent) == (True, 1.0, 0.0)
    assert (cg.prioritized_replay, cg.priority_exponent, cg.batch_size, cg.buffer_size) == (True, 0.6, 32, 50_000)
    ag = TrainConfig(env="ant_goal").resolve()
    assert (ag.init_alpha, ag.learning_starts, ag.buffer_size) == (0.01, 256, 1_000_000)
    assert TrainConfig(hidden_sizes=[8, 8]).hidden_sizes == (8, 8)  # lists become tuples (hashable)
    tr = make_train(tiny(total_steps=170))
    assert tr.steps_per_iteration == 40 and tr.num_iterations == 5  # rounds up to cover total_steps


# ------------------------------------------------------------------ contract
def test_train_metrics_and_state(cse_trainer, cse_result):
    state, metrics = cse_result
    n = cse_trainer.num_iterations
    for key in ("env_steps", "episode_return", "episodes", "updates", "cse_invalid", "alpha", "critic_loss",
                "actor_loss", "alpha_loss"):
        assert metrics[key].shape == (n,), key
        assert np.all(np.isfinite(np.asarray(metrics[key], np.float64))), key
    np.testing.assert_array_equal(metrics["env_steps"], [40, 80, 120, 160])
    np.testing.assert_array_equal(metrics["episodes"], [4, 4, 4, 4])  # 10 rounds of 4 envs, horizon 10
    np.testing.assert_array_equal(metrics["updates"], [1, 10, 10, 10])  # learning from env_steps >= 40
    assert int(state.env_steps) == 160 and int(state.iteration) == n
    assert int(cse_trainer.replay.size(state.replay)) == 160
    # vanilla and cse collect at the default context only
    np.testing.assert_array_equal(np.asarray(state.replay.experience.transition.context)[0, :160], 0.0)
    obs = jnp.zeros((5, cse_trainer.env.observation_size))
    params = cse_trainer.policy_params(state)
    a = cse_trainer.act(params, obs)
    assert a.shape == (5, 2) and np.all(np.abs(np.asarray(a)) <= 1.0)
    np.testing.assert_array_equal(a, cse_trainer.act(params, obs))
    assert cse_trainer.act(params, obs[0], jax.random.PRNGKey(0)).shape == (2,)


def test_run_in_chunks_equals_one_call(cse_trainer, cse_result):
    run = jax.jit(cse_trainer.run, static_argnums=1, donate_argnums=0)  # donation works from init
    s0 = cse_trainer.init(jax.random.PRNGKey(3))
    s_half, m_a = run(s0, 2)
    s_chunked, m_b = run(s_half, 2)
    s_once, m_once = cse_result
    leaves_close(s_chunked, s_once, rtol=1e-6, atol=1e-7)
    leaves_close({k: jnp.concatenate([m_a[k], m_b[k]]) for k in m_once}, m_once, rtol=1e-6, atol=1e-7)


def test_vmapped_seeds_equal_separate_runs(cse_trainer, cse_train_fn):
    """``run_seeds`` (the runner's program: counters unbatched) equals separate runs per seed."""
    rngs = jax.random.split(jax.random.PRNGKey(7), 4)
    init = jax.jit(jax.vmap(cse_trainer.init))(rngs)
    states, metrics = jax.jit(lambda s: cse_trainer.run_seeds(s, cse_trainer.num_iterations))(init)
    single = cse_train_fn
    for i in range(4):
        s_i, m_i = single(rngs[i])
        leaves_close(jax.tree.map(lambda x: x[i], cse_trainer.policy_params(states)), cse_trainer.policy_params(s_i),
                     rtol=1e-4, atol=1e-5)
        leaves_close(jax.tree.map(lambda x: x[i], metrics), m_i, rtol=1e-4, atol=1e-4)
    # different seeds give different agents
    p = cse_trainer.policy_params(states)[1]
    assert not np.allclose(jax.tree.leaves(p)[0][0], jax.tree.leaves(p)[0][1])


def test_run_seeds_keeps_the_warmup_cond(cse_trainer):
    """``run_seeds`` passes the step counters unbatched, so the warm-up/learning switch stays a
    ``cond``; ``vmap(run)`` batches them and turns it into a select that computes both branches."""
    states = jax.eval_shape(jax.vmap(cse_trainer.init), jax.random.split(jax.random.PRNGKey(5), 2))
    vmapped = jax.vmap(lambda s: cse_trainer.run(s, 2))
    shared = lambda s: cse_trainer.run_seeds(s, 2)  # noqa: E731
    assert "cond[" in str(jax.make_jaxpr(shared)(states))
    assert "cond[" not in str(jax.make_jaxpr(vmapped)(states))


# ------------------------------------------------------------------ methods
@pytest.mark.parametrize(
    "kw",
    [
        dict(method="ldr", ldr_scale=0.3, normalize_obs=True),
        dict(method="cse", cse_storage="jvp"),
        dict(method="cse", cse_mode="exact"),
    ],
    ids=["ldr_norm", "cse_jvp", "cse_exact"],
)
def test_methods_collect_and_learn(kw):
    trainer = make_train(tiny(**kw))
    state, metrics = jax.jit(trainer.train)(jax.random.PRNGKey(0))
    assert all(np.all(np.isfinite(np.asarray(v, np.float64))) for v in metrics.values())
    ctx = np.asarray(state.replay.experience.transition.context)[0, :160]
    space = trainer.env.context_space
    assert np.all(space.contains(jnp.asarray(ctx)))
    if kw["method"] == "ldr":
        assert 0.1 < np.std(ctx[:, 0]) < 0.5
        assert state.agent.obs_stats.count == 160
    else:
        np.testing.assert_array_equal(ctx, 0.0)
    extras = state.replay.experience.extras
    if kw.get("cse_storage") == "jvp":
        np.testing.assert_allclose(np.linalg.norm(np.asarray(extras.delta_c)[0, :160], axis=-1), 0.1, rtol=1e-5)
    elif kw.get("cse_mode") == "exact":
        assert extras.shape == (1, 1000, 2)  # the pre-step physics states
    else:
        assert extras is None


def test_training_batch_enhances_first_ratio_share(cse_trainer, cse_result):
    state, _ = cse_result
    half = make_train(tiny(method="cse", cse_ratio=0.5))
    items = cse_trainer.replay.sample(state.replay, jax.random.PRNGKey(0))
    batch, weight, invalid = jax.jit(half.training_batch)(items, jax.random.PRNGKey(1))
    ctx = np.asarray(batch.context)
    np.testing.assert_allclose(np.linalg.norm(ctx[:16], axis=-1), 0.1, rtol=1e-5)
    np.testing.assert_array_equal(ctx[16:], 0.0)
    np.testing.assert_array_equal(np.asarray(batch.obs)[:, -2:], ctx)
    np.testing.assert_array_equal(np.asarray(batch.next_obs)[:, -2:], ctx)
    # simple_direction: s' is linear in c (first order exact), r = s'.c is quadratic: the
    # first-order reward misses exactly |delta_c|^2 = eps^2
    t = items.transition
    np.testing.assert_allclose(batch.next_obs[:16, :2], t.next_obs[:16, :2] + ctx[:16], rtol=1e-5, atol=1e-6)
    true_reward = jnp.sum(batch.next_obs[:16, :2] * ctx[:16], -1)
    np.testing.assert_allclose(batch.reward[:16], true_reward - 0.1**2, atol=1e-5)
    np.testing.assert_array_equal(batch.reward[16:], t.reward[16:])
    np.testing.assert_array_equal(weight, 1.0)
    assert int(invalid) == 0


class _NaNGradDirection(SimpleDirection):
    """SimpleDirection whose reward has a non-finite context derivative where ``s'_x < 0``."""

    def env_step(self, env_state, action, context):
        next_s, obs, reward, term = super().env_step(env_state, action, context)
        return next_s, obs, reward + 0.0 * jnp.sqrt(jnp.maximum(next_s[0], 0.0)), term


def test_nonfinite_gradients_are_masked_and_counted():
    trainer = make_train(tiny(method="cse"), env=_NaNGradDirection())
    state, metrics = jax.jit(trainer.train)(jax.random.PRNGKey(0))
    grads = state.replay.experience.extras
    assert not np.all(np.isfinite(np.asarray(grads.d_reward)))
    invalid = np.asarray(metrics["cse_invalid"])
    total = np.asarray(metrics["updates"]) * trainer.config.batch_size
    assert invalid.sum() > 0 and np.all(invalid < total)
    assert all(np.all(np.isfinite(np.asarray(v, np.float64))) for v in metrics.values())
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state.agent))


class _NaNStateDirection(SimpleDirection):
    """SimpleDirection whose next state turns NaN where ``s'_x > 1.5`` (a physics blow-up)."""

    def env_step(self, env_state, action, context):
        next_s, obs, reward, term = super().env_step(env_state, action, context)
        bad = next_s[0] > 1.5
        next_s = jnp.where(bad, jnp.nan, next_s)
        return next_s, next_s, reward, term


def test_nonfinite_transitions_are_masked_reset_and_counted_in_every_method():
    """Raw non-finite transitions never reach a loss (any method): weight 0, the env reset, counted."""
    trainer = make_train(tiny(method="vanilla"), env=_NaNStateDirection())
    state, metrics = jax.jit(trainer.train)(jax.random.PRNGKey(0))
    resets = np.asarray(metrics["nonfinite_resets"])
    assert resets.sum() > 0
    valid = np.asarray(state.replay.experience.valid)[0, :160]
    next_obs = np.asarray(state.replay.experience.transition.next_obs)[0, :160]
    np.testing.assert_array_equal(valid, np.all(np.isfinite(next_obs), axis=-1))
    assert (~valid).sum() == resets.sum()
    assert np.all(np.isfinite(np.asarray(state.env.obs)))  # every env was reset to a finite state
    items = trainer.replay.sample(state.replay, jax.random.PRNGKey(1))
    _, weight, _ = trainer.training_batch(items, jax.random.PRNGKey(2))
    np.testing.assert_array_equal(weight, np.asarray(items.valid, np.float32))
    assert all(np.all(np.isfinite(np.asarray(v, np.float64))) for v in metrics.values())
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state.agent))


# ------------------------------------------------------------------ other envs
def test_dqn_on_cart_goal_and_sac_action_scale():
    dqn = make_train(tiny(env="cart_goal", method="dr", target_update_period=5, epsilon_decay_steps=80))
    state, metrics = jax.jit(dqn.train)(jax.random.PRNGKey(0))
    assert "epsilon" in metrics and "q_loss" in metrics
    eps = np.asarray(metrics["epsilon"])
    assert eps[0] > eps[-1] and eps[-1] == pytest.approx(dqn.config.epsilon_end)
    a = dqn.act(dqn.policy_params(state), jnp.zeros((3, dqn.env.observation_size)))
    assert a.shape == (3,) and a.dtype == jnp.int32 and np.all((np.asarray(a) >= 0) & (np.asarray(a) < 2))
    acts = np.asarray(state.replay.experience.transition.action)[0, :160]
    assert set(np.unique(acts)) <= {0, 1}
    ctx = np.asarray(state.replay.experience.transition.context)[0, :160]
    space = dqn.env.context_space
    assert np.all(space.contains(jnp.asarray(ctx))) and np.all(np.std(ctx, axis=0) > 0.1)  # DR: uniform box

    sac = make_train(tiny(env="pendulum_goal", method="vanilla", total_steps=40))
    acts = np.asarray(sac.agent.random_action(jax.random.PRNGKey(0), 400))  # the warm-up actions
    assert np.abs(acts).max() > 1.9 and np.abs(acts).max() <= 2.0  # cover [-2, 2] (action_scale 2)


@pytest.mark.slow
@pytest.mark.parametrize("env, kw", [("cheetah_velocity", dict(method="cse")),
                                     ("ant_direction", dict(method="cse", cse_storage="jvp")),
                                     ("ant_goal", dict(method="dr"))])
def test_mjx_envs_train(env, kw):
    """Nothing in the trainer assumes analytic envs: the MJX envs train (tiny smoke run)."""
    trainer = make_train(tiny(env=env, total_steps=16, num_envs=2, steps_per_iteration=8, learning_starts=8,
                              batch_size=8, buffer_size=64, **kw))
    state, metrics = jax.jit(trainer.train)(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(metrics["updates"], [1, 4])
    assert all(np.all(np.isfinite(np.asarray(v, np.float64))) for v in metrics.values())
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(trainer.policy_params(state)))


def test_make_train_rejects_wrapping_step_counters_and_wrong_types():
    with pytest.raises(ValueError, match="more than the int32 step counters hold \\(2,147,483,647\\); give at most 2,147,483,000"):
        make_train(TrainConfig(total_steps=2**31 - 2, num_envs=8, steps_per_iteration=1000))
    with pytest.raises(ValueError, match="`config` must be a TrainConfig"):
        make_train({"env": "simple_direction"})
    with pytest.raises(ValueError, match="`env` must be a zsgjax ContextualEnv"):
        make_train(tiny(), env="simple_direction")
    with pytest.raises(ValueError, match="`method` must be a zsgjax.methods.Method"):
        make_train(tiny(), method="cse")


@pytest.mark.slow  # about 12 CPU-s of compilation (three programs)
def test_one_gather_for_g_updates_equals_sampling_before_each_update():
    """Uniform replay, G = 3 CSE updates in a round: the trainer's one vmapped gather and
    enhancement give exactly what sampling and enhancing before each update gives."""
    trainer = make_train(tiny(method="cse", grad_updates_per_step=3, prioritized_replay=False))
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    state, _ = jax.jit(lambda s: trainer.run(s, 1))(state)  # fill the replay
    rng = jax.random.PRNGKey(5)
    agent, _, metrics = jax.jit(trainer._updates)(state.agent, state.replay, rng)

    def reference(agent, replay_state, rng):
        invalid = 0
        for key in jax.random.split(rng, 3):
            k_sample, k_enh, k_upd = jax.random.split(key, 3)
            items = trainer.replay.sample_batch(replay_state, k_sample).items
            batch, weight, dropped = trainer.training_batch(items, k_enh)
            agent, _ = trainer.agent.update(agent, batch, weight, k_upd)
            invalid += dropped
        return agent, invalid

    ref_agent, ref_invalid = jax.jit(reference)(state.agent, state.replay, rng)
    leaves_close(agent, ref_agent, rtol=1e-5, atol=1e-6)
    assert int(metrics["cse_invalid"]) == int(ref_invalid)
