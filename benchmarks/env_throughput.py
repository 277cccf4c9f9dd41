"""Environment throughput and the cost of context derivatives (CPU or accelerator).

Measures, in one process so that every ratio compares numbers taken side by side:

1. **Steps per second** of ``jit(lax.scan(vmap(step)))`` with uniform random
   actions for 1, 64 and 1024 parallel environments (each at its own random
   context), for the analytic ``simple_direction`` and each MJX environment
   (``cheetah_velocity``, ``ant_direction``, ``ant_goal``, all physical features
   on). Compile time is measured apart (``lower().compile()``) and excluded.
2. **Cost of context derivatives relative to a plain step**, at 64 environments:
   the same scan with ``context_gradients.step_and_jacobian`` (the step and its full context
   Jacobian in one ``jax.jacfwd`` pass, what ``context_jacobian`` computes) and
   with ``context_gradients.step_and_jvp`` (the step and one directional derivative in one
   ``jax.jvp`` pass, what ``context_jvp`` computes), as time ratios to the plain
   step. These are what CSE's two first-order storages compute per step (``zsgjax.methods.CSE.collect``).

Usage::

    python benchmarks/env_throughput.py                 # full run, a few minutes on CPU
    python benchmarks/env_throughput.py --quick         # smoke run (tiny sizes)

Writes ``benchmarks/results/env_throughput_<platform>.json`` (or ``--out``) with a
machine description. Absolute numbers on a shared CPU are noisy; the ratios are
the meaningful output.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import zsgjax.envs.mjx  # noqa: F401  (first: the XLA:CPU pool with spare threads for every measurement, see envs/mjx/cpu_pool.py)
from zsgjax import context_gradients
from zsgjax.envs import make
from zsgjax.methods import enhancement

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  (benchmarks/_common.py)

MJX_FEATURES = ("gravity", "mass_scale", "mass_scale:torso", "friction_scale", "actuator_gain", "damping_scale")
ENVS = {
    "simple_direction": {},
    "cheetah_velocity": {"physical": MJX_FEATURES},
    "ant_direction": {"physical": MJX_FEATURES},
    "ant_goal": {"physical": MJX_FEATURES},
}


def _timed_compile(fn, *args):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def _time_calls(compiled, args, repeats: int) -> float:
    """Best wall time of ``repeats`` calls (one warm-up call first)."""
    jax.block_until_ready(compiled(*args))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t0)
    return best


GRADIENT_MODES = ("none", "jacobian", "jvp")


def _one_step(env, gradients: str):
    """``(env_state, action, context, delta) -> (next env_state, derivatives)`` for one sample."""

    def step(env_state, action, context, delta):
        if gradients == "jacobian":
            (next_state, *_), grads = context_gradients.step_and_jacobian(env, env_state, action, context)
        elif gradients == "jvp":
            (next_state, *_), grads = context_gradients.step_and_jvp(env, env_state, action, context, delta)
        else:
            next_state, *_ = env.env_step(env_state, action, context)
            grads = None
        return next_state, grads

    return step


def throughput(env, num_envs: int, num_steps: int, repeats: int, gradients: str = "none",
               peak_gflops: float | None = None) -> dict:
    """Env steps/s of ``num_steps`` scanned ``vmap`` steps on ``num_envs`` environments.

    With ``peak_gflops`` (the run's matmul peak) also the roofline: XLA's FLOPs of one
    loop-free batched step (for MJX, XLA counts the constraint solver's loop body once,
    so this is a lower bound) times ``num_steps``, over the measured time.

    ``gradients``: ``"none"`` (plain step), ``"jacobian"`` (``context_gradients.step_and_jacobian``: the
    step and its full context Jacobian in one ``jacfwd`` pass) or ``"jvp"``
    (``context_gradients.step_and_jvp``: the step and one directional derivative in one ``jvp``).
    """
    keys = jax.random.split(jax.random.PRNGKey(0), num_envs)
    contexts = jax.vmap(env.context_space.sample_uniform)(jax.random.split(jax.random.PRNGKey(5), num_envs))
    env_states = jax.vmap(env.init_env_state)(keys, contexts)
    deltas = 0.1 * enhancement.sample_sphere(jax.random.PRNGKey(6), env.context_dim, (num_envs,))  # jvp directions
    step = jax.vmap(_one_step(env, gradients))

    def run(env_states, key):
        def body(carry, _):
            st, k = carry
            k, k_act = jax.random.split(k)
            action = jax.random.uniform(k_act, (num_envs, env.action_size), minval=-1.0, maxval=1.0)
            st, grads = step(st, action, contexts, deltas)
            return (st, k), grads

        (env_states, _), grads = jax.lax.scan(body, (env_states, key), None, length=num_steps)
        return env_states, grads

    compiled, compile_s = _timed_compile(run, env_states, jax.random.PRNGKey(1))
    run_s = _time_calls(compiled, (env_states, jax.random.PRNGKey(1)), repeats)
    actions = jnp.zeros((num_envs, env.action_size))
    step_flops = _common.loop_free_flops(step, env_states, actions, contexts, deltas)
    roofline = (None if peak_gflops is None or step_flops is None
                else _common.roofline(step_flops * num_steps, run_s, peak_gflops))
    return {
        "step_flops": step_flops,
        "roofline": roofline,
        "num_envs": num_envs,
        "gradients": gradients,
        "steps_per_call": num_steps,
        "compile_s": compile_s,
        "run_s": run_s,
        "env_steps_per_s": num_envs * num_steps / run_s,
    }


def _measure_in_subprocess(cfg: dict, timeout_s: float) -> dict:
    """Run one :func:`throughput` measurement in a fresh process (a hang or crash loses only this entry)."""
    cmd = [sys.executable, __file__, "--single", json.dumps(cfg)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {**cfg, "error": f"timed out after {timeout_s:g} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {**cfg, "error": f"exit code {proc.returncode}: {proc.stderr.strip()[-500:]}"}


def _single(cfg: dict) -> None:
    env = make(cfg["env"], **ENVS[cfg["env"]])
    row = throughput(env, cfg["num_envs"], cfg["num_steps"], cfg["repeats"], cfg["gradients"], cfg.get("peak_gflops"))
    print("RESULT " + json.dumps({**cfg, **row, "context_dim": env.context_dim}), flush=True)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per measurement (own process)")
    parser.add_argument("--grad-batch", type=int, default=16, help="number of envs for the derivative cost")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    parser.add_argument("--single", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.single is not None:
        _single(json.loads(args.single))
        return {}

    # (num_envs, scanned steps per call): fewer steps for large batches keep the run short.
    sizes = [(1, 8), (4, 4)] if args.quick else [(1, 100), (64, 20), (1024, 3)]
    grad_batch = 4 if args.quick else args.grad_batch  # derivative cost measured at this batch size
    grad_steps = 4 if args.quick else 20
    repeats = 1 if args.quick else args.repeats

    result = _common.result_header("env_throughput", {k: (str(v) if isinstance(v, Path) else v)
                                                       for k, v in vars(args).items()})
    peak = result["matmul_peak"]["gflops"]
    result.update({
        "xla_cpu_intra_op_threads": os.environ.get("NPROC", "default (one per core)"),
        "notes": (
            "Throughput: jit(lax.scan(vmap(step))) with random actions and per-env random contexts, "
            "compile time excluded (reported apart), best of "
            f"{repeats} calls after a warm-up. Derivative cost: the same scan with context_gradients.step_and_jacobian "
            "(step + full context Jacobian, one jacfwd pass, as context_jacobian) or context_gradients.step_and_jvp "
            "(step + one directional derivative, one jvp pass, as context_jvp), divided by the plain "
            f"step's time at the same batch size. MJX envs run with all physical features {list(MJX_FEATURES)} "
            "in the context. Each measurement runs in its own process, one after another in this invocation. "
            "Every measurement runs with XLA:CPU's intra-op pool of at least 4 threads (NPROC=4 on a 2-core "
            "machine, set by importing zsgjax.envs.mjx): with jaxlib's default 2-thread pool, batched MJX steps can deadlock in jaxlib's parallel "
            "LAPACK batch map (docs/performance.md, 'Batched MJX steps hang on XLA:CPU'); measurements stay "
            "isolated in processes with a timeout. "
            "The 2-core CPU was shared with several other jobs (see load averages), so absolute times are "
            "noisy and low; the ratios, taken minutes apart under the same load, are the meaningful output."
        ),
        "throughput": {},
        "derivative_cost": {},
    })
    for name in args.envs:
        rows = []
        for num_envs, num_steps in sizes:
            cfg = dict(env=name, num_envs=num_envs, num_steps=num_steps, repeats=repeats, gradients="none",
                       peak_gflops=peak)
            row = _measure_in_subprocess(cfg, args.timeout)
            rows.append(row)
            print(f"{name:17s} envs={num_envs:5d} {row.get('env_steps_per_s', float('nan')):12.1f} steps/s  "
                  f"compile {row.get('compile_s', float('nan')):.1f}s {row.get('error', '')}", flush=True)
        result["throughput"][name] = rows
        plain = next((r for r in rows if r["num_envs"] == grad_batch), None)
        if plain is None:
            cfg = dict(env=name, num_envs=grad_batch, num_steps=grad_steps, repeats=repeats, gradients="none",
                       peak_gflops=peak)
            plain = _measure_in_subprocess(cfg, args.timeout)
        cost = {"num_envs": grad_batch, "step": plain}
        for mode in ("jacobian", "jvp"):
            cfg = dict(env=name, num_envs=grad_batch, num_steps=plain["num_steps"], repeats=repeats, gradients=mode,
                       peak_gflops=peak)
            cost[mode] = _measure_in_subprocess(cfg, args.timeout)
            if "run_s" in cost[mode] and "run_s" in plain:
                cost[f"{mode}_over_step"] = cost[mode]["run_s"] / plain["run_s"]
        result["derivative_cost"][name] = cost
        print(f"{name:17s} step+jacobian/step {cost.get('jacobian_over_step', float('nan')):.2f}  "
              f"step+jvp/step {cost.get('jvp_over_step', float('nan')):.2f}", flush=True)
    if "simple_direction" in result["throughput"]:
        base = {r["num_envs"]: r.get("env_steps_per_s") for r in result["throughput"]["simple_direction"]}
        result["throughput_ratio_to_simple_direction"] = {
            name: {
                str(r["num_envs"]): r["env_steps_per_s"] / base[r["num_envs"]]
                for r in rows
                if r.get("env_steps_per_s") and base.get(r["num_envs"])
            }
            for name, rows in result["throughput"].items()
            if name != "simple_direction"
        }
    _common.result_footer(result)

    out = args.out
    if out is None:
        suffix = "_quick" if args.quick else ""
        out = Path(__file__).parent / "results" / f"env_throughput_{jax.devices()[0].platform}{suffix}.json"
    _common.write_json(out, result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
