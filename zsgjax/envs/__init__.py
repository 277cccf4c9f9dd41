"""Contextual environments: context spaces, the env API, the registry."""

from zsgjax.envs.base import ContextualEnv
from zsgjax.envs.context import ContextSpace
from zsgjax.envs.registry import constructor, make, register, registered_names

register("simple_direction", "zsgjax.envs.simple_direction:SimpleDirection")
register("pendulum_goal", "zsgjax.envs.pendulum_goal:PendulumGoal")
register("cart_goal", "zsgjax.envs.cart_goal:CartGoal")
register("context_dim_direction", "zsgjax.envs.direction_task:DirectionTask")
register("context_dim_lq", "zsgjax.envs.linear_quadratic:LinearQuadratic")
register("cheetah_velocity", "zsgjax.envs.mjx.cheetah:CheetahVelocity")
register("ant_direction", "zsgjax.envs.mjx.ant:AntDirection")
register("ant_goal", "zsgjax.envs.mjx.ant:AntGoal")
register("pendulum_goal_noisy", "zsgjax.envs.noisy:PendulumGoalNoisy")
register("simple_direction_noisy", "zsgjax.envs.noisy:SimpleDirectionNoisy")
register("cheetah_velocity_noisy", "zsgjax.envs.mjx.noisy:CheetahVelocityNoisy")
register("linear_gaussian", "zsgjax.envs.linear_gaussian:LinearGaussian")

__all__ = ["ContextSpace", "ContextualEnv", "constructor", "make", "register", "registered_names"]
