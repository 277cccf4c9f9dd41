"""DirectionTask: move a point along a d-dimensional context direction (reward-only context).

``make("context_dim_direction", dim=d)``. State ``s in R^d``, action ``a in [-1, 1]^d``
(clipped), context ``c in [-1, 1]^d`` (default ``0``)::

    s' = s + a,    r = c . s',    s0 ~ U[-1, 1]^d,    horizon 10, no termination.

The context enters the reward only: ``d s'/dc = 0`` and ``d r/dc = s'``, so CSE's
first-order enhancement of a reward is exact here. The reward is a sum over the ``d``
components (each one a copy of the 1-D task), so rewards and a SAC agent's entropy both
grow with ``d``; divide returns by ``d`` to compare dimensions. At the default context
the reward is zero everywhere (as in ``simple_direction``, the ``d = 2`` task whose
context also moves the state).

Optimum in closed form: ``s_t = s_0 + sum_{k<t} a_k``, so action ``a_k`` adds
``a_k . c`` to each of the ``H - k`` later rewards and ``a = sign(c)`` is optimal at
every step (for every discount); with ``E[s_0] = 0`` the expected return is
``H (H + 1) / 2 * |c|_1`` (:meth:`DirectionTask.optimal_return`), whose mean over
contexts uniform on the box is ``d H (H + 1) / 4 = 27.5 d``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from zsgjax.envs.dimension import DimensionFamily

HORIZON = 10


class DirectionTask(DimensionFamily):
    """``make('context_dim_direction', dim=d)``: the reward is the progress along the direction ``c``.

    Args:
      dim: context dimension ``d`` (also the state and action dimension), an integer in
        ``[1, 256]``; default 2.

    Raises:
      ValueError: ``dim`` is not such an integer.
    """

    horizon = HORIZON

    def __init__(self, dim: int = 2):
        self._init_family(dim, low=-1.0, high=1.0, default=0.0,
                          eval_pairs={"0": (0.0, 0.0), "+0.8": (0.8, 0.8), "-0.8": (-0.8, -0.8),
                                      "+-0.8": (0.8, -0.8)})

    def env_step(self, env_state, action, context):
        """``env_state (d,)``, ``action (d,)``, ``context (d,)`` -> ``(s' (d,), s' (d,), r (), False)``."""
        next_s = env_state + jnp.clip(action, -1.0, 1.0)
        reward = jnp.dot(next_s, context)
        return next_s, next_s, reward, jnp.zeros((), dtype=bool)

    def optimal_return(self, context) -> float:
        """``H (H + 1) / 2 * |c|_1``: the return of ``a = sign(c)`` at every step, in expectation over ``s_0``."""
        c = self._context_values(context, "optimal_return")
        return self.horizon * (self.horizon + 1) / 2.0 * float(np.abs(c).sum())
