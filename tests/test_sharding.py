"""Multi-device training: the run driver (``runner.train(..., mesh=...)``) on a (seeds,
envs) mesh over 4 forced CPU devices gives the single-device results.

The device count is fixed when jax initialises, so the check runs in a
subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, tempfile, jax, jax.numpy as jnp, numpy as np
    from zsgjax.train import TrainConfig, make_train
    from zsgjax import runner, sharding

    assert jax.device_count() == 4, jax.devices()

    # What the SPMD partitioner gives the replay batch and the env state inside the program:
    # every array passed through sharding.constrain_batch on an envs-split mesh reports its
    # sharding at compile time (no extra compilation; the trainer looks the function up on
    # the module at each call).
    records = []
    _constrain = sharding.constrain_batch

    def spy(x, mesh):
        y = _constrain(x, mesh)
        if mesh is not None and mesh.shape["envs"] > 1:
            for leaf in jax.tree.leaves(y):
                jax.debug.inspect_array_sharding(
                    leaf, callback=lambda s, shape=leaf.shape: records.append((tuple(shape), s)))
        return y

    sharding.constrain_batch = spy
    cfg = TrainConfig(env="simple_direction", method="cse", total_steps=192, num_envs=4,
                      steps_per_iteration=64, learning_starts=64, batch_size=32, buffer_size=256,
                      hidden_sizes=(32, 32))
    trainer = make_train(cfg)
    rngs = runner.seed_keys(trainer, 4)
    spec = runner.RunSpec(seeds=4, chunks=3, keep=3, tensorboard=False)  # 3 chunks of 1 iteration: one program

    ref_state, ref_metrics = jax.jit(jax.vmap(trainer.train))(rngs)
    out = {}
    for seeds, envs in ((4, 1), (2, 2)):
        mesh = sharding.make_mesh(seeds=seeds, envs=envs)
        del records[:]
        directory = tempfile.mkdtemp()
        state, report = runner.train(trainer, directory, spec, mesh=mesh)
        metrics = {k: np.concatenate([c.metrics[k] for c in report.chunks], axis=1) for k in report.chunks[0].metrics}
        # per leaf: its per-seed shape, whether it carries the seed axis (leaves that do not
        # depend on the seed, e.g. step counters, stay unbatched inside the vmap) and the
        # per-device shape of the (seed-batched) array
        inner = []
        for shape, s in records:
            batched = len(s.spec) > 0 and s.spec[0] == "seeds"
            inner.append(dict(shape=list(shape), batched=batched, spec=str(s.spec),
                              shard=list(s.shard_shape(((4,) if batched else ()) + shape))))
        env_obs_shards = sorted({tuple(x.data.shape) for x in state.env.obs.addressable_shards})
        ref_leaves = jax.tree.leaves(trainer.policy_params(ref_state))
        leaves = jax.tree.leaves(trainer.policy_params(state))
        err = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(ref_leaves, leaves))
        scale = max(float(jnp.max(jnp.abs(a))) for a in ref_leaves)
        devices = sorted({d.id for leaf in leaves for d in leaf.sharding.device_set})
        out[f"{seeds}x{envs}"] = dict(
            max_param_err=err, param_scale=scale, devices=devices,
            env_steps=np.asarray(metrics["env_steps"]).tolist(),
            ref_env_steps=np.asarray(ref_metrics["env_steps"]).tolist(),
            critic_loss=np.asarray(metrics["critic_loss"][:, -1]).tolist(),
            ref_critic_loss=np.asarray(ref_metrics["critic_loss"][:, -1]).tolist(),
            inner=inner, env_obs_shape=list(state.env.obs.shape), env_obs_shards=[list(x) for x in env_obs_shards],
        )
        if (seeds, envs) != (2, 2):
            continue
        # resume on the 2x2 mesh (seeds and envs both split): drop the last checkpoint, continue,
        # compare every state leaf (one mesh only: each resume compiles the programs again)
        import shutil
        shutil.rmtree(f"{directory}/checkpoints/3")
        resumed, again = runner.train(trainer, directory, runner.RunSpec(**{**spec.__dict__, "resume": True}),
                                      mesh=mesh)
        out[f"{seeds}x{envs}"].update(
            resumed_from=again.resumed_from,
            resume_identical=all(bool(np.array_equal(np.asarray(a), np.asarray(b)))
                                 for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(resumed))))
    # bad meshes are rejected with clear errors
    errors = []
    for kwargs in (dict(seeds=3), dict(seeds=1, envs=8)):
        try:
            sharding.make_mesh(**kwargs)
        except ValueError as e:
            errors.append(str(e))
    try:
        runner.train(make_train(TrainConfig(num_envs=6, batch_size=32, buffer_size=64, total_steps=60,
                                            steps_per_iteration=60)),
                     tempfile.mkdtemp(), spec, mesh=sharding.make_mesh(seeds=1, envs=4))
    except ValueError as e:
        errors.append(str(e))
    try:
        runner.train(trainer, tempfile.mkdtemp(), runner.RunSpec(seeds=3), mesh=sharding.make_mesh(seeds=2, envs=2))
    except ValueError as e:
        errors.append(str(e))
    out["errors"] = errors
    print("RESULT" + json.dumps(out))
    """
)


# One subprocess for all tests of this module: keep them on one xdist worker.
pytestmark = pytest.mark.xdist_group("sharding")


@pytest.fixture(scope="module")
def sharded_results():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def test_seed_sharding_matches_single_device(sharded_results):
    r = sharded_results["4x1"]
    assert r["devices"] == [0, 1, 2, 3]
    assert r["env_steps"] == r["ref_env_steps"]
    # independent seeds on separate devices: the same computation, no reductions across devices
    assert r["max_param_err"] <= 1e-5 * max(1.0, r["param_scale"])


def test_resume_on_a_mesh_is_bit_identical(sharded_results):
    r = sharded_results["2x2"]
    assert r["resumed_from"] == 2 and r["resume_identical"]


def test_data_parallel_matches_single_device(sharded_results):
    r = sharded_results["2x2"]
    assert r["devices"] == [0, 1, 2, 3]
    assert r["env_steps"] == r["ref_env_steps"]
    # gradients averaged by an all-reduce: equal up to float re-association
    assert r["max_param_err"] <= 1e-4 * max(1.0, r["param_scale"])
    for a, b in zip(r["critic_loss"], r["ref_critic_loss"]):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6)


def test_data_parallel_run_splits_env_state_and_replay_batch(sharded_results):
    """On the 2x2 mesh the replay batch (batch_size 32) and the env state (num_envs 4) of
    each seed are split in halves over the envs axis inside the program; between chunks
    the state is split over seeds only. On 4x1 nothing is split over envs."""
    r = sharded_results["2x2"]
    batch = [x for x in r["inner"] if x["shape"] and x["shape"][0] == 32]
    env = [x for x in r["inner"] if x["shape"] and x["shape"][0] == 4]
    assert len(batch) >= 6 and len(env) >= 6  # every field of the sampled items; every env-state leaf
    assert all(x["batched"] for x in batch) and sum(x["batched"] for x in env) >= 6
    for x in batch + env:
        seed_axis = [2] if x["batched"] else []  # 4 seeds -> 2 per device
        assert x["shard"] == seed_axis + [x["shape"][0] // 2] + x["shape"][1:], x  # batch halved over envs
    assert r["env_obs_shape"] == [4, 4, 4]  # (seeds, num_envs, obs)
    assert r["env_obs_shards"] == [[2, 4, 4]]
    assert sharded_results["4x1"]["inner"] == []
    assert sharded_results["4x1"]["env_obs_shards"] == [[1, 4, 4]]


def test_invalid_meshes_rejected(sharded_results):
    errors = sharded_results["errors"]
    assert len(errors) == 4
    assert "positive divisor of the device count 4" in errors[0]
    assert "at most the device count 4" in errors[1]
    assert "num_envs=6 must be a multiple of the mesh's envs axis size 4" in errors[2]
    assert "the number of seeds (3) must be a multiple of the mesh's seeds axis size 2" in errors[3]
