"""The contracts every registered environment and every registered method satisfy.

Parametrized from the registries (``zsgjax.envs.registered_names()``,
``zsgjax.methods.method_names()``): registering an environment or a method is
enough to put it through these tests. What the contracts are is written in
docs/environments.md ("The environment contract") and docs/training.md.

Environments are built as ``make(name)``, plus ``physical=FEATURE_KINDS`` (every
kind of physical feature) when the constructor takes ``physical``, so that the
physics of MJX environments is differentiated and simulated over its whole
context space. The environment contract:

* static: sizes (``observation_size = state_obs_size + context_dim``), action shape,
  horizon, evaluation contexts inside the space;
* bad input: a context of the wrong shape, outside the space or NaN, an action of the
  wrong shape, a state that is not one: ``ValueError`` naming the argument;
* one ``jit(vmap(...))`` program of ``reset`` + ``STEPS`` ``step`` calls (float32):
  shapes and dtypes, the context part of every observation equal to the context,
  finite values at random contexts and at the extreme corners of the space, the
  same key (and context and actions) giving bit-identical steps, and another
  context giving other steps;
* one ``jit`` program in float64 (the environment built under ``jax.enable_x64``):
  :func:`zsgjax.context_gradients.context_jacobian` and ``context_jvp`` after
  ``STEPS - 1`` steps at a random context inside the space against central finite
  differences of ``transition``, ``h = 1e-6 max(high - low, 1)`` per dimension, error
  at most ``1e-6 (1 + |FD|)``;
* stability: :func:`zsgjax.envs.stability.find_instability` at the corners of the
  whole space finds nothing (the default ranges of the physical features are the
  ones a widened range is compared with).

MJX-backed environments (``zsgjax.envs.mjx`` and the ``playground:*`` ones; the
constructor's class has ``model_at``) are ``@pytest.mark.slow``, except
:data:`DEFAULT_SUITE_MJX`, whose corner check alone is slow. The method contract,
on the tiny SimpleDirection setup of ``_tiny.py`` (the CLI's and the checkpoint
tests'): two iterations, a checkpoint round trip followed by one more chunk equal
to the uninterrupted run, and the weight-mask semantics of ``training_batch``.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.envs.wrappers import training

from _tiny import TINY_CHUNK_ITERATIONS, TINY_SEEDS, TINY_TRAIN
from zsgjax import context_gradients, runner
from zsgjax.checkpoint import Checkpointer
from zsgjax.envs import ContextSpace, ContextualEnv, constructor, make, registered_names, stability
from zsgjax.envs.mjx.features import FEATURE_KINDS
from zsgjax.methods import method_names
from zsgjax.train import TrainConfig, make_train

DEFAULT_SUITE_MJX = "cheetah_velocity"
"""The one MJX environment whose contract (but the corner check) runs in the default suite: the cheapest to compile."""
STEPS = 4
H_REL = 1e-6
FD_TOL = 1e-6


def _is_mjx(name: str) -> bool:
    ctor = constructor(name)
    return hasattr(getattr(ctor, "func", ctor), "model_at")  # a partial's class, or the class itself


def _options(name: str) -> dict:
    """The constructor options of the contract: every kind of physical feature where the constructor takes them."""
    return {"physical": FEATURE_KINDS} if "physical" in inspect.signature(constructor(name)).parameters else {}


def _params(slow_mjx: bool):
    params = []
    for name in registered_names():
        slow = _is_mjx(name) and (slow_mjx or name != DEFAULT_SUITE_MJX)
        params.append(pytest.param(name, id=name, marks=[pytest.mark.slow] if slow else []))
    return params


@pytest.fixture(scope="module")
def envs():
    """``envs(name, x64=False)``: the contract's environment, built once per module."""
    built = {}

    def get(name, x64=False):
        if (name, x64) not in built:
            with jax.enable_x64(x64):
                built[(name, x64)] = make(name, **_options(name))
        return built[(name, x64)]

    return get


def _actions(env: ContextualEnv, rng: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Random actions ``(*shape, *env.action_shape())``: uniform in [-1, 1], or uniform integers."""
    if env.discrete:
        return jax.random.randint(rng, shape, 0, int(env.num_actions), dtype=jnp.int32)
    return jax.random.uniform(rng, (*shape, env.action_size), minval=-1.0, maxval=1.0)


def _episode(env: ContextualEnv):
    """``(key, context, actions (STEPS, ...)) -> (obs (STEPS + 1, obs), reward (STEPS,), done (STEPS,), info context)``."""

    def run(key, context, actions):
        state = env.reset(key, context)

        def body(s, a):
            s = env.step(s, a)
            return s, (s.obs, s.reward, s.done)

        final, (obs, reward, done) = jax.lax.scan(body, state, actions)
        return jnp.concatenate([state.obs[None], obs]), reward, done, final.info["context"]

    return run


# --------------------------------------------------------------- environments
@pytest.mark.parametrize("name", _params(slow_mjx=False))
def test_env_sizes_and_bad_input(name, envs):
    env = envs(name)
    space, dim = env.context_space, env.context_dim
    assert isinstance(env, ContextualEnv) and isinstance(space, ContextSpace)
    assert env.observation_size == env.state_obs_size + dim and env.state_obs_size >= 1
    assert isinstance(env.horizon, int) and env.horizon >= 1
    if env.discrete:
        assert env.action_shape() == () and int(env.num_actions) >= 2
    else:
        assert env.action_shape() == (env.action_size,) and env.action_size >= 1
    names, contexts = env.eval_context_array()
    assert contexts.shape == (len(names), dim) and len(names) >= 1
    space.validate(contexts, "eval_contexts")

    rng = jax.random.PRNGKey(0)
    state = env.reset(rng)  # eager, at the default context
    np.testing.assert_array_equal(state.info["context"], space.default_array)
    with pytest.raises(ValueError, match=rf"`context` must have shape \({dim},\)"):
        env.reset(rng, jnp.zeros((dim + 1,)))
    with pytest.raises(ValueError, match=rf"`context` dimension '{space.names[0]}' = .* is outside its range"):
        env.reset(rng, space.default_array.at[0].set(space.high[0] + 1.0))
    with pytest.raises(ValueError, match=rf"`context` dimension '{space.names[-1]}' = nan is non-finite"):
        env.reset(rng, space.default_array.at[-1].set(jnp.nan))
    with pytest.raises(ValueError, match="`action` must be"):
        env.step(state, jnp.zeros((2,) if env.discrete else (env.action_size + 1,)))
    with pytest.raises(ValueError, match="`state` must be a brax State"):
        env.step(state.pipeline_state, _actions(env, rng, ()))


def test_unknown_environment_and_option():
    with pytest.raises(ValueError, match=r"unknown environment 'no_such_env'; known environments: "
                                         + ", ".join(registered_names()[:2])):
        make("no_such_env")
    for name in registered_names():
        with pytest.raises(ValueError, match=rf"make\('{name}'\): .*'no_such_option'.*; options of '{name}'"):
            make(name, no_such_option=1)


@pytest.mark.parametrize("name", _params(slow_mjx=False))
def test_env_under_jit_and_vmap(name, envs):
    """One ``jit(vmap(reset + STEPS steps))``: shapes, dtypes, the context in the observation,
    finite values, the same key giving the same steps and another context other steps."""
    env = envs(name)
    space, dim = env.context_space, env.context_dim
    k_ctx, k_key, k_act = jax.random.split(jax.random.PRNGKey(1), 3)
    random = space.sample_uniform(k_ctx, (2,))
    corners = jnp.stack([space.low_array, space.high_array])
    # rows: 0 and 1 identical; 2 = row 0 at another context; 3 another key; 4, 5 the extreme corners
    contexts = jnp.concatenate([random[:1], random[:1], random[1:], random[1:], corners])
    keys = jax.random.split(k_key, 2)
    keys = jnp.stack([keys[0], keys[0], keys[0], keys[1], keys[0], keys[1]])
    actions = _actions(env, k_act, (STEPS,))
    actions = jnp.broadcast_to(actions, (6, *actions.shape))
    obs, reward, done, info_context = jax.jit(jax.vmap(_episode(env)))(keys, contexts, actions)

    assert obs.shape == (6, STEPS + 1, env.observation_size) and obs.dtype == jnp.float32
    assert reward.shape == done.shape == (6, STEPS)
    assert reward.dtype == done.dtype == jnp.float32
    assert set(np.unique(np.asarray(done))) <= {0.0, 1.0}
    np.testing.assert_array_equal(obs[..., env.state_obs_size:], np.broadcast_to(contexts[:, None], (6, STEPS + 1, dim)))
    np.testing.assert_array_equal(info_context, contexts)
    for values in (obs, reward):
        assert np.all(np.isfinite(values)) and np.abs(values).max() <= stability.STATE_LIMIT
    for values in (obs, reward, done):
        np.testing.assert_array_equal(values[0], values[1])  # same key, context and actions: the same steps, bit for bit
    state_obs = obs[..., : env.state_obs_size]
    moved = np.abs(state_obs[0] - state_obs[2]).max() + np.abs(reward[0] - reward[2]).max()
    assert moved > 0, "another context gave the same steps: is the context closed over?"


@pytest.mark.parametrize("name", _params(slow_mjx=False))
def test_env_context_jacobian_matches_finite_differences(name, envs):
    """Float64: ``context_jacobian`` and ``context_jvp`` (along a random step of a tenth of each
    range) after ``STEPS - 1`` random steps at a random context inside the space, against
    central differences of ``transition``."""
    with jax.enable_x64(True):
        env = envs(name, x64=True)
        space, dim = env.context_space, env.context_dim
        k_ctx, k_key, k_act = jax.random.split(jax.random.PRNGKey(2), 3)
        context = space.sample_uniform(k_ctx).astype(jnp.float64)
        actions = _actions(env, k_act, (STEPS,))
        widths = np.maximum(np.subtract(space.high, space.low), 1.0)
        h = H_REL * widths
        direction = np.asarray(jax.random.normal(k_ctx, (dim,), jnp.float64)) * widths / 10  # a CSE-sized step
        shifts = jnp.concatenate([jnp.diag(h), -jnp.diag(h), H_REL * np.stack([direction, -direction])])

        def program(key, context, actions):
            state = env.reset(key, context)
            state = jax.lax.fori_loop(0, STEPS - 1, lambda t, s: env.step(s, actions[t]), state)
            s, a = state.pipeline_state, actions[-1]
            grads = context_gradients.context_jacobian(env, s, a, context)
            jvp = context_gradients.context_jvp(env, s, a, context, direction)
            obs, reward = jax.vmap(env.transition, (None, None, 0))(s, a, context + shifts)
            return grads, jvp, obs, reward

        grads, jvp, obs, reward = jax.tree.map(np.asarray, jax.jit(program)(k_key, context, actions))
    assert grads.d_obs.shape == (env.state_obs_size, dim) and grads.d_reward.shape == (dim,)
    assert grads.d_obs.dtype == np.float64
    fd_obs = ((obs[:dim] - obs[dim : 2 * dim]) / (2 * h[:, None])).T
    fd_reward = (reward[:dim] - reward[dim : 2 * dim]) / (2 * h)
    fd_jvp = ((obs[-2] - obs[-1]) / (2 * H_REL), (reward[-2] - reward[-1]) / (2 * H_REL))
    for got, want, what in ((grads.d_obs, fd_obs, "d next_state_obs / dc"), (grads.d_reward, fd_reward, "d r / dc"),
                            (jvp[0], fd_jvp[0], "context_jvp next_state_obs"), (jvp[1], fd_jvp[1], "context_jvp r")):
        assert np.all(np.isfinite(got)), what
        err = np.abs(np.asarray(got) - np.asarray(want)) / (1.0 + np.abs(np.asarray(want)))
        assert err.max() <= FD_TOL, f"{name} {what}: error {err.max():.3g} relative to 1 + |FD| at context {context}"
    assert np.abs(grads.d_obs).max() + np.abs(grads.d_reward).max() > 0, "the transition ignores the context"


@pytest.mark.parametrize("name", _params(slow_mjx=True))
def test_env_is_stable_at_the_corners_of_its_context_space(name, envs):
    """Random-action rollouts of ``CHECK_STEPS`` steps from random initial states at the
    corners of the whole context space stay finite and below ``STATE_LIMIT``."""
    env = envs(name)
    found = stability.find_instability(env, stability.corner_contexts(env.context_space, range(env.context_dim)))
    assert found is None, f"{name} blows up at {found}"


@pytest.mark.parametrize("name", _params(slow_mjx=True))
def test_env_in_brax_training_wrappers(name, envs):
    """brax's ``training.wrap`` (vmap, episode, auto-reset) runs the env unchanged: truncation at
    the episode length, then the first state again, at the default context."""
    env = envs(name)
    episode_length, batch = 3, 2
    wrapped = training.wrap(env, episode_length=episode_length, action_repeat=1)
    step = jax.jit(wrapped.step)
    state = jax.jit(wrapped.reset)(jax.random.split(jax.random.PRNGKey(0), batch))
    assert state.obs.shape == (batch, env.observation_size)
    first_obs = state.obs
    default = np.tile(env.context_space.default_array, (batch, 1))
    np.testing.assert_array_equal(state.info["context"], default)
    actions = jnp.ones((batch,), jnp.int32) if env.discrete else jnp.full((batch, env.action_size), 0.5)
    for t in range(1, episode_length + 1):
        state = step(state, actions)
        np.testing.assert_array_equal(state.info["steps"], t)
        if t < episode_length:
            np.testing.assert_array_equal(state.done, 0.0)  # (an env that terminates this early fails here)
            assert not np.allclose(state.obs, first_obs)
    np.testing.assert_array_equal(state.done, 1.0)
    np.testing.assert_array_equal(state.info["truncation"], 1.0)
    np.testing.assert_array_equal(state.obs, first_obs)
    state = step(state, actions)
    np.testing.assert_array_equal(state.info["steps"], 1)
    np.testing.assert_array_equal(state.info["context"], default)


# -------------------------------------------------------------------- methods
def _changed_rows(batch, transition, n: int) -> np.ndarray:
    """``(n,)`` bool: the rows of ``batch`` that differ from the stored ``transition``."""
    changed = np.zeros(n, bool)
    for b, t in zip(jax.tree.leaves(batch), jax.tree.leaves(transition)):
        changed |= ~np.all(np.asarray(b).reshape(n, -1) == np.asarray(t).reshape(n, -1), axis=1)
    return changed


def _same(a, b):
    a, b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module", params=method_names())
def method_run(request):
    """A method's tiny trainer, its compiled init and chunk programs, and the state and metrics
    after the first chunk (``TINY_CHUNK_ITERATIONS`` iterations) of ``TINY_SEEDS`` seeds.

    The programs are the runner's (the ones ``zsgjax train`` runs, so the CLI tests' compilations
    are reused); the chunk program donates its argument: pass it a copy to keep a state.
    """
    config = TrainConfig(method=request.param, **TINY_TRAIN)
    trainer = make_train(config)
    keys = runner.seed_keys(trainer, TINY_SEEDS)
    init = runner.compile_init(trainer, keys)
    state0 = init(keys)
    chunk = runner.compile_chunk(trainer, TINY_CHUNK_ITERATIONS, state0)
    state, metrics = chunk(_copy(state0))
    return config, trainer, init, chunk, state0, state, metrics


def _copy(tree):
    return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


@pytest.mark.xdist_group("tiny_train")
def test_method_trains_and_resumes_exactly(method_run, tmp_path):
    """Two iterations train (finite losses, the policy moves); a checkpoint restores the
    state exactly, and one more chunk from it equals the uninterrupted run bit for bit."""
    config, trainer, init, chunk, state0, state, metrics = method_run
    iterations = TINY_CHUNK_ITERATIONS
    np.testing.assert_array_equal(state.iteration, [iterations] * TINY_SEEDS)
    np.testing.assert_array_equal(state.env_steps, [iterations * TINY_TRAIN["steps_per_iteration"]] * TINY_SEEDS)
    assert np.asarray(metrics["updates"]).sum() > 0
    for key, value in metrics.items():
        assert np.asarray(value).shape[:2] == (TINY_SEEDS, iterations), key
        assert np.all(np.isfinite(np.asarray(value, np.float64))), key
    before, after = (jax.tree.leaves(trainer.policy_params(s)) for s in (state0, state))
    assert any(not np.array_equal(a, b) for a, b in zip(before, after)), "two iterations left the policy unchanged"

    Checkpointer(tmp_path / "ck", config).save(iterations, state)
    like = init(jax.random.split(jax.random.PRNGKey(123), TINY_SEEDS))
    restored = Checkpointer(tmp_path / "ck", config).restore(like)
    _same(restored, state)
    resumed, _ = chunk(restored)
    uninterrupted, _ = chunk(_copy(state))
    _same(resumed, uninterrupted)


@pytest.mark.xdist_group("tiny_train")
def test_method_weight_mask(method_run):
    """``training_batch`` weights: 1 for stored-valid samples with finite extras, 0 for stored-invalid
    ones (``valid_weight``), 0 for a sample the method enhances whose extras are non-finite (an
    invalid enhanced sample, counted in ``dropped``); no weighted sample is non-finite."""
    _, trainer, _, _, _, state, _ = method_run
    replay = jax.tree.map(lambda x: x[0], state.replay)
    items = trainer.replay.sample(replay, jax.random.PRNGKey(3))
    n = items.transition.reward.shape[0]
    prepare = jax.jit(trainer.training_batch)

    batch, weight, dropped = jax.tree.map(np.asarray, prepare(items, jax.random.PRNGKey(4)))
    assert weight.shape == (n,) and weight.dtype == np.float32
    np.testing.assert_array_equal(weight, 1.0)
    assert int(dropped) == 0 and all(np.all(np.isfinite(x)) for x in jax.tree.leaves(batch))
    enhanced = _changed_rows(batch, items.transition, n)  # the samples the method moves (with the same key)

    invalid = np.zeros(n, bool)
    invalid[:2] = True  # stored non-finite: weight 0 whatever the method does
    poisoned = np.zeros(n, bool)
    poisoned[2:5] = True  # non-finite stored extras (context gradients, pre-step states)

    def poison(x):
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            return x
        return jnp.where(poisoned.reshape((n,) + (1,) * (x.ndim - 1)), jnp.nan, x)

    bad = items.replace(valid=jnp.asarray(~invalid), extras=jax.tree.map(poison, items.extras))
    batch, weight, dropped = jax.tree.map(np.asarray, prepare(bad, jax.random.PRNGKey(4)))
    np.testing.assert_array_equal(weight[invalid], 0.0)
    np.testing.assert_array_equal(weight[poisoned], np.where(enhanced[poisoned], 0.0, 1.0))
    np.testing.assert_array_equal(weight[~invalid & ~poisoned], 1.0)
    assert int(dropped) == int(np.sum((weight == 0) & ~invalid))
    for leaf in jax.tree.leaves(batch):
        assert np.all(np.isfinite(np.asarray(leaf, np.float64)[weight > 0]))
