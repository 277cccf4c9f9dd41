"""brax training wrappers that draw a fresh context at every auto-reset, and brax registry entries.

Under ``brax.envs.training.wrap`` (what brax's PPO and SAC use) each env slot
keeps one context forever: ``AutoResetWrapper`` restores the slot's *first*
state, ``state.info['context']`` included. :func:`wrap_for_training` is a
drop-in replacement (brax's ``wrap_env_fn``) whose auto-reset starts every new
episode of every slot from a fresh reset at a context drawn from a
:data:`~zsgjax.methods.base.ContextSampler` -- LDR or DR training under brax's
own agents::

    sampler = LDR(scale=0.1).context_sampler(env.context_space)
    ppo.train(env, ..., wrap_env_fn=functools.partial(wrap_for_training, sampler=sampler))

The stack is ``ContextAutoResetWrapper(EpisodeWrapper(VmapWrapper(SampledContextEnv(env))))``:
brax's own episode and vmap wrappers around a zsgjax env whose ``reset(rng)``
draws its context. The wrapper computes the fresh reset at every step and keeps
it where an episode ended (as brax's own ``full_reset`` does); it costs one
``env.reset`` per slot and step.

:func:`register_brax_envs` adds zsgjax environments to brax's registry
(``brax.envs.get_environment("zsgjax_cheetah_velocity", physical=("gravity",))``);
importing this module registers every environment known to :func:`zsgjax.envs.make`
at that time. A registry entry samples its contexts (:func:`brax_env`): its
``reset(rng)`` draws the episode's context uniformly from the context space (DR),
because brax's trainers call ``reset(rng)`` without a context and a zsgjax env
alone would train at its default context only (where, for ``simple_direction``,
every reward is 0). ``sampler=None`` gives that single-context env, with a warning.

brax 0.14.2's ``ppo.train`` and ``sac.train`` call ``jax.device_put_replicated``,
which jax 0.10 removed (an ``AttributeError`` before any training step, whatever
the environment); run them inside :func:`brax_trainer_compat`.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from typing import Callable, Literal, Sequence

import jax
import jax.numpy as jnp
from brax import envs as brax_envs
from brax.envs.base import State, Wrapper
from brax.envs.wrappers import training as brax_training

from zsgjax.adapters import DefaultContextWarning
from zsgjax.envs.base import ContextualEnv
from zsgjax.envs.registry import make, registered_names
from zsgjax.methods import DR
from zsgjax.methods.base import ContextSampler

BRAX_PREFIX = "zsgjax_"
"""brax registry names are ``BRAX_PREFIX + <zsgjax name>`` (``:`` becomes ``_``)."""


def _check_sampler(sampler, where: str) -> None:
    if not callable(sampler):
        raise ValueError(f"{where}: `sampler` must be a callable rng -> context (dim,), e.g. "
                         f"LDR(scale=0.1).context_sampler(env.context_space), got {sampler!r}")


class SampledContextEnv(Wrapper):
    """An unbatched zsgjax env whose ``reset(rng)`` draws the episode's context from ``sampler``.

    ``reset(rng)``: one key -> a brax ``State`` with ``info['context'] (dim,)``;
    ``step`` is the env's (at ``state.info['context']``).
    """

    def __init__(self, env: ContextualEnv, sampler: ContextSampler):
        if not isinstance(env, ContextualEnv):
            raise ValueError(f"SampledContextEnv: `env` must be a zsgjax ContextualEnv, got {type(env).__name__}")
        _check_sampler(sampler, "SampledContextEnv")
        super().__init__(env)
        self.sampler = sampler

    def reset(self, rng: jax.Array) -> State:
        k_ctx, k_env = jax.random.split(rng)
        context = jnp.asarray(self.sampler(k_ctx), dtype=float)
        return self.env.reset(k_env, context)


class ContextAutoResetWrapper(Wrapper):
    """Batched auto-reset to a fresh reset of ``reset_fn`` (a new context), not to the first state.

    Args:
      env: the batched env (``EpisodeWrapper(VmapWrapper(...))``); states have one
        leading batch axis ``(B, ...)``.
      reset_fn: the *unbatched* reset ``key -> State`` of the env inside the
        ``VmapWrapper`` (:meth:`SampledContextEnv.reset`).

    ``state.info['context_rng'] (B, 2)`` carries each slot's key for its next reset.
    Where ``state.done``, the step returns the fresh state's ``pipeline_state``,
    ``obs`` and ``info['context']`` (reward and ``done`` stay the finished episode's,
    brax's convention).
    """

    def __init__(self, env, reset_fn: Callable[[jax.Array], State]):
        super().__init__(env)
        self.reset_fn = reset_fn

    def reset(self, rng: jax.Array) -> State:
        if rng.ndim != 2:
            raise ValueError(f"ContextAutoResetWrapper.reset: `rng` must be a batch of keys (B, 2), got shape "
                             f"{rng.shape}")
        keys = jax.vmap(jax.random.split)(rng)
        state = self.env.reset(keys[:, 0])
        state.info["context_rng"] = keys[:, 1]
        return state

    def step(self, state: State, action: jax.Array) -> State:
        info = dict(state.info)
        if "steps" in info:  # the episode counter restarts after a done (as brax's AutoResetWrapper)
            info["steps"] = jnp.where(state.done, jnp.zeros_like(info["steps"]), info["steps"])
        keys = jax.vmap(jax.random.split)(info["context_rng"])
        state = self.env.step(state.replace(done=jnp.zeros_like(state.done), info=info), action)
        fresh = jax.vmap(self.reset_fn)(keys[:, 1])
        done = state.done

        def where_done(x, y):
            return jnp.where(jnp.reshape(done, (done.shape[0],) + (1,) * (x.ndim - 1)), x, y)

        info = dict(state.info)
        info["context"] = where_done(fresh.info["context"], state.info["context"])
        info["context_rng"] = keys[:, 0]
        return state.replace(
            pipeline_state=jax.tree.map(where_done, fresh.pipeline_state, state.pipeline_state),
            obs=where_done(fresh.obs, state.obs),
            info=info,
        )


def wrap_for_training(
    env: ContextualEnv | SampledContextEnv,
    episode_length: int = 1000,
    action_repeat: int = 1,
    randomization_fn=None,
    *,
    sampler: ContextSampler | None = None,
) -> Wrapper:
    """brax's ``wrap`` with a fresh context from ``sampler`` at every (auto-)reset.

    The signature of ``brax.envs.training.wrap`` (pass
    ``functools.partial(wrap_for_training, sampler=...)`` as ``wrap_env_fn`` to brax's
    ``ppo.train``/``sac.train``); ``randomization_fn`` (brax's system randomization)
    is not supported: the context is the randomization.

    ``env``: a zsgjax env (then ``sampler`` is required) or a :class:`SampledContextEnv`
    (a brax registry entry, :func:`brax_env`), whose own sampler is used unless
    ``sampler`` is given.
    """
    if randomization_fn is not None:
        raise ValueError("wrap_for_training: `randomization_fn` is not supported; the sampled context is the "
                         "domain randomization (put physical features in the context instead)")
    if isinstance(env, SampledContextEnv):
        env, sampler = env.env, env.sampler if sampler is None else sampler
    _check_sampler(sampler, "wrap_for_training")
    inner = SampledContextEnv(env, sampler)
    wrapped = brax_training.EpisodeWrapper(brax_training.VmapWrapper(inner), episode_length, action_repeat)
    return ContextAutoResetWrapper(wrapped, inner.reset)


@contextlib.contextmanager
def brax_trainer_compat():
    """Within this block ``jax.device_put_replicated`` exists again (jax's own implementation).

    brax 0.14.2's PPO and SAC trainers call it; jax 0.10 removed the public name
    (``AttributeError: jax.device_put_replicated is deprecated``) but kept the
    function in ``jax._src.api``. Nothing changes when jax still has the name; the
    attribute is removed again on exit.
    """
    try:
        jax.device_put_replicated  # noqa: B018 - present in jax < 0.10
    except AttributeError:
        pass
    else:
        yield
        return
    from jax._src import api

    if not hasattr(api, "device_put_replicated"):
        raise RuntimeError("brax_trainer_compat: this jax has no device_put_replicated to restore; use a brax "
                           "release that supports it")
    jax.device_put_replicated = api.device_put_replicated
    try:
        yield
    finally:
        del jax.device_put_replicated


def brax_name(name: str) -> str:
    """The brax registry name of the zsgjax environment ``name`` (``"zsgjax_cheetah_velocity"``)."""
    return BRAX_PREFIX + name.replace(":", "_")


def brax_env(name: str, sampler: ContextSampler | Literal["dr"] | None = "dr", **env_kwargs):
    """What ``brax.envs.get_environment(brax_name(name), **kwargs)`` builds.

    ``make(name, **env_kwargs)`` as a :class:`SampledContextEnv` whose every
    ``reset(rng)`` draws its context from ``sampler``: ``"dr"`` (default) uniform over
    the context space, or any ``rng -> context (dim,)``. Under brax's own
    ``training.wrap`` each env slot then keeps its first draw (brax's auto-reset
    restores first states); :func:`wrap_for_training` as ``wrap_env_fn`` draws a new
    context at every episode. ``sampler=None``: the zsgjax env itself, whose
    ``reset(rng)`` is at the default context (a :class:`DefaultContextWarning`).
    """
    env = make(name, **env_kwargs)
    if sampler is None:
        warnings.warn(
            f"brax env {brax_name(name)!r} without a sampler: brax's trainers reset it without a context, so every "
            f"episode runs at the default context {tuple(env.context_space.default)} "
            f"({', '.join(env.context_space.names)}); pass a sampler (the default, 'dr', draws contexts uniformly)",
            DefaultContextWarning, stacklevel=2)
        return env
    if isinstance(sampler, str):
        if sampler != "dr":
            raise ValueError(f"brax_env: `sampler` must be 'dr', None or a callable rng -> context, got {sampler!r}")
        sampler = DR().context_sampler(env.context_space)
    return SampledContextEnv(env, sampler)


def register_brax_envs(names: Sequence[str] | None = None) -> list[str]:
    """Register zsgjax environments in brax's registry; returns the brax names.

    ``names``: zsgjax registry names (default: all registered now). Each brax entry
    is :func:`brax_env` ``(name, **kwargs)``: contexts drawn uniformly at every reset
    unless ``sampler`` says otherwise.
    """
    names = registered_names() if names is None else list(names)
    known = set(registered_names())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"register_brax_envs: unknown zsgjax environments {unknown}; known: "
                         f"{', '.join(sorted(known))}")
    out = []
    for name in names:
        brax_envs.register_environment(brax_name(name), functools.partial(brax_env, name))
        out.append(brax_name(name))
    return out


register_brax_envs()
