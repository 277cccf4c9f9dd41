"""Atomic result writers and the log-log slope used by the offline experiments."""

import json
import os

import numpy as np
import pytest

from zsgjax.offline import reporting


def test_write_json_converts_arrays_and_is_atomic(tmp_path):
    path = tmp_path / "r.json"
    reporting.write_json(path, {"a": np.arange(3), "b": {"c": np.float32(1.5)}, "m": reporting.machine_description("shared")})
    out = json.loads(path.read_text())
    assert out["a"] == [0, 1, 2] and out["b"]["c"] == 1.5 and out["m"]["note"] == "shared"
    assert {"cpu_model", "cpu_count", "jax_version", "device_kind"} <= set(out["m"])

    def half_write(f):
        f.write(b'{"a": "partial')
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        reporting._atomic_write(str(path), half_write)
    assert json.loads(path.read_text())["a"] == [0, 1, 2]
    assert os.listdir(tmp_path) == ["r.json"]


def test_loglog_slope():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    assert reporting.loglog_slope(x, 3.0 * x**-0.5) == pytest.approx(-0.5)
    assert reporting.loglog_slope(x, np.array([1.0, 0.5, 0.0, 0.0])) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="positive"):
        reporting.loglog_slope(x, np.zeros(4))
