"""The run driver: reports as data, divergence stops a run, corrupt checkpoints are skipped."""

import os

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


def test_reports_are_data_and_corrupt_checkpoints_are_skipped(tmp_path):
    trainer = make_train(TrainConfig(method="vanilla", **TINY_TRAIN))
    spec = runner.RunSpec(seeds=2, chunks=2, keep=3, tensorboard=False, eval_episodes=2, sweep_points=3)
    runs = runner.run({"v": trainer}, str(tmp_path), spec)
    report = runs["v"].train
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
    events = []
    resumed = runner.run({"v": trainer}, str(tmp_path), runner.RunSpec(**{**spec.__dict__, "resume": True}),
                         on_event=events.append)
    notices = [e for e in events if isinstance(e, runner.Notice)]
    assert len(notices) == 1 and "checkpoint 4" in notices[0].message and "corrupt" in notices[0].message
    assert "resumed from checkpoint 2" in notices[0].message
    assert [e.iteration for e in events if isinstance(e, runner.Resumed)] == [2]
    np.testing.assert_array_equal(resumed["v"].result.returns, runs["v"].result.returns)  # bit-identical resume
    assert runner.format_event(notices[0], 2)[0].startswith("[v] warning: ")
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
