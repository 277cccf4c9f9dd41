"""CSE's gradient sources: finite differences (no autodiff) and injected relative noise.

References are independent of the code under test: hand-derived derivatives of a
quadratic step, ``jax.jacfwd`` in float64 on an analytic environment for the
``O(h^2)`` rate, and the noise's stated second moment.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _tiny import TINY_TRAIN

from zsgjax import context_gradients as cg
from zsgjax.envs import make
from zsgjax.envs.simple_direction import SimpleDirection
from zsgjax.methods import CSE
from zsgjax.methods.cse import step_with_derivatives
from zsgjax.train import TrainConfig, make_train
from zsgjax.types import ContextGradients, DirectionalGradients


class NumpyDirection(SimpleDirection):
    """``simple_direction`` whose step runs in NumPy behind ``jax.pure_callback`` (no JVP
    rule): JAX cannot differentiate it, finite differences can. ``s' = s + clip(a) + c``,
    ``r = s' . c``, so ``dr/dc = s' + c`` and ``d^2 r / dc_i^2 = 2``."""

    @staticmethod
    def _numpy_step(s, a, c):
        next_s = s + np.clip(a, -1.0, 1.0) + c
        return next_s, np.sum(next_s * c, axis=-1)

    def env_step(self, env_state, action, context):
        shapes = (jax.ShapeDtypeStruct(env_state.shape, env_state.dtype),
                  jax.ShapeDtypeStruct(env_state.shape[:-1], env_state.dtype))
        next_s, reward = jax.pure_callback(self._numpy_step, shapes, env_state, action.astype(env_state.dtype),
                                           context.astype(env_state.dtype), vmap_method="broadcast_all")
        return next_s, next_s, reward, jnp.zeros((), dtype=bool)


def _hand_jacobian(s, a, c):
    """``(d s'/dc (2, 2), d r/dc (2,))`` of the direction step, by hand."""
    next_s = s + np.clip(a, -1.0, 1.0) + c
    return np.eye(2), next_s + c


# ------------------------------------------------------------ finite differences
def test_fd_is_exact_on_a_quadratic_step_inside_and_first_order_at_a_bound():
    """Central differences of a quadratic are exact; at a bound the one-sided difference
    is off by exactly ``-+ delta`` (``d^2r/dc_i^2 = 2``, offset ``delta = step * width``)."""
    env = NumpyDirection()
    s, a = np.array([0.3, -0.2]), np.array([0.5, -2.0])
    step = 0.05
    delta = step * 2.0  # the range of each dimension is [-1, 1]
    with jax.enable_x64(True):
        for c, sign in (((0.2, -0.4), (0.0, 0.0)), ((1.0, -0.4), (-1.0, 0.0)), ((0.2, -1.0), (0.0, 1.0))):
            c = np.array(c)
            grads = jax.jit(cg.fd_jacobian, static_argnums=(0, 4))(env, jnp.asarray(s), jnp.asarray(a),
                                                                   jnp.asarray(c), step)
            j_obs, j_r = _hand_jacobian(s, a, c)
            np.testing.assert_allclose(np.asarray(grads.d_obs), j_obs, atol=1e-12)
            # backward difference at c_i = high: r' - delta; forward at c_i = low: r' + delta
            np.testing.assert_allclose(np.asarray(grads.d_reward), j_r + np.asarray(sign) * delta, atol=1e-12)
            # along a direction: the same points (c +- t d, clipped along the line) and the same rule
            d = np.array([0.06, 0.08])
            d_obs, d_r = cg.fd_jvp(env, jnp.asarray(s), jnp.asarray(a), jnp.asarray(c), jnp.asarray(d), step)
            np.testing.assert_allclose(np.asarray(d_obs), j_obs @ d, atol=1e-12)
            t = step * 2.0 / 0.08  # the largest |t d_i| / width_i is `step`
            t_plus = min(1.0, *[(1.0 - ci) / (t * di) for ci, di in zip(c, d)])
            t_minus = min(1.0, *[(ci + 1.0) / (t * di) for ci, di in zip(c, d)])
            # r(c + u d) = r(c) + u r'.d + u^2 |d|^2 on the segment: the quotient is r'.d + (t+ - t-) t |d|^2
            want = j_r @ d + (t_plus - t_minus) * t * d @ d
            np.testing.assert_allclose(float(d_r), want, atol=1e-12)


def test_fd_error_is_second_order_inside_and_first_order_at_a_bound():
    """float64 on pendulum_goal (nonlinear in every context dimension) against ``jax.jacfwd``:
    halving the step divides the error by ~4 inside the space and by ~2 at a bound."""
    env = make("pendulum_goal")
    fd = jax.jit(cg.fd_jacobian, static_argnums=(0, 4))
    fd_dir = jax.jit(cg.fd_jvp, static_argnums=(0, 5))
    with jax.enable_x64(True):
        s = jnp.asarray([0.7, -1.3])
        a = jnp.asarray([0.4])
        space = env.context_space
        for where, c, order in (("inside", jnp.asarray(space.default), 2),
                                ("at the upper bounds", jnp.asarray(space.high), 1)):
            exact = cg.context_jacobian(env, s, a, c)
            d = jnp.asarray([-0.05, -0.03, -0.02, -0.04])  # from the upper bounds inward: one-sided
            exact_dir = np.concatenate([np.asarray(exact.d_obs) @ np.asarray(d), [np.asarray(exact.d_reward) @ d]])
            errors = []
            for h in (0.02, 0.01):
                got = fd(env, s, a, c, h)
                got_dir = np.concatenate([np.asarray(x).reshape(-1) for x in fd_dir(env, s, a, c, d, h)])
                errors.append([np.abs(np.asarray(got.d_obs) - exact.d_obs).max(),
                               np.abs(np.asarray(got.d_reward) - exact.d_reward).max(),
                               np.abs(got_dir - exact_dir).max()])
            ratio = np.asarray(errors[0]) / np.asarray(errors[1])
            assert np.all(np.asarray(errors[0]) > 1e-9), where  # measurable, not rounding
            np.testing.assert_allclose(ratio, 2.0 ** order, rtol=0.15, err_msg=where)


def test_fd_points_stay_in_the_space_and_degenerate_dimensions_get_zero():
    from zsgjax.envs.context import ContextSpace

    space = ContextSpace(("a", "b"), low=(0.0, 1.0), high=(1.0, 1.0), default=(0.5, 1.0))
    c = jnp.asarray([0.98, 1.0])
    plus, minus, t = cg.fd_points(space, c, jnp.asarray([0.05, 0.0]))
    np.testing.assert_allclose(np.asarray(plus), [1.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(np.asarray(minus), [0.93, 1.0], atol=1e-7)
    np.testing.assert_allclose(float(t), 1.0 + 0.4, rtol=1e-5)
    # blocked both ways at a corner: a zero denominator
    assert float(cg.fd_points(space, jnp.asarray([1.0, 1.0]), jnp.asarray([1.0, 1.0]))[2]) == 0.0


def test_fd_derivative_is_zero_without_a_move_and_nan_where_no_difference_fits():
    """A dimension of zero width: a zero Jacobian column; a zero step: a zero jvp; a step
    blocked both ways at a corner: NaN (CSE drops the sample)."""
    from zsgjax.envs.context import ContextSpace

    class Flat(SimpleDirection):
        context_space = ContextSpace(("c_x", "c_y"), low=(-1.0, 0.5), high=(1.0, 0.5), default=(0.0, 0.5))

    env, s, a = Flat(), jnp.asarray([0.3, -0.2]), jnp.asarray([0.5, 0.1])
    grads = cg.fd_jacobian(env, s, a, jnp.asarray([0.2, 0.5]))
    np.testing.assert_array_equal(np.asarray(grads.d_obs[:, 1]), 0.0)
    np.testing.assert_allclose(np.asarray(grads.d_obs[:, 0]), [1.0, 0.0], atol=1e-4)
    sd = SimpleDirection()
    zero = cg.fd_jvp(sd, s, a, jnp.asarray([1.0, 1.0]), jnp.zeros(2))
    assert np.all(np.asarray(zero[0]) == 0.0) and float(zero[1]) == 0.0
    blocked = cg.fd_jvp(sd, s, a, jnp.asarray([1.0, -1.0]), jnp.asarray([0.1, 0.1]))
    assert np.all(np.isnan(np.asarray(blocked[0]))) and np.isnan(float(blocked[1]))


def test_step_and_fd_return_the_primal_step_and_the_exact_types():
    env = make("pendulum_goal")
    s, a, c = jnp.asarray([0.7, -1.3]), jnp.asarray([0.4]), env.default_context()
    want = env.env_step(s, a, c)
    for out, grads, kind in ((*cg.step_and_fd_jacobian(env, s, a, c), ContextGradients),
                             (*cg.step_and_fd_jvp(env, s, a, c, jnp.full(4, 0.05)), DirectionalGradients)):
        assert isinstance(grads, kind)
        for x, y in zip(jax.tree.leaves(out), jax.tree.leaves(want)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6)
    assert cg.fd_jacobian(env, s, a, c).d_obs.shape == (3, 4)


# ----------------------------------------------------------------- noisy gradients
def test_relative_noise_has_the_stated_second_moment_and_zero_is_bitwise_exact():
    grads = ContextGradients(d_obs=jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)), jnp.float32),
                             d_reward=jnp.asarray([0.5, -2.0, 1.0, 0.0], jnp.float32))
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    for level in (0.1, 1.0):
        noisy = jax.vmap(lambda k: cg.add_relative_noise(k, grads, level))(keys)
        for got, g in ((noisy.d_obs, grads.d_obs), (noisy.d_reward, grads.d_reward)):
            err2 = np.sum((np.asarray(got, np.float64) - np.asarray(g)) ** 2, axis=tuple(range(1, got.ndim)))
            # E ||noise||^2 = level^2 ||g||^2 (within 4 standard errors of 4000 draws)
            want = level ** 2 * float(np.sum(np.asarray(g, np.float64) ** 2))
            assert abs(err2.mean() - want) < 4 * err2.std() / np.sqrt(len(keys)), (level, err2.mean(), want)
    same = cg.add_relative_noise(keys[0], grads, 0.0)
    assert same is grads
    directional = DirectionalGradients(delta_c=jnp.ones(4), d_obs=jnp.ones(3), d_reward=jnp.asarray(2.0))
    out = cg.add_relative_noise(keys[1], directional, 0.3)
    assert out.delta_c is directional.delta_c and not np.allclose(out.d_obs, 1.0)


# ---------------------------------------------------------------------------- CSE
def _batch(env, n=6, seed=0):
    rng = np.random.default_rng(seed)
    s = jnp.asarray(rng.uniform(-1, 1, (n, 2)), jnp.float32)
    a = jnp.asarray(rng.uniform(-1, 1, (n, 2)), jnp.float32)
    c = jnp.asarray(rng.uniform(-0.9, 0.9, (n, 2)), jnp.float32)
    return s, a, c, jax.random.split(jax.random.PRNGKey(seed), n)


@pytest.mark.parametrize("storage", ["jacobian", "jvp"])
def test_cse_fd_on_a_numpy_step_matches_autodiff_on_the_jax_step(storage):
    """What CSE stores from the NumPy step by finite differences is what autodiff gives
    on the same step written in JAX (the step is quadratic in c: FD is exact)."""
    s, a, c, keys = _batch(SimpleDirection())
    fd = CSE(gradients="fd", storage=storage)
    got = jax.jit(jax.vmap(lambda *x: fd.collect(NumpyDirection(), *x)))(s, a, c, keys)
    want = jax.vmap(lambda *x: CSE(storage=storage).collect(SimpleDirection(), *x))(s, a, c, keys)
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-5)


def test_cse_fd_uses_its_step_setting():
    """``CSE.fd_step`` reaches the difference (pendulum_goal is nonlinear in c: the step shows)."""
    env = make("pendulum_goal")
    s, a, c, key = jnp.asarray([0.7, -1.3]), jnp.asarray([0.4]), env.default_context(), jax.random.PRNGKey(1)
    from zsgjax.methods import enhancement

    d = enhancement.draw_context_step(key, c, env.context_space, 0.1)
    for storage, direct in (("jacobian", lambda h: cg.fd_jacobian(env, s, a, c, h)),
                            ("jvp", lambda h: DirectionalGradients(d, *cg.fd_jvp(env, s, a, c, d, h)))):
        coarse = CSE(gradients="fd", fd_step=0.3, storage=storage).collect(env, s, a, c, key)[1]
        for x, y in zip(jax.tree.leaves(coarse), jax.tree.leaves(direct(0.3)), strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
        assert not np.allclose(np.asarray(coarse.d_obs), np.asarray(direct(0.01).d_obs), rtol=1e-3, atol=0)


def test_cse_autodiff_on_a_numpy_step_says_to_use_fd():
    s, a, c, keys = _batch(SimpleDirection(), n=1)
    for storage in ("jacobian", "jvp"):
        with pytest.raises(ValueError, match=r"NumpyDirection's step.*gradients='fd'"):
            CSE(storage=storage).collect(NumpyDirection(), s[0], a[0], c[0], keys[0])


def test_cse_noise_is_added_at_collection_and_zero_noise_is_bitwise_autodiff():
    s, a, c, keys = _batch(SimpleDirection())
    env = SimpleDirection()
    for storage in ("jacobian", "jvp"):
        plain = jax.vmap(lambda *x: CSE(storage=storage).collect(env, *x))(s, a, c, keys)
        zero = jax.vmap(lambda *x: CSE(storage=storage, gradient_noise=0.0).collect(env, *x))(s, a, c, keys)
        noisy = jax.vmap(lambda *x: CSE(storage=storage, gradient_noise=0.5).collect(env, *x))(s, a, c, keys)
        for x, y in zip(jax.tree.leaves(zero), jax.tree.leaves(plain), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        np.testing.assert_array_equal(np.asarray(noisy[0][1]), np.asarray(plain[0][1]))  # the step itself is exact
        err = np.asarray(noisy[1].d_obs - plain[1].d_obs)
        assert np.all(np.linalg.norm(err.reshape(len(err), -1), axis=1) > 0)
        if storage == "jvp":  # the same step along which the derivative was taken
            np.testing.assert_array_equal(np.asarray(noisy[1].delta_c), np.asarray(plain[1].delta_c))


def test_cse_trains_with_fd_and_noise_on_a_step_autodiff_cannot_differentiate():
    """Two iterations of SAC+CSE on the NumPy step, finite differences plus noise (the jvp
    storage's FD collector is checked above against autodiff): every enhanced sample valid."""
    cfg = TrainConfig(**{**TINY_TRAIN, "total_steps": 32, "method": "cse", "cse_gradients": "fd",
                         "cse_storage": "jacobian", "cse_gradient_noise": 0.1})
    trainer = make_train(cfg, env=NumpyDirection())
    assert trainer.num_iterations == 2
    _, metrics = jax.jit(trainer.train)(jax.random.PRNGKey(0))
    assert int(np.asarray(metrics["cse_invalid"]).sum()) == 0
    assert np.all(np.isfinite(np.asarray(metrics["critic_loss"])))
    assert int(np.asarray(metrics["updates"])[-1]) > 0


@pytest.mark.parametrize("field, value, accepted", [
    ("gradients", "spsa", "one of autodiff, fd"),
    ("fd_step", 0.0, r"in \(0, 0.5\]"),
    ("fd_step", 0.6, r"in \(0, 0.5\]"),
    ("gradient_noise", -0.1, ">= 0"),
    ("gradient_noise", float("nan"), ">= 0"),
])
def test_bad_gradient_settings_name_the_setting_and_range(field, value, accepted):
    with pytest.raises(ValueError, match=rf"CSE\.{field} must be .*{accepted}"):
        CSE(**{field: value})
    with pytest.raises(ValueError, match=rf"TrainConfig\.cse_{field} must be .*{accepted}"):
        make_train(TrainConfig(**{**TINY_TRAIN, "method": "cse", f"cse_{field}": value}))


def test_bad_gradient_arguments_name_the_argument_and_range():
    for kw, named in ((dict(gradients="fd"), "CSE.gradients='fd'"), (dict(gradient_noise=0.5), "CSE.gradient_noise=0.5")):
        with pytest.raises(ValueError, match=f"^{named} changes context derivatives and mode='exact' takes none"):
            CSE(mode="exact", **kw)
    with pytest.raises(ValueError, match=r"fd_jacobian: `step`.* must be .*\(0, 0.5\]"):
        cg.fd_jacobian(SimpleDirection(), jnp.zeros(2), jnp.zeros(2), jnp.zeros(2), 0.0)
    with pytest.raises(ValueError, match=r"step_with_derivatives: `gradients` must be one of autodiff, fd"):
        step_with_derivatives(SimpleDirection(), jnp.zeros(2), jnp.zeros(2), jnp.zeros(2), None, "exact")
    with pytest.raises(ValueError, match=r"add_relative_noise: `level`.* must be .*>= 0"):
        cg.add_relative_noise(jax.random.PRNGKey(0), ContextGradients(jnp.ones((2, 2)), jnp.ones(2)), -1.0)


# ------------------------------------------------------------------- MuJoCo Warp
_PENDULUM_XML = """<mujoco><option timestep="0.02"/><worldbody><body><joint name="hinge" type="hinge" axis="0 1 0"/>
<geom type="capsule" size="0.05" fromto="0 0 0 0 0 -1" mass="1"/></body></worldbody>
<actuator><motor joint="hinge" gear="2"/></actuator></mujoco>"""


def _mjx_pendulum(impl: str):
    """A pendulum in MJX with gravity as its context, stepped by the ``impl`` backend
    (``"warp"``: MuJoCo Warp, whose FFI call JAX cannot differentiate)."""
    import mujoco
    from mujoco import mjx

    from zsgjax.envs.base import ContextualEnv
    from zsgjax.envs.context import ContextSpace

    mj_model = mujoco.MjModel.from_xml_string(_PENDULUM_XML)
    model, data = mjx.put_model(mj_model, impl=impl), mjx.make_data(mj_model, impl=impl)

    class MjxPendulum(ContextualEnv):
        context_space = ContextSpace(("gravity",), low=(5.0,), high=(15.0,), default=(9.81,))
        horizon = 20
        state_obs_size = 3

        @property
        def action_size(self):
            return 1

        def init_env_state(self, rng, context):
            return jnp.stack([jax.random.uniform(rng, (), minval=-1.0, maxval=1.0), 0.0])

        def observe(self, env_state, context):
            return jnp.stack([jnp.cos(env_state[0]), jnp.sin(env_state[0]), env_state[1]])

        def env_step(self, env_state, action, context):
            m = model.replace(opt=model.opt.replace(gravity=jnp.stack([0.0, 0.0, -context[0]])))
            d = data.replace(qpos=env_state[:1], qvel=env_state[1:], ctrl=jnp.clip(action, -1.0, 1.0))
            d = mjx.step(m, d)
            nxt = jnp.concatenate([d.qpos, d.qvel])
            return nxt, self.observe(nxt, context), -(d.qpos[0] ** 2) - 0.1 * d.qvel[0] ** 2, jnp.zeros((), bool)

    return MjxPendulum()


@pytest.mark.slow
def test_cse_fd_trains_on_mujoco_warp():
    """MuJoCo Warp's step cannot be differentiated by JAX; CSE's finite differences through
    it agree with autodiff through the same model in MJX's JAX implementation, and train."""
    pytest.importorskip("mujoco_warp")
    warp, reference = _mjx_pendulum("warp"), _mjx_pendulum("jax")
    s, a, c = jnp.asarray([0.4, -0.3]), jnp.asarray([0.2]), jnp.asarray([9.81])
    with pytest.raises(ValueError, match=r"MjxPendulum's step.*gradients='fd'"):
        CSE(storage="jacobian").collect(warp, s, a, c, jax.random.PRNGKey(0))
    fd = jax.jit(lambda s, a, c: cg.fd_jacobian(warp, s, a, c, 0.01))(s, a, c)
    exact = cg.context_jacobian(reference, s, a, c)
    np.testing.assert_allclose(np.asarray(fd.d_obs), np.asarray(exact.d_obs), rtol=2e-2, atol=1e-5)
    np.testing.assert_allclose(np.asarray(fd.d_reward), np.asarray(exact.d_reward), rtol=2e-2, atol=1e-5)
    cfg = TrainConfig(**{**TINY_TRAIN, "total_steps": 32, "method": "cse", "cse_gradients": "fd"})
    trainer = make_train(cfg, env=warp)
    _, metrics = jax.jit(trainer.train)(jax.random.PRNGKey(0))
    assert int(np.asarray(metrics["cse_invalid"]).sum()) == 0
    assert np.all(np.isfinite(np.asarray(metrics["critic_loss"])))


def test_gradient_settings_are_recorded_only_when_set_so_earlier_runs_resume():
    """Runs recorded before these settings existed keep matching: at their defaults the
    settings are left out of the record; set, they are recorded and read back."""
    plain = TrainConfig(method="cse").record()
    assert not {"cse_gradients", "cse_fd_step", "cse_gradient_noise"} & set(plain)
    record = TrainConfig(method="cse", cse_gradients="fd", cse_fd_step=0.05).record()
    assert record["cse_gradients"] == "fd" and record["cse_fd_step"] == 0.05 and "cse_gradient_noise" not in record
    assert TrainConfig(**record) == TrainConfig(method="cse", cse_gradients="fd", cse_fd_step=0.05)
