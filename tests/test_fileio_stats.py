"""Shared helpers: atomic writes, JSON conversion, machine description, log-log slopes."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax import fileio, machine, stats
from zsgjax.offline import reporting


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
    assert reporting.loglog_slope(x, np.array([1.0, 0.5, 0.0, 0.0])) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="positive"):
        reporting.loglog_slope(x, np.zeros(4))
    with pytest.raises(ValueError, match="equal length"):
        stats.loglog_slope(x, x[:3])
