"""ContextSpace: construction errors, validation, membership, sampling, sweeps, jit/vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax.envs import ContextSpace

NAMES = ("g", "m", "tau")
LOW = (0.5, 1.0, -1.0)
HIGH = (5.0, 2.0, 1.0)
DEFAULT = (2.0, 1.0, 0.0)


@pytest.fixture(scope="module")
def space():
    return ContextSpace(NAMES, LOW, HIGH, DEFAULT)


# ------------------------------------------------------------------ construction
def test_construction_fields_and_arrays(space):
    assert space.dim == 3
    assert space.names == NAMES
    np.testing.assert_array_equal(space.low_array, np.float32(LOW))
    np.testing.assert_array_equal(space.high_array, np.float32(HIGH))
    np.testing.assert_array_equal(space.default_array, np.float32(DEFAULT))
    assert space.default_array.dtype == jnp.float32
    # Immutable and hashable, so it can be closed over / used as a static argument.
    assert hash(space) == hash(ContextSpace(NAMES, LOW, HIGH, DEFAULT))


def test_scalar_bounds_broadcast():
    s = ContextSpace(("a", "b"), -1.0, 1.0, 0.0)
    assert s.low == (-1.0, -1.0) and s.high == (1.0, 1.0) and s.default == (0.0, 0.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(names=(), low=(), high=(), default=()), "at least one"),
        (dict(names=("a", "a"), low=(0, 0), high=(1, 1), default=(0, 0)), "unique"),
        (dict(names=("a", "b"), low=(0, 0, 0), high=(1, 1), default=(0, 0)), r"`low` must have shape \(2,\)"),
        (dict(names=("a", "b"), low=(0, 0), high=((1, 1),), default=(0, 0)), r"`high` must have shape \(2,\)"),
        (dict(names=("a", "b"), low=(0, 0), high=(1, 1), default=(0,)), r"`default` must have shape \(2,\)"),
        (dict(names=("a", "b"), low=(0, np.nan), high=(1, 1), default=(0, 0)), "`low` must be finite"),
        (dict(names=("a", "b"), low=(0, 2), high=(1, 1), default=(0, 1)), r"'b' has low=2.0 > high=1.0"),
        (
            dict(names=("a", "b"), low=(0, 0), high=(1, 1), default=(0.5, 1.5)),
            r"default of dimension 'b' is 1.5, outside its range \[0.0, 1.0\]",
        ),
    ],
)
def test_construction_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ContextSpace(**kwargs)


def test_degenerate_dimension_allowed():
    s = ContextSpace(("a",), (1.0,), (1.0,), (1.0,))
    x = s.sample_uniform(jax.random.PRNGKey(0), (5,))
    np.testing.assert_allclose(x, 1.0)


def test_index_and_subspace(space):
    assert space.index("tau") == 2
    assert space.index(1) == 1
    assert space.index(-1) == 2
    with pytest.raises(ValueError, match=r"unknown context dimension 'x'; known: \['g', 'm', 'tau'\]"):
        space.index("x")
    with pytest.raises(ValueError, match=r"index 3 out of range \[0, 3\)"):
        space.index(3)
    sub = space.subspace(["tau", "g"])
    assert sub.names == ("tau", "g")
    assert sub.low == (-1.0, 0.5) and sub.high == (1.0, 5.0) and sub.default == (0.0, 2.0)
    moved = space.with_default((4.0, 2.0, 1.0))
    assert moved.default == (4.0, 2.0, 1.0) and moved.low == space.low
    with pytest.raises(ValueError, match="'g'"):
        space.with_default((6.0, 1.0, 0.0))


# -------------------------------------------------------------------- validation
def test_validate(space):
    out = space.validate([1.0, 1.5, 0.5])
    assert out.dtype == np.float32 and out.shape == (3,)
    batch = space.validate(np.tile(DEFAULT, (4, 2, 1)))
    assert batch.shape == (4, 2, 3)
    # Bounds are inclusive.
    space.validate(LOW)
    space.validate(HIGH)
    with pytest.raises(ValueError, match=r"`ctx` dimension 'm' = 2.5 is outside its range \[1, 2\]"):
        space.validate([1.0, 2.5, 0.0], name="ctx")
    with pytest.raises(ValueError, match=r"dimension 'tau' = -3 is outside its range \[-1, 1\]"):
        space.validate([[1.0, 1.5, 0.0], [1.0, 1.5, -3.0]])
    with pytest.raises(ValueError, match=r"trailing dimension 3 \(g, m, tau\), got shape \(2,\)"):
        space.validate([1.0, 1.5])
    with pytest.raises(ValueError, match="trailing dimension 3"):
        space.validate(1.0)
    with pytest.raises(ValueError, match="non-finite"):
        space.validate([np.inf, 1.5, 0.0])


def test_contains_and_clip(space):
    pts = jnp.array(
        [
            [2.0, 1.5, 0.0],  # inside
            [0.5, 1.0, -1.0],  # on the low corner
            [6.0, 1.5, 0.0],  # g too large
            [2.0, 0.0, 2.0],  # m too small, tau too large
        ]
    )
    np.testing.assert_array_equal(space.contains(pts), [True, True, False, False])
    clipped = space.clip(pts)
    np.testing.assert_allclose(clipped, [[2.0, 1.5, 0.0], [0.5, 1.0, -1.0], [5.0, 1.5, 0.0], [2.0, 1.0, 1.0]])
    assert bool(jnp.all(space.contains(clipped)))
    np.testing.assert_allclose(space.clip(jnp.array([np.inf, -np.inf, 0.5])), [5.0, 1.0, 0.5])  # inf: to the bound


def test_clip_of_a_nan_context(space):
    """NaN has no projection: an error for a concrete context, propagated (for the caller's finiteness checks) when traced."""
    with pytest.raises(ValueError, match=r"clip: `context` dimension 'm' is NaN.*range is \[1, 2\]"):
        space.clip(jnp.array([[2.0, 1.5, 0.0], [2.0, np.nan, 0.0]]))
    with pytest.raises(ValueError, match="dimension 'tau' is NaN"):
        space.clip(np.array([2.0, 1.5, np.nan]))
    traced = np.asarray(jax.jit(space.clip)(jnp.array([np.nan, 9.0, 0.0])))
    assert np.isnan(traced[0]) and traced[1:].tolist() == [2.0, 0.0]
    assert not bool(space.contains(jnp.array([np.nan, 1.5, 0.0])))


# ---------------------------------------------------------------------- sampling
def test_sample_uniform_bounds_and_coverage(space):
    x = np.asarray(space.sample_uniform(jax.random.PRNGKey(1), (4000,)))
    assert x.shape == (4000, 3)
    assert np.all(x >= np.float32(LOW)) and np.all(x <= np.float32(HIGH))
    # Covers the box: mean at the centre, every decile of every dimension is hit.
    width = np.subtract(HIGH, LOW)
    np.testing.assert_allclose(x.mean(0), np.add(LOW, HIGH) / 2, atol=0.03 * width.max())
    for i in range(3):
        hist, _ = np.histogram(x[:, i], bins=10, range=(LOW[i], HIGH[i]))
        assert hist.min() > 300, hist
    assert x[:5].shape == np.asarray(space.sample_uniform(jax.random.PRNGKey(1), (5,))).shape
    assert space.sample_uniform(jax.random.PRNGKey(1)).shape == (3,)
    assert space.sample_uniform(jax.random.PRNGKey(1), (2, 5)).shape == (2, 5, 3)


def test_sample_local_centred_and_clipped(space):
    rng = jax.random.PRNGKey(2)
    x = np.asarray(space.sample_local(rng, scale=0.1, shape=(4000,)))
    assert x.shape == (4000, 3)
    assert np.all(space.contains(x))
    # g and tau are far from their bounds: unclipped Gaussian around the default.
    for i in (0, 2):
        assert abs(x[:, i].mean() - DEFAULT[i]) < 0.01
        assert abs(x[:, i].std() - 0.1) < 0.01
    # m sits on its lower bound: about half the samples are clipped onto it.
    frac_on_bound = np.mean(x[:, 1] == np.float32(LOW[1]))
    assert 0.45 < frac_on_bound < 0.55
    # Same noise as an explicit clip of default + scale * N(0, 1).
    noise = jax.random.normal(rng, (4000, 3))
    np.testing.assert_allclose(x, np.clip(np.float32(DEFAULT) + 0.1 * noise, LOW, HIGH), rtol=1e-6)
    # Explicit centre.
    c = jnp.array([4.0, 1.5, 0.5])
    y = np.asarray(space.sample_local(rng, scale=0.05, shape=(2000,), center=c))
    np.testing.assert_allclose(y.mean(0), c, atol=0.01)


def test_sweep(space):
    sw = np.asarray(space.sweep("g", 5))
    assert sw.shape == (5, 3)
    np.testing.assert_allclose(sw[:, 0], np.linspace(0.5, 5.0, 5), rtol=1e-6)
    np.testing.assert_allclose(sw[:, 1:], np.tile([1.0, 0.0], (5, 1)))
    sw2 = np.asarray(space.sweep(2, 3))
    np.testing.assert_allclose(sw2, [[2.0, 1.0, -1.0], [2.0, 1.0, 0.0], [2.0, 1.0, 1.0]])
    np.testing.assert_allclose(space.sweep_values("m", 3), [1.0, 1.5, 2.0])
    assert space.sweep("m", 1).shape == (1, 3)
    with pytest.raises(ValueError, match="`num` must be >= 1"):
        space.sweep("g", 0)
    with pytest.raises(ValueError, match="unknown context dimension"):
        space.sweep("mass", 3)


def test_sweep_values_are_the_formula_rounded_once():
    """low + k (high - low) / (num - 1) in float64, rounded once to float32: a symmetric range's
    midpoint is exactly 0 (float32 linspace gave 1.3e-07 at 31 points over [-3, 3])."""
    space = ContextSpace(names=("v",), low=(-3.0,), high=(3.0,), default=(2.0,))
    for num in (11, 31, 50, 51):
        got = np.asarray(space.sweep_values("v", num))
        want = (-3.0 + np.arange(num) * 6.0 / (num - 1)).astype(np.float32)
        np.testing.assert_array_equal(got, want)
        assert got[0] == -3.0 and got[-1] == 3.0
    assert np.asarray(space.sweep("v", 31))[15, 0] == 0.0


# ---------------------------------------------------------------------- jit/vmap
def test_sampling_and_clipping_under_jit_and_vmap(space):
    keys = jax.random.split(jax.random.PRNGKey(3), 6)

    @jax.jit
    def f(key):
        k1, k2 = jax.random.split(key)
        u = space.sample_uniform(k1)
        loc = space.sample_local(k2, scale=0.5, center=u)
        far = space.clip(u + 10.0)
        return u, loc, far, space.contains(u)

    u, loc, far, inside = jax.vmap(f)(keys)
    assert u.shape == loc.shape == far.shape == (6, 3) and inside.shape == (6,)
    assert bool(jnp.all(inside)) and bool(jnp.all(space.contains(loc)))
    np.testing.assert_allclose(far, np.tile(HIGH, (6, 1)))
    # Same values as the eager, per-key computation.
    u0 = space.sample_uniform(jax.random.split(keys[0])[0])
    np.testing.assert_allclose(u[0], u0, rtol=1e-6)
    # Distinct keys give distinct samples.
    assert len({tuple(np.round(np.asarray(r), 6)) for r in u}) == 6
