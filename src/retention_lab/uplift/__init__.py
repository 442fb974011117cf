"""Uplift modelling of retention instruments (stage notebook ``02_uplift``).

Which instrument keeps which customers, against which problem, in which
segment, and where it is wasted money. Every function works on a plain frame
of cases with column-name arguments (:class:`UpliftInput`); :func:`case_table`
builds it from the canonical tables and :func:`from_frame` from a campaign
export (one row per customer: treatment, outcome, features).

- ``cases``: the input (adapter, campaign export, active customers to score);
- ``design``: arm sizes, covariate balance, cross-fitted propensity, trimming;
- ``effects``: difference in means, cross-fitted AIPW, the effect matrix;
- ``observational``: IPW and standardisation beside AIPW, overlap, weights, balance, E-values;
- ``learners``: causalml S/T/X/DR-learners bagged over folds (``UpliftModel``);
- ``evaluation``: Qini/uplift curves, AUUC, calibration, the learner choice, truth checks;
- ``summary``: ``analyse`` -> ``UpliftSummary``, ``findings``;
- ``scoring``: predicted effects of any customers, the plan-stage table.
"""

from typing import TYPE_CHECKING

from retention_lab.lazy import attach
from retention_lab.uplift.settings import UpliftSettings

if TYPE_CHECKING:  # loaded on first use (retention_lab.lazy): the settings import cheaply
    from retention_lab.uplift.cases import (
        CANONICAL_FEATURES,
        UpliftInput,
        active_customers,
        case_table,
        from_frame,
        horizon_days_of,
        prepare,
        read_campaign,
        unavailable,
    )
    from retention_lab.uplift.design import (
        arm_sizes,
        balance,
        check_input,
        fit_propensity,
        known_propensity,
        overlap_table,
    )
    from retention_lab.uplift.effects import (
        aipw_effects,
        aipw_scores,
        difference_in_means,
        outcome_predictions,
        true_effects,
    )
    from retention_lab.uplift.evaluation import (
        calibration,
        choose_learners,
        evaluate,
        truth_metrics,
        uplift_curves,
    )
    from retention_lab.uplift.learners import LEARNERS, UpliftModel, fit_learners
    from retention_lab.uplift.scoring import EFFECT_TABLE_COLUMNS, plan_effects, predict_effects
    from retention_lab.uplift.summary import UpliftSummary, analyse, findings

__all__ = [
    "UpliftSettings",
    "CANONICAL_FEATURES",
    "EFFECT_TABLE_COLUMNS",
    "LEARNERS",
    "UpliftInput",
    "UpliftModel",
    "UpliftSummary",
    "active_customers",
    "aipw_effects",
    "aipw_scores",
    "analyse",
    "arm_sizes",
    "balance",
    "calibration",
    "case_table",
    "check_input",
    "choose_learners",
    "difference_in_means",
    "evaluate",
    "findings",
    "fit_learners",
    "fit_propensity",
    "from_frame",
    "horizon_days_of",
    "known_propensity",
    "outcome_predictions",
    "overlap_table",
    "plan_effects",
    "predict_effects",
    "prepare",
    "read_campaign",
    "true_effects",
    "truth_metrics",
    "unavailable",
    "uplift_curves",
]

__getattr__, __dir__ = attach(__name__, __file__)
