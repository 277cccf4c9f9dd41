"""What reaches TensorBoard and W&B: every metric per seed and as the mean over seeds,
and the zero-shot generalization table (per context, per seed)."""

import os

import numpy as np
import pytest

from zsgjax.reporting.metrics_log import MetricsLog, per_seed_scalars
from zsgjax.reporting.results import ContextGrid, EvalResult


class _Recorder:
    """Stands in for a tensorboardX SummaryWriter / a W&B run: records what is logged."""

    def __init__(self):
        self.scalars, self.texts, self.logged = [], [], []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def add_text(self, tag, text, step):
        self.texts.append((tag, text, step))

    def log(self, data, step):
        self.logged.append((step, data))

    def flush(self):
        pass


def _grid():
    return ContextGrid(np.array([[0.0], [1.0]], np.float32), ("home", "x=1"), (None, "x"), ("x",),
                       np.zeros(1, np.float32))


def test_per_seed_scalars_by_hand():
    out = per_seed_scalars({"r": np.array([1.0, np.nan, 3.0])})
    assert out["r"] == 2.0 and out["r/seed_0"] == 1.0 and np.isnan(out["r/seed_1"]) and out["r/seed_2"] == 3.0


def test_training_metrics_go_out_per_seed_and_as_means(tmp_path):
    log = MetricsLog(str(tmp_path), tensorboard=False, start_iteration=0, start_step=0)
    log.writer, log.wandb_run = _Recorder(), _Recorder()
    log.add(0, {"env_steps": np.array([[8, 16]] * 2), "episode_return": np.array([[1.0, 2.0], [3.0, 6.0]])})
    assert ("episode_return", 2.0, 8) in log.writer.scalars and ("episode_return/seed_1", 6.0, 16) in log.writer.scalars
    assert log.wandb_run.logged[1] == (16, {"episode_return": 4.0, "episode_return/seed_0": 2.0,
                                            "episode_return/seed_1": 6.0})


def test_generalization_reaches_both_loggers(tmp_path):
    pytest.importorskip("wandb")
    log = MetricsLog(str(tmp_path), tensorboard=False, start_iteration=0, start_step=0)
    log.writer, log.wandb_run = _Recorder(), _Recorder()
    returns = np.array([[[1.0, 3.0], [4.0, 4.0]], [[5.0, 5.0], [0.0, 2.0]]])   # (S=2, C=2, E=2)
    log.add_generalization(EvalResult(_grid(), returns), step=100, table="the table")
    assert ("generalization/home", 3.5, 100) in log.writer.scalars            # seeds 2.0 and 5.0
    assert ("generalization/x=1/seed_1", 1.0, 100) in log.writer.scalars
    assert log.writer.texts == [("generalization", "```\nthe table\n```", 100)]
    (step, data), (step2, table) = log.wandb_run.logged
    assert step == step2 == 100 and data["generalization/x=1"] == 2.5
    assert table["generalization_table"].data == [["home", 0, 2.0], ["home", 1, 5.0], ["x=1", 0, 4.0], ["x=1", 1, 1.0]]


@pytest.mark.slow  # ~15 s wall: wandb starts its service process
def test_generalization_in_an_offline_wandb_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    log = MetricsLog(str(tmp_path), tensorboard=False, start_iteration=0, start_step=0,
                     wandb={"project": "zsgjax-test", "name": "t"})
    log.add_generalization(EvalResult(_grid(), np.ones((2, 2, 1))), step=8, table="t")
    log.close()
    files = [os.path.join(r, f) for r, _, fs in os.walk(tmp_path / "wandb") for f in fs if f.endswith(".wandb")]
    assert len(files) == 1 and b"generalization_table" in open(files[0], "rb").read()
