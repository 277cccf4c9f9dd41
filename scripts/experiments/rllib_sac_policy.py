"""RLlib 2.44's SAC actor in JAX: the policy of a checkpoint exported by ``paper_code_export.py``.

RLlib's ``DefaultSACTorchRLModule`` acts through ``pi_encoder`` (an MLP whose every
layer, the last included, is followed by ``fcnet_activation``) and the head ``pi`` (a
linear layer to ``2 * action_size`` logits, since ``head_fcnet_hiddens=[]`` in the
CSE paper's model config). ``TorchSquashedGaussian.from_logits`` splits the logits
into ``loc`` and ``log_std``, clamps ``log_std`` to ``[MIN_LOG_NN_OUTPUT,
MAX_LOG_NN_OUTPUT] = [-5, 2]`` and samples ``clamp(tanh(loc + exp(log_std) noise), -1,
1)`` (its default bounds ``low = -1``, ``high = 1``). During training RLlib's
``NormalizeAndClipActions`` then maps the sample to the action box, ``low + (a + 1)
(high - low) / 2`` clipped to the box (``unsquash_action``); the paper's
``evaluate_policies.py`` sends the ``[-1, 1]`` sample to the environment as it is.

:class:`RLlibSACPolicy` has the interface of zsgjax's SAC agent that
:func:`zsgjax.evaluate.policy_action` uses (``act`` and ``sample(..., rescale=)``), so
zsgjax's evaluator runs it in every action mode: ``"sample_unscaled"`` (the paper's
evaluation), ``"sample"`` (RLlib's training-time actions), ``"mean"`` (the box-mapped
``tanh(loc)``, zsgjax's deterministic convention). Its draws use the noise
``jax.random.normal(rng, loc.shape)`` that zsgjax's own SAC draws for the same key
(:func:`zsgjax.agents.networks.tanh_gaussian`), so with the same evaluation keys both
act with the same noise.

Shapes: ``obs (..., observation_size)``; ``params = {"w": [(in, out), ...], "b":
[(out,), ...]}`` (a leading seed axis on every leaf for the evaluator).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "linear": lambda x: x}
Params = dict[str, list[Any]]


@dataclasses.dataclass(frozen=True)
class RLlibSACPolicy:
    """The actor of an RLlib SAC RLModule (see the module docstring).

    activations: after each linear layer, one of ``"relu"``, ``"tanh"``, ``"linear"``.
    action_low, action_high: the environment's action box, ``(action_size,)`` each.
    log_std_min, log_std_max: the clamp of ``log_std`` (RLlib: -5, 2).
    """

    activations: tuple[str, ...]
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    def __post_init__(self):
        unknown = [a for a in self.activations if a not in ACTIVATIONS]
        if not self.activations or unknown:
            raise ValueError(f"RLlibSACPolicy: `activations` must be a non-empty sequence of {', '.join(ACTIVATIONS)}; "
                             f"got {list(self.activations)}")
        low, high = np.asarray(self.action_low, np.float64), np.asarray(self.action_high, np.float64)
        if low.shape != high.shape or low.ndim != 1 or not np.all(np.isfinite(low) & np.isfinite(high) & (low < high)):
            raise ValueError(f"RLlibSACPolicy: the action box needs finite `action_low` < `action_high` of one shape; "
                             f"got {list(self.action_low)}, {list(self.action_high)}")
        if not self.log_std_min < self.log_std_max:
            raise ValueError(f"RLlibSACPolicy: `log_std_min` < `log_std_max` needed; got {self.log_std_min}, "
                             f"{self.log_std_max}")

    @property
    def action_size(self) -> int:
        return len(self.action_low)

    def logits(self, params: Params, obs: jax.Array) -> jax.Array:
        """RLlib's ``action_dist_inputs`` ``(..., 2 * action_size)`` (float32, as RLlib feeds the module)."""
        x = jnp.asarray(obs, jnp.float32)
        for w, b, act in zip(params["w"], params["b"], self.activations, strict=True):
            x = ACTIVATIONS[act](x @ w + b)
        return x

    def distribution(self, params: Params, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(loc, log_std)`` ``(..., action_size)`` each, ``log_std`` clamped as ``from_logits`` does."""
        loc, log_std = jnp.split(self.logits(params, obs), 2, axis=-1)
        return loc, jnp.clip(log_std, self.log_std_min, self.log_std_max)

    def to_box(self, unit: jax.Array) -> jax.Array:
        """RLlib's ``unsquash_action``: ``[-1, 1]`` to the action box, clipped to it."""
        low, high = jnp.asarray(self.action_low, jnp.float32), jnp.asarray(self.action_high, jnp.float32)
        return jnp.clip(low + (unit + 1.0) * (high - low) / 2.0, low, high)

    def act(self, params: Params, obs: jax.Array) -> jax.Array:
        """``to_box(tanh(loc))`` ``(..., action_size)``: zsgjax's deterministic action convention."""
        loc, _ = self.distribution(params, obs)
        return self.to_box(jnp.tanh(loc))

    def sample(self, params: Params, obs: jax.Array, rng: jax.Array, *, rescale: bool = True) -> jax.Array:
        """One draw ``(..., action_size)``: ``clip(tanh(loc + exp(log_std) noise), -1, 1)``, ``noise ~
        N(0, 1)`` from ``rng``; mapped to the action box by :meth:`to_box` when ``rescale``."""
        loc, log_std = self.distribution(params, obs)
        unit = squash(loc, log_std, jax.random.normal(rng, loc.shape, loc.dtype))
        return self.to_box(unit) if rescale else unit


def squash(loc: jax.Array, log_std: jax.Array, noise: jax.Array) -> jax.Array:
    """``TorchSquashedGaussian._squash(loc + exp(log_std) noise)`` with its default bounds ``[-1, 1]``."""
    return jnp.clip(jnp.tanh(loc + jnp.exp(log_std) * noise), -1.0, 1.0)


def load_policy(path: str | os.PathLike) -> tuple[RLlibSACPolicy, Params]:
    """``(policy, params)`` of an ``.npz`` written by ``paper_code_export.py export`` (or ``reference``)."""
    try:
        with np.load(path) as f:
            data = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not an exported RLlib policy ({e})") from None
    layers = sum(1 for k in data if k.startswith("w") and k[1:].isdigit())
    need = [f"{p}{i}" for i in range(layers) for p in "wb"] + ["activations", "action_low", "action_high",
                                                               "log_std_min", "log_std_max"]
    missing = [k for k in need if k not in data]
    if layers == 0 or missing:
        raise ValueError(f"{path}: not an exported RLlib policy (missing {missing or ['w0']})")
    policy = RLlibSACPolicy(activations=tuple(str(a) for a in data["activations"]),
                            action_low=tuple(float(x) for x in data["action_low"]),
                            action_high=tuple(float(x) for x in data["action_high"]),
                            log_std_min=float(data["log_std_min"]), log_std_max=float(data["log_std_max"]))
    if len(policy.activations) != layers:
        raise ValueError(f"{path}: {layers} layers but {len(policy.activations)} activations")
    params = {"w": [np.asarray(data[f"w{i}"], np.float32) for i in range(layers)],
              "b": [np.asarray(data[f"b{i}"], np.float32) for i in range(layers)]}
    for i in range(1, layers):
        if params["w"][i].shape[0] != params["w"][i - 1].shape[1]:
            raise ValueError(f"{path}: layer {i} takes {params['w'][i].shape[0]} inputs, layer {i - 1} gives "
                             f"{params['w'][i - 1].shape[1]}")
    if params["w"][-1].shape[1] != 2 * policy.action_size:
        raise ValueError(f"{path}: the head gives {params['w'][-1].shape[1]} logits, a squashed Gaussian over "
                         f"{policy.action_size} actions needs {2 * policy.action_size}")
    return policy, params


def stack_seeds(params: list[Params]) -> Params:
    """One pytree with a leading seed axis from per-seed params of one layout."""
    if not params:
        raise ValueError("stack_seeds: no policy given")
    shapes = {tuple(np.shape(x) for x in jax.tree.leaves(p)) for p in params}
    if len(shapes) != 1:
        raise ValueError(f"stack_seeds: the policies' layouts differ: {sorted(shapes)}")
    return jax.tree.map(lambda *x: np.stack(x), *params)
