"""Adapters between zsgjax and the JAX RL ecosystem.

* :mod:`zsgjax.adapters.playground` -- any `mujoco_playground` MJX environment as
  a :class:`~zsgjax.envs.ContextualEnv` whose context is a selection of physical
  features (gravity, masses, friction, actuator gains, damping), registered as
  ``zsgjax.envs.make("playground:<Name>", physical=(...))``;
* :mod:`zsgjax.adapters.gymnax` -- a zsgjax environment as a gymnax
  ``Environment`` whose ``EnvParams`` carry the context (rejax, purejaxrl, Stoix);
* :mod:`zsgjax.adapters.brax` -- brax training wrappers that draw a fresh context
  at every auto-reset (LDR/DR under brax's own PPO/SAC) and brax registry entries.

This package imports nothing itself (each submodule imports its own framework), so
the environment registry can read :mod:`zsgjax.adapters.playground_envs` (its
``zsgjax.envs`` entry point) cheaply.
"""
