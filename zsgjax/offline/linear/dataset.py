"""Offline datasets of n environments x K episodes, kept per environment.

Environment ``i`` has context ``contexts[i]`` (and an integer ``context_ids[i]``); its
K episodes of horizon H are stored as state/action/reward/next-state indices, so a
dataset is a pytree whose leaves all start with the environment axis and can be
``vmap``-ed over environments directly:

    states, actions, next_states: (n, K, H) int32
    rewards:                      (n, K, H) float32
    context_ids:                  (n,) int32
    contexts:                     (n, m) float32

:func:`merge_environments` drops the context labels and pools everything into one
environment (the "average MDP" baseline). :func:`save_dataset` writes one
self-describing ``.npz`` file atomically; :func:`load_dataset` checks it.
"""

from __future__ import annotations

import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from zsgjax import checks
from zsgjax.reporting.files import check_file_path
from zsgjax.offline.npz import write_npz
from zsgjax.offline.linear.mdp import ContextualLinearMDP, check_contexts
from zsgjax.offline.linear.policies import check_policy

FORMAT_NAME = "zsgjax.offline.dataset"  # the file format's name (kept across the move to offline.linear)
FORMAT_VERSION = 1
_ARRAYS = ("states", "actions", "rewards", "next_states", "context_ids", "contexts")
_META = ("format_name", "format_version", "num_states", "num_actions", "num_envs", "num_episodes", "horizon", "context_dim")


@struct.dataclass
class OfflineDataset:
    """Per-environment offline data (shapes in the module docstring)."""

    states: jax.Array
    actions: jax.Array
    rewards: jax.Array
    next_states: jax.Array
    context_ids: jax.Array
    contexts: jax.Array
    num_states: int = struct.field(pytree_node=False)
    num_actions: int = struct.field(pytree_node=False)

    @property
    def num_envs(self) -> int:
        return self.states.shape[0]

    @property
    def num_episodes(self) -> int:
        return self.states.shape[1]

    @property
    def horizon(self) -> int:
        return self.states.shape[2]

    def subset(self, num_envs: int | None = None, num_episodes: int | None = None) -> "OfflineDataset":
        """The first ``num_envs`` environments and their first ``num_episodes`` episodes."""
        n = self.num_envs if num_envs is None else checks.integer(num_envs, "subset: `num_envs`")
        k = self.num_episodes if num_episodes is None else checks.integer(num_episodes, "subset: `num_episodes`")
        if not 1 <= n <= self.num_envs:
            raise ValueError(f"subset: `num_envs` must lie in [1, {self.num_envs}], got {num_envs}")
        if not 1 <= k <= self.num_episodes:
            raise ValueError(f"subset: `num_episodes` must lie in [1, {self.num_episodes}], got {num_episodes}")
        cut = lambda x: x[:n, :k]  # noqa: E731
        return self.replace(
            states=cut(self.states), actions=cut(self.actions), rewards=cut(self.rewards), next_states=cut(self.next_states),
            context_ids=self.context_ids[:n], contexts=self.contexts[:n],
        )


@struct.dataclass
class LinearData:
    """What the linear-MDP algorithms learn from: the known features and n environments' data.

    phi:     ``(S, A, d)`` features (known to the learner, as in the linear-MDP setting)
    dataset: the per-environment :class:`OfflineDataset` (leaves ``(n, K, H)``)

    The ``data`` argument of :func:`zsgjax.offline.linear.perm.run_perm` and
    :func:`zsgjax.offline.linear.pppo.run_pppo` (the neural algorithms take a
    :class:`~zsgjax.offline.control.transitions.Transitions` in the same place). A
    pytree: stack several on a leading axis to ``vmap`` a trainer over seeds.
    """

    phi: jax.Array
    dataset: OfflineDataset

    @property
    def num_envs(self) -> int:
        return self.dataset.num_envs

    def merge(self) -> "LinearData":
        """The same features with every environment's episodes pooled (:func:`merge_environments`)."""
        return self.replace(dataset=merge_environments(self.dataset))


def check_dataset(dataset, name: str = "dataset") -> OfflineDataset:
    """Host-side check of an in-memory :class:`OfflineDataset`; returns it unchanged.

    ``ValueError`` naming the field unless: ``n, K, H >= 1``; the four episode arrays
    share the shape ``(n, K, H)``; states, next states and actions are integers in
    ``[0, S)`` / ``[0, A)`` (PEVI would otherwise index out of range, which jax clamps
    silently); rewards are finite reals; ``context_ids`` has shape ``(n,)`` (integers)
    and ``contexts`` ``(n, m)`` (NaN is allowed: merged datasets have no context).
    Traced datasets (inside ``jit``) get the shape checks only.
    """
    if not isinstance(dataset, OfflineDataset):
        raise ValueError(f"`{name}` must be an OfflineDataset, got {type(dataset).__name__}")
    S = checks.integer(dataset.num_states, f"`{name}.num_states`", low=1)
    A = checks.integer(dataset.num_actions, f"`{name}.num_actions`", low=1)
    shape = tuple(np.shape(dataset.states))
    if len(shape) != 3:
        raise ValueError(f"`{name}.states` must have shape (n, K, H), got {shape}")
    for field, size in zip(("n (environments)", "K (episodes)", "H (horizon)"), shape):
        if size < 1:
            raise ValueError(f"`{name}` must hold at least one of each axis; {field} is 0 (states shape {shape})")
    for field in ("actions", "rewards", "next_states"):
        checks.check_shape(getattr(dataset, field), f"`{name}.{field}`", shape=shape)
    checks.check_shape(dataset.context_ids, f"`{name}.context_ids`", shape=(shape[0],))
    checks.check_shape(dataset.contexts, f"`{name}.contexts`", shape=(shape[0], None))
    for field, bound in (("states", S), ("next_states", S), ("actions", A), ("context_ids", None), ("rewards", None)):
        value = getattr(dataset, field)
        kinds = "iuf" if field == "rewards" else "iu"
        if checks.is_traced(value):
            if jnp.dtype(value.dtype).kind not in kinds:
                raise ValueError(f"`{name}.{field}` must be {'real' if field == 'rewards' else 'integer'}, got {value.dtype}")
            continue
        arr = checks.numeric_array(value, f"`{name}.{field}`", kinds=kinds)
        if bound is not None and arr.size and (arr.min() < 0 or arr.max() >= bound):
            bad = arr[(arr < 0) | (arr >= bound)].ravel()[0]
            raise ValueError(f"`{name}.{field}` must hold indices in [0, {bound}), found {int(bad)}")
    if not checks.is_traced(dataset.contexts):
        checks.numeric_array(dataset.contexts, f"`{name}.contexts`", kinds="iuf", finite=False)
    return dataset


def uniform_policy(horizon: int, num_states: int, num_actions: int) -> jax.Array:
    """``(H, S, A)`` uniform action probabilities."""
    return jnp.full((horizon, num_states, num_actions), 1.0 / num_actions, dtype=jnp.float32)


def behaviour_policy(anchor: jax.Array, coverage: float) -> jax.Array:
    """``(1 - coverage) * anchor + coverage * uniform``: coverage 1 is uniform (good), near 0 is poor.

    Args:
      anchor: ``(H, S, A)`` probabilities of the policy the data mostly follow.
      coverage: in [0, 1].
    """
    coverage = checks.real(coverage, "behaviour_policy: `coverage`", low=0.0, high=1.0)
    arr = checks.numeric_array(anchor, "behaviour_policy: `anchor`", ndim=3)
    check_policy(arr, *arr.shape, name="anchor")
    anchor = jnp.asarray(arr, dtype=jnp.float32)
    return (1.0 - coverage) * anchor + coverage / anchor.shape[-1]


def _collect_env(key, transitions, rewards, init, behaviour, num_episodes: int, noisy_rewards: bool):
    """K episodes in one environment -> four ``(K, H)`` arrays."""

    def episode(k):
        k0, kh = jax.random.split(k)
        x0 = jax.random.choice(k0, init.shape[0], p=init)

        def step(x, inp):
            pi_h, kk = inp
            ka, kx, kr = jax.random.split(kk, 3)
            a = jax.random.choice(ka, pi_h.shape[-1], p=pi_h[x])
            x_next = jax.random.choice(kx, transitions.shape[-1], p=transitions[x, a])
            mean_r = rewards[x, a]
            r = jnp.where(noisy_rewards, jax.random.bernoulli(kr, jnp.clip(mean_r, 0.0, 1.0)).astype(jnp.float32), mean_r)
            return x_next, (x, a, r, x_next)

        _, out = jax.lax.scan(step, x0, (behaviour, jax.random.split(kh, behaviour.shape[0])))
        return out

    x, a, r, xn = jax.vmap(episode)(jax.random.split(key, num_episodes))
    return x.astype(jnp.int32), a.astype(jnp.int32), r.astype(jnp.float32), xn.astype(jnp.int32)


def collect_dataset(
    key: jax.Array,
    family: ContextualLinearMDP,
    contexts,
    behaviour: jax.Array,
    num_episodes: int,
    context_ids=None,
    noisy_rewards: bool = True,
) -> OfflineDataset:
    """Roll out ``num_episodes`` episodes of ``behaviour`` in each context.

    Args:
      contexts: ``(n, m)`` one context per environment.
      behaviour: ``(H, S, A)`` behaviour policy (see :func:`behaviour_policy`).
      context_ids: ``(n,)`` integer labels (default ``arange(n)``).
      noisy_rewards: observed rewards are Bernoulli with the MDP's mean reward (else the mean).
    """
    checks.prng_key(key, "collect_dataset: `key`")
    if not isinstance(family, ContextualLinearMDP):
        raise ValueError(f"collect_dataset: `family` must be a ContextualLinearMDP, got {type(family).__name__}")
    contexts = check_contexts(contexts, family.num_bases)
    n = contexts.shape[0]
    check_policy(behaviour, family.horizon, family.num_states, family.num_actions, name="behaviour")
    num_episodes = checks.integer(num_episodes, "collect_dataset: `num_episodes`", low=1)
    noisy_rewards = checks.boolean(noisy_rewards, "collect_dataset: `noisy_rewards`")
    ids = np.arange(n) if context_ids is None else np.asarray(context_ids)
    if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"collect_dataset: `context_ids` must be {n} integers, got shape {ids.shape} dtype {ids.dtype}")
    contexts = jnp.asarray(contexts, dtype=jnp.float32)
    P, r = jax.vmap(lambda c: (family.at(c).transitions, family.at(c).rewards))(contexts)
    fn = jax.jit(jax.vmap(_collect_env, in_axes=(0, 0, 0, None, None, None, None)), static_argnums=(5, 6))
    x, a, rew, xn = fn(jax.random.split(key, n), P, r, family.init, jnp.asarray(behaviour, jnp.float32), int(num_episodes), bool(noisy_rewards))
    return OfflineDataset(
        states=x, actions=a, rewards=rew, next_states=xn,
        context_ids=jnp.asarray(ids, dtype=jnp.int32), contexts=contexts,
        num_states=family.num_states, num_actions=family.num_actions,
    )


def merge_environments(dataset: OfflineDataset) -> OfflineDataset:
    """Pool all episodes into one environment and drop the context labels.

    Returns a dataset with ``n = 1``, ``K = n K``, ``context_ids = [-1]`` and NaN contexts.
    """
    pool = lambda x: x.reshape((1, -1) + x.shape[2:])  # noqa: E731
    return dataset.replace(
        states=pool(dataset.states), actions=pool(dataset.actions), rewards=pool(dataset.rewards),
        next_states=pool(dataset.next_states), context_ids=jnp.full((1,), -1, jnp.int32),
        contexts=jnp.full((1, dataset.contexts.shape[1]), jnp.nan, jnp.float32),
    )


def check_stored_contexts(context_ids: np.ndarray, contexts: np.ndarray, where: str) -> None:
    """``ValueError`` (prefixed by ``where``) unless every labelled environment's context lies on the simplex.

    Rows with ``context_ids >= 0`` must be finite, non-negative and sum to 1 (within
    1e-4); rows with ``context_ids == -1`` (a merged dataset, :func:`merge_environments`)
    must be all-NaN; no other id is valid.
    """
    if contexts.dtype.kind != "f":
        raise ValueError(f"{where} field `contexts` must be floating point, got {contexts.dtype}")
    ids = np.asarray(context_ids)
    if ids.size and ids.min() < -1:
        raise ValueError(f"{where} field `context_ids` has {int(ids.min())}; ids are >= 0, or -1 for merged data")
    merged, labelled = contexts[ids == -1], contexts[ids >= 0].astype(np.float64)
    if merged.size and not np.all(np.isnan(merged)):
        raise ValueError(f"{where} field `contexts`: rows with context id -1 (merged data) must be NaN")
    if not np.all(np.isfinite(labelled)):
        row = int(np.nonzero(~np.all(np.isfinite(contexts), axis=-1) & (ids >= 0))[0][0])
        raise ValueError(f"{where} field `contexts` row {row} is not finite ({contexts[row].tolist()}); contexts "
                         "must lie on the probability simplex")
    off = (np.any(labelled < -1e-6, axis=-1) | (np.abs(labelled.sum(-1) - 1.0) > 1e-4))
    if np.any(off):
        row = int(np.nonzero(ids >= 0)[0][np.argmax(off)])
        raise ValueError(f"{where} field `contexts` row {row} = {contexts[row].tolist()} is off the probability "
                         "simplex (entries >= 0 summing to 1)")


def check_compatible(dataset: OfflineDataset, family: ContextualLinearMDP) -> None:
    """Raise ``ValueError`` unless the dataset's S, A, H and context dimension match ``family``."""
    want = (family.num_states, family.num_actions, family.horizon, family.num_bases)
    got = (dataset.num_states, dataset.num_actions, dataset.horizon, dataset.contexts.shape[1])
    if want != got:
        raise ValueError(f"dataset (S, A, H, m) = {got} does not match the MDP family's {want}")


def save_dataset(path: str | os.PathLike, dataset: OfflineDataset) -> None:
    """Write ``dataset`` to one ``.npz`` file at ``path`` atomically (temp file + ``os.replace``).

    The dataset is checked first (:func:`check_dataset`), so no file is written for
    data :func:`load_dataset` would refuse; ``path`` must not be a directory.
    """
    check_dataset(dataset)
    payload = {name: np.asarray(getattr(dataset, name)) for name in _ARRAYS}
    payload.update(
        format_name=np.asarray(FORMAT_NAME), format_version=np.asarray(FORMAT_VERSION),
        num_states=np.asarray(dataset.num_states), num_actions=np.asarray(dataset.num_actions),
        num_envs=np.asarray(dataset.num_envs), num_episodes=np.asarray(dataset.num_episodes),
        horizon=np.asarray(dataset.horizon), context_dim=np.asarray(dataset.contexts.shape[1]),
    )
    write_npz(check_file_path(path, "path"), payload)


def load_dataset(path: str | os.PathLike, num_states: int | None = None, num_actions: int | None = None, horizon: int | None = None) -> OfflineDataset:
    """Read a file written by :func:`save_dataset`, checking it thoroughly.

    Args:
      num_states, num_actions, horizon: when given, the file must match them.
    Raises:
      ValueError: for a missing, corrupt, foreign, wrong-version, inconsistent or
        mismatched file (the message names the field).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"load_dataset: `path` {path!r} is not a file")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"load_dataset: {path!r} holds a single {np.shape(archive)} array (a plain .npy file); "
                             f"expected a {FORMAT_NAME} .npz archive written by save_dataset")
        with archive as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as e:
        raise ValueError(f"load_dataset: {path!r} is not a readable zsgjax dataset file ({type(e).__name__}: {e})") from e
    except ValueError as e:
        if str(e).startswith("load_dataset:"):
            raise
        raise ValueError(f"load_dataset: {path!r} is not a readable zsgjax dataset file ({type(e).__name__}: {e})") from e
    missing = [k for k in _ARRAYS + _META if k not in data]
    if missing:
        raise ValueError(f"load_dataset: {path!r} lacks fields {missing}; not a {FORMAT_NAME} file")
    if str(data["format_name"]) != FORMAT_NAME:
        raise ValueError(f"load_dataset: {path!r} has format_name {str(data['format_name'])!r}, expected {FORMAT_NAME!r}")
    def header_int(k: str) -> int:
        try:
            return checks.integer(data[k], f"field `{k}`", low=0, high=None)
        except ValueError as e:
            raise ValueError(f"load_dataset: {path!r} header {e}") from None

    if header_int("format_version") != FORMAT_VERSION:
        raise ValueError(f"load_dataset: {path!r} has format_version {int(data['format_version'])}, this zsgjax reads version {FORMAT_VERSION}")
    S, A, n, K, H, m = (header_int(k) for k in ("num_states", "num_actions", "num_envs", "num_episodes", "horizon", "context_dim"))
    for name in ("states", "actions", "rewards", "next_states"):
        if data[name].shape != (n, K, H):
            raise ValueError(f"load_dataset: {path!r} field `{name}` has shape {data[name].shape}, header says (n, K, H) = {(n, K, H)}")
    if data["context_ids"].shape != (n,) or data["contexts"].shape != (n, m):
        raise ValueError(f"load_dataset: {path!r} context fields have shapes {data['context_ids'].shape}, {data['contexts'].shape}; header says ({n},), ({n}, {m})")
    for name, bound in (("states", S), ("next_states", S), ("actions", A), ("context_ids", None)):
        if not np.issubdtype(data[name].dtype, np.integer):
            raise ValueError(f"load_dataset: {path!r} field `{name}` must be integer, got {data[name].dtype}")
        if bound is not None and data[name].size and (data[name].min() < 0 or data[name].max() >= bound):
            raise ValueError(f"load_dataset: {path!r} field `{name}` has values outside [0, {bound})")
    if data["rewards"].dtype.kind not in "iuf":
        raise ValueError(f"load_dataset: {path!r} field `rewards` must be real, got {data['rewards'].dtype}")
    if not np.all(np.isfinite(data["rewards"])):
        raise ValueError(f"load_dataset: {path!r} field `rewards` has non-finite values")
    check_stored_contexts(data["context_ids"], data["contexts"], f"load_dataset: {path!r}")
    for name, want, got in (("num_states", num_states, S), ("num_actions", num_actions, A), ("horizon", horizon, H)):
        if want is not None and int(want) != got:
            raise ValueError(f"load_dataset: {path!r} has {name} = {got}, expected {want}")
    dataset = OfflineDataset(
        states=jnp.asarray(data["states"], jnp.int32), actions=jnp.asarray(data["actions"], jnp.int32),
        rewards=jnp.asarray(data["rewards"], jnp.float32), next_states=jnp.asarray(data["next_states"], jnp.int32),
        context_ids=jnp.asarray(data["context_ids"], jnp.int32), contexts=jnp.asarray(data["contexts"], jnp.float32),
        num_states=S, num_actions=A,
    )
    try:
        return check_dataset(dataset)
    except ValueError as e:
        raise ValueError(f"load_dataset: {path!r}: {e}") from None
