"""Customer lifetime value: what each customer is worth from today on, and what is at risk.

The stage's library (``notebooks/03_clv.ipynb`` calls it):

- purchase logs: ``validate_transactions``, ``rfm_summary`` (as lifetimes'
  ``summary_data_from_transaction_data``, much faster), ``calibration_holdout``;
- non-contractual models (pymc-marketing, flat priors + MAP = maximum likelihood):
  ``fit_purchase_model`` (BG/NBD, Pareto/NBD), ``fit_spend_model``
  (Gamma-Gamma), ``customer_values``, ``holdout_check``;
- contractual value: ``fit_tenure_model`` (lifelines), ``true_tenure_model``
  (simulator truth), ``monthly_margin``, ``residual_values``,
  ``new_customer_values`` (value and payback by segment and channel),
  ``value_at_risk``;
- renewal cohorts: ``renewal_table`` (from the customers), ``read_renewals`` (a table
  given in the configuration), ``fit_renewals`` (shifted-beta-geometric, DERL, with
  intervals), ``fader_hardie_renewals`` (the published example), ``analyse_renewals``;
- the CDNOW example: ``cdnow_transactions``, ``cdnow_calibration``, ``fit_cdnow``;
- the whole stage: ``analyse`` -> ``ClvSummary``, ``findings``, ``value_table``.

Money is in the data's currency; values are discounted at the configured
annual rate and summed over the configured horizon.
"""

from typing import TYPE_CHECKING

from retention_lab.clv.settings import ClvSettings
from retention_lab.lazy import attach

if TYPE_CHECKING:  # loaded on first use (retention_lab.lazy): the settings import cheaply
    from retention_lab.clv.cdnow import cdnow_calibration, cdnow_transactions, fit_cdnow
    from retention_lab.clv.contractual import (
        fit_tenure_model,
        monthly_margin,
        new_customer_values,
        residual_values,
        true_tenure_model,
        value_at_risk,
    )
    from retention_lab.clv.renewals import (
        derl,
        expand_renewals,
        fader_hardie_renewals,
        fit_renewals,
        read_renewals,
        renewal_table,
    )
    from retention_lab.clv.rfm import (
        calibration_holdout,
        check_discount_rate,
        rfm_summary,
        validate_transactions,
    )
    from retention_lab.clv.summary import (
        ClvSummary,
        ContractualValue,
        RenewalValue,
        TransactionalValue,
        analyse,
        analyse_contractual,
        analyse_renewals,
        analyse_transactions,
        availability,
        compare_values,
        findings,
        read_scores,
        top_customers,
        value_table,
    )
    from retention_lab.clv.transactional import (
        customer_values,
        fit_purchase_model,
        fit_spend_model,
        holdout_check,
    )

__all__ = [
    "ClvSettings",
    "ClvSummary",
    "ContractualValue",
    "RenewalValue",
    "TransactionalValue",
    "analyse",
    "analyse_contractual",
    "analyse_renewals",
    "analyse_transactions",
    "availability",
    "calibration_holdout",
    "cdnow_calibration",
    "cdnow_transactions",
    "check_discount_rate",
    "compare_values",
    "customer_values",
    "derl",
    "expand_renewals",
    "fader_hardie_renewals",
    "findings",
    "fit_cdnow",
    "fit_purchase_model",
    "fit_renewals",
    "fit_spend_model",
    "fit_tenure_model",
    "holdout_check",
    "monthly_margin",
    "read_renewals",
    "read_scores",
    "new_customer_values",
    "renewal_table",
    "residual_values",
    "rfm_summary",
    "top_customers",
    "true_tenure_model",
    "validate_transactions",
    "value_at_risk",
    "value_table",
]

__getattr__, __dir__ = attach(__name__, __file__)
