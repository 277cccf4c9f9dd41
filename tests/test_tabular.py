"""Tabular Cliffwalking, exact policy evaluation and CEBE (zsgjax.tabular).

References are independent NumPy code: the transition kernel is rebuilt by
enumerating the two slip events one by one, and policy evaluation is checked
against plain iterative evaluation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax import tabular as tb
from zsgjax.reporting.stats import loglog_slope
from zsgjax.tabular import cliffwalking as cw

ROWS, COLS = 5, 6
S, A = ROWS * COLS, 4
START, GOAL = 24, 29
CLIFF = {25, 26, 27, 28}


def numpy_kernel(p, goal_r, cliff_r):
    """Reference ``T (S, A, S)`` and ``R (S, A)`` by enumerating both slip events."""
    moves = [(-1, 0), (0, 1), (1, 0), (0, -1)]  # up right down left
    slip = [(0, 1 - p), (1, p / 2), (-1, p / 2)]  # (quarter turns clockwise, probability)
    t = np.zeros((S, A, S))
    r = np.zeros((S, A))
    for s in range(S):
        for a in range(A):
            if s == GOAL:
                t[s, a, GOAL] = 1.0
                continue
            if s in CLIFF:
                t[s, a, START] = 1.0
                continue
            for k1, q1 in slip:
                for k2, q2 in slip:
                    d = (a + k1 + k2) % 4
                    row = min(max(s // COLS + moves[d][0], 0), ROWS - 1)
                    col = min(max(s % COLS + moves[d][1], 0), COLS - 1)
                    nxt = row * COLS + col
                    if nxt in CLIFF:
                        t[s, a, START] += q1 * q2
                        r[s, a] += q1 * q2 * cliff_r
                    else:
                        t[s, a, nxt] += q1 * q2
                        r[s, a] += q1 * q2 * (goal_r if nxt == GOAL else 0.0)
    return t, r


def numpy_iterative_q(t, r, pi, gamma, iters=2000):
    q = np.zeros_like(r)
    for _ in range(iters):
        q = r + gamma * t @ np.sum(pi * q, axis=1)
    return q


REWARDS = {
    "constant": lambda p: (1.0, -10.0),
    "inverse": lambda p: (1.0 / p**2, -100.0 / p),
    "smooth": lambda p: (1.0 / (1.0 + p) ** 1.5, -10.0 / (1.0 + p)),
}


@pytest.mark.parametrize("variant", cw.VARIANTS)
def test_kernel_matches_numpy_enumeration(variant):
    p = 0.23
    with jax.enable_x64(True):
        t = np.asarray(cw.transition_matrix(jnp.asarray(p)))
        r = np.asarray(cw.reward(jnp.asarray(p), variant))
    t_ref, r_ref = numpy_kernel(p, *REWARDS[variant](p))
    np.testing.assert_allclose(t.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(t, t_ref, atol=1e-12)
    np.testing.assert_allclose(r, r_ref, rtol=1e-12, atol=1e-12)


def test_kernel_hand_checked_entries():
    p = 0.1
    t = np.asarray(cw.transition_matrix(p))
    r = np.asarray(cw.reward(p, "constant"))
    # start, action up: up with (1-p)^2 + p^2/2; left/down bump the wall, right falls off the cliff.
    np.testing.assert_allclose(t[START, 0, 18], 0.81 + 0.005, atol=1e-6)
    np.testing.assert_allclose(t[START, 0, START], 0.09 + 0.09 + 0.005, atol=1e-6)
    np.testing.assert_allclose(r[START, 0], -10.0 * 0.09, atol=1e-6)
    # above the goal, action down: goal with (1-p)^2 + p^2/2, stay (right wall) p(1-p), left p(1-p), up p^2/2.
    np.testing.assert_allclose(t[23, 2, [GOAL, 23, 22, 17]], [0.815, 0.09, 0.09, 0.005], atol=1e-6)
    np.testing.assert_allclose(r[23, 2], 0.815, atol=1e-6)
    # the goal is absorbing with zero reward
    np.testing.assert_allclose(t[GOAL, :, GOAL], 1.0, atol=1e-6)
    np.testing.assert_allclose(r[GOAL], 0.0)


def test_kernel_is_nonlinear_in_p():
    with jax.enable_x64(True):
        d2 = jax.jacfwd(jax.jacfwd(cw.transition_matrix))(jnp.asarray(0.1))
        # d^2/dp^2 of P(intended) = 3, of P(perpendicular) = -2, of P(opposite) = 1
        np.testing.assert_allclose(d2[23, 2, [GOAL, 22, 17]], [3.0, -2.0, 1.0], atol=1e-9)


def test_policy_evaluation_matches_numpy_iteration():
    with jax.enable_x64(True):
        p = jnp.asarray(0.17)
        t, r = tb.mdp_at(p, "smooth")
        key = jax.random.PRNGKey(3)
        pi = jax.nn.softmax(jax.random.normal(key, (S, A), dtype=jnp.float64), axis=-1)
        q = np.asarray(tb.evaluate_policy(t, r, pi, 0.9))
    q_ref = numpy_iterative_q(np.asarray(t), np.asarray(r), np.asarray(pi), 0.9)
    np.testing.assert_allclose(q, q_ref, atol=1e-10)


def test_value_iteration_is_optimal():
    with jax.enable_x64(True):
        p = jnp.asarray(0.1)
        t, r = tb.mdp_at(p, "constant")
        q_star = tb.optimal_q(p, "constant", tol=1e-12)
        q_greedy = tb.evaluate_policy(t, r, tb.greedy_policy(q_star), 0.9)
        q_uniform = tb.evaluate_policy(t, r, tb.uniform_policy(S, A, jnp.float64), 0.9)
        # Bellman optimality and the greedy policy's value equal Q*
        np.testing.assert_allclose(q_star, r + 0.9 * t @ jnp.max(q_star, -1), atol=1e-10)
        np.testing.assert_allclose(q_greedy, q_star, atol=1e-9)
        assert bool(jnp.all(q_star >= q_uniform - 1e-12))
        # above the goal the optimal action is down, and it is worth about the goal reward
        assert int(jnp.argmax(q_star[23])) == 2
        assert float(jnp.max(q_star[23])) > 0.9


def test_cebe_exact_at_zero_step():
    pi = tb.policy_at("optimal", 0.1, "inverse")
    assert float(tb.cebe_error(0.1, 0.0, pi, "inverse")) <= 1e-4 * float(jnp.max(jnp.abs(tb.true_q(0.1, pi, "inverse"))))
    with jax.enable_x64(True):
        pi = tb.policy_at("optimal", jnp.asarray(0.1), "inverse")
        assert float(tb.cebe_error(jnp.asarray(0.1), 0.0, pi, "inverse")) < 1e-11


@pytest.mark.parametrize("variant", cw.VARIANTS)
def test_cebe_error_is_second_order(variant):
    with jax.enable_x64(True):
        p0 = jnp.asarray(0.1)
        dps = jnp.asarray(np.geomspace(1e-3, 3e-2, 6))
        pi = tb.policy_at("optimal", p0, variant)
        first = tb.cebe_errors(p0, dps, pi, variant, order=1)
        zeroth = tb.cebe_errors(p0, dps, pi, variant, order=0)
        slope1 = loglog_slope(dps, first)
        slope0 = loglog_slope(dps, zeroth)
    assert 1.8 <= slope1 <= 2.2, slope1
    # the zeroth-order model is only O(dp): a broken linearization would show this slope
    assert 0.8 <= slope0 <= 1.2, slope0
    assert bool(jnp.all(first < zeroth))


def test_cebe_second_order_for_uniform_policy_and_negative_steps():
    with jax.enable_x64(True):
        p0 = jnp.asarray(0.3)
        dps = jnp.asarray(np.geomspace(1e-3, 3e-2, 6))
        pi = tb.policy_at("uniform", p0, "smooth")
        slope = loglog_slope(dps, tb.cebe_errors(p0, -dps, pi, "smooth"))
    assert 1.8 <= slope <= 2.2, slope


def numpy_cebe_errors(p0, dps, pi, variant, gamma=0.9, h=1e-5):
    """Independent reference: the Taylor model from central differences of the enumerated
    kernel (exact for T, which is quadratic in p), clipped and renormalized, and both Q's by
    a direct (S A) x (S A) linear solve of ``Q = R + gamma T pi Q``. Returns the errors and,
    per step, whether the linear model had negative entries (where the clip acts)."""
    def q_of(t, r):
        big = np.einsum("sat,tb->satb", t, pi).reshape(S * A, S * A)
        return np.linalg.solve(np.eye(S * A) - gamma * big, r.reshape(-1)).reshape(S, A)

    t0, r0 = numpy_kernel(p0, *REWARDS[variant](p0))
    tp, rp = numpy_kernel(p0 + h, *REWARDS[variant](p0 + h))
    tm, rm = numpy_kernel(p0 - h, *REWARDS[variant](p0 - h))
    errors, clipped = [], []
    for dp in dps:
        t_lin = t0 + (tp - tm) / (2 * h) * dp
        clipped.append(bool(np.any(t_lin < 0)))
        t_lin = np.clip(t_lin, 0.0, None)
        t_lin /= t_lin.sum(-1, keepdims=True)
        r_lin = r0 + (rp - rm) / (2 * h) * dp
        t1, r1 = numpy_kernel(p0 + dp, *REWARDS[variant](p0 + dp))
        errors.append(np.abs(q_of(t_lin, r_lin) - q_of(t1, r1)).max())
    return np.array(errors), clipped


def test_cebe_error_vmaps_and_jits_and_matches_numpy_reference():
    p0, variant = 0.1, "smooth"
    dps = np.array([0.0, 0.02, -0.03, -0.06])  # -0.06: the linear model has negative entries (clipped)
    with jax.enable_x64(True):
        pi = tb.policy_at("optimal", jnp.asarray(p0), variant)
        batched = np.asarray(tb.cebe_errors(jnp.asarray(p0), jnp.asarray(dps), pi, variant))
        jitted = np.asarray(jax.jit(jax.vmap(lambda dp: tb.cebe_error(p0, dp, pi, variant)))(jnp.asarray(dps)))
        one = jax.jit(lambda dp: tb.cebe_error(p0, dp, pi, variant))
        single = np.array([float(one(dp)) for dp in dps])  # one sample at a time
    ref, clipped = numpy_cebe_errors(p0, dps, np.asarray(pi), variant)
    assert clipped == [False, False, False, True]
    assert ref[0] < 1e-12 and np.all(ref[1:] > 1e-5)
    for got in (batched, jitted, single):
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-10)


def test_linearized_rows_are_distributions():
    t, _ = tb.taylor_mdp(0.05, -0.2, "constant")  # far step: the linear model goes negative before clipping
    assert bool(jnp.all(t >= 0))
    np.testing.assert_allclose(t.sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: cw.transition_matrix(-0.1), r"`p` must lie in \[0, 1\]"),
        (lambda: cw.transition_matrix(1.5), r"`p` must lie in \[0, 1\]"),
        (lambda: cw.reward(0.0, "inverse"), r"`p` must lie in \(0, 1\]"),
        (lambda: cw.reward(0.1, "quadratic"), "`variant` must be one of"),
        (lambda: tb.cebe_errors(0.1, jnp.asarray([0.01, -0.2]), tb.uniform_policy(S, A), "inverse"), r"\(0, 1\]"),
        (lambda: tb.cebe_errors(0.1, jnp.ones((2, 2)) * 0.01, tb.uniform_policy(S, A)), "`dps` must be a 1-D"),
        (lambda: tb.true_q(0.1, jnp.full((S, A), 0.3)), "`policy` rows must sum to 1"),
        (lambda: tb.true_q(0.1, jnp.full((S, 3), 1 / 3)), r"`policy` must have shape \(S, A\)"),
        (lambda: tb.true_q(0.1, tb.uniform_policy(S, A), gamma=1.0), r"`gamma` must be a scalar in \[0, 1\)"),
        (lambda: tb.cebe_error(0.1, 0.01, tb.uniform_policy(S, A), order=2), "`order` must be 0"),
        (lambda: tb.policy_at("greedy", 0.1), "`kind` must be one of"),
        (lambda: tb.evaluate_policy(jnp.ones((S, A, S)), jnp.zeros((S, A)), tb.uniform_policy(S, A), 0.9), "rows"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
