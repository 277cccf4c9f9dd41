"""Checkpoints: roundtrip, keep-last-k, crash safety, clear errors (exact resume of every method: test_contracts.py)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from orbax.checkpoint._src.path import atomicity

from zsgjax.checkpoint import Checkpointer, config_to_dict


@struct.dataclass
class ToyState:
    params: dict
    step: jax.Array
    key: jax.Array


def toy_state(offset: float = 0.0) -> ToyState:
    return ToyState(
        params={"w": jnp.arange(6.0).reshape(2, 3) + offset, "b": jnp.full((2,), offset)},
        step=jnp.asarray([3, 4], jnp.int32),
        key=jax.random.split(jax.random.key(0), 2),  # typed keys with a seed axis
    )


CONFIG = {"env": "simple_direction", "lr": 1e-3, "hidden": (8, 8)}


def raw(tree):
    """Typed PRNG keys as their uint32 data, for comparison."""
    is_key = lambda v: jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key)  # noqa: E731
    return jax.tree.map(lambda v: jax.random.key_data(v) if is_key(v) else v, tree)


def assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(raw(a)), jax.tree.leaves(raw(b))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_roundtrip_and_keep_last(tmp_path):
    ck = Checkpointer(tmp_path / "ck", CONFIG, max_to_keep=2)
    assert ck.latest_step() is None
    for step in (1, 2, 3):
        ck.save(step, toy_state(step))
    assert ck.all_steps() == [2, 3]
    fresh = Checkpointer(tmp_path / "ck", dict(CONFIG))  # a new object, as after a restart
    restored = fresh.restore(toy_state())
    assert_same(restored, toy_state(3))
    assert jax.dtypes.issubdtype(restored.key.dtype, jax.dtypes.prng_key)
    assert_same(fresh.restore(toy_state(), step=2), toy_state(2))
    assert fresh.restore_config()["hidden"] == [8, 8]


def test_crash_mid_write_keeps_previous(tmp_path, monkeypatch):
    """A save that fails removes its temporary folder; one left by a killed process (no cleanup
    ran) is ignored and removed when the directory is opened again."""
    from zsgjax import checkpoint

    ck = Checkpointer(tmp_path / "ck", CONFIG)
    ck.save(1, toy_state(1))

    async def crash(self):
        raise OSError("simulated crash before the atomic rename")

    monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", crash)
    with pytest.raises(OSError, match="simulated crash"):
        ck.save(2, toy_state(2))
    assert sorted(os.listdir(tmp_path / "ck")) == ["1"]  # the failed save cleaned up after itself
    assert ck.all_steps() == [1]
    monkeypatch.setattr(checkpoint, "_remove_partial_saves", lambda directory, step: None)  # as after kill -9
    with pytest.raises(OSError, match="simulated crash"):
        ck.save(2, toy_state(2))
    leftovers = [p for p in os.listdir(tmp_path / "ck") if "tmp" in p]
    assert leftovers, "orbax should have written into a temporary directory"
    monkeypatch.undo()

    fresh = Checkpointer(tmp_path / "ck", CONFIG)
    assert fresh.all_steps() == [1]
    assert_same(fresh.restore(toy_state()), toy_state(1))
    fresh.save(2, toy_state(2))  # the interrupted step can be written again
    assert fresh.all_steps() == [1, 2]
    assert_same(fresh.restore(toy_state()), toy_state(2))
    assert not [p for p in os.listdir(tmp_path / "ck") if "tmp" in p]


def test_restore_into_shapes_alone(tmp_path):
    """``like`` may be the state's ``jax.ShapeDtypeStruct`` s (a large state is then never allocated twice),
    with zero-size leaves and typed keys too; an abstract typed key of another implementation than jax's
    default is refused naming its leaf (wrapping needs its implementation)."""
    state = {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.asarray([3, 4], jnp.int32), "act": jnp.zeros((2, 0)),
             "flags": jnp.asarray([True, False])}
    ck = Checkpointer(tmp_path / "ck", CONFIG)
    ck.save(1, state)
    shapes = jax.eval_shape(lambda: state)
    files = lambda: sorted((r, tuple(sorted(fs)), os.path.getmtime(r)) for r, _, fs in os.walk(tmp_path))  # noqa: E731
    before = files()
    restored = Checkpointer(tmp_path / "ck", CONFIG).restore(shapes)
    assert files() == before  # a restore writes nothing
    assert_same(restored, state)
    assert all(isinstance(x, jax.Array) and x.dtype == y.dtype for x, y in zip(jax.tree.leaves(restored),
                                                                               jax.tree.leaves(state)))
    ck.save(2, toy_state(2.0))  # typed keys of jax's default implementation restore from their shapes too
    restored = ck.restore(jax.eval_shape(lambda: toy_state()))
    assert_same(restored, toy_state(2.0))
    assert jax.dtypes.issubdtype(restored.key.dtype, jax.dtypes.prng_key)
    other = jax.eval_shape(lambda: toy_state()).replace(key=jax.eval_shape(
        lambda: jax.random.split(jax.random.key(0, impl="rbg"), 2)))
    with pytest.raises(ValueError, match=r"`like`: leaf \.key is an abstract typed PRNG key of another implementation"):
        ck.restore(other)
    with pytest.raises(ValueError, match=r"leaf \['w'\] is a str"):
        ck.restore({**shapes, "w": "x"})


def test_zero_size_leaves_roundtrip(tmp_path):
    """Zero-size leaves (MuJoCo's ``data.act`` of a model without activations) are saved and come back
    with their shape and dtype, next to typed keys; a different zero-size shape is caught by the digest."""
    from zsgjax.checkpoint import CorruptCheckpoint

    state = {"act": jnp.zeros((2, 0)), "ids": jnp.zeros((0,), jnp.int32), "w": jnp.arange(3.0), "one": jnp.full((1,), 7),
             "key": jax.random.split(jax.random.key(1), 2), "empty_keys": jax.random.split(jax.random.key(2), 0)}
    ck = Checkpointer(tmp_path / "ck", CONFIG)
    ck.save(1, state)
    assert sorted(os.listdir(tmp_path / "ck")) == ["1"]
    like = jax.tree.map(lambda x: x, state) | {"w": jnp.zeros(3)}
    restored = Checkpointer(tmp_path / "ck", CONFIG).restore(like)
    assert_same(restored, state)
    for name in ("act", "ids"):
        assert restored[name].shape == state[name].shape and restored[name].dtype == state[name].dtype
    assert jax.dtypes.issubdtype(restored["empty_keys"].dtype, jax.dtypes.prng_key)
    with pytest.raises(CorruptCheckpoint, match="do not match their stored digest"):
        ck.restore(like | {"act": jnp.zeros((3, 0))})


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint found"):
        Checkpointer(tmp_path / "empty", CONFIG).restore(toy_state())
    ck = Checkpointer(tmp_path / "ck", CONFIG)
    ck.save(5, toy_state())
    with pytest.raises(ValueError, match="no checkpoint at step 4.*available steps: \\[5\\]"):
        ck.restore(toy_state(), step=4)
    with pytest.raises(ValueError, match="different config \\(lr: checkpoint=0.001 vs now=0.01\\)"):
        Checkpointer(tmp_path / "ck", {**CONFIG, "lr": 1e-2}).restore(toy_state())
    with pytest.raises(ValueError, match="state structure"):
        ck.restore({"w": jnp.zeros(3)})
    with pytest.raises(ValueError, match="max_to_keep"):
        Checkpointer(tmp_path / "x", CONFIG, max_to_keep=0)
    with pytest.raises(ValueError, match="JSON-serializable"):
        Checkpointer(tmp_path / "x", {"f": object()})

    # corrupt every data file of the stored state
    for root, _, files in os.walk(tmp_path / "ck" / "5" / "state"):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")
    with pytest.raises(ValueError, match="cannot restore checkpoint 5"):
        Checkpointer(tmp_path / "ck", CONFIG).restore(toy_state())


def test_flipped_bytes_are_detected_and_the_previous_checkpoint_used(tmp_path):
    """Orbax reads damaged data back without error; the stored digest catches it."""
    from zsgjax.checkpoint import CorruptCheckpoint

    ck = Checkpointer(tmp_path / "ck", CONFIG, max_to_keep=3)
    big = {"w": jnp.arange(50_000.0), "b": jnp.ones(3)}
    ck.save(1, big)
    ck.save(2, jax.tree.map(lambda x: x + 1, big))
    files = [os.path.join(r, f) for r, _, fs in os.walk(tmp_path / "ck" / "2" / "state") for f in fs]
    largest = max(files, key=os.path.getsize)
    data = bytearray(open(largest, "rb").read())
    data[len(data) // 2: len(data) // 2 + 8] = b"\xff" * 8
    open(largest, "wb").write(bytes(data))
    with pytest.raises(CorruptCheckpoint, match=r"checkpoint 2 .* is corrupt: 1 of 2 state leaves do not match"):
        ck.restore(big)
    warnings = []
    step, state = Checkpointer(tmp_path / "ck", CONFIG).restore_latest_good(big, warn=warnings.append)
    assert step == 1 and len(warnings) == 1 and "resumed from checkpoint 1" in warnings[0]
    assert_same(state, big)
    assert sorted(os.listdir(tmp_path / "ck")) == ["1", "2.corrupt"]  # moved aside, not deleted
    ck2 = Checkpointer(tmp_path / "ck", CONFIG)
    assert ck2.all_steps() == [1]
    ck2.save(2, big)  # the slot is free again
    # every checkpoint damaged: a clear error naming the steps
    for step in ("1", "2"):
        files = [os.path.join(r, f) for r, _, fs in os.walk(tmp_path / "ck" / step / "state") for f in fs]
        largest = max(files, key=os.path.getsize)
        data = bytearray(open(largest, "rb").read())
        data[len(data) // 2: len(data) // 2 + 8] = b"\x00\x01" * 4
        open(largest, "wb").write(bytes(data))
    with pytest.raises(ValueError, match=r"no good checkpoint .* \(steps \[1, 2\]\)"):
        Checkpointer(tmp_path / "ck", CONFIG).restore_latest_good(big)


# the checkpoint config of a cse_ldr run on cart_goal as format 5 writes it (format 4 plus the
# paper's Q-network fields; method settings derived from the method classes, which must not change
# the record): resuming such a run compares it with today's
FORMAT_5_RECORD = {
    "action_scale": 1.0, "actor_lr": 0.0003, "alpha_lr": 0.0003, "batch_size": 32, "buffer_size": 50000,
    "critic_lr": 0.0003, "cse_epsilon": 0.1, "cse_mode": "first_order", "cse_ratio": 1.0, "cse_storage": "auto",
    "double": True, "dqn_activation": "tanh", "dqn_head_hidden_size": 256, "dqn_lr": 0.0005, "dqn_max_grad_norm": 40.0, "dr_high": [12.0, 2.0, 2.0, 2.0, 4.0],
    "dr_low": [1.0, 0.01, 0.25, 0.1, -4.0], "dueling": True, "env": "cart_goal", "env_kwargs": {},
    "epsilon_decay_steps": 10000, "epsilon_end": 0.02, "epsilon_start": 1.0, "flat_optimizer": False, "format": 5,
    "gamma": 0.99, "grad_updates_per_step": 1, "hidden_sizes": [256], "importance_exponent": 0.4,
    "init_alpha": 1.0, "ldr_scale": 0.3, "learning_starts": 1000, "method": "cse_ldr", "normalize_obs": False,
    "num_envs": 8, "num_seeds": 2, "prioritized_replay": True, "priority_exponent": 0.6, "seed": 0,
    "steps_per_iteration": 1000, "target_update_period": 62, "tau": 0.005, "total_steps": 20000,
}


def test_checkpoint_config_of_earlier_runs_still_matches(tmp_path):
    """A run started by the previous code resumes: its stored record equals today's, and the
    config it holds (also run.json's) builds the same TrainConfig."""
    from zsgjax import runner
    from zsgjax.train import TrainConfig, make_train

    trainer = make_train(TrainConfig(env="cart_goal", method="cse_ldr", ldr_scale=0.3))
    assert config_to_dict(runner.checkpoint_config(trainer, 2)) == FORMAT_5_RECORD
    stored = {k: v for k, v in FORMAT_5_RECORD.items() if k not in ("format", "num_seeds")}
    assert TrainConfig(**stored) == trainer.config
    Checkpointer(tmp_path / "ck", FORMAT_5_RECORD).save(0, toy_state())
    assert Checkpointer(tmp_path / "ck", runner.checkpoint_config(trainer, 2)).verify_config() == 0


def test_leaf_digests_are_blake2b_of_dtype_shape_and_bytes():
    """The digest checkpoints store (so ones written by earlier versions still verify): BLAKE2b-128 of
    ``dtype.str + str(shape)`` then the C-order bytes, here computed independently with ``tobytes``
    (a 0-d leaf hashes as shape ``(1,)``: ``np.ascontiguousarray``'s, as since the first version)."""
    import hashlib

    from zsgjax.checkpoint import leaf_digests

    leaves = [np.arange(6, dtype=np.float32).reshape(2, 3).T, np.asarray(True), np.zeros((0, 3)),
              jnp.asarray([[1, 2]], jnp.int8), jax.random.key(3)]
    want = []
    for x in leaves[:4] + [jax.random.key_data(leaves[4])]:
        a = np.asarray(x).reshape(np.shape(x) or (1,))
        want.append(hashlib.blake2b(f"{a.dtype.str}{a.shape}".encode() + a.tobytes(), digest_size=16).hexdigest())
    assert leaf_digests(leaves) == want


def test_restores_read_1_gb_at_a_time_or_more_than_the_largest_leaf():
    """orbax refuses a leaf that does not fit its read reservation strictly ("Requested more bytes than we
    reserved space for: 1000000000 > 1000000000"), so the limit is above the largest leaf's bytes."""
    from zsgjax.checkpoint import RESTORE_CONCURRENT_GB, restore_concurrent_gb

    gb = lambda *shapes: restore_concurrent_gb([jax.ShapeDtypeStruct(s, np.float32) for s in shapes])  # noqa: E731
    assert RESTORE_CONCURRENT_GB == 1
    assert gb((10, 3), (2,)) == 1 and gb((249_999_999,)) == 1
    assert gb((250_000_000,)) == 2 and gb((250_000_000,), (10,)) == 2  # exactly 1e9 bytes
    assert gb((3, 500_000_000)) == 7  # 6e9 bytes
    assert restore_concurrent_gb([jax.ShapeDtypeStruct((1_000_000_001,), np.int8)]) == 2


@pytest.mark.slow
def test_a_leaf_of_a_gigabyte_or_more_restores(tmp_path):
    """A leaf of exactly 1e9 bytes (a large replay buffer field) restores: the read limit exceeds it."""
    state = {"big": jnp.full((1_000_000_000,), 3, jnp.int8), "w": jnp.arange(4.0)}
    ck = Checkpointer(tmp_path / "ck", CONFIG)
    ck.save(1, state)
    shapes = jax.eval_shape(lambda: state)
    del state
    restored = Checkpointer(tmp_path / "ck", CONFIG).restore(shapes)
    assert int(restored["big"][-1]) == 3 and restored["big"].shape == (1_000_000_000,)
