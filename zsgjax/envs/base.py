"""The contextual environment API, compatible with brax's ``Env``/``State``.

A :class:`ContextualEnv` is a brax ``Env`` whose context is an explicit, traced
argument. Subclasses implement three pure functions of ``(env_state, context)``:

* ``init_env_state(rng, context) -> env_state``
* ``env_step(env_state, action, context) -> (next_env_state, next_state_obs, reward, terminated)``
* ``observe(env_state, context) -> state_obs``  (``(state_obs_size,)``)

From these the class derives brax's ``reset``/``step`` (the context lives in
``state.info['context']``, the physics state in ``state.pipeline_state``) and the
pure ``transition(env_state, action, context) -> (next_state_obs, reward)`` that
:mod:`zsgjax.context_gradients` differentiates with ``jax.jacfwd``/``jax.jvp``.

Agent observations are ``concat(state_obs, context)``: shape
``(state_obs_size + context_dim,)``. The context is never closed over, so changing
it never triggers recompilation and its derivatives are exact.
"""

from __future__ import annotations

import abc
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import Env, State

from zsgjax import checks
from zsgjax.envs.context import ContextSpace

EnvState = Any  # a pytree of arrays


class ContextualEnv(Env, abc.ABC):
    """Base class of zsgjax environments.

    Class attributes a subclass sets:
      context_space: the :class:`ContextSpace` (its default is the training context).
      horizon: episode length used by the trainer and evaluator.
      state_obs_size: size of the observation without the context.
      discrete: ``True`` for a finite action set (then ``num_actions`` is set and
        actions are integer scalars).
      eval_contexts: named evaluation contexts of the paper, ``{name: (dim,) tuple}``.

    and the property ``action_size`` (continuous action dimension, or the number of
    actions when ``discrete``).
    """

    context_space: ContextSpace
    horizon: int
    state_obs_size: int
    discrete: bool = False
    num_actions: int | None = None
    eval_contexts: dict[str, tuple[float, ...]] = {}

    # ------------------------------------------------------------ to implement
    @abc.abstractmethod
    def init_env_state(self, rng: jax.Array, context: jax.Array) -> EnvState:
        """Initial physics state for one episode at ``context`` (``(dim,)``)."""

    @abc.abstractmethod
    def env_step(
        self, env_state: EnvState, action: jax.Array, context: jax.Array
    ) -> tuple[EnvState, jax.Array, jax.Array, jax.Array]:
        """One step: ``(next_env_state, next_state_obs (state_obs_size,), reward (), terminated ())``."""

    @abc.abstractmethod
    def observe(self, env_state: EnvState, context: jax.Array) -> jax.Array:
        """State observation ``(state_obs_size,)`` (without the context)."""

    # --------------------------------------------------------------- derived
    @property
    def context_dim(self) -> int:
        return self.context_space.dim

    @property
    def observation_size(self) -> int:
        return self.state_obs_size + self.context_dim

    @property
    def backend(self) -> str:
        return "jax"

    def transition(self, env_state: EnvState, action: jax.Array, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Pure ``(env_state, action, context) -> (next_state_obs, reward)``.

        ``jax.jacfwd(env.transition, argnums=2)`` gives the total derivatives
        ``d next_state_obs / dc`` (``(state_obs_size, dim)``) and ``d r / dc`` (``(dim,)``).
        """
        _, next_obs, reward, _ = self.env_step(env_state, action, context)
        return next_obs, reward

    def make_obs(self, state_obs: jax.Array, context: jax.Array) -> jax.Array:
        """Agent observation ``concat(state_obs, context)``: ``(observation_size,)``."""
        return jnp.concatenate([state_obs, context.astype(state_obs.dtype)], axis=-1)

    def default_context(self) -> jax.Array:
        return self.context_space.default_array

    def reset(self, rng: jax.Array, context: jax.Array | None = None) -> State:
        """Start an episode; ``context=None`` means the default (training) context.

        ``rng``: one PRNG key. ``context``: ``(context_dim,)``. Concrete (not traced)
        inputs are checked on the host: a ``ValueError`` names the argument and, for
        a context, the first dimension that is non-finite or outside its range.
        Under ``jit``/``vmap`` only the static shape and dtype are checked.
        """
        checks.prng_key(rng, f"{type(self).__name__}.reset: `rng`")
        if context is None:
            context = self.context_space.default_array
        else:
            if not checks.is_traced(context):
                # shape first (its message is the one callers match), then dtype, finiteness and range
                if np.shape(context) != (self.context_dim,):
                    raise self._context_shape_error(np.shape(context))
                try:
                    self.context_space.validate(context, "context")
                except ValueError as e:
                    raise ValueError(f"{type(self).__name__}.reset: {e}") from None
            elif jnp.issubdtype(context.dtype, jnp.complexfloating) or context.dtype == jnp.bool_:
                raise ValueError(f"{type(self).__name__}.reset: `context` must be real-valued, got dtype {context.dtype}")
            context = jnp.asarray(context, dtype=float)
            if context.shape != (self.context_dim,):
                raise self._context_shape_error(context.shape)
        env_state = self.init_env_state(rng, context)
        obs = self.make_obs(self.observe(env_state, context), context)
        zero = jnp.zeros((), dtype=jnp.float32)
        return State(
            pipeline_state=env_state,
            obs=obs,
            reward=zero,
            done=zero,
            metrics={},
            info={"context": context},
        )

    def _context_shape_error(self, shape) -> ValueError:
        return ValueError(
            f"{type(self).__name__}.reset: `context` must have shape ({self.context_dim},) "
            f"({', '.join(self.context_space.names)}), got {tuple(shape)}"
        )

    def action_shape(self) -> tuple[int, ...]:
        """The shape of one action: ``()`` (an integer index) when ``discrete``, else ``(action_size,)``."""
        return () if self.discrete else (self.action_size,)

    def check_action(self, action: Any, name: str = "action") -> None:
        """Host-side check of one concrete action; ``ValueError`` naming ``name``.

        Continuous: a finite real array of shape ``(action_size,)`` (values outside the
        action box are clipped by the environment, as documented per env). Discrete:
        an integer scalar in ``[0, num_actions)`` (an integral float is accepted).
        Traced actions get the shape check only.
        """
        where = f"{type(self).__name__}.step: `{name}`"
        shape = self.action_shape()
        got = tuple(np.shape(action))
        if got != shape:
            want = f"an integer scalar in [0, {self.num_actions})" if self.discrete else f"an array of shape {shape}"
            raise ValueError(f"{where} must be {want}, got shape {got}")
        if checks.is_traced(action):
            return
        arr = checks.numeric_array(action, where, finite=True)
        if self.discrete:
            v = float(arr)
            if v != int(v) or not 0 <= int(v) < int(self.num_actions):
                raise ValueError(f"{where} must be an integer scalar in [0, {self.num_actions}), got {arr.item()!r}")

    def step(self, state: State, action: jax.Array) -> State:
        """One environment step at the context stored in ``state.info['context']``.

        ``state``: from :meth:`reset` (or a previous step); ``action``: see
        :meth:`check_action` (checked on the host when concrete; no broadcasting).
        """
        if not isinstance(state, State) or not isinstance(state.info, dict) or "context" not in state.info:
            raise ValueError(f"{type(self).__name__}.step: `state` must be a brax State from reset(), got "
                             f"{type(state).__name__}")
        self.check_action(action)
        context = state.info["context"]
        env_state, state_obs, reward, terminated = self.env_step(state.pipeline_state, action, context)
        return state.replace(
            pipeline_state=env_state,
            obs=self.make_obs(state_obs, context),
            reward=reward.astype(jnp.float32),
            done=terminated.astype(jnp.float32),
        )

    def eval_context_array(self) -> tuple[list[str], np.ndarray]:
        """Names and ``(num, dim)`` array of the paper's evaluation contexts."""
        names = list(self.eval_contexts)
        arr = np.asarray([self.eval_contexts[n] for n in names], dtype=np.float32).reshape(len(names), self.context_dim)
        return names, arr

    def optimal_return(self, context: Any) -> float | None:
        """Expected return of an optimal policy over one episode at ``context`` (``(dim,)``),
        averaged over the initial-state law, where it is known in closed form; ``None``
        (the default) where it is not. Tables show it beside the methods' returns."""
        return None
