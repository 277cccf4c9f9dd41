"""Online training: SAC / DQN with vanilla, CSE, LDR or DR, as one jitted program.

``make_train(config)`` returns a static :class:`Trainer`; ``trainer.train(rng)`` is a
pure function (``lax.scan`` over iterations, each a ``lax.scan`` over batched
environment steps), so ``jax.jit(jax.vmap(trainer.train))(rngs)`` trains many
seeds in one program. One batched environment step (a *round*) is

1. act on the ``num_envs`` current observations (uniform random actions while
   ``env_steps < learning_starts``, the exploration policy afterwards);
2. step the environments with :func:`zsgjax.rollout.step` (auto-reset, a fresh
   context per episode from the method's sampler; for CSE the context gradients
   come from the same forward-mode pass);
3. insert the ``num_envs`` transitions (plus gradients / pre-step states for CSE)
   into the replay buffer;
4. once ``env_steps >= learning_starts``, ``grad_updates_per_step`` gradient
   updates, each on a fresh replay batch (as the method turns it into a training
   batch, e.g. CSE-enhanced), weighted by the replay's importance weights; with
   prioritized replay the sampled items' priorities become their ``|TD error|``.
   With uniform replay the batches of all the round's updates are drawn in one
   gather and prepared in one vmapped pass.

The training method (:mod:`zsgjax.methods`: ``vanilla``, ``cse``, ``ldr``, ``dr``
or any registered one) is an object that the trainer asks three things: the
context sampler of new episodes, the per-environment step and what it stores in
the replay, and how a replay sample becomes a training batch (with per-sample
weights; the number of dropped samples is the metric ``cse_invalid``). The
trainer itself never looks at the method's name.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from brax.envs.base import State
from flax import struct

from zsgjax import rollout, sharding
from zsgjax.agents.common import TD_ERROR, Agent
from zsgjax.agents.dqn import DQN, DQNConfig
from zsgjax.agents.normalization import ObsNormalizer
from zsgjax.agents.sac import SAC, SACConfig
from zsgjax.configs import INT32_MAX, FrozenMap, default_of, field_meta, freeze, param, validate
from zsgjax.envs import make as make_env
from zsgjax.envs import registered_names
from zsgjax.envs.base import ContextualEnv
from zsgjax.methods import Method, Setting, make_method, method_class, method_names, registered_settings
from zsgjax.presets import env_preset
from zsgjax.replay import Replay, ReplayItem
from zsgjax.types import Transition

AGENT_CONFIGS: Mapping[str, type] = {"sac": SACConfig, "dqn": DQNConfig}


def agent_kind(env: ContextualEnv) -> str:
    """``"dqn"`` for discrete actions, ``"sac"`` otherwise."""
    return "dqn" if env.discrete else "sac"


def _agent_field(**targets: str):
    """A ``TrainConfig`` field copied to the agent config(s) ``kind="field"``; its range
    and base value are the agent config's."""
    kind, name = next(iter(targets.items()))
    return param(None, like=(AGENT_CONFIGS[kind], name), meta={"agent": dict(targets)})


MAX_BUFFER_SIZE = 2**29  # TrainConfig.buffer_size: larger overflows the int32 indices of the prioritized sum tree


def _loop_field(base: Any, kind: type = int, **check):
    """A loop setting: ``None`` resolves to the env's preset, else ``base``."""
    return param(None, kind=kind, meta={"base": base}, **check)


_SETTING = "method_setting"  # field metadata: the Setting a TrainConfig field was derived from
_TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str"}


def _annotation(setting: Setting) -> str:
    check = setting.check
    tp = f"tuple[{_TYPE_NAMES[check.element]}, ...]" if check.kind is tuple else _TYPE_NAMES[check.kind]
    return f"{tp} | None" if check.optional else tp


def with_method_settings(after: str):
    """Class decorator, applied before ``dataclasses.dataclass``: one field per setting of
    every method registered now (:func:`zsgjax.methods.registered_settings`), placed after
    field ``after``. Each field borrows its default, range and help from the method's
    own field (``param(default, like=(CSE, "epsilon"))``): a setting is declared once,
    in its method's class."""

    def add(cls):
        own = dict(cls.__dict__["__annotations__"])
        derived = {}
        for option, setting in registered_settings().items():
            if option in own:
                raise TypeError(f"{cls.__name__}.{option} is both a field and a setting of method "
                                f"'{setting.owner.name}'; rename one of them")
            derived[option] = _annotation(setting)
            setattr(cls, option, param(setting.default, like=(setting.owner, setting.field), help=setting.help,
                                       meta={_SETTING: setting}))
        names = list(own)
        at = names.index(after) + 1
        cls.__annotations__ = {**{k: own[k] for k in names[:at]}, **derived, **{k: own[k] for k in names[at:]}}
        return cls

    return add


@dataclasses.dataclass(frozen=True)
@with_method_settings(after="env_kwargs")
class TrainConfig:
    """Everything a training run needs; ``None`` means "the preset": the environment's
    row in :data:`zsgjax.presets.ENV_PRESETS`, else the field's base value (an agent
    hyper-parameter's base is its agent config's default; see :mod:`zsgjax.presets`).

    Steps count environment transitions over all parallel environments together.
    ``grad_updates_per_step`` is the number of gradient updates per batched step of
    the ``num_envs`` environments (so the update-to-data ratio is
    ``grad_updates_per_step / num_envs``). ``steps_per_iteration`` groups steps for
    metrics (one metrics row per iteration); ``None`` gives ``min(total_steps,
    1000)`` rounded down to a multiple of ``num_envs``. Every field states its range
    once; :meth:`validate` checks them all.

    ``env_kwargs`` are the environment's constructor options, ``make(env,
    **env_kwargs)`` (:meth:`make_env`), e.g. ``{"physical": ("gravity",
    "mass_scale:torso"), "physical_ranges": {"gravity": (6.0, 12.0)}}`` for an MJX
    environment or ``{"integrator": "gym"}`` for pendulum_goal. Any mapping is
    accepted and stored frozen (a hashable, sorted :class:`~zsgjax.configs.FrozenMap`
    whose lists are tuples), so the config stays hashable and is written as JSON in
    ``run.json`` and every checkpoint; an option the constructor does not take is an
    error naming the ones it does.

    **Method settings** are not declared here: each is a field of its method's class
    (:mod:`zsgjax.methods.settings`), and every method registered when this module is
    imported contributes its settings as fields named ``<method>_<field>``
    (``cse_epsilon``, ``cse_mode``, ``cse_storage``, ``cse_ratio``, ``ldr_scale``,
    ``dr_low``, ``dr_high``) with the method's default, range and help. A method
    registered *later* (a user's, after ``import zsgjax.train``) has its settings in
    ``method_options``, a mapping with the same names (``{"mine_temperature": 0.5}``),
    checked by the same rules; :meth:`replace` and :meth:`method_setting` take either
    kind by name. The config is checked when it is built: a bad value raises
    ``ValueError`` naming ``TrainConfig.<field>`` and its accepted range.
    """

    env: str = param("simple_direction", kind=str, choices=registered_names)
    method: str = param("cse", kind=str, choices=method_names)
    total_steps: int = param(20_000, kind=int, low=1)
    num_envs: int = param(8, kind=int, low=1)
    seed: int = param(0, kind=int, low=0)
    # constructor options of the environment: make(env, **env_kwargs) (e.g. physical=("gravity",))
    env_kwargs: Mapping[str, Any] = dataclasses.field(default=FrozenMap(), metadata={"base": FrozenMap()})
    # here: one field per setting of the methods registered at import (with_method_settings)
    # settings of methods registered after import: {"<method>_<field>": value}
    method_options: Mapping[str, Any] = dataclasses.field(default=FrozenMap(), metadata={"base": FrozenMap()})
    # loop
    steps_per_iteration: int | None = param(None, kind=int, low=1)
    learning_starts: int | None = _loop_field(1_000, low=0)
    # at most 2**29: prioritized replay's sum tree (flashbax) indexes 2**(ceil(log2(buffer_size)) + 1) nodes in int32
    buffer_size: int | None = _loop_field(100_000, low=1, high=MAX_BUFFER_SIZE)
    batch_size: int | None = _loop_field(256, low=1)
    grad_updates_per_step: int | None = _loop_field(1, low=0)
    # replay sampling: uniform, or prioritized by |TD error| (zsgjax.replay)
    prioritized_replay: bool | None = _loop_field(False, kind=bool)
    priority_exponent: float | None = _loop_field(0.6, kind=float, low=0.0)
    importance_exponent: float | None = _loop_field(0.4, kind=float, low=0.0, high=1.0)
    # both agents
    gamma: float | None = _agent_field(sac="gamma", dqn="gamma")
    hidden_sizes: tuple[int, ...] | None = _agent_field(sac="hidden_sizes", dqn="hidden_sizes")
    normalize_obs: bool | None = _agent_field(sac="normalize_obs", dqn="normalize_obs")
    # SAC
    tau: float | None = _agent_field(sac="tau")
    actor_lr: float | None = _agent_field(sac="actor_lr")
    critic_lr: float | None = _agent_field(sac="critic_lr")
    alpha_lr: float | None = _agent_field(sac="alpha_lr")
    init_alpha: float | None = _agent_field(sac="init_alpha")
    action_scale: float | None = _agent_field(sac="action_scale")
    flat_optimizer: bool | None = _agent_field(sac="flat_optimizer")
    # DQN
    dqn_lr: float | None = _agent_field(dqn="lr")
    dqn_max_grad_norm: float | None = _agent_field(dqn="max_grad_norm")
    target_update_period: int | None = _agent_field(dqn="target_update_period")
    epsilon_start: float | None = _agent_field(dqn="epsilon_start")
    epsilon_end: float | None = _agent_field(dqn="epsilon_end")
    epsilon_decay_steps: int | None = _agent_field(dqn="epsilon_decay_steps")
    dueling: bool | None = _agent_field(dqn="dueling")
    dqn_activation: str | None = _agent_field(dqn="activation")
    dqn_head_hidden_size: int | None = _agent_field(dqn="head_hidden_size")
    double: bool | None = _agent_field(dqn="double")

    def __post_init__(self):
        for f in dataclasses.fields(self):  # lists (from JSON or argparse) become tuples: the config stays hashable
            if isinstance(value := getattr(self, f.name), list):
                object.__setattr__(self, f.name, tuple(value))
        for name in ("env_kwargs", "method_options"):
            value = getattr(self, name)
            if isinstance(value, Mapping) and not isinstance(value, FrozenMap):
                try:  # a plain dict (from code or JSON): frozen; anything unfreezable is reported by validate()
                    object.__setattr__(self, name, freeze(value))
                except ValueError:
                    pass
        self.validate()

    # ------------------------------------------------------------ method settings
    def method_setting(self, option: str) -> Any:
        """The value of method setting ``option`` (``"cse_epsilon"``): its field, else its
        ``method_options`` entry, else its default. ``ValueError`` for an unknown name."""
        if option in _METHOD_FIELDS:
            return getattr(self, option)
        setting = _late_setting(option, "TrainConfig.method_setting")
        return self.method_options.get(option, setting.default)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes``: fields, or settings of methods registered after import
        (stored in ``method_options``), by name. ``ValueError`` naming an unknown one."""
        fields = {f.name for f in dataclasses.fields(self)}
        late = {k: v for k, v in changes.items() if k not in fields}
        for name in late:
            _late_setting(name, "TrainConfig.replace")
        if late:
            changes = {k: v for k, v in changes.items() if k in fields}
            changes["method_options"] = {**changes.get("method_options", self.method_options), **late}
        return dataclasses.replace(self, **changes)

    def record(self) -> dict[str, Any]:
        """The config as plain data (``dataclasses.asdict``) for ``run.json`` and checkpoints;
        ``method_options`` only when it holds something, so a config without settings
        of late-registered methods records what zsgjax recorded before they existed, and
        settings marked ``RECORDED_WHEN_SET`` only when they differ from their default."""
        data = dataclasses.asdict(self)
        if not data["method_options"]:
            del data["method_options"]
        for option, setting in registered_settings().items():  # settings added after runs were recorded
            if setting.recorded_when_set and data.get(option, setting.default) == setting.default:
                data.pop(option, None)
        return data

    def make_env(self) -> ContextualEnv:
        """The environment of this config: ``make(env, **env_kwargs)``.

        ``ValueError`` naming ``TrainConfig.env_kwargs`` when the constructor rejects
        an option (an unknown name is listed with the accepted ones).
        """
        try:
            return make_env(self.env, **self.env_kwargs)
        except (ValueError, TypeError) as e:
            if not self.env_kwargs or not isinstance(self.env_kwargs, Mapping):
                raise
            raise ValueError(f"TrainConfig.env_kwargs {dict(self.env_kwargs)!r} of env '{self.env}': {e}") from None

    def resolve(self, env: ContextualEnv | None = None) -> "TrainConfig":
        """A copy with every ``None`` replaced by its preset (see the class docstring).

        ``env``: the environment instance (its action type picks the agent whose
        defaults apply); default ``make(self.env)``.
        """
        env = self.make_env() if env is None else env
        kind = agent_kind(env)
        preset = env_preset(self.env)
        updates: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if getattr(self, f.name) is not None or f.name == "steps_per_iteration":
                continue
            meta = field_meta(TrainConfig, f.name)
            setting = meta.get(_SETTING)
            if setting is not None and setting.env_default is not None:  # e.g. DR's box: the context space
                updates[f.name] = setting.env_default(env)
            elif f.name in preset:
                updates[f.name] = preset[f.name]
            elif "agent" in meta:
                targets = meta["agent"]
                k = kind if kind in targets else next(iter(targets))
                updates[f.name] = default_of(AGENT_CONFIGS[k], targets[k])
            else:
                updates[f.name] = meta["base"]
        if self.steps_per_iteration is None:
            n = self.num_envs
            updates["steps_per_iteration"] = max(n, (min(self.total_steps, 1000) // n) * n)
        late = {}  # the chosen method's settings that are not fields: recorded at the value used
        for s in method_class(self.method).settings():
            if s.option not in _METHOD_FIELDS:
                value = self.method_options.get(s.option, s.default)
                late[s.option] = s.env_default(env) if value is None and s.env_default is not None else value
        if late:
            updates["method_options"] = {**self.method_options, **late}
        return dataclasses.replace(self, **updates)

    def validate(self) -> "TrainConfig":
        """Raise ``ValueError`` naming the first bad field and its accepted range; returns ``self``.

        Runs when the config is built; call it again only after bypassing the
        constructor."""
        validate(self)
        self._validate_method_options()
        if not isinstance(self.env_kwargs, Mapping):
            raise ValueError(f"TrainConfig.env_kwargs must be a mapping of environment constructor options "
                             f"(name -> value), got {self.env_kwargs!r}")
        freeze(self.env_kwargs, "TrainConfig.env_kwargs")  # ValueError naming the bad entry
        if self.steps_per_iteration is not None and self.steps_per_iteration % self.num_envs:
            raise ValueError(
                f"TrainConfig.steps_per_iteration must be a positive multiple of num_envs={self.num_envs}, "
                f"got {self.steps_per_iteration}"
            )
        if self.batch_size is not None and self.buffer_size is not None and self.batch_size > self.buffer_size:
            raise ValueError(
                f"TrainConfig.batch_size must be in [1, buffer_size={self.buffer_size}], got {self.batch_size}"
            )
        if self.buffer_size is not None and self.buffer_size < self.num_envs:
            raise ValueError(f"TrainConfig.buffer_size must be >= num_envs={self.num_envs}, got {self.buffer_size}")
        return self

    def _validate_method_options(self) -> None:
        if not isinstance(self.method_options, Mapping):
            raise ValueError(f"TrainConfig.method_options must be a mapping of settings of methods registered after "
                             f"zsgjax.train was imported (name -> value), got {self.method_options!r}")
        for option, value in self.method_options.items():
            setting = _late_setting(option, "TrainConfig.method_options")
            setting.check.require(f"TrainConfig.method_options[{option!r}]", value)

    @property
    def is_resolved(self) -> bool:
        return all(getattr(self, f.name) is not None for f in dataclasses.fields(self))


_METHOD_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig) if _SETTING in f.metadata)
"""The method settings that are ``TrainConfig`` fields (the methods registered at import)."""


def _late_setting(option: str, where: str) -> Setting:
    """The setting ``option`` of a method registered after import; ``ValueError`` otherwise."""
    settings = registered_settings()
    if option in TrainConfig.__dataclass_fields__:
        raise ValueError(f"{where}: '{option}' is a TrainConfig field; give it as TrainConfig({option}=...)")
    if option not in settings:
        late = [o for o in settings if o not in _METHOD_FIELDS]
        known = ", ".join(late) if late else "none (no method was registered after zsgjax.train was imported)"
        raise ValueError(f"{where}: '{option}' is neither a TrainConfig field nor a setting of a registered method; "
                         f"settings of methods registered after import: {known}")
    return settings[option]


def base_value(name: str, kind: str = "sac") -> Any:
    """The value a ``None`` field ``name`` takes when no environment preset sets it."""
    meta = field_meta(TrainConfig, name)
    if "agent" in meta:
        targets = meta["agent"]
        k = kind if kind in targets else next(iter(targets))
        return default_of(AGENT_CONFIGS[k], targets[k])
    return meta.get("base")


@struct.dataclass
class TrainState:
    """The whole training state of one seed (a pytree; vmap adds a leading seed axis).

    rng: PRNG key; env_steps: ``()`` int32 transitions collected so far (all envs);
    iteration: ``()`` int32 iterations done; agent: the agent's state (params,
    optimiser states, observation statistics); replay: the flashbax buffer state;
    env: the batched brax ``State`` of the ``num_envs`` environments.
    """

    rng: jax.Array
    env_steps: jax.Array
    iteration: jax.Array
    agent: Any
    replay: Any
    env: State


@dataclasses.dataclass(frozen=True, eq=False)
class Trainer:
    """A static training program for one resolved :class:`TrainConfig`.

    Attributes: ``config`` (resolved), ``env``, ``method`` (a
    :class:`~zsgjax.methods.Method`), ``agent`` (:class:`SAC` or :class:`DQN`), ``replay``, ``num_iterations``, ``steps_per_iteration``, and
    ``mesh``: an optional ``(seeds, envs)`` device mesh (see
    :mod:`zsgjax.sharding`) over whose ``envs`` axis the parallel environments and
    every replay batch are split (data parallelism; ``None``: one device).
    """

    config: TrainConfig
    env: ContextualEnv
    method: Method
    agent: Agent
    replay: Replay
    num_iterations: int
    steps_per_iteration: int
    mesh: Any = None

    # ------------------------------------------------------------- pieces
    @property
    def rounds_per_iteration(self) -> int:
        return self.steps_per_iteration // self.config.num_envs

    @property
    def sampler(self) -> rollout.ContextSampler:
        return self.method.context_sampler(self.env.context_space)

    def _step(self, env_state: State, action: jax.Array, rng: jax.Array):
        return rollout.step(self.env, env_state, action, rng, self.sampler, self.method.collect)

    @staticmethod
    def _item(out: rollout.StepOutput) -> ReplayItem:
        return ReplayItem(transition=out.transition, extras=out.extras, valid=out.finite)

    # --------------------------------------------------------------- init
    def init(self, rng: jax.Array) -> TrainState:
        """Fresh agent, empty replay, ``num_envs`` reset environments. Pure."""
        k_state, k_agent, k_env = jax.random.split(rng, 3)
        c = self.config
        env_state = sharding.constrain_batch(rollout.reset(self.env, k_env, c.num_envs, self.sampler), self.mesh)

        def one_item(key):
            action = self.agent.random_action(key, c.num_envs)
            _, out = self._step(env_state, action, key)
            return self._item(out)

        shapes = jax.eval_shape(one_item, k_state)
        example = jax.tree.map(lambda s: jnp.zeros(s.shape[1:], s.dtype), shapes)
        state = TrainState(
            rng=k_state,
            env_steps=jnp.zeros((), jnp.int32),
            iteration=jnp.zeros((), jnp.int32),
            agent=self.agent.init(k_agent),
            replay=self.replay.init(example),
            env=env_state,
        )
        # One buffer per leaf (targets start as copies of the online params), so the
        # state can be donated: jax.jit(trainer.run, static_argnums=1, donate_argnums=0).
        return jax.tree.map(lambda x: jnp.array(x, copy=True), state)

    # ------------------------------------------------------------ batches
    def training_batch(self, items: ReplayItem, rng: jax.Array) -> tuple[Transition, jax.Array, jax.Array]:
        """The transitions a gradient update uses, from a replay sample (leading ``N``).

        Returns ``(batch, weight (N,), dropped ())`` from the method (CSE: the first
        ``round(cse_ratio N)`` samples enhanced; weight 0 for enhanced samples with
        non-finite gradients, whose number is ``dropped``).
        """
        return self.method.training_batch(self.env, items, rng)

    # ------------------------------------------------------------ updates
    def _updates(self, agent_state, replay_state, rng):
        """``grad_updates_per_step`` (G) updates; returns the state and summed metrics.

        Uniform replay: the G batches are drawn in one gather and turned into training
        batches (e.g. CSE-enhanced) in one vmapped pass before the G updates run, so a
        round holds one gather and one enhancement whatever G is. Prioritized replay:
        each update samples after the previous one has set its priorities.
        """
        g = self.config.grad_updates_per_step
        keys = jax.vmap(lambda k: jax.random.split(k, 3))(jax.random.split(rng, g))  # (G, 3) keys
        k_sample, k_enh, k_upd = keys[:, 0], keys[:, 1], keys[:, 2]

        def prepare(items, key):
            return self.training_batch(sharding.constrain_batch(items, self.mesh), key)

        def update(agent_state, batch, weight, key):
            agent_state, metrics = self.agent.update(agent_state, batch, weight, key)
            metrics = dict(metrics)
            return agent_state, metrics.pop(TD_ERROR), metrics

        if not self.replay.prioritized and g > 0:
            sample = self.replay.sample_batches(replay_state, k_sample)
            batches, weights, invalid = jax.vmap(prepare)(sample.items, k_enh)

            def one(agent_state, xs):
                batch, weight, invalid, key = xs
                agent_state, _, metrics = update(agent_state, batch, weight, key)
                return agent_state, {**metrics, "cse_invalid": invalid}

            agent_state, metrics = jax.lax.scan(one, agent_state, (batches, weights, invalid, k_upd))
            return agent_state, replay_state, jax.tree.map(lambda m: m.sum(0), metrics)

        def one_prioritized(carry, xs):
            agent_state, replay_state = carry
            ks, ke, ku = xs
            sample = self.replay.sample_batch(replay_state, ks)
            batch, weight, invalid = prepare(sample.items, ke)
            agent_state, td_error, metrics = update(agent_state, batch, weight * sample.weight, ku)
            replay_state = self.replay.set_priorities(replay_state, sample.indices, td_error)
            return (agent_state, replay_state), {**metrics, "cse_invalid": invalid}

        (agent_state, replay_state), metrics = jax.lax.scan(
            one_prioritized, (agent_state, replay_state), (k_sample, k_enh, k_upd))
        return agent_state, replay_state, jax.tree.map(lambda m: m.sum(0), metrics)

    def _update_metric_shapes(self, agent_state, replay_state, rng):
        return jax.eval_shape(self._updates, agent_state, replay_state, rng)[2]

    # ------------------------------------------------------------- rounds
    def _round(self, state: TrainState, _) -> tuple[TrainState, dict]:
        c = self.config
        rng, k_rand, k_act, k_step, k_upd = jax.random.split(state.rng, 5)
        obs = state.env.obs
        agent_state = self.agent.observe(state.agent, obs)
        explore = self.agent.explore(agent_state, obs, k_act, state.env_steps)
        random = self.agent.random_action(k_rand, c.num_envs)
        action = jnp.where(state.env_steps < c.learning_starts, random, explore)
        env_state, out = self._step(state.env, action, k_step)
        env_state = sharding.constrain_batch(env_state, self.mesh)
        replay_state = self.replay.add(state.replay, self._item(out))
        env_steps = state.env_steps + c.num_envs

        learn = (env_steps >= c.learning_starts) & (c.grad_updates_per_step > 0)
        shapes = self._update_metric_shapes(agent_state, replay_state, k_upd)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        agent_state, replay_state, upd_metrics = jax.lax.cond(
            learn,
            self._updates,
            lambda a, r, k: (a, r, zeros),
            agent_state,
            replay_state,
            k_upd,
        )
        ended = out.episode_end
        metrics = {
            **upd_metrics,
            "return_sum": jnp.sum(jnp.where(ended, out.episode_return, 0.0)),
            "episodes": ended.sum().astype(jnp.int32),
            "nonfinite_resets": (~out.finite).sum().astype(jnp.int32),
            "updates": jnp.where(learn, c.grad_updates_per_step, 0).astype(jnp.int32),
        }
        new_state = state.replace(rng=rng, env_steps=env_steps, agent=agent_state, replay=replay_state, env=env_state)
        return new_state, metrics

    def _iteration(self, state: TrainState, _) -> tuple[TrainState, dict]:
        state, rounds = jax.lax.scan(self._round, state, None, length=self.rounds_per_iteration)
        totals = jax.tree.map(lambda m: m.sum(0), rounds)
        episodes = totals.pop("episodes")
        updates = totals.pop("updates")
        return_sum = totals.pop("return_sum")
        invalid = totals.pop("cse_invalid")
        nonfinite = totals.pop("nonfinite_resets")
        denom = jnp.maximum(updates, 1).astype(jnp.float32)
        metrics = {k: v / denom for k, v in totals.items()}
        metrics.update(
            env_steps=state.env_steps,
            episode_return=return_sum / jnp.maximum(episodes, 1).astype(jnp.float32),
            episodes=episodes,
            updates=updates,
            cse_invalid=invalid,
            nonfinite_resets=nonfinite,
            **self.agent.schedule_metrics(state.agent, state.env_steps),
        )
        return state.replace(iteration=state.iteration + 1), metrics

    # ---------------------------------------------------------------- API
    def run(self, state: TrainState, num_iterations: int) -> tuple[TrainState, dict[str, jax.Array]]:
        """``num_iterations`` iterations (static) from ``state``. Pure and jittable.

        Metrics have a leading ``num_iterations`` axis: ``env_steps`` (after the
        iteration), ``episode_return`` (mean undiscounted return of the episodes
        that ended in the iteration, 0 when ``episodes`` is 0), ``episodes``,
        ``updates``, ``cse_invalid`` (dropped enhanced samples), ``nonfinite_resets``
        (steps whose next observation or reward was not finite: the environment
        was reset and the transition gets weight 0), the agent's mean
        losses (SAC: ``critic_loss actor_loss alpha_loss q_mean entropy``; DQN:
        ``q_loss q_mean``) and ``alpha`` (SAC) or ``epsilon`` (DQN). Running
        ``run(run(s, a)[0], b)`` equals ``run(s, a + b)``.
        """
        return jax.lax.scan(self._iteration, state, None, length=int(num_iterations))

    def run_seeds(self, state: TrainState, num_iterations: int) -> tuple[TrainState, dict[str, jax.Array]]:
        """:meth:`run` for a batch of seeds (leading seed axis ``S`` on every leaf).

        All seeds step in lockstep, so their ``env_steps`` and ``iteration`` counters
        are equal; they are passed to ``vmap`` unbatched. A batched counter would turn
        the warm-up/learning switch (a ``lax.cond`` on ``env_steps``) into a
        ``select`` that computes the gradient updates during warm-up too. The
        result equals ``jax.vmap(lambda s: self.run(s, num_iterations))(state)``.
        """
        axes = TrainState(rng=0, env_steps=None, iteration=None, agent=0, replay=0, env=0)
        shared = state.replace(env_steps=state.env_steps[0], iteration=state.iteration[0])
        out, metrics = jax.vmap(
            lambda s: self.run(s, num_iterations), in_axes=(axes,), out_axes=(axes, 0), axis_size=state.env_steps.shape[0]
        )(shared)
        num_seeds = state.env_steps.shape[0]
        return out.replace(
            env_steps=jnp.broadcast_to(out.env_steps, (num_seeds,)),
            iteration=jnp.broadcast_to(out.iteration, (num_seeds,)),
        ), metrics

    def train(self, rng: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        """``run(init(rng), num_iterations)``; ``jax.jit(jax.vmap(trainer.train))(rngs)`` for many seeds."""
        return self.run(self.init(rng), self.num_iterations)

    def policy_params(self, state: TrainState) -> Any:
        """The parameters :meth:`act` needs (observation statistics and policy weights)."""
        return self.agent.policy_params(state.agent)

    def act(self, params: Any, obs: jax.Array, rng: jax.Array | None = None) -> jax.Array:
        """Action for ``obs (..., observation_size)``: deterministic (mean / argmax) when
        ``rng`` is None, else sampled (SAC) or epsilon-greedy at ``epsilon_end`` (DQN)."""
        return self.agent.act(params, obs, rng)


def make_agent(env: ContextualEnv, config: TrainConfig) -> Agent:
    """The SAC (continuous actions) or DQN (``env.discrete``) agent of a resolved config.

    The agent config gets every ``TrainConfig`` field that names one of its fields
    (see :func:`_agent_field`) and is validated.
    """
    kind = agent_kind(env)
    values = {}
    for f in dataclasses.fields(TrainConfig):
        targets = field_meta(TrainConfig, f.name).get("agent", {})
        if kind in targets:
            values[targets[kind]] = getattr(config, f.name)
    agent_config = AGENT_CONFIGS[kind](**values).validate()
    normalizer = ObsNormalizer(env.state_obs_size, env.context_space)
    if kind == "dqn":
        return DQN(obs_size=env.observation_size, num_actions=int(env.num_actions), normalizer=normalizer,
                   config=agent_config)
    return SAC(obs_size=env.observation_size, action_size=env.action_size, normalizer=normalizer, config=agent_config)


def make_train(config: TrainConfig, env: ContextualEnv | None = None, method: Method | None = None) -> Trainer:
    """Resolve ``config`` (checked when it was built) and build its :class:`Trainer`.

    ``env`` overrides ``config.make_env()`` (``make(config.env, **config.env_kwargs)``;
    e.g. an environment instance shared by several trainers, built once from the
    same config, or one a registry name cannot describe); ``method`` overrides
    ``make_method(config)`` (a method instance built by hand; its ``name`` must be
    ``config.method``).
    """
    if not isinstance(config, TrainConfig):
        raise ValueError(f"make_train: `config` must be a TrainConfig, got {type(config).__name__}")
    if env is not None and not isinstance(env, ContextualEnv):
        raise ValueError(f"make_train: `env` must be a zsgjax ContextualEnv, got {type(env).__name__}")
    if method is not None and not isinstance(method, Method):
        raise ValueError(f"make_train: `method` must be a zsgjax.methods.Method, got {type(method).__name__}")
    env = config.make_env() if env is None else env
    config = config.resolve(env)  # a new TrainConfig: its presets are checked as it is built
    if method is None:
        method = make_method(config)
    elif method.name != config.method:
        raise ValueError(f"`method` is a '{method.name}' method but TrainConfig.method is '{config.method}'")
    method.check(config.batch_size)
    method.context_sampler(env.context_space)  # a bad sampling box fails here, not inside the first jit
    replay = Replay(capacity=config.buffer_size, batch_size=config.batch_size, min_size=1,
                    prioritized=config.prioritized_replay, priority_exponent=config.priority_exponent,
                    importance_exponent=config.importance_exponent)
    spi = config.steps_per_iteration
    num_iterations = max(1, math.ceil(config.total_steps / spi))
    if num_iterations * spi > INT32_MAX:  # the step counters are int32
        raise ValueError(
            f"TrainConfig.total_steps={config.total_steps:,} rounded up to whole iterations of {spi:,} steps is "
            f"{num_iterations * spi:,}, more than the int32 step counters hold ({INT32_MAX:,}); "
            f"give at most {INT32_MAX // spi * spi:,}"
        )
    return Trainer(
        config=config,
        env=env,
        method=method,
        agent=make_agent(env, config),
        replay=replay,
        num_iterations=num_iterations,
        steps_per_iteration=spi,
    )
