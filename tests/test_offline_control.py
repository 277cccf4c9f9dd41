"""Neural PERM / PPPO on control tasks (zsgjax.offline.control: critics, perm, pppo, baselines).

References: the closed-form Q of a constant policy on SimpleDirection's dynamics (linear
FQE must reach it), a Python loop over environments (the vmapped update must equal it),
NumPy (pessimistic values), the analytic optimum of a one-step problem (PERM), and the
closed-form returns of FlipGate (the zero-shot evaluation).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax.offline import control as C
from zsgjax.offline.control import critics as critics_mod

GAMMA = 0.5


def direction_data(key, contexts, num, terminal=False, reward=None):
    """SimpleDirection transitions ``s' = s + a + c``, ``r = s' . c`` (or ``reward(s, a, c)``)
    from uniform states and actions, one environment per context row."""
    contexts = jnp.asarray(contexts, jnp.float32)
    n, k = contexts.shape
    ks, ka = jax.random.split(key)
    s = jax.random.uniform(ks, (n, num, k), minval=-1.0, maxval=1.0)
    a = jax.random.uniform(ka, (n, num, k), minval=-1.0, maxval=1.0)
    s2 = s + a + contexts[:, None]
    r = jnp.sum(s2 * contexts[:, None], -1) if reward is None else reward(s, a, contexts[:, None])
    flags = jnp.full((n, num), bool(terminal))
    return C.Transitions(obs=s, action=a, reward=r, next_obs=s2, terminal=flags, truncated=jnp.zeros((n, num), bool),
                         contexts=contexts)


@pytest.fixture(scope="module")
def data():
    return direction_data(jax.random.PRNGKey(0), [[0.5, -0.3], [-0.4, 0.2], [0.1, 0.6]], 64)


# ---------------------------------------------------------------- critics
def test_linear_fqe_reaches_the_closed_form_q():
    """Constant policy u: Q(s, a) = (s + a + c).c / (1 - g) + g (u + c).c / (1 - g)^2 is linear in (s, a),
    so linear FQE (2 members, 2 environments in one vmap) must converge to it."""
    contexts = np.array([[0.5, -0.3], [-0.4, 0.2]], np.float32)
    d = direction_data(jax.random.PRNGKey(1), contexts, 256)
    u = np.array([0.3, -0.7], np.float32)
    cfg = C.CriticConfig(features="linear", num_critics=2, gamma=GAMMA, tau=0.1, learning_rate=0.02, batch_size=64)
    act = lambda obs, ctx: jnp.broadcast_to(jnp.asarray(u), obs.shape)  # noqa: E731
    state = jax.jit(C.make_fqe(cfg, act, 1500))(jax.random.PRNGKey(2), d)
    critics = C.make_critics(cfg, 2, 2)
    s = jax.random.uniform(jax.random.PRNGKey(3), (2, 8, 2), minval=-1, maxval=1)
    a = jax.random.uniform(jax.random.PRNGKey(4), (2, 8, 2), minval=-1, maxval=1)
    got = np.asarray(jax.vmap(critics.q_env)(state.params, s, a))  # (n, M, B)
    c = contexts[:, None]
    want = (np.sum((s + a + c) * c, -1) / (1 - GAMMA) + GAMMA * np.sum((u + c) * c, -1) / (1 - GAMMA) ** 2)
    np.testing.assert_allclose(got, np.broadcast_to(want[:, None], got.shape), atol=2e-3 * np.abs(want).max() + 1e-3)


def test_pessimistic_value_matches_numpy():
    q = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
    np.testing.assert_allclose(C.pessimistic_value(q, 1.5), q.mean(0) - 1.5 * q.std(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(C.pessimistic_value(q, 0.0), q.mean(0), rtol=1e-6)
    np.testing.assert_allclose(C.pessimistic_value(q, 3.0, "min"), q.min(0))
    np.testing.assert_allclose(C.pessimistic_value(q[:1], 2.0), q[0], rtol=1e-6)  # M = 1: no spread
    # members that agree exactly (e.g. dead ReLU critics fitted to the same targets): a finite gradient,
    # d/dx (mean - beta std) = 1 (the std term's subgradient 0), not sqrt's infinite slope at 0 (NaN)
    for beta in (0.0, 1.0):
        g = jax.grad(lambda x: C.pessimistic_value(jnp.stack([x, x, x])[:, None], beta)[0])(0.7)
        assert float(g) == pytest.approx(1.0)


# ---------------------------------------------------------------- PERM / PPPO / baselines
TARGETS = np.array([0.6, -0.2], np.float32)  # the best action of each environment


def bandit_data(num=128):
    """One-step problems (every transition terminal): r = -(a - t_i)^2 in environment i."""
    t = jnp.asarray(TARGETS)[:, None, None]
    return direction_data(jax.random.PRNGKey(7), [[0.1, 0.1], [0.2, -0.1]], num, terminal=True,
                          reward=lambda s, a, c: -jnp.sum(jnp.square(a - t), -1))


SMALL = C.PERMConfig(critic=C.CriticConfig(hidden_sizes=(32,), num_critics=2, batch_size=64, learning_rate=3e-3),
                     actor=C.ActorConfig(hidden_sizes=(8,), batch_size=64, learning_rate=3e-3), iterations=600)


def test_perm_finds_the_weighted_mean_of_the_environments_optima():
    """sum_i w_i -(a - t_i)^2 / sum_i w_i is maximised by a = sum_i w_i t_i / sum_i w_i in both action
    coordinates; equal weights (the plain (1/n) sum_i) and (3, 1), traced (vmapped) in one program."""
    cfg = C.PERMConfig(critic=C.CriticConfig(hidden_sizes=(64, 64), num_critics=2, batch_size=64, learning_rate=1e-2),
                       actor=C.ActorConfig(hidden_sizes=(8,), batch_size=64, learning_rate=3e-3), iterations=800)
    d = bandit_data(256)
    weights = np.array([[1.0, 1.0], [3.0, 1.0]], np.float32)
    train = C.make_perm(cfg)
    res = jax.jit(jax.vmap(lambda w: train(jax.random.PRNGKey(8), d, w)))(jnp.asarray(weights))
    obs = jax.random.uniform(jax.random.PRNGKey(9), (16, 2), minval=-1, maxval=1)
    for k, w in enumerate(weights):
        target = float(w @ TARGETS / w.sum())  # 0.2 and 0.4
        params = jax.tree.map(lambda x: x[k], res.policy_params)
        a = np.asarray(C.policy_of(cfg, d).act(params, obs, jnp.zeros(2)))
        # over states (equal weights: 0.03; (3, 1): 0.08, the critics' fit error weighs 3:1 instead of
        # averaging out -- still far from the unweighted optimum 0.2)
        np.testing.assert_allclose(a.mean(0), [target] * 2, atol=0.03 if k == 0 else 0.08)
        np.testing.assert_allclose(a, np.full_like(a, target), atol=0.25)  # at every state
    assert res.trace["objective"].shape == (2, cfg.iterations,)
    assert np.all(np.asarray(res.trace["objective"][:, -1]) > np.asarray(res.trace["objective"][:, 0]))


def test_pppo_steps_toward_each_environment_in_turn():
    """Two passes over two environments: step k improves on environment k mod 2 (0, 1, 0, 1)."""
    cfg = C.PPPOConfig(critic=SMALL.critic, actor=SMALL.actor, eval_steps=200, improve_steps=120, step_size=10.0,
                       passes=2)
    d = bandit_data()
    res = C.run_pppo(jax.random.PRNGKey(10), d, cfg)
    pol = C.make_policy(cfg.actor, 2, 2, 2)
    obs = jnp.zeros((1, 2))
    acts = [float(np.mean(pol.act(jax.tree.map(lambda x: x[k], res.iterates), obs, jnp.zeros(2)))) for k in range(4)]
    acts.append(float(np.mean(pol.act(res.final, obs, jnp.zeros(2)))))
    for k in range(4):  # pi_{k+1} is closer than pi_k to the optimum of environment k mod 2
        target = TARGETS[k % 2]
        assert abs(acts[k + 1] - target) < abs(acts[k] - target), (k, acts)
    assert res.values.shape == (4,) and 0 <= int(res.index) < 4
    for x, y in zip(jax.tree.leaves(res.policy), jax.tree.leaves(jax.tree.map(lambda v: v[res.index], res.iterates))):
        np.testing.assert_array_equal(x, y)


def test_baselines_and_td3_bc_config():
    cfg = C.td3_bc_config(SMALL)
    assert (cfg.critic.num_critics, cfg.critic.target, cfg.critic.pessimism, cfg.actor.bc_alpha, cfg.critic_steps) == \
        (2, "min", "min", 2.5, 2)
    tiny = dataclasses.replace(SMALL, iterations=3)
    d = bandit_data(32)
    merged = jax.jit(C.make_merged(tiny))(jax.random.PRNGKey(0), d)
    assert jax.tree.leaves(merged.critics.params)[0].shape[:2] == (1, 2)  # one pooled ensemble
    # beta = 0: the same run as PERM configured with beta = 0, and not the run with the config's beta = 1
    key, d3 = jax.random.PRNGKey(1), bandit_data(32)
    nop = jax.jit(C.make_no_pessimism(tiny))(key, d3)
    zero = jax.jit(C.make_perm(dataclasses.replace(tiny, critic=dataclasses.replace(tiny.critic, beta=0.0))))(key, d3)
    one = jax.jit(C.make_perm(tiny))(key, d3)
    np.testing.assert_array_equal(np.asarray(nop.trace["objective"]), np.asarray(zero.trace["objective"]))
    assert not np.array_equal(np.asarray(nop.trace["objective"]), np.asarray(one.trace["objective"]))


# ---------------------------------------------------------------- evaluation
def test_zero_shot_returns_match_flip_gate_closed_form():
    env = C.FlipGate(delta=0.1)
    pol = C.make_policy(C.ActorConfig(hidden_sizes=(4,)), 2, 1, 1)
    p = pol.init(jax.random.PRNGKey(0))
    p = jax.tree.map(jnp.zeros_like, p)
    p["params"]["Dense_1"]["bias"] = jnp.full((1,), -20.0)  # a = tanh(-20) = -1 everywhere
    params = jax.tree.map(lambda x: jnp.stack([x, x]), p)  # two "seeds"
    cs = np.array([[-1.0], [-0.6], [0.5], [1.0]], np.float32)
    res = C.zero_shot(env, pol, params, C.held_out_grid(env, cs), num_episodes=2, rng=jax.random.PRNGKey(1))
    c = cs[:, 0]
    want = np.where(c < 0, -0.1 + 9 * (1 - 0.1 * (1 + c)) * np.abs(c), -0.1)
    np.testing.assert_allclose(res.returns, np.broadcast_to(want[None, :, None], res.returns.shape), rtol=1e-5)
    mean, ci = res.aggregate(range(4))
    assert mean == pytest.approx(want.mean(), rel=1e-5) and ci == pytest.approx(0.0, abs=1e-5)


# ---------------------------------------------------------------- bad input
def test_bad_input_names_the_argument(data):
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="reward"):
        C.run_perm(key, data.replace(reward=data.reward.at[0, 3].set(jnp.nan)), SMALL)
    with pytest.raises(ValueError, match="N \\(transitions"):
        C.run_perm(key, jax.tree.map(lambda x: x[:, :0] if x.ndim >= 2 and x is not data.contexts else x, data), SMALL)
    with pytest.raises(ValueError, match="n \\(environments"):
        C.run_pppo(key, jax.tree.map(lambda x: x[:0], data), C.PPPOConfig())
    with pytest.raises(ValueError, match="next_obs"):
        C.run_perm(key, data.replace(next_obs=data.next_obs[:, :-1]), SMALL)
    for beta in (-0.5, jnp.float32(-1.0), np.float64(np.nan)):
        with pytest.raises(ValueError, match="beta"):
            C.pessimistic_value(np.zeros((2, 3)), beta)
    with pytest.raises(ValueError, match="CriticConfig.beta"):
        C.PERMConfig(critic=C.CriticConfig(beta=-1.0)).validate()
    with pytest.raises(ValueError, match="CriticConfig.num_critics"):
        C.make_perm(C.PERMConfig(critic=C.CriticConfig(num_critics=0)))
    with pytest.raises(ValueError, match="CriticConfig.pessimism"):
        C.CriticConfig(pessimism="max").validate()
    with pytest.raises(ValueError, match="PERMConfig.critic"):
        C.PERMConfig(critic=C.ActorConfig()).validate()
    with pytest.raises(ValueError, match="`policy`"):
        C.make_zero_shot(C.FlipGate(), C.make_policy(C.ActorConfig(), 3, 1, 1), 1)
    with pytest.raises(ValueError, match="contexts"):
        C.held_out_grid(C.FlipGate(), [[1.5]])
    with pytest.raises(ValueError, match="delta"):
        C.FlipGate(delta=0.7)
    with pytest.raises(ValueError, match="num_envs"):
        C.shard_envs(data, critics_mod.env_mesh(jax.devices() * 2), 3)


# ---------------------------------------------------------------- sharding (subprocess, 2 CPU devices)
@pytest.mark.slow
def test_sharded_update_equals_unsharded():
    code = textwrap.dedent("""
        import jax, jax.numpy as jnp, numpy as np
        from zsgjax.offline import control as C
        from zsgjax.offline.control.critics import env_mesh
        assert len(jax.devices()) == 2
        n, N = 4, 32
        k = jax.random.split(jax.random.PRNGKey(0), 3)
        obs = jax.random.normal(k[0], (n, N, 3)); act = jax.random.normal(k[1], (n, N, 1))
        d = C.Transitions(obs=obs, action=act, reward=jax.random.normal(k[2], (n, N)), next_obs=obs + 0.1,
                          terminal=jnp.zeros((n, N), bool), truncated=jnp.zeros((n, N), bool), contexts=jnp.ones((n, 2)))
        cr = C.make_critics(C.CriticConfig(hidden_sizes=(8,), num_critics=2, batch_size=8), 3, 1)
        st = cr.init(jax.random.PRNGKey(1), n)
        f = jax.jit(lambda s, dd: cr.update(s, dd, lambda o, c, kk: jnp.tanh(o[:, :1]), jax.random.PRNGKey(2))[0])
        ref = f(st, d)
        mesh = env_mesh()
        out = f(C.shard_envs(st, mesh, n), C.shard_envs(d, mesh, n))
        leaf = jax.tree.leaves(out.params)[0]
        assert len(leaf.sharding.device_set) == 2, leaf.sharding
        for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(out)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        print("ok")
    """)
    env = {**os.environ, "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "ok" in done.stdout, done.stdout + done.stderr


# ---------------------------------------------------------------- the average-MDP failure (experiment (a), small)
@pytest.mark.slow
def test_perm_beats_the_merged_data_on_flip_gate():
    from zsgjax.envs import registry
    from zsgjax.offline.control import collect as collect_mod

    if "flip_gate" not in registry.registered_names():
        registry.register("flip_gate", "zsgjax.offline.control.flip_gate:FlipGate")
    contexts = np.array([[-0.9], [0.9], [-0.7], [0.7]], np.float32)
    data = [collect_mod.collect(jax.random.PRNGKey(s), "flip_gate", contexts, C.Behaviour(action_scale=1.0), 1000,
                                streams=20)[0] for s in range(2)]
    data = jax.tree.map(lambda *xs: jnp.stack(xs), *data)
    cfg = C.PERMConfig(critic=C.CriticConfig(hidden_sizes=(32, 32), batch_size=64),
                       actor=C.ActorConfig(hidden_sizes=(32, 32), batch_size=64), iterations=1200)
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    env = C.FlipGate()
    grid = C.held_out_grid(env, [[-1.0], [-0.6], [0.6], [1.0]])
    policy = C.policy_of(cfg, jax.tree.map(lambda x: x[0], data))
    means = {}
    for name, make in (("perm", C.make_perm), ("merged", C.make_merged)):
        res = jax.jit(jax.vmap(make(cfg)))(keys, data)
        ev = C.zero_shot(env, policy, res.policy_params, grid, num_episodes=1, rng=jax.random.PRNGKey(4))
        means[name] = ev.aggregate(range(4))[0]
    assert means["perm"] > 2.0 and means["perm"] > means["merged"] + 1.0, means


@pytest.mark.slow
@pytest.mark.parametrize("argv", [
    ["scripts/offline_control/average_mdp.py", "--num-envs", "2", "--transitions", "100", "--seeds", "2",
     "--scale", "0.01"],
    ["scripts/offline_control/scaling.py", "--envs", "1", "2", "--transitions", "100", "--fixed-transitions", "100",
     "--fixed-envs", "2", "--seeds", "2", "--iterations", "10"],
    ["scripts/offline_control/pessimism.py", "--betas", "0", "1", "--num-envs", "2", "--num-val", "2",
     "--transitions", "100", "--seeds", "2", "--iterations", "10"],
    ["scripts/offline_control/pppo_passes.py", "--tasks", "goal_line", "--passes", "1", "16", "--step-sizes", "1",
     "--num-envs", "2", "--transitions", "100", "--seeds", "2", "--iterations", "10", "--eval-steps", "2",
     "--improve-steps", "2"],
    ["benchmarks/offline_critics.py", "--envs", "2", "--repeats", "1", "--memory-envs", "2", "--members", "1"],
])
def test_experiment_and_benchmark_scripts_run(argv, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = str(tmp_path / ("result.json" if argv[0].startswith("benchmarks") else "result"))
    done = subprocess.run([sys.executable, os.path.join(root, argv[0]), *argv[1:], "--out", out], cwd=root,
                          capture_output=True, text=True, timeout=900, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stdout + done.stderr
    written = os.listdir(tmp_path)
    assert any(f.endswith(".json") for f in written), written
