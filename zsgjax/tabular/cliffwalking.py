"""Cliffwalking with a slip probability ``p`` as the context.

Layout (default 5 rows x 6 columns, states ``s = row * cols + col``)::

    . . . . . .
    . . . . . .
    . . . . . .
    . . . . . .
    S C C C C G      S start (bottom-left), G goal (bottom-right), C cliff

Actions ``0 up, 1 right, 2 down, 3 left`` (clockwise, so rotating an action by ``k``
quarter turns clockwise is ``(a + k) % 4``).

Slip model (smooth and **nonlinear** in ``p``): every step draws two independent
slip events, each with probability ``p``; each slip turns the direction of motion
a quarter turn left or right with equal chance. Zero slips (prob ``(1-p)^2``) keep
the intended direction; one slip (``2p(1-p)``) gives either perpendicular
direction; two slips (``p^2``) cancel or reverse it with equal chance. Hence

    P(intended)        = (1-p)^2 + p^2/2
    P(each perpendicular) = p (1-p)
    P(opposite)        = p^2 / 2

A move off the grid leaves the agent in place. Entering a cliff cell yields the
cliff reward and returns the agent to the start (the episode goes on, as in Sutton
& Barto); entering the goal yields the goal reward and the goal is absorbing with
reward 0 afterwards. Every other step has reward 0 (no step cost; discounting
makes short paths better). Cliff cells are unreachable; for completeness every
action from them goes to the start with reward 0.

Reward variants (``reward(p, variant)``), all with reward 0 for ordinary steps:

* ``"constant"``: goal ``+1``, cliff ``-10`` (independent of ``p``; the expected
  reward ``R(s, a)`` still depends on ``p`` through the slips);
* ``"inverse"``: goal ``1 / p^2``, cliff ``-100 / p`` (needs ``p > 0``);
* ``"smooth"``: goal ``1 / (1 + p)^1.5``, cliff ``-10 / (1 + p)``.

Valid slip probabilities: ``p`` in ``[0, 1]`` (``(0, 1]`` for ``"inverse"``).
Checks run on concrete values; traced values (inside jit/vmap/jacfwd) pass through.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from zsgjax.tabular.mdp import concrete

NUM_ACTIONS = 4
ROWS, COLS = 5, 6
DEFAULT_P = 0.1
GAMMA = 0.9
VARIANTS = ("constant", "inverse", "smooth")

# (d_row, d_col) for up, right, down, left.
_MOVES = np.array([[-1, 0], [0, 1], [1, 0], [0, -1]])
# Event of a move, indexing the reward vector of :func:`event_rewards`.
STEP, GOAL, CLIFF, NONE = 0, 1, 2, 3


def num_states(rows: int = ROWS, cols: int = COLS) -> int:
    return rows * cols


def start_state(rows: int = ROWS, cols: int = COLS) -> int:
    return (rows - 1) * cols


def goal_state(rows: int = ROWS, cols: int = COLS) -> int:
    return rows * cols - 1


def cliff_states(rows: int = ROWS, cols: int = COLS) -> np.ndarray:
    return np.arange(start_state(rows, cols) + 1, goal_state(rows, cols))


def _check_grid(rows: int, cols: int) -> None:
    if int(rows) < 1 or int(cols) < 3:
        raise ValueError(f"grid needs `rows` >= 1 and `cols` >= 3, got rows={rows}, cols={cols}")


def layout(rows: int = ROWS, cols: int = COLS) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic move table of the grid (static NumPy, no ``p``).

    Returns:
      ``next_state (S, 4)``: the state reached by moving in direction ``d`` from ``s``;
      ``event (S, 4)``: ``STEP``, ``GOAL``, ``CLIFF`` or ``NONE`` for that move.
    """
    _check_grid(rows, cols)
    s_count = rows * cols
    start, goal = start_state(rows, cols), goal_state(rows, cols)
    cliff = set(cliff_states(rows, cols).tolist())
    next_state = np.zeros((s_count, NUM_ACTIONS), dtype=np.int32)
    event = np.full((s_count, NUM_ACTIONS), STEP, dtype=np.int32)
    for s in range(s_count):
        r, c = divmod(s, cols)
        for d, (dr, dc) in enumerate(_MOVES):
            if s == goal:
                next_state[s, d], event[s, d] = goal, NONE
                continue
            if s in cliff:
                next_state[s, d], event[s, d] = start, NONE
                continue
            nr = min(max(r + dr, 0), rows - 1)
            nc = min(max(c + dc, 0), cols - 1)
            nxt = nr * cols + nc
            if nxt in cliff:
                next_state[s, d], event[s, d] = start, CLIFF
            elif nxt == goal:
                next_state[s, d], event[s, d] = goal, GOAL
            else:
                next_state[s, d] = nxt
    return next_state, event


def check_p(p, variant: str = "constant") -> None:
    """Raise ``ValueError`` unless ``p`` is in ``[0, 1]`` (``(0, 1]`` for ``"inverse"``)."""
    check_variant(variant)
    v = concrete(p)
    if v is None:
        return
    low_ok = v > 0 if variant == "inverse" else v >= 0
    if not np.all(np.isfinite(v) & low_ok & (v <= 1)):
        rng = "(0, 1]" if variant == "inverse" else "[0, 1]"
        raise ValueError(f"slip probability `p` must lie in {rng} for variant '{variant}', got {v.tolist()}")


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {VARIANTS}, got {variant!r}")


def direction_probs(p) -> jax.Array:
    """``P(move direction d | action a)`` for slip probability ``p``, shape ``(4, 4)``."""
    p = jnp.asarray(p, dtype=jnp.result_type(p, float))
    q = 1.0 - p
    # probability of a clockwise rotation by k quarter turns, k = 0..3
    rot = jnp.stack([q * q + 0.5 * p * p, p * q, 0.5 * p * p, p * q])
    a = np.arange(NUM_ACTIONS)[:, None]
    k = (np.arange(NUM_ACTIONS)[None, :] - a) % NUM_ACTIONS  # d = (a + k) % 4
    return rot[k]


def transition_matrix(p, rows: int = ROWS, cols: int = COLS) -> jax.Array:
    """Transition tensor ``T[s, a, s']`` of shape ``(S, 4, S)`` at slip probability ``p``."""
    check_p(p)
    next_state, _ = layout(rows, cols)
    probs = direction_probs(p)
    onehot = jax.nn.one_hot(next_state, rows * cols, dtype=probs.dtype)  # (S, 4, S)
    return jnp.einsum("ad,sdt->sat", probs, onehot)


def event_rewards(p, variant: str) -> jax.Array:
    """Reward of each event ``[STEP, GOAL, CLIFF, NONE]`` at slip probability ``p``, shape ``(4,)``."""
    check_p(p, variant)
    p = jnp.asarray(p, dtype=jnp.result_type(p, float))
    if variant == "constant":
        goal, cliff = jnp.ones_like(p), -10.0 * jnp.ones_like(p)
    elif variant == "inverse":
        goal, cliff = 1.0 / p**2, -100.0 / p
    else:
        goal, cliff = 1.0 / (1.0 + p) ** 1.5, -10.0 / (1.0 + p)
    zero = jnp.zeros_like(p)
    return jnp.stack([zero, goal, cliff, zero])


def reward(p, variant: str = "constant", rows: int = ROWS, cols: int = COLS) -> jax.Array:
    """Expected reward ``R[s, a] = sum_d P(d | a; p) r(event(s, d); p)``, shape ``(S, 4)``."""
    _, event = layout(rows, cols)
    return jnp.einsum("ad,sd->sa", direction_probs(p), event_rewards(p, variant)[event])
