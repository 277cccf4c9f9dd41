"""The flashbax-backed replay of transitions and CSE data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zsgjax.replay import Replay, ReplayItem
from zsgjax.types import ContextGradients, Transition


def items(start, n, with_grads=True):
    """``n`` items whose reward encodes their insertion index ``start..start+n-1``."""
    idx = jnp.arange(start, start + n, dtype=jnp.float32)
    t = Transition(
        obs=jnp.tile(idx[:, None], (1, 4)),
        action=jnp.zeros((n, 2)),
        reward=idx,
        next_obs=jnp.zeros((n, 4)),
        done=jnp.zeros((n,)),
        context=jnp.zeros((n, 2)),
    )
    g = ContextGradients(d_obs=jnp.ones((n, 2, 2)) * idx[:, None, None], d_reward=jnp.ones((n, 2))) if with_grads else None
    return ReplayItem(transition=t, extras=g)


def test_add_sample_and_ring_overwrite():
    replay = Replay(capacity=10, batch_size=10)
    example = jax.tree.map(lambda x: x[0], items(0, 1))
    state = replay.init(example)
    assert int(replay.size(state)) == 0 and not bool(replay.can_sample(state))
    add = jax.jit(replay.add)
    state = add(state, items(0, 4))
    assert int(replay.size(state)) == 4
    sample_many = jax.jit(jax.vmap(replay.sample, in_axes=(None, 0)))
    sample = sample_many(state, jax.random.split(jax.random.PRNGKey(0), 8))
    assert sample.transition.obs.shape == (8, 10, 4) and sample.extras.d_obs.shape == (8, 10, 2, 2)
    r = np.asarray(sample.transition.reward)
    assert set(r.ravel()) == {0.0, 1.0, 2.0, 3.0}  # 80 draws cover all 4 stored items, nothing else
    # the fields of one sample stay together
    np.testing.assert_array_equal(np.asarray(sample.extras.d_obs)[..., 0, 0], r)
    np.testing.assert_array_equal(np.asarray(sample.transition.obs)[..., 0], r)
    for start in (4, 8):
        state = add(state, items(start, 4))
    assert int(replay.size(state)) == 10
    r = np.asarray(sample_many(state, jax.random.split(jax.random.PRNGKey(1), 8)).transition.reward)
    assert set(r.ravel()) == set(range(2, 12))  # the two oldest were overwritten


def test_none_fields_store_nothing():
    replay = Replay(capacity=8, batch_size=4)
    state = replay.init(jax.tree.map(lambda x: x[0], items(0, 1, with_grads=False)))
    assert state.experience.extras is None
    assert len(jax.tree.leaves(state.experience)) == 6


@pytest.mark.parametrize(
    "kw, match",
    [(dict(capacity=0, batch_size=1), "capacity"), (dict(capacity=4, batch_size=5), "batch_size"),
     (dict(capacity=4, batch_size=2, min_size=9), "min_size")],
)
def test_invalid_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        Replay(**kw)


# ------------------------------------------------------------------ prioritized
def test_prioritized_probabilities_weights_and_sampling_follow_the_definition():
    """P(i) = p_i^alpha / sum p^alpha; w_i = (N P(i))^-beta / max w; sampling frequencies match P."""
    alpha, beta, eps = 0.7, 0.4, 1e-6
    replay = Replay(capacity=8, batch_size=8, prioritized=True, priority_exponent=alpha, importance_exponent=beta,
                    priority_eps=eps)
    state = replay.init(jax.tree.map(lambda x: x[0], items(0, 1, with_grads=False)))
    state = replay.add(state, items(0, 6, with_grads=False))  # 6 of 8 slots filled
    td = jnp.array([0.5, 1.0, 2.0, 4.0, 0.0, jnp.nan])
    state = jax.jit(replay.set_priorities)(state, jnp.arange(6), td)
    p = np.abs(np.asarray(td, np.float64)) + eps
    p[5] = eps  # non-finite -> the lowest priority
    want = np.zeros(8)
    want[:6] = p**alpha / np.sum(p**alpha)
    np.testing.assert_allclose(replay.probabilities(state), want, rtol=1e-3, atol=1e-9)  # float32 sum tree
    keys = jax.random.split(jax.random.PRNGKey(0), 512)
    samples = jax.jit(jax.vmap(replay.sample_batch, in_axes=(None, 0)))(state, keys)  # 512 batches of 8
    idx = np.asarray(samples.indices)
    np.testing.assert_array_equal(np.asarray(samples.items.transition.reward), idx)  # item i sits in slot i
    freq = np.bincount(idx.ravel(), minlength=8) / idx.size
    np.testing.assert_allclose(freq, want, atol=0.02)
    w = (6 * want[idx]) ** (-beta)
    np.testing.assert_allclose(samples.weight, w / w.max(axis=1, keepdims=True), rtol=1e-4)
    # uniform replay: unit weights, priorities ignored
    uniform = Replay(capacity=8, batch_size=4)
    us = uniform.add(uniform.init(jax.tree.map(lambda x: x[0], items(0, 1))), items(0, 6))
    np.testing.assert_array_equal(uniform.sample_batch(us, jax.random.PRNGKey(1)).weight, 1.0)
    assert uniform.set_priorities(us, jnp.arange(2), jnp.ones(2)) is us
    for kw, match in [(dict(priority_exponent=-1.0), "priority_exponent"), (dict(importance_exponent=1.5),
                      "importance_exponent"), (dict(priority_eps=0.0), "priority_eps")]:
        with pytest.raises(ValueError, match=match):
            Replay(capacity=8, batch_size=4, prioritized=True, **kw)


def test_prioritized_training_with_cse_vmapped_seeds_chunks_and_checkpoints(tmp_path):
    """PER works like the uniform replay: with CSE, vmapped seeds (run_seeds), in chunks, through a checkpoint."""
    from zsgjax.checkpoint import Checkpointer
    from zsgjax.train import TrainConfig, make_train

    config = TrainConfig(env="simple_direction", method="cse", cse_storage="jvp", total_steps=96, num_envs=4,
                         steps_per_iteration=32, learning_starts=32, batch_size=16, buffer_size=128,
                         hidden_sizes=(8, 8), prioritized_replay=True, priority_exponent=1.0, importance_exponent=0.0)
    trainer = make_train(config)
    assert trainer.replay.prioritized and trainer.replay.priority_exponent == 1.0
    run1 = jax.jit(lambda s: trainer.run_seeds(s, 1))
    s0 = jax.jit(jax.vmap(trainer.init))(jax.random.split(jax.random.PRNGKey(0), 2))
    s1, _ = run1(s0)
    Checkpointer(tmp_path / "ck", config).save(1, s1)
    s2, _ = run1(s1)
    s3, m3 = run1(s2)
    restored = Checkpointer(tmp_path / "ck", config).restore(s0)
    r3, _ = run1(run1(restored)[0])
    for a, b in zip(jax.tree.leaves(r3), jax.tree.leaves(s3)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.all(np.isfinite(np.asarray(m3["critic_loss"])))
    probs = np.asarray(jax.vmap(trainer.replay.probabilities)(s3.replay))
    assert probs.shape == (2, 128) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert probs[0, :96].std() > 0  # priorities moved away from their initial common value


# --------------------------------------------------------------- uniform sampling
def _chi_square_p(counts, expected):
    from scipy import stats as scipy_stats

    counts = np.asarray(counts, np.float64).ravel()
    expected = np.broadcast_to(np.asarray(expected, np.float64), counts.shape)
    stat = np.sum((counts - expected) ** 2 / expected)
    return float(scipy_stats.chi2.sf(stat, counts.size - 1))


def test_uniform_sampling_frequencies_chi_square():
    """Uniform replay draws every stored item with probability 1/size, at every batch position,
    and nothing else: partially filled (10 of 16 slots) and after the ring wrapped (25 added)."""
    replay = Replay(capacity=16, batch_size=8)
    sample_many = jax.jit(jax.vmap(replay.sample, in_axes=(None, 0)))
    add = jax.jit(replay.add)
    state = replay.init(jax.tree.map(lambda x: x[0], items(0, 1, with_grads=False)))
    num_batches = 2000  # 16000 draws
    for added, stored in ((10, range(10)), (25, range(9, 25))):
        s = state
        for start in range(0, added, 5):
            s = add(s, items(start, 5, with_grads=False))
        assert int(replay.size(s)) == len(stored)
        keys = jax.random.split(jax.random.PRNGKey(added), num_batches)
        r = np.asarray(sample_many(s, keys).transition.reward).astype(int)  # (batches, 8): the item ids
        assert set(np.unique(r)) == set(stored)
        counts = np.stack([np.bincount(r[:, j] - stored[0], minlength=len(stored)) for j in range(8)])  # (8, size)
        n = num_batches * 8
        p_items, p_pos = _chi_square_p(counts.sum(0), n / len(stored)), _chi_square_p(counts, num_batches / len(stored))
        assert p_items > 1e-3  # item frequencies (measured p = 0.35, 0.38)
        assert p_pos > 1e-3  # per batch position (measured p = 0.96, 0.86)
        # consecutive batches are not repeats of each other
        assert np.mean(np.all(r[1:] == r[:-1], axis=1)) < 0.01


def test_sample_batches_is_one_vmapped_draw_of_sample_batch():
    """``sample_batches(state, keys)``: ``(G, batch)`` items, batch ``j`` equal to
    ``sample_batch(state, keys[j])`` (also when G * batch exceeds the capacity); refused for
    prioritized buffers (their priorities change between updates) and for malformed keys."""
    replay = Replay(capacity=16, batch_size=8)
    state = replay.init(jax.tree.map(lambda x: x[0], items(0, 1, with_grads=False)))
    state = replay.add(state, items(0, 12, with_grads=False))
    keys = jax.random.split(jax.random.PRNGKey(7), 5)  # 5 x 8 draws > capacity 16
    s = jax.jit(replay.sample_batches)(state, keys)
    assert s.items.transition.reward.shape == (5, 8) and s.indices.shape == s.weight.shape == (5, 8)
    for j in range(5):
        np.testing.assert_array_equal(s.items.transition.reward[j], replay.sample_batch(state, keys[j]).items.transition.reward)
    assert np.all(np.asarray(s.weight) == 1.0) and set(np.unique(np.asarray(s.items.transition.reward))) <= set(range(12))
    with pytest.raises(ValueError, match="`rngs` must be G >= 1 PRNG keys"):
        replay.sample_batches(state, keys[0])
    with pytest.raises(ValueError, match="`rngs` must be G >= 1 PRNG keys"):
        replay.sample_batches(state, keys[:0])
    typed = jax.random.split(jax.random.key(7), 2)  # typed keys work too
    assert replay.sample_batches(state, typed).items.transition.reward.shape == (2, 8)
    prioritized = Replay(capacity=16, batch_size=8, prioritized=True)
    p_state = prioritized.init(jax.tree.map(lambda x: x[0], items(0, 1, with_grads=False)))
    with pytest.raises(ValueError, match="prioritized buffer samples one batch per update"):
        prioritized.sample_batches(p_state, keys)
