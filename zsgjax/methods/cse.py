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

Where first-order derivatives come from (``gradients``, :func:`step_with_derivatives`):
``"autodiff"`` (the default: ``jax.jacfwd`` / ``jax.jvp`` through the step) or
``"fd"``: central finite differences of the step (``2 * dim`` extra steps for the
Jacobian, 2 for a jvp, vmapped; ``fd_step`` is the offset as a fraction of each
context dimension's range, one-sided at the space's bounds), for steps that JAX
cannot differentiate. ``gradient_noise > 0`` corrupts either by relative Gaussian
noise, ``g + gradient_noise * ||g|| * xi / sqrt(g.size)``
(:func:`zsgjax.context_gradients.add_relative_noise`), for sensitivity studies.

On a stochastic environment (:mod:`zsgjax.envs.stochastic`: the PRNG key lives in
the environment state) the derivatives are taken with the step's noise fixed, the
reparameterisation (transport-map) derivative, and the exact mode replays the same
noise. ``noise_scale_gradient="ignore"`` (first-order only) holds the noise's
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
from zsgjax.envs.stochastic import NOISE_SCALE_GRADIENTS, differentiated_env
from zsgjax.methods import enhancement
from zsgjax.methods.base import Method, valid_weight
from zsgjax.methods.registry import register
from zsgjax.methods.settings import OMIT_AT_DEFAULT

MODES = ("first_order", "exact")
STORAGES = ("auto", "jacobian", "jvp")
GRADIENT_SOURCES = ("autodiff", "fd")


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


def step_with_derivatives(env, env_state, action, context, delta_c, gradients: str = "autodiff",
                          fd_step: float = 0.01):
    """One step and its context derivatives from the source ``gradients`` (:data:`GRADIENT_SOURCES`).

    ``delta_c=None``: the Jacobian (:class:`~zsgjax.types.ContextGradients`); a ``(dim,)``
    step: the derivative along it (:class:`~zsgjax.types.DirectionalGradients`).
    Returns ``((next_env_state, next_state_obs, reward, terminated), gradients)``.
    ``ValueError`` suggesting ``gradients="fd"`` where autodiff cannot go through the step.
    """
    field_check(CSE, "gradients").require("step_with_derivatives: `gradients`", gradients)
    if gradients == "fd":
        if delta_c is None:
            return context_gradients.step_and_fd_jacobian(env, env_state, action, context, fd_step)
        return context_gradients.step_and_fd_jvp(env, env_state, action, context, delta_c, fd_step)
    try:
        if delta_c is None:
            return context_gradients.step_and_jacobian(env, env_state, action, context)
        return context_gradients.step_and_jvp(env, env_state, action, context, delta_c)
    except (ValueError, TypeError, NotImplementedError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"CSE could not differentiate {type(env).__name__}'s step with autodiff ({first}); for a step "
                         "JAX cannot differentiate use finite differences: gradients='fd' (--cse-gradients fd)") from e


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
    # ---- gradient source (first_order): autodiff, finite differences, injected noise
    gradients: str = param("autodiff", kind=str, choices=GRADIENT_SOURCES, meta={OMIT_AT_DEFAULT: True},
                           help="first_order's derivatives: autodiff (jacfwd/jvp) or fd (central finite differences "
                                "of the step, for steps JAX cannot differentiate)")
    fd_step: float = param(0.01, low=0.0, low_open=True, high=0.5, meta={OMIT_AT_DEFAULT: True},
                           help="gradients=fd: offset of the difference points, a fraction of each context "
                                "dimension's range (one-sided at its bounds)")
    gradient_noise: float = param(0.0, low=0.0, meta={OMIT_AT_DEFAULT: True},
                                  help="relative RMS noise added to the stored derivatives: g + s*||g||*xi/sqrt(size), "
                                       "xi ~ N(0, I) (0: none)")

    # ---- stochastic environments: how the noise's context-dependent scale is differentiated
    noise_scale_gradient: str = param("reparameterised", kind=str, choices=NOISE_SCALE_GRADIENTS,
                                      meta={OMIT_AT_DEFAULT: True},
                                      help="stochastic environments: differentiate the noise's context-dependent "
                                           "scale with the noise fixed (reparameterised) or hold it constant (ignore; "
                                           "first_order only)")

    def __post_init__(self):
        super().__post_init__()
        derivative_settings = {"gradients": "autodiff", "gradient_noise": 0.0, "noise_scale_gradient": "reparameterised"}
        changed = [f"CSE.{f}={getattr(self, f)!r}" for f, default in derivative_settings.items()
                   if getattr(self, f) != default]
        if self.mode == "exact" and changed:
            raise ValueError(f"{', '.join(changed)} changes context derivatives and mode='exact' takes none (it "
                             "recomputes the step at c + delta_c, replaying its noise): use mode='first_order'")

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
        env = differentiated_env(env, self.noise_scale_gradient)
        if resolve_storage(self.storage, env) == "jacobian":
            delta_c = None
        else:
            delta_c = enhancement.draw_context_step(rng, context, env.context_space, self.epsilon)
        out, grads = step_with_derivatives(env, env_state, action, context, delta_c, self.gradients, self.fd_step)
        return out, context_gradients.add_relative_noise(jax.random.fold_in(rng, 1), grads, self.gradient_noise)

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
