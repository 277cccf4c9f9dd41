"""Declarative config fields: each field states its default and accepted range once.

A config is a frozen dataclass whose fields are made with :func:`param`::

    @dataclasses.dataclass(frozen=True)
    class SACConfig:
        gamma: float = param(0.99, low=0.0, high=1.0)
        actor_lr: float = param(3e-4, low=0.0, low_open=True)

        def validate(self) -> "SACConfig":
            return validate(self)

:func:`validate` checks every field against its :class:`Check` and raises one
``ValueError`` naming ``Owner.field``, the accepted range and the value. A field of
another config can *borrow* the check of the field it is copied to
(``param(None, like=(SACConfig, "actor_lr"))``), so a range is stated in one place
even where a value travels through several configs. Floats must be finite unless a
field says otherwise (``inf`` is never a meaningful learning rate or step size).
Integers without an upper bound must fit int32 (:data:`INT32_MAX`): steps, seeds and
sizes are int32 inside the jitted programs, where a larger value would wrap. Python
and NumPy numbers are accepted alike; a jax array is refused with a hint (a config is
static, hashed and written as JSON).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import sys
from typing import Any, Callable, Mapping, Sequence

INT32_MAX = 2**31 - 1
"""Integer fields without an explicit upper bound must fit int32 (steps, seeds and sizes
are int32 in the jitted programs; a larger value would wrap silently)."""

_CHECK = "zsgjax_check"
_LIKE = "zsgjax_like"


@dataclasses.dataclass(frozen=True)
class Check:
    """The accepted values of one field.

    kind: ``int``, ``float``, ``bool``, ``str`` or ``tuple`` (a non-empty tuple of
    ``element`` values, ints by default or finite floats, each checked against
    ``low``/``high``); ``low``/``high``: bounds (open when
    ``low_open``/``high_open``); ``choices``: accepted values, or a callable returning
    them (evaluated at check time, e.g. the registered environment names);
    ``optional``: ``None`` is accepted (it means "the preset's value").
    """

    kind: type = float
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None
    optional: bool = False
    allow_inf: bool = False
    element: type = int

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self._choices()))
        noun = {int: "an integer", float: "a number", bool: "a bool", str: "a string",
                tuple: "a non-empty tuple of " + ("integers" if self.element is int else "finite numbers")}[self.kind]
        if self.low is None and self.high is None:
            return noun
        if self.high is None:
            return f"{noun} {'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{noun} {'<' if self.high_open else '<='} {self.high:g}"
        lb, rb = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{noun} in {lb}{self.low:g}, {self.high:g}{rb}"

    def _choices(self) -> Sequence[Any]:
        return tuple(self.choices()) if callable(self.choices) else tuple(self.choices)

    def _in_range(self, v: float) -> bool:
        if self.low is not None and not (v > self.low if self.low_open else v >= self.low):
            return False
        if self.high is not None and not (v < self.high if self.high_open else v <= self.high):
            return False
        return True

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.choices is not None:
            return value in self._choices()
        if self.kind is bool:
            return isinstance(value, bool)
        if self.kind is str:
            return isinstance(value, str)
        if self.kind is int:
            return (isinstance(value, numbers.Integral) and not isinstance(value, bool) and self._in_range(value)
                    and self._fits_int32(value))
        if self.kind is float:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                return False
            if math.isnan(value) or (math.isinf(value) and not self.allow_inf):
                return False
            return self._in_range(float(value))
        if self.kind is tuple:
            if not (isinstance(value, tuple) and len(value) > 0):
                return False
            if self.element is float:
                return all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                           and self._in_range(float(v)) for v in value)
            return all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and self._in_range(v)
                       and self._fits_int32(v) for v in value)
        raise TypeError(f"Check: unsupported kind {self.kind!r}")

    def _fits_int32(self, v: Any) -> bool:
        return self.high is not None or -INT32_MAX - 1 <= int(v) <= INT32_MAX

    def __call__(self, owner: str, name: str, value: Any) -> None:
        if not self.ok(value):
            extra = ""
            if self.kind in (int, tuple) and self.high is None and self._int32_is_the_problem(value):
                extra += f" and at most {INT32_MAX} (it is counted in int32 inside the jitted program)"
            extra += " (or None for the preset)" if self.optional else ""
            if _is_jax_array(value):
                extra += " (a jax array is not accepted in a config: pass a Python number, e.g. float(x) or int(x))"
            raise ValueError(f"{owner}.{name} must be {self.describe()}{extra}; got {value!r}")

    def _int32_is_the_problem(self, value: Any) -> bool:
        values = value if isinstance(value, tuple) else (value,)
        return any(isinstance(v, numbers.Integral) and not isinstance(v, bool) and self._in_range(v)
                   and not self._fits_int32(v) for v in values)


def _is_jax_array(value: Any) -> bool:
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(value, jax.Array)


def param(
    default: Any = dataclasses.MISSING,
    *,
    like: tuple[type, str] | None = None,
    optional: bool | None = None,
    meta: Mapping[str, Any] | None = None,
    **check: Any,
) -> Any:
    """A dataclass field with a :class:`Check` (keyword arguments) or the check of
    ``like = (OtherConfig, "field")``. ``optional`` defaults to ``default is None``;
    ``meta`` adds free-form metadata (read with :func:`field_meta`)."""
    if like is not None and check:
        raise TypeError("param: give either `like` or check arguments, not both")
    metadata: dict[str, Any] = dict(meta or {})
    opt = (default is None) if optional is None else optional
    if like is not None:
        metadata[_LIKE] = (like, opt)
    else:
        metadata[_CHECK] = Check(optional=opt, **check)
    if isinstance(default, (list, dict, set)) and not isinstance(default, FrozenMap):
        raise TypeError("param: mutable defaults are not allowed; use a tuple (or a FrozenMap)")
    return dataclasses.field(default=default, metadata=metadata)


def field_check(cls: type, name: str) -> Check | None:
    """The :class:`Check` of field ``name`` of config class ``cls`` (following ``like``)."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if _CHECK in f.metadata:
        return f.metadata[_CHECK]
    if _LIKE in f.metadata:
        (other, other_name), opt = f.metadata[_LIKE]
        base = field_check(other, other_name)
        return None if base is None else dataclasses.replace(base, optional=opt)
    return None


def field_meta(cls: type, name: str) -> Mapping[str, Any]:
    """The metadata of field ``name`` of dataclass ``cls``."""
    return {f.name: f for f in dataclasses.fields(cls)}[name].metadata


def validate(config: Any) -> Any:
    """Check every field of the dataclass instance ``config``; returns it unchanged.

    Raises ``ValueError`` naming the first bad field (``Owner.field``), its accepted
    range and the value.
    """
    owner = type(config).__name__
    for f in dataclasses.fields(config):
        check = field_check(type(config), f.name)
        if check is not None:
            check(owner, f.name, getattr(config, f.name))
    return config


def default_of(cls: type, name: str) -> Any:
    """The declared default of field ``name`` of dataclass ``cls``."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    raise ValueError(f"{cls.__name__}.{name} has no default")


# ------------------------------------------------------------ frozen options
class FrozenMap(dict):
    """A read-only, hashable ``dict`` (keys sorted) for mapping-valued config fields.

    A ``dict`` subclass, so it is written as a JSON object and compares equal to the
    plain ``dict`` read back from JSON; every mutating method raises ``TypeError``.
    Build it with :func:`freeze`, which also freezes the values.
    """

    def __init__(self, *args, **kwargs):
        items = dict(*args, **kwargs)
        super().__init__(sorted(items.items(), key=lambda kv: str(kv[0])))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self.items()))

    def __repr__(self) -> str:
        return f"{{{', '.join(f'{k!r}: {v!r}' for k, v in self.items())}}}"

    def _readonly(self, *args, **kwargs):
        raise TypeError("FrozenMap is read-only; build a new one with zsgjax.configs.freeze")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _readonly  # type: ignore

    def __reduce__(self):
        return FrozenMap, (dict(self),)


OPTION_VALUE = "a string, number, bool, None, or a list/tuple/mapping of those"


def freeze(value: Any, name: str = "value") -> Any:
    """``value`` made hashable: mappings become :class:`FrozenMap` (string keys), lists
    and tuples become tuples, recursively; scalars (str, bool, int, float, None) stay.

    ``ValueError`` naming ``name`` for anything else (a jax/NumPy array, an object):
    config options must be plain data, written as JSON and compared on resume.
    """
    if isinstance(value, Mapping):
        for k in value:
            if not isinstance(k, str):
                raise ValueError(f"{name} keys must be strings, got {k!r}")
        return FrozenMap({k: freeze(v, f"{name}[{k!r}]") for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v, f"{name}[{i}]") for i, v in enumerate(value))
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        if not math.isfinite(float(value)):
            raise ValueError(f"{name} must be finite, got {value!r}")
        return float(value)
    extra = " (pass a Python number or a list)" if _is_jax_array(value) or hasattr(value, "shape") else ""
    raise ValueError(f"{name} must be {OPTION_VALUE}; got {type(value).__name__} {value!r}{extra}")
