"""Shared pytrees: transitions and context gradients.

Shapes are given for one sample; a batch adds leading axes to every leaf.
"""

from __future__ import annotations

import jax
from flax import struct


@struct.dataclass
class Transition:
    """One environment transition as the agent sees it.

    obs:      ``(obs_size,)`` = ``concat(state_obs, context)``
    action:   ``(action_size,)`` float, or ``()`` int for discrete actions
    reward:   ``()``
    next_obs: ``(obs_size,)`` = ``concat(next_state_obs, context)``
    done:     ``()`` 1.0 when the episode terminated (no bootstrap); truncation is not done
    context:  ``(context_dim,)``
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    done: jax.Array
    context: jax.Array


@struct.dataclass
class ContextGradients:
    """Total derivatives of one transition with respect to the context.

    d_obs:    ``(state_obs_size, context_dim)`` = d next_state_obs / dc
    d_reward: ``(context_dim,)``                = d reward / dc (includes the path through s')
    """

    d_obs: jax.Array
    d_reward: jax.Array


@struct.dataclass
class DirectionalGradients:
    """Context derivatives along one pre-drawn, already clipped step ``delta_c``.

    delta_c:  ``(context_dim,)`` the step, ``clip(c + eps u) - c``
    d_obs:    ``(state_obs_size,)`` = (d next_state_obs / dc) delta_c
    d_reward: ``()``                 = (d reward / dc) delta_c
    """

    delta_c: jax.Array
    d_obs: jax.Array
    d_reward: jax.Array
