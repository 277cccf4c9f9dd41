"""Tabular MDPs: exact solvers, Cliffwalking with a slip context, and tabular CEBE."""

from zsgjax.tabular import cliffwalking
from zsgjax.tabular.cebe import (
    POLICIES,
    cebe_error,
    cebe_errors,
    cebe_q,
    mdp_at,
    optimal_q,
    policy_at,
    taylor_mdp,
    true_q,
)
from zsgjax.tabular.mdp import evaluate_policy, greedy_policy, uniform_policy, value_iteration

__all__ = [
    "POLICIES",
    "cebe_error",
    "cebe_errors",
    "cebe_q",
    "cliffwalking",
    "evaluate_policy",
    "greedy_policy",
    "mdp_at",
    "optimal_q",
    "policy_at",
    "taylor_mdp",
    "true_q",
    "uniform_policy",
    "value_iteration",
]
