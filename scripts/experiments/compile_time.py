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
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time


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


def main(argv=None) -> int:
    from zsgjax import options
    from zsgjax.runner import RunSpec

    run = RunSpec()
    p = options.ArgumentParser(prog="compile_time.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default=options.DEFAULT_ENV)
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
    args = p.parse_args(argv)
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
