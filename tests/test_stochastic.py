"""Stochastic environments (zsgjax.envs.stochastic) and CSE through their noise.

References are independent of the library: NumPy float64 ports of each environment's
equations, central finite differences of those ports, and the closed-form next-state
law of the linear-Gaussian environment. (The contracts of tests/test_contracts.py run
on every registered environment, these included.)
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax import context_gradients
from zsgjax.envs import make
from zsgjax.envs.stochastic import NoisyState, StochasticEnv, differentiated_env
from zsgjax.methods import enhancement
from zsgjax.methods.cse import CSE
from zsgjax.train import TrainConfig
from zsgjax.types import Transition

NOISY = ("pendulum_goal_noisy", "simple_direction_noisy", "linear_gaussian")


# ------------------------------------------------------------ NumPy float64 ports
def np_pendulum_noisy(s, a, c, xi, noise_c, noise_scale=0.1):
    """pendulum_goal (paper integrator) with torque a + noise_scale m g l xi, m g l at ``noise_c``."""
    g, m, l, tau = c
    sigma = noise_scale * noise_c[0] * noise_c[1] * noise_c[2]
    u = np.clip(a[0] + sigma * xi[0], -2.0, 2.0)
    theta, thdot = s
    thacc = 3.0 * g / (2.0 * l) * np.sin(theta) + 3.0 * u / (m * l**2)
    theta2, thdot2 = theta + 0.05 * thdot, thdot + 0.05 * thacc
    x = -tau / (m * g * l)
    goal = np.arcsin(x) if abs(x) < 1 else np.sign(x) * np.pi / 2
    r = -(np.pi**2 * np.sin((theta2 - goal) / 2) ** 2 + 0.1 * thdot2**2 + 0.001 * u**2)
    return np.array([np.cos(theta2), np.sin(theta2), thdot2]), r


def np_direction_noisy(s, a, c, xi, noise_c, noise_scale=0.3):
    """s' = s + noise_scale exp(noise_c) xi + clip(a) + c, r = s'.c"""
    s2 = s + noise_scale * np.exp(noise_c) * xi + np.clip(a, -1, 1) + c
    return s2, float(s2 @ c)


def np_linear_law(s, a, c, noise_scale=0.2):
    """Mean and std of s' | s, a, c for linear_gaussian."""
    return 0.9 * s[0] + 0.5 * np.clip(a[0], -1, 1) + 0.5 * np.sin(2 * c[0]), noise_scale * np.exp(c[0])


def np_linear(s, a, c, xi, noise_c):
    mean, _ = np_linear_law(s, a, c)
    s2 = mean + np_linear_law(s, a, noise_c)[1] * xi[0]
    return np.array([s2]), -(s2**2 + 0.1 * np.clip(a[0], -1, 1) ** 2)


PORTS = {"pendulum_goal_noisy": np_pendulum_noisy, "simple_direction_noisy": np_direction_noisy,
         "linear_gaussian": np_linear}


def _point(env, seed):
    """A float64 (env_state, action, context) inside the space, after the reset of ``seed``."""
    k_c, k_s, k_a = jax.random.split(jax.random.PRNGKey(seed), 3)
    context = env.context_space.sample_uniform(k_c).astype(jnp.float64)
    env_state = env.init_env_state(k_s, context)
    action = jax.random.uniform(k_a, (env.action_size,), jnp.float64, -0.8, 0.8)
    return env_state, action, context


# ------------------------------------------------------------------- the ports
@pytest.mark.parametrize("name", NOISY)
def test_step_and_both_derivatives_match_the_numpy_port(name):
    """Float64: the step equals the port at the noise the key draws; the reparameterised Jacobian
    is the port's central difference with the noise scale moved with the context, the ``ignore``
    one with the noise scale held at ``c``."""
    port = PORTS[name]
    with jax.enable_x64(True):
        env = make(name)
        for seed in range(3):
            env_state, action, context = _point(env, seed)
            xi = np.asarray(env.next_noise(env_state, jnp.float64))
            (next_state, obs, reward, _), grads = context_gradients.step_and_jacobian(env, env_state, action, context)
            ignored = context_gradients.context_jacobian(env.with_noise_scale_gradient("ignore"), env_state, action, context)
            s, a, c = (np.asarray(x) for x in (env_state.physics, action, context))
            want_obs, want_r = port(s, a, c, xi, c)
            np.testing.assert_allclose(obs, want_obs, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(reward, want_r, rtol=1e-12, atol=1e-12)
            assert not np.array_equal(next_state.key, env_state.key)
            h = 1e-6
            for noise_moves, got in ((True, grads), (False, ignored)):
                cols_obs, cols_r = [], []
                for i in range(env.context_dim):
                    e = np.eye(env.context_dim)[i] * h
                    plus = port(s, a, c + e, xi, c + e if noise_moves else c)
                    minus = port(s, a, c - e, xi, c - e if noise_moves else c)
                    cols_obs.append((plus[0] - minus[0]) / (2 * h))
                    cols_r.append((plus[1] - minus[1]) / (2 * h))
                np.testing.assert_allclose(got.d_obs, np.stack(cols_obs, axis=1), rtol=1e-6, atol=1e-6)
                np.testing.assert_allclose(got.d_reward, np.array(cols_r), rtol=1e-6, atol=1e-6)
            assert np.abs(np.asarray(grads.d_obs) - np.asarray(ignored.d_obs)).max() > 1e-3  # sigma(c) matters


def test_same_key_reproduces_the_step_and_its_jacobian():
    env = make("pendulum_goal_noisy")
    env_state = env.init_env_state(jax.random.PRNGKey(0), env.default_context())
    action, context = jnp.array([0.3]), env.default_context()
    step = jax.jit(lambda s: context_gradients.step_and_jacobian(env, s, action, context))
    first, again = step(env_state), step(env_state)
    for x, y in zip(jax.tree.leaves(first), jax.tree.leaves(again)):
        np.testing.assert_array_equal(x, y)
    other = step(env_state._replace(key=jax.random.PRNGKey(1)))
    assert not np.array_equal(first[0][1], other[0][1]) and not np.array_equal(first[1].d_obs, other[1].d_obs)
    # a typed key gives the same raw key in the state as its key data
    typed = env.init_env_state(jax.random.key(0), context)
    assert typed.key.dtype == jnp.uint32 and typed.key.shape == env_state.key.shape


# ------------------------------------------- the enhanced next-state law at c + dc
DCS = (0.2, 0.1, 0.05, 0.025)


def _enhanced_law(method, env, env_state, action, context, delta_c):
    """Mean and std of the enhanced next state (1-D): it is affine in xi, so two keys determine it."""
    values, xis = [], []
    for k in (11, 12):
        state = env_state._replace(key=jax.random.PRNGKey(k))
        (_, obs, reward, _), extras = method.collect(env, state, action, context, jax.random.PRNGKey(5))
        mean, std = np_linear_law(np.asarray(state.physics), np.asarray(action), np.asarray(context))
        xis.append((float(obs[0]) - mean) / std)  # the noise the step drew, from the closed form
        transition = Transition(obs=jnp.concatenate([state.physics, context]), action=action, reward=reward,
                                next_obs=jnp.concatenate([obs, context]), done=jnp.zeros(()), context=context)
        if method.mode == "exact":
            enhanced, valid = enhancement.enhance_exact(env, extras, transition, delta_c)
        elif method.storage == "jvp":
            delta_c = extras.delta_c
            enhanced, valid = enhancement.enhance_with_directional(transition, extras)
        else:
            enhanced, valid = enhancement.enhance_with_jacobian(transition, extras, delta_c)
        assert bool(valid)
        np.testing.assert_allclose(enhanced.context, context + delta_c, rtol=0, atol=1e-15)
        values.append(float(enhanced.next_obs[0]))
    slope = (values[0] - values[1]) / (xis[0] - xis[1])
    return values[0] - slope * xis[0], abs(slope), np.asarray(delta_c), xis


def _law_errors(noise_scale_gradient, mode="first_order", storage="jacobian"):
    """Errors of the enhanced law's mean and std against the true law at c + dc, per dc: ``(len(DCS), 2)``."""
    with jax.enable_x64(True):
        env = make("linear_gaussian")
        context = jnp.array([0.3])
        env_state = env.init_env_state(jax.random.PRNGKey(0), context)
        action = jnp.array([0.4])
        errors = []
        for dc in DCS:
            method = CSE(epsilon=dc, mode=mode, storage=storage, noise_scale_gradient=noise_scale_gradient)
            mean, std, delta_c, xis = _enhanced_law(method, env, env_state, action, context, jnp.array([dc]))
            true_mean, true_std = np_linear_law(np.asarray(env_state.physics), np.asarray(action),
                                                np.asarray(context + delta_c))
            assert abs(abs(delta_c[0]) - dc) < 1e-15 and abs(xis[0] - xis[1]) > 0.1
            errors.append((mean - true_mean, std - true_std))
    return np.asarray(errors)


def _slope(errors):
    """Slope of log error against log dc."""
    return np.polyfit(np.log(DCS), np.log(np.abs(errors)), 1)[0]


@pytest.mark.parametrize("storage", ["jacobian", "jvp"])
def test_reparameterised_cse_matches_the_next_state_law_to_second_order(storage):
    """The enhanced next state is affine in xi, so its law is Gaussian with the mean and std that two
    noise draws give. With the noise fixed (the transport map's derivative) the 1-D Wasserstein-2
    distance to the true law at c + dc is O(dc^2); holding sigma(c) constant leaves the spread's
    first-order error |sigma(c + dc) - sigma(c)|."""
    reparameterised = _law_errors("reparameterised", storage=storage)
    ignored = _law_errors("ignore", storage=storage)
    w2 = {k: np.hypot(e[:, 0], e[:, 1]) for k, e in (("rep", reparameterised), ("ign", ignored))}
    assert 1.9 < _slope(w2["rep"]) < 2.1, w2["rep"]
    assert 1.9 < _slope(reparameterised[:, 1]) < 2.1, reparameterised  # the spread too, not only the mean
    assert 0.95 < _slope(ignored[:, 1]) < 1.05, ignored
    assert np.all(w2["rep"] < w2["ign"])
    # by hand (sigma(c) = 0.2 exp(c), c = 0.3, the step +dc): the reparameterised spread is the
    # first-order Taylor polynomial, the ignored one stays sigma(c); both share the mean
    sigma, dcs = 0.2 * np.exp(0.3), np.array(DCS)
    np.testing.assert_allclose(reparameterised[:, 1], sigma * (1 + dcs - np.exp(dcs)), rtol=1e-9)
    np.testing.assert_allclose(ignored[:, 1], sigma * (1 - np.exp(dcs)), rtol=1e-9)
    np.testing.assert_allclose(ignored[:, 0], reparameterised[:, 0], rtol=1e-9)


def test_exact_cse_replays_the_noise():
    """Exact enhancement recomputes the step from the stored pre-step state, so with the same xi:
    the enhanced law is the true one at c + dc up to rounding."""
    errors = _law_errors("reparameterised", mode="exact")
    assert np.abs(errors).max() < 1e-12, errors


# ---------------------------------------------------------------------- errors
def test_noise_scale_gradient_errors():
    with pytest.raises(ValueError, match=r"noise_scale_gradient='ignore' changes context derivatives and mode='exact'"):
        CSE(mode="exact", noise_scale_gradient="ignore")
    with pytest.raises(ValueError, match=r"TrainConfig.cse_noise_scale_gradient must be one of"):
        TrainConfig(cse_noise_scale_gradient="fixed")
    with pytest.raises(ValueError, match=r"noise_scale_gradient='ignore' needs a stochastic environment .* PendulumGoal"):
        differentiated_env(make("pendulum_goal"), "ignore")
    env = make("linear_gaussian")
    assert differentiated_env(env, "reparameterised") is env
    view = differentiated_env(env, "ignore")
    assert isinstance(view, StochasticEnv) and view.noise_scale_gradient == "ignore" and env.noise_scale_gradient == "reparameterised"
    with pytest.raises(ValueError, match=r"`noise_scale_gradient` must be one of 'reparameterised', 'ignore'"):
        env.with_noise_scale_gradient("none")
    for name in NOISY:
        with pytest.raises(ValueError, match=r"`noise_scale` must be a finite number >= 0"):
            make(name, noise_scale=-0.1)
    # the record of a config at the default leaves the setting out (earlier runs still resume)
    assert "cse_noise_scale_gradient" not in TrainConfig().record() and TrainConfig().record()["cse_epsilon"] == 0.1
    assert TrainConfig(cse_noise_scale_gradient="ignore").record()["cse_noise_scale_gradient"] == "ignore"


def test_noisy_variants_train_with_their_tasks_presets():
    from zsgjax.presets import ENV_PRESETS
    assert ENV_PRESETS["pendulum_goal_noisy"] == ENV_PRESETS["pendulum_goal"]
    assert ENV_PRESETS["simple_direction_noisy"] == ENV_PRESETS["simple_direction"]
    assert TrainConfig(env="pendulum_goal_noisy").resolve().action_scale == 2.0


def test_zero_noise_scale_gives_the_deterministic_steps():
    for name, base in (("pendulum_goal_noisy", "pendulum_goal"), ("simple_direction_noisy", "simple_direction")):
        env, det = make(name, noise_scale=0.0), make(base)
        env_state = env.init_env_state(jax.random.PRNGKey(3), env.default_context())
        assert isinstance(env_state, NoisyState)
        action = jnp.full((env.action_size,), 0.5)
        got = env.env_step(env_state, action, env.default_context())
        want = det.env_step(env_state.physics, action, env.default_context())
        for x, y in zip(got[1:], want[1:]):
            np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------ the experiment
@pytest.mark.slow
def test_experiment_script_end_to_end(tmp_path, monkeypatch):
    """scripts/experiments/stochastic_cse.py at a tiny size: four methods trained and evaluated, every
    pre-registered row judged (paired difference recomputed by hand), the law table, the files."""
    import dataclasses
    import json
    import os

    from _tiny import TINY_TRAIN
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                             "scripts", "experiments"))
    import common
    import stochastic_cse

    config = {k: v for k, v in TINY_TRAIN.items() if k not in ("env", "total_steps")}
    tiny = common.Scale(steps=TINY_TRAIN["total_steps"], seeds=2, config=config, eval_episodes=2, sweep_points=3)
    name = "simple_direction_noisy"
    monkeypatch.setitem(stochastic_cse.EXPERIMENTS, name, dataclasses.replace(stochastic_cse.EXPERIMENTS[name], cpu=tiny))
    out = stochastic_cse.run(name, out=str(tmp_path / "out"), work=str(tmp_path / "work"), log=lambda line: None)
    assert sorted(os.listdir(tmp_path / "out")) == ["stochastic_cse.json", "stochastic_cse.md", "stochastic_cse.png"]
    assert [v["id"] for v in out["verdicts"]] == [r[0] for r in stochastic_cse.ROWS[name]]
    results = out["results"]
    for v in out["verdicts"]:
        rows = [results[v["a"]].grid.labels.index(label) for label in v["rows"]]
        d = (np.asarray(results[v["a"]].returns, np.float64)[:, rows].mean(axis=(1, 2))
             - np.asarray(results[v["b"]].returns, np.float64)[:, rows].mean(axis=(1, 2)))
        assert v["diff"] == pytest.approx(d.mean(), rel=1e-9, abs=1e-9)
        assert v["diff_ci"] == pytest.approx(12.706204736174707 * np.std(d, ddof=1) / np.sqrt(2), rel=1e-9, abs=1e-9)
    assert 1.9 < out["law"]["reparameterised"]["w2_slope"] < 2.2 and 0.9 < out["law"]["ignore"]["w2_slope"] < 1.2
    record = json.loads((tmp_path / "out" / "stochastic_cse.json").read_text())["info"]
    assert record["seeds"] == 2 and [r["id"] for r in record["pre_registered_rows"]] == [v["id"] for v in out["verdicts"]]
    assert record["configs"]["cse_ignore"]["cse_noise_scale_gradient"] == "ignore"
