"""Batched MJX steps do not deadlock XLA:CPU (jaxlib's parallel LAPACK batch map; zsgjax.envs.mjx.cpu_pool).

The slow test runs the reported case, a jitted ``lax.scan`` of 1024 batched
half-cheetah steps with all physical features at random contexts and actions,
several times, each in a fresh process under a timeout: with jax's default
two-thread pool on a 2-core machine most such processes hang
(benchmarks/mjx_hang_repro.py, docs/performance.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

from zsgjax.envs.mjx import cpu_pool

CHEETAH_SCAN = """
import jax, sys
from zsgjax.envs import make
from zsgjax.envs.mjx import cpu_pool
num, steps, calls = 1024, 5, 6
features = ("gravity", "mass_scale", "mass_scale:torso", "friction_scale", "actuator_gain", "damping_scale")
env = make("cheetah_velocity", physical=features)
contexts = jax.vmap(env.context_space.sample_uniform)(jax.random.split(jax.random.PRNGKey(5), num))
states = jax.vmap(env.init_env_state)(jax.random.split(jax.random.PRNGKey(0), num), contexts)
step = jax.vmap(lambda s, a, c: env.env_step(s, a, c)[0])

@jax.jit
def run(states, key):
    def body(carry, _):
        s, k = carry
        k, k_act = jax.random.split(k)
        action = jax.random.uniform(k_act, (num, env.action_size), minval=-1.0, maxval=1.0)
        return (step(s, action, contexts), k), None
    return jax.lax.scan(body, (states, key), None, length=steps)[0][0]

for i in range(calls):
    out = jax.block_until_ready(run(states, jax.random.PRNGKey(i)))
assert bool(jax.numpy.isfinite(out.qpos).all())
print("POOL", cpu_pool.intra_op_pool_threads())
"""


def test_jaxlib_versions_that_split_lapack_batches():
    assert cpu_pool.jaxlib_splits_lapack_batches("0.10.2")
    assert cpu_pool.jaxlib_splits_lapack_batches("0.11.0")  # its source still has the parallel path
    assert cpu_pool.jaxlib_splits_lapack_batches("0.11.1rc1")
    assert not cpu_pool.jaxlib_splits_lapack_batches("0.11.2")
    assert not cpu_pool.jaxlib_splits_lapack_batches("0.12.0.dev20261001")
    assert not cpu_pool.jaxlib_splits_lapack_batches("1.0")
    with pytest.raises(ValueError, match="`version` must start with a release number"):
        cpu_pool.jaxlib_splits_lapack_batches("dev")


def test_limit_sets_one_thread_keeps_the_users_setting_and_warns_when_too_late(monkeypatch):
    affected = cpu_pool.jaxlib_splits_lapack_batches()
    monkeypatch.setattr(cpu_pool, "intra_op_pool_threads", lambda: 0)  # backend not started yet
    monkeypatch.delenv("NPROC", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cpu_pool.limit_intra_op_pool() is affected
    assert os.environ.get("NPROC") == ("1" if affected else None)

    monkeypatch.setenv("NPROC", "2")  # the user's choice stands
    assert cpu_pool.limit_intra_op_pool() is False
    assert os.environ["NPROC"] == "2"

    monkeypatch.delenv("NPROC")
    monkeypatch.setattr(cpu_pool, "intra_op_pool_threads", lambda: 1)  # started with one thread: nothing to say
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cpu_pool.limit_intra_op_pool()

    if affected:  # the backend already runs two threads: too late to change, say so
        monkeypatch.delenv("NPROC")
        monkeypatch.setattr(cpu_pool, "intra_op_pool_threads", lambda: 2)
        with pytest.warns(RuntimeWarning, match="already runs 2 intra-op threads.*NPROC=1"):
            assert cpu_pool.limit_intra_op_pool() is True


def test_importing_the_mjx_envs_sets_one_thread_before_jax_starts():
    code = ("import os, jax, zsgjax.envs.mjx; from zsgjax.envs.mjx import cpu_pool; "
            "jax.block_until_ready(jax.numpy.ones(2) + 1); "
            "print(os.environ.get('NPROC'), cpu_pool.intra_op_pool_threads())")
    env = {k: v for k, v in os.environ.items() if k != "NPROC"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    affected = cpu_pool.jaxlib_splits_lapack_batches()
    nproc, threads = out.stdout.split()
    assert nproc == ("1" if affected else "None")
    if affected:
        assert threads == "1"


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(3))
def test_1024_batched_cheetah_steps_never_hang(attempt, tmp_path_factory):
    """6 calls of a 5-step scan of 1024 cheetahs in a fresh process, 900 s at most (1-4 min on a busy 2-core CPU)."""
    cache = tmp_path_factory.getbasetemp() / "mjx_hang_cache"  # shared by the attempts: compile once
    env = {k: v for k, v in os.environ.items() if k != "NPROC"}  # zsgjax.envs.mjx decides the pool
    env.update(JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    try:
        proc = subprocess.run([sys.executable, "-c", CHEETAH_SCAN], env=env, capture_output=True, text=True,
                              timeout=900)
    except subprocess.TimeoutExpired:
        pytest.fail(f"attempt {attempt}: 1024 batched cheetah steps did not return within 900 s (deadlock)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = "1" if cpu_pool.jaxlib_splits_lapack_batches() else None
    if expected is not None:
        assert f"POOL {expected}" in proc.stdout, proc.stdout
