"""The context dimension of environment families whose ``dim`` is a constructor option.

Shared by :mod:`zsgjax.envs.direction_task` and :mod:`zsgjax.envs.linear_quadratic`:
the check of ``dim`` and the per-dimension names of the context space.
"""

from __future__ import annotations

from zsgjax import checks

MAX_DIM = 256
"""Largest accepted context dimension (CSE's ``jacobian`` storage keeps ``dim^2`` floats per transition)."""


def context_dimension(value, owner: str) -> int:
    """``value`` as an integer in ``[1, MAX_DIM]``; ``ValueError`` naming ``owner``'s ``dim`` otherwise."""
    return checks.integer(value, f"{owner}: `dim`", low=1, high=MAX_DIM)


def indexed_names(prefix: str, dim: int) -> tuple[str, ...]:
    """``("<prefix>_0", ..., "<prefix>_<dim-1>")``."""
    return tuple(f"{prefix}_{i}" for i in range(dim))


def alternating(first: float, second: float, dim: int) -> tuple[float, ...]:
    """``(first, second, first, ...)`` of length ``dim``."""
    return tuple(first if i % 2 == 0 else second for i in range(dim))
