"""A simulated retention campaign export with its ground truth.

One row per customer, as a CRM exports a campaign: covariates, the arm the
customer got, who chose it (randomisation or staff) and the outcome, kept
(binary) or revenue over the next six months (continuous). Staff give the
instruments to the customers most at risk (short tenure, recent complaints),
who are also the least likely to stay and the least valuable, so in an
observational export the naive comparison of arms is confounded; the
covariates that drive the choice are all in the export, so adjusting for them
removes the bias. The truth holds each row's expected outcome under every arm,
so the true average effect of the customers in the export is known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, softmax

ARMS = ("control", "discount", "call")
SEGMENTS = ("mass", "business", "vip")
HORIZON_MONTHS = 6


@dataclass(frozen=True)
class SimulatedCampaign:
    """A campaign export and its truth.

    Attributes
    ----------
    frame : pandas.DataFrame
        customer_id, segment, tenure_months, monthly_fee, complaints, arm,
        assignment ("random" or "rule"; mixed exports only), outcome (0/1 kept,
        or revenue).
    truth : pandas.DataFrame
        One column per arm: each row's expected outcome under that arm.
    """

    frame: pd.DataFrame
    truth: pd.DataFrame

    def true_effects(self, control: str = ARMS[0]) -> pd.Series:
        """True average effect of every instrument over the export's customers, by instrument."""
        return (self.truth.drop(columns=control).sub(self.truth[control], axis=0)).mean()


def simulate_campaign(
    n_customers: int = 10_000,
    *,
    outcome_type: str = "binary",
    assignment: str = "randomised",
    random_share: float = 0.3,
    random_state: int | None = None,
) -> SimulatedCampaign:
    """Simulate a campaign export (see the module docstring).

    Parameters
    ----------
    outcome_type
        "binary" (outcome = still a customer after six months) or "continuous"
        (outcome = revenue over six months, in currency units).
    assignment
        "randomised" (arms drawn with equal chances), "observational" (staff
        choose by risk) or "mixed" (``random_share`` of the rows randomised).
    """
    if outcome_type not in ("binary", "continuous"):
        raise ValueError(f"outcome_type must be binary or continuous (got {outcome_type!r})")
    if assignment not in ("randomised", "observational", "mixed"):
        raise ValueError(f"unknown assignment {assignment!r}")
    rng = np.random.default_rng(random_state)
    n = n_customers
    segment = rng.choice(SEGMENTS, n, p=[0.7, 0.2, 0.1])
    tenure = rng.gamma(1.5, 12.0, n)
    fee = np.exp(rng.normal(np.log(40), 0.35, n)) * np.select(
        [segment == "business", segment == "vip"], [1.6, 2.5], 1.0
    )
    complaints = rng.poisson(0.8, n)
    risk = 0.9 - 0.04 * np.minimum(tenure, 36) + 0.45 * complaints - 0.3 * (segment == "vip")
    # staff choose: the riskier the customer, the likelier an instrument (calls for complaints)
    logits = np.column_stack([np.zeros(n), -0.4 + 1.1 * risk, -0.9 + 0.6 * risk + 0.5 * complaints])
    rule_p = softmax(logits, axis=1)
    randomised = {
        "randomised": np.ones(n, bool),
        "observational": np.zeros(n, bool),
        "mixed": rng.random(n) < random_share,
    }[assignment]
    chosen = (rng.random(n)[:, None] > np.cumsum(rule_p, axis=1)).sum(axis=1)
    arm_index = np.where(randomised, rng.integers(0, len(ARMS), n), np.minimum(chosen, 2))
    # effect on the log-odds of staying: the discount works on the fee-sensitive mass
    # market, the call on customers with complaints
    lift = np.column_stack(
        [np.zeros(n), 0.35 + 0.25 * (segment == "mass"), 0.15 + 0.3 * np.minimum(complaints, 3)]
    )
    p_stay = expit(1.2 - risk[:, None] + lift)
    if outcome_type == "binary":
        expected = p_stay
        outcome = (rng.random(n) < p_stay[np.arange(n), arm_index]).astype(int)
    else:
        # revenue: the fee for the months kept (half the horizon when lost), the discount costs 15%
        price = fee[:, None] * np.array([1.0, 0.85, 1.0])
        expected = price * HORIZON_MONTHS * (p_stay + (1 - p_stay) / 2)
        stays = rng.random(n) < p_stay[np.arange(n), arm_index]
        months = np.where(stays, HORIZON_MONTHS, rng.uniform(0, HORIZON_MONTHS, n))
        noise = rng.normal(0, 0.1 * fee, n)
        outcome = np.round(price[np.arange(n), arm_index] * months + noise, 2)
    frame = pd.DataFrame(
        {
            "customer_id": [f"K{i:06d}" for i in range(1, n + 1)],
            "segment": segment,
            "tenure_months": np.round(tenure, 1),
            "monthly_fee": np.round(fee, 2),
            "complaints": complaints,
            "arm": np.asarray(ARMS)[arm_index],
            "assignment": np.where(randomised, "random", "rule"),
            "outcome": outcome,
        }
    )
    if assignment != "mixed":  # an export says who chose only when it varies
        frame = frame.drop(columns="assignment")
    return SimulatedCampaign(frame=frame, truth=pd.DataFrame(expected, columns=list(ARMS)))
