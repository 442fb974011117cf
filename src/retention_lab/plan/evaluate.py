"""The plan against baseline targeting rules at the same budget.

Three views of every policy:

- **expected** on the candidates, from the estimated effects (what the plan
  believes);
- **off-policy** on the randomised past cases: each policy applied as a rule
  to the cases, its retention and value estimated by inverse propensity
  weighting (IPW) and doubly robust (DR) estimators with the known
  randomisation probability, bootstrap CIs, scaled to the number of candidates;
- **true** on the candidates, from the simulator's exact outcomes (simulated
  data only).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from retention_lab.plan.inputs import EffectModel
from retention_lab.plan.knapsack import NOTHING, fill_in_order

MAX_RULE_CASES = 20_000  # sample the staff rule is learnt from
BASELINES = ("status_quo", "highest_risk", "best_single", "random", "nothing")
LABELS = {
    "plan": "plan (optimised)",
    "status_quo": "status-quo rule",
    "highest_risk": "highest risk, most used instrument",
    "best_single": "best single instrument for everyone",
    "random": "random targeting",
    "nothing": "do nothing",
    "oracle": "oracle (true effects)",
}


class StatusQuoRule:
    """The staff's past choices as a stochastic rule: a multinomial logistic model of the arm.

    Fitted on the rule-assigned cases (all cases when none are marked "rule"); past
    ``MAX_RULE_CASES`` of them, on a sample drawn with ``random_state``.
    """

    def __init__(self, random_state: int | np.random.Generator | None = None):
        self.random_state = random_state

    def fit(self, cases: pd.DataFrame, *, arms: list[str]):
        """Fit the arm probabilities given customer covariates and the problem type."""
        rule = cases[cases["assignment"] == "rule"] if "assignment" in cases.columns else cases
        rule = rule if len(rule) else cases
        if len(rule) > MAX_RULE_CASES:
            rule = rule.sample(MAX_RULE_CASES, random_state=self.random_state)
        self.arms_ = list(arms)
        self.base_ = EffectModel()
        self.base_.fit(rule.assign(retained=True), arm_col="instrument")  # design only
        X = self._x(rule)
        y = pd.Categorical(rule["instrument"].astype(str), categories=self.arms_).codes
        self.classes_ = np.unique(y[y >= 0])
        self.shares_ = np.bincount(y[y >= 0], minlength=len(self.arms_)) / max((y >= 0).sum(), 1)
        self.model_ = None
        if self.classes_.size > 1:
            self.model_ = LogisticRegression(max_iter=500).fit(X[y >= 0], y[y >= 0])
        return self

    def _x(self, frame: pd.DataFrame) -> np.ndarray:
        return self.base_.base_design(frame)

    def probabilities(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of each arm per row, shape ``(row, arm)`` in ``arms_`` order."""
        out = np.zeros((len(frame), len(self.arms_)))
        if self.model_ is None:
            out[:] = self.shares_
            return out
        out[:, self.classes_] = self.model_.predict_proba(self._x(frame))
        return out


def baseline_choice(
    name: str,
    *,
    candidates: pd.DataFrame,
    instruments: list[str],
    cost: np.ndarray,
    budget: float,
    capacity: np.ndarray,
    most_used: str,
    best_single: str,
    rule: StatusQuoRule | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Instrument index per candidate (-1 = nothing) chosen by a baseline rule within the budget.

    status_quo: the staff rule's arm drawn per candidate, candidates in random
    order; highest_risk: the most used instrument for the riskiest candidates
    first; best_single: the one instrument with the best estimated net value
    over all candidates, given in random order; random: a random instrument,
    random order; nothing: nobody treated.
    """
    n, m = cost.shape
    order = rng.permutation(n)
    if name == "nothing" or n == 0 or m == 0:
        return np.full(n, NOTHING, dtype=np.int64)
    if name == "random":
        inst = rng.integers(0, m, size=n)
    elif name == "best_single":
        inst = np.full(n, instruments.index(best_single))
    elif name == "highest_risk":
        inst = np.full(n, instruments.index(most_used) if most_used in instruments else 0)
        order = np.argsort(-candidates["p_churn"].to_numpy(float), kind="stable")
    elif name == "status_quo":
        probs = rule.probabilities(candidates)
        cum = probs.cumsum(axis=1)
        draw = (rng.random(n)[:, None] * cum[:, -1:] >= cum).sum(axis=1)
        arm = np.asarray(rule.arms_, dtype=object)[np.minimum(draw, len(rule.arms_) - 1)]
        index = {a: i for i, a in enumerate(instruments)}
        inst = np.array([index.get(a, NOTHING) for a in arm])
    else:
        raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")
    return fill_in_order(order, inst, cost, budget=budget, capacity=capacity)


def policy_totals(
    choice: np.ndarray,
    effect: np.ndarray,
    value: np.ndarray,
    cost: np.ndarray,
    true_effect: np.ndarray | None = None,
    true_net: np.ndarray | None = None,
) -> dict[str, float]:
    """Treated, spend, expected (and true) incremental customers and net value of a choice.

    ``true_net`` is each option's true net value from the simulator alone
    (``simulate.true_net_values``), never the estimated customer value.
    """
    rows = np.flatnonzero(choice >= 0)
    a = choice[rows]
    spent = float(cost[rows, a].sum())
    out = {
        "treated": float(rows.size),
        "spent": spent,
        "expected_customers": float(effect[rows, a].sum()),
        "expected_net_value": float((effect[rows, a] * value[rows]).sum() - spent),
    }
    if true_effect is not None:
        out["true_customers"] = float(true_effect[rows, a].sum())
    if true_net is not None:
        out["true_net_value"] = float(true_net[rows, a].sum())
    return out


def rule_distribution(
    name: str,
    *,
    p_hat: np.ndarray,
    value: np.ndarray,
    cost: np.ndarray,
    multipliers: np.ndarray,
    treated_share: float,
    instruments: list[str],
    most_used: str,
    rule_probs: np.ndarray | None,
    best_single: str | None = None,
    effect: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
) -> np.ndarray:
    """A policy as a rule on past cases: probability of each arm, ``(case, 1 + instrument)``.

    Column 0 is the control. The plan gives the option with the largest positive
    ``effect * value - (1 + lambda) * cost - mu_a`` (``effect`` the plan's
    estimates for the cases, default ``p_hat``'s differences; options outside
    ``allowed``, the risk rule, are never given); the budget-limited
    baselines treat the same share of cases as of candidates (the riskiest by
    the predicted churn under no action, or at random).
    """
    n, m = cost.shape
    pi = np.zeros((n, m + 1))
    q = float(np.clip(treated_share, 0.0, 1.0))
    if name == "plan":
        eff = p_hat[:, 1:] - p_hat[:, :1] if effect is None else effect
        r = eff * value[:, None] - cost - multipliers[0] * cost - multipliers[None, 1:]
        if allowed is not None:
            r = np.where(allowed, r, -np.inf)
        best = r.argmax(axis=1)
        go = r[np.arange(n), best] > 0
        pi[np.flatnonzero(go), 1 + best[go]] = 1.0
        pi[~go, 0] = 1.0
    elif name == "nothing":
        pi[:, 0] = 1.0
    elif name == "highest_risk":
        risk = 1.0 - p_hat[:, 0]
        k = int(round(q * n))
        top = np.argsort(-risk, kind="stable")[:k]
        pi[:, 0] = 1.0
        j = 1 + (instruments.index(most_used) if most_used in instruments else 0)
        pi[top, 0], pi[top, j] = 0.0, 1.0
    elif name in ("random", "best_single", "status_quo"):
        if name == "random":
            arms = np.full((n, m), 1.0 / m)
        elif name == "best_single":
            arms = np.zeros((n, m))
            arms[:, instruments.index(best_single)] = 1.0
        else:
            arms = rule_probs[:, 1:] / np.maximum(
                rule_probs[:, 1:].sum(axis=1, keepdims=True), 1e-12
            )
        pi[:, 1:] = q * arms
        pi[:, 0] = 1.0 - q
    else:
        raise ValueError(f"unknown policy {name!r}")
    return pi


OFF_POLICY_COLUMNS = [
    "policy",
    "estimator",
    "incremental_customers",
    "customers_lower",
    "customers_upper",
    "net_value",
    "net_lower",
    "net_upper",
]


def off_policy(
    policies: dict[str, np.ndarray],
    *,
    arm: np.ndarray,
    retained: np.ndarray,
    p_hat: np.ndarray,
    value: np.ndarray,
    cost: np.ndarray,
    propensity: float,
    scale: float,
    n_boot: int,
    random_state: int | np.random.Generator | None = None,
) -> pd.DataFrame:
    """IPW and DR estimates of each policy's incremental customers and net value, with CIs.

    Parameters
    ----------
    policies
        Name -> arm probabilities per case, ``(case, 1 + instrument)``, column 0 the control.
    arm
        The randomised arm of each case (0 = control).
    retained
        Observed outcome (0/1).
    p_hat
        Cross-fitted predicted retention per case and arm (the DR outcome model).
    value, cost
        Value of a retained customer per case; cost per case and instrument.
    propensity
        Known probability of each arm in the randomised cases.
    scale
        Multiplier from the per-case mean to the totals (number of candidates).

    Returns
    -------
    pandas.DataFrame
        policy, estimator ("IPW" or "DR"), incremental_customers, customers_lower,
        customers_upper, net_value, net_lower, net_upper (totals over the candidates).
    """
    rng = np.random.default_rng(random_state)
    n = arm.size
    y = retained.astype(float)
    rows = []
    observed_p = p_hat[np.arange(n), arm]
    control_w = (arm == 0) / propensity
    none_ipw = control_w * y
    none_dr = p_hat[:, 0] + control_w * (y - observed_p)
    boot = rng.integers(0, n, size=(n_boot, n)) if n else np.zeros((n_boot, 0), int)
    for name, pi in policies.items():
        w = pi[np.arange(n), arm] / propensity
        spend = (pi[:, 1:] * cost).sum(axis=1)
        ipw = w * y - none_ipw
        dr = (pi * p_hat).sum(axis=1) + w * (y - observed_p) - none_dr
        for est, inc in (("IPW", ipw), ("DR", dr)):
            net = inc * value - spend
            if n == 0:
                rows.append((name, est, *([np.nan] * 6)))
                continue
            bc, bv = inc[boot].mean(axis=1), net[boot].mean(axis=1)
            rows.append(
                (
                    name,
                    est,
                    scale * inc.mean(),
                    scale * np.quantile(bc, 0.025),
                    scale * np.quantile(bc, 0.975),
                    scale * net.mean(),
                    scale * np.quantile(bv, 0.025),
                    scale * np.quantile(bv, 0.975),
                )
            )
    return pd.DataFrame(rows, columns=OFF_POLICY_COLUMNS)
