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
``c = s u``, ``s = +-1`` with probability 1/2, ``u ~ U[u_min, 1]``; with ``paired=True``
it draws exact pairs ``(-u_k, +u_k)``: the finite context sets for which
docs/offline_control.md derives the average MDP's optimum exactly
(:func:`merged_return_bound`).

:class:`FlipCart` is the same construction with momentum (a damped cart whose motor
polarity and gain are the context): ``v' = rho v + c a``, ``x' = x + v'``; the reward
after the first step is ``w(c) (x' - x)`` again.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from zsgjax import checks
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


class FlipCart(FlipGate):
    """FlipGate with momentum: ``FlipCart(delta=0.1, momentum=0.5)``, ``0 <= momentum < 1``.

    State and observation ``(x, v, first)``, start ``(0, 0, 1)``::

        v' = momentum v + c a,   x' = x + v',   first' = 0
        r  = delta a on the first step, else w(c) (x' - x)
        terminated when x' <= 0

    ``momentum = 0`` is FlipGate (with the velocity observed).
    """

    state_obs_size = 3

    def __init__(self, delta: float = 0.1, momentum: float = 0.5):
        super().__init__(delta)
        self.momentum = checks.real(momentum, "FlipCart: `momentum`", low=0.0, high=1.0, high_open=True)

    def init_env_state(self, rng, context):
        return jnp.array([0.0, 0.0, 1.0], jnp.float32)

    def env_step(self, env_state, action, context):
        x, v, first = env_state[0], env_state[1], env_state[2]
        c = context[0]
        a = jnp.clip(action[0], -1.0, 1.0)
        v_next = self.momentum * v + c * a
        x_next = x + v_next
        reward = jnp.where(first > 0.5, self.delta * a, self.weight(c) * v_next)
        nxt = jnp.stack([x_next, v_next, jnp.zeros_like(x_next)])
        return nxt, nxt, reward, x_next <= 0.0


def sample_contexts(key: jax.Array, num: int, u_min: float = 0.5, paired: bool = False) -> jax.Array:
    """``(num, 1)`` contexts ``c = s u``, ``s = +-1`` equiprobable, ``u ~ U[u_min, 1]``.

    ``paired=True`` (``num`` even): ``num / 2`` magnitudes ``u_k``, each as the pair
    ``(-u_k, +u_k)`` (rows ``2k``, ``2k + 1``): half of the contexts of each sign, with equal
    magnitudes, as the derivation of :func:`merged_return_bound` needs."""
    checks.prng_key(key, "sample_contexts: `key`")
    num = checks.integer(num, "sample_contexts: `num`", low=1)
    u_min = checks.real(u_min, "sample_contexts: `u_min`", low=0.0, high=1.0)
    if checks.boolean(paired, "sample_contexts: `paired`"):
        if num % 2:
            raise ValueError(f"sample_contexts: `num` must be even with paired=True (pairs -u, +u), got {num}")
        u = jax.random.uniform(key, (num // 2, 1), minval=u_min, maxval=1.0)
        return jnp.stack([-u, u], axis=1).reshape(num, 1)
    k_s, k_u = jax.random.split(key)
    sign = jnp.where(jax.random.bernoulli(k_s, 0.5, (num, 1)), 1.0, -1.0)
    return sign * jax.random.uniform(k_u, (num, 1), minval=u_min, maxval=1.0)


def merged_return_bound(env: FlipGate, contexts) -> np.ndarray:
    """``(C,)``: the derived upper bound on the true return, in each of ``contexts (C, 1)``, of
    every blind policy that plays ``a_0 >= 0`` first and ``a_t <= 0`` afterwards -- the
    average MDP's optimal policies when the training contexts come in exact pairs
    ``(-u, +u)`` and the behaviour is symmetric (``a -> -a``; docs/offline_control.md):

    * ``c <= 0``: ``delta`` (the first step ends the episode at ``x_1 = c a_0 <= 0``);
    * ``c > 0``: ``delta + w(c) c rho / (1 - rho)`` (FlipCart, ``rho`` = momentum: the
      start's velocity coasts on), ``delta`` for FlipGate.
    """
    if not isinstance(env, FlipGate):
        raise ValueError(f"merged_return_bound: `env` must be a FlipGate or FlipCart, got {type(env).__name__}")
    c = checks.numeric_array(contexts, "merged_return_bound: `contexts`", finite=True).astype(np.float64)
    c = c.reshape(c.shape[0], -1)[:, 0] if c.ndim == 2 else c.reshape(-1)
    if np.any(np.abs(c) > 1.0):
        raise ValueError("merged_return_bound: `contexts` must lie in [-1, 1]")
    rho = getattr(env, "momentum", 0.0)
    w = 1.0 - env.delta * (1.0 + c)
    return np.where(c > 0, env.delta + w * c * rho / (1.0 - rho), env.delta)
