"""Retention plan: threat criticality, instrument playbook and budgeted targeting.

The stage's library (``notebooks/04_plan.ipynb`` calls it):

- inputs: ``read_inputs`` (the clv values, survival scores and uplift effects
  of the run), ``candidates`` (active customers with an open problem),
  ``past_cases``, ``instrument_costs``, ``EffectModel`` (the plan's own effect
  model on the randomised cases, used when the uplift stage has not run);
- threats: ``threat_table`` (problem types ranked by the value their churn
  destroys), ``playbook`` (best instrument per problem type x segment);
- allocation: ``allocate`` (multiple-choice knapsack under a budget and
  per-instrument capacities, exact or with a proven gap), ``budget_curve``;
- evaluation: baselines at the same budget, off-policy IPW/DR estimates on
  the randomised cases, the simulator's truth;
- the whole stage: ``analyse`` -> ``PlanSummary``, ``findings``, the action
  list (``write_actions_csv``).
"""

from typing import TYPE_CHECKING

from retention_lab.lazy import attach
from retention_lab.plan.settings import PlanSettings

if TYPE_CHECKING:  # loaded on first use (retention_lab.lazy): the settings import cheaply
    from retention_lab.plan.evaluate import BASELINES, LABELS, baseline_choice, off_policy
    from retention_lab.plan.inputs import (
        EffectModel,
        candidates,
        cost_matrix,
        instrument_costs,
        past_cases,
    )
    from retention_lab.plan.knapsack import (
        Allocation,
        allocate,
        budget_curve,
        fill_in_order,
        is_feasible,
    )
    from retention_lab.plan.summary import (
        ACTION_COLUMNS,
        PlanInputs,
        PlanSummary,
        analyse,
        findings,
        read_inputs,
        write_actions_csv,
    )
    from retention_lab.plan.threats import playbook, threat_table

__all__ = [
    "PlanSettings",
    "ACTION_COLUMNS",
    "Allocation",
    "BASELINES",
    "EffectModel",
    "LABELS",
    "PlanInputs",
    "PlanSummary",
    "allocate",
    "analyse",
    "baseline_choice",
    "budget_curve",
    "candidates",
    "cost_matrix",
    "fill_in_order",
    "findings",
    "instrument_costs",
    "is_feasible",
    "off_policy",
    "past_cases",
    "playbook",
    "read_inputs",
    "threat_table",
    "write_actions_csv",
]

__getattr__, __dir__ = attach(__name__, __file__)
