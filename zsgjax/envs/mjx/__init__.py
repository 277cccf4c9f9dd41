"""MuJoCo MJX contextual environments with physical context features.

``zsgjax.envs.make('cheetah_velocity', physical=('gravity', 'mass_scale:torso'))``
builds a half-cheetah whose context is ``(target_velocity, gravity,
mass_scale:torso)``. See :mod:`zsgjax.envs.mjx.features` for the features and
:mod:`zsgjax.envs.mjx.base` for the shared machinery.
"""

from zsgjax.envs.mjx.ant import AntDirection, AntGoal
from zsgjax.envs.mjx.base import MjxEnv, MjxState, load_model
from zsgjax.envs.mjx.cheetah import CheetahVelocity
from zsgjax.envs.mjx.features import FEATURE_KINDS, FEATURE_RANGES, PhysicalFeature, make_feature, make_features

__all__ = [
    "AntDirection",
    "AntGoal",
    "CheetahVelocity",
    "FEATURE_KINDS",
    "FEATURE_RANGES",
    "MjxEnv",
    "MjxState",
    "PhysicalFeature",
    "load_model",
    "make_feature",
    "make_features",
]
