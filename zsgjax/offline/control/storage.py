"""One self-describing ``.npz`` file per dataset of n environments' transitions.

:func:`save` writes, atomically (:func:`zsgjax.reporting.files.atomic_path`), an
uncompressed NumPy ``.npz`` archive with one member per
:class:`~zsgjax.offline.control.transitions.Transitions` field (``obs``, ``action``,
``reward``, ``next_obs``, ``terminal``, ``truncated``, ``contexts``) and a ``header``
member: a JSON string with

* ``format_name`` (:data:`FORMAT_NAME`) and ``format_version`` (:data:`FORMAT_VERSION`);
* ``info``: the :class:`~zsgjax.offline.control.transitions.DatasetInfo` (environment
  name and constructor options, context names, behaviour description, horizon);
* ``num_envs``, ``num_transitions``, ``obs_dim``, ``action_dim``, ``context_dim``;
* ``fields``: per field its ``shape``, ``dtype`` and ``blake2b_16``, the BLAKE2b
  digest of its dtype, shape and bytes (:func:`zsgjax.checkpoint.leaf_digests`).

:func:`load` checks, in order, and names the field in every error: the archive is
readable (a truncated file names the member it ends in), the header is this format
and version, every field is present and readable (the archive's CRC catches a flipped
byte), has the stored dtype (float32 or bool) and the shape the header's sizes give,
float fields are finite, and every digest matches.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile

import jax.numpy as jnp
import numpy as np

from zsgjax.checkpoint import leaf_digests
from zsgjax.offline.control.transitions import (
    BOOL_FIELDS, FIELDS, DatasetInfo, Transitions, as_float32, check_transitions,
)
from zsgjax.offline.npz import write_npz
from zsgjax.reporting.files import check_file_path

FORMAT_NAME = "zsgjax.offline.control.transitions"
FORMAT_VERSION = 1
_HEADER = "header"
_SIZES = ("num_envs", "num_transitions", "obs_dim", "action_dim", "context_dim")


def field_shapes(sizes: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """The shape of every field from ``num_envs``, ``num_transitions``, ``obs_dim``, ``action_dim``, ``context_dim``."""
    n, N = sizes["num_envs"], sizes["num_transitions"]
    return {"obs": (n, N, sizes["obs_dim"]), "action": (n, N, sizes["action_dim"]), "reward": (n, N),
            "next_obs": (n, N, sizes["obs_dim"]), "terminal": (n, N), "truncated": (n, N),
            "contexts": (n, sizes["context_dim"])}


def _dtype(field: str) -> np.dtype:
    return np.dtype(np.bool_) if field in BOOL_FIELDS else np.dtype(np.float32)


def save(path: str | os.PathLike, data: Transitions, info: DatasetInfo) -> str:
    """Write ``data`` and ``info`` to ``path`` atomically; returns the path.

    ``data`` is checked first (:func:`check_transitions`: shapes, finiteness), so no
    file is written that :func:`load` would refuse. Float fields are stored as float32.
    """
    path = check_file_path(path, "path")
    check_transitions(data)
    if not isinstance(info, DatasetInfo):
        raise ValueError(f"save: `info` must be a DatasetInfo, got {type(info).__name__}")
    info.check_compatible(data)
    data = as_float32(data)
    arrays = {f: np.asarray(getattr(data, f)) for f in FIELDS}
    digests = leaf_digests([arrays[f] for f in FIELDS])
    header = {
        "format_name": FORMAT_NAME, "format_version": FORMAT_VERSION, "info": info.to_dict(),
        "num_envs": data.num_envs, "num_transitions": data.num_transitions, "obs_dim": data.obs_dim,
        "action_dim": data.action_dim, "context_dim": data.context_dim,
        "fields": {f: {"shape": list(arrays[f].shape), "dtype": arrays[f].dtype.str, "blake2b_16": d}
                   for f, d in zip(FIELDS, digests)},
    }
    payload = {_HEADER: np.asarray(json.dumps(header, sort_keys=True)), **arrays}
    write_npz(path, payload)
    return path


def _truncated_member(path: str) -> str | None:
    """The archive member a truncated ``.npz`` ends in (walking the local headers), or ``None``."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        offset = 0
        while True:
            f.seek(offset)
            head = f.read(30)
            if len(head) < 4 or head[:4] != b"PK\x03\x04":
                return None
            if len(head) < 30:
                return "(a member header)"
            _, _, _, _, _, _, _, csize, _, name_len, extra_len = struct.unpack("<4sHHHHHIIIHH", head)
            name = f.read(name_len).decode("utf-8", "replace")
            extra = f.read(extra_len)
            if csize == 0xFFFFFFFF:  # zip64: the sizes are in the extra field
                pos = 0
                while pos + 4 <= len(extra):
                    hid, hsize = struct.unpack("<HH", extra[pos:pos + 4])
                    if hid == 1 and hsize >= 16:
                        csize = struct.unpack("<Q", extra[pos + 12:pos + 20])[0]
                        break
                    pos += 4 + hsize
            end = offset + 30 + name_len + extra_len + csize
            if len(name) < name_len or end > size:
                return name.removesuffix(".npy")
            offset = end


def load(path: str | os.PathLike) -> tuple[Transitions, DatasetInfo]:
    """Read a file written by :func:`save`: ``(data, info)``.

    Raises:
      ValueError: a missing, unreadable, truncated, foreign or wrong-version file, or a
        field that is missing, unreadable, of the wrong dtype or shape, non-finite, or
        does not match its checksum; the message names the field.
    """
    path = os.fspath(path)
    where = f"load: {path!r}"
    if not os.path.isfile(path):
        raise ValueError(f"load: `path` {path!r} is not a file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        member = _truncated_member(path)
        hint = f"; the file is truncated inside field `{member}`" if member else ""
        raise ValueError(f"{where} is not a readable {FORMAT_NAME} file ({type(e).__name__}: {e}){hint}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{where} is a single .npy array, not a {FORMAT_NAME} archive")
    with archive:
        members = set(archive.files)
        header = _read_header(archive, members, where)
        sizes, shapes = _check_header(header, where)
        arrays = {}
        for field in FIELDS:
            if field not in members:
                raise ValueError(f"{where}: field `{field}` is missing")
            try:
                arrays[field] = archive[field]
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as e:
                raise ValueError(f"{where}: field `{field}` is unreadable (corrupt data: "
                                 f"{type(e).__name__}: {e})") from None
    for field in FIELDS:
        a, want = arrays[field], header["fields"][field]
        if a.dtype != _dtype(field) or a.dtype.str != want.get("dtype"):
            raise ValueError(f"{where}: field `{field}` has dtype {a.dtype} (header: {want.get('dtype')}); "
                             f"expected {_dtype(field)}")
        if a.shape != shapes[field] or list(a.shape) != list(want.get("shape", [])):
            raise ValueError(f"{where}: field `{field}` has shape {a.shape}; the header's sizes give {shapes[field]}")
    for field in FIELDS:
        a = arrays[field]
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise ValueError(f"{where}: field `{field}` has {int(np.sum(~np.isfinite(a)))} non-finite value(s)")
    digests = leaf_digests([arrays[f] for f in FIELDS])
    for field, digest in zip(FIELDS, digests):
        if digest != header["fields"][field].get("blake2b_16"):
            raise ValueError(f"{where}: field `{field}` does not match its stored checksum (the file is corrupt)")
    info = DatasetInfo.from_dict(header.get("info"), f"{where} header `info`")
    data = Transitions(**{f: jnp.asarray(arrays[f]) for f in FIELDS})
    try:
        info.check_compatible(data)
        check_transitions(data)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return data, info


def _read_header(archive, members: set, where: str) -> dict:
    if _HEADER not in members:
        raise ValueError(f"{where}: field `{_HEADER}` is missing; not a {FORMAT_NAME} file")
    try:
        raw = archive[_HEADER]
        header = json.loads(str(raw))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as e:
        raise ValueError(f"{where}: field `{_HEADER}` is unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{where}: field `{_HEADER}` is not a JSON object")
    if header.get("format_name") != FORMAT_NAME:
        raise ValueError(f"{where}: header field `format_name` is {header.get('format_name')!r}, "
                         f"expected {FORMAT_NAME!r}")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{where}: header field `format_version` is {version!r}; this zsgjax reads version "
                         f"{FORMAT_VERSION}")
    return header


def _check_header(header: dict, where: str) -> tuple[dict[str, int], dict[str, tuple[int, ...]]]:
    sizes = {}
    for key in _SIZES:
        v = header.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{where}: header field `{key}` must be an integer >= 1, got {v!r}")
        sizes[key] = v
    fields = header.get("fields")
    if not isinstance(fields, dict):
        raise ValueError(f"{where}: header field `fields` must be a JSON object, got {type(fields).__name__}")
    for field in FIELDS:
        if not isinstance(fields.get(field), dict):
            raise ValueError(f"{where}: header field `fields.{field}` is missing")
    return sizes, field_shapes(sizes)
