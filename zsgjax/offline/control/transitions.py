"""Per-environment transition data from n contexts of a continuous-control env.

Every leaf starts with the environment axis ``n`` and then the transition axis ``N``,
so the data of all n environments can be ``vmap``-ed over directly:

    obs, next_obs:        (n, N, obs_dim)  float32   observations *without* the context
    action:               (n, N, act_dim)  float32
    reward:               (n, N)           float32
    terminal:             (n, N)           bool      true termination (no bootstrap)
    truncated:            (n, N)           bool      episode cut without termination
                                                     (time limit or end of the data:
                                                     bootstrap through ``next_obs``)
    contexts:             (n, context_dim) float32   the context of each environment

Within environment ``i`` the transitions are in collection order and episodes are
contiguous: transition ``t`` ends an episode exactly when ``terminal[i, t] |
truncated[i, t]``, and otherwise ``next_obs[i, t] == obs[i, t + 1]``.

``merge`` drops the environment labels (the "average MDP" baseline data).
:func:`check_transitions` is the host-side check every entry point runs.
:class:`DatasetInfo` is what a dataset file records beside the arrays (which
environment, which behaviour); it is a plain object, not a pytree leaf, so two
datasets of equal shapes share compiled programs whatever their origin.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from zsgjax import checks

FIELDS = ("obs", "action", "reward", "next_obs", "terminal", "truncated", "contexts")
"""The array fields of :class:`Transitions`, in storage order."""

FLOAT_FIELDS = ("obs", "action", "reward", "next_obs", "contexts")
BOOL_FIELDS = ("terminal", "truncated")


@struct.dataclass
class Transitions:
    """n environments' transitions, kept apart (shapes in the module docstring)."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminal: jax.Array
    truncated: jax.Array
    contexts: jax.Array

    @property
    def num_envs(self) -> int:
        return self.obs.shape[0]

    @property
    def num_transitions(self) -> int:
        return self.obs.shape[1]

    @property
    def obs_dim(self) -> int:
        return self.obs.shape[2]

    @property
    def action_dim(self) -> int:
        return self.action.shape[2]

    @property
    def context_dim(self) -> int:
        return self.contexts.shape[1]

    def merge(self) -> "Transitions":
        """All n environments pooled into one (leaves ``(1, n * N, ...)``; context = mean)."""
        pool = lambda x: x.reshape((1, -1) + x.shape[2:])  # noqa: E731
        return Transitions(
            obs=pool(self.obs), action=pool(self.action), reward=pool(self.reward),
            next_obs=pool(self.next_obs), terminal=pool(self.terminal), truncated=pool(self.truncated),
            contexts=jnp.mean(self.contexts, axis=0, keepdims=True),
        )

    def subset(self, num_envs: int | None = None, num_transitions: int | None = None) -> "Transitions":
        """The first ``num_envs`` environments and their first ``num_transitions`` transitions.

        ``num_envs`` in ``[1, n]``, ``num_transitions`` in ``[1, N]`` (default: all).
        A cut episode is marked ``truncated`` at the new last transition, as
        :func:`~zsgjax.offline.control.collect.collect` marks the end of its data.
        """
        n = self.num_envs if num_envs is None else checks.integer(
            num_envs, "subset: `num_envs`", low=1, high=self.num_envs)
        k = self.num_transitions if num_transitions is None else checks.integer(
            num_transitions, "subset: `num_transitions`", low=1, high=self.num_transitions)
        cut = lambda x: jnp.asarray(x)[:n, :k]  # noqa: E731
        terminal, truncated = cut(self.terminal), cut(self.truncated)
        truncated = truncated.at[:, -1].set(truncated[:, -1] | ~terminal[:, -1])
        return Transitions(obs=cut(self.obs), action=cut(self.action), reward=cut(self.reward),
                           next_obs=cut(self.next_obs), terminal=terminal, truncated=truncated,
                           contexts=jnp.asarray(self.contexts)[:n])

    def episode_ends(self) -> jax.Array:
        """``(n, N)`` bool: transition ``t`` ends an episode (``terminal | truncated``)."""
        return self.terminal | self.truncated


def check_transitions(data: Any, name: str = "data") -> Transitions:
    """Host-side check of a :class:`Transitions`; returns it unchanged.

    ``ValueError`` naming the field unless: ``n >= 1`` and ``N >= 1``; ``obs`` and
    ``next_obs`` are ``(n, N, obs_dim)``, ``action`` ``(n, N, act_dim)``, ``reward``,
    ``terminal`` and ``truncated`` ``(n, N)``, ``contexts`` ``(n, context_dim)``, all
    dimensions ``>= 1``; the float fields are real and finite (a NaN reward is named
    as ``data.reward``), the flags boolean, and no transition both ``terminal`` and
    ``truncated``. Traced data (inside ``jit``) get the shape and dtype checks only.
    """
    if not isinstance(data, Transitions):
        raise ValueError(f"`{name}` must be a zsgjax.offline.control.Transitions, got {type(data).__name__}")
    obs_shape = tuple(np.shape(data.obs))
    if len(obs_shape) != 3:
        raise ValueError(f"`{name}.obs` must have shape (n, N, obs_dim), got {obs_shape}")
    n, N, obs_dim = obs_shape
    for axis, size in (("n (environments)", n), ("N (transitions per environment)", N), ("obs_dim", obs_dim)):
        if size < 1:
            raise ValueError(f"`{name}` must have {axis} >= 1, got {size} (obs shape {obs_shape})")
    checks.check_shape(data.next_obs, f"`{name}.next_obs`", shape=(n, N, obs_dim))
    checks.check_shape(data.action, f"`{name}.action`", shape=(n, N, None))
    for field in ("reward", "terminal", "truncated"):
        checks.check_shape(getattr(data, field), f"`{name}.{field}`", shape=(n, N))
    checks.check_shape(data.contexts, f"`{name}.contexts`", shape=(n, None))
    for field, size in (("action", np.shape(data.action)[2]), ("contexts", np.shape(data.contexts)[1])):
        if size < 1:
            raise ValueError(f"`{name}.{field}` must have a last dimension >= 1, "
                             f"got shape {np.shape(getattr(data, field))}")
    for field in FLOAT_FIELDS + BOOL_FIELDS:
        value = getattr(data, field)
        kinds = "b" if field in BOOL_FIELDS else "iuf"
        what = "boolean" if field in BOOL_FIELDS else "real"
        if checks.is_traced(value):
            if jnp.dtype(value.dtype).kind not in kinds:
                raise ValueError(f"`{name}.{field}` must be {what}, got dtype {value.dtype}")
            continue
        checks.numeric_array(value, f"`{name}.{field}`", kinds=kinds, finite=True)
    if not checks.is_traced(data.terminal) and not checks.is_traced(data.truncated):
        both = np.asarray(data.terminal) & np.asarray(data.truncated)
        if both.any():
            i, t = (int(v[0]) for v in np.nonzero(both))
            raise ValueError(f"`{name}`: transition {t} of environment {i} is both `terminal` and `truncated`; "
                             "an episode ends either by termination or by truncation")
    return data


def as_float32(data: Transitions) -> Transitions:
    """``data`` with float32 float fields and bool flags (the stored dtypes)."""
    return Transitions(**{f: jnp.asarray(getattr(data, f), jnp.bool_ if f in BOOL_FIELDS else jnp.float32)
                          for f in FIELDS})


def _json_value(value: Any, name: str) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False, default=_json_scalar))
    except (TypeError, ValueError) as e:
        raise ValueError(f"DatasetInfo: `{name}` must be JSON-serializable (numbers, strings, lists, dicts), "
                         f"got {value!r} ({e})") from None


def _json_scalar(value: Any) -> Any:
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, np.generic) or (isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0):
        return np.asarray(value).item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Where a dataset came from: stored beside the arrays and checked on load.

    env: the registered environment name (``zsgjax.envs.make(env, **env_kwargs)``).
    env_kwargs: its constructor options (JSON: tuples become lists).
    context_names: one name per context dimension (``ContextSpace.names``).
    behaviour: a JSON description of the behaviour policy
      (:meth:`~zsgjax.offline.control.behaviour.Behaviour.describe`).
    horizon: the episode time limit the data were collected with.
    """

    env: str
    env_kwargs: Mapping[str, Any]
    context_names: tuple[str, ...]
    behaviour: Mapping[str, Any]
    horizon: int

    def __post_init__(self):
        if not isinstance(self.env, str) or not self.env:
            raise ValueError(f"DatasetInfo: `env` must be a registered environment name, got {self.env!r}")
        kwargs = _json_value(dict(self.env_kwargs or {}), "env_kwargs")
        behaviour = _json_value(dict(self.behaviour or {}), "behaviour")
        names = self.context_names
        if isinstance(names, str) or not all(isinstance(c, str) and c for c in names) or not names:
            raise ValueError(f"DatasetInfo: `context_names` must be a non-empty sequence of names, got {names!r}")
        object.__setattr__(self, "env_kwargs", kwargs)
        object.__setattr__(self, "behaviour", behaviour)
        object.__setattr__(self, "context_names", tuple(names))
        object.__setattr__(self, "horizon", checks.integer(self.horizon, "DatasetInfo: `horizon`", low=1))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``from_dict`` inverts it)."""
        return {"env": self.env, "env_kwargs": dict(self.env_kwargs), "context_names": list(self.context_names),
                "behaviour": dict(self.behaviour), "horizon": self.horizon}

    @classmethod
    def from_dict(cls, d: Any, where: str = "DatasetInfo") -> "DatasetInfo":
        """Inverse of :meth:`to_dict`; ``ValueError`` naming the missing or bad key."""
        if not isinstance(d, Mapping):
            raise ValueError(f"{where}: the dataset description must be a JSON object, got {type(d).__name__}")
        missing = [k for k in ("env", "env_kwargs", "context_names", "behaviour", "horizon") if k not in d]
        if missing:
            raise ValueError(f"{where}: the dataset description lacks {missing}")
        try:
            return cls(env=d["env"], env_kwargs=d["env_kwargs"], context_names=tuple(d["context_names"]),
                       behaviour=d["behaviour"], horizon=d["horizon"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from None

    def make_env(self):
        """The environment the data came from: ``zsgjax.envs.make(env, **env_kwargs)``."""
        from zsgjax.envs import make

        return make(self.env, **self.env_kwargs)

    def check_compatible(self, data: Transitions, name: str = "data") -> None:
        """``ValueError`` unless ``data``'s context dimension matches ``context_names``."""
        if data.context_dim != len(self.context_names):
            raise ValueError(f"`{name}.contexts` has {data.context_dim} dimension(s) but the dataset description "
                             f"names {len(self.context_names)} ({', '.join(self.context_names)})")
