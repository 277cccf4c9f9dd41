"""GoalLine: a context-blind control family whose generalisation error is exactly known.

A point on a line, observation ``x`` only (no context), start ``x = 0``, action
``a in [-1, 1]`` (clipped), context ``g in [-1, 1]`` (the goal)::

    x' = clip(x + a, -bound, bound)        (bound >= 1; default 2)
    r  = -(x' - g)^2
    no termination; horizon H (default 10)

The dynamics do not depend on ``g`` and the reward is not observed, so the
observations of a policy that does not see ``g`` carry no information about it: every
such policy (stochastic or history-dependent too) induces the same law of trajectories
``x_1..x_H`` in every context, and its mean return over goals ``g_1..g_n`` is

    (1/n) sum_i sum_t -(x_t - g_i)^2 = -sum_t (x_t - gbar)^2 - H var_n(g)         (1)

(``gbar``, ``var_n``: the mean and ddof-0 variance of the goals). So the best blind
policy on those goals moves to ``gbar`` on the first step (``|gbar| <= 1``: reachable)
and stays, with value ``-H var_n(g)``, and on *other* goals ``h_1..h_m`` a blind policy
with trajectory ``x_t`` loses exactly ``sum_t (x_t - hbar)^2`` against the best blind
policy for ``h``: the best blind policy of the training goals loses
``H (gbar - hbar)^2`` on held-out goals (the generalisation, "SL", error), whose mean
over i.i.d. training goals of variance ``sigma^2`` is ``H sigma^2 / n`` (plus
``H (mu - hbar)^2``). See docs/offline_control.md, experiment (b).

The goal distribution of the experiments: ``g = 2 u^p - 1``, ``u ~ U[0, 1]``
(:func:`sample_goals`; ``p = 2``: skewed to the left, mean -1/3, variance 16/45), with
:func:`goal_quantiles`, :func:`goal_mean`, :func:`goal_variance` in closed form.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from zsgjax import checks
from zsgjax.envs.base import ContextualEnv
from zsgjax.envs.context import ContextSpace


class GoalLine(ContextualEnv):
    """See the module docstring. ``GoalLine(horizon=10, bound=2.0)``: ``horizon >= 1`` an
    integer, ``bound >= 1`` (so every goal in [-1, 1] is reachable in one step)."""

    context_space = ContextSpace(("g",), low=(-1.0,), high=(1.0,), default=(0.0,))
    horizon = 10
    state_obs_size = 1
    eval_contexts = {"g=-1": (-1.0,), "g=0": (0.0,), "g=1": (1.0,)}

    def __init__(self, horizon: int = 10, bound: float = 2.0):
        horizon = checks.integer(horizon, "GoalLine: `horizon`", low=1)
        bound = checks.real(bound, "GoalLine: `bound` (every goal in [-1, 1] must be reachable in one step)", low=1.0)
        self.horizon = int(horizon)
        self.bound = float(bound)

    @property
    def action_size(self) -> int:
        return 1

    def init_env_state(self, rng, context):
        return jnp.zeros((1,), jnp.float32)

    def observe(self, env_state, context):
        return env_state

    def env_step(self, env_state, action, context):
        a = jnp.clip(action[0], -1.0, 1.0)
        x_next = jnp.clip(env_state[0] + a, -self.bound, self.bound)
        reward = -jnp.square(x_next - context[0])
        nxt = x_next[None].astype(jnp.float32)
        return nxt, nxt, reward, jnp.zeros((), bool)


# ---------------------------------------------------------------- the goal distribution
def _power(power: Any, where: str) -> float:
    return checks.real(power, f"{where}: `power`", low=0.0, low_open=True)


def sample_goals(key: jax.Array, num: int, power: float = 2.0) -> jax.Array:
    """``(num, 1)`` float32 goals ``g = 2 u^power - 1``, ``u ~ U[0, 1]`` (``power > 0``; 1: uniform)."""
    checks.prng_key(key, "sample_goals: `key`")
    num = checks.integer(num, "sample_goals: `num`", low=1)
    power = _power(power, "sample_goals")
    u = jax.random.uniform(key, (num, 1), jnp.float32)
    return 2.0 * u ** power - 1.0


def goal_quantiles(num: int, power: float = 2.0) -> np.ndarray:
    """``(num, 1)`` float32: the quantiles ``2 ((k + 1/2) / num)^power - 1``, k = 0..num-1, of
    :func:`sample_goals`'s distribution (a fixed held-out set)."""
    num = checks.integer(num, "goal_quantiles: `num`", low=1)
    power = _power(power, "goal_quantiles")
    q = (np.arange(num, dtype=np.float64) + 0.5) / num
    return (2.0 * q ** power - 1.0)[:, None].astype(np.float32)


def goal_mean(power: float = 2.0) -> float:
    """Mean of :func:`sample_goals`'s distribution: ``2 / (p + 1) - 1``."""
    p = _power(power, "goal_mean")
    return 2.0 / (p + 1.0) - 1.0


def goal_variance(power: float = 2.0) -> float:
    """Variance of :func:`sample_goals`'s distribution: ``4 (1 / (2p + 1) - 1 / (p + 1)^2)``."""
    p = _power(power, "goal_variance")
    return 4.0 * (1.0 / (2.0 * p + 1.0) - 1.0 / (p + 1.0) ** 2)


# ---------------------------------------------------------------- exact values (NumPy, float64)
def _goals(goals, name: str) -> np.ndarray:
    """``goals (..., n)`` (the last axis holds one set of goals) -> float64, finite, in [-1, 1], n >= 1."""
    g = checks.numeric_array(goals, f"`{name}`", finite=True).astype(np.float64)
    if g.ndim < 1 or g.shape[-1] < 1:
        raise ValueError(f"`{name}` must hold at least one goal on its last axis, got shape {np.shape(goals)}")
    if np.any(np.abs(g) > 1.0 + 1e-6):
        raise ValueError(f"`{name}` must lie in [-1, 1] (GoalLine's context space), got values in "
                         f"[{g.min():g}, {g.max():g}]")
    return g


def blind_return(positions, goals) -> np.ndarray:
    """Mean return over ``goals (..., m)`` of the blind trajectory ``positions (..., H)``
    (``x_1..x_H``; leading axes broadcast): ``-sum_t (x_t - hbar)^2 - H var(h)``, eq. (1)."""
    x = checks.numeric_array(positions, "`positions`", finite=True).astype(np.float64)
    h = _goals(goals, "goals")
    hbar, var = h.mean(-1), h.var(-1)
    return -np.sum(np.square(x - hbar[..., None]), -1) - x.shape[-1] * var


def blind_regret(positions, goals) -> np.ndarray:
    """Regret on ``goals (..., m)`` of the blind trajectory ``positions (..., H)`` against the best
    blind policy for those goals: ``sum_t (x_t - hbar)^2``."""
    x = checks.numeric_array(positions, "`positions`", finite=True).astype(np.float64)
    hbar = _goals(goals, "goals").mean(-1)
    return np.sum(np.square(x - hbar[..., None]), -1)


def best_blind_positions(train_goals, horizon: int) -> np.ndarray:
    """``(..., H)``: the trajectory of the best blind policy on ``train_goals (..., n)``: ``x_t = gbar``."""
    horizon = checks.integer(horizon, "best_blind_positions: `horizon`", low=1)
    gbar = _goals(train_goals, "train_goals").mean(-1)
    return np.repeat(gbar[..., None], horizon, -1)


def best_blind_value(train_goals, eval_goals, horizon: int) -> np.ndarray:
    """Held-out value of the best blind policy of ``train_goals (..., n)`` on ``eval_goals (m,)``:
    ``-H ((gbar - hbar)^2 + var(h))``."""
    return blind_return(best_blind_positions(train_goals, horizon), eval_goals)


def sl_regret(train_goals, eval_goals, horizon: int) -> np.ndarray:
    """The generalisation ("SL") regret alone: ``H (gbar - hbar)^2`` (exact, no learning error)."""
    return blind_regret(best_blind_positions(train_goals, horizon), eval_goals)


def population_optimum(eval_goals, horizon: int) -> float:
    """The best value of any blind policy on ``eval_goals (m,)``: ``-H var(h)`` (at ``x_t = hbar``)."""
    horizon = checks.integer(horizon, "population_optimum: `horizon`", low=1)
    return float(-horizon * _goals(eval_goals, "eval_goals").var(-1))


# ---------------------------------------------------------------- trajectories of blind policies
def blind_positions(env: GoalLine, act: Callable[[Any, jax.Array], jax.Array], params: Any) -> jax.Array:
    """``(H,)`` positions ``x_1..x_H`` of the deterministic blind policy
    ``act(params, x (1,)) -> action (1,)`` from the start (jittable, vmappable over ``params``).
    The dynamics do not depend on the goal, so this is the trajectory in every context."""
    if not isinstance(env, GoalLine):
        raise ValueError(f"blind_positions: `env` must be a GoalLine, got {type(env).__name__}")
    ctx = env.default_context()

    def body(x, _):
        x, _, _, _ = env.env_step(x, act(params, x), ctx)
        return x, x[0]

    _, xs = jax.lax.scan(body, env.init_env_state(None, ctx), None, length=env.horizon)
    return xs
