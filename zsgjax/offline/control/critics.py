"""Per-environment pessimistic evaluation: n ensembles of M critics, fitted Q evaluation.

For each environment i an ensemble of M critics ``Q_i^m(s, a)`` is fitted to that
environment's data ``D_i`` alone by fitted Q evaluation (FQE) of a given policy, with
Polyak-averaged target networks ``Qbar_i^m``. One update, for every (i, m) at once::

    a'       = pi(s') (+ clipped Gaussian noise: TD3's smoothing, optional)
    y_i^m    = r + gamma (1 - terminal) Qbar_i^m(s', a')          target = "own"
             = r + gamma (1 - terminal) min_m' Qbar_i^m'(s', a')   target = "min"
    loss_i^m = 1/2 mean_batch (Q_i^m(s, a) - y_i^m)^2               (batch drawn from D_i)

then Adam on every critic and ``Qbar <- (1 - tau) Qbar + tau Q``. Time-limit truncation
bootstraps (only ``terminal`` cuts the target). The pessimistic value is
:func:`pessimistic_value`: ``mean_m Q^m - beta std_m Q^m`` (ddof 0) or ``min_m Q^m``.

The update is **one** program: the per-member loss is ``vmap``-ed over the M members and
that over the n environments (parameter leaves ``(n, M, ...)``); Adam is elementwise, so
one optimiser over the stacked leaves is n x M independent optimisers.
:func:`shard_envs` splits the environment axis over devices (``jax.sharding``); the
update needs no communication then.

The data are checked by :func:`zsgjax.offline.control.transitions.check_transitions`,
``beta`` by :func:`check_beta` (shared by the algorithms).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from zsgjax import checks
from zsgjax.agents.networks import MLP
from zsgjax.offline.control.configs import CriticConfig
from zsgjax.offline.control.transitions import Transitions

ENV_AXIS = "envs"

NextActionFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
"""``(next_obs (B, obs_dim), context (context_dim,), key) -> next action (B, action_dim)``:
the evaluated policy (any noise included), called inside the vmap over environments."""


# ---------------------------------------------------------------- checks
def check_beta(beta: Any, name: str = "`beta`") -> Any:
    """``beta`` a finite real scalar ``>= 0`` (Python, NumPy or jax; traced: shape only)."""
    return checks.real(beta, f"{name} (pessimism coefficient)", low=0.0)


def pessimistic_value(q: jax.Array, beta: Any = 1.0, pessimism: str = "std") -> jax.Array:
    """``q (M, ...)`` ensemble values -> ``(...)``: ``mean - beta std`` (ddof 0) or ``min``.

    ``beta`` is checked when concrete (a jax array included); ``pessimism`` is
    ``"std"`` or ``"min"`` (``beta`` unused).
    """
    if pessimism not in ("std", "min"):
        raise ValueError(f"`pessimism` must be 'std' or 'min', got {pessimism!r}")
    beta = check_beta(beta)
    if np.ndim(q) < 1 or np.shape(q)[0] < 1:
        raise ValueError(f"`q` must have a leading ensemble axis M >= 1, got shape {np.shape(q)}")
    if pessimism == "min":
        return jnp.min(q, axis=0)
    var = jnp.var(q, axis=0)
    positive = var > 0  # sqrt's gradient is infinite at 0: members that agree exactly gave NaN gradients
    std = jnp.where(positive, jnp.sqrt(jnp.where(positive, var, 1.0)), 0.0)
    return jnp.mean(q, axis=0) - beta * std


# ---------------------------------------------------------------- networks
class LinearQ(nn.Module):
    """``Q(s, a) = w . [s, a] + b``: ``(..., obs), (..., act) -> (...)``."""

    @nn.compact
    def __call__(self, obs, action):
        return nn.Dense(1)(jnp.concatenate([obs, action], axis=-1))[..., 0]


class MLPQ(nn.Module):
    """ReLU MLP critic ``(..., obs), (..., act) -> (...)``."""

    hidden_sizes: tuple[int, ...]

    @nn.compact
    def __call__(self, obs, action):
        return MLP(self.hidden_sizes, out_size=1)(jnp.concatenate([obs, action], axis=-1))[..., 0]


@struct.dataclass
class CriticState:
    """All n x M critics: parameter leaves ``(n, M, ...)``, their targets and Adam states."""

    params: Any
    target_params: Any
    opt_state: Any
    steps: jax.Array


@dataclasses.dataclass(frozen=True)
class EnsembleFQE:
    """Pure functions of the critics (static, hashable). ``make_critics(config, ...)`` builds it."""

    config: CriticConfig
    obs_dim: int
    action_dim: int
    action_scale: float = 1.0

    @property
    def network(self) -> nn.Module:
        c = self.config
        return LinearQ() if c.features == "linear" else MLPQ(tuple(c.hidden_sizes))

    @property
    def optimizer(self) -> optax.GradientTransformation:
        return optax.adam(self.config.learning_rate)

    # -------------------------------------------------------------- init
    def init_member(self, key: jax.Array) -> Any:
        return self.network.init(key, jnp.zeros((1, self.obs_dim)), jnp.zeros((1, self.action_dim)))

    def init(self, key: jax.Array, num_envs: int) -> CriticState:
        """Independent initialisations of ``num_envs x M`` critics."""
        M = self.config.num_critics
        keys = jax.random.split(key, num_envs * M).reshape((num_envs, M) + jax.random.split(key, 1).shape[1:])
        params = jax.vmap(jax.vmap(self.init_member))(keys)
        return CriticState(params=params, target_params=params, opt_state=self.optimizer.init(params),
                           steps=jnp.zeros((), jnp.int32))

    # -------------------------------------------------------------- values
    def q_member(self, params, obs: jax.Array, action: jax.Array) -> jax.Array:
        """One critic: ``obs (B, obs_dim), action (B, act) -> (B,)``."""
        return self.network.apply(params, obs, action)

    def q_env(self, params_env, obs: jax.Array, action: jax.Array) -> jax.Array:
        """One environment's ensemble (leaves ``(M, ...)``): ``-> (M, B)``."""
        return jax.vmap(self.q_member, in_axes=(0, None, None))(params_env, obs, action)

    def pessimistic_env(self, params_env, obs: jax.Array, action: jax.Array, beta: Any = None) -> jax.Array:
        """``Q_i^-(s, a)`` ``(B,)`` of one environment (``beta`` default: the config's)."""
        beta = self.config.beta if beta is None else beta
        return pessimistic_value(self.q_env(params_env, obs, action), beta, self.config.pessimism)

    # -------------------------------------------------------------- update
    def env_loss_and_grads(self, params_env, target_env, obs, action, reward, next_obs, terminal, next_action):
        """FQE losses ``(M,)`` and gradients (leaves ``(M, ...)``) of one environment's ensemble
        on one batch (``obs (B, obs_dim)``, ``reward/terminal (B,)``, ``next_action (B, act)``)."""
        c = self.config
        next_q = self.q_env(target_env, next_obs, next_action)  # (M, B)
        if c.target == "min":
            next_q = jnp.broadcast_to(jnp.min(next_q, axis=0), next_q.shape)
        cont = 1.0 - terminal.astype(reward.dtype)
        targets = jax.lax.stop_gradient(reward[None] + c.gamma * cont[None] * next_q)  # (M, B)

        def member_loss(p, y):
            return 0.5 * jnp.mean(jnp.square(self.q_member(p, obs, action) - y))

        return jax.vmap(jax.value_and_grad(member_loss))(params_env, targets)

    def env_batch(self, key, obs, action, reward, next_obs, terminal, context, next_action_fn: NextActionFn):
        """Draw one batch of one environment's data ``(N, ...)`` and its next actions."""
        c = self.config
        k_idx, k_act, k_noise = jax.random.split(key, 3)
        idx = jax.random.randint(k_idx, (c.batch_size,), 0, obs.shape[0])
        b_next = next_obs[idx]
        next_action = next_action_fn(b_next, context, k_act)
        if c.policy_noise > 0:
            s = self.action_scale
            noise = jnp.clip(c.policy_noise * s * jax.random.normal(k_noise, next_action.shape),
                             -c.noise_clip * s, c.noise_clip * s)
            next_action = jnp.clip(next_action + noise, -s, s)
        return obs[idx], action[idx], reward[idx], b_next, terminal[idx], next_action

    def env_grads(self, params_env, target_env, key, obs, action, reward, next_obs, terminal, context,
                  next_action_fn: NextActionFn):
        """Batch + losses + gradients of one environment (the function vmapped over n)."""
        batch = self.env_batch(key, obs, action, reward, next_obs, terminal, context, next_action_fn)
        return self.env_loss_and_grads(params_env, target_env, *batch)

    def apply_grads(self, state: CriticState, grads) -> CriticState:
        upd, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, upd)
        target = optax.incremental_update(params, state.target_params, self.config.tau)
        return CriticState(params=params, target_params=target, opt_state=opt_state, steps=state.steps + 1)

    def update(self, state: CriticState, data: Transitions, next_action_fn: NextActionFn, key: jax.Array):
        """One FQE step of all n x M critics (jittable, one vmapped program).

        Returns ``(state, metrics)`` with ``metrics["loss"] (n, M)``.
        """
        n = data.obs.shape[0]
        keys = jax.random.split(key, n)
        fn = lambda p, t, k, o, a, r, no, te, c: self.env_grads(p, t, k, o, a, r, no, te, c, next_action_fn)  # noqa: E731
        loss, grads = jax.vmap(fn)(state.params, state.target_params, keys, data.obs, data.action, data.reward,
                                   data.next_obs, data.terminal, data.contexts)
        return self.apply_grads(state, grads), {"loss": loss}

    def pessimistic(self, state: CriticState, obs: jax.Array, action: jax.Array, beta: Any = None) -> jax.Array:
        """``Q_i^-`` of every environment on its own inputs ``obs (n, B, obs_dim)``,
        ``action (n, B, act)`` -> ``(n, B)``."""
        return jax.vmap(lambda p, o, a: self.pessimistic_env(p, o, a, beta))(state.params, obs, action)


def make_critics(config: CriticConfig, obs_dim: int, action_dim: int, action_scale: float = 1.0) -> EnsembleFQE:
    """The critics of ``config`` (validated) for the given dimensions."""
    if not isinstance(config, CriticConfig):
        raise ValueError(f"`config` must be a CriticConfig, got {type(config).__name__}")
    config.validate()
    obs_dim = checks.integer(obs_dim, "make_critics: `obs_dim`", low=1)
    action_dim = checks.integer(action_dim, "make_critics: `action_dim`", low=1)
    action_scale = checks.real(action_scale, "make_critics: `action_scale`", low=0.0, low_open=True)
    return EnsembleFQE(config, obs_dim, action_dim, action_scale)


def make_fqe(config: CriticConfig, act: Callable[[jax.Array, jax.Array], jax.Array], steps: int) -> Callable:
    """``fqe(key, data) -> CriticState``: ``steps`` FQE updates, from a fresh init, of the
    critics of every environment of ``data`` for the fixed policy
    ``act(next_obs (B, obs_dim), context (context_dim,)) -> (B, action_dim)`` (plus the
    config's target noise, if any), in one ``lax.scan`` (jittable)."""
    if not isinstance(config, CriticConfig):
        raise ValueError(f"`config` must be a CriticConfig, got {type(config).__name__}")
    config.validate()
    if not callable(act):
        raise ValueError(f"make_fqe: `act` must be a callable act(next_obs, context) -> action, got {act!r}")
    steps = checks.integer(steps, "make_fqe: `steps`", low=1)

    def fqe(key, data: Transitions):
        critics = EnsembleFQE(config, data.obs.shape[2], data.action.shape[2])
        k_init, k_run = jax.random.split(key)
        state = critics.init(k_init, data.obs.shape[0])
        next_action_fn = lambda o, c, k: act(o, c)  # noqa: E731

        def body(st, k):
            return critics.update(st, data, next_action_fn, k)[0], None

        state, _ = jax.lax.scan(body, state, jax.random.split(k_run, steps))
        return state

    return fqe


# ---------------------------------------------------------------- sharding
def env_mesh(devices=None) -> Mesh:
    """A 1-D mesh ``('envs',)`` over ``devices`` (default: all)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.asarray(devices, dtype=object), (ENV_AXIS,))


def shard_envs(tree: Any, mesh: Mesh, num_envs: int) -> Any:
    """Place every leaf of ``tree`` whose leading axis is ``num_envs`` split over the mesh's
    ``'envs'`` axis (others replicated). ``num_envs`` must be a multiple of the axis size."""
    size = mesh.shape[ENV_AXIS]
    if num_envs % size:
        raise ValueError(f"`num_envs` ({num_envs}) must be a multiple of the number of devices on the "
                         f"'{ENV_AXIS}' mesh axis ({size}) to shard the environment axis")
    split = NamedSharding(mesh, PartitionSpec(ENV_AXIS))
    whole = NamedSharding(mesh, PartitionSpec())

    def put(x):
        if np.ndim(x) >= 1 and np.shape(x)[0] == num_envs:
            return jax.device_put(x, split)
        return jax.device_put(x, whole)

    return jax.tree.map(put, tree)
