"""Contextual linear MDPs on a finite state set, with exact dynamic programming.

A *linear MDP* (Jin, Yang & Wang 2021) has a feature map ``phi(x, a) in R^d`` such that
``P(x' | x, a) = phi(x, a) · mu(x')`` and ``r(x, a) = phi(x, a) · theta``. Here the state
set is finite (``S`` states), actions are finite (``A``), the horizon is ``H`` and the
MDP is time-homogeneous. A *contextual* family shares ``phi`` and lets the context
``c`` (a point of the simplex over ``m`` base parameter sets) pick

    mu_c = sum_j c_j mu_j,     theta_c = sum_j c_j theta_j,

so every context is again a valid linear MDP (convex combinations of valid
transition kernels and of rewards in [0, 1]).

Exact DP gives the ground truth used by tests and experiments: each context's optimal
value, any policy's value in any context, and the zero-shot objective
``E_c[V_c^pi]`` estimated over held-out contexts. Steps are 0-indexed in code; the value
at step ``h`` is bounded by ``H - h``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from zsgjax.offline.linear.policies import deterministic_policy

_TOL = 1e-5


@struct.dataclass
class LinearMDP:
    """One context's MDP.

    phi:   ``(S, A, d)`` features
    mu:    ``(d, S)``   next-state measures; ``P(x'|x,a) = phi(x,a) · mu[:, x']``
    theta: ``(d,)``     reward weights; ``r(x,a) = phi(x,a) · theta`` in [0, 1]
    init:  ``(S,)``     initial-state distribution
    horizon: ``H`` (static)
    """

    phi: jax.Array
    mu: jax.Array
    theta: jax.Array
    init: jax.Array
    horizon: int = struct.field(pytree_node=False)

    @property
    def transitions(self) -> jax.Array:
        """``(S, A, S)`` transition probabilities."""
        return jnp.einsum("sad,dt->sat", self.phi, self.mu)

    @property
    def rewards(self) -> jax.Array:
        """``(S, A)`` expected rewards."""
        return self.phi @ self.theta


@struct.dataclass
class ContextualLinearMDP:
    """A family of linear MDPs indexed by a context on the simplex of ``m`` bases.

    phi:         ``(S, A, d)`` shared features
    mu_bases:    ``(m, d, S)`` next-state measures of the bases
    theta_bases: ``(m, d)``    reward weights of the bases
    init:        ``(S,)``      shared initial-state distribution
    horizon:     ``H`` (static)

    Build it with :func:`make_contextual_mdp` (validates) rather than directly.
    """

    phi: jax.Array
    mu_bases: jax.Array
    theta_bases: jax.Array
    init: jax.Array
    horizon: int = struct.field(pytree_node=False)

    @property
    def num_states(self) -> int:
        return self.phi.shape[0]

    @property
    def num_actions(self) -> int:
        return self.phi.shape[1]

    @property
    def dim(self) -> int:
        return self.phi.shape[2]

    @property
    def num_bases(self) -> int:
        return self.mu_bases.shape[0]

    def at(self, context: jax.Array) -> LinearMDP:
        """The MDP of one context ``(m,)`` (jittable, vmappable over contexts)."""
        mu = jnp.einsum("j,jds->ds", context, self.mu_bases)
        theta = context @ self.theta_bases
        return LinearMDP(phi=self.phi, mu=mu, theta=theta, init=self.init, horizon=self.horizon)


def make_contextual_mdp(phi, mu_bases, theta_bases, init, horizon: int) -> ContextualLinearMDP:
    """Validate and build a :class:`ContextualLinearMDP` (float32 arrays).

    Raises:
      ValueError: on inconsistent shapes, ``horizon < 1``, transition rows of a base
        that are not probability distributions, rewards outside [0, 1], or an initial
        distribution that is not one.
    """
    phi = np.asarray(phi, dtype=np.float64)
    mu_bases = np.asarray(mu_bases, dtype=np.float64)
    theta_bases = np.asarray(theta_bases, dtype=np.float64)
    init = np.asarray(init, dtype=np.float64)
    if int(horizon) < 1:
        raise ValueError(f"make_contextual_mdp: `horizon` must be >= 1, got {horizon}")
    if phi.ndim != 3:
        raise ValueError(f"make_contextual_mdp: `phi` must have shape (S, A, d), got {phi.shape}")
    S, A, d = phi.shape
    if mu_bases.ndim != 3 or mu_bases.shape[1:] != (d, S):
        raise ValueError(f"make_contextual_mdp: `mu_bases` must have shape (m, d, S) = (m, {d}, {S}), got {mu_bases.shape}")
    m = mu_bases.shape[0]
    if theta_bases.shape != (m, d):
        raise ValueError(f"make_contextual_mdp: `theta_bases` must have shape (m, d) = ({m}, {d}), got {theta_bases.shape}")
    if init.shape != (S,):
        raise ValueError(f"make_contextual_mdp: `init` must have shape (S,) = ({S},), got {init.shape}")
    if np.any(init < -_TOL) or abs(init.sum() - 1.0) > _TOL:
        raise ValueError("make_contextual_mdp: `init` must be a probability distribution over the S states")
    P = np.einsum("sad,jdt->jsat", phi, mu_bases)
    if np.any(P < -_TOL) or np.any(np.abs(P.sum(-1) - 1.0) > _TOL):
        raise ValueError("make_contextual_mdp: phi(x, a) · mu_j(.) must be a probability distribution over next states for every base j, state x and action a")
    r = np.einsum("sad,jd->jsa", phi, theta_bases)
    if np.any(r < -_TOL) or np.any(r > 1.0 + _TOL):
        raise ValueError(f"make_contextual_mdp: rewards phi · theta_j must lie in [0, 1], got range [{r.min():.4g}, {r.max():.4g}]")
    f32 = lambda x: jnp.asarray(x, dtype=jnp.float32)  # noqa: E731
    return ContextualLinearMDP(phi=f32(phi), mu_bases=f32(mu_bases), theta_bases=f32(theta_bases), init=f32(init), horizon=int(horizon))


def check_contexts(contexts, num_bases: int, name: str = "contexts") -> np.ndarray:
    """Host-side check that ``contexts`` is ``(n, m)`` with rows on the simplex; returns it."""
    arr = np.asarray(contexts, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != num_bases or arr.shape[0] < 1:
        raise ValueError(f"`{name}` must have shape (n, m) with n >= 1 and m = {num_bases}, got {arr.shape}")
    if np.any(arr < -_TOL) or np.any(np.abs(arr.sum(-1) - 1.0) > 1e-4):
        raise ValueError(f"`{name}` rows must lie on the probability simplex (non-negative, summing to 1)")
    return arr


def random_contextual_mdp(
    key: jax.Array,
    num_states: int,
    num_actions: int,
    horizon: int,
    num_bases: int = 3,
    dim: int | None = None,
    features: str = "simplex",
    feature_concentration: float = 0.3,
    transition_concentration: float = 0.5,
) -> ContextualLinearMDP:
    """A random family.

    Args:
      features: ``"simplex"``: ``phi(x, a) ~ Dirichlet(feature_concentration)`` in ``R^dim``
        (a genuinely low-dimensional linear MDP when ``dim < S*A``); ``"tabular"``:
        one-hot ``phi`` with ``d = S*A`` (``dim`` must be ``None`` or ``S*A``).
      feature_concentration, transition_concentration: Dirichlet concentrations of the
        features and of each base's next-state measures (smaller = more peaked).
    Rewards ``theta_j ~ U[0, 1]^d``; the initial distribution is uniform.
    """
    if features not in ("simplex", "tabular"):
        raise ValueError(f"random_contextual_mdp: `features` must be 'simplex' or 'tabular', got {features!r}")
    for name, value in (("num_states", num_states), ("num_actions", num_actions), ("num_bases", num_bases)):
        if int(value) < 1:
            raise ValueError(f"random_contextual_mdp: `{name}` must be >= 1, got {value}")
    S, A = int(num_states), int(num_actions)
    if features == "tabular":
        if dim not in (None, S * A):
            raise ValueError(f"random_contextual_mdp: tabular features need `dim` None or S*A = {S * A}, got {dim}")
        d = S * A
        phi = np.eye(d).reshape(S, A, d)
    else:
        if dim is None or int(dim) < 1:
            raise ValueError(f"random_contextual_mdp: simplex features need `dim` >= 1, got {dim}")
        d = int(dim)
        key, sub = jax.random.split(key)
        phi = np.asarray(jax.random.dirichlet(sub, jnp.full((d,), feature_concentration), (S, A)), dtype=np.float64)
        phi = phi / phi.sum(-1, keepdims=True)
    k_mu, k_theta = jax.random.split(key)
    mu = np.asarray(jax.random.dirichlet(k_mu, jnp.full((S,), transition_concentration), (num_bases, d)), dtype=np.float64)
    mu = mu / mu.sum(-1, keepdims=True)
    theta = np.asarray(jax.random.uniform(k_theta, (num_bases, d)), dtype=np.float64)
    return make_contextual_mdp(phi, mu, theta, np.full((S,), 1.0 / S), horizon)


def two_context_mdp(delta: float = 0.05) -> tuple[ContextualLinearMDP, jax.Array]:
    """The two-context construction on which the "average MDP" fails (Proposition of arXiv 2503.07988).

    Tabular features (S = 3: start ``x0``, ``s``, absorbing ``dead``; A = 2: ``a``, ``b``;
    H = 2). Context 1: ``a`` leads ``x0 -> s`` and ``a`` at ``s`` pays ``1 - 2 delta``.
    Context 2: ``b`` leads ``x0 -> s`` and ``b`` at ``s`` pays 1. Action ``a`` at ``x0``
    pays ``delta`` in both. Zero-shot values (uniform over the two contexts):
    ``(a, a)`` and ``(b, b)``: 0.5 (the optimum); ``(a, b)``: ``delta``; ``(b, a)``: 0.
    The merged data look like the average MDP, whose optimal policy is ``(a, b)``
    (Q(s, b) = 0.5 > 0.5 - delta, then Q(x0, a) = delta + 0.25 > 0.25).

    Returns:
      ``(family, contexts)`` with ``contexts = eye(2)``, each with probability 1/2.
    """
    if not 0.0 < delta < 0.25:
        raise ValueError(f"two_context_mdp: `delta` must lie in (0, 0.25), got {delta}")
    S, A = 3, 2
    x0, s, dead = 0, 1, 2
    a, b = 0, 1
    phi = np.eye(S * A).reshape(S, A, S * A)
    idx = lambda x, u: x * A + u  # noqa: E731
    mu = np.zeros((2, S * A, S))
    theta = np.zeros((2, S * A))
    for j in range(2):
        for x in range(S):
            for u in range(A):
                mu[j, idx(x, u), dead] = 1.0
        theta[j, idx(x0, a)] = delta
    mu[0, idx(x0, a)] = np.eye(S)[s]
    mu[1, idx(x0, b)] = np.eye(S)[s]
    theta[0, idx(s, a)] = 1.0 - 2.0 * delta
    theta[1, idx(s, b)] = 1.0
    init = np.eye(S)[x0]
    return make_contextual_mdp(phi, mu, theta, init, horizon=2), jnp.eye(2, dtype=jnp.float32)


def _backward(transitions: jax.Array, rewards: jax.Array, policy: jax.Array | None, horizon: int):
    """Backward induction. ``policy`` ``(H, S, A)`` or ``None`` for the optimal values.

    Returns ``(Q (H, S, A), V (H, S))``.
    """
    S = rewards.shape[0]

    def step(v_next, pi_h):
        q = rewards + transitions @ v_next
        v = jnp.max(q, axis=-1) if pi_h is None else jnp.sum(pi_h * q, axis=-1)
        return v, (q, v)

    xs = None if policy is None else policy[::-1]
    _, (q, v) = jax.lax.scan(step, jnp.zeros((S,), rewards.dtype), xs, length=horizon)
    return q[::-1], v[::-1]


def policy_evaluation(mdp: LinearMDP, policy: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Exact ``Q^pi (H, S, A)`` and ``V^pi (H, S)`` of a policy ``(H, S, A)``."""
    return _backward(mdp.transitions, mdp.rewards, policy, mdp.horizon)


def optimal_evaluation(mdp: LinearMDP) -> tuple[jax.Array, jax.Array]:
    """Exact ``Q* (H, S, A)`` and ``V* (H, S)``."""
    return _backward(mdp.transitions, mdp.rewards, None, mdp.horizon)


def policy_value(mdp: LinearMDP, policy: jax.Array) -> jax.Array:
    """``E_{x1 ~ init} V_1^pi(x1)``, a scalar."""
    return mdp.init @ policy_evaluation(mdp, policy)[1][0]


def optimal_value(mdp: LinearMDP) -> jax.Array:
    """``E_{x1 ~ init} V_1^*(x1)``, a scalar (each context's own optimum)."""
    return mdp.init @ optimal_evaluation(mdp)[1][0]


def _weights(contexts: jax.Array, weights: jax.Array | None) -> jax.Array:
    n = contexts.shape[0]
    return jnp.full((n,), 1.0 / n) if weights is None else weights / jnp.sum(weights)


def context_values(family: ContextualLinearMDP, contexts: jax.Array, policy: jax.Array) -> jax.Array:
    """``V_c^pi`` for every context: ``contexts (n, m)``, ``policy (H, S, A)`` -> ``(n,)``."""
    return jax.vmap(lambda c: policy_value(family.at(c), policy))(contexts)


def zero_shot_value(family: ContextualLinearMDP, contexts: jax.Array, policy: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """The zero-shot objective ``E_c[V_c^pi]`` over ``contexts (n, m)`` (uniform or ``weights (n,)``)."""
    return _weights(contexts, weights) @ context_values(family, contexts, policy)


def deterministic_zero_shot_values(
    family: ContextualLinearMDP,
    contexts: jax.Array,
    actions: jax.Array,
    weights: jax.Array | None = None,
    batch_size: int = 256,
) -> jax.Array:
    """Zero-shot values of many deterministic policies: ``actions (P, H, S)`` -> ``(P,)``.

    With every deterministic policy (see
    :func:`zsgjax.offline.linear.policies.enumerate_deterministic_policies`), the maximum is
    the exact zero-shot optimum over Markov policies on these contexts.
    """
    w = _weights(contexts, weights)
    P, r = jax.vmap(lambda c: (family.at(c).transitions, family.at(c).rewards))(contexts)  # (n, S, A, S), (n, S, A)
    A = family.num_actions

    def one(acts):
        pi = deterministic_policy(acts, A)
        v1 = jax.vmap(lambda p_, r_: _backward(p_, r_, pi, family.horizon)[1][0])(P, r)  # (n, S)
        return w @ (v1 @ family.init)

    return jax.lax.map(one, actions, batch_size=batch_size)
