"""Context gradients and context sample enhancement (CSE).

Everything here acts on **one** sample and is meant to be ``jax.vmap``-ed over a
batch (the trainer does so). For a stored transition ``(s, a, r, s', c)`` and a
context step ``delta_c`` the first-order enhancement (CSE paper, eq. 11) is

    c~  = c + delta_c
    s'~ = s' + (d s'/dc) delta_c
    r~  = r  + (d r /dc) delta_c

with the context part of both observations replaced by ``c~``. ``d r/dc`` is the
*total* derivative of the environment's ``transition`` (it includes the path
through ``s'``). The exact mode recomputes the transition at ``c~``.

Two ways to store what CSE needs:

* ``jacobian`` -- :func:`context_jacobian` (``jax.jacfwd``; ``context_dim`` forward
  passes, batched), so ``delta_c`` can be redrawn at every replay;
* ``jvp`` -- :func:`directional_gradients` (one ``jax.jvp`` whatever the context
  dimension) along a step drawn at insertion time.

Contact dynamics can produce non-finite derivatives (mujoco issue 1517):
:func:`gradients_finite` gives a validity flag per sample, :func:`finite_mask` one
per sample of any batched pytree, and the ``enhance_*`` functions return the *original*
transition where the flag is false, so no NaN or inf reaches a loss; the flag is
returned for masking and counting.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from zsgjax.envs.base import ContextualEnv, EnvState
from zsgjax.envs.context import ContextSpace
from zsgjax.types import ContextGradients, DirectionalGradients, Transition


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


# --------------------------------------------------------------- context steps
def sample_sphere(rng: jax.Array, dim: int, shape: tuple[int, ...] = ()) -> jax.Array:
    """Directions uniform on the unit sphere in ``R^dim``: ``(*shape, dim)``."""
    g = jax.random.normal(rng, (*shape, dim))
    return g / jnp.maximum(jnp.linalg.norm(g, axis=-1, keepdims=True), 1e-12)


def draw_context_step(rng: jax.Array, context: jax.Array, space: ContextSpace, epsilon: float) -> jax.Array:
    """``delta_c = clip(c + epsilon u) - c`` with ``u`` uniform on the sphere: ``(dim,)``.

    Clipping keeps the enhanced context inside the space; the returned step is the
    one actually taken, so first-order terms use the clipped step.
    """
    u = sample_sphere(rng, space.dim)
    return space.clip(context + epsilon * u) - context


def directional_gradients(
    rng: jax.Array,
    env: ContextualEnv,
    env_state: EnvState,
    action: jax.Array,
    context: jax.Array,
    epsilon: float,
) -> DirectionalGradients:
    """Draw a clipped step and compute the directional derivatives along it."""
    delta_c = draw_context_step(rng, context, env.context_space, epsilon)
    d_obs, d_reward = context_jvp(env, env_state, action, context, delta_c)
    return DirectionalGradients(delta_c=delta_c, d_obs=d_obs, d_reward=d_reward)


# ----------------------------------------------------------------- enhancement
def _with_context(state_obs: jax.Array, context: jax.Array) -> jax.Array:
    return jnp.concatenate([state_obs, context.astype(state_obs.dtype)], axis=-1)


def _apply_step(
    transition: Transition, delta_c: jax.Array, d_next_obs: jax.Array, d_reward: jax.Array, valid: jax.Array
) -> Transition:
    dim = transition.context.shape[-1]
    new_c = transition.context + delta_c
    state_obs = transition.obs[..., :-dim]
    next_state_obs = transition.next_obs[..., :-dim] + d_next_obs
    enhanced = Transition(
        obs=_with_context(state_obs, new_c),
        action=transition.action,
        reward=transition.reward + d_reward,
        next_obs=_with_context(next_state_obs, new_c),
        done=transition.done,
        context=new_c,
    )
    return jax.tree.map(lambda e, o: jnp.where(valid, e, o), enhanced, transition)


def enhance_with_jacobian(
    transition: Transition, grads: ContextGradients, delta_c: jax.Array
) -> tuple[Transition, jax.Array]:
    """First-order CSE of one transition along ``delta_c`` (``(dim,)``) from a stored Jacobian.

    Returns ``(enhanced, valid)``; where ``valid`` is false (non-finite Jacobian)
    the original transition is returned unchanged.
    """
    valid = gradients_finite(grads)
    safe_obs = jnp.where(valid, grads.d_obs, 0.0)
    safe_r = jnp.where(valid, grads.d_reward, 0.0)
    return _apply_step(transition, delta_c, safe_obs @ delta_c, safe_r @ delta_c, valid), valid


def enhance_with_directional(transition: Transition, grads: DirectionalGradients) -> tuple[Transition, jax.Array]:
    """First-order CSE of one transition from stored directional derivatives."""
    valid = gradients_finite(grads)
    d_obs = jnp.where(valid, grads.d_obs, 0.0)
    d_r = jnp.where(valid, grads.d_reward, 0.0)
    return _apply_step(transition, grads.delta_c, d_obs, d_r, valid), valid


def enhance_exact(
    env: ContextualEnv, env_state: EnvState, transition: Transition, delta_c: jax.Array
) -> tuple[Transition, jax.Array]:
    """Exact enhancement: recompute the transition from ``env_state`` at ``c + delta_c``.

    The reference that the first-order mode approximates (the paper's ``--cse 2``).
    ``valid`` is false where the recomputed transition is not finite.
    """
    new_c = transition.context + delta_c
    next_state_obs, reward = env.transition(env_state, transition.action, new_c)
    dim = transition.context.shape[-1]
    valid = jnp.all(jnp.isfinite(next_state_obs)) & jnp.isfinite(reward)
    return _apply_step(
        transition,
        delta_c,
        jnp.where(valid, next_state_obs - transition.next_obs[..., :-dim], 0.0),
        jnp.where(valid, reward - transition.reward, 0.0),
        valid,
    ), valid
