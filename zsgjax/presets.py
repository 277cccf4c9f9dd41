"""Per-environment hyper-parameter presets: what a ``None`` field of ``TrainConfig`` becomes.

Resolution of a ``TrainConfig`` field left at ``None`` (:meth:`TrainConfig.resolve`):
the environment's row below if it names the field, else the field's base value,
which is stated once: for an agent hyper-parameter the default of the agent's own
config (:class:`~zsgjax.agents.sac.SACConfig` for continuous actions,
:class:`~zsgjax.agents.dqn.DQNConfig` for discrete), for a loop setting the
``base`` of its field in ``TrainConfig``.

The rows are the CSE paper's settings, read from its code
(chapman20j/ZeroShotGeneralization-CMDPs: ``utils/train_kwargs.py`` and the RLlib
defaults it vendors in ``utils/rllib_sac.py`` / ``utils/rllib_dqn.py``): 8 parallel
environments, one gradient update per batched step, SAC 256x256 with batch 256 and
tau 0.005, prioritized replay everywhere (RLlib's ``PrioritizedEpisodeReplayBuffer``).
Where zsgjax differs:

* DQN ``target_update_period`` counts gradient updates; the paper's "every 500
  sampled env steps" at one update per 8-env step is 62 updates.
* ``action_scale`` 2 for pendulum_goal is the environment's torque range.
* The stochastic variants ``pendulum_goal_noisy``, ``simple_direction_noisy`` and
  ``cheetah_velocity_noisy`` share their deterministic task's row.
* RLlib's SAC ``initial_alpha`` 1.001 is written 1.0.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

_PER = dict(prioritized_replay=True, priority_exponent=0.6, importance_exponent=0.4)

# get_simple_dir_config + RLlib SAC defaults (init alpha 1.0, PER 0.6/0.4, 1e6 buffer)
_SIMPLE_DIRECTION = MappingProxyType(dict(gamma=0.9, actor_lr=1e-3, critic_lr=2e-3, alpha_lr=4e-4, init_alpha=1.0,
                                          learning_starts=256, buffer_size=1_000_000, **_PER))
# get_pendulum_config: fully prioritized (alpha 1, beta 0), 100k buffer
_PENDULUM_GOAL = MappingProxyType(dict(actor_lr=2e-4, critic_lr=8e-4, alpha_lr=9e-4, init_alpha=1.0,
                                       learning_starts=256, buffer_size=100_000, action_scale=2.0,
                                       prioritized_replay=True, priority_exponent=1.0, importance_exponent=0.0))

# get_cheetah_config
_CHEETAH_VELOCITY = MappingProxyType(dict(actor_lr=2e-4, critic_lr=8e-4, alpha_lr=9e-4, init_alpha=1.0,
                                          learning_starts=10_000, buffer_size=100_000, **_PER))

ENV_PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "simple_direction": _SIMPLE_DIRECTION,
    "pendulum_goal": _PENDULUM_GOAL,
    # the stochastic variants (zsgjax.envs.noisy) train with their deterministic task's settings
    "simple_direction_noisy": _SIMPLE_DIRECTION,
    "pendulum_goal_noisy": _PENDULUM_GOAL,
    # zsgjax's context-dimension families (no paper settings): simple_direction's SAC for the direction task;
    # the linear-quadratic one acts in [-2, 2] (its action clip) and looks 20 steps ahead
    "context_dim_direction": _SIMPLE_DIRECTION,
    "context_dim_lq": MappingProxyType({**_SIMPLE_DIRECTION, "gamma": 0.95, "action_scale": 2.0}),
    "cheetah_velocity": _CHEETAH_VELOCITY,
    "cheetah_velocity_noisy": _CHEETAH_VELOCITY,
    # get_ant_dir_config / get_ant_goal_config (ant_goal starts at alpha 0.01)
    "ant_direction": MappingProxyType(dict(actor_lr=3e-5, critic_lr=3e-4, alpha_lr=1e-4, init_alpha=1.0,
                                           learning_starts=256, buffer_size=1_000_000, **_PER)),
    "ant_goal": MappingProxyType(dict(actor_lr=3e-5, critic_lr=3e-4, alpha_lr=1e-4, init_alpha=0.01,
                                      learning_starts=256, buffer_size=1_000_000, **_PER)),
    # get_cartpole_config + RLlib DQN defaults (learning starts 1000, grad clip 40, target every 500 env steps);
    # get_model_config's network: a shared 256-unit tanh layer, dueling heads of one 256-unit ReLU layer each
    "cart_goal": MappingProxyType(dict(hidden_sizes=(256,), dqn_activation="tanh", dqn_head_hidden_size=256,
                                       batch_size=32, gamma=0.99, dqn_lr=5e-4, buffer_size=50_000,
                                       learning_starts=1_000, target_update_period=62, epsilon_start=1.0,
                                       epsilon_end=0.02, epsilon_decay_steps=10_000, dqn_max_grad_norm=40.0,
                                       dueling=True, double=True, **_PER)),
})


def env_preset(env: str) -> Mapping[str, Any]:
    """The preset row of environment ``env`` (empty for an environment without one)."""
    return ENV_PRESETS.get(env, MappingProxyType({}))
