"""The shared deterministic policy of the neural offline algorithms.

``a = action_scale * tanh(m(x))`` with ``m`` a ReLU MLP (:class:`zsgjax.agents.networks.MLP`)
of ``x = obs`` (default: the policy does not see the context) or ``x = [obs, context]``
(``ActorConfig.observe_context``). Shapes: ``obs (B, obs_dim)``, ``context (context_dim,)``
(one environment's), actions ``(B, action_dim)``. The same parameters act in every
environment; :func:`env_act_fn` adapts them to :mod:`zsgjax.evaluate`, whose
observations are ``[state_obs, context]``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from zsgjax.agents.networks import MLP
from zsgjax.offline.control.configs import ActorConfig


@dataclasses.dataclass(frozen=True)
class Policy:
    """Pure functions of the policy parameters (a static, hashable object)."""

    config: ActorConfig
    obs_dim: int
    context_dim: int
    action_dim: int

    @property
    def network(self) -> MLP:
        return MLP(tuple(self.config.hidden_sizes), out_size=self.action_dim)

    @property
    def input_dim(self) -> int:
        return self.obs_dim + (self.context_dim if self.config.observe_context else 0)

    def init(self, key: jax.Array) -> Any:
        return self.network.init(key, jnp.zeros((1, self.input_dim)))

    def inputs(self, obs: jax.Array, context: jax.Array) -> jax.Array:
        """``(B, input_dim)``: ``obs`` or ``[obs, context]`` (context broadcast over B)."""
        if not self.config.observe_context:
            return obs
        ctx = jnp.broadcast_to(context.astype(obs.dtype), obs.shape[:-1] + context.shape[-1:])
        return jnp.concatenate([obs, ctx], axis=-1)

    def mean(self, params, obs: jax.Array, context: jax.Array) -> jax.Array:
        """Pre-tanh output ``m(x)`` ``(B, action_dim)``."""
        return self.network.apply(params, self.inputs(obs, context))

    def act(self, params, obs: jax.Array, context: jax.Array) -> jax.Array:
        """``action_scale * tanh(m(x))`` ``(B, action_dim)``."""
        return self.config.action_scale * jnp.tanh(self.mean(params, obs, context))


def make_policy(config: ActorConfig, obs_dim: int, context_dim: int, action_dim: int) -> Policy:
    return Policy(config, int(obs_dim), int(context_dim), int(action_dim))


def env_act_fn(policy: Policy, state_obs_size: int) -> Callable[[Any, jax.Array], jax.Array]:
    """``act(params, env_obs (state_obs_size + context_dim,)) -> action (action_dim,)`` for
    :func:`zsgjax.evaluate.make_evaluator` (the context part is used only when the
    policy observes it)."""

    def act(params, env_obs):
        obs, context = env_obs[:state_obs_size], env_obs[state_obs_size:]
        return policy.act(params, obs[None], context)[0]

    return act
