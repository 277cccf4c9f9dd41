"""Observation normalisation with running statistics.

The agent observation is ``concat(state_obs, context)``. The state part is
normalised with running mean/variance of the collected observations; the context
part is mapped affinely from its box ``[low, high]`` to ``[-1, 1]`` (a fixed
map: running statistics of the context would be degenerate when training at a
single context, and CSE-enhanced contexts must stay on the same scale).

``RunningStats`` is a ``flax.struct`` pytree kept in the agent state; everything
here is pure and jittable.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from zsgjax.envs.context import ContextSpace

STD_MIN = 1e-3
CLIP = 10.0


@struct.dataclass
class RunningStats:
    """Running moments of the state observation.

    mean, var: ``(state_obs_size,)``; count: ``()`` number of observations seen.
    """

    mean: jax.Array
    var: jax.Array
    count: jax.Array


@dataclasses.dataclass(frozen=True)
class ObsNormalizer:
    """Static description of the normalisation of ``(..., state_obs_size + dim)`` observations."""

    state_obs_size: int
    context_space: ContextSpace

    def init(self) -> RunningStats:
        n = self.state_obs_size
        return RunningStats(mean=jnp.zeros((n,)), var=jnp.ones((n,)), count=jnp.zeros(()))

    def update(self, stats: RunningStats, obs: jax.Array) -> RunningStats:
        """Merge a batch ``(N, obs_size)`` into the running moments (Chan et al.)."""
        x = obs[..., : self.state_obs_size].reshape(-1, self.state_obs_size)
        n = jnp.asarray(x.shape[0], jnp.float32)
        batch_mean = x.mean(axis=0)
        batch_var = x.var(axis=0)
        total = stats.count + n
        delta = batch_mean - stats.mean
        mean = stats.mean + delta * n / total
        m2 = stats.var * stats.count + batch_var * n + delta**2 * stats.count * n / total
        return RunningStats(mean=mean, var=m2 / total, count=total)

    def normalize(self, stats: RunningStats | None, obs: jax.Array) -> jax.Array:
        """``(..., obs_size) -> (..., obs_size)``; identity when ``stats`` is ``None``."""
        if stats is None:
            return obs
        s = obs[..., : self.state_obs_size]
        c = obs[..., self.state_obs_size :]
        s = jnp.clip((s - stats.mean) / jnp.maximum(jnp.sqrt(stats.var), STD_MIN), -CLIP, CLIP)
        low, high = self.context_space.low_array, self.context_space.high_array
        half = jnp.maximum((high - low) / 2.0, 1e-6)
        c = (c - (low + high) / 2.0) / half
        return jnp.concatenate([s, c], axis=-1)
