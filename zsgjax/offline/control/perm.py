"""PERM with neural critics: one policy for n environments, per-environment pessimism.

The practical (actor-critic) form of pessimistic empirical risk minimisation (arXiv
2503.07988): one shared deterministic policy ``pi`` (:mod:`~zsgjax.offline.control.policy`;
by default it does not see the context) and, for every environment i, an ensemble of M
critics fitted to ``D_i`` alone by FQE of the current ``pi``
(:mod:`~zsgjax.offline.control.critics`). Each iteration:

1. ``critic_steps`` FQE updates of all n x M critics (one vmapped program);
2. one Adam step of the policy on

       L(pi) = -(1/n) sum_i mean_{s ~ D_i} Q_i^-(s, pi(s))                (bc_alpha None)
       L(pi) = -(bc_alpha / mean|Q^-|) (1/n) sum_i mean Q_i^-(s, pi(s))
               + (1/n) sum_i mean_{(s, a) ~ D_i} |pi(s) - a|^2              (TD3+BC's term)

   with ``Q_i^- = mean_m Q_i^m - beta std_m Q_i^m`` (or ``min_m``).

``train(key, data, env_weights=None)``: optional importance weights ``w (n,)`` of the
training environments replace both ``(1/n) sum_i`` by ``sum_i w_i (.) / sum_i w_i``.
When the training environments were drawn from a law ``P`` and the test law ``Q`` is
known, ``w_i = dQ/dP(c_i)`` makes the objective an (self-normalised) importance-sampling
estimate of the test law's mean value instead of the training law's
(:func:`check_env_weights` states the accepted input).

All iterations run in one ``lax.scan``; :func:`make_perm` returns the jittable
``train(key, data) -> PERMResult`` (vmap it over seeds: keys ``(S,)`` and data with a
leading ``S``). Run it on ``data.merge()`` for the merged-data ("average MDP") baseline.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from zsgjax import checks
from zsgjax.offline.control.configs import PERMConfig
from zsgjax.offline.control.critics import CriticState, EnsembleFQE
from zsgjax.offline.control.policy import Policy, make_policy
from zsgjax.offline.control.transitions import Transitions, check_transitions


@struct.dataclass
class PERMResult:
    """Output of PERM's ``train`` (the fields the linear PERM's result shares come first).

    policy_params: the trained policy's parameters (apply with :func:`policy_of`)
    objective:     ``()`` the last iteration's objective (``trace["objective"][-1]``)
    trace:         per-iteration metrics, each ``(iterations,)``: ``objective`` (mean Q^-
                   of the policy's actions on the actor batch), ``critic_loss``, ``bc_mse``
    critics:       the final :class:`~zsgjax.offline.control.critics.CriticState` (leaves ``(n, M, ...)``)
    """

    policy_params: Any
    objective: jax.Array
    trace: dict
    critics: CriticState


def policy_of(config: PERMConfig, data: Transitions) -> Policy:
    """The :class:`~zsgjax.offline.control.policy.Policy` that ``train`` fits on ``data``'s shapes."""
    return make_policy(config.actor, data.obs.shape[2], data.contexts.shape[1], data.action.shape[2])


def critics_of(config: PERMConfig, data: Transitions) -> EnsembleFQE:
    return EnsembleFQE(config.critic, data.obs.shape[2], data.action.shape[2], config.actor.action_scale)


def check_env_weights(env_weights: Any, num_envs: int) -> Any:
    """``env_weights``: ``None`` (equal weights) or ``(num_envs,)`` real, finite, ``>= 0``, with a
    positive sum (concrete values are checked; a traced array: shape and dtype only). Returned
    unchanged."""
    if env_weights is None:
        return None
    name = "`env_weights` (importance weights of the training environments)"
    if checks.is_traced(env_weights):
        checks.check_shape(env_weights, name, shape=(num_envs,))
        if np.dtype(env_weights.dtype).kind not in "iuf":
            raise ValueError(f"{name} must be a real array, got dtype {env_weights.dtype}")
        return env_weights
    w = checks.numeric_array(env_weights, name, shape=(num_envs,), finite=True)
    if np.any(w < 0) or not np.sum(w) > 0:
        raise ValueError(f"{name} must be >= 0 with a positive sum, got min {float(np.min(w)):g} and sum "
                         f"{float(np.sum(w)):g}")
    return env_weights


def env_mean(x: jax.Array, env_weights: jax.Array | None) -> jax.Array:
    """``x (n, ...)`` -> ``()``: the mean over all entries, environments weighted by ``env_weights (n,)``
    (``sum_i w_i mean(x_i) / sum_i w_i``; ``None``: the plain mean)."""
    per_env = jnp.mean(x.reshape(x.shape[0], -1), axis=1)
    if env_weights is None:
        return jnp.mean(per_env)
    w = jnp.asarray(env_weights, per_env.dtype)
    return jnp.sum(w * per_env) / jnp.sum(w)


def actor_loss(policy: Policy, critics: EnsembleFQE, bc_alpha, policy_params, critic_params, obs, action, contexts,
               env_weights=None):
    """PERM's policy loss on a batch ``obs/action (n, B, ...)``, ``contexts (n, k)``, optional
    ``env_weights (n,)``; ``(loss, aux)``."""
    pi = jax.vmap(lambda o, c: policy.act(policy_params, o, c))(obs, contexts)  # (n, B, act)
    q = jax.vmap(critics.pessimistic_env)(critic_params, obs, pi)  # (n, B)
    objective = env_mean(q, env_weights)
    bc = env_mean(jnp.sum(jnp.square(pi - action), axis=-1), env_weights)
    if bc_alpha is None:
        loss = -objective
    else:
        lam = bc_alpha / jax.lax.stop_gradient(jnp.maximum(jnp.mean(jnp.abs(q)), 1e-6))
        loss = -lam * objective + bc
    return loss, (objective, bc)


def sample_states(key, data: Transitions, batch_size: int):
    """``(obs, action)`` ``(n, batch_size, ...)``: a batch from every environment's own data."""
    n, N = data.obs.shape[:2]
    idx = jax.random.randint(key, (n, batch_size), 0, N)
    take = jax.vmap(lambda x, i: x[i])
    return take(data.obs, idx), take(data.action, idx)


def make_perm(config: PERMConfig) -> Callable[[jax.Array, Transitions], PERMResult]:
    """``train(key, data, env_weights=None) -> PERMResult`` (jittable; the config is validated here).

    ``data``: a :class:`Transitions` of n >= 1 environments (shapes are read at trace
    time). Call :func:`check_transitions` on concrete data first (``run_perm`` does).
    ``env_weights``: ``None`` or ``(n,)`` importance weights of the environments
    (:func:`check_env_weights`; the module docstring).
    """
    if not isinstance(config, PERMConfig):
        raise ValueError(f"`config` must be a PERMConfig, got {type(config).__name__}")
    config.validate()
    ac = config.actor

    def train(key: jax.Array, data: Transitions, env_weights: jax.Array | None = None) -> PERMResult:
        env_weights = check_env_weights(env_weights, data.obs.shape[0])
        policy = policy_of(config, data)
        critics = critics_of(config, data)
        opt = optax.adam(ac.learning_rate)
        k_pi, k_q, k_run = jax.random.split(key, 3)
        policy_params = policy.init(k_pi)
        critic_state = critics.init(k_q, data.obs.shape[0])

        def iteration(carry, k):
            pp, opt_state, cs = carry
            k_c, k_a = jax.random.split(k)
            next_action_fn = lambda o, c, _k: policy.act(pp, o, c)  # noqa: E731

            def critic_step(st, kk):
                st, m = critics.update(st, data, next_action_fn, kk)
                return st, jnp.mean(m["loss"])

            cs, closs = jax.lax.scan(critic_step, cs, jax.random.split(k_c, config.critic_steps))
            obs, action = sample_states(k_a, data, ac.batch_size)
            (_, (objective, bc)), g = jax.value_and_grad(
                lambda p: actor_loss(policy, critics, ac.bc_alpha, p, cs.params, obs, action, data.contexts,
                                     env_weights),
                has_aux=True)(pp)
            upd, opt_state = opt.update(g, opt_state, pp)
            pp = optax.apply_updates(pp, upd)
            return (pp, opt_state, cs), {"objective": objective, "critic_loss": jnp.mean(closs), "bc_mse": bc}

        (pp, _, cs), trace = jax.lax.scan(iteration, (policy_params, opt.init(policy_params), critic_state),
                                          jax.random.split(k_run, config.iterations))
        return PERMResult(policy_params=pp, objective=trace["objective"][-1], trace=trace, critics=cs)

    return train


def run_perm(key: jax.Array, data: Transitions, config: PERMConfig = PERMConfig(),
             env_weights=None) -> PERMResult:
    """Check the arguments, then ``jit(make_perm(config))(key, data, env_weights)``."""
    checks.prng_key(key, "run_perm: `key`")
    check_transitions(data)
    check_env_weights(env_weights, data.obs.shape[0])
    return jax.jit(make_perm(config))(key, data, env_weights)
