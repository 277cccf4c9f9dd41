"""Per-sample validity masks for batched physics outputs.

Contact dynamics can make an MJX step or its context derivatives non-finite
(mujoco issue 1517). :func:`finite_mask` reduces any pytree with leading batch
axes (a batched ``StepOutput``, ``ContextGradients``, observations ...) to one
boolean per sample, so that callers can drop or mask those samples and count
them. Per sample it matches :func:`zsgjax.cse.gradients_finite`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


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
