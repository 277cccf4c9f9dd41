"""Baselines of the offline zero-shot experiments.

* :func:`merged_pevi`: PEVI on all episodes pooled with the context labels dropped.
  The pooled data are statistically those of the "average MDP", and its greedy
  pessimistic policy can be poor in every single context (Proposition of arXiv
  2503.07988; see :func:`zsgjax.offline.linear_mdp.two_context_mdp`).
* :func:`perm_without_pessimism`: PERM with ``beta = 0`` (plain empirical risk
  minimisation of the ridge-regression values).
"""

from __future__ import annotations

import jax

from zsgjax.offline.dataset import OfflineDataset, merge_environments
from zsgjax.offline.perm import PERMResult, perm_gradient
from zsgjax.offline.pevi import PEVIResult, pevi


def merged_pevi(phi: jax.Array, dataset: OfflineDataset, beta: float, lam: float = 1.0) -> PEVIResult:
    """Greedy PEVI on the merged dataset; fields without the environment axis (policy ``(H, S, A)``)."""
    result = pevi(phi, merge_environments(dataset), None, beta, lam)
    return jax.tree.map(lambda x: x[0], result)


def perm_without_pessimism(key: jax.Array, phi: jax.Array, dataset: OfflineDataset, lam: float = 1.0, **kwargs) -> PERMResult:
    """:func:`zsgjax.offline.perm.perm_gradient` with ``beta = 0`` (other arguments passed on)."""
    return perm_gradient(key, phi, dataset, 0.0, lam, **kwargs)
