"""The run driver: reports as data, divergence stops a run, corrupt checkpoints are skipped."""

import os
from types import SimpleNamespace

import jax
import numpy as np
import pytest
from _tiny import TINY_TRAIN

from zsgjax import cli, runner
from zsgjax.train import TrainConfig, make_train


def test_divergence_stops_with_the_method_iteration_and_metric(tmp_path, capsys):
    """``--critic-lr 1e30``: the run stops at the first non-finite chunk, keeps the last finite
    checkpoint, and the CLI exits 1 with one line naming the method, iteration and metric."""
    trainer = make_train(TrainConfig(method="vanilla", **{**TINY_TRAIN, "critic_lr": 1e30}))
    spec = runner.RunSpec(seeds=2, chunks=4, keep=4, tensorboard=False, eval_episodes=1, sweep_points=2)
    events = []
    with pytest.raises(runner.Diverged, match=r"\[vanilla\] training diverged: metric '\w+' is not finite from "
                                              r"iteration \d+ .*the last finite checkpoint is iteration \d+"):
        runner.train(trainer, str(tmp_path / "vanilla"), spec, on_event=events.append)
    kept = sorted(int(d) for d in os.listdir(tmp_path / "vanilla" / "checkpoints"))
    events = [e for e in events if isinstance(e, runner.ChunkReport)]  # not the compile lines
    last = int(str(events[-1].iteration)) if events else 0
    assert kept == [e.iteration for e in events] and (not kept or kept[-1] == last)
    for e in events:  # every checkpointed chunk was finite
        assert all(np.all(np.isfinite(v)) for v in e.metrics.values() if np.issubdtype(v.dtype, np.floating))

    code = cli.main(["train", "--method", "vanilla", "--seeds", "2", "--steps", "64", "--num-envs", "4",
                     "--steps-per-iteration", "16", "--learning-starts", "16", "--batch-size", "16",
                     "--buffer-size", "128", "--hidden-sizes", "16", "16", "--chunks", "4", "--critic-lr", "1e30",
                     "--eval-episodes", "1", "--sweep-points", "2", "--no-tensorboard", "--out", str(tmp_path / "cli")])
    assert code == 1
    out = capsys.readouterr().out
    assert "zsgjax train: [vanilla] training diverged: metric" in out


def test_reports_are_data_and_corrupt_checkpoints_are_skipped(tmp_path, monkeypatch):
    trainer = make_train(TrainConfig(method="vanilla", **TINY_TRAIN))
    spec = runner.RunSpec(seeds=2, chunks=2, keep=3, tensorboard=False, eval_episodes=2, sweep_points=3)
    logged = []  # the evaluation reaches the loggers (TensorBoard / W&B) before they close
    monkeypatch.setattr(runner.MetricsLog, "add_generalization",
                        lambda self, result, step, table=None: logged.append((result, step, table)))
    runs = runner.run({"v": trainer}, str(tmp_path), spec)
    report = runs["v"].train
    (result, step, table), = logged
    assert result is runs["v"].result and step == report.chunks[-1].env_steps and "mean over" in table
    assert [c.iteration for c in report.chunks] == [2, 4] and report.resumed_from is None
    assert report.chunks[0].compile_s > 0 and report.chunks[1].compile_s == 0  # one program for both chunks
    assert report.chunks[-1].metrics["critic_loss"].shape == (2, 2)
    assert set(runs["v"].timings) == {"train_s", "compile_s", "program_s", "eval_s"}
    # damage the newest checkpoint: resume falls back to the previous one with a notice
    directory = tmp_path / "v" / "checkpoints" / "4" / "state"
    data_files = [os.path.join(r, f) for r, _, fs in os.walk(directory) for f in fs if os.sep + "d" + os.sep in
                  os.path.join(r, f)]
    assert data_files
    for path in data_files:  # every array data file of the newest checkpoint
        data = bytearray(open(path, "rb").read())
        data[len(data) // 2: len(data) // 2 + 8] = b"\x7f" * 8
        open(path, "wb").write(bytes(data))
    stored = list((tmp_path / "v" / "evaluations").glob("*.npz"))  # the finished evaluation, kept for a resume
    assert len(stored) == 1
    stored[0].unlink()  # the resumed run below evaluates again: its returns are checked against the first run's
    events, seen = [], []
    # the physics warnings of zsgjax.rollout reach the events, numbered from the resumed iteration
    monkeypatch.setattr(runner.rollout, "instability_warnings",
                        lambda metrics, done: seen.append(done) or [f"unstable after iteration {done}"])
    init_compiles = []  # a resumed run restores into the state's shapes: its initialisation is never compiled
    lower_init = runner.lower_init
    monkeypatch.setattr(runner, "lower_init", lambda *a: (lambda lowered: SimpleNamespace(
        out_info=lowered.out_info, compile=lambda *b: init_compiles.append(b) or lowered.compile(*b)))(lower_init(*a)))
    resumed = runner.run({"v": trainer}, str(tmp_path), runner.RunSpec(**{**spec.__dict__, "resume": True}),
                         on_event=events.append)
    assert init_compiles == []
    notices = [e for e in events if isinstance(e, runner.Notice) and not e.message.startswith("unstable")]
    assert seen == [2] and [e.message for e in events if isinstance(e, runner.Notice)][-1] == "unstable after iteration 2"
    assert len(notices) == 1 and "checkpoint 4" in notices[0].message and "corrupt" in notices[0].message
    assert "resumed from checkpoint 2" in notices[0].message
    assert [e.iteration for e in events if isinstance(e, runner.Resumed)] == [2]
    pieces = [e for e in events if isinstance(e, runner.Evaluating)]  # 11 contexts in pieces of 3
    assert [(e.contexts_done, e.contexts_total, e.episodes, e.seeds) for e in pieces] == [
        (3, 11, 2, 2), (6, 11, 2, 2), (9, 11, 2, 2), (11, 11, 2, 2)]
    for e in pieces:  # the remaining contexts at the mean time per context so far
        assert e.eta_s == pytest.approx(e.elapsed_s / e.contexts_done * (11 - e.contexts_done))
    assert pieces[-1].eta_s == 0 and all(a.elapsed_s <= b.elapsed_s for a, b in zip(pieces, pieces[1:]))
    np.testing.assert_array_equal(resumed["v"].result.returns, runs["v"].result.returns)  # bit-identical resume
    assert runner.format_event(notices[0], 2)[0].startswith("[v] warning: ")
    # the finished run resumed again: its stored evaluation is found from the checkpoint's recorded digests,
    # and nothing is restored, compiled or evaluated
    resume = runner.RunSpec(**{**spec.__dict__, "resume": True})
    events = []
    with monkeypatch.context() as m:
        m.setattr(runner, "restore", lambda *a, **k: pytest.fail("restored a finished, evaluated label"))
        again = runner.run({"v": trainer}, str(tmp_path), resume, on_event=events.append)
    assert [type(e) for e in events] == [runner.Resumed, runner.Reused]
    assert (events[0].iteration, events[0].total_iterations, events[1].path) == (4, 4, str(stored[0]))
    assert "reused its evaluation from" in runner.format_event(events[1], 2)[0]
    assert again["v"].reused_from == str(stored[0]) and again["v"].train.resumed_from == 4
    np.testing.assert_array_equal(again["v"].result.returns, runs["v"].result.returns)
    # through the restored state (as when the checkpoint's record cannot name it): the same file is reused
    with monkeypatch.context() as m:
        m.setattr(runner, "finished_evaluation", lambda *a: None)
        events = []
        again = runner.run({"v": trainer}, str(tmp_path), resume, on_event=events.append)
    assert [e.path for e in events if isinstance(e, runner.Reused)] == [str(stored[0])]
    assert not any(isinstance(e, runner.Evaluating) for e in events)
    np.testing.assert_array_equal(again["v"].result.returns, runs["v"].result.returns)
    # a damaged stored evaluation is named, evaluated again and replaced
    stored[0].write_bytes(b"PK\x03\x04 not a zip archive")
    events = []
    again = runner.run({"v": trainer}, str(tmp_path), resume, on_event=events.append)
    warned = [e.message for e in events if isinstance(e, runner.Notice)]
    assert len(warned) == 1 and str(stored[0]) in warned[0] and warned[0].endswith("evaluating again")
    assert any(isinstance(e, runner.Evaluating) for e in events) and not any(isinstance(e, runner.Reused) for e in events)
    np.testing.assert_array_equal(again["v"].result.returns, runs["v"].result.returns)
    with pytest.raises(ValueError, match="RunSpec.seeds must be an integer >= 1"):
        runner.RunSpec(seeds=0).validate()


def test_checkpoints_of_an_older_config_format_are_refused_clearly(tmp_path):
    from zsgjax.checkpoint import Checkpointer

    trainer = make_train(TrainConfig(method="vanilla", **TINY_TRAIN))
    spec = runner.RunSpec(seeds=2, resume=True)
    old = {k: v for k, v in runner.checkpoint_config(trainer, 2).items() if k != "format"}  # written before formats
    with Checkpointer(tmp_path / "v" / "checkpoints", old) as ck:
        ck.save(1, {"x": np.zeros(2)})
    with pytest.raises(ValueError, match=r"written by an older zsgjax \(config format 1; this version reads format "
                                         rf"{runner.CHECKPOINT_FORMAT}\) and cannot be resumed"):
        runner.open_checkpointer(trainer, str(tmp_path / "v"), spec)


def test_progress_lines_carry_an_eta_until_the_last_chunk():
    def report(iteration, eta_s):
        return runner.ChunkReport(label="cse", iteration=iteration, total_iterations=20, env_steps=iteration * 1000,
                                  total_env_steps=20_000, compile_s=0.0, run_s=1.0, steps_per_s=3000.0,
                                  episode_return=1.5, metrics={}, eta_s=eta_s)

    (line,) = runner.format_event(report(2, 65.4), 3)
    assert line == ("[cse] iteration 2/20  steps 2,000/20,000  3,000 steps/s  return 1.50  ETA 1m05s")
    assert runner.format_event(report(20, 0.0), 3)[0].endswith("return 1.50")
    assert [runner.format_seconds(s) for s in (0.4, 42, 185, 7620)] == ["<1s", "42s", "3m05s", "2h07m"]


def test_compile_and_evaluation_lines_say_what_is_compiled_loaded_and_left():
    def fmt(event):
        (line,) = runner.format_event(event, 3)
        return line

    program = "training programs for 3 seeds"
    assert fmt(runner.Compiling("cse", "cheetah_velocity", program, "/tmp/jit")) == (
        "[cse] compiling the cheetah_velocity training programs for 3 seeds (kept in the compilation cache for the "
        "next run)")
    assert fmt(runner.Compiling("cse", "cheetah_velocity", program, None)).endswith("(compilation cache off)")
    assert fmt(runner.Compiled("cse", program, 171.04, False)) == (
        "[cse] compiled the training programs for 3 seeds in 171.0 s")
    assert fmt(runner.Compiled("cse", program, 1.26, True)) == (
        "[cse] loaded the training programs for 3 seeds from the compilation cache in 1.3 s")
    assert fmt(runner.Evaluating("cse", 16, 61, 10, 3, 36.0, 101.25)) == (
        "[cse] evaluated 16/61 contexts x 10 episodes x 3 seeds  ETA 1m41s")
    assert runner.format_event(runner.Evaluating("cse", 61, 61, 10, 3, 140.0, 0.0), 3) == []  # the caller's line


def test_chunk_program_donates_the_state():
    """The chunk program reuses the state's buffers: the state passed in is deleted (that
    the results are unchanged is the CLI test's resume-equals-uninterrupted check, which
    runs these donated programs)."""
    from _tiny import TINY_CHUNK_ITERATIONS, TINY_SEEDS

    trainer = make_train(TrainConfig(method="vanilla", **TINY_TRAIN))  # the CLI test's program (compiled once)
    keys = runner.seed_keys(trainer, TINY_SEEDS)
    state = runner.compile_init(trainer, keys)(keys)
    out, metrics = runner.compile_chunk(trainer, TINY_CHUNK_ITERATIONS, state)(state)
    assert all(leaf.is_deleted() for leaf in jax.tree.leaves(state))
    assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(out))
    assert metrics["env_steps"].shape == (TINY_SEEDS, TINY_CHUNK_ITERATIONS)


def test_learning_curve_reads_the_metrics_csv(tmp_path):
    from zsgjax.reporting import plots
    from zsgjax.reporting.metrics_log import MetricsLog, learning_curve

    log = MetricsLog(str(tmp_path), tensorboard=False, start_iteration=0, start_step=0)
    ret = np.array([[1.0, 2.0, 3.0], [5.0, 0.0, 7.0]])  # seed 1 finishes no episode in iteration 2
    episodes = np.array([[2, 1, 1], [1, 0, 3]])
    log.add(0, {"env_steps": np.array([[8, 16, 24]] * 2), "episode_return": ret, "episodes": episodes,
                "critic_loss": np.ones((2, 3))})
    log.close()
    steps, returns = learning_curve(str(tmp_path / "metrics.csv"))
    np.testing.assert_array_equal(steps, [8, 16, 24])
    np.testing.assert_array_equal(returns, [[1.0, 2.0, 3.0], [5.0, np.nan, 7.0]])
    path = plots.plot_learning_curves({"cse": (steps, returns)}, tmp_path / "curves.png")
    assert open(path, "rb").read(4) == b"\x89PNG"
    with pytest.raises(ValueError, match="needs env_steps \\(n,\\) and returns \\(S, n\\)"):
        plots.plot_learning_curves({"cse": (steps, returns[:, :2])}, tmp_path / "bad.png")


@pytest.mark.slow  # ~15 s wall: wandb starts its service process
def test_wandb_offline_run_logs_the_means_over_seeds(tmp_path, monkeypatch):
    """``RunSpec.wandb_project`` with ``WANDB_MODE=offline``: a local W&B run under the
    method's directory with no network, logging the mean over seeds and each seed at x = env_steps."""
    pytest.importorskip("wandb")
    from zsgjax.reporting.metrics_log import MetricsLog

    monkeypatch.setenv("WANDB_MODE", "offline")
    log = MetricsLog(str(tmp_path), tensorboard=False, start_iteration=0, start_step=0,
                     wandb={"project": "zsgjax-test", "name": "t", "config": {"env": "simple_direction"}})
    run, logged = log.wandb_run, []
    real_log = run.log
    monkeypatch.setattr(run, "log", lambda data, step: (logged.append((step, data)), real_log(data, step=step)))
    log.add(0, {"env_steps": np.array([[8, 16]] * 2), "episode_return": np.array([[1.0, 2.0], [3.0, 6.0]]),
                "episodes": np.ones((2, 2), np.int32)})
    assert [(step, {k: v for k, v in data.items() if "/seed_" not in k}) for step, data in logged] == [
        (8, {"episode_return": 2.0, "episodes": 1.0}), (16, {"episode_return": 4.0, "episodes": 1.0})]
    assert logged[1][1]["episode_return/seed_1"] == 6.0
    assert run.offline and run.step == 16
    log.close()
    files = [os.path.join(r, f) for r, _, fs in os.walk(tmp_path / "wandb") for f in fs if f.endswith(".wandb")]
    assert len(files) == 1 and b"episode_return" in open(files[0], "rb").read()


# ------------------------------------------------------------------ divergence check on metrics
def test_check_finite_metrics_fires_on_any_seed_and_names_the_first_iteration():
    """One non-finite value of one seed is enough; the iteration is counted from 1 after
    ``done``, at the earliest non-finite index over every metric."""
    m = {"critic_loss": np.ones((3, 4), np.float32), "actor_loss": np.ones((3, 4), np.float32),
         "episodes": np.full((3, 4), 2**31 - 1, np.int64)}  # integer metrics are not checked
    runner.check_finite_metrics(m, "cse", done=8)
    assert runner.first_nonfinite(m) is None
    m["critic_loss"][1, 2] = np.inf  # seed 1, third iteration of the chunk
    m["actor_loss"][2, 3] = np.nan  # later: not the first
    assert runner.first_nonfinite(m) == (2, ["critic_loss"], [1])
    with pytest.raises(runner.Diverged, match=r"^\[cse\] training diverged: metric 'critic_loss' is not finite from "
                                              r"iteration 11 \(seeds \[1\]\); the last finite checkpoint is "
                                              r"iteration 8$"):
        runner.check_finite_metrics(m, "cse", done=8)
    m["actor_loss"][0, 2] = np.nan  # the same first iteration, another metric and seed
    assert runner.first_nonfinite(m) == (2, ["actor_loss", "critic_loss"], [0, 1])
    m["actor_loss"][2, 0] = np.nan  # now the very first iteration
    with pytest.raises(runner.Diverged, match=r"^training diverged: metric 'actor_loss' is not finite from iteration "
                                              r"1 \(seeds \[2\]\)"):
        runner.check_finite_metrics(m)
    # one seed's metrics (n,), as trainer.train returns them, and trailing axes
    assert runner.first_nonfinite({"q": np.array([0.0, 1.0, np.nan])}) == (2, ["q"], [0])
    assert runner.first_nonfinite({"q": np.array([[[0.0, 1.0], [np.nan, 1.0]]])}) == (1, ["q"], [0])


# ------------------------------------------------------------------ faults at the end of a chunk
CHECKPOINT_ON_A_FULL_DISK = """
import resource, signal, sys
import numpy as np
from zsgjax import runner
from zsgjax.checkpoint import Checkpointer
checkpointer = Checkpointer(sys.argv[1], {"a": 1})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    runner.write_checkpoint(checkpointer, 1, {"x": np.arange(1 << 18, dtype=np.float32)})
except OSError as e:
    sys.stderr.write(f"{e}\\n")
    sys.exit(3)
"""


def test_a_checkpoint_that_cannot_be_written_ends_in_one_line(tmp_path):
    """A write that fails in orbax's writer threads (a file-size limit standing in for a
    full disk: the same failed write(2)) gives one ``OSError`` line naming the checkpoint
    and the cause, without orbax's logged tracebacks."""
    import subprocess
    import sys

    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.path.dirname(os.path.dirname(runner.__file__)))
    proc = subprocess.run([sys.executable, "-c", CHECKPOINT_ON_A_FULL_DISK, str(tmp_path / "ck")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert proc.stderr == (f"cannot write checkpoint 1 in '{tmp_path / 'ck'}': File too large (errno 27)\n"), \
        proc.stderr[-3000:]


def test_run_locks_each_label_before_training(tmp_path):
    """A label whose directory another run holds is refused before anything is compiled;
    the other labels' locks are let go again."""
    from zsgjax.reporting.files import DirectoryLock

    trainer = make_train(TrainConfig(method="vanilla", **TINY_TRAIN))
    spec = runner.RunSpec(seeds=2, tensorboard=False)
    with DirectoryLock(tmp_path / "b") as held:
        with pytest.raises(ValueError, match=rf"the directory of 'b' '{tmp_path / 'b'}' is in use by another run "
                                             rf"\(pid {os.getpid()} on host "):
            runner.run({"a": trainer, "b": trainer}, str(tmp_path), spec)
        assert held.held
    with DirectoryLock(tmp_path / "a"):  # released after the failure
        pass
    assert not os.path.exists(tmp_path / "a" / "checkpoints")
    with pytest.raises(ValueError, match="the output directory '.*' is a file, not a directory; give a directory"):
        runner.run({"a": trainer}, str(tmp_path / "a" / ".zsgjax.lock"), spec)


def test_evaluation_programs_are_shared_only_between_equal_shapes():
    """One evaluation program per (seeds, contexts per call, ...): a second call with the same shapes
    reuses it, one with another seed count or grid size compiles its own (and both stay right)."""
    from zsgjax import evaluate as ev

    trainer = make_train(TrainConfig(**TINY_TRAIN))
    states = {n: jax.vmap(trainer.init)(jax.random.split(jax.random.PRNGKey(0), n)) for n in (2, 3)}
    grids = {p: ev.make_grid(trainer.env, num_points=p) for p in (3, 5)}
    evaluators, events = {}, []
    returns = {}
    for seeds, points in [(2, 3), (2, 3), (3, 3), (2, 5)]:
        result = runner.evaluate(trainer, states[seeds], grids[points], 2, evaluators=evaluators, on_event=events.append)
        assert result.returns.shape == (seeds, len(grids[points].contexts), 2)
        returns.setdefault((seeds, points), []).append(result.returns)
    assert len(evaluators) == 3
    assert sum(isinstance(e, runner.Compiled) for e in events) == 3
    np.testing.assert_array_equal(*returns[(2, 3)])  # the shared program gives what it gave the first time
    np.testing.assert_array_equal(returns[(3, 3)][0][:2], returns[(2, 3)][0])  # seed k keeps its keys
