"""Shared helpers: atomic writes, JSON conversion, machine description, log-log slopes."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax.reporting import files as fileio
from zsgjax.reporting import machine, stats


def test_write_json_converts_arrays_and_is_atomic(tmp_path):
    path = tmp_path / "r.json"
    fileio.write_json(path, {"a": np.arange(3), "b": {"c": np.float32(1.5)}, "j": jnp.arange(2),
                             "nan": float("nan"), "m": machine.machine_description("shared")})
    out = json.loads(path.read_text())
    assert out["a"] == [0, 1, 2] and out["b"]["c"] == 1.5 and out["j"] == [0, 1] and out["nan"] is None
    assert out["m"]["note"] == "shared"
    assert {"cpu_model", "cpu_count", "jax", "jaxlib", "device_kind"} <= set(out["m"])

    with pytest.raises(RuntimeError, match="disk full"):
        with fileio.atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(b'{"a": "partial')
            raise RuntimeError("disk full")
    assert json.loads(path.read_text())["a"] == [0, 1, 2]
    assert os.listdir(tmp_path) == ["r.json"]


def test_save_figure_writes_png_atomically(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    fileio.save_figure(fig, tmp_path / "f.png")
    plt.close(fig)
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["f.png"]


def test_loglog_slope():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    assert stats.loglog_slope(x, 3.0 * x**-0.5) == pytest.approx(-0.5)
    assert stats.loglog_slope(-x, x**2) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="must be > 0"):
        stats.loglog_slope(x, np.array([1.0, 0.5, 0.0, 0.0]))
    # the offline experiments drop points whose suboptimality reached exactly 0
    assert stats.loglog_slope(x, np.array([1.0, 0.5, 0.0, 0.0]), drop_nonpositive=True) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="positive"):
        stats.loglog_slope(x, np.zeros(4), drop_nonpositive=True)
    with pytest.raises(ValueError, match="equal length"):
        stats.loglog_slope(x, x[:3])


def test_student_t_intervals_against_scipy_and_tables():
    from scipy import stats as scipy_stats

    # textbook two-sided 95% quantiles
    for n, q in [(2, 12.706), (3, 4.303), (5, 2.776), (10, 2.262)]:
        assert stats.t_quantile(n) == pytest.approx(q, abs=1e-3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3))
    mean, half = stats.mean_ci(x)
    lo, hi = scipy_stats.t.interval(0.95, 4, loc=x.mean(0), scale=scipy_stats.sem(x, axis=0))
    np.testing.assert_allclose(mean - half, lo, rtol=1e-10)
    np.testing.assert_allclose(mean + half, hi, rtol=1e-10)
    assert np.all(np.isnan(stats.mean_ci(x[:1])[1]))
    # paired difference: the t-interval of a_k - b_k; unpaired: Welch
    a, b = rng.normal(size=6), rng.normal(size=6) + 0.3
    d, h = stats.difference_ci(a, b)
    assert d == pytest.approx(np.mean(a - b)) and h == pytest.approx(stats.mean_ci(a - b)[1])
    d, h = stats.difference_ci(a, b[:4])
    welch = scipy_stats.ttest_ind(a, b[:4], equal_var=False).confidence_interval(0.95)
    assert d - h == pytest.approx(welch.low) and d + h == pytest.approx(welch.high)
    with pytest.raises(ValueError, match="num_samples"):
        stats.t_quantile(1)


def test_source_commit_names_the_checkout():
    import os
    import re

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    commit = machine.source_commit()
    if os.path.exists(os.path.join(root, ".git")):
        assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit), commit
    else:
        assert commit is None
    assert machine.machine_description()["zsgjax_commit"] == commit
