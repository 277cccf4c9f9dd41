"""FlipGate / FlipCart (zsgjax.offline.control.flip_gate): the average-MDP failure of experiment (a).

The reference is an exact construction in NumPy, independent of the library: the average
MDP of a *finite* set of training contexts (the mixture of their MDPs, each state weighted
by how often the uniform behaviour visits it in each context; actions restricted to
+-1 so that every state lies on a finite tree), solved by backward induction over the
time-augmented states, and its optimal policy rolled out in the true contexts. For
contexts in exact pairs (-u, +u) (``sample_contexts(paired=True)``) the optimum is the
derived one (a_0 = +1, then -1), its advantage gap is ``-2 delta <u^2>``, and its true
return is at most :func:`merged_return_bound` (equal to ``delta - w(c) c`` on FlipGate,
the hand computation); for an unpaired set the states reveal the context and the bound
fails, which is why the experiment draws pairs.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax.offline.control import flip_gate as F

DELTA, GAMMA, H = 0.1, 0.9, 6


def numpy_step(c, s, a, delta, rho):
    """Float64 port of FlipCart (``rho = 0``: FlipGate's dynamics and rewards): ``(s', r, terminal)``."""
    x, v, first = s
    v2 = rho * v + c * a
    x2 = x + v2
    r = delta * a if first else (1.0 - delta * (1.0 + c)) * v2
    return (x2, v2, 0), r, x2 <= 0.0


def key(t, s):
    return (t,) + tuple(round(float(z), 9) for z in s)


def average_mdp_policy(contexts, delta=DELTA, rho=0.0, horizon=H, gamma=GAMMA):
    """The greedy policy and advantage ``Q(+1) - Q(-1)`` of the average MDP of ``contexts`` (actions +-1,
    uniform behaviour), by backward induction: ``{(t, x, v, first): (action, gap, <c^2>)}``."""
    visits = []  # per context: {key: (probability of being there, the state)}
    for c in contexts:
        d, frontier = {}, {key(0, (0.0, 0.0, 1)): (1.0, (0.0, 0.0, 1))}
        for t in range(horizon):
            nxt = {}
            for k, (p, s) in frontier.items():
                d[k] = (d.get(k, (0.0, s))[0] + p, s)
                for a in (-1.0, 1.0):
                    s2, _, term = numpy_step(c, s, a, delta, rho)
                    if not term and t + 1 < horizon:
                        k2 = key(t + 1, s2)
                        nxt[k2] = (nxt.get(k2, (0.0, s2))[0] + p / 2, s2)
            frontier = nxt
        visits.append(d)
    states = sorted(set().union(*visits), key=lambda k: -k[0])  # latest first
    value, policy = {}, {}
    for k in states:
        t, s = k[0], visits[[k in v for v in visits].index(True)][k][1]
        w = np.array([v[k][0] if k in v else 0.0 for v in visits])
        q = {}
        for a in (-1.0, 1.0):
            total = 0.0
            for c, wi in zip(contexts, w):
                if wi > 0:
                    s2, r, term = numpy_step(c, s, a, delta, rho)
                    cont = 0.0 if term or t + 1 >= horizon else value[key(t + 1, s2)]
                    total += wi * (r + gamma * cont)
            q[a] = total / w.sum()
        best = max(q, key=q.get)
        value[k], policy[k] = q[best], (best, q[1.0] - q[-1.0], float(w @ np.square(contexts) / w.sum()))
    return policy


def true_return(policy, c, delta=DELTA, rho=0.0, horizon=H):
    s, total = (0.0, 0.0, 1), 0.0
    for t in range(horizon):
        s, r, term = numpy_step(c, s, policy[key(t, s)][0], delta, rho)
        total += r
        if term:
            break
    return total


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_average_mdp_of_paired_contexts_plays_plus_then_minus_and_scores_at_most_the_bound(rho):
    contexts = np.asarray(F.sample_contexts(jax.random.PRNGKey(0), 4, paired=True), np.float64)[:, 0]
    assert np.allclose(contexts[0::2], -contexts[1::2]) and np.all(contexts[1::2] >= 0.5)
    policy = average_mdp_policy(contexts, rho=rho)
    for k, (a, gap, c2) in policy.items():
        if k[0] == 0:
            assert a == 1.0 and gap == pytest.approx(2 * DELTA, abs=1e-12)  # the start: +delta a, same futures
        else:  # afterwards: the pooled reward -delta <c^2> a, the same law of next states for +-a
            assert a == -1.0 and gap == pytest.approx(-2 * DELTA * c2, abs=1e-12)
    env = F.FlipCart(DELTA, rho) if rho else F.FlipGate(DELTA)
    got = np.array([true_return(policy, c, rho=rho) for c in contexts])
    bound = F.merged_return_bound(env, contexts[:, None])
    assert np.all(got <= bound + 1e-12)
    if rho == 0.0:  # hand computation: c < 0 ends at once (delta); c > 0: +delta, then -w(c) c back to x = 0
        want = np.where(contexts > 0, DELTA - (1 - DELTA * (1 + contexts)) * contexts, DELTA)
        np.testing.assert_allclose(got, want, rtol=1e-12)
        np.testing.assert_allclose(bound, DELTA)


def test_merged_return_bound_is_attained():
    """The bound is tight: a_0 = +1 then coasting (a = 0) reaches it up to rho^H (FlipCart), and on FlipGate
    a_0 = +1 scores delta where c < 0 and, followed by a = 0, delta where c > 0."""
    for rho, env in ((0.0, F.FlipGate(DELTA)), (0.5, F.FlipCart(DELTA, 0.5))):
        for c in (-0.8, 0.6, 1.0):
            s, total = (0.0, 0.0, 1), 0.0
            for t in range(env.horizon):
                s, r, term = numpy_step(c, s, 1.0 if t == 0 else 0.0, DELTA, rho)
                total += r
                if term:
                    break
            bound = float(F.merged_return_bound(env, [[c]])[0])
            assert total <= bound + 1e-12 and total == pytest.approx(bound, rel=3 * rho ** (env.horizon - 1) + 1e-9)


def test_unpaired_contexts_break_the_bound():
    """With magnitudes that differ by sign the states reveal the context: the average MDP's optimum
    then scores above delta in a context (the derivation needs the pairs)."""
    contexts = np.array([-0.5, 1.0])
    policy = average_mdp_policy(contexts)
    got = np.array([true_return(policy, c) for c in contexts])
    assert got.max() > DELTA + 0.1


def test_pooled_reward_slope_by_hand():
    """(1/n) sum_i w(c_i) c_i on {-0.5, 0.5, -1, 1}, delta 0.1: (0.425 - 0.475 + 0.8 - 1.0) / 4 = -0.0625
    = -delta mean(c^2)."""
    env = F.FlipGate(0.1)
    c = jnp.array([-0.5, 0.5, -1.0, 1.0])
    assert float(jnp.mean(env.weight(c) * c)) == pytest.approx(-0.0625, abs=1e-7)
    assert float(jnp.mean(env.weight(c) * c)) == pytest.approx(-0.1 * float(jnp.mean(c**2)), abs=1e-7)


def test_flip_cart_matches_numpy_port():
    env = F.FlipCart(0.1, 0.6)
    rng = np.random.default_rng(0)
    for c in (-0.8, 0.7):
        actions = rng.uniform(-1.5, 1.5, 8)
        st = env.reset(jax.random.PRNGKey(0), jnp.array([c]))
        s = (0.0, 0.0, 1)
        for a in actions:
            st = env.step(st, jnp.array([a], jnp.float32))
            s, r, term = numpy_step(c, s, float(np.clip(a, -1, 1)), 0.1, 0.6)
            np.testing.assert_allclose(np.asarray(st.obs[:3]), s, rtol=1e-5, atol=1e-6)
            assert float(st.reward) == pytest.approx(r, rel=1e-5, abs=1e-6)
            if term:
                assert bool(st.done)
                break


def test_flip_gate_bad_input():
    with pytest.raises(ValueError, match="momentum"):
        F.FlipCart(momentum=1.0)
    with pytest.raises(ValueError, match="even"):
        F.sample_contexts(jax.random.PRNGKey(0), 3, paired=True)
    with pytest.raises(ValueError, match="u_min"):
        F.sample_contexts(jax.random.PRNGKey(0), 4, u_min=1.5)
    with pytest.raises(ValueError, match="env"):
        F.merged_return_bound(object(), [[0.5]])
    with pytest.raises(ValueError, match="contexts"):
        F.merged_return_bound(F.FlipGate(), [[1.5]])


@pytest.mark.slow
def test_average_mdp_script_smoke(tmp_path):
    """A tiny run of average_mdp.py on FlipCart: paired contexts, the claims written and judged, the files."""
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = str(tmp_path / "am")
    subprocess.run([sys.executable, os.path.join(root, "scripts", "offline_control", "average_mdp.py"), "--env",
                    "flip_cart", "--seeds", "2", "--num-envs", "2", "--transitions", "40", "--scale", "0.002", "--out",
                    out], check=True, env=env, cwd=root, timeout=900)
    r = json.load(open(out + ".json"))
    assert r["exact_pairs"] and [v["id"] for v in r["verdicts"]] == [c["id"] for c in r["preregistered"]]
    assert r["closed_form_reference"]["merged bound (derived)"] == pytest.approx(
        float(np.mean(F.merged_return_bound(F.FlipCart(), np.r_[-np.linspace(0.5, 1, 5), np.linspace(0.5, 1, 5)]))))
    assert os.path.exists(out + ".md") and os.path.exists(out + ".png")
