"""PPPO: pessimistic proximal policy optimisation, one environment at a time.

Starting from the uniform policy ``pi_1``, for k = 1..n: evaluate ``pi_k``
pessimistically on environment k's data (PEVI with the policy given), then take a
mirror-descent (exponentiated-gradient) step

    pi_{k+1,h}(.|x) ∝ pi_{k,h}(.|x) exp(alpha Q_kh(x, .)),

kept in logit form (``logits_{k+1} = logits_k + alpha Q_k``) inside one ``lax.scan``.
The output is an iterate drawn uniformly from ``pi_1..pi_n``; its expected value is
the value of the *mixture* (pick one iterate per episode, then follow it), which
:func:`mixture_zero_shot_value` computes exactly. The default step is the usual
online-mirror-descent choice ``alpha = sqrt(2 log A / (H^2 n))`` for Q in [0, H].
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import struct

from zsgjax.configs import param, validate
from zsgjax import checks
from zsgjax.offline.linear.dataset import LinearData
from zsgjax.offline.linear.mdp import ContextualLinearMDP, zero_shot_value
from zsgjax.offline.linear.perm import check_data, resolve_beta
from zsgjax.offline.linear.pevi import pessimistic_evaluation, pevi_statistics
from zsgjax.offline.linear.policies import tabular_softmax_policy


@dataclasses.dataclass(frozen=True)
class PPPOConfig:
    """PPPO on linear MDPs.

    beta: PEVI's pessimism coefficient (``None``: :func:`~zsgjax.offline.linear.pevi.default_beta`
    of the data); lam: the ridge lambda; step_size: mirror-descent ``alpha`` (``None``:
    :func:`default_step_size` of the data). One iteration per environment, as in the
    neural :class:`~zsgjax.offline.control.configs.PPPOConfig`.
    """

    beta: float | None = param(None, low=0.0)
    lam: float = param(1.0, low=0.0, low_open=True)
    step_size: float | None = param(None, low=0.0, low_open=True)

    def validate(self) -> "PPPOConfig":
        return validate(self)


@struct.dataclass
class PPPOResult:
    """Output of PPPO's ``train`` (the same fields as the neural PPPO's result).

    iterates: ``(n, H, S, A)`` probabilities of ``pi_1..pi_n`` (``pi_k`` evaluated on env k)
    values:   ``(n,)`` pessimistic value of ``pi_k`` on environment k
    index:    ``()`` the uniformly drawn iterate
    policy:   ``(H, S, A)`` ``iterates[index]``, PPPO's output
    final:    ``(H, S, A)`` ``pi_{n+1}``, after the last update (for reference)
    """

    iterates: jax.Array
    values: jax.Array
    index: jax.Array
    policy: jax.Array
    final: jax.Array


def default_step_size(num_actions: int, horizon: int, num_envs: int) -> float:
    """``sqrt(2 log A / (H^2 n))``."""
    return math.sqrt(2.0 * math.log(max(num_actions, 2)) / (horizon**2 * num_envs))


@jax.jit
def _pppo(key, phi, stats, dataset, beta, alpha):
    H = dataset.states.shape[2]
    S, A = phi.shape[:2]

    def step(logits, env):
        st, rewards, next_states, states = env
        pi = tabular_softmax_policy(logits)
        res = pessimistic_evaluation(phi, st, rewards, next_states, states[:, 0], pi, beta)
        return logits + alpha * res.q, (pi, res.value)

    env_data = (stats, dataset.rewards, dataset.next_states, dataset.states)
    final_logits, (iterates, values) = jax.lax.scan(step, jnp.zeros((H, S, A), phi.dtype), env_data)
    index = jax.random.randint(key, (), 0, iterates.shape[0])
    return PPPOResult(iterates=iterates, values=values, index=index, policy=iterates[index],
                      final=tabular_softmax_policy(final_logits))


def make_pppo(config: PPPOConfig = PPPOConfig()) -> Callable[[jax.Array, LinearData], PPPOResult]:
    """``train(key, data) -> PPPOResult`` over ``data``'s environments in stored order (jittable,
    vmappable over seeds; the config is validated here). The call shape of
    :func:`zsgjax.offline.control.pppo.make_pppo`."""
    if not isinstance(config, PPPOConfig):
        raise ValueError(f"`config` must be a zsgjax.offline.linear.PPPOConfig, got {type(config).__name__}")
    config.validate()

    def train(key: jax.Array, data: LinearData) -> PPPOResult:
        dataset = data.dataset
        alpha = config.step_size
        if alpha is None:
            alpha = default_step_size(dataset.num_actions, dataset.horizon, dataset.num_envs)
        stats = jax.vmap(pevi_statistics, in_axes=(None, 0, 0, None))(data.phi, dataset.states, dataset.actions,
                                                                        config.lam)
        return _pppo(key, data.phi, stats, dataset, resolve_beta(config.beta, data), alpha)

    return train


def run_pppo(key: jax.Array, data: LinearData, config: PPPOConfig = PPPOConfig()) -> PPPOResult:
    """Check the arguments, then ``make_pppo(config)(key, data)``.

    Args:
      key: PRNG key of the uniform draw of the output iterate.
      data: the features and the n environments' data (:class:`~zsgjax.offline.linear.dataset.LinearData`).
      config: beta, lam and the step size (:class:`PPPOConfig`).
    """
    checks.prng_key(key, "run_pppo: `key`")
    train = make_pppo(config)
    check_data(data, config.beta, config.lam)
    return train(key, data)


def mixture_zero_shot_value(family: ContextualLinearMDP, contexts: jax.Array, iterates: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """Exact zero-shot value of the uniform mixture of ``iterates (n, H, S, A)`` (= expected value of the drawn iterate)."""
    return jnp.mean(jax.vmap(lambda pi: zero_shot_value(family, contexts, pi, weights))(iterates))
