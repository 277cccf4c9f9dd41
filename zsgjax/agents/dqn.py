"""Double DQN with a dueling head for discrete-action environments.

Online network and a target network refreshed every ``target_update_period``
gradient steps (``optax.periodic_update``), Huber TD loss, Adam with gradient
clipping, epsilon-greedy exploration on a linear schedule over environment steps
(``optax.linear_schedule``). Actions are integer scalars in ``[0, num_actions)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import struct

from zsgjax.agents.common import TD_ERROR, update_obs_stats, weighted_mean, zero_masked
from zsgjax.agents.networks import ACTIVATIONS, DiscreteQ
from zsgjax.agents.normalization import ObsNormalizer, RunningStats
from zsgjax.configs import param, validate
from zsgjax.types import Transition


@dataclasses.dataclass(frozen=True)
class DQNConfig:
    """Hyper-parameters; each field states its accepted range, checked by :meth:`validate`."""

    hidden_sizes: tuple[int, ...] = param((256, 256), kind=tuple, low=1)  # the shared trunk
    activation: str = param("relu", kind=str, choices=tuple(ACTIVATIONS))  # of the trunk
    head_hidden_size: int = param(0, kind=int, low=0)  # one ReLU layer of this width in each head; 0: linear heads
    gamma: float = param(0.99, low=0.0, high=1.0)
    lr: float = param(1e-3, low=0.0, low_open=True)
    max_grad_norm: float = param(10.0, low=0.0, low_open=True)
    dueling: bool = param(True, kind=bool)
    double: bool = param(True, kind=bool)
    target_update_period: int = param(500, kind=int, low=1)  # gradient steps
    epsilon_start: float = param(1.0, low=0.0, high=1.0)
    epsilon_end: float = param(0.05, low=0.0, high=1.0)
    epsilon_decay_steps: int = param(10_000, kind=int, low=1)  # environment steps (all parallel envs)
    normalize_obs: bool = param(False, kind=bool)

    def validate(self) -> "DQNConfig":
        """Raise ``ValueError`` naming the first field outside its range; returns ``self``."""
        return validate(self)


@struct.dataclass
class DQNState:
    params: Any
    target_params: Any
    opt_state: Any
    obs_stats: RunningStats | None
    updates: jax.Array


@dataclasses.dataclass(frozen=True)
class DQN:
    """DQN over ``obs (..., obs_size)`` and ``num_actions`` discrete actions."""

    obs_size: int
    num_actions: int
    normalizer: ObsNormalizer
    config: DQNConfig = DQNConfig()

    @property
    def network(self) -> DiscreteQ:
        c = self.config
        heads = (c.head_hidden_size,) if c.head_hidden_size else ()
        return DiscreteQ(tuple(c.hidden_sizes), self.num_actions, c.dueling, c.activation, heads)

    def _optimizer(self):
        return optax.chain(optax.clip_by_global_norm(self.config.max_grad_norm), optax.adam(self.config.lr))

    def epsilon(self, env_step: jax.Array) -> jax.Array:
        c = self.config
        return optax.linear_schedule(c.epsilon_start, c.epsilon_end, max(int(c.epsilon_decay_steps), 1))(env_step)

    def init(self, rng: jax.Array) -> DQNState:
        params = self.network.init(rng, jnp.zeros((1, self.obs_size)))
        return DQNState(
            params=params,
            target_params=params,
            opt_state=self._optimizer().init(params),
            obs_stats=self.normalizer.init() if self.config.normalize_obs else None,
            updates=jnp.zeros((), jnp.int32),
        )

    def _qvalues(self, params, obs_stats, obs):
        return self.network.apply(params, self.normalizer.normalize(obs_stats, obs))

    # -------------------------------------------------------------- acting
    def policy_params(self, state: DQNState) -> tuple[RunningStats | None, Any]:
        return (state.obs_stats, state.params)

    def _greedy_or_random(self, params, obs, rng, epsilon):
        obs_stats, net_params = params
        greedy = jnp.argmax(self._qvalues(net_params, obs_stats, obs), axis=-1).astype(jnp.int32)
        if rng is None:
            return greedy
        k_coin, k_act = jax.random.split(rng)
        random = jax.random.randint(k_act, greedy.shape, 0, self.num_actions, dtype=jnp.int32)
        return jnp.where(jax.random.uniform(k_coin, greedy.shape) < epsilon, random, greedy)

    def act(self, params, obs: jax.Array, rng: jax.Array | None = None) -> jax.Array:
        """Greedy action ``(...)`` int32 when ``rng`` is None, else epsilon-greedy at ``epsilon_end``."""
        return self._greedy_or_random(params, obs, rng, self.config.epsilon_end)

    def sample(self, params, obs: jax.Array, rng: jax.Array, *, rescale: bool = True) -> jax.Array:
        """The evaluation action of a sampled evaluation: greedy ``(...)`` int32, as RLlib's DQN
        module acts at inference (``forward_inference``: argmax, no epsilon) in the CSE paper's
        ``evaluate_policies.py``. ``rng`` and ``rescale`` (discrete actions) are unused."""
        return self.act(params, obs)

    def explore(self, state: DQNState, obs: jax.Array, rng: jax.Array, env_step: jax.Array) -> jax.Array:
        return self._greedy_or_random(self.policy_params(state), obs, rng, self.epsilon(env_step))

    def random_action(self, rng: jax.Array, batch: int) -> jax.Array:
        return jax.random.randint(rng, (batch,), 0, self.num_actions, dtype=jnp.int32)

    def observe(self, state: DQNState, obs: jax.Array) -> DQNState:
        return update_obs_stats(self.normalizer, state, obs)

    def schedule_metrics(self, state: DQNState, env_step: jax.Array) -> dict:
        return {"epsilon": self.epsilon(env_step)}

    # ------------------------------------------------------------ learning
    def loss(self, params, state: DQNState, batch: Transition, weight):
        c = self.config
        q = self._qvalues(params, state.obs_stats, batch.obs)
        q_taken = jnp.take_along_axis(q, batch.action.astype(jnp.int32)[:, None], axis=-1)[:, 0]
        next_target = self._qvalues(state.target_params, state.obs_stats, batch.next_obs)
        if c.double:
            next_online = self._qvalues(params, state.obs_stats, batch.next_obs)
            next_action = jnp.argmax(next_online, axis=-1)
            next_q = jnp.take_along_axis(next_target, next_action[:, None], axis=-1)[:, 0]
        else:
            next_q = jnp.max(next_target, axis=-1)
        target = jax.lax.stop_gradient(batch.reward + (1.0 - batch.done) * c.gamma * next_q)
        loss = weighted_mean(optax.huber_loss(q_taken, target), weight)
        return loss, (q_taken.mean(), jnp.abs(q_taken - target))

    def update(self, state: DQNState, batch: Transition, weight: jax.Array, rng: jax.Array) -> tuple[DQNState, dict]:
        """One gradient step on ``batch`` (leading ``N``) with sample weights ``(N,)``.

        Metrics: ``q_loss``, ``q_mean`` and ``td_error (N,)`` (absolute TD errors, the
        priorities of prioritized replay).
        """
        batch = zero_masked(batch, weight)
        (loss, (q_mean, td_error)), grads = jax.value_and_grad(self.loss, has_aux=True)(state.params, state, batch, weight)
        upd, opt_state = self._optimizer().update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, upd)
        updates = state.updates + 1
        target = optax.periodic_update(params, state.target_params, updates, self.config.target_update_period)
        new_state = state.replace(params=params, target_params=target, opt_state=opt_state, updates=updates)
        return new_state, {"q_loss": loss, "q_mean": q_mean, TD_ERROR: td_error}
