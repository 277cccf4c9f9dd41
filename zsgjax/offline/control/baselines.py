"""Baselines of the neural offline experiments (all jittable ``train(key, data)`` functions).

* :func:`make_merged`: PERM's algorithm on ``data.merge()`` -- the environment labels
  dropped, one ensemble fitted to the pooled data, i.e. the "average MDP" whose optimal
  policy can be poor in every environment (docs/offline_control.md derives an example);
* :func:`make_no_pessimism`: PERM with ``beta = 0`` (mean of the ensemble);
* :func:`make_td3_bc`: TD3+BC (Fujimoto & Gu 2021, :func:`~zsgjax.offline.control.configs.td3_bc_config`)
  on the merged data, the established offline algorithm users know.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax

from zsgjax.offline.control.configs import PERMConfig, td3_bc_config
from zsgjax.offline.control.perm import PERMResult, make_perm
from zsgjax.offline.control.transitions import Transitions


def make_merged(config: PERMConfig = PERMConfig()) -> Callable[[jax.Array, Transitions], PERMResult]:
    """``train(key, data)``: PERM's algorithm on the merged data (critics ``(1, M, ...)``)."""
    train = make_perm(config)
    return lambda key, data: train(key, data.merge())


def make_no_pessimism(config: PERMConfig = PERMConfig()) -> Callable[[jax.Array, Transitions], PERMResult]:
    """``train(key, data)``: PERM with ``beta = 0`` (per-environment critics, no pessimism)."""
    critic = dataclasses.replace(config.critic, beta=0.0, pessimism="std")
    return make_perm(dataclasses.replace(config, critic=critic))


def make_td3_bc(config: PERMConfig = PERMConfig(), bc_alpha: float = 2.5) -> Callable[[jax.Array, Transitions], PERMResult]:
    """``train(key, data)``: TD3+BC on the merged data (networks and schedule from ``config``)."""
    return make_merged(td3_bc_config(config, bc_alpha))
