"""Small helpers shared by the offline experiment scripts and the PEVI benchmark.

Results are written atomically (temp file in the same directory, then ``os.replace``)
together with a description of the machine that produced them.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile

import jax
import numpy as np


def _jaxlib_version() -> str:
    try:
        import jaxlib

        return jaxlib.__version__
    except (ImportError, AttributeError):
        return "unknown"


def machine_description(note: str | None = None) -> dict:
    """CPU model, core count, jax/jaxlib versions and the default device kind."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    device = jax.devices()[0]
    out = {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax_version": jax.__version__,
        "jaxlib_version": _jaxlib_version(),
        "device_platform": device.platform,
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
    }
    if note:
        out["note"] = note
    return out


def _atomic_write(path: str, write) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _to_builtin(obj):
    if isinstance(obj, dict):
        return {str(k): _to_builtin(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_builtin(v) for v in obj]
    if isinstance(obj, (np.ndarray, jax.Array)):
        return _to_builtin(np.asarray(obj).tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` (NumPy/JAX arrays converted to lists) as indented JSON, atomically."""
    text = json.dumps(_to_builtin(payload), indent=2, sort_keys=False) + "\n"
    _atomic_write(os.fspath(path), lambda f: f.write(text.encode()))


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """``fig.savefig`` to ``path`` atomically (PNG)."""
    _atomic_write(os.fspath(path), lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"))


def loglog_slope(x, y) -> float:
    """Least-squares slope of ``log y`` against ``log x``, fitted on the points with ``y > 0``."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    keep = y > 0
    if keep.sum() < 2:
        raise ValueError("loglog_slope: need at least two positive `y` values")
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])
