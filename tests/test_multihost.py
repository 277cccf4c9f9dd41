"""Multi-host training (``zsgjax.distributed``, ``scripts/train_multihost.py``).

The slow tests start 2 local CPU processes (2 CPU devices each) joined by
``jax.distributed`` and compare their result with one process holding 4 forced CPU
devices (``--xla_force_host_platform_device_count=4``) and the same mesh shape:
``(2 seeds x 2 envs)`` (the seeds axis spans the processes) and ``(1 x 4)`` (the
envs axis, hence the gradient all-reduce, spans the processes). The default-suite
tests check the arguments only (no JAX backend, no compilation).
"""

import importlib.util
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from _tiny import TINY_SEEDS, TINY_TRAIN
from zsgjax import distributed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "train_multihost.py")
TIMEOUT_S = 600  # per launch: a hung coordinator fails the test instead of hanging the suite


def load_script():
    spec = importlib.util.spec_from_file_location("train_multihost", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ argument checks (default suite)
@pytest.mark.parametrize("address, message", [
    ("localhost", "must be 'host:port'"),
    (":1234", "must be 'host:port'"),
    ("localhost:0", "port must be an integer in [1, 65535]"),
    ("localhost:70000", "port must be an integer in [1, 65535]"),
    ("localhost:abc", "port must be an integer in [1, 65535]"),
    ("::1:1234", "IPv6 as [::1]:29400"),
    (None, "must be 'host:port'"),
])
def test_bad_coordinator_addresses_rejected(address, message):
    with pytest.raises(ValueError, match="coordinator_address") as e:
        distributed.check_coordinator(address)
    assert message in str(e.value)


def test_good_coordinator_addresses():
    assert distributed.check_coordinator("10.0.0.1:29400") == ("10.0.0.1", 29400)
    assert distributed.check_coordinator("[::1]:8476") == ("[::1]", 8476)
    assert distributed.check_coordinator("node-3.cluster:1") == ("node-3.cluster", 1)


@pytest.mark.parametrize("num_processes, process_id, message", [
    (0, 0, "`num_processes` must be >= 1, got 0"),
    (2, 2, "`process_id` must be in [0, num_processes=2), i.e. 0..1; got 2"),
    (2, -1, "`process_id` must be in [0, num_processes=2), i.e. 0..1; got -1"),
    (2.0, 0, "`num_processes` must be an integer"),
    (2, True, "`process_id` must be an integer"),
])
def test_bad_process_counts_rejected(num_processes, process_id, message):
    with pytest.raises(ValueError) as e:
        distributed.check_processes(num_processes, process_id)
    assert message in str(e.value)


def test_initialize_checks_before_starting_anything(monkeypatch):
    for var in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match=r"`process_id` must be in \[0, num_processes=2\)"):
        distributed.initialize("127.0.0.1:1234", 2, 5)
    with pytest.raises(ValueError, match="`local_device_count` must be >= 1"):
        distributed.initialize("127.0.0.1:1234", 2, 0, local_device_count=0)
    with pytest.raises(ValueError, match="`coordinator_address` is not given .*JAX_COORDINATOR_ADDRESS"):
        distributed.initialize(None, 2, 0)
    with pytest.raises(ValueError, match="`initialization_timeout` must be an integer number of seconds >= 1"):
        distributed.initialize("127.0.0.1:1234", 2, 0, initialization_timeout=0)
    # the environment variables stand in for missing arguments, and are checked too
    monkeypatch.setenv(distributed.ENV_COORDINATOR, "10.0.0.1:29400")
    monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "4")
    monkeypatch.setenv(distributed.ENV_PROCESS_ID, "3")
    assert distributed.resolve() == ("10.0.0.1:29400", 4, 3)
    assert distributed.resolve(process_id=1) == ("10.0.0.1:29400", 4, 1)
    monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "four")
    with pytest.raises(ValueError, match="environment variable JAX_NUM_PROCESSES must be an integer, got 'four'"):
        distributed.resolve()


def test_digests_and_fingerprints_tell_values_apart():
    a = {"x": np.arange(3, dtype=np.float32), "y": np.zeros((2, 2), np.int32)}
    b = {"x": np.arange(3, dtype=np.float32), "y": np.zeros((2, 2), np.int32)}
    assert distributed.array_digest(a) == distributed.array_digest(b)
    b["x"][1] += 1e-7  # one ulp-scale change
    assert distributed.array_digest(a) != distributed.array_digest(b)
    assert distributed.array_digest(np.zeros(4, np.float32)) != distributed.array_digest(np.zeros((2, 2), np.float32))
    assert distributed.fingerprint({"a": 1, "b": [2]}) == distributed.fingerprint({"b": [2], "a": 1})
    assert distributed.fingerprint({"a": 1}) != distributed.fingerprint({"a": 2})


@pytest.mark.parametrize("argv, message", [
    (["--num-processes", "2", "--process-id", "0"], "--coordinator is not given"),
    (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"], "--coordinator must be 'host:port'"),
    (["--coordinator", "h:99999", "--num-processes", "2", "--process-id", "0"], "--coordinator: the port must be"),
    (["--coordinator", "h:1234", "--num-processes", "2", "--process-id", "2"],
     "--process-id must be in [0, num_processes=2), i.e. 0..1; got 2"),
    (["--coordinator", "h:1234", "--num-processes", "2"], "--process-id is not given"),
    (["--coordinator", "h:1234", "--num-processes", "0", "--process-id", "0"], "--num-processes must be >= 1, got 0"),
    (["--local-device-count", "0"], "--local-device-count must be >= 1"),
    (["--mesh-seeds", "2", "--seeds", "3"], "--seeds must be a positive multiple of --mesh-seeds=2, got 3"),
    (["--coordinator", "h:1234", "--num-processes", "2", "--process-id", "1", "--local-device-count", "2",
      "--mesh-seeds", "3"], "--mesh-seeds 3 x --mesh-envs 1 must equal the device count 4"),
    (["--init-timeout", "0"], "--init-timeout must be >= 1 second"),
    (["--coordinatr", "h:1"], "did you mean --coordinator?"),
])
def test_script_rejects_bad_options_in_one_line(argv, message, capsys, monkeypatch):
    for var in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(SystemExit) as e:
        load_script().parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("train_multihost: error: "), err
    assert message in err, err


def test_script_defaults_to_one_process(monkeypatch):
    for var in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
        monkeypatch.delenv(var, raising=False)
    script = load_script()
    args = script.parse_args(["--mesh-seeds", "2"])
    assert (args.num_processes, args.process_id, args.coordinator, args.seeds) == (1, 0, None, 2)
    args = script.parse_args(["--coordinator", "h:1234", "--num-processes", "3", "--process-id", "2"])
    assert (args.num_processes, args.process_id, args.coordinator) == (3, 2, "h:1234")
    message = script.option_message("TrainConfig.batch_size must be a multiple of 4")
    assert message == "--batch-size must be a multiple of 4"
    assert script.option_message("TrainConfig.gamma must be in [0, 1)") == "--train-option gamma must be in [0, 1)"


# ------------------------------------------------------------------ 2 processes vs 1 (slow)
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_argv(mesh_seeds: int) -> list[str]:
    t = TINY_TRAIN
    return ["--env", t["env"], "--method", "cse", "--steps", str(t["total_steps"]), "--num-envs", str(t["num_envs"]),
            "--steps-per-iteration", str(t["steps_per_iteration"]), "--learning-starts", str(t["learning_starts"]),
            "--batch-size", str(t["batch_size"]), "--buffer-size", str(t["buffer_size"]),
            "--hidden-sizes", *map(str, t["hidden_sizes"]), "--seeds", str(TINY_SEEDS),
            "--mesh-seeds", str(mesh_seeds), "--no-compile-cache"]


def child_env(forced_devices: int | None = None) -> dict[str, str]:
    """The suite's environment (XLA flags included) on the CPU, with ``forced_devices``
    CPU devices forced through ``XLA_FLAGS`` (else the process's own choice)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    if forced_devices is not None:
        flags.append(f"--xla_force_host_platform_device_count={forced_devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    return env


def launch(argvs: list[list[str]], envs: list[dict[str, str]]) -> list[subprocess.CompletedProcess]:
    """Run the script once per argv, all at once; kill every one when any runs past TIMEOUT_S."""
    procs = [subprocess.Popen([sys.executable, SCRIPT, *argv], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for argv, env in zip(argvs, envs)]
    done = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=TIMEOUT_S)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return done


def digest_lines(proc) -> list[str]:
    return [line for line in proc.stdout.splitlines() if "result digest" in line]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """For meshes 2x2 and 1x4: the 2-process run and the 1-process run, results loaded."""
    out = {}
    for mesh_seeds in (2, 1):
        d = tmp_path_factory.mktemp(f"multihost{mesh_seeds}")
        port = free_port()
        common = tiny_argv(mesh_seeds) + ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                                          "--local-device-count", "2", "--init-timeout", "120",
                                          "--out", str(d / "multi.json"), "--params-out", str(d / "multi.npz")]
        multi = launch([common + ["--process-id", str(i)] for i in (0, 1)], [child_env(), child_env()])
        single_argv = tiny_argv(mesh_seeds) + ["--out", str(d / "single.json"), "--params-out", str(d / "single.npz")]
        single = launch([single_argv], [child_env(forced_devices=4)])
        for p in multi + single:
            assert p.returncode == 0, p.stderr[-4000:]
        out[f"{mesh_seeds}x{4 // mesh_seeds}"] = dict(
            multi=json.loads((d / "multi.json").read_text()), single=json.loads((d / "single.json").read_text()),
            multi_params=dict(np.load(d / "multi.npz")), single_params=dict(np.load(d / "single.npz")),
            procs=multi, single_proc=single[0])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("mesh, rel", [("2x2", 1e-5), ("1x4", 1e-4)])
def test_two_processes_match_one_process(runs, mesh, rel):
    """The tolerances of tests/test_sharding.py: 1e-5 relative when only seeds are split
    (no reduction across devices), 1e-4 when the gradient all-reduce spans devices."""
    r = runs[mesh]
    multi, single = r["multi"], r["single"]
    seeds, envs = map(int, mesh.split("x"))
    assert multi["num_processes"] == 2 and single["num_processes"] == 1
    assert multi["mesh"] == single["mesh"] == {"seeds": seeds, "envs": envs}
    assert [len(v) for v in multi["devices"].values()] == [2, 2] and len(single["devices"]["0"]) == 4
    assert multi["seed_keys"] == single["seed_keys"] and len(multi["seed_keys"]) == TINY_SEEDS
    assert multi["config"] == single["config"]
    p_multi, p_single = r["multi_params"], r["single_params"]
    assert sorted(p_multi) == sorted(p_single) and p_multi
    scale = max(float(np.max(np.abs(v))) for v in p_single.values())
    err = max(float(np.max(np.abs(p_multi[k] - p_single[k]))) for k in p_single)
    assert all(v.shape[0] == TINY_SEEDS for v in p_multi.values())
    assert err <= rel * max(1.0, scale), (mesh, err, scale)
    assert multi["metrics"]["env_steps"] == single["metrics"]["env_steps"]
    for name in ("critic_loss", "actor_loss"):
        a, b = np.asarray(multi["metrics"][name], float), np.asarray(single["metrics"][name], float)
        assert a.shape == (TINY_SEEDS, TINY_TRAIN["total_steps"] // TINY_TRAIN["steps_per_iteration"])
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)  # as tests/test_sharding.py
    print(f"{mesh}: max |param difference| {err:.3g} (param scale {scale:.3g})")


@pytest.mark.slow
@pytest.mark.parametrize("mesh", ["2x2", "1x4"])
def test_every_process_gets_the_same_result_and_only_process_0_writes(runs, mesh):
    r = runs[mesh]
    lines = [digest_lines(p) for p in r["procs"]]
    assert [len(x) for x in lines] == [1, 1], lines
    assert lines[0][0] == f"train_multihost: process 0 of 2: result digest {r['multi']['digest']}"
    assert lines[1][0] == f"train_multihost: process 1 of 2: result digest {r['multi']['digest']}"
    assert "wrote" in r["procs"][0].stdout and "wrote" not in r["procs"][1].stdout
    # the mesh rows: process 0's devices first, then process 1's
    devices = r["multi"]["devices"]
    flat = [d for row in r["multi"]["mesh_devices"] for d in row]
    assert flat == devices["0"] + devices["1"]


@pytest.mark.slow
def test_processes_started_with_different_options_fail_loudly(tmp_path):
    port = free_port()
    common = tiny_argv(2) + ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--local-device-count", "2",
                             "--init-timeout", "120", "--out", str(tmp_path / "r.json")]
    procs = launch([common + ["--process-id", "0"], common + ["--process-id", "1", "--seed", "1"]],
                   [child_env(), child_env()])
    for i, p in enumerate(procs):
        assert p.returncode == 2, p.stderr[-4000:]
        assert (f"train_multihost: error: the training config, mesh shape or seed keys differ between processes: "
                f"processes [1] do not match process 0 (start every process with the same options); process {i}"
                in p.stderr), p.stderr[-4000:]
    assert not (tmp_path / "r.json").exists()
