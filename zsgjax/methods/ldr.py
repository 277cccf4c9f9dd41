"""Local domain randomization (LDR): each episode at ``default + scale N(0, I)``, clipped to the space."""

from __future__ import annotations

import dataclasses

from zsgjax.configs import param
from zsgjax.envs.context import ContextSpace
from zsgjax.methods.base import ContextSampler, Method, format_context
from zsgjax.methods.registry import register


@register
@dataclasses.dataclass(frozen=True)
class LDR(Method):
    """Local domain randomization around the environment's default context."""

    name = "ldr"
    scale: float = param(0.1, low=0.0, low_open=True,
                         help="standard deviation of the Gaussian around the default context")

    def context_sampler(self, space: ContextSpace) -> ContextSampler:
        scale = self.scale
        return lambda rng: space.sample_local(rng, scale=scale)

    def describe(self, space: ContextSpace) -> str:
        return (f"episodes at contexts drawn around the default {format_context(space.default_array)} "
                f"(Gaussian, std {self.scale:g} per dimension, clipped to the space)")
