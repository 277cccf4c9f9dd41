"""Atomic ``.npz`` writes for the offline dataset files (linear and control formats)."""

from __future__ import annotations

import os

import numpy as np

from zsgjax.reporting.files import atomic_path


def write_npz(path: str, payload: dict[str, np.ndarray]) -> None:
    """``np.savez`` to ``path`` atomically; an ``OSError`` (unwritable directory, full disk) names ``path``
    (the temporary file's name follows in parentheses)."""
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **payload)
                f.flush()
                os.fsync(f.fileno())
    except OSError as e:
        detail = f" (temporary file {e.filename!r})" if e.filename and os.fspath(e.filename) != path else ""
        raise OSError(e.errno, f"cannot write {path!r}: {e.strerror or e}{detail}", path) from e
