"""Peak memory of resuming: restoring a checkpoint into a fresh state vs into its shapes.

    python benchmarks/resume_memory.py                 # a 0.5 GB state, 3 repeats
    python benchmarks/resume_memory.py --gb 2 --repeats 5

A resumed run used to initialise a full training state (replay buffer included) and then
restore the checkpoint into it, so that its peak held the fresh state, what orbax reads
and the restored arrays at once: an ant run at 520k steps x 5 seeds (5.4 GB resident
while training) peaked at 16 GB while resuming, and was killed for memory next to two
other runs. :func:`zsgjax.runner.train` now restores into the initialisation's
``out_info`` (``jax.ShapeDtypeStruct`` s) and only initialises when there is no
checkpoint. Each side runs in a fresh process (peak RSS is per process), alternating
(ABBA); the figure is the peak resident memory added by building ``like`` and restoring,
as a multiple of the state's size (median over repeats). Written to
``benchmarks/results/resume_memory_<backend>.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import _common

from zsgjax.reporting.files import write_json

# One side: build the state's description, restore checkpoint step 1 into it, print the peak RSS growth from
# before the description was built (GB) and the whole process's peak.
SIDE = """
import resource, sys
import jax, jax.numpy as jnp
from zsgjax.checkpoint import Checkpointer
directory, side, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def fresh():  # a replay buffer's observations and next observations, and a small network
    return {"obs": jnp.zeros((n, 64), jnp.float32), "next_obs": jnp.zeros((n, 64), jnp.float32),
            "w": jnp.zeros((256, 256), jnp.float32)}
ck = Checkpointer(directory, {"benchmark": "resume_memory"})
if side == "save":
    ck.save(1, jax.tree.map(lambda x: x + 1.0, fresh()))
    sys.exit(0)
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: KiB
before = peak()  # jax imported and initialised, nothing of the state allocated
like = jax.block_until_ready(fresh()) if side == "fresh_state" else jax.eval_shape(fresh)
state = jax.block_until_ready(ck.restore(like))
assert float(state["obs"][0, 0]) == 1.0
print(f"{peak() - before:.4f} {peak():.4f}")
"""

SIDES = ("fresh_state", "shapes")


def jax_backend() -> str:
    import jax

    return jax.default_backend()


def run_side(directory: str, side: str, rows: int) -> tuple[float, float]:
    """``(peak RSS added by building ``like`` and restoring, whole-process peak)`` in GB, in a fresh process."""
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    done = subprocess.run([sys.executable, "-c", SIDE, directory, side, str(rows)], capture_output=True, text=True,
                          env=env, timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(f"resume_memory side {side!r} failed: {done.stderr[-2000:]}")
    added, total = map(float, done.stdout.split()[-2:])
    return added, total


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gb", type=float, default=0.5, help="size of the state in GB (default 0.5)")
    p.add_argument("--repeats", type=int, default=3, help="ABBA pairs of runs (default 3)")
    args = p.parse_args(argv)
    if not (0 < args.gb <= 64) or args.repeats < 1:
        p.error(f"--gb must be in (0, 64] and --repeats >= 1, got {args.gb} and {args.repeats}")
    rows = int(args.gb * 1e9 / (2 * 64 * 4))
    state_gb = (2 * rows * 64 + 256 * 256) * 4 / 1e9
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "ck")
        subprocess.run([sys.executable, "-c", SIDE, directory, "save", str(rows)], check=True, capture_output=True)
        peaks: dict[str, list[float]] = {side: [] for side in SIDES}

        def measure(side: str) -> float:
            added, total = run_side(directory, side, rows)
            peaks[side].append(total)
            return added

        added = _common.alternate({side: (lambda side=side: measure(side)) for side in SIDES}, args.repeats)
    out = _common.result_header("resume_memory", args, peak=False)  # memory, not speed: no matmul peak
    out.update(
        state_gb=state_gb,
        sides={side: {"restore_added_gb": added[side], "process_peak_gb": peaks[side],
                      "added_over_state": _common.median(added[side]) / state_gb} for side in SIDES},
        fresh_state_over_shapes=_common.paired_ratio(added["fresh_state"], added["shapes"]),
    )
    path = os.path.join(_common.RESULTS_DIR, f"resume_memory_{jax_backend()}.json")
    _common.result_footer(out, peak=False)
    write_json(path, out)
    for side in SIDES:
        print(f"{side:12s} like + restore add {out['sides'][side]['added_over_state']:.2f} x the state "
              f"({state_gb:.2f} GB; median of {args.repeats})")
    print(f"peak added, fresh state / shapes: {out['fresh_state_over_shapes']['median']:.2f}  -> {path}")
    return out


if __name__ == "__main__":
    main()
