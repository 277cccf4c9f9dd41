"""Context sample enhancement (CSE paper, eq. 11): one transition moved to a nearby context.

Everything here acts on **one** sample and is meant to be ``jax.vmap``-ed over a
batch (the CSE method, :mod:`zsgjax.methods.cse`, does so). For a stored transition
``(s, a, r, s', c)`` and a context step ``delta_c`` the first-order enhancement is

    c~  = c + delta_c
    s'~ = s' + (d s'/dc) delta_c
    r~  = r  + (d r /dc) delta_c

with the context part of both observations replaced by ``c~``; the derivatives come
from :mod:`zsgjax.context_gradients`. The exact mode recomputes the transition at
``c~``. The ``enhance_*`` functions return the *original* transition where the
derivatives (or the recomputed transition) are not finite, so no NaN or inf reaches
a loss; the flag is returned for masking and counting.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from zsgjax.context_gradients import context_jvp, gradients_finite
from zsgjax.envs.base import ContextualEnv, EnvState
from zsgjax.envs.context import ContextSpace
from zsgjax.types import ContextGradients, DirectionalGradients, Transition

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
