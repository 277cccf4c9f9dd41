"""zsgjax: zero-shot context generalization in reinforcement learning, in JAX.

Importing the package is cheap: it imports no JAX, brax or MuJoCo module (the
command line parses its options, and ``zsgjax train --help`` answers, before any of
them is loaded).

``mujoco.mjx`` prints ``Failed to import warp: ...`` / ``Failed to import
mujoco_warp: ...`` on stdout when its optional Warp backend cannot be loaded
(zsgjax uses the JAX backend only). Importing ``zsgjax`` installs a finder that
loads ``mujoco.mjx.warp`` (the module printing them) with exactly those lines
dropped, whenever ``mujoco.mjx`` is imported afterwards; anything else that module
prints is passed through.
"""

from __future__ import annotations

import contextlib as _contextlib
import importlib.abc as _abc
import importlib.machinery as _machinery
import io as _io
import sys as _sys

__version__ = "0.1.0"

_WARP_MODULE = "mujoco.mjx.warp"
_WARP_LINES = ("Failed to import warp:", "Failed to import mujoco_warp:")


class _QuietLoader(_abc.Loader):
    """Runs a module's loader with stdout captured, re-printing all but the Warp lines."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        buffer = _io.StringIO()
        try:
            with _contextlib.redirect_stdout(buffer):
                self._loader.exec_module(module)
        finally:
            kept = [line for line in buffer.getvalue().splitlines(keepends=True) if not line.startswith(_WARP_LINES)]
            if kept:
                _sys.stdout.write("".join(kept))

    def __getattr__(self, name):  # get_resource_reader, get_source, ... of the real loader
        return getattr(self._loader, name)


class _QuietWarpFinder(_abc.MetaPathFinder):
    """Finds ``mujoco.mjx.warp`` as the path finder does, with a :class:`_QuietLoader`."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _WARP_MODULE:
            return None
        spec = _machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


if not any(isinstance(f, _QuietWarpFinder) for f in _sys.meta_path):
    _sys.meta_path.insert(0, _QuietWarpFinder())
