"""Uniform replay of transitions plus what CSE needs, on ``flashbax``.

An item is a :class:`ReplayItem`: the :class:`~zsgjax.types.Transition` and the
``extras`` the training method stores beside it (CSE: ``ContextGradients`` for
``jacobian`` storage, ``DirectionalGradients`` for ``jvp`` storage, the pre-step
physics state for exact CSE; ``None``, which takes no memory, otherwise).

:class:`Replay` wraps ``flashbax.make_item_buffer`` (a ring buffer of fixed
capacity, uniform sampling with replacement); its state is a pytree, so the
buffer lives inside the jitted, vmapped training state.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flashbax as fbx
import jax
import jax.numpy as jnp
from flax import struct

from zsgjax.types import Transition


@struct.dataclass
class ReplayItem:
    """One stored sample; a batch adds leading axes to every leaf."""

    transition: Transition
    extras: Any = None


@dataclasses.dataclass(frozen=True)
class Replay:
    """Static description of a replay buffer.

    capacity: items kept (oldest overwritten first); batch_size: items per sample;
    min_size: items needed before :meth:`can_sample` is true.
    """

    capacity: int
    batch_size: int
    min_size: int = 1

    def __post_init__(self):
        if self.capacity < 1:
            raise ValueError(f"Replay: `capacity` must be >= 1, got {self.capacity}")
        if not 1 <= self.batch_size <= self.capacity:
            raise ValueError(f"Replay: `batch_size` must be in [1, capacity={self.capacity}], got {self.batch_size}")
        if not 1 <= self.min_size <= self.capacity:
            raise ValueError(f"Replay: `min_size` must be in [1, capacity={self.capacity}], got {self.min_size}")

    @functools.cached_property
    def _buffer(self):
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

    def sample(self, state, rng: jax.Array) -> ReplayItem:
        """``batch_size`` items drawn uniformly with replacement (leading ``batch_size``)."""
        return self._buffer.sample(state, rng).experience

    def can_sample(self, state) -> jax.Array:
        return self._buffer.can_sample(state)

    def size(self, state) -> jax.Array:
        """Number of stored items, ``()`` int32."""
        return jnp.where(state.is_full, self.capacity, state.current_index).astype(jnp.int32)
