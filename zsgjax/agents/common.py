"""Helpers shared by the agents: masked means and the agent protocol.

An *agent* is a static (frozen, hashable) object with pure methods

* ``init(rng) -> state``                       -- a ``flax.struct`` pytree
* ``observe(state, obs (N, obs_size)) -> state`` -- update observation statistics
* ``explore(state, obs (B, obs_size), rng, env_step ()) -> actions (B, ...)``
* ``random_action(rng, batch) -> actions (batch, ...)`` -- warm-up actions
* ``update(state, batch: Transition (N, ...), weight (N,), rng) -> (state, metrics)``;
  ``metrics`` holds scalars plus ``metrics[TD_ERROR]`` ``(N,)``, each sample's absolute
  TD error (the priorities of prioritized replay)
* ``policy_params(state)`` and ``act(params, obs, rng=None)`` -- deployment
* ``schedule_metrics(state, env_step) -> dict`` -- ``alpha`` / ``epsilon``
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import jax.numpy as jnp

from zsgjax.types import Transition


TD_ERROR = "td_error"


def weighted_mean(x: jax.Array, weight: jax.Array) -> jax.Array:
    """``sum(w x) / max(sum(w), 1)`` over the leading axis of ``x`` (``(N, ...)`` and ``(N,)``).

    Samples with weight 0 (e.g. CSE samples with non-finite gradients) do not
    contribute, and an all-zero weight gives 0 rather than NaN.
    """
    w = weight.reshape(weight.shape + (1,) * (x.ndim - weight.ndim))
    return jnp.sum(jnp.where(w > 0, x * w, 0.0)) / jnp.maximum(jnp.sum(weight) * x[0].size, 1.0)


def zero_masked(batch: Transition, weight: jax.Array) -> Transition:
    """Zero every field of the samples with weight 0 (``(N, ...)`` leaves, ``(N,)`` weight).

    Masked samples then stay finite, so no NaN reaches a gradient through the
    masked branch of :func:`weighted_mean` (``0 * nan`` is ``nan``).
    """
    keep = weight > 0

    def clean(x):
        k = keep.reshape(keep.shape + (1,) * (x.ndim - 1))
        return jnp.where(k, x, jnp.zeros_like(x))

    return jax.tree.map(clean, batch)


def update_obs_stats(normalizer, state, obs: jax.Array):
    """``state`` with its ``obs_stats`` updated by the batch ``obs (N, obs_size)``; a no-op
    when normalisation is off (``obs_stats`` is ``None``)."""
    if state.obs_stats is None:
        return state
    return state.replace(obs_stats=normalizer.update(state.obs_stats, obs))


class Agent(Protocol):
    def init(self, rng: jax.Array) -> Any: ...

    def observe(self, state: Any, obs: jax.Array) -> Any: ...

    def explore(self, state: Any, obs: jax.Array, rng: jax.Array, env_step: jax.Array) -> jax.Array: ...

    def random_action(self, rng: jax.Array, batch: int) -> jax.Array: ...

    def update(self, state: Any, batch: Transition, weight: jax.Array, rng: jax.Array) -> tuple[Any, dict]: ...

    def policy_params(self, state: Any) -> Any: ...

    def act(self, params: Any, obs: jax.Array, rng: jax.Array | None = None) -> jax.Array: ...

    def sample(self, params: Any, obs: jax.Array, rng: jax.Array, *, rescale: bool = True) -> jax.Array: ...

    def schedule_metrics(self, state: Any, env_step: jax.Array) -> dict: ...
