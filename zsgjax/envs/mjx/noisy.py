"""An MJX environment with noisy actuation: ``cheetah_velocity_noisy``.

:class:`CheetahVelocityNoisy` is :class:`~zsgjax.envs.mjx.cheetah.CheetahVelocity`
(same context, horizon, observation, reward and evaluation contexts; the physical
features of :mod:`zsgjax.envs.mjx.features` through ``physical=``) whose controls are
perturbed before the physics sees them, ``xi (action_size,)`` standard normal::

    step = cheetah_velocity's step with ctrl = a + noise_scale * xi

(then clipped to ``[-1, 1]`` as cheetah_velocity clips ``a``; its control cost is on
the control applied, as pendulum_goal_noisy's is). The noise's
scale is a constant in control units, but its effect on the next state depends on
the context where the context has physical features: with ``actuator_gain`` the
force noise is ``gain * noise_scale * xi``, with ``mass_scale`` the acceleration
noise shrinks as the masses grow. Context derivatives with ``xi`` held fixed
(:mod:`zsgjax.envs.stochastic`: the key lives in the env state) are the
reparameterised ones, so first-order CSE carries over. Since the noise's scale
itself does not depend on the context, CSE's ``noise_scale_gradient="ignore"``
ablation gives the same derivatives here.

``noise_scale`` (a finite number ``>= 0``; 0 gives cheetah_velocity's steps bit for
bit): default :data:`ACTUATION_NOISE_SCALE`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax

from zsgjax import checks
from zsgjax.envs.mjx.cheetah import CheetahVelocity
from zsgjax.envs.stochastic import StochasticEnv

ACTUATION_NOISE_SCALE = 0.1
"""Control-noise std: 10% of the control bound 1."""


class CheetahVelocityNoisy(StochasticEnv):
    """cheetah_velocity with control noise of std ``noise_scale``;
    ``make('cheetah_velocity_noisy', noise_scale=0.1, physical=(...))``. The other options
    are cheetah_velocity's (:class:`~zsgjax.envs.mjx.base.MjxEnv`).

    Raises:
      ValueError: ``noise_scale`` is not a finite number ``>= 0``, or an option that
        cheetah_velocity refuses.
    """

    def __init__(
        self,
        noise_scale: float = ACTUATION_NOISE_SCALE,
        physical: Sequence[str] = (),
        physical_ranges: Mapping[str, tuple[float, float]] | None = None,
        reset_noise_scale: float = 0.1,
        solver_tangent: str = "auto",
    ):
        self.noise_scale = checks.real(noise_scale, "CheetahVelocityNoisy: `noise_scale`", low=0.0)
        self.deterministic = CheetahVelocity(physical=physical, physical_ranges=physical_ranges,
                                             reset_noise_scale=reset_noise_scale, solver_tangent=solver_tangent)
        d = self.deterministic
        self.context_space, self.horizon, self.state_obs_size = d.context_space, d.horizon, d.state_obs_size
        self.eval_contexts = d.eval_contexts
        self.noise_shape = (d.action_size,)

    # cheetah_velocity's model and sizes (the trainers, the features' checks and the tools read them)
    @property
    def action_size(self) -> int:
        return self.deterministic.action_size

    @property
    def dt(self) -> float:
        return self.deterministic.dt

    @property
    def dtype(self):
        return self.deterministic.dtype

    @property
    def mj_model(self):
        return self.deterministic.mj_model

    @property
    def features(self):
        return self.deterministic.features

    def model_at(self, context: jax.Array):
        """cheetah_velocity's ``mjx.Model`` with the context's physical features written in."""
        return self.deterministic.model_at(context)

    def init_physics(self, rng, context):
        return self.deterministic.init_env_state(rng, context)

    def observe_physics(self, physics, context):
        return self.deterministic.observe(physics, context)

    def step_with_noise(self, physics, action, context, xi, noise_context):
        """cheetah_velocity's step with the control ``action + noise_scale * xi``."""
        return self.deterministic.env_step(physics, action + self.noise_scale * xi.astype(action.dtype), context)
