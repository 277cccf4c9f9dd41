"""Benchmark: one FQE step of n x M per-environment critics, one vmapped program vs a Python loop.

Both sides run in this one process on the same data and states: the vmapped, jitted
:meth:`zsgjax.offline.control.critics.EnsembleFQE.update` over all n environments,
against a Python loop calling the jitted one-environment update (the same function on
an ``n = 1`` slice) n times. Compile time is measured apart
(``jit(...).lower(...).compile()``); the steady-state times alternate the two sides
(ABBA, ``benchmarks/_common.py``) and the figure is the median of the per-repeat ratios
loop / vmap. Each row also records the XLA FLOPs of the vmapped step and of the
one-environment step (``cost_analysis``; both are loop-free) and each side's achieved
GFLOP/s and fraction of the matmul peak measured at the start of the same run
(``_common.matmul_peak``). Peak memory is XLA's ``memory_analysis()`` of the compiled vmapped update
(arguments + outputs + temporaries, aliased bytes counted once) for a grid of n and M.
(That the vmapped step equals an independent NumPy loop is tested in
tests/test_offline_control_reference.py.)

    python benchmarks/offline_critics.py                 # CPU-sized: n = 16 .. 1024, M = 4
    python benchmarks/offline_critics.py --scale gpu     # 256x256 critics, batch 256, M = 10, n up to 4096
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if "gpu" not in sys.argv:  # the CPU setting runs on the CPU even where an accelerator exists
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from _common import (  # noqa: E402
    RESULTS_DIR, alternate, block, paired_ratio, program_flops, result_footer, result_header, roofline, summary)
from zsgjax.offline import control as C  # noqa: E402
from zsgjax.reporting.files import write_json  # noqa: E402

SCALES = {
    "cpu": dict(envs=[16, 64, 256, 1024], members=[1, 4, 16], hidden=(64, 64), batch=64, num=256, critics=4,
                memory_envs=[16, 64, 256, 1024], repeats=5, loop_max=1024),
    "gpu": dict(envs=[16, 64, 256, 1024, 4096], members=[2, 10, 50], hidden=(256, 256), batch=256, num=1000, critics=10,
                memory_envs=[64, 256, 1024, 4096], repeats=7, loop_max=1024),
}
OBS_DIM, ACT_DIM = 17, 6  # HalfCheetah-sized observations and actions


def make_data(n: int, num: int, key) -> C.Transitions:
    k = jax.random.split(key, 4)
    obs = jax.random.normal(k[0], (n, num, OBS_DIM))
    return C.Transitions(obs=obs, action=jax.random.uniform(k[1], (n, num, ACT_DIM), minval=-1, maxval=1),
                         reward=jax.random.normal(k[2], (n, num)), next_obs=obs + 0.1 * jax.random.normal(k[3], obs.shape),
                         terminal=jnp.zeros((n, num), bool), truncated=jnp.zeros((n, num), bool),
                         contexts=jnp.zeros((n, 1)))


def next_action(o, c, k):
    return jnp.tanh(o[:, :ACT_DIM])


def peak_bytes(compiled) -> dict:
    m = compiled.memory_analysis()
    if m is None:
        return {}
    out = {f: int(getattr(m, f)) for f in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
                                           "alias_size_in_bytes", "generated_code_size_in_bytes") if hasattr(m, f)}
    out["peak_bytes"] = (out.get("argument_size_in_bytes", 0) + out.get("output_size_in_bytes", 0)
                         + out.get("temp_size_in_bytes", 0) - out.get("alias_size_in_bytes", 0))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    p.add_argument("--envs", type=int, nargs="+", default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--memory-envs", type=int, nargs="+", default=None, help="n of the memory grid")
    p.add_argument("--members", type=int, nargs="+", default=None, help="M of the memory grid")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    s = dict(SCALES[args.scale])
    envs = args.envs or s["envs"]
    repeats = args.repeats or s["repeats"]
    s["memory_envs"] = args.memory_envs or s["memory_envs"]
    s["members"] = args.members or s["members"]
    out = args.out or os.path.join(RESULTS_DIR, f"offline_critics_{args.scale}.json")

    result = result_header("offline_critics", args)  # the matmul peak, measured before the rows
    peak = result["matmul_peak"]["gflops"]
    cfg = C.CriticConfig(hidden_sizes=s["hidden"], num_critics=s["critics"], batch_size=s["batch"])
    critics = C.make_critics(cfg, OBS_DIM, ACT_DIM)
    key = jax.random.PRNGKey(0)
    n_max = max(envs)
    full = make_data(n_max, s["num"], jax.random.PRNGKey(1))
    full_state = critics.init(jax.random.PRNGKey(2), n_max)

    step = lambda st, d, k: critics.update(st, d, next_action, k)[0]  # noqa: E731
    one = lambda tree, i: jax.tree.map(lambda x: x[i:i + 1] if np.ndim(x) >= 1 and np.shape(x)[0] == n_max else x, tree)  # noqa: E731
    state1, data1 = one(full_state, 0), one(full, 0)
    t_one = jax.jit(step).lower(state1, data1, key)
    t0 = time.perf_counter()
    single = t_one.compile()
    single_compile_s = time.perf_counter() - t0
    single_flops = program_flops(single)

    rows = []
    for n in envs:
        cut = lambda tree: jax.tree.map(lambda x: x[:n] if np.ndim(x) >= 1 and np.shape(x)[0] == n_max else x, tree)  # noqa: E731
        data, state = cut(full), cut(full_state)
        t0 = time.perf_counter()
        vm = jax.jit(step).lower(state, data, key).compile()
        vm_compile_s = time.perf_counter() - t0
        keys = jax.random.split(key, n)
        vm_flops = program_flops(vm)
        row = {"num_envs": n, "num_critics": s["critics"], "vmap_compile_s": vm_compile_s,
               "single_env_compile_s": single_compile_s, "memory": peak_bytes(vm),
               "vmap_step_flops": vm_flops, "single_env_step_flops": single_flops}
        if n <= s["loop_max"]:
            take = lambda tree, i: jax.tree.map(  # noqa: E731
                lambda x: x[i:i + 1] if np.ndim(x) >= 1 and np.shape(x)[0] == n else x, tree)
            slices = [take((state, data), i) for i in range(n)]  # made once, outside the timing
            block(slices)
            run_loop = lambda: [single(st, dd, keys[i]) for i, (st, dd) in enumerate(slices)]  # noqa: E731
            run_vmap = lambda: vm(state, data, key)  # noqa: E731
            block(run_loop()), block(run_vmap())

            def timed(fn):
                def once():
                    t = time.perf_counter()
                    block(fn())
                    return time.perf_counter() - t
                return once

            times = alternate({"vmap": timed(run_vmap), "loop": timed(run_loop)}, repeats)
            row.update(vmap=summary(times["vmap"]), loop=summary(times["loop"]),
                       ratio_loop_over_vmap=paired_ratio(times["loop"], times["vmap"]))
            row["critic_updates_per_s_vmap"] = n * s["critics"] / row["vmap"]["median_s"]
            row["vmap"]["roofline"] = roofline(vm_flops, row["vmap"]["median_s"], peak)
            row["loop"]["roofline"] = roofline(n * single_flops if single_flops else None, row["loop"]["median_s"], peak)
        rows.append(row)
        frac = row["vmap"]["roofline"]["fraction_of_peak"] if "vmap" in row else None
        print(f"n={n}: " + (f"loop/vmap {row['ratio_loop_over_vmap']['median']:.1f}x, " if "loop" in row else "")
              + (f"vmap {frac:.3f} of peak, " if frac is not None else "")
              + f"compile {vm_compile_s:.1f}s, peak {row['memory'].get('peak_bytes', 0) / 2**20:.1f} MiB", flush=True)

    memory = []
    for M in s["members"]:
        cfg_m = C.CriticConfig(hidden_sizes=s["hidden"], num_critics=M, batch_size=s["batch"])
        cr = C.make_critics(cfg_m, OBS_DIM, ACT_DIM)
        for n in s["memory_envs"]:
            st = jax.eval_shape(lambda: cr.init(jax.random.PRNGKey(0), n))
            dd = jax.eval_shape(lambda: make_data(n, s["num"], jax.random.PRNGKey(0)))
            compiled = jax.jit(lambda a, b, k: cr.update(a, b, next_action, k)[0]).lower(st, dd, key).compile()
            memory.append({"num_envs": n, "num_critics": M, **peak_bytes(compiled)})
            print(f"memory n={n} M={M}: {memory[-1].get('peak_bytes', 0) / 2**20:.1f} MiB", flush=True)

    result.update(scale=args.scale, setting={**{k: v for k, v in s.items()}, "obs_dim": OBS_DIM, "act_dim": ACT_DIM},
                  rows=rows, memory=memory,
                  note_memory="peak_bytes = argument + output + temp - alias bytes of the compiled vmapped update "
                              "(XLA memory_analysis); the data of all n environments are arguments",
                  note_roofline="vmap/loop roofline: XLA cost_analysis FLOPs of the vmapped step (loop: n x the "
                                "one-environment step) over the median seconds, against matmul_peak",
                  )
    result_footer(result)
    if jax.default_backend() != "cpu":
        result["note"] = "Measured on " + jax.devices()[0].device_kind + "."
    write_json(out, result)
    print("wrote", out)


if __name__ == "__main__":
    main()
