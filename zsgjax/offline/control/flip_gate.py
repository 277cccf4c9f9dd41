"""FlipGate: a continuous-control family on which the merged data's optimum is poor.

The continuous analogue of the two-context construction of arXiv 2503.07988's
Proposition (:func:`zsgjax.offline.linear.mdp.two_context_mdp`); the derivation is in
docs/offline_control.md. A point on a line, context ``c in [-1, 1]`` (its sign flips
the action's effect, its size scales it), action ``a in [-1, 1]`` (clipped)::

    state (x, first), start (0, 1)
    x'     = x + c a,  first' = 0
    r      = delta a                     on the first step
           = w(c) (x' - x) = w(c) c a    afterwards,  w(c) = 1 - delta (1 + c)
    terminated when x' <= 0              (left the "gate" side x > 0)

Observation (without context) ``(x, first)``; horizon 10. In a context with ``c < 0``
the first action must be negative to pass the gate (in ``c > 0`` positive), and then
the rewarded direction is ``a = sign(c)``. A policy that does not see ``c`` and plays
``a = -1`` throughout scores ``-delta + (H - 1) w(c) |c|`` where ``c < 0`` and ``-delta``
where ``c > 0``; the merged data's optimal policy plays ``+1`` first and ``-1`` after,
and scores ``delta - w(c) c`` where ``c > 0`` and ``delta`` where ``c < 0``.

:func:`sample_contexts` draws the training / held-out distribution
``c = s u``, ``s = +-1`` with probability 1/2, ``u ~ U[u_min, 1]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from zsgjax.envs.base import ContextualEnv
from zsgjax.envs.context import ContextSpace


class FlipGate(ContextualEnv):
    """See the module docstring. ``FlipGate(delta=0.1)``, ``0 < delta < 0.5``."""

    context_space = ContextSpace(("c",), low=(-1.0,), high=(1.0,), default=(1.0,))
    horizon = 10
    state_obs_size = 2
    eval_contexts = {"c=-1": (-1.0,), "c=-0.5": (-0.5,), "c=0.5": (0.5,), "c=1": (1.0,)}

    def __init__(self, delta: float = 0.1):
        if not isinstance(delta, (int, float)) or isinstance(delta, bool) or not 0.0 < float(delta) < 0.5:
            raise ValueError(f"FlipGate: `delta` must be a number in (0, 0.5), got {delta!r}")
        self.delta = float(delta)

    @property
    def action_size(self) -> int:
        return 1

    def weight(self, c: jax.Array) -> jax.Array:
        return 1.0 - self.delta * (1.0 + c)

    def init_env_state(self, rng, context):
        return jnp.array([0.0, 1.0], jnp.float32)

    def observe(self, env_state, context):
        return env_state

    def env_step(self, env_state, action, context):
        x, first = env_state[0], env_state[1]
        c = context[0]
        a = jnp.clip(action[0], -1.0, 1.0)
        x_next = x + c * a
        reward = jnp.where(first > 0.5, self.delta * a, self.weight(c) * c * a)
        nxt = jnp.stack([x_next, jnp.zeros_like(x_next)])
        return nxt, nxt, reward, x_next <= 0.0


def sample_contexts(key: jax.Array, num: int, u_min: float = 0.5) -> jax.Array:
    """``(num, 1)`` contexts ``c = s u``, ``s = +-1`` equiprobable, ``u ~ U[u_min, 1]``."""
    if not 0.0 <= u_min <= 1.0:
        raise ValueError(f"sample_contexts: `u_min` must lie in [0, 1], got {u_min!r}")
    k_s, k_u = jax.random.split(key)
    sign = jnp.where(jax.random.bernoulli(k_s, 0.5, (num, 1)), 1.0, -1.0)
    return sign * jax.random.uniform(k_u, (num, 1), minval=u_min, maxval=1.0)
