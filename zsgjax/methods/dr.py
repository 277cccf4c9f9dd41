"""Domain randomization (DR): each episode's context uniform over a box (default: the whole space)."""

from __future__ import annotations

import dataclasses

from zsgjax.envs.context import ContextSpace
from zsgjax.methods.base import ContextSampler, Method
from zsgjax.methods.registry import register


@register
@dataclasses.dataclass(frozen=True)
class DR(Method):
    """``low`` / ``high``: corners of the sampling box (``(dim,)`` tuples inside the
    space, ``low <= high``); ``None`` takes the space's own bound."""

    name = "dr"
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None

    @classmethod
    def from_config(cls, config) -> "DR":
        """``TrainConfig.dr_low`` / ``dr_high`` (``None``: the space's bound)."""
        as_tuple = lambda v: None if v is None else tuple(float(x) for x in v)  # noqa: E731
        return cls(low=as_tuple(config.dr_low), high=as_tuple(config.dr_high))

    def context_sampler(self, space: ContextSpace) -> ContextSampler:
        low = space.validate(space.low if self.low is None else self.low, "dr_low")
        high = space.validate(space.high if self.high is None else self.high, "dr_high")
        for i, n in enumerate(space.names):
            if low[i] > high[i]:
                raise ValueError(f"`dr_low` must not exceed `dr_high`: dimension '{n}' has {low[i]:g} > {high[i]:g}")
        box = ContextSpace(space.names, low, high, (low + high) / 2)
        return lambda rng: box.sample_uniform(rng)
