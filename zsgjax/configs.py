"""One validation engine: every checked value states its accepted range once, and every
refusal reads ``<name> must be <accepted values>, got <value>``.

A :class:`Check` is the accepted range of one value (a kind, bounds, choices). Two
layers use it:

* **configs**: a frozen dataclass whose fields are made with :func:`param`::

      @dataclasses.dataclass(frozen=True)
      class SACConfig:
          gamma: float = param(0.99, low=0.0, high=1.0, help="discount factor")
          actor_lr: float = param(3e-4, low=0.0, low_open=True)

          def validate(self) -> "SACConfig":
              return validate(self)

  :func:`validate` checks every field and raises one ``ValueError`` naming
  ``Owner.field``, the accepted range and the value. A field of another config can
  *borrow* the check of the field it is copied to (``param(None, like=(SACConfig,
  "actor_lr"))``), so a range is stated in one place even where a value travels through
  several configs. The training methods declare their settings the same way
  (:mod:`zsgjax.methods.settings`).
* **function arguments**: :mod:`zsgjax.checks` (``checks.real``, ``checks.integer``,
  ``checks.boolean``) converts what a caller may pass (NumPy or jax scalars, 0-d
  arrays) and judges it with the same :class:`Check`, so its messages have the same
  form.

Floats must be finite unless a check says otherwise (``inf`` is never a meaningful
learning rate or step size). Integers without an upper bound must fit int32
(:data:`INT32_MAX`): steps, seeds and sizes are int32 inside the jitted programs, where
a larger value would wrap. In a config, Python and NumPy numbers are accepted alike; a
jax array is refused with a hint (a config is static, hashed and written as JSON). This
module imports no JAX (the command line's option table is built from it).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import sys
from typing import Any, Callable, Mapping, Sequence

INT32_MAX = 2**31 - 1
"""Integer values without an explicit upper bound must fit int32 (steps, seeds and sizes
are int32 in the jitted programs; a larger value would wrap silently)."""
INT32_MIN = -(2**31)

_CHECK = "zsgjax_check"
_LIKE = "zsgjax_like"
_HELP = "zsgjax_help"


def format_number(v: Any) -> str:
    """``3`` for integers, ``0.001`` / ``1e-08`` (``:g``) for floats: bounds in messages."""
    return str(v) if isinstance(v, numbers.Integral) else f"{v:g}"


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class Check:
    """The accepted values of one setting or argument.

    kind: ``int``, ``float``, ``bool``, ``str`` or ``tuple`` (a non-empty tuple of
    ``element`` values, ints by default or finite floats, each checked against
    ``low``/``high``); ``low``/``high``: bounds (open when ``low_open``/``high_open``);
    ``choices``: accepted values, or a callable returning them (evaluated at check
    time, e.g. the registered environment names); ``optional``: ``None`` is accepted
    (it means "the preset's value"); ``allow_inf``: floats may be infinite;
    ``int32``: an integer without ``high`` must fit int32 (``False``: any size).
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
    int32: bool = True

    # ------------------------------------------------------------ describing
    def describe(self) -> str:
        """The accepted values in words: ``a finite number in [0, 1]``, ``one of a, b``."""
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices_now()))
        number = "a number (inf allowed)" if self.allow_inf else "a finite number"
        noun = {int: "an integer", float: number, bool: "True or False", str: "a string",
                tuple: "a non-empty tuple of " + ("integers" if self.element is int else "finite numbers")}[self.kind]
        return noun + self.range_text()

    def range_text(self) -> str:
        """`` >= 0``, `` in (0, 1]`` or ``""``: the bounds, as :meth:`describe` appends them."""
        if self.low is None and self.high is None:
            return ""
        if self.high is None:
            return f" {'>' if self.low_open else '>='} {format_number(self.low)}"
        if self.low is None:
            return f" {'<' if self.high_open else '<='} {format_number(self.high)}"
        lb, rb = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f" in {lb}{format_number(self.low)}, {format_number(self.high)}{rb}"

    def choices_now(self) -> tuple[Any, ...]:
        """The accepted values of a ``choices`` check (calling it when it is a callable)."""
        return tuple(self.choices()) if callable(self.choices) else tuple(self.choices)

    # --------------------------------------------------------------- judging
    def in_range(self, v: float) -> bool:
        """``v`` (a number) lies within ``low``/``high``."""
        if self.low is not None and not (v > self.low if self.low_open else v >= self.low):
            return False
        if self.high is not None and not (v < self.high if self.high_open else v <= self.high):
            return False
        return True

    def fits_int32(self, v: Any) -> bool:
        """An integer ``v`` is representable where it will be used (see ``int32``)."""
        return not self.int32 or self.high is not None or INT32_MIN <= int(v) <= INT32_MAX

    def _element_ok(self, v: Any, kind: type) -> bool:
        if kind is int:
            return _is_int(v) and self.in_range(v) and self.fits_int32(v)
        if not _is_real(v) or math.isnan(v) or (math.isinf(v) and not self.allow_inf):
            return False
        return self.in_range(float(v))

    def ok(self, value: Any) -> bool:
        """``value`` is accepted."""
        if value is None:
            return self.optional
        if self.choices is not None:
            return value in self.choices_now()
        if self.kind is bool:
            return isinstance(value, bool)
        if self.kind is str:
            return isinstance(value, str)
        if self.kind in (int, float):
            return self._element_ok(value, self.kind)
        if self.kind is tuple:
            element = float if self.element is float else int
            return isinstance(value, tuple) and len(value) > 0 and all(self._element_ok(v, element) for v in value)
        raise TypeError(f"Check: unsupported kind {self.kind!r}")

    # -------------------------------------------------------------- refusing
    def message(self, name: str, value: Any, shown: str | None = None, note: str = "") -> str:
        """The one refusal: ``<name> must be <describe()>[ and ...], got <shown or repr(value)>``.

        ``note`` is appended after the accepted values (e.g. why a type is refused).
        """
        extra = self._int32_note(value)
        extra += " (or None for the preset)" if self.optional else ""
        return f"{name} must be {self.describe()}{extra}{note}, got {repr(value) if shown is None else shown}"

    def require(self, name: str, value: Any) -> Any:
        """``value`` unchanged when accepted, else ``ValueError`` (:meth:`message`) naming ``name``."""
        if not self.ok(value):
            note = " (a jax array is not accepted in a config: pass a Python number, e.g. float(x) or int(x))" \
                if _is_jax_array(value) else ""
            raise ValueError(self.message(name, value, note=note))
        return value

    def _int32_note(self, value: Any) -> str:
        if self.kind not in (int, tuple) or self.choices is not None or self.element is not int:
            return ""
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if _is_int(v) and self.in_range(v) and not self.fits_int32(v):
                bound = f"at most {INT32_MAX}" if v > INT32_MAX else f"at least {INT32_MIN}"
                return f" and {bound} (the int32 limit of the jitted programs)"
        return ""


def _is_jax_array(value: Any) -> bool:
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(value, jax.Array)


def param(
    default: Any = dataclasses.MISSING,
    *,
    like: tuple[type, str] | None = None,
    optional: bool | None = None,
    help: str | None = None,  # noqa: A002 -- argparse's word for it
    meta: Mapping[str, Any] | None = None,
    **check: Any,
) -> Any:
    """A dataclass field with a :class:`Check` (keyword arguments) or the check of
    ``like = (OtherConfig, "field")``. ``optional`` defaults to ``default is None``;
    ``help``: one line saying what the value does (shown by ``zsgjax train --help`` for
    a method setting; read with :func:`field_help`); ``meta`` adds free-form metadata
    (read with :func:`field_meta`)."""
    if like is not None and check:
        raise TypeError("param: give either `like` or check arguments, not both")
    metadata: dict[str, Any] = dict(meta or {})
    opt = (default is None) if optional is None else optional
    if like is not None:
        metadata[_LIKE] = (like, opt)
    else:
        metadata[_CHECK] = Check(optional=opt, **check)
    if help is not None:
        metadata[_HELP] = help
    if isinstance(default, (list, dict, set)) and not isinstance(default, FrozenMap):
        raise TypeError("param: mutable defaults are not allowed; use a tuple (or a FrozenMap)")
    return dataclasses.field(default=default, metadata=metadata)


def _field(cls: type, name: str) -> dataclasses.Field:
    return {f.name: f for f in dataclasses.fields(cls)}[name]


def field_check(cls: type, name: str) -> Check | None:
    """The :class:`Check` of field ``name`` of config class ``cls`` (following ``like``)."""
    return metadata_check(_field(cls, name).metadata)


def metadata_check(metadata: Mapping[str, Any]) -> Check | None:
    """The :class:`Check` stored in a field's metadata by :func:`param` (following ``like``)."""
    if _CHECK in metadata:
        return metadata[_CHECK]
    if _LIKE in metadata:
        (other, other_name), opt = metadata[_LIKE]
        base = field_check(other, other_name)
        return None if base is None else dataclasses.replace(base, optional=opt)
    return None


def field_help(cls: type, name: str) -> str | None:
    """The ``help`` given to :func:`param` for field ``name`` of ``cls`` (``None``: none)."""
    return _field(cls, name).metadata.get(_HELP)


def field_meta(cls: type, name: str) -> Mapping[str, Any]:
    """The metadata of field ``name`` of dataclass ``cls``."""
    return _field(cls, name).metadata


def validate(config: Any) -> Any:
    """Check every field of the dataclass instance ``config``; returns it unchanged.

    Raises ``ValueError`` naming the first bad field (``Owner.field``), its accepted
    range and the value.
    """
    owner = type(config).__name__
    for f in dataclasses.fields(config):
        check = metadata_check(f.metadata)
        if check is not None:
            check.require(f"{owner}.{f.name}", getattr(config, f.name))
    return config


def default_of(cls: type, name: str) -> Any:
    """The declared default of field ``name`` of dataclass ``cls``."""
    f = _field(cls, name)
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
    raise ValueError(f"{name} must be {OPTION_VALUE}, got {type(value).__name__} {value!r}{extra}")
