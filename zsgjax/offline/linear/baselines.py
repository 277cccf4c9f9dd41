"""Baselines of the offline zero-shot experiments on linear MDPs.

* :func:`merged_pevi`: PEVI on all episodes pooled with the context labels dropped.
  The pooled data are statistically those of the "average MDP", and its greedy
  pessimistic policy can be poor in every single context (Proposition of arXiv
  2503.07988; see :func:`zsgjax.offline.linear.mdp.two_context_mdp`).
* :func:`make_no_pessimism`: PERM with ``beta = 0`` (plain empirical risk
  minimisation of the ridge-regression values), as
  :func:`zsgjax.offline.control.baselines.make_no_pessimism` for neural critics.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax

from zsgjax.offline.linear.dataset import LinearData
from zsgjax.offline.linear.perm import PERMConfig, PERMResult, check_data, make_perm
from zsgjax.offline.linear.pevi import PEVIResult, pevi


def merged_pevi(data: LinearData, beta: float, lam: float = 1.0) -> PEVIResult:
    """Greedy PEVI on ``data.merge()``; fields without the environment axis (policy ``(H, S, A)``)."""
    check_data(data, beta, lam)
    merged = data.merge()
    result = pevi(merged.phi, merged.dataset, None, beta, lam)
    return jax.tree.map(lambda x: x[0], result)


def make_no_pessimism(config: PERMConfig = PERMConfig()) -> Callable[[jax.Array, LinearData], PERMResult]:
    """``train(key, data)``: PERM with ``beta = 0`` (the other settings from ``config``)."""
    return make_perm(dataclasses.replace(config, beta=0.0))
