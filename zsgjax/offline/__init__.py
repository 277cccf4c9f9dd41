"""Offline zero-shot generalization on contextual linear MDPs (arXiv 2503.07988).

Modules: ``linear_mdp`` (families and exact DP), ``dataset`` (per-environment data,
save/load), ``pevi`` (pessimistic evaluation, vmapped over environments), ``perm``,
``pppo``, ``baselines`` (merged-data PEVI, beta = 0), ``policies``, ``reporting``.
"""
