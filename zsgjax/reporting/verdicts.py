"""Verdicts on pre-registered claims: one file states the rows and the test, this module applies them.

The claims file (``docs/experiments/claims.json``) lists, per claim, the environment,
two methods ``a`` and ``b``, a kind (``"greater"``: ``a`` outperforms ``b``;
``"comparable"``: ``a`` is within a margin of ``b``) and the grid rows it is judged on,
as selectors:

* ``{"named": [label, ...]}``: those named evaluation contexts of the grid;
* ``{"sweep": dim, "above": x}`` (and/or ``"below"``): the rows of ``dim``'s sweep with
  value strictly above ``x`` (below).

The test: the per-seed mean return over the rows (all episodes) of ``a`` minus that of
``b``, seeds paired, and its two-sided Student-t interval at the file's confidence
(:func:`zsgjax.reporting.stats.mean_ci`). Verdicts, from the interval ``[d - h, d + h]``:

* greater: ``holds`` above 0, ``contradicted`` below 0, else ``not shown``;
* comparable, with ``margin = fraction * |mean of b over the rows|``: ``holds`` inside
  ``(-margin, margin)``, ``contradicted`` entirely outside ``[-margin, margin]``, else
  ``inconclusive``.

Nothing else decides a verdict: no pooling across dimensions, no other row set.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, Sequence

import numpy as np

from zsgjax.reporting.results import ContextGrid, EvalResult
from zsgjax.reporting.stats import mean_ci

KINDS = ("greater", "comparable")
# sweep values are float32 in a grid: a value equal to a threshold must not count as beyond it
_VALUE_TOLERANCE = 1e-6


@dataclasses.dataclass(frozen=True)
class Claim:
    """One pre-registered claim (a row of the claims file)."""

    id: str
    env: str
    claim: str
    kind: str
    a: str
    b: str
    rows: tuple[Mapping[str, Any], ...]


@dataclasses.dataclass(frozen=True)
class Claims:
    """The claims file: the claims, the confidence of the interval, the comparable margin fraction."""

    claims: tuple[Claim, ...]
    confidence: float
    margin_fraction: float

    def for_env(self, env: str) -> tuple[Claim, ...]:
        return tuple(c for c in self.claims if c.env == env)


def load_claims(path: str | os.PathLike) -> Claims:
    """Read and check a claims file; ``ValueError`` naming the first malformed entry."""
    with open(path) as f:
        doc = json.load(f)
    try:
        confidence = float(doc["test"]["confidence"])
        fraction = float(doc["comparable_margin"]["fraction"])
        entries = doc["claims"]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: needs test.confidence, comparable_margin.fraction and claims ({e!r})") from None
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"{path}: test.confidence must be in (0, 1), got {confidence}")
    if not fraction > 0.0:
        raise ValueError(f"{path}: comparable_margin.fraction must be > 0, got {fraction}")
    claims, seen = [], set()
    for i, e in enumerate(entries):
        try:
            claim = Claim(id=str(e["id"]), env=str(e["env"]), claim=str(e["claim"]), kind=str(e["kind"]),
                          a=str(e["a"]), b=str(e["b"]), rows=tuple(e["rows"]))
        except (KeyError, TypeError) as err:
            raise ValueError(f"{path}: claim {i} lacks {err}") from None
        if claim.kind not in KINDS:
            raise ValueError(f"{path}: claim {claim.id!r} has kind {claim.kind!r}; accepted: {', '.join(KINDS)}")
        if claim.id in seen:
            raise ValueError(f"{path}: claim id {claim.id!r} appears twice")
        if not claim.rows:
            raise ValueError(f"{path}: claim {claim.id!r} names no rows")
        seen.add(claim.id)
        claims.append(claim)
    return Claims(tuple(claims), confidence, fraction)


def select_rows(grid: ContextGrid, selectors: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Sorted, distinct row indices of ``grid`` picked by ``selectors`` (see the module doc)."""
    rows: list[int] = []
    for sel in selectors:
        if "named" in sel:
            named = {grid.labels[r]: int(r) for r in grid.named_rows}
            missing = [n for n in sel["named"] if n not in named]
            if missing:
                raise ValueError(f"named contexts {missing} are not in the grid; its named contexts: {list(named)}")
            rows.extend(named[n] for n in sel["named"])
        elif "sweep" in sel:
            dim = sel["sweep"]
            if "above" not in sel and "below" not in sel:
                raise ValueError(f"sweep selector {dict(sel)} needs 'above' and/or 'below'")
            sweep = grid.sweep_rows(dim)
            values = grid.contexts[sweep, grid.names.index(dim)].astype(np.float64)
            keep = np.ones(len(sweep), bool)
            if "above" in sel:
                keep &= values > float(sel["above"]) + _VALUE_TOLERANCE
            if "below" in sel:
                keep &= values < float(sel["below"]) - _VALUE_TOLERANCE
            rows.extend(int(r) for r in sweep[keep])
        else:
            raise ValueError(f"row selector {dict(sel)} is neither {{'named': [...]}} nor {{'sweep': dim, ...}}")
    if not rows:
        raise ValueError(f"the selectors {list(map(dict, selectors))} pick no row of this grid")
    return np.asarray(sorted(set(rows)), dtype=int)


def judge(claim: Claim, results: Mapping[str, EvalResult], claims: Claims) -> dict[str, Any]:
    """The verdict on ``claim`` from ``results`` (``{method: EvalResult}`` on one grid).

    Returns ``{"id", "claim", "kind", "a", "b", "rows" (labels), "seeds", "mean_a",
    "mean_b", "diff", "half_width", "margin" (comparable only), "verdict"}``.
    ``ValueError`` when a method is missing or the two methods' seeds differ in number
    (the test needs paired seeds).
    """
    for m in (claim.a, claim.b):
        if m not in results:
            raise ValueError(f"claim {claim.id!r} needs method {m!r}; the results hold {list(results)}")
    ra, rb = results[claim.a], results[claim.b]
    if ra.num_seeds != rb.num_seeds:
        raise ValueError(f"claim {claim.id!r}: {claim.a} has {ra.num_seeds} seeds, {claim.b} {rb.num_seeds}; "
                         "the test pairs seeds")
    rows = select_rows(ra.grid, claim.rows)
    pa, pb = ra.per_seed(rows), rb.per_seed(rows)
    diff, half = (float(x) for x in mean_ci(pa - pb, claims.confidence))
    out = {"id": claim.id, "claim": claim.claim, "kind": claim.kind, "a": claim.a, "b": claim.b,
           "rows": [ra.grid.labels[r] for r in rows], "seeds": ra.num_seeds,
           "mean_a": float(pa.mean()), "mean_b": float(pb.mean()), "diff": diff, "half_width": half}
    low, high = diff - half, diff + half
    if not np.isfinite(half):
        out["verdict"] = "n/a (one seed: no interval)"
    elif claim.kind == "greater":
        out["verdict"] = "holds" if low > 0 else "contradicted" if high < 0 else "not shown"
    else:
        margin = claims.margin_fraction * abs(out["mean_b"])
        out["margin"] = margin
        if -margin < low and high < margin:
            out["verdict"] = "holds"
        elif low >= margin or high <= -margin:
            out["verdict"] = "contradicted"
        else:
            out["verdict"] = "inconclusive"
    return out


def evaluable(claim: Claim, grid: ContextGrid) -> bool:
    """Whether ``grid`` can hold ``claim``'s rows: every dimension it selects a sweep of is swept there (a
    run evaluated on its named contexts alone, ``--sweep-dims none``, has no row of a sweep claim)."""
    return all("sweep" not in sel or sel["sweep"] in grid.swept_dims for sel in claim.rows)


def judge_env(env: str, results: Mapping[str, EvalResult], claims: Claims) -> list[dict[str, Any]]:
    """Verdicts on every claim of ``env`` whose two methods are in ``results`` and whose rows the
    results' grid can hold (:func:`evaluable`; :func:`unjudged` lists the others)."""
    return [judge(c, results, claims) for c in claims.for_env(env)
            if c.a in results and c.b in results and evaluable(c, _grid(results))]


def unjudged(env: str, results: Mapping[str, EvalResult], claims: Claims) -> list[Claim]:
    """The claims of ``env`` on methods in ``results`` that its grid cannot judge (a sweep it did not evaluate)."""
    return [c for c in claims.for_env(env)
            if c.a in results and c.b in results and not evaluable(c, _grid(results))]


def _grid(results: Mapping[str, EvalResult]) -> ContextGrid:
    return next(iter(results.values())).grid


def rows_text(labels: Sequence[str], max_listed: int = 6) -> str:
    """A short description of a claim's rows: the labels; for more than ``max_listed`` rows of one
    dimension, ``"dim sweep, lo to hi (n points)"`` when their values are evenly spaced (a sweep's),
    else ``"dim = v1, v2, ..."`` (named contexts, e.g. the ants' angles)."""
    dims = {label.split("=")[0] for label in labels}
    if len(labels) > max_listed and len(dims) == 1 and all("=" in x for x in labels):
        (dim,) = dims
        texts = [x.split("=", 1)[1] for x in labels]
        values = np.sort([float(t) for t in texts])
        steps = np.diff(values)
        if steps.min() > 0 and np.allclose(steps, steps.mean(), rtol=0.05):  # labels are rounded: 5% of a step
            return f"{dim} sweep, {values[0]:g} to {values[-1]:g} ({len(values)} points)"
        return f"{dim} = {', '.join(texts)}"
    return ", ".join(labels)


def markdown_table(verdicts: Sequence[Mapping[str, Any]], label: str) -> str:
    """One row per verdict: env claim, rows, seeds, difference ± interval (and margin), verdict; ``label``
    states what was run (e.g. "committed runs, deterministic evaluation")."""
    lines = [f"| claim | rows | seeds | a − b (95% t) | verdict ({label}) |", "|---|---|---|---|---|"]
    for v in verdicts:
        margin = f", margin ±{v['margin']:.3g}" if "margin" in v else ""
        claim = v["claim"].replace("|", "\\|")
        lines.append(f"| {v['id'].split('/')[0]}: {claim} | {rows_text(v['rows'])} | {v['seeds']} | "
                     f"{v['a']} − {v['b']}: {v['diff']:+.3g} ± {v['half_width']:.3g}{margin} | **{v['verdict']}** |")
    return "\n".join(lines)
