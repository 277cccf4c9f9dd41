"""CliffLine: a control family whose reward is non-linear in the action (a cliff edge).

The task of the pessimism experiment (docs/offline_control.md, experiment (c)): data from
a narrow behaviour policy cover a few actions, and a critic fitted to them extrapolates the
reward's upward slope past an edge it never saw. A point on a line, observation ``x``
only (the policy does not see the context), start ``x = 0``, action ``a in [-1, 1]``
(clipped), context ``e in [0.2, 1]`` (the edge)::

    x' = x + stride a                     (stride = 0.25 by default)
    r  = x'                              if x' <= e
       = -fall                           if x' > e, and the episode terminates
    horizon H (default 8)

The reward rises with ``x'`` up to the edge and drops by ``e + fall`` past it, so it is
linear in the action on either side and discontinuous at the edge. A blind policy that
walks to ``y`` (reached after ``ceil(y / stride)`` steps) and stays scores
``sum_t x_t`` in every context with ``e >= y`` and falls in the others.

:func:`approach_policy` is the behaviour: a proportional controller that walks towards a
target position (its ``params``), the "mediocre policy" around which
:class:`~zsgjax.offline.control.behaviour.Behaviour` adds small Gaussian noise.
:func:`blind_return` is the closed-form return of a blind position sequence.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from zsgjax import checks
from zsgjax.envs.base import ContextualEnv
from zsgjax.envs.context import ContextSpace


class CliffLine(ContextualEnv):
    """See the module docstring. ``CliffLine(horizon=8, stride=0.25, fall=1.0)``: ``horizon >= 1``
    an integer, ``stride > 0``, ``fall >= 0``."""

    context_space = ContextSpace(("e",), low=(0.2,), high=(1.0,), default=(0.6,))
    horizon = 8
    state_obs_size = 1
    eval_contexts = {"e=0.4": (0.4,), "e=0.7": (0.7,), "e=1": (1.0,)}

    def __init__(self, horizon: int = 8, stride: float = 0.25, fall: float = 1.0):
        self.horizon = int(checks.integer(horizon, "CliffLine: `horizon`", low=1))
        self.stride = float(checks.real(stride, "CliffLine: `stride`", low=0.0, low_open=True))
        self.fall = float(checks.real(fall, "CliffLine: `fall` (the penalty for passing the edge)", low=0.0))

    @property
    def action_size(self) -> int:
        return 1

    def init_env_state(self, rng, context):
        return jnp.zeros((1,), jnp.float32)

    def observe(self, env_state, context):
        return env_state

    def env_step(self, env_state, action, context):
        a = jnp.clip(action[0], -1.0, 1.0)
        x_next = jnp.maximum(env_state[0] + self.stride * a, 0.0)
        fell = x_next > context[0]
        reward = jnp.where(fell, -self.fall, x_next)
        nxt = x_next[None].astype(jnp.float32)
        return nxt, nxt, reward, fell


def approach_policy(params, obs: jax.Array, rng: jax.Array) -> jax.Array:
    """``(1,)``: the action that walks from ``x = obs[0]`` towards the target ``params`` (a scalar)
    with the default stride, ``clip((target - x) / 0.25, -1, 1)``; the context (the rest of
    ``obs``) and ``rng`` are unused. A ``policy_fn`` of
    :class:`~zsgjax.offline.control.behaviour.Behaviour`."""
    del rng
    return jnp.clip((jnp.asarray(params, jnp.float32) - obs[0]) / 0.25, -1.0, 1.0)[None]


def blind_return(positions, edges, fall: float = 1.0) -> np.ndarray:
    """Return of the blind position sequence ``positions (..., H)`` (``x_1..x_H``) in each context of
    ``edges (m,)`` -> ``(..., m)`` (float64): ``sum_{t < T} x_t - fall [T <= H]`` with ``T`` the first
    step past the edge."""
    x = checks.numeric_array(positions, "`positions`", finite=True).astype(np.float64)[..., None, :]
    e = checks.numeric_array(edges, "`edges`", finite=True).astype(np.float64).reshape(-1)[:, None]
    past = x > e  # (..., m, H)
    alive = np.cumsum(past, -1) == 0
    return np.sum(np.where(alive, x, 0.0), -1) - fall * past.any(-1)
