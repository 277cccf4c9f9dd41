"""The generalization table's optimum and paired-difference columns, and the closed-form
optimum of simple_direction against Monte Carlo rollouts of the env's own step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from zsgjax.envs import make
from zsgjax.reporting import tables
from zsgjax.reporting.results import ContextGrid, EvalResult


def _grid():
    contexts = np.array([[0.0], [-1.0], [1.0]], np.float32)
    return ContextGrid(contexts, ("home", "x=-1", "x=1"), (None, "x", "x"), ("x",), np.zeros(1, np.float32))


def _returns(seed_means):
    """``(S, C, 2)`` returns whose per-seed mean at every context is ``seed_means[s, c]``."""
    m = np.asarray(seed_means, np.float64)
    return np.stack([m - 1.0, m + 1.0], axis=-1)


def test_difference_column_is_the_paired_t_interval_by_hand():
    a = np.array([[3.0, 1.0, 2.0], [4.0, 2.0, 2.5], [5.0, 0.0, 4.0]])
    b = np.array([[1.0, 1.0, 0.0], [1.5, 2.5, 1.0], [2.5, 0.5, 1.0]])
    grid = _grid()
    text = tables.format_table({"a": EvalResult(grid, _returns(a)), "b": EvalResult(grid, _returns(b))},
                               differences=[("a", "b")])
    lines = {line.split()[0]: line for line in text.splitlines()[2:-1]}
    for label, idx in [("home", [0]), ("x=-1", [1]), ("x=1", [2])]:
        d = (a[:, idx] - b[:, idx]).mean(axis=1)
        half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
        star = "*" if abs(d.mean()) > half else " "
        assert f"{d.mean():+.2f} ± {half:.2f}{star}" in lines[label], (label, lines[label])
    sweep = [line for line in text.splitlines() if line.startswith("mean over x sweep")][0]
    d = (a[:, 1:] - b[:, 1:]).mean(axis=1)
    assert f"{d.mean():+.2f} ± {stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3):.2f}" in sweep
    assert "paired by seed" in text


def test_optimum_column_means_over_the_row_and_marks_unknown():
    grid = _grid()
    r = {"a": EvalResult(grid, _returns(np.ones((2, 3))))}
    text = tables.format_table(r, optimum=np.array([5.0, 1.0, 3.0]))
    sweep = [line for line in text.splitlines() if line.startswith("mean over x sweep")][0]
    assert sweep.split()[4] == "2.00"                      # (1 + 3) / 2
    text = tables.format_table(r, optimum=np.array([5.0, np.nan, 3.0]))
    assert [line for line in text.splitlines() if line.startswith("mean over x sweep")][0].split()[4] == "?"
    with pytest.raises(ValueError, match="`optimum` must have one value per grid context"):
        tables.format_table(r, optimum=np.ones(2))


def test_bad_differences_are_named():
    grid = _grid()
    r = {"a": EvalResult(grid, _returns(np.ones((2, 3)))), "b": EvalResult(grid, _returns(np.ones((3, 3))))}
    with pytest.raises(ValueError, match="pair of methods"):
        tables.format_table(r, differences=[("a", "c")])
    with pytest.raises(ValueError, match="same seeds"):
        tables.format_table(r, differences=[("a", "b")])


@pytest.mark.parametrize("context", [(0.8, 0.8), (-0.8, 0.3), (0.0, 0.0), (1.0, -1.0)])
def test_simple_direction_optimum_matches_rollouts_and_beats_other_policies(context):
    env = make("simple_direction")
    c = jnp.asarray(context, jnp.float32)

    def episode_return(policy, rng):
        state = env.reset(rng, c)

        def step(state, _):
            state = env.step(state, policy(state.obs))
            return state, state.reward

        return jax.lax.scan(step, state, None, length=env.horizon)[1].sum()

    rngs = jax.random.split(jax.random.PRNGKey(0), 20_000)
    greedy = jax.jit(jax.vmap(lambda k: episode_return(lambda obs: jnp.sign(c) * jnp.ones(2), k)))(rngs)
    sem = float(greedy.std()) / np.sqrt(rngs.shape[0])
    assert abs(float(greedy.mean()) - env.optimal_return(np.asarray(context))) <= 4 * sem + 1e-4
    # no constant action on a grid does better in expectation (the reward is linear in the actions)
    for a in [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0), (0.5, 0.0), (0.0, 0.0)]:
        other = jax.jit(jax.vmap(lambda k: episode_return(lambda obs: jnp.asarray(a), k)))(rngs[:2000])
        assert float(other.mean()) <= env.optimal_return(np.asarray(context)) + 4 * float(other.std()) / np.sqrt(2000) + 1e-4
    with pytest.raises(ValueError, match="`context` must be 2 finite values"):
        env.optimal_return(np.array([np.nan, 0.0]))


def test_unknown_optimum_is_none_and_a_partly_known_one_is_nan_where_unknown():
    from zsgjax.evaluate import optimal_returns

    assert make("pendulum_goal").optimal_return(np.zeros(4)) is None
    assert optimal_returns(make("pendulum_goal"), _grid4()) is None

    class PartlyKnown:
        def optimal_return(self, context):
            return None if context[0] < 0 else 2.0 * float(context[0])

    np.testing.assert_array_equal(optimal_returns(PartlyKnown(), _grid()), [0.0, np.nan, 2.0])


def _grid4():
    return ContextGrid(np.zeros((2, 4), np.float32), ("a", "b"), (None, None), ("g", "m", "l", "tau"),
                       np.zeros(4, np.float32))


def test_the_plugins_entry_points_register_lazily_and_an_explicit_registration_wins(monkeypatch):
    """``zsgjax.envs.make`` reads the ``zsgjax.envs`` entry points on first use (the
    ``playground:*`` names come from one), and a name registered explicitly keeps its constructor."""
    from zsgjax.envs import registry

    monkeypatch.setattr(registry, "_REGISTRY", {k: v for k, v in registry._REGISTRY.items()
                                                if not k.startswith("playground:")})
    monkeypatch.setattr(registry, "_PLUGINS_READ", [])
    assert registry.constructor("playground:CartpoleBalance") is not None      # read on first use
    monkeypatch.setattr(registry, "_PLUGINS_READ", [])
    registry.register("playground:CartpoleBalance", "zsgjax.envs.simple_direction:SimpleDirection")
    registry.registered_names()                                                 # reads the plugins again
    assert registry._REGISTRY["playground:CartpoleBalance"] == "zsgjax.envs.simple_direction:SimpleDirection"
