"""Name -> environment constructor registry.

``make(name, **kwargs)`` builds an environment; an unknown name raises a
``ValueError`` listing the known ones. Constructors are registered lazily by
import path so that importing :mod:`zsgjax.envs` does not import MuJoCo.

Packages add environments without this module knowing them: a distribution declares
an entry point in the group :data:`ENTRY_POINT_GROUP` (``"zsgjax.envs"``) whose
object is a callable returning ``{name: constructor}`` (a constructor being a
callable or a ``"module:attr"`` path). The registry reads the group once, on the
first :func:`registered_names` or :func:`make`; zsgjax's own mujoco_playground
adapter registers its ``playground:*`` names this way
(:func:`zsgjax.adapters.playground_envs.registrations`), so the core never imports
an adapter. A name registered explicitly with :func:`register` wins over a plugin's.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from typing import Callable

from zsgjax.envs.base import ContextualEnv

ENTRY_POINT_GROUP = "zsgjax.envs"

_REGISTRY: dict[str, str | Callable[..., ContextualEnv]] = {}
_PLUGINS_READ: list[bool] = []  # non-empty once the entry points have been read


def _read_plugins() -> None:
    """Register every name the ``zsgjax.envs`` entry points provide (once per process)."""
    if _PLUGINS_READ:
        return
    _PLUGINS_READ.append(True)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            provided = entry.load()()
        except Exception as e:  # a broken plugin must not take the core's envs down with it
            raise ValueError(f"environment plugin '{entry.name}' ({entry.value}) of the entry-point group "
                             f"'{ENTRY_POINT_GROUP}' failed to load: {type(e).__name__}: {e}") from e
        if not isinstance(provided, dict):
            raise ValueError(f"environment plugin '{entry.name}' ({entry.value}) must return a dict "
                             f"{{name: constructor}}, got {type(provided).__name__}")
        for name, constructor in provided.items():
            if name not in _REGISTRY:
                register(name, constructor)


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
    """Every registered environment name, the entry points' included, sorted."""
    _read_plugins()
    return sorted(_REGISTRY)


def _resolve(name: str) -> Callable[..., ContextualEnv]:
    if isinstance(name, str) and name not in _REGISTRY:
        _read_plugins()
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown environment '{name}'; known environments: {', '.join(registered_names())}")
    ctor = _REGISTRY[name]
    if isinstance(ctor, str):
        module, attr = ctor.split(":")
        ctor = getattr(importlib.import_module(module), attr)
        _REGISTRY[name] = ctor
    return ctor


def constructor(name: str) -> Callable[..., ContextualEnv]:
    """The callable :func:`make` calls for ``name`` (imported on first use); ``ValueError``
    for an unknown name, listing the known ones. Lets a caller inspect an environment's
    class or options without building it."""
    return _resolve(name)


def make(name: str, **kwargs) -> ContextualEnv:
    """Build the environment registered as ``name`` with constructor ``kwargs``.

    ``ValueError`` for an unknown name (listing the known ones) or an option the
    constructor does not take (listing the ones it does).
    """
    ctor = constructor(name)
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
