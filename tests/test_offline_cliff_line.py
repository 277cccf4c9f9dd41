"""CliffLine (zsgjax.offline.control.cliff_line) against hand computations, and the selection
rule and paired verdicts of the pessimism experiment (scripts/offline_control/pessimism.py)."""

from __future__ import annotations

import importlib.util
import os
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax.offline.control import cliff_line as CL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rollout(env, actions, edge):
    """Rewards and done flags of an action sequence, by the environment's own step."""
    state = env.init_env_state(None, jnp.array([edge]))
    out = []
    for a in actions:
        state, obs, r, done = env.env_step(state, jnp.array([a], jnp.float32), jnp.array([edge], jnp.float32))
        out.append((float(state[0]), float(r), bool(done)))
        np.testing.assert_array_equal(obs, state)
    return out


def test_steps_match_hand_computation():
    env = CL.CliffLine()
    # x: 0 -> 0.25 -> 0.5 -> 0.375 (a = -0.5) -> 0.125 (a = -2 clipped to -1) -> 0 (the wall: max(-0.125, 0))
    #   -> 0.25 (a = 2 clipped to 1); the reward is the new position
    got = rollout(env, [1.0, 1.0, -0.5, -2.0, -1.0, 2.0], 0.6)
    assert got == [(0.25, 0.25, False), (0.5, 0.5, False), (0.375, 0.375, False), (0.125, 0.125, False),
                   (0.0, 0.0, False), (0.25, 0.25, False)]
    # past the edge: reward -fall, terminal; at the edge exactly: no fall
    assert rollout(env, [1.0, 1.0, 1.0], 0.6)[2] == (0.75, -1.0, True)
    assert rollout(CL.CliffLine(fall=2.5), [1.0, 1.0], 0.5)[1] == (0.5, 0.5, False)
    assert rollout(CL.CliffLine(fall=2.5, stride=0.3), [1.0, 1.0], 0.5)[1][1:] == (-2.5, True)


def test_blind_return_matches_rollouts():
    env = CL.CliffLine(horizon=4)
    positions = np.array([0.25, 0.5, 0.75, 0.75])  # +1, +1, +1, 0
    for edge, want in ((0.6, 0.25 + 0.5 - 1.0), (0.8, 0.25 + 0.5 + 0.75 + 0.75), (0.3, 0.25 - 1.0)):
        got = CL.blind_return(positions, [edge])
        steps = rollout(env, [1.0, 1.0, 1.0, 0.0], edge)
        ended = next((i for i, (_, _, done) in enumerate(steps) if done), len(steps) - 1)
        by_rollout = sum(r for _, r, _ in steps[: ended + 1])  # rewards up to and including the fall
        assert got.shape == (1,) and got[0] == pytest.approx(want) and by_rollout == pytest.approx(want)
    assert CL.blind_return(np.stack([positions, positions]), [0.6, 0.8]).shape == (2, 2)
    # a sequence that returns below the edge after passing it: the episode ended at the first pass
    assert CL.blind_return([0.25, 0.75, 0.5, 0.5], [0.6])[0] == pytest.approx(0.25 - 1.0)


def test_approach_policy_and_bad_input():
    obs = jnp.array([0.1, 0.6])  # x = 0.1, then the context (unused)
    np.testing.assert_allclose(CL.approach_policy(0.2, obs, None), [0.4], rtol=1e-6)
    np.testing.assert_allclose(CL.approach_policy(0.2, jnp.array([0.0, 0.6]), None), [0.8], rtol=1e-6)
    np.testing.assert_allclose(CL.approach_policy(0.9, jnp.array([0.0, 0.6]), None), [1.0])
    with pytest.raises(ValueError, match="CliffLine: `stride`"):
        CL.CliffLine(stride=0.0)
    with pytest.raises(ValueError, match="CliffLine: `horizon`"):
        CL.CliffLine(horizon=0)
    with pytest.raises(ValueError, match="CliffLine: `fall`"):
        CL.CliffLine(fall=-1.0)


def _script(path):
    sys.path.insert(0, os.path.join(ROOT, os.path.dirname(path)))
    spec = importlib.util.spec_from_file_location("script_" + os.path.basename(path)[:-3], os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def test_selection_rule_and_paired_verdicts():
    pess = _script("scripts/offline_control/pessimism.py")
    # (B, S) validation returns over betas [0, 1, 4]: seed 0 best at beta 4, seed 1 tie 1 = 4 -> smallest (1),
    # seed 2 all equal -> beta 0; betas given unsorted are sorted by value, not by position
    val = np.array([[0.0, 0.0, 3.0], [1.0, 2.0, 3.0], [2.0, 2.0, 3.0]])
    np.testing.assert_array_equal(pess.select(val, [0.0, 1.0, 4.0]), [2, 1, 0])
    np.testing.assert_array_equal(pess.select(val[[2, 0, 1]], [4.0, 0.0, 1.0]), [0, 2, 1])
    lin = _script("scripts/offline/pessimism.py")
    np.testing.assert_array_equal(lin.select(val), [2, 1, 0])


def test_paired_verdict_against_a_hand_computed_interval():
    """``zsgjax.reporting.stats.paired_verdict``, the test of every offline script's pre-registered claims."""
    from zsgjax.reporting.stats import paired_verdict

    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.5, 1.0, 2.0, 3.5])
    d = a - b  # 0.5, 1, 1, 0.5: mean 0.75, sd 0.2887, t_{0.975,3} = 3.1824
    half = 3.182446305284263 * np.std(d, ddof=1) / 2.0
    v = paired_verdict(a, b, "greater")
    assert v["diff"] == pytest.approx(0.75) and v["ci95"] == pytest.approx(half) and v["verdict"] == "holds"
    assert v["interval"] == pytest.approx([0.75 - half, 0.75 + half])
    assert paired_verdict(b, a)["verdict"] == "contradicted"
    assert paired_verdict(a, b, "two-sided")["verdict"] == "a > b"
    assert paired_verdict(b, a, "two-sided")["verdict"] == "a < b"
    noisy = np.array([1.0, -1.0, 1.0, -1.0])
    assert paired_verdict(noisy, np.zeros(4), "greater")["verdict"] == "not shown"
    assert paired_verdict(noisy, np.zeros(4), "two-sided")["verdict"] == "no significant difference"
    with pytest.raises(ValueError, match=r"paired_verdict: `kind` must be one of"):
        paired_verdict(a, b, "less")
    with pytest.raises(ValueError, match=r"same number \(>= 2\) of per-seed values, got 4 and 3"):
        paired_verdict(a, b[:3])
