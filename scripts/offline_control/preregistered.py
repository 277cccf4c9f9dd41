"""Pre-registered paired verdicts of the offline-control experiments (average_mdp, scaling, non_iid).

A script states its claims before training: each is ``a`` against ``b`` on per-seed values,
the test the paired per-seed difference ``a_s - b_s`` with its two-sided 95% Student-t
interval (:func:`zsgjax.reporting.stats.mean_ci`), and the verdict, from the interval:

* ``greater`` (``a`` above ``b``): ``holds`` when the interval lies above 0, ``contradicted``
  when below, else ``not shown``;
* ``contains`` (a per-seed quantity, e.g. a log-log slope, equal to ``value``): ``holds``
  when the interval of ``a`` contains ``value``, else ``contradicted``.

:func:`preregister` writes the claims (with the commit and the settings) to ``OUT.json``
*before* any training; :func:`judge` applies them afterwards. Nothing else decides a verdict.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any, Mapping, Sequence

import numpy as np

from zsgjax.reporting import files, stats

KINDS = ("greater", "contains")


def commit() -> str:
    """The commit of the code that runs (``git rev-parse HEAD`` in this file's checkout; ``"unknown"``
    outside a git checkout), with ``+dirty`` when tracked files differ from it."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def claim(id: str, text: str, a: str, b: str | None = None, kind: str = "greater", value: float | None = None) -> dict:
    """One claim: ``a`` above ``b`` (``greater``) or ``a``'s interval containing ``value`` (``contains``)."""
    if kind not in KINDS:
        raise ValueError(f"claim {id!r}: `kind` must be one of {KINDS}, got {kind!r}")
    if (kind == "greater") != (b is not None) or (kind == "contains") != (value is not None):
        raise ValueError(f"claim {id!r}: 'greater' needs `b`, 'contains' needs `value`")
    return {"id": id, "claim": text, "a": a, "b": b, "kind": kind, "value": value}


def preregister(path: str, claims: Sequence[Mapping[str, Any]], settings: Mapping[str, Any]) -> None:
    """Write ``{"preregistered": claims, "commit", "settings", "status": "running"}`` to ``path``
    (before training; the final results replace the file and keep these fields)."""
    files.write_json(path, {"status": "running (claims pre-registered, no results yet)", "commit": commit(),
                            "settings": dict(settings), "test": "paired per-seed Student-t, two-sided 95%",
                            "preregistered": list(claims)})


def judge(c: Mapping[str, Any], values: Mapping[str, Sequence[float]]) -> dict:
    """The verdict on claim ``c`` from per-seed ``values[name] (S,)``."""
    a = np.asarray(values[c["a"]], np.float64)
    if c["kind"] == "greater":
        b = np.asarray(values[c["b"]], np.float64)
        if a.shape != b.shape:
            raise ValueError(f"claim {c['id']!r}: {c['a']} has {a.shape} values, {c['b']} {b.shape}; the test pairs seeds")
        paired = stats.paired_verdict(a, b, "greater")
        d, mean, half, verdict = a - b, paired["diff"], paired["ci95"], paired["verdict"]
        low, high = paired["interval"]
    else:
        d = a
        mean, half = (float(x) for x in stats.mean_ci(d))
        low, high = mean - half, mean + half
        verdict = "holds" if low <= c["value"] <= high else "contradicted"
    return {**c, "seeds": int(d.size), "mean": mean, "half_width": half, "interval": [low, high],
            "verdict": verdict}


def markdown(verdicts: Sequence[Mapping[str, Any]]) -> list[str]:
    """Table lines of the verdicts."""
    lines = ["| claim (pre-registered) | test | seeds | estimate (95% t) | verdict |", "|---|---|---|---|---|"]
    for v in verdicts:
        test = f"{v['a']} − {v['b']}" if v["kind"] == "greater" else f"{v['a']} contains {v['value']:g}"
        lines.append(f"| {v['claim']} | {test} | {v['seeds']} | {v['mean']:+.4g} ± {v['half_width']:.3g} | "
                     f"**{v['verdict']}** |")
    return lines
