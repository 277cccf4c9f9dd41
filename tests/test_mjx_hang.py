"""Batched MJX steps do not deadlock XLA:CPU (jaxlib's parallel LAPACK batch map; zsgjax.envs.mjx.cpu_pool).

The slow test runs the reported case, a jitted ``lax.scan`` of 1024 batched
half-cheetah steps with all physical features at random contexts and actions,
several times, each in a fresh process under a timeout: with jax's default
two-thread pool on a 2-core machine many such processes hang
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


def test_pool_sizes_that_can_deadlock():
    assert [cpu_pool.can_deadlock(n) for n in (1, 2, 3, 4, 16)] == [False, True, False, False, False]


@pytest.mark.parametrize("cores, expected", [(1, None), (2, "4"), (3, "4"), (4, None), (16, None)])
def test_spare_threads_where_the_default_pool_is_small_and_the_users_setting_stands(monkeypatch, cores, expected):
    affected = cpu_pool.jaxlib_splits_lapack_batches()
    monkeypatch.setattr(cpu_pool, "default_pool_threads", lambda: cores)
    monkeypatch.setattr(cpu_pool, "intra_op_pool_threads", lambda: 0)  # backend not started yet
    monkeypatch.delenv("NPROC", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cpu_pool.ensure_spare_threads() is (affected and expected is not None)
    assert os.environ.get("NPROC") == (expected if affected else None)

    monkeypatch.setenv("NPROC", "1")  # the user's choice stands
    assert cpu_pool.ensure_spare_threads() is False and os.environ["NPROC"] == "1"


def test_a_backend_started_with_a_pool_that_can_hang_is_reported(monkeypatch):
    if not cpu_pool.jaxlib_splits_lapack_batches():
        pytest.skip("this jaxlib does not split LAPACK batches")
    monkeypatch.setattr(cpu_pool, "default_pool_threads", lambda: 2)
    monkeypatch.delenv("NPROC", raising=False)
    monkeypatch.setattr(cpu_pool, "intra_op_pool_threads", lambda: 4)  # started with spare threads: nothing to say
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cpu_pool.ensure_spare_threads()
    monkeypatch.delenv("NPROC")
    monkeypatch.setattr(cpu_pool, "intra_op_pool_threads", lambda: 2)  # too late to change: say so
    with pytest.warns(RuntimeWarning, match="already runs 2 intra-op threads.*NPROC=4"):
        assert cpu_pool.ensure_spare_threads() is True


def test_importing_the_mjx_envs_sizes_the_pool_before_jax_starts():
    code = ("import os, jax, zsgjax.envs.mjx; from zsgjax.envs.mjx import cpu_pool; "
            "jax.block_until_ready(jax.numpy.ones(2) + 1); "
            "print(os.environ.get('NPROC'), cpu_pool.intra_op_pool_threads())")
    env = {k: v for k, v in os.environ.items() if k != "NPROC"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    nproc, threads = out.stdout.split()
    assert not cpu_pool.can_deadlock(int(threads))
    cores = cpu_pool.default_pool_threads()
    if cpu_pool.jaxlib_splits_lapack_batches() and 1 < cores < cpu_pool.MIN_POOL_THREADS:
        assert nproc == threads == str(cpu_pool.MIN_POOL_THREADS)


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
    threads = int(proc.stdout.split("POOL")[-1].split()[0])
    assert not cpu_pool.can_deadlock(threads), proc.stdout
