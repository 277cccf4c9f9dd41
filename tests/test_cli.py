"""``zsgjax train``: a tiny end-to-end run, resume, outputs, and clear errors.

The tiny run (2 methods x 2 seeds x 4 iterations) and everything that needs a
finished run (outputs, resume, checkpoint conflicts) form one test, so that under
``pytest -n 2`` the run is compiled and trained by one worker only.
"""

import csv
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from zsgjax import cli
from zsgjax.reporting import tables

from _tiny import TINY_CHUNK_ITERATIONS, TINY_EVAL, TINY_SEEDS, TINY_TRAIN  # noqa: E402

TINY = [
    "train", "--env", TINY_TRAIN["env"], "--method", "vanilla", "cse", "--seeds", str(TINY_SEEDS),
    "--steps", str(TINY_TRAIN["total_steps"]), "--num-envs", str(TINY_TRAIN["num_envs"]),
    "--steps-per-iteration", str(TINY_TRAIN["steps_per_iteration"]),
    "--learning-starts", str(TINY_TRAIN["learning_starts"]), "--batch-size", str(TINY_TRAIN["batch_size"]),
    "--buffer-size", str(TINY_TRAIN["buffer_size"]), "--hidden-sizes", *map(str, TINY_TRAIN["hidden_sizes"]),
    "--chunks", str(TINY_TRAIN["total_steps"] // TINY_TRAIN["steps_per_iteration"] // TINY_CHUNK_ITERATIONS),
    "--keep", "3", "--eval-episodes", str(TINY_EVAL["eval_episodes"]), "--sweep-points", str(TINY_EVAL["sweep_points"]),
]


def run_tiny(out, *extra):
    lines = []
    command = cli.command_from_args(cli.build_parser().parse_args(TINY + ["--out", out, *extra]))
    runs = cli.run_train(command, log=lines.append)
    return {label: r.result for label, r in runs.items()}, lines


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def cache_every_program():
    """JAX's persistent cache keeps every program, however fast its compilation (the suite's
    threshold would leave the tiny run's fast ones out, and a resumed run would compile them again)."""
    import jax

    before = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    yield
    jax.config.update("jax_persistent_cache_min_compile_time_secs", before)


@pytest.mark.xdist_group("tiny_train")  # shares compiled programs with the checkpoint and protocol tests
def test_end_to_end_resume_and_conflicts(tmp_path, capsys, monkeypatch, cache_every_program):
    out = str(tmp_path / "run")
    from zsgjax import runner

    built = []  # one evaluation program for both methods (same env, same policy network)
    real = runner.make_evaluator
    monkeypatch.setattr(runner, "make_evaluator", lambda *a, **k: built.append(a[2:]) or real(*a, **k))
    results, lines = run_tiny(out)
    assert len(built) == 1, built
    monkeypatch.setattr(runner, "make_evaluator", real)
    check_outputs(out, results, lines)
    check_resume_equals_uninterrupted(out, results, str(tmp_path / "resumed"))
    check_existing_checkpoints_need_resume_and_same_config(out, capsys)
    check_finished_results_are_kept(out, results, str(tmp_path / "merged"), capsys)


def check_finished_results_are_kept(out, results, copy, capsys):
    """A second method into a directory with a finished one: both are kept, nothing is overwritten."""
    shutil.copytree(out, copy)
    shutil.rmtree(os.path.join(copy, "cse"))  # as if only vanilla had been run here
    only_vanilla = {"vanilla": tables.load_json(os.path.join(copy, "generalization.json"))["vanilla"]}
    tables.write_json(only_vanilla, os.path.join(copy, "generalization.json"), extra={"env": "simple_direction"})
    tiny_cse = [a for a in TINY if a != "vanilla"]
    command = cli.command_from_args(cli.build_parser().parse_args(tiny_cse + ["--out", copy]))
    lines = []
    cli.run_train(command, log=lines.append)
    assert "(keeping finished vanilla)" in lines[0]
    merged = tables.load_json(os.path.join(copy, "generalization.json"))
    assert list(merged) == ["vanilla", "cse"]
    np.testing.assert_array_equal(merged["vanilla"].returns, results["vanilla"].returns)
    np.testing.assert_array_equal(merged["cse"].returns, results["cse"].returns)  # same seeds, same programs
    assert json.load(open(os.path.join(copy, "run.json")))["methods"] == ["vanilla", "cse"]
    # a finished result without its checkpoints is still not overwritten
    shutil.rmtree(os.path.join(copy, "vanilla", "checkpoints"))
    capsys.readouterr()
    tiny_vanilla = [a for a in TINY if a != "cse"]
    with pytest.raises(SystemExit):
        cli.main(tiny_vanilla + ["--out", copy])
    assert "already holds a finished result of vanilla" in capsys.readouterr().err


def check_outputs(out, results, lines):
    assert list(results) == ["vanilla", "cse"]
    check_compile_and_evaluation_lines(lines)
    progress = [line for line in lines if line.startswith("[cse] iteration")]
    assert len(progress) == 2 and "steps 64/64" in progress[-1] and "steps/s" in progress[-1]
    table = open(os.path.join(out, "generalization.txt")).read()
    header = table.splitlines()[1].split()
    assert header[:4] == ["context", "optimum", "vanilla", "cse"] and "cse − vanilla" in table.splitlines()[1]
    paired = results["cse"].difference(results["vanilla"], [results["cse"].grid.labels.index("(0.8,0.8)")])
    assert f"{paired[0]:+.2f} ± {paired[1]:.2f}" in [line for line in table.splitlines() if line.startswith("(0.8,0.8)")][0]
    assert "(0.8,0.8)" in table and "mean over c_x sweep" in table and table in lines[-2]
    rows = read_csv(os.path.join(out, "generalization.csv"))
    assert len(rows) == 2 * (2 * 3 + 5)
    loaded = tables.load_json(os.path.join(out, "generalization.json"))
    np.testing.assert_allclose(loaded["cse"].returns, results["cse"].returns)
    assert loaded["cse"].returns.shape == (2, 11, 2)
    assert open(os.path.join(out, "generalization.png"), "rb").read(4) == b"\x89PNG"
    assert open(os.path.join(out, "learning_curves.png"), "rb").read(4) == b"\x89PNG"
    assert "learning_curves.png" in lines[-1]
    metrics = read_csv(os.path.join(out, "cse", "metrics.csv"))
    assert [(r["iteration"], r["seed"]) for r in metrics] == [(str(i), str(s)) for i in range(1, 5) for s in range(2)]
    assert {"env_steps", "episode_return", "episodes", "cse_invalid", "critic_loss"} <= set(metrics[0])
    assert metrics[-1]["env_steps"] == "64"
    assert sorted(os.listdir(os.path.join(out, "cse", "checkpoints"))) == ["2", "4"]
    tensorboard = os.path.join(out, "cse", "tensorboard")
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        assert not os.path.exists(tensorboard)
    else:
        assert any(name.startswith("events.out.tfevents") for name in os.listdir(tensorboard))
    run = json.load(open(os.path.join(out, "run.json")))
    assert run["configs"]["cse"]["hidden_sizes"] == [16, 16] and run["num_seeds"] == 2
    assert run["env_kwargs"] == {} and run["configs"]["cse"]["env_kwargs"] == {}
    assert re.search(r"  ETA (<1s|\d+(s|m\d\ds))$", progress[0]) and "ETA" not in progress[-1]


def check_compile_and_evaluation_lines(lines):
    """A line before each compilation, one after it (compiled, or loaded from the cache when an
    earlier test compiled the same program); evaluation progress per piece of contexts."""
    compiled = r"\[{}\] (compiled the {} in|loaded the {} from the compilation cache in) \d+\.\d s"
    for label in ("vanilla", "cse"):
        program = "training programs for 2 seeds"
        start = lines.index(f"[{label}] compiling the simple_direction {program} (kept in the compilation cache for "
                            "the next run)")
        assert re.fullmatch(compiled.format(label, program, program), lines[start + 1]), lines[start + 1]
        assert lines[start + 2].startswith(f"[{label}] iteration 2/4")
        pieces = [line for line in lines if line.startswith(f"[{label}] evaluated ")]
        assert [re.sub("  ETA .*", "", line) for line in pieces[:-1]] == [
            f"[{label}] evaluated {k}/11 contexts x 2 episodes x 2 seeds" for k in (3, 6, 9)]
        assert pieces[-1].startswith(f"[{label}] evaluated 11 contexts x 2 episodes x 2 seeds in ")
    program = "evaluation program for 2 seeds x 2 episodes x 3 contexts per call"
    start = lines.index(f"[vanilla] compiling the simple_direction {program} (kept in the compilation cache for the "
                        "next run)")
    assert re.fullmatch(compiled.format("vanilla", program, program), lines[start + 1]), lines[start + 1]
    assert lines[start + 2].startswith("[vanilla] evaluated 3/11 contexts")
    assert not any(line.startswith("[cse] compiling the simple_direction evaluation") for line in lines)  # shared


def check_resume_equals_uninterrupted(out, results, copy):
    """Drop the last checkpoint of cse (as if stopped after chunk 1), resume: same final policy,
    every program loaded from the compilation cache (restored and fresh states lower alike)."""
    from zsgjax.reporting.compiles import CompileEvents

    shutil.copytree(out, copy)
    shutil.rmtree(os.path.join(copy, "cse", "checkpoints", "4"))
    shutil.rmtree(os.path.join(copy, "cse", "evaluations"))  # cse is evaluated again, vanilla's evaluation reused
    for name in ("generalization.json", "generalization.txt"):
        os.remove(os.path.join(copy, name))
    with CompileEvents() as compiles:
        resumed, lines = run_tiny(copy, "--resume")
    assert compiles.compiled == 0 and compiles.cache_hits > 0, (compiles.programs, compiles.cache_hits)
    assert "[cse] loaded the training programs for 2 seeds from the compilation cache in" in "\n".join(lines)
    assert "[cse] resumed from iteration 2/4" in lines
    assert "[vanilla] resumed from iteration 4/4" in lines
    assert not any(line.startswith("[vanilla] iteration") for line in lines)  # nothing left to train
    assert any(line.startswith("[vanilla] reused its evaluation from ") for line in lines)
    assert not any(line.startswith("[vanilla] evaluated") for line in lines)
    assert any(line.startswith("[cse] evaluated") for line in lines)
    for m in ("vanilla", "cse"):
        np.testing.assert_array_equal(resumed[m].returns, results[m].returns)
    metrics = read_csv(os.path.join(copy, "cse", "metrics.csv"))
    assert [r["iteration"] for r in metrics] == [str(i) for i in range(1, 5) for _ in range(2)]
    assert metrics == read_csv(os.path.join(out, "cse", "metrics.csv"))


def check_existing_checkpoints_need_resume_and_same_config(out, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main(TINY + ["--out", out])
    assert f"'{os.path.join(out, 'vanilla')}' already holds checkpoints (iteration 4)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(TINY + ["--out", out, "--resume", "--cse-epsilon", "0.2"])
    assert "different config (cse_epsilon: checkpoint=0.1 vs now=0.2)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--env", "mars_lander"], "--env must be one of ant_direction, .*simple_direction.*, got 'mars_lander'; see"),
        (["--method", "cse", "magic"], "--method must be one of vanilla, cse, .*, got 'magic'; see"),
        (["--steps", "0"], "--steps must be an integer >= 1, got 0"),
        (["--seeds", "-2"], "--seeds must be an integer >= 1, got -2"),
        (["--sweep-points", "1"], "--sweep-points must be an integer >= 2, got 1"),
        (["--sweep-dims", "none", "x"], "--sweep-dims: 'none' stands alone"),
        (["--sweep-dims", "gravity"], "--sweep-dims names \\['gravity'\\], not context dimensions of this "
                                      "environment; its dimensions are \\['c_x', 'c_y'\\]"),
        (["--cse-mode", "second_order"], "--cse-mode must be one of first_order, exact, got 'second_order'; see"),
        (["--gamma", "1.5"], "--gamma must be a finite number in \\[0, 1\\], got 1.5; see"),
        (["--critic-lr", "inf"], "--critic-lr must be a finite number > 0, got inf; see"),
        (["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
        (["--hidden-sizes", "0"], "--hidden-sizes must be a non-empty tuple of integers >= 1"),
        (["--resume", "--out", "/nonexistent/zsgjax-run"], "--resume: output directory .* does not exist"),
        (["--resume"], "--resume needs --out"),
    ],
)
def test_invalid_options(capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(TINY + extra)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "zsgjax train: error:" in err
    assert re.search(message, err), err


def test_module_entry_point_help_loads_no_jax_once_cached(tmp_path):
    """``python -m zsgjax train --help``: the first call builds the option table from the live
    classes and caches it; the next answers from the cache without importing jax, brax or
    mujoco, with the same text. Nothing is printed on stderr (no Warp messages)."""
    env = {**os.environ, "ZSGJAX_CACHE_DIR": str(tmp_path / "cache")}
    cold = subprocess.run([sys.executable, "-m", "zsgjax", "train", "--help"], capture_output=True, text=True,
                          timeout=300, env=env)
    assert cold.returncode == 0 and cold.stderr == "", cold.stderr
    for option in ("--env", "--method", "--seeds", "--steps", "--out", "--resume", "--eval-episodes", "--cse-epsilon",
                   "--physical", "--physical-range", "--env-option", "--wandb", "--no-compile-cache"):
        assert option in cold.stdout
    names = [p.name for p in (tmp_path / "cache").iterdir()]
    assert len(names) == 1 and names[0].startswith("cli-options-"), names
    code = ("import sys, runpy\nsys.argv = ['zsgjax', 'train', '--help']\ntry:\n    runpy.run_module('zsgjax', "
            "run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in ('jax', 'brax', 'mujoco', 'zsgjax.train') if m in sys.modules))")
    warm = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert warm.returncode == 0 and warm.stderr == "", warm.stderr
    help_text, loaded = warm.stdout.rsplit("LOADED", 1)
    assert help_text == cold.stdout
    assert loaded.strip() == "[]"
    # refused from the cached table too: an unknown --env (TrainConfig's message) and a bad --config
    (tmp_path / "list.json").write_text("[1]")
    for argv, message in ((["--env", "mars_lander"], "zsgjax train: error: --env must be one of ant_direction, "),
                          (["--config", str(tmp_path / "list.json")], f"--config '{tmp_path / 'list.json'}' is not "
                                                                       "a run.json written by zsgjax train")):
        script = code.replace("'train', '--help'", repr(["train", *argv])[1:-1])
        refused = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
        assert refused.stderr.count("\n") == 1 and message in refused.stderr, refused.stderr
        assert refused.stdout.rsplit("LOADED", 1)[1].strip() == "[]"


def test_bad_options_are_one_line_with_a_hint(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--physicl", "gravity"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["zsgjax train: error: unrecognized arguments: --physicl gravity; did you mean "
                                "--physical? (see 'zsgjax train --help')"]
    with pytest.raises(SystemExit):
        cli.main(["train", "--seeds", "many"])
    assert capsys.readouterr().err.splitlines() == [
        "zsgjax train: error: argument --seeds: invalid int value: 'many'; see 'zsgjax train --help'"]


def test_importing_zsgjax_silences_only_the_warp_messages(tmp_path):
    """With Warp unimportable (a stand-in ``warp`` package that raises), ``mujoco.mjx`` prints
    "Failed to import warp" on import; after ``import zsgjax`` nothing is printed."""
    fake = tmp_path / "warp"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('no warp in this test')\n")
    code = ("import zsgjax, sys\nassert 'jax' not in sys.modules  # importing zsgjax is cheap\n"
            "from mujoco import mjx\nprint('WARP_INSTALLED', mjx.warp.WARP_INSTALLED)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    # the stand-in made mjx's Warp import fail (the path that prints), and nothing was printed
    assert proc.stdout == "WARP_INSTALLED False\n" and "warp" not in proc.stderr.lower(), (proc.stdout, proc.stderr)


@pytest.mark.slow
def test_default_main_job_shows_cse_generalizing(tmp_path):
    """``zsgjax train`` with no options (the README's main job, ~3 min on 2 cores): CSE,
    trained only at c = (0, 0), beats vanilla on the four named contexts (+-0.8, +-0.8)."""
    assert cli.main(["train", "--out", str(tmp_path / "main")]) == 0
    results = tables.load_json(tmp_path / "main" / "generalization.json")
    grid = results["cse"].grid
    far = [i for i in grid.named_rows if grid.labels[i] != "(0,0)"]
    cse_mean, cse_ci = results["cse"].summary()
    van_mean, van_ci = results["vanilla"].summary()
    assert len(far) == 4
    # measured: cse ~158 +- 5 (the optimum is ~158.4), vanilla 56-75 +- 9-19 (the zero action alone earns ~70)
    assert np.all(cse_mean[far] - cse_ci[far] > van_mean[far] + van_ci[far] + 30), (cse_mean[far], van_mean[far])


@pytest.mark.slow
def test_pendulum_cse_out_of_the_box(tmp_path):
    """``zsgjax train --env pendulum_goal --method cse`` on a CPU (~1.5 min): it learns the
    default context (early, near-random training episodes score about -1400; measured -88 ± 15)."""
    assert cli.main(["train", "--env", "pendulum_goal", "--method", "cse", "--out", str(tmp_path / "p")]) == 0
    result = tables.load_json(tmp_path / "p" / "generalization.json")["cse"]
    row = result.grid.labels.index("(2,1,1,0)")
    assert result.summary()[0][row] > -400


def test_interrupt_is_one_line_and_exit_130(tmp_path):
    """Ctrl-C during a run: one line naming how to resume, exit status 130, no thread tracebacks."""
    code = ("import zsgjax.cli as c, zsgjax.runner as r\n"
            "def stop(*a, **k):\n    raise KeyboardInterrupt\n"
            "r.run = stop\n"
            f"c.main({TINY + ['--no-compile-cache', '--out', str(tmp_path / 'x')]!r})\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"zsgjax train: interrupted; the last checkpoint is kept (continue with the same options plus "
                     f"--out {tmp_path / 'x'} --resume)"], proc.stderr


def test_scripts_do_not_import_the_cli():
    """Scripts call the library (runner, options), never the command-line module."""
    import pathlib
    import re as _re

    root = pathlib.Path(__file__).resolve().parents[1]
    offenders = [str(p.relative_to(root)) for folder in ("scripts", "benchmarks") for p in (root / folder).rglob("*.py")
                 if _re.search(r"^\s*(from zsgjax(\.cli)? import .*\bcli\b|from zsgjax\.cli import|import zsgjax\.cli)",
                               p.read_text(), _re.M)]
    assert not offenders, offenders


# ------------------------------------------------------------------ runs that share one --out
HOLD_LOCK = """
import sys, time
from zsgjax.reporting.files import DirectoryLock
DirectoryLock(sys.argv[1], what="held").acquire()
print("locked", flush=True)
time.sleep(600)
"""


def child_env():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
                JAX_COMPILATION_CACHE_DIR=os.environ.get("ZSGJAX_TEST_COMPILE_CACHE", ""))


def test_a_method_trained_elsewhere_into_the_same_out_is_refused_before_training(tmp_path, capsys):
    """Another process holds the lock of --out/cse: ``zsgjax train --method cse`` exits 2 at
    once with one line naming the holder; once the holder is killed (SIGKILL, no clean-up)
    the kernel has released the lock."""
    from zsgjax.reporting.files import DirectoryLock

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out / "cse"), "--marker"], env=child_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SystemExit) as e:
            cli.main([a for a in TINY if a != "vanilla"] + ["--out", str(out)])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert (f"the directory of 'cse' '{out / 'cse'}' is in use by another run (pid {holder.pid} on host "
                in err and "--marker" in err), err
        assert not (out / "cse" / "checkpoints").exists() and not (out / "run.json").exists()
        with pytest.raises(ValueError, match=f"is in use by another run \\(pid {holder.pid} "):
            DirectoryLock(out / "cse").acquire(timeout_s=0.2)
    finally:
        holder.kill()
        holder.wait()
    with DirectoryLock(out / "cse") as lock:  # released by the kernel with its holder
        assert lock.held


def test_results_with_nan_returns_are_written_as_null(tmp_path):
    """A NaN return (a diverged seed) no longer stops the results file: strict JSON with
    ``null``, read back as NaN."""
    from zsgjax.reporting.results import ContextGrid, EvalResult

    grid = ContextGrid(contexts=np.zeros((2, 1), np.float32), labels=("a", "b"), swept=(None, None), names=("c",),
                       default=np.zeros(1, np.float32))
    returns = np.array([[[1.0, np.nan], [2.0, 3.0]]])
    path = tmp_path / "g.json"
    tables.write_json({"cse": EvalResult(grid, returns)}, path, extra={"x": float("inf")})
    doc = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert doc["methods"]["cse"]["returns"] == [[[1.0, None], [2.0, 3.0]]] and doc["info"] == {"x": None}
    np.testing.assert_array_equal(tables.load_json(path)["cse"].returns, returns)


def train_process(out, method):
    argv = [a for a in TINY if a not in ("vanilla", "cse")]
    argv[argv.index("--method") + 1:argv.index("--method") + 1] = [method]
    return subprocess.Popen([sys.executable, "-m", "zsgjax", *argv, "--out", str(out), "--no-tensorboard"],
                            env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_concurrent_runs_into_one_out_keep_every_result(tmp_path):
    """Two methods trained at the same time into one --out both keep their results
    (merged under the lock of --out); the same method twice at the same time: one trains,
    the other exits 2 at once naming the holder."""
    out = tmp_path / "run"
    procs = [train_process(out, "vanilla"), train_process(out, "cse")]
    done = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-3000:] for _, e in done]
    assert sorted(tables.load_json(out / "generalization.json")) == ["cse", "vanilla"]
    info = json.loads((out / "run.json").read_text())
    assert sorted(info["methods"]) == ["cse", "vanilla"] and sorted(info["configs"]) == ["cse", "vanilla"]
    assert sorted(json.loads((out / "generalization.json").read_text())["info"]["configs"]) == ["cse", "vanilla"]

    again = tmp_path / "again"
    procs = [train_process(again, "cse"), train_process(again, "cse")]
    done = [p.communicate(timeout=600) for p in procs]
    assert sorted(p.returncode for p in procs) == [0, 2], [e[-3000:] for _, e in done]
    (err,) = [e for p, (_, e) in zip(procs, done) if p.returncode == 2]
    assert "the directory of 'cse'" in err and "is in use by another run (pid " in err and err.count("\n") == 1, err
    assert list(tables.load_json(again / "generalization.json")) == ["cse"]


def test_the_header_says_what_trains_where_and_the_rounded_steps(tmp_path):
    """The lines before training: the steps actually trained (``--steps`` rounded up to whole
    iterations), each method's training contexts, what the progress return means and the
    optimum at the training context where the env knows it."""
    args = ["train", "--method", "vanilla", "ldr", "dr", "cse", "--steps", "100", "--ldr-scale", "0.3",
            "--out", str(tmp_path / "o")]
    lines = cli.describe_run(cli.command_from_args(cli.build_parser().parse_args(args)))
    assert lines[0].startswith("zsgjax train: env=simple_direction methods=vanilla,ldr,dr,cse seeds=3 steps=192 ")
    assert lines[1] == "  steps: 100 asked, 192 trained per seed (2 whole iterations of 96 steps, 8 environments)"
    assert lines[2] == "  vanilla trains on episodes at the default context (0, 0)"
    assert lines[3].startswith("  ldr trains on episodes at contexts drawn around the default (0, 0) (Gaussian, std 0.3")
    assert lines[4] == "  dr trains on episodes at contexts uniform over the box (-1, -1) .. (1, 1)"
    assert "moved to contexts a step of norm 0.1 away" in lines[5]
    assert lines[6].endswith("(the optimal return at the default context is 0)")
    exact = cli.describe_run(cli.command_from_args(cli.build_parser().parse_args(
        ["train", "--env", "pendulum_goal", "--steps", "1000", "--out", str(tmp_path / "p")])))
    assert "asked" not in "".join(exact) and "optimal return" not in exact[-1]


def config_command(path, out, *extra):
    return cli.command_from_args(cli.build_parser().parse_args(["train", "--config", str(path), "--out", str(out),
                                                                *extra]))


def test_config_file_round_trips_run_json_and_flags_win(tmp_path):
    """``--config run.json`` builds the TrainConfigs and RunSpec of the run that wrote it; an
    option given on the command line replaces the file's value, the rest stay the file's."""
    first = cli.command_from_args(cli.build_parser().parse_args(
        TINY + ["--env", "pendulum_goal", "--env-option", "integrator=gym", "--seeds", "3", "--cse-epsilon", "0.2",
                "--out", str(tmp_path / "a")]))
    cli.start_results(first)  # writes run.json, as every run does before training
    run_json = tmp_path / "a" / "run.json"
    again = config_command(run_json, tmp_path / "b")
    assert again.env == first.env and list(again.trainers) == ["vanilla", "cse"]
    assert {m: t.config.record() for m, t in again.trainers.items()} == \
        {m: t.config.record() for m, t in first.trainers.items()}
    assert (again.spec.seeds, again.spec.eval_episodes, again.spec.sweep_points) == (3, 2, 3)
    assert again.out == str(tmp_path / "b")
    for dims, want in ((["none"], ()), (["tau", "g"], ("tau", "g"))):  # --sweep-dims round-trips too
        named = cli.command_from_args(cli.build_parser().parse_args(
            TINY + ["--env", "pendulum_goal", "--sweep-dims", *dims, "--out", str(tmp_path / f"n{len(dims)}")]))
        cli.start_results(named)
        assert config_command(tmp_path / f"n{len(dims)}" / "run.json", tmp_path / f"m{len(dims)}").spec.sweep_dims == want

    changed = config_command(run_json, tmp_path / "c", "--method", "cse", "--seeds", "2", "--gamma", "0.5",
                             "--steps", "128", "--env-option", "integrator=paper")
    (config,) = [t.config for t in changed.trainers.values()]
    expected = {**first.trainers["cse"].config.record(), "gamma": 0.5, "total_steps": 128, "steps_per_iteration": 128,
                "env_kwargs": {"integrator": "paper"}}
    assert config.record() == expected and changed.spec.seeds == 2
    # each method starts from its own record (runs with other options merged into one --out)
    merged = json.loads(run_json.read_text())
    merged["configs"]["cse"]["gamma"] = 0.9
    (tmp_path / "merged.json").write_text(json.dumps(merged))
    gammas = {m: t.config.gamma for m, t in config_command(tmp_path / "merged.json", tmp_path / "e").trainers.items()}
    assert gammas == {"vanilla": first.trainers["vanilla"].config.gamma, "cse": 0.9}
    # a method the file does not hold starts from its first record
    (dr,) = config_command(run_json, tmp_path / "d", "--method", "dr").trainers.values()
    assert dr.config.method == "dr" and dr.config.buffer_size == first.trainers["vanilla"].config.buffer_size


def test_config_file_errors_are_one_line_naming_the_file(tmp_path, capsys):
    good = {"env": "simple_direction", "methods": ["cse"], "num_seeds": 2,
            "configs": {"cse": {"env": "simple_direction", "method": "cse", "gamma": 0.9}}}
    cases = [
        (tmp_path / "missing.json", None, "cannot read it (No such file or directory)"),
        (tmp_path / "broken.json", "{", "is not JSON"),
        (tmp_path / "other.json", json.dumps({"env": "simple_direction", "returns": [1]}),
         "is not a run.json written by zsgjax train"),
        (tmp_path / "seeds.json", json.dumps({**good, "num_seeds": "2"}), "'seeds' must be an integer, got '2'"),
        (tmp_path / "field.json", json.dumps({**good, "configs": {"cse": {**good["configs"]["cse"], "gama": 1}}}),
         "the config of cse: 'gama' is not a TrainConfig field"),
        (tmp_path / "value.json", json.dumps({**good, "configs": {"cse": {**good["configs"]["cse"], "gamma": 2}}}),
         "the config of cse: --gamma must be a finite number in [0, 1], got 2"),
    ]
    for path, text, message in cases:
        if text is not None:
            path.write_text(text)
        with pytest.raises(SystemExit) as exc:
            cli.main(["train", "--config", str(path), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"zsgjax train: error: --config '{path}'") and message in err, err


def test_unknown_env_is_left_to_trainconfig_when_the_env_plugins_changed(capsys):
    """The early refusal trusts the cached environment names only while the installed
    ``zsgjax.envs`` plugins are those the table was built with."""
    spec = cli.option_spec()
    with pytest.raises(SystemExit):
        cli.build_parser(spec).parse_args(["train", "--env", "plugin_env"])
    assert "--env must be one of ant_direction" in capsys.readouterr().err
    stale = {**spec, "env_plugins": {**spec["env_plugins"], "entries": []}}
    assert cli.build_parser(stale).parse_args(["train", "--env", "plugin_env"]).env == "plugin_env"
