"""Plots of results: zero-shot return against context, and learning curves.

* :func:`plot_sweeps` -- one panel per swept context dimension (the others at their
  default); each method is a line of the mean return over seeds with a shaded 95%
  Student-t band over seeds; a dashed vertical line marks the training (default)
  context.
* :func:`plot_learning_curves` -- training return against environment steps, one
  line per method (mean over seeds, 95% Student-t band).

Rendering uses matplotlib's non-interactive Agg backend and the PNG is written atomically.
"""

from __future__ import annotations

import math
import os
import textwrap
from typing import Mapping, Sequence

import numpy as np

from zsgjax.reporting.files import atomic_path
from zsgjax.reporting.results import EvalResult, check_results
from zsgjax.reporting.stats import mean_ci


def plot_sweeps(
    results: Mapping[str, EvalResult],
    path: str | os.PathLike,
    *,
    dims: Sequence[str] | None = None,
    title: str | None = None,
    columns: int = 3,
    dpi: int = 120,
) -> str:
    """Save the return-vs-context figure of ``results`` (``{method: EvalResult}``) as PNG.

    dims: the swept dimensions to draw (default: all swept in the grid).
    Returns the path written. Raises ``ValueError`` when the grid sweeps nothing or
    ``dims`` names a dimension that is not swept.
    """
    from matplotlib.figure import Figure  # Agg canvas, no pyplot global state
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    methods = check_results(results)
    grid = results[methods[0]].grid
    dims = list(grid.swept_dims if dims is None else dims)
    if not dims:
        raise ValueError("the evaluation grid has no swept dimension to plot; build it with make_grid(num_points >= 2)")
    for d in dims:
        grid.sweep_rows(d)  # validates
    columns = max(1, min(int(columns), len(dims)))
    nrows = math.ceil(len(dims) / columns)
    fig = Figure(figsize=(4.2 * columns, 3.3 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(nrows, columns, squeeze=False).ravel())
    summaries = {m: results[m].summary() for m in methods}
    for ax, d in zip(axes, dims):
        rows = grid.sweep_rows(d)
        x = grid.sweep_values(d)
        for m in methods:
            mean, ci = summaries[m]
            y, band = mean[rows], np.nan_to_num(ci[rows], nan=0.0)
            (line,) = ax.plot(x, y, marker="o", markersize=3, label=m)
            ax.fill_between(x, y - band, y + band, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.axvline(grid.default[grid.names.index(d)], color="k", linestyle="--", linewidth=1, label="training context")
        ax.set_xlabel(d)
        ax.set_ylabel("return")
        ax.grid(alpha=0.3)
    for ax in axes[len(dims):]:
        ax.set_visible(False)
    axes[0].legend(fontsize="small")
    first = results[methods[0]]
    fig.suptitle(figure_title(title or "zero-shot return vs context", first.num_seeds, fig.get_figwidth()),
                 fontsize="medium")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return os.fspath(path)


def plot_learning_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    dpi: int = 120,
) -> str:
    """Save the return-vs-environment-steps figure of ``curves`` as PNG; returns the path.

    ``curves``: ``{method: (env_steps (n,), returns (S, n))}`` (as
    :func:`zsgjax.reporting.metrics_log.learning_curve` reads them; NaN where a seed
    finished no episode). Each method is the mean over the seeds with a finite
    value and a shaded 95% Student-t band (none where fewer than two seeds have one).
    ``ValueError`` for no curves or mismatched shapes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("plot_learning_curves: `curves` is empty; give {method: (env_steps, returns)}")
    fig = Figure(figsize=(6.0, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    num_seeds = set()
    for method, (steps, returns) in curves.items():
        steps, returns = np.asarray(steps), np.asarray(returns, np.float64)
        if steps.ndim != 1 or returns.ndim != 2 or returns.shape[1] != steps.shape[0]:
            raise ValueError(f"plot_learning_curves: '{method}' needs env_steps (n,) and returns (S, n); got shapes "
                             f"{steps.shape} and {returns.shape}")
        num_seeds.add(returns.shape[0])
        mean, band = np.full(len(steps), np.nan), np.zeros(len(steps))
        for j in range(len(steps)):
            finite = returns[np.isfinite(returns[:, j]), j]
            if finite.size:
                m, ci = mean_ci(finite)
                mean[j], band[j] = float(m), float(np.nan_to_num(ci, nan=0.0))
        (line,) = ax.plot(steps, mean, label=method)
        ax.fill_between(steps, mean - band, mean + band, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("environment steps per seed")
    ax.set_ylabel("training episode return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    seeds = "/".join(str(n) for n in sorted(num_seeds))
    fig.suptitle(figure_title(title or "learning curves", seeds, fig.get_figwidth()), fontsize="medium")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return os.fspath(path)


# characters of a "medium" (10 pt) title line per inch of figure width, with a margin
_TITLE_CHARS_PER_INCH = 11


def figure_title(title: str, seeds: int | str, width_inches: float) -> str:
    """``title`` wrapped to the figure's width (a run title such as "cheetah_velocity: zero-shot
    return, paper scale (520,000 steps x 10 seeds)" is wider than a one-panel figure), then the
    band's description on its own line; ``seeds``: a count, or e.g. "5/10" when curves differ."""
    lines = textwrap.wrap(title, max(20, int(width_inches * _TITLE_CHARS_PER_INCH))) or [""]
    return "\n".join([*lines, f"(mean ± 95% Student-t interval, {seeds} seeds)"])


def write_sweep_plot(results: Mapping[str, EvalResult], path: str, title: str) -> str | None:
    """:func:`plot_sweeps` of every swept dimension at ``path``; ``None`` (nothing written) when the
    grid sweeps none (an evaluation of the named contexts only, ``RunSpec.sweep_dims=()``)."""
    if not results[check_results(results)[0]].grid.swept_dims:
        return None
    return plot_sweeps(results, path, title=title)


def write_learning_curves(out: str, labels: Sequence[str], path: str, title: str) -> str | None:
    """Plot ``<out>/<label>/metrics.csv`` of every label that has one as learning curves at ``path``.

    Returns the path, or ``None`` when no label has a metrics file with a finished episode.
    """
    from zsgjax.reporting.metrics_log import learning_curve

    curves = {}
    for label in labels:
        csv_path = os.path.join(out, label, "metrics.csv")
        if os.path.exists(csv_path):
            curves[label] = learning_curve(csv_path)
    if not curves:
        return None
    return plot_learning_curves(curves, path, title=title)
