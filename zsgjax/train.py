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
   updates, each on a fresh replay batch (CSE-enhanced for ``method='cse'``).

Methods: ``vanilla`` and ``cse`` collect at the default context only; ``ldr``
draws each episode's context as ``default + ldr_scale N(0, I)`` (clipped), ``dr``
uniformly over the context box. CSE replaces the first ``round(cse_ratio *
batch_size)`` samples of every replay batch (uniform, so any subset is as good)
by their enhanced versions at ``c + delta_c``, ``delta_c = clip(c + eps u) - c``
with ``u`` uniform on the sphere (redrawn at every replay with ``jacobian``
storage, drawn at insertion with ``jvp`` storage); ``cse_mode='exact'``
recomputes the transition at the new context from the stored pre-step state.
Enhanced samples whose gradients are not finite get weight 0 in every loss and
are counted in the metric ``cse_invalid``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from brax.envs.base import State
from flax import struct

from zsgjax import cse, rollout, sharding
from zsgjax.agents.dqn import DQN, DQNConfig
from zsgjax.agents.normalization import ObsNormalizer
from zsgjax.agents.sac import SAC, SACConfig
from zsgjax.envs import make as make_env
from zsgjax.envs import registered_names
from zsgjax.envs.base import ContextualEnv
from zsgjax.replay import Replay, ReplayItem
from zsgjax.types import Transition

METHODS = ("vanilla", "cse", "ldr", "dr")
CSE_MODES = ("first_order", "exact")
CSE_STORAGES = ("jacobian", "jvp")

# Hyper-parameters that ``None`` resolves to: the base row, then the environment's row.
BASE_DEFAULTS: dict[str, Any] = dict(
    batch_size=256,
    buffer_size=100_000,
    learning_starts=1_000,
    grad_updates_per_step=1,
    gamma=0.99,
    tau=0.005,
    hidden_sizes=(256, 256),
    actor_lr=3e-4,
    critic_lr=3e-4,
    alpha_lr=3e-4,
    init_alpha=1.0,
    action_scale=1.0,
    dqn_lr=1e-3,
    target_update_period=500,
    epsilon_start=1.0,
    epsilon_end=0.05,
    exploration_fraction=0.3,
)

# The CSE paper's settings (learning rates actor/critic/alpha, gamma) per environment;
# learning_starts, init_alpha, action_scale and the DQN row are zsgjax's choices.
ENV_DEFAULTS: dict[str, dict[str, Any]] = {
    "simple_direction": dict(gamma=0.9, actor_lr=1e-3, critic_lr=2e-3, alpha_lr=4e-4, learning_starts=500,
                             init_alpha=0.1),
    "pendulum_goal": dict(actor_lr=2e-4, critic_lr=8e-4, alpha_lr=9e-4, action_scale=2.0),
    "cheetah_velocity": dict(actor_lr=2e-4, critic_lr=8e-4, alpha_lr=9e-4, learning_starts=10_000),
    "ant_direction": dict(actor_lr=3e-5, critic_lr=3e-4, alpha_lr=1e-4, learning_starts=10_000),
    "ant_goal": dict(actor_lr=3e-5, critic_lr=3e-4, alpha_lr=1e-4, learning_starts=10_000),
    "cart_goal": dict(dqn_lr=5e-4, target_update_period=250, exploration_fraction=0.2),
}


def env_defaults(env: str) -> dict[str, Any]:
    """The resolved default hyper-parameters of environment ``env``."""
    return {**BASE_DEFAULTS, **ENV_DEFAULTS.get(env, {})}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; ``None`` means the per-environment default
    (:data:`BASE_DEFAULTS` updated by :data:`ENV_DEFAULTS`).

    Steps count environment transitions over all parallel environments together.
    ``grad_updates_per_step`` is the number of gradient updates per batched step of
    the ``num_envs`` environments (so the update-to-data ratio is
    ``grad_updates_per_step / num_envs``). ``steps_per_iteration`` groups steps for
    metrics (one metrics row per iteration); ``None`` gives ``min(total_steps,
    1000)`` rounded down to a multiple of ``num_envs``.
    """

    env: str = "simple_direction"
    method: str = "cse"
    total_steps: int = 20_000
    num_envs: int = 8
    seed: int = 0
    # CSE
    cse_epsilon: float = 0.1
    cse_mode: str = "first_order"
    cse_storage: str = "jacobian"
    cse_ratio: float = 1.0
    # LDR
    ldr_scale: float = 0.1
    # loop
    steps_per_iteration: int | None = None
    learning_starts: int | None = None
    buffer_size: int | None = None
    batch_size: int | None = None
    grad_updates_per_step: int | None = None
    # shared
    gamma: float | None = None
    hidden_sizes: tuple[int, ...] | None = None
    normalize_obs: bool = False
    # SAC
    tau: float | None = None
    actor_lr: float | None = None
    critic_lr: float | None = None
    alpha_lr: float | None = None
    init_alpha: float | None = None
    action_scale: float | None = None
    # DQN
    dqn_lr: float | None = None
    target_update_period: int | None = None
    epsilon_start: float | None = None
    epsilon_end: float | None = None
    exploration_fraction: float | None = None
    dueling: bool = True
    double: bool = True

    def resolve(self) -> "TrainConfig":
        """A copy with every ``None`` replaced by the environment's default."""
        defaults = env_defaults(self.env)
        updates = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        if self.steps_per_iteration is None:
            n = max(self.num_envs, 1)
            updates["steps_per_iteration"] = max(n, (min(self.total_steps, 1000) // n) * n)
        out = dataclasses.replace(self, **updates)
        return dataclasses.replace(out, hidden_sizes=tuple(int(h) for h in out.hidden_sizes))

    def validate(self) -> "TrainConfig":
        """Raise ``ValueError`` naming the first bad field and its accepted range; returns ``self``."""

        def choice(name, allowed):
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")

        def at_least(name, low, integer=True):
            v = getattr(self, name)
            if v is None:
                return
            if integer and (isinstance(v, bool) or not isinstance(v, int)):
                raise ValueError(f"TrainConfig.{name} must be an integer >= {low}; got {v!r}")
            if not v >= low:
                raise ValueError(f"TrainConfig.{name} must be >= {low}; got {v!r}")

        def interval(name, low, high, low_open=False):
            v = getattr(self, name)
            if v is None:
                return
            ok = (low < v if low_open else low <= v) and v <= high
            if not ok:
                bracket = "(" if low_open else "["
                raise ValueError(f"TrainConfig.{name} must be in {bracket}{low}, {high}]; got {v!r}")

        choice("env", tuple(registered_names()))
        choice("method", METHODS)
        choice("cse_mode", CSE_MODES)
        choice("cse_storage", CSE_STORAGES)
        at_least("num_envs", 1)
        at_least("total_steps", 1)
        at_least("seed", 0)
        at_least("steps_per_iteration", 1)
        at_least("learning_starts", 0)
        at_least("buffer_size", 1)
        at_least("batch_size", 1)
        at_least("grad_updates_per_step", 0)
        at_least("target_update_period", 1)
        interval("cse_epsilon", 0.0, float("inf"), low_open=True)
        interval("cse_ratio", 0.0, 1.0)
        interval("ldr_scale", 0.0, float("inf"), low_open=True)
        interval("gamma", 0.0, 1.0)
        interval("tau", 0.0, 1.0, low_open=True)
        for lr in ("actor_lr", "critic_lr", "alpha_lr", "dqn_lr", "init_alpha", "action_scale"):
            interval(lr, 0.0, float("inf"), low_open=True)
        interval("epsilon_start", 0.0, 1.0)
        interval("epsilon_end", 0.0, 1.0)
        interval("exploration_fraction", 0.0, 1.0)
        if self.hidden_sizes is not None and (
            len(self.hidden_sizes) == 0 or any(int(h) < 1 for h in self.hidden_sizes)
        ):
            raise ValueError(f"TrainConfig.hidden_sizes must be a non-empty tuple of positive ints; got {self.hidden_sizes!r}")
        if self.steps_per_iteration is not None and self.steps_per_iteration % self.num_envs:
            raise ValueError(
                f"TrainConfig.steps_per_iteration must be a positive multiple of num_envs={self.num_envs}; "
                f"got {self.steps_per_iteration}"
            )
        if self.batch_size is not None and self.buffer_size is not None and self.batch_size > self.buffer_size:
            raise ValueError(
                f"TrainConfig.batch_size must be in [1, buffer_size={self.buffer_size}]; got {self.batch_size}"
            )
        if self.buffer_size is not None and self.buffer_size < self.num_envs:
            raise ValueError(f"TrainConfig.buffer_size must be >= num_envs={self.num_envs}; got {self.buffer_size}")
        return self


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

    Attributes: ``config`` (resolved), ``env``, ``agent`` (:class:`SAC` or
    :class:`DQN`), ``replay``, ``num_iterations``, ``steps_per_iteration``, and
    ``mesh``: an optional ``(seeds, envs)`` device mesh (see
    :mod:`zsgjax.sharding`) over whose ``envs`` axis the parallel environments and
    every replay batch are split (data parallelism; ``None``: one device).
    """

    config: TrainConfig
    env: ContextualEnv
    agent: Any
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
        kind = {"vanilla": "default", "cse": "default", "ldr": "ldr", "dr": "dr"}[self.config.method]
        return rollout.make_context_sampler(self.env.context_space, kind, ldr_scale=self.config.ldr_scale)

    @property
    def gradient_mode(self) -> str:
        c = self.config
        return c.cse_storage if (c.method == "cse" and c.cse_mode == "first_order") else "none"

    @property
    def stores_env_state(self) -> bool:
        return self.config.method == "cse" and self.config.cse_mode == "exact"

    def _item(self, out: rollout.StepOutput) -> ReplayItem:
        return ReplayItem(
            transition=out.transition,
            gradients=out.gradients if self.gradient_mode != "none" else None,
            env_state=out.env_state if self.stores_env_state else None,
        )

    # --------------------------------------------------------------- init
    def init(self, rng: jax.Array) -> TrainState:
        """Fresh agent, empty replay, ``num_envs`` reset environments. Pure."""
        k_state, k_agent, k_env = jax.random.split(rng, 3)
        c = self.config
        env_state = sharding.constrain_batch(rollout.reset(self.env, k_env, c.num_envs, self.sampler), self.mesh)

        def one_item(key):
            action = self.agent.random_action(key, c.num_envs)
            _, out = rollout.step(self.env, env_state, action, key, self.sampler, self.gradient_mode, c.cse_epsilon)
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

        Returns ``(batch, weight (N,), invalid ())``: for CSE the first
        ``round(cse_ratio N)`` samples are enhanced; ``weight`` is 0 for enhanced
        samples with non-finite gradients, whose number is ``invalid``.
        """
        c = self.config
        transition = items.transition
        n = transition.reward.shape[0]
        ones = jnp.ones((n,), jnp.float32)
        if c.method != "cse":
            return transition, ones, jnp.zeros((), jnp.int32)
        space = self.env.context_space
        keys = jax.random.split(rng, n)
        draw = jax.vmap(lambda k, ctx: cse.draw_context_step(k, ctx, space, c.cse_epsilon))
        if c.cse_mode == "exact":
            delta_c = draw(keys, transition.context)
            enhanced, valid = jax.vmap(lambda s, t, d: cse.enhance_exact(self.env, s, t, d))(
                items.env_state, transition, delta_c
            )
        elif c.cse_storage == "jacobian":
            delta_c = draw(keys, transition.context)
            enhanced, valid = jax.vmap(cse.enhance_with_jacobian)(transition, items.gradients, delta_c)
        else:
            enhanced, valid = jax.vmap(cse.enhance_with_directional)(transition, items.gradients)
        chosen = jnp.arange(n) < round(c.cse_ratio * n)
        batch = jax.tree.map(
            lambda e, o: jnp.where(chosen.reshape((n,) + (1,) * (e.ndim - 1)), e, o), enhanced, transition
        )
        dropped = chosen & ~valid
        return batch, jnp.where(dropped, 0.0, ones), dropped.sum().astype(jnp.int32)

    # ------------------------------------------------------------ updates
    def _updates(self, agent_state, replay_state, rng):
        """``grad_updates_per_step`` updates; returns the state and summed metrics."""

        def one(agent_state, key):
            k_sample, k_enh, k_upd = jax.random.split(key, 3)
            items = self.replay.sample(replay_state, k_sample)
            items = sharding.constrain_batch(items, self.mesh)
            batch, weight, invalid = self.training_batch(items, k_enh)
            agent_state, metrics = self.agent.update(agent_state, batch, weight, k_upd)
            return agent_state, {**metrics, "cse_invalid": invalid}

        keys = jax.random.split(rng, self.config.grad_updates_per_step)
        agent_state, metrics = jax.lax.scan(one, agent_state, keys)
        return agent_state, jax.tree.map(lambda m: m.sum(0), metrics)

    def _update_metric_shapes(self, agent_state, replay_state, rng):
        return jax.eval_shape(self._updates, agent_state, replay_state, rng)[1]

    # ------------------------------------------------------------- rounds
    def _round(self, state: TrainState, _) -> tuple[TrainState, dict]:
        c = self.config
        rng, k_rand, k_act, k_step, k_upd = jax.random.split(state.rng, 5)
        obs = state.env.obs
        agent_state = self.agent.observe(state.agent, obs)
        explore = self.agent.explore(agent_state, obs, k_act, state.env_steps)
        random = self.agent.random_action(k_rand, c.num_envs)
        action = jnp.where(state.env_steps < c.learning_starts, random, explore)
        env_state, out = rollout.step(
            self.env, state.env, action, k_step, self.sampler, self.gradient_mode, c.cse_epsilon
        )
        env_state = sharding.constrain_batch(env_state, self.mesh)
        replay_state = self.replay.add(state.replay, self._item(out))
        env_steps = state.env_steps + c.num_envs

        learn = (env_steps >= c.learning_starts) & (c.grad_updates_per_step > 0)
        shapes = self._update_metric_shapes(agent_state, replay_state, k_upd)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        agent_state, upd_metrics = jax.lax.cond(
            learn,
            self._updates,
            lambda a, r, k: (a, zeros),
            agent_state,
            replay_state,
            k_upd,
        )
        ended = out.episode_end
        metrics = {
            **upd_metrics,
            "return_sum": jnp.sum(jnp.where(ended, out.episode_return, 0.0)),
            "episodes": ended.sum().astype(jnp.int32),
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
        denom = jnp.maximum(updates, 1).astype(jnp.float32)
        metrics = {k: v / denom for k, v in totals.items()}
        metrics.update(
            env_steps=state.env_steps,
            episode_return=return_sum / jnp.maximum(episodes, 1).astype(jnp.float32),
            episodes=episodes,
            updates=updates,
            cse_invalid=invalid,
            **self.agent.schedule_metrics(state.agent, state.env_steps),
        )
        return state.replace(iteration=state.iteration + 1), metrics

    # ---------------------------------------------------------------- API
    def run(self, state: TrainState, num_iterations: int) -> tuple[TrainState, dict[str, jax.Array]]:
        """``num_iterations`` iterations (static) from ``state``. Pure and jittable.

        Metrics have a leading ``num_iterations`` axis: ``env_steps`` (after the
        iteration), ``episode_return`` (mean undiscounted return of the episodes
        that ended in the iteration, 0 when ``episodes`` is 0), ``episodes``,
        ``updates``, ``cse_invalid`` (dropped enhanced samples), the agent's mean
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


def make_agent(env: ContextualEnv, config: TrainConfig):
    """The SAC (continuous actions) or DQN (``env.discrete``) agent of a resolved config."""
    normalizer = ObsNormalizer(env.state_obs_size, env.context_space)
    if env.discrete:
        return DQN(
            obs_size=env.observation_size,
            num_actions=int(env.num_actions),
            normalizer=normalizer,
            config=DQNConfig(
                hidden_sizes=config.hidden_sizes,
                gamma=config.gamma,
                lr=config.dqn_lr,
                dueling=config.dueling,
                double=config.double,
                target_update_period=config.target_update_period,
                epsilon_start=config.epsilon_start,
                epsilon_end=config.epsilon_end,
                epsilon_decay_steps=max(1, int(config.exploration_fraction * config.total_steps)),
                normalize_obs=config.normalize_obs,
            ),
        )
    return SAC(
        obs_size=env.observation_size,
        action_size=env.action_size,
        normalizer=normalizer,
        config=SACConfig(
            hidden_sizes=config.hidden_sizes,
            gamma=config.gamma,
            tau=config.tau,
            actor_lr=config.actor_lr,
            critic_lr=config.critic_lr,
            alpha_lr=config.alpha_lr,
            init_alpha=config.init_alpha,
            action_scale=config.action_scale,
            normalize_obs=config.normalize_obs,
        ),
    )


def make_train(config: TrainConfig, env: ContextualEnv | None = None) -> Trainer:
    """Validate and resolve ``config`` and build its :class:`Trainer`.

    ``env`` overrides ``make(config.env)`` (e.g. an environment built with custom
    constructor arguments).
    """
    config = config.validate().resolve().validate()
    env = make_env(config.env) if env is None else env
    if config.method == "cse" and config.cse_ratio > 0 and round(config.cse_ratio * config.batch_size) == 0:
        raise ValueError(
            f"TrainConfig.cse_ratio * batch_size must round to >= 1 enhanced sample; got "
            f"{config.cse_ratio} * {config.batch_size}"
        )
    replay = Replay(capacity=config.buffer_size, batch_size=config.batch_size, min_size=1)
    spi = config.steps_per_iteration
    return Trainer(
        config=config,
        env=env,
        agent=make_agent(env, config),
        replay=replay,
        num_iterations=max(1, math.ceil(config.total_steps / spi)),
        steps_per_iteration=spi,
    )
