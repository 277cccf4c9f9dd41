"""AntDirection and AntGoal: the MuJoCo ant walks in a direction / to a goal (CSE paper).

Physics (both tasks): brax's ant model (``assets/ant.xml``: Newton solver, one
iteration, 4 line-search steps, Euler damping off, as brax's MJX backend), 5
steps of 0.01 s per env step (``dt = 0.05``); actions ``a (8,)`` are clipped to
``[-1, 1]``. ``p = qpos[:2]`` is the torso's horizontal position before the step,
``p'`` after it; ``z' = qpos'[2]``; ``F'`` is MuJoCo's ``cfrc_ext`` ``(nbody, 6)``
(external contact forces on each body, ``mjx.rne_postconstraint`` on the step's
final ``Data``, as Gymnasium's ``mj_rnePostConstraint`` after ``mj_step``).

Constructor options (all keyword, reachable through ``zsgjax.envs.make``):

``context="vector"`` (default, the paper's) | ``"angle"``
  the reward context. AntDirection: the direction ``d = (dir_x, dir_y)``, default
  ``(1, 0)``, range ``[-1.5, 1.5]^2``; or ``direction_angle`` ``theta`` in
  ``[-pi, pi]``, default 0, ``d = (cos theta, sin theta)``. AntGoal: the goal
  ``g = (goal_x, goal_y)``, default ``(3, 0)``, range ``[-4, 4]^2``; or
  ``goal_angle`` ``theta``, ``g = 3 (cos theta, sin theta)``. Evaluation contexts
  (both forms) are the paper's points on the circle, named ``angle=<theta>``:
  ``theta in (0, +-0.1, +-0.2, +-0.5, +-1, pi)`` (direction, unit circle) and
  ``(0, 0.1, 0.2, 0.5, 1, pi)`` (goal, radius 3).

``reward="paper"`` (default) | ``"zsgjax"``
  paper (Gymnasium ``Ant-v5`` terms, ``ctrl = 0.5 |a|^2``,
  ``contact = 5e-4 sum(clip(F', -1, 1)^2)``,
  ``healthy' = all(isfinite(qpos', qvel')) and 0.2 <= z' <= 1``):

  * AntDirection: ``r = d . (p' - p) / dt + 1[healthy'] - ctrl - contact``,
    terminated when not ``healthy'``;
  * AntGoal: ``r = 1 - sqrt(1 + |p' - g|^2) - ctrl - contact`` (healthy reward 0),
    never terminated.

  zsgjax (the earlier zsgjax ant; ``healthy' = 0.2 <= z' <= 1``, terminated when not):

  * AntDirection: ``r = d . (p' - p) / dt + 1 - 0.5 |a|^2``;
  * AntGoal: ``r = (|p - g| - |p' - g|) / dt + 1 - 0.5 |a|^2``.

``include_cfrc_ext_in_observation=None`` (default: ``True`` for ``reward="paper"``,
``False`` for ``reward="zsgjax"``)
  whether the observation ends with ``clip(F'[1:], -1, 1)`` flattened (78 numbers,
  the world body left out, as ``Ant-v5``).

Observation: AntDirection ``qpos[2:]`` (13), ``qvel`` (14), [contact forces (78)]:
``(105,)`` or ``(27,)``; AntGoal ``qpos`` (15: the position is needed to find the
goal), ``qvel`` (14), [78]: ``(107,)`` or ``(29,)``. The initial state's contact
forces are zero (Gymnasium's ``reset`` does not compute them either).
``make("ant_goal", context="angle", reward="zsgjax")`` is exactly the earlier
zsgjax AntGoal (same for AntDirection).

Horizon 1000. Physical context features follow the reward context. See
the README section "The ants: the paper's defaults and the options" for what differs from the paper's
Gymnasium ant (the MuJoCo model, position read-out) and why.
"""

from __future__ import annotations

import abc
import math

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from flax import struct
from mujoco import mjx

from zsgjax.envs.context import ContextSpace
from zsgjax.envs.mjx.base import MjxEnv, MjxState, load_model

CTRL_COST_WEIGHT = 0.5
CONTACT_COST_WEIGHT = 5e-4
CONTACT_FORCE_RANGE = (-1.0, 1.0)
HEALTHY_REWARD = 1.0
HEALTHY_Z_RANGE = (0.2, 1.0)
GOAL_RADIUS = 3.0
CONTEXTS = ("vector", "angle")
REWARDS = ("paper", "zsgjax")


@struct.dataclass
class AntState(MjxState):
    """:class:`MjxState` plus the step's external contact forces.

    cfrc_ext: ``(nbody, 6)`` raw ``cfrc_ext`` (rotation then translation, per body,
      MuJoCo's convention) after the step that produced this state; zeros at reset.
    """

    cfrc_ext: jax.Array


def contact_forces(model: mjx.Model, data: mjx.Data) -> jax.Array:
    """``cfrc_ext (nbody, 6)`` of ``data`` (``mjx.rne_postconstraint``)."""
    data = mjx.rne_postconstraint(model, data)
    impl = getattr(data, "_impl", None)  # mujoco-mjx >= 3.3 keeps backend fields under ``_impl``
    return (data if impl is None else impl).cfrc_ext


def _choice(value, accepted, what, cls):
    if value not in accepted:
        raise ValueError(
            f"{cls}: `{what}` must be one of {', '.join(repr(a) for a in accepted)}, got {value!r}"
        )
    return value


class _Ant(MjxEnv):
    """Ant physics, initial state, options and reward terms shared by both tasks.

    Subclasses set ``vector_space`` / ``angle_space`` (the reward-context spaces of
    ``context="vector"`` / ``"angle"``), ``eval_angles`` and ``circle_radius``, and
    implement :meth:`observe`, :meth:`task_reward` and ``reward_and_termination``.
    Options: see the module docstring; they are stored as ``context_kind``,
    ``reward_kind`` and ``include_cfrc_ext_in_observation``.
    """

    horizon = 1000
    n_frames = 5
    vector_space: ContextSpace
    angle_space: ContextSpace
    eval_angles: tuple[float, ...]
    circle_radius: float = 1.0  # radius of the evaluation circle (the goal's radius)

    def __init__(
        self,
        physical=(),
        physical_ranges=None,
        reset_noise_scale: float = 0.1,
        *,
        context: str = "vector",
        reward: str = "paper",
        include_cfrc_ext_in_observation: bool | None = None,
        solver_tangent: str = "auto",
    ):
        name = type(self).__name__
        self.context_kind = _choice(context, CONTEXTS, "context", name)
        self.reward_kind = _choice(reward, REWARDS, "reward", name)
        if include_cfrc_ext_in_observation is None:
            include_cfrc_ext_in_observation = reward == "paper"
        if not isinstance(include_cfrc_ext_in_observation, (bool, np.bool_)):
            raise ValueError(
                f"{name}: `include_cfrc_ext_in_observation` must be True, False or None, "
                f"got {include_cfrc_ext_in_observation!r}"
            )
        self.include_cfrc_ext_in_observation = bool(include_cfrc_ext_in_observation)
        # The contact forces are kept in the state only when the reward or the observation uses them.
        self.keeps_contact_forces = self.reward_kind == "paper" or self.include_cfrc_ext_in_observation
        self.reward_space = self.vector_space if context == "vector" else self.angle_space
        self.reward_eval_contexts = {f"angle={a:g}": self.context_at_angle(a) for a in self.eval_angles}
        super().__init__(physical, physical_ranges, reset_noise_scale, solver_tangent=solver_tangent)

    # ------------------------------------------------------------ physics
    def load_mj_model(self) -> mujoco.MjModel:
        return load_model("ant.xml")

    def init_qpos(self) -> np.ndarray:
        # brax's standing pose (custom numeric 'init_qpos' of the model).
        return np.asarray(self.mj_model.numeric("init_qpos").data)

    def _with_contact_forces(self, state: MjxState, cfrc_ext: jax.Array) -> MjxState:
        if not self.keeps_contact_forces:
            return state
        return AntState(qpos=state.qpos, qvel=state.qvel, qacc_warmstart=state.qacc_warmstart, cfrc_ext=cfrc_ext)

    def _zero_contact_forces(self) -> jax.Array:
        return jnp.zeros((self.mj_model.nbody, 6), self.dtype)

    def _zero_state(self) -> MjxState:
        return self._with_contact_forces(super()._zero_state(), self._zero_contact_forces())

    def init_env_state(self, rng, context):
        """The base class's noisy standing pose; contact forces zero (``AntState`` when kept)."""
        return self._with_contact_forces(super().init_env_state(rng, context), self._zero_contact_forces())

    def state_from_data(self, model, data):
        state = super().state_from_data(model, data)
        if not self.keeps_contact_forces:
            return state
        return self._with_contact_forces(state, contact_forces(model, data))

    # ------------------------------------------------------------ contexts
    def context_at_angle(self, theta: float) -> tuple[float, ...]:
        """The reward context (in this env's parametrization) of the point at angle ``theta``."""
        if self.context_kind == "angle":
            return (float(theta),)
        radius = self.circle_radius
        return (radius * math.cos(theta), radius * math.sin(theta))

    def target(self, reward_context: jax.Array) -> jax.Array:
        """The task's 2-vector (direction or goal) from the reward context: ``(2,)``."""
        if self.context_kind == "vector":
            return reward_context[:2]
        theta = reward_context[0]
        return self.circle_radius * jnp.stack([jnp.cos(theta), jnp.sin(theta)])

    # --------------------------------------------------------- observation
    def contact_obs(self, env_state) -> jax.Array:
        """``clip(cfrc_ext[1:], -1, 1)`` flattened: ``(6 (nbody - 1),)``."""
        return jnp.clip(env_state.cfrc_ext[1:], *CONTACT_FORCE_RANGE).reshape(-1)

    def _observe(self, position: jax.Array, env_state) -> jax.Array:
        parts = [position, env_state.qvel]
        if self.include_cfrc_ext_in_observation:
            parts.append(self.contact_obs(env_state))
        return jnp.concatenate(parts)

    # -------------------------------------------------------------- reward
    @abc.abstractmethod
    def task_reward(self, state: MjxState, next_state: MjxState, target: jax.Array) -> jax.Array:
        """Task term of the reward (``()``), for the env's ``reward`` option."""

    def healthy(self, next_state: MjxState) -> jax.Array:
        """``()`` bool. paper: finite ``qpos'``, ``qvel'`` and ``0.2 <= z' <= 1``; zsgjax: the height test only."""
        z = next_state.qpos[2]
        ok = (z >= HEALTHY_Z_RANGE[0]) & (z <= HEALTHY_Z_RANGE[1])
        if self.reward_kind == "paper":
            ok = ok & jnp.all(jnp.isfinite(next_state.qpos)) & jnp.all(jnp.isfinite(next_state.qvel))
        return ok

    def contact_cost(self, next_state) -> jax.Array:
        """``5e-4 sum(clip(cfrc_ext', -1, 1)^2)``: ``()``."""
        return CONTACT_COST_WEIGHT * jnp.sum(jnp.clip(next_state.cfrc_ext, *CONTACT_FORCE_RANGE) ** 2)


class AntDirection(_Ant):
    """Ant walking along a direction ``d``; see the module docstring.

    ``make('ant_direction', context='vector' | 'angle', reward='paper' | 'zsgjax',
    include_cfrc_ext_in_observation=None | bool, physical=..., physical_ranges=...,
    reset_noise_scale=0.1)``.
    """

    vector_space = ContextSpace(("dir_x", "dir_y"), low=(-1.5, -1.5), high=(1.5, 1.5), default=(1.0, 0.0))
    angle_space = ContextSpace(("direction_angle",), low=(-math.pi,), high=(math.pi,), default=(0.0,))
    eval_angles = (0.0, 0.1, -0.1, 0.2, -0.2, 0.5, -0.5, 1.0, -1.0, math.pi)
    circle_radius = 1.0

    def observe(self, env_state, context=None):
        return self._observe(env_state.qpos[2:], env_state)

    def task_reward(self, state, next_state, target):
        return jnp.dot(target, (next_state.qpos[:2] - state.qpos[:2]) / self.dt)

    def reward_and_termination(self, state, next_state, action, reward_context):
        d = self.target(reward_context)
        healthy = self.healthy(next_state)
        ctrl_cost = CTRL_COST_WEIGHT * jnp.sum(action**2)
        if self.reward_kind == "paper":
            reward = (
                self.task_reward(state, next_state, d)
                + HEALTHY_REWARD * healthy.astype(ctrl_cost.dtype)
                - ctrl_cost
                - self.contact_cost(next_state)
            )
        else:
            reward = self.task_reward(state, next_state, d) + HEALTHY_REWARD - ctrl_cost
        return reward, ~healthy


class AntGoal(_Ant):
    """Ant walking to a goal ``g``; see the module docstring.

    ``make('ant_goal', context='vector' | 'angle', reward='paper' | 'zsgjax',
    include_cfrc_ext_in_observation=None | bool, physical=..., physical_ranges=...,
    reset_noise_scale=0.1)``.
    """

    vector_space = ContextSpace(("goal_x", "goal_y"), low=(-4.0, -4.0), high=(4.0, 4.0), default=(GOAL_RADIUS, 0.0))
    angle_space = ContextSpace(("goal_angle",), low=(-math.pi,), high=(math.pi,), default=(0.0,))
    eval_angles = (0.0, 0.1, 0.2, 0.5, 1.0, math.pi)
    circle_radius = GOAL_RADIUS

    def observe(self, env_state, context=None):
        return self._observe(env_state.qpos, env_state)

    def goal(self, reward_context):
        """The goal ``g (2,)`` of the reward context."""
        return self.target(reward_context)

    def task_reward(self, state, next_state, target):
        if self.reward_kind == "paper":
            return 1.0 - jnp.sqrt(1.0 + jnp.sum((next_state.qpos[:2] - target) ** 2))
        before = jnp.linalg.norm(state.qpos[:2] - target)
        after = jnp.linalg.norm(next_state.qpos[:2] - target)
        return (before - after) / self.dt

    def reward_and_termination(self, state, next_state, action, reward_context):
        g = self.target(reward_context)
        ctrl_cost = CTRL_COST_WEIGHT * jnp.sum(action**2)
        if self.reward_kind == "paper":
            reward = self.task_reward(state, next_state, g) - ctrl_cost - self.contact_cost(next_state)
            return reward, jnp.zeros((), bool)
        reward = self.task_reward(state, next_state, g) + HEALTHY_REWARD - ctrl_cost
        return reward, ~self.healthy(next_state)
