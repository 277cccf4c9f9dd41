"""Shared helpers of the benchmark scripts: machine description, JSON, timing.

Every benchmark follows the performance method of the design notes: both sides of a
comparison run in one process, alternating (ABBA order, so a slow drift of the
machine hits both sides alike), repeated, and the figure is the **median of the
per-repeat ratios**; compile time is measured apart (``jit(f).lower(...).compile()``)
and never counted in a throughput.

The roofline (every result): :func:`result_header` stores the CPU model and its SIMD
flags (or the accelerator's name) and a matmul peak measured in the same run
(:func:`matmul_peak`); :func:`roofline` turns a program's XLA ``cost_analysis``
FLOPs (:func:`program_flops`) and its measured seconds into achieved GFLOP/s and
the fraction of that peak. The header also stores the load average at the start;
:func:`result_footer` adds the load average and a second matmul peak at the end (the
machine may be shared: the two peaks bracket the rate other jobs left).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from zsgjax.reporting.files import write_json
from zsgjax.reporting.machine import machine_description

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

SHARED_NOTE = (
    "Measured on a machine whose CPU cores were shared with other jobs running at the same "
    "time: absolute times are noisy and only indicative; the ratios (median over alternated "
    "repeats) are the figures. No GPU was available for this run."
)


SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
              "avx512_fp16", "amx_tile", "amx_bf16", "neon", "asimd", "sve")


def cpu_flags() -> list[str]:
    """The SIMD flags of this CPU that bear on XLA's code (from ``/proc/cpuinfo``; ``[]`` when unknown)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("flags", "features")):
                    present = set(line.split(":", 1)[1].split())
                    return [x for x in SIMD_FLAGS if x in present]
    except OSError:
        pass
    return []


def accelerator() -> dict[str, Any]:
    """``{"backend", "device_kind", "cpu_flags"}``: the device the programs run on."""
    return {"backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind, "cpu_flags": cpu_flags()}


def program_flops(compiled: Any) -> float | None:
    """FLOPs of one call of a compiled program (XLA ``cost_analysis``; ``None`` if XLA gives none).

    XLA counts the body of a ``while``/``scan`` loop **once**, whatever its trip
    count: pass a loop-free program (one update, one environment step) and scale by
    the number of calls.
    """
    try:
        cost = compiled.cost_analysis()
    except Exception:  # backends without cost analysis
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def loop_free_flops(fn: Callable[..., Any], *args) -> float | None:
    """:func:`program_flops` of ``jax.jit(fn)`` at ``args`` (``fn`` must contain no loop that matters)."""
    return program_flops(jax.jit(fn).lower(*args).compile())


def matmul_peak(n: int = 512, chain: int = 16, repeats: int = 5, dtype=jnp.float32) -> dict[str, float]:
    """Achieved GFLOP/s of a chain of ``chain`` dependent ``(n, n) @ (n, n)`` matmuls: the peak to compare with.

    The best of ``repeats`` timed calls (compile apart). A SAC update is matmuls of
    width 256, so this is the rate its FLOPs could reach on this device.
    """
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype) / jnp.sqrt(n)

    def f(x):
        return jax.lax.fori_loop(0, chain, lambda i, y: y @ a, x)

    compiled = jax.jit(f).lower(a).compile()
    block(compiled(a))
    best = min(timed(compiled, a)[1] for _ in range(repeats))
    flops = 2.0 * n**3 * chain
    return {"n": n, "chain": chain, "dtype": str(jnp.dtype(dtype)), "seconds": best, "gflops": flops / best / 1e9}


def roofline(flops: float | None, seconds: float, peak_gflops: float) -> dict[str, float | None]:
    """``{"flops", "achieved_gflops", "fraction_of_peak"}`` of a program run taking ``seconds``."""
    if flops is None or not seconds > 0:
        return {"flops": flops, "achieved_gflops": None, "fraction_of_peak": None}
    achieved = flops / seconds / 1e9
    return {"flops": flops, "achieved_gflops": achieved, "fraction_of_peak": achieved / peak_gflops}


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages now (``os.getloadavg``; ``None`` where unsupported)."""
    try:
        return [float(x) for x in os.getloadavg()]
    except OSError:
        return None


def result_footer(result: dict[str, Any], peak: bool = True) -> dict[str, Any]:
    """Add ``load_average_end`` and (``peak``) ``matmul_peak_end`` to ``result``, in place.

    On a shared machine the matmul peak moves with the load of other jobs; the one at
    the start (the header's, which the fractions of peak use) and the one at the end
    bracket it.
    """
    result["load_average_end"] = load_average()
    if peak:
        result["matmul_peak_end"] = matmul_peak()
    return result


def finish(result: dict[str, Any], path: str) -> dict[str, Any]:
    """:func:`result_footer` (load average and matmul peak at the end), then the atomic
    JSON write of the finished ``result`` to ``path``; returns ``result``."""
    result_footer(result)
    write_json(path, result)
    return result


def result_header(benchmark: str, args: Any, peak: bool = True) -> dict[str, Any]:
    """The common head of every result file: name, CLI arguments, machine (CPU model and
    SIMD flags or accelerator), the load average at the start, the matmul peak measured
    now (``peak=False`` skips it), shared-cores note. :func:`result_footer` adds the end."""
    return {
        "benchmark": benchmark,
        "args": dict(vars(args)) if not isinstance(args, dict) else dict(args),
        "machine": {**machine_description(), **accelerator()},
        "load_average_start": load_average(),
        "matmul_peak": matmul_peak() if peak else None,
        "note": SHARED_NOTE,
    }


# ---------------------------------------------------------------------- timing
def hidden_sizes(text: str) -> tuple[int, ...]:
    """The ``--hidden`` option: ``"256,256"`` -> ``(256, 256)``."""
    return tuple(int(h) for h in text.split(","))


def add_sac_options(parser: Any, scaled: bool = False) -> None:
    """The sizes every SAC training benchmark takes: ``--num-envs --batch-size --hidden
    --grad-updates --learning-starts --buffer-size --repeats --profile`` (``scaled``: the
    environments and the replay are multiplied by the script's ``--scale``)."""
    times = " (times --scale)" if scaled else ""
    parser.add_argument("--num-envs", type=int, default=8, help="parallel environments per seed" + times)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=hidden_sizes, default=(256, 256))
    parser.add_argument("--grad-updates", type=int, default=1, help="gradient updates per batched env step")
    parser.add_argument("--learning-starts", type=int, default=None, help="default max(batch, 2 num_envs)")
    parser.add_argument("--buffer-size", type=int, default=100_000, help="replay capacity, both sides" + times)
    parser.add_argument("--repeats", type=int, default=9, help="alternated measurements per side")
    parser.add_argument("--profile", type=int, default=1, help="1: also time one SAC update alone on both sides")


def block(x: Any) -> Any:
    return jax.block_until_ready(x)


def timed(fn: Callable[..., Any], *args, **kwargs) -> tuple[Any, float]:
    """``(fn(*args) with every output ready, seconds)``."""
    t0 = time.perf_counter()
    out = block(fn(*args, **kwargs))
    return out, time.perf_counter() - t0


def compile_timed(fn: Callable[..., Any], *args, static_argnums: Sequence[int] = ()) -> tuple[Any, float]:
    """``jax.jit(fn).lower(*args).compile()`` and the seconds it took (tracing + XLA)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn, static_argnums=tuple(static_argnums)).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def alternate(sides: Mapping[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each side's measurement ``repeats`` times, alternating in ABBA order.

    ``sides[name]()`` performs one measured run and returns its seconds (so it can
    leave setup out of the measurement). Repeat ``r`` runs the sides in order for
    even ``r`` and in reverse for odd ``r``. Returns ``{name: [seconds per repeat]}``.
    """
    names = list(sides)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            times[n].append(float(sides[n]()))
    return times


def ratio_of_minima(num: Sequence[float], den: Sequence[float]) -> float:
    """``min(num) / min(den)``: the ratio of the best (least disturbed) runs."""
    return float(min(num) / min(den))


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> dict[str, float]:
    """Median, min and max of the per-repeat ratios ``num[i] / den[i]``, and the ratio of minima.

    On a shared machine the runs are disturbed by other jobs; the median of paired
    ratios is the headline, ``of_minima`` (best run against best run) a cross-check
    that is less sensitive to bursts of load.
    """
    ratios = [a / b for a, b in zip(num, den)]
    return {
        "median": median(ratios),
        "min": float(min(ratios)),
        "max": float(max(ratios)),
        "n": len(ratios),
        "of_minima": ratio_of_minima(num, den),
    }


def summary(times: Sequence[float]) -> dict[str, float]:
    return {
        "median_s": median(times),
        "min_s": float(min(times)),
        "max_s": float(max(times)),
        "runs": list(map(float, times)),
    }
