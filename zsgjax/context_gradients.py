"""Context gradients: exact derivatives of one environment transition with respect to its context.

Everything here acts on **one** sample and is meant to be ``jax.vmap``-ed over a
batch. Two ways to get what context sample enhancement needs
(:mod:`zsgjax.methods.enhancement`):

* :func:`context_jacobian` / :func:`step_and_jacobian` -- the full Jacobian through
  ``jax.jacfwd`` (``context_dim`` forward tangents, batched);
* :func:`context_jvp` / :func:`step_and_jvp` -- one
  directional derivative through ``jax.jvp``, whatever the context dimension.

Both go through any :class:`~zsgjax.envs.base.ContextualEnv`: the analytic JAX
environments and MJX physics alike (MJX's constraint solver is differentiated by the
implicit function theorem, :mod:`zsgjax.envs.mjx.implicit`). ``d r/dc`` is the
*total* derivative of the environment's ``transition`` (it includes the path
through ``s'``).

Contact dynamics can produce non-finite derivatives (mujoco issue 1517):
:func:`gradients_finite` gives a validity flag per sample and :func:`finite_mask`
one per sample of any batched pytree.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from zsgjax.envs.base import ContextualEnv, EnvState
from zsgjax.types import ContextGradients, DirectionalGradients


# --------------------------------------------------------------------- gradients
def context_jacobian(env: ContextualEnv, env_state: EnvState, action: jax.Array, context: jax.Array) -> ContextGradients:
    """Total context Jacobian of one transition via ``jax.jacfwd``.

    Returns ``d_obs (state_obs_size, dim)`` and ``d_reward (dim,)``.
    """
    d_obs, d_reward = jax.jacfwd(env.transition, argnums=2)(env_state, action, context)
    return ContextGradients(d_obs=d_obs, d_reward=d_reward)


def step_and_jacobian(env: ContextualEnv, env_state: EnvState, action: jax.Array, context: jax.Array):
    """One environment step and its context Jacobian in a single ``jacfwd`` pass.

    Returns ``((next_env_state, next_state_obs, reward, terminated), ContextGradients)``;
    the primal step is computed once (as ``jacfwd``'s auxiliary output).
    """

    def f(c):
        out = env.env_step(env_state, action, c)
        return (out[1], out[2]), out

    (d_obs, d_reward), out = jax.jacfwd(f, has_aux=True)(context)
    return out, ContextGradients(d_obs=d_obs, d_reward=d_reward)


def context_jvp(
    env: ContextualEnv, env_state: EnvState, action: jax.Array, context: jax.Array, delta_c: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Directional derivative ``(J_obs delta_c (state_obs_size,), J_r delta_c ())`` via ``jax.jvp``."""
    _, (d_obs, d_reward) = jax.jvp(
        lambda c: env.transition(env_state, action, c), (context,), (delta_c.astype(context.dtype),)
    )
    return d_obs, d_reward


def step_and_jvp(
    env: ContextualEnv, env_state: EnvState, action: jax.Array, context: jax.Array, delta_c: jax.Array
):
    """One environment step and its directional context derivative in one ``jvp``.

    Returns ``((next_env_state, next_state_obs, reward, terminated), DirectionalGradients)``.
    """
    out, tangent = jax.jvp(lambda c: env.env_step(env_state, action, c), (context,), (delta_c.astype(context.dtype),))
    return out, DirectionalGradients(delta_c=delta_c, d_obs=tangent[1], d_reward=tangent[2])


def gradients_finite(grads: ContextGradients | DirectionalGradients) -> jax.Array:
    """``True`` when every derivative of one sample is finite (``()`` bool; vmap for a batch)."""
    return jnp.all(jnp.isfinite(grads.d_obs)) & jnp.all(jnp.isfinite(grads.d_reward))


def finite_mask(tree, batch_ndim: int = 1) -> jax.Array:
    """``True`` where every floating leaf of ``tree`` is finite, per sample.

    Args:
      tree: a pytree whose leaves all share the leading batch shape ``S`` of
        ``batch_ndim`` axes (integer and boolean leaves are ignored; ``None`` is allowed).
      batch_ndim: number of leading batch axes (e.g. 2 for ``(time, env)``).

    Returns:
      ``S``-shaped bool array.

    Raises:
      ValueError: when ``batch_ndim < 0``, the tree has no floating leaf, or the
        leaves' leading shapes differ.
    """
    if batch_ndim < 0:
        raise ValueError(f"finite_mask: `batch_ndim` must be >= 0, got {batch_ndim}")
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    if not leaves:
        raise ValueError("finite_mask: `tree` has no floating-point leaf to check")
    shapes = {tuple(jnp.shape(x)[:batch_ndim]) for x in leaves}
    if len(shapes) != 1 or any(jnp.ndim(x) < batch_ndim for x in leaves):
        raise ValueError(
            f"finite_mask: leaves must share the leading batch shape ({batch_ndim} axes), got {sorted(shapes)}"
        )
    masks = [jnp.all(jnp.isfinite(jnp.reshape(x, (*jnp.shape(x)[:batch_ndim], -1))), axis=-1) for x in leaves]
    return functools.reduce(jnp.logical_and, masks)
