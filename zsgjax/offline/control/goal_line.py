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

``GoalLine(reward="abs")``: ``r = -|x' - g|``. The same argument with
``(1/n) sum_i -|x_t - g_i|`` per step: the best blind policy moves to a median of the
goals (:func:`goal_center`: the midpoint of the two middle goals for even n) and its
regret on held-out goals is ``sum_t (L(x_t) - L(median_h))``, ``L(y) = mean_j |y - h_j|``.
For goals with a density this is still quadratic near the median (``L'' = 2 f``), so the
SL error still falls as 1/n; it is linear in the decision error where the goal law has
atoms: on the two-point law ``P(g = +1) = p``, ``P(g = -1) = 1 - p`` a blind target
``y`` loses ``H |2p - 1| |y - sign(2p - 1)|`` (:func:`two_point_sl_regret`: the exact
expected SL error; with ``p = 1/2 + kappa / (2 sqrt(n))`` it falls as 1/sqrt(n)).

Every exact function takes ``reward`` (``"square"`` or ``"abs"``) and optional
``weights`` of the goals (non-negative, a weighted mean / median; used for held-out
laws with unequal atoms and for importance-weighted training goals).

The goal distribution of the experiments: ``g = 2 u^p - 1``, ``u ~ U[0, 1]``
(:func:`sample_goals`; ``p = 2``: skewed to the left, mean -1/3, variance 16/45), with
:func:`goal_quantiles`, :func:`goal_mean`, :func:`goal_variance`, :func:`goal_density`
(:func:`goal_density_ratio`: importance weights) in closed form; :func:`sample_two_point_goals`
draws the two-point law.
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


REWARDS = ("square", "abs")


def _reward_kind(reward: Any, where: str) -> str:
    if reward not in REWARDS:
        raise ValueError(f"{where}: `reward` must be one of {', '.join(map(repr, REWARDS))}, got {reward!r}")
    return reward


class GoalLine(ContextualEnv):
    """See the module docstring. ``GoalLine(horizon=10, bound=2.0, reward="square")``:
    ``horizon >= 1`` an integer, ``bound >= 1`` (so every goal in [-1, 1] is reachable in
    one step), ``reward`` ``"square"`` (``-(x' - g)^2``) or ``"abs"`` (``-|x' - g|``)."""

    context_space = ContextSpace(("g",), low=(-1.0,), high=(1.0,), default=(0.0,))
    horizon = 10
    state_obs_size = 1
    eval_contexts = {"g=-1": (-1.0,), "g=0": (0.0,), "g=1": (1.0,)}

    def __init__(self, horizon: int = 10, bound: float = 2.0, reward: str = "square"):
        horizon = checks.integer(horizon, "GoalLine: `horizon`", low=1)
        bound = checks.real(bound, "GoalLine: `bound` (every goal in [-1, 1] must be reachable in one step)", low=1.0)
        self.horizon = int(horizon)
        self.bound = float(bound)
        self.reward = _reward_kind(reward, "GoalLine")

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
        gap = x_next - context[0]
        reward = -(jnp.square(gap) if self.reward == "square" else jnp.abs(gap))
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


def goal_density(goals, power: float = 2.0) -> np.ndarray:
    """Density of :func:`sample_goals`'s law at ``goals`` (in [-1, 1]; float64):
    ``z^(1/p - 1) / (2p)``, ``z = (g + 1) / 2`` (``g = 2 u^p - 1``). The ratio
    ``goal_density(g, p_test) / goal_density(g, p_train)`` is the importance weight of a
    training goal drawn with ``p_train`` for the test law ``p_test``."""
    p = _power(power, "goal_density")
    g = checks.numeric_array(goals, "goal_density: `goals`", finite=True).astype(np.float64)
    if np.any(np.abs(g) > 1.0 + 1e-6):
        raise ValueError(f"goal_density: `goals` must lie in [-1, 1], got values in [{g.min():g}, {g.max():g}]")
    z = np.clip((g + 1.0) / 2.0, 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return np.power(z, 1.0 / p - 1.0) / (2.0 * p)


def goal_density_ratio(goals, test_power: float, train_power: float) -> np.ndarray:
    """Importance weights ``goal_density(g, test_power) / goal_density(g, train_power)`` of training goals
    drawn with ``train_power``, in the closed form ``(q / p) z^(1/p - 1/q)`` (``p`` test, ``q`` train,
    ``z = (g + 1) / 2``), finite at ``g = -1`` where both densities are (float32 goals reach -1 exactly)."""
    p, q = _power(test_power, "goal_density_ratio: `test_power`"), _power(train_power, "goal_density_ratio")
    g = checks.numeric_array(goals, "goal_density_ratio: `goals`", finite=True).astype(np.float64)
    if np.any(np.abs(g) > 1.0 + 1e-6):
        raise ValueError(f"goal_density_ratio: `goals` must lie in [-1, 1], got values in [{g.min():g}, {g.max():g}]")
    z = np.clip((g + 1.0) / 2.0, 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return (q / p) * np.power(z, 1.0 / p - 1.0 / q)


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


def _weights(weights, goals: np.ndarray, name: str) -> np.ndarray:
    """Normalised weights ``(..., n)`` (sum 1 on the last axis) of ``goals``; ``None``: equal."""
    if weights is None:
        return np.full(goals.shape, 1.0 / goals.shape[-1])
    w = checks.numeric_array(weights, f"`{name}`", finite=True).astype(np.float64)
    try:
        w = np.broadcast_to(w, goals.shape)
    except ValueError:
        raise ValueError(f"`{name}` must broadcast to the goals' shape {goals.shape}, got shape {np.shape(weights)}") \
            from None
    if np.any(w < 0) or np.any(w.sum(-1) <= 0):
        raise ValueError(f"`{name}` must be >= 0 with a positive sum over each set of goals")
    return w / w.sum(-1, keepdims=True)


def _loss(x: np.ndarray, h: np.ndarray, w: np.ndarray, reward: str) -> np.ndarray:
    """``L(x) = sum_j w_j loss(x - h_j)`` for positions ``x (..., T)`` and goals ``h, w (..., m)``: ``(..., T)``."""
    gap = x[..., :, None] - h[..., None, :]
    per = np.square(gap) if reward == "square" else np.abs(gap)
    return np.sum(per * w[..., None, :], -1)


def goal_center(goals, reward: str = "square", weights=None) -> np.ndarray:
    """``(...)``: the best blind target of ``goals (..., n)``, the minimiser of ``sum_j w_j loss(y - g_j)``:
    the (weighted) mean for ``"square"``; for ``"abs"`` the midpoint of the (weighted) medians
    (the interval of minimisers: ``np.median`` for equal weights)."""
    reward = _reward_kind(reward, "goal_center")
    g = _goals(goals, "goals")
    w = _weights(weights, g, "weights")
    if reward == "square":
        return np.sum(w * g, -1)
    order = np.argsort(g, -1)
    gs, cw = np.take_along_axis(g, order, -1), np.cumsum(np.take_along_axis(w, order, -1), -1)
    tol = 1e-12
    lower = np.take_along_axis(gs, np.argmax(cw >= 0.5 - tol, -1)[..., None], -1)[..., 0]
    upper = np.take_along_axis(gs, np.argmax(cw > 0.5 + tol, -1)[..., None], -1)[..., 0]
    return 0.5 * (lower + upper)


def blind_return(positions, goals, reward: str = "square", weights=None) -> np.ndarray:
    """(Weighted) mean return over ``goals (..., m)`` of the blind trajectory ``positions (..., H)``
    (``x_1..x_H``; leading axes broadcast): ``-sum_t L(x_t)``; for ``"square"`` this is
    ``-sum_t (x_t - hbar)^2 - H var(h)``, eq. (1)."""
    reward = _reward_kind(reward, "blind_return")
    x = checks.numeric_array(positions, "`positions`", finite=True).astype(np.float64)
    h = _goals(goals, "goals")
    w = _weights(weights, h, "weights")
    lead = np.broadcast_shapes(x.shape[:-1], h.shape[:-1])
    x = np.broadcast_to(x, lead + x.shape[-1:])
    h, w = np.broadcast_to(h, lead + h.shape[-1:]), np.broadcast_to(w, lead + h.shape[-1:])
    return -np.sum(_loss(x, h, w, reward), -1)


def population_optimum(eval_goals, horizon: int, reward: str = "square", weights=None) -> np.ndarray:
    """The best value of any blind policy on ``eval_goals (..., m)``: ``-H L(center)``
    (``-H var(h)`` for ``"square"``); a float for one set of goals."""
    horizon = checks.integer(horizon, "population_optimum: `horizon`", low=1)
    h = _goals(eval_goals, "eval_goals")
    center = goal_center(h, reward, weights)
    value = blind_return(np.repeat(center[..., None], horizon, -1), h, reward, weights)
    return float(value) if np.ndim(value) == 0 else value


def blind_regret(positions, goals, reward: str = "square", weights=None) -> np.ndarray:
    """Regret on ``goals (..., m)`` of the blind trajectory ``positions (..., H)`` against the best
    blind policy for those goals: ``sum_t (L(x_t) - L(center))``; ``sum_t (x_t - hbar)^2`` for ``"square"``."""
    x = checks.numeric_array(positions, "`positions`", finite=True)
    return population_optimum(goals, np.shape(x)[-1], reward, weights) - blind_return(x, goals, reward, weights)


def best_blind_positions(train_goals, horizon: int, reward: str = "square", weights=None) -> np.ndarray:
    """``(..., H)``: the trajectory of the best blind policy on ``train_goals (..., n)`` (weighted by
    ``weights``): ``x_t = goal_center(train_goals)`` (reached in the first step)."""
    horizon = checks.integer(horizon, "best_blind_positions: `horizon`", low=1)
    center = goal_center(_goals(train_goals, "train_goals"), reward, weights)
    return np.repeat(center[..., None], horizon, -1)


def best_blind_value(train_goals, eval_goals, horizon: int, reward: str = "square", weights=None) -> np.ndarray:
    """Held-out value of the best blind policy of ``train_goals (..., n)`` (training ``weights``) on
    ``eval_goals (m,)``: ``-H ((gbar - hbar)^2 + var(h))`` for ``"square"``."""
    return blind_return(best_blind_positions(train_goals, horizon, reward, weights), eval_goals, reward)


def sl_regret(train_goals, eval_goals, horizon: int, reward: str = "square", weights=None,
              eval_weights=None) -> np.ndarray:
    """The generalisation ("SL") regret alone (exact, no learning error): the held-out regret on
    ``eval_goals`` (``eval_weights``) of the best blind policy of ``train_goals`` (``weights``);
    ``H (gbar - hbar)^2`` for ``"square"``."""
    return blind_regret(best_blind_positions(train_goals, horizon, reward, weights), eval_goals, reward, eval_weights)


# ---------------------------------------------------------------- the two-point law (reward "abs")
def two_point_probability(num_envs: int, kappa: float) -> float:
    """``P(g = +1) = 1/2 + kappa / (2 sqrt(n))`` (``0 < kappa <= 1``): the two-point law whose margin
    ``2p - 1 = kappa / sqrt(n)`` shrinks with the number of training environments n."""
    n = checks.integer(num_envs, "two_point_probability: `num_envs`", low=1)
    kappa = checks.real(kappa, "two_point_probability: `kappa`", low=0.0, high=1.0, low_open=True)
    return 0.5 + kappa / (2.0 * math.sqrt(n))


def sample_two_point_goals(key: jax.Array, num: int, p_plus: float) -> jax.Array:
    """``(num, 1)`` float32 goals: ``+1`` with probability ``p_plus``, else ``-1``."""
    checks.prng_key(key, "sample_two_point_goals: `key`")
    num = checks.integer(num, "sample_two_point_goals: `num`", low=1)
    p_plus = checks.real(p_plus, "sample_two_point_goals: `p_plus`", low=0.0, high=1.0)
    return jnp.where(jax.random.bernoulli(key, p_plus, (num, 1)), 1.0, -1.0).astype(jnp.float32)


def two_point_sl_regret(num_envs: int, p_plus: float, horizon: int) -> float:
    """Exact expected SL regret, reward ``"abs"``, training and held-out goals from the two-point law.

    With ``K ~ Bin(n, p)`` training goals at +1 the best blind target is +1 (K > n/2), -1
    (K < n/2) or 0 (a tie); a target ``y`` loses ``H |2p - 1| |y - y*|`` against
    ``y* = sign(2p - 1)``, so the mean loss is ``H |2p - 1| (2 P(wrong majority) + P(tie))``.
    """
    n = checks.integer(num_envs, "two_point_sl_regret: `num_envs`", low=1)
    p = checks.real(p_plus, "two_point_sl_regret: `p_plus`", low=0.0, high=1.0)
    horizon = checks.integer(horizon, "two_point_sl_regret: `horizon`", low=1)
    q = max(p, 1.0 - p)  # the probability of the majority atom
    k = np.arange(n + 1)
    pmf = np.exp(_log_binom(n, k) + k * np.log(q) + (n - k) * np.log1p(-q)) if 0.0 < q < 1.0 \
        else (k == n).astype(np.float64)
    wrong, tie = pmf[2 * k < n].sum(), pmf[2 * k == n].sum()
    return float(horizon * abs(2.0 * p - 1.0) * (2.0 * wrong + tie))


def _log_binom(n: int, k: np.ndarray) -> np.ndarray:
    from scipy.special import gammaln

    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


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
