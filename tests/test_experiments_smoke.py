"""The experiment protocol (scripts/experiments/common.py) end to end at a tiny size."""

import dataclasses
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "experiments"))

import common  # noqa: E402
import simple_direction  # noqa: E402

from _tiny import TINY_CHUNK_ITERATIONS, TINY_EVAL, TINY_SEEDS, TINY_TRAIN  # noqa: E402

# The CLI test's setup (same programs, compiled once per session)
_CONFIG = {k: v for k, v in TINY_TRAIN.items() if k not in ("env", "total_steps")}
TINY = common.Scale(steps=TINY_TRAIN["total_steps"], seeds=TINY_SEEDS, config=_CONFIG,
                    chunks=TINY_TRAIN["total_steps"] // TINY_TRAIN["steps_per_iteration"] // TINY_CHUNK_ITERATIONS,
                    **TINY_EVAL)


@pytest.mark.xdist_group("tiny_train")
def test_protocol_end_to_end(tmp_path):
    """Two methods x 2 seeds x 64 steps: train, evaluate, claims, plot and files."""
    exp = dataclasses.replace(simple_direction.EXPERIMENT, cpu=TINY, methods=("vanilla", "cse"))
    lines = []
    out = common.run_experiment(exp, scale="cpu", out=str(tmp_path / "out"), work=str(tmp_path / "work"),
                                log=lines.append)
    assert any(line.startswith("[cse] iteration 4/4") for line in lines)  # the runner's progress lines
    files = sorted(os.listdir(tmp_path / "out"))
    assert files == ["generalization.png", "results.csv", "results.json", "results.md"], files
    record = json.loads((tmp_path / "out" / "results.json").read_text())["info"]
    assert record["seeds"] == 2 and record["steps_per_seed"] == 64
    assert set(record["timings"]) == {"vanilla", "cse"}
    assert record["timings"]["cse"]["compile_s"] > 0 and record["timings"]["cse"]["program_s"] > 0
    assert record["scale"] == "cpu" and record["machine"]["cpu_count"] >= 1
    (claim,) = record["claims"]
    assert claim["claim"] == "CSE beats vanilla away from the training context"
    assert claim["verdict"] in ("cse > vanilla", "cse < vanilla", "no significant difference")
    returns = out["results"]["cse"].returns
    assert returns.shape == (2, 2 * 3 + 5, 2)  # seeds x (2 sweeps x 3 points + 5 named) x episodes
    md = (tmp_path / "out" / "results.md").read_text()
    assert "## Claims" in md and "generalization.png" in md


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="--scale"):
        simple_direction.EXPERIMENT.scale("huge")
    with pytest.raises(ValueError, match="--methods"):
        common.run_experiment(simple_direction.EXPERIMENT, methods=("ppo",))
