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

# Student-t 97.5% quantiles by degrees of freedom: the toy cases' 3 and 5 seeds, the committed runs' 5, 10, 20
T975 = {2: 4.302652729749464, 4: 2.7764451051977987, 9: 2.2621571627409915, 19: 2.093024054408263}
T3, T5 = T975[2], T975[4]
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
    paper_verdicts = _paper_verdicts()
    cl = verdicts.load_claims(os.path.join(REPO, "docs", "experiments", "claims.json"))
    (label, got), = paper_verdicts.main_verdicts(paper_verdicts.PAPER, cl, envs=["pendulum_goal"])
    assert label.startswith("committed runs, deterministic evaluation, 16 episodes") and label.endswith("10 seeds")
    results, _ = paper_verdicts.load_run(os.path.join(paper_verdicts.PAPER, "pendulum_goal"))
    for v, (a, b, rows) in zip(got, [("cse", "vanilla", ["(2,1,1,0.75)", "(2,1.2,1,-0.75)"]),
                                      ("cse", "ldr", ["tau=0.75", "tau=1"])]):
        assert v["rows"] == rows
        mean, half = _paired_t_by_hand(results, a, b, rows)
        assert (v["diff"], v["half_width"]) == (pytest.approx(mean), pytest.approx(half))
    assert [v["verdict"] for v in got] == ["not shown", "contradicted"]


def _paired_t_by_hand(results, a, b, rows):
    """(mean, half width) of the per-seed difference a − b averaged over ``rows`` and episodes, in NumPy."""
    idx = [results[a].grid.labels.index(r) for r in rows]
    d = (np.asarray(results[a].returns, np.float64)[:, idx].mean(axis=(1, 2))
         - np.asarray(results[b].returns, np.float64)[:, idx].mean(axis=(1, 2)))
    return d.mean(), T975[len(d) - 1] * d.std(ddof=1) / math.sqrt(len(d))


def _verdict_by_hand(mean, half):
    return "holds" if mean - half > 0 else "contradicted" if mean + half < 0 else "not shown"


def _paper_verdicts():
    import sys

    scripts = os.path.join(REPO, "scripts", "experiments")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    import paper_verdicts

    return paper_verdicts


def _committed_paper20_run(env):
    paper_verdicts = _paper_verdicts()
    results, info = paper_verdicts.load_run(os.path.join(REPO, "docs", "experiments", "paper20", env))
    return results, info, paper_verdicts.run_label(info, results)


def test_committed_cart_goal_20_seed_verdict_recomputes_from_the_raw_returns():
    """paper20/cart_goal (merged from one process per method): the paper's goals ±0.5, ±1,
    20 seeds, recomputed here in NumPy against what paper_verdicts.py writes into the docs."""
    cl = verdicts.load_claims(os.path.join(REPO, "docs", "experiments", "claims.json"))
    results, info, label = _committed_paper20_run("cart_goal")
    assert "sampled actions (sample_unscaled), 64 episodes, 50 points per dimension, 20 seeds" in label
    (got,) = verdicts.judge_env("cart_goal", results, cl)  # what main_verdicts gives the docs for this run
    rows = ["goal=0.5", "goal=-0.5", "goal=1", "goal=-1"]
    mean, half = _paired_t_by_hand(results, "cse", "vanilla", rows)
    assert results["cse"].num_seeds == 20 and got["rows"] == rows
    assert (got["diff"], got["half_width"]) == (pytest.approx(mean), pytest.approx(half))
    assert got["verdict"] == _verdict_by_hand(mean, half)
    assert info["merged_from"].keys() == {"vanilla", "cse"} and info["steps_run"] == 2_000_000


def test_committed_cheetah_velocity_paper_scale_verdicts_recompute_from_the_raw_returns():
    """paper20/cheetah_velocity: 520k steps x 10 seeds (the paper's), evaluated with sampled actions at
    16 episodes and 31 target velocities in [-3, 3]; the target-velocity sweep above 1.5 (CSE vs vanilla)
    and above 2.6 (CSE vs LDR, once LDR has landed), recomputed here in NumPy."""
    cl = verdicts.load_claims(os.path.join(REPO, "docs", "experiments", "claims.json"))
    results, info, label = _committed_paper20_run("cheetah_velocity")
    assert "sampled actions (sample_unscaled), 16 episodes, 31 points per dimension, 10 seeds" in label
    assert info["steps_run"] == 520_000 and {"vanilla", "cse"} <= set(results)
    velocities = [f"target_velocity={v:g}" for v in np.round(np.linspace(-3, 3, 31), 6)]
    expected = [("cse", "vanilla", velocities[23:])]  # 1.6 ... 3.0: above 1.5
    if "ldr" in results:
        expected.append(("cse", "ldr", velocities[29:]))  # 2.8, 3.0: above 2.6 (2.6 itself is not above)
    (docs_label, got), = _paper_verdicts().main_verdicts(os.path.join(REPO, "docs", "experiments", "paper20"), cl,
                                                         envs=["cheetah_velocity"])  # the docs' rows
    assert docs_label == label and len(got) == len(expected)
    for v, (a, b, rows) in zip(got, expected):
        mean, half = _paired_t_by_hand(results, a, b, rows)
        assert (v["a"], v["b"], v["rows"]) == (a, b, rows)
        assert (v["diff"], v["half_width"]) == (pytest.approx(mean), pytest.approx(half))
        assert v["verdict"] == _verdict_by_hand(mean, half)


def test_ablation_runs_without_a_main_run_are_judged_and_variants_need_one(tmp_path, monkeypatch):
    """A run holding every method (``replaced`` None, e.g. the ants at 520k x 5 seeds) is judged on its own;
    a one-method variant is judged only paired by seed with its env's committed main run (its other methods
    from there); runs that have not landed are left out."""
    from zsgjax.reporting import tables

    paper_verdicts = _paper_verdicts()
    monkeypatch.setattr(paper_verdicts, "MAIN_RUNS", {"toy": "toy_main", "other": "other_main"})
    cl = claims_file(tmp_path, [claim(), {**claim(), "id": "solo/greater", "env": "solo"}])  # solo: no main run
    runs = {"toy_small": {"cse": result([3.0, 4.0, 5.0], [2, 3]), "ldr": result([0.0] * 3, [2, 3])},
            "toy_main": {"cse": result([9.0] * 3, [2, 3]), "ldr": result([1.0, 2.0, 3.0], [2, 3])},
            "toy_variant": {"cse": result([1.0, 2.0, 6.0], [2, 3])}}
    for sub, run in runs.items():
        (tmp_path / sub).mkdir()
        tables.write_json(run, tmp_path / sub / "results.json")
    ablations = (("solo", "toy_small", None, "small"),
                 ("toy", "toy_variant", "cse", "variant"),
                 ("other", "toy_variant", "cse", "variant whose main run has not landed"),
                 ("unlisted", "toy_variant", "cse", "variant of an env without a main run"),
                 ("toy", "toy_not_landed", None, "not landed"))
    (small, (v,)), (variant, (w,)) = paper_verdicts.ablation_verdicts(str(tmp_path), cl, ablations)
    assert (small, variant) == ("small", "variant")
    assert (v["a"], v["b"], v["rows"]) == ("cse", "ldr", ["tau=0.8", "tau=1"])
    assert (v["diff"], v["half_width"]) == (pytest.approx(4.0), pytest.approx(T3 * 1.0 / math.sqrt(3)))
    assert (w["diff"], w["half_width"]) == (pytest.approx(1.0), pytest.approx(T3 * math.sqrt(3) / math.sqrt(3)))
    assert "| solo: c | τ=0.8, τ=1 | cse − ldr: +4 ± 2.48 | small | cse > ldr |" in paper_verdicts.markdown(
        [], [(small, [v])])


def test_a_claim_on_a_sweep_the_grid_lacks_is_left_unjudged(tmp_path):
    """A run evaluated on its named contexts alone (``--sweep-dims none``) judges the named claims and lists the
    sweep claims as unjudged (the 64-episode cheetah evaluation once failed here after 45 minutes)."""
    g = grid()
    named_only = ContextGrid(contexts=g.contexts[4:], labels=g.labels[4:], swept=(None, None), names=g.names,
                             default=g.default)
    sweep, named = claim(), {**claim(rows=({"named": ["A"]},)), "id": "toy/named"}
    cl = claims_file(tmp_path, [sweep, named])
    results = {m: EvalResult(named_only, np.full((3, 2, 2), v)) for m, v in (("cse", 1.0), ("ldr", 0.0))}
    assert verdicts.evaluable(cl.claims[1], named_only) and not verdicts.evaluable(cl.claims[0], named_only)
    assert [v["id"] for v in verdicts.judge_env("toy", results, cl)] == ["toy/named"]
    assert [c.id for c in verdicts.unjudged("toy", results, cl)] == ["toy/greater"]
    full = {m: result([v] * 3, [0, 1, 2, 3, 4, 5]) for m, v in (("cse", 1.0), ("ldr", 0.0))}
    assert [v["id"] for v in verdicts.judge_env("toy", full, cl)] == ["toy/greater", "toy/named"]
    assert verdicts.unjudged("toy", full, cl) == []


# the claims' rows (docs/experiments/claims.json) of the ant runs that have landed
ANT_NAMED = {"ant_direction": ["angle=0.1", "angle=-0.1", "angle=0.2", "angle=-0.2", "angle=0.5", "angle=-0.5",
                               "angle=1", "angle=-1", "angle=3.14159"],
             "ant_goal": ["angle=0.1", "angle=0.2", "angle=0.5", "angle=1", "angle=3.14159"]}


@pytest.mark.parametrize("env", sorted(ANT_NAMED))
def test_committed_ant_ablation_verdicts_recompute_from_the_raw_returns(env):
    """paper20/<env>_520k_5seeds, an ablation (520k steps x 5 seeds; the paper: 1.04M x 10), evaluated on the
    paper's named angles alone at 64 episodes with sampled actions: "CSE outperforms vanilla" (greater) and
    "CSE is comparable to LDR" (within 10% of LDR's mean) recomputed in NumPy from the raw returns, and judged
    only in the ablation table."""
    cl = verdicts.load_claims(os.path.join(REPO, "docs", "experiments", "claims.json"))
    paper_dir = os.path.join(REPO, "docs", "experiments", "paper20")
    results, info, _ = _committed_paper20_run(f"{env}_520k_5seeds")
    assert set(results) == {"vanilla", "cse", "ldr"} and info["steps_run"] == 520_000
    assert all(r.returns.shape[0] == 5 and r.returns.shape[2] == 64 for r in results.values())
    assert info["eval_actions"] == "sample_unscaled" and results["cse"].grid.swept_dims == ()
    paper_verdicts = _paper_verdicts()
    (text,) = [t for e, sub, _, t in paper_verdicts.ABLATIONS if sub == f"{env}_520k_5seeds"]
    (got,) = [v for t, v in paper_verdicts.ablation_verdicts(paper_dir, cl)  # the two ants share the text
              if t == text and v[0]["id"].startswith(f"{env}/")]
    assert env not in paper_verdicts.MAIN_RUNS  # no run at the paper's protocol: judged as an ablation only
    rows = ANT_NAMED[env]
    greater, comparable = got
    assert (greater["a"], greater["b"], greater["rows"]) == ("cse", "vanilla", rows)
    mean, half = _paired_t_by_hand(results, "cse", "vanilla", rows)
    assert (greater["diff"], greater["half_width"]) == (pytest.approx(mean), pytest.approx(half))
    assert greater["verdict"] == _verdict_by_hand(mean, half)
    assert (comparable["a"], comparable["b"], comparable["rows"]) == ("cse", "ldr", rows)
    mean, half = _paired_t_by_hand(results, "cse", "ldr", rows)
    idx = [results["ldr"].grid.labels.index(r) for r in rows]
    margin = 0.1 * abs(np.asarray(results["ldr"].returns, np.float64)[:, idx].mean())
    assert (comparable["diff"], comparable["half_width"], comparable["margin"]) == (
        pytest.approx(mean), pytest.approx(half), pytest.approx(margin))
    inside, outside = -margin < mean - half and mean + half < margin, mean - half >= margin or mean + half <= -margin
    assert comparable["verdict"] == ("holds" if inside else "contradicted" if outside else "inconclusive")


def test_rows_text_summarizes_a_sweep_and_lists_named_contexts():
    sweep = [f"v={x:g}" for x in np.float32(np.linspace(1.6, 3.0, 8))]
    assert verdicts.rows_text(sweep) == "v sweep, 1.6 to 3 (8 points)"
    rounded = [f"τ={x:.3g}" for x in np.linspace(-1, 1, 50)[40:]]  # labels of 3 digits: steps 0.040 / 0.041
    assert verdicts.rows_text(rounded) == "τ sweep, 0.633 to 1 (10 points)"
    named = ["angle=0.1", "angle=-0.1", "angle=0.2", "angle=-0.2", "angle=0.5", "angle=-0.5", "angle=1"]
    assert verdicts.rows_text(named) == "angle = 0.1, -0.1, 0.2, -0.2, 0.5, -0.5, 1"  # not evenly spaced
    assert verdicts.rows_text(named[:3]) == "angle=0.1, angle=-0.1, angle=0.2"
