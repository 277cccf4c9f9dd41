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

import math

import jax
import jax.numpy as jnp
from flax import struct

from zsgjax import checks
from zsgjax.offline.dataset import OfflineDataset
from zsgjax.offline.linear_mdp import ContextualLinearMDP, zero_shot_value
from zsgjax.offline.pevi import check_inputs, dataset_statistics, pessimistic_evaluation
from zsgjax.offline.policies import tabular_softmax_policy


@struct.dataclass
class PPPOResult:
    """Output of :func:`pppo`.

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
    return PPPOResult(iterates=iterates, values=values, index=index, policy=iterates[index], final=tabular_softmax_policy(final_logits))


def pppo(key: jax.Array, phi: jax.Array, dataset: OfflineDataset, beta: float, lam: float = 1.0, step_size: float | None = None) -> PPPOResult:
    """Run PPPO over the environments of ``dataset`` in their stored order.

    Args:
      key: PRNG key of the uniform draw of the output iterate.
      phi: ``(S, A, d)``; beta, lam: PEVI's coefficients.
      step_size: mirror-descent ``alpha`` (default :func:`default_step_size`).
    """
    checks.prng_key(key, "pppo: `key`")
    check_inputs(phi, dataset, None, beta, lam)
    if step_size is None:
        alpha = default_step_size(dataset.num_actions, dataset.horizon, dataset.num_envs)
    else:
        alpha = checks.real(step_size, "pppo: `step_size`", low=0.0, low_open=True)
    stats = dataset_statistics(phi, dataset, lam)
    return _pppo(key, phi, stats, dataset, beta, alpha)


def mixture_zero_shot_value(family: ContextualLinearMDP, contexts: jax.Array, iterates: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """Exact zero-shot value of the uniform mixture of ``iterates (n, H, S, A)`` (= expected value of the drawn iterate)."""
    return jnp.mean(jax.vmap(lambda pi: zero_shot_value(family, contexts, pi, weights))(iterates))
