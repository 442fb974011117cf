"""How much each instrument cuts the churn hazard, in recent cases and before them.

The retention effect (a difference of six-month retention probabilities) is
what the plan needs, but it is a blunt instrument for noticing that an
instrument stopped working: six-month churn after a case is rare and most of it
happens after the instrument has stopped acting. The hazard ratio of churn in
the weeks after the case, from a Cox model stratified by problem type and
adjusted for the customer covariates (the staff rule's inputs among them, so
rule-assigned cases are comparable with the control), uses the timing of each
churn and carries more information per case. It is estimated separately on the
most recent cases and on the earlier ones, so a weaker effect in recent cases is
visible within one run and, through ``monitor``, across runs.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from lifelines.exceptions import ConvergenceError, ConvergenceWarning
from scipy import stats
from statsmodels.stats.multitest import multipletests

from retention_lab.cox import CoxPHFitter
from retention_lab.errors import StatisticalWarning
from retention_lab.units import DAYS_PER_MONTH, Z95
from retention_lab.uplift.cases import UpliftInput
from retention_lab.uplift.design import is_categorical

CHANGE_ALPHA = 0.05  # family-wise level of the recent-against-earlier tests
HAZARD_COLUMNS = [
    "period",
    "window_start",
    "window_end",
    "problem_type",
    "instrument",
    "log_hazard_ratio",
    "se",
    "hazard_ratio",
    "lower",
    "upper",
    "n_treated",
    "n_control",
    "churned_treated",
    "churned_control",
    "true_log_hazard_ratio",
    "status",
]


def _followup(cases: pd.DataFrame, window_days: float) -> tuple[np.ndarray, np.ndarray]:
    """Days from the case to churn or to the end of the window, and whether it ended in churn."""
    to_end = (cases["end_date"] - cases["date"]).dt.days.to_numpy(float)
    churned = np.isfinite(to_end) & (to_end < window_days)
    days = np.where(churned, np.maximum(to_end, 0.5), window_days)  # a same-day churn counts
    return days, churned


def _design(
    data: UpliftInput, cases: pd.DataFrame, cells: list[tuple[str, str]], strata: list[str]
) -> pd.DataFrame:
    """Instrument-by-problem-type indicators and the covariates (reference levels dropped)."""
    t = cases[data.treatment_col].astype(str).to_numpy()
    k = cases["problem_type"].astype(str).to_numpy()
    x = pd.DataFrame(
        {f"{inst}|{ptype}": ((t == inst) & (k == ptype)).astype(float) for inst, ptype in cells},
        index=cases.index,
    )
    covariates = [c for c in data.features if c not in ("problem_type", *strata)]
    cats = [c for c in covariates if is_categorical(cases[c])]
    nums = [c for c in covariates if c not in cats]
    numeric = cases[nums].astype(float)
    numeric = (numeric - numeric.mean()) / numeric.std(ddof=0).replace(0, 1.0)
    dummies = pd.get_dummies(cases[cats].astype(str), drop_first=True, dtype=float)
    return pd.concat([x, numeric.fillna(0.0), dummies], axis=1)


def _true_log_hazard_ratios(data: UpliftInput, mask: np.ndarray) -> pd.DataFrame:
    """Mean true log-hazard effect over the treated cases of each cell (simulated data only)."""
    cases = data.cases.loc[mask]
    arms = cases[data.treatment_col].astype(str).to_numpy()
    truth = data.truth.loc[mask]
    own = np.full(len(cases), np.nan)
    for inst in data.instruments:
        column = f"log_hazard:{inst}"
        if column in truth.columns:
            own = np.where(arms == inst, truth[column].to_numpy(float), own)
    frame = pd.DataFrame(
        {
            "problem_type": cases["problem_type"].astype(str).to_numpy(),
            "instrument": arms,
            "true_log_hazard_ratio": own,
        }
    )
    frame = frame.loc[frame["instrument"] != data.control]
    return frame.groupby(["problem_type", "instrument"], as_index=False)[
        "true_log_hazard_ratio"
    ].mean()


def _fit_period(
    data: UpliftInput,
    cases: pd.DataFrame,
    *,
    window_days: float,
    min_churned: int,
    penalizer: float,
    strata: list[str],
) -> pd.DataFrame:
    """One stratified Cox fit: a row per instrument and problem type."""
    days, churned = _followup(cases, window_days)
    t = cases[data.treatment_col].astype(str)
    k = cases["problem_type"].astype(str)
    rows, cells = [], []
    for ptype in sorted(k.unique()):
        in_type = (k == ptype).to_numpy()
        control = in_type & (t == data.control).to_numpy()
        for inst in data.instruments:
            treated = in_type & (t == inst).to_numpy()
            counts = {
                "problem_type": ptype,
                "instrument": inst,
                "n_treated": int(treated.sum()),
                "n_control": int(control.sum()),
                "churned_treated": int(churned[treated].sum()),
                "churned_control": int(churned[control].sum()),
            }
            fewest = min(counts["churned_treated"], counts["churned_control"])
            if fewest < min_churned:
                counts["status"] = (
                    f"not estimable: {fewest} churned customers in the smaller arm "
                    f"({inst} or {data.control}) for problem_type={ptype}"
                )
            else:
                counts["status"] = "estimated"
                cells.append((inst, ptype))
            rows.append(counts)
    out = pd.DataFrame(rows)
    out[["log_hazard_ratio", "se"]] = np.nan
    if not cells:
        return out
    x = _design(data, cases, cells, strata)
    x = x.loc[:, x.std(ddof=0) > 0]
    stratum = k.str.cat([cases[c].astype(str) for c in strata], sep="|") if strata else k
    frame = x.assign(_days=days, _churned=churned, _stratum=stratum.to_numpy())
    fitter = CoxPHFitter(penalizer=penalizer)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fitter.fit(frame, "_days", "_churned", strata=["_stratum"])
    except ConvergenceError as exc:
        warnings.warn(
            f"the instrument hazard model did not converge ({exc}); no hazard ratios",
            StatisticalWarning,
            stacklevel=3,
        )
        out["status"] = "not estimable: the Cox model did not converge"
        return out
    coef, se = fitter.params_, fitter.standard_errors_
    names = out["instrument"] + "|" + out["problem_type"]
    fitted = names.isin(coef.index) & out["status"].eq("estimated")
    out.loc[fitted, "log_hazard_ratio"] = coef.reindex(names[fitted]).to_numpy()
    out.loc[fitted, "se"] = se.reindex(names[fitted]).to_numpy()
    return out


def instrument_hazard_ratios(
    data: UpliftInput,
    *,
    window_months: float = 3.0,
    recent_months: float = 6.0,
    min_churned: int = 5,
    penalizer: float = 1e-4,
    strata: tuple[str, ...] = ("contract",),
) -> pd.DataFrame:
    """Hazard ratio of churn within ``window_months`` of the case, treated against control.

    One Cox model per period, stratified by problem type (and ``strata``), with an indicator per
    instrument and problem type and the case's covariates (``data.features``)
    as adjustment. Periods: "recent", the cases of the last ``recent_months``
    whose outcome is observed (dated from the snapshot date ``data.as_of``
    minus the outcome horizon minus ``recent_months``); "earlier", the cases
    before them; "all". On simulated data, ``true_log_hazard_ratio`` is the
    mean true effect over the cell's treated cases.

    Parameters
    ----------
    data
        Cases from :func:`~retention_lab.uplift.case_table` (needs ``date``,
        ``end_date`` and ``problem_type``).
    window_months
        Follow-up after the case: the weeks in which an instrument acts.
    min_churned
        Fewest churned customers in the treated and in the control arm of a cell.
    strata
        Columns whose levels get their own baseline hazard besides the problem
        type (those present): a contract's renewal dates shape its churn over
        time in a way no proportional term can.

    Returns
    -------
    pandas.DataFrame
        :data:`HAZARD_COLUMNS`; ``status`` explains a missing estimate. Empty
        when the cases carry no dates or problem types.
    """
    cases = data.cases
    needed = {"date", "end_date", "problem_type"}
    if not data.available or not needed <= set(cases.columns) or data.as_of is None:
        return pd.DataFrame(columns=HAZARD_COLUMNS)
    as_of = pd.Timestamp(data.as_of)
    window_end = as_of - pd.Timedelta(days=data.horizon_days)
    window_start = window_end - pd.Timedelta(days=recent_months * DAYS_PER_MONTH)
    recent = (cases["date"] >= window_start).to_numpy()
    periods = {
        "recent": (recent, window_start, window_end),
        "earlier": (~recent, cases["date"].min(), window_start),
        "all": (np.ones(len(cases), bool), cases["date"].min(), window_end),
    }
    parts = []
    for period, (mask, start, end) in periods.items():
        if mask.sum() == 0:
            continue
        subset = cases.loc[mask].reset_index(drop=True)
        part = _fit_period(
            data,
            subset,
            window_days=window_months * DAYS_PER_MONTH,
            min_churned=min_churned,
            penalizer=penalizer,
            strata=[c for c in strata if c in subset.columns],
        )
        if data.truth is not None:
            part = part.merge(_true_log_hazard_ratios(data, mask), how="left")
        parts.append(part.assign(period=period, window_start=start, window_end=end))
    out = pd.concat(parts, ignore_index=True).reindex(columns=HAZARD_COLUMNS)
    out["hazard_ratio"] = np.exp(out["log_hazard_ratio"])
    out["lower"] = np.exp(out["log_hazard_ratio"] - Z95 * out["se"])
    out["upper"] = np.exp(out["log_hazard_ratio"] + Z95 * out["se"])
    return out


def recent_changes(hazard: pd.DataFrame, *, alpha: float = CHANGE_ALPHA) -> pd.DataFrame:
    """Recent against earlier hazard ratio of each cell, two independent sets of cases.

    z-test of the difference of the log hazard ratios; Holm's correction over
    the cells tested keeps the chance of calling any unchanged cell changed at
    ``alpha``.

    Returns
    -------
    pandas.DataFrame
        problem_type, instrument, earlier, recent (hazard ratios), z, p_value,
        p_holm, changed (bool); cells estimated in both periods only.
    """
    columns = ["problem_type", "instrument", "earlier", "recent", "z", "p_value", "p_holm",
               "changed"]  # fmt: skip
    key = ["problem_type", "instrument"]
    est = hazard.loc[hazard["log_hazard_ratio"].notna()]
    both = est.loc[est["period"] == "earlier", [*key, "log_hazard_ratio", "se"]].merge(
        est.loc[est["period"] == "recent", [*key, "log_hazard_ratio", "se"]],
        on=key,
        suffixes=("_earlier", "_recent"),
    )
    if both.empty:
        return pd.DataFrame(columns=columns)
    diff = both["log_hazard_ratio_recent"] - both["log_hazard_ratio_earlier"]
    z = diff / np.sqrt(both["se_earlier"] ** 2 + both["se_recent"] ** 2)
    p = 2 * stats.norm.sf(np.abs(z))
    p_holm = multipletests(p, method="holm")[1]
    return pd.DataFrame(
        {
            **{k: both[k] for k in key},
            "earlier": np.exp(both["log_hazard_ratio_earlier"]),
            "recent": np.exp(both["log_hazard_ratio_recent"]),
            "z": z,
            "p_value": p,
            "p_holm": p_holm,
            "changed": p_holm < alpha,
        }
    )[columns]
