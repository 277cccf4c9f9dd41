"""Configs of the neural offline algorithms (each field states its accepted range).

* :class:`CriticConfig` -- the per-environment ensembles of fitted-Q-evaluation critics
  and the pessimism (``beta``, ``pessimism``);
* :class:`ActorConfig` -- the shared deterministic policy (``action_scale * tanh(MLP)``),
  whether it sees the context, the optional behaviour-cloning term;
* :class:`PERMConfig` / :class:`PPPOConfig` -- the training schedules, each holding one
  of the two above.

Every config is a frozen dataclass validated by :func:`zsgjax.configs.validate`
(``ValueError`` naming ``Owner.field``, the range and the value); ``validate()`` of a
nested config validates its parts too. :func:`td3_bc_config` is TD3+BC (Fujimoto & Gu
2021) as a :class:`PERMConfig`.
"""

from __future__ import annotations

import dataclasses

from zsgjax.configs import param, validate

PESSIMISM = ("std", "min")
TARGETS = ("own", "min")
FEATURES = ("mlp", "linear")


@dataclasses.dataclass(frozen=True)
class CriticConfig:
    """Per-environment ensembles of M critics fitted by FQE, with target networks.

    num_critics: ensemble size M; features: ``"mlp"`` (ReLU MLP of ``hidden_sizes``) or
    ``"linear"`` (``Q = w . [obs, action] + b``, for checks against exact values).
    beta: ``Q^- = mean_m Q^m - beta std_m Q^m`` (``pessimism="std"``, std over members
    with ddof 0) or ``Q^- = min_m Q^m`` (``pessimism="min"``, beta unused).
    target: each member bootstraps from its own target network (``"own"``) or all from
    the minimum over the ensemble's targets (``"min"``: TD3's clipped double Q).
    policy_noise / noise_clip: TD3's target policy smoothing (Gaussian noise on the
    next action, in units of the action scale, clipped; 0 disables it).
    """

    num_critics: int = param(4, kind=int, low=1)
    hidden_sizes: tuple[int, ...] = param((64, 64), kind=tuple, low=1)
    features: str = param("mlp", kind=str, choices=FEATURES)
    gamma: float = param(0.9, low=0.0, high=1.0, high_open=True)
    tau: float = param(0.005, low=0.0, high=1.0, low_open=True)
    learning_rate: float = param(1e-3, low=0.0, low_open=True)
    batch_size: int = param(128, kind=int, low=1)
    beta: float = param(1.0, low=0.0)
    pessimism: str = param("std", kind=str, choices=PESSIMISM)
    target: str = param("own", kind=str, choices=TARGETS)
    policy_noise: float = param(0.0, low=0.0)
    noise_clip: float = param(0.5, low=0.0)

    def validate(self) -> "CriticConfig":
        return validate(self)


@dataclasses.dataclass(frozen=True)
class ActorConfig:
    """The one shared deterministic policy ``a = action_scale * tanh(MLP(input))``.

    observe_context: the input is ``[obs, context]`` instead of ``obs`` (off by default:
    at test time the environment is unknown). bc_alpha: ``None`` for no behaviour
    cloning, else TD3+BC's term: the actor loss is
    ``-(bc_alpha / mean|Q^-|) Q^- + mean (pi(s) - a)^2``.
    """

    hidden_sizes: tuple[int, ...] = param((64, 64), kind=tuple, low=1)
    learning_rate: float = param(1e-3, low=0.0, low_open=True)
    batch_size: int = param(128, kind=int, low=1)
    action_scale: float = param(1.0, low=0.0, low_open=True)
    observe_context: bool = param(False, kind=bool)
    bc_alpha: float | None = param(None, low=0.0, low_open=True)

    def validate(self) -> "ActorConfig":
        return validate(self)


@dataclasses.dataclass(frozen=True)
class PERMConfig:
    """PERM: ``iterations`` rounds of ``critic_steps`` FQE updates of all n x M critics,
    then one actor step on ``(1/n) sum_i E_{s ~ D_i} Q_i^-(s, pi(s))``, in one ``lax.scan``."""

    critic: CriticConfig = CriticConfig()
    actor: ActorConfig = ActorConfig()
    iterations: int = param(2000, kind=int, low=1)
    critic_steps: int = param(1, kind=int, low=1)

    def validate(self) -> "PERMConfig":
        validate(self)
        _check_part(self, "critic", CriticConfig)
        _check_part(self, "actor", ActorConfig)
        return self


@dataclasses.dataclass(frozen=True)
class PPPOConfig:
    """PPPO: for k = 1..n, ``eval_steps`` FQE updates of M fresh critics for pi_k on
    D_k, then ``improve_steps`` actor steps on
    ``E_{s ~ D_k}[Q_k^-(s, pi(s))] - (1 / step_size) E_{s ~ D_k} KL(pi(.|s) || pi_k(.|s))``,
    the KL of the fixed-std Gaussians ``N(m(s), policy_std^2)`` in pre-tanh space,
    ``|m(s) - m_k(s)|^2 / (2 policy_std^2)``. ``passes``: how many times the sequence
    of environments is run (1: the paper's single pass; P: T = P n mirror-descent steps,
    environment ``k mod n`` at step k)."""

    critic: CriticConfig = CriticConfig()
    actor: ActorConfig = ActorConfig()
    eval_steps: int = param(500, kind=int, low=1)
    improve_steps: int = param(100, kind=int, low=1)
    step_size: float = param(1.0, low=0.0, low_open=True)
    policy_std: float = param(0.3, low=0.0, low_open=True)
    passes: int = param(1, kind=int, low=1)

    def validate(self) -> "PPPOConfig":
        validate(self)
        _check_part(self, "critic", CriticConfig)
        _check_part(self, "actor", ActorConfig)
        return self


def _check_part(config, name: str, cls: type) -> None:
    part = getattr(config, name)
    if not isinstance(part, cls):
        raise ValueError(f"{type(config).__name__}.{name} must be a {cls.__name__}, got {type(part).__name__}")
    part.validate()


def td3_bc_config(base: PERMConfig = PERMConfig(), bc_alpha: float = 2.5) -> PERMConfig:
    """TD3+BC (Fujimoto & Gu 2021) as a :class:`PERMConfig` (run it on merged data).

    Twin critics with the clipped double-Q target, target policy smoothing (noise 0.2,
    clip 0.5), two critic steps per actor step, the BC term with ``alpha = bc_alpha``;
    the actor maximises the ensemble minimum (TD3 uses its first critic). Network sizes,
    learning rates and the schedule are ``base``'s.
    """
    critic = dataclasses.replace(base.critic, num_critics=2, target="min", pessimism="min", beta=0.0,
                                 policy_noise=0.2, noise_clip=0.5)
    actor = dataclasses.replace(base.actor, bc_alpha=bc_alpha)
    return dataclasses.replace(base, critic=critic, actor=actor, critic_steps=2).validate()
