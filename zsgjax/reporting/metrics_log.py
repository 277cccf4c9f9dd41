"""Per-iteration, per-seed training metrics of one run: CSV (rewritten atomically), TensorBoard, W&B.

:class:`MetricsLog` appends the metrics of each training chunk; on resume it keeps
the rows up to the checkpoint it resumes from, so the CSV always matches the
checkpointed state. TensorBoard scalars are written when ``tensorboardX`` is
installed; Weights & Biases scalars (x axis ``env_steps``) when asked for (``wandb=``
the ``wandb.init`` arguments; ``wandb`` is imported only then, and
``WANDB_MODE=offline`` writes the run under the directory with no network). Both
get every metric as the mean over seeds (tag ``<metric>``) and per seed (tag
``<metric>/seed_<k>``). :meth:`MetricsLog.add_generalization` sends the zero-shot
evaluation there too: per context the mean and per-seed returns (tags
``generalization/<context>`` and ``generalization/<context>/seed_<k>``) and the
whole table (a TensorBoard text, a W&B table of one row per context and seed). :func:`learning_curve` reads the CSV back as
return-vs-steps arrays for :func:`zsgjax.reporting.plots.plot_learning_curves`.
"""

from __future__ import annotations

import csv
import io
import os

from typing import Any, Mapping

import numpy as np

from zsgjax.reporting.files import atomic_write
from zsgjax.reporting.results import EvalResult


class MetricsLog:
    """Per-iteration, per-seed metrics of one method as CSV (rewritten atomically) and TensorBoard."""

    def __init__(self, directory: str, tensorboard: bool, start_iteration: int, start_step: int,
                 wandb: Mapping[str, Any] | None = None):
        self.path = os.path.join(directory, "metrics.csv")
        self.header: list[str] | None = None
        self.rows: list[list[str]] = []
        if start_iteration > 0 and os.path.exists(self.path):
            self.header, self.rows = read_metrics_csv(self.path, start_iteration)
        self.writer = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(
                    os.path.join(directory, "tensorboard"), purge_step=start_step if start_iteration > 0 else None
                )
        self.wandb_run = None if wandb is None else _wandb_init(directory, wandb)

    def add(self, first_iteration: int, metrics: dict[str, np.ndarray]) -> None:
        """``metrics``: name -> ``(S, n)`` for iterations ``first_iteration + 1 ... + n``."""
        names = sorted(k for k, v in metrics.items() if v.ndim == 2)
        header = ["iteration", "seed", *names]
        if self.header is not None and self.header != header:
            raise ValueError(f"{self.path}: existing columns {self.header} differ from {header}")
        self.header = header
        num_seeds, n = metrics[names[0]].shape
        for j in range(n):
            for s in range(num_seeds):
                self.rows.append([str(first_iteration + j + 1), str(s)] + [_cell(metrics[k][s, j]) for k in names])
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(header)
        w.writerows(self.rows)
        atomic_write(self.path, buf.getvalue())
        steps = metrics["env_steps"][0]
        for j in range(n):
            self._log_scalars(per_seed_scalars({k: metrics[k][:, j] for k in names if k != "env_steps"}),
                              int(steps[j]))

    def add_generalization(self, result: EvalResult, step: int, table: str | None = None) -> None:
        """Log a zero-shot evaluation (``result.returns (S, C, E)``) at ``step`` (the run's last env step).

        Per grid context: the mean over seeds of each seed's mean return (tag
        ``generalization/<label>``) and each seed's (``.../seed_<k>``). ``table``
        (the text table) goes to TensorBoard as text; W&B gets a table with one row
        per context and seed (columns context, seed, return).
        """
        per_context = np.asarray(result.returns, np.float64).mean(axis=2)        # (S, C)
        labels = result.grid.labels
        self._log_scalars(per_seed_scalars({f"generalization/{labels[c]}": per_context[:, c]
                                            for c in range(len(labels))}), int(step))
        if self.writer is not None and table is not None:
            self.writer.add_text("generalization", "```\n" + table + "\n```", int(step))
            self.writer.flush()
        if self.wandb_run is not None:
            import wandb

            rows = [[labels[c], s, float(per_context[s, c])] for c in range(len(labels))
                    for s in range(per_context.shape[0])]
            self.wandb_run.log({"generalization_table": wandb.Table(columns=["context", "seed", "return"], data=rows)},
                               step=int(step))

    def _log_scalars(self, scalars: Mapping[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, value in scalars.items():
                self.writer.add_scalar(tag, value, step)
            self.writer.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(dict(scalars), step=step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def per_seed_scalars(values: Mapping[str, np.ndarray]) -> dict[str, float]:
    """``{name: (S,) values}`` -> ``{name: mean, name/seed_0: v_0, ...}`` (NaN seeds left out of the mean)."""
    out: dict[str, float] = {}
    for name, v in values.items():
        v = np.asarray(v, np.float64).reshape(-1)
        finite = v[np.isfinite(v)]
        out[name] = float(finite.mean()) if finite.size else float("nan")
        out.update({f"{name}/seed_{k}": float(x) for k, x in enumerate(v)})
    return out


def _wandb_init(directory: str, settings: Mapping[str, Any]):
    """A W&B run logging under ``directory`` (``wandb.init(**settings)``); quiet, stdout not captured."""
    try:
        import wandb
    except ImportError:
        raise ValueError("W&B logging needs the wandb package: pip install 'zsgjax[wandb]'") from None
    os.makedirs(directory, exist_ok=True)
    return wandb.init(dir=directory, reinit="create_new",
                      settings=wandb.Settings(console="off", quiet=True, silent=True, x_disable_stats=True),
                      **dict(settings))


def learning_curve(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Return against environment steps from a ``metrics.csv`` of :class:`MetricsLog`.

    Returns ``(env_steps (n,), episode_return (S, n))`` over the file's ``n``
    iterations and ``S`` seeds; an iteration in which no episode of a seed ended
    (``episodes == 0``) is NaN for that seed. ``ValueError`` (naming the file) when
    it is damaged or has no ``env_steps``/``episode_return``/``episodes`` column.
    """
    header, rows = read_metrics_csv(path, None)
    need = ("env_steps", "episode_return", "episodes")
    if header is None or not rows or any(c not in header for c in need):
        raise ValueError(f"'{path}' has no learning curve: it needs rows and the columns {', '.join(need)}")
    col = {name: header.index(name) for name in ("iteration", "seed", *need)}
    iterations = sorted({int(r[col["iteration"]]) for r in rows})
    seeds = sorted({int(r[col["seed"]]) for r in rows})
    index = {it: i for i, it in enumerate(iterations)}
    steps = np.zeros(len(iterations), np.int64)
    returns = np.full((len(seeds), len(iterations)), np.nan)
    for r in rows:
        i, s = index[int(r[col["iteration"]])], seeds.index(int(r[col["seed"]]))
        steps[i] = int(float(r[col["env_steps"]]))
        if float(r[col["episodes"]]) > 0:
            returns[s, i] = float(r[col["episode_return"]])
    return steps, returns


class DamagedMetrics(ValueError):
    """A ``metrics.csv`` that cannot be continued on resume."""


def read_metrics_csv(path: str, upto_iteration: int | None) -> tuple[list[str] | None, list[list[str]]]:
    """The header and the rows of iterations ``1 .. upto_iteration`` of a metrics CSV written by :class:`MetricsLog`.

    ``upto_iteration=None``: every row of the file (iterations ``1 .. last``, all present).

    Raises :class:`DamagedMetrics` (a ``ValueError`` naming the file, the line and
    what is expected) when the file is not that CSV any more: undecodable bytes, a
    header that does not start with ``iteration,seed`` or repeats a column, a row
    with a different number of cells or non-numeric cells, iterations out of order,
    or iterations ``1 .. upto_iteration`` not all present with the same seeds (the
    checkpoint being resumed is newer than the metrics). An empty file is accepted
    only when ``upto_iteration`` is 0.
    """
    fix = ("delete it to resume without the earlier metrics rows, or restore it from a copy")

    def damaged(where: str, what: str) -> DamagedMetrics:
        return DamagedMetrics(f"'{path}' is damaged ({where}: {what}); it must be the metrics CSV of this run "
                              f"(header 'iteration,seed,<metric>...', one row per iteration and seed); {fix}")

    if os.path.isdir(path):
        raise damaged("path", "it is a directory")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            lines = list(csv.reader(f))
    except UnicodeDecodeError as e:
        raise damaged("bytes", f"not UTF-8 text at byte {e.start}") from None
    except csv.Error as e:
        raise damaged("CSV", str(e)) from None
    if upto_iteration is None:
        upto_iteration = max((int(row[0]) for row in lines[1:] if row and row[0].strip().isdigit()), default=0)
    if not lines:
        if upto_iteration > 0:
            raise damaged("line 1", f"the file is empty, but the checkpoint is at iteration {upto_iteration}")
        return None, []
    header = lines[0]
    if header[:2] != ["iteration", "seed"] or len(header) < 3 or len(set(header)) != len(header) or not all(header):
        raise damaged("line 1", f"unexpected header {','.join(header)[:80]!r}")
    rows: list[list[str]] = []
    seeds: dict[int, list[int]] = {}
    last = 0
    for number, row in enumerate(lines[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise damaged(f"line {number}", f"{len(row)} cells, the header has {len(header)}")
        try:
            iteration, seed = int(row[0]), int(row[1])
            [float(cell) for cell in row[2:]]
        except ValueError:
            raise damaged(f"line {number}", f"a cell is not a number: {','.join(row)[:80]!r}") from None
        if iteration < 1 or seed < 0 or iteration < last:
            raise damaged(f"line {number}", f"iteration {iteration}, seed {seed} out of order")
        last = iteration
        if iteration <= upto_iteration:
            seeds.setdefault(iteration, []).append(seed)
            rows.append(row)
    missing = [i for i in range(1, upto_iteration + 1) if i not in seeds]
    if missing:
        raise damaged("rows", f"no rows for iteration(s) {missing[0]}..{missing[-1]}, but the checkpoint being "
                              f"resumed is at iteration {upto_iteration}")
    want = list(range(len(seeds[1]))) if upto_iteration else []
    for i in range(1, upto_iteration + 1):
        if seeds[i] != want:
            raise damaged("rows", f"iteration {i} has seeds {seeds[i]}, expected {want}")
    return header, rows


def _cell(value: np.generic) -> str:
    """A CSV cell: integers exactly, floats with 6 significant digits."""
    return str(int(value)) if np.issubdtype(np.asarray(value).dtype, np.integer) else f"{float(value):.6g}"
