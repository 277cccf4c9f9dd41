"""Atomic file writes: a temporary file in the target's directory, then ``os.replace``.

A reader (or a crash) never sees a half-written file: either the old content or the
new one. Used for tables, CSV/JSON results, metrics, plots and datasets.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import threading
from typing import Any, Iterator, Mapping

import jax
import numpy as np


def current_umask() -> int:
    """The process's file-mode creation mask, read without changing it.

    Linux reports it in ``/proc/self/status``; elsewhere it is read with the
    ``os.umask`` set-and-restore pair, under a lock so that threads of this module do
    not interleave.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


def check_file_path(path: str | os.PathLike, name: str = "path") -> str:
    """``path`` as a string, or ``ValueError`` when it cannot be a file: an existing
    directory, a name ending in a path separator, or an empty name."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise ValueError(f"`{name}` must be a file path (str or os.PathLike), got {path!r}") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path or path.endswith((os.sep, os.altsep or os.sep)) or os.path.basename(path) in ("", ".", ".."):
        raise ValueError(f"`{name}` must name a file, got {path!r} (a directory name)")
    if os.path.isdir(path):
        raise ValueError(f"`{name}` {path!r} is a directory; give the path of a file to write")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    The temporary name ends in ``.tmp``: writers that guess a format from the
    extension (matplotlib) must be told the format explicitly. The result has the
    mode a plain ``open(path, "w")`` would give a new file, ``0o666 & ~umask``
    (``mkstemp`` creates its file ``0o600``). ``ValueError`` when ``path`` is a
    directory (or a name ending in a separator) or its parent is not a directory.
    """
    path = check_file_path(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"`path` {path!r}: a parent of it is a file, not a directory") from None
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    try:
        yield tmp
        if os.path.isdir(path):  # appeared while writing
            raise ValueError(f"`path` {path!r} is a directory; give the path of a file to write")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically."""
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())


def to_jsonable(obj: Any) -> Any:
    """NumPy / JAX values to plain Python (lists, floats); non-finite floats become ``None``."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.ndarray, np.generic, jax.Array)):
        return to_jsonable(np.asarray(obj).tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> str:
    """Write ``obj`` as indented JSON atomically (arrays become lists); returns the path."""
    atomic_write(path, json.dumps(to_jsonable(obj), indent=2) + "\n")
    return os.fspath(path)


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """``fig.savefig`` to ``path`` atomically, as PNG."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
