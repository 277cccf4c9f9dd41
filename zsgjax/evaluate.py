"""Zero-shot evaluation: returns of trained policies over grids of contexts.

The protocol of the CSE paper: every context dimension is swept over its range with
the other dimensions at their default (the training context), plus the
environment's named evaluation contexts; each point is evaluated with many
episodes, for every seed; the report is the mean over seeds of the per-seed mean
return with a 95% Student-t interval across seeds (:mod:`zsgjax.results`).

All episodes of all seeds and contexts run in **one** jitted program:
``vmap(seeds) x vmap(contexts) x vmap(episodes)`` around a ``lax.scan`` over the
environment's horizon, called once, or once per piece of the contexts
(:func:`evaluate`'s ``pieces``, with a ``progress`` callback after each; the
returns are the same). After an episode terminates its state is frozen and it
stops accumulating reward.

Actions (``actions``, :data:`ACTION_MODES`): ``"mean"`` (the default) runs each
policy's deterministic action (SAC: ``action_scale * tanh(mean)``; DQN: argmax);
``"sample"`` draws every action from the policy's distribution (SAC: ``action_scale
* tanh(z)``, ``z ~ N(mean, std)``; DQN: argmax, the greedy policy RLlib's DQN
evaluates); ``"sample_unscaled"`` is the CSE paper's ``evaluate_policies.py``: RLlib's
``TorchSquashedGaussian.from_logits`` with its default bounds gives ``tanh(z)`` in
``[-1, 1]``, sent to the environment without the rescaling to the action box that
RLlib applies during training (``normalize_actions``); it differs from ``"sample"``
only where ``action_scale != 1`` (pendulum_goal: torques in ``[-1, 1]`` instead of
``[-2, 2]``). Sampled actions of an episode use keys derived from its start key, so
methods evaluated with the same ``rng`` share them as they share the starts.

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
ActFn = Callable[..., jax.Array]
"""A policy: ``act(params, obs (observation_size,)) -> action`` (deterministic), or with
``sampled=True`` ``act(params, obs, rng) -> action`` (one draw per call)."""

ACTION_MODES = ("mean", "sample", "sample_unscaled")


def policy_action(agent, actions: str = "mean") -> tuple[ActFn, bool]:
    """``(act_fn, sampled)`` of ``agent`` (:class:`~zsgjax.agents.sac.SAC` or
    :class:`~zsgjax.agents.dqn.DQN`) for an action mode of :data:`ACTION_MODES`."""
    if actions not in ACTION_MODES:
        raise ValueError(f"`actions` must be one of {', '.join(ACTION_MODES)}; got {actions!r}")
    if actions == "mean":
        return (lambda params, obs: agent.act(params, obs)), False
    rescale = actions == "sample"
    return (lambda params, obs, rng: agent.sample(params, obs, rng, rescale=rescale)), True


# ------------------------------------------------------------------- rollouts
def episode_return(env: ContextualEnv, act_fn: ActFn, params: Params, context: jax.Array, rng: jax.Array,
                   sampled: bool = False) -> jax.Array:
    """Undiscounted return ``()`` of one episode of ``env.horizon`` steps at ``context`` ``(dim,)``.

    Pure and jittable. The episode starts from ``env.reset(rng, context)``; with
    ``sampled`` the action of step ``t`` is ``act_fn(params, obs, split(fold_in(rng, 1),
    horizon)[t])``. Once the episode terminates the state is frozen and later rewards
    are not counted.
    """
    state = env.reset(rng, context)
    step_keys = jax.random.split(jax.random.fold_in(rng, 1), env.horizon) if sampled else None

    def body(carry, key):
        st, alive, total = carry
        action = act_fn(params, st.obs, key) if sampled else act_fn(params, st.obs)
        nxt = env.step(st, action)
        total = total + jnp.where(alive, nxt.reward, 0.0)
        new_alive = alive & (nxt.done == 0)
        st = jax.tree.map(lambda n, o: jnp.where(alive, n, o), nxt, st)
        return (st, new_alive, total), None

    init = (state, jnp.ones((), bool), jnp.zeros((), jnp.float32))
    (_, _, total), _ = jax.lax.scan(body, init, step_keys, length=env.horizon)
    return total


def make_evaluator(env: ContextualEnv, act_fn: ActFn, num_episodes: int,
                   sampled: bool = False) -> Callable[[Params, jax.Array, jax.Array], jax.Array]:
    """A jitted ``(params (S, ...), contexts (C, dim), rng) -> returns (S, C, E)``.

    Keep the returned function to evaluate repeatedly without recompiling (it
    compiles once per distinct ``(S, C)``). Episode ``e`` of seed ``s`` starts from
    key ``split(rng, S * E)[s * E + e]`` at every context: seeds get independent
    starts (so the spread across seeds, hence the CI, includes the start-state
    noise), while contexts and methods evaluated with the same ``rng`` share them
    (two equal contexts give equal returns; curves over a sweep are not jagged by
    start-state noise). ``sampled``: ``act_fn`` takes a key and draws actions
    (:func:`episode_return`), from keys derived from the same episode keys.
    """
    _check_env(env)
    if not callable(act_fn):
        raise ValueError(f"`act_fn` must be a callable act(params, obs) -> action, got {act_fn!r}")
    num_episodes = _positive_int(num_episodes, "num_episodes")
    sampled = checks.boolean(sampled, "`sampled`")

    def one_episode(p, c, k):
        return episode_return(env, act_fn, p, c, k, sampled)

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
    sampled: bool = False,
    pieces: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Returns ``(S, C, E)`` of a batch of policies (leading seed axis ``S`` in ``params``).

    contexts: ``(C, dim)``, each inside ``env.context_space`` (else ``ValueError``
      naming the dimension and its range); a single ``(dim,)`` context is accepted
      and gives ``C = 1``.
    evaluator: one from :func:`make_evaluator` (same ``env``, ``act_fn``,
      ``num_episodes`` and ``sampled``) to reuse its compilation, or that function
      compiled ahead of time for contexts ``(piece_size(C, pieces), dim)``.
    sampled: ``act_fn(params, obs, rng)`` draws actions (see :func:`make_evaluator`).
    pieces: the contexts are evaluated in this many calls (at most ``C``) of one
      program for :func:`piece_size` contexts, the last piece padded with copies of
      the last context (their returns are dropped); the returns do not depend on
      it, since every context gets the same episode starts.
    progress: called as ``progress(contexts_done, C)`` after each piece (nothing is
      reported without it).
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
    sampled = checks.boolean(sampled, "`sampled`")
    checks.prng_key(rng, "`rng`")
    if evaluator is not None and not callable(evaluator):
        raise ValueError(f"`evaluator` must be a function from make_evaluator, got {evaluator!r}")
    try:
        pieces = checks.integer(pieces, "`pieces`", low=1)
    except ValueError:
        raise ValueError(f"`pieces` must be a positive integer, got {pieces!r}") from None
    if progress is not None and not callable(progress):
        raise ValueError(f"`progress` must be a callable progress(contexts_done, contexts_total), got {progress!r}")
    fn = evaluator if evaluator is not None else make_evaluator(env, act_fn, num_episodes, sampled)
    num_contexts = contexts.shape[0]
    size = piece_size(num_contexts, pieces)
    padded = np.concatenate([contexts, np.repeat(contexts[-1:], -num_contexts % size, axis=0)])
    parts = []
    for start in range(0, num_contexts, size):
        parts.append(np.asarray(fn(params, jnp.asarray(padded[start:start + size]), rng)))
        if progress is not None:
            progress(min(start + size, num_contexts), num_contexts)
    returns = np.concatenate(parts, axis=1)[:, :num_contexts]
    if returns.shape[2] != num_episodes:
        raise ValueError(f"`evaluator` runs {returns.shape[2]} episodes per context, but num_episodes={num_episodes}")
    return returns


def piece_size(num_contexts: int, pieces: int) -> int:
    """Contexts per call when ``num_contexts`` contexts are evaluated in (at most) ``pieces``
    calls (:func:`evaluate`): ``ceil(num_contexts / pieces)``."""
    return -(-num_contexts // pieces)


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
    sampled: bool = False,
    pieces: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """:func:`evaluate` over every context of ``grid``."""
    _check_env(env)
    if not isinstance(grid, ContextGrid):
        raise ValueError(f"`grid` must be a ContextGrid (from make_grid), got {type(grid).__name__}")
    if tuple(grid.names) != tuple(env.context_space.names):
        raise ValueError(f"`grid` is over contexts {list(grid.names)}, the env's are {list(env.context_space.names)}")
    returns = evaluate(env, act_fn, params, grid.contexts, num_episodes=num_episodes, rng=rng, evaluator=evaluator,
                       sampled=sampled, pieces=pieces, progress=progress)
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


def optimal_returns(env: ContextualEnv, grid: ContextGrid) -> np.ndarray | None:
    """``(C,)`` expected return of an optimal policy at every grid context
    (:meth:`ContextualEnv.optimal_return <zsgjax.envs.base.ContextualEnv.optimal_return>`),
    NaN where unknown; ``None`` when the environment knows none (no column to show)."""
    values = [env.optimal_return(c) for c in grid.contexts]
    if all(v is None for v in values):
        return None
    return np.array([np.nan if v is None else float(v) for v in values], np.float64)


def paired_differences(methods, reference: str = "vanilla") -> list[tuple[str, str]]:
    """``[(m, reference) for every other method]`` when ``reference`` is among ``methods``,
    else ``[]``: the table's paired-difference columns against the baseline."""
    methods = list(methods)
    return [(m, reference) for m in methods if m != reference] if reference in methods else []
