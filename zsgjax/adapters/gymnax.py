"""A zsgjax environment as a gymnax environment, its context in ``EnvParams``.

``GymnaxEnv(make("cart_goal"))`` is a ``gymnax.environments.environment.Environment``:
rejax, purejaxrl and Stoix-style trainers (``env.reset(key, params)``,
``env.step(key, state, action, params)``, gymnax's ``LogWrapper`` and friends)
run on it unchanged. The context lives in :class:`ContextParams` -- gymnax's
place for an environment's parameters -- so a trainer varies it like any other
parameter: ``jax.vmap`` over a batch of ``params`` gives each env slot its own
context, and nothing recompiles when it changes. Optionally a
:data:`~zsgjax.methods.base.ContextSampler` (LDR/DR: ``method.context_sampler(space)``)
draws a fresh context at every reset instead, gymnax's own auto-reset included.

Shapes: observation ``concat(state_obs, context)`` ``(observation_size,)`` as in
zsgjax; action ``(action_size,)`` float (continuous) or an ``int32`` scalar
(discrete); reward and ``terminated`` scalars. ``reset_env``/``step_env`` call the
zsgjax env's ``init_env_state``/``env_step`` directly, so a gymnax step equals
the zsgjax env's step at the same context. Truncation is gymnax's:
``state.time >= params.max_steps_in_episode`` (default the zsgjax ``horizon``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from zsgjax import checks
from zsgjax.envs.base import ContextualEnv
from zsgjax.methods.base import ContextSampler


@struct.dataclass
class ContextParams(environment.EnvParams):
    """gymnax ``EnvParams`` with the context.

    max_steps_in_episode: episode length (gymnax truncation); default the env's horizon.
    context: ``(context_dim,)`` the context of episodes that start from these params
      (ignored when the adapter has a ``sampler``).
    """

    context: jax.Array | None = None


@struct.dataclass
class ContextState(environment.EnvState):
    """gymnax ``EnvState``: the zsgjax ``env_state``, the episode's ``context (dim,)`` and ``time``."""

    env_state: Any
    context: jax.Array


class GymnaxEnv(environment.Environment[ContextState, ContextParams]):
    """gymnax view of a :class:`~zsgjax.envs.ContextualEnv`.

    Args:
      env: the zsgjax environment.
      sampler: optional ``rng -> context (dim,)``; when given, every reset draws
        the episode's context from it (``params.context`` is then ignored).
      action_bound: continuous actions lie in ``[-action_bound, action_bound]``
        (the env clips); 1 for most zsgjax envs, 2 for ``pendulum_goal``.
    """

    _supports_transition_gradients = True

    def __init__(self, env: ContextualEnv, sampler: ContextSampler | None = None, action_bound: float = 1.0):
        super().__init__()
        if not isinstance(env, ContextualEnv):
            raise ValueError(f"GymnaxEnv: `env` must be a zsgjax ContextualEnv, got {type(env).__name__}")
        if sampler is not None and not callable(sampler):
            raise ValueError(f"GymnaxEnv: `sampler` must be a callable rng -> context, got {sampler!r}")
        self.env = env
        self.sampler = sampler
        self.action_bound = checks.real(action_bound, "GymnaxEnv: `action_bound`", low=0.0, low_open=True)
        self.obs_shape = (env.observation_size,)

    @property
    def default_params(self) -> ContextParams:
        return ContextParams(max_steps_in_episode=int(self.env.horizon), context=self.env.default_context())

    def params_at(self, context, max_steps_in_episode: int | None = None) -> ContextParams:
        """``ContextParams`` at ``context (dim,)`` (checked against the space when concrete)."""
        if not checks.is_traced(context):
            if np.shape(context) != (self.env.context_dim,):
                raise ValueError(f"GymnaxEnv.params_at: `context` must have shape ({self.env.context_dim},) "
                                 f"({', '.join(self.env.context_space.names)}), got {np.shape(context)}")
            context = self.env.context_space.validate(context, "context")
        steps = self.env.horizon if max_steps_in_episode is None else max_steps_in_episode
        steps = checks.integer(steps, "GymnaxEnv.params_at: `max_steps_in_episode`", low=1)
        return ContextParams(max_steps_in_episode=steps, context=jnp.asarray(context, dtype=float))

    def _params(self, params: ContextParams | None) -> ContextParams:
        params = self.default_params if params is None else params
        if not isinstance(params, ContextParams) or params.context is None:
            raise ValueError("GymnaxEnv: `params` must be ContextParams with a context (env.default_params or "
                             f"env.params_at(context)), got {type(params).__name__}")
        return params

    # ------------------------------------------------------------- gymnax API
    def reset_env(self, key: jax.Array, params: ContextParams) -> tuple[jax.Array, ContextState]:
        """A new episode at ``params.context`` (or a sampled one): ``(obs (observation_size,), state)``."""
        params = self._params(params)
        if self.sampler is None:
            context = jnp.asarray(params.context, dtype=float)
        else:
            key, k_ctx = jax.random.split(key)
            context = jnp.asarray(self.sampler(k_ctx), dtype=float)
        env_state = self.env.init_env_state(key, context)
        state = ContextState(time=jnp.zeros((), jnp.int32), env_state=env_state, context=context)
        return self.get_obs(state, params), state

    def step_env(self, key: jax.Array, state: ContextState, action, params: ContextParams):
        """One zsgjax ``env_step`` at ``state.context``: ``(obs, state, reward (), terminated (), info)``."""
        del key
        params = self._params(params)
        action = jnp.asarray(action)
        env_state, state_obs, reward, terminated = self.env.env_step(state.env_state, action, state.context)
        state = ContextState(time=state.time + 1, env_state=env_state, context=state.context)
        obs, state = self._apply_transition_gradient_policy(self.env.make_obs(state_obs, state.context), state)
        terminated = jnp.asarray(terminated, bool)
        info = {"discount": 1.0 - terminated.astype(jnp.float32), "context": state.context}
        return obs, state, jnp.asarray(reward, jnp.float32), terminated, info

    def get_obs(self, state: ContextState, params: ContextParams | None = None, key=None) -> jax.Array:
        """``concat(state_obs, context)``: ``(observation_size,)``."""
        del params, key
        return self.env.make_obs(self.env.observe(state.env_state, state.context), state.context)

    def is_terminated(self, state: ContextState, params: ContextParams) -> jax.Array:
        """Terminal states are reported by ``step_env`` (zsgjax's ``terminated``), not recomputed: ``False``."""
        del state, params
        return jnp.zeros((), bool)

    @property
    def name(self) -> str:
        return f"zsgjax-{type(self.env).__name__}"

    @property
    def num_actions(self) -> int:
        return int(self.env.num_actions if self.env.discrete else self.env.action_size)

    def action_space(self, params: ContextParams | None = None):
        if self.env.discrete:
            return spaces.Discrete(int(self.env.num_actions))
        b = self.action_bound
        return spaces.Box(low=-b, high=b, shape=(self.env.action_size,), dtype=jnp.float32)

    def observation_space(self, params: ContextParams | None = None) -> spaces.Box:
        """Unbounded state part, the context space's box for the context part."""
        space = self.env.context_space
        n = self.env.state_obs_size
        low = np.concatenate([np.full(n, -np.inf), np.asarray(space.low)]).astype(np.float32)
        high = np.concatenate([np.full(n, np.inf), np.asarray(space.high)]).astype(np.float32)
        return spaces.Box(low=jnp.asarray(low), high=jnp.asarray(high), shape=self.obs_shape, dtype=jnp.float32)
