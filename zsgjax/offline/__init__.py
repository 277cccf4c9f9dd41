"""Offline zero-shot generalization (arXiv 2503.07988), laid out as the online side.

* :mod:`zsgjax.offline.linear` -- contextual linear MDPs: exact DP, PEVI, PERM, PPPO;
* :mod:`zsgjax.offline.control` -- the control environments: per-environment datasets,
  neural critic ensembles, PERM, PPPO, baselines, Minari interchange;
* :mod:`zsgjax.offline.runner` -- the run driver of the offline experiments
  (checkpointed, resumable training of every method's seeds).

PERM and PPPO take one call shape in both families: ``make_perm(config)`` returns a
jittable ``train(key, data)`` (vmap it over seeds), ``run_perm(key, data, config)``
checks the arguments and runs it; likewise ``make_pppo`` / ``run_pppo``.

The linear modules are also reachable here under their former names
(``from zsgjax.offline import baselines, dataset, linear_mdp, perm, pevi, pppo, policies``).
"""

from zsgjax.offline.linear import baselines, dataset, perm, pevi, policies, pppo
from zsgjax.offline.linear import mdp as linear_mdp

__all__ = ["baselines", "dataset", "linear_mdp", "perm", "pevi", "policies", "pppo"]
