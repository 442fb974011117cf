"""Run-over-run monitoring: which estimates went stale since the previous scheduled runs.

The stage's library (``notebooks/05_monitoring.ipynb`` calls it):

- profile: ``input_profile`` (key feature distributions, recent problem rates and
  churn-reason mix, measured on the run's tables and stored for the next run);
- the runs it compares come from the stage context: ``stage.this_run`` (the run
  in progress, from its folder) and ``stage.earlier_runs`` (from MLflow);
- quantities: ``run_quantities`` turns a run's metrics and tables into one long table
  of ``Quantity`` rows;
- compare: ``compare_quantities``, ``compare_distributions``, ``psi``, ``holm``,
  ``flag_changes`` (the flag rule), ``trends``, ``rank_flags``;
- the whole stage: ``read_inputs`` -> ``MonitorInputs``, ``analyse`` ->
  ``MonitorSummary`` and ``findings``.
"""

from typing import TYPE_CHECKING

from retention_lab.lazy import attach
from retention_lab.monitor.settings import MonitorSettings

if TYPE_CHECKING:  # loaded on first use (retention_lab.lazy): the settings import cheaply
    from retention_lab.monitor.compare import (
        compare_distributions,
        compare_quantities,
        flag_changes,
        holm,
        psi,
        rank_flags,
        trends,
    )
    from retention_lab.monitor.profile import input_profile
    from retention_lab.monitor.quantities import (
        QUANTITY_COLUMNS,
        Quantity,
        RunOutputs,
        effect_quantities,
        hazard_effect_quantities,
        profile_quantities,
        run_quantities,
        survival_quantities,
        value_quantities,
    )
    from retention_lab.monitor.summary import (
        HEADLINE_FAMILIES,
        MonitorInputs,
        MonitorSummary,
        analyse,
        describe,
        findings,
        read_inputs,
    )

__all__ = [
    "MonitorSettings",
    "HEADLINE_FAMILIES",
    "QUANTITY_COLUMNS",
    "Quantity",
    "MonitorInputs",
    "MonitorSummary",
    "RunOutputs",
    "analyse",
    "compare_distributions",
    "compare_quantities",
    "describe",
    "effect_quantities",
    "findings",
    "flag_changes",
    "hazard_effect_quantities",
    "holm",
    "input_profile",
    "profile_quantities",
    "psi",
    "rank_flags",
    "read_inputs",
    "run_quantities",
    "survival_quantities",
    "trends",
    "value_quantities",
]

__getattr__, __dir__ = attach(__name__, __file__)
