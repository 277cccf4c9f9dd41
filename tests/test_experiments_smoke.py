"""The experiment protocol (scripts/experiments/common.py) end to end at a tiny size."""

import dataclasses
import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "experiments"))

import cart_goal  # noqa: E402
import common  # noqa: E402
import pendulum_goal  # noqa: E402
import simple_direction  # noqa: E402

from _tiny import TINY_CHUNK_ITERATIONS, TINY_EVAL, TINY_SEEDS, TINY_TRAIN  # noqa: E402
from zsgjax import evaluate, runner  # noqa: E402
from zsgjax.reporting import tables  # noqa: E402
from zsgjax.train import TrainConfig  # noqa: E402

# The CLI test's setup (same programs, compiled once per session)
_CONFIG = {k: v for k, v in TINY_TRAIN.items() if k not in ("env", "total_steps")}
TINY = common.Scale(steps=TINY_TRAIN["total_steps"], seeds=TINY_SEEDS, config=_CONFIG,
                    chunks=TINY_TRAIN["total_steps"] // TINY_TRAIN["steps_per_iteration"] // TINY_CHUNK_ITERATIONS,
                    eval_actions="sample_unscaled", **TINY_EVAL)


@pytest.mark.xdist_group("tiny_train")
def test_protocol_end_to_end(tmp_path, monkeypatch):
    """Two methods x 2 seeds x 64 steps: train, evaluate, claims, plot and files."""
    exp = dataclasses.replace(simple_direction.EXPERIMENT, cpu=TINY, methods=("vanilla", "cse"))
    modes = []  # the action mode each method was evaluated with

    def recording_policy_action(agent, actions="mean"):
        modes.append(actions)
        return evaluate.policy_action(agent, actions)

    monkeypatch.setattr(runner, "policy_action", recording_policy_action)
    lines = []
    out = common.run_experiment(exp, scale="cpu", out=str(tmp_path / "out"), work=str(tmp_path / "work"),
                                log=lines.append)
    assert any(line.startswith("[cse] iteration 4/4") for line in lines)  # the runner's progress lines
    assert modes == ["sample_unscaled", "sample_unscaled"]  # the scale's evaluation reached the runner
    files = sorted(os.listdir(tmp_path / "out"))
    assert files == ["generalization.png", "learning_curves.png", "results.csv", "results.json", "results.md"], files
    record = json.loads((tmp_path / "out" / "results.json").read_text())["info"]
    assert record["seeds"] == 2 and record["steps_per_seed"] == 64
    assert set(record["timings"]) == {"vanilla", "cse"}
    assert record["timings"]["cse"]["compile_s"] > 0 and record["timings"]["cse"]["program_s"] > 0
    assert record["scale"] == "cpu" and record["machine"]["cpu_count"] >= 1
    (claim,) = record["claims"]
    assert claim["claim"] == "CSE beats vanilla away from the training context"
    # The verdict the returns determine, by hand: far rows (some dimension >= 0.25 of its
    # range [-1, 1] from the default (0, 0)), each seed's mean over them, the paired
    # difference and its Student-t interval (t_{0.975, 1} = 12.706 with 2 seeds).
    results = out["results"]
    grid = results["cse"].grid
    far = np.flatnonzero(np.abs(grid.contexts).max(axis=1) >= 0.5 - 1e-6)
    assert [grid.labels[r] for r in far] == claim["rows"] and 0 < len(far) < len(grid)
    per_seed = {m: np.asarray(results[m].returns, np.float64)[:, far].mean(axis=(1, 2)) for m in ("cse", "vanilla")}
    d = per_seed["cse"] - per_seed["vanilla"]
    assert d.shape == (2,)
    half = 12.706204736174707 * np.std(d, ddof=1) / np.sqrt(2)
    assert claim["diff"] == pytest.approx(d.mean(), rel=1e-9, abs=1e-9)
    assert claim["diff_ci"] == pytest.approx(half, rel=1e-9, abs=1e-9)
    if abs(abs(d.mean()) - half) > 1e-6 * (1 + half):  # not on the boundary
        want = ("cse > vanilla" if d.mean() - half > 0 else "cse < vanilla" if d.mean() + half < 0
                else "no significant difference")
        assert claim["verdict"] == want
    returns = out["results"]["cse"].returns
    assert returns.shape == (2, 2 * 3 + 5, 2)  # seeds x (2 sweeps x 3 points + 5 named) x episodes
    md = (tmp_path / "out" / "results.md").read_text()
    assert "## Verdicts on the paper's claims" in md and "## Far-context aggregates (not the paper's protocol)" in md
    assert "generalization.png" in md and "learning_curves.png" in md
    assert record["env_kwargs"] == {} and record["eval_actions"] == "sample_unscaled"
    assert "sampled actions (sample_unscaled), 2 episodes" in md
    # the paper's verdict: the pre-registered rows only (the four named contexts off the training one)
    (verdict,) = record["verdicts"]
    assert verdict["id"] == "simple_direction/cse>vanilla"
    assert verdict["rows"] == ["(0.8,0.8)", "(0.8,-0.8)", "(-0.8,0.8)", "(-0.8,-0.8)"]
    named = [grid.labels.index(r) for r in verdict["rows"]]
    d = (np.asarray(results["cse"].returns, np.float64)[:, named].mean(axis=(1, 2))
         - np.asarray(results["vanilla"].returns, np.float64)[:, named].mean(axis=(1, 2)))
    assert verdict["diff"] == pytest.approx(d.mean(), rel=1e-9, abs=1e-9)
    assert verdict["half_width"] == pytest.approx(12.706204736174707 * np.std(d, ddof=1) / np.sqrt(2), rel=1e-9)
    check_split_runs_merge_to_the_joint_run(exp, tmp_path)
    check_named_contexts_evaluated_again_with_more_episodes(exp, tmp_path, record)
    check_the_returns_survive_a_failing_report(exp, tmp_path, monkeypatch)


def check_the_returns_survive_a_failing_report(exp, tmp_path, monkeypatch):
    """Evaluation is not checkpointed: ``results.json`` holds the returns before anything reports on them."""
    def failing_verdicts(*args):
        raise ValueError("a report that fails")

    monkeypatch.setattr(common, "paper_verdicts", failing_verdicts)
    with pytest.raises(ValueError, match="a report that fails"):
        common.run_experiment(exp, scale="cpu", out=str(tmp_path / "kept"), work=str(tmp_path / "work"),
                              resume=True, sweep_dims=(), log=lambda *a: None)
    kept = tables.load_json(tmp_path / "kept" / "results.json")
    assert set(kept) == {"vanilla", "cse"} and kept["cse"].returns.shape[0] == 2


def check_named_contexts_evaluated_again_with_more_episodes(exp, tmp_path, first):
    """``--resume --sweep-dims none --eval-episodes 3`` on the finished checkpoints: the named
    contexts only, 3 episodes each, the verdict on the same rows, no sweep plot, nothing trained."""
    lines = []
    out = common.run_experiment(exp, scale="cpu", out=str(tmp_path / "named"), work=str(tmp_path / "work"),
                                resume=True, sweep_dims=(), eval_episodes=3, log=lines.append)
    assert not any(line.startswith(("[vanilla] iteration", "[cse] iteration")) for line in lines)  # evaluated only
    grid = out["results"]["cse"].grid
    assert grid.swept_dims == () and list(grid.labels) == list(simple_direction_named_labels())
    assert out["results"]["cse"].returns.shape == (2, len(grid.labels), 3)
    record = json.loads((tmp_path / "named" / "results.json").read_text())["info"]
    assert record["sweep_dims"] == [] and record["eval_episodes"] == 3
    assert [v["rows"] for v in record["verdicts"]] == [v["rows"] for v in first["verdicts"]]
    assert "generalization.png" not in os.listdir(tmp_path / "named")
    assert "Not judged here" not in (tmp_path / "named" / "results.md").read_text()  # simple_direction's are named
    assert "3 episodes, the named contexts only, 2 seeds" in (tmp_path / "named" / "results.md").read_text()
    with pytest.raises(ValueError, match=r"RunSpec.sweep_dims names \['gravity'\].*\['c_x', 'c_y'\]"):
        common.run_experiment(exp, scale="cpu", out=str(tmp_path / "bad"), work=str(tmp_path / "work"), resume=True,
                              sweep_dims=("gravity",), log=lines.append)


def simple_direction_named_labels():
    from zsgjax.envs import make

    return make("simple_direction").eval_context_array()[0]


def check_split_runs_merge_to_the_joint_run(exp, tmp_path):
    """The joint run's results.json cut into one run per method, as if each had been trained by its
    own process, merges back to the same returns, claims and verdicts; mismatches are refused."""
    joint = json.loads((tmp_path / "out" / "results.json").read_text())
    for m in ("vanilla", "cse"):
        part = {**joint, "methods": {m: joint["methods"][m]},
                "info": {**joint["info"], "timings": {m: joint["info"]["timings"][m]},
                         "configs": {m: joint["info"]["configs"][m]}}}
        os.makedirs(tmp_path / m)
        (tmp_path / m / "results.json").write_text(json.dumps(part))
    lines = []
    merged = common.merge_runs(exp, [str(tmp_path / "cse"), str(tmp_path / "vanilla")], str(tmp_path / "merged"),
                               work=str(tmp_path / "work"), log=lines.append)
    assert list(merged["results"]) == ["vanilla", "cse"]  # the experiment's order
    record = json.loads((tmp_path / "merged" / "results.json").read_text())
    for m in ("vanilla", "cse"):
        assert record["methods"][m]["returns"] == joint["methods"][m]["returns"]
    assert record["info"]["verdicts"] == joint["info"]["verdicts"] and record["info"]["claims"] == joint["info"]["claims"]
    assert record["info"]["merged_from"] == {"vanilla": str(tmp_path / "vanilla"), "cse": str(tmp_path / "cse")}
    assert sorted(os.listdir(tmp_path / "merged")) == sorted(os.listdir(tmp_path / "out"))
    with pytest.raises(ValueError, match="method 'cse' is in both"):
        common.merge_runs(exp, [str(tmp_path / "cse"), str(tmp_path / "out")], str(tmp_path / "m2"))
    part = json.loads((tmp_path / "cse" / "results.json").read_text())
    part["info"]["eval_episodes"] = 64
    (tmp_path / "cse" / "results.json").write_text(json.dumps(part))
    with pytest.raises(ValueError, match="eval_episodes differs: 2 in .*vanilla, 64 in .*cse"):
        common.merge_runs(exp, [str(tmp_path / "vanilla"), str(tmp_path / "cse")], str(tmp_path / "m3"))
    part["info"]["eval_episodes"] = 2
    part["info"]["configs"]["cse"]["seed"] = 1
    (tmp_path / "cse" / "results.json").write_text(json.dumps(part))
    with pytest.raises(ValueError, match="different base seeds.*not paired"):
        common.merge_runs(exp, [str(tmp_path / "vanilla"), str(tmp_path / "cse")], str(tmp_path / "m4"))
    with pytest.raises(ValueError, match="holds no results.json"):
        common.merge_runs(exp, [str(tmp_path / "vanilla"), str(tmp_path / "nowhere")], str(tmp_path / "m5"))


def test_scripts_take_the_environment_options_of_zsgjax_train():
    """``--physical``/``--physical-range``/``--env-option`` reach every method's TrainConfig."""
    args = common.parser(simple_direction.EXPERIMENT).parse_args(
        ["--env-option", "integrator=gym", "--wandb", "--no-compile-cache"])
    kwargs = common.options.env_kwargs_from_args(args)
    assert kwargs == {"integrator": "gym"} and common.options.wandb_project(args) == "zsgjax" and not args.compile_cache
    configs = common.configs_for(simple_direction.EXPERIMENT, TINY, 64, 0, kwargs)
    assert {label: c.env_kwargs for label, c in configs.items()} == {m: {"integrator": "gym"}
                                                                      for m in simple_direction.EXPERIMENT.methods}


def test_bad_options_are_clear_errors(capsys):
    with pytest.raises(ValueError, match="--scale"):
        simple_direction.EXPERIMENT.scale("huge")
    with pytest.raises(ValueError, match="--methods"):
        common.run_experiment(simple_direction.EXPERIMENT, methods=("ppo",))
    with pytest.raises(ValueError, match="playground:<Name>.*CartpoleBalance"):
        common.playground_experiment("playground:Cartpole")
    for argv, message in ((["--merge", "a", "b"], "--merge needs --out"),
                          (["--merge", "a", "--out", "m"], "name at least two result folders")):
        with pytest.raises(SystemExit):
            common.main(simple_direction.EXPERIMENT, argv)
        assert message in capsys.readouterr().err


def test_gradient_sources_takes_playground_tasks_and_the_scripts_experiments():
    """``gradient_sources.experiment``: a playground name gets the generic playground protocol,
    a script's environment its ``EXPERIMENT``; anything else is refused naming ``--env``."""
    import gradient_sources

    exp = gradient_sources.experiment("playground:CartpoleBalance")
    assert exp.env == "playground:CartpoleBalance" and exp.cpu == common.PLAYGROUND_CPU
    assert exp.scale("paper") == common.PLAYGROUND_FULL and exp.cpu.seeds == 10
    assert gradient_sources.experiment("pendulum_goal") is pendulum_goal.EXPERIMENT
    with pytest.raises(ValueError, match="--env must be one of"):
        gradient_sources.experiment("cart_goal")
    assert set(gradient_sources.MJX_VARIANTS) <= set(gradient_sources.variants())
    assert gradient_sources.PREREGISTERED["mjx_run"]["variants"] == list(gradient_sources.MJX_VARIANTS)


# ------------------------------------------- claim verdicts on hand-made results
T_975_3DOF = 3.182446305284263  # t_{0.975, 3}: 4 seeds


def _claims_setup(num_seeds=4):
    """Hand-made returns of vanilla, cse and ldr on a 2-D grid whose verdicts are known.

    Grid: sweeps of x and y over (-1, -0.5, 0, 0.5, 1) (range [-1, 1], default 0) and the
    named contexts (0, 0), (0.8, 0.8). Far rows (>= 0.25 of the range, i.e. >= 0.5 from 0):
    9; near rows: x=0, y=0, (0, 0). Seeds differ by 10 per seed (shared by every method,
    so only the paired interval sees the small differences).
    """
    from zsgjax.reporting.results import ContextGrid, EvalResult

    vals = [-1.0, -0.5, 0.0, 0.5, 1.0]
    contexts = [[v, 0.0] for v in vals] + [[0.0, v] for v in vals] + [[0.0, 0.0], [0.8, 0.8]]
    labels = tuple([f"x={v:g}" for v in vals] + [f"y={v:g}" for v in vals] + ["(0,0)", "(0.8,0.8)"])
    grid = ContextGrid(contexts=np.asarray(contexts, np.float32), labels=labels, swept=("x",) * 5 + ("y",) * 5
                       + (None, None), names=("x", "y"), default=np.zeros(2, np.float32))
    c = np.asarray(contexts)
    far = np.abs(c).max(axis=1) >= 0.5
    focus = np.zeros(len(c), bool)
    focus[[5, 9]] = True  # the y sweep at |y| >= 0.9
    rng = np.random.default_rng(0)
    seeds = 10.0 * np.arange(num_seeds)[:, None, None]
    vanilla = seeds + rng.normal(size=(num_seeds, len(c), 2))
    jitter = np.array([0.2, -0.2, 0.1, -0.1])[:num_seeds, None, None]
    # cse: +3 on every far row (+- a little per seed), -100 on the near rows
    cse = vanilla + np.where(far, 3.0, -100.0)[None, :, None] + jitter
    # ldr: 2 below cse at the focus rows, a large seed-dependent +-3 or +-4 elsewhere
    spread = np.array([3.0, -3.0, 4.0, -4.0])[:num_seeds, None, None]
    ldr = cse + np.where(focus, -2.0, 1.0)[None, :, None] * np.where(focus[None, :, None], 1.0 + jitter, spread)
    results = {m: EvalResult(grid, r) for m, r in (("vanilla", vanilla), ("cse", cse), ("ldr", ldr))}
    return grid, far, focus, results


def _hand_interval(results, a, b, rows):
    per = {m: results[m].returns[:, rows].mean(axis=(1, 2)) for m in (a, b)}
    d = per[a] - per[b]
    return d.mean(), T_975_3DOF * np.std(d, ddof=1) / 2.0, per


def test_compare_verdicts_and_intervals_by_hand():
    grid, far, focus, results = _claims_setup()
    rows = np.flatnonzero(far)
    for a, b, want in (("cse", "vanilla", "cse > vanilla"), ("vanilla", "cse", "vanilla < cse"),
                       ("cse", "ldr", "no significant difference"), ("ldr", "cse", "no significant difference")):
        c = common.compare(results, a, b, rows)
        diff, half, per = _hand_interval(results, a, b, rows)
        assert c["verdict"] == want, (c["diff"], c["diff_ci"])
        assert c["diff"] == pytest.approx(diff, rel=1e-12) and c["diff_ci"] == pytest.approx(half, rel=1e-9)
        assert c["mean_a"] == pytest.approx(per[a].mean(), rel=1e-12)
        assert c["ci_a"] == pytest.approx(T_975_3DOF * np.std(per[a], ddof=1) / 2.0, rel=1e-9)
        assert c["rows"] == [grid.labels[r] for r in rows]
        assert (a, b) != ("ldr", "cse") or -half < diff < 0  # a negative, not significant difference
    # the verdict needs the paired interval: unpaired, the seed effects hide the +3
    c = common.compare(results, "cse", "vanilla", rows)
    assert c["ci_a"] > c["diff"] and c["ci_b"] > c["diff"]
    one = {m: dataclasses.replace(r, returns=r.returns[:1]) for m, r in results.items()}
    c1 = common.compare(one, "cse", "vanilla", rows)
    assert c1["verdict"] == "n/a (one seed: no interval)" and np.isnan(c1["diff_ci"])


def test_check_claims_rows_and_verdicts_by_hand():
    grid, far, focus, results = _claims_setup()
    exp = dataclasses.replace(simple_direction.EXPERIMENT, methods=("vanilla", "cse", "ldr"), far_fraction=0.25,
                              focus=("y", 0.9, "at large |y|"))
    claims = common.check_claims(exp, results, (-1.0, -1.0), (1.0, 1.0))
    assert [c["claim"] for c in claims] == ["CSE beats vanilla away from the training context",
                                            "CSE is comparable to LDR", "CSE ahead of LDR at large |y|"]
    assert [c["verdict"] for c in claims] == ["cse > vanilla", "no significant difference", "cse > ldr"]
    assert claims[0]["rows"] == claims[1]["rows"] == [grid.labels[r] for r in np.flatnonzero(far)]
    assert claims[2]["rows"] == ["y=-1", "y=1"]
    for claim, (a, b, mask) in zip(claims, [("cse", "vanilla", far), ("cse", "ldr", far), ("cse", "ldr", focus)]):
        diff, half, _ = _hand_interval(results, a, b, np.flatnonzero(mask))
        assert claim["diff"] == pytest.approx(diff, rel=1e-12) and claim["diff_ci"] == pytest.approx(half, rel=1e-9)
    # over all rows (the near ones included) CSE would lose: the rows matter
    all_rows = common.compare(results, "cse", "vanilla", np.arange(len(grid)))
    assert all_rows["verdict"] == "cse < vanilla"
    # only the claims whose methods are present; one seed: n/a
    assert len(common.check_claims(exp, {m: results[m] for m in ("vanilla", "cse")}, (-1, -1), (1, 1))) == 1
    _, _, _, one = _claims_setup(num_seeds=1)
    assert {c["verdict"] for c in common.check_claims(exp, one, (-1, -1), (1, 1))} == {"n/a (one seed: no interval)"}


@pytest.mark.parametrize("script, steps", [(simple_direction, 52_000), (pendulum_goal, 104_000),
                                           (cart_goal, 2_000_000)], ids=lambda x: getattr(x, "__name__", str(x)))
def test_classic_paper_scales_are_the_papers_protocol(script, steps):
    """The paper's lengths and evaluate_policies.py (64 episodes, 50 points, sampled actions);
    cart_goal trains the paper's Q-network (the preset) and its cpu scale the earlier one."""
    sc = script.EXPERIMENT.scale("paper")
    assert (sc.steps, sc.seeds, sc.config) == (steps, 10, common.PAPER_LOOP)
    assert (sc.eval_episodes, sc.sweep_points, sc.eval_actions) == (64, 50, "sample_unscaled")
    if script is cart_goal:
        paper = TrainConfig(env="cart_goal").resolve()
        assert (paper.hidden_sizes, paper.dqn_activation, paper.dqn_head_hidden_size) == ((256,), "tanh", 256)
        cpu = cart_goal.EXPERIMENT.cpu.config
        assert (cpu["dqn_activation"], cpu["dqn_head_hidden_size"]) == ("relu", 0)


@pytest.mark.slow
def test_cart_paper_command_pairs_seeds_across_seed_counts_and_resumes(tmp_path):
    """``cart_goal.py --scale paper`` at 1600 steps (600 after learning starts): seed k of a 3-seed run is seed k of a
    2-seed run (same training keys, same evaluation keys), and ``--resume`` on finished
    checkpoints gives the same returns."""
    def run(seeds, name, *extra):
        out = str(tmp_path / name)
        argv = ["--scale", "paper", "--steps", "1600", "--seeds", str(seeds), "--methods", "vanilla", "cse",
                "--out", out, "--work", str(tmp_path / f"{name}-work"), "--eval-episodes", "2", "--sweep-points", "2",
                *extra]
        assert common.main(cart_goal.EXPERIMENT, argv) == 0
        return json.load(open(os.path.join(out, "results.json")))

    two, three = run(2, "two"), run(3, "three")
    assert three["info"]["eval_actions"] == "sample_unscaled" and three["info"]["seeds"] == 3
    for m in ("vanilla", "cse"):
        np.testing.assert_allclose(np.asarray(three["methods"][m]["returns"])[:2], two["methods"][m]["returns"],
                                   rtol=1e-5, atol=1e-4)
    again = run(2, "two", "--resume")
    assert again["methods"] == two["methods"]


def test_far_context_aggregates_of_a_named_only_grid_leave_the_focus_sweep_out():
    """pendulum_goal's focus ("CSE ahead of LDR for tau > 0.6") is a tau sweep: a grid of the named contexts
    alone gives the far-context rows it has and no focus row, instead of failing after the evaluation."""
    from zsgjax.envs import make
    from zsgjax.reporting.results import EvalResult

    env = make("pendulum_goal")
    grid = evaluate.make_grid(env, num_points=5, dims=())
    rng = np.random.default_rng(0)
    results = {m: EvalResult(grid, rng.normal(size=(3, len(grid), 2))) for m in ("vanilla", "cse", "ldr")}
    claims = common.check_claims(pendulum_goal.EXPERIMENT, results, env.context_space.low, env.context_space.high)
    assert [c["claim"] for c in claims] == ["CSE beats vanilla away from the training context",
                                            "CSE is comparable to LDR"]
    swept = evaluate.make_grid(env, num_points=5, dims=("tau",))
    results = {m: EvalResult(swept, rng.normal(size=(3, len(swept), 2))) for m in ("vanilla", "cse", "ldr")}
    claims = common.check_claims(pendulum_goal.EXPERIMENT, results, env.context_space.low, env.context_space.high)
    assert claims[-1]["claim"] == "CSE ahead of LDR for tau > 0.6"


def test_results_md_names_the_claims_a_named_only_run_cannot_judge(tmp_path):
    from zsgjax.envs import make
    from zsgjax.reporting.results import EvalResult

    grid = evaluate.make_grid(make("cheetah_velocity"), num_points=3, dims=())
    results = {m: EvalResult(grid, np.zeros((2, len(grid), 1))) for m in ("vanilla", "cse")}
    timings = {m: {"train_s": 1.0, "compile_s": 0.0, "program_s": 1.0, "eval_s": 1.0} for m in results}
    info = {"env": "cheetah_velocity", "claims_not_judged_no_rows_in_this_grid": ["cheetah_velocity/cse>vanilla:v>1.5"]}
    md = common.write_outputs(str(tmp_path), results, title="t", info=info, claims=[], timings=timings, judged=[])
    assert "Not judged here (its rows are not in this run's grid): cheetah_velocity/cse>vanilla:v>1.5." in md
