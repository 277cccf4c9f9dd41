"""Soft Actor-Critic (Haarnoja et al. 2018) with automatic entropy temperature.

Tanh-squashed Gaussian policy (``distrax``), twin critics as one vmapped module
(:class:`~zsgjax.agents.networks.EnsembleCritic`), Polyak-averaged target critics,
``optax`` Adam optimisers, optional observation normalisation. Environment actions
are ``action_scale * tanh(x)`` (``[-s, s]^action_size``); the critics see them
divided by ``action_scale``.

One :meth:`SAC.update` is one gradient step on a batch ``(N, ...)`` with per-sample
weights ``(N,)`` (0 drops a sample from every loss): temperature, then critics,
then actor (with the fresh critics), then the targets.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import struct

from zsgjax.agents.common import TD_ERROR, update_obs_stats, weighted_mean, zero_masked
from zsgjax.agents.networks import EnsembleCritic, GaussianActor, tanh_gaussian
from zsgjax.agents.normalization import ObsNormalizer, RunningStats
from zsgjax.configs import param, validate
from zsgjax.types import Transition


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """Hyper-parameters (paper defaults: 256x256, tau 0.005, gamma 0.99); each field
    states its accepted range (:func:`zsgjax.configs.param`), checked by :meth:`validate`."""

    hidden_sizes: tuple[int, ...] = param((256, 256), kind=tuple, low=1)
    gamma: float = param(0.99, low=0.0, high=1.0)
    tau: float = param(0.005, low=0.0, high=1.0, low_open=True)
    actor_lr: float = param(3e-4, low=0.0, low_open=True)
    critic_lr: float = param(3e-4, low=0.0, low_open=True)
    alpha_lr: float = param(3e-4, low=0.0, low_open=True)
    init_alpha: float = param(1.0, low=0.0, low_open=True)
    target_entropy: float | None = param(None, kind=float)  # None: -action_size
    reward_scale: float = param(1.0, low=0.0, low_open=True)
    num_critics: int = param(2, kind=int, low=1)
    normalize_obs: bool = param(False, kind=bool)
    action_scale: float = param(1.0, low=0.0, low_open=True)  # env actions are action_scale * tanh(.)
    # Adam of the actor and of the critics on one flat vector each (``optax.flatten``): fewer
    # kernels per update (167 against 190 fusions), but at 256x256 on a CPU 0.77x (pendulum_goal)
    # and 0.94x (cheetah_velocity) the speed of the per-leaf default
    # (benchmarks/results/sac_update_variants_cpu.json); off by default.
    flat_optimizer: bool = param(False, kind=bool)

    def validate(self) -> "SACConfig":
        """Raise ``ValueError`` naming the first field outside its range; returns ``self``."""
        return validate(self)


@struct.dataclass
class SACState:
    """Parameters and optimiser states of one SAC agent.

    obs_stats is ``None`` when observation normalisation is off.
    """

    actor_params: Any
    critic_params: Any
    target_critic_params: Any
    log_alpha: jax.Array
    actor_opt: Any
    critic_opt: Any
    alpha_opt: Any
    obs_stats: RunningStats | None
    updates: jax.Array


@dataclasses.dataclass(frozen=True)
class SAC:
    """SAC for ``obs (..., obs_size) -> action (..., action_size)`` in ``[-1, 1]``."""

    obs_size: int
    action_size: int
    normalizer: ObsNormalizer
    config: SACConfig = SACConfig()

    # ------------------------------------------------------------- modules
    @property
    def actor(self) -> GaussianActor:
        return GaussianActor(tuple(self.config.hidden_sizes), self.action_size)

    @property
    def critic(self) -> EnsembleCritic:
        return EnsembleCritic(tuple(self.config.hidden_sizes), self.config.num_critics)

    @property
    def target_entropy(self) -> float:
        te = self.config.target_entropy
        return -float(self.action_size) if te is None else float(te)

    def _optimizers(self):
        """Adam for actor, critics, temperature; with ``config.flat_optimizer`` the networks'
        Adam runs on one flat vector each (``optax.flatten``: same numbers, fewer kernels)."""
        c = self.config
        wrap = optax.flatten if c.flat_optimizer else (lambda tx: tx)
        return wrap(optax.adam(c.actor_lr)), wrap(optax.adam(c.critic_lr)), optax.adam(c.alpha_lr)

    # ---------------------------------------------------------------- init
    def init(self, rng: jax.Array) -> SACState:
        k_actor, k_critic = jax.random.split(rng)
        obs = jnp.zeros((1, self.obs_size))
        act = jnp.zeros((1, self.action_size))
        actor_params = self.actor.init(k_actor, obs)
        critic_params = self.critic.init(k_critic, obs, act)
        log_alpha = jnp.log(jnp.asarray(self.config.init_alpha, jnp.float32))
        actor_tx, critic_tx, alpha_tx = self._optimizers()
        return SACState(
            actor_params=actor_params,
            critic_params=critic_params,
            target_critic_params=critic_params,
            log_alpha=log_alpha,
            actor_opt=actor_tx.init(actor_params),
            critic_opt=critic_tx.init(critic_params),
            alpha_opt=alpha_tx.init(log_alpha),
            obs_stats=self.normalizer.init() if self.config.normalize_obs else None,
            updates=jnp.zeros((), jnp.int32),
        )

    # -------------------------------------------------------------- acting
    def _dist(self, actor_params, obs_stats, obs):
        mean, log_std = self.actor.apply(actor_params, self.normalizer.normalize(obs_stats, obs))
        return mean, log_std

    def policy_params(self, state: SACState) -> tuple[RunningStats | None, Any]:
        """``(obs_stats, actor_params)``: all :meth:`act` needs."""
        return (state.obs_stats, state.actor_params)

    def act(self, params, obs: jax.Array, rng: jax.Array | None = None) -> jax.Array:
        """``action_scale tanh(mean)`` when ``rng`` is None, else a policy sample; ``(..., action_size)``."""
        obs_stats, actor_params = params
        mean, log_std = self._dist(actor_params, obs_stats, obs)
        if rng is None:
            return self.config.action_scale * jnp.tanh(mean)
        return self.config.action_scale * tanh_gaussian(mean, log_std).sample(seed=rng)

    def sample(self, params, obs: jax.Array, rng: jax.Array, *, rescale: bool = True) -> jax.Array:
        """One draw ``(..., action_size)`` of the policy: ``tanh(z)``, ``z ~ N(mean, exp(log_std))``,
        times ``action_scale`` when ``rescale``; without it in ``[-1, 1]``, as the CSE paper's
        ``evaluate_policies.py`` samples RLlib's ``TorchSquashedGaussian`` (default bounds,
        no rescaling to the action box)."""
        obs_stats, actor_params = params
        mean, log_std = self._dist(actor_params, obs_stats, obs)
        unit = tanh_gaussian(mean, log_std).sample(seed=rng)
        return self.config.action_scale * unit if rescale else unit

    def explore(self, state: SACState, obs: jax.Array, rng: jax.Array, env_step: jax.Array) -> jax.Array:
        return self.act(self.policy_params(state), obs, rng)

    def random_action(self, rng: jax.Array, batch: int) -> jax.Array:
        s = self.config.action_scale
        return jax.random.uniform(rng, (batch, self.action_size), minval=-s, maxval=s)

    def observe(self, state: SACState, obs: jax.Array) -> SACState:
        return update_obs_stats(self.normalizer, state, obs)

    def schedule_metrics(self, state: SACState, env_step: jax.Array) -> dict:
        return {"alpha": jnp.exp(state.log_alpha)}

    # -------------------------------------------------------------- losses
    def _sample_with_log_prob(self, actor_params, obs_stats, obs, rng):
        mean, log_std = self._dist(actor_params, obs_stats, obs)
        return tanh_gaussian(mean, log_std).sample_and_log_prob(seed=rng)

    def _q(self, critic_params, obs_stats, obs, action):
        """``(N, num_critics)`` critic values."""
        return self.critic.apply(critic_params, self.normalizer.normalize(obs_stats, obs), action).T

    def alpha_loss(self, log_alpha, state: SACState, batch: Transition, weight, rng):
        _, log_prob = self._sample_with_log_prob(state.actor_params, state.obs_stats, batch.obs, rng)
        entropy_gap = jax.lax.stop_gradient(-log_prob - self.target_entropy)
        return weighted_mean(jnp.exp(log_alpha) * entropy_gap, weight)

    def critic_loss(self, critic_params, state: SACState, alpha, batch: Transition, weight, rng):
        c = self.config
        next_action, next_log_prob = self._sample_with_log_prob(state.actor_params, state.obs_stats, batch.next_obs, rng)
        next_q = self._q(state.target_critic_params, state.obs_stats, batch.next_obs, next_action)
        next_v = jnp.min(next_q, axis=-1) - alpha * next_log_prob
        target = jax.lax.stop_gradient(c.reward_scale * batch.reward + (1.0 - batch.done) * c.gamma * next_v)
        q = self._q(critic_params, state.obs_stats, batch.obs, batch.action / self.config.action_scale)
        loss = 0.5 * weighted_mean(jnp.square(q - target[:, None]), weight) * self.config.num_critics
        td_error = jnp.abs(q - target[:, None]).mean(axis=-1)  # (N,): replay priorities
        return loss, (q.mean(), td_error)

    def actor_loss(self, actor_params, state: SACState, alpha, batch: Transition, weight, rng):
        action, log_prob = self._sample_with_log_prob(actor_params, state.obs_stats, batch.obs, rng)
        q = self._q(state.critic_params, state.obs_stats, batch.obs, action)
        loss = weighted_mean(alpha * log_prob - jnp.min(q, axis=-1), weight)
        return loss, -log_prob.mean()

    # -------------------------------------------------------------- update
    def update(self, state: SACState, batch: Transition, weight: jax.Array, rng: jax.Array) -> tuple[SACState, dict]:
        """One gradient step on ``batch`` (leading ``N``) with sample weights ``(N,)``.

        Metrics: scalar losses, plus ``td_error (N,)``, each sample's mean absolute
        critic TD error (the priorities of prioritized replay).
        """
        batch = zero_masked(batch, weight)
        actor_tx, critic_tx, alpha_tx = self._optimizers()
        k_alpha, k_critic, k_actor = jax.random.split(rng, 3)

        alpha_loss, g_alpha = jax.value_and_grad(self.alpha_loss)(state.log_alpha, state, batch, weight, k_alpha)
        upd, alpha_opt = alpha_tx.update(g_alpha, state.alpha_opt)
        log_alpha = optax.apply_updates(state.log_alpha, upd)
        alpha = jnp.exp(log_alpha)

        (critic_loss, (q_mean, td_error)), g_critic = jax.value_and_grad(self.critic_loss, has_aux=True)(
            state.critic_params, state, alpha, batch, weight, k_critic
        )
        upd, critic_opt = critic_tx.update(g_critic, state.critic_opt)
        critic_params = optax.apply_updates(state.critic_params, upd)
        state = state.replace(critic_params=critic_params)

        (actor_loss, entropy), g_actor = jax.value_and_grad(self.actor_loss, has_aux=True)(
            state.actor_params, state, alpha, batch, weight, k_actor
        )
        upd, actor_opt = actor_tx.update(g_actor, state.actor_opt)
        actor_params = optax.apply_updates(state.actor_params, upd)

        target = optax.incremental_update(critic_params, state.target_critic_params, self.config.tau)
        new_state = state.replace(
            actor_params=actor_params,
            target_critic_params=target,
            log_alpha=log_alpha,
            actor_opt=actor_opt,
            critic_opt=critic_opt,
            alpha_opt=alpha_opt,
            updates=state.updates + 1,
        )
        metrics = {
            "critic_loss": critic_loss,
            "actor_loss": actor_loss,
            "alpha_loss": alpha_loss,
            "q_mean": q_mean,
            "entropy": entropy,
            TD_ERROR: td_error,
        }
        return new_state, metrics
