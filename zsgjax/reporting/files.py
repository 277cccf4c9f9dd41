"""Atomic file writes and directory locks.

Writes go to a temporary file in the target's directory, then ``os.replace``: a
reader (or a crash) never sees a half-written file, either the old content or the
new one. Used for tables, CSV/JSON results, metrics, plots and datasets.

:class:`DirectoryLock` keeps two runs out of one directory: an ``fcntl.flock`` on a
lock file, released by the kernel when its process ends however it ends (``kill
-9`` included), so a crashed run never leaves a stale lock; a run that finds the
lock held gets an error naming the holder (process id, host, command, start time).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import socket
import sys
import tempfile
import threading
import time
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


def json_text(obj: Any, indent: int = 2) -> str:
    """``obj`` as strict JSON text (arrays become lists; NaN and infinities become
    ``null``, see :func:`to_jsonable`), ending in a newline. Never writes ``NaN``,
    which strict JSON readers reject."""
    return json.dumps(to_jsonable(obj), indent=indent, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> str:
    """Write ``obj`` as indented JSON atomically (:func:`json_text`: arrays become
    lists, non-finite floats ``null``); returns the path."""
    atomic_write(path, json_text(obj))
    return os.fspath(path)


def check_writable_directory(path: str | os.PathLike, name: str = "directory") -> str:
    """``path`` (a string) when it is, or can be created as, a directory this process can
    create files in; ``ValueError`` naming ``name`` and the reason otherwise.

    A missing ``path`` needs its nearest existing parent to be such a directory.
    Nothing is created (a probe file is made and removed at once).
    """
    try:
        path = os.fspath(path)
    except TypeError:
        raise ValueError(f"{name} must be a path (str or os.PathLike), got {path!r}") from None
    if not path or not str(path).strip():
        raise ValueError(f"{name} must name a directory, got an empty string")
    full = os.path.abspath(path)
    if os.path.exists(full) and not os.path.isdir(full):
        raise ValueError(f"{name} '{path}' is a file, not a directory; give a directory (new or existing) to write into")
    probe = full
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise ValueError(f"{name} '{path}' cannot be created: '{probe}' is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise ValueError(f"{name} '{path}' is not writable ('{probe}': {e.strerror or e}); give a directory you can "
                         "write to") from None
    return path


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """``fig.savefig`` to ``path`` atomically, as PNG."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")


class DirectoryLock:
    """An exclusive lock on ``directory`` (created if missing): ``fcntl.flock`` on
    ``<directory>/<name>``.

    The kernel releases the lock when the holding process ends, however it ends, so
    a crash never leaves a stale lock. The holder writes its process id, host,
    command line and start time into the lock file; :meth:`acquire` reports them
    when the lock is held elsewhere. The lock file is never removed or replaced (a
    new file would be a second, independent lock). One instance holds at most one
    lock; use it as a context manager or call :meth:`release`.
    """

    def __init__(self, directory: str | os.PathLike, name: str = ".zsgjax.lock", what: str = "directory"):
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, name)
        self.what = what
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout_s: float = 0.0) -> "DirectoryLock":
        """Take the lock, waiting up to ``timeout_s`` seconds for its holder to let go;
        ``ValueError`` naming the holder when it is still held then (or when the lock
        file cannot be created)."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: this DirectoryLock is already held")
        try:
            os.makedirs(self.directory, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~current_umask())
        except OSError as e:
            raise ValueError(f"cannot lock {self.what} '{self.directory}': {e.strerror or e} ({self.path})") from None
        deadline = time.monotonic() + max(0.0, float(timeout_s))
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self.holder()
                    os.close(fd)
                    raise ValueError(f"{self.what} '{self.directory}' is in use by another run ({holder}); wait for "
                                     "it to end or choose another directory") from None
                time.sleep(0.05)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
                  "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._fd = fd
        return self

    def holder(self) -> str:
        """Who holds the lock, as the holder recorded it (``pid P on host H since T: command C``)."""
        try:
            with open(self.path) as f:
                h = json.loads(f.read() or "{}")
            return f"pid {h['pid']} on host {h['host']} since {h['since']}: {h['command']}"
        except (OSError, ValueError, KeyError, TypeError):
            return f"holder unknown; the lock file is {self.path}"

    def release(self) -> None:
        """Let go of the lock (a no-op when not held)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> "DirectoryLock":
        return self if self.held else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
