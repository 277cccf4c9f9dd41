"""Compile time of the main job's programs, per method, with and without the persistent cache.

For each method, the programs ``zsgjax train`` compiles for the README's main job
(its defaults: ``zsgjax.options.DEFAULT_ENV`` / ``DEFAULT_METHODS``, ``TrainConfig``'s
steps and ``RunSpec``'s seeds, chunks and sweep points; ``--env``, ``--method``,
``--steps``, ``--seeds``, ``--chunks`` and the environment options change it): the seeds' ``init``, the
training chunk (``runner.chunk_program``) and the zero-shot evaluation over the
context grid. Each is timed as trace + lower and as XLA compilation, in wall and in
process CPU seconds (the machine may be shared: CPU seconds are the steadier
number). Run it twice with the same ``--cache``: the second run loads the programs
from JAX's persistent compilation cache. Writes ``--json`` (atomically).

    python scripts/experiments/compile_time.py --cache /tmp/zsgjax-jit --json runs/compile_cold.json
    python scripts/experiments/compile_time.py --cache /tmp/zsgjax-jit --json runs/compile_warm.json

``--chunk-level L`` compiles the chunk at XLA backend optimisation level ``L``
(``-1``: XLA's default) instead of the runner's, and ``--time-chunk`` times one
more run of the compiled chunk (after a first, warming one) in CPU seconds: the
price of a level in steps/s.

``--runs NAME=TREE ...`` times whole ``python -m zsgjax train`` runs instead, with the
zsgjax of each source tree (a pinned worktree), for every ``--env``: **cold** (a
fresh compilation cache), **warm** (the same command into a new ``--out``, the cache
filled by the cold run) and **resume** (``--resume`` of the warm run's finished
output: every method restored and evaluated again). The trees alternate within
each of ``--rounds`` rounds, so that a loaded machine weighs on them alike. Each run
records wall seconds, CPU seconds (user + system of the child process) and the
programs it wrote into the cache (``*-cache`` files; a program already there is
not written again, so 0 means the run compiled nothing that the cache keeps).
The JSON is rewritten after every run and a run already in it is not repeated.

    python scripts/experiments/compile_time.py --runs before=/work/pinned/a after=/work/pinned/b \
        --env cheetah_velocity ant_direction --steps 512 --json docs/experiments/compile_time_runs.json \
        --train-args "--eval-episodes 1"
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

# Pre-registered before the runs (issue 24): what the --runs measurement is to show.
RUN_CLAIMS = [
    "after: a resumed run writes no program into the compilation cache (every program it needs was "
    "written by the cold run); before: it writes the evaluation program again",
    "after: warm and resume runs take less CPU time than before's in the same round",
]


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, {"wall_s": round(time.perf_counter() - w, 2), "cpu_s": round(time.process_time() - c, 2)}


def measure(args: argparse.Namespace) -> dict:
    import jax

    from zsgjax import options, runner
    from zsgjax.evaluate import make_grid
    from zsgjax.reporting import machine
    from zsgjax.train import TrainConfig, make_train

    spec = runner.RunSpec(seeds=args.seeds, chunks=args.chunks, sweep_points=args.sweep_points).validate()
    env_kwargs = options.env_kwargs_from_args(args)
    trainers = {m: make_train(TrainConfig(env=args.env, method=m, env_kwargs=env_kwargs,
                                          **({} if args.steps is None else {"total_steps": args.steps})))
                for m in args.method}
    out = {"command": "python scripts/experiments/compile_time.py " + " ".join(sys.argv[1:]),
           "cache": jax.config.jax_compilation_cache_dir, "machine": machine.machine_description(),
           "xla_flags": os.environ.get("XLA_FLAGS", ""),
           "compiler_options": {p: runner.compiler_options(p) for p in ("init", "chunk")}, "methods": {}}
    for label, trainer in trainers.items():
        keys = runner.seed_keys(trainer, spec.seeds)
        init = jax.jit(jax.vmap(trainer.init))
        lowered, t_init_lower = _timed(lambda: init.lower(keys))
        compiled, t_init_compile = _timed(lambda: lowered.compile(runner.compiler_options("init")))
        state = compiled(keys)
        size = max(1, -(-trainer.num_iterations // spec.chunks))
        lowered, t_lower = _timed(lambda: runner.chunk_program(trainer, size).lower(state))
        options = runner.compiler_options("chunk")
        if args.chunk_level is not None:
            options = None if args.chunk_level < 0 else {"xla_backend_optimization_level": args.chunk_level}
        chunk, t_compile = _timed(lambda: lowered.compile(options))
        timing = {}
        if args.time_chunk:
            state = jax.block_until_ready(chunk(state)[0])
            (state, _), t_run = _timed(lambda: jax.block_until_ready(chunk(state)))
            timing = {"chunk_run": t_run, "chunk_env_steps": spec.seeds * size * trainer.steps_per_iteration,
                      "chunk_options": options}
        grid = make_grid(trainer.env, spec.sweep_points)
        _, t_eval = _timed(lambda: jax.block_until_ready(runner.evaluate(trainer, state, grid, 1).returns))
        out["methods"][label] = {"init_lower": t_init_lower, "init_compile": t_init_compile, "chunk_lower": t_lower,
                                 "chunk_compile": t_compile, "evaluate_first_call": t_eval, **timing,
                                 "config": dataclasses.asdict(trainer.config)}
        print(f"[{label}] init {t_init_lower['cpu_s'] + t_init_compile['cpu_s']:.1f} CPU-s; chunk: trace+lower "
              f"{t_lower['wall_s']:.1f} s ({t_lower['cpu_s']:.1f} CPU-s), compile {t_compile['wall_s']:.1f} s "
              f"({t_compile['cpu_s']:.1f} CPU-s); evaluation (compile + 1 episode) {t_eval['wall_s']:.1f} s"
              + (f"; a chunk run {timing['chunk_run']['cpu_s']:.2f} CPU-s" if timing else ""), flush=True)
    return out


def cache_entries(directory: str) -> int:
    """The programs in a JAX compilation cache directory."""
    return sum(name.endswith("-cache") for name in os.listdir(directory)) if os.path.isdir(directory) else 0


def time_cli_run(tree: str, argv: list[str], cache: str, log: str) -> dict:
    """One ``python -m zsgjax <argv>`` with the zsgjax of ``tree`` and the compilation cache
    ``cache``: wall and child CPU seconds, exit status, programs written into the cache."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(PYTHONPATH=tree, ZSGJAX_COMPILE_CACHE=cache)
    before, usage = cache_entries(cache), resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.call([sys.executable, "-m", "zsgjax", *argv], cwd=tree, env=env, stdout=out,
                               stderr=subprocess.STDOUT)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "exit": code,
            "programs_written": cache_entries(cache) - before, "log": log}


def measure_runs(args: argparse.Namespace) -> None:
    """``--runs``: cold, warm and resumed CLI runs per tree and environment, alternating the trees."""
    from zsgjax.reporting import machine
    from zsgjax.reporting.files import atomic_write

    trees = dict(item.split("=", 1) for item in args.runs)
    record = json.load(open(args.json)) if args.json and os.path.exists(args.json) else {
        "command": "python scripts/experiments/compile_time.py " + " ".join(sys.argv[1:]),
        "claims": RUN_CLAIMS, "trees": {}, "runs": []}
    for name, tree in trees.items():
        commit = subprocess.run(["git", "-C", tree, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        record["trees"][name] = {"path": tree, "commit": commit}
    record["machine"] = machine.machine_description()
    work = args.work or tempfile.mkdtemp(prefix="zsgjax-compile-runs-")
    done = {(r["round"], r["env"], r["tree"], r["phase"]) for r in record["runs"]}
    for k in range(args.rounds):
        for env in args.env:
            for name, tree in (list(trees.items()) if k % 2 == 0 else list(trees.items())[::-1]):
                base = os.path.join(work, f"r{k}-{env}-{name}")
                cache = os.path.join(base, "jit")
                if any((k, env, name, phase) not in done for phase in ("cold", "warm", "resume")):
                    shutil.rmtree(base, ignore_errors=True)  # an interrupted triple starts again
                os.makedirs(base, exist_ok=True)
                steps = ["--steps", str(args.steps)] if args.steps else []
                common = ["train", "--env", env, *steps, "--method", *args.method, *args.train_args.split()]
                phases = {"cold": common + ["--out", os.path.join(base, "cold")],
                          "warm": common + ["--out", os.path.join(base, "warm")],
                          "resume": common + ["--out", os.path.join(base, "warm"), "--resume"]}
                for phase, argv in phases.items():
                    if (k, env, name, phase) in done:
                        continue
                    row = {"round": k, "env": env, "tree": name, "phase": phase, "utc": time.strftime(
                        "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_1min": os.getloadavg()[0],
                        **time_cli_run(tree, argv, cache, os.path.join(base, f"{phase}.log"))}
                    record["runs"].append(row)
                    print(json.dumps(row), flush=True)
                    if args.json:
                        atomic_write(args.json, json.dumps(record, indent=1) + "\n")


def main(argv=None) -> int:
    from zsgjax import options
    from zsgjax.runner import RunSpec

    run = RunSpec()
    p = options.ArgumentParser(prog="compile_time.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--env", nargs="+", default=[options.DEFAULT_ENV], help="the environment (with --runs: several)")
    p.add_argument("--method", nargs="+", default=list(options.DEFAULT_METHODS))
    p.add_argument("--steps", type=int, default=None, help="steps per seed (default: TrainConfig's)")
    p.add_argument("--seeds", type=int, default=run.seeds)
    p.add_argument("--chunks", type=int, default=run.chunks)
    p.add_argument("--sweep-points", type=int, default=run.sweep_points)
    options.add_env_options(p.add_argument_group("environment options (TrainConfig.env_kwargs)"))
    p.add_argument("--cache", default=None, help="persistent compilation cache directory (default: none)")
    p.add_argument("--json", default=None, help="write the timings here")
    p.add_argument("--chunk-level", type=int, default=None, help="XLA backend optimisation level of the chunk "
                   "(-1: XLA's default; default: the runner's)")
    p.add_argument("--time-chunk", action="store_true", help="also time a run of the compiled chunk")
    p.add_argument("--runs", nargs="+", default=None, metavar="NAME=TREE",
                   help="time whole `python -m zsgjax train` runs (cold, warm, resume) of these source trees")
    p.add_argument("--rounds", type=int, default=1, help="with --runs: rounds of alternating trees")
    p.add_argument("--work", default=None, help="with --runs: where the runs write (default: a temporary folder)")
    p.add_argument("--train-args", default="", help="with --runs: more options of `zsgjax train`, in one string")
    args = p.parse_args(argv)
    if args.runs:
        measure_runs(args)
        return 0
    if len(args.env) != 1:
        p.error("give one --env (several only with --runs)")
    args.env = args.env[0]
    import jax

    if args.cache:
        jax.config.update("jax_compilation_cache_dir", args.cache)
    out = measure(args)
    if args.json:
        from zsgjax.reporting.files import atomic_write

        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        atomic_write(args.json, json.dumps(out, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
