"""Replay of transitions plus what the training method stores, on ``flashbax``: uniform or prioritized.

An item is a :class:`ReplayItem`: the :class:`~zsgjax.types.Transition` and the
``extras`` the training method stores beside it (CSE: ``ContextGradients`` for
``jacobian`` storage, ``DirectionalGradients`` for ``jvp`` storage, the pre-step
physics state for exact CSE; ``None``, which takes no memory, otherwise).

:class:`Replay` wraps a flashbax item buffer (a ring buffer of fixed capacity,
sampling with replacement); its state is a pytree, so the buffer lives inside the
jitted, vmapped, checkpointed training state.

* ``prioritized=False``: uniform sampling (``fbx.make_item_buffer``); every
  sample's importance weight is 1.
* ``prioritized=True``: proportional prioritized replay (Schaul et al. 2016) on
  ``fbx.make_prioritised_item_buffer``: item ``i`` is drawn with probability
  ``P(i) = p_i^alpha / sum_k p_k^alpha`` (``alpha = priority_exponent``); new items
  get the largest priority seen so far; after each update the sampled items'
  priorities become ``|TD error| + priority_eps`` (:meth:`Replay.set_priorities`).
  Importance weights ``w_i = (size P(i))^(-beta) / max_batch w`` (``beta =
  importance_exponent``; ``beta = 0`` gives weight 1, the fully prioritized replay of
  the CSE paper's pendulum runs).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flashbax as fbx
import jax
import jax.numpy as jnp
from flax import struct

from zsgjax import checks
from zsgjax.types import Transition


@struct.dataclass
class ReplayItem:
    """One stored sample; a batch adds leading axes to every leaf.

    ``valid``: ``()`` bool, the transition is finite (``None``: taken as valid); an
    invalid item gets weight 0 in every loss.
    """

    transition: Transition
    extras: Any = None
    valid: Any = None


@struct.dataclass
class ReplaySample:
    """A sampled batch: ``items`` (leading ``N``), ``indices (N,)`` int32 (the buffer slots,
    for :meth:`Replay.set_priorities`) and importance ``weight (N,)`` (ones when uniform)."""

    items: ReplayItem
    indices: jax.Array
    weight: jax.Array


@dataclasses.dataclass(frozen=True)
class Replay:
    """Static description of a replay buffer.

    capacity: items kept (oldest overwritten first); batch_size: items per sample;
    min_size: items needed before :meth:`can_sample` is true; prioritized: prioritized
    instead of uniform sampling, with ``priority_exponent`` (alpha, ``>= 0``),
    ``importance_exponent`` (beta, ``[0, 1]``) and ``priority_eps`` (``> 0``, added to
    every ``|TD error|``).
    """

    capacity: int
    batch_size: int
    min_size: int = 1
    prioritized: bool = False
    priority_exponent: float = 0.6
    importance_exponent: float = 0.4
    priority_eps: float = 1e-6

    def __post_init__(self):
        if self.capacity < 1:
            raise ValueError(f"Replay: `capacity` must be >= 1, got {self.capacity}")
        if not 1 <= self.batch_size <= self.capacity:
            raise ValueError(f"Replay: `batch_size` must be in [1, capacity={self.capacity}], got {self.batch_size}")
        if not 1 <= self.min_size <= self.capacity:
            raise ValueError(f"Replay: `min_size` must be in [1, capacity={self.capacity}], got {self.min_size}")
        if not 0.0 <= self.priority_exponent < float("inf"):
            raise ValueError(f"Replay: `priority_exponent` must be a finite number >= 0, got {self.priority_exponent}")
        if not 0.0 <= self.importance_exponent <= 1.0:
            raise ValueError(f"Replay: `importance_exponent` must be in [0, 1], got {self.importance_exponent}")
        if not 0.0 < self.priority_eps < float("inf"):
            raise ValueError(f"Replay: `priority_eps` must be a finite number > 0, got {self.priority_eps}")

    @functools.cached_property
    def _buffer(self):
        if self.prioritized:
            backend = jax.default_backend()
            return fbx.make_prioritised_item_buffer(
                max_length=self.capacity,
                min_length=self.min_size,
                sample_batch_size=self.batch_size,
                add_batches=True,
                priority_exponent=self.priority_exponent,
                device=backend if backend in ("cpu", "gpu", "tpu") else "cpu",
            )
        return fbx.make_item_buffer(
            max_length=self.capacity,
            min_length=self.min_size,
            sample_batch_size=self.batch_size,
            add_batches=True,
        )

    def init(self, example: ReplayItem):
        """Empty buffer state shaped like one item ``example`` (no leading axis)."""
        return self._buffer.init(example)

    def add(self, state, items: ReplayItem):
        """Insert a batch of items (leading ``B`` on every leaf)."""
        return self._buffer.add(state, items)

    def sample_batch(self, state, rng: jax.Array) -> ReplaySample:
        """``batch_size`` items drawn with replacement, with their slots and importance weights."""
        out = self._buffer.sample(state, rng)
        n = self.batch_size
        if not self.prioritized:
            return ReplaySample(out.experience, jnp.zeros((n,), jnp.int32), jnp.ones((n,), jnp.float32))
        size = self.size(state).astype(jnp.float32)
        prob = jnp.maximum(out.probabilities, 1e-30)
        w = (size * prob) ** (-self.importance_exponent)
        return ReplaySample(out.experience, out.indices.astype(jnp.int32), (w / jnp.max(w)).astype(jnp.float32))

    def sample_batches(self, state, rngs: jax.Array) -> ReplaySample:
        """One batch per key of ``rngs (G,)`` in one vmapped draw (one gather): leaves
        ``(G, batch_size, ...)``, ``indices`` / ``weight`` ``(G, batch_size)``.

        Batch ``j`` equals ``sample_batch(state, rngs[j])``. Uniform buffers only: a
        prioritized buffer must sample after the priorities of the previous update are set.
        """
        if self.prioritized:
            raise ValueError("Replay.sample_batches: a prioritized buffer samples one batch per update "
                             "(use sample_batch after each set_priorities)")
        shape = tuple(getattr(rngs, "shape", ()))
        try:
            if not shape or shape[0] < 1:
                raise ValueError
            checks.prng_key(rngs[0])
        except ValueError:
            raise ValueError("Replay.sample_batches: `rngs` must be G >= 1 PRNG keys (typed keys of shape (G,) or "
                             f"raw keys of shape (G, 2)), got {type(rngs).__name__} of shape {shape}") from None
        return jax.vmap(self.sample_batch, in_axes=(None, 0))(state, rngs)

    def sample(self, state, rng: jax.Array) -> ReplayItem:
        """``batch_size`` items (leading ``batch_size``), drawn as :meth:`sample_batch` does."""
        return self.sample_batch(state, rng).items

    def set_priorities(self, state, indices: jax.Array, td_error: jax.Array):
        """Priorities ``|td_error| + priority_eps`` for the slots ``indices (N,)``; identity when uniform.

        A non-finite TD error gives the lowest priority, ``priority_eps``.
        """
        if not self.prioritized:
            return state
        new = jnp.abs(td_error) + self.priority_eps
        return self._buffer.set_priorities(state, indices, jnp.where(jnp.isfinite(new), new, self.priority_eps))

    def probabilities(self, state) -> jax.Array:
        """Sampling probability of every slot ``(capacity,)`` (prioritized only)."""
        if not self.prioritized:
            raise ValueError("Replay.probabilities: a uniform buffer has no priorities")
        from flashbax.buffers import sum_tree

        return sum_tree.get_probability(state.sum_tree_state, jnp.arange(self.capacity))

    def can_sample(self, state) -> jax.Array:
        return self._buffer.can_sample(state)

    def size(self, state) -> jax.Array:
        """Number of stored items, ``()`` int32."""
        return jnp.where(state.is_full, self.capacity, state.current_index).astype(jnp.int32)
