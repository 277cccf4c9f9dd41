"""Name -> environment constructor registry.

``make(name, **kwargs)`` builds an environment; an unknown name raises a
``ValueError`` listing the known ones. Constructors are registered lazily by
import path so that importing :mod:`zsgjax.envs` does not import MuJoCo.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Callable

from zsgjax.envs.base import ContextualEnv

_REGISTRY: dict[str, str | Callable[..., ContextualEnv]] = {}


def register(name: str, constructor: str | Callable[..., ContextualEnv]) -> None:
    """Register ``constructor`` (a callable or a ``"module:attr"`` path) under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"register: `name` must be a non-empty string, got {name!r}")
    if isinstance(constructor, str):
        if constructor.count(":") != 1 or not all(constructor.split(":")):
            raise ValueError(f"register: `constructor` must be a callable or a 'module:attr' path, got {constructor!r}")
    elif not callable(constructor):
        raise ValueError(f"register: `constructor` must be a callable or a 'module:attr' path, got {constructor!r}")
    _REGISTRY[name] = constructor


def registered_names() -> list[str]:
    return sorted(_REGISTRY)


def _resolve(name: str) -> Callable[..., ContextualEnv]:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown environment '{name}'; known environments: {', '.join(registered_names())}")
    ctor = _REGISTRY[name]
    if isinstance(ctor, str):
        module, attr = ctor.split(":")
        ctor = getattr(importlib.import_module(module), attr)
        _REGISTRY[name] = ctor
    return ctor


def make(name: str, **kwargs) -> ContextualEnv:
    """Build the environment registered as ``name`` with constructor ``kwargs``.

    ``ValueError`` for an unknown name (listing the known ones) or an option the
    constructor does not take (listing the ones it does).
    """
    ctor = _resolve(name)
    try:
        signature = inspect.signature(ctor)
    except (TypeError, ValueError):  # no introspectable signature: let the constructor decide
        signature = None
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as e:
            accepted = [p.name for p in signature.parameters.values()
                        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            raise ValueError(f"make('{name}'): {e}; options of '{name}': "
                             f"{', '.join(accepted) if accepted else 'none'}") from None
    return ctor(**kwargs)
