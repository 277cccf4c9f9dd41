"""Context spaces: named boxes of real-valued context vectors.

A :class:`ContextSpace` is an immutable, hashable description of where contexts
live. It is a static object (safe to close over in ``jit``); every method that
takes a context or a PRNG key is a pure ``jax.numpy`` function, so sampling,
clipping and sweeping work under ``jit`` and ``vmap``.

Shapes: a single context is ``(dim,)``; batched helpers return ``(*shape, dim)``.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _as_float_tuple(values, name: str, dim: int) -> tuple[float, ...]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full((dim,), float(arr))
    if arr.shape != (dim,):
        raise ValueError(f"ContextSpace: `{name}` must have shape ({dim},) to match `names`, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"ContextSpace: `{name}` must be finite, got {arr.tolist()}")
    return tuple(float(v) for v in arr)


@dataclasses.dataclass(frozen=True)
class ContextSpace:
    """A box ``[low, high]`` of named context dimensions with a default point.

    Args:
      names: one name per context dimension (unique).
      low, high: bounds, each of shape ``(dim,)`` (a scalar is broadcast).
      default: the training context of the paper's experiments, shape ``(dim,)``.

    Raises:
      ValueError: naming the offending dimension when ``low > high`` or the default
        lies outside ``[low, high]``.
    """

    names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    default: tuple[float, ...]

    def __init__(self, names: Sequence[str], low, high, default):
        if isinstance(names, str):
            raise ValueError(f"ContextSpace: `names` must be a sequence of names, got the string {names!r}")
        names = tuple(str(n) for n in names)
        if not names:
            raise ValueError("ContextSpace: `names` must name at least one dimension")
        if len(set(names)) != len(names):
            raise ValueError(f"ContextSpace: `names` must be unique, got {names}")
        dim = len(names)
        low_t = _as_float_tuple(low, "low", dim)
        high_t = _as_float_tuple(high, "high", dim)
        default_t = _as_float_tuple(default, "default", dim)
        for i, n in enumerate(names):
            if low_t[i] > high_t[i]:
                raise ValueError(f"ContextSpace: dimension '{n}' has low={low_t[i]} > high={high_t[i]}")
            if not low_t[i] <= default_t[i] <= high_t[i]:
                raise ValueError(
                    f"ContextSpace: default of dimension '{n}' is {default_t[i]}, outside its range "
                    f"[{low_t[i]}, {high_t[i]}]"
                )
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "low", low_t)
        object.__setattr__(self, "high", high_t)
        object.__setattr__(self, "default", default_t)

    # ------------------------------------------------------------------ basics
    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def low_array(self) -> jax.Array:
        return jnp.asarray(self.low, dtype=float)

    @property
    def high_array(self) -> jax.Array:
        return jnp.asarray(self.high, dtype=float)

    @property
    def default_array(self) -> jax.Array:
        return jnp.asarray(self.default, dtype=float)

    def index(self, name_or_index: str | int) -> int:
        """Position of a dimension given by name or index; clear error otherwise."""
        if isinstance(name_or_index, (int, np.integer)):
            i = int(name_or_index)
            if not -self.dim <= i < self.dim:
                raise ValueError(f"context dimension index {i} out of range [0, {self.dim})")
            return i % self.dim
        if name_or_index not in self.names:
            raise ValueError(f"unknown context dimension '{name_or_index}'; known: {list(self.names)}")
        return self.names.index(name_or_index)

    def subspace(self, names: Sequence[str]) -> "ContextSpace":
        """The space restricted to ``names`` (in the given order)."""
        idx = [self.index(n) for n in names]
        return ContextSpace(
            [self.names[i] for i in idx],
            [self.low[i] for i in idx],
            [self.high[i] for i in idx],
            [self.default[i] for i in idx],
        )

    def with_default(self, default) -> "ContextSpace":
        return ContextSpace(self.names, self.low, self.high, default)

    # -------------------------------------------------------------- validation
    def validate(self, context, name: str = "context") -> np.ndarray:
        """Host-side check of a concrete context (or batch ``(..., dim)``).

        Returns it as a float32 NumPy array. Raises ``ValueError`` naming the first
        dimension outside its range, or the shape mismatch.
        """
        arr = np.asarray(context, dtype=np.float64)
        if arr.ndim == 0 or arr.shape[-1] != self.dim:
            raise ValueError(
                f"`{name}` must have trailing dimension {self.dim} ({', '.join(self.names)}), got shape {arr.shape}"
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"`{name}` contains non-finite values")
        tol = 1e-6
        for i, n in enumerate(self.names):
            col = arr[..., i]
            if np.any(col < self.low[i] - tol) or np.any(col > self.high[i] + tol):
                bad = col[(col < self.low[i] - tol) | (col > self.high[i] + tol)].ravel()[0]
                raise ValueError(
                    f"`{name}` dimension '{n}' = {bad:g} is outside its range [{self.low[i]:g}, {self.high[i]:g}]"
                )
        return arr.astype(np.float32)

    def contains(self, context: jax.Array) -> jax.Array:
        """Traceable membership test; ``(..., dim) -> (...)`` booleans."""
        return jnp.all((context >= self.low_array) & (context <= self.high_array), axis=-1)

    def clip(self, context: jax.Array) -> jax.Array:
        """Project onto the box, ``(..., dim) -> (..., dim)``."""
        return jnp.clip(context, self.low_array, self.high_array)

    # ---------------------------------------------------------------- sampling
    def sample_uniform(self, rng: jax.Array, shape: Sequence[int] = ()) -> jax.Array:
        """Uniform over the box: returns ``(*shape, dim)``."""
        return jax.random.uniform(
            rng, (*shape, self.dim), minval=self.low_array, maxval=self.high_array
        )

    def sample_local(
        self, rng: jax.Array, scale: float = 0.1, shape: Sequence[int] = (), center: jax.Array | None = None
    ) -> jax.Array:
        """``center + scale * N(0, I)`` clipped to the box (LDR); ``(*shape, dim)``."""
        center = self.default_array if center is None else center
        noise = jax.random.normal(rng, (*shape, self.dim))
        return self.clip(center + scale * noise)

    def sweep(self, dim: str | int, num: int) -> jax.Array:
        """Contexts sweeping one dimension over its range, others at default.

        Returns ``(num, dim)``; row ``k`` sets dimension ``dim`` to
        ``low + k (high - low) / (num - 1)``.
        """
        if num < 1:
            raise ValueError(f"sweep: `num` must be >= 1, got {num}")
        i = self.index(dim)
        values = jnp.linspace(self.low[i], self.high[i], num)
        base = jnp.broadcast_to(self.default_array, (num, self.dim))
        return base.at[:, i].set(values)

    def sweep_values(self, dim: str | int, num: int) -> jax.Array:
        """The swept values of one dimension, ``(num,)``."""
        i = self.index(dim)
        return jnp.linspace(self.low[i], self.high[i], num)
