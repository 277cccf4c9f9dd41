"""Batched environment stepping with auto-reset and per-episode contexts.

The trainer's data collection: ``num_envs`` environments stepped together
(``vmap``), each resetting when it terminates or reaches the horizon, with the new
episode's context drawn by a *context sampler* (a method's
:meth:`~zsgjax.methods.Method.context_sampler`). Each single-environment step is
the method's *collector* (:meth:`~zsgjax.methods.Method.collect`): a plain step by
default; CSE's also returns the context gradients it stores, computed in the same
forward-mode pass as the step itself.

Unlike brax's ``AutoResetWrapper`` (which replays the first state of the batch),
a reset here draws a fresh initial state **and** a fresh context.

Shapes: ``B = num_envs``; a batched ``State`` has a leading ``B`` on every leaf.

A step whose next observation or reward is not finite ends its episode (a reset)
and its transition is masked; :func:`instability_warnings` turns the trainer's
count of such steps, and losses that explode while staying finite, into warnings
for the user (physics blowing up inside the accepted context range).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import State
from flax import struct

from zsgjax.envs.base import ContextualEnv
from zsgjax.methods.base import ContextSampler, plain_collect
from zsgjax.types import Transition

Collector = Callable[..., tuple]
"""``(env, env_state, action, context, rng) -> (EnvStep, extras)``: one step of one
environment and what to store beside its transition (a method's ``collect``)."""


@struct.dataclass
class StepOutput:
    """What one batched step produced (leading ``B`` on every leaf).

    transition:    the transition as observed (``next_obs`` before any reset)
    extras:        what the collector stores beside it (CSE: ``ContextGradients``,
                   ``DirectionalGradients`` or the pre-step physics state; else ``None``)
    finite:        ``(B,)`` bool, the step's next observation and reward are finite; a
                   non-finite step ends the episode (the environment is reset) and its
                   transition gets weight 0 in every loss
    episode_end:   ``(B,)`` bool, the episode ended here (terminated or truncated)
    episode_return:``(B,)`` the undiscounted return so far, including this step
    """

    transition: Transition
    extras: Any
    finite: jax.Array
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


def _step_one(env: ContextualEnv, state: State, action: jax.Array, rng: jax.Array, sampler: ContextSampler,
              collect: Collector):
    rng_reset, rng_ctx, rng_collect = jax.random.split(rng, 3)
    context = state.info["context"]
    (next_es, next_sobs, reward, term), extras = collect(env, state.pipeline_state, action, context, rng_collect)
    reward = reward.astype(jnp.float32)
    term = term.astype(bool)
    next_obs = env.make_obs(next_sobs, context)
    finite = jnp.all(jnp.isfinite(next_obs)) & jnp.isfinite(reward)
    steps = state.info["steps"] + 1
    episode_return = state.info["episode_return"] + jnp.where(finite, reward, 0.0)
    episode_end = term | (steps >= env.horizon) | ~finite
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
        reward=jnp.where(finite, reward, 0.0),
        done=term.astype(jnp.float32),
        info={
            "context": jnp.where(episode_end, fresh.info["context"], context),
            "steps": jnp.where(episode_end, 0, steps),
            "episode_return": jnp.where(episode_end, 0.0, episode_return),
        },
    )
    out = StepOutput(
        transition=transition,
        extras=extras,
        finite=finite,
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
    collect: Collector = plain_collect,
) -> tuple[State, StepOutput]:
    """Step ``B`` environments (state from :func:`reset`) with auto-reset.

    action: ``(B, action_size)`` (or ``(B,)`` ints for discrete envs).
    collect: the per-environment step (default: plain; ``CSE(...).collect`` also
      returns the context derivatives of each transition as ``StepOutput.extras``).
    """
    num_envs = action.shape[0]
    rngs = jax.random.split(rng, num_envs)
    return jax.vmap(lambda s, a, r: _step_one(env, s, a, r, sampler, collect))(state, action, rngs)


def rollout(
    env: ContextualEnv,
    policy: Callable[[jax.Array, jax.Array], jax.Array],
    state: State,
    rng: jax.Array,
    num_steps: int,
    sampler: ContextSampler,
    collect: Collector = plain_collect,
) -> tuple[State, StepOutput]:
    """``num_steps`` batched steps under ``policy(rng, obs (B, obs)) -> action`` with ``lax.scan``.

    Returns the final state and the stacked ``StepOutput`` (leading ``(num_steps, B)``).
    """

    def body(carry, _):
        st, key = carry
        key, k_act, k_step = jax.random.split(key, 3)
        action = policy(k_act, st.obs)
        st, out = step(env, st, action, k_step, sampler, collect)
        return (st, key), out

    (state, _), outs = jax.lax.scan(body, (state, rng), None, length=num_steps)
    return state, outs


LOSS_LIMIT = 1e10
"""A finite loss above this has exploded: with rewards of order 1-100 per step, values
stay below ~1e4 and squared TD errors below ~1e8."""


def instability_warnings(metrics: Mapping[str, Any], first_iteration: int = 0,
                         loss_limit: float = LOSS_LIMIT) -> list[str]:
    """Warnings about a chunk of training metrics that hint at physics blowing up.

    ``metrics``: the trainer's metrics, each ``(S, n)`` (seeds x iterations; ``(n,)``
    for one seed); ``first_iteration``: the iterations done before the chunk (to
    number them from 1 as the progress lines do). Returns one message for
    ``nonfinite_resets`` > 0 (steps whose next observation or reward was not finite:
    reset and masked, but a sign that the context range reaches unstable physics)
    and one per metric named ``*_loss`` whose finite values exceed ``loss_limit``
    (non-finite metrics are the divergence check's). Empty when all is well.
    """
    warnings = []
    resets = metrics.get("nonfinite_resets")
    if resets is not None:
        resets = np.atleast_2d(np.asarray(resets))
        if resets.sum() > 0:
            seeds, its = np.nonzero(resets)
            first, last = first_iteration + its.min() + 1, first_iteration + its.max() + 1
            warnings.append(
                f"{int(resets.sum())} environment steps had a non-finite next observation or reward in iterations "
                f"{first}-{last} (seeds {sorted(set(seeds.tolist()))}); "
                "they were reset and left out of the losses, but the physics may blow up in part of the context range "
                "(narrow it; zsgjax.envs.stability.find_instability finds where)")
    for name in sorted(k for k in metrics if k.endswith("_loss")):
        values = np.atleast_2d(np.asarray(metrics[name], dtype=np.float64))
        big = np.isfinite(values) & (np.abs(values) > loss_limit)
        if big.any():
            seeds, its = np.nonzero(big)
            warnings.append(
                f"metric '{name}' reached {np.abs(values[big]).max():.3g} (above {loss_limit:g}) from iteration "
                f"{first_iteration + its.min() + 1} (seeds {sorted(set(seeds.tolist()))}): the losses are exploding; "
                "look for exploding environment states (nonfinite_resets) or too large a learning rate")
    return warnings
