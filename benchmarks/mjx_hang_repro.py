"""Reproducer of the XLA:CPU hang of batched MJX steps (jaxlib's parallel LAPACK batch map).

jaxlib <= 0.10.x runs a batched LAPACK call (``lapack_spotrf_ffi``: Cholesky;
``lapack_strsm_ffi``: triangular solve, ...) in chunks on XLA:CPU's intra-op thread
pool once ``batch * cost_per_matrix >= 200000`` FLOP (``cost = n**3 // 3`` for
the Cholesky of an ``n x n`` matrix: 243 for the half-cheetah's ``nv = 9``, so a
batch of 824 or more), and the calling thread *blocks* until its chunks are done
(``ParallelBatchMap`` -> ``absl::BlockingCounter::Wait``). When as many such calls
as the pool has threads run at the same time (XLA:CPU runs independent thunks
concurrently; two on a 2-core machine), every pool thread waits for chunks that
only a pool thread could run: the process hangs at 0% CPU.

Cases (each try runs in its own process under a timeout):

* ``cholesky``: the minimal reproducer, no MuJoCo: a jitted ``lax.scan`` whose
  body factors two independent ``(batch, 9, 9)`` SPD batches
  (``jnp.linalg.cholesky``), as MJX's step does (``M`` and ``M + dt * damping``).
* ``cheetah``: a jitted ``lax.scan`` of ``vmap(env_step)`` of ``cheetah_velocity``
  with all six physical features, random contexts and random actions.

Variants: ``baseline`` (jax's default pool, one thread per usable core:
``NPROC=<cores>``), ``one_thread`` (the XLA:CPU intra-op pool limited to one
thread, ``NPROC=1``, which jaxlib's chunking takes as "do not parallelize"; what
``zsgjax.envs.mjx`` sets on import, see :mod:`zsgjax.envs.mjx.cpu_pool`),
``chunked`` (default pool, ``jax.lax.map`` with ``batch_size=--chunk`` over the
``vmap``: each LAPACK call below the threshold).

Usage::

    python benchmarks/mjx_hang_repro.py --case cholesky --tries 10
    python benchmarks/mjx_hang_repro.py --case cholesky --tries 10 --pool-threads 4   # zsgjax's spare threads
    python benchmarks/mjx_hang_repro.py --case cheetah --variant baseline --envs 1024 --tries 10 --stacks /tmp/stacks
    python benchmarks/mjx_hang_repro.py --case cheetah --variant baseline one_thread --envs 64 512 --tries 3

With ``--stacks DIR`` the native stacks of a hung try (``gdb -batch -ex 'thread
apply all bt'``) are written to ``DIR`` before the process is killed. Writes
``benchmarks/results/mjx_hang_repro_<case>.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("baseline", "one_thread", "chunked")
MJX_FEATURES = ("gravity", "mass_scale", "mass_scale:torso", "friction_scale", "actuator_gain", "damping_scale")


# ------------------------------------------------------------------ child side
def _cholesky_program(num: int, steps: int, chunk: int | None):
    """``(program, args)``: ``steps`` scanned pairs of independent batched ``(num, 9, 9)`` Cholesky factorizations."""
    import jax
    import jax.numpy as jnp

    n = 9
    a = jax.random.normal(jax.random.PRNGKey(0), (num, n, n))
    spd = a @ jnp.swapaxes(a, -1, -2) + n * jnp.eye(n)

    def pair(x):  # two independent factorizations that XLA:CPU may run at the same time
        l1 = jnp.linalg.cholesky(x)
        l2 = jnp.linalg.cholesky(x + jnp.eye(n))
        return 0.5 * (l1 @ jnp.swapaxes(l1, -1, -2) + l2 @ jnp.swapaxes(l2, -1, -2)) - 0.5 * jnp.eye(n)

    # lax.map with a batch_size vmaps its (per-element) function over chunks of that size
    batched = (lambda x: jax.lax.map(pair, x, batch_size=chunk)) if chunk else pair

    def program(x, key):
        del key
        return jax.lax.scan(lambda x, _: (batched(x), None), x, None, length=steps)[0]

    return program, (spd,)


def _cheetah_program(num: int, steps: int, chunk: int | None):
    """``(program, args)``: ``steps`` scanned ``vmap(env_step)`` of ``num`` cheetahs at random contexts and actions."""
    import jax

    from zsgjax.envs import make

    env = make("cheetah_velocity", physical=MJX_FEATURES)
    contexts = jax.vmap(env.context_space.sample_uniform)(jax.random.split(jax.random.PRNGKey(5), num))
    states = jax.vmap(env.init_env_state)(jax.random.split(jax.random.PRNGKey(0), num), contexts)
    def one(s, a, c):
        return env.env_step(s, a, c)[0]

    if chunk:  # lax.map with a batch_size vmaps its (per-element) function over chunks of that size
        step = lambda s, a, c: jax.lax.map(lambda x: one(*x), (s, a, c), batch_size=chunk)  # noqa: E731
    else:
        step = jax.vmap(one)

    def program(states, key):
        def body(carry, _):
            s, k = carry
            k, k_act = jax.random.split(k)
            action = jax.random.uniform(k_act, (num, env.action_size), minval=-1.0, maxval=1.0)
            return (step(s, action, contexts), k), None

        return jax.lax.scan(body, (states, key), None, length=steps)[0][0]

    return program, (states,)


def _child(cfg: dict) -> None:
    import jax

    build = {"cholesky": _cholesky_program, "cheetah": _cheetah_program}[cfg["case"]]
    chunk = cfg["chunk"] if cfg["variant"] == "chunked" else None
    program, args = build(cfg["envs"], cfg["steps"], chunk)
    t0 = time.perf_counter()
    compiled = jax.jit(program).lower(*args, jax.random.PRNGKey(0)).compile()
    compile_s = time.perf_counter() - t0
    print(f"PID {os.getpid()} compiled in {compile_s:.1f} s", flush=True)
    calls, cpu = [], []
    for i in range(cfg["calls"]):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(compiled(*args, jax.random.PRNGKey(i)))
        calls.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    print("RESULT " + json.dumps({"compile_s": compile_s, "call_s": calls, "call_cpu_s": cpu}), flush=True)


# ----------------------------------------------------------------- parent side
def _stack_summary(text: str) -> dict:
    """Of a ``gdb`` dump: XLA:CPU pool threads, those blocked in jaxlib's parallel batch map, their LAPACK kernels."""
    threads = text.split("\nThread ")[1:]
    pool = [t for t in threads if '"tf_XLAEigen"' in t.split("\n", 1)[0]]
    blocked = [t for t in pool if "ParallelBatchMap" in t and "BlockingCounter::Wait" in t]
    kernels = sorted({w for t in blocked for w in t.split() if w.startswith("lapack_") and w.endswith("_ffi")})
    return {"threads": len(threads), "pool_threads": len(pool), "pool_threads_in_batch_map_wait": len(blocked),
            "lapack_kernels": kernels}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_try(cfg: dict, timeout_s: float, stacks_dir: Path | None, cache_dir: str, label: str) -> dict:
    """One try in a fresh process: ``{"status": "ok"|"hung"|"slow"|"error", ...}``.

    A process still running after ``timeout_s`` is ``"hung"`` when it used no CPU over
    the next 10 s (a deadlock), else ``"slow"``; with ``stacks_dir`` its native stacks
    are dumped (gdb) before it is killed.
    """
    env = dict(os.environ)
    env["JAX_COMPILATION_CACHE_DIR"] = cache_dir  # later tries skip the compile
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    # NPROC sizes XLA:CPU's intra-op pool; zsgjax.envs.mjx would set 1 unless it is set: name it every time.
    default = cfg.get("pool_threads") or len(os.sched_getaffinity(0))
    env["NPROC"] = "1" if cfg["variant"] == "one_thread" else str(default)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(cfg)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        cpu0 = _cpu_seconds(proc.pid)
        time.sleep(10.0)
        idle = _cpu_seconds(proc.pid) - cpu0 < 0.01
        row = {"status": "hung" if idle else "slow", "wall_s": time.perf_counter() - t0}
        if stacks_dir is not None and shutil.which("gdb"):
            dump = subprocess.run(["gdb", "-p", str(proc.pid), "-batch", "-ex", "thread apply all bt"],
                                  capture_output=True, text=True, timeout=300).stdout
            stacks_dir.mkdir(parents=True, exist_ok=True)
            path = stacks_dir / f"{label}.txt"
            path.write_text(dump)
            row.update(stacks=str(path), **_stack_summary(dump))
        proc.kill()
        proc.communicate()
        return row
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return {"status": "ok", "wall_s": time.perf_counter() - t0, **json.loads(line[len("RESULT "):])}
    return {"status": "error", "returncode": proc.returncode, "tail": out[-800:]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=("cholesky", "cheetah"), default="cheetah")
    parser.add_argument("--variant", nargs="+", choices=VARIANTS, default=["baseline"])
    parser.add_argument("--envs", nargs="+", type=int, default=[1024], help="batch sizes")
    parser.add_argument("--steps", type=int, default=None, help="scanned steps per call (default: 5; cholesky 2000)")
    parser.add_argument("--calls", type=int, default=3, help="calls of the compiled program per try")
    parser.add_argument("--chunk", type=int, default=512, help="batch_size of the chunked variant")
    parser.add_argument("--pool-threads", type=int, default=None,
                        help="XLA:CPU intra-op pool of the baseline and chunked variants (default: the usable cores, "
                             "jax's default); e.g. 4 = what zsgjax.envs.mjx sets on a 2-core machine")
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per try")
    parser.add_argument("--compile-timeout", type=float, default=900.0,
                        help="seconds for each variant's first try, which compiles")
    parser.add_argument("--stacks", type=Path, default=None, help="write gdb stacks of hung tries here")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        _child(json.loads(args.child))
        return {}

    import jax
    import jaxlib

    steps = args.steps or (2000 if args.case == "cholesky" else 5)
    out = args.out or Path(__file__).parent / "results" / f"mjx_hang_repro_{args.case}.json"
    result = {
        "benchmark": "mjx_hang_repro",
        "case": args.case,
        "versions": {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "python": sys.version.split()[0]},
        "cpus": len(os.sched_getaffinity(0)),
        "load_average_start": list(os.getloadavg()),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "child"},
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as cache_root:
        for num in args.envs:
            for variant in args.variant:
                cfg = dict(case=args.case, variant=variant, envs=num, steps=steps, calls=args.calls, chunk=args.chunk,
                           pool_threads=args.pool_threads)
                tries = []
                for i in range(args.tries):
                    label = f"{args.case}_{variant}_{num}_{i}"
                    # one compilation cache for all (keyed by the program; the pool size is a run-time setting);
                    # the first try of a variant may compile: give it longer
                    row = run_try(cfg, args.timeout if i else max(args.timeout, args.compile_timeout), args.stacks,
                                  cache_root, label)
                    tries.append(row)
                    print(f"{label:28s} {row['status']:5s} "
                          f"{' '.join(f'{c:.2f}' for c in row.get('call_s', []))}", flush=True)
                ok = [t for t in tries if t["status"] == "ok"]
                step_s = [min(t["call_s"][1:] or t["call_s"]) / steps / num for t in ok]
                step_cpu_s = [min(t["call_cpu_s"][1:] or t["call_cpu_s"]) / steps / num
                              for t in ok if "call_cpu_s" in t]
                result["runs"].append({
                    **cfg,
                    "tries": len(tries),
                    "hung": sum(t["status"] == "hung" for t in tries),
                    "slow": sum(t["status"] == "slow" for t in tries),
                    "errors": sum(t["status"] == "error" for t in tries),
                    "us_per_env_step_median": 1e6 * sorted(step_s)[len(step_s) // 2] if step_s else None,
                    "cpu_us_per_env_step_median": (1e6 * sorted(step_cpu_s)[len(step_cpu_s) // 2]
                                                   if step_cpu_s else None),
                    "details": tries,
                })
                print(f"== {args.case} {variant} envs={num}: {result['runs'][-1]['hung']}/{len(tries)} hung, "
                      f"{result['runs'][-1]['us_per_env_step_median']} us/env-step", flush=True)
                _write(out, result)  # after every variant: an interrupted run keeps what it measured
    result["load_average_end"] = list(os.getloadavg())
    _write(out, result)
    print(f"wrote {out}")
    return result


def _write(path: Path, result: dict) -> None:
    """Write ``result`` as JSON to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
