"""Kernel launches counted from compiled HLO (benchmarks/hlo_fusions.py)."""

import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

from hlo_fusions import count_kernels  # noqa: E402


def _counts(f, *args):
    return count_kernels(jax.jit(f).lower(*args).compile().as_text())


def test_launches_multiply_loop_bodies_by_their_trip_count():
    body = lambda i, y: jnp.tanh(y @ y) + jnp.sin(y).sum()  # noqa: E731
    c3, c6 = (_counts(lambda x, n=n: jax.lax.fori_loop(0, n, body, x), jnp.ones((8, 8))) for n in (3, 6))
    assert c3["kernels"] == c6["kernels"]  # the body is one piece of code either way
    per_iteration = (c6["launches"] - c3["launches"]) / 3
    assert per_iteration >= 2 and per_iteration == int(per_iteration)
    assert c3["launches"] >= 3 * per_iteration


def test_launches_count_the_largest_branch_of_a_conditional():
    big = lambda x: jnp.tanh(jnp.tanh(x @ x) @ x) @ x  # noqa: E731
    f = lambda p, x: jax.lax.cond(p, big, lambda x: x, x)  # noqa: E731
    c = _counts(f, True, jnp.ones((8, 8)))
    only_big = _counts(big, jnp.ones((8, 8)))
    assert c["launches"] >= only_big["launches"]
    assert c["launches"] < c["kernels"] + only_big["launches"]  # the identity branch adds nothing
