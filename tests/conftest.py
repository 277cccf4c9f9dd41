"""Shared test configuration.

Tests run on the CPU. Float64 checks (finite differences) use the
``jax.enable_x64(True)`` context manager locally rather than a global flag, so the
rest of the suite runs in float32 as users do.

Compiled programs are shared between tests (and between the ``pytest -n`` workers)
through JAX's persistent compilation cache in a directory made fresh for each test
session and removed at its end: a test that builds a program another test already
compiled (the same trainer config, the same evaluator) loads it instead of
compiling it again. Nothing is kept across sessions, so every CI run compiles from
scratch.
"""

import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests are dominated by XLA compilation, not by running the programs: skip LLVM's
# optimisation passes (IEEE semantics are unchanged; only the generated code is slower).
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
os.environ.setdefault("MUJOCO_GL", "disable")
# Set by the controlling process before the workers start, so they inherit it.
if "ZSGJAX_TEST_COMPILE_CACHE" not in os.environ:
    os.environ["ZSGJAX_TEST_COMPILE_CACHE"] = tempfile.mkdtemp(prefix="zsgjax-test-jit-")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["ZSGJAX_TEST_COMPILE_CACHE"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def pytest_configure(config):
    # ``pytest -n 2`` distributes with "load"; "loadgroup" keeps the tests of one
    # ``xdist_group`` on one worker, in sequence, so the later ones reuse what the first
    # compiled (the compilation cache) or built (module-scoped fixtures).
    # Workers re-parse the command line (not the controller's options), so the choice
    # reaches them through the environment they inherit.
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"
        os.environ["ZSGJAX_TEST_LOADGROUP"] = "1"
    if hasattr(config, "workerinput") and os.environ.get("ZSGJAX_TEST_LOADGROUP") == "1":
        config.option.loadgroup = True


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    # Under loadgroup, tests without a group of their own are grouped by module, so a
    # module-scoped fixture (a compiled trainer, a subprocess) is built on one worker only.
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def pytest_sessionfinish(session, exitstatus):
    if not hasattr(session.config, "workerinput"):  # the controller (or a run without xdist)
        shutil.rmtree(os.environ["ZSGJAX_TEST_COMPILE_CACHE"], ignore_errors=True)


@pytest.fixture(scope="session")
def rng():
    return jax.random.PRNGKey(0)
