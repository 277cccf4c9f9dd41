"""Batched environment stepping with auto-reset and per-episode contexts.

The trainer's data collection: ``num_envs`` environments stepped together
(``vmap``), each resetting when it terminates or reaches the horizon, with the new
episode's context drawn by a *context sampler* (the training method: default
context, LDR, DR). Optionally each step also returns the context gradients CSE
needs, computed in the same forward-mode pass as the step itself.

Unlike brax's ``AutoResetWrapper`` (which replays the first state of the batch),
a reset here draws a fresh initial state **and** a fresh context.

Shapes: ``B = num_envs``; a batched ``State`` has a leading ``B`` on every leaf.
"""

from __future__ import annotations

from typing import Callable, Literal

import jax
import jax.numpy as jnp
from brax.envs.base import State
from flax import struct

from zsgjax import cse
from zsgjax.envs.base import ContextualEnv, EnvState
from zsgjax.envs.context import ContextSpace
from zsgjax.types import ContextGradients, DirectionalGradients, Transition

ContextSampler = Callable[[jax.Array], jax.Array]  # rng -> (dim,)
GradientMode = Literal["none", "jacobian", "jvp"]

SAMPLERS = ("default", "ldr", "dr")


def make_context_sampler(
    space: ContextSpace,
    kind: str,
    *,
    ldr_scale: float = 0.1,
    dr_low=None,
    dr_high=None,
) -> ContextSampler:
    """Per-episode context distribution of a training method.

    kind:
      ``default`` -- always the space's default (vanilla and CSE);
      ``ldr``     -- ``default + ldr_scale * N(0, I)``, clipped to the space;
      ``dr``      -- uniform over ``[dr_low, dr_high]`` (defaults: the whole space).
    """
    if kind == "default":
        default = space.default_array
        return lambda rng: default
    if kind == "ldr":
        if not ldr_scale > 0:
            raise ValueError(f"`ldr_scale` must be > 0, got {ldr_scale}")
        return lambda rng: space.sample_local(rng, scale=ldr_scale)
    if kind == "dr":
        low = space.validate(space.low if dr_low is None else dr_low, "dr_low")
        high = space.validate(space.high if dr_high is None else dr_high, "dr_high")
        for i, n in enumerate(space.names):
            if low[i] > high[i]:
                raise ValueError(f"`dr_low` must not exceed `dr_high`: dimension '{n}' has {low[i]:g} > {high[i]:g}")
        box = ContextSpace(space.names, low, high, (low + high) / 2)
        return lambda rng: box.sample_uniform(rng)
    raise ValueError(f"unknown context sampler '{kind}'; known: {', '.join(SAMPLERS)}")


@struct.dataclass
class StepOutput:
    """What one batched step produced (leading ``B`` on every leaf).

    transition:    the transition as observed (``next_obs`` before any reset)
    env_state:     the physics state the step started from (for exact CSE)
    gradients:     ``ContextGradients``, ``DirectionalGradients`` or ``None``
    episode_end:   ``(B,)`` bool, the episode ended here (terminated or truncated)
    episode_return:``(B,)`` the undiscounted return so far, including this step
    """

    transition: Transition
    env_state: EnvState
    gradients: ContextGradients | DirectionalGradients | None
    episode_end: jax.Array
    episode_return: jax.Array


def reset(env: ContextualEnv, rng: jax.Array, num_envs: int, sampler: ContextSampler) -> State:
    """``num_envs`` fresh episodes, contexts drawn by ``sampler``; adds step counters."""
    rng_ctx, rng_env = jax.random.split(rng)
    contexts = jax.vmap(sampler)(jax.random.split(rng_ctx, num_envs))
    state = jax.vmap(env.reset)(jax.random.split(rng_env, num_envs), contexts)
    state.info["steps"] = jnp.zeros((num_envs,), jnp.int32)
    state.info["episode_return"] = jnp.zeros((num_envs,), jnp.float32)
    return state


def _step_one(
    env: ContextualEnv,
    state: State,
    action: jax.Array,
    rng: jax.Array,
    sampler: ContextSampler,
    gradients: GradientMode,
    epsilon: float,
):
    rng_reset, rng_ctx, rng_dir = jax.random.split(rng, 3)
    context = state.info["context"]
    env_state = state.pipeline_state
    if gradients == "jacobian":
        (next_es, next_sobs, reward, term), grads = cse.step_and_jacobian(env, env_state, action, context)
    elif gradients == "jvp":
        delta_c = cse.draw_context_step(rng_dir, context, env.context_space, epsilon)
        (next_es, next_sobs, reward, term), grads = cse.step_and_jvp(env, env_state, action, context, delta_c)
    elif gradients == "none":
        next_es, next_sobs, reward, term = env.env_step(env_state, action, context)
        grads = None
    else:
        raise ValueError(f"unknown gradient mode '{gradients}'; known: none, jacobian, jvp")

    reward = reward.astype(jnp.float32)
    term = term.astype(bool)
    next_obs = env.make_obs(next_sobs, context)
    steps = state.info["steps"] + 1
    episode_return = state.info["episode_return"] + reward
    episode_end = term | (steps >= env.horizon)
    transition = Transition(
        obs=state.obs,
        action=action,
        reward=reward,
        next_obs=next_obs,
        done=term.astype(jnp.float32),
        context=context,
    )

    fresh = env.reset(rng_reset, sampler(rng_ctx))
    stepped = state.replace(pipeline_state=next_es, obs=next_obs, reward=reward, done=term.astype(jnp.float32))
    new_state = jax.tree.map(lambda f, s: jnp.where(episode_end, f, s), fresh.replace(info={}), stepped.replace(info={}))
    new_state = new_state.replace(
        reward=reward,
        done=term.astype(jnp.float32),
        info={
            "context": jnp.where(episode_end, fresh.info["context"], context),
            "steps": jnp.where(episode_end, 0, steps),
            "episode_return": jnp.where(episode_end, 0.0, episode_return),
        },
    )
    out = StepOutput(
        transition=transition,
        env_state=env_state,
        gradients=grads,
        episode_end=episode_end,
        episode_return=episode_return,
    )
    return new_state, out


def step(
    env: ContextualEnv,
    state: State,
    action: jax.Array,
    rng: jax.Array,
    sampler: ContextSampler,
    gradients: GradientMode = "none",
    epsilon: float = 0.1,
) -> tuple[State, StepOutput]:
    """Step ``B`` environments (state from :func:`reset`) with auto-reset.

    action: ``(B, action_size)`` (or ``(B,)`` ints for discrete envs).
    gradients: ``"jacobian"`` / ``"jvp"`` also return the CSE derivatives of each
      transition (``jvp`` along a step of size ``epsilon`` drawn here, clipped).
    """
    num_envs = action.shape[0]
    rngs = jax.random.split(rng, num_envs)
    return jax.vmap(lambda s, a, r: _step_one(env, s, a, r, sampler, gradients, epsilon))(state, action, rngs)


def rollout(
    env: ContextualEnv,
    policy: Callable[[jax.Array, jax.Array], jax.Array],
    state: State,
    rng: jax.Array,
    num_steps: int,
    sampler: ContextSampler,
    gradients: GradientMode = "none",
    epsilon: float = 0.1,
) -> tuple[State, StepOutput]:
    """``num_steps`` batched steps under ``policy(rng, obs (B, obs)) -> action`` with ``lax.scan``.

    Returns the final state and the stacked ``StepOutput`` (leading ``(num_steps, B)``).
    """

    def body(carry, _):
        st, key = carry
        key, k_act, k_step = jax.random.split(key, 3)
        action = policy(k_act, st.obs)
        st, out = step(env, st, action, k_step, sampler, gradients, epsilon)
        return (st, key), out

    (state, _), outs = jax.lax.scan(body, (state, rng), None, length=num_steps)
    return state, outs
