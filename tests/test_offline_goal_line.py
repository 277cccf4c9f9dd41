"""GoalLine (zsgjax.offline.control.goal_line): the family of offline experiment (b).

References: a NumPy float64 port of the dynamics and reward (against the JAX env on
random rollouts), a bounded numerical optimisation over all action sequences and an
exhaustive grid over "move to y, then stay" trajectories (against the closed-form best
blind policy), Monte Carlo (the goal distribution's moments and the expected SL regret
H sigma^2 / n), and zsgjax's true-rollout evaluator (against the closed-form held-out
value of the policy "go to gbar").
"""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from zsgjax import evaluate as zs_evaluate
from zsgjax.offline import control as C
from zsgjax.offline.control import goal_line as G

H = 10


def numpy_rollout(actions, goal, bound=2.0):
    """Float64 port: positions and rewards ``(..., T)`` of action sequences ``(..., T)`` from x = 0
    (``goal`` broadcasts against the leading axes)."""
    a = np.clip(np.asarray(actions, np.float64), -1.0, 1.0)
    x, xs = np.zeros(a.shape[:-1]), []
    for t in range(a.shape[-1]):
        x = np.clip(x + a[..., t], -bound, bound)
        xs.append(x)
    xs = np.stack(xs, -1)
    return xs, -np.square(xs - np.asarray(goal, np.float64)[..., None])


def numpy_mean_return(actions, goals, bound=2.0):
    """Mean over ``goals (m,)`` of the return of ``actions (..., T)``: ``(...)``."""
    a = np.asarray(actions, np.float64)[..., None, :]  # (..., 1, T) against goals (m,)
    return numpy_rollout(a, np.ravel(goals), bound)[1].sum(-1).mean(-1)


def test_env_matches_numpy_port_on_random_rollouts():
    env = G.GoalLine(horizon=12, bound=1.5)
    rng = np.random.default_rng(0)
    goals = rng.uniform(-1, 1, (6, 1)).astype(np.float32)
    actions = rng.uniform(-1.8, 1.8, (6, 12, 1)).astype(np.float32)  # beyond the action box and the bound

    def episode(goal, acts):
        def body(st, a):
            st = env.step(st, a)
            return st, (st.obs, st.reward, st.done)

        return jax.lax.scan(body, env.reset(jax.random.PRNGKey(0), goal), acts)[1]

    obs, rew, done = jax.jit(jax.vmap(episode))(jnp.asarray(goals), jnp.asarray(actions))
    for i in range(6):
        xs, rs = numpy_rollout(actions[i, :, 0], float(goals[i, 0]), bound=1.5)
        np.testing.assert_allclose(np.asarray(obs[i, :, 0]), xs, atol=1e-6)
        np.testing.assert_allclose(np.asarray(obs[i, :, 1]), goals[i, 0])  # agent obs = [x, g]
        np.testing.assert_allclose(np.asarray(rew[i]), rs, rtol=1e-5, atol=1e-6)
    assert not np.asarray(done).any()
    assert np.abs(np.asarray(obs[..., 0])).max() == pytest.approx(1.5)  # the bound was hit and held
    assert env.observation_size == 2 and env.action_size == 1 and env.horizon == 12


def test_best_blind_policy_equals_numerical_optimum_and_grid_search():
    rng = np.random.default_rng(1)
    for goals in (rng.uniform(-1, 1, 5), np.array([0.9, 1.0, 0.95]), np.asarray(G.goal_quantiles(7)[:, 0])):
        want = float(G.best_blind_value(goals, goals, H))
        assert want == pytest.approx(-H * goals.var(), rel=1e-12) == pytest.approx(G.population_optimum(goals, H))
        # bounded optimisation over every action sequence in [-1, 1]^H
        res = optimize.minimize(lambda a: -numpy_mean_return(a, goals), np.zeros(H), method="L-BFGS-B",
                                bounds=[(-1.0, 1.0)] * H)
        assert -float(res.fun) == pytest.approx(want, abs=1e-6)
        np.testing.assert_allclose(numpy_rollout(res.x, 0.0)[0], G.best_blind_positions(goals, H), atol=1e-3)
        # every "move to y, then stay" trajectory on a fine grid
        ys = np.linspace(-2.0, 2.0, 4001)
        first = np.clip(ys, -1.0, 1.0)
        plans = np.concatenate([first[:, None], (ys - first)[:, None], np.zeros((ys.size, H - 2))], 1)
        vals = numpy_mean_return(plans, goals)  # (4001,)
        assert max(vals) <= want + 1e-12 and max(vals) == pytest.approx(want, abs=H * 1e-6)
        assert abs(ys[int(np.argmax(vals))] - goals.mean()) <= 1e-3


def test_held_out_value_and_sl_regret_closed_forms():
    rng = np.random.default_rng(2)
    train, held = rng.uniform(-1, 1, (3, 4)), np.asarray(G.goal_quantiles(16)[:, 0], np.float64)
    for g in train:  # "go to gbar" on held-out goals, by the NumPy port
        port = numpy_mean_return([g.mean()] + [0.0] * (H - 1), held)
        assert float(G.best_blind_value(g, held, H)) == pytest.approx(port, rel=1e-12)
        assert float(G.sl_regret(g, held, H)) == pytest.approx(G.population_optimum(held, H) - port, abs=1e-12)
    # any blind trajectory: the regret is sum_t (x_t - hbar)^2 and the return is eq. (1)
    x = rng.uniform(-2, 2, (5, H))
    np.testing.assert_allclose(G.blind_regret(x, held), np.sum((x - held.mean()) ** 2, -1), rtol=1e-12)
    np.testing.assert_allclose(G.blind_return(x, held), [np.mean([-np.sum((xi - h) ** 2) for h in held]) for xi in x],
                               rtol=1e-12)
    # expected SL regret over i.i.d. training goals: H sigma^2 / n + H (mu - hbar)^2
    n, draws = 8, 20000
    g = np.asarray(G.sample_goals(jax.random.PRNGKey(3), n * draws), np.float64).reshape(draws, n)
    mc = G.sl_regret(g, held, H).mean()
    mu, var = G.goal_mean(), G.goal_variance()
    assert (mu, var) == (pytest.approx(-1 / 3), pytest.approx(16 / 45))
    assert g.mean() == pytest.approx(mu, abs=0.01) and g.var() == pytest.approx(var, rel=0.02)
    assert mc == pytest.approx(H * var / n + H * (mu - held.mean()) ** 2, rel=0.04)
    assert held.mean() == pytest.approx(mu, abs=1e-3) and np.all(np.diff(held) > 0)


def test_true_rollout_evaluator_agrees_with_the_closed_form():
    env = G.GoalLine()
    held = G.goal_quantiles(16)
    train = np.asarray(G.sample_goals(jax.random.PRNGKey(4), 3 * 5), np.float64).reshape(3, 5)  # 3 "seeds"
    gbar = jnp.asarray(train.mean(-1, keepdims=True), jnp.float32)  # params (S, 1)
    go_to = lambda p, obs: jnp.clip(p - obs[:1], -1.0, 1.0)  # noqa: E731  (obs = [x, g]: g unused)
    res = zs_evaluate.evaluate_grid(env, go_to, gbar, C.held_out_grid(env, held), num_episodes=1,
                                    rng=jax.random.PRNGKey(5))
    np.testing.assert_allclose(res.per_seed(range(16)), G.best_blind_value(train, held[:, 0], H), rtol=1e-5, atol=1e-5)
    pos = jax.vmap(lambda p: G.blind_positions(env, lambda q, x: go_to(q, x), p))(gbar)
    np.testing.assert_allclose(pos, G.best_blind_positions(train, H), atol=1e-6)
    # a zero-weight PERM policy (a = 0: stays at the start) through C.zero_shot
    pol = C.make_policy(C.ActorConfig(hidden_sizes=(4,)), 1, 1, 1)
    zero = jax.tree.map(lambda x: jnp.zeros((2,) + x.shape), pol.init(jax.random.PRNGKey(6)))
    out = C.zero_shot(env, pol, zero, C.held_out_grid(env, held), num_episodes=1, rng=jax.random.PRNGKey(7))
    np.testing.assert_allclose(out.returns[..., 0], np.broadcast_to(-H * held[:, 0] ** 2, (2, 16)), rtol=1e-5)
    np.testing.assert_allclose(out.per_seed(range(16)), G.blind_return(np.zeros((2, H)), held[:, 0]), rtol=1e-5)


def test_bad_input_names_the_argument():
    for kwargs, name in ((dict(horizon=0), "horizon"), (dict(horizon=2.5), "horizon"), (dict(bound=0.5), "bound"),
                         (dict(bound=float("inf")), "bound"), (dict(bound="2"), "bound")):
        with pytest.raises(ValueError, match=name):
            G.GoalLine(**kwargs)
    with pytest.raises(ValueError, match="power"):
        G.sample_goals(jax.random.PRNGKey(0), 3, power=0.0)
    with pytest.raises(ValueError, match="num"):
        G.goal_quantiles(0)
    with pytest.raises(ValueError, match="goals"):
        G.sl_regret([1.5, 0.0], [0.0], H)
    with pytest.raises(ValueError, match="train_goals"):
        G.best_blind_positions(np.zeros((2, 0)), H)
    with pytest.raises(ValueError, match="positions"):
        G.blind_regret([np.nan] * H, [0.0])
    with pytest.raises(ValueError, match="env"):
        G.blind_positions(C.FlipGate(), lambda p, x: x, None)
    with pytest.raises(ValueError, match="context"):
        G.GoalLine().reset(jax.random.PRNGKey(0), jnp.array([1.5]))


@pytest.mark.slow
def test_scaling_script_smoke(tmp_path):
    """A two-point run of experiment (b): the files, and rollouts == the closed form of the learned trajectory."""
    import json

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = str(tmp_path / "scaling")
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, os.path.join(root, "scripts", "offline_control", "scaling.py"), "--envs", "2",
                    "--transitions", "32", "--fixed-envs", "2", "--fixed-transitions", "32", "--seeds", "2",
                    "--iterations", "3", "--hidden", "8", "--out", out], check=True, env=env, cwd=root, timeout=600)
    r = json.load(open(out + ".json"))
    assert r["complete"] and len(r["vs_num_envs"]) == 1 and len(r["vs_transitions"]) == 1
    point = r["vs_num_envs"][0]
    assert point["closed_form_vs_rollout_max_abs"] < 1e-4
    assert np.allclose(np.subtract(point["perm_regret"]["per_seed"], point["sl_regret"]["per_seed"]),
                       point["difference"]["per_seed"])
    assert os.path.exists(out + ".md") and os.path.exists(out + ".png")


# ---------------------------------------------------------------- reward "abs", weights, the two-point law
def test_abs_reward_env_and_exact_values_against_brute_force():
    env = G.GoalLine(horizon=4, reward="abs")
    goal, actions = 0.3, np.array([0.5, 0.9, -1.7, 0.2], np.float32)
    st = env.reset(jax.random.PRNGKey(0), jnp.array([goal]))
    xs = numpy_rollout(actions, goal)[0]
    for t, a in enumerate(actions):
        st = env.step(st, jnp.array([a]))
        assert float(st.reward) == pytest.approx(-abs(xs[t] - goal), abs=1e-6)
    rng = np.random.default_rng(7)
    grid = np.linspace(-2, 2, 40001)
    for goals in (rng.uniform(-1, 1, 5), rng.uniform(-1, 1, 6), np.array([1.0, -1.0, 1.0])):
        w = rng.uniform(0.1, 1.0, goals.size)
        for weights in (None, w):
            ww = np.ones(goals.size) / goals.size if weights is None else w / w.sum()
            loss = np.abs(grid[:, None] - goals[None]) @ ww  # L(y) on a grid
            center = float(G.goal_center(goals, "abs", weights))
            assert loss[np.argmin(np.abs(grid - center))] == pytest.approx(loss.min(), abs=1e-4)
            if weights is None:
                assert center == pytest.approx(np.median(goals))
            x = rng.uniform(-2, 2, (3, H))
            want = -np.sum(np.abs(x[..., None] - goals) @ ww, -1)
            np.testing.assert_allclose(G.blind_return(x, goals, "abs", weights), want, rtol=1e-12)
            np.testing.assert_allclose(G.blind_regret(x, goals, "abs", weights), -H * loss.min() - want, atol=2e-3)
    # weights equal to counts: the same as repeating the goals (square and abs)
    g, k = np.array([-0.5, 0.2, 0.9]), np.array([3, 1, 2])
    for reward in ("square", "abs"):
        assert float(G.goal_center(g, reward, k)) == pytest.approx(float(G.goal_center(np.repeat(g, k), reward)))


def test_two_point_sl_regret_by_hand_monte_carlo_and_its_rate():
    # n = 2, p = 3/4: wrong majority (K = 0) 1/16, tie (K = 1) 6/16; H |2p - 1| (2/16 + 6/16) = 10 * 0.5 * 0.5
    assert G.two_point_sl_regret(2, 0.75, H) == pytest.approx(2.5, abs=1e-12)
    assert G.two_point_sl_regret(3, 0.25, H) == pytest.approx(H * 0.5 * 2 * (0.75**3 * 0 + 0.25**3 + 3 * 0.25**2 * 0.75))
    n, p = 7, G.two_point_probability(7, 0.75)
    assert p == pytest.approx(0.5 + 0.75 / (2 * np.sqrt(7)))
    g = np.asarray(G.sample_two_point_goals(jax.random.PRNGKey(1), n * 40000, p), np.float64).reshape(40000, n)
    assert g.mean() == pytest.approx(2 * p - 1, abs=0.01)
    mc = G.sl_regret(g, [-1.0, 1.0], H, "abs", eval_weights=[1 - p, p]).mean()
    assert mc == pytest.approx(G.two_point_sl_regret(n, p, H), rel=0.03)
    # 1/sqrt(n): sqrt(n) E[SL] -> H kappa 2 Phi(-kappa) (the tie probability vanishes)
    from scipy.stats import norm

    n = 4097
    assert np.sqrt(n) * G.two_point_sl_regret(n, G.two_point_probability(n, 0.75), H) == pytest.approx(
        H * 0.75 * 2 * norm.cdf(-0.75), rel=0.02)


def test_abs_reward_with_a_density_still_has_a_1_over_n_sl_error():
    """E[SL] ~ H / (4 f(m) n) for the sample median (g = 2u^2 - 1: m = -1/2, f(m) = 1/2): 1/n, not 1/sqrt(n)."""
    held = np.asarray(G.goal_quantiles(400)[:, 0], np.float64)
    assert np.median(held) == pytest.approx(-0.5, abs=1e-4)
    f0 = float(G.goal_density(-0.5))
    assert f0 == pytest.approx(0.5)
    for n in (101, 401):
        g = np.asarray(G.sample_goals(jax.random.PRNGKey(n), n * 3000), np.float64).reshape(3000, n)
        assert G.sl_regret(g, held, H, "abs").mean() == pytest.approx(H / (4 * f0 * n), rel=0.12)


def test_goal_density_and_importance_weights():
    z = np.linspace(-0.9, 1, 200001)
    for p in (1.0, 2.0, 3.0):  # the mass of [-0.9, 1] is 1 - F(-0.9), F(g) = ((g + 1) / 2)^(1/p)
        assert np.trapezoid(G.goal_density(z, p), z) == pytest.approx(1 - 0.05 ** (1 / p), abs=1e-6)
    g3 = np.asarray(G.sample_goals(jax.random.PRNGKey(2), 200000, 3.0), np.float64)[:, 0]
    w = G.goal_density_ratio(g3, 2.0, 3.0)
    np.testing.assert_allclose(w, 1.5 * ((g3 + 1) / 2) ** (1 / 6), rtol=1e-6)  # 1.5 u^(1/2), u = z^(1/3)
    inner = np.abs(g3) < 0.99
    np.testing.assert_allclose(w[inner], G.goal_density(g3[inner], 2.0) / G.goal_density(g3[inner], 3.0), rtol=1e-9)
    assert np.isfinite(w).all() and float(G.goal_density_ratio(-1.0, 2.0, 3.0)) == 0.0  # g = -1 occurs in float32
    assert np.sum(w * g3) / np.sum(w) == pytest.approx(G.goal_mean(2.0), abs=0.005)  # self-normalised IS


def test_abs_and_weights_bad_input():
    with pytest.raises(ValueError, match="reward"):
        G.GoalLine(reward="cube")
    with pytest.raises(ValueError, match="reward"):
        G.sl_regret([0.0], [0.0], H, reward="l1")
    with pytest.raises(ValueError, match="weights"):
        G.goal_center([0.0, 0.5], weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="weights"):
        G.goal_center([0.0, 0.5], weights=[0.0, 0.0])
    with pytest.raises(ValueError, match="weights"):
        G.goal_center([0.0, 0.5], weights=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="kappa"):
        G.two_point_probability(4, 0.0)
    with pytest.raises(ValueError, match="p_plus"):
        G.two_point_sl_regret(4, 1.5, H)


@pytest.mark.slow
def test_two_point_and_non_iid_scripts_smoke(tmp_path):
    """Tiny runs of scaling.py --family two_point and non_iid.py: pre-registered claims, verdicts, files."""
    import json

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    script = lambda name: os.path.join(root, "scripts", "offline_control", name)  # noqa: E731
    tiny = ["--seeds", "2", "--iterations", "2", "--hidden", "4"]
    out = str(tmp_path / "tp")
    subprocess.run([sys.executable, script("scaling.py"), "--family", "two_point", "--envs", "1", "2", "--transitions",
                    "--fixed-transitions", "32", "--out", out] + tiny, check=True, env=env, cwd=root, timeout=900)
    r = json.load(open(out + ".json"))
    assert r["complete"] and [v["id"] for v in r["verdicts"]] == [c["id"] for c in r["preregistered"]]
    assert all(p["closed_form_vs_rollout_max_abs"] < 1e-4 for p in r["vs_num_envs"])
    assert r["vs_num_envs"][1]["expected_sl_regret"] == pytest.approx(G.two_point_sl_regret(2, r["vs_num_envs"][1]["p_plus"], H))
    out = str(tmp_path / "ni")
    subprocess.run([sys.executable, script("non_iid.py"), "--envs", "8", "--transitions", "32", "--cluster", "4",
                    "--out", out] + tiny, check=True, env=env, cwd=root, timeout=900)
    r = json.load(open(out + ".json"))
    assert r["status"] == "complete" and len(r["points"]) == 4 and r["preregistered"]
    ess = {p["condition"]: np.mean(p["effective_sample_size"]) for p in r["points"]}
    assert ess["iid"] == pytest.approx(8) and ess["shifted+IS"] < 8
    assert os.path.exists(out + ".md") and os.path.exists(out + ".png")
