"""Zero-shot evaluation of the offline policies on held-out contexts by true rollouts.

A thin layer over :mod:`zsgjax.evaluate` (one jitted program over seeds x contexts x
episodes; the report is the mean over seeds of each seed's mean return with a 95%
Student-t interval over seeds): :func:`held_out_grid` names a set of contexts,
:func:`make_zero_shot` compiles the evaluator of a trained
:class:`~zsgjax.offline.control.policy.Policy` and :func:`zero_shot` runs it on policy
parameters with a leading seed axis ``S`` (as ``jax.vmap`` of a ``train`` returns them).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from zsgjax import evaluate as zs_evaluate
from zsgjax.envs.base import ContextualEnv
from zsgjax.offline.control.policy import Policy, env_act_fn
from zsgjax.reporting.results import ContextGrid, EvalResult


def held_out_grid(env: ContextualEnv, contexts) -> ContextGrid:
    """A :class:`ContextGrid` of the given contexts ``(C, dim)`` (checked against the space),
    each a named row labelled by its values."""
    contexts = np.asarray(env.context_space.validate(np.asarray(contexts, np.float32).reshape(-1, env.context_dim),
                                                     "contexts"), np.float32)
    if contexts.shape[0] < 1:
        raise ValueError("`contexts` must hold at least one held-out context")
    labels = tuple("(" + ",".join(f"{v:.3g}" for v in row) + ")" for row in contexts)
    return ContextGrid(contexts=contexts, labels=labels, swept=(None,) * len(labels),
                       names=env.context_space.names, default=np.asarray(env.context_space.default, np.float32))


def make_zero_shot(env: ContextualEnv, policy: Policy, num_episodes: int) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
    """The jitted ``(params (S, ...), contexts (C, dim), rng) -> returns (S, C, E)`` of ``policy`` in ``env``."""
    if not isinstance(policy, Policy):
        raise ValueError(f"`policy` must be a zsgjax.offline.control.policy.Policy, got {type(policy).__name__}")
    if policy.obs_dim != env.state_obs_size or policy.action_dim != env.action_size:
        raise ValueError(f"`policy` maps obs ({policy.obs_dim},) -> action ({policy.action_dim},), but `env` has "
                         f"state observations ({env.state_obs_size},) and actions ({env.action_size},)")
    return zs_evaluate.make_evaluator(env, env_act_fn(policy, env.state_obs_size), num_episodes)


def zero_shot(env: ContextualEnv, policy: Policy, params: Any, grid: ContextGrid, *, num_episodes: int,
              rng: jax.Array, evaluator: Callable | None = None) -> EvalResult:
    """Returns ``(S, C, E)`` of ``params`` (leading seed axis) on ``grid``; ``EvalResult.aggregate(range(C))``
    is the held-out mean with its 95% Student-t half-width over seeds."""
    fn = evaluator if evaluator is not None else make_zero_shot(env, policy, num_episodes)
    act = env_act_fn(policy, env.state_obs_size)
    return zs_evaluate.evaluate_grid(env, act, params, grid, num_episodes=num_episodes, rng=rng, evaluator=fn)
