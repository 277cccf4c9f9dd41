"""The MuJoCo (MJX) experiments' paper-scale commands: what they would run, and that the
command path runs and resumes (at a tiny length; the full runs are GPU-sized)."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "experiments"))

import ant_direction  # noqa: E402
import ant_goal  # noqa: E402
import cheetah_velocity  # noqa: E402
import common  # noqa: E402

from zsgjax.train import make_train  # noqa: E402

# The paper's MuJoCo lengths (steps per seed) and methods.
PAPER = {
    cheetah_velocity: (520_000, ("vanilla", "cse", "ldr")),
    ant_direction: (1_040_000, ("vanilla", "cse", "ldr", "dr")),
    ant_goal: (1_040_000, ("vanilla", "cse", "ldr", "dr")),
}


@pytest.mark.parametrize("script", list(PAPER), ids=lambda m: m.__name__)
def test_paper_scale_is_the_papers_protocol(script):
    exp = script.EXPERIMENT
    steps, methods = PAPER[script]
    scale = exp.scale("paper")
    assert (scale.steps, scale.seeds) == (steps, 10) and exp.methods == methods
    assert scale.chunks >= 10  # checkpointed often enough to resume a long GPU run
    # the paper's evaluate_policies.py: 64 episodes, 50 points per dimension, sampled actions
    assert (scale.eval_episodes, scale.sweep_points, scale.eval_actions) == (64, 50, "sample_unscaled")
    configs = common.configs_for(exp, scale, scale.steps, seed=0)
    assert list(configs) == list(methods)
    for label, config in configs.items():
        trainer = make_train(config)
        assert trainer.config.num_envs == 8 and trainer.config.grad_updates_per_step == 1  # the paper's loop
        assert trainer.num_iterations * trainer.steps_per_iteration >= steps - trainer.steps_per_iteration
        assert config.method == label and config.env == exp.env


@pytest.mark.slow
@pytest.mark.parametrize("script", list(PAPER), ids=lambda m: m.__name__)
def test_paper_command_runs_and_resumes(script, tmp_path):
    """``<script>.py --scale paper`` (the GPU command) at 2 seeds x a few hundred steps, then ``--resume``."""
    out, work = str(tmp_path / "out"), str(tmp_path / "work")
    argv = ["--scale", "paper", "--steps", "160", "--seeds", "2", "--methods", "vanilla", "cse", "--out", out,
            "--work", work, "--eval-episodes", "2", "--sweep-points", "3"]
    assert common.main(script.EXPERIMENT, argv) == 0
    first = json.load(open(os.path.join(out, "results.json")))
    assert first["info"]["scale"] == "paper" and first["info"]["seeds"] == 2
    assert common.main(script.EXPERIMENT, argv + ["--resume"]) == 0
    again = json.load(open(os.path.join(out, "results.json")))
    assert again["methods"] == first["methods"]  # resumed from the finished checkpoints: same policies, same returns


def test_the_environment_module_is_imported_before_jax_starts(monkeypatch):
    """``run_experiment`` imports the environment's module before anything can start JAX's CPU
    backend (the machine description is the first thing that does), so an MJX environment sizes
    XLA:CPU's thread pool in time (zsgjax.envs.mjx.cpu_pool): without it a paper-scale cheetah run
    started with the 2-thread pool that can deadlock."""
    import dataclasses
    import types

    from zsgjax.envs import registry

    probe = types.ModuleType("zsgjax_probe_env_module")
    probe.Env = object
    imported = []
    monkeypatch.setitem(sys.modules, "zsgjax_probe_env_module", probe)
    monkeypatch.setattr(registry, "_REGISTRY", {**registry._REGISTRY, "probe_env": "zsgjax_probe_env_module:Env"})
    real_import = registry.importlib.import_module
    monkeypatch.setattr(registry.importlib, "import_module",
                        lambda name: imported.append(name) or real_import(name))

    class Started(Exception):
        pass

    def machine_description():
        assert imported == ["zsgjax_probe_env_module"], imported
        raise Started

    monkeypatch.setattr(common.machine, "machine_description", machine_description)
    exp = dataclasses.replace(cheetah_velocity.EXPERIMENT, env="probe_env")
    monkeypatch.setattr(common, "configs_for", lambda *a, **k: {})
    with pytest.raises(Started):
        common.run_experiment(exp, out="unused", work="unused", log=lambda *a: None)
