"""Exact solvers for finite discounted MDPs given as dense arrays.

An MDP here is a transition tensor ``T`` of shape ``(S, A, S)`` (row ``T[s, a]`` is
the distribution of the next state), an expected reward ``R`` of shape ``(S, A)``
and a discount ``gamma`` in ``[0, 1)``. A stochastic policy is an array of shape
``(S, A)`` whose rows are distributions. All solvers are pure ``jax.numpy``
functions (jittable, vmappable over stacked MDPs or policies).

Input checks (:func:`check_mdp`, :func:`check_policy`) raise ``ValueError`` on
concrete arrays; under ``jit``/``vmap`` traced values cannot be inspected and are
passed through unchecked.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def concrete(x):
    """``x`` as a NumPy array, or ``None`` when ``x`` is a tracer (inside jit/vmap/grad)."""
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def check_gamma(gamma) -> None:
    """Raise ``ValueError`` unless the discount ``gamma`` is a scalar in ``[0, 1)``."""
    g = concrete(gamma)
    if g is None:
        return
    if g.shape != () or not (0.0 <= float(g) < 1.0):
        raise ValueError(f"`gamma` must be a scalar in [0, 1), got {g.tolist()}")


def check_mdp(transition, reward) -> None:
    """Raise ``ValueError`` unless ``transition`` is ``(S, A, S)`` stochastic and ``reward`` is ``(S, A)``."""
    t = concrete(transition)
    r = concrete(reward)
    if t is not None:
        if t.ndim != 3 or t.shape[0] != t.shape[2]:
            raise ValueError(f"`transition` must have shape (S, A, S), got {t.shape}")
        if np.any(t < 0) or not np.allclose(t.sum(-1), 1.0, atol=1e-5):
            raise ValueError("`transition` rows T[s, a, :] must be non-negative and sum to 1")
    if r is not None and t is not None and r.shape != t.shape[:2]:
        raise ValueError(f"`reward` must have shape (S, A) = {t.shape[:2]}, got {r.shape}")


def check_policy(policy, num_states: int, num_actions: int) -> None:
    """Raise ``ValueError`` unless ``policy`` is ``(S, A)`` with rows that are distributions."""
    pi = concrete(policy)
    if pi is None:
        return
    if pi.shape != (num_states, num_actions):
        raise ValueError(f"`policy` must have shape (S, A) = ({num_states}, {num_actions}), got {pi.shape}")
    if np.any(pi < 0):
        raise ValueError("`policy` entries must be non-negative (each row a distribution over actions)")
    sums = pi.sum(-1)
    if not np.allclose(sums, 1.0, atol=1e-5):
        bad = int(np.argmax(np.abs(sums - 1.0)))
        raise ValueError(f"`policy` rows must sum to 1; row {bad} sums to {float(sums[bad]):.6g}")


def evaluate_policy(transition: jax.Array, reward: jax.Array, policy: jax.Array, gamma) -> jax.Array:
    """Exact ``Q^pi`` of a fixed policy by one linear solve.

    Solves ``(I - gamma T_pi) V = R_pi`` with ``T_pi[s, s'] = sum_a pi(a|s) T[s, a, s']``
    and ``R_pi[s] = sum_a pi(a|s) R[s, a]``, then ``Q = R + gamma T V``.

    Args:
      transition: ``(S, A, S)``; reward: ``(S, A)``; policy: ``(S, A)``; gamma: scalar.
    Returns:
      ``Q`` of shape ``(S, A)``.
    """
    check_mdp(transition, reward)
    check_gamma(gamma)
    check_policy(policy, *reward.shape)
    t_pi = jnp.einsum("sa,sat->st", policy, transition)
    r_pi = jnp.sum(policy * reward, axis=-1)
    eye = jnp.eye(t_pi.shape[0], dtype=t_pi.dtype)
    v = jnp.linalg.solve(eye - gamma * t_pi, r_pi)
    return reward + gamma * transition @ v


def value_iteration(transition: jax.Array, reward: jax.Array, gamma, tol: float = 1e-10, max_iters: int = 10_000) -> jax.Array:
    """Optimal ``Q*`` by value iteration, stopped when the sup-norm update is below ``tol``.

    Args:
      transition: ``(S, A, S)``; reward: ``(S, A)``; gamma: scalar in ``[0, 1)``.
      tol: stop when ``max |Q_{k+1} - Q_k| <= tol`` (then ``|Q_k - Q*| <= tol gamma / (1 - gamma)``).
      max_iters: hard cap on the number of sweeps.
    Returns:
      ``Q*`` of shape ``(S, A)``.
    """
    check_mdp(transition, reward)
    check_gamma(gamma)
    if not tol > 0:
        raise ValueError(f"`tol` must be > 0, got {tol}")
    if int(max_iters) < 1:
        raise ValueError(f"`max_iters` must be >= 1, got {max_iters}")

    def bellman(q):
        return reward + gamma * transition @ jnp.max(q, axis=-1)

    def cond(carry):
        _, delta, it = carry
        return (delta > tol) & (it < max_iters)

    def body(carry):
        q, _, it = carry
        q_new = bellman(q)
        return q_new, jnp.max(jnp.abs(q_new - q)), it + 1

    q0 = jnp.zeros_like(reward)
    init = (q0, jnp.asarray(jnp.inf, reward.dtype), jnp.asarray(0))
    q, _, _ = jax.lax.while_loop(cond, body, init)
    return q


def greedy_policy(q: jax.Array) -> jax.Array:
    """Deterministic greedy policy of ``q`` ``(S, A)`` as one-hot rows ``(S, A)`` (ties: lowest action)."""
    return jax.nn.one_hot(jnp.argmax(q, axis=-1), q.shape[-1], dtype=q.dtype)


def uniform_policy(num_states: int, num_actions: int, dtype=None) -> jax.Array:
    """Uniform random policy, shape ``(num_states, num_actions)``."""
    if num_states < 1 or num_actions < 1:
        raise ValueError(f"`num_states` and `num_actions` must be >= 1, got {num_states}, {num_actions}")
    return jnp.full((num_states, num_actions), 1.0 / num_actions, dtype=dtype or jnp.result_type(float))
