"""MJX contextual environments: spaces, physical features, recompilation, ranges checked by simulation.

Float32, as users run them. The context Jacobians are checked against finite
differences in float64 in ``test_mjx_jacobian.py``; reset/step under jit and vmap,
bad input and the stability of each environment at the corners of its context space
in ``test_contracts.py``. MJX compile time on CPU is large, so every jitted function
here is compiled once per environment with few environments and short horizons.
"""

import math

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

from zsgjax import rollout
from zsgjax.envs import ContextSpace, ContextualEnv, make, stability
from zsgjax.context_gradients import finite_mask
from zsgjax.envs.mjx import load_model, make_feature
from zsgjax.methods import CSE, LDR
from zsgjax.types import ContextGradients

ALL_FEATURES = ("gravity", "mass_scale", "mass_scale:torso", "friction_scale", "actuator_gain", "damping_scale")
ENVS = ("cheetah_velocity", "ant_direction", "ant_goal")


# ---------------------------------------------------------------- construction
@pytest.mark.parametrize(
    "name, kwargs, reward_names, default, obs_size, action_size, num_eval",
    [
        ("cheetah_velocity", {}, ("target_velocity",), (2.0,), 17, 6, 7),
        # the paper's defaults: 2-vector contexts, contact forces in the observation
        ("ant_direction", {}, ("dir_x", "dir_y"), (1.0, 0.0), 105, 8, 10),
        ("ant_goal", {}, ("goal_x", "goal_y"), (3.0, 0.0), 107, 8, 6),
        # the earlier zsgjax ant: angle contexts, no contact forces
        ("ant_direction", dict(context="angle", reward="zsgjax"), ("direction_angle",), (0.0,), 27, 8, 10),
        ("ant_goal", dict(context="angle", reward="zsgjax"), ("goal_angle",), (0.0,), 29, 8, 6),
    ],
)
def test_spaces_and_sizes(name, kwargs, reward_names, default, obs_size, action_size, num_eval):
    env = make(name, physical=("gravity", "mass_scale:torso", "friction_scale"), **kwargs)
    space = env.context_space
    k = len(reward_names)
    assert env.num_reward_context == k and space.dim == k + 3
    assert space.names == reward_names + ("gravity", "mass_scale:torso", "friction_scale")
    assert space.default == default + (9.81, 1.0, 1.0)
    assert space.low[k:] == (5.0, 0.5, 0.25) and space.high[k:] == (20.0, 2.0, 2.0)
    assert env.state_obs_size == obs_size and env.observation_size == obs_size + k + 3
    assert env.action_size == action_size and env.horizon == 1000
    assert env.dt == pytest.approx(0.05) and env.n_frames == 5
    names, arr = env.eval_context_array()
    assert len(names) == num_eval and arr.shape == (num_eval, k + 3)
    np.testing.assert_allclose(arr[:, k:], np.tile([9.81, 1.0, 1.0], (num_eval, 1)), rtol=1e-6)
    space.validate(arr)  # every eval context lies in the space
    # without physical features the context is the reward context alone
    assert make(name, **kwargs).context_space.names == reward_names


def test_eval_contexts_follow_the_paper():
    cheetah = make("cheetah_velocity")
    np.testing.assert_allclose(
        sorted(v[0] for v in cheetah.eval_contexts.values()), [-1, 0.75, 1.25, 1.75, 2, 2.25, 2.75]
    )
    # environments/common.py of the paper: th = [0, .1, -.1, .2, -.2, .5, -.5, 1, -1, pi], (cos th, sin th)
    # for ant_dir; th = [0, .1, .2, .5, 1, pi], 3 (cos th, sin th) for ant_goal
    for name, angles, radius in [
        ("ant_direction", (0, 0.1, -0.1, 0.2, -0.2, 0.5, -0.5, 1, -1, math.pi), 1.0),
        ("ant_goal", (0, 0.1, 0.2, 0.5, 1, math.pi), 3.0),
    ]:
        env = make(name)
        names, arr = env.eval_context_array()
        assert names == [f"angle={a:g}" for a in angles]
        want = radius * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
        np.testing.assert_allclose(arr, want, rtol=1e-6, atol=1e-7)
        assert env.context_space.default == (radius, 0.0)
        # the box holds the circle with room for LDR / CSE steps of 0.1 around every point of it
        space = env.context_space
        assert all(lo <= -radius - 0.4 and hi >= radius + 0.4 for lo, hi in zip(space.low, space.high))
        angle_env = make(name, context="angle")
        assert list(angle_env.eval_contexts) == names
        np.testing.assert_allclose([v[0] for v in angle_env.eval_contexts.values()], angles)
        assert angle_env.context_space.low == (-math.pi,) and angle_env.context_space.high == (math.pi,)


def test_bad_construction_raises_clear_errors():
    with pytest.raises(ValueError, match="unknown physical feature 'wind'.*gravity.*mass_scale:<body>.*torso.*"
                                         "damping_scale:<joint>.*rootx.*bthigh"):
        make("cheetah_velocity", physical=("wind",))
    with pytest.raises(ValueError, match="unknown body 'tail'.*torso.*bthigh"):
        make("cheetah_velocity", physical=("mass_scale:tail",))
    with pytest.raises(ValueError, match="unique"):
        make("ant_goal", physical=("gravity", "gravity"))
    with pytest.raises(ValueError, match="sequence of feature names"):
        make("ant_goal", physical="gravity")
    with pytest.raises(ValueError, match="must contain its default 9.81"):
        make("ant_direction", physical=("gravity",), physical_ranges={"gravity": (1.0, 5.0)})
    # physically invalid ranges (the state turns non-finite within steps) are rejected
    for feature, bad in [("friction_scale", (0.0, 2.0)), ("gravity", (-1.0, 20.0)), ("mass_scale", (-0.5, 2.0)),
                         ("actuator_gain", (0.0, 2.0))]:
        with pytest.raises(ValueError, match=f"'{feature}' is .*its low end must be > 0"):
            make("cheetah_velocity", physical=(feature,), physical_ranges={feature: bad})
    # no damping is physically valid (checked on the feature: a widened range is simulated at construction)
    assert make_feature(load_model("half_cheetah.xml"), "damping_scale", (0.0, 2.0)).widened
    with pytest.raises(ValueError, match="not selected"):
        make("ant_direction", physical=("gravity",), physical_ranges={"mass_scale": (0.5, 1.5)})
    with pytest.raises(ValueError, match="reset_noise_scale"):
        make("ant_direction", reset_noise_scale=-1.0)
    with pytest.raises(ValueError, match="`solver_tangent` must be one of auto, implicit, unrolled; got 'adjoint'"):
        make("cheetah_velocity", solver_tangent="adjoint")
    # the ant's solver runs one Newton iteration: no converged solution to differentiate implicitly
    with pytest.raises(ValueError, match="`solver_tangent='implicit'` is not supported.*1 iteration"):
        make("ant_direction", solver_tangent="implicit")
    assert make("ant_direction").solver_tangent == "unrolled"
    assert make("cheetah_velocity").solver_tangent == "implicit"
    with pytest.raises(ValueError, match="AntDirection: `context` must be one of 'vector', 'angle', got 'polar'"):
        make("ant_direction", context="polar")
    with pytest.raises(ValueError, match="AntGoal: `reward` must be one of 'paper', 'zsgjax', got 'gym'"):
        make("ant_goal", reward="gym")
    with pytest.raises(ValueError, match="`include_cfrc_ext_in_observation` must be True, False or None"):
        make("ant_goal", include_cfrc_ext_in_observation="yes")
    env = make("ant_direction", physical=("gravity",), physical_ranges={"gravity": (9.0, 11.0)})
    assert env.context_space.low[2] == 9.0 and env.context_space.high[2] == 11.0
    with pytest.raises(ValueError, match=r"context.*shape \(3,\).*dir_x, dir_y, gravity"):
        env.reset(jax.random.PRNGKey(0), jnp.zeros(2))
    with pytest.raises(ValueError, match="gravity.*outside its range"):
        env.context_space.validate([1.0, 0.0, 30.0])
    with pytest.raises(ValueError, match="dir_x.*outside its range"):
        env.context_space.validate([2.0, 0.0, 9.81])


def test_per_joint_damping_scales_only_that_joints_dofs():
    """``damping_scale:<joint>`` multiplies the damping of the joint's DOFs (6 for the ant's free
    ``root``, 1 for a hinge) and leaves every other DOF's; its kind sets range and minimum."""
    mj_model = load_model("ant.xml")
    mj_model.dof_damping[:] = np.arange(1.0, mj_model.nv + 1.0)  # distinct, nonzero: a change is visible
    model = mjx.put_model(mj_model)
    base = np.arange(1.0, 15.0)  # 14 DOFs: root (free) 0-5, then one per hinge, hip_2 at 8
    for joint, factor, dofs in [("root", 1.5, [0, 1, 2, 3, 4, 5]), ("hip_2", 0.7, [8])]:
        feature = make_feature(mj_model, f"damping_scale:{joint}")
        assert (feature.kind, feature.default, feature.low, feature.high, feature.widened) == (
            "damping_scale", 1.0, 0.5, 2.0, False)
        want = base.copy()
        want[dofs] *= factor
        got = feature.apply(model, jnp.float32(factor))
        np.testing.assert_allclose(got.dof_damping, want, rtol=1e-6, err_msg=joint)
        np.testing.assert_array_equal(got.body_mass, model.body_mass)
    assert make_feature(mj_model, "damping_scale:hip_1", (0.0, 2.0)).widened  # no damping: valid, widened
    with pytest.raises(ValueError, match="'damping_scale:hip_1' is .*its low end must be >= 0"):
        make_feature(mj_model, "damping_scale:hip_1", (-0.1, 2.0))
    with pytest.raises(ValueError, match="unknown joint 'knee' in physical feature 'damping_scale:knee'; "
                                         "named joints: root, hip_1, ankle_1, hip_2"):
        make_feature(mj_model, "damping_scale:knee")


def test_vendored_cheetah_is_brax_model():
    """Our cheetah (mj_setTotalmass instead of the deprecated settotalmass) equals brax's."""
    from importlib import resources

    ours = make("cheetah_velocity").mj_model
    with resources.as_file(resources.files("brax") / "envs" / "assets" / "half_cheetah.xml") as p:
        theirs = mujoco.MjModel.from_xml_path(str(p))
    fields = ("body_mass", "body_inertia", "body_subtreemass", "body_invweight0", "dof_invweight0", "geom_friction")
    for field in fields:
        np.testing.assert_allclose(getattr(ours, field), getattr(theirs, field), rtol=1e-12, err_msg=field)
    assert load_model("ant.xml").opt.iterations == 1


@pytest.mark.parametrize("name, xml", [("cheetah_velocity", "half_cheetah.xml"), ("ant_goal", "ant.xml")])
def test_features_equal_a_host_modified_model(name, xml):
    """``model_at(c)`` equals ``put_model`` of an ``MjModel`` edited on the host and ``mj_setConst``-ed."""
    env = make(name, physical=ALL_FEATURES)
    values = {"gravity": 13.0, "mass_scale": 1.7, "mass_scale:torso": 0.6, "friction_scale": 1.4,
              "actuator_gain": 0.7, "damping_scale": 1.9}  # fmt: skip
    context = jnp.asarray(list(env.reward_space.default) + [values[n] for n in ALL_FEATURES], jnp.float32)
    got = env.model_at(context)

    ref = load_model(xml)
    if name == "cheetah_velocity":
        mujoco.mj_setTotalmass(ref, 14.0)
    torso = ref.body("torso").id
    ref.opt.gravity[:] = (0.0, 0.0, -13.0)
    ref.body_mass[:] *= 1.7
    ref.body_inertia[:] *= 1.7
    ref.body_mass[torso] *= 0.6
    ref.body_inertia[torso] *= 0.6
    ref.geom_friction[:] *= 1.4
    ref.actuator_gainprm[:] *= 0.7
    ref.actuator_biasprm[:] *= 0.7
    ref.dof_damping[:] *= 1.9
    mujoco.mj_setConst(ref, mujoco.MjData(ref))
    want = mjx.put_model(ref)
    for field in ("body_mass", "body_inertia", "body_subtreemass", "geom_friction", "actuator_gainprm",
                  "actuator_biasprm", "dof_damping"):  # fmt: skip
        np.testing.assert_allclose(getattr(got, field), getattr(want, field), rtol=2e-6, atol=1e-7, err_msg=field)
    np.testing.assert_allclose(got.opt.gravity, want.opt.gravity, rtol=1e-6)
    # the base model is untouched (a per-call copy was modified)
    np.testing.assert_allclose(env.model.opt.gravity, [0.0, 0.0, -9.81], rtol=1e-6)


# ------------------------------------------------------------------- dynamics
@pytest.mark.parametrize("name", ["cheetah_velocity", "ant_goal"])
def test_each_feature_changes_the_trajectory_without_recompiling(name):
    env = make(name, physical=ALL_FEATURES)
    space = env.context_space
    traces = []

    @jax.jit
    def roll(state0, context, actions):
        traces.append(1)  # runs only when tracing

        def body(s, a):
            s2, obs, r, _ = env.env_step(s, a, context)
            return s2, (obs, r)

        return jax.lax.scan(body, state0, actions)[1]

    state0 = env.init_env_state(jax.random.PRNGKey(3), space.default_array)
    actions = jax.random.uniform(jax.random.PRNGKey(4), (16, env.action_size), minval=-1.0, maxval=1.0)
    base_obs, base_r = roll(state0, space.default_array, actions)
    assert np.all(np.isfinite(base_obs)) and np.all(np.isfinite(base_r))
    k = env.num_reward_context
    for i, feature in enumerate(space.names):
        changed = space.default_array.at[i].set(space.high[i] if i >= k else space.default[i] + 1.0)
        obs, r = roll(state0, changed, actions)
        assert np.all(np.isfinite(obs)), feature
        if i < k:  # the reward context changes the reward only
            np.testing.assert_array_equal(obs, base_obs)
            assert np.max(np.abs(r - base_r)) > 1e-2
        else:
            diff = float(np.max(np.abs(obs - base_obs)))
            assert diff > 1e-2, f"feature '{feature}' left the trajectory unchanged (max diff {diff:g})"
    assert len(traces) == 1, "the rollout recompiled when the context changed"


def test_to_data_rebuilds_full_mjx_data():
    env = make("ant_direction", physical=("gravity",))
    state = env.init_env_state(jax.random.PRNGKey(0), env.context_space.default_array)
    data = jax.jit(env.to_data)(state, env.context_space.default_array)
    assert isinstance(data, mjx.Data)
    np.testing.assert_allclose(jnp.linalg.norm(state.qpos[3:7]), 1.0, rtol=1e-6)
    np.testing.assert_allclose(data.qpos, state.qpos)
    torso = env.mj_model.body("torso").id
    np.testing.assert_allclose(data.xpos[torso], state.qpos[:3], atol=1e-6)


# ------------------------------------------------------------------- validity
def test_finite_mask_per_sample():
    grads = ContextGradients(d_obs=jnp.ones((4, 3, 2)), d_reward=jnp.ones((4, 2)))
    grads = grads.replace(d_obs=grads.d_obs.at[1, 2, 0].set(jnp.nan), d_reward=grads.d_reward.at[3, 1].set(jnp.inf))
    np.testing.assert_array_equal(finite_mask(grads), [True, False, True, False])
    two = {"x": jnp.zeros((2, 3, 5)).at[1, 0, 4].set(-jnp.inf), "n": jnp.zeros((2, 3), jnp.int32)}
    np.testing.assert_array_equal(finite_mask(two, batch_ndim=2), [[True] * 3, [False, True, True]])
    with pytest.raises(ValueError, match="leading batch shape"):
        finite_mask({"a": jnp.zeros((2, 3)), "b": jnp.zeros((3, 3))})
    with pytest.raises(ValueError, match="no floating-point leaf"):
        finite_mask({"n": jnp.zeros((2,), jnp.int32)})



@pytest.mark.slow
@pytest.mark.parametrize("name", ENVS)
@pytest.mark.parametrize("gradients", ["jacobian", "jvp"])
def test_rollout_with_context_gradients(name, gradients):
    """The trainer's CSE path in float32: batched steps that also return context derivatives."""
    env = make(name, physical=ALL_FEATURES)
    sampler = LDR(scale=0.1).context_sampler(env.context_space)
    num_envs, num_steps = 2, 3
    state = rollout.reset(env, jax.random.PRNGKey(0), num_envs, sampler)

    def policy(rng, obs):
        return jax.random.uniform(rng, (obs.shape[0], env.action_size), minval=-1.0, maxval=1.0)

    run = jax.jit(lambda st, key: rollout.rollout(env, policy, st, key, num_steps, sampler,
                                                         CSE(0.1, "first_order", gradients, 1.0).collect))
    _, outs = run(state, jax.random.PRNGKey(1))
    grads = outs.extras
    if gradients == "jacobian":
        assert grads.d_obs.shape == (num_steps, num_envs, env.state_obs_size, env.context_dim)
        assert grads.d_reward.shape == (num_steps, num_envs, env.context_dim)
    else:
        assert grads.d_obs.shape == (num_steps, num_envs, env.state_obs_size)
        assert grads.delta_c.shape == (num_steps, num_envs, env.context_dim)
    assert bool(jnp.all(finite_mask(grads, batch_ndim=2)))
    assert float(jnp.max(jnp.abs(grads.d_obs))) > 0


# ------------------------------------------------------- ranges checked by simulation
class _Exploding(ContextualEnv):
    """``s' = g(c) s`` with ``g(c) = 0.5 + 0.0095 / c`` from ``s0 = 1``: decays at ``c = 1``
    (``g = 0.51``), grows as ``10 ** t`` at ``c = 0.001`` (``g = 10``: ``|s'| = 10 ** t``)."""

    context_space = ContextSpace(("c", "unused"), low=(0.001, 0.0), high=(1.0, 1.0), default=(1.0, 0.5))
    horizon = 10
    state_obs_size = 1

    @property
    def action_size(self):
        return 1

    def init_env_state(self, rng, context):
        return jnp.ones((1,), context.dtype)

    def observe(self, env_state, context):
        return env_state

    def env_step(self, env_state, action, context):
        nxt = (0.5 + 0.0095 / context[0]) * env_state
        return nxt, nxt, jnp.zeros(()), jnp.zeros((), bool)


def test_corner_contexts():
    space = ContextSpace(("a", "b", "c"), low=(0.0, -1.0, 2.0), high=(1.0, 1.0, 2.0), default=(0.5, 0.0, 2.0))
    np.testing.assert_array_equal(stability.corner_contexts(space, ["a", "b"]),
                                  [[0, -1, 2], [0, 1, 2], [1, -1, 2], [1, 1, 2]])
    np.testing.assert_array_equal(stability.corner_contexts(space, [1]), [[0.5, -1, 2], [0.5, 1, 2]])
    assert stability.corner_contexts(space, ["a", "b", "c"]).shape == (4, 3)  # c has low == high: duplicates go
    wide = ContextSpace(tuple("abcdefg"), low=0.0, high=1.0, default=0.5)
    few = stability.corner_contexts(wide, range(7), max_points=64)  # 128 corners > 64
    assert few.shape == (16, 7) and set(np.unique(few)) == {0.0, 1.0}
    np.testing.assert_array_equal(few[:3], [[0] * 7, [1] * 7, [1] + [0] * 6])
    assert stability.corner_contexts(wide, range(6), max_points=64).shape == (64, 7)


def test_find_instability_names_the_corner_and_the_step():
    env = _Exploding()
    # from s0 = 1: |s_t| = 10 ** t at c = 0.001, above the limit 1e6 first at t = 7, non-finite (float32) at t = 39
    found = stability.find_instability(env, stability.corner_contexts(env.context_space, ["c"]), num_steps=8)
    assert found.step == 7 and found.value == pytest.approx(1e7, rel=1e-4)
    np.testing.assert_allclose(found.context, [0.001, 0.5], rtol=1e-6)
    assert stability.find_instability(env, [[0.001, 0.5]], num_steps=8, limit=1e8) is None
    nan = stability.find_instability(env, [[1.0, 0.5], [0.001, 0.5]], num_steps=40, limit=np.inf)
    assert nan.step == 39 and not np.isfinite(nan.value)
    assert stability.find_instability(env, [[1.0, 0.0], [0.5, 1.0]]) is None  # g <= 0.52: decays
    with pytest.raises(ValueError, match=r"_Exploding: the range of c makes the simulation blow up: at the corner "
                                         r"c=0.001, a rollout .* 1e\+07 in magnitude \(limit 1e\+06\) at step 7"):
        stability.check_ranges(env, ["c"], "the range of c", num_steps=8)


@pytest.mark.slow
def test_widened_physical_range_is_simulated_at_construction():
    """Issue 26: friction 1e-3 was accepted (ranges need only low > 0) and the cheetah blew up within steps."""
    with pytest.raises(ValueError, match=r"the widened range of physical feature 'friction_scale' \[0.001, 2\] "
                                         r"\(default range 0.25-2\) makes the simulation blow up: at the corner "
                                         r"gravity=\d+, friction_scale=0.001"):
        make("cheetah_velocity", physical=("gravity", "friction_scale"),
             physical_ranges={"friction_scale": (1e-3, 2.0)})
    env = make("cheetah_velocity", physical=("damping_scale",), physical_ranges={"damping_scale": (0.0, 2.0)})
    assert env.context_space.low[1] == 0.0  # no damping: simulated at the corners, stable
