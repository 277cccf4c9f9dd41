"""Host-side argument checks shared by the public entry points.

Every check takes what a user may pass, a Python, NumPy or (concrete) jax scalar or
array alike, and raises a ``ValueError`` whose message names the argument and what
is accepted. The scalar checks judge with :class:`zsgjax.configs.Check`, the one
validation engine, so they word a refusal as configs do: ``<name> must be <range>,
got <value>``. Checks of *values* run only on concrete inputs: a traced argument (a
``jax.core.Tracer`` under ``jit``, ``vmap`` or ``grad``) passes with only its
static shape and dtype checked, so the checked functions stay jittable.

This module imports only :mod:`zsgjax.configs` of zsgjax (which imports none), so every layer may use it.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any, Callable, Sequence

import jax
import numpy as np

from zsgjax.configs import INT32_MAX, Check


_NUMERIC_KINDS = "iuf"


def is_traced(x: Any) -> bool:
    """True for a ``jax.core.Tracer`` (an abstract value under a jax transformation)."""
    return isinstance(x, jax.core.Tracer)


def any_traced(tree: Any) -> bool:
    """True when some leaf of the pytree ``tree`` is traced."""
    return any(is_traced(leaf) for leaf in jax.tree.leaves(tree))


def _show(value: Any) -> str:
    if isinstance(value, (jax.Array, np.ndarray)) and not is_traced(value):
        try:
            arr = np.asarray(value)
        except TypeError:
            return repr(value)
        return repr(arr.item()) if arr.ndim == 0 else f"an array of shape {arr.shape}"
    return repr(value)


def as_array(value: Any, not_numeric: Callable[[Exception | None], str], kinds: str | None = None,
             wrong_kind: Callable[[np.dtype], str] | None = None) -> np.ndarray:
    """``value`` (concrete) as a NumPy array, or ``ValueError`` with the caller's message.

    ``not_numeric(error)``: the message for a string, bytes, ``None`` (``error`` is
    ``None``) or a value NumPy cannot convert (``error`` is NumPy's); ``kinds``: the
    accepted dtype kinds (e.g. ``"iuf"``), with ``wrong_kind(dtype)`` the message for
    another one. Messages are built only when the check fails.
    """
    if isinstance(value, (str, bytes)) or value is None:
        raise ValueError(not_numeric(None))
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise ValueError(not_numeric(e)) from e
    if kinds is not None and arr.dtype.kind not in kinds:
        raise ValueError(wrong_kind(arr.dtype) if wrong_kind is not None else not_numeric(None))
    return arr


def _scalar_array(value: Any, name: str, noun: str) -> np.ndarray:
    """``value`` (concrete) as a 0-d NumPy array, or ``ValueError``."""
    arr = as_array(value, lambda e: f"{name} must be {noun}, got {value!r}")
    if arr.ndim != 0:
        raise ValueError(f"{name} must be {noun} (a scalar), got an array of shape {arr.shape}")
    return arr


def real(value: Any, name: str, *, low: float | None = None, high: float | None = None, low_open: bool = False,
         high_open: bool = False, allow_inf: bool = False) -> float | Any:
    """A finite real scalar in the given range, as a Python ``float``.

    Accepts Python and NumPy numbers and 0-d arrays (NumPy or jax); booleans,
    strings, complex numbers and arrays of other shapes are rejected. A traced
    value is returned unchanged after checking that it is a real scalar. The range
    and the message are :class:`zsgjax.configs.Check`'s.
    """
    check = Check(float, low=low, high=high, low_open=low_open, high_open=high_open, allow_inf=allow_inf)
    if is_traced(value):
        if np.ndim(value) != 0 or np.dtype(value.dtype).kind not in _NUMERIC_KINDS:
            raise ValueError(check.message(name, value, f"a traced {value.dtype} of shape {np.shape(value)}",
                                           " (a real scalar)"))
        return value
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(check.message(name, value))
    arr = _scalar_array(value, name, check.describe())
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(check.message(name, value, f"{_show(value)} of dtype {arr.dtype}"))
    v = float(arr)
    if not check.ok(v):
        raise ValueError(check.message(name, value, _show(value)))
    return v


def integer(value: Any, name: str, *, low: int | None = None, high: int | None = INT32_MAX) -> int:
    """An integer scalar in ``[low, high]``, as a Python ``int``.

    ``high`` defaults to the int32 limit (named only to a value beyond it); ``None``:
    no upper bound at all. Accepts Python and NumPy integers and 0-d integer arrays
    (NumPy or concrete jax); rejects booleans, floats (also integral ones such as
    ``3.0``) and traced values (integers given here are static: shapes, counts, steps).
    """
    capped = high == INT32_MAX
    check = Check(int, low=low, high=None if capped else high, int32=capped)
    if is_traced(value):
        raise ValueError(f"{name} must be a concrete (static) integer, got a traced value of shape {np.shape(value)}")
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(check.message(name, value))
    if isinstance(value, numbers.Integral):
        v = int(value)
    else:
        arr = _scalar_array(value, name, check.describe())
        if arr.dtype.kind not in "iu":
            raise ValueError(check.message(name, value, _show(value)))
        v = int(arr)
    return check.require(name, v)


def boolean(value: Any, name: str) -> bool:
    """A Python or NumPy bool (or a concrete 0-d bool array), as a Python ``bool``."""
    if is_traced(value):
        raise ValueError(f"{name} must be a concrete bool, got a traced value")
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (jax.Array, np.ndarray)) and np.ndim(value) == 0 and np.dtype(value.dtype) == np.bool_:
        return bool(value)
    raise ValueError(Check(bool).message(name, value))


@functools.lru_cache(maxsize=None)
def _raw_key_shape() -> tuple[int, ...]:
    return tuple(jax.eval_shape(jax.random.PRNGKey, 0).shape)


def prng_key(value: Any, name: str = "`rng`") -> Any:
    """A single PRNG key: a typed key (``jax.random.key``, shape ``()``) or a raw
    ``uint32`` key (``jax.random.PRNGKey``, shape ``(2,)``). Returned unchanged;
    shape and dtype are checked on traced values too."""
    want = f"a single PRNG key (jax.random.key(seed), shape (); or jax.random.PRNGKey(seed), uint32 {_raw_key_shape()})"
    dtype = getattr(value, "dtype", None)
    if dtype is None or not hasattr(value, "shape"):
        raise ValueError(f"{name} must be {want}, got {value!r}")
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if tuple(value.shape) != ():
            raise ValueError(f"{name} must be {want}, got a batch of keys of shape {tuple(value.shape)}")
        return value
    if np.dtype(dtype) != np.uint32 or tuple(value.shape) != _raw_key_shape():
        raise ValueError(f"{name} must be {want}, got an array of dtype {np.dtype(dtype)} and shape {tuple(value.shape)}")
    return value


def numeric_array(value: Any, name: str, *, shape: Sequence[int | None] | None = None, ndim: int | None = None,
                  finite: bool = True, kinds: str = _NUMERIC_KINDS) -> np.ndarray:
    """``value`` (concrete) as a NumPy array of a real (or the given) dtype kind.

    shape: the expected shape, ``None`` entries matching any size; ndim: the
    expected number of dimensions; finite: reject NaN and infinities.
    """
    what = {"iu": "an integer", "iuf": "a real", "iufb": "a numeric"}.get(kinds, "a numeric")
    arr = as_array(value, lambda e: f"{name} must be a numeric array, got "
                   + (repr(value) if e is None else f"{type(value).__name__} ({e})"),
                   kinds, lambda dtype: f"{name} must be {what} array, got dtype {dtype}")
    check_shape(arr, name, shape=shape, ndim=ndim)
    if finite and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {int(np.sum(~np.isfinite(arr)))} non-finite value(s)")
    return arr


def check_shape(value: Any, name: str, *, shape: Sequence[int | None] | None = None, ndim: int | None = None) -> None:
    """``ValueError`` unless ``value`` has ``ndim`` dimensions / ``shape`` (``None`` matches any size)."""
    got = tuple(np.shape(value))
    if ndim is not None and len(got) != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {got}")
    if shape is not None:
        want = tuple(shape)
        if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got)):
            shown = "(" + ", ".join("*" if w is None else str(w) for w in want) + ("," if len(want) == 1 else "") + ")"
            raise ValueError(f"{name} must have shape {shown}, got {got}")
