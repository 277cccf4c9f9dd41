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
