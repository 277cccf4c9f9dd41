"""Peak memory of resuming: restoring a checkpoint into a fresh state vs into its shapes.

    python benchmarks/resume_memory.py                 # a 2 GB state, 3 repeats
    python benchmarks/resume_memory.py --gb 4 --repeats 5

A resumed run used to initialise a full training state (replay buffer included) and then
restore the checkpoint into it, so that its peak held the fresh state, what orbax reads
and the restored arrays at once: an ant run at 520k steps x 5 seeds (5.4 GB resident
while training) peaked at 16 GB while resuming, and was killed for memory next to two
other runs. :func:`zsgjax.runner.train` now restores into the initialisation's
``out_info`` (``jax.ShapeDtypeStruct`` s) and only initialises when there is no
checkpoint; it also reads the state in pieces of ``zsgjax.checkpoint.RESTORE_CONCURRENT_GB``
(1 GB) instead of orbax's default (all at once). Each side runs in a fresh process (peak RSS
is per process), alternating
(ABBA); the figure is the peak resident memory added by building ``like`` and restoring,
as a multiple of the state's size (median over repeats). Written to
``benchmarks/results/resume_memory_<fields>fields_<backend>.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import _common
import jax

from zsgjax.reporting.files import write_json

# One side: build the state's description, restore checkpoint step 1 into it, print the peak RSS growth from
# before the description was built (GB) and the whole process's peak.
SIDE = """
import sys
import jax, jax.numpy as jnp
from zsgjax.checkpoint import Checkpointer
directory, side, n, fields = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def fresh():  # a replay buffer's fields (of equal size) and a small network
    return {**{f"field{i}": jnp.zeros((n, 64), jnp.float32) for i in range(fields)},
            "w": jnp.zeros((256, 256), jnp.float32)}
import zsgjax.checkpoint
if side.endswith("_read_at_once"):  # orbax's default: the whole state read at once (zsgjax before)
    zsgjax.checkpoint.RESTORE_CONCURRENT_GB = 96
ck = Checkpointer(directory, {"benchmark": "resume_memory"})
if side == "save":
    ck.save(1, jax.tree.map(lambda x: x + 1.0, fresh()))
    sys.exit(0)
def peak():  # GB; VmHWM: this process's own high-water mark (ru_maxrss starts at the parent's after a fork)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024 / 1e9
before = peak()  # jax imported and initialised, nothing of the state allocated
like = jax.block_until_ready(fresh()) if side.startswith("fresh_state") else jax.eval_shape(fresh)
state = jax.block_until_ready(ck.restore(like))
assert float(state["field0"][0, 0]) == 1.0
print(f"{peak() - before:.4f} {peak():.4f}")
"""

# before (a fresh state, read at once), the shapes alone read at once, and now (shapes, read 1 GB at a time)
SIDES = ("fresh_state_read_at_once", "shapes_read_at_once", "shapes")


def run_side(directory: str, side: str, rows: int, fields: int) -> tuple[float, float]:
    """``(peak RSS added by building ``like`` and restoring, whole-process peak)`` in GB, in a fresh process."""
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    done = subprocess.run([sys.executable, "-c", SIDE, directory, side, str(rows), str(fields)],
                          capture_output=True, text=True, env=env, timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(f"resume_memory side {side!r} failed: {done.stderr[-2000:]}")
    added, total = map(float, done.stdout.split()[-2:])
    return added, total


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gb", type=float, default=2.0, help="size of the state in GB (default 2)")
    p.add_argument("--fields", type=int, default=8, help="replay-buffer fields the state is split into (default 8)")
    p.add_argument("--out", default=None,
                   help="result file (default: benchmarks/results/resume_memory_<fields>fields_<backend>.json)")
    p.add_argument("--repeats", type=int, default=3, help="ABBA pairs of runs (default 3)")
    args = p.parse_args(argv)
    if not (0 < args.gb <= 64) or args.repeats < 1 or args.fields < 1:
        p.error(f"--gb must be in (0, 64], --repeats and --fields >= 1, got {args.gb}, {args.repeats}, {args.fields}")
    rows = int(args.gb * 1e9 / (args.fields * 64 * 4))
    state_gb = (args.fields * rows * 64 + 256 * 256) * 4 / 1e9
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "ck")
        subprocess.run([sys.executable, "-c", SIDE, directory, "save", str(rows), str(args.fields)],
                       check=True, capture_output=True)
        peaks: dict[str, list[float]] = {side: [] for side in SIDES}

        def measure(side: str) -> float:
            added, total = run_side(directory, side, rows, args.fields)
            peaks[side].append(total)
            return added

        added = _common.alternate({side: (lambda side=side: measure(side)) for side in SIDES}, args.repeats)
    if min(min(v) for v in added.values()) <= 0:  # a high-water mark: starting jax may reach higher
        raise SystemExit(f"resume_memory: a restore of {state_gb:.3f} GB stayed below the process's earlier peak "
                         f"({added}); use a larger --gb")
    out = _common.result_header("resume_memory", args, peak=False)  # memory, not speed: no matmul peak
    out.update(
        state_gb=state_gb,
        sides={side: {"restore_added_gb": added[side], "process_peak_gb": peaks[side],
                      "added_over_state": _common.median(added[side]) / state_gb} for side in SIDES},
        before_over_now=_common.paired_ratio(added["fresh_state_read_at_once"], added["shapes"]),
    )
    path = args.out or os.path.join(_common.RESULTS_DIR, f"resume_memory_{args.fields}fields_{jax.default_backend()}.json")
    _common.result_footer(out, peak=False)
    write_json(path, out)
    for side in SIDES:
        print(f"{side:24s} like + restore add {out['sides'][side]['added_over_state']:.2f} x the state "
              f"({state_gb:.2f} GB; median of {args.repeats})")
    print(f"peak added, before / now: {out['before_over_now']['median']:.2f}  -> {path}")
    return out


if __name__ == "__main__":
    main()
