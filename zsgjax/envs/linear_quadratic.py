"""LinearQuadratic: d decoupled linear systems whose d physical parameters are the context.

``make("context_dim_lq", dim=d)``. State ``x in R^d``, action ``u in [-2, 2]^d``
(clipped), context ``c in [0.5, 1.5]^d`` (the open-loop gains; default ``1``)::

    x' = clip(c * x + u, -5, 5)   (elementwise),    r = -(|x'|^2 + |u|^2),
    x0 ~ U[-1, 1]^d,    horizon 20, no termination.

The context enters the dynamics (``d x'/dc = diag(x)`` where the clip is inactive), so
the context derivative of the reward passes through the next state. Systems with
``c > 1`` are open-loop unstable; the state clip keeps every rollout bounded (the
reward of a clipped state is at most ``-25`` per clipped component). The reward is a sum
over the ``d`` independent components: divide returns by ``d`` to compare dimensions.

Optimum in closed form (finite-horizon Riccati recursion, per component ``i``, the
reward taken on the next state)::

    p_H = 0,   q = 1 + p_{t+1},   p_t = c_i^2 q / (q + 1),   u_t = -c_i q / (q + 1) x_t

and the optimal expected return is ``-sum_i p_0(c_i) E[x0_i^2]`` with
``E[x0_i^2] = 1/3`` (:meth:`LinearQuadratic.optimal_return`). The clips never bind
on it: ``|u_t| <= c_i |x_t| <= 1.5`` and ``|x_{t+1}| = c_i |x_t| / (q + 1) <= 0.75 |x_t|``
from ``|x0| <= 1``; and a rollout that reaches a clipped state pays at least 25 on
that component, more than the optimum's whole cost ``p_0 x0^2 <= 1.7``, so the
clipped system has the same optimum. The optimal gain changes with ``t`` only in the
last few steps; the best stationary gain (all a policy without the time in its
observation can be) falls short of the optimum by less than 1e-8 per component
(measured over ``c`` in ``{0.5, 1, 1.5}`` by a search over the gain).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from zsgjax.envs.dimension import DimensionFamily

HORIZON = 20
GAIN_LOW, GAIN_DEFAULT, GAIN_HIGH = 0.5, 1.0, 1.5
MAX_ACTION = 2.0
MAX_STATE = 5.0
INITIAL_SECOND_MOMENT = 1.0 / 3.0  # E[x0^2] for x0 ~ U[-1, 1]


def riccati_costs(gains, horizon: int = HORIZON) -> tuple[np.ndarray, np.ndarray]:
    """The finite-horizon Riccati recursion of ``x' = c x + u``, ``r = -(x'^2 + u^2)``, per gain.

    ``gains``: ``(...)`` open-loop gains ``c``. Returns ``(p (horizon + 1, ...), k (horizon, ...))``
    in float64: the optimal value from step ``t`` is ``-p[t] x^2`` and the optimal action
    ``u_t = -k[t] x_t``.
    """
    c = np.asarray(gains, np.float64)
    p = np.zeros((horizon + 1, *c.shape))
    k = np.zeros((horizon, *c.shape))
    for t in range(horizon - 1, -1, -1):
        q = 1.0 + p[t + 1]
        p[t] = c**2 * q / (q + 1.0)
        k[t] = c * q / (q + 1.0)
    return p, k


class LinearQuadratic(DimensionFamily):
    """``make('context_dim_lq', dim=d)``: regulate ``d`` scalar systems ``x_i' = c_i x_i + u_i`` to 0.

    Args:
      dim: context dimension ``d`` (also the state and action dimension), an integer in
        ``[1, 256]``; default 2.

    Raises:
      ValueError: ``dim`` is not such an integer.
    """

    horizon = HORIZON

    def __init__(self, dim: int = 2):
        self._init_family(dim, low=GAIN_LOW, high=GAIN_HIGH, default=GAIN_DEFAULT,
                          eval_pairs={"1": (GAIN_DEFAULT, GAIN_DEFAULT), "0.5": (GAIN_LOW, GAIN_LOW),
                                      "1.5": (GAIN_HIGH, GAIN_HIGH), "0.5/1.5": (GAIN_LOW, GAIN_HIGH)})

    def env_step(self, env_state, action, context):
        """``env_state (d,)``, ``action (d,)``, ``context (d,)`` -> ``(x' (d,), x' (d,), r (), False)``."""
        u = jnp.clip(action, -MAX_ACTION, MAX_ACTION)
        next_x = jnp.clip(context * env_state + u, -MAX_STATE, MAX_STATE)
        reward = -(jnp.sum(next_x**2) + jnp.sum(u**2))
        return next_x, next_x, reward, jnp.zeros((), dtype=bool)

    def optimal_return(self, context) -> float:
        """``-sum_i p_0(c_i) / 3`` (:func:`riccati_costs`): the optimal expected return at ``context``."""
        c = self._context_values(context, "optimal_return")
        p, _ = riccati_costs(c, self.horizon)
        return float(-INITIAL_SECOND_MOMENT * p[0].sum())
