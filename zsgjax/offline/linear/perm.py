"""PERM: pessimistic empirical risk minimisation over a policy class.

PERM picks the policy maximising the mean pessimistic value over the n training
environments, ``J(pi) = (1/n) sum_i V_i1^pi`` (each ``V_i`` from PEVI on environment
i's own data; all n in one ``vmap``).

* :func:`run_perm` / :func:`make_perm` (``train(key, data)``, the call shape of the
  neural :mod:`zsgjax.offline.control.perm`): the policy class is softmax over linear scores of the
  features per step, ``pi_h(a|x) ∝ exp(phi(x, a) · theta_h)``, ``theta (H, d)``;
  ``J`` is maximised by Adam (optax) through the vmapped pessimistic evaluation, from
  several starts in one ``vmap`` (start 0 is the uniform policy), keeping the best.
* :func:`perm_enumerate`: exact maximisation of ``J`` over every deterministic Markov
  policy (tiny problems only), the check for the gradient version.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from zsgjax import checks
from zsgjax.configs import param, validate
from zsgjax.offline.linear.dataset import LinearData, OfflineDataset
from zsgjax.offline.linear.pevi import (check_inputs, dataset_statistics, default_beta, mean_pessimistic_value,
                                        pevi_statistics)
from zsgjax.offline.linear.policies import deterministic_policy, enumerate_deterministic_policies, softmax_linear_policy


@dataclasses.dataclass(frozen=True)
class PERMConfig:
    """PERM by gradient ascent over softmax-linear policies.

    beta: PEVI's pessimism coefficient (``None``: :func:`~zsgjax.offline.linear.pevi.default_beta`
    of the data's ``d, H, K``); lam: the ridge lambda; iterations, learning_rate: the Adam
    ascent; num_restarts: starts run in one ``vmap`` (start 0 is ``theta = 0``, the others
    ``N(0, init_scale^2)``).
    """

    beta: float | None = param(None, low=0.0)
    lam: float = param(1.0, low=0.0, low_open=True)
    iterations: int = param(300, kind=int, low=1)
    learning_rate: float = param(0.1, low=0.0, low_open=True)
    num_restarts: int = param(4, kind=int, low=1)
    init_scale: float = param(1.0, low=0.0)

    def validate(self) -> "PERMConfig":
        return validate(self)


@struct.dataclass
class PERMResult:
    """Output of PERM's ``train`` (the fields the neural PERM's result shares come first).

    policy_params: ``(H, d)`` score weights ``theta`` of the best start
    objective:     ``()`` its mean pessimistic value ``J``
    trace:         ``{"objective": (iterations,)}``, ``J`` along the best start's ascent
    policy:        ``(H, S, A)`` its action probabilities
    """

    policy_params: jax.Array
    objective: jax.Array
    trace: dict
    policy: jax.Array


def resolve_beta(beta: float | None, data: LinearData) -> float:
    """``beta``, or :func:`~zsgjax.offline.linear.pevi.default_beta` of ``data``'s ``d, H, K`` when ``None``."""
    if beta is not None:
        return beta
    return default_beta(data.phi.shape[-1], data.dataset.horizon, data.dataset.num_episodes)


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
    return PERMResult(policy_params=theta, objective=finals[best], trace={"objective": traces[best]},
                      policy=softmax_linear_policy(phi, theta))


def make_perm(config: PERMConfig = PERMConfig()) -> Callable[[jax.Array, LinearData], PERMResult]:
    """``train(key, data) -> PERMResult`` (jittable, vmappable over seeds; the config is validated here).

    The same call shape as :func:`zsgjax.offline.control.perm.make_perm`. Check concrete
    data first with :func:`~zsgjax.offline.linear.pevi.check_inputs` (``run_perm`` does).
    """
    if not isinstance(config, PERMConfig):
        raise ValueError(f"`config` must be a zsgjax.offline.linear.PERMConfig, got {type(config).__name__}")
    config.validate()

    def train(key: jax.Array, data: LinearData) -> PERMResult:
        stats = jax.vmap(pevi_statistics, in_axes=(None, 0, 0, None))(
            data.phi, data.dataset.states, data.dataset.actions, config.lam)
        return _ascend(key, data.phi, stats, data.dataset, resolve_beta(config.beta, data), config.iterations,
                       config.num_restarts, config.learning_rate, config.init_scale)

    return train


def run_perm(key: jax.Array, data: LinearData, config: PERMConfig = PERMConfig()) -> PERMResult:
    """Check the arguments, then ``make_perm(config)(key, data)``.

    Args:
      key: PRNG key of the random starts.
      data: the features and the n environments' data (:class:`~zsgjax.offline.linear.dataset.LinearData`).
      config: beta, lam and the ascent's settings (:class:`PERMConfig`).
    """
    checks.prng_key(key, "run_perm: `key`")
    train = make_perm(config)
    check_data(data, config.beta, config.lam)
    return train(key, data)


def check_data(data, beta, lam) -> None:
    """Host-side checks of a :class:`LinearData` and PEVI's coefficients (``ValueError`` naming the argument)."""
    if not isinstance(data, LinearData):
        raise ValueError(f"`data` must be a zsgjax.offline.linear.LinearData(phi, dataset), got {type(data).__name__}")
    check_inputs(data.phi, data.dataset, None, 0.0 if beta is None else beta, lam)


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
    data: LinearData,
    beta: float,
    lam: float = 1.0,
    max_policies: int = 1 << 16,
    batch_size: int = 512,
) -> EnumerationResult:
    """PERM over all ``A**(S*H)`` deterministic Markov policies (exact; tiny problems).

    Raises:
      ValueError: when there are more than ``max_policies`` policies.
    """
    check_data(data, beta, lam)
    max_policies = checks.integer(max_policies, "perm_enumerate: `max_policies`", low=1, high=None)
    batch_size = checks.integer(batch_size, "perm_enumerate: `batch_size`", low=1)
    dataset = data.dataset
    actions = enumerate_deterministic_policies(dataset.num_states, dataset.num_actions, dataset.horizon, max_policies)
    stats = dataset_statistics(data.phi, dataset, lam)
    return _enumerate(data.phi, stats, dataset, beta, actions, batch_size)
