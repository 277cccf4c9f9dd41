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
Shapes are checked where they enter (``params.context``, a sampled context, the
action): a wrong one is a ``ValueError`` naming the argument and the expected
shape, at trace time (the checks are static, so they cost nothing under ``jit``).

Which step signature: gymnax 1.x's ``Environment.step`` returns six values
``(obs, state, reward, terminated, truncated, info)``; rejax (0.1) and purejaxrl
unpack the five of gymnax 0.x, ``(obs, state, reward, done, info)``.
:class:`FiveValueStep` gives any gymnax 1.x environment (this adapter, or gymnax's
own) that signature, with ``done = terminated | truncated`` as gymnax 0.x computed
it. Use ``GymnaxEnv(env)`` with code written for gymnax 1.x (gymnax's own
wrappers, Stoix) and ``FiveValueStep(GymnaxEnv(env))`` with rejax and purejaxrl.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from zsgjax import checks
from zsgjax.adapters import DefaultContextWarning
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
        """Params at the default context; without a ``sampler`` every episode then runs there (a
        :class:`~zsgjax.adapters.DefaultContextWarning`: pass ``sampler=`` or ``params_at(context)``)."""
        if self.sampler is None:
            names = ", ".join(self.env.context_space.names)
            warnings.warn(
                f"GymnaxEnv.default_params without a sampler: every episode runs at the default context "
                f"{tuple(self.env.context_space.default)} ({names}); pass GymnaxEnv(env, sampler=...) (e.g. "
                "DR().context_sampler(env.context_space)) or params built with params_at(context)",
                DefaultContextWarning, stacklevel=2)
        return ContextParams(max_steps_in_episode=int(self.env.horizon), context=self.env.default_context())

    def params_at(self, context, max_steps_in_episode: int | None = None) -> ContextParams:
        """``ContextParams`` at ``context (dim,)`` (its shape always checked, its range when concrete)."""
        self._check_context(context, "`context`")
        if not checks.is_traced(context):
            context = self.env.context_space.validate(context, "context")
        steps = self.env.horizon if max_steps_in_episode is None else max_steps_in_episode
        steps = checks.integer(steps, "GymnaxEnv.params_at: `max_steps_in_episode`", low=1)
        return ContextParams(max_steps_in_episode=steps, context=jnp.asarray(context, dtype=float))

    def _params(self, params: ContextParams | None) -> ContextParams:
        params = self.default_params if params is None else params
        if not isinstance(params, ContextParams) or params.context is None:
            raise ValueError("GymnaxEnv: `params` must be ContextParams with a context (env.default_params or "
                             f"env.params_at(context)), got {type(params).__name__}")
        self._check_context(params.context, "`params.context`")
        return params

    def _check_context(self, context, what: str) -> None:
        """``ValueError`` unless ``context`` has shape ``(context_dim,)`` (static: works on tracers)."""
        if np.shape(context) != (self.env.context_dim,):
            raise ValueError(
                f"GymnaxEnv: {what} must have shape ({self.env.context_dim},) "
                f"({', '.join(self.env.context_space.names)}) per env slot, got {np.shape(context)}; build "
                "params with env.params_at(context) (vmap it over a batch of contexts)")

    def _slot_action(self, action) -> jax.Array:
        """One env slot's action in the zsgjax env's shape (``env.action_shape()``).

        A single-element action (shape ``()`` or ``(1,)``) is reshaped when the env takes one
        number (rejax squeezes its actions); any other shape is a ``ValueError`` from the
        env's ``check_action`` (a static check under ``jit``).
        """
        action = jnp.asarray(action)
        shape = self.env.action_shape()
        if int(np.prod(shape)) == 1 and action.shape in ((), (1,)):
            action = jnp.reshape(action, shape)
        try:
            self.env.check_action(action, "action")
        except ValueError as e:
            raise ValueError(f"GymnaxEnv (one env slot's action; vmap over slots): {e}") from None
        return action

    # ------------------------------------------------------------- gymnax API
    def reset_env(self, key: jax.Array, params: ContextParams) -> tuple[jax.Array, ContextState]:
        """A new episode at ``params.context`` (or a sampled one): ``(obs (observation_size,), state)``."""
        params = self._params(params)
        if self.sampler is None:
            context = jnp.asarray(params.context, dtype=float)
        else:
            key, k_ctx = jax.random.split(key)
            context = jnp.asarray(self.sampler(k_ctx), dtype=float)
            self._check_context(context, "the context drawn by `sampler`")
        env_state = self.env.init_env_state(key, context)
        state = ContextState(time=jnp.zeros((), jnp.int32), env_state=env_state, context=context)
        return self.get_obs(state, params), state

    def step_env(self, key: jax.Array, state: ContextState, action, params: ContextParams):
        """One zsgjax ``env_step`` at ``state.context``: ``(obs, state, reward (), terminated (), info)``."""
        del key
        params = self._params(params)
        action = self._slot_action(action)
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


class FiveValueStep:
    """A gymnax 1.x environment with gymnax 0.x's five-value ``step``, for rejax and purejaxrl.

    ``step(key, state, action, params) -> (obs, state, reward, done, info)`` with
    ``done = terminated | truncated`` (bool ``()``), as gymnax < 1.0 returned it;
    ``info`` is the wrapped step's, so ``info["terminated"]`` and ``info["truncated"]``
    still tell a time limit from a terminal state. ``reset(key, params) -> (obs, state)``
    is the wrapped env's (the same in both gymnax versions), and every other attribute
    (``default_params``, ``action_space``, ``observation_space``, ``params_at``, ...) is
    the wrapped env's too (a proxy, like gymnax's wrappers; unlike theirs it survives
    ``copy.deepcopy``, which rejax applies to its config).

    ``env``: any gymnax 1.x environment: :class:`GymnaxEnv`, or one of gymnax's own
    (``gymnax.make("Pendulum-v1")[0]``).
    """

    def __init__(self, env):
        if not callable(getattr(env, "step", None)) or not callable(getattr(env, "reset", None)):
            raise ValueError(f"FiveValueStep: `env` must be a gymnax environment (with step and reset), got "
                             f"{type(env).__name__}")
        self._env = env

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "_env":  # copy/pickle probe a fresh instance before `_env` is set
            raise AttributeError(name)
        return getattr(self._env, name)

    def reset(self, key: jax.Array, params=None):
        """The wrapped env's ``reset``: ``(obs, state)``."""
        return self._env.reset(key, params)

    def step(self, key: jax.Array, state, action, params=None):
        """``(obs, state, reward (), done () bool, info)``, ``done = terminated | truncated``."""
        out = self._env.step(key, state, action, params)
        if len(out) != 6:
            raise ValueError(f"FiveValueStep: the wrapped env's step returned {len(out)} values, not gymnax 1.x's six "
                             "(obs, state, reward, terminated, truncated, info); it needs no FiveValueStep")
        obs, state, reward, terminated, truncated, info = out
        return obs, state, reward, jnp.logical_or(terminated, truncated), info
