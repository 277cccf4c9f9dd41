"""Zero-shot evaluation: returns of trained policies over grids of contexts.

The protocol of the CSE paper: every context dimension is swept over its range with
the other dimensions at their default (the training context), plus the
environment's named evaluation contexts; each point is evaluated with many
episodes, for every seed; the report is the mean over seeds of the per-seed mean
return and ``1.96 * SEM`` across seeds (a 95% band).

All episodes of all seeds and contexts run in **one** jitted program:
``vmap(seeds) x vmap(contexts) x vmap(episodes)`` around a ``lax.scan`` over the
environment's horizon. After an episode terminates its state is frozen and it
stops accumulating reward.

Shapes: ``S`` seeds (leading axis of every leaf of ``params``), ``C`` contexts,
``E`` episodes per context, ``dim`` the context dimension.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from zsgjax.envs.base import ContextualEnv
from zsgjax.fileio import atomic_write

Params = Any
ActFn = Callable[[Params, jax.Array], jax.Array]
"""A deterministic policy: ``act(params, obs (observation_size,)) -> action``."""

Z_95 = 1.96


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
    contexts = np.asarray(contexts, dtype=np.float32)
    if contexts.ndim == 1:
        contexts = contexts[None]
    if contexts.ndim != 2 or contexts.shape[0] < 1:
        raise ValueError(f"`contexts` must have shape (C, {env.context_dim}) with C >= 1, got {contexts.shape}")
    contexts = env.context_space.validate(contexts, "contexts")
    num_seeds_of(params)
    num_episodes = _positive_int(num_episodes, "num_episodes")
    fn = evaluator if evaluator is not None else make_evaluator(env, act_fn, num_episodes)
    returns = np.asarray(fn(params, jnp.asarray(contexts), rng))
    if returns.shape[2] != num_episodes:
        raise ValueError(f"`evaluator` runs {returns.shape[2]} episodes per context, but num_episodes={num_episodes}")
    return returns


# -------------------------------------------------------------------- summary
def summarize(returns) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 95% half-width across seeds of ``returns (S, C, E)``.

    mean ``(C,)`` = mean over seeds of the per-seed mean return;
    ci ``(C,)`` = ``1.96 * std_seeds(ddof=1) / sqrt(S)``; NaN when ``S == 1``
    (no spread across seeds can be estimated from one seed).
    """
    returns = np.asarray(returns, dtype=np.float64)
    if returns.ndim != 3 or 0 in returns.shape:
        raise ValueError(f"`returns` must have shape (S, C, E) with all sizes >= 1, got {returns.shape}")
    return _mean_ci(returns.mean(axis=2))


def _mean_ci(per_seed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``per_seed (S, ...) -> (mean (...), 1.96 SEM (...))``."""
    num_seeds = per_seed.shape[0]
    mean = per_seed.mean(axis=0)
    if num_seeds < 2:
        return mean, np.full_like(mean, np.nan)
    return mean, Z_95 * per_seed.std(axis=0, ddof=1) / math.sqrt(num_seeds)


# ------------------------------------------------------------------------ grid
@dataclasses.dataclass(frozen=True)
class ContextGrid:
    """Evaluation contexts: one sweep per dimension (others at default) plus named ones.

    contexts: ``(C, dim)`` float32.
    labels:   ``C`` row labels (``"c_x=-0.5"`` for sweep rows, the name otherwise).
    swept:    ``C`` entries, the swept dimension's name, or ``None`` for a named context.
    names:    the context dimension names; default: ``(dim,)`` the training context.
    """

    contexts: np.ndarray
    labels: tuple[str, ...]
    swept: tuple[str | None, ...]
    names: tuple[str, ...]
    default: np.ndarray

    def __post_init__(self):
        c = len(self.labels)
        if self.contexts.shape != (c, len(self.names)) or len(self.swept) != c:
            raise ValueError(
                f"ContextGrid: `contexts` {self.contexts.shape}, `labels` ({c}) and `swept` ({len(self.swept)}) disagree"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def swept_dims(self) -> tuple[str, ...]:
        """Names of the swept dimensions, in grid order."""
        return tuple(dict.fromkeys(d for d in self.swept if d is not None))

    def sweep_rows(self, dim: str) -> np.ndarray:
        """Row indices of the sweep of ``dim`` (ascending values)."""
        if dim not in self.swept_dims:
            raise ValueError(f"dimension '{dim}' is not swept in this grid; swept: {list(self.swept_dims)}")
        return np.asarray([i for i, d in enumerate(self.swept) if d == dim])

    def sweep_values(self, dim: str) -> np.ndarray:
        """Swept values ``(n,)`` of ``dim``."""
        return self.contexts[self.sweep_rows(dim), self.names.index(dim)]

    @property
    def named_rows(self) -> np.ndarray:
        return np.asarray([i for i, d in enumerate(self.swept) if d is None], dtype=int)

    def to_dict(self) -> dict:
        return {
            "names": list(self.names),
            "default": self.default.tolist(),
            "labels": list(self.labels),
            "swept": list(self.swept),
            "contexts": self.contexts.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "ContextGrid":
        try:
            return cls(
                contexts=np.asarray(d["contexts"], np.float32).reshape(len(d["labels"]), len(d["names"])),
                labels=tuple(d["labels"]),
                swept=tuple(d["swept"]),
                names=tuple(d["names"]),
                default=np.asarray(d["default"], np.float32),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a valid context grid record: {e}") from e


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
    space = env.context_space
    num_points = _positive_int(num_points, "num_points")
    if num_points < 2:
        raise ValueError(f"`num_points` must be >= 2 to sweep a range, got {num_points}")
    dims = space.names if dims is None else tuple(space.names[space.index(d)] for d in dims)
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


# --------------------------------------------------------------------- results
@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Returns of one method on a grid: ``returns (S, C, E)`` with ``C = len(grid)``."""

    grid: ContextGrid
    returns: np.ndarray

    def __post_init__(self):
        r = np.asarray(self.returns)
        if r.ndim != 3 or r.shape[1] != len(self.grid) or 0 in r.shape:
            raise ValueError(f"EvalResult: `returns` must have shape (S, {len(self.grid)}, E), got {r.shape}")

    @property
    def num_seeds(self) -> int:
        return int(self.returns.shape[0])

    @property
    def num_episodes(self) -> int:
        return int(self.returns.shape[2])

    def summary(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean (C,), ci (C,))``, see :func:`summarize`."""
        return summarize(self.returns)

    def aggregate(self, rows) -> tuple[float, float]:
        """Mean and 95% half-width across seeds of the average return over ``rows``."""
        per_seed = np.asarray(self.returns, np.float64)[:, np.asarray(rows)].mean(axis=(1, 2))
        mean, ci = _mean_ci(per_seed)
        return float(mean), float(ci)


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
    if tuple(grid.names) != tuple(env.context_space.names):
        raise ValueError(f"`grid` is over contexts {list(grid.names)}, the env's are {list(env.context_space.names)}")
    returns = evaluate(env, act_fn, params, grid.contexts, num_episodes=num_episodes, rng=rng, evaluator=evaluator)
    return EvalResult(grid=grid, returns=returns)


# ---------------------------------------------------------------- table output
def _fmt(mean: float, ci: float) -> str:
    return f"{mean:.2f} ± " + ("n/a" if not np.isfinite(ci) else f"{ci:.2f}")


def table_rows(results: Mapping[str, EvalResult], detail: bool = True) -> list[tuple[str, list[tuple[float, float]]]]:
    """Rows ``(label, [(mean, ci) per method])`` of the generalization table.

    Named contexts first, then (``detail``) every sweep point, then per swept
    dimension the average over its sweep (``"mean over <dim> sweep"``).
    """
    methods = check_results(results)
    grid = results[methods[0]].grid
    rows = []
    sums = [results[m].summary() for m in methods]
    order = list(grid.named_rows) + ([i for i in range(len(grid)) if grid.swept[i] is not None] if detail else [])
    for i in order:
        rows.append((grid.labels[i], [(float(s[0][i]), float(s[1][i])) for s in sums]))
    for d in grid.swept_dims:
        rows.append((f"mean over {d} sweep", [results[m].aggregate(grid.sweep_rows(d)) for m in methods]))
    return rows


def format_table(results: Mapping[str, EvalResult], detail: bool = True, title: str | None = None) -> str:
    """A text table: one row per context, one column per method, ``mean ± 1.96 SEM``."""
    methods = check_results(results)
    rows = table_rows(results, detail)
    cells = [[label] + [_fmt(m, c) for m, c in vals] for label, vals in rows]
    header = ["context"] + list(methods)
    widths = [max(len(r[j]) for r in [header] + cells) for j in range(len(header))]
    lines = []
    if title:
        lines.append(title)
    lines.append("  ".join(h.ljust(w) if j == 0 else h.rjust(w) for j, (h, w) in enumerate(zip(header, widths))))
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(x.ljust(w) if j == 0 else x.rjust(w) for j, (x, w) in enumerate(zip(r, widths))))
    first = results[methods[0]]
    lines.append(
        f"(mean ± 1.96·SEM over {first.num_seeds} seeds, {first.num_episodes} episodes per context and seed)"
    )
    return "\n".join(lines) + "\n"


def write_table(results: Mapping[str, EvalResult], path: str | os.PathLike, detail: bool = True, title: str | None = None) -> str:
    """Write :func:`format_table` to ``path`` atomically; returns the text."""
    text = format_table(results, detail, title)
    atomic_write(path, text)
    return text


def write_csv(results: Mapping[str, EvalResult], path: str | os.PathLike) -> None:
    """Long-format CSV, one line per (method, context), written atomically.

    Columns: method, context, swept, one column per context dimension, mean, ci95,
    num_seeds, num_episodes.
    """
    methods = check_results(results)
    grid = results[methods[0]].grid
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "context", "swept", *grid.names, "mean", "ci95", "num_seeds", "num_episodes"])
    for m in methods:
        r = results[m]
        mean, ci = r.summary()
        for i in range(len(grid)):
            w.writerow(
                [m, grid.labels[i], grid.swept[i] or "", *(f"{v:.6g}" for v in grid.contexts[i]),
                 f"{mean[i]:.6g}", "" if not np.isfinite(ci[i]) else f"{ci[i]:.6g}", r.num_seeds, r.num_episodes]
            )
    atomic_write(path, buf.getvalue())


def write_json(results: Mapping[str, EvalResult], path: str | os.PathLike, extra: Mapping | None = None) -> None:
    """JSON with the grid, the raw returns ``(S, C, E)`` and the summary of every method.

    ``extra`` (JSON-serializable) is stored under ``"info"``. NaN becomes ``null``.
    Read back with :func:`load_json`.
    """
    methods = check_results(results)
    doc = {"info": dict(extra or {}), "grid": results[methods[0]].grid.to_dict(), "methods": {}}
    for m in methods:
        mean, ci = results[m].summary()
        doc["methods"][m] = {
            "mean": _nan_to_none(mean),
            "ci95": _nan_to_none(ci),
            "returns": np.asarray(results[m].returns, np.float64).tolist(),
        }
    atomic_write(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")


def load_json(path: str | os.PathLike) -> dict[str, EvalResult]:
    """Inverse of :func:`write_json`: ``{method: EvalResult}``; ``ValueError`` on a malformed file."""
    try:
        with open(path) as f:
            doc = json.load(f)
        grid = ContextGrid.from_dict(doc["grid"])
        return {m: EvalResult(grid, np.asarray(v["returns"], np.float64)) for m, v in doc["methods"].items()}
    except FileNotFoundError:
        raise
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not an evaluation results file written by zsgjax.evaluate.write_json ({e})") from e


# ------------------------------------------------------------------- helpers
def check_results(results: Mapping[str, EvalResult]) -> list[str]:
    """Method names of ``results``; ``ValueError`` when empty or evaluated on different grids."""
    methods = list(results)
    if not methods:
        raise ValueError("`results` is empty: give at least one method")
    grid = results[methods[0]].grid
    for m in methods[1:]:
        g = results[m].grid
        if g.labels != grid.labels or not np.array_equal(g.contexts, grid.contexts):
            raise ValueError(f"`results`: method '{m}' was evaluated on a different grid than '{methods[0]}'")
    return methods


def _nan_to_none(x: np.ndarray) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(x, np.float64)]


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    return int(value)
