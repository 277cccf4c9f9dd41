"""Description of the machine a result was measured on (stored with every result file)."""

from __future__ import annotations

import datetime as _dt
import importlib
import os
import platform
import sys
from typing import Any

import jax


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (or what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        return getattr(importlib.import_module(module), "__version__", None)
    except Exception:  # optional packages
        return None


def source_commit() -> str | None:
    """The git commit of the zsgjax source tree (``+dirty`` with uncommitted changes), or ``None``."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        def git(*args):
            return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=10)
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "zsgjax").stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_description(note: str | None = None) -> dict[str, Any]:
    """CPU model, core counts, platform, Python and library versions, the zsgjax commit, JAX devices, UTC time."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # non-Linux
        usable = os.cpu_count()
    devices = jax.devices()
    out = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "jax_backend": jax.default_backend(),
        "device_count": len(devices),
        "device_kind": devices[0].device_kind,
        "versions": {m: _version(m) for m in ("numpy", "flax", "optax", "brax", "mujoco", "flashbax", "zsgjax")},
        "zsgjax_commit": source_commit(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if note:
        out["note"] = note
    return out
