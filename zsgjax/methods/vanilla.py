"""Vanilla training: every episode at the training context, replay batches as sampled."""

from __future__ import annotations

import dataclasses

from zsgjax.methods.base import Method
from zsgjax.methods.registry import register


@register
@dataclasses.dataclass(frozen=True)
class Vanilla(Method):
    name = "vanilla"
