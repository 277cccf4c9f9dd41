"""Adapters between zsgjax and the JAX RL ecosystem.

* :mod:`zsgjax.adapters.playground` -- any `mujoco_playground` MJX environment as
  a :class:`~zsgjax.envs.ContextualEnv` whose context is a selection of physical
  features (gravity, masses, friction, actuator gains, damping), registered as
  ``zsgjax.envs.make("playground:<Name>", physical=(...))``;
* :mod:`zsgjax.adapters.gymnax` -- a zsgjax environment as a gymnax
  ``Environment`` whose ``EnvParams`` carry the context (Stoix, gymnax's wrappers),
  and ``FiveValueStep``, gymnax 0.x's step signature for rejax and purejaxrl;
* :mod:`zsgjax.adapters.brax` -- brax training wrappers that draw a fresh context
  at every auto-reset (LDR/DR under brax's own PPO/SAC) and brax registry entries.

This package imports nothing itself (each submodule imports its own framework), so
the environment registry can read :mod:`zsgjax.adapters.playground_envs` (its
``zsgjax.envs`` entry point) cheaply. It defines the adapters' two shared signals.
"""


class MissingExtra(ImportError, ValueError):
    """An adapter's third-party package is not installed; the message names the extra to install.

    Both an ``ImportError`` (what it is) and a ``ValueError`` (so that ``zsgjax train --env
    playground:<Name>`` reports it in one line, as it does any other bad choice of environment).
    """


class DefaultContextWarning(UserWarning):
    """An adapter runs a zsgjax env without a context sampler or explicit contexts: every episode is at the
    default context (zero-shot training, by design; for ``simple_direction`` every reward there is 0)."""
