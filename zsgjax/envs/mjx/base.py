"""Shared machinery of the MuJoCo MJX contextual environments.

An :class:`MjxEnv` is a :class:`~zsgjax.envs.base.ContextualEnv` whose physics is
``mujoco.mjx``. Its context is ``concat(reward_context, physical_context)``:

* the *reward context* (target velocity; the ant's direction or goal, a 2-vector
  or an angle) comes first and only enters the reward;
* the *physical context* is the user's selection of :mod:`zsgjax.envs.mjx.features`
  (gravity, mass scales, friction, actuator gain, damping). :meth:`MjxEnv.model_at`
  writes it into a per-call copy of the ``mjx.Model`` (``model.replace(...)``);
  nothing context-dependent is closed over.

One environment step is ``n_frames`` MJX physics steps (``lax.scan``) of the
model's ``timestep``, so ``dt = n_frames * timestep`` (brax's convention: both
models use 5 steps of 0.01 s, ``dt = 0.05`` s). ``jax.jacfwd`` through
:meth:`~zsgjax.envs.base.ContextualEnv.transition` therefore differentiates every
physics sub-step, the constraint solver included (forward mode; reverse mode does
not go through MJX's solver ``while_loop``).

The environment state is the small :class:`MjxState` (``qpos``, ``qvel`` and the
solver warm start), not the full ``mjx.Data`` (thousands of derived numbers that
the next step recomputes anyway): the batched rollout keeps the state of every
step for exact CSE, and the full ``Data`` would multiply that memory by ~100.
:meth:`MjxEnv.to_data` rebuilds the full ``mjx.Data`` (kinematics, contacts) of
a state for inspection or rendering. A subclass may keep more of the step's
``Data`` by overriding :meth:`MjxEnv.state_from_data` with a larger state (the
ant keeps its external contact forces ``cfrc_ext``, which its reward and
observation use).

Precision: the ``mjx.Model`` is built at construction in the precision active
then; build the environment inside ``jax.enable_x64(True)`` for a float64 model.

Threads: importing this module gives XLA:CPU's intra-op pool at least 4 threads
(``NPROC=4``, unless set) on a machine with 2 or 3 usable cores, where the installed
jaxlib may otherwise deadlock on batched MJX steps (~1000 half-cheetahs, ~220 ants);
see :mod:`zsgjax.envs.mjx.cpu_pool`.
"""

from __future__ import annotations

import abc
from importlib import resources
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from flax import struct
from mujoco import mjx

from zsgjax.envs.base import ContextualEnv
from zsgjax.envs.context import ContextSpace
from zsgjax.envs.mjx import cpu_pool, implicit
from zsgjax.envs.mjx.features import PhysicalFeature, apply_features, check_physical_ranges, make_features

SOLVER_TANGENTS = ("auto", "implicit", "unrolled")

# Before any MJX computation starts the CPU backend: batched MJX steps must not deadlock.
cpu_pool.ensure_spare_threads()


@struct.dataclass
class MjxState:
    """The state an MJX environment step starts from.

    qpos:           ``(nq,)`` generalized positions
    qvel:           ``(nv,)`` generalized velocities
    qacc_warmstart: ``(nv,)`` the previous step's accelerations, the solver's warm start
    """

    qpos: jax.Array
    qvel: jax.Array
    qacc_warmstart: jax.Array


def load_model(xml_name: str) -> mujoco.MjModel:
    """Load a vendored MJCF model from ``zsgjax/envs/mjx/assets/`` (``xml_name`` e.g. ``"ant.xml"``)."""
    path = resources.files("zsgjax.envs.mjx") / "assets" / xml_name
    if not path.is_file():
        raise ValueError(f"no vendored MuJoCo model '{xml_name}' in zsgjax/envs/mjx/assets")
    with resources.as_file(path) as p:
        return mujoco.MjModel.from_xml_path(str(p))


class MjxEnv(ContextualEnv, abc.ABC):
    """Base class of the MJX environments (half-cheetah, ant).

    Subclasses set the attributes ``reward_space`` (the reward-context
    :class:`ContextSpace`), ``reward_eval_contexts`` (``{name: reward-context
    tuple}``), ``horizon`` and ``n_frames`` (on the class, or on the instance before
    calling ``MjxEnv.__init__`` when they depend on constructor options, as the
    ant's ``context=``), and implement :meth:`load_mj_model`, :meth:`observe` and
    :meth:`reward_and_termination`.

    Args:
      physical: names of the physical features in the context, in order (see
        :mod:`zsgjax.envs.mjx.features`; e.g. ``("gravity", "mass_scale:torso")``).
      physical_ranges: optional ``{feature name: (low, high)}`` overriding ranges. A range
        wider than the feature's default (:data:`~zsgjax.envs.mjx.features.FEATURE_RANGES`)
        is checked by simulation at construction (one compilation of short random-action
        rollouts at the corners of the physical ranges,
        :func:`~zsgjax.envs.mjx.features.check_physical_ranges`).
      reset_noise_scale: initial ``qpos`` noise ``U[-s, s]`` and ``qvel`` noise ``s N(0, 1)``.
      solver_tangent: how forward-mode derivatives (``jax.jvp``/``jacfwd``, CSE's
        context gradients) go through the constraint solver: ``"implicit"`` (the
        implicit-function-theorem tangent of the converged solution,
        :mod:`zsgjax.envs.mjx.implicit`; one linear solve instead of a tangent through
        every solver iteration), ``"unrolled"`` (MJX's own step, differentiated
        iteration by iteration) or ``"auto"`` (implicit where the model supports
        it: Euler, more than one solver iteration). The primal step is the same.

    Raises:
      ValueError: unknown feature or body names (the message lists the accepted
        ones), duplicate features, a range that excludes the nominal value, an
        unknown ``solver_tangent``, ``"implicit"`` for a model that does not support it, or
        a widened physical range at whose corners the simulation blows up (non-finite or
        larger than :data:`~zsgjax.envs.stability.STATE_LIMIT`).
    """

    reward_space: ContextSpace
    reward_eval_contexts: dict[str, tuple[float, ...]]
    n_frames: int = 5

    def __init__(
        self,
        physical: Sequence[str] = (),
        physical_ranges: Mapping[str, tuple[float, float]] | None = None,
        reset_noise_scale: float = 0.1,
        solver_tangent: str = "auto",
    ):
        if not reset_noise_scale >= 0:
            raise ValueError(f"`reset_noise_scale` must be >= 0, got {reset_noise_scale}")
        if solver_tangent not in SOLVER_TANGENTS:
            raise ValueError(f"`solver_tangent` must be one of {', '.join(SOLVER_TANGENTS)}; got {solver_tangent!r}")
        self.mj_model = self.load_mj_model()
        ok, why = implicit.supports(self.mj_model)
        if solver_tangent == "implicit" and not ok:
            raise ValueError(f"`solver_tangent='implicit'` is not supported by this model: {why}")
        self.solver_tangent = "implicit" if solver_tangent == "implicit" or (solver_tangent == "auto" and ok) else "unrolled"
        self.model: mjx.Model = mjx.put_model(self.mj_model)
        self._data_template: mjx.Data = mjx.make_data(self.model)
        self.features: tuple[PhysicalFeature, ...] = make_features(self.mj_model, physical, physical_ranges)
        self.reset_noise_scale = float(reset_noise_scale)
        rs = self.reward_space
        self.context_space = ContextSpace(
            rs.names + tuple(f.name for f in self.features),
            rs.low + tuple(f.low for f in self.features),
            rs.high + tuple(f.high for f in self.features),
            rs.default + tuple(f.default for f in self.features),
        )
        physical_default = tuple(f.default for f in self.features)
        self.eval_contexts = {k: tuple(v) + physical_default for k, v in self.reward_eval_contexts.items()}
        self.state_obs_size = int(self.observe(self._zero_state(), self.context_space.default_array).shape[-1])
        check_physical_ranges(self, first_dim=rs.dim)

    # ------------------------------------------------------------ to implement
    @abc.abstractmethod
    def load_mj_model(self) -> mujoco.MjModel:
        """The host ``MjModel`` at nominal physical parameters."""

    @abc.abstractmethod
    def reward_and_termination(
        self, state: MjxState, next_state: MjxState, action: jax.Array, reward_context: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """``(reward (), terminated () bool)`` of one step; ``action`` already clipped."""

    def init_qpos(self) -> np.ndarray:
        """Nominal initial ``qpos (nq,)`` (the model's ``qpos0`` unless overridden)."""
        return np.asarray(self.mj_model.qpos0)

    # ----------------------------------------------------------------- basics
    @property
    def action_size(self) -> int:
        return int(self.mj_model.nu)

    @property
    def dt(self) -> float:
        """Seconds per environment step: ``n_frames * timestep``."""
        return self.n_frames * float(self.mj_model.opt.timestep)

    @property
    def physical_context_dim(self) -> int:
        """Number of context dimensions that enter the physics (the physical features)."""
        return len(self.features)

    @property
    def num_reward_context(self) -> int:
        return self.reward_space.dim

    @property
    def dtype(self):
        return self.model.body_mass.dtype

    def split_context(self, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``context (dim,) -> (reward_context (k,), physical_context (dim - k,))`` in the model's dtype."""
        context = context.astype(self.dtype)
        k = self.num_reward_context
        return context[:k], context[k:]

    def model_at(self, context: jax.Array) -> mjx.Model:
        """A copy of the ``mjx.Model`` with the physical part of ``context (dim,)`` written in."""
        _, physical = self.split_context(context)
        return apply_features(self.model, self.features, physical)

    def _zero_state(self) -> MjxState:
        nq, nv = self.mj_model.nq, self.mj_model.nv
        return MjxState(
            qpos=jnp.zeros((nq,), self.dtype),
            qvel=jnp.zeros((nv,), self.dtype),
            qacc_warmstart=jnp.zeros((nv,), self.dtype),
        )

    # ---------------------------------------------------------------- physics
    def simulate(self, model: mjx.Model, state: MjxState, ctrl: jax.Array) -> mjx.Data:
        """``n_frames`` MJX steps of ``model`` from ``state`` with controls ``ctrl (nu,)``: the final ``mjx.Data``."""
        data = self._data_template.replace(
            qpos=state.qpos, qvel=state.qvel, qacc_warmstart=state.qacc_warmstart, ctrl=ctrl.astype(self.dtype)
        )

        step = implicit.step if self.solver_tangent == "implicit" else mjx.step

        def substep(d, _):
            return step(model, d), None

        data, _ = jax.lax.scan(substep, data, None, length=self.n_frames)
        return data

    def state_from_data(self, model: mjx.Model, data: mjx.Data) -> MjxState:
        """The environment state kept from the final ``mjx.Data`` of a step.

        ``(qpos, qvel, qacc_warmstart)``; a subclass that needs more of the step's
        ``Data`` (the ant's contact forces) overrides this with a larger state.
        """
        return MjxState(qpos=data.qpos, qvel=data.qvel, qacc_warmstart=data.qacc_warmstart)

    def physics_step(self, model: mjx.Model, state: MjxState, ctrl: jax.Array) -> MjxState:
        """``n_frames`` MJX steps of ``model`` from ``state`` with controls ``ctrl (nu,)``: the next state."""
        return self.state_from_data(model, self.simulate(model, state, ctrl))

    def to_data(self, state: MjxState, context: jax.Array) -> mjx.Data:
        """The full ``mjx.Data`` of ``state`` at ``context`` (``mjx.forward``: kinematics, contacts)."""
        data = self._data_template.replace(qpos=state.qpos, qvel=state.qvel, qacc_warmstart=state.qacc_warmstart)
        return mjx.forward(self.model_at(context), data)

    # ------------------------------------------------------ ContextualEnv API
    def init_env_state(self, rng: jax.Array, context: jax.Array) -> MjxState:
        """``init_qpos + U[-s, s]`` (quaternions renormalized), ``qvel = s N(0, I)``; the context does not enter."""
        k1, k2 = jax.random.split(rng)
        s = self.reset_noise_scale
        nq, nv = self.mj_model.nq, self.mj_model.nv
        qpos = jnp.asarray(self.init_qpos(), self.dtype) + jax.random.uniform(k1, (nq,), self.dtype, -s, s)
        qpos = self._normalize_quaternions(qpos)
        qvel = s * jax.random.normal(k2, (nv,), self.dtype)
        return MjxState(qpos=qpos, qvel=qvel, qacc_warmstart=jnp.zeros((nv,), self.dtype))

    def _normalize_quaternions(self, qpos: jax.Array) -> jax.Array:
        """Renormalize the quaternions of free and ball joints in ``qpos (nq,)``."""
        m = self.mj_model
        free, ball = int(mujoco.mjtJoint.mjJNT_FREE), int(mujoco.mjtJoint.mjJNT_BALL)
        for j in range(m.njnt):
            jtype = int(m.jnt_type[j])
            if jtype in (free, ball):
                a = int(m.jnt_qposadr[j]) + (3 if jtype == free else 0)
                q = qpos[a : a + 4]
                qpos = qpos.at[a : a + 4].set(q / jnp.linalg.norm(q))
        return qpos

    def env_step(self, env_state: MjxState, action: jax.Array, context: jax.Array):
        """One step: ``(next MjxState, next_state_obs (state_obs_size,), reward (), terminated ())``."""
        action = jnp.clip(action.astype(self.dtype), -1.0, 1.0)
        reward_context, _ = self.split_context(context)
        next_state = self.physics_step(self.model_at(context), env_state, action)
        reward, terminated = self.reward_and_termination(env_state, next_state, action, reward_context)
        return next_state, self.observe(next_state, context), reward, terminated
