"""Small statistics shared by the experiments (CEBE error rates, offline scaling)."""

from __future__ import annotations

import numpy as np


def loglog_slope(x, y, drop_nonpositive: bool = False) -> float:
    """Least-squares slope of ``log y`` against ``log |x|`` for 1-D ``x``, ``y`` of equal length.

    ``drop_nonpositive=True`` fits only the points with ``y > 0`` (e.g. a
    suboptimality that reached exactly 0); otherwise a non-positive value raises.
    Raises ``ValueError`` when fewer than two points remain.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"loglog_slope: `x` and `y` must be 1-D of equal length; got shapes {x.shape} and {y.shape}")
    if np.any(x == 0):
        raise ValueError("loglog_slope: `x` must be nonzero")
    keep = y > 0
    if not drop_nonpositive and not keep.all():
        raise ValueError("loglog_slope: `y` must be > 0 (or pass drop_nonpositive=True)")
    if keep.sum() < 2:
        raise ValueError("loglog_slope: need at least two positive `y` values")
    return float(np.polyfit(np.log(np.abs(x[keep])), np.log(y[keep]), 1)[0])
