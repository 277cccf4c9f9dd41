"""Shared test configuration.

Tests run on the CPU. Float64 checks (finite differences) use the
``jax.enable_x64(True)`` context manager locally rather than a global flag, so the
rest of the suite runs in float32 as users do.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MUJOCO_GL", "disable")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def rng():
    return jax.random.PRNGKey(0)
