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

from zsgjax import checks


def _as_float_tuple(values, name: str, dim: int) -> tuple[float, ...]:
    arr = checks.as_array(
        values, lambda e: f"ContextSpace: `{name}` must be {dim} number(s), got {values!r}", "iuf",
        lambda dtype: f"ContextSpace: `{name}` must be {dim} real number(s), got {values!r} (dtype {dtype})",
    ).astype(np.float64)
    if arr.ndim == 0:
        arr = np.full((dim,), float(arr))
    if arr.shape != (dim,):
        raise ValueError(f"ContextSpace: `{name}` must have shape ({dim},) to match `names`, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"ContextSpace: `{name}` must be finite, got {arr.tolist()}")
    return tuple(float(v) for v in arr)


def _shape(shape, name: str) -> tuple[int, ...]:
    """A batch shape: a sequence of non-negative (static) integers."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, np.ndarray)):
        raise ValueError(f"{name} must be a tuple of non-negative integers, got {shape!r}")
    return tuple(checks.integer(n, name, low=0) for n in shape)


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
        if isinstance(names, (str, bytes)) or not isinstance(names, (Sequence, np.ndarray)):
            raise ValueError(f"ContextSpace: `names` must be a sequence of names (strings), got {names!r}")
        if not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"ContextSpace: `names` must be non-empty strings, got {tuple(names)!r}")
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
        if isinstance(name_or_index, (bool, np.bool_)):
            raise ValueError(f"context dimension must be a name or an integer index, got {name_or_index!r}")
        if not isinstance(name_or_index, str) and np.ndim(name_or_index) == 0 and np.asarray(name_or_index).dtype.kind in "iu":
            i = int(name_or_index)
            if not -self.dim <= i < self.dim:
                raise ValueError(f"context dimension index {i} out of range [0, {self.dim})")
            return i % self.dim
        if name_or_index not in self.names:
            raise ValueError(f"unknown context dimension '{name_or_index}'; known: {list(self.names)}")
        return self.names.index(name_or_index)

    def subspace(self, names: Sequence[str]) -> "ContextSpace":
        """The space restricted to ``names`` (in the given order)."""
        if isinstance(names, (str, bytes)):
            raise ValueError(f"subspace: `names` must be a sequence of dimension names, got the string {names!r}")
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

        Returns it as a float32 NumPy array. Raises ``ValueError`` naming ``name``
        and the first dimension that is not a finite number inside its range, the
        shape mismatch, or a non-numeric value (strings, booleans, complex numbers).
        """
        arr = checks.as_array(
            context, lambda e: f"`{name}` must be a numeric array of shape (..., {self.dim}), got "
            + (repr(context) if e is None else type(context).__name__), "iuf",
            lambda dtype: f"`{name}` must be a real-valued array ({', '.join(self.names)}), got dtype {dtype}",
        ).astype(np.float64)
        if arr.ndim == 0 or arr.shape[-1] != self.dim:
            raise ValueError(
                f"`{name}` must have trailing dimension {self.dim} ({', '.join(self.names)}), got shape {arr.shape}"
            )
        tol = 1e-6
        for i, n in enumerate(self.names):
            col = arr[..., i]
            bad = ~np.isfinite(col) | (col < self.low[i] - tol) | (col > self.high[i] + tol)
            if np.any(bad):
                v = col[bad].ravel()[0]
                what = "outside its range" if np.isfinite(v) else "non-finite; its range is"
                raise ValueError(f"`{name}` dimension '{n}' = {v:g} is {what} [{self.low[i]:g}, {self.high[i]:g}]")
        return arr.astype(np.float32)

    def contains(self, context: jax.Array) -> jax.Array:
        """Traceable membership test; ``(..., dim) -> (...)`` booleans (``False`` where a value is NaN)."""
        return jnp.all((context >= self.low_array) & (context <= self.high_array), axis=-1)

    def clip(self, context: jax.Array) -> jax.Array:
        """Project onto the box, ``(..., dim) -> (..., dim)``; ``+-inf`` goes to the bound.

        A NaN has no projection. A concrete context holding a NaN raises a
        ``ValueError`` naming the first such dimension; under ``jit``/``vmap`` (a
        traced context) the NaN is returned unchanged, so that the caller's
        finiteness checks see it (the batched rollout resets and masks a non-finite
        step, CSE drops a non-finite enhanced sample) instead of a made-up context.
        """
        if not checks.is_traced(context):
            values = np.atleast_1d(np.asarray(context))
            if jnp.issubdtype(values.dtype, jnp.floating) and np.isnan(values.astype(np.float32)).any():
                i = int(np.argwhere(np.isnan(values.astype(np.float32)))[0, -1]) % self.dim
                raise ValueError(f"clip: `context` dimension '{self.names[i]}' is NaN; a context to clip must not "
                                 f"be NaN (its range is [{self.low[i]:g}, {self.high[i]:g}])")
        return jnp.clip(context, self.low_array, self.high_array)

    # ---------------------------------------------------------------- sampling
    def sample_uniform(self, rng: jax.Array, shape: Sequence[int] = ()) -> jax.Array:
        """Uniform over the box: returns ``(*shape, dim)``."""
        checks.prng_key(rng, "sample_uniform: `rng`")
        shape = _shape(shape, "sample_uniform: `shape`")
        return jax.random.uniform(
            rng, (*shape, self.dim), minval=self.low_array, maxval=self.high_array
        )

    def sample_local(
        self, rng: jax.Array, scale: float = 0.1, shape: Sequence[int] = (), center: jax.Array | None = None
    ) -> jax.Array:
        """``center + scale * N(0, I)`` clipped to the box (LDR); ``(*shape, dim)``."""
        checks.prng_key(rng, "sample_local: `rng`")
        checks.real(scale, "sample_local: `scale`", low=0.0)
        shape = _shape(shape, "sample_local: `shape`")
        if center is None:
            center = self.default_array
        elif not checks.is_traced(center):
            center = jnp.asarray(self.validate(center, "center"))
        noise = jax.random.normal(rng, (*shape, self.dim))
        return self.clip(center + scale * noise)

    def sweep(self, dim: str | int, num: int) -> jax.Array:
        """Contexts sweeping one dimension over its range, others at default.

        Returns ``(num, dim)``; row ``k`` sets dimension ``dim`` to
        ``low + k (high - low) / (num - 1)``.
        """
        try:
            num = checks.integer(num, "sweep: `num`", low=1)
        except ValueError:
            raise ValueError(f"sweep: `num` must be >= 1 (an integer), got {num!r}") from None
        i = self.index(dim)
        base = jnp.broadcast_to(self.default_array, (num, self.dim))
        return base.at[:, i].set(self.sweep_values(i, num))

    def sweep_values(self, dim: str | int, num: int) -> jax.Array:
        """The swept values of one dimension, ``(num,)``."""
        try:
            num = checks.integer(num, "sweep_values: `num`", low=1)
        except ValueError:
            raise ValueError(f"sweep_values: `num` must be >= 1 (an integer), got {num!r}") from None
        i = self.index(dim)
        low, high = float(self.low[i]), float(self.high[i])
        # in float64, then rounded once: a value the formula hits exactly (a symmetric range's 0) stays exact,
        # where float32 linspace gives e.g. 1.3e-07 and labels the row "target_velocity=1.34e-07"
        steps = np.arange(num, dtype=np.float64) * (high - low)
        return jnp.asarray(low + (steps / (num - 1) if num > 1 else steps), dtype=float)
