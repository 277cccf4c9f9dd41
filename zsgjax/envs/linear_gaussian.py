"""LinearGaussian: a one-dimensional linear system with Gaussian noise whose drift and scale depend on the context.

The reference task for stochastic context sample enhancement: its next-state law at
any context is known in closed form (:meth:`LinearGaussian.next_state_law`). State
``s (1,)``, action ``a (1,)``, ``u = clip(a, -1, 1)``, context ``c in [-1, 1]``
(default 0), ``xi ~ N(0, 1)``::

    s'       = A s + B u + b(c) + sigma(c) xi,     A = 0.9, B = 0.5
    b(c)     = 0.5 sin(2 c)                        (drift)
    sigma(c) = noise_scale exp(c)                  (noise_scale = 0.2 by default)
    r        = -(s'^2 + 0.1 u^2)

so ``s' | s, a, c ~ N(A s + B u + b(c), sigma(c)^2)``. Both ``b`` and ``sigma`` are
nonlinear in ``c``, so a first-order step in the context is exact for neither. The
optimal policy pushes ``s'`` towards 0 against the drift. ``s0 ~ U[-1, 1]``; the
observation is ``s``; horizon 50, no termination.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from zsgjax import checks
from zsgjax.envs.context import ContextSpace
from zsgjax.envs.stochastic import NoisyState, StochasticEnv

A = 0.9
B = 0.5
DRIFT = 0.5
NOISE_SCALE = 0.2


def drift(context: jax.Array) -> jax.Array:
    """``b(c) = 0.5 sin(2 c)`` for ``context (1,)``: ``()``."""
    return DRIFT * jnp.sin(2.0 * context[0])


class LinearGaussian(StochasticEnv):
    """``s' = A s + B u + b(c) + sigma(c) xi``; ``make('linear_gaussian', noise_scale=0.2)``.

    Raises:
      ValueError: ``noise_scale`` is not a finite number ``>= 0``.
    """

    context_space = ContextSpace(("c",), low=(-1.0,), high=(1.0,), default=(0.0,))
    horizon = 50
    state_obs_size = 1
    eval_contexts = {"c=0": (0.0,), "c=-0.8": (-0.8,), "c=0.8": (0.8,)}
    noise_shape = (1,)

    def __init__(self, noise_scale: float = NOISE_SCALE):
        self.noise_scale = checks.real(noise_scale, "LinearGaussian: `noise_scale`", low=0.0)

    @property
    def action_size(self) -> int:
        return 1

    def noise_std(self, context: jax.Array) -> jax.Array:
        """``sigma(c) = noise_scale exp(c)``: ``()``."""
        return self.noise_scale * jnp.exp(context[0])

    def next_state_law(self, env_state: NoisyState, action: jax.Array, context: jax.Array):
        """Mean and std of ``s'`` given ``(s, a, c)``: ``(A s + B u + b(c) (1,), sigma(c) ())``."""
        u = jnp.clip(action, -1.0, 1.0)
        return A * env_state.physics + B * u + drift(context), self.noise_std(context)

    def init_physics(self, rng, context):
        """``s ~ U[-1, 1]``: ``(1,)``."""
        return jax.random.uniform(rng, (1,), dtype=context.dtype, minval=-1.0, maxval=1.0)

    def observe_physics(self, physics, context):
        return physics

    def step_with_noise(self, physics, action, context, xi, noise_context):
        u = jnp.clip(action, -1.0, 1.0)
        next_s = A * physics + B * u + drift(context) + self.noise_std(noise_context) * xi
        reward = -(next_s[0] ** 2 + 0.1 * u[0] ** 2)
        return next_s, next_s, reward, jnp.zeros((), dtype=bool)
