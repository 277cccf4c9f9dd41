"""Context ranges checked by simulation: short batched rollouts at the corners of a box.

A context range can be valid on paper (every bound finite, the physical minimum
respected) and still make the dynamics blow up: the half-cheetah with its friction
scaled by ``1e-3`` has observations of ``1e9`` after 5 steps and NaN after 8; the
ant with ``damping_scale`` 1000 is non-finite after one step. Such a range is found
here by running the environment, not by reasoning about it:

* :func:`corner_contexts` -- the corners of the box spanned by some context
  dimensions (the others at their default), or, when there are too many corners,
  each dimension's two ends plus the all-low and all-high corners;
* :func:`find_instability` -- one jitted program: from ``num_states`` random initial
  states at every given context, ``num_steps`` steps of uniform random actions
  (``[-1, 1]`` per action dimension, or a uniform discrete action); the first
  (context, step) whose next observation or reward is not finite or exceeds
  ``limit`` in magnitude;
* :func:`check_ranges` -- :func:`find_instability` at the corners, as a
  ``ValueError`` naming the corner, the step and the value.

The MJX environments call :func:`check_ranges` at construction for the physical
features whose range is wider than the feature's default (``FEATURE_RANGES`` in
:mod:`zsgjax.envs.mjx.features`): the default ranges are checked at their corners
for every registered environment by ``tests/test_contracts.py``, so only a widened
range costs the one compilation of this check. A short rollout cannot prove a
range safe (some unstable corners take longer than ``num_steps`` to diverge:
measured, the ant with ``actuator_gain`` 5 diverged from 1 of 4 initial states after
60 steps), which is why training also reports non-finite resets
(:func:`zsgjax.rollout.instability_warnings`).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from zsgjax.envs.base import ContextualEnv
from zsgjax.envs.context import ContextSpace

CHECK_STEPS = 50
"""Steps of each checking rollout (2.5 s of simulated time in the MJX environments)."""
CHECK_STATES = 4
"""Random initial states per checked context."""
STATE_LIMIT = 1e6
"""Largest observation or reward magnitude accepted as "not exploded": the MJX environments'
observations stay below ~150 over their default ranges, exploding ones pass 1e9."""
MAX_CORNERS = 64
"""At most this many corners (six dimensions); above, the ends of each dimension and two corners."""


def corner_contexts(space: ContextSpace, dims: Sequence[int | str], max_points: int = MAX_CORNERS) -> np.ndarray:
    """Contexts at corners of the box of ``dims`` (the other dimensions at their default): ``(n, space.dim)``.

    Every one of the ``2 ** len(dims)`` corners when that is at most ``max_points``;
    otherwise the all-low and all-high corners and, for each dimension, the corner
    with that dimension high and the others low and the one with it low and the
    others high (``2 len(dims) + 2`` corners). ``dims``: names or indices.
    Duplicates (a dimension with ``low == high``) are removed.
    """
    dims = [space.index(d) for d in dims]
    k = len(dims)
    if 2**k <= max_points:
        choices = list(itertools.product((False, True), repeat=k))
    else:
        alone = [tuple(j == i for j in range(k)) for i in range(k)]
        choices = [(False,) * k, (True,) * k] + alone + [tuple(not up for up in c) for c in alone]
    low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
    points = np.tile(np.asarray(space.default, np.float64), (len(choices), 1))
    for row, choice in enumerate(choices):
        for d, up in zip(dims, choice):
            points[row, d] = high[d] if up else low[d]
    _, first = np.unique(points, axis=0, return_index=True)
    return points[np.sort(first)]


@dataclasses.dataclass(frozen=True)
class Instability:
    """Where a checking rollout blew up.

    context: ``(dim,)`` the context; step: the 1-based step whose next observation or
    reward was first non-finite or above the limit; value: the largest magnitude at
    that step (``inf`` when non-finite).
    """

    context: np.ndarray
    step: int
    value: float


def _random_action(env: ContextualEnv, rng: jax.Array) -> jax.Array:
    if env.discrete:
        return jax.random.randint(rng, (), 0, int(env.num_actions))
    return jax.random.uniform(rng, (env.action_size,), minval=-1.0, maxval=1.0)


def rollout_magnitudes(env: ContextualEnv, contexts: jax.Array, rng: jax.Array, num_steps: int,
                       num_states: int) -> jax.Array:
    """Largest ``|next_state_obs|`` and ``|reward|`` of each step: ``(n, num_states, num_steps)``.

    ``contexts (n, dim)``; from ``num_states`` random initial states per context,
    ``num_steps`` steps of random actions (see the module docstring); ``inf`` where a
    value is not finite. Pure and jittable. An episode that terminates is continued
    (the check is about the physics, not the task).
    """

    def one(context, key):
        k_init, k_act = jax.random.split(key)
        state = env.init_env_state(k_init, context)

        def body(s, k):
            s, obs, reward, _ = env.env_step(s, _random_action(env, k), context)
            values = jnp.concatenate([jnp.ravel(obs), jnp.ravel(reward)]).astype(jnp.float32)
            size = jnp.where(jnp.all(jnp.isfinite(values)), jnp.max(jnp.abs(values)), jnp.inf)
            return s, size

        return jax.lax.scan(body, state, jax.random.split(k_act, num_steps))[1]

    keys = jax.random.split(rng, num_states)
    return jax.vmap(lambda c: jax.vmap(lambda k: one(c, k))(keys))(contexts)


def find_instability(env: ContextualEnv, contexts, num_steps: int = CHECK_STEPS, num_states: int = CHECK_STATES,
                     limit: float = STATE_LIMIT, seed: int = 0) -> Instability | None:
    """The first context (in the given order) whose checking rollout blows up, or ``None``.

    ``contexts``: ``(n, dim)``. One compilation of :func:`rollout_magnitudes`; a rollout
    blows up at the first step whose largest magnitude is not finite or exceeds ``limit``.
    """
    contexts = jnp.asarray(contexts, dtype=env.default_context().dtype)
    sizes = np.asarray(jax.jit(rollout_magnitudes, static_argnums=(0, 3, 4))(
        env, contexts, jax.random.PRNGKey(seed), num_steps, num_states))
    bad = ~np.isfinite(sizes) | (sizes > limit)  # (n, states, steps)
    for i in np.flatnonzero(bad.any(axis=(1, 2))):
        steps = np.flatnonzero(bad[i].any(axis=0))
        step = int(steps[0])
        return Instability(context=np.asarray(contexts[i]), step=step + 1, value=float(sizes[i][:, step].max()))
    return None


def check_ranges(env: ContextualEnv, dims: Sequence[int | str], what: str, **kwargs) -> None:
    """``ValueError`` when the rollout at some corner of the box of ``dims`` blows up.

    ``what`` names the checked ranges in the message (e.g. ``"the range of physical
    feature 'friction_scale' [0.001, 2]"``); ``kwargs`` go to :func:`find_instability`.
    """
    space = env.context_space
    found = find_instability(env, corner_contexts(space, dims), **kwargs)
    if found is None:
        return
    at = ", ".join(f"{space.names[d]}={found.context[d]:g}" for d in (space.index(d) for d in dims))
    limit = kwargs.get("limit", STATE_LIMIT)
    how = f"{found.value:.3g} in magnitude (limit {limit:g})" if np.isfinite(found.value) else "non-finite"
    raise ValueError(
        f"{type(env).__name__}: {what} makes the simulation blow up: at the corner {at}, a rollout of random actions "
        f"has its observation or reward {how} at step {found.step}; narrow the range (the default ranges are checked)"
    )
