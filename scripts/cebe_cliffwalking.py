"""CEBE on Cliffwalking: log-log plot of the Q error against the context step.

For each reward variant and each fixed policy (optimal at ``p0``, uniform) this
computes ``max |Q_CEBE - Q_true(p0 + dp)|`` (first-order model) and the zeroth-order
baseline ``max |Q(p0) - Q_true(p0 + dp)|`` over ``dp`` in ``geomspace(dp_min, dp_max)``,
in float64, fits log-log slopes, draws the plot and writes the slopes as JSON
(both files written atomically).

    python scripts/cebe_cliffwalking.py            # writes docs/cebe_cliffwalking.{png,json}
"""

from __future__ import annotations

import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from zsgjax import tabular as tb
from zsgjax.options import parse_dataclass
from zsgjax.reporting.files import atomic_path, atomic_write
from zsgjax.reporting.stats import loglog_slope
from zsgjax.tabular import cliffwalking as cw


@dataclasses.dataclass(frozen=True)
class Args:
    p0: float = cw.DEFAULT_P
    """base slip probability (the training context)"""
    dp_min: float = 1e-3
    dp_max: float = 3e-2
    num: int = 12
    """number of context steps, log-spaced in [dp_min, dp_max]"""
    png: str = "docs/cebe_cliffwalking.png"
    json: str = "docs/cebe_cliffwalking.json"


def compute(args: Args) -> dict:
    """Errors ``(num,)`` and slopes for every (policy, variant, order); float64."""
    if not 0 < args.dp_min < args.dp_max:
        raise ValueError(f"need 0 < `dp_min` < `dp_max`, got {args.dp_min}, {args.dp_max}")
    if args.num < 2:
        raise ValueError(f"`num` must be >= 2 for a slope fit, got {args.num}")
    out = {"p0": args.p0, "gamma": cw.GAMMA, "dps": np.geomspace(args.dp_min, args.dp_max, args.num).tolist(), "runs": []}
    with jax.enable_x64(True):
        p0 = jnp.asarray(args.p0)
        dps = jnp.asarray(out["dps"])
        for kind in tb.POLICIES:
            for variant in cw.VARIANTS:
                policy = tb.policy_at(kind, p0, variant)
                for order in (1, 0):
                    err = np.asarray(tb.cebe_errors(p0, dps, policy, variant, order=order))
                    out["runs"].append(
                        {
                            "policy": kind,
                            "variant": variant,
                            "order": order,
                            "slope": loglog_slope(np.asarray(dps), err),
                            "errors": err.tolist(),
                        }
                    )
    return out


def plot(result: dict, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(tb.POLICIES))
    colors = dict(zip(cw.VARIANTS, ("C0", "C1", "C2")))
    dps = np.asarray(result["dps"])
    for ax, kind in zip(axes, tb.POLICIES):
        for run in (r for r in result["runs"] if r["policy"] == kind):
            name = "CEBE (1st order)" if run["order"] == 1 else "Q(p0) (0th order)"
            ax.loglog(
                dps,
                run["errors"],
                color=colors[run["variant"]],
                linestyle="-" if run["order"] == 1 else "--",
                marker="o" if run["order"] == 1 else None,
                markersize=3,
                label=f"{run['variant']}, {name}: slope {run['slope']:.2f}",
            )
        ax.set_xlabel("context step Δp")
        ax.set_ylabel("max |Q_approx - Q_true(p0+Δp)|")
        ax.set_title(f"{kind} policy at p0={result['p0']}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="x-small")
    fig.suptitle("CEBE on Cliffwalking 5x6 (two-slip model, γ=0.9): error is O(Δp²), zeroth order O(Δp)", fontsize="medium")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def main(args: Args) -> dict:
    t0 = time.perf_counter()
    result = compute(args)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    plot(result, args.png)
    atomic_write(args.json, json.dumps(result, indent=1) + "\n")
    for run in result["runs"]:
        print(f"{run['policy']:8s} {run['variant']:9s} order {run['order']}: slope {run['slope']:.3f}")
    print(f"wrote {args.png} and {args.json} ({result['seconds']} s)")
    return result


if __name__ == "__main__":
    main(parse_dataclass(Args, description=__doc__.split("\n\n")[0]))
