"""Context gradients: exact derivatives of one environment transition with respect to its context.

Everything here acts on **one** sample and is meant to be ``jax.vmap``-ed over a
batch. Two ways to get what context sample enhancement needs
(:mod:`zsgjax.methods.enhancement`):

* :func:`context_jacobian` / :func:`step_and_jacobian` -- the full Jacobian through
  ``jax.jacfwd`` (``context_dim`` forward tangents, batched);
* :func:`context_jvp` / :func:`step_and_jvp` -- one
  directional derivative through ``jax.jvp``, whatever the context dimension.

Both go through any :class:`~zsgjax.envs.base.ContextualEnv`: the analytic JAX
environments and MJX physics alike (MJX's constraint solver is differentiated by the
implicit function theorem, :mod:`zsgjax.envs.mjx.implicit`). ``d r/dc`` is the
*total* derivative of the environment's ``transition`` (it includes the path
through ``s'``).

Without autodiff, the same quantities (same return types) by **central finite
differences** of the pure step, for a step JAX cannot differentiate (a
``jax.pure_callback`` into NumPy or another simulator): :func:`fd_jacobian` /
:func:`step_and_fd_jacobian` (``2 * context_dim`` extra steps, one ``vmap``) and
:func:`fd_jvp` / :func:`step_and_fd_jvp` (2 extra steps). The step ``step`` is
*relative*: the difference points lie ``step * (high - low)`` away from ``c`` per
dimension (:func:`fd_points`), clipped into the context space, where the difference
becomes one-sided. :func:`add_relative_noise` corrupts exact derivatives by a set
relative amount (the sensitivity of CSE to gradient error).

Contact dynamics can produce non-finite derivatives (mujoco issue 1517):
:func:`gradients_finite` gives a validity flag per sample and :func:`finite_mask`
one per sample of any batched pytree.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from zsgjax.configs import Check
from zsgjax.envs.base import ContextualEnv, EnvState
from zsgjax.envs.context import ContextSpace
from zsgjax.types import ContextGradients, DirectionalGradients

FD_STEP = Check(kind=float, low=0.0, low_open=True, high=0.5)
"""Accepted finite-difference steps: a fraction of each context dimension's range in ``(0, 0.5]``."""
NOISE_LEVEL = Check(kind=float, low=0.0)
"""Accepted relative noise levels of :func:`add_relative_noise`: ``>= 0``."""


# --------------------------------------------------------------------- gradients
def context_jacobian(env: ContextualEnv, env_state: EnvState, action: jax.Array, context: jax.Array) -> ContextGradients:
    """Total context Jacobian of one transition via ``jax.jacfwd``.

    Returns ``d_obs (state_obs_size, dim)`` and ``d_reward (dim,)``.
    """
    d_obs, d_reward = jax.jacfwd(env.transition, argnums=2)(env_state, action, context)
    return ContextGradients(d_obs=d_obs, d_reward=d_reward)


def step_and_jacobian(env: ContextualEnv, env_state: EnvState, action: jax.Array, context: jax.Array):
    """One environment step and its context Jacobian in a single ``jacfwd`` pass.

    Returns ``((next_env_state, next_state_obs, reward, terminated), ContextGradients)``;
    the primal step is computed once (as ``jacfwd``'s auxiliary output).
    """

    def f(c):
        out = env.env_step(env_state, action, c)
        return (out[1], out[2]), out

    (d_obs, d_reward), out = jax.jacfwd(f, has_aux=True)(context)
    return out, ContextGradients(d_obs=d_obs, d_reward=d_reward)


def context_jvp(
    env: ContextualEnv, env_state: EnvState, action: jax.Array, context: jax.Array, delta_c: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Directional derivative ``(J_obs delta_c (state_obs_size,), J_r delta_c ())`` via ``jax.jvp``."""
    _, (d_obs, d_reward) = jax.jvp(
        lambda c: env.transition(env_state, action, c), (context,), (delta_c.astype(context.dtype),)
    )
    return d_obs, d_reward


def step_and_jvp(
    env: ContextualEnv, env_state: EnvState, action: jax.Array, context: jax.Array, delta_c: jax.Array
):
    """One environment step and its directional context derivative in one ``jvp``.

    Returns ``((next_env_state, next_state_obs, reward, terminated), DirectionalGradients)``.
    """
    out, tangent = jax.jvp(lambda c: env.env_step(env_state, action, c), (context,), (delta_c.astype(context.dtype),))
    return out, DirectionalGradients(delta_c=delta_c, d_obs=tangent[1], d_reward=tangent[2])


# ------------------------------------------------------ finite differences
def fd_points(space: ContextSpace, context: jax.Array, offset: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The two points of a central difference along ``offset`` (``(dim,)``), kept in the box.

    With ``t+`` / ``t-`` the largest ``t <= 1`` for which ``c + t offset`` / ``c - t
    offset`` lie in ``[low, high]`` (the whole segment, as the box is convex), returns
    ``(c + t+ offset, c - t- offset, t+ + t-)``: the points (``(dim,)`` each) and the
    difference's denominator in units of ``offset``. In the interior ``t+ = t- = 1``
    (a central difference, error ``O(|offset|^2)``); at a bound one side shrinks,
    down to ``c`` itself (a one-sided difference, error ``O(|offset|)``); ``t+ + t- =
    0`` where neither ``+offset`` nor ``-offset`` stays in the box (``c`` at a corner).
    """
    low = jnp.asarray(space.low, context.dtype)
    high = jnp.asarray(space.high, context.dtype)

    def reach(direction):
        # largest t in [0, 1] with low <= c + t * direction <= high, per dimension then over all
        room = jnp.where(direction > 0, high - context, low - context)
        safe = jnp.where(direction == 0, 1.0, direction)
        return jnp.clip(jnp.min(jnp.where(direction == 0, 1.0, room / safe)), 0.0, 1.0)

    t_plus, t_minus = reach(offset), reach(-offset)
    plus = jnp.clip(context + t_plus * offset, low, high)
    minus = jnp.clip(context - t_minus * offset, low, high)
    return plus, minus, t_plus + t_minus


def _difference(plus: jax.Array, minus: jax.Array, denominator: jax.Array, no_move: jax.Array) -> jax.Array:
    """``(plus - minus) / denominator`` (broadcast). Where the denominator is 0: 0 when
    ``no_move`` (the step moves no dimension: the derivative along it is 0), else NaN (no
    difference can be taken inside the space; CSE drops such a sample as invalid)."""
    ok = denominator > 0
    quotient = (plus - minus) / jnp.where(ok, denominator, 1.0)
    return jnp.where(ok, quotient, jnp.where(no_move, 0.0, jnp.nan))


def _require_step(where: str, step: float) -> float:
    return FD_STEP.require(f"{where}: `step` (a fraction of each context dimension's range)", step)


def _jacobian_offsets(space: ContextSpace, context: jax.Array, step: float) -> jax.Array:
    """``(dim, dim)``: row ``i`` moves dimension ``i`` by ``step * (high_i - low_i)``."""
    width = jnp.asarray(space.high, context.dtype) - jnp.asarray(space.low, context.dtype)
    return jnp.diag(step * width)


def _jvp_scale(space: ContextSpace, delta_c: jax.Array, step: float) -> jax.Array:
    """``t`` (``()``) such that the largest ``|t delta_c_i| / (high_i - low_i)`` is ``step``.

    Dimensions of zero width are ignored; ``0`` when ``delta_c`` moves no dimension of positive width.
    """
    width = jnp.asarray(space.high, delta_c.dtype) - jnp.asarray(space.low, delta_c.dtype)
    reach = jnp.max(jnp.where(width > 0, jnp.abs(delta_c) / jnp.where(width > 0, width, 1.0), 0.0))
    return jnp.where(reach > 0, step / jnp.where(reach > 0, reach, 1.0), 0.0)


def _fd_steps(env: ContextualEnv, env_state: EnvState, action: jax.Array, contexts: jax.Array):
    """``env.env_step`` at each row of ``contexts`` (``(k, dim)``), in one ``vmap``."""
    return jax.vmap(lambda c: env.env_step(env_state, action, c))(contexts)


def step_and_fd_jacobian(env: ContextualEnv, env_state: EnvState, action: jax.Array, context: jax.Array,
                         step: float = 0.01):
    """One step and its context Jacobian by central finite differences, without autodiff.

    ``step``: the offset of the difference points as a fraction of each context
    dimension's range (:data:`FD_STEP`). Column ``i`` of the Jacobian is
    ``(f(c+) - f(c-)) / (c+_i - c-_i)`` with ``c+-`` = ``c +- step * (high_i - low_i) e_i``
    clipped into the space (:func:`fd_points`: one-sided at a bound; a dimension of
    zero width gets a zero column, and one where ``c`` lies outside the space by more
    than the offset a NaN column). The primal step and the ``2 * dim`` difference
    steps run as one ``vmap`` of ``env.env_step`` (``1 + 2 dim`` steps), so any pure
    step works, differentiable or not (a ``jax.pure_callback`` needs a
    ``vmap_method``).

    Returns ``((next_env_state, next_state_obs, reward, terminated), ContextGradients)``
    as :func:`step_and_jacobian` does.
    """
    _require_step("step_and_fd_jacobian", step)
    space = env.context_space
    offsets = _jacobian_offsets(space, context, step)
    plus, minus, _ = jax.vmap(lambda o: fd_points(space, context, o))(offsets)
    denominator = jnp.diagonal(plus - minus)  # (dim,): c+_i - c-_i, row i moving dimension i only
    no_move = jnp.diagonal(offsets) == 0  # a dimension of zero width: its column is 0
    dim = context.shape[-1]
    outs = _fd_steps(env, env_state, action, jnp.concatenate([context[None], plus, minus]))
    out = jax.tree.map(lambda x: x[0], outs)
    obs, reward = outs[1][1:], outs[2][1:]
    d_obs = _difference(obs[:dim], obs[dim:], denominator[:, None], no_move[:, None]).T  # (state_obs_size, dim)
    d_reward = _difference(reward[:dim], reward[dim:], denominator, no_move)
    return out, ContextGradients(d_obs=d_obs, d_reward=d_reward)


def fd_jacobian(env: ContextualEnv, env_state: EnvState, action: jax.Array, context: jax.Array,
                step: float = 0.01) -> ContextGradients:
    """The context Jacobian of one transition by central finite differences
    (:func:`step_and_fd_jacobian` without the primal step's outputs)."""
    return step_and_fd_jacobian(env, env_state, action, context, step)[1]


def step_and_fd_jvp(env: ContextualEnv, env_state: EnvState, action: jax.Array, context: jax.Array,
                    delta_c: jax.Array, step: float = 0.01):
    """One step and its derivative along ``delta_c`` (``(dim,)``) by a central difference.

    The difference points are ``c +- t delta_c`` with ``t`` scaled so that the largest
    ``|t delta_c_i| / (high_i - low_i)`` is ``step`` (the same reach as
    :func:`step_and_fd_jacobian`'s), clipped into the space along the line
    (:func:`fd_points`: one-sided at a bound); the derivative is ``0`` where
    ``delta_c`` is ``0`` and NaN where neither ``c + t delta_c`` nor ``c - t delta_c``
    lies in the space for any ``t > 0`` (a corner; never for CSE's steps, whose
    ``c + delta_c`` is in the space). ``1 + 2`` steps in one ``vmap``.

    Returns ``((next_env_state, next_state_obs, reward, terminated), DirectionalGradients)``
    as :func:`step_and_jvp` does.
    """
    _require_step("step_and_fd_jvp", step)
    delta_c = delta_c.astype(context.dtype)
    t = _jvp_scale(env.context_space, delta_c, step)
    plus, minus, t_sum = fd_points(env.context_space, context, t * delta_c)
    outs = _fd_steps(env, env_state, action, jnp.stack([context, plus, minus]))
    out = jax.tree.map(lambda x: x[0], outs)
    # f(plus) - f(minus) ~ J (t+ + t-) t delta_c: dividing by (t+ + t-) t gives J delta_c
    denominator = t_sum * t
    d_obs = _difference(outs[1][1], outs[1][2], denominator, t == 0)
    d_reward = _difference(outs[2][1], outs[2][2], denominator, t == 0)
    return out, DirectionalGradients(delta_c=delta_c, d_obs=d_obs, d_reward=d_reward)


def fd_jvp(env: ContextualEnv, env_state: EnvState, action: jax.Array, context: jax.Array, delta_c: jax.Array,
           step: float = 0.01) -> tuple[jax.Array, jax.Array]:
    """``(J_obs delta_c (state_obs_size,), J_r delta_c ())`` by a central difference
    (:func:`step_and_fd_jvp` without the primal step's outputs)."""
    grads = step_and_fd_jvp(env, env_state, action, context, delta_c, step)[1]
    return grads.d_obs, grads.d_reward


# ------------------------------------------------------------- noisy gradients
def add_relative_noise(rng: jax.Array, grads, level: float):
    """Derivatives of one sample corrupted by relative Gaussian noise.

    Each derivative array ``g`` (``d_obs`` and ``d_reward``; a stored ``delta_c`` is
    kept) becomes ``g + level * ||g|| * xi / sqrt(g.size)`` with ``xi`` standard normal
    of ``g``'s shape and ``||.||`` the Frobenius norm, so ``E ||noise||^2 =
    level^2 ||g||^2``: ``level`` is the root-mean-square relative error (``0.1``: 10%).
    For a stored Jacobian this is also the relative RMS error of ``J delta_c`` for a
    ``delta_c`` uniform in direction. ``level = 0`` returns ``grads`` unchanged (bitwise).

    ``grads``: :class:`ContextGradients` or :class:`DirectionalGradients`; ``level``:
    :data:`NOISE_LEVEL` (a Python number).
    """
    NOISE_LEVEL.require("add_relative_noise: `level` (relative noise)", level)
    if level == 0:
        return grads
    k_obs, k_reward = jax.random.split(rng)

    def corrupt(key, g):
        xi = jax.random.normal(key, g.shape, g.dtype)
        return g + level * jnp.linalg.norm(g) * xi / jnp.sqrt(jnp.asarray(max(g.size, 1), g.dtype))

    return grads.replace(d_obs=corrupt(k_obs, grads.d_obs), d_reward=corrupt(k_reward, grads.d_reward))


def gradients_finite(grads: ContextGradients | DirectionalGradients) -> jax.Array:
    """``True`` when every derivative of one sample is finite (``()`` bool; vmap for a batch)."""
    return jnp.all(jnp.isfinite(grads.d_obs)) & jnp.all(jnp.isfinite(grads.d_reward))


def finite_mask(tree, batch_ndim: int = 1) -> jax.Array:
    """``True`` where every floating leaf of ``tree`` is finite, per sample.

    Args:
      tree: a pytree whose leaves all share the leading batch shape ``S`` of
        ``batch_ndim`` axes (integer and boolean leaves are ignored; ``None`` is allowed).
      batch_ndim: number of leading batch axes (e.g. 2 for ``(time, env)``).

    Returns:
      ``S``-shaped bool array.

    Raises:
      ValueError: when ``batch_ndim < 0``, the tree has no floating leaf, or the
        leaves' leading shapes differ.
    """
    if batch_ndim < 0:
        raise ValueError(f"finite_mask: `batch_ndim` must be >= 0, got {batch_ndim}")
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    if not leaves:
        raise ValueError("finite_mask: `tree` has no floating-point leaf to check")
    shapes = {tuple(jnp.shape(x)[:batch_ndim]) for x in leaves}
    if len(shapes) != 1 or any(jnp.ndim(x) < batch_ndim for x in leaves):
        raise ValueError(
            f"finite_mask: leaves must share the leading batch shape ({batch_ndim} axes), got {sorted(shapes)}"
        )
    masks = [jnp.all(jnp.isfinite(jnp.reshape(x, (*jnp.shape(x)[:batch_ndim], -1))), axis=-1) for x in leaves]
    return functools.reduce(jnp.logical_and, masks)
