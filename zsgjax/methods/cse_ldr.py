"""CSE on LDR data: episodes at ``default + scale N(0, I)`` (LDR), replay batches enhanced (CSE).

The two ways of reaching unseen contexts together: LDR spreads the collected
contexts around the training context, CSE moves every replayed sample a further
``epsilon`` step. Reads ``cse_*`` and ``ldr_scale`` from the config.
"""

from __future__ import annotations

import dataclasses

from zsgjax.methods.cse import CSE
from zsgjax.methods.ldr import LDR
from zsgjax.methods.registry import register


@register
@dataclasses.dataclass(frozen=True)
class CSEWithLDR(CSE):
    name = "cse_ldr"
    scale: float = 0.1

    @classmethod
    def from_config(cls, config) -> "CSEWithLDR":
        return cls(epsilon=config.cse_epsilon, mode=config.cse_mode, storage=config.cse_storage,
                   ratio=config.cse_ratio, scale=config.ldr_scale)

    def context_sampler(self, space):
        return LDR(scale=self.scale).context_sampler(space)
