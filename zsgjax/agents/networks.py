"""Flax networks of the agents: MLP, tanh-Gaussian actor, twin critic, dueling Q.

All modules take a batch of observations ``(..., obs_size)`` (already
normalised, see :mod:`zsgjax.agents.normalization`) and are pure ``apply``
functions of their parameters.
"""

from __future__ import annotations

from typing import Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

LOG_STD_MIN = -5.0
LOG_STD_MAX = 2.0


ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh}


class MLP(nn.Module):
    """MLP (``activation`` after every hidden layer, a key of :data:`ACTIVATIONS`);
    ``(..., in) -> (..., hidden[-1])`` or ``(..., out_size)`` when set."""

    hidden_sizes: Sequence[int]
    out_size: int | None = None
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden_sizes:
            x = act(nn.Dense(width)(x))
        if self.out_size is not None:
            x = nn.Dense(self.out_size)(x)
        return x


class GaussianActor(nn.Module):
    """Diagonal Gaussian head before the tanh squashing.

    Returns ``(mean, log_std)``, each ``(..., action_size)``; ``log_std`` is
    squashed smoothly into ``[LOG_STD_MIN, LOG_STD_MAX]``.
    """

    hidden_sizes: Sequence[int]
    action_size: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = MLP(self.hidden_sizes)(obs)
        mean = nn.Dense(self.action_size)(h)
        log_std = jnp.tanh(nn.Dense(self.action_size)(h))
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1.0)
        return mean, log_std


def tanh_gaussian(mean: jax.Array, log_std: jax.Array) -> distrax.Distribution:
    """Tanh-squashed diagonal Gaussian over actions in ``(-1, 1)^action_size``.

    ``sample_and_log_prob`` computes the log-density through the pre-tanh sample,
    so it stays finite near the bounds.
    """
    base = distrax.MultivariateNormalDiag(loc=mean, scale_diag=jnp.exp(log_std))
    return distrax.Transformed(base, distrax.Block(distrax.Tanh(), ndims=1))


class QValue(nn.Module):
    """One state-action critic: ``(..., obs), (..., act) -> (...)``."""

    hidden_sizes: Sequence[int]

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action], axis=-1)
        return MLP(self.hidden_sizes, out_size=1)(x)[..., 0]


class EnsembleCritic(nn.Module):
    """``num_critics`` independent critics as one module, vmapped over parameters.

    ``(..., obs), (..., act) -> (num_critics, ...)``; the parameters of every
    layer carry a leading ``num_critics`` axis.
    """

    hidden_sizes: Sequence[int]
    num_critics: int = 2

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        ensemble = nn.vmap(
            QValue,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_critics,
        )
        return ensemble(self.hidden_sizes)(obs, action)


class DiscreteQ(nn.Module):
    """Q-values of a finite action set, ``(..., obs) -> (..., num_actions)``.

    A shared trunk (``hidden_sizes``, ``activation``), then with ``dueling`` a value
    and an advantage head, each a ReLU MLP of ``head_hidden_sizes`` and a linear
    output, combined as ``V(s) + A(s, a) - mean_a A(s, a)`` (RLlib's dueling module:
    with trunk ``(256,)`` tanh and heads ``(256,)`` the CSE paper's cart_goal
    network); without it one linear head (``head_hidden_sizes`` then ReLU layers
    before it).
    """

    hidden_sizes: Sequence[int]
    num_actions: int
    dueling: bool = True
    activation: str = "relu"
    head_hidden_sizes: Sequence[int] = ()

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        h = MLP(self.hidden_sizes, activation=self.activation)(obs)
        heads = tuple(self.head_hidden_sizes)

        def head(out_size: int) -> jax.Array:  # a bare Dense without hidden layers keeps the old parameter names
            return MLP(heads, out_size=out_size)(h) if heads else nn.Dense(out_size)(h)

        if not self.dueling:
            return head(self.num_actions)
        value = head(1)
        advantage = head(self.num_actions)
        return value + advantage - advantage.mean(axis=-1, keepdims=True)
