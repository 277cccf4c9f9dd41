"""Benchmark: PEVI over n environments in one vmapped jitted call vs a Python loop.

Both sides run in this one process on the same data: the vmapped
``zsgjax.offline.linear.pevi.pevi`` (one jitted call for all n environments) against a Python
loop calling the jitted single-environment ``pevi_env`` n times. Compile time is
measured apart (``jit(...).lower(...).compile()``), steady-state times are the median of
several repeats after a warm-up call, and the ratio loop / vmap is reported per n.

    python benchmarks/pevi_vmap.py      # writes benchmarks/results/pevi_vmap.json
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from zsgjax.offline.linear import dataset, mdp, pevi  # noqa: E402
from zsgjax.reporting import files, machine, stats  # noqa: E402


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", type=int, nargs="+", default=[1, 4, 16, 64, 256, 1024])
    p.add_argument("--states", type=int, default=20)
    p.add_argument("--actions", type=int, default=4)
    p.add_argument("--horizon", type=int, default=5)
    p.add_argument("--dim", type=int, default=8)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/pevi_vmap.json")
    args = p.parse_args()

    fam = mdp.random_contextual_mdp(jax.random.PRNGKey(0), args.states, args.actions, args.horizon, num_bases=3, dim=args.dim)
    n_max = max(args.envs)
    contexts = jax.random.dirichlet(jax.random.PRNGKey(1), jnp.ones(3), (n_max,))
    full = dataset.collect_dataset(jax.random.PRNGKey(2), fam, contexts, dataset.uniform_policy(args.horizon, args.states, args.actions), args.episodes)
    beta, lam = pevi.default_beta(args.dim, args.horizon, args.episodes), 1.0
    phi = fam.phi

    single_args = lambda i: (phi, full.states[i], full.actions[i], full.rewards[i], full.next_states[i], None, beta, lam)  # noqa: E731
    t = time.perf_counter()
    single_compiled = pevi.pevi_env.lower(*single_args(0)).compile()
    single_compile_s = time.perf_counter() - t
    envs_arrays = [single_args(i)[1:5] for i in range(n_max)]  # device slices made once, outside the timing

    rows = []
    for n in args.envs:
        data = full.subset(n)
        vm_args = (phi, data.states, data.actions, data.rewards, data.next_states, None, beta, lam)
        t = time.perf_counter()
        vm_compiled = pevi._pevi_vmapped.lower(*vm_args).compile()
        vm_compile_s = time.perf_counter() - t

        def run_vmap():
            return pevi.pevi(phi, data, None, beta, lam).q

        def run_loop():
            return [pevi.pevi_env(phi, *envs_arrays[i], None, beta, lam).q for i in range(n)]

        jax.block_until_ready(run_vmap())
        jax.block_until_ready(run_loop())
        ref = np.stack([np.asarray(q) for q in run_loop()])
        max_diff = float(np.max(np.abs(np.asarray(run_vmap()) - ref)))
        vm_s = _median_time(run_vmap, args.repeats)
        loop_s = _median_time(run_loop, args.repeats)
        row = dict(n=n, vmap_s=vm_s, loop_s=loop_s, ratio_loop_over_vmap=loop_s / vm_s, vmap_compile_s=vm_compile_s,
                   vmap_env_per_s=n / vm_s, loop_env_per_s=n / loop_s, max_abs_q_diff=max_diff)
        rows.append(row)
        del vm_compiled
        print(f"n={n:5d}  vmap {vm_s * 1e3:9.2f} ms  loop {loop_s * 1e3:9.2f} ms  ratio {loop_s / vm_s:7.1f}x  "
              f"(vmap compile {vm_compile_s:.2f}s, max |dQ| {max_diff:.1e})", flush=True)
    payload = {
        "benchmark": "pevi_vmap",
        "description": "greedy PEVI (policy=None) for n environments: one jitted vmapped call vs a Python loop over the jitted single-environment function",
        "problem": dict(states=args.states, actions=args.actions, horizon=args.horizon, dim=args.dim, episodes=args.episodes, beta=beta, lam=lam),
        "repeats": args.repeats,
        "timing": "median wall seconds per full evaluation of n environments, compile excluded",
        "single_env_compile_s": single_compile_s,
        "rows": rows,
        "machine": machine.machine_description("2 CPU cores shared with ~5 other processes running tests/benchmarks at the same time; absolute times are noisy, ratios are measured side by side"),
    }
    files.write_json(args.out, payload)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
