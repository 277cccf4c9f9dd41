"""Environment options end to end: CLI flags -> TrainConfig.env_kwargs -> env, run.json, checkpoints, resume."""

import dataclasses
import json
import os

import numpy as np
import pytest

from zsgjax import cli, runner
from zsgjax.checkpoint import Checkpointer
from zsgjax.configs import FrozenMap, freeze
from zsgjax.train import TrainConfig, make_train

from _tiny import TINY_TRAIN  # noqa: E402


def parse(*argv):
    return cli.build_parser().parse_args(["train", *argv])


# ------------------------------------------------------------------ parsing
def test_flags_become_env_kwargs():
    args = parse("--env", "cheetah_velocity", "--physical", "gravity", "mass_scale:torso",
                 "--physical-range", "gravity=6,12", "mass_scale:torso=0.5,1.5",
                 "--env-option", "reset_noise_scale=0.05", "solver_tangent=true", "name=abc", "sizes=[1, 2]")
    assert cli.env_kwargs_from_args(args) == {
        "physical": ("gravity", "mass_scale:torso"),
        "physical_ranges": {"gravity": (6.0, 12.0), "mass_scale:torso": (0.5, 1.5)},
        "reset_noise_scale": 0.05, "solver_tangent": True, "name": "abc", "sizes": [1, 2],
    }
    assert cli.env_kwargs_from_args(parse()) == {}


@pytest.mark.parametrize("argv, message", [
    (["--env-option", "physical=('gravity',)"], "--env-option: give 'physical' with --physical"),
    (["--env-option", "a=1", "a=2"], "--env-option: 'a' is given twice"),
    (["--physical", "gravity", "--physical-range", "gravity=6,12", "gravity=7,9"],
     "--physical-range: 'gravity' is given twice"),
])
def test_conflicting_env_flags_are_named(argv, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cli.env_kwargs_from_args(parse(*argv))


@pytest.mark.parametrize("argv, message", [
    (["--physical-range", "gravity=6"], "argument --physical-range: expected NAME=LOW,HIGH"),
    (["--env-option", "noequals"], "argument --env-option: expected KEY=VALUE"),
    (["--env-option", "1x=2"], "argument --env-option: expected KEY=VALUE"),
])
def test_malformed_env_flags_are_one_line_usage_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", *argv])
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"zsgjax train: error: {message}") and line.endswith("see 'zsgjax train --help'")


# ------------------------------------------------------------ TrainConfig field
def test_env_kwargs_are_frozen_hashable_and_survive_json():
    a = TrainConfig(env="cheetah_velocity", env_kwargs={"physical_ranges": {"gravity": [6, 12]},
                                                        "physical": ["gravity"]})
    b = TrainConfig(env="cheetah_velocity", env_kwargs={"physical": ("gravity",),
                                                        "physical_ranges": {"gravity": (6, 12)}})
    assert isinstance(a.env_kwargs, FrozenMap) and a == b and hash(a) == hash(b)
    assert list(a.env_kwargs) == ["physical", "physical_ranges"]  # sorted
    assert a.env_kwargs["physical_ranges"]["gravity"] == (6, 12)
    with pytest.raises(TypeError, match="read-only"):
        a.env_kwargs["physical"] = ("mass_scale",)
    with pytest.raises(TypeError, match="read-only"):
        a.env_kwargs["physical_ranges"].update(gravity=(1, 2))
    record = json.loads(json.dumps(dataclasses.asdict(a)))  # as run.json / checkpoints store it
    assert record["env_kwargs"] == {"physical": ["gravity"], "physical_ranges": {"gravity": [6, 12]}}
    back = TrainConfig(**record)
    assert back == a and hash(back) == hash(a)
    assert TrainConfig() == TrainConfig(env_kwargs={}) and TrainConfig().env_kwargs == {}


def test_env_kwargs_reach_the_environment_and_are_checked_against_its_constructor():
    env = TrainConfig(env="pendulum_goal", env_kwargs={"integrator": "gym"}).make_env()
    assert env.integrator == "gym"
    trainer = make_train(TrainConfig(env="pendulum_goal", method="vanilla", env_kwargs={"integrator": "gym"}))
    assert trainer.env.integrator == "gym" and trainer.config.env_kwargs == {"integrator": "gym"}
    with pytest.raises(ValueError, match=r"TrainConfig.env_kwargs .* of env 'simple_direction': .*unexpected keyword "
                                         r"argument 'physical'; options of 'simple_direction': none"):
        make_train(TrainConfig(env_kwargs={"physical": ("gravity",)}))
    with pytest.raises(ValueError, match=r"env 'pendulum_goal': .*unexpected keyword argument 'physical'; options of "
                                         r"'pendulum_goal': integrator"):
        make_train(TrainConfig(env="pendulum_goal", env_kwargs={"physical": ("gravity",)}))
    with pytest.raises(ValueError, match="`integrator` must be one of 'paper', 'gym'.*got 'rk4'"):
        make_train(TrainConfig(env="pendulum_goal", env_kwargs={"integrator": "rk4"}))
    with pytest.raises(ValueError, match=r"TrainConfig.env_kwargs\['x'\] must be a string, number, bool, None"):
        TrainConfig(env_kwargs={"x": object()}).validate()
    with pytest.raises(ValueError, match="TrainConfig.env_kwargs must be a mapping"):
        TrainConfig(env_kwargs=("physical", "gravity")).validate()
    with pytest.raises(ValueError, match=r"y\['y'\]\[0\] must be finite, got nan"):
        freeze({"y": [float("nan")]}, "y")


def test_cli_names_the_environment_option_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--physical", "gravity", "--out", "/tmp/zsgjax-never-written"])
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("zsgjax train: error: environment options (--physical/--physical-range/--env-option) "
                           "{'physical': ('gravity',)} of env 'simple_direction'")
    assert "options of 'simple_direction': none" in line


# ----------------------------------------------------------------- resume
def _checkpoint(trainer, directory, seeds=2):
    with Checkpointer(os.path.join(directory, "checkpoints"), runner.checkpoint_config(trainer, seeds)) as ck:
        ck.save(1, {"x": np.zeros(2)})


def test_resume_with_other_env_options_is_refused_naming_the_option(tmp_path, capsys):
    tiny = {**TINY_TRAIN, "env": "pendulum_goal"}
    gym = make_train(TrainConfig(method="vanilla", env_kwargs={"integrator": "gym"}, **tiny))
    _checkpoint(gym, str(tmp_path / "run" / "vanilla"))
    spec = runner.RunSpec(seeds=2, resume=True)
    runner.open_checkpointer(gym, str(tmp_path / "run" / "vanilla"), spec).close()  # same options: fine
    paper = make_train(TrainConfig(method="vanilla", env_kwargs={"integrator": "paper"}, **tiny))
    with pytest.raises(ValueError, match=r"trained with other environment options \(environment option integrator: "
                                         r"there='gym' vs now='paper'\)"):
        runner.open_checkpointer(paper, str(tmp_path / "run" / "vanilla"), spec)
    default = make_train(TrainConfig(method="vanilla", **tiny))
    with pytest.raises(ValueError, match="environment option integrator: there='gym' vs now='<not given>'"):
        runner.open_checkpointer(default, str(tmp_path / "run" / "vanilla"), spec)
    argv = ["train", "--env", "pendulum_goal", "--method", "vanilla", "--seeds", "2", "--steps", "64",
            "--num-envs", "4", "--steps-per-iteration", "16", "--learning-starts", "16", "--batch-size", "16",
            "--buffer-size", "128", "--hidden-sizes", "16", "16", "--out", str(tmp_path / "run"), "--resume",
            "--env-option", "integrator=paper"]
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "environment option integrator (--env-option integrator): there='gym' vs now='paper'" in line


def test_checkpoints_of_format_2_are_refused(tmp_path):
    trainer = make_train(TrainConfig(method="vanilla", **TINY_TRAIN))
    old = {k: v for k, v in runner.checkpoint_config(trainer, 2).items() if k != "env_kwargs"}
    with Checkpointer(tmp_path / "v" / "checkpoints", {**old, "format": 2}) as ck:
        ck.save(1, {"x": np.zeros(2)})
    with pytest.raises(ValueError, match=rf"older zsgjax \(config format 2; this version reads format {runner.CHECKPOINT_FORMAT}\)"):
        runner.open_checkpointer(trainer, str(tmp_path / "v"), runner.RunSpec(seeds=2, resume=True))


# ------------------------------------------------------------- end to end
@pytest.mark.slow
def test_cheetah_with_a_physical_context_from_the_command_line(tmp_path, capsys):
    """``zsgjax train --env cheetah_velocity --physical gravity mass_scale:torso --physical-range
    gravity=6,12``, a few steps: the context has the two physical dimensions with the given
    range, run.json and the checkpoints record the options, and resuming with another range
    is refused naming the option."""
    out = str(tmp_path / "cheetah")
    argv = ["train", "--env", "cheetah_velocity", "--physical", "gravity", "mass_scale:torso",
            "--physical-range", "gravity=6,12", "--method", "cse", "--seeds", "1", "--steps", "32",
            "--num-envs", "4", "--steps-per-iteration", "16", "--learning-starts", "16", "--batch-size", "16",
            "--buffer-size", "64", "--hidden-sizes", "16", "--chunks", "1", "--eval-episodes", "1",
            "--sweep-points", "2", "--no-tensorboard", "--out", out]
    assert cli.main(argv) == 0
    assert "env=cheetah_velocity physical=['gravity', 'mass_scale:torso'] physical_ranges={'gravity': [6.0, 12.0]}" \
        in capsys.readouterr().out
    run = json.load(open(os.path.join(out, "run.json")))
    want = {"physical": ["gravity", "mass_scale:torso"], "physical_ranges": {"gravity": [6.0, 12.0]}}
    assert run["env_kwargs"] == want and run["configs"]["cse"]["env_kwargs"] == want
    from zsgjax.reporting import tables

    grid = tables.load_json(os.path.join(out, "generalization.json"))["cse"].grid
    assert grid.names == ("target_velocity", "gravity", "mass_scale:torso")
    g = grid.contexts[grid.sweep_rows("gravity"), 1]
    np.testing.assert_allclose([g.min(), g.max()], [6.0, 12.0])
    with Checkpointer(os.path.join(out, "cse", "checkpoints"), {}) as ck:
        assert ck.restore_config()["env_kwargs"] == want
    with pytest.raises(SystemExit) as exc:
        cli.main([a if a != "gravity=6,12" else "gravity=6,15" for a in argv] + ["--resume"])
    assert exc.value.code == 2
    assert ("environment option physical_ranges (--physical-range): there={'gravity': [6.0, 12.0]} vs "
            "now={'gravity': [6.0, 15.0]}") in capsys.readouterr().err


def test_dr_box_from_the_command_line():
    """``--dr-low/--dr-high`` reach the DR method; a box of the wrong size is one message naming the option."""
    from zsgjax.methods import DR

    cmd = cli.command_from_args(parse("--env", "pendulum_goal", "--method", "dr", "--steps", "64",
                                      "--dr-low", "1.5", "0.8", "0.8", "-0.5", "--dr-high", "2.5", "1.2", "1.2", "0.5"))
    assert cmd.trainers["dr"].method == DR(low=(1.5, 0.8, 0.8, -0.5), high=(2.5, 1.2, 1.2, 0.5))
    assert cmd.trainers["dr"].config.dr_low == (1.5, 0.8, 0.8, -0.5)
    with pytest.raises(ValueError, match="dr_low"):
        cli.command_from_args(parse("--env", "pendulum_goal", "--method", "dr", "--steps", "64", "--dr-low", "1", "2"))
