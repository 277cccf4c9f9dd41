"""PPPO with neural critics: one environment at a time, mirror-descent policy steps.

The paper's sequential scheme (arXiv 2503.07988) for continuous actions. The policy is
the fixed-std Gaussian ``pi(.|s) = N(m(s), sigma^2)`` in pre-tanh space, acted on by its
mean (:mod:`~zsgjax.offline.control.policy`). From a random ``pi_1``, for k = 1..n:

1. evaluate ``pi_k`` pessimistically on ``D_k`` alone: M fresh critics, ``eval_steps``
   FQE updates (:mod:`~zsgjax.offline.control.critics`), ``Q_k^-`` their mean minus
   beta std (or min);
2. mirror-descent (KL-proximal) improvement: ``improve_steps`` Adam steps from ``pi_k``
   on the loss

       -mean_{s ~ D_k} Q_k^-(s, pi(s)) + (1 / step_size) mean_{s ~ D_k} KL(pi(.|s) || pi_k(.|s)),
       KL = |m(s) - m_k(s)|^2 / (2 sigma^2)

   (plus TD3+BC's term when ``actor.bc_alpha`` is set), giving ``pi_{k+1}``.

With ``passes = P`` the sequence is run P times (T = P n steps, environment ``k mod n``
at step k, the critics of every step fresh): online mirror descent's regret bound over T
steps needs T large against the spread of the environments' objectives, and one pass
gives T = n. The whole run is one ``lax.scan`` over the T steps. The output is an
iterate drawn uniformly from ``pi_1..pi_T`` (``policy``) and ``pi_{T+1}`` (``final``).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from zsgjax import checks
from zsgjax.offline.control.configs import PPPOConfig
from zsgjax.offline.control.critics import EnsembleFQE
from zsgjax.offline.control.policy import Policy, make_policy
from zsgjax.offline.control.transitions import Transitions, check_transitions


@struct.dataclass
class PPPOResult:
    """Output of PPPO's ``train``.

    iterates: policy parameters of ``pi_1..pi_T`` (T = passes x n), leaves with a leading ``T``
    values:   ``(T,)`` ``mean_{s ~ D_k} Q_k^-(s, pi_k(s))``, the pessimistic value of ``pi_k`` on its
              environment ``k mod n``
    index:    ``()`` the uniformly drawn iterate, in ``[0, T)``
    policy:   ``iterates[index]``, PPPO's output
    final:    ``pi_{T+1}``, after the last step
    """

    iterates: Any
    values: jax.Array
    index: jax.Array
    policy: Any
    final: Any


def proximal_loss(config: PPPOConfig, policy: Policy, critics: EnsembleFQE, params, anchor_params, critic_params,
                  obs: jax.Array, action: jax.Array, context: jax.Array):
    """PPPO's improvement loss on one batch of environment k; ``(loss, objective)``.

    ``-mean Q_k^-(s, pi(s)) + (1 / step_size) mean |m(s) - m_k(s)|^2 / (2 policy_std^2)``
    (TD3+BC's scaled form of the first term when ``actor.bc_alpha`` is set), with
    ``params`` the policy being improved (differentiate with respect to it alone),
    ``anchor_params`` ``pi_k``, ``critic_params`` env k's ensemble (leaves ``(M, ...)``),
    ``obs/action (B, ...)``.
    """
    ac = config.actor
    m = policy.mean(params, obs, context)
    pi = ac.action_scale * jnp.tanh(m)
    q = critics.pessimistic_env(critic_params, obs, pi)
    anchor = policy.mean(anchor_params, obs, context)
    kl = jnp.mean(jnp.sum(jnp.square(m - anchor), -1)) / (2.0 * config.policy_std**2)
    objective = jnp.mean(q)
    if ac.bc_alpha is None:
        pg = -objective
    else:
        lam = ac.bc_alpha / jax.lax.stop_gradient(jnp.maximum(jnp.mean(jnp.abs(q)), 1e-6))
        pg = -lam * objective + jnp.mean(jnp.sum(jnp.square(pi - action), -1))
    return pg + kl / config.step_size, objective


def make_pppo(config: PPPOConfig) -> Callable[[jax.Array, Transitions], PPPOResult]:
    """``train(key, data) -> PPPOResult`` over ``data``'s environments in stored order, ``passes``
    times (jittable)."""
    if not isinstance(config, PPPOConfig):
        raise ValueError(f"`config` must be a PPPOConfig, got {type(config).__name__}")
    config.validate()
    ac = config.actor

    def train(key: jax.Array, data: Transitions) -> PPPOResult:
        n = data.obs.shape[0]
        policy = make_policy(ac, data.obs.shape[2], data.contexts.shape[1], data.action.shape[2])
        critics = EnsembleFQE(config.critic, data.obs.shape[2], data.action.shape[2], ac.action_scale)
        opt = optax.adam(ac.learning_rate)
        k_pi, k_envs, k_index = jax.random.split(key, 3)
        params0 = policy.init(k_pi)

        def one_env(pp, inp):
            k, i = inp
            env = jax.tree.map(lambda x: x[i], data)  # environment i: leaves (N, ...) / contexts (k,)
            env1 = jax.tree.map(lambda x: x[None], env)  # as n = 1
            k_init, k_eval, k_imp = jax.random.split(k, 3)
            next_action_fn = lambda o, c, _k: policy.act(pp, o, c)  # noqa: E731

            def eval_step(st, kk):
                return critics.update(st, env1, next_action_fn, kk)[0], None

            cs, _ = jax.lax.scan(eval_step, critics.init(k_init, 1), jax.random.split(k_eval, config.eval_steps))
            params_env = jax.tree.map(lambda x: x[0], cs.params)
            ctx = env.contexts

            def improve_step(carry, kk):
                p, o_state = carry
                idx = jax.random.randint(kk, (ac.batch_size,), 0, env.obs.shape[0])
                g = jax.grad(lambda q: proximal_loss(config, policy, critics, q, pp, params_env, env.obs[idx],
                                                     env.action[idx], ctx)[0])(p)
                upd, o_state = opt.update(g, o_state, p)
                return (optax.apply_updates(p, upd), o_state), None

            value = jnp.mean(critics.pessimistic_env(params_env, env.obs, policy.act(pp, env.obs, ctx)))
            (new_pp, _), _ = jax.lax.scan(improve_step, (pp, opt.init(pp)), jax.random.split(k_imp, config.improve_steps))
            return new_pp, (pp, value)

        steps = config.passes * n
        order = jnp.arange(steps) % n
        final, (iterates, values) = jax.lax.scan(one_env, params0, (jax.random.split(k_envs, steps), order))
        index = jax.random.randint(k_index, (), 0, steps)
        drawn = jax.tree.map(lambda x: x[index], iterates)
        return PPPOResult(iterates=iterates, values=values, index=index, policy=drawn, final=final)

    return train


def run_pppo(key: jax.Array, data: Transitions, config: PPPOConfig = PPPOConfig()) -> PPPOResult:
    """Check the arguments, then ``jit(make_pppo(config))(key, data)``."""
    checks.prng_key(key, "run_pppo: `key`")
    check_transitions(data)
    return jax.jit(make_pppo(config))(key, data)
