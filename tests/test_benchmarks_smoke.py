"""Smoke tests of the benchmark scripts: each main function runs end to end at a tiny
size and writes its JSON. No timing is asserted (benchmarks are scripts, not timed tests).

The end-to-end runs compile whole training programs (brax's SAC as well for
``sac_vs_brax``), which takes tens of seconds on a small shared CPU, so they are
marked ``slow`` (``pytest -m slow tests/test_benchmarks_smoke.py``); the helpers
are tested in the default run.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)

import _common  # noqa: E402


# ------------------------------------------------------------------ helpers
def test_alternate_abba_order_and_paired_ratio():
    calls = []
    sides = {"a": lambda: calls.append("a") or 2.0, "b": lambda: calls.append("b") or 1.0}
    times = _common.alternate(sides, 3)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert times == {"a": [2.0] * 3, "b": [1.0] * 3}
    r = _common.paired_ratio(times["a"], times["b"])
    assert r["median"] == 2.0 and r["n"] == 3


def test_write_json_atomic_and_machine_description(tmp_path):
    path = tmp_path / "sub" / "r.json"
    _common.write_json(str(path), {"x": np.float32(1.5), "y": jnp.arange(2), "z": float("nan")})
    assert json.loads(path.read_text()) == {"x": 1.5, "y": [0, 1], "z": None}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temporary left behind
    m = _common.machine_description()
    for key in ("cpu_model", "cpu_count", "jax", "jaxlib", "device_kind"):
        assert key in m


def test_load_average_and_roofline():
    la = _common.load_average()
    assert la is None or (len(la) == 3 and all(x >= 0 for x in la))
    r = _common.roofline(2e9, 0.5, 8.0)
    assert r == {"flops": 2e9, "achieved_gflops": 4.0, "fraction_of_peak": 0.5}
    assert _common.roofline(None, 0.5, 8.0)["fraction_of_peak"] is None


def test_device_put_replicated_shim():
    import sac_vs_brax

    had = hasattr(jax, "device_put_replicated")
    installed = sac_vs_brax.install_device_put_replicated_shim()
    assert installed == (not had)
    out = jax.device_put_replicated({"a": jnp.ones(3)}, jax.local_devices()[:1])
    assert out["a"].shape == (1, 3)


def test_direction_d_env():
    import cse_overhead

    env = cse_overhead.DirectionD(3)
    state = env.reset(jax.random.PRNGKey(0), jnp.full((3,), 0.5))
    assert state.obs.shape == (6,)
    nxt = env.step(state, jnp.zeros(3))
    np.testing.assert_allclose(nxt.obs[:3], state.obs[:3] + 0.5, rtol=1e-6)
    np.testing.assert_allclose(nxt.reward, jnp.dot(nxt.obs[:3], jnp.full(3, 0.5)), rtol=1e-6)
    assert cse_overhead.parse_dims("1-3,8") == [1, 2, 3, 8]


# ---------------------------------------------------------- end to end
@pytest.mark.slow
def test_sac_vs_brax_smoke(tmp_path):
    import sac_vs_brax

    out = tmp_path / "svb.json"
    res = sac_vs_brax.main(
        ["--envs", "pendulum_goal", "--num-envs", "2", "--batch-size", "8", "--hidden", "8",
         "--rounds", "2", "--repeats", "1", "--buffer-size", "64", "--out", str(out)]
    )
    saved = json.loads(out.read_text())
    assert saved["rows"][0]["env"] == "pendulum_goal"
    assert saved["rows"][0]["brax_episode_length"] == res["rows"][0]["horizon"] == 200
    assert saved["brax_shim"]["note"]
    row = saved["rows"][0]
    assert row["zsgjax"]["round_flops"] > 0 and row["zsgjax"]["roofline"]["fraction_of_peak"] > 0
    for side in ("zsgjax", "brax"):
        assert row["update_profile"][f"{side}_update_flops"] > 0
    assert len(saved["load_average_end"]) == 3


def test_resume_memory_smoke(tmp_path):
    """benchmarks/resume_memory.py at 0.2 GB (smaller restores can stay below the peak of starting jax): three
    sides in fresh processes, peaks as multiples of the state; a restore too small to measure is refused."""
    import resume_memory

    out = tmp_path / "rm.json"
    res = resume_memory.main(["--gb", "0.2", "--fields", "2", "--repeats", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert set(saved["sides"]) == {"fresh_state_read_at_once", "shapes_read_at_once", "shapes"}
    assert saved["state_gb"] == pytest.approx(0.2, rel=0.01) and res["before_over_now"]["n"] == 1
    for side in saved["sides"].values():
        assert len(side["restore_added_gb"]) == 1 and side["process_peak_gb"][0] > side["restore_added_gb"][0] >= 0


@pytest.mark.slow
def test_sac_vs_rejax_smoke(tmp_path):
    import sac_vs_rejax

    out = tmp_path / "svr.json"
    sac_vs_rejax.main(
        ["--num-envs", "2", "--batch-size", "8", "--hidden", "8", "--rounds", "2", "--repeats", "1",
         "--buffer-size", "64", "--seeds", "2", "--out", str(out)]
    )
    saved = json.loads(out.read_text())
    assert [(r["seeds"], r["vmapped"]) for r in saved["rows"]] == [(1, False), (2, True)]
    assert saved["settings"]["learning_starts"] == 8 and saved["differences"] and saved["rejax_shim"]
    for row in saved["rows"]:
        assert row["speedup_zsgjax_over_rejax"]["n"] == 1
        for side in ("zsgjax", "rejax"):
            assert row["round_flops"][f"{side}_round"] > 0
            assert row[side]["roofline"]["fraction_of_peak"] > 0 and row[side]["compile_s"] > 0
    # K vmapped seeds: K x the env steps and K x one seed's FLOPs of the same rounds
    one, two = saved["rows"]
    assert two["timed_env_steps"] == 2 * one["timed_env_steps"]
    assert two["zsgjax"]["roofline"]["flops"] == 2 * one["zsgjax"]["roofline"]["flops"]
    up = saved["update_profile"]
    assert up["zsgjax_update_flops"] > 0 and up["rejax_update_flops"] > 0
    assert saved["matmul_peak"]["gflops"] > 0 and saved["matmul_peak_end"]["gflops"] > 0


@pytest.mark.slow
def test_cse_overhead_smoke(tmp_path):
    import cse_overhead

    out = tmp_path / "cse.json"
    cse_overhead.main(
        ["--envs", "direction_d", "--dims", "2", "--num-envs", "2", "--batch-size", "8", "--hidden", "8",
         "--rounds", "2", "--repeats", "1", "--out", str(out)]
    )
    row = json.loads(out.read_text())["rows"][0]
    assert row["context_dim"] == 2 and set(row["times"]) == {"vanilla", "cse_jacobian", "cse_jvp"}
    assert "components" in row
    assert {"collect_jacobian_fd_over_jacobian", "collect_jvp_fd_over_jvp"} <= set(row["components"])


@pytest.mark.slow
def test_seed_scaling_smoke(tmp_path):
    import seed_scaling

    out = tmp_path / "seeds.json"
    seed_scaling.main(
        ["--seeds", "1,2", "--num-envs", "2", "--total-steps", "16", "--learning-starts", "4",
         "--batch-size", "4", "--hidden", "8", "--repeats", "1", "--profile-seeds", "2", "--out", str(out)]
    )
    saved = json.loads(out.read_text())
    rows = saved["rows"]
    assert [r["seeds"] for r in rows] == [1, 2]
    f = saved["train_flops"]
    assert f["single"] == f["rounds"] * f["round"] - f["warm_rounds"] * f["updates"] and f["warm_rounds"] == 1
    assert rows[1]["vmapped"]["roofline"]["flops"] == 2 * f["per_vmapped_seed"]
    assert rows[1]["sequential"]["roofline"]["flops"] == 2 * f["single"]


def test_count_kernels_follows_control_flow_not_fusion_bodies():
    from hlo_fusions import count_kernels

    f = lambda x: jax.lax.fori_loop(0, 3, lambda i, y: jnp.tanh(y @ y) + 1.0, x)  # noqa: E731
    text = jax.jit(f).lower(jnp.ones((8, 8))).compile().as_text()
    counts = count_kernels(text)
    assert counts["control"] >= 1 and counts["kernels"] >= 1
    assert counts["kernels"] <= 12  # the loop body is counted once, fused computations not at all


@pytest.mark.slow
def test_gpu_suite_tiny_writes_every_result(tmp_path):
    import gpu_suite

    summary = gpu_suite.main(["--tiny", "--out-dir", str(tmp_path)])
    assert set(summary) == {"sac_vs_brax", "seed_scaling", "cse_overhead"}
    for name, part in summary.items():
        result = json.loads(open(part["out"]).read())
        assert result["benchmark"] == name
        assert result["machine"]["backend"] == jax.default_backend() and result["matmul_peak"]["gflops"] > 0


@pytest.mark.slow
def test_sac_update_variants_smoke(tmp_path):
    import sac_update_variants

    out = tmp_path / "variants.json"
    sac_update_variants.main(["--envs", "pendulum_goal", "--hidden", "8", "--batch-size", "8", "--steps", "2",
                              "--repeats", "1", "--out", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    assert set(row["variants"]) == set(sac_update_variants.VARIANTS)
    flops = [v["update_flops"] for v in row["variants"].values()]
    assert max(flops) <= 1.1 * min(flops)  # the same matmuls in every layout (at 8 wide, elementwise ops weigh 5%)
    assert row["variants"]["leaf_vmap"]["speed_over_default"]["median"] == 1.0


@pytest.mark.slow
def test_env_throughput_quick_records_the_roofline(tmp_path):
    import env_throughput

    out = tmp_path / "throughput.json"
    env_throughput.main(["--quick", "--envs", "simple_direction", "--out", str(out)])
    saved = json.loads(out.read_text())
    rows = saved["throughput"]["simple_direction"]
    assert [r["num_envs"] for r in rows] == [1, 4] and all(r["env_steps_per_s"] > 0 for r in rows)
    assert all(r["step_flops"] > 0 and r["roofline"]["fraction_of_peak"] > 0 for r in rows)
    assert saved["matmul_peak"]["gflops"] > 0 and len(saved["load_average_end"]) == 3
    assert saved["derivative_cost"]["simple_direction"]["jvp_over_step"] > 0
