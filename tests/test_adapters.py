"""Adapters: mujoco_playground envs as ContextualEnvs, zsgjax envs as gymnax envs, brax wrappers.

Fast tests (default suite): the playground adapter's names and errors, and its
reset/step/context Jacobian on CartpoleBalance in float64 against central finite
differences; the gymnax adapter against the zsgjax env it wraps and a tiny
purejaxrl-style PPO trained through gymnax's own ``LogWrapper``; the brax
auto-reset wrapper drawing a new context per slot and episode, and the brax
registry entries. Slow (``-m slow``): brax's own PPO and SAC on a zsgjax env through
the wrapper; the playground adapter against playground's own reset/step,
``context_jacobian`` against ``step_and_jacobian`` and zsgjax's CSE trainer on a
playground env. Every supported playground env goes through the environment contract
(``test_contracts.py``, slow)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zsgjax.adapters.playground  # noqa: F401  registers "playground:<Name>" (zsgjax.envs does too once it imports it)
from zsgjax import context_gradients
from zsgjax.envs import make

PG_FEATURES = ("gravity", "mass_scale", "mass_scale:pole_1", "friction_scale", "actuator_gain", "damping_scale")
H_REL = 1e-6
TOL = 1e-6


# ----------------------------------------------------------------- playground
def test_playground_names_match_the_package_and_unknown_names_are_listed():
    from mujoco_playground import dm_control_suite

    from zsgjax.adapters.playground import PlaygroundEnv
    from zsgjax.adapters.playground_envs import DM_CONTROL_ENVS

    assert DM_CONTROL_ENVS == tuple(dm_control_suite.ALL_ENVS)
    with pytest.raises(ValueError, match="playground:CartpoleBalance.*playground:WalkerWalk"):
        make("playground:NoSuchEnv")
    with pytest.raises(ValueError, match="supported .*CartpoleBalance"):
        PlaygroundEnv("NoSuchEnv")
    with pytest.raises(ValueError, match="unknown physical feature 'gravty'; known: gravity"):
        make("playground:CartpoleBalance", physical=("gravty",))
    with pytest.raises(ValueError, match="named bodies: cart, pole_1"):
        make("playground:CartpoleBalance", physical=("mass_scale:pole",))
    with pytest.raises(ValueError, match="at least one feature"):
        make("playground:CartpoleBalance", physical=())
    with pytest.raises(ValueError, match="impl='jax'"):
        make("playground:CartpoleBalance", config_overrides={"impl": "warp"})
    with pytest.raises(ValueError, match="does not have"):
        make("playground:CartpoleBalance", config_overrides={"episode_lenght": 10})


def _assert_close(got, want, what):
    err = np.asarray(jnp.abs(got - want) / (1.0 + jnp.abs(want)))
    assert np.all(err <= TOL), f"{what}: max error {err.max():.3g} relative to 1 + |FD| (tolerance {TOL})"


def test_playground_reset_step_and_exact_context_jacobian():
    """CartpoleBalance, every feature, float64: one jitted program resets at a context
    and runs :func:`zsgjax.context_gradients.step_and_jacobian` (what CSE training calls) at ``c``
    and at ``c +- h e_i``: the exact Jacobian at ``c`` against central differences of
    the steps. (``context_gradients.context_jacobian``, the same ``jacfwd``, is checked in the slow test.)"""
    with jax.enable_x64(True):
        env = make("playground:CartpoleBalance", physical=PG_FEATURES, config_overrides={"episode_length": 50})
        assert env.model.body_mass.dtype == jnp.float64
        space, dim = env.context_space, env.context_dim
        assert space.names == PG_FEATURES and space.default == (9.81, 1.0, 1.0, 1.0, 1.0, 1.0)
        assert env.state_obs_size == 5 and env.action_size == 1 and env.horizon == 50
        assert env.observation_size == 5 + dim
        h = H_REL * jnp.asarray(np.subtract(space.high, space.low))
        plus_minus = jnp.concatenate([jnp.zeros((1, dim)), jnp.diag(h), -jnp.diag(h)])  # (1 + 2 dim, dim)

        def program(rng, context, action):
            state = env.reset(rng, context)
            s = state.pipeline_state
            out, grads = jax.vmap(lambda c: context_gradients.step_and_jacobian(env, s, action, c))(context + plus_minus)
            return state, out, jax.tree.map(lambda x: x[0], grads)

        context = jnp.asarray([12.0, 1.3, 0.8, 1.5, 1.7, 0.6])
        action = jnp.asarray([0.7])
        state, (nxt, obs, rew, term), grads = jax.jit(program)(jax.random.PRNGKey(0), context, action)

        # observations concat(state_obs, context); the state is playground's, and it moves
        assert state.obs.shape == (env.observation_size,)
        np.testing.assert_array_equal(state.obs[5:], context)
        np.testing.assert_array_equal(state.obs[:5], state.pipeline_state.obs)
        np.testing.assert_array_equal(state.info["context"], context)
        assert nxt.data.qpos.shape == (1 + 2 * dim, 2) and not bool(jnp.any(term))
        assert float(jnp.abs(obs[0] - state.obs[:5]).max()) > 1e-3
        assert bool(jnp.all((rew > 0) & (rew <= 1)))  # playground's dense balance reward
        # exact Jacobian vs central differences
        assert grads.d_obs.shape == (5, dim) and grads.d_reward.shape == (dim,)
        fd_obs = jnp.swapaxes((obs[1 : 1 + dim] - obs[1 + dim :]) / (2 * h[:, None]), 0, 1)
        fd_rew = (rew[1 : 1 + dim] - rew[1 + dim :]) / (2 * h)
        for i, name in enumerate(PG_FEATURES):
            _assert_close(grads.d_obs[:, i], fd_obs[:, i], f"d next_obs / d {name}")
            _assert_close(grads.d_reward[i], fd_rew[i], f"d reward / d {name}")
        # every feature but friction (the cartpole has no contacts) moves the next state
        moved = np.max(np.abs(np.asarray(grads.d_obs)), axis=0)
        assert moved[space.index("friction_scale")] == 0.0
        assert np.all(np.delete(moved, space.index("friction_scale")) > 1e-9), moved


# --------------------------------------------------------------------- gymnax
def test_gymnax_reset_and_step_equal_the_zsgjax_env():
    from gymnax.environments import environment, spaces

    from zsgjax.adapters.gymnax import ContextParams, GymnaxEnv

    env = make("simple_direction")
    genv = GymnaxEnv(env)
    assert isinstance(genv, environment.Environment)
    context = jnp.asarray([0.5, -0.25])
    params = genv.params_at(context)
    assert isinstance(params, ContextParams) and params.max_steps_in_episode == env.horizon
    np.testing.assert_array_equal(genv.default_params.context, env.default_context())
    assert isinstance(genv.action_space(params), spaces.Box) and genv.action_space(params).high == 1.0
    assert genv.action_space(params).shape == (2,) and genv.observation_space(params).shape == (4,)
    np.testing.assert_array_equal(genv.observation_space(params).high[2:], [1.0, 1.0])

    key = jax.random.PRNGKey(3)
    obs, gstate = genv.reset(key, params)
    state = env.reset(key, context)
    np.testing.assert_array_equal(obs, state.obs)
    actions = jax.random.uniform(jax.random.PRNGKey(4), (env.horizon, 2), minval=-1.0, maxval=1.0)
    for t in range(env.horizon):
        obs, gstate, reward, terminated, truncated, info = genv.step(jax.random.PRNGKey(t), gstate, actions[t], params)
        state = env.step(state, actions[t])
        assert bool(truncated) == (t == env.horizon - 1) and not bool(terminated)
        if t < env.horizon - 1:
            np.testing.assert_array_equal(obs, state.obs)
        np.testing.assert_array_equal(info["final_observation"], state.obs)
        np.testing.assert_allclose(reward, state.reward, rtol=1e-6)
    assert int(gstate.time) == 0  # gymnax's auto-reset started a new episode at the same context
    np.testing.assert_array_equal(obs[2:], context)

    # with a sampler every episode (gymnax's auto-reset included) draws its own context
    sampled = GymnaxEnv(env, sampler=env.context_space.sample_uniform)
    _, s0 = sampled.reset(jax.random.PRNGKey(0), params)
    _, s1 = sampled.reset(jax.random.PRNGKey(1), params)
    assert float(jnp.abs(s0.context - s1.context).min()) > 0
    s = s0
    for t in range(env.horizon):
        obs, s, *_ = sampled.step(jax.random.PRNGKey(t), s, actions[t], params)
    assert int(s.time) == 0 and float(jnp.abs(s.context - s0.context).min()) > 0
    np.testing.assert_array_equal(obs[2:], s.context)

    with pytest.raises(ValueError, match="dimension 'c_x' = 3 is outside its range"):
        genv.params_at([3.0, 0.0])
    with pytest.raises(ValueError, match="must have shape \\(2,\\)"):
        genv.params_at([0.0])
    with pytest.raises(ValueError, match="`env` must be a zsgjax ContextualEnv"):
        GymnaxEnv("simple_direction")


def _tiny_ppo(genv, params_batch, num_updates, num_steps, rng):
    """A purejaxrl-style PPO (4 full-batch epochs per update) on a gymnax env through gymnax's ``LogWrapper``.

    ``params_batch``: ``EnvParams`` with a leading env axis (each slot its own context).
    Returns ``(returns (num_updates,), losses (num_updates,))``: the mean return of the
    episodes completed in each update's rollout and the PPO loss.
    """
    import optax
    from gymnax.wrappers.purerl import LogWrapper

    env = LogWrapper(genv)
    num_envs = jax.tree.leaves(params_batch)[0].shape[0]
    obs_size = genv.observation_space(genv.default_params).shape[0]
    act_size = genv.action_space(genv.default_params).shape[0]

    def init_net(key):
        k1, k2, k3 = jax.random.split(key, 3)
        return {"w1": jax.random.normal(k1, (obs_size, 16)) / np.sqrt(obs_size), "b1": jnp.zeros(16),
                "pi": jax.random.normal(k2, (16, act_size)) * 0.01, "v": jax.random.normal(k3, (16,)) * 0.01,
                "log_std": jnp.full((act_size,), -0.5)}

    def net(p, obs):
        h = jnp.tanh(obs @ p["w1"] + p["b1"])
        return h @ p["pi"], p["log_std"], h @ p["v"]

    def log_prob(mean, log_std, a):
        return jnp.sum(-0.5 * ((a - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi), -1)

    tx = optax.adam(1e-2)
    rng, k_net, k_reset = jax.random.split(rng, 3)
    net_params = init_net(k_net)
    opt_state = tx.init(net_params)
    obs, env_state = jax.vmap(env.reset)(jax.random.split(k_reset, num_envs), params_batch)

    def update(carry, _):
        net_params, opt_state, obs, env_state, rng = carry

        def env_step(c, _):
            obs, env_state, rng = c
            rng, k_act, k_step = jax.random.split(rng, 3)
            mean, log_std, value = net(net_params, obs)
            action = mean + jnp.exp(log_std) * jax.random.normal(k_act, mean.shape)
            nobs, env_state, reward, term, trunc, info = jax.vmap(env.step)(
                jax.random.split(k_step, num_envs), env_state, action, params_batch)
            out = (obs, action, log_prob(mean, log_std, action), value, reward, term | trunc,
                   info["returned_episode_returns"], info["returned_episode"])
            return (nobs, env_state, rng), out

        (obs, env_state, rng), (b_obs, b_act, b_logp, b_val, b_rew, b_done, ep_ret, ep_end) = jax.lax.scan(
            env_step, (obs, env_state, rng), None, num_steps)
        last_val = net(net_params, obs)[2]

        def gae(carry, x):
            adv, next_val = carry
            rew, val, done = x
            delta = rew + 0.99 * next_val * (1 - done) - val
            adv = delta + 0.99 * 0.95 * (1 - done) * adv
            return (adv, val), adv

        _, advs = jax.lax.scan(gae, (jnp.zeros(num_envs), last_val), (b_rew, b_val, b_done), reverse=True)
        targets = advs + b_val

        def loss_fn(p):
            mean, log_std, value = net(p, b_obs)
            ratio = jnp.exp(log_prob(mean, log_std, b_act) - b_logp)
            a = (advs - advs.mean()) / (advs.std() + 1e-8)
            pg = -jnp.mean(jnp.minimum(ratio * a, jnp.clip(ratio, 0.8, 1.2) * a))
            return pg + 0.5 * jnp.mean((value - targets) ** 2)

        def epoch(c, _):
            p, o = c
            loss, grads = jax.value_and_grad(loss_fn)(p)
            upd, o = tx.update(grads, o)
            return (optax.apply_updates(p, upd), o), loss

        (net_params, opt_state), loss = jax.lax.scan(epoch, (net_params, opt_state), None, 4)
        loss = loss[0]
        mean_return = jnp.sum(ep_ret * ep_end) / jnp.maximum(jnp.sum(ep_end), 1)
        return (net_params, opt_state, obs, env_state, rng), (mean_return, loss)

    _, (returns, losses) = jax.lax.scan(update, (net_params, opt_state, obs, env_state, rng), None, num_updates)
    return returns, losses


def test_gymnax_tiny_ppo_trains_with_a_context_per_env_slot():
    """Each of 8 env slots has its own context in its EnvParams (vmapped); 40 updates of
    8 x 10 steps (3200 transitions). SimpleDirection's return grows when the policy
    learns to move along the context (observed in the context part of obs)."""
    from zsgjax.adapters.gymnax import GymnaxEnv

    env = make("simple_direction")
    genv = GymnaxEnv(env)
    contexts = env.context_space.sample_uniform(jax.random.PRNGKey(0), (8,))
    params_batch = jax.vmap(genv.params_at)(contexts)
    run = jax.jit(functools.partial(_tiny_ppo, genv, num_updates=40, num_steps=10))
    returns, losses = run(params_batch, rng=jax.random.PRNGKey(1))
    returns = np.asarray(returns)
    assert np.all(np.isfinite(np.asarray(losses)))
    assert returns[-5:].mean() > returns[:5].mean() + 5.0, returns  # measured: 37.8 -> 63.4


# ----------------------------------------------------------------------- brax
def _rollout_contexts(wrapped, num_envs, steps):
    """``(steps + 1, num_envs, dim)`` contexts of ``info`` and of the obs, and ``done (steps, num_envs)``."""
    dim = 2

    def run(rng):
        state = wrapped.reset(jax.random.split(rng, num_envs))

        def step(s, _):
            s = wrapped.step(s, jnp.zeros((num_envs, 2)))
            return s, (s.info["context"], s.obs[:, -dim:], s.done)

        _, (ctx, obs_ctx, done) = jax.lax.scan(step, state, None, steps)
        return (jnp.concatenate([state.info["context"][None], ctx]),
                jnp.concatenate([state.obs[None, :, -dim:], obs_ctx]), done)

    return jax.jit(run)(jax.random.PRNGKey(0))


def test_brax_wrapper_draws_a_new_context_at_every_auto_reset():
    from brax.envs.wrappers import training as brax_training

    from zsgjax.adapters.brax import wrap_for_training
    from zsgjax.methods import DR

    env = make("simple_direction")
    sampler = DR().context_sampler(env.context_space)
    ours = wrap_for_training(env, episode_length=3, sampler=sampler)
    ctx, obs_ctx, done = _rollout_contexts(ours, num_envs=4, steps=9)
    np.testing.assert_array_equal(ctx, obs_ctx)  # the observation carries the slot's context
    np.testing.assert_array_equal(np.asarray(done)[:, 0], [0, 0, 1] * 3)
    episodes = np.asarray(ctx)[::3]  # (4 episodes, 4 slots, dim): contexts at the starts of episodes
    for k in range(3):  # constant within an episode
        np.testing.assert_array_equal(ctx[3 * k + 1 : 3 * k + 3], np.broadcast_to(ctx[3 * k], (2, 4, 2)))
    assert np.all(np.abs(np.diff(episodes, axis=0)).max(axis=-1) > 0)  # every slot: a new context each episode
    env.context_space.validate(episodes)  # drawn inside the DR box (the whole space)
    # brax's own wrapper keeps each slot's first context forever (the default one here)
    theirs = brax_training.wrap(env, episode_length=3)
    ctx_b, _, _ = _rollout_contexts(theirs, num_envs=4, steps=9)
    np.testing.assert_array_equal(ctx_b, np.zeros_like(ctx_b))

    with pytest.raises(ValueError, match="`sampler` must be a callable"):
        wrap_for_training(env, episode_length=3, sampler=None)
    with pytest.raises(ValueError, match="randomization_fn"):
        wrap_for_training(env, episode_length=3, randomization_fn=lambda sys: sys, sampler=sampler)


def test_brax_registry_entries():
    import brax.envs

    from zsgjax.adapters.brax import brax_name, register_brax_envs
    from zsgjax.envs.simple_direction import SimpleDirection

    assert brax_name("playground:CartpoleBalance") == "zsgjax_playground_CartpoleBalance"
    assert isinstance(brax.envs.get_environment("zsgjax_simple_direction"), SimpleDirection)
    env = brax.envs.get_environment("zsgjax_cart_goal")
    assert env.context_space.names == make("cart_goal").context_space.names
    assert register_brax_envs(["simple_direction"]) == ["zsgjax_simple_direction"]
    with pytest.raises(ValueError, match="unknown zsgjax environments \\['nope'\\]"):
        register_brax_envs(["nope"])


@pytest.mark.slow
def test_brax_ppo_trains_through_the_wrapper_with_ldr_contexts():
    """brax's own PPO (tiny: 4 envs, 16-unit nets) for 640 steps on simple_direction,
    every episode of every slot at an LDR context drawn by the wrapper."""
    from zsgjax.adapters.brax import brax_trainer_compat
    from zsgjax.methods import LDR

    env = make("simple_direction")
    sampler = LDR(scale=0.5).context_sampler(env.context_space)
    seen = []
    with brax_trainer_compat():
        make_inference, params, metrics = _brax_ppo(env, sampler, seen.append)
    assert not hasattr(jax, "device_put_replicated")  # restored on exit (jax 0.10 has no such name)
    assert len(seen) == 2 and seen[-1][0] >= 640
    assert np.isfinite(float(seen[-1][1]["eval/episode_reward"]))
    policy = make_inference(params, deterministic=True)
    action, _ = policy(jnp.zeros((env.observation_size,)), jax.random.PRNGKey(0))
    assert action.shape == (env.action_size,) and bool(jnp.all(jnp.isfinite(action)))


def _brax_ppo(env, sampler, record):
    from brax.training.agents.ppo import networks as ppo_networks
    from brax.training.agents.ppo import train as ppo

    from zsgjax.adapters.brax import wrap_for_training

    return ppo.train(
        environment=env, num_timesteps=640, episode_length=env.horizon, num_envs=4, batch_size=4,
        num_minibatches=4, unroll_length=5, num_updates_per_batch=1, num_evals=2, num_eval_envs=4,
        wrap_env_fn=functools.partial(wrap_for_training, sampler=sampler), seed=0,
        network_factory=functools.partial(ppo_networks.make_ppo_networks, policy_hidden_layer_sizes=(16,),
                                          value_hidden_layer_sizes=(16,)),
        progress_fn=lambda step, m: record((step, m)))


@pytest.mark.slow
def test_brax_sac_trains_through_the_wrapper_with_dr_contexts():
    """brax's own SAC (tiny) for 400 steps on simple_direction, contexts uniform (DR) per episode."""
    from brax.training.agents.sac import networks as sac_networks
    from brax.training.agents.sac import train as sac

    from zsgjax.adapters.brax import brax_trainer_compat, wrap_for_training
    from zsgjax.methods import DR

    env = make("simple_direction")
    sampler = DR().context_sampler(env.context_space)
    seen = []
    with brax_trainer_compat():
        make_inference, params, _ = sac.train(
            environment=env, num_timesteps=400, episode_length=env.horizon, num_envs=4, batch_size=16,
            min_replay_size=40, max_replay_size=400, grad_updates_per_step=1, num_evals=2, num_eval_envs=4,
            wrap_env_fn=functools.partial(wrap_for_training, sampler=sampler), seed=0,
            network_factory=functools.partial(sac_networks.make_sac_networks, hidden_layer_sizes=(16,)),
            progress_fn=lambda step, m: seen.append((step, m)))
    assert len(seen) == 2 and seen[-1][0] >= 400
    assert np.isfinite(float(seen[-1][1]["eval/episode_reward"]))
    action, _ = make_inference(params, deterministic=True)(jnp.zeros((env.observation_size,)), jax.random.PRNGKey(0))
    assert action.shape == (env.action_size,) and bool(jnp.all(jnp.isfinite(action)))


# ------------------------------------------------------------ playground, slow
@pytest.mark.slow
def test_playground_matches_playground_and_trains_with_cse():
    """Float32 CartpoleBalance: at the default context the adapter's reset and step are
    playground's own (observation, reward, physics); ``context_gradients.context_jacobian`` equals
    the Jacobian of ``context_gradients.step_and_jacobian``; zsgjax's trainer runs CSE (stored
    Jacobians) on it for 256 steps."""
    from zsgjax.train import TrainConfig, make_train

    env = make("playground:CartpoleBalance", physical=("gravity", "mass_scale:pole_1", "actuator_gain"))
    pg, c = env.pg_env, env.default_context()

    def program(rng, action, context):
        ours = env.reset(rng, c)
        theirs = pg.reset(rng)
        step_ours = env.env_step(ours.pipeline_state, action, c)
        step_theirs = pg.step(theirs, action)
        jac = context_gradients.context_jacobian(env, ours.pipeline_state, action, context)
        _, jac2 = context_gradients.step_and_jacobian(env, ours.pipeline_state, action, context)
        return ours, theirs, step_ours, step_theirs, jac, jac2

    ours, theirs, step_ours, step_theirs, jac, jac2 = jax.jit(program)(
        jax.random.PRNGKey(5), jnp.asarray([0.4]), jnp.asarray([15.0, 0.7, 1.4]))
    np.testing.assert_array_equal(ours.obs[:5], theirs.obs)
    np.testing.assert_array_equal(step_ours[1], step_theirs.obs)
    np.testing.assert_array_equal(step_ours[2], step_theirs.reward)
    np.testing.assert_array_equal(step_ours[0].data.qvel, step_theirs.data.qvel)
    np.testing.assert_allclose(jac.d_obs, jac2.d_obs, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(jac.d_reward, jac2.d_reward, rtol=1e-6, atol=1e-9)
    assert float(jnp.abs(jac.d_obs).max()) > 1e-4

    config = TrainConfig(env="playground:CartpoleBalance", env_kwargs={"physical": ("gravity",)}, method="cse",
                         total_steps=256, num_envs=4, steps_per_iteration=64, learning_starts=32, batch_size=16,
                         buffer_size=256, hidden_sizes=(16, 16))
    trainer = make_train(config)
    state, metrics = jax.jit(trainer.train)(jax.random.PRNGKey(0))
    assert int(state.env_steps) == 256
    for key, value in metrics.items():
        assert bool(jnp.all(jnp.isfinite(jnp.asarray(value, float)))), key
