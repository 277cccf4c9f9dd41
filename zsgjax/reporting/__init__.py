"""Everything zsgjax writes or summarizes, in one subpackage.

* :mod:`~zsgjax.reporting.files`       -- atomic file writes (text, JSON, PNG)
* :mod:`~zsgjax.reporting.machine`     -- the machine a result was measured on
* :mod:`~zsgjax.reporting.compiles`    -- what JAX compiled or loaded from its compilation cache in a block
* :mod:`~zsgjax.reporting.stats`       -- Student-t intervals, paired differences, log-log slopes
* :mod:`~zsgjax.reporting.tables`      -- generalization tables, CSV and JSON of evaluation results
* :mod:`~zsgjax.reporting.plots`       -- return-vs-context figures
* :mod:`~zsgjax.reporting.metrics_log` -- per-iteration training metrics as CSV and TensorBoard

The submodules are imported where they are used (``from zsgjax.reporting import
tables``); importing the package itself loads none of them, so no module of the
core (which the writers depend on) pulls in matplotlib or the writers.
"""
