"""Domain randomization (DR): each episode's context uniform over a box (default: the whole space)."""

from __future__ import annotations

import dataclasses

from zsgjax.configs import param
from zsgjax.envs.context import ContextSpace
from zsgjax.methods.base import ContextSampler, Method, format_context
from zsgjax.methods.registry import register
from zsgjax.methods.settings import ENV_DEFAULT


def _space_bound(which: str):
    """``env -> tuple``: the ``low`` or ``high`` bound of the environment's context space, as floats."""
    return lambda env: tuple(float(x) for x in getattr(env.context_space, which))


@register
@dataclasses.dataclass(frozen=True)
class DR(Method):
    """``low`` / ``high``: corners of the sampling box (``(dim,)`` tuples inside the
    space, ``low <= high``, checked against the space by :meth:`context_sampler`);
    ``None`` takes the space's own bound (a resolved ``TrainConfig`` records it)."""

    name = "dr"
    low: tuple[float, ...] | None = param(None, kind=tuple, element=float, meta={ENV_DEFAULT: _space_bound("low")},
                                          help="lower corner of the sampling box, one value per context dimension "
                                          "(None: the context space's lower bound)")
    high: tuple[float, ...] | None = param(None, kind=tuple, element=float, meta={ENV_DEFAULT: _space_bound("high")},
                                           help="upper corner of the sampling box, one value per context dimension "
                                           "(None: the context space's upper bound)")

    def context_sampler(self, space: ContextSpace) -> ContextSampler:
        low = space.validate(space.low if self.low is None else self.low, "dr_low")
        high = space.validate(space.high if self.high is None else self.high, "dr_high")
        for i, n in enumerate(space.names):
            if low[i] > high[i]:
                raise ValueError(f"`dr_low` must not exceed `dr_high`: dimension '{n}' has {low[i]:g} > {high[i]:g}")
        box = ContextSpace(space.names, low, high, (low + high) / 2)
        return lambda rng: box.sample_uniform(rng)

    def describe(self, space: ContextSpace) -> str:
        low = space.low if self.low is None else self.low
        high = space.high if self.high is None else self.high
        return f"episodes at contexts uniform over the box {format_context(low)} .. {format_context(high)}"
