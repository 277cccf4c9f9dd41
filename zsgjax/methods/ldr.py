"""Local domain randomization (LDR): each episode at ``default + scale N(0, I)``, clipped to the space."""

from __future__ import annotations

import dataclasses

from zsgjax.envs.context import ContextSpace
from zsgjax.methods.base import ContextSampler, Method
from zsgjax.methods.registry import register


@register
@dataclasses.dataclass(frozen=True)
class LDR(Method):
    """``scale``: standard deviation of the Gaussian around the default context (``> 0``)."""

    name = "ldr"
    scale: float

    @classmethod
    def from_config(cls, config) -> "LDR":
        return cls(scale=config.ldr_scale)

    def __post_init__(self):
        if not self.scale > 0:
            raise ValueError(f"LDR: `scale` must be > 0, got {self.scale!r}")

    def context_sampler(self, space: ContextSpace) -> ContextSampler:
        scale = self.scale
        return lambda rng: space.sample_local(rng, scale=scale)
