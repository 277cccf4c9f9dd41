"""Minari interchange: a dataset of n environments as n Minari datasets, and back.

Minari (Farama's offline-RL dataset format, ``minari`` 0.5) stores episodes of one
environment. :func:`to_minari` writes environment ``i`` of a
:class:`~zsgjax.offline.control.transitions.Transitions` as the Minari dataset

    ``<name>/env-<i:05d>-v0``      (namespace ``name``, one dataset per environment)

under a local datasets root (what ``MINARI_DATASETS_PATH`` points at), through
Minari's own writer :func:`minari.create_dataset_from_buffers` (HDF5 storage; it
needs ``h5py``, Minari's ``hdf5`` extra). No Gymnasium environment is involved: the
spaces are given explicitly (observation ``Box(-inf, inf, (obs_dim,))`` without the
context, action ``Box(-s, s, (act_dim,))`` with ``s`` the behaviour's action range),
and the context, its names, the environment name and options and the behaviour are
stored in the dataset metadata under the key ``"zsgjax"``. Each episode carries its
context too, as the per-step info ``infos["context"]`` (``(T + 1, context_dim)``), so a
user of Minari's own API sees it with the data.

Integrity: the ``"zsgjax"`` record holds ``data_digest``, a BLAKE2b digest of the
environment's arrays as exported (as :mod:`~zsgjax.offline.control.storage`'s ``.npz``
format does per field), and ``record_digest``, one of the record itself. :func:`from_minari`
recomputes both, and refuses a set whose data (a flipped byte in the HDF5 file) or
metadata (an edited ``num_envs`` or context) no longer match, or that holds more
environments than its records say. Every error names the dataset id and the file.

Episodes: environment ``i``'s transitions are split after every transition with
``terminal`` or ``truncated`` (the data of :func:`~zsgjax.offline.control.collect.collect`
end with one); an episode of ``T`` transitions becomes Minari's ``T + 1``
observations ``obs[s], ..., obs[s + T - 1], next_obs[s + T - 1]`` with
``terminations``/``truncations`` the two flags. That needs ``next_obs[t] == obs[t + 1]``
inside an episode, which is checked. :func:`from_minari` reads the set back with
:func:`minari.load_dataset` (local files only, never a download); the round trip is
exact.

The root is handed to Minari through ``MINARI_DATASETS_PATH``, set for the duration
of each call (under a lock) and restored afterwards. The n datasets are written into
a temporary directory inside ``root`` and moved into place with one rename, so a
failed export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import warnings
from typing import Iterator

import jax.numpy as jnp
import numpy as np

from zsgjax.checkpoint import leaf_digests
from zsgjax.offline.control.transitions import (
    FIELDS, DatasetInfo, Transitions, as_float32, check_transitions,
)

MINARI_FORMAT = "zsgjax.offline.control.minari"
MINARI_FORMAT_VERSION = 1
METADATA_KEY = "zsgjax"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][-\w]*(/[A-Za-z0-9_][-\w]*)*$")
_ROOT_LOCK = threading.Lock()
_NAMESPACE_FILE = "namespace_metadata.json"


def dataset_id(name: str, index: int) -> str:
    """The Minari id of environment ``index`` of the set ``name``: ``"<name>/env-<index:05d>-v0"``."""
    return f"{name}/env-{index:05d}-v0"


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"`name` must be a Minari namespace: words of letters, digits, '_' and '-' separated by '/' "
                         f"(e.g. 'zsgjax/pendulum_goal-random'), got {name!r}")
    return name


def _minari():
    try:
        import minari
        import h5py  # noqa: F401  (Minari's HDF5 storage)
    except ImportError as e:
        raise ValueError(f"Minari interchange needs `minari` with its HDF5 storage: "
                         f"pip install 'minari[hdf5]' ({e})") from e
    return minari


@contextlib.contextmanager
def _datasets_root(root: str) -> Iterator[None]:
    """``MINARI_DATASETS_PATH = root`` for the duration (under a lock), then restored."""
    with _ROOT_LOCK:
        old = os.environ.get("MINARI_DATASETS_PATH")
        os.environ["MINARI_DATASETS_PATH"] = root
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = old


def _root(root) -> str:
    try:
        root = os.path.abspath(os.fspath(root))
    except TypeError:
        raise ValueError(f"`root` must be a directory path (str or os.PathLike), got {root!r}") from None
    if os.path.exists(root) and not os.path.isdir(root):
        raise ValueError(f"`root` {root!r} is a file, not a directory")
    return root


def episode_slices(terminal: np.ndarray, truncated: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the episodes of one environment's ``(N,)`` flags.

    An episode ends after each transition with ``terminal | truncated``; transitions
    after the last such one form a final episode that ends with neither flag.
    """
    ends = np.nonzero(np.asarray(terminal) | np.asarray(truncated))[0] + 1
    N = len(terminal)
    bounds = [0, *ends.tolist()] + ([N] if not len(ends) or ends[-1] != N else [])
    return list(zip(bounds[:-1], bounds[1:]))


def to_minari(data: Transitions, info: DatasetInfo, root, name: str, *, author: str = "zsgjax",
              author_email: str = "unknown", code_permalink: str = "https://github.com/zsgjax/zsgjax",
              description: str | None = None) -> list[str]:
    """Write environment ``i`` of ``data`` as Minari dataset :func:`dataset_id` ``(name, i)`` under ``root``.

    Args:
      data, info: the dataset (as :func:`~zsgjax.offline.control.collect.collect` or
        :func:`~zsgjax.offline.control.storage.load` return it).
      root: the local Minari datasets root (created if missing).
      name: the namespace of the set (letters, digits, ``_``, ``-``, ``/``).
      author, author_email, code_permalink, description: Minari's metadata fields.
    Returns:
      the n dataset ids, in environment order.
    Raises:
      ValueError: bad data, a namespace that exists already under ``root``, or an
        episode whose ``next_obs`` is not the following ``obs`` (Minari stores one
        observation sequence per episode).
    """
    check_transitions(data)
    if not isinstance(info, DatasetInfo):
        raise ValueError(f"to_minari: `info` must be a DatasetInfo, got {type(info).__name__}")
    info.check_compatible(data)
    name = _check_name(name)
    root = _root(root)
    if os.path.exists(os.path.join(root, name)):
        raise ValueError(f"to_minari: `name` {name!r} exists already under {root!r}; choose another name or delete it")
    minari = _minari()
    from gymnasium import spaces

    data = as_float32(data)
    arr = {f: np.asarray(getattr(data, f)) for f in FIELDS}
    scale = info.behaviour.get("action_scale")
    bound = float(scale) if isinstance(scale, (int, float)) and scale > 0 else np.inf
    obs_space = spaces.Box(-np.inf, np.inf, (data.obs_dim,), np.float32)
    act_space = spaces.Box(-bound, bound, (data.action_dim,), np.float32)
    episodes = [_episodes(arr, i) for i in range(data.num_envs)]  # checks every environment before writing
    os.makedirs(root, exist_ok=True)
    tmp_root = tempfile.mkdtemp(prefix=".zsgjax-minari-", dir=root)
    ids = [dataset_id(name, i) for i in range(data.num_envs)]
    try:
        with _datasets_root(tmp_root), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(eval_env|env_spec).*", category=UserWarning)
            for i, (eps, did) in enumerate(zip(episodes, ids)):
                record = {
                    "format": MINARI_FORMAT, "format_version": MINARI_FORMAT_VERSION, "env_index": i,
                    "num_envs": data.num_envs, "num_transitions": data.num_transitions,
                    "context": arr["contexts"][i].tolist(), "info": info.to_dict(),
                    "data_digest": env_digest({f: arr[f][i] for f in FIELDS}),
                }
                dataset = minari.create_dataset_from_buffers(
                    did, eps, observation_space=obs_space, action_space=act_space,
                    algorithm_name=f"zsgjax behaviour '{info.behaviour.get('label', 'custom')}'", author=author,
                    author_email=author_email, code_permalink=code_permalink,
                    description=description or f"{info.env} at context {arr['contexts'][i].tolist()} "
                                               f"(environment {i} of {data.num_envs})",
                    data_format="hdf5",
                )
                dataset.storage.update_metadata({METADATA_KEY: {**record, "record_digest": record_digest(record)}})
        _publish(tmp_root, root, name)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return ids


def _publish(tmp_root: str, root: str, name: str) -> None:
    """Move ``tmp_root/name`` to ``root/name`` (one rename) and mark the parent namespaces as Minari does."""
    target = os.path.join(root, name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.rename(os.path.join(tmp_root, name), target)
    parts = name.split("/")
    for k in range(1, len(parts)):
        meta = os.path.join(root, *parts[:k], _NAMESPACE_FILE)
        if not os.path.exists(meta):
            with open(meta, "w") as f:
                json.dump({}, f)


def _episodes(arr: dict[str, np.ndarray], i: int) -> list:
    from minari.data_collector.episode_buffer import EpisodeBuffer

    out = []
    for start, stop in episode_slices(arr["terminal"][i], arr["truncated"][i]):
        obs, nxt = arr["obs"][i, start:stop], arr["next_obs"][i, start:stop]
        if not np.array_equal(nxt[:-1], obs[1:]):
            t = start + int(np.nonzero(np.any(nxt[:-1] != obs[1:], axis=-1))[0][0])
            raise ValueError(f"to_minari: environment {i}, transition {t}: `next_obs` differs from the next "
                             "transition's `obs` but neither `terminal` nor `truncated` ends the episode there; "
                             "Minari stores one observation sequence per episode")
        out.append(EpisodeBuffer(
            observations=np.concatenate([obs, nxt[-1:]], axis=0), actions=arr["action"][i, start:stop],
            rewards=arr["reward"][i, start:stop], terminations=arr["terminal"][i, start:stop],
            truncations=arr["truncated"][i, start:stop],
            infos={"context": np.repeat(arr["contexts"][i][None], stop - start + 1, axis=0)},
        ))
    return out


def env_digest(arrays: dict[str, np.ndarray]) -> str:
    """BLAKE2b digest of one environment's fields (``FIELDS`` order; dtype, shape and bytes of each)."""
    h = hashlib.blake2b(digest_size=16)
    for d in leaf_digests([np.asarray(arrays[f]) for f in FIELDS]):
        h.update(d.encode())
    return h.hexdigest()


def record_digest(record: dict) -> str:
    """BLAKE2b digest of a ``"zsgjax"`` metadata record without its ``record_digest`` (canonical JSON)."""
    body = {k: v for k, v in record.items() if k != "record_digest"}
    return hashlib.blake2b(json.dumps(body, sort_keys=True).encode(), digest_size=16).hexdigest()


def _files(root: str, did: str) -> tuple[str, str]:
    """The data and metadata files of dataset ``did`` under ``root`` (Minari's HDF5 layout)."""
    folder = os.path.join(root, did, "data")
    return os.path.join(folder, "main_data.hdf5"), os.path.join(folder, "metadata.json")


def from_minari(root, name: str) -> tuple[Transitions, DatasetInfo]:
    """Read a set written by :func:`to_minari` back: ``(data, info)`` (exact round trip).

    Reads local files only (``minari.load_dataset(..., download=False)``). ``ValueError``
    naming the dataset id and its file for: a missing dataset or file, an unreadable or
    truncated file, one not written by zsgjax, metadata edited after the export
    (``record_digest``), data that do not match ``data_digest`` (flipped bytes), episodes
    whose ``infos["context"]`` differs from the record's context, environments that
    disagree (format, description, number of transitions), or more environments on disk
    than the records' ``num_envs``.
    """
    name = _check_name(name)
    root = _root(root)
    minari = _minari()
    rows = []
    with _datasets_root(root):
        n = None
        i = 0
        while n is None or i < n:
            did = dataset_id(name, i)
            data_file, meta_file = _files(root, did)
            if not os.path.isdir(os.path.join(root, did)):
                raise ValueError(f"from_minari: no Minari dataset {did!r} under {root!r}"
                                 + ("" if n is None else f" (the set has {n} environments)"))
            for path in (meta_file, data_file):
                if not os.path.isfile(path):
                    raise ValueError(f"from_minari: {did!r}: file {path!r} is missing")
            try:
                dataset = minari.load_dataset(did, download=False)
                meta = dataset.storage.metadata.get(METADATA_KEY)
            except Exception as e:  # Minari / h5py / json raise many types for damaged files
                raise ValueError(f"from_minari: {did!r}: cannot read {meta_file!r} / {data_file!r} "
                                 f"({type(e).__name__}: {e})") from None
            meta = _check_record(meta, did, meta_file, i)
            if n is None:
                n, first = int(meta["num_envs"]), meta
            elif meta["info"] != first["info"] or meta["num_transitions"] != first["num_transitions"] \
                    or meta["num_envs"] != n:
                raise ValueError(f"from_minari: {did!r} ({meta_file!r}) disagrees with environment 0 of the set (its "
                                 "description, number of environments or number of transitions differs)")
            env = _read_env(dataset, did, data_file, int(first["num_transitions"]), meta["context"])
            if env_digest(env) != meta["data_digest"]:
                raise ValueError(f"from_minari: {did!r}: the data in {data_file!r} do not match the digest stored "
                                 "in its metadata (the file is corrupt or was modified)")
            rows.append(env)
            i += 1
        extra = os.path.join(root, dataset_id(name, n))
        if os.path.exists(extra):
            raise ValueError(f"from_minari: {extra!r} exists, but the set's metadata say it has {n} environments "
                             "(edited metadata or a mixed-up set)")
    info = DatasetInfo.from_dict(first["info"], f"from_minari: {dataset_id(name, 0)!r} metadata `info`")
    data = Transitions(**{f: jnp.asarray(np.stack([r[f] for r in rows])) for f in FIELDS})
    info.check_compatible(data)
    return check_transitions(data), info


def _check_record(meta, did: str, meta_file: str, index: int) -> dict:
    """The ``"zsgjax"`` record of ``did``, checked (format, version, its own digest, the index)."""
    where = f"from_minari: {did!r} ({meta_file!r})"
    if not isinstance(meta, dict) or meta.get("format") != MINARI_FORMAT:
        raise ValueError(f"{where} has no '{METADATA_KEY}' metadata of format {MINARI_FORMAT!r}; "
                         "not written by zsgjax.offline.control.to_minari")
    if meta.get("format_version") != MINARI_FORMAT_VERSION:
        raise ValueError(f"{where} metadata `format_version` is {meta.get('format_version')!r}; "
                         f"this zsgjax reads version {MINARI_FORMAT_VERSION}")
    if meta.get("record_digest") != record_digest(meta):
        raise ValueError(f"{where}: its '{METADATA_KEY}' metadata do not match their digest (edited after the export, "
                         "or corrupt)")
    if meta.get("env_index") != index:
        raise ValueError(f"{where} metadata `env_index` is {meta.get('env_index')!r}, expected {index}")
    return meta


def _read_env(dataset, did: str, data_file: str, num_transitions: int, context: list) -> dict[str, np.ndarray]:
    parts = {f: [] for f in ("obs", "action", "reward", "next_obs", "terminal", "truncated")}
    want = np.asarray(context, np.float32)
    try:
        for k, ep in enumerate(dataset.iterate_episodes()):
            o = np.asarray(ep.observations, np.float32)
            parts["obs"].append(o[:-1])
            parts["next_obs"].append(o[1:])
            parts["action"].append(np.asarray(ep.actions, np.float32))
            parts["reward"].append(np.asarray(ep.rewards, np.float32))
            parts["terminal"].append(np.asarray(ep.terminations, bool))
            parts["truncated"].append(np.asarray(ep.truncations, bool))
            ctx = np.asarray(ep.infos.get("context", np.zeros((0,))), np.float32)
            if ctx.shape != (len(o), len(want)) or not np.array_equal(ctx, np.broadcast_to(want, ctx.shape)):
                raise ValueError(f"from_minari: {did!r}: episode {k} in {data_file!r} has `infos['context']` of shape "
                                 f"{ctx.shape} that is not the metadata's context {context} at every step")
    except ValueError as e:
        if str(e).startswith("from_minari:"):
            raise
        raise ValueError(f"from_minari: {did!r}: cannot read the episodes in {data_file!r} "
                         f"({type(e).__name__}: {e})") from None
    except Exception as e:  # h5py raises OSError, KeyError, RuntimeError... for damaged files
        raise ValueError(f"from_minari: {did!r}: cannot read the episodes in {data_file!r} "
                         f"({type(e).__name__}: {e})") from None
    out = {f: np.concatenate(v, axis=0) if v else np.zeros((0,)) for f, v in parts.items()}
    if len(out["reward"]) != num_transitions:
        raise ValueError(f"from_minari: {did!r}: {data_file!r} holds {len(out['reward'])} transitions, its metadata "
                         f"say {num_transitions}")
    out["contexts"] = want
    return out
