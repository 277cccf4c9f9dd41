"""Context sample enhancement (CSE, arXiv 2507.07348): replayed transitions moved to a nearby context.

Episodes run at the training context. Every replay batch has its first
``round(ratio * N)`` samples (the batch is uniform, so any subset is as good)
replaced by their enhanced versions at ``c + delta_c`` with ``delta_c = clip(c + eps
u) - c``, ``u`` uniform on the unit sphere (:mod:`zsgjax.context_gradients`):

* ``mode="first_order"`` with ``storage="jacobian"``: each step stores the context
  Jacobian (``jax.jacfwd``, ``dim`` tangents), ``delta_c`` is redrawn at every replay;
* ``mode="first_order"`` with ``storage="jvp"``: each step stores one directional
  derivative (``jax.jvp``) along a ``delta_c`` drawn at insertion;
* ``mode="first_order"`` with ``storage="auto"`` (the default): ``jvp`` where the
  context enters the physics (an environment whose ``physical_context_dim > 0``,
  the MJX environments with physical features: there the Jacobian costs a tangent
  pass through the physics per context dimension), ``jacobian`` elsewhere
  (reward-only or analytic contexts and one-dimensional contexts, where the
  Jacobian costs about what one ``jvp`` does and ``delta_c`` is redrawn at every
  replay); :func:`resolve_storage`;
* ``mode="exact"``: each step stores its pre-step physics state and the transition
  is recomputed at ``c + delta_c`` at replay (the paper's ``--cse 2``).

Enhanced samples whose derivatives (or recomputed transition) are not finite get
weight 0 and are counted.

On a stochastic environment (:mod:`zsgjax.envs.stochastic`: the PRNG key lives in
the environment state) the derivatives are taken with the step's noise fixed, the
reparameterisation (transport-map) derivative, and the exact mode replays the same
noise. ``noise_gradient="ignore"`` (first-order only) holds the noise's
context-dependent scale constant instead: the ablation that moves the next state's
mean with the context but not its spread; on a deterministic environment it is an
error (there is no noise to ignore).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from zsgjax import context_gradients
from zsgjax.configs import field_check, param
from zsgjax.envs.stochastic import NOISE_GRADIENTS, differentiated_env
from zsgjax.methods import enhancement
from zsgjax.methods.base import Method, valid_weight
from zsgjax.methods.registry import register
from zsgjax.methods.settings import OMIT_AT_DEFAULT

MODES = ("first_order", "exact")
STORAGES = ("auto", "jacobian", "jvp")


def resolve_storage(storage: str, env) -> str:
    """The storage actually used for ``env``: ``storage`` itself unless it is ``"auto"``.

    ``"auto"`` gives ``"jvp"`` when ``env.physical_context_dim`` (``0`` when the
    attribute is missing) is positive and the context has more than one dimension,
    else ``"jacobian"``.
    """
    field_check(CSE, "storage").require("resolve_storage: `storage`", storage)
    if storage != "auto":
        return storage
    physical = int(getattr(env, "physical_context_dim", 0))
    return "jvp" if physical > 0 and env.context_space.dim > 1 else "jacobian"


@register
@dataclasses.dataclass(frozen=True)
class CSE(Method):
    """Context sample enhancement; ``storage="auto"`` is resolved per environment by
    :func:`resolve_storage`."""

    name = "cse"
    epsilon: float = param(0.1, low=0.0, low_open=True, help="step size of the context perturbation (its norm)")
    mode: str = param("first_order", kind=str, choices=MODES,
                      help="first_order: Taylor step from stored derivatives; exact: recompute the step")
    storage: str = param("auto", kind=str, choices=STORAGES,
                         help="first_order's stored derivatives: the Jacobian, one jvp, or auto per environment")
    ratio: float = param(1.0, low=0.0, high=1.0, help="share of each replay batch that is enhanced")
    noise_gradient: str = param("reparameterised", kind=str, choices=NOISE_GRADIENTS, meta={OMIT_AT_DEFAULT: True},
                                help="stochastic environments: differentiate the noise's context-dependent scale "
                                     "with the noise fixed (reparameterised) or hold it constant (ignore; "
                                     "first_order only)")

    def __post_init__(self):
        super().__post_init__()
        if self.noise_gradient != "reparameterised" and self.mode == "exact":
            raise ValueError(f"CSE.noise_gradient={self.noise_gradient!r} changes context derivatives and "
                             "mode='exact' takes none (it recomputes the step, replaying its noise); "
                             "use mode='first_order' or noise_gradient='reparameterised'")

    def describe(self, space) -> str:
        return Method.describe(self, space) + self.enhancement_note()

    def enhancement_note(self) -> str:
        """What CSE adds to where episodes run: the replayed samples it moves."""
        return (f"; {self.ratio:.0%} of each replay batch moved to contexts a step of norm {self.epsilon:g} away "
                f"(context sample enhancement, {self.mode.replace('_', '-')})")

    def check(self, batch_size: int) -> None:
        if self.ratio > 0 and round(self.ratio * batch_size) == 0:
            raise ValueError(
                f"TrainConfig.cse_ratio * batch_size must round to >= 1 enhanced sample, got {self.ratio} * {batch_size}"
            )

    # ------------------------------------------------------------ collection
    def collect(self, env, env_state, action, context, rng):
        if self.mode == "exact":
            return env.env_step(env_state, action, context), env_state
        env = differentiated_env(env, self.noise_gradient)
        if resolve_storage(self.storage, env) == "jacobian":
            return context_gradients.step_and_jacobian(env, env_state, action, context)
        delta_c = enhancement.draw_context_step(rng, context, env.context_space, self.epsilon)
        return context_gradients.step_and_jvp(env, env_state, action, context, delta_c)

    # --------------------------------------------------------------- replay
    def enhance(self, env, items, rng):
        """Every sample of ``items`` (leading ``N``) enhanced: ``(Transition, valid (N,))``."""
        transition = items.transition
        n = transition.reward.shape[0]
        keys = jax.random.split(rng, n)
        space = env.context_space
        if self.mode == "first_order" and resolve_storage(self.storage, env) == "jvp":
            return jax.vmap(enhancement.enhance_with_directional)(transition, items.extras)
        delta_c = jax.vmap(lambda k, c: enhancement.draw_context_step(k, c, space, self.epsilon))(keys, transition.context)
        if self.mode == "exact":
            return jax.vmap(lambda s, t, d: enhancement.enhance_exact(env, s, t, d))(items.extras, transition, delta_c)
        return jax.vmap(enhancement.enhance_with_jacobian)(transition, items.extras, delta_c)

    def training_batch(self, env, items, rng):
        transition = items.transition
        n = transition.reward.shape[0]
        enhanced, valid = self.enhance(env, items, rng)
        chosen = jnp.arange(n) < round(self.ratio * n)
        batch = jax.tree.map(
            lambda e, o: jnp.where(chosen.reshape((n,) + (1,) * (e.ndim - 1)), e, o), enhanced, transition
        )
        dropped = chosen & ~valid
        weight = jnp.where(dropped, 0.0, 1.0).astype(jnp.float32) * valid_weight(items)
        return batch, weight, dropped.sum().astype(jnp.int32)
