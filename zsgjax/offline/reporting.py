"""What the offline experiment scripts and the PEVI benchmark write results with.

Re-exports the library's shared helpers, so the scripts have one import: atomic
JSON and PNG writes (:mod:`zsgjax.fileio`), the machine description
(:mod:`zsgjax.machine`) and the log-log slope fit (:mod:`zsgjax.stats`; here
points with a zero suboptimality are dropped from the fit).
"""

from __future__ import annotations

import functools

from zsgjax.fileio import atomic_path, save_figure, write_json
from zsgjax.machine import machine_description
from zsgjax.stats import loglog_slope as _loglog_slope

loglog_slope = functools.partial(_loglog_slope, drop_nonpositive=True)

__all__ = ["atomic_path", "loglog_slope", "machine_description", "save_figure", "write_json"]
