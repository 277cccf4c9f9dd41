"""Adapters: mujoco_playground envs as ContextualEnvs, zsgjax envs as gymnax envs, brax wrappers.

Fast tests (default suite): the playground adapter's names and errors (an unknown name, the
Warp backend, a missing extra, playground's own brax wrapper), and its reset/step/context
Jacobian on CartpoleBalance in float64 against central finite differences; the gymnax adapter
against the zsgjax env it wraps, its shape checks under ``jit``, ``FiveValueStep`` and one
episode through rejax's and purejaxrl's own env calls; the brax auto-reset wrapper drawing a
new context per slot and episode, and the brax registry entries sampling theirs. Slow
(``-m slow``): rejax's SAC and PPO and purejaxrl's two PPO scripts (tests/third_party) training
through the gymnax adapter; brax's own PPO and SAC through the wrapper, and brax's PPO on a
registry entry; the playground adapter against playground's own reset/step,
``context_jacobian`` against ``step_and_jacobian`` and zsgjax's CSE trainer on a playground
env; every supported playground env trained two chunks and resumed through the CLI.
Every supported playground env goes through the environment contract (``test_contracts.py``, slow)."""

import copy
import functools
import os
import re
import subprocess
import sys

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
    with pytest.raises(ValueError, match="unknown joint 'hinge'.*named joints: slider, hinge_1"):
        make("playground:CartpoleBalance", physical=("damping_scale:hinge",))
    with pytest.raises(ValueError, match="at least one feature"):
        make("playground:CartpoleBalance", physical=())
    with pytest.raises(ValueError, match="impl='jax'"):
        make("playground:CartpoleBalance", config_overrides={"impl": "warp"})
    with pytest.raises(ValueError, match=r"impl='warp'.*registry.load\(name, config_overrides=\{'impl': 'jax'\}\) or "
                                         r"set impl = 'jax' in the config you pass as registry.load\(name, config=config\)"):
        PlaygroundEnv(dm_control_suite.load("CartpoleBalance"))  # playground's default backend is Warp
    with pytest.raises(ValueError, match="does not have"):
        make("playground:CartpoleBalance", config_overrides={"episode_lenght": 10})


def test_playground_without_its_extra_is_one_clear_error(monkeypatch, capsys):
    """Without mujoco_playground, importing the adapter -- what ``make("playground:<Name>")`` does -- raises
    one error naming the extra to install, an ImportError that is also a ValueError, which the CLI
    prints as one line."""
    import importlib

    from zsgjax import cli
    from zsgjax.adapters import MissingExtra
    from zsgjax.envs import registry

    monkeypatch.setitem(sys.modules, "mujoco_playground", None)  # `import mujoco_playground` now fails
    monkeypatch.delitem(sys.modules, "zsgjax.adapters.playground")
    with pytest.raises(MissingExtra, match=r"mujoco_playground .*pip install 'zsgjax\[adapters\]'") as caught:
        importlib.import_module("zsgjax.adapters.playground")
    assert isinstance(caught.value, ImportError) and isinstance(caught.value, ValueError)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    monkeypatch.setitem(registry._REGISTRY, "playground:CartpoleBalance", "zsgjax.adapters.playground:CartpoleBalance")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--env", "playground:CartpoleBalance", "--no-compile-cache"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and "pip install 'zsgjax[adapters]'" in err, err


def _assert_close(got, want, what):
    err = np.asarray(jnp.abs(got - want) / (1.0 + jnp.abs(want)))
    assert np.all(err <= TOL), f"{what}: max error {err.max():.3g} relative to 1 + |FD| (tolerance {TOL})"


def test_playground_reset_step_and_exact_context_jacobian():
    """CartpoleBalance, every feature, float64: one jitted program resets at a context
    and runs :func:`zsgjax.context_gradients.step_and_jacobian` (what CSE training calls) at ``c``
    and at ``c +- h e_i``: the exact Jacobian at ``c`` against central differences of
    the steps. (``context_gradients.context_jacobian``, the same ``jacfwd``, is checked in the slow test.)"""
    from zsgjax.adapters.playground import PlaygroundContextState

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
        assert isinstance(state, PlaygroundContextState)
        with pytest.raises(AttributeError, match="wrap_for_brax_training cannot drive.*wrap_for_training"):
            state.data  # noqa: B018  what playground's own brax wrapper reads
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
    np.testing.assert_array_equal(GymnaxEnv(env, sampler=env.context_space.sample_uniform).default_params.context,
                                  env.default_context())
    assert isinstance(genv.action_space(params), spaces.Box) and genv.action_space(params).high == 1.0
    assert genv.action_space(params).low == -1.0
    assert genv.action_space(params).shape == (2,) and genv.observation_space(params).shape == (4,)
    np.testing.assert_array_equal(genv.observation_space(params).high, [np.inf, np.inf, 1.0, 1.0])
    np.testing.assert_array_equal(genv.observation_space(params).low, [-np.inf, -np.inf, -1.0, -1.0])

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
        assert float(info["discount"]) == 1.0  # 1 - terminated: a truncation bootstraps
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
    with pytest.raises(ValueError, match="`max_steps_in_episode`"):
        genv.params_at(context, max_steps_in_episode=0)
    with pytest.raises(ValueError, match="`env` must be a zsgjax ContextualEnv"):
        GymnaxEnv("simple_direction")


def test_gymnax_rejects_wrong_shapes_at_its_boundary_under_jit():
    """Shapes are checked where they enter, at trace time, with the argument and the expected shape
    named: params.context (too long, too short, scalar; also under vmap), a sampler's context, actions.
    Running at the default context without a sampler warns."""
    from zsgjax.adapters import DefaultContextWarning
    from zsgjax.adapters.gymnax import ContextParams, GymnaxEnv

    genv = GymnaxEnv(make("simple_direction"))
    key = jax.random.PRNGKey(0)
    reset, step = jax.jit(genv.reset), jax.jit(genv.step)
    for bad in (jnp.zeros(3), jnp.zeros(1), jnp.zeros(())):
        params = ContextParams(max_steps_in_episode=10, context=bad)
        with pytest.raises(ValueError, match=rf"`params.context` must have shape \(2,\) \(c_x, c_y\).*got {re.escape(str(bad.shape))}"):
            reset(key, params)
    with pytest.raises(ValueError, match=r"`context` must have shape \(2,\).*got \(3,\)"):
        jax.vmap(genv.params_at)(jnp.zeros((4, 3)))
    params = genv.params_at(jnp.asarray([0.5, 0.5]))
    _, state = reset(key, params)
    for bad in (jnp.zeros(3), jnp.zeros(()), jnp.zeros((2, 2))):
        with pytest.raises(ValueError, match=rf"GymnaxEnv .*`action` must be an array of shape \(2,\), got shape "
                                             rf"{re.escape(str(bad.shape))}"):
            step(key, state, bad, params)
    with pytest.raises(ValueError, match=r"params.context` must have shape \(2,\).*got \(3,\)"):
        step(key, state, jnp.zeros(2), ContextParams(max_steps_in_episode=10, context=jnp.zeros(3)))
    with pytest.raises(ValueError, match=r"the context drawn by `sampler` must have shape \(2,\).*got \(\)"):
        GymnaxEnv(make("simple_direction"), sampler=lambda rng: 0.0).reset(key, params)
    # discrete: one integer per slot, () or (1,)
    cart = GymnaxEnv(make("cart_goal"))
    cparams = cart.params_at(cart.env.default_context())
    _, cstate = cart.reset(key, cparams)
    assert np.isfinite(float(cart.step(key, cstate, jnp.asarray([1]), cparams)[2]))
    with pytest.raises(ValueError, match=r"`action` must be an integer scalar in \[0, 2\), got shape \(2,\)"):
        cart.step(key, cstate, jnp.asarray([1, 0]), cparams)
    with pytest.warns(DefaultContextWarning, match=r"default context \(0.0, 0.0\) \(c_x, c_y\).*sampler"):
        genv.default_params  # noqa: B018


def test_five_value_step_gives_gymnax_0x_signature_to_any_gymnax_1x_env():
    """done = terminated | truncated elementwise; reset, spaces and params are the wrapped env's;
    it survives ``copy.deepcopy`` (rejax deep-copies its config) and refuses an env that is not gymnax 1.x."""
    from zsgjax.adapters.gymnax import FiveValueStep

    class SixValues:  # the gymnax 1.x signature
        default_params = "params"

        def action_space(self, params=None):
            return ("action_space", params)

        def reset(self, key, params=None):
            return "obs0", ("state0", key, params)

        def step(self, key, state, action, params=None):
            return "obs", "state", 1.5, np.array([True, False, False]), np.array([False, True, False]), {"k": key}

    env = copy.deepcopy(FiveValueStep(SixValues()))
    assert env.default_params == "params" and env.action_space("p") == ("action_space", "p")
    assert env.reset(7, "p") == ("obs0", ("state0", 7, "p"))
    obs, state, reward, done, info = env.step(3, "s", 0.0, "p")
    assert (obs, state, reward, info) == ("obs", "state", 1.5, {"k": 3})
    np.testing.assert_array_equal(done, [True, True, False])
    with pytest.raises(ValueError, match="returned 5 values, not gymnax 1.x's six"):
        FiveValueStep(env).step(3, "s", 0.0, "p")
    with pytest.raises(ValueError, match="`env` must be a gymnax environment"):
        FiveValueStep("Pendulum-v1")


def test_one_episode_through_rejax_and_purejaxrl_own_env_calls():
    """The exact calls the clients make on ``FiveValueStep(GymnaxEnv(...))``: rejax's vmapped
    reset/step (``SAC.create(...).vmap_reset/vmap_step``) and purejaxrl's wrapper stack
    (``VecEnv(ClipAction(LogWrapper(env)))`` of tests/third_party/purejaxrl), one episode of 4
    slots with the same keys: both see the same rewards and contexts, ``done`` fires only at the
    horizon (a truncation), and purejaxrl's logged return is the sum of the rewards."""
    from rejax import SAC
    from third_party.purejaxrl.wrappers import ClipAction, LogWrapper, VecEnv

    from zsgjax.adapters.gymnax import FiveValueStep, GymnaxEnv
    from zsgjax.methods import DR

    env = make("simple_direction")
    five = FiveValueStep(GymnaxEnv(env, sampler=DR().context_sampler(env.context_space)))
    algo = SAC.create(env=five, num_envs=4)
    purejaxrl_env = VecEnv(ClipAction(LogWrapper(five)))
    actions = jnp.tile(jnp.asarray([0.5, -0.25]), (env.horizon, 4, 1))

    def episode(rng):
        k_reset, k_steps = jax.random.split(rng)
        _, s_rejax = algo.vmap_reset(jax.random.split(k_reset, 4), algo.env_params)
        _, s_pjr = purejaxrl_env.reset(jax.random.split(k_reset, 4), None)

        def body(carry, xs):
            s_rejax, s_pjr = carry
            action, key = xs
            keys = jax.random.split(key, 4)
            _, s_rejax, r_rejax, d_rejax, info_rejax = algo.vmap_step(keys, s_rejax, action, algo.env_params)
            _, s_pjr, r_pjr, d_pjr, info_pjr = purejaxrl_env.step(keys, s_pjr, action, None)
            return (s_rejax, s_pjr), (r_rejax, d_rejax, info_rejax["truncated"], info_rejax["context"], r_pjr, d_pjr,
                                      info_pjr["returned_episode_returns"])

        _, out = jax.lax.scan(body, (s_rejax, s_pjr), (actions, jax.random.split(k_steps, env.horizon)))
        return out

    r_rejax, d_rejax, truncated, contexts, r_pjr, d_pjr, returned = map(np.asarray, jax.jit(episode)(jax.random.PRNGKey(0)))
    assert d_rejax.dtype == bool and d_rejax.shape == (env.horizon, 4)
    np.testing.assert_array_equal(d_rejax, np.broadcast_to(np.arange(env.horizon)[:, None] == env.horizon - 1, (env.horizon, 4)))
    np.testing.assert_array_equal(truncated, d_rejax)
    np.testing.assert_array_equal(d_pjr, d_rejax)
    np.testing.assert_array_equal(r_pjr, r_rejax)
    assert np.abs(np.diff(contexts[0], axis=0)).max() > 0  # each slot its own sampled context
    np.testing.assert_allclose(returned[-1], r_rejax.sum(axis=0), rtol=1e-5)


def _sampled_five_value_env(name):
    from zsgjax.adapters.gymnax import FiveValueStep, GymnaxEnv
    from zsgjax.methods import DR

    env = make(name)
    return FiveValueStep(GymnaxEnv(env, sampler=DR().context_sampler(env.context_space)))


@pytest.mark.slow
def test_rejax_sac_and_ppo_train_through_the_adapter():
    """rejax 0.1's SAC and PPO, unchanged, on ``simple_direction`` with a uniform context per episode:
    their own ``train`` and evaluation; the evaluation return grows (measured: SAC 27.5 -> 74.9 over
    1600 steps, PPO 30.0 -> 69.5 over 4800)."""
    from rejax import PPO, SAC

    env = _sampled_five_value_env("simple_direction")
    sac = SAC.create(env=env, num_envs=4, total_timesteps=1600, eval_freq=400, fill_buffer=64, batch_size=64,
                     buffer_size=2000, learning_rate=3e-3, agent_kwargs={"hidden_layer_sizes": (32, 32)})
    _, (_, returns) = jax.jit(sac.train)(jax.random.PRNGKey(0))
    returns = np.asarray(returns).mean(axis=-1)
    assert returns[-1] > returns[0] + 20, returns
    ppo = PPO.create(env=env, num_envs=8, num_steps=10, num_epochs=4, num_minibatches=4, total_timesteps=4800,
                     eval_freq=1600, learning_rate=3e-3, agent_kwargs={"hidden_layer_sizes": (32, 32)})
    _, (_, returns) = jax.jit(ppo.train)(jax.random.PRNGKey(0))
    returns = np.asarray(returns).mean(axis=-1)
    assert returns[-1] > returns[0] + 20, returns


PUREJAXRL_PPO = {"LR": 3e-3, "NUM_ENVS": 8, "NUM_STEPS": 10, "UPDATE_EPOCHS": 4, "NUM_MINIBATCHES": 4, "GAMMA": 0.99,
                 "GAE_LAMBDA": 0.95, "CLIP_EPS": 0.2, "ENT_COEF": 0.0, "VF_COEF": 0.5, "MAX_GRAD_NORM": 0.5,
                 "ACTIVATION": "tanh", "ANNEAL_LR": False, "DEBUG": False}


def _episode_returns_per_update(metrics):
    """Mean return of the episodes that ended in each update: ``(num_updates,)``."""
    ended = np.asarray(metrics["returned_episode"])
    returns = np.asarray(metrics["returned_episode_returns"])
    return (returns * ended).sum(axis=(1, 2)) / np.maximum(ended.sum(axis=(1, 2)), 1)


@pytest.mark.slow
def test_purejaxrl_ppo_scripts_train_through_the_adapter():
    """purejaxrl's ``ppo_continuous_action.py`` and ``ppo.py`` (tests/third_party/purejaxrl: only the env
    line changed) run their ``make_train`` on ``FiveValueStep(GymnaxEnv(...))`` with a uniform context per
    episode. Continuous PPO on ``simple_direction`` learns (measured: 33.4 -> 66.5 over 60 updates); the
    discrete script runs on ``cart_goal`` (finite returns, episodes end)."""
    from third_party.purejaxrl import ppo, ppo_continuous_action

    config = {**PUREJAXRL_PPO, "TOTAL_TIMESTEPS": 8 * 10 * 60, "NORMALIZE_ENV": False,
              "ENV": _sampled_five_value_env("simple_direction"), "ENV_PARAMS": None}
    out = jax.jit(ppo_continuous_action.make_train(config))(jax.random.PRNGKey(0))
    returns = _episode_returns_per_update(out["metrics"])
    assert returns[-5:].mean() > returns[:5].mean() + 15, returns

    config = {**PUREJAXRL_PPO, "TOTAL_TIMESTEPS": 8 * 16 * 10, "NUM_STEPS": 16, "ENT_COEF": 0.01,
              "ENV": _sampled_five_value_env("cart_goal"), "ENV_PARAMS": None}
    out = jax.jit(ppo.make_train(config))(jax.random.PRNGKey(0))
    assert np.asarray(out["metrics"]["returned_episode"]).any()
    assert np.all(np.isfinite(_episode_returns_per_update(out["metrics"])))


# ----------------------------------------------------------------------- brax
def _rollout_contexts(wrapped, num_envs, steps):
    """``(steps + 1, num_envs, dim)`` contexts of ``info`` and of the obs, ``done (steps, num_envs)`` and
    ``(steps + 1, num_envs, 2)`` the state part of the obs minus the position in ``pipeline_state``
    (simple_direction observes its position: zero unless an auto-reset mixed up states)."""
    dim = 2

    def run(rng):
        state = wrapped.reset(jax.random.split(rng, num_envs))

        def step(s, _):
            s = wrapped.step(s, jnp.zeros((num_envs, 2)))
            return s, (s.info["context"], s.obs[:, -dim:], s.done, s.obs[:, :2] - s.pipeline_state)

        _, (ctx, obs_ctx, done, mismatch) = jax.lax.scan(step, state, None, steps)
        return (jnp.concatenate([state.info["context"][None], ctx]),
                jnp.concatenate([state.obs[None, :, -dim:], obs_ctx]), done,
                jnp.concatenate([(state.obs[:, :2] - state.pipeline_state)[None], mismatch]))

    return jax.jit(run)(jax.random.PRNGKey(0))


def test_brax_wrapper_draws_a_new_context_at_every_auto_reset():
    from brax.envs.wrappers import training as brax_training

    from zsgjax.adapters.brax import wrap_for_training
    from zsgjax.methods import DR

    env = make("simple_direction")
    sampler = DR().context_sampler(env.context_space)
    ours = wrap_for_training(env, episode_length=3, sampler=sampler)
    ctx, obs_ctx, done, mismatch = _rollout_contexts(ours, num_envs=4, steps=9)
    np.testing.assert_array_equal(ctx, obs_ctx)  # the observation carries the slot's context
    np.testing.assert_array_equal(mismatch, np.zeros_like(mismatch))  # a fresh reset's obs comes with its state
    np.testing.assert_array_equal(np.asarray(done)[:, 0], [0, 0, 1] * 3)
    episodes = np.asarray(ctx)[::3]  # (4 episodes, 4 slots, dim): contexts at the starts of episodes
    for k in range(3):  # constant within an episode
        np.testing.assert_array_equal(ctx[3 * k + 1 : 3 * k + 3], np.broadcast_to(ctx[3 * k], (2, 4, 2)))
    assert np.all(np.abs(np.diff(episodes, axis=0)).max(axis=-1) > 0)  # every slot: a new context each episode
    env.context_space.validate(episodes)  # drawn inside the DR box (the whole space)
    # brax's own wrapper keeps each slot's first context forever (the default one here)
    theirs = brax_training.wrap(env, episode_length=3)
    ctx_b, _, _, _ = _rollout_contexts(theirs, num_envs=4, steps=9)
    np.testing.assert_array_equal(ctx_b, np.zeros_like(ctx_b))

    with pytest.raises(ValueError, match="`sampler` must be a callable"):
        wrap_for_training(env, episode_length=3, sampler=None)
    with pytest.raises(ValueError, match="randomization_fn"):
        wrap_for_training(env, episode_length=3, randomization_fn=lambda sys: sys, sampler=sampler)


def test_brax_registry_entries_sample_their_contexts():
    """``get_environment("zsgjax_<name>")`` resets at a context drawn uniformly from the space (a new one
    per key), so brax's trainers, which reset without a context, do not sit at the default context;
    ``sampler=None`` gives the bare env and warns; ``wrap_for_training`` takes an entry as it is."""
    import brax.envs

    from zsgjax.adapters import DefaultContextWarning
    from zsgjax.adapters.brax import SampledContextEnv, brax_name, register_brax_envs, wrap_for_training
    from zsgjax.envs.simple_direction import SimpleDirection

    assert brax_name("playground:CartpoleBalance") == "zsgjax_playground_CartpoleBalance"
    entry = brax.envs.get_environment("zsgjax_simple_direction")
    assert isinstance(entry, SampledContextEnv) and isinstance(entry.env, SimpleDirection)
    assert entry.observation_size == 4 and entry.action_size == 2
    contexts = jax.vmap(lambda k: entry.reset(k).info["context"])(jax.random.split(jax.random.PRNGKey(0), 64))
    make("simple_direction").context_space.validate(contexts)
    assert np.all(np.asarray(contexts).std(axis=0) > 0.3)  # uniform on [-1, 1]: std 0.58
    # the start position and the context come from independent keys (both are uniform on [-1, 1]^2)
    start = jax.vmap(entry.reset)(jax.random.split(jax.random.PRNGKey(0), 8))
    assert np.all(np.asarray(start.obs[:, :2]) != np.asarray(start.info["context"]))
    wrapped = wrap_for_training(entry, episode_length=3)
    assert wrapped.reset(jax.random.split(jax.random.PRNGKey(1), 2)).info["context"].shape == (2, 2)
    fixed = wrap_for_training(entry, episode_length=3, sampler=lambda rng: jnp.asarray([0.25, -0.5]))
    np.testing.assert_array_equal(fixed.reset(jax.random.split(jax.random.PRNGKey(1), 2)).info["context"],
                                  [[0.25, -0.5]] * 2)  # an explicit sampler wins over the entry's
    with pytest.warns(DefaultContextWarning, match="zsgjax_cart_goal.*default context"):
        bare = brax.envs.get_environment("zsgjax_cart_goal", sampler=None)
    assert bare.context_space.names == make("cart_goal").context_space.names
    with pytest.raises(ValueError, match="`sampler` must be 'dr', None or a callable"):
        brax.envs.get_environment("zsgjax_cart_goal", sampler="ldr")
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


@pytest.mark.slow
def test_brax_ppo_on_a_registry_entry_with_brax_own_wrapper_does_not_score_zero():
    """brax's usual call, ``ppo.train(environment=get_environment("zsgjax_simple_direction"))`` with its own
    ``wrap_env_fn``: the entry samples contexts, so the evaluation return is not the default context's 0."""
    import brax.envs
    from brax.training.agents.ppo import networks as ppo_networks
    from brax.training.agents.ppo import train as ppo

    from zsgjax.adapters.brax import brax_trainer_compat

    env = brax.envs.get_environment("zsgjax_simple_direction")
    seen = []
    with brax_trainer_compat():
        ppo.train(environment=env, num_timesteps=640, episode_length=10, num_envs=4, batch_size=4, num_minibatches=4,
                  unroll_length=5, num_evals=2, num_eval_envs=4, seed=0,
                  network_factory=functools.partial(ppo_networks.make_ppo_networks, policy_hidden_layer_sizes=(16,),
                                                    value_hidden_layer_sizes=(16,)),
                  progress_fn=lambda step, m: seen.append(float(m["eval/episode_reward"])))
    assert len(seen) == 2 and all(abs(r) > 1e-3 for r in seen), seen


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


PLAYGROUND_NAMES = [n for n in __import__("zsgjax.envs", fromlist=["registered_names"]).registered_names()
                    if n.startswith("playground:")]


@pytest.mark.slow
@pytest.mark.parametrize("name", PLAYGROUND_NAMES)
def test_every_playground_env_trains_and_resumes_through_the_cli(name, tmp_path):
    """``python -m zsgjax train --env playground:<Name>`` at the tiniest size (1 seed, 2 envs, 4 iterations
    in 2 chunks, episodes of 8 steps) writes both checkpoints (most DM Control models have a zero-size
    ``data.act``); with the last one removed, ``--resume`` continues from iteration 2 to the same results."""
    import json
    import shutil

    out = tmp_path / "run"
    command = [sys.executable, "-m", "zsgjax", "train", "--env", name, "--method", "vanilla", "--seeds", "1",
               "--steps", "32", "--num-envs", "2", "--steps-per-iteration", "8", "--learning-starts", "8",
               "--batch-size", "8", "--buffer-size", "32", "--hidden-sizes", "8", "--chunks", "2",
               "--eval-episodes", "1", "--sweep-points", "2", "--env-option", "horizon=8", "--out", str(out)]
    env = {**os.environ, "ZSGJAX_COMPILE_CACHE": str(tmp_path / "jit")}
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    checkpoints = out / "vanilla" / "checkpoints"
    assert sorted(os.listdir(checkpoints)) == ["2", "4"]
    results = json.loads((out / "generalization.json").read_text())
    shutil.rmtree(checkpoints / "4")
    second = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True, timeout=1200)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    assert "[vanilla] resumed from iteration 2/4" in second.stdout
    assert json.loads((out / "generalization.json").read_text())["methods"] == results["methods"]


def test_playground_envs_simulate_widened_physical_ranges(monkeypatch):
    """A playground env runs the same construction-time check of widened physical ranges as
    zsgjax's MJX envs (``check_physical_ranges`` over its context dimensions from 0)."""
    import zsgjax.adapters.playground as pg

    calls = []
    monkeypatch.setattr(pg, "check_physical_ranges", lambda env, first_dim: calls.append((env, first_dim)))
    env = make("playground:CartpoleBalance", physical=("gravity",), physical_ranges={"gravity": (5.0, 12.0)})
    assert calls == [(env, 0)]
