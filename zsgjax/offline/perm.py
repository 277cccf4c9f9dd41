"""PERM: pessimistic empirical risk minimisation over a policy class.

PERM picks the policy maximising the mean pessimistic value over the n training
environments, ``J(pi) = (1/n) sum_i V_i1^pi`` (each ``V_i`` from PEVI on environment
i's own data; all n in one ``vmap``).

* :func:`perm_gradient`: the policy class is softmax over linear scores of the
  features per step, ``pi_h(a|x) ∝ exp(phi(x, a) · theta_h)``, ``theta (H, d)``;
  ``J`` is maximised by Adam (optax) through the vmapped pessimistic evaluation, from
  several starts in one ``vmap`` (start 0 is the uniform policy), keeping the best.
* :func:`perm_enumerate`: exact maximisation of ``J`` over every deterministic Markov
  policy (tiny problems only), the check for the gradient version.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import optax
from flax import struct

from zsgjax import checks
from zsgjax.offline.dataset import OfflineDataset
from zsgjax.offline.pevi import check_inputs, dataset_statistics, mean_pessimistic_value
from zsgjax.offline.policies import deterministic_policy, enumerate_deterministic_policies, softmax_linear_policy


@struct.dataclass
class PERMResult:
    """Output of :func:`perm_gradient`.

    theta:     ``(H, d)`` score weights of the best start
    policy:    ``(H, S, A)`` its action probabilities
    objective: ``()`` its mean pessimistic value ``J``
    trace:     ``(steps,)`` ``J`` along the best start's ascent
    """

    theta: jax.Array
    policy: jax.Array
    objective: jax.Array
    trace: jax.Array


@struct.dataclass
class EnumerationResult:
    """Output of :func:`perm_enumerate`.

    actions:    ``(H, S)`` the maximising deterministic policy
    policy:     ``(H, S, A)`` the same as one-hot probabilities
    objective:  ``()`` its ``J``
    objectives: ``(P,)`` ``J`` of every enumerated policy
    """

    actions: jax.Array
    policy: jax.Array
    objective: jax.Array
    objectives: jax.Array


@partial(jax.jit, static_argnames=("steps", "num_restarts", "learning_rate"))
def _ascend(key, phi, stats, dataset, beta, steps: int, num_restarts: int, learning_rate: float, init_scale):
    H, d = dataset.states.shape[2], phi.shape[-1]
    opt = optax.adam(learning_rate)

    def objective(theta):
        return mean_pessimistic_value(phi, stats, dataset, softmax_linear_policy(phi, theta), beta)

    value_and_grad = jax.value_and_grad(objective)

    def run(theta0):
        def step(carry, _):
            theta, opt_state = carry
            value, grad = value_and_grad(theta)
            updates, opt_state = opt.update(jax.tree.map(jnp.negative, grad), opt_state, theta)
            return (optax.apply_updates(theta, updates), opt_state), value

        (theta, _), trace = jax.lax.scan(step, (theta0, opt.init(theta0)), None, length=steps)
        return theta, objective(theta), trace

    starts = init_scale * jax.random.normal(key, (num_restarts, H, d), phi.dtype)
    starts = starts.at[0].set(0.0)
    thetas, finals, traces = jax.vmap(run)(starts)
    best = jnp.argmax(finals)
    theta = thetas[best]
    return PERMResult(theta=theta, policy=softmax_linear_policy(phi, theta), objective=finals[best], trace=traces[best])


def perm_gradient(
    key: jax.Array,
    phi: jax.Array,
    dataset: OfflineDataset,
    beta: float,
    lam: float = 1.0,
    steps: int = 300,
    learning_rate: float = 0.1,
    num_restarts: int = 4,
    init_scale: float = 1.0,
) -> PERMResult:
    """PERM by gradient ascent over softmax-linear policies.

    Args:
      key: PRNG key for the random starts.
      phi: ``(S, A, d)``; dataset: n environments; beta, lam: PEVI's coefficients.
      steps, learning_rate: Adam ascent; num_restarts: starts run in one ``vmap``
        (start 0 is ``theta = 0``, the others ``N(0, init_scale^2)``).
    """
    checks.prng_key(key, "perm_gradient: `key`")
    check_inputs(phi, dataset, None, beta, lam)
    steps = checks.integer(steps, "perm_gradient: `steps`", low=1)
    num_restarts = checks.integer(num_restarts, "perm_gradient: `num_restarts`", low=1)
    learning_rate = checks.real(learning_rate, "perm_gradient: `learning_rate`", low=0.0, low_open=True)
    checks.real(init_scale, "perm_gradient: `init_scale`", low=0.0)
    stats = dataset_statistics(phi, dataset, lam)
    return _ascend(key, phi, stats, dataset, beta, steps, num_restarts, learning_rate, init_scale)


@partial(jax.jit, static_argnames=("batch_size",))
def _enumerate(phi, stats, dataset, beta, actions, batch_size: int):
    A = phi.shape[1]

    def one(acts):
        return mean_pessimistic_value(phi, stats, dataset, deterministic_policy(acts, A), beta)

    objectives = jax.lax.map(one, actions, batch_size=batch_size)
    best = jnp.argmax(objectives)
    return EnumerationResult(
        actions=actions[best], policy=deterministic_policy(actions[best], A), objective=objectives[best], objectives=objectives
    )


def perm_enumerate(
    phi: jax.Array,
    dataset: OfflineDataset,
    beta: float,
    lam: float = 1.0,
    max_policies: int = 1 << 16,
    batch_size: int = 512,
) -> EnumerationResult:
    """PERM over all ``A**(S*H)`` deterministic Markov policies (exact; tiny problems).

    Raises:
      ValueError: when there are more than ``max_policies`` policies.
    """
    check_inputs(phi, dataset, None, beta, lam)
    max_policies = checks.integer(max_policies, "perm_enumerate: `max_policies`", low=1, high=None)
    batch_size = checks.integer(batch_size, "perm_enumerate: `batch_size`", low=1)
    actions = enumerate_deterministic_policies(dataset.num_states, dataset.num_actions, dataset.horizon, max_policies)
    stats = dataset_statistics(phi, dataset, lam)
    return _enumerate(phi, stats, dataset, beta, actions, batch_size)
