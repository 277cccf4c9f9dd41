"""What a training method is: where contexts come from, what a step stores, how a
replay batch becomes a training batch.

A method is a small frozen dataclass (hashable, so it lives in the static
:class:`~zsgjax.train.Trainer`) with three pure hooks, all called inside the jitted
training program:

* :meth:`Method.context_sampler` -- ``space -> (rng -> context (dim,))``, the
  context of each new training episode;
* :meth:`Method.collect` -- one environment step of one environment, returning
  ``((next_env_state, next_state_obs, reward, terminated), extras)``; ``extras`` is
  whatever the method needs stored beside the transition in the replay buffer
  (context gradients, the pre-step physics state, or ``None`` for nothing);
* :meth:`Method.training_batch` -- a replay sample (leading ``N``) to the batch the
  agent's gradient update sees, with per-sample weights ``(N,)`` (0 drops a sample
  from every loss; :func:`valid_weight` gives the stored transitions' own 0/1
  validity, which every method should multiply in) and the number of samples
  dropped by the method itself (``()`` int32).

The defaults are vanilla training: the environment's default context, a plain
step, the replay batch as sampled. A method overrides only what differs and is
registered by name with :func:`zsgjax.methods.register`. Its dataclass fields are
its settings, each declared once with :func:`zsgjax.configs.param` (default, range,
help; see :mod:`zsgjax.methods.settings`): they are checked when the method is built
and become ``TrainConfig`` fields and ``zsgjax train`` options named
``<method>_<field>``, which :meth:`Method.from_config` reads back.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp

from zsgjax.envs.base import ContextualEnv, EnvState
from zsgjax.envs.context import ContextSpace
from zsgjax.methods.settings import Setting, settings_of
from zsgjax.types import Transition

ContextSampler = Callable[[jax.Array], jax.Array]
"""``rng -> context (dim,)``: the context of a new training episode."""

EnvStep = tuple[EnvState, jax.Array, jax.Array, jax.Array]
"""``(next_env_state, next_state_obs, reward (), terminated ())`` of one step."""


def plain_collect(env: ContextualEnv, env_state: EnvState, action: jax.Array, context: jax.Array, rng: jax.Array):
    """One step, nothing stored beside the transition: ``(EnvStep, None)``."""
    del rng
    return env.env_step(env_state, action, context), None


def valid_weight(items: Any) -> jax.Array:
    """``(N,)`` float32: 1 for stored transitions that are finite, 0 for the others."""
    n = items.transition.reward.shape[0]
    if items.valid is None:
        return jnp.ones((n,), jnp.float32)
    return items.valid.astype(jnp.float32)


def format_context(context: Any) -> str:
    """``(dim,)`` values as ``"(0, 0.5)"``."""
    return "(" + ", ".join(f"{float(v):g}" for v in jnp.asarray(context).reshape(-1)) + ")"


def default_sampler(space: ContextSpace) -> ContextSampler:
    """Every episode at the space's default (training) context."""
    default = space.default_array
    return lambda rng: default


class Method:
    """Base class of training methods: vanilla behaviour, overridden piece by piece."""

    name: ClassVar[str] = ""

    def __post_init__(self):
        """Check every setting: ``ValueError`` naming ``Class.field`` and its accepted range."""
        for s in settings_of(type(self)):
            s.check.require(f"{type(self).__name__}.{s.field}", getattr(self, s.field))

    @classmethod
    def settings(cls) -> tuple[Setting, ...]:
        """This method's settings (its fields), inherited ones included."""
        return settings_of(cls)

    @classmethod
    def from_config(cls, config: Any) -> "Method":
        """The method with its settings read from a resolved ``TrainConfig``
        (``config.method_setting(option)`` for each of :meth:`settings`)."""
        return cls(**{s.field: config.method_setting(s.option) for s in settings_of(cls)})

    def context_sampler(self, space: ContextSpace) -> ContextSampler:
        return default_sampler(space)

    def describe(self, space: ContextSpace) -> str:
        """Where this method trains, in one phrase for people (the CLI prints it before training)."""
        return f"episodes at the default context {format_context(space.default_array)}"

    def collect(self, env: ContextualEnv, env_state: EnvState, action: jax.Array, context: jax.Array, rng: jax.Array):
        """One step of one environment and what to store: ``(EnvStep, extras)``."""
        return plain_collect(env, env_state, action, context, rng)

    def training_batch(self, env: ContextualEnv, items: Any, rng: jax.Array) -> tuple[Transition, jax.Array, jax.Array]:
        """``items``: a :class:`~zsgjax.replay.ReplayItem` sample with leading ``N``.

        Returns ``(batch, weight (N,), dropped ())``.
        """
        del env, rng
        return items.transition, valid_weight(items), jnp.zeros((), jnp.int32)

    def check(self, batch_size: int) -> None:
        """Raise ``ValueError`` when the method cannot work with these training settings."""
        del batch_size
