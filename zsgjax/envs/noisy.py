"""Stochastic variants of the CSE paper's analytic tasks, with noise whose scale depends on the context.

Both reuse the deterministic environment's step unchanged (the noise enters its
inputs), so the dynamics, rewards, contexts, horizons and evaluation contexts are
the deterministic task's (:mod:`zsgjax.envs.pendulum_goal`,
:mod:`zsgjax.envs.simple_direction`); :mod:`zsgjax.envs.stochastic` holds the key
and draws ``xi ~ N(0, I)``.

``pendulum_goal_noisy`` -- **actuation noise** scaled by the pole's gravitational
torque, ``xi (1,)``::

    sigma(c) = noise_scale * m g l            (c = (g, m, l, tau))
    step     = pendulum_goal's step with action a + sigma(c) xi

(then clipped to ``[-2, 2]`` with the action, as pendulum_goal clips it). At the
default context ``m g l = 2``; over the range ``m g l`` spans ``[0.125, 20]``.

``simple_direction_noisy`` -- a **displacement** of the point before the move, larger
along the positive context axes, ``xi (2,)``::

    sigma(c) = noise_scale * exp(c)           (per axis, c in [-1, 1]^2)
    s'       = s + sigma(c) * xi + clip(a, -1, 1) + c,   r = s' . c

The noise has zero mean and does not depend on the action, so ``a = sign(c)`` stays
optimal and the expected optimal return is SimpleDirection's
(:meth:`SimpleDirectionNoisy.optimal_return`).

``noise_scale`` (constructor keyword, a finite number ``>= 0``; 0 gives the
deterministic steps): default :data:`PENDULUM_NOISE_SCALE`, :data:`DIRECTION_NOISE_SCALE`.
"""

from __future__ import annotations

import jax.numpy as jnp

from zsgjax import checks
from zsgjax.envs.pendulum_goal import PendulumGoal
from zsgjax.envs.simple_direction import SimpleDirection
from zsgjax.envs.stochastic import StochasticEnv

PENDULUM_NOISE_SCALE = 0.1
"""Torque-noise std per unit of ``m g l``: 0.2 at the default context (10% of the torque bound 2)."""
DIRECTION_NOISE_SCALE = 0.3
"""Displacement std at ``c = 0`` (per axis)."""


def _noise_scale(value, cls: type) -> float:
    return checks.real(value, f"{cls.__name__}: `noise_scale`", low=0.0)


class PendulumGoalNoisy(StochasticEnv):
    """pendulum_goal with actuation noise of std ``noise_scale * m g l``;
    ``make('pendulum_goal_noisy', noise_scale=0.1, integrator='paper' | 'gym')``.

    Raises:
      ValueError: ``noise_scale`` is not a finite number ``>= 0``, or ``integrator`` is not
        one of pendulum_goal's.
    """

    context_space = PendulumGoal.context_space
    horizon = PendulumGoal.horizon
    state_obs_size = PendulumGoal.state_obs_size
    eval_contexts = PendulumGoal.eval_contexts
    noise_shape = (1,)

    def __init__(self, noise_scale: float = PENDULUM_NOISE_SCALE, integrator: str = "paper"):
        self.noise_scale = _noise_scale(noise_scale, type(self))
        self.deterministic = PendulumGoal(integrator=integrator)

    @property
    def action_size(self) -> int:
        return self.deterministic.action_size

    def noise_std(self, context):
        """Torque-noise std ``noise_scale * m g l``: ``()``."""
        return self.noise_scale * context[0] * context[1] * context[2]

    def init_physics(self, rng, context):
        return self.deterministic.init_env_state(rng, context)

    def observe_physics(self, physics, context):
        return self.deterministic.observe(physics, context)

    def step_with_noise(self, physics, action, context, xi, noise_context):
        return self.deterministic.env_step(physics, action + self.noise_std(noise_context) * xi, context)


class SimpleDirectionNoisy(StochasticEnv):
    """simple_direction with a displacement of std ``noise_scale * exp(c)`` per axis before each move;
    ``make('simple_direction_noisy', noise_scale=0.3)``.

    Raises:
      ValueError: ``noise_scale`` is not a finite number ``>= 0``.
    """

    context_space = SimpleDirection.context_space
    horizon = SimpleDirection.horizon
    state_obs_size = SimpleDirection.state_obs_size
    eval_contexts = SimpleDirection.eval_contexts
    noise_shape = (2,)

    def __init__(self, noise_scale: float = DIRECTION_NOISE_SCALE):
        self.noise_scale = _noise_scale(noise_scale, type(self))
        self.deterministic = SimpleDirection()

    @property
    def action_size(self) -> int:
        return self.deterministic.action_size

    def noise_std(self, context):
        """Displacement std per axis ``noise_scale * exp(c)``: ``(2,)``."""
        return self.noise_scale * jnp.exp(context)

    def init_physics(self, rng, context):
        return self.deterministic.init_env_state(rng, context)

    def observe_physics(self, physics, context):
        return self.deterministic.observe(physics, context)

    def step_with_noise(self, physics, action, context, xi, noise_context):
        return self.deterministic.env_step(physics + self.noise_std(noise_context) * xi, action, context)

    def optimal_return(self, context) -> float:
        """SimpleDirection's ``H (H + 1) / 2 * (|c|_1 + |c|_2^2)``: the noise has zero mean and
        does not depend on the action."""
        return self.deterministic.optimal_return(context)
