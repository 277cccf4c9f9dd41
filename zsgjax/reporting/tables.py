"""Text tables, CSV and JSON of evaluation results, written atomically.

* :func:`format_table` / :func:`write_table` -- one row per context (named contexts,
  optionally every sweep point, then the mean over each sweep), one column per
  method, cells ``mean ± 95% Student-t half-width`` over seeds; optionally paired
  per-seed differences between methods and the optimal return where it is known;
* :func:`write_csv` -- long format, one line per (method, context);
* :func:`write_json` / :func:`load_json` -- the grid, raw returns ``(S, C, E)`` and
  summaries of every method, plus free-form ``info`` (NaN, in returns too, stored as ``null``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Mapping, Sequence

import numpy as np

from zsgjax.reporting.files import atomic_write, to_jsonable
from zsgjax.reporting.results import ContextGrid, EvalResult, check_results

CI_NOTE = "95% Student-t interval over seeds"


def _fmt(mean: float, ci: float) -> str:
    return f"{mean:.2f} ± " + ("n/a" if not np.isfinite(ci) else f"{ci:.2f}")


def table_row_indices(grid: ContextGrid, detail: bool = True) -> list[tuple[str, np.ndarray]]:
    """The rows of the generalization table as ``(label, grid row indices)``.

    Named contexts first, then (``detail``) every sweep point, one grid row each,
    then per swept dimension the average over its sweep (``"mean over <dim> sweep"``).
    """
    order = list(grid.named_rows) + ([i for i in range(len(grid)) if grid.swept[i] is not None] if detail else [])
    rows = [(grid.labels[i], np.array([i])) for i in order]
    rows += [(f"mean over {d} sweep", np.asarray(grid.sweep_rows(d))) for d in grid.swept_dims]
    return rows


def table_rows(results: Mapping[str, EvalResult], detail: bool = True) -> list[tuple[str, list[tuple[float, float]]]]:
    """Rows ``(label, [(mean, ci) per method])`` of the generalization table (see
    :func:`table_row_indices`): mean over seeds of each seed's mean return over the
    row's contexts, with its 95% Student-t half-width."""
    methods = check_results(results)
    grid = results[methods[0]].grid
    return [(label, [results[m].aggregate(rows) for m in methods]) for label, rows in table_row_indices(grid, detail)]


def check_differences(results: Mapping[str, EvalResult], differences: Sequence[tuple[str, str]]) -> None:
    """``ValueError`` unless every ``(a, b)`` of ``differences`` names two methods of ``results``
    evaluated with the same number of seeds (their seeds are paired)."""
    for pair in differences:
        if len(pair) != 2 or any(m not in results for m in pair):
            raise ValueError(f"`differences`: {pair!r} must be a pair of methods among {sorted(results)}")
        a, b = pair
        if results[a].num_seeds != results[b].num_seeds:
            raise ValueError(f"`differences`: '{a}' has {results[a].num_seeds} seeds and '{b}' "
                             f"{results[b].num_seeds}; a paired difference needs the same seeds")


def _optimum_cells(optimum, grid: ContextGrid, rows: list[tuple[str, np.ndarray]]) -> list[str]:
    """The optimum column: the mean of ``optimum (C,)`` over each row's contexts ("?" where unknown)."""
    values = np.asarray(optimum, np.float64).reshape(-1)
    if values.shape != (len(grid),):
        raise ValueError(f"`optimum` must have one value per grid context, shape ({len(grid)},), got {values.shape}")
    cells = []
    for _, idx in rows:
        v = values[idx]
        cells.append("?" if not np.all(np.isfinite(v)) else f"{float(v.mean()):.2f}")
    return cells


def format_table(results: Mapping[str, EvalResult], detail: bool = True, title: str | None = None,
                 differences: Sequence[tuple[str, str]] = (), optimum=None) -> str:
    """A text table: one row per context, one column per method, ``mean ± t-interval``.

    ``differences``: pairs ``(a, b)`` of methods, each adding a column ``a − b`` with
    the mean per-seed difference and its paired 95% Student-t half-width (seed ``k``
    of both methods shares its evaluation episode starts), ``*`` where the interval
    excludes 0. ``optimum``: ``(C,)`` expected return of an optimal policy per grid
    context (NaN where unknown; e.g. :meth:`ContextualEnv.optimal_returns
    <zsgjax.envs.base.ContextualEnv.optimal_returns>`), shown as a first column.
    """
    methods = check_results(results)
    check_differences(results, differences)
    grid = results[methods[0]].grid
    rows = table_row_indices(grid, detail)
    cells = []
    for label, idx in rows:
        row = [label] + [_fmt(*results[m].aggregate(idx)) for m in methods]
        for a, b in differences:
            mean, ci = results[a].difference(results[b], idx)
            row.append(f"{mean:+.2f} ± " + ("n/a" if not np.isfinite(ci) else f"{ci:.2f}")
                       + ("*" if np.isfinite(ci) and abs(mean) > ci else " "))
        cells.append(row)
    header = ["context"] + list(methods) + [f"{a} − {b}" for a, b in differences]
    if optimum is not None:
        header.insert(1, "optimum")
        for row, cell in zip(cells, _optimum_cells(optimum, grid, rows)):
            row.insert(1, cell)
    widths = [max(len(r[j]) for r in [header] + cells) for j in range(len(header))]
    lines = []
    if title:
        lines.append(title)
    lines.append("  ".join(h.ljust(w) if j == 0 else h.rjust(w) for j, (h, w) in enumerate(zip(header, widths))))
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(x.ljust(w) if j == 0 else x.rjust(w) for j, (x, w) in enumerate(zip(r, widths))))
    first = results[methods[0]]
    note = f"(mean ± {CI_NOTE}, {first.num_seeds} seeds, {first.num_episodes} episodes per context and seed"
    if differences:
        note += "; differences paired by seed, * where the interval excludes 0"
    if optimum is not None:
        note += "; optimum: expected return of an optimal policy"
    lines.append(note + ")")
    return "\n".join(lines) + "\n"


def write_table(results: Mapping[str, EvalResult], path: str | os.PathLike, detail: bool = True, title: str | None = None,
                differences: Sequence[tuple[str, str]] = (), optimum=None) -> str:
    """Write :func:`format_table` to ``path`` atomically; returns the text."""
    text = format_table(results, detail, title, differences, optimum)
    atomic_write(path, text)
    return text


def write_csv(results: Mapping[str, EvalResult], path: str | os.PathLike) -> None:
    """Long-format CSV, one line per (method, context), written atomically.

    Columns: method, context, swept, one column per context dimension, mean, ci95,
    num_seeds, num_episodes.
    """
    methods = check_results(results)
    grid = results[methods[0]].grid
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "context", "swept", *grid.names, "mean", "ci95", "num_seeds", "num_episodes"])
    for m in methods:
        r = results[m]
        mean, ci = r.summary()
        for i in range(len(grid)):
            w.writerow(
                [m, grid.labels[i], grid.swept[i] or "", *(f"{v:.6g}" for v in grid.contexts[i]),
                 f"{mean[i]:.6g}", "" if not np.isfinite(ci[i]) else f"{ci[i]:.6g}", r.num_seeds, r.num_episodes]
            )
    atomic_write(path, buf.getvalue())


def write_json(results: Mapping[str, EvalResult], path: str | os.PathLike, extra: Mapping | None = None) -> None:
    """JSON with the grid, the raw returns ``(S, C, E)`` and the summary of every method.

    ``extra`` (JSON-serializable) is stored under ``"info"``. NaN becomes ``null``.
    Read back with :func:`load_json`.
    """
    methods = check_results(results)
    doc = {"info": to_jsonable(dict(extra or {})), "grid": results[methods[0]].grid.to_dict(), "methods": {}}
    for m in methods:
        mean, ci = results[m].summary()
        doc["methods"][m] = {
            "mean": _nan_to_none(mean),
            "ci95": _nan_to_none(ci),
            "returns": to_jsonable(np.asarray(results[m].returns, np.float64)),  # NaN -> null
        }
    atomic_write(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")


def load_json(path: str | os.PathLike) -> dict[str, EvalResult]:
    """Inverse of :func:`write_json`: ``{method: EvalResult}``; ``ValueError`` on a malformed file."""
    try:
        with open(path) as f:
            doc = json.load(f)
        grid = ContextGrid.from_dict(doc["grid"])
        return {m: EvalResult(grid, np.asarray(v["returns"], np.float64)) for m, v in doc["methods"].items()}
    except FileNotFoundError:
        raise
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not an evaluation results file written by zsgjax.reporting.tables.write_json ({e})") from e


def _nan_to_none(x: np.ndarray) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(x, np.float64)]
