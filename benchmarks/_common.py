"""Shared helpers of the benchmark scripts: machine description, JSON, timing.

Every benchmark follows the performance method of the design notes: both sides of a
comparison run in one process, alternating (ABBA order, so a slow drift of the
machine hits both sides alike), repeated, and the figure is the **median of the
per-repeat ratios**; compile time is measured apart (``jit(f).lower(...).compile()``)
and never counted in a throughput.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Callable, Mapping, Sequence

import jax

from zsgjax.reporting.files import write_json
from zsgjax.reporting.machine import machine_description

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

SHARED_NOTE = (
    "Measured on a machine whose CPU cores were shared with other jobs running at the same "
    "time: absolute times are noisy and only indicative; the ratios (median over alternated "
    "repeats) are the figures. No GPU was available for this run."
)


def result_header(benchmark: str, args: Any) -> dict[str, Any]:
    """The common head of every result file: name, CLI arguments, machine, shared-cores note."""
    return {
        "benchmark": benchmark,
        "args": dict(vars(args)) if not isinstance(args, dict) else dict(args),
        "machine": machine_description(),
        "note": SHARED_NOTE,
    }


# ---------------------------------------------------------------------- timing
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
