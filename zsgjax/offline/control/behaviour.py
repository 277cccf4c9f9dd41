"""Behaviour policies for offline data collection, with D4RL-style quality presets.

A :class:`Behaviour` acts in every step of every episode as follows. At the start of
each episode it draws, independently per episode, whether the episode follows the
*policy* (probability ``policy_prob``) or is *uniform random*:

* policy episodes: ``a = clip(policy_fn(params, obs, rng) + action_scale * noise_std * N(0, I),
  -action_scale, action_scale)`` (Gaussian action noise, in units of the action range);
* random episodes: ``a ~ U[-action_scale, action_scale]^action_size``.

``policy_fn(params, obs, rng) -> action`` is a pure function of one agent observation
``obs (observation_size,)`` = ``concat(state_obs, context)`` (what a zsgjax agent sees)
returning ``(action_size,)``; it is traced once inside the collection program.
:func:`sac_policy` makes one from a zsgjax SAC agent (its deterministic ``tanh(mean)``
action) and :func:`load_sac_policy` restores its parameters from a training run's
checkpoint.

Quality levels (:data:`QUALITY_LEVELS`, :func:`quality_preset`), after D4RL
(Fu et al. 2020):

* ``random``: uniform random actions.
* ``expert``: a trained policy with noise 0.1.
* ``medium``: a policy with noise 0.3; D4RL's "medium" is a partially trained policy
  (about a third of the expert's return): pass such a checkpoint's parameters.
* ``mixed``: each episode is an ``expert`` episode with probability 0.5, else random
  (the quality spread of D4RL's mixed datasets, drawn per episode).

The action range ``action_scale`` defaults to the environment's (the ``action_scale``
of its training preset, :mod:`zsgjax.presets`: 2 for ``pendulum_goal``, else SAC's
default 1), so a SAC trained with the presets and this behaviour agree.
"""

from __future__ import annotations

import dataclasses
import os
from types import MappingProxyType
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from zsgjax import checks
from zsgjax.configs import default_of, param, validate

PolicyFn = Callable[[Any, jax.Array, jax.Array], jax.Array]
"""``policy_fn(params, obs (observation_size,), rng) -> action (action_size,)``."""

QUALITY_LEVELS: Mapping[str, Mapping[str, float]] = MappingProxyType({
    "random": MappingProxyType(dict(noise_std=0.0, policy_prob=0.0)),
    "medium": MappingProxyType(dict(noise_std=0.3, policy_prob=1.0)),
    "expert": MappingProxyType(dict(noise_std=0.1, policy_prob=1.0)),
    "mixed": MappingProxyType(dict(noise_std=0.1, policy_prob=0.5)),
})
"""The D4RL-style presets: Gaussian noise (in units of the action range) and the
per-episode probability of following the policy (the rest are random episodes)."""


def env_action_scale(env_name: str) -> float:
    """The action range ``s`` (actions in ``[-s, s]``) of a registered environment:
    its preset's ``action_scale``, else :class:`~zsgjax.agents.sac.SACConfig`'s default."""
    from zsgjax.agents.sac import SACConfig
    from zsgjax.presets import env_preset

    return float(env_preset(env_name).get("action_scale", default_of(SACConfig, "action_scale")))


@dataclasses.dataclass(frozen=True, eq=False)
class Behaviour:
    """A behaviour policy (see the module docstring for how it acts).

    Args:
      policy_fn: ``(params, obs, rng) -> action``, or ``None`` for uniform random actions.
      params: the pytree ``policy_fn`` gets (traced: new values do not recompile).
      noise_std: Gaussian action noise in units of ``action_scale`` (``>= 0``).
      policy_prob: per-episode probability of following the policy, in ``[0, 1]``
        (ignored without ``policy_fn``).
      action_scale: actions lie in ``[-action_scale, action_scale]`` (``> 0``); ``None``:
        the environment's (:func:`env_action_scale`).
      label: a name stored with the data (``"random"``, ``"expert"``, ...).
      source: free text stored with the data (e.g. the checkpoint it came from).
    """

    policy_fn: PolicyFn | None = None
    params: Any = None
    noise_std: float = param(0.0, low=0.0)
    policy_prob: float = param(1.0, low=0.0, high=1.0)
    action_scale: float | None = param(None, kind=float, low=0.0, low_open=True)
    label: str = param("custom", kind=str)
    source: str = param("", kind=str)

    def validate(self) -> "Behaviour":
        """``ValueError`` naming the first bad field and its accepted range; returns ``self``."""
        if self.policy_fn is not None and not callable(self.policy_fn):
            raise ValueError(f"Behaviour.policy_fn must be a callable (params, obs, rng) -> action or None, "
                             f"got {self.policy_fn!r}")
        return validate(self)

    @property
    def follows_policy(self) -> bool:
        """True when some episodes follow ``policy_fn`` (it is given and ``policy_prob > 0``)."""
        return self.policy_fn is not None and self.policy_prob > 0.0

    @property
    def kind(self) -> str:
        """``"random"``, ``"policy"`` (every episode) or ``"mixture"``."""
        if not self.follows_policy:
            return "random"
        return "policy" if self.policy_prob >= 1.0 else "mixture"

    def scale_for(self, env_name: str) -> float:
        """``action_scale``, or the environment's when it is ``None``."""
        return env_action_scale(env_name) if self.action_scale is None else float(self.action_scale)

    def describe(self, env_name: str) -> dict[str, Any]:
        """The JSON description stored with the data."""
        follows = self.follows_policy
        return {"kind": self.kind, "label": self.label, "noise_std": float(self.noise_std) if follows else 0.0,
                "policy_prob": float(self.policy_prob) if follows else 0.0,
                "action_scale": self.scale_for(env_name), "source": self.source}

    def actions(self, params: Any, obs: jax.Array, follow: jax.Array, rng: jax.Array, scale: float) -> jax.Array:
        """Actions ``(B, action_size)`` for agent observations ``obs (B, observation_size)``.

        ``follow (B,)`` bool: the row's episode follows the policy (noisy, clipped),
        else its action is uniform random; ``scale`` is the action range. Pure;
        needs ``policy_fn`` (a random behaviour uses :meth:`random_actions` alone).
        """
        k_pol, k_noise, k_rand = jax.random.split(rng, 3)
        batch = obs.shape[0]
        pol = jax.vmap(self.policy_fn, in_axes=(None, 0, 0))(params, obs, jax.random.split(k_pol, batch))
        pol = pol.astype(jnp.float32)
        pol = pol + scale * self.noise_std * jax.random.normal(k_noise, pol.shape, pol.dtype)
        pol = jnp.clip(pol, -scale, scale)
        rand = self.random_actions(k_rand, pol.shape, scale)
        return jnp.where(follow[:, None], pol, rand)

    @staticmethod
    def random_actions(rng: jax.Array, shape: tuple[int, ...], scale: float) -> jax.Array:
        """Uniform actions in ``[-scale, scale]`` of ``shape``, float32."""
        return jax.random.uniform(rng, shape, jnp.float32, minval=-scale, maxval=scale)


def quality_preset(level: str, policy_fn: PolicyFn | None = None, params: Any = None,
                   action_scale: float | None = None, source: str = "") -> Behaviour:
    """The :class:`Behaviour` of a D4RL-style quality level (:data:`QUALITY_LEVELS`).

    ``"random"`` needs no policy (one given is not used); ``"medium"``, ``"expert"``
    and ``"mixed"`` need ``policy_fn`` (and its ``params``). ``ValueError`` for an
    unknown level or a missing policy.
    """
    if level not in QUALITY_LEVELS:
        raise ValueError(f"quality_preset: `level` must be one of {', '.join(QUALITY_LEVELS)}, got {level!r}")
    if level == "random":
        return Behaviour(action_scale=action_scale, label="random", source=source).validate()
    if policy_fn is None:
        raise ValueError(f"quality_preset: level {level!r} follows a policy: give `policy_fn` (and its `params`)")
    return Behaviour(policy_fn=policy_fn, params=params, action_scale=action_scale, label=level, source=source,
                     **QUALITY_LEVELS[level]).validate()


@dataclasses.dataclass(frozen=True)
class AgentPolicy:
    """``policy_fn`` of a zsgjax agent: ``agent.act(params, obs)`` (deterministic; ``rng`` unused).

    Hashable and equal for equal agents, so collections with the same agent share
    their compiled program.
    """

    agent: Any

    def __call__(self, params: Any, obs: jax.Array, rng: jax.Array) -> jax.Array:
        del rng
        return self.agent.act(params, obs)


def sac_policy(agent: Any) -> AgentPolicy:
    """The deterministic policy of a zsgjax SAC agent (a ``SAC`` or a ``Trainer`` holding one)."""
    from zsgjax.agents.sac import SAC

    inner = getattr(agent, "agent", agent)
    if not isinstance(inner, SAC):
        raise ValueError(f"sac_policy: `agent` must be a zsgjax SAC agent or a Trainer of one, "
                         f"got {type(agent).__name__}")
    return AgentPolicy(inner)


def load_sac_policy(directory: str | os.PathLike, config: Any, num_seeds: int, seed: int = 0,
                    step: int | None = None) -> tuple[AgentPolicy, Any]:
    """``(policy_fn, params)`` of seed ``seed`` of a run trained by :func:`zsgjax.runner.train`.

    Args:
      directory: the label's run directory (its checkpoints are in ``directory/checkpoints``).
      config: the run's :class:`~zsgjax.train.TrainConfig`.
      num_seeds: the number of seeds the run trained (part of the checkpoint record).
      seed: which seed's policy, in ``[0, num_seeds)``.
      step: the checkpoint (default: the latest).
    Raises:
      ValueError: no checkpoint, one written for another config or number of seeds,
        a corrupt one, a non-SAC agent, or ``seed`` out of range.
    """
    from zsgjax.checkpoint import Checkpointer
    from zsgjax.runner import checkpoint_config, seed_keys
    from zsgjax.train import make_train

    num_seeds = checks.integer(num_seeds, "load_sac_policy: `num_seeds`", low=1)
    seed = checks.integer(seed, "load_sac_policy: `seed`", low=0, high=num_seeds - 1)
    trainer = make_train(config)
    policy_fn = sac_policy(trainer)
    # the restore target needs only structure, shapes and dtypes: no need to run (or compile) init
    like = jax.eval_shape(jax.vmap(trainer.init), seed_keys(trainer, num_seeds))
    with Checkpointer(os.path.join(os.fspath(directory), "checkpoints"), checkpoint_config(trainer, num_seeds)) as ckpt:
        state = ckpt.restore(like, step)
    params = trainer.policy_params(jax.tree.map(lambda x: x[seed], state))
    return policy_fn, params
