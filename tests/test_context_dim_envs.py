"""The context-dimension families ``context_dim_direction`` and ``context_dim_lq`` against
independent references: float64 NumPy ports of their steps, central finite differences of
those ports for the context Jacobians (at ``d = 1`` and a larger ``d``), and the closed-form
optima against rollouts of the optimal policies and hand-computed Riccati steps.

The generic contract (shapes, jit/vmap, bad contexts and actions, corners, brax wrappers)
is ``test_contracts.py``'s, at the default ``dim=2``.
"""

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax import context_gradients, options
from zsgjax.envs import make
from zsgjax.envs.direction_task import DirectionTask
from zsgjax.envs.linear_quadratic import LinearQuadratic, riccati_costs
from zsgjax.train import TrainConfig

NAMES = ("context_dim_direction", "context_dim_lq")
DIMS = (1, 8)


# ------------------------------------------------------------ NumPy references
def np_direction_step(s, a, c):
    """``s' = s + clip(a, -1, 1)``, ``r = c . s'`` in float64."""
    s2 = s + np.clip(a, -1.0, 1.0)
    return s2, float(s2 @ c)


def np_lq_step(x, a, c):
    """``x' = clip(c x + clip(a, -2, 2), -5, 5)``, ``r = -(|x'|^2 + |u|^2)`` in float64."""
    u = np.clip(a, -2.0, 2.0)
    x2 = np.clip(c * x + u, -5.0, 5.0)
    return x2, -float(x2 @ x2 + u @ u)


REFERENCE = {"context_dim_direction": np_direction_step, "context_dim_lq": np_lq_step}


@pytest.fixture(scope="module")
def jitted():
    """``{(name, d): (env, jit(reset), jit(step))}`` in float32."""
    out = {}
    for name in NAMES:
        for d in DIMS:
            env = make(name, dim=d)
            out[(name, d)] = (env, jax.jit(env.reset), jax.jit(env.step))
    return out


# ---------------------------------------------------------------------- options
def test_dim_option_reaches_every_size_and_the_config():
    for name, cls in zip(NAMES, (DirectionTask, LinearQuadratic)):
        for d in (1, 3, 32):
            env = make(name, dim=d)
            assert type(env) is cls and env.dim == env.context_dim == env.state_obs_size == env.action_size == d
            assert env.observation_size == 2 * d and len(env.context_space.names) == d
            for ctx in env.eval_contexts.values():
                assert len(ctx) == d and env.context_space.contains(jnp.asarray(ctx))
        assert make(name).context_dim == 2
        parser = argparse.ArgumentParser()
        options.add_env_options(parser)
        kwargs = options.env_kwargs_from_args(parser.parse_args(["--env-option", "dim=8"]))
        assert kwargs == {"dim": 8}
        assert TrainConfig(env=name, env_kwargs=kwargs).validate().make_env().context_dim == 8
    lq, direction = make("context_dim_lq", dim=4), make("context_dim_direction", dim=4)
    assert lq.context_space.low == (0.5,) * 4 and lq.context_space.high == (1.5,) * 4
    assert lq.context_space.default == (1.0,) * 4 and lq.horizon == 20
    assert direction.context_space.low == (-1.0,) * 4 and direction.context_space.default == (0.0,) * 4
    assert direction.horizon == 10
    assert direction.eval_contexts["+-0.8"] == (0.8, -0.8, 0.8, -0.8)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [0, 257, 2.0, True, "4", None])
def test_bad_dim_is_refused_naming_it(name, bad):
    with pytest.raises(ValueError, match=r"`dim` must be an integer in \[1, 256\]"):
        make(name, dim=bad)


@pytest.mark.parametrize("name", NAMES)
def test_optimal_return_refuses_a_context_of_another_size(name):
    with pytest.raises(ValueError, match="`context` must be 3 finite values"):
        make(name, dim=3).optimal_return(np.zeros(2))
    with pytest.raises(ValueError, match="`context` must be 3 finite values"):
        make(name, dim=3).optimal_return([1.0, np.nan, 1.0])


# ------------------------------------------------------------------- dynamics
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("name", NAMES)
def test_steps_match_the_numpy_reference(name, d, jitted):
    """30 steps at a random context with actions beyond the clip (float32 against float64)."""
    env, reset, step = jitted[(name, d)]
    rng = np.random.default_rng(d)
    ctx = rng.uniform(env.context_space.low, env.context_space.high).astype(np.float32)
    state = reset(jax.random.PRNGKey(d), jnp.asarray(ctx))
    s0 = np.asarray(state.pipeline_state, np.float64)
    assert s0.shape == (d,) and np.all(np.abs(s0) <= 1.0)
    ref = s0
    for a in rng.uniform(-3.0, 3.0, size=(30, d)).astype(np.float32):
        state = step(state, jnp.asarray(a))
        ref, r = REFERENCE[name](ref, a.astype(np.float64), ctx.astype(np.float64))
        np.testing.assert_allclose(state.pipeline_state, ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(state.obs, np.concatenate([ref, ctx]), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(state.reward, r, rtol=1e-5, atol=1e-5)
        assert state.done == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_initial_states_are_uniform_on_the_unit_box(name, jitted):
    """500 starts at d = 8: inside [-1, 1], mean 0 and variance 1/3 per component (the optima assume both)."""
    env, reset, _ = jitted[(name, 8)]
    keys = jax.random.split(jax.random.PRNGKey(0), 500)
    s0 = np.asarray(jax.vmap(lambda k: reset(k, env.default_context()).pipeline_state)(keys), np.float64)
    assert s0.shape == (500, 8) and np.abs(s0).max() <= 1.0
    np.testing.assert_allclose(s0.mean(0), 0.0, atol=0.12)
    np.testing.assert_allclose((s0**2).mean(0), 1.0 / 3.0, atol=0.06)


def test_lq_state_clip_binds_beyond_five():
    """An uncontrolled unstable system saturates at the state bound instead of diverging."""
    x = np.ones(2)
    env = make("context_dim_lq", dim=2)
    state = env.reset(jax.random.PRNGKey(0), jnp.array([1.5, 0.5]))
    for _ in range(20):
        state = env.step(state, jnp.array([2.0, 0.0]))
        x, r = np_lq_step(x, np.array([2.0, 0.0]), np.array([1.5, 0.5]))
    assert float(state.pipeline_state[0]) == 5.0 and x[0] == 5.0


@pytest.mark.parametrize("d", (1, 16))
@pytest.mark.parametrize("name", NAMES)
def test_context_jacobian_matches_finite_differences_of_the_reference(name, d):
    """float64 ``context_jacobian`` of the JAX env against central differences (h = 1e-6) of the
    NumPy port, at states where, for the LQ system, some components are clipped (zero derivative)."""
    rng = np.random.default_rng(100 + d)
    clipped = []
    with jax.enable_x64(True):
        env = make(name, dim=d)
        jac = jax.jit(lambda s, a, c: context_gradients.context_jacobian(env, s, a, c))
        for trial in range(3):
            c = rng.uniform(env.context_space.low, env.context_space.high)
            s = rng.uniform(-4.5, 4.5, size=d)
            a = rng.uniform(-2.5, 2.5, size=d)
            grads = jax.tree.map(np.asarray, jac(jnp.asarray(s), jnp.asarray(a), jnp.asarray(c)))
            assert grads.d_obs.shape == (d, d) and grads.d_reward.shape == (d,) and grads.d_obs.dtype == np.float64
            h = 1e-6
            fd_obs, fd_r = np.zeros((d, d)), np.zeros(d)
            for i in range(d):
                e = np.zeros(d)
                e[i] = h
                (sp, rp), (sm, rm) = REFERENCE[name](s, a, c + e), REFERENCE[name](s, a, c - e)
                fd_obs[:, i], fd_r[i] = (sp - sm) / (2 * h), (rp - rm) / (2 * h)
            np.testing.assert_allclose(grads.d_obs, fd_obs, rtol=1e-7, atol=1e-7)
            np.testing.assert_allclose(grads.d_reward, fd_r, rtol=1e-7, atol=1e-7)
            if name == "context_dim_lq":  # d x'/dc = diag(x) where the clip is inactive, 0 where it binds
                free = np.abs(c * s + np.clip(a, -2, 2)) < 5.0
                np.testing.assert_allclose(np.diag(grads.d_obs), np.where(free, s, 0.0), atol=1e-12)
                clipped.extend(~free)
            else:  # reward-only context: the state does not move with it
                assert not grads.d_obs.any()
    if name == "context_dim_lq" and d > 1:
        assert any(clipped) and not all(clipped), "the states should reach both sides of the clip"


# ------------------------------------------------------------------- optima
def _rollout(step, s0, c, policy, horizon):
    s, total = s0, 0.0
    for t in range(horizon):
        s, r = step(s, policy(t, s), c)
        total += r
    return total


@pytest.mark.parametrize("d", (1, 5))
def test_direction_optimum_is_sign_of_the_context(d):
    """``a = sign(c)`` earns ``H (H+1)/2 |c|_1 + H c . s0`` from ``s0`` (so the formula in
    expectation); 200 random action sequences never beat it from the same start."""
    env = make("context_dim_direction", dim=d)
    rng = np.random.default_rng(d)
    for _ in range(5):
        c, s0 = rng.uniform(-1, 1, size=d), rng.uniform(-1, 1, size=d)
        best = _rollout(np_direction_step, s0, c, lambda t, s: np.sign(c), env.horizon)
        formula = env.optimal_return(c)
        assert best == pytest.approx(formula + env.horizon * (c @ s0), rel=1e-12, abs=1e-12)
        assert formula == pytest.approx(55.0 * np.abs(c).sum(), rel=1e-12)
        others = [_rollout(np_direction_step, s0, c, lambda t, s, A=A: A[t], env.horizon)
                  for A in rng.uniform(-1, 1, size=(200, env.horizon, d))]
        assert max(others) < best


def test_riccati_by_hand():
    """Horizon 1: ``min_u (c x + u)^2 + u^2`` at ``u = -c x / 2``, cost ``c^2 x^2 / 2``; horizon 2: the
    next step's cost-to-go ``p_1 = c^2 / 2`` added to the first step's."""
    c = np.array([0.5, 1.0, 1.5])
    p, k = riccati_costs(c, horizon=1)
    np.testing.assert_allclose(p[0], c**2 / 2, rtol=1e-15)
    np.testing.assert_allclose(k[0], c / 2, rtol=1e-15)
    p, k = riccati_costs(c, horizon=2)
    q = 1 + c**2 / 2
    np.testing.assert_allclose(p[0], c**2 * q / (q + 1), rtol=1e-15)
    np.testing.assert_allclose(p[2], 0.0)
    np.testing.assert_allclose(k[1], c / 2, rtol=1e-15)


@pytest.mark.parametrize("d", (1, 6))
def test_lq_optimum_by_rollouts_and_perturbed_gains(d):
    """The time-varying Riccati policy earns ``-sum_i p_0(c_i) x0_i^2`` from every start (so
    ``optimal_return`` in expectation, ``E[x0^2] = 1/3``), never hits a clip, and every perturbed
    gain (or the zero action) does worse."""
    env = make("context_dim_lq", dim=d)
    rng = np.random.default_rng(7 + d)
    H = env.horizon
    for trial in range(5):
        c = rng.uniform(0.5, 1.5, size=d) if trial else np.full(d, 1.5)
        s0 = rng.uniform(-1, 1, size=d) if trial else np.ones(d)  # the worst start: the clips stay slack
        p, k = riccati_costs(c, H)
        actions = []
        best = _rollout(np_lq_step, s0, c, lambda t, x: actions.append(-k[t] * x) or actions[-1], H)
        assert max(np.abs(a).max() for a in actions) <= 1.5 + 1e-12
        assert best == pytest.approx(-(p[0] * s0**2).sum(), rel=1e-12)
        for _ in range(20):
            noisy = k * (1 + rng.normal(0, 0.05, size=k.shape))
            assert _rollout(np_lq_step, s0, c, lambda t, x: -noisy[t] * x, H) < best
        assert _rollout(np_lq_step, s0, c, lambda t, x: np.zeros(d), H) < best
        assert env.optimal_return(c) == pytest.approx(-p[0].sum() / 3, rel=1e-12)
    # the expectation over x0 ~ U[-1, 1]^d, by Monte Carlo from the same policy (float64, 20k starts)
    c = rng.uniform(0.5, 1.5, size=d)
    p, k = riccati_costs(c, H)
    x = rng.uniform(-1, 1, size=(20_000, d))
    total = np.zeros(len(x))
    for t in range(H):
        u = -k[t] * x
        x = np.clip(c * x + u, -5, 5)
        total -= (x**2).sum(1) + (u**2).sum(1)
    assert total.mean() == pytest.approx(env.optimal_return(c), rel=0.02)


# ------------------------------------------------- the experiment's statistics
def _experiment():
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts",
                                    "experiments"))
    import context_dimension

    return context_dimension


def test_experiment_slopes_and_verdicts_by_hand():
    """``slopes``: the least-squares slope against log2 d; ``judge``: the 95% Student-t interval
    (t_{0.975, 9} = 2.2622 for 10 seeds) of the row's per-seed statistic, its sign, and "not run"."""
    cd = _experiment()
    dims = np.asarray(cd.DIMS)
    intercept, slope = np.arange(10.0), np.linspace(-1, 1, 10)
    gaps = intercept[None] + slope[None] * np.log2(dims)[:, None]
    np.testing.assert_allclose(cd.slopes(cd.DIMS, gaps), slope, atol=1e-12)
    x = np.array([0.3, 0.5, 0.1, 0.4, 0.2, 0.6, 0.3, 0.5, 0.4, 0.2])
    gap = {(m, d): np.zeros(10) for m in cd.METHODS for d in cd.DIMS}
    gap[("ldr", cd.LARGEST)] = x
    row = next(c for c in cd.CLAIMS if c["statistic"] == f"gap(ldr, {cd.LARGEST}) - gap(cse, {cd.LARGEST})")
    v = cd.judge(row, gap)
    assert v["mean"] == pytest.approx(x.mean()) and v["ci95"] == pytest.approx(2.2621571628 * x.std(ddof=1) / 10**0.5)
    assert v["verdict"] == "supported"
    gap[("ldr", cd.LARGEST)] = -x
    assert cd.judge(row, gap)["verdict"] == "contradicted"
    gap[("ldr", cd.LARGEST)] = x - x.mean()
    assert cd.judge(row, gap)["verdict"] == "not significant"
    for d in cd.DIMS:  # the DR gap grows with log2 d by 0.2 per doubling, CSE's by 0.1 (+ noise)
        gap[("dr", d)] = 0.2 * np.log2(d) + 0.01 * x
        gap[("cse", d)] = 0.1 * np.log2(d) - 0.01 * x
    growth = next(c for c in cd.CLAIMS if c["statistic"] == "slope(dr) - slope(cse)")
    assert cd.judge(growth, gap)["mean"] == pytest.approx(0.1) and cd.judge(growth, gap)["verdict"] == "supported"
    del gap[("dr", 4)]
    assert cd.judge(growth, gap)["verdict"] == "not run"


def test_experiment_heldout_contexts_are_fixed_per_dimension():
    cd = _experiment()
    env = make("context_dim_lq", dim=4)
    a, b = cd.heldout_grid(env, 16, 4), cd.heldout_grid(env, 16, 4)
    np.testing.assert_array_equal(a.contexts, b.contexts)
    assert a.labels[0] == "train" and np.all(a.contexts[0] == 1.0) and len(a) == 17
    assert np.all(env.context_space.contains(jnp.asarray(a.contexts)))
    assert a.contexts[1:].min() < 0.7 and a.contexts[1:].max() > 1.3  # spread over the box, not near the default
    other = cd.heldout_grid(make("context_dim_lq", dim=2), 16, 2)
    assert not np.allclose(other.contexts[1:, :2], a.contexts[1:, :2])


def test_experiment_scaled_cse_cell_grows_epsilon_with_sqrt_d():
    cd = _experiment()
    scale = cd.SCALES["cpu"]
    assert cd.cell_config("context_dim_lq", 16, cd.SCALED_CSE, scale, 0, 0.1).cse_epsilon == pytest.approx(0.4)
    plain = cd.cell_config("context_dim_lq", 16, "cse", scale, 0)
    assert plain.method == "cse" and plain.env_kwargs == {"dim": 16} and plain.total_steps == scale.steps
    assert cd.labels_of([{"method": m} for m in (cd.SCALED_CSE, "dr", "vanilla")]) == ["vanilla", "dr", cd.SCALED_CSE]


def test_experiment_mjx_family_cells_contexts_and_rows():
    """The MJX family: its cells are CartpoleBalance with the first d physical features (no MJX
    build here), its gap is measured from the return bound, and its rows use its own d."""
    cd = _experiment()
    scale = cd.MJX_SCALES["cpu"]
    cfg = cd.cell_config("cartpole_physical", 4, "ldr", scale, 0)
    assert cfg.env == "playground:CartpoleBalance" and cfg.method == "ldr" and cfg.total_steps == scale.steps
    assert cfg.env_kwargs == {"physical": ("mass_scale:pole_1", "actuator_gain", "gravity", "mass_scale:cart"),
                              "horizon": 200}
    nine = cd.cell_config("cartpole_physical", 9, "cse", scale, 0).env_kwargs["physical"]
    seven = cd.cell_config("cartpole_physical", 7, "cse", scale, 0).env_kwargs["physical"]
    assert nine[:7] == seven and nine[7:] == ("damping_scale:slider", "damping_scale:hinge_1")
    with pytest.raises(ValueError, match="d = 8 is not a dimension of family 'cartpole_physical'"):
        cd.cell_config("cartpole_physical", 8, "cse", scale, 0)
    with pytest.raises(ValueError, match="d = 7 is not a dimension"):
        cd.cell_config("context_dim_lq", 7, "cse", cd.SCALES["cpu"], 0)

    class Bounded:
        horizon = 200

    np.testing.assert_array_equal(cd.reference_returns("cartpole_physical", Bounded(), np.zeros((3, 2))),
                                  [200.0, 200.0, 200.0])
    lq = make("context_dim_lq", dim=2)
    contexts = np.asarray([[1.0, 1.0], [0.6, 1.3]], np.float32)
    np.testing.assert_allclose(cd.reference_returns("context_dim_lq", lq, contexts),
                               [lq.optimal_return(c) for c in contexts])
    rows = [c for c in cd.CLAIMS if c["family"] == "cartpole_physical"]
    assert [r["statistic"] for r in rows[:3]] == ["gap(ldr, 7) - gap(cse, 7)", "gap(vanilla, 7) - gap(cse, 7)",
                                                  "gap(dr, 7) - gap(cse, 7)"]
    # the first registration's growth rows fit over d = 1, 2, 4, 7: slope of gap = 0.3 log2 d for DR, 0 for
    # CSE; DR's gap at d = 9 (off that line) enters only the extension's rows, fitted over 1, 2, 4, 7, 9
    gap = {(m, d): np.full(10, 0.3 * np.log2(d) if m == "dr" else 0.0) + 0.01 * np.arange(10) for m in cd.METHODS
           for d in cd.MJX_DIMS}
    gap[("dr", 9)] = gap[("dr", 9)] + 5.0
    growth = next(r for r in rows if r["statistic"] == "slope(dr) - slope(cse)")
    assert cd.judge(growth, gap)["mean"] == pytest.approx(0.3)
    extension = [r for r in rows if r in cd.EXTENSION_CLAIMS]
    assert [r["id"].split(":")[1] for r in extension] == ["cse<ldr@9", "cse<vanilla@9", "cse<dr@9",
                                                          "slope(cse)<slope(dr)@1-9", "slope(cse)<slope(ldr)@1-9"]
    x = np.log2([1, 2, 4, 7, 9])
    want = np.polyfit(x, 0.3 * x + np.asarray([0, 0, 0, 0, 5.0]), 1)[0]
    assert cd.judge(extension[3], gap)["mean"] == pytest.approx(want)
    assert cd.judge(extension[2], gap)["mean"] == pytest.approx(0.3 * np.log2(9) + 5.0)
    # the first registration's rows are those recorded (and judged) before the extension
    recorded = os.path.join(cd.REPO, "docs", "experiments", "context_dimension", "cartpole_physical", "preregistered.json")
    with open(recorded) as f:
        first = [r for r in json.load(f)["claims"] if "dims" not in r]
    assert [r for r in cd.CLAIMS if r not in cd.EXTENSION_CLAIMS] == first and len(first) == 15


def test_experiment_cell_statistics_by_hand():
    """Two seeds, a training context and two held-out ones: the gap, returns and drop by hand,
    per dimension for an analytic family, as they are for the MJX family."""
    cd = _experiment()
    returns = np.asarray([[190.0, 150.0, 170.0], [180.0, 100.0, 120.0]])  # (S=2, C=3), column 0: training
    bound = np.full(3, 200.0)
    mjx = cd.cell_statistics("cartpole_physical", 4, returns, bound)
    assert mjx["gap"] == [40.0, 90.0] and mjx["heldout_return"] == [160.0, 110.0]
    assert mjx["train_return"] == [190.0, 180.0] and mjx["drop"] == [30.0, 70.0]
    assert mjx["heldout_optimum"] == 200.0 and mjx["train_optimum"] == 200.0
    optimum = np.asarray([0.0, 40.0, 80.0])
    lq = cd.cell_statistics("context_dim_lq", 4, returns / 10, optimum)
    np.testing.assert_allclose(lq["gap"], [(40 - 15 + 80 - 17) / 2 / 4, (40 - 10 + 80 - 12) / 2 / 4])
    np.testing.assert_allclose(lq["drop"], [(19 - 16) / 4, (18 - 11) / 4])
    assert lq["heldout_optimum"] == 15.0 and lq["train_optimum"] == 0.0
