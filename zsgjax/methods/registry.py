"""The method registry: name -> :class:`~zsgjax.methods.base.Method` subclass, and the
settings of all registered methods (:func:`registered_settings`)."""

from __future__ import annotations

from typing import Any

from zsgjax.methods.base import Method
from zsgjax.methods.settings import Setting, merge_settings

_METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` trainable as ``TrainConfig(method=cls.name)``.

    Its settings (its dataclass fields, :mod:`zsgjax.methods.settings`) become
    ``TrainConfig`` options: fields for the methods registered when :mod:`zsgjax.train`
    is imported, ``TrainConfig.method_options`` entries for later ones.

    Raises ``ValueError`` when ``cls.name`` is empty or already taken by another class,
    or a setting's option name is another method's; ``TypeError`` for a field not
    declared with :func:`zsgjax.configs.param` (default, help, range).
    """
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"register: expected a Method subclass, got {cls!r}")
    name = cls.name
    if not isinstance(name, str) or not name:
        raise ValueError(f"register: {cls.__name__}.name must be a non-empty string")
    if name in _METHODS and _METHODS[name] is not cls:
        raise ValueError(f"register: a method named '{name}' is already registered ({_METHODS[name].__name__})")
    merge_settings([*_METHODS.values(), cls])  # TypeError / ValueError before anything is registered
    _METHODS[name] = cls
    return cls


def method_names() -> tuple[str, ...]:
    """Names of the registered methods, in registration order."""
    return tuple(_METHODS)


def method_class(name: str) -> type[Method]:
    """The class registered as ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return _METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method '{name}'; known: {', '.join(_METHODS)}") from None


def registered_settings() -> dict[str, Setting]:
    """``{option: Setting}`` of every registered method, in registration and field order,
    each setting once (``cse_epsilon`` is CSE's, read by ``cse`` and ``cse_ldr``)."""
    return merge_settings(_METHODS.values())


def make_method(config: Any) -> Method:
    """The method of a resolved ``TrainConfig`` (``config.method`` names it)."""
    return method_class(config.method).from_config(config)
