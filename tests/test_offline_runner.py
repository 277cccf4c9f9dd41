"""The offline run driver: checkpointed cells, resume, refusals, and corrupt checkpoints."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax.offline import linear as L
from zsgjax.offline.runner import OfflineRun

SEEDS = 2


@pytest.fixture(scope="module")
def problem():
    fam, support = L.mdp.two_context_mdp(0.05)
    ids = np.arange(4) % 2
    data = L.LinearData(fam.phi, L.dataset.collect_dataset(jax.random.PRNGKey(0), fam, support[ids],
                                                           L.dataset.uniform_policy(2, 3, 2), 20, context_ids=ids))
    data_s = jax.tree.map(lambda x: jnp.stack([x] * SEEDS), data)
    return data_s, jax.random.split(jax.random.PRNGKey(1), SEEDS)


CONFIG = L.PERMConfig(beta=0.1, iterations=5, num_restarts=2)


def test_trained_cells_resume_bit_identically(problem, tmp_path):
    data_s, keys = problem
    out = tmp_path / "exp" / "run"
    run = OfflineRun(out, {"seeds": SEEDS})
    first, seconds = run.train("PERM", L.make_perm(CONFIG), keys, data_s, CONFIG)
    assert seconds > 0 and first.policy_params.shape == (SEEDS, 2, 6)
    table = run.compute("table", lambda: {"v": np.arange(3.0)}, {"v": np.zeros(3)})
    assert sorted(os.listdir(run.directory)) == ["PERM", "table"]
    logs = []
    again = OfflineRun(out, {"seeds": SEEDS}, resume=True, log=logs.append)
    second, seconds = again.train("PERM", L.make_perm(CONFIG), keys, data_s, CONFIG)
    assert seconds == 0.0
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(again.compute("table", lambda: pytest.fail("recomputed"), {"v": np.zeros(3)})["v"],
                                  table["v"])
    assert any("restored" in line for line in logs)


def test_refusals_name_what_is_wrong(problem, tmp_path):
    data_s, keys = problem
    out = tmp_path / "run"
    run = OfflineRun(out, {"seeds": SEEDS})
    run.train("PERM", L.make_perm(CONFIG), keys, data_s, CONFIG)
    with pytest.raises(ValueError, match="cell 'PERM': a cell of this run already uses the checkpoint folder"):
        run.train("PERM", L.make_perm(CONFIG), keys, data_s, CONFIG)
    with pytest.raises(ValueError, match=r"run.checkpoints' holds the checkpoints of an earlier run; pass --resume"):
        OfflineRun(out, {"seeds": SEEDS})
    other = L.PERMConfig(beta=0.2, iterations=5, num_restarts=2)
    with pytest.raises(ValueError, match=r"different config .*config: checkpoint=.*'beta': 0.1.* vs now=.*'beta': 0.2"):
        OfflineRun(out, {"seeds": SEEDS}, resume=True).train("PERM", L.make_perm(other), keys, data_s, other)
    changed = data_s.replace(dataset=data_s.dataset.replace(rewards=data_s.dataset.rewards + 1.0))
    with pytest.raises(ValueError, match=r"different config \(data: checkpoint="):
        OfflineRun(out, {"seeds": SEEDS}, resume=True).train("PERM", L.make_perm(CONFIG), keys, changed, CONFIG)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"`out` '.*file/run': its directory '[^']*file' is a file, not a directory"):
        OfflineRun(tmp_path / "file" / "run", {})


def test_a_corrupt_cell_is_reported_and_trained_again(problem, tmp_path):
    data_s, keys = problem
    out = tmp_path / "run"
    first, _ = OfflineRun(out, {}).train("PERM", L.make_perm(CONFIG), keys, data_s, CONFIG)
    state = os.path.join(f"{out}.checkpoints", "PERM", "0", "state")
    largest = max((os.path.join(r, f) for r, _, fs in os.walk(state) for f in fs), key=os.path.getsize)
    raw = bytearray(open(largest, "rb").read())
    raw[len(raw) // 2: len(raw) // 2 + 8] = b"\xff" * 8  # orbax reads such damage back without error
    open(largest, "wb").write(bytes(raw))
    logs = []
    again, seconds = OfflineRun(out, {}, resume=True, log=logs.append).train("PERM", L.make_perm(CONFIG), keys,
                                                                             data_s, CONFIG)
    assert seconds > 0 and any("corrupt" in line and "training it again" in line for line in logs), logs
    np.testing.assert_array_equal(np.asarray(again.policy_params), np.asarray(first.policy_params))


@pytest.mark.slow
@pytest.mark.parametrize("argv", [
    ["scripts/offline/average_mdp.py", "--episodes", "10", "--seeds", "2", "--pppo-envs", "4"],
    ["scripts/offline/scaling.py", "--envs", "2", "4", "--episodes", "5", "10", "--envs-fixed", "4",
     "--episodes-fixed", "5", "--seeds", "2", "--test-contexts", "20"],
    ["scripts/offline/pessimism.py", "--coverages", "1.0", "--beta-scales", "0", "--seeds", "2", "--test-contexts",
     "20"],
])
def test_linear_scripts_resume_from_their_cells(argv, tmp_path):
    """A second invocation with --resume restores every cell and writes the same tables."""
    import json
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = str(tmp_path / "result")

    def invoke(*extra):
        done = subprocess.run([sys.executable, os.path.join(root, argv[0]), *argv[1:], "--out", out, *extra],
                              cwd=root, capture_output=True, text=True, timeout=900,
                              env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": root})
        return done

    first = invoke()
    assert first.returncode == 0, first.stdout + first.stderr
    def results():
        got = {k: v for k, v in json.load(open(out + ".json")).items() if k not in ("wall_seconds", "machine")}
        got["config"].pop("resume")
        return got

    table = results()
    refused = invoke()
    assert refused.returncode != 0 and "pass --resume" in refused.stderr
    again = invoke("--resume")
    assert again.returncode == 0 and "restored" in again.stdout, again.stdout + again.stderr
    assert results() == table
