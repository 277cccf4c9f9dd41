"""SimpleDirection (CSE paper): move a point along the context direction.

State ``s in R^2``, action ``a in [-1, 1]^2``, context ``c in [-1, 1]^2``:
``s' = s + a + c``, ``r = s' . c``, ``s0 ~ U[-1, 1]^2``, horizon 10.
At the default context ``c = (0, 0)`` the reward is zero everywhere, so a policy
trained there alone learns nothing about other contexts: the test bed for CSE.

The optimum is known in closed form: ``s_t = s_0 + sum_{k<t} (a_k + c)``, so each
action adds ``a . c`` to every later reward and ``a = sign(c)`` (``a . c = |c|_1``)
is optimal at every step; with ``E[s_0] = 0`` the expected return is
``H (H + 1) / 2 * (|c|_1 + |c|_2^2)`` (:meth:`SimpleDirection.optimal_return`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from zsgjax.envs.base import ContextualEnv
from zsgjax.envs.context import ContextSpace


class SimpleDirection(ContextualEnv):
    context_space = ContextSpace(("c_x", "c_y"), low=(-1.0, -1.0), high=(1.0, 1.0), default=(0.0, 0.0))
    horizon = 10
    state_obs_size = 2
    eval_contexts = {
        "(0,0)": (0.0, 0.0),
        "(0.8,0.8)": (0.8, 0.8),
        "(0.8,-0.8)": (0.8, -0.8),
        "(-0.8,0.8)": (-0.8, 0.8),
        "(-0.8,-0.8)": (-0.8, -0.8),
    }

    @property
    def action_size(self) -> int:
        return 2

    def init_env_state(self, rng, context):
        return jax.random.uniform(rng, (2,), minval=-1.0, maxval=1.0)

    def observe(self, env_state, context):
        return env_state

    def env_step(self, env_state, action, context):
        a = jnp.clip(action, -1.0, 1.0)
        next_s = env_state + a + context
        reward = jnp.dot(next_s, context)
        return next_s, next_s, reward, jnp.zeros((), dtype=bool)

    def optimal_return(self, context) -> float:
        """``H (H + 1) / 2 * (|c|_1 + |c|_2^2)``: the return of ``a = sign(c)`` at every step, in expectation over ``s_0``."""
        c = np.asarray(context, np.float64).reshape(-1)
        if c.shape != (self.context_dim,) or not np.all(np.isfinite(c)):
            raise ValueError(f"SimpleDirection.optimal_return: `context` must be {self.context_dim} finite values "
                             f"(c_x, c_y), got {np.asarray(context).tolist()}")
        return self.horizon * (self.horizon + 1) / 2.0 * float(np.abs(c).sum() + c @ c)
