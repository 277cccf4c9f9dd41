"""Verdicts on pre-registered claims (zsgjax.reporting.verdicts) on synthetic results.

Every interval below is computed by hand: the Student-t 97.5% quantile with n - 1
degrees of freedom (4.302652729749464 for 3 seeds, 2.776445105197793 for 5) times
the sample standard deviation of the per-seed differences over sqrt(n).
"""

import json
import math
import os

import numpy as np
import pytest

from zsgjax.reporting import verdicts
from zsgjax.reporting.results import ContextGrid, EvalResult

T3, T5 = 4.302652729749464, 2.776445105197793
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def grid():
    """tau swept over 0, 0.6, 0.8, 1 (others default) plus named contexts "A", "B"."""
    taus = [0.0, 0.6, 0.8, 1.0]
    contexts = [[2.0, t] for t in taus] + [[2.0, 0.75], [3.0, 0.0]]
    return ContextGrid(contexts=np.asarray(contexts, np.float32),
                       labels=tuple(f"tau={t:g}" for t in taus) + ("A", "B"), swept=("tau",) * 4 + (None, None),
                       names=("g", "tau"), default=np.asarray([2.0, 0.0], np.float32))


def result(per_seed_at_rows, rows, base=0.0):
    """An EvalResult whose seed s returns per_seed_at_rows[s] at every episode of ``rows``, ``base`` elsewhere."""
    g = grid()
    r = np.full((len(per_seed_at_rows), len(g), 2), base)
    r[:, rows, :] = np.asarray(per_seed_at_rows, float)[:, None, None]
    return EvalResult(g, r)


def claims_file(tmp_path, claims, fraction=0.1):
    doc = {"test": {"confidence": 0.95}, "comparable_margin": {"fraction": fraction}, "claims": claims}
    path = tmp_path / "claims.json"
    path.write_text(json.dumps(doc))
    return verdicts.load_claims(path)


def claim(kind="greater", rows=({"sweep": "tau", "above": 0.6},), a="cse", b="ldr"):
    return {"id": f"toy/{kind}", "env": "toy", "claim": "c", "kind": kind, "a": a, "b": b, "rows": list(rows)}


def test_rows_beyond_a_value_exclude_the_value_and_other_dimensions():
    g = grid()
    assert [g.labels[i] for i in verdicts.select_rows(g, [{"sweep": "tau", "above": 0.6}])] == ["tau=0.8", "tau=1"]
    assert [g.labels[i] for i in verdicts.select_rows(g, [{"sweep": "tau", "below": 0.6}])] == ["tau=0"]
    assert [g.labels[i] for i in verdicts.select_rows(g, [{"named": ["B", "A"]}])] == ["A", "B"]
    with pytest.raises(ValueError, match=r"named contexts \['C'\] are not in the grid"):
        verdicts.select_rows(g, [{"named": ["C"]}])
    with pytest.raises(ValueError, match="pick no row"):
        verdicts.select_rows(g, [{"sweep": "tau", "above": 1.0}])
    with pytest.raises(ValueError, match="needs 'above' and/or 'below'"):
        verdicts.select_rows(g, [{"sweep": "tau"}])


@pytest.mark.parametrize("diffs, verdict", [([1.0, 2.0, 3.0], "not shown"), ([3.0, 4.0, 5.0], "holds"),
                                            ([-3.0, -4.0, -5.0], "contradicted")])
def test_greater_uses_the_paired_student_t_interval(tmp_path, diffs, verdict):
    rows = [2, 3]  # tau = 0.8, 1
    ldr = [10.0, -7.0, 4.0]  # seed offsets that an unpaired test would see as noise
    results = {"cse": result(np.add(ldr, diffs), rows, base=50.0), "ldr": result(ldr, rows, base=-50.0)}
    cl = claims_file(tmp_path, [claim()])
    v = verdicts.judge(cl.claims[0], results, cl)
    mean = float(np.mean(diffs))
    half = T3 * float(np.std(diffs, ddof=1)) / math.sqrt(3)
    assert v["diff"] == pytest.approx(mean) and v["half_width"] == pytest.approx(half, rel=1e-12)
    assert v["rows"] == ["tau=0.8", "tau=1"] and v["seeds"] == 3 and v["verdict"] == verdict


@pytest.mark.parametrize("diffs, verdict", [
    ([0.5, 1.0, 1.5, 1.0, 1.0], "holds"),              # 1 +- 0.439: inside (-10, 10)
    ([-9.0, -9.5, -8.5, -9.0, -9.0], "holds"),         # -9 +- 0.439
    ([9.0, 10.0, 11.0, 10.0, 10.0], "inconclusive"),   # 10 +- 0.878 straddles the margin
    ([12.0, 13.0, 14.0, 13.0, 13.0], "contradicted"),  # 13 +- 0.878: beyond +10
    ([-12.0, -13.0, -14.0, -13.0, -13.0], "contradicted"),
])
def test_comparable_needs_the_interval_inside_the_margin(tmp_path, diffs, verdict):
    rows = [4, 5]  # the named contexts A and B
    ldr = [100.0, 100.0, 100.0, 100.0, 100.0]  # margin = 0.1 * 100 = 10
    results = {"cse": result(np.add(ldr, diffs), rows), "ldr": result(ldr, rows)}
    cl = claims_file(tmp_path, [claim("comparable", rows=[{"named": ["A", "B"]}])])
    v = verdicts.judge(cl.claims[0], results, cl)
    half = T5 * float(np.std(diffs, ddof=1)) / math.sqrt(5)
    assert v["half_width"] == pytest.approx(half, rel=1e-12) and v["margin"] == pytest.approx(10.0)
    assert v["verdict"] == verdict


def test_unpaired_or_missing_methods_and_malformed_files_are_refused(tmp_path):
    cl = claims_file(tmp_path, [claim()])
    with pytest.raises(ValueError, match="the test pairs seeds"):
        verdicts.judge(cl.claims[0], {"cse": result([1, 2, 3], [2]), "ldr": result([1, 2], [2])}, cl)
    with pytest.raises(ValueError, match="needs method 'ldr'"):
        verdicts.judge(cl.claims[0], {"cse": result([1, 2, 3], [2])}, cl)
    with pytest.raises(ValueError, match="kind 'better'"):
        claims_file(tmp_path, [claim("better")])
    with pytest.raises(ValueError, match="appears twice"):
        claims_file(tmp_path, [claim(), claim()])


def test_the_committed_claims_file_names_every_paper_claim():
    cl = verdicts.load_claims(os.path.join(REPO, "docs", "experiments", "claims.json"))
    assert {c.env for c in cl.claims} == {"simple_direction", "pendulum_goal", "cart_goal", "cheetah_velocity",
                                          "ant_direction", "ant_goal"}
    tau = next(c for c in cl.claims if c.id == "pendulum_goal/cse>ldr:tau>0.6")
    assert tau.rows == ({"sweep": "tau", "above": 0.6},)  # the tau sweep only, not pooled with g, m, l


def test_committed_pendulum_verdicts_recompute_from_the_raw_returns():
    """The docs' table (scripts/experiments/paper_verdicts.py) against the raw returns of the
    committed run, recomputed here in NumPy: tau sweep above 0.6 and the paper's named contexts."""
    import sys

    sys.path.insert(0, os.path.join(REPO, "scripts", "experiments"))
    import paper_verdicts

    cl = verdicts.load_claims(os.path.join(REPO, "docs", "experiments", "claims.json"))
    (label, got), = [(lab, vs) for lab, vs in paper_verdicts.main_verdicts(paper_verdicts.PAPER, cl)
                     if vs[0]["id"].startswith("pendulum_goal")]
    assert label.startswith("committed runs, deterministic evaluation, 16 episodes") and label.endswith("10 seeds")
    doc = json.loads(open(os.path.join(paper_verdicts.PAPER, "pendulum_goal", "results.json")).read())
    labels = doc["grid"]["labels"]

    def paired(a, b, rows):
        idx = [labels.index(r) for r in rows]
        d = (np.asarray(doc["methods"][a]["returns"])[:, idx].mean(axis=(1, 2))
             - np.asarray(doc["methods"][b]["returns"])[:, idx].mean(axis=(1, 2)))
        return d.mean(), 2.2621571627409915 * d.std(ddof=1) / math.sqrt(10)  # t_{0.975, 9}

    for v, (a, b, rows) in zip(got, [("cse", "vanilla", ["(2,1,1,0.75)", "(2,1.2,1,-0.75)"]),
                                      ("cse", "ldr", ["tau=0.75", "tau=1"])]):
        assert v["rows"] == rows
        mean, half = paired(a, b, rows)
        assert (v["diff"], v["half_width"]) == (pytest.approx(mean), pytest.approx(half))
    assert [v["verdict"] for v in got] == ["not shown", "contradicted"]


def test_committed_cart_goal_20_seed_verdict_recomputes_from_the_raw_returns():
    """paper20/cart_goal (merged from one process per method): the paper's goals ±0.5, ±1,
    20 seeds, recomputed here in NumPy against what paper_verdicts.py writes into the docs."""
    import sys

    sys.path.insert(0, os.path.join(REPO, "scripts", "experiments"))
    import paper_verdicts

    cl = verdicts.load_claims(os.path.join(REPO, "docs", "experiments", "claims.json"))
    results, info = paper_verdicts.load_run(os.path.join(REPO, "docs", "experiments", "paper20", "cart_goal"))
    label = paper_verdicts.run_label(info, results)
    assert "sampled actions (sample_unscaled), 64 episodes, 50 points per dimension, 20 seeds" in label
    (got,) = verdicts.judge_env("cart_goal", results, cl)  # what main_verdicts gives the docs for this run
    rows = ["goal=0.5", "goal=-0.5", "goal=1", "goal=-1"]
    idx = [results["cse"].grid.labels.index(r) for r in rows]
    d = (np.asarray(results["cse"].returns, np.float64)[:, idx].mean(axis=(1, 2))
         - np.asarray(results["vanilla"].returns, np.float64)[:, idx].mean(axis=(1, 2)))
    assert d.shape == (20,) and got["rows"] == rows
    half = 2.093024054408263 * d.std(ddof=1) / math.sqrt(20)  # t_{0.975, 19}
    assert (got["diff"], got["half_width"]) == (pytest.approx(d.mean()), pytest.approx(half))
    assert got["verdict"] == ("holds" if d.mean() - half > 0 else "contradicted" if d.mean() + half < 0 else "not shown")
    assert info["merged_from"].keys() == {"vanilla", "cse"} and info["steps_run"] == 2_000_000
