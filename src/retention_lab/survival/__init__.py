"""Survival analysis of customer tenure: how long customers stay, who leaves faster, and why.

The stage's library (``notebooks/01_survival.ipynb`` calls it):

- descriptive: ``km_table``, ``median_tenure``, ``retention_at``, ``logrank_tests``,
  ``hazard_table``, ``rmst_table``;
- threats: ``cumulative_incidence`` (competing churn reasons), ``problem_episodes``,
  ``fit_problem_cox`` (problem events as time-varying covariates), ``threat_table``;
- regression: ``fit_cox``, ``ph_test``, ``fit_aft``;
- validation: ``validate``, ``brier_scores``, ``calibration_at``, ``compare_to_truth``;
- scores: ``score_active`` (churn risk within the horizon given the tenure survived);
- the whole stage: ``analyse`` -> ``SurvivalSummary`` and ``findings``;
- plots: ``plot_km``, ``plot_hazard``, ``plot_cif``, ``plot_cif_panels``, ``plot_forest``,
  ``plot_calibration``,
  ``plot_truth``.

Time is tenure in months; churn is the event; active customers are censored.
"""

from typing import TYPE_CHECKING

from retention_lab.lazy import attach
from retention_lab.survival.settings import SurvivalSettings

if TYPE_CHECKING:  # loaded on first use (retention_lab.lazy): the settings import cheaply
    from retention_lab.survival.descriptive import (
        hazard_table,
        km_table,
        logrank_tests,
        median_tenure,
        retention_at,
        rmst_table,
    )
    from retention_lab.survival.plots import (
        plot_calibration,
        plot_cif,
        plot_cif_panels,
        plot_forest,
        plot_hazard,
        plot_km,
        plot_truth,
    )
    from retention_lab.survival.regression import (
        AFTComparison,
        CoxResult,
        fit_aft,
        fit_cox,
        fit_problem_cox,
        ph_test,
    )
    from retention_lab.survival.scores import score_active, survival_curves
    from retention_lab.survival.summary import SurvivalSummary, analyse, findings
    from retention_lab.survival.threats import (
        cumulative_incidence,
        events_while_exposed,
        mark_treated,
        problem_episodes,
        reason_table,
        threat_table,
    )
    from retention_lab.survival.validation import (
        Validation,
        brier_scores,
        calibration_at,
        compare_to_truth,
        split_customers,
        validate,
    )

__all__ = [
    "SurvivalSettings",
    "AFTComparison",
    "CoxResult",
    "SurvivalSummary",
    "Validation",
    "analyse",
    "brier_scores",
    "calibration_at",
    "compare_to_truth",
    "cumulative_incidence",
    "events_while_exposed",
    "findings",
    "mark_treated",
    "fit_aft",
    "fit_cox",
    "fit_problem_cox",
    "hazard_table",
    "km_table",
    "logrank_tests",
    "median_tenure",
    "ph_test",
    "plot_calibration",
    "plot_cif",
    "plot_cif_panels",
    "plot_forest",
    "plot_hazard",
    "plot_km",
    "plot_truth",
    "problem_episodes",
    "reason_table",
    "retention_at",
    "rmst_table",
    "score_active",
    "split_customers",
    "survival_curves",
    "threat_table",
    "validate",
]

__getattr__, __dir__ = attach(__name__, __file__)
