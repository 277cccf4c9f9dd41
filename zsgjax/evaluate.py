"""Zero-shot evaluation: returns of trained policies over grids of contexts.

The protocol of the CSE paper: every context dimension is swept over its range with
the other dimensions at their default (the training context), plus the
environment's named evaluation contexts; each point is evaluated with many
episodes, for every seed; the report is the mean over seeds of the per-seed mean
return with a 95% Student-t interval across seeds (:mod:`zsgjax.results`).

All episodes of all seeds and contexts run in **one** jitted program:
``vmap(seeds) x vmap(contexts) x vmap(episodes)`` around a ``lax.scan`` over the
environment's horizon. After an episode terminates its state is frozen and it
stops accumulating reward.

Shapes: ``S`` seeds (leading axis of every leaf of ``params``), ``C`` contexts,
``E`` episodes per context, ``dim`` the context dimension.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from zsgjax import checks
from zsgjax.envs.base import ContextualEnv
from zsgjax.reporting.results import ContextGrid, EvalResult

Params = Any
ActFn = Callable[[Params, jax.Array], jax.Array]
"""A deterministic policy: ``act(params, obs (observation_size,)) -> action``."""


# ------------------------------------------------------------------- rollouts
def episode_return(env: ContextualEnv, act_fn: ActFn, params: Params, context: jax.Array, rng: jax.Array) -> jax.Array:
    """Undiscounted return ``()`` of one episode of ``env.horizon`` steps at ``context`` ``(dim,)``.

    Pure and jittable. Once the episode terminates the state is frozen and later
    rewards are not counted.
    """
    state = env.reset(rng, context)

    def body(carry, _):
        st, alive, total = carry
        nxt = env.step(st, act_fn(params, st.obs))
        total = total + jnp.where(alive, nxt.reward, 0.0)
        new_alive = alive & (nxt.done == 0)
        st = jax.tree.map(lambda n, o: jnp.where(alive, n, o), nxt, st)
        return (st, new_alive, total), None

    init = (state, jnp.ones((), bool), jnp.zeros((), jnp.float32))
    (_, _, total), _ = jax.lax.scan(body, init, None, length=env.horizon)
    return total


def make_evaluator(env: ContextualEnv, act_fn: ActFn, num_episodes: int) -> Callable[[Params, jax.Array, jax.Array], jax.Array]:
    """A jitted ``(params (S, ...), contexts (C, dim), rng) -> returns (S, C, E)``.

    Keep the returned function to evaluate repeatedly without recompiling (it
    compiles once per distinct ``(S, C)``). Episode ``e`` of seed ``s`` starts from
    key ``split(rng, S * E)[s * E + e]`` at every context: seeds get independent
    starts (so the spread across seeds, hence the CI, includes the start-state
    noise), while contexts and methods evaluated with the same ``rng`` share them
    (two equal contexts give equal returns; curves over a sweep are not jagged by
    start-state noise).
    """
    _check_env(env)
    if not callable(act_fn):
        raise ValueError(f"`act_fn` must be a callable act(params, obs) -> action, got {act_fn!r}")
    num_episodes = _positive_int(num_episodes, "num_episodes")

    def one_episode(p, c, k):
        return episode_return(env, act_fn, p, c, k)

    over_episodes = jax.vmap(one_episode, in_axes=(None, None, 0))
    over_contexts = jax.vmap(over_episodes, in_axes=(None, 0, None))
    over_seeds = jax.vmap(over_contexts, in_axes=(0, None, 0))

    @jax.jit
    def evaluator(params, contexts, rng):
        num_seeds = jax.tree.leaves(params)[0].shape[0]
        keys = jax.random.split(rng, num_seeds * num_episodes)
        keys = keys.reshape(num_seeds, num_episodes, *keys.shape[1:])
        return over_seeds(params, contexts, keys)

    return evaluator


def num_seeds_of(params: Params) -> int:
    """The common leading (seed) axis of every leaf of ``params``; ``ValueError`` otherwise."""
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("`params` has no array leaves")
    sizes = {np.shape(x)[0] if np.ndim(x) > 0 else None for x in leaves}
    if None in sizes or len(sizes) != 1:
        raise ValueError(
            f"`params` must carry one leading seed axis S >= 1 on every leaf, got leading sizes {sorted(map(str, sizes))}"
        )
    (size,) = sizes
    if size < 1:
        raise ValueError("`params` has an empty seed axis (S = 0)")
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if checks.is_traced(leaf) or not jnp.issubdtype(getattr(leaf, "dtype", np.int8), jnp.inexact):
            continue
        arr = np.asarray(leaf)
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            raise ValueError(f"`params` leaf {jax.tree_util.keystr(path) or '(root)'} has non-finite values; "
                             "a policy with NaN/inf parameters cannot be evaluated")
    return int(size)


def evaluate(
    env: ContextualEnv,
    act_fn: ActFn,
    params: Params,
    contexts,
    *,
    num_episodes: int,
    rng: jax.Array,
    evaluator: Callable | None = None,
) -> np.ndarray:
    """Returns ``(S, C, E)`` of a batch of policies (leading seed axis ``S`` in ``params``).

    contexts: ``(C, dim)``, each inside ``env.context_space`` (else ``ValueError``
      naming the dimension and its range); a single ``(dim,)`` context is accepted
      and gives ``C = 1``.
    evaluator: one from :func:`make_evaluator` (same ``env``, ``act_fn`` and
      ``num_episodes``) to reuse its compilation.
    """
    _check_env(env)
    if not callable(act_fn):
        raise ValueError(f"`act_fn` must be a callable act(params, obs) -> action, got {act_fn!r}")
    contexts = checks.numeric_array(contexts, "`contexts`", finite=False)
    if contexts.ndim == 1:
        contexts = contexts[None]
    if contexts.ndim != 2 or contexts.shape[0] < 1:
        raise ValueError(f"`contexts` must have shape (C, {env.context_dim}) with C >= 1, got {contexts.shape}")
    contexts = env.context_space.validate(contexts, "contexts")
    num_seeds_of(params)
    num_episodes = _positive_int(num_episodes, "num_episodes")
    checks.prng_key(rng, "`rng`")
    if evaluator is not None and not callable(evaluator):
        raise ValueError(f"`evaluator` must be a function from make_evaluator, got {evaluator!r}")
    fn = evaluator if evaluator is not None else make_evaluator(env, act_fn, num_episodes)
    returns = np.asarray(fn(params, jnp.asarray(contexts), rng))
    if returns.shape[2] != num_episodes:
        raise ValueError(f"`evaluator` runs {returns.shape[2]} episodes per context, but num_episodes={num_episodes}")
    return returns


def make_grid(
    env: ContextualEnv,
    num_points: int = 9,
    dims: Sequence[str] | None = None,
    named: bool = True,
) -> ContextGrid:
    """The evaluation grid of ``env``.

    num_points: points per swept dimension (``>= 2``), evenly spaced over its range.
    dims: dimensions to sweep (default: all).
    named: append the environment's named ``eval_contexts``.
    """
    _check_env(env)
    space = env.context_space
    num_points = _positive_int(num_points, "num_points")
    if num_points < 2:
        raise ValueError(f"`num_points` must be >= 2 to sweep a range, got {num_points}")
    named = checks.boolean(named, "`named`")
    if isinstance(dims, (str, bytes)):
        raise ValueError(f"`dims` must be a sequence of dimension names (e.g. [{dims!r}]), got the string {dims!r}")
    try:
        dims = space.names if dims is None else tuple(space.names[space.index(d)] for d in dims)
    except (TypeError, ValueError) as e:
        raise ValueError(f"`dims`: {e}; known dimensions: {list(space.names)}") from None
    contexts, labels, swept = [], [], []
    for d in dims:
        rows = np.asarray(space.sweep(d, num_points))
        i = space.index(d)
        for row in rows:
            contexts.append(row)
            labels.append(f"{d}={row[i]:.3g}")
            swept.append(d)
    if named:
        names, arr = env.eval_context_array()
        contexts.extend(arr)
        labels.extend(names)
        swept.extend([None] * len(names))
    if not contexts:
        raise ValueError("the grid is empty: no dimension swept and no named contexts")
    return ContextGrid(
        contexts=np.asarray(contexts, np.float32).reshape(len(labels), space.dim),
        labels=tuple(labels),
        swept=tuple(swept),
        names=space.names,
        default=np.asarray(space.default, np.float32),
    )


def evaluate_grid(
    env: ContextualEnv,
    act_fn: ActFn,
    params: Params,
    grid: ContextGrid,
    *,
    num_episodes: int,
    rng: jax.Array,
    evaluator: Callable | None = None,
) -> EvalResult:
    """:func:`evaluate` over every context of ``grid``."""
    _check_env(env)
    if not isinstance(grid, ContextGrid):
        raise ValueError(f"`grid` must be a ContextGrid (from make_grid), got {type(grid).__name__}")
    if tuple(grid.names) != tuple(env.context_space.names):
        raise ValueError(f"`grid` is over contexts {list(grid.names)}, the env's are {list(env.context_space.names)}")
    returns = evaluate(env, act_fn, params, grid.contexts, num_episodes=num_episodes, rng=rng, evaluator=evaluator)
    return EvalResult(grid=grid, returns=returns)


def _positive_int(value, name: str) -> int:
    """A positive integer (Python, NumPy or concrete jax scalar, at most the int32 limit)."""
    try:
        return checks.integer(value, f"`{name}`", low=1)
    except ValueError:
        raise ValueError(f"`{name}` must be a positive integer (at most {checks.INT32_MAX}), got {value!r}") from None


def _check_env(env) -> None:
    if not isinstance(env, ContextualEnv):
        raise ValueError(f"`env` must be a ContextualEnv (zsgjax.envs.make(name)), got {type(env).__name__}")
