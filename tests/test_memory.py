"""A training state that cannot fit is refused up front, with its estimate and what is available."""

import math
import os
import re
import types

import jax
import numpy as np
import pytest
from _tiny import TINY_SEEDS, TINY_TRAIN

from zsgjax import cli, memory, runner
from zsgjax.replay import Replay
from zsgjax.train import MAX_BUFFER_SIZE, TrainConfig, make_train

TINY_CLI = ["train", "--method", "vanilla", "--seeds", str(TINY_SEEDS), "--steps", "64", "--num-envs", "4",
            "--steps-per-iteration", "16", "--learning-starts", "16", "--batch-size", "16",
            "--hidden-sizes", "16", "16", "--no-tensorboard"]


@pytest.fixture(scope="module")
def trainer():
    return make_train(TrainConfig(method="vanilla", **TINY_TRAIN))


@pytest.mark.parametrize("prioritized", [False, True])
def test_the_estimate_is_the_bytes_of_the_initialized_state(prioritized):
    trainer = make_train(TrainConfig(method="vanilla", **{**TINY_TRAIN, "prioritized_replay": prioritized}))
    keys = runner.seed_keys(trainer, TINY_SEEDS)
    state = runner.compile_init(trainer, keys)(keys)
    assert memory.estimate_state_bytes(trainer, TINY_SEEDS) == sum(x.nbytes for x in jax.tree.leaves(state))
    # the replay stores observation, next observation, action, reward, done, context and more per slot:
    # a hand lower bound of seeds * buffer_size * (2 * obs + action + reward) float32s
    env = trainer.env
    lower = TINY_SEEDS * TINY_TRAIN["buffer_size"] * (2 * env.observation_size + env.action_size + 1) * 4
    assert memory.tree_bytes(state.replay) >= lower


def test_memory_is_refused_above_the_margin_before_anything_compiles(trainer, tmp_path, monkeypatch):
    total = memory.estimate_state_bytes(trainer, TINY_SEEDS)
    enough = math.ceil(total / memory.MEMORY_MARGIN)  # the least available memory that fits the state
    monkeypatch.setattr(memory, "available_memory", lambda device: (enough, "a test limit"))
    assert memory.memory_error(trainer, TINY_SEEDS) is None
    monkeypatch.setattr(memory, "available_memory", lambda device: (enough - 1, "a test limit"))
    monkeypatch.setattr(runner, "compiler_options", lambda *a: pytest.fail("compiled before the memory check"))
    spec = runner.RunSpec(seeds=TINY_SEEDS, tensorboard=False)
    message = (rf"^\[vanilla\] the training state needs {re.escape(memory.format_bytes(total))} \(seeds=2, "
               rf"buffer_size=128, num_envs=4, observation size=\d+; replay buffers .+\) but "
               rf"{re.escape(memory.format_bytes(enough - 1))} is available \(a test limit\) and at most 90% .*"
               "lower buffer_size, seeds or num_envs$")
    with pytest.raises(ValueError, match=message):
        runner.preflight({"vanilla": trainer}, str(tmp_path), spec)
    with pytest.raises(ValueError, match=message):
        runner.train(trainer, str(tmp_path / "vanilla"), spec)
    assert not (tmp_path / "vanilla").exists()


def fake_mesh(platform: str, seeds: int):
    """A ``(seeds, 1)`` mesh of fake devices of this process (what memory_error reads of a mesh)."""
    device = types.SimpleNamespace(platform=platform, process_index=jax.process_index())
    return types.SimpleNamespace(devices=np.array([device] * seeds).reshape(seeds, 1), shape={"seeds": seeds, "envs": 1})


@pytest.mark.parametrize("platform, fits", [("gpu", True), ("cpu", False)])
def test_a_mesh_splits_the_state_over_accelerators_but_not_over_a_host(trainer, monkeypatch, platform, fits):
    """On a 2-seed mesh each accelerator holds half the state; CPU devices share the host's memory."""
    total = memory.estimate_state_bytes(trainer, TINY_SEEDS)
    monkeypatch.setattr(memory, "available_memory", lambda device: (math.ceil(total / memory.MEMORY_MARGIN) - 1, "x"))
    error = memory.memory_error(trainer, TINY_SEEDS, fake_mesh(platform, 2))
    assert (error is None) == fits
    monkeypatch.setattr(memory, "available_memory", lambda device: (math.ceil(total / 2 / memory.MEMORY_MARGIN) - 1, "x"))
    error = memory.memory_error(trainer, TINY_SEEDS, fake_mesh(platform, 2))
    where = "each device" if platform == "gpu" else "this host"
    assert f"of it on {where}" in error


def test_available_memory_reads_the_accelerator_or_the_host():
    gpu = types.SimpleNamespace(platform="gpu", memory_stats=lambda: {"bytes_limit": 1000, "bytes_in_use": 300})
    assert memory.available_memory(gpu)[0] == 700
    free, where = memory.available_memory(jax.devices("cpu")[0])
    assert 2**28 <= free <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") and "host" in where


@pytest.mark.parametrize("n, text", [(0, "0 B"), (1023, "1023 B"), (1024, "1 KiB"), (1536, "1.5 KiB"),
                                     (10**9, "954 MiB"), (5 * 2**40, "5 TiB")])
def test_format_bytes(n, text):
    assert memory.format_bytes(n) == text


@pytest.mark.parametrize("capacity", [MAX_BUFFER_SIZE, MAX_BUFFER_SIZE + 1])
def test_max_buffer_size_is_where_the_prioritized_sum_tree_overflows_int32(capacity):
    """Traced only: flashbax's add pads indices with ``2**(ceil(log2 capacity) + 1)``, an int32."""
    replay = Replay(capacity=capacity, batch_size=4, prioritized=True)
    state = jax.eval_shape(replay.init, {"x": jax.ShapeDtypeStruct((3,), np.float32)})
    add = lambda: jax.eval_shape(replay.add, state, {"x": jax.ShapeDtypeStruct((2, 3), np.float32)})
    if capacity > MAX_BUFFER_SIZE:
        with pytest.raises(OverflowError):
            add()
    else:
        add()


def test_cli_refuses_a_replay_that_cannot_fit_in_one_line(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exc:  # beyond the int32 indices of the prioritized sum tree
        cli.main(TINY_CLI + ["--buffer-size", str(10**9), "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"--buffer-size must be an integer in [1, {MAX_BUFFER_SIZE}], got 1000000000" in err
    assert len(err.strip().splitlines()) == 1
    TrainConfig(buffer_size=MAX_BUFFER_SIZE)

    monkeypatch.setattr(memory, "available_memory", lambda device: (2**30, "a test limit"))
    with pytest.raises(SystemExit) as exc:  # in range, but 5e8 slots need far more than 1 GiB
        cli.main(TINY_CLI + ["--buffer-size", str(5 * 10**8), "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"zsgjax train: error: \[vanilla\] the training state needs \d+(\.\d+)? GiB .* but 1 GiB is "
                        r"available \(a test limit\).*\n", err), err


def test_a_resume_needs_room_for_the_checkpoints_read_buffer_beside_the_state(trainer, tmp_path, monkeypatch):
    """On a CPU a resume reads the checkpoint into the state through a buffer of up to 1 GB
    (``zsgjax.checkpoint.restore_concurrent_gb``; a tiny state: the state's size again): memory that fits
    a fresh run can refuse its resume, naming the read; an accelerator holds the state alone."""
    total = memory.estimate_state_bytes(trainer, TINY_SEEDS)
    assert memory.restore_buffer_bytes(memory.state_shapes(trainer, TINY_SEEDS)) == total  # under 1 GB: all of it
    fields = {k: jax.ShapeDtypeStruct((5 * 10**8,), np.uint8) for k in "abcdef"}  # 3 GB: read 1 GB at a time
    assert memory.restore_buffer_bytes(fields) == 10**9
    one = {"a": jax.ShapeDtypeStruct((3 * 10**9,), np.uint8)}  # a leaf is read whole
    assert memory.restore_buffer_bytes(one) == 3 * 10**9
    enough = math.ceil(total / memory.MEMORY_MARGIN)
    monkeypatch.setattr(memory, "available_memory", lambda device: (enough, "a test limit"))
    assert memory.memory_error(trainer, TINY_SEEDS) is None
    error = memory.memory_error(trainer, TINY_SEEDS, restoring=True)
    assert f"and {memory.format_bytes(total)} more while a checkpoint is read into it" in error
    assert memory.memory_error(trainer, TINY_SEEDS, fake_mesh("gpu", 2), restoring=True) is None
    monkeypatch.setattr(memory, "available_memory", lambda device: (math.ceil(2 * total / memory.MEMORY_MARGIN),
                                                                    "a test limit"))
    assert memory.memory_error(trainer, TINY_SEEDS, restoring=True) is None
    # the run driver asks for the buffer only when the label's directory holds a checkpoint to resume
    monkeypatch.setattr(memory, "available_memory", lambda device: (enough, "a test limit"))
    spec = runner.RunSpec(seeds=TINY_SEEDS, tensorboard=False, resume=True)
    runner.preflight({"vanilla": trainer}, str(tmp_path), spec)  # nothing to resume yet
    (tmp_path / "vanilla" / "checkpoints" / "4.orbax-checkpoint-tmp-1").mkdir(parents=True)  # an unfinished save
    runner.preflight({"vanilla": trainer}, str(tmp_path), spec)
    (tmp_path / "vanilla" / "checkpoints" / "4").mkdir(parents=True)
    monkeypatch.setattr(runner, "compiler_options", lambda *a: pytest.fail("compiled before the memory check"))
    for check in (lambda: runner.preflight({"vanilla": trainer}, str(tmp_path), spec),
                  lambda: runner.train(trainer, str(tmp_path / "vanilla"), spec)):
        with pytest.raises(ValueError, match=r"^\[vanilla\] .* more while a checkpoint is read into it"):
            check()
