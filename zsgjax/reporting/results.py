"""The result model of zero-shot evaluation: the context grid and the returns on it.

:class:`ContextGrid` holds the evaluation contexts (one sweep per context
dimension with the others at the training context, plus the environment's named
contexts); :class:`EvalResult` the returns ``(S, C, E)`` of one method on it (``S``
seeds, ``C = len(grid)`` contexts, ``E`` episodes). Summaries are the mean over
seeds of each seed's mean return with a 95% Student-t interval across seeds
(:func:`zsgjax.reporting.stats.mean_ci`). Writers (tables, CSV, JSON, plots) live in
the other modules of :mod:`zsgjax.reporting`; the evaluator in :mod:`zsgjax.evaluate`.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from zsgjax.reporting.stats import difference_ci, mean_ci


def summarize(returns) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 95% Student-t half-width across seeds of ``returns (S, C, E)``.

    mean ``(C,)`` = mean over seeds of the per-seed mean return; ci ``(C,)`` =
    ``t_{0.975, S-1} * std_seeds(ddof=1) / sqrt(S)``; NaN when ``S == 1``.
    """
    returns = np.asarray(returns, dtype=np.float64)
    if returns.ndim != 3 or 0 in returns.shape:
        raise ValueError(f"`returns` must have shape (S, C, E) with all sizes >= 1, got {returns.shape}")
    return mean_ci(returns.mean(axis=2))


@dataclasses.dataclass(frozen=True)
class ContextGrid:
    """Evaluation contexts: one sweep per dimension (others at default) plus named ones.

    contexts: ``(C, dim)`` float32.
    labels:   ``C`` row labels (``"c_x=-0.5"`` for sweep rows, the name otherwise).
    swept:    ``C`` entries, the swept dimension's name, or ``None`` for a named context.
    names:    the context dimension names; default: ``(dim,)`` the training context.
    """

    contexts: np.ndarray
    labels: tuple[str, ...]
    swept: tuple[str | None, ...]
    names: tuple[str, ...]
    default: np.ndarray

    def __post_init__(self):
        c = len(self.labels)
        if self.contexts.shape != (c, len(self.names)) or len(self.swept) != c:
            raise ValueError(
                f"ContextGrid: `contexts` {self.contexts.shape}, `labels` ({c}) and `swept` ({len(self.swept)}) disagree"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def swept_dims(self) -> tuple[str, ...]:
        """Names of the swept dimensions, in grid order."""
        return tuple(dict.fromkeys(d for d in self.swept if d is not None))

    def sweep_rows(self, dim: str) -> np.ndarray:
        """Row indices of the sweep of ``dim`` (ascending values)."""
        if dim not in self.swept_dims:
            raise ValueError(f"dimension '{dim}' is not swept in this grid; swept: {list(self.swept_dims)}")
        return np.asarray([i for i, d in enumerate(self.swept) if d == dim])

    def sweep_values(self, dim: str) -> np.ndarray:
        """Swept values ``(n,)`` of ``dim``."""
        return self.contexts[self.sweep_rows(dim), self.names.index(dim)]

    @property
    def named_rows(self) -> np.ndarray:
        return np.asarray([i for i, d in enumerate(self.swept) if d is None], dtype=int)

    def to_dict(self) -> dict:
        return {
            "names": list(self.names),
            "default": self.default.tolist(),
            "labels": list(self.labels),
            "swept": list(self.swept),
            "contexts": self.contexts.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "ContextGrid":
        try:
            return cls(
                contexts=np.asarray(d["contexts"], np.float32).reshape(len(d["labels"]), len(d["names"])),
                labels=tuple(d["labels"]),
                swept=tuple(d["swept"]),
                names=tuple(d["names"]),
                default=np.asarray(d["default"], np.float32),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a valid context grid record: {e}") from e


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Returns of one method on a grid: ``returns (S, C, E)`` with ``C = len(grid)``."""

    grid: ContextGrid
    returns: np.ndarray

    def __post_init__(self):
        r = np.asarray(self.returns)
        if r.ndim != 3 or r.shape[1] != len(self.grid) or 0 in r.shape:
            raise ValueError(f"EvalResult: `returns` must have shape (S, {len(self.grid)}, E), got {r.shape}")

    @property
    def num_seeds(self) -> int:
        return int(self.returns.shape[0])

    @property
    def num_episodes(self) -> int:
        return int(self.returns.shape[2])

    def summary(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean (C,), ci (C,))``, see :func:`summarize`."""
        return summarize(self.returns)

    def per_seed(self, rows) -> np.ndarray:
        """Each seed's mean return over the contexts ``rows`` (all episodes): ``(S,)``."""
        return np.asarray(self.returns, np.float64)[:, np.asarray(rows)].mean(axis=(1, 2))

    def aggregate(self, rows) -> tuple[float, float]:
        """Mean and 95% Student-t half-width across seeds of the average return over ``rows``."""
        mean, ci = mean_ci(self.per_seed(rows))
        return float(mean), float(ci)

    def difference(self, other: "EvalResult", rows) -> tuple[float, float]:
        """``self - other`` averaged over ``rows``: mean and 95% half-width of the per-seed
        difference (paired when both have the same seeds; see :func:`difference_ci`)."""
        return difference_ci(self.per_seed(rows), other.per_seed(rows))


def check_results(results: Mapping[str, EvalResult]) -> list[str]:
    """Method names of ``results``; ``ValueError`` when empty or evaluated on different grids."""
    methods = list(results)
    if not methods:
        raise ValueError("`results` is empty: give at least one method")
    grid = results[methods[0]].grid
    for m in methods[1:]:
        g = results[m].grid
        if g.labels != grid.labels or not np.array_equal(g.contexts, grid.contexts):
            raise ValueError(f"`results`: method '{m}' was evaluated on a different grid than '{methods[0]}'")
    return methods


