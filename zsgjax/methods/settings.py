"""A method's settings: the fields of its class, each declared once with :func:`zsgjax.configs.param`.

A training method is a frozen dataclass, and its dataclass fields *are* its settings::

    @register
    @dataclasses.dataclass(frozen=True)
    class LDR(Method):
        name = "ldr"
        scale: float = param(0.1, low=0.0, low_open=True, help="std of the Gaussian around the default context")

That one line states the setting's default, accepted range and help. Everything else is
derived from it (:func:`settings_of`, :func:`registered_settings`):

* its **option name** ``<name of the declaring class>_<field>`` (``ldr_scale``): the
  ``TrainConfig`` field, the ``zsgjax train`` flag (``--ldr-scale``, its range and help
  in ``--help``) and the key in ``run.json`` and every checkpoint's config;
* its **check**, run where the user passes the value (``LDR(scale=0)``,
  ``TrainConfig(ldr_scale=0)``, ``--ldr-scale 0``), worded the same way by the one
  engine of :mod:`zsgjax.configs`.

A method that inherits a field reads the *same* setting: ``cse_ldr`` (a subclass of
``CSE`` and ``LDR``) declares nothing and reads ``cse_epsilon`` ... and ``ldr_scale``.
A subclass that declares an inherited field again (another default or range) owns a
setting of its own (``<its name>_<field>``).
An environment-dependent default (DR's box: the context space's bounds) is a field left
at ``None`` whose ``param`` carries ``meta={ENV_DEFAULT: fn}`` with ``fn(env)`` the value.
A setting added after runs were recorded carries ``meta={OMIT_AT_DEFAULT: True}``: the
config's record (``run.json``, checkpoints) names it only when it differs from its default,
so those runs' records still match and resume.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable

from zsgjax.configs import Check, field_help, metadata_check

ENV_DEFAULT = "env_default"
"""``param(..., meta={ENV_DEFAULT: fn})``: a setting left at ``None`` resolves to ``fn(env)``."""
OMIT_AT_DEFAULT = "omit_at_default"
"""``param(..., meta={OMIT_AT_DEFAULT: True})``: a setting added after runs were recorded without
it; a config's record (``run.json``, checkpoints) leaves it out while it holds its default, so
those runs still resume."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One method setting as users see it.

    option: ``<declaring method name>_<field>`` (the ``TrainConfig`` field / CLI flag);
    owner: the method class that declares the field; field: its name there;
    default: the declared default; check: its :class:`~zsgjax.configs.Check`;
    help: one line for ``--help``; env_default: ``env -> value`` for a ``None``
    default that depends on the environment, else ``None``; omit_at_default: the
    record leaves the setting out while it holds its default (:data:`OMIT_AT_DEFAULT`).
    """

    option: str
    owner: type
    field: str
    default: Any
    check: Check
    help: str
    env_default: Callable[[Any], Any] | None = None
    omit_at_default: bool = False

    @property
    def flag(self) -> str:
        """The command-line option: ``--cse-epsilon``."""
        return "--" + self.option.replace("_", "-")


def _declaring_class(cls: type, field: str) -> type:
    """The first class in ``cls``'s MRO whose own body annotates ``field``: the one whose
    declaration (default, range) the dataclass field is. A subclass that declares the
    field again owns a setting of its own."""
    for klass in cls.__mro__:
        if field in klass.__dict__.get("__annotations__", {}):
            return klass
    raise TypeError(f"{cls.__name__}.{field}: no class in {cls.__name__}'s bases declares it")


def settings_of(cls: type) -> tuple[Setting, ...]:
    """The settings of method class ``cls``, in field order (inherited ones included).

    ``TypeError`` for a field not made with ``param(default, help=..., <range>)``, or one
    declared by a class without a ``name`` (the option name could not be formed).
    """
    if not dataclasses.is_dataclass(cls):
        return ()
    out = []
    for f in dataclasses.fields(cls):
        owner = _declaring_class(cls, f.name)
        where = f"{owner.__name__}.{f.name}"
        check = metadata_check(f.metadata)
        helptext = field_help(cls, f.name)
        if check is None or f.default is dataclasses.MISSING or not helptext:
            raise TypeError(f"{where}: a method's fields are its settings; declare it with "
                            "zsgjax.configs.param(default, help='...', <range>), e.g. "
                            "param(0.1, low=0.0, low_open=True, help='step size')")
        if not getattr(owner, "name", ""):
            raise TypeError(f"{where}: declared by a class without a `name`, so it has no option name "
                            "(<method name>_<field>); declare it in a registered method class")
        out.append(Setting(option=f"{owner.name}_{f.name}", owner=owner, field=f.name, default=f.default,
                           check=check, help=helptext, env_default=f.metadata.get(ENV_DEFAULT),
                           omit_at_default=bool(f.metadata.get(OMIT_AT_DEFAULT, False))))
    return tuple(out)


def merge_settings(classes: Iterable[type]) -> dict[str, Setting]:
    """``{option: Setting}`` of every setting of ``classes``, each once (a setting shared by
    inheritance appears once); ``ValueError`` when two different fields get one option name."""
    merged: dict[str, Setting] = {}
    for cls in classes:
        for s in settings_of(cls):
            other = merged.setdefault(s.option, s)
            if (other.owner, other.field) != (s.owner, s.field):
                raise ValueError(f"method setting '{s.option}' is declared twice: {other.owner.__name__}.{other.field} "
                                 f"and {s.owner.__name__}.{s.field}; rename one of the fields")
    return merged
