"""AntDirection and AntGoal: the MuJoCo ant walks in a direction / to a goal (CSE paper).

Both share the ant physics (brax's model, ``assets/ant.xml``: Newton solver, one
iteration, 4 line-search steps, Euler damping off, as brax's MJX backend; 5 steps
of 0.01 s per env step) and these reward terms, with ``p = qpos[:2]`` the torso's
horizontal position and ``dt = 0.05``:

* healthy reward 1 per step; the episode terminates when the torso height leaves
  ``[0.2, 1.0]``;
* control cost ``0.5 * |a|^2``.

AntDirection -- reward context ``direction_angle`` ``theta`` in ``[-pi, pi]``,
default 0: ``r = (cos theta, sin theta) . (p' - p) / dt + 1 - 0.5 |a|^2``.
Observation ``(27,)``: ``qpos[2:]`` and ``qvel``.

AntGoal -- reward context ``goal_angle`` ``theta`` in ``[-pi, pi]``, default 0; the
goal is ``g = 3 (cos theta, sin theta)`` and the reward is the progress toward it,
``r = (|p - g| - |p' - g|) / dt + 1 - 0.5 |a|^2``. Observation ``(29,)``: all of
``qpos`` (the position is needed to find the goal) and ``qvel``.

Horizon 1000. Physical context features follow the reward context.
"""

from __future__ import annotations

import abc
import math

import jax.numpy as jnp
import mujoco
import numpy as np

from zsgjax.envs.context import ContextSpace
from zsgjax.envs.mjx.base import MjxEnv, MjxState, load_model

CTRL_COST_WEIGHT = 0.5
HEALTHY_REWARD = 1.0
HEALTHY_Z_RANGE = (0.2, 1.0)
GOAL_RADIUS = 3.0


class _Ant(MjxEnv):
    """Ant physics, initial state, healthy reward and control cost shared by both tasks."""

    horizon = 1000
    n_frames = 5

    def load_mj_model(self) -> mujoco.MjModel:
        return load_model("ant.xml")

    def init_qpos(self) -> np.ndarray:
        # brax's standing pose (custom numeric 'init_qpos' of the model).
        return np.asarray(self.mj_model.numeric("init_qpos").data)

    @abc.abstractmethod
    def progress(self, state: MjxState, next_state: MjxState, reward_context):
        """Task term of the reward (``()``)."""

    def reward_and_termination(self, state, next_state, action, reward_context):
        z = next_state.qpos[2]
        healthy = (z >= HEALTHY_Z_RANGE[0]) & (z <= HEALTHY_Z_RANGE[1])
        ctrl_cost = CTRL_COST_WEIGHT * jnp.sum(action**2)
        reward = self.progress(state, next_state, reward_context) + HEALTHY_REWARD - ctrl_cost
        return reward, ~healthy


class AntDirection(_Ant):
    """Ant walking along the direction ``(cos theta, sin theta)``; see the module docstring."""

    reward_space = ContextSpace(("direction_angle",), low=(-math.pi,), high=(math.pi,), default=(0.0,))
    reward_eval_contexts = {
        f"angle={a:g}": (a,) for a in (0.0, 0.1, -0.1, 0.2, -0.2, 0.5, -0.5, 1.0, -1.0, math.pi)
    }

    def observe(self, env_state: MjxState, context=None):
        return jnp.concatenate([env_state.qpos[2:], env_state.qvel])

    def progress(self, state, next_state, reward_context):
        theta = reward_context[0]
        direction = jnp.stack([jnp.cos(theta), jnp.sin(theta)])
        return jnp.dot(direction, (next_state.qpos[:2] - state.qpos[:2]) / self.dt)


class AntGoal(_Ant):
    """Ant walking to the goal ``3 (cos theta, sin theta)``; see the module docstring."""

    reward_space = ContextSpace(("goal_angle",), low=(-math.pi,), high=(math.pi,), default=(0.0,))
    reward_eval_contexts = {f"angle={a:g}": (a,) for a in (0.0, 0.1, 0.2, 0.5, 1.0, math.pi)}

    def observe(self, env_state: MjxState, context=None):
        return jnp.concatenate([env_state.qpos, env_state.qvel])

    def goal(self, reward_context):
        theta = reward_context[0]
        return GOAL_RADIUS * jnp.stack([jnp.cos(theta), jnp.sin(theta)])

    def progress(self, state, next_state, reward_context):
        g = self.goal(reward_context)
        before = jnp.linalg.norm(state.qpos[:2] - g)
        after = jnp.linalg.norm(next_state.qpos[:2] - g)
        return (before - after) / self.dt
