"""Markov policies on a finite state set, as probability tables.

A policy is an array ``pi`` of shape ``(H, S, A)`` with ``pi[h, x, a]`` the probability
of action ``a`` in state ``x`` at step ``h`` (0-indexed). Two parametric forms are used
by the offline algorithms:

* softmax over linear scores of the features (PERM's policy class):
  ``pi_h(a | x) ∝ exp(phi(x, a) · theta_h)`` with ``theta`` of shape ``(H, d)``;
* deterministic policies ``(H, S)`` of action indices, enumerated exhaustively for tiny
  problems (the zero-shot objective is multilinear in the per-(h, x) action
  distributions, so its maximum over Markov policies is attained by one of them).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from zsgjax import checks


def softmax_linear_policy(phi: jax.Array, theta: jax.Array) -> jax.Array:
    """``pi[h, x, a] = softmax_a(phi[x, a] · theta[h])``.

    Args:
      phi: ``(S, A, d)`` features.
      theta: ``(H, d)`` per-step score weights.
    Returns:
      ``(H, S, A)`` action probabilities.
    """
    scores = jnp.einsum("sad,hd->hsa", phi, theta)
    return jax.nn.softmax(scores, axis=-1)


def tabular_softmax_policy(logits: jax.Array) -> jax.Array:
    """``(H, S, A)`` logits -> ``(H, S, A)`` probabilities (PPPO's iterates)."""
    return jax.nn.softmax(logits, axis=-1)


def deterministic_policy(actions: jax.Array, num_actions: int) -> jax.Array:
    """``(H, S)`` action indices -> ``(H, S, A)`` one-hot probabilities."""
    return jax.nn.one_hot(actions, num_actions, dtype=jnp.float32)


def greedy_policy(q: jax.Array) -> jax.Array:
    """``(H, S, A)`` action values -> the one-hot greedy policy ``(H, S, A)`` (first max wins)."""
    return jax.nn.one_hot(jnp.argmax(q, axis=-1), q.shape[-1], dtype=q.dtype)


def num_deterministic_policies(num_states: int, num_actions: int, horizon: int) -> int:
    """``A ** (S * H)``, the size of the deterministic Markov policy class."""
    return int(num_actions) ** (int(num_states) * int(horizon))


def enumerate_deterministic_policies(num_states: int, num_actions: int, horizon: int, max_policies: int = 1 << 16) -> jax.Array:
    """Every deterministic Markov policy, as action indices ``(A**(S*H), H, S)`` int32.

    Raises:
      ValueError: when ``A**(S*H)`` exceeds ``max_policies`` (enumeration is for tiny
        problems only).
    """
    for name, value in (("num_states", num_states), ("num_actions", num_actions), ("horizon", horizon)):
        if int(value) < 1:
            raise ValueError(f"enumerate_deterministic_policies: `{name}` must be >= 1, got {value}")
    count = num_deterministic_policies(num_states, num_actions, horizon)
    if count > max_policies:
        raise ValueError(
            f"enumerate_deterministic_policies: A**(S*H) = {num_actions}**({num_states}*{horizon}) = {count} "
            f"policies exceeds `max_policies` = {max_policies}; enumeration is for tiny problems"
        )
    table = np.array(list(itertools.product(range(num_actions), repeat=num_states * horizon)), dtype=np.int32)
    return jnp.asarray(table.reshape(count, horizon, num_states))


def check_policy(policy, horizon: int, num_states: int, num_actions: int, name: str = "policy") -> None:
    """Raise ``ValueError`` unless ``policy`` has shape ``(H, S, A)`` and, when concrete,
    holds probabilities: finite, non-negative, each ``policy[h, x]`` summing to 1 (to 1e-3)."""
    shape = tuple(np.shape(policy))
    if shape != (horizon, num_states, num_actions):
        raise ValueError(f"`{name}` must have shape (H, S, A) = {(horizon, num_states, num_actions)}, got {shape}")
    if isinstance(policy, jax.core.Tracer):
        return
    arr = checks.as_array(
        policy, lambda e: f"`{name}` must be an array of action probabilities, got {type(policy).__name__}", "iuf",
        lambda dtype: f"`{name}` must be a real array of action probabilities, got dtype {dtype}",
    ).astype(np.float64)
    finite = np.isfinite(arr)
    if not np.all(finite) or np.any(arr < 0) or not np.allclose(arr.sum(-1), 1.0, atol=1e-3):
        got = "non-finite entries" if not np.all(finite) else (
            f"values in [{arr.min():.3g}, {arr.max():.3g}], sums over actions in [{arr.sum(-1).min():.3g}, {arr.sum(-1).max():.3g}]")
        raise ValueError(f"`{name}` must hold action probabilities: finite, >= 0, summing to 1 over actions "
                         f"for every (h, x); got {got}")
