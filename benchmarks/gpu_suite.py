"""The GPU suite: the throughput comparisons at GPU sizes, in one command.

Runs, writing one JSON each under ``benchmarks/results/`` (``gpu_<name>.json``, or
``tiny_<name>.json`` with ``--tiny``):

* ``sac_vs_brax``: zsgjax SAC against ``brax.training`` SAC at equal settings on
  ``pendulum_goal`` (analytic) and ``cheetah_velocity`` with physical contexts
  (gravity, mass scale), at ``--num-envs`` parallel environments (default 1024;
  4096 is ``--num-envs 4096``);
* ``seed_scaling``: 1/4/16/64 vmapped seeds against one seed's time;
* ``cse_overhead``: SAC+CSE against plain SAC through MJX (cheetah, 8 context
  dimensions), with collection alone per gradient storage.

Sized to finish in under 8 minutes on one GPU (compile included); ``--tiny`` runs
the same code paths at CPU sizes in about a minute of compute (a smoke test). Each
part is the benchmark script's own ``main`` with its arguments, so the JSON files
carry the machine, the matmul peak and the settings (:mod:`_common`).

Run: ``python benchmarks/gpu_suite.py`` (GPU) or ``python benchmarks/gpu_suite.py --tiny``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402


def plan(num_envs: int, tiny: bool, out_dir: str) -> list[tuple[str, str, list[str]]]:
    """``[(name, module, argv)]`` of the suite's parts."""
    prefix = "tiny" if tiny else "gpu"

    def out(name):
        return ["--out", os.path.join(out_dir, f"{prefix}_{name}.json")]

    if tiny:
        return [
            ("sac_vs_brax", "sac_vs_brax", ["--envs", "pendulum_goal", "--num-envs", "4", "--batch-size", "16",
                                            "--hidden", "16,16", "--rounds", "4", "--repeats", "1",
                                            "--buffer-size", "256", "--profile", "0", *out("sac_vs_brax")]),
            ("seed_scaling", "seed_scaling", ["--seeds", "1,2", "--num-envs", "2", "--total-steps", "64",
                                              "--learning-starts", "16", "--batch-size", "16", "--hidden", "8,8",
                                              "--repeats", "1", "--profile-seeds", "0", *out("seed_scaling")]),
            ("cse_overhead", "cse_overhead", ["--envs", "direction_d", "--dims", "2", "--num-envs", "2",
                                              "--batch-size", "16", "--hidden", "8,8", "--rounds", "3",
                                              "--repeats", "1", "--components", "1", *out("cse_overhead")]),
        ]
    n = str(num_envs)
    return [
        ("sac_vs_brax", "sac_vs_brax", ["--envs", "pendulum_goal,cheetah_velocity", "--num-envs", n,
                                        "--batch-size", "1024", "--rounds", "40", "--mjx-rounds", "20",
                                        "--repeats", "3", "--buffer-size", str(max(262_144, 64 * num_envs)),
                                        *out("sac_vs_brax")]),
        ("seed_scaling", "seed_scaling", ["--seeds", "1,4,16,64", "--num-envs", "64", "--total-steps", "16384",
                                          "--learning-starts", "1024", "--batch-size", "256", "--repeats", "3",
                                          "--profile-seeds", "16", *out("seed_scaling")]),
        ("cse_overhead", "cse_overhead", ["--envs", "cheetah_velocity", "--mjx-dims", "8", "--num-envs", n,
                                          "--batch-size", "1024", "--mjx-rounds", "20", "--repeats", "3",
                                          "--sides", "vanilla,cse_jacobian,cse_jvp", *out("cse_overhead")]),
    ]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="CPU-sized smoke run of the same code paths")
    p.add_argument("--num-envs", type=int, default=1024, help="parallel environments (1024-4096)")
    p.add_argument("--only", default="", help="comma-separated subset of: sac_vs_brax, seed_scaling, cse_overhead")
    p.add_argument("--out-dir", default=_common.RESULTS_DIR)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if not args.tiny and not 1 <= args.num_envs <= 65536:
        raise ValueError(f"gpu_suite: `--num-envs` must be in [1, 65536], got {args.num_envs}")
    import importlib

    only = {x for x in args.only.split(",") if x}
    summary = {}
    for name, module, argv_part in plan(args.num_envs, args.tiny, args.out_dir):
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        importlib.import_module(module).main(argv_part)
        summary[name] = {"seconds": time.perf_counter() - t0, "out": argv_part[-1]}
        print(f"[gpu_suite] {name}: {summary[name]['seconds']:.1f}s -> {argv_part[-1]}", flush=True)
    return summary


if __name__ == "__main__":
    main()
