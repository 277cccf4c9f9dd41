"""Multi-host training: ``zsgjax train`` (and ``scripts/train_multihost.py``, a thin call
of it) over ``jax.distributed``, with the one run driver.

The default-suite tests check the arguments, the rendezvous before
``jax.distributed.initialize`` (threads on 127.0.0.1: a busy port, a duplicate id,
different options, a missing process) and the fingerprint comparison, with no JAX
backend and no compilation. The slow tests start 2 local CPU processes (2 CPU
devices each, Gloo on 127.0.0.1) and compare them with one process holding 4 forced
CPU devices and the same mesh shape, ``(2 seeds x 2 envs)`` (seeds across the
processes) and ``(1 x 4)`` (the gradient all-reduce across the processes), and a
2-process run killed after a checkpoint and resumed with the uninterrupted one.
"""

import json
import threading
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from _tiny import TINY_SEEDS, TINY_TRAIN
from zsgjax import cli, distributed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "train_multihost.py")
TIMEOUT_S = 600  # per launch: a hung coordinator fails the test instead of hanging the suite


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
    # the collective check's comparison: every process against process 0
    assert distributed.mismatched([7, 7, 7]) == []
    assert distributed.mismatched([7, 8, 7, 9]) == [1, 3]
    assert distributed.mismatched([8, 7, 7]) == [1, 2]


def test_single_process_collectives_are_local():
    with pytest.raises(ValueError, match="^disk full$"):
        distributed.share_errors("disk full")
    distributed.share_errors(None)
    tree = {"w": np.array([-0.0, np.nan], np.float32), "n": np.int32(3)}
    out = distributed.broadcast_from_0(tree)
    assert out["w"].tobytes() == tree["w"].tobytes() and out["n"] == 3


# ------------------------------------------------------------------ zsgjax train's process options
def mesh_options(argv, monkeypatch):
    for var in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
        monkeypatch.delenv(var, raising=False)
    return cli.mesh_options(cli.build_parser().parse_args(["train", *argv]))


@pytest.mark.parametrize("argv, message", [
    (["--num-processes", "2", "--process-id", "0"], "`coordinator_address` is not given"),
    (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"], "must be 'host:port'"),
    (["--coordinator", "h:99999", "--num-processes", "2", "--process-id", "0"], "the port must be"),
    (["--coordinator", "h:1234", "--num-processes", "2", "--process-id", "2"],
     "`process_id` must be in [0, num_processes=2), i.e. 0..1; got 2"),
    (["--coordinator", "h:1234", "--num-processes", "2"], "`process_id` is not given"),
    (["--coordinator", "h:1234", "--num-processes", "0", "--process-id", "0"], "`num_processes` must be >= 1, got 0"),
    (["--local-device-count", "0"], "`local_device_count` must be >= 1"),
    (["--mesh-seeds", "2", "--seeds", "3"], "--seeds must be a multiple of --mesh-seeds=2, got 3"),
    (["--mesh-envs", "0"], "--mesh-envs must be >= 1, got 0"),
    (["--coordinator", "h:1234", "--num-processes", "2", "--process-id", "1", "--local-device-count", "2",
      "--mesh-seeds", "3", "--seeds", "3", "--out", "d"], "--mesh-seeds 3 x --mesh-envs 1 must equal the device count 4"),
    (["--coordinator", "h:1234", "--num-processes", "2", "--process-id", "1"], "--out must name the run directory"),
    (["--init-timeout", "0"], "--init-timeout must be >= 1 second"),
])
def test_process_options_rejected_before_jax_starts(argv, message, monkeypatch):
    with pytest.raises(ValueError) as e:
        mesh_options(argv, monkeypatch)
    assert message in str(e.value), str(e.value)


def test_process_options_defaults(monkeypatch):
    o = mesh_options([], monkeypatch)
    assert (o.mesh_seeds, o.num_processes, o.process_id, o.coordinator) == (None, 1, 0, None)  # one device
    o = mesh_options(["--mesh-envs", "2"], monkeypatch)
    assert (o.mesh_seeds, o.mesh_envs) == (1, 2)
    o = mesh_options(["--coordinator", "h:1234", "--num-processes", "3", "--process-id", "2", "--out", "d"],
                     monkeypatch)
    assert (o.num_processes, o.process_id, o.coordinator, o.mesh_seeds) == (3, 2, "h:1234", 1)
    monkeypatch.setenv(distributed.ENV_PROCESS_ID, "1")
    monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "2")
    monkeypatch.setenv(distributed.ENV_COORDINATOR, "10.0.0.1:29400")
    o = cli.mesh_options(cli.build_parser().parse_args(["train", "--out", "d"]))
    assert (o.num_processes, o.process_id, o.coordinator) == (2, 1, "10.0.0.1:29400")


def test_the_script_is_zsgjax_train(monkeypatch):
    """scripts/train_multihost.py becomes ``python -m zsgjax train`` with its arguments."""
    env = child_env()
    for var in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, SCRIPT, "--mesh-seeds", "2", "--seeds", "3"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr == ("zsgjax train: error: --seeds must be a multiple of --mesh-seeds=2, got 3; see 'zsgjax "
                           "train --help'\n"), proc.stderr


# ------------------------------------------------------------------ rendezvous (threads, no JAX)
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def meet(ids, n, timeout_s=20.0, options=None, port=None):
    """Run the rendezvous of processes ``ids`` (each in a thread) of an ``n``-process run;
    ``{id: None or the error message}`` (a repeated id gets the key ``(id, k)``)."""
    port = port or free_port()
    options = options or {}
    results, threads = {}, []

    def one(key, i):
        try:
            distributed.rendezvous(f"127.0.0.1:{port}", n, i, timeout_s, options.get(key, {"steps": 64}))
            results[key] = None
        except distributed.RendezvousError as e:
            results[key] = str(e)

    seen = {}
    for i in ids:
        key = i if i not in seen else (i, seen[i])
        seen[i] = seen.get(i, 0) + 1
        threads.append(threading.Thread(target=one, args=(key, i)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s + 30)
    return results, port


def test_rendezvous_meets_every_process_and_frees_the_port():
    results, port = meet([2, 0, 1], 3)
    assert results == {0: None, 1: None, 2: None}
    with socket.create_server(("", port)):  # JAX's coordinator can bind it now
        pass


def test_rendezvous_refuses_a_duplicate_process_id():
    results, _ = meet([0, 1, 1], 3, timeout_s=10)
    assert "process id 1 was given to two processes" in results[0], results
    assert all("process id 1 was given to two processes" in m and "(reported by process 0)" in m
               for k, m in results.items() if k != 0), results


def test_rendezvous_refuses_processes_started_with_other_options():
    results, _ = meet([0, 1], 2, options={0: {"steps": 64}, 1: {"steps": 65}})
    assert results[0].startswith("process 0: process 1 (on ") and "was started with other options" in results[0]
    assert "was started with other options than process 0" in results[1] and "(reported by process 0)" in results[1]


def test_rendezvous_times_out_naming_the_coordinator_and_the_missing_ids():
    results, port = meet([0, 1], 4, timeout_s=1.5)
    expected = (f"timed out after 1.5 s waiting at the coordinator 127.0.0.1:{port} for process(es) [2, 3] of 4 "
                "(joined: [0, 1])")
    assert expected in results[0] and expected in results[1], results
    results, _ = meet([1], 2, timeout_s=0.5)  # no process 0 at all
    assert "could not reach the coordinator 127.0.0.1:" in results[1] and "within 0.5 s" in results[1]


def test_rendezvous_names_a_busy_coordinator_port():
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        busy.listen()
        with pytest.raises(distributed.RendezvousError, match=rf"cannot open the coordinator port {port} of "
                                                              rf"127.0.0.1:{port} \(.*\): another program"):
            distributed.rendezvous(f"127.0.0.1:{port}", 2, 0, 5.0)


# ------------------------------------------------------------------ 2 processes (slow)
def tiny_argv(mesh_seeds: int, out) -> list[str]:
    t = TINY_TRAIN
    return ["--env", t["env"], "--method", "cse", "--steps", str(t["total_steps"]), "--num-envs", str(t["num_envs"]),
            "--steps-per-iteration", str(t["steps_per_iteration"]), "--learning-starts", str(t["learning_starts"]),
            "--batch-size", str(t["batch_size"]), "--buffer-size", str(t["buffer_size"]),
            "--hidden-sizes", *map(str, t["hidden_sizes"]), "--seeds", str(TINY_SEEDS), "--chunks", "4",
            "--eval-episodes", "2", "--sweep-points", "3", "--no-tensorboard", "--mesh-seeds", str(mesh_seeds),
            "--no-compile-cache", "--out", str(out)]


def two_process_argv(port: int) -> list[str]:
    return ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--local-device-count", "2",
            "--init-timeout", "120"]


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


# A crash right after the checkpoint of iteration 2 (of 4), in every process: the CLI's
# progress callback kills its own process (SIGKILL: no clean-up, the locks are the kernel's).
KILLED_AFTER_2 = (
    "import os, signal, sys\n"
    "from zsgjax import cli, runner\n"
    "format_event = runner.format_event\n"
    "def crash(event, seeds):\n"
    "    if isinstance(event, runner.ChunkReport) and event.iteration == 2:\n"
    "        os.kill(os.getpid(), signal.SIGKILL)\n"
    "    return format_event(event, seeds)\n"
    "runner.format_event = crash\n"
    "sys.exit(cli.main(['train', *sys.argv[1:]]))\n"
)


def launch(argvs: list[list[str]], envs: list[dict[str, str]], code: str | None = None):
    """Run the script (or ``code``) once per argv, all at once; kill every one when any runs past TIMEOUT_S."""
    command = [sys.executable, SCRIPT] if code is None else [sys.executable, "-c", code]
    procs = [subprocess.Popen([*command, *argv], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for argv, env in zip(argvs, envs)]
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


def launch_two(argv: list[str], code: str | None = None):
    common = argv + two_process_argv(free_port())
    return launch([common + ["--process-id", str(i)] for i in (0, 1)], [child_env(), child_env()], code)


def final_state(out):
    """The final checkpoint's state leaves ``{path: array}`` and digest record of the ``cse`` run in ``out``."""
    import orbax.checkpoint as ocp

    step = os.path.join(out, "cse", "checkpoints", "4")
    with open(os.path.join(step, "digest", "metadata")) as f:
        digest = json.load(f)
    state = ocp.PyTreeCheckpointer().restore(os.path.join(step, "state"))
    import jax

    leaves = {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(state)[0]}
    return leaves, digest


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """For meshes 2x2 and 1x4: the 2-process run and the 1-process run (4 forced devices)."""
    out = {}
    for mesh_seeds in (2, 1):
        d = tmp_path_factory.mktemp(f"multihost{mesh_seeds}")
        multi = launch_two(tiny_argv(mesh_seeds, d / "multi"))
        single = launch([tiny_argv(mesh_seeds, d / "single")], [child_env(forced_devices=4)])
        for p in multi + single:
            assert p.returncode == 0, p.stderr[-4000:]
        out[f"{mesh_seeds}x{4 // mesh_seeds}"] = dict(dir=d, procs=multi, single=single[0])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("mesh, rel", [("2x2", 0.0), ("1x4", 1e-4)])
def test_two_processes_match_one_process(runs, mesh, rel):
    """Seeds across the processes (2x2): no reduction crosses a process, the final state is
    bit-identical. The gradient all-reduce across the processes (1x4): Gloo sums in another
    order than the one process's all-reduce, so the parameters agree to float re-association,
    1e-4 relative (tests/test_sharding.py's bound for data parallelism)."""
    d = runs[mesh]["dir"]
    multi, multi_digest = final_state(d / "multi")
    single, single_digest = final_state(d / "single")
    assert sorted(multi) == sorted(single) and multi
    if rel == 0.0:
        assert multi_digest == single_digest
    params = [k for k in single if "params" in k]
    assert params
    scale = max(float(np.max(np.abs(single[k]))) for k in params)
    err = max(float(np.max(np.abs(multi[k].astype(float) - single[k]))) for k in params)
    assert err <= rel * max(1.0, scale), (mesh, err, scale)
    lines = [(d / name / "cse" / "metrics.csv").read_text().splitlines() for name in ("multi", "single")]
    assert [line.split(",")[:3] for line in lines[0]] == [line.split(",")[:3] for line in lines[1]]
    print(f"{mesh}: max |param difference| {err:.3g} (param scale {scale:.3g})")


@pytest.mark.slow
@pytest.mark.parametrize("mesh", ["2x2", "1x4"])
def test_every_process_gets_the_same_result_and_only_process_0_writes(runs, mesh):
    procs = runs[mesh]["procs"]
    lines = [[line for line in p.stdout.splitlines() if "evaluation digest" in line] for p in procs]
    assert [len(x) for x in lines] == [1, 1], lines
    digests = [line.rsplit(" ", 1)[1] for line in (lines[0][0], lines[1][0])]
    assert lines[0][0].startswith("zsgjax train: process 0 of 2: ") and digests[0] == digests[1]
    assert "wrote " in procs[0].stdout and "wrote " not in procs[1].stdout
    assert "iteration 4/4" in procs[0].stdout and "iteration" not in procs[1].stdout
    result = json.loads((runs[mesh]["dir"] / "multi" / "generalization.json").read_text())
    assert list(result["methods"]) == ["cse"]


@pytest.mark.slow
def test_two_processes_killed_after_a_checkpoint_resume_to_the_uninterrupted_run(runs, tmp_path):
    """Both processes die (SIGKILL) right after the checkpoint of iteration 2; the same
    command plus --resume continues from it (process 0 restores, the others get the state
    bit for bit) and ends bit-identical to the uninterrupted 2-process run of the fixture."""
    killed = launch_two(tiny_argv(2, tmp_path), code=KILLED_AFTER_2)
    assert [p.returncode for p in killed] == [-9, -9], [p.stderr[-3000:] for p in killed]
    assert sorted(os.listdir(tmp_path / "cse" / "checkpoints")) == ["1", "2"]
    assert not (tmp_path / "generalization.json").exists()
    resumed = launch_two(tiny_argv(2, tmp_path) + ["--resume"])
    assert [p.returncode for p in resumed] == [0, 0], [p.stderr[-3000:] for p in resumed]
    assert "[cse] resumed from iteration 2/4" in resumed[0].stdout
    state, digest = final_state(tmp_path)
    reference, reference_digest = final_state(runs["2x2"]["dir"] / "multi")
    assert digest == reference_digest  # every leaf (parameters, optimiser, replay, env state) bit-identical
    for k in reference:
        np.testing.assert_array_equal(state[k], reference[k])
    a = json.loads((tmp_path / "generalization.json").read_text())["methods"]["cse"]["returns"]
    b = json.loads((runs["2x2"]["dir"] / "multi" / "generalization.json").read_text())["methods"]["cse"]["returns"]
    assert a == b
    # the finished run again: process 0 reads its stored evaluation and sends the returns to process 1
    again = launch_two(tiny_argv(2, tmp_path) + ["--resume"])
    assert [p.returncode for p in again] == [0, 0], [p.stderr[-3000:] for p in again]
    assert "[cse] reused its evaluation from " in again[0].stdout and "evaluated" not in again[0].stdout
    assert json.loads((tmp_path / "generalization.json").read_text())["methods"]["cse"]["returns"] == b


@pytest.mark.slow
def test_processes_started_with_different_options_fail_before_jax_starts(tmp_path):
    argv = tiny_argv(2, tmp_path / "r") + two_process_argv(free_port())
    procs = launch([argv + ["--process-id", "0"], argv + ["--process-id", "1", "--seed", "1"]],
                   [child_env(), child_env()])
    for p in procs:
        assert p.returncode == 2, p.stderr[-4000:]
        assert "was started with other options than process 0" in p.stderr, p.stderr[-4000:]
        assert p.stderr.count("\n") == 1 and p.stderr.startswith("zsgjax train: error: process "), p.stderr
    assert not (tmp_path / "r").exists()
