"""The CSE paper's own RLlib policies under zsgjax's evaluator (scripts/experiments/paper_code_policies.py).

The reference for the JAX port of RLlib's SAC actor is RLlib itself: the fixture
``tests/data/rllib_sac_pen_goal_w32.npz`` was written under the paper's virtualenv
(ray 2.44.1, torch 2.6.0) by

    python scripts/experiments/paper_code_export.py reference --paper-code <paper repo> \\
        --out tests/data/rllib_sac_pen_goal_w32.npz --width 32

(a fresh module of the paper's pen_goal model config, 32 wide instead of 256, its
head redrawn so that log_std crosses both clamp bounds). The slow test repeats that at
the paper's width 256 when the paper's virtualenv and code are on this machine
(``$PAPER_PYTHON``, ``$PAPER_CODE``; default ``/work/venvs/paper/bin/python``,
``/work/paper_code``). The default tests need neither ray nor torch.
"""

import json
import os
import stat
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import t as scipy_t

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "experiments"))

import paper_code_policies as pcp  # noqa: E402
import rllib_sac_policy  # noqa: E402
from zsgjax import envs  # noqa: E402
from zsgjax.agents.networks import tanh_gaussian  # noqa: E402
from zsgjax.evaluate import evaluate_grid, make_grid, policy_action  # noqa: E402
from zsgjax.reporting.files import DirectoryLock  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "data", "rllib_sac_pen_goal_w32.npz")
PAPER_PYTHON = os.environ.get("PAPER_PYTHON", "/work/venvs/paper/bin/python")
PAPER_CODE = os.environ.get("PAPER_CODE", "/work/paper_code")


def fixture():
    with np.load(FIXTURE) as f:
        return {k: f[k] for k in f.files}


def check_port_against_rllib(path):
    policy, params = rllib_sac_policy.load_policy(path)
    ref = np.load(path)
    np.testing.assert_allclose(policy.logits(params, ref["obs"]), ref["logits"], rtol=1e-5, atol=1e-5)
    loc, log_std = policy.distribution(params, ref["obs"])
    np.testing.assert_allclose(loc, ref["loc"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jnp.exp(log_std), ref["scale"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rllib_sac_policy.squash(loc, log_std, ref["noise"]), ref["squashed"], atol=1e-5)
    return policy, ref


def test_jax_port_equals_rllib_torch_forward():
    policy, ref = check_port_against_rllib(FIXTURE)
    assert policy.activations == ("relu", "relu", "linear")
    assert (policy.action_low, policy.action_high, policy.log_std_min, policy.log_std_max) == ((-2.0,), (2.0,), -5, 2)
    # the fixture exercises the clamp on both sides and unsaturated samples
    assert (ref["logits"][:, 1] < -5).any() and (ref["logits"][:, 1] > 2).any()
    assert (np.abs(ref["squashed"]) < 0.9).sum() >= 5


def test_sampling_shares_zsgjax_noise_and_maps_to_the_box():
    policy, params = rllib_sac_policy.load_policy(FIXTURE)
    obs = fixture()["obs"][:6]
    loc, log_std = policy.distribution(params, obs)
    key = jax.random.PRNGKey(7)
    unit = policy.sample(params, obs, key, rescale=False)
    # the draw zsgjax's SAC makes with the same key (so methods and implementations share action noise)
    np.testing.assert_allclose(unit, tanh_gaussian(loc, log_std).sample(seed=key), atol=1e-6)
    np.testing.assert_allclose(policy.sample(params, obs, key), 2.0 * unit, atol=1e-6)  # RLlib's unsquash on [-2, 2]
    np.testing.assert_allclose(policy.act(params, obs), 2.0 * np.tanh(loc), atol=1e-6)
    box = rllib_sac_policy.RLlibSACPolicy(("linear",), action_low=(0.0, -1.0), action_high=(4.0, 3.0))
    np.testing.assert_allclose(box.to_box(jnp.array([[-1.0, 1.0], [0.0, 0.5], [1.5, -2.0]])),
                               [[0.0, 3.0], [2.0, 2.0], [4.0, -1.0]])  # low + (a + 1)(high - low)/2, clipped


def test_load_policy_rejects_what_is_not_an_rllib_actor(tmp_path):
    good = fixture()

    def saved(**changes):
        data = {k: v for k, v in {**good, **changes}.items() if v is not None}
        path = tmp_path / "p.npz"
        np.savez(path, **data)
        return path

    with pytest.raises(ValueError, match="missing"):
        rllib_sac_policy.load_policy(saved(b1=None))
    with pytest.raises(ValueError, match="activations"):
        rllib_sac_policy.load_policy(saved(activations=np.array(["relu", "gelu", "linear"])))
    with pytest.raises(ValueError, match="layer 1 takes 31 inputs"):
        rllib_sac_policy.load_policy(saved(w1=good["w1"][:31]))
    with pytest.raises(ValueError, match="needs 2"):
        rllib_sac_policy.load_policy(saved(w2=good["w2"][:, :1], b2=good["b2"][:1]))
    with pytest.raises(ValueError, match="action box"):
        rllib_sac_policy.load_policy(saved(action_low=np.array([2.0], np.float32)))
    with pytest.raises(ValueError, match="not an exported RLlib policy"):
        rllib_sac_policy.load_policy(tmp_path / "missing.npz")


def test_paper_main_args_per_method():
    for method, flags in [("vanilla", ["--cse", "0", "--dr", "0"]), ("cse", ["--cse", "1", "--dr", "0"]),
                          ("ldr", ["--cse", "0", "--dr", "1"])]:
        args = pcp.main_args(method, 1000)
        assert args[-2:] == ["--epochs", "1000"] and args[-6:-2] == flags
        assert "--custom_eval" in args  # as in the paper's scripts/pen_goal.sh
        for flag, value in [("--env", "pen_goal"), ("--vectorization", "8"), ("--eval_interval", "20"),
                            ("--se_delta", "0.1"), ("--samples", "1")]:
            assert args[args.index(flag) + 1] == value
    with pytest.raises(ValueError, match="method must be one of"):
        pcp.main_args("dr", 10)
    with pytest.raises(ValueError, match="--epochs"):
        pcp.main_args("cse", 0)


def test_curves_interpolated_at_common_steps():
    steps = np.array([[100.0, 200.0, 300.0, 400.0], [100.0, 200.0, 300.0, 400.0]])
    values = np.array([[np.nan, -10.0, -6.0, -2.0], [-8.0, -8.0, np.nan, -4.0]])
    out = pcp.at_steps(steps, values, np.array([150.0, 250.0, 400.0]))
    np.testing.assert_allclose(out, [[np.nan, -8.0, -2.0], [-8.0, -7.0, -4.0]])  # NaN before a seed's first return


def test_each_method_is_compared_with_zsgjax_on_the_claim_rows():
    grid = make_grid(envs.make("pendulum_goal"), 2)  # tau = -1, 1; named contexts
    claims = pcp.verdicts.load_claims(pcp.common.CLAIMS)
    tau1 = grid.labels.index("tau=1")

    def result(per_seed):  # every seed's return: per_seed[s] at tau=1, 0 elsewhere
        r = np.zeros((len(per_seed), len(grid), 3))
        r[:, tau1] = np.asarray(per_seed, float)[:, None]
        return pcp.EvalResult(grid, r)

    rllib = {"cse": result([-10.0, -20.0]), "ldr": result([-30.0, -30.0])}
    zsg = {"cse": result([-16.0, -22.0, -40.0]), "ldr": result([-25.0, -35.0])}
    rows = {(r["id"], r["method"]): r for r in pcp.compare_methods(rllib, zsg, claims)}
    assert set(rows) == {("pendulum_goal/cse>vanilla", "cse"), ("pendulum_goal/cse>ldr:tau>0.6", "cse"),
                         ("pendulum_goal/cse>ldr:tau>0.6", "ldr")}
    cse = rows[("pendulum_goal/cse>ldr:tau>0.6", "cse")]  # the only row tau > 0.6 is tau = 1
    assert (cse["rllib"], cse["zsgjax"], cse["diff"]) == pytest.approx((-15.0, -26.0, 11.0))
    # unequal seeds: Welch, se^2 = 50/2 + 156/3, dof (77^2) / (25^2 + 52^2 / 2)
    assert cse["half_width"] == pytest.approx(scipy_t.ppf(0.975, 77**2 / (25**2 + 52**2 / 2)) * np.sqrt(77))
    ldr = rows[("pendulum_goal/cse>ldr:tau>0.6", "ldr")]  # equal seeds: paired by seed index, d = (-5, 5)
    assert (ldr["diff"], ldr["half_width"]) == pytest.approx((0.0, 12.706204736174698 * np.sqrt(50) / np.sqrt(2)))
    other = pcp.EvalResult(make_grid(envs.make("pendulum_goal"), 3), np.zeros((2, 15, 3)))
    with pytest.raises(ValueError, match="another grid"):
        pcp.compare_methods(rllib, {"cse": other}, claims)


def test_the_papers_own_evaluation_loop_beside_zsgjaxs(tmp_path):
    grid = make_grid(envs.make("pendulum_goal"), 2)
    rng = np.random.default_rng(0)
    returns = rng.normal(-200.0, 10.0, (2, len(grid), 4))
    record = {"method": "cse", "seed": 3, "trial": "unused"}
    theirs = rng.normal(-190.0, 10.0, (3, 6))  # as paper_code_export.py paper-eval writes them, already there
    os.makedirs(pcp.run_dir(str(tmp_path), "cse", 3))
    np.savez(os.path.join(pcp.run_dir(str(tmp_path), "cse", 3), "paper_eval_6.npz"), returns=theirs)
    rows = pcp.paper_evaluation_check(None, str(tmp_path), record, pcp.EvalResult(grid, returns), 1, 6)
    assert [r["context"] for r in rows] == ["(2,1,1,0)", "(2,1,1,0.75)", "(2,1.2,1,-0.75)"]
    for k, r in enumerate(rows):
        ours = returns[1, grid.labels.index(r["context"])]
        va, vb = ours.var(ddof=1) / 4, theirs[k].var(ddof=1) / 6  # Welch by hand
        dof = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 5)
        assert (r["zsgjax"], r["paper"], r["diff"]) == pytest.approx((ours.mean(), theirs[k].mean(),
                                                                      ours.mean() - theirs[k].mean()))
        assert r["half_width"] == pytest.approx(scipy_t.ppf(0.975, dof) * np.sqrt(va + vb))
        assert (r["zsgjax_episodes"], r["paper_episodes"], r["seed"]) == (4, 6, 3)


FAKE_MAIN = """#!/bin/sh
# stands in for the paper virtualenv's python running paper_code_export.py train: makes a trial of $EPOCHS rows
echo run >> "$COUNTER"
while [ "$1" != "--storage" ]; do shift; done
trial="$2/pen_goal_x/SAC_pen_goal_0"
mkdir -p "$trial/checkpoint_000000"
echo "training_iteration,num_env_steps_sampled_lifetime" > "$trial/progress.csv"
: > "$trial/result.json"
i=1
while [ $i -le $EPOCHS ]; do
  echo "$i,$((i * 100))" >> "$trial/progress.csv"
  evaluation=""  # the paper's in-training evaluation at its 3 contexts, at the last iteration
  [ $i -eq $EPOCHS ] && evaluation=", \\"evaluation\\": {\\"env_runners\\": {\\"0\\": {\\"episode_return_mean\\": -10}, \\
\\"1\\": {\\"episode_return_mean\\": -11}, \\"2\\": {\\"episode_return_mean\\": -12}}}"
  echo "{\\"num_env_steps_sampled_lifetime\\": $((i * 100)), \\"env_runners\\": {\\"episode_return_mean\\": -$i}$evaluation}" \\
    >> "$trial/result.json"
  i=$((i + 1))
done
exit $EXIT
"""


@pytest.fixture
def fake_paper(tmp_path, monkeypatch):
    repo = tmp_path / "paper"
    repo.mkdir()
    (repo / "main.py").write_text("")
    python = tmp_path / "python"
    python.write_text(FAKE_MAIN)
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    counter = tmp_path / "runs.txt"
    monkeypatch.setenv("COUNTER", str(counter))
    monkeypatch.setenv("EXIT", "0")
    return pcp.PaperCode(str(repo), str(python)), counter


def test_a_trained_seed_is_found_not_retrained(fake_paper, tmp_path, monkeypatch):
    code, counter = fake_paper
    root = str(tmp_path / "runs")
    monkeypatch.setenv("EPOCHS", "3")
    done = pcp.train_seed(code, root, "cse", 4, 3, log=lambda _: None)
    assert (done["env_steps"], done["seed"], done["main_args"]) == (300, 4, pcp.main_args("cse", 3))
    assert done["trial"] == os.path.join("cse", "seed4", "ray", "pen_goal_x", "SAC_pen_goal_0")
    assert pcp.train_seed(code, root, "cse", 4, 3, log=lambda _: None) == done
    assert counter.read_text().count("run") == 1
    steps, returns = pcp.rllib_curves(root, [done], pcp.RETURN_COLUMN)
    np.testing.assert_array_equal(steps, [[100, 200, 300]])
    np.testing.assert_array_equal(returns, [[-1, -2, -3]])
    with pytest.raises(ValueError, match="trained with other settings"):
        pcp.train_seed(code, root, "cse", 4, 5, log=lambda _: None)
    monkeypatch.setenv("EPOCHS", "2")
    longer = pcp.train_seed(code, root, "cse", 5, 2, log=lambda _: None)
    steps, returns = pcp.rllib_curves(root, [done, longer], pcp.RETURN_COLUMN)  # cut to the shorter run
    np.testing.assert_array_equal(returns, [[-1, -2], [-1, -2]])


def test_an_unfinished_run_is_started_over_and_a_failed_one_reported(fake_paper, tmp_path, monkeypatch):
    code, counter = fake_paper
    root = str(tmp_path / "runs")
    stale = os.path.join(pcp.run_dir(root, "ldr", 0), "ray", "old_experiment")
    os.makedirs(stale)
    monkeypatch.setenv("EPOCHS", "2")
    monkeypatch.setenv("EXIT", "1")  # main.py's plotting fails after a complete trial: the run counts
    done = pcp.train_seed(code, root, "ldr", 0, 2, log=lambda _: None)
    assert not os.path.exists(stale) and done["main_py_exit"] == 1
    monkeypatch.setenv("EPOCHS", "1")  # ends before the epochs asked for
    with pytest.raises(RuntimeError, match="without a trial of 2 iterations"):
        pcp.train_seed(code, root, "ldr", 1, 2, log=lambda _: None)
    assert not os.path.exists(os.path.join(pcp.run_dir(root, "ldr", 1), "done.json"))


def test_run_evaluates_and_judges_exported_policies(fake_paper, tmp_path, monkeypatch):
    """Training faked, the fixture's policy as every seed's export; the zsgjax evaluation and verdicts are real."""
    code, _ = fake_paper
    root = str(tmp_path / "runs")
    monkeypatch.setenv("EPOCHS", "2")
    evaluation = pcp.Evaluation.paper(episodes=2, sweep_points=2)
    for method in ("cse", "ldr"):
        for seed in (0, 1):
            os.makedirs(pcp.run_dir(root, method, seed))
            data = fixture()
            if method == "ldr":
                data["b2"] = data["b2"] + np.float32(0.3 * (seed + 1))  # another policy
            np.savez(os.path.join(pcp.run_dir(root, method, seed), "policy.npz"), **data)
    with DirectoryLock(pcp.run_dir(root, "ldr", 1)):  # another driver trains this run
        with pytest.raises(ValueError, match=r"the run folder of ldr seed 1 '.*seed1' is in use by another run"):
            pcp.run(code, seeds=[0, 1], methods=["ldr"], epochs=2, root=root, out=str(tmp_path / "o"),
                    evaluation=evaluation, log=lambda _: None)
    out = str(tmp_path / "out")
    pcp.run(code, seeds=[0, 1], methods=["cse", "ldr"], epochs=2, root=root, out=out, evaluation=evaluation,
            log=lambda _: None)
    with open(os.path.join(out, "results.json")) as f:
        doc = json.load(f)
    (verdict,) = doc["info"]["verdicts"]
    assert verdict["id"] == "pendulum_goal/cse>ldr:tau>0.6" and verdict["rows"] == ["tau=1"]
    labels = doc["grid"]["labels"]
    row = labels.index("tau=1")
    per_seed = {m: np.asarray(doc["methods"][m]["returns"])[:, row].mean(axis=1) for m in ("cse", "ldr")}
    d = per_seed["cse"] - per_seed["ldr"]
    assert verdict["diff"] == pytest.approx(d.mean())
    assert verdict["half_width"] == pytest.approx(12.706204736174698 * abs(d[0] - d[1]) / np.sqrt(2) / np.sqrt(2))
    # both methods ran on the same episode keys: the two cse seeds (one policy) differ only by their keys
    returns = np.asarray(doc["methods"]["cse"]["returns"])
    assert not np.allclose(returns[0], returns[1])
    assert doc["info"]["eval_actions"] == "sample_unscaled" and len(labels) == 4 * 2 + 3
    # the evaluation key of pendulum_goal.py's runs (runner.evaluate: fold_in(PRNGKey(base seed 0), 1))
    # and seed s (in --seeds order) is the policy of seed s
    loaded = [rllib_sac_policy.load_policy(os.path.join(pcp.run_dir(root, "ldr", s), "policy.npz")) for s in (0, 1)]
    env = envs.make("pendulum_goal")
    act_fn, sampled = policy_action(loaded[0][0], "sample_unscaled")
    expected = evaluate_grid(env, act_fn, rllib_sac_policy.stack_seeds([p for _, p in loaded]), make_grid(env, 2),
                             num_episodes=2, rng=jax.random.fold_in(jax.random.PRNGKey(0), 1), sampled=sampled)
    np.testing.assert_allclose(doc["methods"]["ldr"]["returns"], expected.returns, rtol=1e-6)
    curves = doc["info"]["learning_curves"]
    at_075 = curves["paper_eval"]["RLlib ldr at (2,1,1,0.75)"]
    assert at_075 == {"steps": [[200.0], [200.0]], "returns": [[-11.0], [-11.0]]}
    assert curves["steps"] == [20.0 * k for k in range(1, 11)]  # 10 points up to the runs' 200 steps
    cse = np.array(curves["curves"]["RLlib cse"], dtype=float)  # return -i at 100 i steps, none before 100
    np.testing.assert_allclose(cse, [[np.nan] * 4 + [-0.2 * k for k in range(5, 11)]] * 2)


@pytest.mark.slow
@pytest.mark.skipif(not (os.path.exists(PAPER_PYTHON) and os.path.isfile(os.path.join(PAPER_CODE, "main.py"))),
                    reason="needs the paper's virtualenv and code ($PAPER_PYTHON, $PAPER_CODE)")
def test_jax_port_equals_rllib_at_the_papers_width(tmp_path):
    out = tmp_path / "ref256.npz"
    subprocess.run([PAPER_PYTHON, pcp.EXPORT_SCRIPT, "reference", "--paper-code", PAPER_CODE, "--out", str(out),
                    "--width", "256", "--seed", "3"], check=True, capture_output=True)
    policy, ref = check_port_against_rllib(out)
    assert ref["w1"].shape == (256, 256) and policy.activations == ("relu", "relu", "linear")


PAPER_ENV_TRAJECTORIES = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from environments.ode_env import PendulumGoalAnalytic
rng = np.random.default_rng(0)
out = {}
for i, context in enumerate([[2, 1, 1, 0.75], [2, 1.2, 1, -0.75], [3.1, 0.7, 1.6, 0.3]]):
    env = PendulumGoalAnalytic(np.array(context, float))
    env.reset(seed=i)
    out[f"state{i}"], out[f"context{i}"] = env.state.copy(), np.array(context, float)
    out[f"actions{i}"] = rng.uniform(-1, 1, (200, 1))
    steps = [env.step(a) for a in out[f"actions{i}"]]
    out[f"obs{i}"] = np.array([s[0][:3] for s in steps])
    out[f"rewards{i}"] = np.array([s[1] for s in steps], float)
np.savez(sys.argv[2], **out)
"""


@pytest.mark.slow
@pytest.mark.skipif(not (os.path.exists(PAPER_PYTHON) and os.path.isfile(os.path.join(PAPER_CODE, "main.py"))),
                    reason="needs the paper's virtualenv and code ($PAPER_PYTHON, $PAPER_CODE)")
def test_pendulum_goal_steps_as_the_papers_environment(tmp_path):
    """The paper's sympy PendulumGoalAnalytic (the environment its evaluate_policies.py runs) and zsgjax's
    pendulum_goal give the same observations and rewards along 200 steps of the same actions (float64)."""
    out = tmp_path / "trajectories.npz"
    subprocess.run([PAPER_PYTHON, "-c", PAPER_ENV_TRAJECTORIES, PAPER_CODE, str(out)], check=True, capture_output=True)
    ref = np.load(out)
    env = envs.make("pendulum_goal")
    with jax.enable_x64(True):
        for i in range(3):
            state, context = jnp.asarray(ref[f"state{i}"]), jnp.asarray(ref[f"context{i}"])
            for t, action in enumerate(ref[f"actions{i}"]):
                state, obs, reward, _ = env.env_step(state, jnp.asarray(action), context)
                np.testing.assert_allclose(obs, ref[f"obs{i}"][t], atol=1e-9)
                assert float(reward) == pytest.approx(ref[f"rewards{i}"][t], abs=1e-9)
