"""Off-policy agents: SAC (continuous actions) and DQN (discrete actions)."""

from zsgjax.agents.dqn import DQN, DQNConfig, DQNState
from zsgjax.agents.normalization import ObsNormalizer, RunningStats
from zsgjax.agents.sac import SAC, SACConfig, SACState

__all__ = ["DQN", "DQNConfig", "DQNState", "ObsNormalizer", "RunningStats", "SAC", "SACConfig", "SACState"]
