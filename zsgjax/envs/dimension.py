"""The context dimension of environment families whose ``dim`` is a constructor option.

Shared by :mod:`zsgjax.envs.direction_task` and :mod:`zsgjax.envs.linear_quadratic`:
the check of ``dim``, the per-dimension names of the context space, and
:class:`DimensionFamily`, their common env structure (state, action and context all of
size ``d``; ``s0 ~ U[-1, 1]^d``; the state is the observation).
"""

from __future__ import annotations

import jax
import numpy as np

from zsgjax import checks
from zsgjax.envs.base import ContextualEnv
from zsgjax.envs.context import ContextSpace

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


class DimensionFamily(ContextualEnv):
    """An env whose state, action and context all have size ``d = dim``.

    Subclasses call :meth:`_init_family` from their ``__init__`` and define ``env_step``
    and ``optimal_return`` (validating its argument with :meth:`_context_values`).
    """

    def _init_family(self, dim, low: float, high: float, default: float,
                     eval_pairs: dict[str, tuple[float, float]]) -> None:
        """Check ``dim``; the context space ``c_0 .. c_{d-1}`` in ``[low, high]^d``; the named
        evaluation contexts ``{label: alternating(first, second, d)}`` from ``{label: (first, second)}``."""
        self.dim = context_dimension(dim, type(self).__name__)
        self.context_space = ContextSpace(indexed_names("c", self.dim), low=low, high=high, default=default)
        self.state_obs_size = self.dim
        self.eval_contexts = {label: alternating(a, b, self.dim) for label, (a, b) in eval_pairs.items()}

    @property
    def action_size(self) -> int:
        return self.dim

    def init_env_state(self, rng, context):
        """``s0 ~ U[-1, 1]^d``: ``(d,)``."""
        return jax.random.uniform(rng, (self.dim,), dtype=context.dtype, minval=-1.0, maxval=1.0)

    def observe(self, env_state, context):
        return env_state

    def _context_values(self, context, where: str) -> np.ndarray:
        """``context`` as ``(d,)`` float64; ``ValueError`` naming ``where`` unless it is ``d`` finite values."""
        c = np.asarray(context, np.float64).reshape(-1)
        if c.shape != (self.dim,) or not np.all(np.isfinite(c)):
            raise ValueError(f"{type(self).__name__}.{where}: `context` must be {self.dim} finite values, got shape "
                             f"{np.shape(context)}")
        return c
