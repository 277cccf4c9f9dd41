"""Bad input at every public entry point: a ``ValueError`` (exit status 2 on the CLI) naming the argument.

A sweep over the environments (``make``, ``reset``, ``step``), ``ContextSpace``,
``TrainConfig`` / ``make_train`` / ``RunSpec`` fields, ``evaluate`` / ``make_grid``,
the offline functions (PEVI, PERM, PPPO, datasets), ``Checkpointer``, the atomic file
writer and ``zsgjax train``: wrong shapes, NaN / inf, out-of-range values, wrong types
and unknown names, given as Python, NumPy or jax values alike. Checks of values run
on concrete inputs only, so ``jit`` / ``vmap`` keep working (tested too).

Nothing here trains or compiles more than a trivial program: every error is raised
before the work starts.
"""

import csv
import os
import re
import stat

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax import cli, runner
from zsgjax import evaluate as ev
from zsgjax.checkpoint import Checkpointer
from zsgjax.envs import ContextSpace, make
from zsgjax.offline.linear import dataset as ds
from zsgjax.offline.linear import mdp as lm
from zsgjax.offline.linear import perm, pevi, pppo
from zsgjax.offline.linear.dataset import LinearData
from zsgjax.reporting import files
from zsgjax.reporting.metrics_log import MetricsLog
from zsgjax.train import TrainConfig, make_train

from _tiny import TINY_TRAIN  # noqa: E402

INT32_MAX = 2**31 - 1
KEY = jax.random.PRNGKey(0)
NAN, INF = float("nan"), float("inf")


def raises(match):
    return pytest.raises(ValueError, match=match)


# ------------------------------------------------------------------ environments
@pytest.fixture(scope="module")
def envs():
    return {name: make(name) for name in ("simple_direction", "cart_goal")}


CART_DEFAULT = [10.0, 0.1, 1.0, 0.5, 0.0]


@pytest.mark.parametrize(
    "context, match",
    [
        ([10.0, 0.1, 1.0, 0.5, NAN], r"CartGoal.reset: `context` dimension 'goal' = nan is non-finite"),
        (np.array([10.0, 0.1, 1.0, 0.5, INF]), r"`context` dimension 'goal' = inf is non-finite"),
        (jnp.array([10.0, 0.1, 1.0, 0.5, 5.0]), r"`context` dimension 'goal' = 5 is outside its range \[-4, 4\]"),
        (jnp.array([0.0, 0.1, 1.0, 0.5, 0.0]), r"`context` dimension 'g' = 0 is outside its range \[1, 12\]"),
        (np.array([10, 0, 1, 1, 0]), r"dimension 'm_pole' = 0 is outside its range"),
        (["a"] * 5, r"`context` must be a real-valued array"),
        (np.array(CART_DEFAULT, dtype=complex), r"`context` must be a real-valued array"),
        (np.ones(5, dtype=bool), r"`context` must be a real-valued array"),
        ("10,0.1,1,0.5,0", r"`context` must have shape \(5,\)"),
        (jnp.zeros((1, 5)), r"`context` must have shape \(5,\)"),
    ],
)
def test_reset_rejects_bad_context(envs, context, match):
    with raises(match):
        envs["cart_goal"].reset(KEY, context)


def test_reset_context_check_matches_the_space(envs):
    """Before: a NaN context reset fine and every cart observation was NaN."""
    env = envs["cart_goal"]
    state = env.reset(KEY, np.array(CART_DEFAULT, np.float32))  # NumPy and lists are fine when valid
    assert np.all(np.isfinite(state.obs))
    env.reset(KEY, [12.0, 2.0, 2.0, 2.0, -4.0])  # the bounds themselves are inside


@pytest.mark.parametrize("rng", [0, jnp.zeros(2, jnp.int32), jax.random.split(KEY, 3), jax.random.split(jax.random.key(0), 2), "key"])
def test_reset_rejects_bad_rng(envs, rng):
    with raises(r"SimpleDirection.reset: `rng` must be a single PRNG key"):
        envs["simple_direction"].reset(rng)


@pytest.mark.parametrize(
    "name, action, match",
    [
        ("simple_direction", jnp.zeros(1), r"SimpleDirection.step: `action` must be an array of shape \(2,\), got shape \(1,\)"),
        ("simple_direction", jnp.zeros(()), r"`action` must be an array of shape \(2,\), got shape \(\)"),
        ("simple_direction", np.zeros((2, 2)), r"`action` must be an array of shape \(2,\)"),
        ("simple_direction", [0.0, NAN], r"`action` must be finite"),
        ("simple_direction", ["a", "b"], r"`action` must be a real array"),
        ("cart_goal", 2, r"CartGoal.step: `action` must be an integer scalar in \[0, 2\), got 2"),
        ("cart_goal", jnp.int32(-1), r"`action` must be an integer scalar in \[0, 2\)"),
        ("cart_goal", 0.5, r"`action` must be an integer scalar in \[0, 2\)"),
        ("cart_goal", jnp.array([1]), r"`action` must be an integer scalar in \[0, 2\), got shape \(1,\)"),
    ],
)
def test_step_rejects_bad_action(envs, name, action, match):
    env = envs[name]
    state = env.reset(KEY)
    with raises(match):
        env.step(state, action)


def test_step_rejects_bad_state_and_accepts_good_actions(envs):
    env = envs["cart_goal"]
    with raises(r"CartGoal.step: `state` must be a brax State"):
        env.step({"obs": 0}, 1)
    state = env.reset(KEY)
    for action in (0, 1, np.int64(1), jnp.int32(0), 1.0):
        env.step(state, action)


def test_checks_skip_traced_values(envs):
    """Under jit and vmap the values are not checked (not known), the static shapes still are."""
    env = envs["simple_direction"]
    reset = jax.jit(env.reset)
    state = reset(KEY, jnp.array([0.5, -0.5]))
    state = jax.jit(env.step)(state, jnp.zeros(2))
    assert state.obs.shape == (4,)
    batch = jax.vmap(env.reset)(jax.random.split(KEY, 3), jnp.zeros((3, 2)))
    assert batch.obs.shape == (3, 4)
    with raises(r"`context` must have shape \(2,\)"):
        jax.jit(env.reset)(KEY, jnp.zeros(3))
    with raises(r"`action` must be an array of shape \(2,\)"):
        jax.jit(env.step)(state, jnp.zeros(3))


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("mars_lander", {}, r"unknown environment 'mars_lander'; known environments: .*simple_direction"),
        (None, {}, r"unknown environment 'None'"),
        ("pendulum_goal", {"integrater": "gym"}, r"make\('pendulum_goal'\): .*'integrater'; options of 'pendulum_goal': integrator"),
        ("simple_direction", {"horizon": 3}, r"'horizon'; options of 'simple_direction': none"),
        ("pendulum_goal", {"integrator": "rk4"}, r"`integrator` must be one of"),
        ("cart_goal", {"x_threshold": NAN}, r"`x_threshold` must be a finite number > 0"),
        ("cart_goal", {"x_threshold": "wide"}, r"`x_threshold` must be a finite number > 0"),
        ("cart_goal", {"x_threshold": jnp.float32(-1.0)}, r"`x_threshold` must be a finite number > 0"),
    ],
)
def test_make_rejects_unknown_names_and_options(name, kwargs, match):
    with raises(match):
        make(name, **kwargs)


# ------------------------------------------------------------------ context spaces
SPACE = ContextSpace(("g", "m"), low=(1.0, 0.5), high=(10.0, 2.0), default=(5.0, 1.0))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ContextSpace("gm", 0, 1, 0), r"`names` must be a sequence of names"),
        (lambda: ContextSpace((1, 2), 0, 1, 0), r"`names` must be non-empty strings"),
        (lambda: ContextSpace(("a", ""), 0, 1, 0), r"`names` must be non-empty strings"),
        (lambda: ContextSpace(("a",), "low", 1, 0), r"`low` must be 1 number"),
        (lambda: ContextSpace(("a",), 0, [1j], 0), r"`high` must be 1 real number"),
        (lambda: ContextSpace(("a",), 0, 1, INF), r"`default` must be finite"),
        (lambda: SPACE.validate([5.0, NAN]), r"`context` dimension 'm' = nan is non-finite; its range is \[0.5, 2\]"),
        (lambda: SPACE.validate(np.array([[5.0, 1.0], [11.0, 1.0]]), "contexts"), r"`contexts` dimension 'g' = 11"),
        (lambda: SPACE.validate(["g", "m"]), r"`context` must be a real-valued array"),
        (lambda: SPACE.validate(None), r"`context` must be a numeric array"),
        (lambda: SPACE.validate(jnp.zeros(3)), r"`context` must have trailing dimension 2"),
        (lambda: SPACE.index(True), r"context dimension must be a name or an integer index"),
        (lambda: SPACE.index("l"), r"unknown context dimension 'l'"),
        (lambda: SPACE.index(jnp.int32(5)), r"context dimension index 5 out of range"),
        (lambda: SPACE.subspace("gm"), r"subspace: `names` must be a sequence"),
        (lambda: SPACE.sweep("g", 0), r"sweep: `num` must be >= 1 \(an integer\), got 0"),
        (lambda: SPACE.sweep("g", 2.5), r"sweep: `num` must be >= 1 \(an integer\), got 2.5"),
        (lambda: SPACE.sweep_values("g", True), r"sweep_values: `num` must be >= 1 \(an integer\)"),
        (lambda: SPACE.sweep("g", 2**31), r"sweep: `num` must be >= 1"),
        (lambda: SPACE.sample_local(KEY, scale=NAN), r"sample_local: `scale` must be a finite number >= 0"),
        (lambda: SPACE.sample_local(KEY, scale=-0.1), r"sample_local: `scale`"),
        (lambda: SPACE.sample_local(KEY, center=[20.0, 1.0]), r"`center` dimension 'g' = 20 is outside its range"),
        (lambda: SPACE.sample_local(3, scale=0.1), r"sample_local: `rng` must be a single PRNG key"),
        (lambda: SPACE.sample_uniform(jax.random.split(KEY, 2)), r"sample_uniform: `rng` must be a single PRNG key"),
        (lambda: SPACE.sample_uniform(KEY, shape=4), r"sample_uniform: `shape` must be a tuple of non-negative integers"),
        (lambda: SPACE.sample_uniform(KEY, shape=(2.5,)), r"sample_uniform: `shape` must be an integer >= 0"),
        (lambda: SPACE.with_default((0.0, 1.0)), r"default of dimension 'g' is 0.0, outside its range"),
    ],
)
def test_context_space_rejects_bad_input(call, match):
    with raises(match):
        call()


def test_context_space_accepts_numpy_and_jax_indices():
    assert SPACE.index(np.int64(1)) == SPACE.index(jnp.int32(1)) == 1
    assert SPACE.sweep("m", np.int64(3)).shape == (3, 2)


# ------------------------------------------------------------------ configs
@pytest.mark.parametrize(
    "field, value, match",
    [
        ("actor_lr", INF, r"^TrainConfig.actor_lr must be a finite number > 0 \(or None for the preset\), got inf$"),
        ("critic_lr", NAN, r"TrainConfig.critic_lr must be a finite number > 0"),
        ("critic_lr", np.float32(-1.0), r"TrainConfig.critic_lr must be a finite number > 0"),
        ("gamma", 1.5, r"TrainConfig.gamma must be a finite number in \[0, 1\] .*, got 1.5$"),
        ("gamma", "0.9", r"TrainConfig.gamma must be a finite number in \[0, 1\] .*, got '0.9'$"),
        ("gamma", jnp.float32(0.9), r"TrainConfig.gamma .*a jax array is not accepted in a config"),
        ("total_steps", 2**31, r"TrainConfig.total_steps must be an integer >= 1 and at most 2147483647"),
        ("total_steps", 0, r"^TrainConfig.total_steps must be an integer >= 1, got 0$"),
        ("total_steps", 100.0, r"TrainConfig.total_steps must be an integer >= 1"),
        ("total_steps", jnp.int32(100), r"TrainConfig.total_steps .*a jax array is not accepted"),
        ("seed", 2**32, r"TrainConfig.seed must be an integer >= 0 and at most 2147483647"),
        ("seed", -1, r"TrainConfig.seed must be an integer >= 0"),
        ("num_envs", True, r"TrainConfig.num_envs must be an integer >= 1"),
        ("learning_starts", 2**40, r"TrainConfig.learning_starts must be an integer >= 0 .*and at most 2147483647"),
        ("hidden_sizes", (64, 2**31), r"TrainConfig.hidden_sizes must be a non-empty tuple of integers >= 1.* at most"),
        ("hidden_sizes", (), r"TrainConfig.hidden_sizes must be a non-empty tuple"),
        ("env", "mars_lander", r"TrainConfig.env must be one of .*simple_direction"),
        ("method", "magic", r"TrainConfig.method must be one of .*cse"),
        ("cse_mode", "second_order", r"TrainConfig.cse_mode must be one of first_order, exact"),
        ("prioritized_replay", "yes", r"TrainConfig.prioritized_replay must be True or False .*, got 'yes'"),
        ("importance_exponent", 2.0, r"TrainConfig.importance_exponent must be a finite number in \[0, 1\]"),
    ],
)
def test_train_config_fields(field, value, match):
    with raises(match):
        TrainConfig(**{field: value}).validate()


def test_argument_and_config_checks_are_one_engine():
    """``zsgjax.checks`` (function arguments) and configs word a refusal alike; only the
    conversion of what a caller may pass (NumPy / jax scalars) is the argument layer's."""
    from zsgjax import checks

    def message(call):
        with pytest.raises(ValueError) as e:
            call()
        return str(e.value)

    assert message(lambda: checks.real(jnp.float32(1.5), "`gamma`", low=0.0, high=1.0)) == \
        "`gamma` must be a finite number in [0, 1], got 1.5"
    assert message(lambda: TrainConfig(gamma=1.5)) == \
        "TrainConfig.gamma must be a finite number in [0, 1] (or None for the preset), got 1.5"
    assert message(lambda: checks.integer(np.int64(0), "`n`", low=1)) == "`n` must be an integer >= 1, got 0"
    assert message(lambda: TrainConfig(total_steps=0)) == "TrainConfig.total_steps must be an integer >= 1, got 0"
    assert message(lambda: checks.boolean("yes", "`named`")) == "`named` must be True or False, got 'yes'"
    too_big = "must be an integer >= 1 and at most 2147483647 (the int32 limit of the jitted programs), got 2147483648"
    assert message(lambda: checks.integer(2**31, "`n`", low=1)) == "`n` " + too_big
    assert message(lambda: TrainConfig(total_steps=2**31)) == "TrainConfig.total_steps " + too_big
    assert checks.integer(2**40, "`n`", low=1, high=None) == 2**40  # no upper bound at all (host-side counts)
    assert message(lambda: checks.integer(6, "`k`", low=1, high=5)) == "`k` must be an integer in [1, 5], got 6"


def test_train_config_accepts_numpy_scalars():
    TrainConfig(total_steps=np.int64(100), gamma=np.float32(0.9), seed=np.uint32(7)).validate()


@pytest.mark.parametrize(
    "fields, match",
    [
        (dict(env="cart_goal", dqn_lr=INF), r"TrainConfig.dqn_lr must be a finite number > 0"),
        (dict(batch_size=256, buffer_size=128), r"TrainConfig.batch_size must be in \[1, buffer_size=128\]"),
        (dict(steps_per_iteration=10, num_envs=4), r"TrainConfig.steps_per_iteration must be a positive multiple"),
        (dict(buffer_size=2**29 + 1), r"TrainConfig.buffer_size must be an integer in \[1, 536870912\]"),
    ],
)
def test_make_train_fields(fields, match):
    with raises(match):
        make_train(TrainConfig(**fields))


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("seeds", 0, r"^RunSpec.seeds must be an integer >= 1, got 0$"),
        ("seeds", 2**40, r"RunSpec.seeds must be an integer >= 1 and at most 2147483647"),
        ("chunks", 1.5, r"RunSpec.chunks must be an integer >= 1"),
        ("keep", np.float64(2.0), r"RunSpec.keep must be an integer >= 1"),
        ("eval_episodes", jnp.int32(2), r"RunSpec.eval_episodes .*a jax array is not accepted"),
        ("sweep_points", 1, r"RunSpec.sweep_points must be an integer >= 2"),
        ("tensorboard", "yes", r"RunSpec.tensorboard must be True or False"),
        ("sweep_dims", ["g"], r"RunSpec.sweep_dims must be None \(every dimension\) or a tuple of context dimension "
                              r"names \(\(\) for the named contexts only\), got \['g'\]"),
        ("sweep_dims", ("g", ""), r"RunSpec.sweep_dims must be None"),
    ],
)
def test_run_spec_fields(field, value, match):
    with raises(match):
        runner.RunSpec(**{field: value}).validate()


# ------------------------------------------------------------------ evaluation
PARAMS = {"w": jnp.zeros((2, 3))}  # a leading seed axis S = 2


def _act(params, obs):
    return jnp.zeros(2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(contexts=[[NAN, 0.0]]), r"`contexts` dimension 'c_x' = nan is non-finite"),
        (dict(contexts=[[2.0, 0.0]]), r"`contexts` dimension 'c_x' = 2 is outside its range \[-1, 1\]"),
        (dict(contexts=[["a", "b"]]), r"`contexts` must be a real array"),
        (dict(contexts=np.zeros((2, 3))), r"`contexts` must have trailing dimension 2"),
        (dict(contexts=np.zeros((0, 2))), r"`contexts` must have shape \(C, 2\) with C >= 1"),
        (dict(num_episodes=0), r"`num_episodes` must be a positive integer"),
        (dict(num_episodes=2.5), r"`num_episodes` must be a positive integer"),
        (dict(num_episodes=True), r"`num_episodes` must be a positive integer"),
        (dict(num_episodes=2**31), r"`num_episodes` must be a positive integer \(at most 2147483647\)"),
        (dict(rng=0), r"`rng` must be a single PRNG key"),
        (dict(rng=jax.random.split(KEY, 2)), r"`rng` must be a single PRNG key"),
        (dict(params={"w": jnp.full((2, 3), NAN)}), r"`params` leaf \['w'\] has non-finite values"),
        (dict(params={"w": jnp.zeros(())}), r"`params` must carry one leading seed axis"),
        (dict(act_fn="greedy"), r"`act_fn` must be a callable"),
        (dict(env="simple_direction"), r"`env` must be a ContextualEnv"),
        (dict(evaluator=3), r"`evaluator` must be a function from make_evaluator"),
    ],
)
def test_evaluate_rejects_bad_input(envs, kwargs, match):
    args = dict(env=envs["simple_direction"], act_fn=_act, params=PARAMS, contexts=[[0.0, 0.0]], num_episodes=2, rng=KEY)
    args.update(kwargs)
    with raises(match):
        ev.evaluate(args.pop("env"), args.pop("act_fn"), args.pop("params"), args.pop("contexts"), **args)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_points=1), r"`num_points` must be >= 2"),
        (dict(num_points=3.0), r"`num_points` must be a positive integer"),
        (dict(dims="c_x"), r"`dims` must be a sequence of dimension names .*got the string 'c_x'"),
        (dict(dims=["c_z"]), r"`dims`: unknown context dimension 'c_z'"),
        (dict(named="yes"), r"`named` must be True or False"),
    ],
)
def test_make_grid_rejects_bad_input(envs, kwargs, match):
    with raises(match):
        ev.make_grid(envs["simple_direction"], **kwargs)


def test_make_grid_and_evaluate_grid_types(envs):
    assert len(ev.make_grid(envs["simple_direction"], num_points=np.int64(3), dims=["c_y"], named=np.bool_(False))) == 3
    with raises(r"`env` must be a ContextualEnv"):
        ev.make_grid(SPACE)
    with raises(r"`grid` must be a ContextGrid"):
        ev.evaluate_grid(envs["simple_direction"], _act, PARAMS, np.zeros((1, 2)), num_episodes=1, rng=KEY)


# ------------------------------------------------------------------ offline
S, A, H, N, K = 3, 2, 2, 2, 4


@pytest.fixture(scope="module")
def offline():
    fam, support = lm.two_context_mdp(delta=0.05)  # S=3, A=2, H=2, d=6
    rs = np.random.default_rng(0)
    data = ds.OfflineDataset(
        states=jnp.asarray(rs.integers(0, S, (N, K, H)), jnp.int32), actions=jnp.asarray(rs.integers(0, A, (N, K, H)), jnp.int32),
        rewards=jnp.asarray(rs.random((N, K, H)), jnp.float32), next_states=jnp.asarray(rs.integers(0, S, (N, K, H)), jnp.int32),
        context_ids=jnp.arange(N, dtype=jnp.int32), contexts=jnp.asarray(support[np.arange(N) % 2], jnp.float32),
        num_states=S, num_actions=A,
    )
    return fam, data


def _damaged(data, **changes):
    return data.replace(**{k: jnp.asarray(v) for k, v in changes.items()})


DATA_FAULTS = [
    (lambda d: d.replace(states=d.states[:0], actions=d.actions[:0], rewards=d.rewards[:0], next_states=d.next_states[:0],
                         context_ids=d.context_ids[:0], contexts=d.contexts[:0]), r"n \(environments\) is 0"),
    (lambda d: d.replace(states=d.states[:, :0], actions=d.actions[:, :0], rewards=d.rewards[:, :0],
                         next_states=d.next_states[:, :0]), r"K \(episodes\) is 0"),
    (lambda d: _damaged(d, states=_set(d.states, S)), r"`dataset.states` must hold indices in \[0, 3\), found 3"),
    (lambda d: _damaged(d, next_states=_set(d.next_states, -1)), r"`dataset.next_states` must hold indices in \[0, 3\), found -1"),
    (lambda d: _damaged(d, actions=_set(d.actions, A)), r"`dataset.actions` must hold indices in \[0, 2\), found 2"),
    (lambda d: _damaged(d, states=np.asarray(d.states, np.float32)), r"`dataset.states` must be an integer array"),
    (lambda d: _damaged(d, rewards=_set(d.rewards, NAN)), r"`dataset.rewards` must be finite"),
    (lambda d: _damaged(d, rewards=np.asarray(d.rewards)[:, :, :1]), r"`dataset.rewards` must have shape \(2, 4, 2\)"),
    (lambda d: _damaged(d, contexts=np.asarray(d.contexts)[:1]), r"`dataset.contexts` must have shape \(2, \*\)"),
    (lambda d: d.replace(num_states=0), r"`dataset.num_states` must be an integer >= 1, got 0"),
    (lambda d: {"states": d.states}, r"`dataset` must be an OfflineDataset"),
]


def _set(x, value):
    arr = np.array(x)
    arr.flat[0] = value
    return arr


@pytest.mark.parametrize("fault, match", DATA_FAULTS)
@pytest.mark.parametrize("entry", ["pevi", "run_perm", "perm_enumerate", "run_pppo", "save"])
def test_offline_rejects_bad_datasets(offline, tmp_path, entry, fault, match):
    """Before: n = 0 or K = 0 gave NaN values, an index out of range was clamped silently."""
    fam, data = offline
    bad = fault(data)
    call = {
        "pevi": lambda: pevi.pevi(fam.phi, bad, beta=0.1),
        "run_perm": lambda: perm.run_perm(KEY, LinearData(fam.phi, bad), perm.PERMConfig(0.1, iterations=2)),
        "perm_enumerate": lambda: perm.perm_enumerate(LinearData(fam.phi, bad), 0.1),
        "run_pppo": lambda: pppo.run_pppo(KEY, LinearData(fam.phi, bad), pppo.PPPOConfig(0.1)),
        "save": lambda: ds.save_dataset(tmp_path / "bad.npz", bad),
    }[entry]
    with raises(match):
        call()
    assert not os.path.exists(tmp_path / "bad.npz")


@pytest.mark.parametrize(
    "beta, lam, match",
    [
        (jnp.float32(-0.5), 1.0, r"`beta` \(pessimism coefficient\) must be a finite number >= 0, got -0.5"),
        (np.float32(-0.5), 1.0, r"`beta` \(pessimism coefficient\) must be a finite number >= 0"),
        (jnp.asarray(NAN), 1.0, r"`beta` .* got nan"),
        (INF, 1.0, r"`beta` .* got inf"),
        (jnp.ones(2), 1.0, r"`beta` .* \(a scalar\), got an array of shape \(2,\)"),
        ("0.1", 1.0, r"`beta` .* got '0.1'"),
        (0.1, jnp.asarray(0.0), r"`lam` \(ridge lambda\) must be a finite number > 0, got 0.0"),
        (0.1, np.float64(-1.0), r"`lam` \(ridge lambda\) must be a finite number > 0"),
        (0.1, INF, r"`lam` .* got inf"),
    ],
)
@pytest.mark.parametrize("entry", ["pevi", "perm_enumerate"])  # run_perm/run_pppo: their configs (test_offline_perm)
def test_offline_rejects_bad_coefficients(offline, entry, beta, lam, match):
    """Before: a jax-array beta skipped the host checks (a negative beta makes PEVI optimistic)."""
    fam, data = offline
    call = {
        "pevi": lambda: pevi.pevi(fam.phi, data, beta=beta, lam=lam),
        "perm_enumerate": lambda: perm.perm_enumerate(LinearData(fam.phi, data), beta, lam),
    }[entry]
    with raises(match):
        call()


@pytest.mark.parametrize("lam", [jnp.asarray(-1.0), np.float32(0.0), NAN])
def test_dataset_statistics_rejects_bad_lambda(offline, lam):
    fam, data = offline
    with raises(r"`lam` \(ridge lambda\) must be a finite number > 0"):
        pevi.dataset_statistics(fam.phi, data, lam)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda fam, d: pevi.pevi(jnp.full_like(fam.phi, NAN), d, beta=0.1), r"`phi` must be finite"),
        (lambda fam, d: pevi.pevi(fam.phi[:, :, :0], d, beta=0.1), r"`phi` must have shape \(S, A, d\) = \(3, 2, d\), d >= 1"),
        (lambda fam, d: pevi.pevi(fam.phi, d, policy=jnp.full((H, S, A), NAN), beta=0.1), r"`policy` must hold action probabilities"),
        (lambda fam, d: pevi.pevi(fam.phi, d, policy=jnp.ones((H, S, A)), beta=0.1), r"`policy` must hold action probabilities"),
        (lambda fam, d: pevi.pevi(fam.phi, d, policy=jnp.ones((S, A)), beta=0.1), r"`policy` must have shape \(H, S, A\)"),
        (lambda fam, d: perm.run_perm(0, LinearData(fam.phi, d)), r"run_perm: `key` must be a single PRNG key"),
        (lambda fam, d: perm.run_perm(KEY, LinearData(fam.phi, d), perm.PERMConfig(iterations=2.5)), r"PERMConfig.iterations must be an integer"),
        (lambda fam, d: perm.run_perm(KEY, LinearData(fam.phi, d), perm.PERMConfig(num_restarts=0)), r"PERMConfig.num_restarts"),
        (lambda fam, d: perm.run_perm(KEY, LinearData(fam.phi, d), perm.PERMConfig(learning_rate=INF)), r"PERMConfig.learning_rate"),
        (lambda fam, d: perm.run_perm(KEY, LinearData(fam.phi, d), perm.PERMConfig(init_scale=NAN)), r"PERMConfig.init_scale"),
        (lambda fam, d: perm.perm_enumerate(LinearData(fam.phi, d), 0.1, batch_size=0), r"perm_enumerate: `batch_size`"),
        (lambda fam, d: perm.perm_enumerate(LinearData(fam.phi, d), 0.1, max_policies=1.5), r"perm_enumerate: `max_policies`"),
        (lambda fam, d: pppo.run_pppo("key", LinearData(fam.phi, d)), r"run_pppo: `key` must be a single PRNG key"),
        (lambda fam, d: pppo.run_pppo(KEY, LinearData(fam.phi, d), pppo.PPPOConfig(step_size=INF)), r"PPPOConfig.step_size"),
        (lambda fam, d: pppo.run_pppo(KEY, LinearData(fam.phi, d), pppo.PPPOConfig(step_size=-1.0)), r"PPPOConfig.step_size"),
        (lambda fam, d: pevi.theory_beta(2.5, 2, 10), r"theory_beta: `dim` must be an integer >= 1"),
        (lambda fam, d: pevi.theory_beta(2, 2, 0), r"theory_beta: `num_episodes` must be an integer >= 1"),
        (lambda fam, d: pevi.theory_beta(2, 2, 10, xi=NAN), r"theory_beta: `xi` must be a finite number in \(0, 1\)"),
        (lambda fam, d: pevi.theory_beta(2, 2, 10, c=-1.0), r"theory_beta: `c`"),
        (lambda fam, d: pevi.default_beta(2, True, 10), r"theory_beta: `horizon`"),
        (lambda fam, d: d.subset(num_envs=1.5), r"subset: `num_envs` must be an integer"),
        (lambda fam, d: ds.behaviour_policy(jnp.ones((H, S, A)) / A, coverage="high"), r"behaviour_policy: `coverage`"),
        (lambda fam, d: ds.behaviour_policy(jnp.ones((H, S, A)) / A, coverage=NAN), r"behaviour_policy: `coverage`"),
        (lambda fam, d: ds.behaviour_policy(jnp.ones((H, S, A)), coverage=0.5), r"`anchor` must hold action probabilities"),
        (lambda fam, d: ds.collect_dataset(KEY, fam, np.eye(2), ds.uniform_policy(H, S, A), num_episodes=2.5), r"collect_dataset: `num_episodes` must be an integer"),
        (lambda fam, d: ds.collect_dataset(KEY, fam, np.eye(2), ds.uniform_policy(H, S, A), 2, noisy_rewards="no"), r"collect_dataset: `noisy_rewards` must be True or False"),
        (lambda fam, d: ds.collect_dataset(KEY[None], fam, np.eye(2), ds.uniform_policy(H, S, A), 2), r"collect_dataset: `key`"),
        (lambda fam, d: ds.collect_dataset(KEY, fam, np.eye(2), jnp.full((H, S, A), NAN), 2), r"`behaviour` must hold action probabilities"),
    ],
)
def test_offline_rejects_bad_arguments(offline, call, match):
    fam, data = offline
    with raises(match):
        call(fam, data)


def test_dataset_files_refuse_directories_and_bad_headers(offline, tmp_path):
    _, data = offline
    with raises(r"`path` .* is a directory"):
        ds.save_dataset(tmp_path, data)
    with raises(r"`path` must name a file"):
        ds.save_dataset(str(tmp_path) + os.sep, data)
    good = tmp_path / "good.npz"
    ds.save_dataset(good, data)
    with np.load(good) as z:
        fields = {k: z[k] for k in z.files}
    for change, match in (({"num_states": np.asarray([3, 3])}, r"header field `num_states` must be an integer"),
                          ({"num_episodes": np.asarray(0), "states": fields["states"][:, :0], "actions": fields["actions"][:, :0],
                            "rewards": fields["rewards"][:, :0], "next_states": fields["next_states"][:, :0]},
                           r"K \(episodes\) is 0"),
                          ({"rewards": fields["rewards"].astype(str)}, r"field `rewards` must be real")):
        np.savez(tmp_path / "bad.npz", **{**fields, **change})
        with raises(match):
            ds.load_dataset(tmp_path / "bad.npz")


# ------------------------------------------------------------------ files and checkpoints
@pytest.fixture
def umask():
    def set_mask(mask):
        old = os.umask(mask)
        masks.append(old)
        return mask

    masks = []
    yield set_mask
    if masks:
        os.umask(masks[0])


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_atomic_write_respects_umask(tmp_path, umask, mask):
    """Before: every result file was 0600 (from mkstemp), whatever the umask."""
    umask(mask)
    assert files.current_umask() == mask
    path = tmp_path / "result.txt"
    files.atomic_write(path, "x")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask
    files.atomic_write(path, "y")  # replacing keeps the umask's mode too
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask


def test_dataset_files_respect_umask(offline, tmp_path, umask):
    _, data = offline
    umask(0o022)
    ds.save_dataset(tmp_path / "d.npz", data)
    assert stat.S_IMODE(os.stat(tmp_path / "d.npz").st_mode) == 0o644


@pytest.mark.parametrize(
    "target, match",
    [
        (lambda d: d, r"`path` .* is a directory; give the path of a file"),
        (lambda d: str(d) + os.sep, r"`path` must name a file"),
        (lambda d: "", r"`path` must name a file"),
        (lambda d: d / "a-file" / "x.txt", r"a parent of it is a file"),
        (lambda d: 3.5, r"`path` must be a file path"),
    ],
)
def test_atomic_write_refuses_directory_paths(tmp_path, target, match):
    (tmp_path / "a-file").write_text("")
    with raises(match):
        files.atomic_write(target(tmp_path), "x")
    assert sorted(os.listdir(tmp_path)) == ["a-file"]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda d: Checkpointer(d / "a-file", {}), r"`directory` .* cannot be a checkpoint directory: .*a-file' is a file"),
        (lambda d: Checkpointer(d / "a-file" / "sub", {}), r"`directory` .*a-file' is a file"),
        (lambda d: Checkpointer(None, {}), r"`directory` must be a path"),
        (lambda d: Checkpointer(d / "ck", {}, max_to_keep=0), r"`max_to_keep` must be a positive integer"),
        (lambda d: Checkpointer(d / "ck", {}, max_to_keep=2.0), r"`max_to_keep` must be a positive integer"),
        (lambda d: Checkpointer(d / "ck", "lr=0.1"), r"`config` must be a dataclass instance or a mapping"),
        (lambda d: Checkpointer(d / "ck", {"lr": NAN}), r"`config` is not JSON-serializable"),
        (lambda d: Checkpointer(d / "ck", {}).save(-1, {"a": jnp.zeros(2)}), r"`step` must be a non-negative integer"),
        (lambda d: Checkpointer(d / "ck", {}).save(1.5, {"a": jnp.zeros(2)}), r"`step` must be a non-negative integer"),
        (lambda d: Checkpointer(d / "ck", {}).save(1, "state"), r"`state` must be a pytree of arrays; leaf .* is a str"),
        (lambda d: Checkpointer(d / "ck", {}).save(1, {}), r"`state` must be a pytree of arrays, got one with no leaves"),
        (lambda d: Checkpointer(d / "ck", {}).restore(like={"a": object()}), r"`like` must be a pytree of arrays"),
        (lambda d: Checkpointer(d / "ck", {}).restore(like={"a": jnp.zeros(2)}), r"no checkpoint found"),
    ],
)
def test_checkpointer_rejects_bad_input(tmp_path, call, match):
    (tmp_path / "a-file").write_text("")
    with raises(match):
        call(tmp_path)


def test_checkpointer_accepts_numpy_values(tmp_path):
    ck = Checkpointer(tmp_path / "ck", {"lr": np.float32(0.5), "n": np.int64(3)}, max_to_keep=np.int64(2))
    assert ck.config == {"lr": 0.5, "n": 3}
    ck.save(np.int64(1), {"a": jnp.arange(3.0)})
    np.testing.assert_array_equal(ck.restore(like={"a": jnp.zeros(3)}, step=jnp.int32(1))["a"], [0.0, 1.0, 2.0])
    with raises(r"`step` must be a non-negative integer or None"):
        ck.restore(like={"a": jnp.zeros(3)}, step=1.0)
    ck.close()


# ------------------------------------------------------------------ metrics CSV on resume
HEADER = ["iteration", "seed", "env_steps", "episode_return"]


def _rows(iterations, seeds=2):
    return [[str(i), str(s), str(16 * i), "0.5"] for i in range(1, iterations + 1) for s in range(seeds)]


def _write_csv(path, header=HEADER, rows=(), raw=None, directory=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if directory:
        os.makedirs(path)
        return
    if raw is not None:
        with open(path, "wb") as f:
            f.write(raw)
        return
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


METRICS_FAULTS = [
    (dict(raw=b"iteration,seed,env_steps\n1,0,\xff\xfe\n"), r"not UTF-8 text"),
    (dict(raw=b""), r"the file is empty, but the checkpoint is at iteration 2"),
    (dict(header=["it", "seed", "env_steps"]), r"line 1: unexpected header"),
    (dict(rows=_rows(2)[:-1] + [["2", "1", "32"]]), r"line 5: 3 cells, the header has 4"),
    (dict(rows=_rows(1) + [["two", "0", "32", "0.5"]]), r"line 4: a cell is not a number"),
    (dict(rows=_rows(1) + [["2", "0", "32", "fast"]]), r"line 4: a cell is not a number"),
    (dict(rows=_rows(1)), r"no rows for iteration\(s\) 2..2, but the checkpoint being resumed is at iteration 2"),
    (dict(rows=_rows(2)[::-1]), r"out of order"),
    (dict(rows=_rows(2)[:-1]), r"iteration 2 has seeds \[0\], expected \[0, 1\]"),
]


@pytest.mark.parametrize("fault, match", [(dict(directory=True), r"path: it is a directory")] + METRICS_FAULTS)
def test_metrics_log_refuses_damaged_csv(tmp_path, fault, match):
    """Before: a damaged metrics.csv raised from int() mid-run, or was continued with a gap."""
    _write_csv(str(tmp_path / "metrics.csv"), **fault)
    with raises(rf"'{re.escape(str(tmp_path / 'metrics.csv'))}' is damaged \(.*{match}"):
        MetricsLog(str(tmp_path), False, start_iteration=2, start_step=32)


def test_metrics_log_keeps_rows_up_to_the_checkpoint(tmp_path):
    _write_csv(str(tmp_path / "metrics.csv"), rows=_rows(3))
    log = MetricsLog(str(tmp_path), False, start_iteration=2, start_step=32)
    assert log.header == HEADER and log.rows == _rows(2)
    log.close()


# ------------------------------------------------------------------ the CLI
TINY_ARGS = [
    "train", "--env", TINY_TRAIN["env"], "--method", "vanilla", "--seeds", "2", "--num-envs", str(TINY_TRAIN["num_envs"]),
    "--steps", str(TINY_TRAIN["total_steps"]), "--steps-per-iteration", str(TINY_TRAIN["steps_per_iteration"]),
    "--learning-starts", str(TINY_TRAIN["learning_starts"]), "--batch-size", str(TINY_TRAIN["batch_size"]),
    "--buffer-size", str(TINY_TRAIN["buffer_size"]), "--hidden-sizes", *map(str, TINY_TRAIN["hidden_sizes"]),
    "--chunks", "2", "--eval-episodes", "2", "--sweep-points", "3",
]


def _cli_error(capsys, argv):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = [ln for ln in err.splitlines() if "zsgjax train: error:" in ln]
    assert len(line) == 1, err
    return line[0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--seed", str(2**32)], r"--seed must be an integer >= 0 and at most 2147483647 .*, got 4294967296"),
        (["--seed", str(2**64)], r"--seed must be an integer >= 0 and at most 2147483647"),
        (["--steps", str(2**31)], r"--steps must be an integer >= 1 and at most 2147483647"),
        (["--steps", str(INT32_MAX)], r"--steps=2,147,483,647 rounded up to whole iterations of 16 steps is "
                                       r"2,147,483,648, more than the int32 step counters hold .*give at most 2,147,483,632"),
        (["--seeds", str(2**40)], r"--seeds must be an integer >= 1 and at most 2147483647"),
        (["--num-envs", str(2**33)], r"--num-envs must be an integer >= 1 and at most 2147483647"),
        (["--learning-starts", str(2**31)], r"--learning-starts must be an integer >= 0 and at most 2147483647"),
        (["--epsilon-decay-steps", str(2**35)], r"--epsilon-decay-steps must be an integer >= 1 and at most"),
        (["--actor-lr", "inf"], r"--actor-lr must be a finite number > 0, got inf"),
    ],
)
def test_cli_rejects_numbers_too_large(capsys, tmp_path, extra, message):
    line = _cli_error(capsys, TINY_ARGS + ["--out", str(tmp_path / "run")] + extra)
    assert re.search(message, line), line
    assert not os.path.exists(tmp_path / "run")


def test_cli_rejects_bad_out(capsys, tmp_path):
    (tmp_path / "a-file").write_text("")
    line = _cli_error(capsys, TINY_ARGS + ["--out", str(tmp_path / "a-file")])
    assert re.search(r"--out '.*a-file' is a file, not a directory", line), line
    line = _cli_error(capsys, TINY_ARGS + ["--out", str(tmp_path / "a-file" / "run")])
    assert re.search(r"--out '.*a-file/run' cannot be created: '.*a-file' is a file", line), line
    if os.geteuid() != 0:  # root writes anywhere; /proc refuses new files even to root
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        line = _cli_error(capsys, TINY_ARGS + ["--out", str(locked / "run")])
        assert re.search(r"--out '.*locked/run' is not writable", line), line
    if os.path.isdir("/proc"):
        line = _cli_error(capsys, TINY_ARGS + ["--out", "/proc/zsgjax-run"])
        assert re.search(r"--out '/proc/zsgjax-run' is not writable \('/proc': .*\); give a directory you can write to",
                         line), line


@pytest.mark.parametrize("name", ["generalization.json", "run.json", os.path.join("vanilla", "metrics.csv")])
def test_cli_rejects_output_files_that_are_directories(capsys, tmp_path, name):
    """Before: the run trained, then failed writing its results (IsADirectoryError)."""
    os.makedirs(tmp_path / "run" / name)
    line = _cli_error(capsys, TINY_ARGS + ["--out", str(tmp_path / "run")])
    assert re.search(rf"--out '.*run': '.*{re.escape(name)}' is a directory, but zsgjax writes a file there", line), line


@pytest.mark.parametrize("error, code", [(ValueError("--resume: 'x/metrics.csv' is damaged"), 2),
                                         (OSError(28, "No space left on device"), 1)])
def test_cli_errors_found_while_running_are_one_line(capsys, tmp_path, monkeypatch, error, code):
    """An error the checks before the run cannot see (a file changed meanwhile, a full disk): one line, no traceback."""
    def fail(*args, **kwargs):
        raise error

    from zsgjax import runner

    monkeypatch.setattr(runner, "run", fail)
    capsys.readouterr()
    try:
        result = cli.main(TINY_ARGS + ["--out", str(tmp_path / "run")])
    except SystemExit as e:
        result = e.code
    assert result == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and len([ln for ln in err.splitlines() if "zsgjax train: error:" in ln]) == 1, err


@pytest.fixture(scope="module")
def resumable(tmp_path_factory):
    """An output directory whose 'vanilla' label holds a checkpoint at iteration 2 of the tiny run's config
    (a stand-in state: nothing is trained; the metrics check runs before any state is restored)."""
    out = tmp_path_factory.mktemp("resume") / "run"
    command = cli.command_from_args(cli.build_parser().parse_args(TINY_ARGS + ["--out", str(out)]))
    trainer = command.trainers["vanilla"]
    with Checkpointer(out / "vanilla" / "checkpoints", runner.checkpoint_config(trainer, 2)) as ck:
        ck.save(2, {"stand_in": jnp.zeros(2)})
    return out


@pytest.mark.parametrize("fault, match", METRICS_FAULTS)
def test_cli_resume_refuses_damaged_metrics(capsys, resumable, fault, match):
    path = str(resumable / "vanilla" / "metrics.csv")
    _write_csv(path, **fault)
    try:
        line = _cli_error(capsys, TINY_ARGS + ["--out", str(resumable), "--resume"])
    finally:
        os.remove(path)
    assert re.search(rf"--resume: '.*vanilla/metrics.csv' is damaged \(.*{match}.*\); it must be the metrics CSV of this run",
                     line), line
