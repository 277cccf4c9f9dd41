"""PendulumGoal (CSE paper): gym's pendulum, held at a context-dependent goal angle.

Context ``c = (g, m, l, tau)``: gravity, pole mass, pole length and a "goal torque";
default (training) context ``(2, 1, 1, 0)``, range ``low (0.5, 0.5, 0.5, -1)``,
``high (5, 2, 2, 1)``.

Dynamics (gym ``Pendulum-v1``, explicit Euler, ``dt = 0.05``; ``theta = 0`` is upright)::

    u       = clip(a, -2, 2)                                   a: (1,)
    thdot'  = clip(thdot + (3 g / (2 l) sin(theta) + 3 u / (m l^2)) dt, -8, 8)
    theta'  = theta + thdot' dt

Goal and reward (computed on the **next** state, so ``d r/dc`` includes the path
through ``s'``)::

    goal = asin(clip(-tau / (m g l), -1, 1))
    r    = -(pi^2 sin^2((theta' - goal) / 2) + 0.1 thdot'^2 + 0.001 u^2)

Modelling choices:

* ``pi^2 sin^2(d / 2)`` is a smooth, ``2 pi``-periodic stand-in for gym's
  ``angle_normalize(d)^2``: both are 0 at the goal and ``pi^2`` opposite it, and it
  is differentiable everywhere, so context derivatives never see the wrap-around
  kink of ``angle_normalize``.
* ``theta`` is kept unwrapped in the state (observations are ``cos``/``sin``), so
  ``theta' = theta + thdot' dt`` is smooth.
* The goal is the angle a point mass would be held at by torque ``tau``; under gym's
  rod dynamics above the state ``(goal, 0)`` is an equilibrium for the constant
  action ``u = tau / 2`` (``|u| <= 0.5`` over the whole range, inside the action
  bounds). Where ``|tau| >= m g l`` the goal saturates at ``-+pi/2`` with zero
  context derivative; the ``asin`` is evaluated on a safe branch there so that
  forward-mode derivatives stay finite (no ``0 * inf``).
* ``thdot'`` is clipped to gym's ``max_speed = 8``; the clip has zero derivative
  when active (over the context range ``|thdot'| <= |thdot| + 3.15``, so it is
  only reached after sustained acceleration).

State: ``(2,)`` array ``(theta, thdot)``; ``s0``: ``theta ~ U[-pi, pi]``,
``thdot ~ U[-1, 1]``. Observation ``(cos theta, sin theta, thdot)``; agent
observation ``(7,)`` with the context appended. Horizon 200, no termination.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from zsgjax.envs.base import ContextualEnv
from zsgjax.envs.context import ContextSpace

DT = 0.05
MAX_TORQUE = 2.0
MAX_SPEED = 8.0


def goal_angle(context: jax.Array) -> jax.Array:
    """``asin(clip(-tau / (m g l), -1, 1))`` for ``context = (g, m, l, tau)``: ``()``.

    Differentiable with finite derivatives everywhere: outside ``|x| < 1`` the
    value is ``sign(x) pi / 2`` with zero derivative.
    """
    g, m, l, tau = context[0], context[1], context[2], context[3]
    x = -tau / (m * g * l)
    inside = jnp.abs(x) < 1.0
    safe_x = jnp.where(inside, x, 0.0)
    return jnp.where(inside, jnp.arcsin(safe_x), jnp.sign(x) * (jnp.pi / 2))


class PendulumGoal(ContextualEnv):
    context_space = ContextSpace(
        ("g", "m", "l", "tau"),
        low=(0.5, 0.5, 0.5, -1.0),
        high=(5.0, 2.0, 2.0, 1.0),
        default=(2.0, 1.0, 1.0, 0.0),
    )
    horizon = 200
    state_obs_size = 3
    eval_contexts = {
        "(2,1,1,0)": (2.0, 1.0, 1.0, 0.0),
        "(2,1,1,0.75)": (2.0, 1.0, 1.0, 0.75),
        "(2,1.2,1,-0.75)": (2.0, 1.2, 1.0, -0.75),
    }

    @property
    def action_size(self) -> int:
        return 1

    def init_env_state(self, rng, context):
        """``(theta, thdot)`` with ``theta ~ U[-pi, pi]``, ``thdot ~ U[-1, 1]``: ``(2,)``."""
        high = jnp.array([jnp.pi, 1.0], dtype=context.dtype)
        return jax.random.uniform(rng, (2,), dtype=context.dtype, minval=-high, maxval=high)

    def observe(self, env_state, context):
        theta, thdot = env_state[0], env_state[1]
        return jnp.stack([jnp.cos(theta), jnp.sin(theta), thdot])

    def env_step(self, env_state, action, context):
        """``env_state (2,)``, ``action (1,)``, ``context (4,)`` -> ``(next_state (2,), obs (3,), r (), False)``."""
        g, m, l = context[0], context[1], context[2]
        theta, thdot = env_state[0], env_state[1]
        u = jnp.clip(action[0], -MAX_TORQUE, MAX_TORQUE)
        thdot_next = thdot + (3.0 * g / (2.0 * l) * jnp.sin(theta) + 3.0 * u / (m * l**2)) * DT
        thdot_next = jnp.clip(thdot_next, -MAX_SPEED, MAX_SPEED)
        theta_next = theta + thdot_next * DT
        goal = goal_angle(context)
        reward = -(jnp.pi**2 * jnp.sin((theta_next - goal) / 2.0) ** 2 + 0.1 * thdot_next**2 + 0.001 * u**2)
        next_state = jnp.stack([theta_next, thdot_next])
        return next_state, self.observe(next_state, context), reward, jnp.zeros((), dtype=bool)
