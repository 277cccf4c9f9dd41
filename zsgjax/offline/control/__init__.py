"""Offline zero-shot generalization on continuous-control environments (arXiv 2503.07988).

Data (per environment, leaves ``(n, N, ...)``): ``transitions`` (:class:`Transitions`),
``behaviour`` (behaviour policies, D4RL-style quality presets), ``collect`` (one jitted
program over n contexts), ``storage`` (checked, atomic files), ``minari_io``.

Algorithms (pure ``make_*(config) -> train(key, data)``, jittable, vmappable over seeds):
``critics`` (n x M FQE critics in one vmapped update, pessimistic values), ``perm``,
``pppo``, ``baselines`` (merged data, beta = 0, TD3+BC), ``configs``, ``policy``,
``evaluate`` (zero-shot returns on held-out contexts), ``flip_gate`` (the family on which
the merged data's optimum is poor). See docs/offline_control.md and docs/offline_control_data.md.
"""

from zsgjax.offline.control.baselines import make_merged, make_no_pessimism, make_td3_bc
from zsgjax.offline.control.configs import ActorConfig, CriticConfig, PERMConfig, PPPOConfig, td3_bc_config
from zsgjax.offline.control.critics import (CriticState, EnsembleFQE, check_beta, make_critics, make_fqe,
                                            pessimistic_value, shard_envs)
from zsgjax.offline.control.evaluate import held_out_grid, make_zero_shot, zero_shot
from zsgjax.offline.control.flip_gate import FlipGate, sample_contexts
from zsgjax.offline.control.perm import PERMResult, make_perm, policy_of, run_perm
from zsgjax.offline.control.policy import Policy, make_policy
from zsgjax.offline.control.pppo import PPPOResult, make_pppo, run_pppo
from zsgjax.offline.control.transitions import DatasetInfo, Transitions, check_transitions
from zsgjax.offline.control.behaviour import (QUALITY_LEVELS, Behaviour, env_action_scale, load_sac_policy,
                                              quality_preset, sac_policy)
from zsgjax.offline.control.collect import collect as collect_data, uniform_contexts
from zsgjax.offline.control.minari_io import from_minari, to_minari
from zsgjax.offline.control import collect, minari_io, storage  # noqa: E402  (modules: collect.collect, storage.save/load)

__all__ = [
    "QUALITY_LEVELS", "env_action_scale", "load_sac_policy", "collect_data", "from_minari", "to_minari", "minari_io",
    "Behaviour", "DatasetInfo", "collect", "quality_preset", "sac_policy", "storage", "uniform_contexts",
    "ActorConfig", "CriticConfig", "CriticState", "EnsembleFQE", "FlipGate", "PERMConfig", "PERMResult", "PPPOConfig",
    "PPPOResult", "Policy", "Transitions", "check_beta", "check_transitions", "held_out_grid", "make_critics",
    "make_fqe", "make_merged", "make_no_pessimism", "make_perm", "make_policy", "make_pppo", "make_td3_bc",
    "make_zero_shot", "pessimistic_value", "policy_of", "run_perm", "run_pppo", "sample_contexts", "shard_envs",
    "td3_bc_config", "zero_shot",
]
