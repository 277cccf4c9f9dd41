"""PEVI: pessimistic value iteration / policy evaluation for linear MDPs (Jin, Yang & Wang 2021).

For one environment with K episodes and step h (0-indexed here, so the value bound is
``H - h``):

    Lambda_h = sum_k phi_kh phi_kh^T + lambda I
    w_h      = Lambda_h^-1 sum_k phi_kh (r_kh + V_{h+1}(x'_kh))
    Gamma_h  = beta * sqrt(phi^T Lambda_h^-1 phi)
    Q_h      = clip(phi^T w_h - Gamma_h, 0, H - h)
    V_h(x)   = sum_a pi_h(a | x) Q_h(x, a)     (evaluation of a given policy)
             = max_a Q_h(x, a)                 (PEVI: the greedy pessimistic policy)

with ``V_H = 0``. The estimate of the value at the start is the mean of ``V_0`` over the
K observed initial states. ``Lambda_h`` does not depend on the policy, so it is
factored once per environment into :class:`PEVIStats` (``Lambda_h^-1 Phi_h^T`` and the
bonus norms); evaluating a policy is then H small matrix-vector products, which is what
PERM differentiates through for all n environments in one ``vmap``.

*beta*: Jin, Yang & Wang (2021, Theorem 4.4) take ``lambda = 1`` and
``beta = c d H sqrt(zeta)``, ``zeta = log(2 d H K / xi)`` for a confidence ``1 - xi``
(:func:`theory_beta`). That worst-case constant is far too conservative on small
problems; :func:`default_beta` uses ``DEFAULT_BETA_SCALE`` times it (see
the README's offline section for the ablation).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from zsgjax import checks
from zsgjax.offline.linear.dataset import OfflineDataset, check_dataset
from zsgjax.offline.linear.policies import check_policy

DEFAULT_BETA_SCALE = 0.02


def theory_beta(dim: int, horizon: int, num_episodes: int, xi: float = 0.01, c: float = 1.0) -> float:
    """The theory's ``beta = c d H sqrt(log(2 d H K / xi))`` (Jin, Yang & Wang 2021, Thm 4.4)."""
    xi = checks.real(xi, "theory_beta: `xi`", low=0.0, high=1.0, low_open=True, high_open=True)
    c = checks.real(c, "theory_beta: `c`", low=0.0, low_open=True)
    dim, horizon, num_episodes = (checks.integer(value, f"theory_beta: `{name}`", low=1, high=None) for name, value in
                                  (("dim", dim), ("horizon", horizon), ("num_episodes", num_episodes)))
    return float(c * dim * horizon * math.sqrt(math.log(2.0 * dim * horizon * num_episodes / xi)))


def default_beta(dim: int, horizon: int, num_episodes: int, xi: float = 0.01) -> float:
    """The practical default, ``DEFAULT_BETA_SCALE * theory_beta(dim, horizon, num_episodes, xi)``."""
    return DEFAULT_BETA_SCALE * theory_beta(dim, horizon, num_episodes, xi)


@struct.dataclass
class PEVIStats:
    """Policy-independent regression statistics of one environment.

    proj:  ``(H, d, K)`` ``Lambda_h^-1 Phi_h^T`` (so ``w_h = proj[h] @ targets``)
    bonus: ``(H, S, A)`` ``sqrt(phi(x, a)^T Lambda_h^-1 phi(x, a))``
    """

    proj: jax.Array
    bonus: jax.Array


@struct.dataclass
class PEVIResult:
    """Pessimistic estimates for one environment (a leading ``n`` axis when vmapped).

    q:      ``(H, S, A)`` pessimistic Q
    v:      ``(H, S)``    pessimistic V of ``policy``
    value:  ``()``        mean of ``v[0]`` over the observed initial states
    policy: ``(H, S, A)`` the evaluated policy, or PEVI's greedy one
    """

    q: jax.Array
    v: jax.Array
    value: jax.Array
    policy: jax.Array


def pevi_statistics(phi: jax.Array, states: jax.Array, actions: jax.Array, lam: float = 1.0) -> PEVIStats:
    """Factor ``Lambda_h`` for one environment.

    Args:
      phi: ``(S, A, d)``; states, actions: ``(K, H)`` int; lam: ridge ``lambda > 0``.
    """
    d = phi.shape[-1]
    feats = jnp.swapaxes(phi[states, actions], 0, 1)  # (H, K, d)
    gram = jnp.einsum("hkd,hke->hde", feats, feats) + lam * jnp.eye(d, dtype=phi.dtype)
    # Lambda_h >= lam I, so the explicit inverse of these small d x d matrices is well
    # conditioned; batched as matmuls it is ~3x faster on CPU than Cholesky solves.
    inv = jnp.linalg.inv(gram)  # (H, d, d)
    proj = jnp.einsum("hde,hke->hdk", inv, feats)
    quad = jnp.einsum("sad,hde,sae->hsa", phi, inv, phi)
    bonus = jnp.sqrt(jnp.maximum(quad, 0.0))
    return PEVIStats(proj=proj, bonus=bonus)


def pessimistic_evaluation(
    phi: jax.Array,
    stats: PEVIStats,
    rewards: jax.Array,
    next_states: jax.Array,
    init_states: jax.Array,
    policy: jax.Array | None,
    beta: float,
) -> PEVIResult:
    """Backward pessimistic recursion for one environment.

    Args:
      phi: ``(S, A, d)``; stats: from :func:`pevi_statistics`.
      rewards: ``(K, H)``; next_states: ``(K, H)`` int; init_states: ``(K,)`` int.
      policy: ``(H, S, A)`` to evaluate, or ``None`` for PEVI's greedy policy.
      beta: pessimism coefficient (0 disables pessimism).
    """
    H = rewards.shape[1]
    S, A = phi.shape[:2]

    def step(v_next, inp):
        h, proj, bonus, r, xn, pi_h = inp
        w = proj @ (r + v_next[xn])
        q = jnp.clip(phi @ w - beta * bonus, 0.0, (H - h).astype(phi.dtype))
        if pi_h is None:
            pi_h = jax.nn.one_hot(jnp.argmax(q, axis=-1), A, dtype=q.dtype)
        v = jnp.sum(pi_h * q, axis=-1)
        return v, (q, v, pi_h)

    pis = None if policy is None else policy[::-1]
    xs = (jnp.arange(H)[::-1], stats.proj[::-1], stats.bonus[::-1], rewards.T[::-1], next_states.T[::-1], pis)
    _, (q, v, pi) = jax.lax.scan(step, jnp.zeros((S,), phi.dtype), xs)
    q, v, pi = q[::-1], v[::-1], pi[::-1]
    return PEVIResult(q=q, v=v, value=jnp.mean(v[0][init_states]), policy=pi)


def check_inputs(phi, dataset: OfflineDataset, policy=None, beta: float = 0.0, lam: float = 1.0) -> None:
    """Host-side argument checks shared by the PEVI entry points (raise ``ValueError`` naming the argument).

    ``dataset``: :func:`zsgjax.offline.linear.dataset.check_dataset` (n, K, H >= 1, indices in
    range, finite rewards); ``phi``: finite real ``(S, A, d)``, ``d >= 1``; ``policy``:
    ``(H, S, A)`` probabilities; ``beta``: a finite real ``>= 0`` and ``lam`` one
    ``> 0``, each a scalar, whether a Python, NumPy or jax number (traced values get
    the shape check only).
    """
    check_dataset(dataset)
    shape = tuple(np.shape(phi))
    if len(shape) != 3 or shape[:2] != (dataset.num_states, dataset.num_actions) or shape[2] < 1:
        raise ValueError(f"`phi` must have shape (S, A, d) = ({dataset.num_states}, {dataset.num_actions}, d), d >= 1, got {shape}")
    if not checks.is_traced(phi):
        checks.numeric_array(phi, "`phi`")
    if policy is not None:
        check_policy(policy, dataset.horizon, dataset.num_states, dataset.num_actions)
    checks.real(beta, "`beta` (pessimism coefficient)", low=0.0)
    checks.real(lam, "`lam` (ridge lambda)", low=0.0, low_open=True)


def _pevi_env(phi, states, actions, rewards, next_states, policy, beta, lam):
    stats = pevi_statistics(phi, states, actions, lam)
    return pessimistic_evaluation(phi, stats, rewards, next_states, states[:, 0], policy, beta)


@jax.jit
def pevi_env(phi, states, actions, rewards, next_states, policy, beta, lam):
    """PEVI in one environment (jitted, no argument checks).

    Args: ``phi (S, A, d)``, ``states, actions, rewards, next_states (K, H)``,
    ``policy (H, S, A)`` or ``None`` (greedy), ``beta``, ``lam``. Returns a :class:`PEVIResult`.
    """
    return _pevi_env(phi, states, actions, rewards, next_states, policy, beta, lam)


@jax.jit
def _pevi_vmapped(phi, states, actions, rewards, next_states, policy, beta, lam):
    return jax.vmap(_pevi_env, in_axes=(None, 0, 0, 0, 0, None, None, None))(phi, states, actions, rewards, next_states, policy, beta, lam)


def pevi(phi: jax.Array, dataset: OfflineDataset, policy: jax.Array | None = None, beta: float = 0.0, lam: float = 1.0) -> PEVIResult:
    """PEVI for all n environments of ``dataset`` in one jitted ``vmap``.

    Args:
      phi: ``(S, A, d)``.
      dataset: n environments (use :func:`zsgjax.offline.linear.dataset.merge_environments` for the pooled baseline).
      policy: ``(H, S, A)`` shared policy to evaluate pessimistically, or ``None`` for
        each environment's greedy pessimistic policy.
      beta: pessimism coefficient (see :func:`default_beta`); lam: ridge lambda.
    Returns:
      :class:`PEVIResult` with a leading ``n`` axis on every field.
    """
    check_inputs(phi, dataset, policy, beta, lam)
    return _pevi_vmapped(phi, dataset.states, dataset.actions, dataset.rewards, dataset.next_states, policy, beta, lam)


def dataset_statistics(phi: jax.Array, dataset: OfflineDataset, lam: float = 1.0) -> PEVIStats:
    """:class:`PEVIStats` of every environment (leading ``n`` axis), for repeated evaluations."""
    check_inputs(phi, dataset, None, 0.0, lam)
    return jax.vmap(pevi_statistics, in_axes=(None, 0, 0, None))(phi, dataset.states, dataset.actions, lam)


def mean_pessimistic_value(phi: jax.Array, stats: PEVIStats, dataset: OfflineDataset, policy: jax.Array, beta) -> jax.Array:
    """PERM's objective ``(1/n) sum_i V_i^pi`` (pessimistic), differentiable in ``policy`` (jittable)."""
    res = jax.vmap(pessimistic_evaluation, in_axes=(None, 0, 0, 0, 0, None, None))(
        phi, stats, dataset.rewards, dataset.next_states, dataset.states[:, :, 0], policy, beta
    )
    return jnp.mean(res.value)
