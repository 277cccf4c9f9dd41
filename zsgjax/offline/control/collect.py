"""Collect offline data from n contexts of a zsgjax environment in one jitted program.

:func:`collect` rolls out a :class:`~zsgjax.offline.control.behaviour.Behaviour` in
``n`` environments, one per context, for ``N`` transitions each:
``vmap`` over the environments (and over ``streams`` parallel episode streams per
environment), ``lax.scan`` over time, with the auto-reset of
:func:`zsgjax.rollout.step` (a new episode starts after a termination or when the
environment's ``horizon`` is reached; the context of environment ``i`` stays
``contexts[i]``). The result is a :class:`~zsgjax.offline.control.transitions.Transitions`
with observations **without** the context (the first ``env.state_obs_size`` entries of
the agent observation ``concat(state_obs, context)``) and

* ``terminal[i, t]``: the environment terminated at this step (no bootstrap);
* ``truncated[i, t]``: the episode was cut without terminating: the time limit was
  reached, or the stream's data end here (its last transition).

With ``streams = B`` the ``N = B * T`` transitions of an environment are its ``B``
streams of ``T`` steps one after the other, so episodes stay contiguous.

:func:`uniform_contexts` draws the ``n`` contexts uniformly from a box inside the
environment's :class:`~zsgjax.envs.context.ContextSpace`.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np

from zsgjax import checks, rollout
from zsgjax.envs.base import ContextualEnv
from zsgjax.offline.control.behaviour import Behaviour
from zsgjax.offline.control.transitions import DatasetInfo, Transitions, check_transitions


def make_env(env: str, env_kwargs: dict | None = None, where: str = "collect") -> ContextualEnv:
    """``zsgjax.envs.make(env, **env_kwargs)`` for a continuous-action environment.

    ``ValueError`` naming ``env`` for an unknown name (listing the registered ones),
    a bad option, or a discrete-action environment.
    """
    from zsgjax.envs import make, registered_names

    if not isinstance(env, str):
        raise ValueError(f"{where}: `env` must be a registered environment name (one of "
                         f"{', '.join(registered_names())}), got {type(env).__name__}")
    if env_kwargs is not None and not isinstance(env_kwargs, dict):
        raise ValueError(f"{where}: `env_kwargs` must be a dict of constructor options, "
                         f"got {type(env_kwargs).__name__}")
    try:
        instance = make(env, **(env_kwargs or {}))
    except ValueError as e:
        raise ValueError(f"{where}: `env`: {e}") from None
    if instance.discrete:
        raise ValueError(f"{where}: `env` '{env}' has discrete actions; offline control data need continuous "
                         "actions (an environment with discrete=False)")
    return instance


def uniform_contexts(key: jax.Array, env: str, num_envs: int, low=None, high=None,
                     env_kwargs: dict | None = None) -> np.ndarray:
    """``(num_envs, dim)`` float32 contexts uniform over the box ``[low, high]``.

    ``low``/``high``: ``(dim,)`` (a scalar is broadcast); default the whole
    :class:`~zsgjax.envs.context.ContextSpace` of ``env``. The box must lie inside the
    space (``ValueError`` naming the dimension otherwise) and have ``low <= high``.
    """
    checks.prng_key(key, "uniform_contexts: `key`")
    num_envs = checks.integer(num_envs, "uniform_contexts: `num_envs`", low=1)
    space = make_env(env, env_kwargs, "uniform_contexts").context_space
    dim = space.dim

    def bound(value, default, name):
        if value is None:
            return np.asarray(default, np.float32)
        arr = checks.numeric_array(value, f"uniform_contexts: `{name}`")
        if arr.ndim == 0:
            arr = np.full((dim,), arr)
        checks.check_shape(arr, f"uniform_contexts: `{name}`", shape=(dim,))
        return space.validate(arr, name)

    lo, hi = bound(low, space.low, "low"), bound(high, space.high, "high")
    for i, n in enumerate(space.names):
        if lo[i] > hi[i]:
            raise ValueError(f"uniform_contexts: dimension '{n}' has `low` {lo[i]:g} > `high` {hi[i]:g}")
    u = jax.random.uniform(key, (num_envs, dim), jnp.float32)
    return np.asarray(lo + u * (hi - lo), np.float32)


def _collect_env(env_key: "_EnvKey", behaviour: Behaviour, scale: float, num_steps: int, streams: int,
                 key: jax.Array, context: jax.Array, params):
    """One environment: ``streams`` episode streams of ``num_steps`` steps; leaves ``(streams * num_steps, ...)``."""
    env = env_key.env

    def sampler(rng):
        return context

    k_reset, k_follow, k_scan = jax.random.split(key, 3)
    state = rollout.reset(env, k_reset, streams, sampler)
    p = behaviour.policy_prob
    follow = jax.random.bernoulli(k_follow, p, (streams,))
    action_shape = (streams, env.action_size)

    def body(carry, k):
        st, follow = carry
        k_act, k_step, k_follow = jax.random.split(k, 3)
        if behaviour.follows_policy:
            action = behaviour.actions(params, st.obs, follow, k_act, scale)
        else:
            action = Behaviour.random_actions(k_act, action_shape, scale)
        st, out = rollout.step(env, st, action, k_step, sampler)
        follow = jnp.where(out.episode_end, jax.random.bernoulli(k_follow, p, (streams,)), follow)
        tr = out.transition
        terminal = tr.done > 0
        step = (tr.obs[:, :env.state_obs_size], action, tr.reward, tr.next_obs[:, :env.state_obs_size], terminal,
                out.episode_end & ~terminal, out.finite)
        return (st, follow), step

    _, steps = jax.lax.scan(body, (state, follow), jax.random.split(k_scan, num_steps))
    obs, action, reward, next_obs, terminal, truncated, finite = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), steps)
    truncated = truncated.at[:, -1].set(~terminal[:, -1])  # each stream's data end here
    flat = lambda x: x.reshape((streams * num_steps,) + x.shape[2:])  # noqa: E731
    return tuple(map(flat, (obs, action.astype(jnp.float32), reward.astype(jnp.float32), next_obs, terminal,
                            truncated, finite)))


_collect_all = jax.jit(
    jax.vmap(_collect_env, in_axes=(None, None, None, None, None, 0, 0, None)),
    static_argnums=(0, 1, 2, 3, 4),
)


class _EnvKey:
    """An environment as a jit static argument, equal for equal ``(name, options)``: two
    :func:`collect` calls with the same environment share one compiled program."""

    def __init__(self, env: ContextualEnv, name: str, env_kwargs: dict | None):
        self.env = env
        self._key = (name, json.dumps(env_kwargs or {}, sort_keys=True, default=repr))

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _EnvKey) and self._key == other._key


class _StaticBehaviour(Behaviour):
    """A :class:`Behaviour` without its ``params``, hashed by its static fields (a jit static argument)."""

    def _key(self):
        return (self.policy_fn, float(self.noise_std), float(self.policy_prob))

    def __hash__(self):
        return hash(self._key())

    def __eq__(self, other):
        return isinstance(other, _StaticBehaviour) and self._key() == other._key()


def collect(key: jax.Array, env: str, contexts, behaviour: Behaviour, num_transitions: int, *,
            env_kwargs: dict | None = None, streams: int = 1) -> tuple[Transitions, DatasetInfo]:
    """``num_transitions`` transitions of ``behaviour`` in each of the ``n`` contexts.

    Args:
      key: one PRNG key (the whole dataset is a deterministic function of it).
      env: a registered environment name with continuous actions (``zsgjax.envs.make``).
      contexts: ``(n, dim)`` one context per environment, each inside the
        environment's ``ContextSpace`` (see :func:`uniform_contexts`).
      behaviour: the behaviour policy; ``policy_fn`` must map one observation
        ``(observation_size,)`` to an action ``(action_size,)``.
      num_transitions: ``N >= 1`` per environment, a multiple of ``streams``.
      env_kwargs: constructor options of ``env``.
      streams: parallel episode streams per environment (``>= 1``).

    Returns:
      ``(data, info)``: the :class:`Transitions` (leaves ``(n, N, ...)``) and the
      :class:`DatasetInfo` a file stores beside them.

    Raises:
      ValueError: naming the argument (unknown env, a context outside the space or
        ``n = 0``, ``N < 1``, a policy output of the wrong shape), or the environment
        and transition where the environment produced a non-finite value.
    """
    checks.prng_key(key, "collect: `key`")
    instance = make_env(env, env_kwargs)
    space = instance.context_space
    if np.ndim(contexts) != 2:
        raise ValueError(f"collect: `contexts` must have shape (n, {space.dim}) ({', '.join(space.names)}), "
                         f"got shape {np.shape(contexts)}")
    contexts = space.validate(contexts, "contexts")
    n = contexts.shape[0]
    if n < 1:
        raise ValueError(f"collect: `contexts` must hold n >= 1 contexts, got shape {contexts.shape}")
    num_transitions = checks.integer(num_transitions, "collect: `num_transitions`", low=1)
    streams = checks.integer(streams, "collect: `streams`", low=1)
    if num_transitions % streams:
        raise ValueError(f"collect: `num_transitions` ({num_transitions}) must be a multiple of `streams` ({streams})")
    if not isinstance(behaviour, Behaviour):
        raise ValueError(f"collect: `behaviour` must be a Behaviour (zsgjax.offline.control.behaviour), "
                         f"got {type(behaviour).__name__}")
    behaviour.validate()
    scale = behaviour.scale_for(env)
    if behaviour.follows_policy:
        _check_policy_output(instance, behaviour)
    follows = behaviour.follows_policy
    static = _StaticBehaviour(policy_fn=behaviour.policy_fn if follows else None,
                              noise_std=behaviour.noise_std if follows else 0.0,
                              policy_prob=behaviour.policy_prob if follows else 0.0)
    params = behaviour.params if follows else None
    out = _collect_all(_EnvKey(instance, env, env_kwargs), static, scale, num_transitions // streams, streams,
                       jax.random.split(key, n), jnp.asarray(contexts), params)
    obs, action, reward, next_obs, terminal, truncated, finite = out
    finite = np.asarray(finite)
    if not finite.all():
        i, t = (int(v[0]) for v in np.nonzero(~finite))
        raise ValueError(f"collect: environment {i} (context {contexts[i].tolist()}) produced a non-finite observation "
                         f"or reward at transition {t}; the data would be unusable")
    data = Transitions(obs=obs.astype(jnp.float32), action=action, reward=reward,
                       next_obs=next_obs.astype(jnp.float32), terminal=terminal, truncated=truncated,
                       contexts=jnp.asarray(contexts, jnp.float32))
    info = DatasetInfo(env=env, env_kwargs=env_kwargs or {}, context_names=space.names,
                       behaviour=behaviour.describe(env), horizon=instance.horizon)
    return check_transitions(data), info


def _check_policy_output(env: ContextualEnv, behaviour: Behaviour) -> None:
    obs = jax.ShapeDtypeStruct((env.observation_size,), jnp.float32)
    try:
        out = jax.eval_shape(behaviour.policy_fn, behaviour.params, obs, jax.random.PRNGKey(0))
    except Exception as e:  # the user's function failed to trace: say where
        raise ValueError(f"collect: `behaviour.policy_fn` failed on one observation of shape "
                         f"({env.observation_size},) ({type(e).__name__}: {e})") from e
    shape = getattr(out, "shape", None)
    if shape != (env.action_size,) or not jnp.issubdtype(getattr(out, "dtype", jnp.int32), jnp.floating):
        raise ValueError(f"collect: `behaviour.policy_fn` must return one float action of shape ({env.action_size},) "
                         f"for an observation of shape ({env.observation_size},), got "
                         f"{'shape ' + str(tuple(shape)) if shape is not None else type(out).__name__}"
                         f"{'' if shape is None else ' dtype ' + str(out.dtype)}")
