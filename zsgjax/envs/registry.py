"""Name -> environment constructor registry.

``make(name, **kwargs)`` builds an environment; an unknown name raises a
``ValueError`` listing the known ones. Constructors are registered lazily by
import path so that importing :mod:`zsgjax.envs` does not import MuJoCo.
"""

from __future__ import annotations

import importlib
from typing import Callable

from zsgjax.envs.base import ContextualEnv

_REGISTRY: dict[str, str | Callable[..., ContextualEnv]] = {}


def register(name: str, constructor: str | Callable[..., ContextualEnv]) -> None:
    """Register ``constructor`` (a callable or a ``"module:attr"`` path) under ``name``."""
    _REGISTRY[name] = constructor


def registered_names() -> list[str]:
    return sorted(_REGISTRY)


def _resolve(name: str) -> Callable[..., ContextualEnv]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown environment '{name}'; known environments: {', '.join(registered_names())}")
    ctor = _REGISTRY[name]
    if isinstance(ctor, str):
        module, attr = ctor.split(":")
        ctor = getattr(importlib.import_module(module), attr)
        _REGISTRY[name] = ctor
    return ctor


def make(name: str, **kwargs) -> ContextualEnv:
    """Build the environment registered as ``name`` with constructor ``kwargs``."""
    return _resolve(name)(**kwargs)
