"""Offline zero-shot generalization on contextual linear MDPs (arXiv 2503.07988).

Modules: ``mdp`` (families and exact DP), ``dataset`` (per-environment data,
save/load; :class:`LinearData` = features + data, the algorithms' ``data``), ``pevi``
(pessimistic evaluation, vmapped over environments), ``perm``, ``pppo``, ``baselines``
(merged-data PEVI, beta = 0), ``policies``.

PERM and PPPO have the call shape of the neural ones in :mod:`zsgjax.offline.control`:
``make_perm(config) -> train(key, data)`` (jittable, vmappable over seeds) and
``run_perm(key, data, config)`` (checked), with results sharing their fields.
"""

from zsgjax.offline.linear import baselines, dataset, mdp, pevi, perm, policies, pppo
from zsgjax.offline.linear.baselines import make_no_pessimism, merged_pevi
from zsgjax.offline.linear.dataset import LinearData, OfflineDataset
from zsgjax.offline.linear.perm import PERMConfig, PERMResult, make_perm, perm_enumerate, run_perm
from zsgjax.offline.linear.pppo import PPPOConfig, PPPOResult, make_pppo, mixture_zero_shot_value, run_pppo

__all__ = [
    "LinearData", "OfflineDataset", "PERMConfig", "PERMResult", "PPPOConfig", "PPPOResult", "baselines", "dataset",
    "make_no_pessimism", "make_perm", "make_pppo", "mdp", "merged_pevi", "mixture_zero_shot_value", "perm",
    "perm_enumerate", "pevi", "policies", "pppo", "run_perm", "run_pppo",
]
