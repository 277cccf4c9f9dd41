"""Per-iteration, per-seed training metrics of one run: CSV (rewritten atomically) and TensorBoard.

:class:`MetricsLog` appends the metrics of each training chunk; on resume it keeps
the rows up to the checkpoint it resumes from, so the CSV always matches the
checkpointed state. TensorBoard scalars (mean over seeds) are written when
``tensorboardX`` is installed.
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np

from zsgjax.reporting.files import atomic_write


class MetricsLog:
    """Per-iteration, per-seed metrics of one method as CSV (rewritten atomically) and TensorBoard."""

    def __init__(self, directory: str, tensorboard: bool, start_iteration: int, start_step: int):
        self.path = os.path.join(directory, "metrics.csv")
        self.header: list[str] | None = None
        self.rows: list[list[str]] = []
        if start_iteration > 0 and os.path.exists(self.path):
            with open(self.path, newline="") as f:
                reader = csv.reader(f)
                self.header = next(reader, None)
                self.rows = [r for r in reader if r and int(r[0]) <= start_iteration]
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
        if self.writer is not None:
            steps = metrics["env_steps"][0]
            for j in range(n):
                for k in names:
                    if k != "env_steps":
                        self.writer.add_scalar(k, float(np.mean(metrics[k][:, j])), int(steps[j]))
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _cell(value: np.generic) -> str:
    """A CSV cell: integers exactly, floats with 6 significant digits."""
    return str(int(value)) if np.issubdtype(np.asarray(value).dtype, np.integer) else f"{float(value):.6g}"
