"""Tabular CEBE (context-enhanced Bellman equation) on Cliffwalking.

CEBE replaces the MDP at context ``p0 + dp`` by its first-order Taylor model in the
context around ``p0`` (CSE paper, Sec. 4):

    T~ = T(p0) + dT/dp(p0) dp,     R~ = R(p0) + dR/dp(p0) dp,

with ``dT/dp``, ``dR/dp`` from ``jax.jacfwd``. Negative entries of ``T~`` are clipped
to 0 and the rows renormalized (rows of ``dT/dp`` sum to 0, so before clipping every
row already sums to 1 and renormalization never divides by less than 1). A fixed
policy is evaluated exactly on ``T~, R~``; the error against its exact value at
``p0 + dp`` is ``O(dp^2)``. ``order=0`` uses ``T(p0), R(p0)`` unchanged (the
zeroth-order baseline, error ``O(dp)``).

All functions take scalars ``p0``, ``dp`` and are jittable and vmappable over ``dp``
(traced values skip the input checks; :func:`cebe_errors` checks every ``p0 + dp``
and then vmaps).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


from zsgjax.tabular import cliffwalking as cw
from zsgjax.tabular.mdp import check_policy, evaluate_policy, greedy_policy, uniform_policy, value_iteration

POLICIES = ("optimal", "uniform")


def _float(x) -> jax.Array:
    return jnp.asarray(x, dtype=jnp.result_type(x, float))


def _check_order(order: int) -> None:
    if order not in (0, 1):
        raise ValueError(f"`order` must be 0 (zeroth-order baseline) or 1 (CEBE), got {order!r}")


def mdp_at(p, variant: str = "constant") -> tuple[jax.Array, jax.Array]:
    """True Cliffwalking MDP ``(T (S, 4, S), R (S, 4))`` at slip probability ``p``."""
    cw.check_p(p, variant)
    return cw.transition_matrix(p), cw.reward(p, variant)


def taylor_mdp(p0, dp, variant: str = "constant", order: int = 1) -> tuple[jax.Array, jax.Array]:
    """Taylor model of order 0 or 1 in ``p`` around ``p0``, evaluated at ``p0 + dp``.

    Returns ``(T~ (S, 4, S), R~ (S, 4))``; for ``order=1`` the rows of ``T~`` are clipped
    at 0 and renormalized.
    """
    _check_order(order)
    p0 = _float(p0)
    if order == 0:
        return mdp_at(p0, variant)
    t0, r0 = mdp_at(p0, variant)
    dt, dr = jax.jacfwd(lambda p: mdp_at(p, variant))(p0)
    t_lin = jnp.clip(t0 + dt * dp, 0.0, None)
    t_lin = t_lin / jnp.sum(t_lin, axis=-1, keepdims=True)
    return t_lin, r0 + dr * dp


def true_q(p, policy: jax.Array, variant: str = "constant", gamma=cw.GAMMA) -> jax.Array:
    """Exact ``Q^pi`` ``(S, 4)`` of ``policy`` ``(S, 4)`` on the true MDP at ``p``."""
    t, r = mdp_at(_float(p), variant)
    return evaluate_policy(t, r, policy, gamma)


def cebe_q(p0, dp, policy: jax.Array, variant: str = "constant", gamma=cw.GAMMA, order: int = 1) -> jax.Array:
    """``Q^pi`` ``(S, 4)`` of ``policy`` on the order-``order`` Taylor model at ``p0 + dp``."""
    t, r = taylor_mdp(p0, dp, variant, order)
    return evaluate_policy(t, r, policy, gamma)


def cebe_error(p0, dp, policy: jax.Array, variant: str = "constant", gamma=cw.GAMMA, order: int = 1) -> jax.Array:
    """``max_{s,a} |Q_CEBE(p0 + dp) - Q_true(p0 + dp)|`` for a fixed policy; a scalar.

    ``order=1`` is CEBE (``O(dp^2)``), ``order=0`` the zeroth-order baseline that uses
    ``Q(p0)`` for ``p0 + dp`` (``O(dp)``). Vmappable over ``dp``.
    """
    p0 = _float(p0)
    approx = cebe_q(p0, dp, policy, variant, gamma, order)
    exact = true_q(p0 + dp, policy, variant, gamma)
    return jnp.max(jnp.abs(approx - exact))


def cebe_errors(p0, dps, policy: jax.Array, variant: str = "constant", gamma=cw.GAMMA, order: int = 1) -> jax.Array:
    """:func:`cebe_error` for every ``dp`` in ``dps`` ``(N,)`` -> ``(N,)``, checking the inputs first."""
    p0 = _float(p0)
    dps = _float(dps)
    if dps.ndim != 1:
        raise ValueError(f"`dps` must be a 1-D array of context steps, got shape {dps.shape}")
    cw.check_p(p0, variant)
    cw.check_p(p0 + dps, variant)
    check_policy(policy, cw.num_states(), cw.NUM_ACTIONS)
    _check_order(order)
    fn = jax.vmap(lambda dp: cebe_error(p0, dp, policy, variant, gamma, order))
    return fn(dps)


def optimal_q(p, variant: str = "constant", gamma=cw.GAMMA, tol: float = 1e-10) -> jax.Array:
    """Optimal ``Q*`` ``(S, 4)`` at ``p`` by value iteration."""
    t, r = mdp_at(_float(p), variant)
    return value_iteration(t, r, gamma, tol=tol)


def policy_at(kind: str, p0, variant: str = "constant", gamma=cw.GAMMA) -> jax.Array:
    """Fixed policy to evaluate, ``(S, 4)``: ``"optimal"`` (greedy in ``Q*(p0)``) or ``"uniform"``."""
    if kind not in POLICIES:
        raise ValueError(f"`kind` must be one of {POLICIES}, got {kind!r}")
    if kind == "uniform":
        return uniform_policy(cw.num_states(), cw.NUM_ACTIONS, dtype=_float(p0).dtype)
    return greedy_policy(optimal_q(p0, variant, gamma))

