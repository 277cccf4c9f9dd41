"""Zero-shot evaluation, tables, result files and plots.

Policies are hand-written (no training): on simple_direction ``a = sign(c)`` is
near-optimal and ``a = 0`` is poor. Few distinct jitted shapes keep compile time low.
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax import envs
from zsgjax import evaluate as ev
from zsgjax.reporting import plots, tables
from zsgjax.reporting.results import ContextGrid, EvalResult, summarize

NUM_EPISODES = 3


def scaled_sign(params, obs):
    """``a = w * sign(c)``: ``w = 1`` near-optimal, ``w = 0`` does nothing."""
    return params["w"] * jnp.sign(obs[2:])


@pytest.fixture(scope="module")
def env():
    return envs.make("simple_direction")


@pytest.fixture(scope="module")
def params():
    return {"w": jnp.array([1.0, 0.5, 0.0])}  # S = 3 seeds


@pytest.fixture(scope="module")
def grid(env):
    return ev.make_grid(env, num_points=5)


@pytest.fixture(scope="module")
def result(env, params, grid):
    return ev.evaluate_grid(env, scaled_sign, params, grid, num_episodes=NUM_EPISODES, rng=jax.random.PRNGKey(1))


def episode_keys(rng, num_seeds, num_episodes):
    """The documented key layout: episode e of seed s uses split(rng, S * E)[s * E + e]."""
    return jax.random.split(rng, num_seeds * num_episodes).reshape(num_seeds, num_episodes, -1)


def reference_returns(env, w, contexts, keys):
    """NumPy loop: s' = s + clip(a) + c, r = s'.c over the horizon; ``keys (E, 2)`` of one seed."""
    out = np.zeros((len(contexts), len(keys)))
    for i, c in enumerate(np.asarray(contexts, np.float64)):
        for e in range(len(keys)):
            s = np.asarray(env.reset(keys[e], jnp.asarray(c, jnp.float32)).obs[:2], np.float64)
            for _ in range(env.horizon):
                a = np.clip(w * np.sign(c), -1, 1)
                s = s + a + c
                out[i, e] += s @ c
    return out


def test_grid_layout(env, grid):
    names, named = env.eval_context_array()
    assert len(grid) == 2 * 5 + len(names)
    assert grid.swept_dims == ("c_x", "c_y")
    np.testing.assert_allclose(grid.sweep_values("c_x"), np.linspace(-1, 1, 5))
    rows = grid.sweep_rows("c_y")
    np.testing.assert_allclose(grid.contexts[rows, 0], 0.0)  # other dimension at default
    np.testing.assert_allclose(grid.contexts[grid.named_rows], named)
    assert [grid.labels[i] for i in grid.named_rows] == names
    assert ev.make_grid(env, 3, dims=["c_y"], named=False).swept == ("c_y",) * 3


def test_matches_numpy_reference(env, params, grid, result):
    assert result.returns.shape == (3, len(grid), NUM_EPISODES)
    keys = episode_keys(jax.random.PRNGKey(1), 3, NUM_EPISODES)
    for s, w in enumerate([1.0, 0.5, 0.0]):
        ref = reference_returns(env, w, grid.contexts, keys[s])
        np.testing.assert_allclose(result.returns[s], ref, rtol=1e-4, atol=1e-3)
    # starts: shared across contexts, independent across seeds
    same = ev.evaluate(env, scaled_sign, {"w": jnp.ones(2)}, [[0.5, -0.3], [0.5, -0.3]], num_episodes=NUM_EPISODES,
                       rng=jax.random.PRNGKey(2))
    np.testing.assert_array_equal(same[:, 0], same[:, 1])
    assert not np.allclose(same[0], same[1])
    # the near-optimal policy beats the do-nothing one away from c = 0
    far = [i for i in range(len(grid)) if np.abs(grid.contexts[i]).max() > 0.7]
    assert np.all(result.returns[0, far] > result.returns[2, far] + 10)


def test_pieces_give_the_same_returns_and_report_progress(env, params, grid, result):
    """15 contexts in 4 pieces of 4 (the last padded): the returns of one call, progress after each piece."""
    done, shapes = [], []
    program = ev.make_evaluator(env, scaled_sign, NUM_EPISODES)
    returns = ev.evaluate(env, scaled_sign, params, grid.contexts, num_episodes=NUM_EPISODES, rng=jax.random.PRNGKey(1),
                          pieces=4, progress=lambda k, total: done.append((k, total)),
                          evaluator=lambda p, c, r: shapes.append(c.shape) or program(p, c, r))
    np.testing.assert_array_equal(returns, result.returns)
    assert len(grid) == 15 and done == [(4, 15), (8, 15), (12, 15), (15, 15)]
    assert shapes == [(4, 2)] * 4  # one program: the last piece is padded
    assert [ev.piece_size(15, k) for k in (1, 4, 5, 15, 99)] == [15, 4, 3, 1, 1]
    with pytest.raises(ValueError, match="`pieces` must be a positive integer, got 0"):
        ev.evaluate(env, scaled_sign, params, grid.contexts, num_episodes=1, rng=jax.random.PRNGKey(1), pieces=0)


def noisy_sign(params, obs, rng):
    """A stochastic policy: ``w * sign(c)`` plus N(0, 0.5^2) noise per action dimension."""
    return params["w"] * jnp.sign(obs[2:]) + 0.5 * jax.random.normal(rng, (2,))


def test_sampled_actions_follow_the_documented_keys(env, params):
    """Step ``t`` of the episode with start key ``k`` acts with ``split(fold_in(k, 1), horizon)[t]``;
    starts are those of the deterministic evaluation; a fixed ``rng`` gives fixed returns."""
    contexts = np.asarray([[0.5, -0.5], [-0.8, 0.3]], np.float32)
    rng = jax.random.PRNGKey(5)
    returns = ev.evaluate(env, noisy_sign, params, contexts, num_episodes=2, rng=rng, sampled=True)
    keys = episode_keys(rng, 3, 2)
    for s, w in enumerate([1.0, 0.5, 0.0]):
        for i, c in enumerate(contexts.astype(np.float64)):
            for e in range(2):
                st = np.asarray(env.reset(keys[s, e], jnp.asarray(c, jnp.float32)).obs[:2], np.float64)
                steps = jax.random.split(jax.random.fold_in(keys[s, e], 1), env.horizon)
                total = 0.0
                for t in range(env.horizon):
                    noise = np.asarray(jax.random.normal(steps[t], (2,)), np.float64)
                    st = st + np.clip(w * np.sign(c) + 0.5 * noise, -1, 1) + c
                    total += st @ c
                assert returns[s, i, e] == pytest.approx(total, rel=1e-4, abs=1e-3)
    again = ev.evaluate(env, noisy_sign, params, contexts, num_episodes=2, rng=rng, sampled=True)
    np.testing.assert_array_equal(returns, again)
    other = ev.evaluate(env, noisy_sign, params, contexts, num_episodes=2, rng=jax.random.PRNGKey(6), sampled=True)
    assert not np.allclose(returns, other)


def test_policy_action_modes():
    class Agent:  # records how it was asked to act
        def act(self, params, obs):
            return ("act", params, obs)

        def sample(self, params, obs, rng, *, rescale=True):
            return ("sample", rescale, rng)

    mean, sampled = ev.policy_action(Agent(), "mean")
    assert not sampled and mean("p", "o") == ("act", "p", "o")
    for mode, rescale in (("sample", True), ("sample_unscaled", False)):
        fn, sampled = ev.policy_action(Agent(), mode)
        assert sampled and fn("p", "o", "k") == ("sample", rescale, "k")
    with pytest.raises(ValueError, match="`actions` must be one of mean, sample, sample_unscaled"):
        ev.policy_action(Agent(), "greedy")


def test_summary_formula(result):
    mean, ci = result.summary()
    per_seed = result.returns.mean(axis=2)
    np.testing.assert_allclose(mean, per_seed.mean(0), rtol=1e-6)
    # Student-t quantile t_{0.975, 2} = 4.3027 for 3 seeds (not the normal 1.96)
    np.testing.assert_allclose(ci, 4.302653 * per_seed.std(0, ddof=1) / math.sqrt(3), rtol=1e-5)
    m1, c1 = summarize(result.returns[:1])
    assert np.all(np.isnan(c1)) and np.allclose(m1, per_seed[0])
    agg_mean, _ = result.aggregate([0, 1])
    assert agg_mean == pytest.approx(per_seed[:, :2].mean(), rel=1e-6)


def test_termination_stops_reward():
    """cart_goal: an always-push-right policy falls over; compare with a step-by-step loop."""
    env = envs.make("cart_goal")
    push = lambda p, obs: jnp.asarray(1, jnp.int32) + 0 * p  # noqa: E731
    contexts = np.asarray([env.context_space.default, env.eval_context_array()[1][-1]], np.float32)
    returns = ev.evaluate(env, push, jnp.zeros((1,)), contexts, num_episodes=2, rng=jax.random.PRNGKey(3))
    keys = episode_keys(jax.random.PRNGKey(3), 1, 2)[0]
    step = jax.jit(env.step)
    for i, c in enumerate(contexts):
        for e in range(2):
            st, total, steps = env.reset(keys[e], jnp.asarray(c)), 0.0, 0
            while steps < env.horizon:
                st = step(st, jnp.asarray(1, jnp.int32))
                total, steps = total + float(st.reward), steps + 1
                if st.done:
                    break
            assert steps < env.horizon  # it did terminate
            assert returns[0, i, e] == pytest.approx(total, rel=1e-5, abs=1e-4)


def test_input_validation(env, params):
    with pytest.raises(ValueError, match="c_x.*outside its range"):
        ev.evaluate(env, scaled_sign, params, [[2.0, 0.0]], num_episodes=1, rng=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="trailing dimension 2"):
        ev.evaluate(env, scaled_sign, params, [[0.0, 0.0, 0.0]], num_episodes=1, rng=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="num_episodes"):
        ev.evaluate(env, scaled_sign, params, [[0.0, 0.0]], num_episodes=0, rng=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="leading seed axis"):
        ev.evaluate(env, scaled_sign, {"w": jnp.ones(3), "b": jnp.ones(2)}, [[0.0, 0.0]], num_episodes=1,
                    rng=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="`evaluator` runs 2 episodes"):
        ev.evaluate(env, scaled_sign, params, [[0.0, 0.0]], num_episodes=1, rng=jax.random.PRNGKey(0),
                    evaluator=ev.make_evaluator(env, scaled_sign, 2))
    with pytest.raises(ValueError, match="num_points"):
        ev.make_grid(env, num_points=1)
    with pytest.raises(ValueError, match="unknown context dimension"):
        ev.make_grid(env, dims=["speed"])
    with pytest.raises(ValueError, match="returns"):
        summarize(np.zeros((2, 3)))


def test_table_and_files(tmp_path, result):
    other = EvalResult(result.grid, result.returns[::-1] * 0.5)
    results = {"sign": result, "half": other}
    text = tables.write_table(results, tmp_path / "table.txt", detail=False)
    lines = text.splitlines()
    assert lines[0].split() == ["context", "sign", "half"]
    assert any(line.startswith("(0.8,0.8)") and "±" in line for line in lines)
    assert any(line.startswith("mean over c_x sweep") for line in lines)
    assert not any(line.startswith("c_x=") for line in lines)
    assert any(line.startswith("c_x=") for line in tables.format_table(results).splitlines())
    assert (tmp_path / "table.txt").read_text() == text

    tables.write_csv(results, tmp_path / "r.csv")
    csv_lines = (tmp_path / "r.csv").read_text().splitlines()
    assert csv_lines[0] == "method,context,swept,c_x,c_y,mean,ci95,num_seeds,num_episodes"
    assert len(csv_lines) == 1 + 2 * len(result.grid)

    tables.write_json(results, tmp_path / "r.json", extra={"env": "simple_direction"})
    back = tables.load_json(tmp_path / "r.json")
    assert list(back) == ["sign", "half"]
    np.testing.assert_allclose(back["half"].returns, other.returns)
    assert back["sign"].grid.labels == result.grid.labels
    assert json.loads((tmp_path / "r.json").read_text())["info"] == {"env": "simple_direction"}

    (tmp_path / "bad.json").write_text('{"grid": {}, "methods"')
    with pytest.raises(ValueError, match="not an evaluation results file"):
        tables.load_json(tmp_path / "bad.json")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_plot_writes_png(tmp_path, result):
    path = plots.plot_sweeps({"sign": result}, tmp_path / "sweep.png", title="simple_direction")
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    with pytest.raises(ValueError, match="not swept"):
        plots.plot_sweeps({"sign": result}, tmp_path / "x.png", dims=["c_z"])
    # write_sweep_plot: the same figure, or nothing for a grid of named contexts only
    assert plots.write_sweep_plot({"sign": result}, str(tmp_path / "w.png"), "t") == str(tmp_path / "w.png")
    named = [i for i, d in enumerate(result.grid.swept) if d is None]
    grid = result.grid
    only_named = EvalResult(ContextGrid(contexts=grid.contexts[named], labels=tuple(grid.labels[i] for i in named),
                                        names=grid.names, default=grid.default, swept=(None,) * len(named)),
                            np.asarray(result.returns)[:, named])
    assert plots.write_sweep_plot({"sign": only_named}, str(tmp_path / "n.png"), "t") is None
    assert not (tmp_path / "n.png").exists()


def test_figure_titles_wrap_to_the_figure_width():
    long = "cheetah_velocity: zero-shot return, paper scale (520,000 steps x 10 seeds)"
    lines = plots.figure_title(long, 10, 4.2).split("\n")
    assert len(lines) == 3 and all(len(x) <= 46 for x in lines[:2]) and " ".join(lines[:2]) == long
    assert lines[-1] == "(mean ± 95% Student-t interval, 10 seeds)"
    assert plots.figure_title(long, 3, 12.6).split("\n") == [long, "(mean ± 95% Student-t interval, 3 seeds)"]


# ------------------------------------------ aggregate intervals on hand-made returns
T_975 = {2: 12.706204736174707, 3: 4.302652729911275, 4: 3.182446305284263}  # t_{0.975, S-1} by S


def _hand_grid():
    from zsgjax.reporting.results import ContextGrid

    contexts = np.array([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]], np.float32)
    return ContextGrid(contexts=contexts, labels=("x=-1", "x=0", "x=1", "y=-1", "y=1"),
                       swept=("x", "x", "x", "y", "y"), names=("x", "y"), default=np.zeros(2, np.float32))


def test_aggregate_and_difference_are_student_t_intervals_by_hand():
    rng = np.random.default_rng(5)
    grid = _hand_grid()
    a = rng.normal(size=(4, 5, 3)) + 10 * np.arange(4)[:, None, None]  # seed effects (shared by b)
    b = a - 0.7 + 0.3 * rng.normal(size=(4, 5, 3))
    ra, rb = EvalResult(grid, a), EvalResult(grid, b)
    rows = [0, 2, 4]
    per_a = np.array([a[s][rows].mean() for s in range(4)])  # each seed's mean over rows and episodes
    per_b = np.array([b[s][rows].mean() for s in range(4)])
    mean, ci = ra.aggregate(rows)
    assert mean == pytest.approx(per_a.mean(), rel=1e-12)
    assert ci == pytest.approx(T_975[4] * np.std(per_a, ddof=1) / 2.0, rel=1e-9)
    # paired: the interval of the per-seed difference (the seed effects cancel)
    d = per_a - per_b
    diff, half = ra.difference(rb, rows)
    assert diff == pytest.approx(d.mean(), rel=1e-12)
    assert half == pytest.approx(T_975[4] * np.sqrt(np.sum((d - d.mean()) ** 2) / 3) / 2.0, rel=1e-9)
    assert diff - half > 0 and half < 0.5 * ci  # pairing matters here
    # 3 seeds against 4: Welch's unpaired interval
    from scipy import stats as scipy_stats

    diff3, half3 = EvalResult(grid, a[:3]).difference(rb, rows)
    va, vb = np.var(per_a[:3], ddof=1) / 3, np.var(per_b, ddof=1) / 4
    dof = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    assert diff3 == pytest.approx(per_a[:3].mean() - per_b.mean(), rel=1e-12)
    assert half3 == pytest.approx(scipy_stats.t.ppf(0.975, dof) * np.sqrt(va + vb), rel=1e-9)
    # one seed: a mean, no interval
    m1, c1 = EvalResult(grid, a[:1]).aggregate(rows)
    assert m1 == pytest.approx(per_a[0]) and np.isnan(c1)
    assert np.isnan(EvalResult(grid, a[:1]).difference(EvalResult(grid, b[:1]), rows)[1])
