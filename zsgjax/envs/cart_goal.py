"""CartGoal (CSE paper, DQN task): gym's cart-pole, driven to a context goal position.

Context ``c = (g, m_pole, m_cart, l, goal)`` (``l`` is the pole's *half*-length as
in gym); default (training) context ``(10, 0.1, 1, 0.5, 0)``, range
``low (1, 0.01, 0.25, 0.1, -4)``, ``high (12, 2, 2, 2, 4)`` (the paper's
``CartPoleGoalAnalytic.context_low/high``).

Dynamics: gym ``CartPole-v1``'s equations with explicit Euler, ``tau = 0.02``, as
the paper (``environments/ode_systems.py::make_cartpole_goal_eqns``, integrated by
``environments/ode_sympy.py`` with ``solver="euler"``); the action is an integer
scalar, ``0`` pushes with force ``F = -10`` and ``1`` with ``F = +10``::

    total  = m_pole + m_cart
    temp   = (F + m_pole l thetadot^2 sin(theta)) / total
    thacc  = (g sin(theta) - cos(theta) temp) / (l (4/3 - m_pole cos^2(theta) / total))
    xacc   = temp - m_pole l thacc cos(theta) / total
    x' = x + tau xdot,  xdot' = xdot + tau xacc,  theta' = theta + tau thetadot,
    thetadot' = thetadot + tau thacc

Reward on the **next** state: ``r = 1 + (1 - sqrt(1 + (x' - goal)^2))`` (``1`` at the
goal, ``1 - |x' - goal|`` asymptotically far from it). Terminated when
``|theta'| > 12 deg`` or ``|x'| > x_threshold``; the reward of the terminating step
is still returned (as in the paper).

``x_threshold`` (constructor keyword) is the track half-length: default ``2.4``, the
paper's and gym's. ``make("cart_goal", x_threshold=5.0)`` is the wider track zsgjax
used before: with 2.4, every goal with ``|goal| > 2.4`` (most of ``[-4, 4]``) cannot
be reached without ending the episode, and goals near the edge can only be
approached by risking termination; 5.0 puts every goal of the range at least one
unit inside the track. The paper's evaluation goals (0, +-0.5, +-1) lie well inside
either track.

State: ``(4,)`` array ``(x, xdot, theta, thetadot)``, ``s0 ~ U[-0.05, 0.05]^4``;
the observation is the state; agent observation ``(9,)`` with the context
appended. Horizon 500.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from zsgjax import checks
from zsgjax.envs.base import ContextualEnv
from zsgjax.envs.context import ContextSpace

TAU = 0.02
FORCE_MAG = 10.0
THETA_THRESHOLD = 12.0 * 2.0 * math.pi / 360.0
X_THRESHOLD = 2.4  # the paper's (and gym's) track half-length


class CartGoal(ContextualEnv):
    """Cart-pole with a goal position; ``make('cart_goal', x_threshold=5.0)`` for the wide track.

    Args:
      x_threshold: track half-length; ``|x'| > x_threshold`` terminates. Default
        ``2.4`` (the paper's and gym's).

    Raises:
      ValueError: ``x_threshold`` is not a finite number > 0.
    """

    context_space = ContextSpace(
        ("g", "m_pole", "m_cart", "l", "goal"),
        low=(1.0, 0.01, 0.25, 0.1, -4.0),
        high=(12.0, 2.0, 2.0, 2.0, 4.0),
        default=(10.0, 0.1, 1.0, 0.5, 0.0),
    )
    horizon = 500
    state_obs_size = 4
    discrete = True
    num_actions = 2
    eval_contexts = {
        f"goal={goal:g}": (10.0, 0.1, 1.0, 0.5, goal) for goal in (0.0, 0.5, -0.5, 1.0, -1.0)
    }

    def __init__(self, x_threshold: float = X_THRESHOLD):
        self.x_threshold = checks.real(x_threshold, "CartGoal: `x_threshold`", low=0.0, low_open=True)

    @property
    def action_size(self) -> int:
        return 2

    def init_env_state(self, rng, context):
        """``(x, xdot, theta, thetadot) ~ U[-0.05, 0.05]^4``: ``(4,)``."""
        return jax.random.uniform(rng, (4,), dtype=context.dtype, minval=-0.05, maxval=0.05)

    def observe(self, env_state, context):
        return env_state

    def env_step(self, env_state, action, context):
        """``env_state (4,)``, integer ``action ()`` in {0, 1}, ``context (5,)`` -> ``(s' (4,), s' (4,), r (), term ())``."""
        g, m_pole, m_cart, l, goal = (context[i] for i in range(5))
        x, xdot, theta, thetadot = (env_state[i] for i in range(4))
        force = jnp.where(jnp.reshape(action, ()).astype(jnp.int32) == 1, FORCE_MAG, -FORCE_MAG)
        total = m_pole + m_cart
        polemass_length = m_pole * l
        cos, sin = jnp.cos(theta), jnp.sin(theta)
        temp = (force + polemass_length * thetadot**2 * sin) / total
        thacc = (g * sin - cos * temp) / (l * (4.0 / 3.0 - m_pole * cos**2 / total))
        xacc = temp - polemass_length * thacc * cos / total
        next_state = jnp.stack([x + TAU * xdot, xdot + TAU * xacc, theta + TAU * thetadot, thetadot + TAU * thacc])
        x_next, theta_next = next_state[0], next_state[2]
        reward = 1.0 + (1.0 - jnp.sqrt(1.0 + (x_next - goal) ** 2))
        terminated = (jnp.abs(theta_next) > THETA_THRESHOLD) | (jnp.abs(x_next) > self.x_threshold)
        return next_state, next_state, reward, terminated
