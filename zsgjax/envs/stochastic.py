"""Stochastic contextual environments: ``s' = f(s, a, c, xi)`` with noise ``xi`` independent of ``c``.

A :class:`StochasticEnv` keeps its PRNG key **in the environment state**
(:class:`NoisyState`: the physics state and a raw ``uint32`` key). Its
``env_step(env_state, action, context)`` splits that key, draws ``xi = noise(key)``
and steps; it stays a pure, deterministic function of its inputs. Hence:

* the same ``env_state`` (so the same key) reproduces the step bit for bit, and its
  derivatives too;
* ``jax.jacfwd``/``jax.jvp`` with respect to the context, ``env_state`` held fixed,
  differentiate ``c -> f(s, a, c, xi)`` with ``xi`` fixed: the derivative of the
  *transport map* that carries the next-state law ``P(. | s, a, c)`` onto
  ``P(. | s, a, c')`` (the reparameterisation trick). First-order context sample
  enhancement (:mod:`zsgjax.methods.cse`) therefore moves a sampled ``s'`` to a
  sample of the law at ``c + delta_c`` up to ``O(|delta_c|^2)``, including where the
  noise's scale depends on the context (``sigma(c) xi``), and the exact mode (which
  stores the pre-step ``env_state``) replays the same noise at ``c + delta_c``.

A subclass implements four pure functions:

* ``init_physics(rng, context) -> physics`` -- the initial physics state;
* ``observe_physics(physics, context) -> state_obs (state_obs_size,)``;
* ``step_with_noise(physics, action, context, xi, noise_context)`` ->
  ``(next_physics, next_state_obs, reward (), terminated ())`` -- one step with the
  noise ``xi`` given; every context-dependent *scale of the noise* (``sigma(c)``) is
  computed at ``noise_context``, everything else at ``context``;
* ``noise_shape`` (class attribute): the shape of ``xi`` (standard normal; override
  :meth:`StochasticEnv.noise` for another law independent of the context).

``env_step`` passes ``noise_context = context``. :meth:`StochasticEnv.with_noise_scale_gradient`
``("ignore")`` gives a copy whose ``env_step`` passes
``jax.lax.stop_gradient(context)``: the same steps, but derivatives that treat
``sigma`` as a constant (CSE's ``noise_scale_gradient="ignore"`` ablation: the next-state
spread is then not moved with the context, an ``O(|delta_c|)`` error).
"""

from __future__ import annotations

import abc
import copy
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from zsgjax.envs.base import ContextualEnv, EnvState

NOISE_SCALE_GRADIENTS = ("reparameterised", "ignore")
"""How context derivatives treat the noise's context-dependent scale ``sigma(c)``:
``reparameterised`` differentiates it (``xi`` fixed), ``ignore`` holds it constant."""


class NoisyState(NamedTuple):
    """The state of a :class:`StochasticEnv`: ``physics`` (the subclass's pytree) and
    ``key``, the raw ``uint32`` PRNG key (``jax.random.PRNGKey`` layout) the next step splits."""

    physics: EnvState
    key: jax.Array


def raw_key(key: jax.Array) -> jax.Array:
    """``key`` as raw ``uint32`` key data (a typed ``jax.random.key`` is unwrapped)."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


class StochasticEnv(ContextualEnv):
    """Base class of environments whose step draws noise; see the module docstring.

    Class attribute a subclass sets (besides :class:`ContextualEnv`'s): ``noise_shape``,
    the shape of one step's ``xi``.
    """

    noise_shape: tuple[int, ...]
    noise_scale_gradient: str = "reparameterised"

    # ------------------------------------------------------------ to implement
    @abc.abstractmethod
    def init_physics(self, rng: jax.Array, context: jax.Array) -> EnvState:
        """Initial physics state for one episode at ``context`` (``(dim,)``)."""

    @abc.abstractmethod
    def observe_physics(self, physics: EnvState, context: jax.Array) -> jax.Array:
        """State observation ``(state_obs_size,)`` of a physics state."""

    @abc.abstractmethod
    def step_with_noise(
        self, physics: EnvState, action: jax.Array, context: jax.Array, xi: jax.Array, noise_context: jax.Array
    ) -> tuple[EnvState, jax.Array, jax.Array, jax.Array]:
        """One step with noise ``xi`` (``noise_shape``), the noise's scale computed at ``noise_context``:
        ``(next_physics, next_state_obs (state_obs_size,), reward (), terminated ())``."""

    # --------------------------------------------------------------- derived
    def noise(self, key: jax.Array, dtype: Any) -> jax.Array:
        """One step's ``xi``: standard normal of shape ``noise_shape`` and ``dtype``."""
        return jax.random.normal(key, self.noise_shape, dtype)

    def next_noise(self, env_state: NoisyState, dtype: Any = jnp.float32) -> jax.Array:
        """The ``xi`` that ``env_step`` from ``env_state`` draws (``noise_shape``), without stepping."""
        return self.noise(jax.random.split(env_state.key)[1], dtype)

    def init_env_state(self, rng, context):
        k_physics, k_noise = jax.random.split(rng)
        return NoisyState(physics=self.init_physics(k_physics, context), key=raw_key(k_noise))

    def observe(self, env_state, context):
        return self.observe_physics(env_state.physics, context)

    def env_step_at(self, env_state: NoisyState, action: jax.Array, context: jax.Array, noise_context: jax.Array):
        """``env_step`` with the noise's scale computed at ``noise_context``: the key is split,
        ``xi`` drawn from one half and the other kept for the next step."""
        key, k_xi = jax.random.split(env_state.key)
        xi = self.noise(k_xi, jnp.result_type(context))
        physics, state_obs, reward, terminated = self.step_with_noise(
            env_state.physics, action, context, xi, noise_context)
        return NoisyState(physics=physics, key=key), state_obs, reward, terminated

    def env_step(self, env_state, action, context):
        noise_context = jax.lax.stop_gradient(context) if self.noise_scale_gradient == "ignore" else context
        return self.env_step_at(env_state, action, context, noise_context)

    def with_noise_scale_gradient(self, noise_scale_gradient: str) -> "StochasticEnv":
        """A copy whose context derivatives treat the noise's scale as :data:`NOISE_SCALE_GRADIENTS` says;
        its steps equal this environment's. ``ValueError`` for another value."""
        if noise_scale_gradient not in NOISE_SCALE_GRADIENTS:
            raise ValueError(f"{type(self).__name__}.with_noise_scale_gradient: `noise_scale_gradient` must be one of "
                             f"{', '.join(repr(n) for n in NOISE_SCALE_GRADIENTS)}, got {noise_scale_gradient!r}")
        view = copy.copy(self)
        view.noise_scale_gradient = noise_scale_gradient
        return view


def differentiated_env(env: ContextualEnv, noise_scale_gradient: str) -> ContextualEnv:
    """The environment whose steps CSE differentiates: ``env`` itself for ``"reparameterised"``,
    ``env.with_noise_scale_gradient("ignore")`` for ``"ignore"``.

    ``ValueError`` for ``"ignore"`` on an environment that is not a :class:`StochasticEnv`
    (it draws no noise, so there is nothing to ignore: the run would silently equal the
    reparameterised one) and for an unknown value.
    """
    if noise_scale_gradient not in NOISE_SCALE_GRADIENTS:
        raise ValueError(f"`noise_scale_gradient` must be one of {', '.join(repr(n) for n in NOISE_SCALE_GRADIENTS)}, "
                         f"got {noise_scale_gradient!r}")
    if noise_scale_gradient == "reparameterised":
        return env
    if not isinstance(env, StochasticEnv):
        raise ValueError(f"CSE.noise_scale_gradient='ignore' needs a stochastic environment "
                         f"(zsgjax.envs.stochastic.StochasticEnv); {type(env).__name__} draws no noise")
    return env.with_noise_scale_gradient(noise_scale_gradient)
