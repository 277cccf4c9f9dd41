"""CheetahVelocity: the MuJoCo half-cheetah runs at a target velocity (CSE paper).

Reward context: ``target_velocity`` ``c``, default 2.0, range ``[-3, 3]``.
With ``v = (x' - x) / dt`` the forward velocity of the torso over one step,

    r = 1 - sqrt(1 + (v - c)^2) - 0.1 * |a|^2

(a pseudo-Huber tracking term and brax's control cost). No termination; horizon
1000. Observation ``(17,)``: ``qpos[1:]`` (the x position is left out) and ``qvel``.
Physics: brax's half-cheetah model (``assets/half_cheetah.xml``), total mass 14,
Newton solver (4 iterations, 8 line-search steps), 5 steps of 0.01 s per env step.
Physical context features are appended after ``target_velocity`` (see
:mod:`zsgjax.envs.mjx.features`).
"""

from __future__ import annotations

import jax.numpy as jnp
import mujoco

from zsgjax.envs.context import ContextSpace
from zsgjax.envs.mjx.base import MjxEnv, MjxState, load_model

CTRL_COST_WEIGHT = 0.1
TOTAL_MASS = 14.0


class CheetahVelocity(MjxEnv):
    """Half-cheetah tracking a target forward velocity; see the module docstring."""

    reward_space = ContextSpace(("target_velocity",), low=(-3.0,), high=(3.0,), default=(2.0,))
    reward_eval_contexts = {f"v={v:g}": (v,) for v in (-1.0, 0.75, 1.25, 1.75, 2.0, 2.25, 2.75)}
    horizon = 1000
    n_frames = 5

    def load_mj_model(self) -> mujoco.MjModel:
        m = load_model("half_cheetah.xml")
        # brax's XML had compiler settotalmass="14" (deprecated): same model, set here.
        mujoco.mj_setTotalmass(m, TOTAL_MASS)
        mujoco.mj_setConst(m, mujoco.MjData(m))
        return m

    def observe(self, env_state: MjxState, context=None):
        return jnp.concatenate([env_state.qpos[1:], env_state.qvel])

    def reward_and_termination(self, state, next_state, action, reward_context):
        v = (next_state.qpos[0] - state.qpos[0]) / self.dt
        target = reward_context[0]
        reward = 1.0 - jnp.sqrt(1.0 + (v - target) ** 2) - CTRL_COST_WEIGHT * jnp.sum(action**2)
        return reward, jnp.zeros((), bool)
