"""CSE on LDR data: episodes at ``default + scale N(0, I)`` (LDR), replay batches enhanced (CSE).

The two ways of reaching unseen contexts together: LDR spreads the collected
contexts around the training context, CSE moves every replayed sample a further
``epsilon`` step. It declares no setting of its own: it inherits CSE's fields and
LDR's, so it reads ``cse_epsilon`` ... and ``ldr_scale`` (one setting each, shared with
those methods), episodes come from LDR's sampler and batches from CSE's hooks.
"""

from __future__ import annotations

import dataclasses

from zsgjax.methods.cse import CSE
from zsgjax.methods.ldr import LDR
from zsgjax.methods.registry import register


@register
@dataclasses.dataclass(frozen=True)
class CSEWithLDR(LDR, CSE):
    """Fields ``epsilon, mode, storage, ratio`` (CSE's) and ``scale`` (LDR's)."""

    name = "cse_ldr"

    def describe(self, space) -> str:
        return LDR.describe(self, space) + self.enhancement_note()
