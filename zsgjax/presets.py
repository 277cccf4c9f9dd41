"""Per-environment hyper-parameter presets: what a ``None`` field of ``TrainConfig`` becomes.

Resolution of a ``TrainConfig`` field left at ``None`` (:meth:`TrainConfig.resolve`):
the environment's row below if it names the field, else the field's base value,
which is stated once: for an agent hyper-parameter the default of the agent's own
config (:class:`~zsgjax.agents.sac.SACConfig` for continuous actions,
:class:`~zsgjax.agents.dqn.DQNConfig` for discrete), for a loop setting the
``base`` of its field in ``TrainConfig``.

The rows hold the CSE paper's settings where the paper states them (learning
rates actor/critic/alpha and gamma); ``learning_starts``, ``init_alpha``,
``action_scale`` and the DQN row are zsgjax's choices.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

ENV_PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "simple_direction": MappingProxyType(dict(gamma=0.9, actor_lr=1e-3, critic_lr=2e-3, alpha_lr=4e-4,
                                              learning_starts=500, init_alpha=0.1)),
    "pendulum_goal": MappingProxyType(dict(actor_lr=2e-4, critic_lr=8e-4, alpha_lr=9e-4, action_scale=2.0)),
    "cheetah_velocity": MappingProxyType(dict(actor_lr=2e-4, critic_lr=8e-4, alpha_lr=9e-4, learning_starts=10_000)),
    "ant_direction": MappingProxyType(dict(actor_lr=3e-5, critic_lr=3e-4, alpha_lr=1e-4, learning_starts=10_000)),
    "ant_goal": MappingProxyType(dict(actor_lr=3e-5, critic_lr=3e-4, alpha_lr=1e-4, learning_starts=10_000)),
    "cart_goal": MappingProxyType(dict(dqn_lr=5e-4, target_update_period=250, epsilon_decay_steps=20_000)),
})


def env_preset(env: str) -> Mapping[str, Any]:
    """The preset row of environment ``env`` (empty for an environment without one)."""
    return ENV_PRESETS.get(env, MappingProxyType({}))
