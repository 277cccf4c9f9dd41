"""mujoco_playground MJX environments as zsgjax contextual environments.

``zsgjax.envs.make("playground:CartpoleBalance", physical=("gravity", "mass_scale:pole_1"))``
wraps playground's ``CartpoleBalance`` in a :class:`PlaygroundEnv`: a
:class:`~zsgjax.envs.ContextualEnv` whose context is the chosen physical features
of :mod:`zsgjax.envs.mjx.features` (the mechanism of the cheetah and ant envs),
in the given order. Everything else is playground's: the initial-state
distribution, the dynamics (``n_substeps`` MJX steps of ``sim_dt`` per control
step), the observation, the reward and the termination.

How the context enters: each call builds ``model_at(context)`` -- a copy of the
playground env's ``mjx.Model`` with the features written in (pure
``model.replace``, the context a traced argument) -- and runs playground's own
``reset``/``step`` on a shallow copy of the playground env holding that model.
Nothing context-dependent is closed over, so a new context never recompiles and
``jax.jacfwd`` through :meth:`~zsgjax.envs.ContextualEnv.transition` (what
:func:`zsgjax.context_gradients.context_jacobian` does) gives exact derivatives of playground's
next observation and reward with respect to the context.

Shapes: context ``(len(physical),)``; state observation
``(state_obs_size,)`` = playground's ``observation_size``; agent observation
``concat(state_obs, context)``; action ``(action_size,)`` = the model's ``nu``,
passed to playground unchanged (its models clamp controls to their
``ctrlrange``, ``[-1, 1]`` in the DM Control Suite). The environment state is
playground's whole ``State`` (``mjx.Data``, ``obs``, ``metrics``, ``info``).

Limits:

* The supported names are the DeepMind Control Suite
  (:data:`zsgjax.adapters.playground_envs.DM_CONTROL_ENVS`), whose MJCF files ship
  with the package. A playground environment built by the user (locomotion,
  manipulation: they need MuJoCo Menagerie, cloned from the network on first
  use) can be passed as an instance; it must keep its model in ``_mjx_model``
  (every playground env does) and have a flat array observation.
* Physics runs on MJX's JAX implementation (``impl="jax"``, forced for names;
  playground's default ``"warp"`` has no forward-mode derivatives and is refused).
* Under brax's trainers use :func:`zsgjax.adapters.brax.wrap_for_training`:
  playground's own ``wrap_for_brax_training`` reads ``state.data``, which a zsgjax
  state (a :class:`PlaygroundContextState`) refuses with an error naming
  :data:`WORKING_TRAINING_PATH`.
* Without mujoco_playground, importing this module raises
  :class:`zsgjax.adapters.MissingExtra` naming ``pip install 'zsgjax[adapters]'``.
* Constants a playground env computes from its model in ``__init__`` (body ids,
  joint ranges, initial poses) keep their nominal values; the features change
  only the model fields they name (see :mod:`zsgjax.envs.mjx.features`, also for
  which derived constants are recomputed).
* Vision configurations (dict observations) are rejected.

Precision: the playground model is built in the precision active at
construction; build the environment inside ``jax.enable_x64(True)`` for float64.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
from brax.envs.base import State
from flax import struct
from mujoco import mjx

from zsgjax import checks
from zsgjax.adapters import MissingExtra
from zsgjax.adapters.playground_envs import DM_CONTROL_ENVS, PREFIX

try:
    from mujoco_playground import dm_control_suite
    from mujoco_playground._src import mjx_env
except ModuleNotFoundError as e:
    raise MissingExtra(
        f"zsgjax's playground:* environments need mujoco_playground ({e.name} is not installed); install the "
        "adapters extra: pip install 'zsgjax[adapters]'", name=e.name) from None

from zsgjax.envs.base import ContextualEnv
from zsgjax.envs.context import ContextSpace
from zsgjax.envs.mjx.features import PhysicalFeature, apply_features, check_physical_ranges, make_features
from zsgjax.envs.registry import register

PlaygroundState = mjx_env.State

WORKING_TRAINING_PATH = (
    "load the playground env on MJX's JAX backend (registry.load(name, config_overrides={'impl': 'jax'})), wrap it "
    "as zsgjax.adapters.playground.PlaygroundEnv(pg_env, physical=(...)) and train it under brax with "
    "zsgjax.adapters.brax.wrap_for_training (as wrap_env_fn=functools.partial(wrap_for_training, sampler=...))")
"""The path from a mujoco_playground env to brax's trainers that works (``docs/adapters.md``)."""


@struct.dataclass
class PlaygroundContextState(State):
    """The brax ``State`` of a :class:`PlaygroundEnv`: playground's own ``State`` is its ``pipeline_state``.

    The same fields as brax's ``State``; reading ``.data`` (what playground's
    ``wrap_for_brax_training`` does to the states of its own envs) raises an
    ``AttributeError`` that names the training path that works.
    """

    def __getattr__(self, name: str):
        if name == "data":
            raise AttributeError(
                "a zsgjax PlaygroundEnv state has no `data` (playground's mjx.Data is state.pipeline_state.data): "
                "mujoco_playground's wrap_for_brax_training cannot drive a zsgjax environment; instead "
                + WORKING_TRAINING_PATH)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def load_playground(name: str, config_overrides: Mapping[str, Any] | None = None) -> mjx_env.MjxEnv:
    """Build the DM Control Suite environment ``name`` of mujoco_playground on MJX's JAX backend.

    ``config_overrides``: playground config entries (``{"episode_length": 500}``; nested
    ones dotted, as playground's ``update_from_flattened_dict`` takes them);
    ``impl`` is forced to ``"jax"``. ``ValueError`` for an unknown name (listing the
    supported ones) or an override the env's config does not have.
    """
    if not isinstance(name, str) or name not in DM_CONTROL_ENVS:
        raise ValueError(f"unknown playground environment {name!r}; supported (the DM Control Suite of "
                         f"mujoco_playground): {', '.join(DM_CONTROL_ENVS)}")
    overrides = dict(config_overrides or {})
    if overrides.get("impl", "jax") != "jax":
        raise ValueError(f"PlaygroundEnv: `config_overrides` impl={overrides['impl']!r} is not supported; "
                         "zsgjax runs MJX's JAX backend (impl='jax')")
    overrides["impl"] = "jax"
    known = set(dm_control_suite.get_default_config(name).keys())
    unknown = sorted(k for k in overrides if str(k).split(".")[0] not in known)  # "a.b": nested entry of a
    if unknown:
        raise ValueError(f"PlaygroundEnv: `config_overrides` has keys {unknown} that {name}'s config does not have; "
                         f"its keys: {', '.join(sorted(known))}")
    return dm_control_suite.load(name, config_overrides=overrides)


class PlaygroundEnv(ContextualEnv):
    """A mujoco_playground environment with a physical context; see the module docstring.

    Args:
      env: a supported playground name (``"CartpoleBalance"``) or a constructed
        playground ``MjxEnv`` (built with ``impl="jax"``).
      physical: names of the physical features in the context, in order
        (``"gravity"``, ``"mass_scale"``, ``"mass_scale:<body>"``,
        ``"friction_scale"``, ``"actuator_gain"``, ``"damping_scale"``); at least one.
      physical_ranges: optional ``{feature name: (low, high)}`` overriding ranges.
      config_overrides: playground config overrides (only with a name).
      horizon: episode length; default playground's ``episode_length``.

    Raises:
      ValueError: unknown environment, feature or body names (the message lists the
        accepted ones), no feature, a bad range, or a playground env this adapter
        cannot drive (warp backend, dict observations, model not in ``_mjx_model``).
    """

    discrete = False

    def __init__(
        self,
        env: str | mjx_env.MjxEnv = "CartpoleBalance",
        physical: Sequence[str] = ("gravity",),
        physical_ranges: Mapping[str, tuple[float, float]] | None = None,
        config_overrides: Mapping[str, Any] | None = None,
        horizon: int | None = None,
    ):
        if isinstance(env, mjx_env.MjxEnv):
            if config_overrides:
                raise ValueError("PlaygroundEnv: `config_overrides` applies to a name only; configure the "
                                 "playground env you pass before passing it")
            pg_env, self.name = env, type(env).__name__
        else:
            pg_env, self.name = load_playground(env, config_overrides), env
        self._check_playground_env(pg_env)
        self.pg_env = pg_env
        self.mj_model = pg_env.mj_model
        self.model: mjx.Model = pg_env.mjx_model
        if isinstance(physical, str):
            raise ValueError(f"PlaygroundEnv: `physical` must be a sequence of feature names, got the string "
                             f"{physical!r} (write ({physical!r},))")
        if len(tuple(physical)) == 0:
            raise ValueError("PlaygroundEnv: `physical` must name at least one feature (the context), e.g. "
                             "('gravity',); known: gravity, mass_scale, mass_scale:<body>, friction_scale, "
                             "actuator_gain, damping_scale")
        self.features: tuple[PhysicalFeature, ...] = make_features(self.mj_model, physical, physical_ranges)
        self.context_space = ContextSpace(
            tuple(f.name for f in self.features),
            tuple(f.low for f in self.features),
            tuple(f.high for f in self.features),
            tuple(f.default for f in self.features),
        )
        self.eval_contexts = {"default": self.context_space.default}
        if horizon is None:
            horizon = int(pg_env._config.episode_length)
        self.horizon = checks.integer(horizon, "PlaygroundEnv: `horizon`", low=1)
        self.state_obs_size = int(pg_env.observation_size)
        check_physical_ranges(self, first_dim=0)  # widened ranges are simulated at their corners

    @staticmethod
    def _check_playground_env(pg_env) -> None:
        where = f"PlaygroundEnv: playground env {type(pg_env).__name__}"
        if getattr(pg_env, "_mjx_model", None) is not pg_env.mjx_model:
            raise ValueError(f"{where} does not keep its mjx.Model in `_mjx_model`, where the context is written")
        impl = getattr(getattr(pg_env.mjx_model, "impl", None), "value", "jax")
        if impl != "jax":
            raise ValueError(f"{where} was built with impl={impl!r}; zsgjax needs MJX's JAX backend (forward-mode "
                             "derivatives): load it with registry.load(name, config_overrides={'impl': 'jax'}) or "
                             "set impl = 'jax' in the config you pass as registry.load(name, config=config)")
        if not isinstance(pg_env.observation_size, int):
            raise ValueError(f"{where} has a dict observation {pg_env.observation_size}; a flat array is needed")

    # ----------------------------------------------------------------- basics
    @property
    def action_size(self) -> int:
        return int(self.pg_env.action_size)

    @property
    def dt(self) -> float:
        """Seconds per environment step (playground's ``ctrl_dt``)."""
        return float(self.pg_env.dt)

    @property
    def dtype(self):
        return self.model.body_mass.dtype

    def model_at(self, context: jax.Array) -> mjx.Model:
        """A copy of the playground ``mjx.Model`` with ``context (dim,)`` written in."""
        return apply_features(self.model, self.features, context.astype(self.dtype))

    def playground_at(self, context: jax.Array) -> mjx_env.MjxEnv:
        """A shallow copy of the playground env whose model is :meth:`model_at` ``(context)``."""
        env = copy.copy(self.pg_env)
        env._mjx_model = self.model_at(context)
        return env

    # ------------------------------------------------------ ContextualEnv API
    def reset(self, rng: jax.Array, context: jax.Array | None = None) -> PlaygroundContextState:
        """:meth:`ContextualEnv.reset`, as a :class:`PlaygroundContextState` (steps keep its type)."""
        state = super().reset(rng, context)
        return PlaygroundContextState(**{f.name: getattr(state, f.name) for f in dataclasses.fields(state)})

    def init_env_state(self, rng: jax.Array, context: jax.Array) -> PlaygroundState:
        """Playground's ``reset(rng)`` at ``context (dim,)``: its whole ``State``."""
        return self.playground_at(context).reset(rng)

    def observe(self, env_state: PlaygroundState, context: jax.Array | None = None) -> jax.Array:
        """Playground's observation of the state, ``(state_obs_size,)``."""
        return env_state.obs

    def env_step(self, env_state: PlaygroundState, action: jax.Array, context: jax.Array):
        """Playground's ``step`` at ``context``: ``(next State, next_state_obs, reward (), terminated () bool)``."""
        # playground steps write reward terms into the state's dicts in place: give them fresh ones
        env_state = env_state.replace(metrics=dict(env_state.metrics), info=dict(env_state.info))
        action = jnp.asarray(action).astype(env_state.data.ctrl.dtype)
        nxt = self.playground_at(context).step(env_state, action)
        return nxt, nxt.obs, nxt.reward, nxt.done > 0


def __getattr__(name: str):
    """``zsgjax.adapters.playground.<Name>``: the constructor of ``PlaygroundEnv(<Name>, ...)``
    (how the registry builds ``"playground:<Name>"``)."""
    if name in DM_CONTROL_ENVS:
        return functools.partial(PlaygroundEnv, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
