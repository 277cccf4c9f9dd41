"""PendulumGoal (CSE paper): a pendulum held at a context-dependent goal angle.

Context ``c = (g, m, l, tau)``: gravity, pole mass, pole length and a "goal torque";
default (training) context ``(2, 1, 1, 0)``, range ``low (0.5, 0.5, 0.5, -1)``,
``high (5, 2, 2, 1)``. ``theta = 0`` is upright, ``dt = 0.05``, the action is
``a (1,)`` and ``u = clip(a, -2, 2)``.

Dynamics, ``integrator="paper"`` (the default; the paper's code,
``environments/ode_env.py::PendulumGoalAnalytic`` with its default ``solver="euler"``):
one **explicit** Euler step of the whole state, no speed clip::

    theta'  = theta + dt thdot
    thdot'  = thdot + dt (3 g / (2 l) sin(theta) + 3 u / (m l^2))

``integrator="gym"`` (``make("pendulum_goal", integrator="gym")``): gym
``Pendulum-v1``'s *semi-implicit* Euler step, the angle advanced with the new
speed, and gym's speed clip ``max_speed = 8``::

    thdot'  = clip(thdot + dt (3 g / (2 l) sin(theta) + 3 u / (m l^2)), -8, 8)
    theta'  = theta + dt thdot'

Goal and reward, both integrators (computed on the **next** state, as the paper
does, so ``d r/dc`` includes the path through ``s'``)::

    goal = asin(clip(-tau / (m g l), -1, 1))
    r    = -(pi^2 sin^2((theta' - goal) / 2) + 0.1 thdot'^2 + 0.001 u^2)

Modelling choices:

* ``pi^2 sin^2(d / 2)`` is the paper's reward term: a smooth, ``2 pi``-periodic
  stand-in for gym's ``angle_normalize(d)^2`` (both are 0 at the goal and
  ``pi^2`` opposite it), differentiable everywhere.
* ``theta`` is kept unwrapped in the state (the paper wraps it to ``[-pi, pi)``
  after each step). Observations (``cos``/``sin``), the reward (``2 pi``-periodic
  in ``theta'``) and the dynamics (through ``sin theta``) are the same either
  way, and the unwrapped ``theta' = theta + ...`` has no jump.
* The goal is the angle a point mass would be held at by torque ``tau``. The
  paper has no clip (``asin`` is NaN where ``|tau| > m g l``); here the goal
  saturates at ``-+pi/2`` with zero context derivative, and the ``asin`` is
  evaluated on a safe branch there so that forward-mode derivatives stay finite
  (no ``0 * inf``). At the default context and under the paper's LDR noise
  ``|tau| << m g l``, so the two agree there.
* Under ``integrator="gym"`` the state ``(goal, 0)`` is an equilibrium for the
  constant action ``u = tau / 2`` (``|u| <= 0.5`` over the whole range); under
  the explicit step it is an equilibrium too (``theta' = theta`` when
  ``thdot = 0``, and ``thdot' = 0`` for the same ``u``).
* Under ``integrator="gym"`` the clip has zero derivative when active (over the
  context range ``|thdot'| <= |thdot| + 3.15``, so it is only reached after
  sustained acceleration). The explicit step has no clip: it is smooth everywhere,
  and (like every explicit Euler step of an oscillator) it slowly adds energy.
* ``u = clip(a, -2, 2)``: the paper's action space is ``Box(-2, 2)`` (its SAC
  squashes into it); the clip has no effect on actions inside the bounds.

State: ``(2,)`` array ``(theta, thdot)``; ``s0``: ``theta ~ U[-pi, pi]``,
``thdot ~ U[-1, 1]`` (as the paper). Observation ``(cos theta, sin theta, thdot)``;
agent observation ``(7,)`` with the context appended. Horizon 200, no termination.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from zsgjax.envs.base import ContextualEnv
from zsgjax.envs.context import ContextSpace

DT = 0.05
MAX_TORQUE = 2.0
MAX_SPEED = 8.0  # gym's speed clip, used by integrator="gym" only
INTEGRATORS = ("paper", "gym")


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
    """Pendulum held at a goal angle; ``make('pendulum_goal', integrator='paper' | 'gym')``.

    Args:
      integrator: ``"paper"`` (default): the paper's explicit Euler step, no speed
        clip; ``"gym"``: gym ``Pendulum-v1``'s semi-implicit step with the speed
        clipped to 8. See the module docstring for the equations.

    Raises:
      ValueError: ``integrator`` is not one of ``"paper"``, ``"gym"``.
    """

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

    def __init__(self, integrator: str = "paper"):
        if integrator not in INTEGRATORS:
            raise ValueError(
                f"PendulumGoal: `integrator` must be one of {', '.join(repr(i) for i in INTEGRATORS)}, "
                f"got {integrator!r}"
            )
        self.integrator = integrator

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
        thacc = 3.0 * g / (2.0 * l) * jnp.sin(theta) + 3.0 * u / (m * l**2)
        if self.integrator == "paper":
            theta_next = theta + thdot * DT
            thdot_next = thdot + thacc * DT
        else:
            thdot_next = jnp.clip(thdot + thacc * DT, -MAX_SPEED, MAX_SPEED)
            theta_next = theta + thdot_next * DT
        goal = goal_angle(context)
        reward = -(jnp.pi**2 * jnp.sin((theta_next - goal) / 2.0) ** 2 + 0.1 * thdot_next**2 + 0.001 * u**2)
        next_state = jnp.stack([theta_next, thdot_next])
        return next_state, self.observe(next_state, context), reward, jnp.zeros((), dtype=bool)
