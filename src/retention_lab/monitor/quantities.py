"""The monitored quantities of one run, in one long table.

Each stage's outputs (its logged metrics and the tables it saved with
``stage.save_table``) become rows of the same shape, so that comparing runs is
one operation whatever the stage:

stage, family, quantity, group, estimate, se, lower, upper, scale, n, unit,
reference, reference_se

``se`` is the standard error on the comparison ``scale`` ("linear", or "log"
for ratios and rates, where estimates are compared as logarithms); ``lower``
and ``upper`` are the 95% interval on the natural scale. A quantity whose stage
gives no interval has ``se`` NaN: it is shown and its change reported, but it
cannot raise a statistical flag (see ``compare``). ``reference`` (with its
``reference_se``) is what a later run compares its estimate with instead of
this run's ``estimate``: an instrument's hazard ratio in the recent cases is
compared with the previous run's estimate on all its cases, the number that
run's plan rested on. NaN for every other quantity.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd

from retention_lab.contract import monitored_tables
from retention_lab.formatting import MONEY_UNIT as MONEY
from retention_lab.stage import RunOutputs
from retention_lab.units import TENURE_UNIT_DAYS, Z95


class Quantity(NamedTuple):
    """One monitored quantity of a run: a row of the long table (see the module's docstring)."""

    stage: str
    family: str
    quantity: str
    group: str
    estimate: float
    se: float = np.nan
    lower: float = np.nan
    upper: float = np.nan
    scale: str = "linear"
    n: float = np.nan
    unit: str = ""
    reference: float = np.nan
    reference_se: float = np.nan


QUANTITY_COLUMNS = list(Quantity._fields)
EFFECT_COLUMNS = ("effect", "estimate", "uplift", "ate", "log_hazard_effect")


def _rows(rows: list[Quantity]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=QUANTITY_COLUMNS)
    floats = ["estimate", "se", "lower", "upper", "n", "reference", "reference_se"]
    return frame.astype(dict.fromkeys(floats, float))


def survival_quantities(
    metrics: Mapping[str, float], tables: Mapping[str, pd.DataFrame | None]
) -> pd.DataFrame:
    """Median tenure, retention at the horizons and hazard ratios of the survival stage.

    The SEs of the median and of retention at a horizon are read from their 95%
    CIs as ``(upper - lower) / (2 * 1.96)`` (se NaN when the stage logged no
    bounds). Hazard ratios come from the ``hazard_ratios`` table (log scale, the
    model's SE) and the ``threats`` table (problem types; SE from the CI on the
    log scale).

    Returns
    -------
    pandas.DataFrame
        One row per quantity, the columns of :data:`QUANTITY_COLUMNS` (a :class:`Quantity` each).
    """
    rows = _tenure_rows(metrics) + _hazard_ratio_rows(tables.get("hazard_ratios"))
    has_problem_hrs = any(r.family == "problem hazard ratio" for r in rows)
    if not has_problem_hrs:
        rows += _threat_rows(tables.get("threats"))
    return _rows(rows)


def _tenure_rows(metrics: Mapping[str, float]) -> list[Quantity]:
    """Median tenure and retention at each horizon, SEs read from their 95% CIs."""
    rows = []
    # tenures are in the unit the data declared, which the metric names carry
    unit = next((u for u in TENURE_UNIT_DAYS if f"median_tenure_{u}" in metrics), "months")
    med, lo, hi = (
        metrics.get(k)
        for k in (f"median_tenure_{unit}", "median_tenure_lower", "median_tenure_upper")
    )
    if med is not None and np.isfinite(med):
        ok = lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi)
        se = (hi - lo) / (2 * Z95) if ok else np.nan
        rows.append(
            Quantity(
                "survival",
                "survival",
                "median tenure",
                "all",
                med,
                se=se,
                lower=lo if ok else np.nan,
                upper=hi if ok else np.nan,
                n=metrics.get("n_customers", np.nan),
                unit=unit,
            )
        )
    for key, value in sorted(metrics.items()):
        match = re.fullmatch(r"retention_([0-9.]+)([dwmy])", key)
        if match:
            words = next(u for u in TENURE_UNIT_DAYS if u[0] == match.group(2))
            lo, hi = metrics.get(f"{key}_lower", np.nan), metrics.get(f"{key}_upper", np.nan)
            rows.append(
                Quantity(
                    "survival",
                    "survival",
                    f"retention at {match.group(1)} {words}",
                    "all",
                    value,
                    se=(hi - lo) / (2 * Z95) if hi > lo else np.nan,
                    lower=lo,
                    upper=hi,
                    n=metrics.get("n_customers", np.nan),
                    unit="share",
                )
            )
    return rows


def _hazard_ratio_rows(hrs: pd.DataFrame | None) -> list[Quantity]:
    """The survival stage's hazard ratios (covariates and problems), on the log scale."""
    rows: list[Quantity] = []
    if hrs is None or not len(hrs) or not {"log_hazard_ratio", "se"} <= set(hrs.columns):
        return rows
    for r in hrs.itertuples():
        kind = getattr(r, "kind", "")
        covariate = getattr(r, "covariate", r.term)
        level = getattr(r, "level", None)
        group = f"{covariate}={level}" if isinstance(level, str) and level else str(covariate)
        reference = getattr(r, "reference", None)
        if kind == "categorical" and isinstance(reference, str) and reference:
            # a level's ratio depends on its reference (the most common level, which can
            # change between runs): only ratios against the same reference are compared
            group += f" vs {reference}"
        family = "problem hazard ratio" if str(kind).startswith("problem") else "hazard ratio"
        if kind == "problem_treated":
            group += " (treated)"
        rows.append(
            Quantity(
                "survival",
                family,
                "hazard ratio",
                group,
                float(np.exp(r.log_hazard_ratio)),
                se=float(r.se),
                lower=float(np.exp(r.log_hazard_ratio - Z95 * r.se)),
                upper=float(np.exp(r.log_hazard_ratio + Z95 * r.se)),
                scale="log",
                unit="ratio",
            )
        )
    return rows


def _threat_rows(threats: pd.DataFrame | None) -> list[Quantity]:
    """Problem hazard ratios from the threats table (when the hazard ratios table lacks them)."""
    rows: list[Quantity] = []
    if threats is None or not len(threats):
        return rows
    for r in threats.itertuples():
        se = (np.log(r.hr_upper) - np.log(r.hr_lower)) / (2 * Z95)
        rows.append(
            Quantity(
                "survival",
                "problem hazard ratio",
                "hazard ratio",
                f"problem_type={r.problem_type}",
                float(r.hazard_ratio),
                se=se,
                lower=float(r.hr_lower),
                upper=float(r.hr_upper),
                scale="log",
                unit="ratio",
            )
        )
    return rows


def effect_quantities(effects: pd.DataFrame | None) -> pd.DataFrame:
    """Instrument effects per problem type and segment from the uplift stage's table.

    Reads the first estimate column among ``effect``, ``estimate``, ``uplift``,
    ``ate``, ``log_hazard_effect``, its standard error (``std_error`` or ``se``;
    else ``lower``/``upper`` read as a 95% CI) and, when present, skips rows
    whose ``status`` is not "estimated". Cells are named by the instrument,
    problem_type and segment columns the table has, plus outcome, estimator and
    population when the table holds more than one of them.

    Returns
    -------
    pandas.DataFrame
        One row per quantity, the columns of :data:`QUANTITY_COLUMNS` (a :class:`Quantity` each).
    """
    if effects is None or effects.empty:
        return _rows([])
    value = next((c for c in EFFECT_COLUMNS if c in effects.columns), None)
    if value is None:
        return _rows([])
    if "status" in effects.columns:
        effects = effects.loc[effects["status"].astype(str) == "estimated"]
    keys = [c for c in ("instrument", "problem_type", "segment") if c in effects.columns]
    keys += [
        c for c in ("outcome", "estimator", "population")
        if c in effects.columns and effects[c].nunique() > 1
    ]  # fmt: skip
    lower_col = next((c for c in ("lower", "ci_lower", f"{value}_lower") if c in effects), None)
    upper_col = next((c for c in ("upper", "ci_upper", f"{value}_upper") if c in effects), None)
    se_col = next((c for c in ("std_error", "se") if c in effects.columns), None)
    rows = []
    for _, r in effects.iterrows():
        estimate = float(r[value])
        se = float(r[se_col]) if se_col else np.nan
        lower = float(r[lower_col]) if lower_col else np.nan
        upper = float(r[upper_col]) if upper_col else np.nan
        if not np.isfinite(se):
            se = (upper - lower) / (2 * Z95)
        if not (np.isfinite(lower) and np.isfinite(upper)):
            lower, upper = estimate - Z95 * se, estimate + Z95 * se
        n = sum(float(r[c]) for c in ("n_treated", "n_control", "n") if c in effects.columns)
        rows.append(
            Quantity(
                "uplift",
                "instrument effect",
                f"effect ({value})",
                "|".join(f"{k}={r[k]}" for k in keys) or "all",
                estimate,
                se=se,
                lower=lower,
                upper=upper,
                n=n or np.nan,
                unit="effect",
            )
        )
    return _rows(rows)


def hazard_effect_quantities(hazard: pd.DataFrame | None) -> pd.DataFrame:
    """Instrument hazard ratios in recent cases (uplift table ``instrument_hazard_ratios``).

    One row per instrument and problem type estimated in the recent period, on
    the log scale; its ``reference`` is the same cell estimated on all cases.

    Returns
    -------
    pandas.DataFrame
        One row per quantity, the columns of :data:`QUANTITY_COLUMNS` (a :class:`Quantity` each).
    """
    if hazard is None or hazard.empty:
        return _rows([])
    key = ["instrument", "problem_type"]
    est = hazard.loc[hazard["log_hazard_ratio"].notna()]
    every = est.loc[est["period"] == "all", [*key, "log_hazard_ratio", "se"]]
    recent = est.loc[est["period"] == "recent"].merge(
        every, on=key, how="left", suffixes=("", "_all")
    )
    rows = [
        Quantity(
            "uplift",
            "instrument hazard ratio",
            "hazard ratio in recent cases (previous run: all cases)",
            f"instrument={r.instrument}|problem_type={r.problem_type}",
            float(np.exp(r.log_hazard_ratio)),
            se=float(r.se),
            lower=float(np.exp(r.log_hazard_ratio - Z95 * r.se)),
            upper=float(np.exp(r.log_hazard_ratio + Z95 * r.se)),
            scale="log",
            n=float(r.n_treated + r.n_control),
            unit="ratio",
            reference=float(np.exp(r.log_hazard_ratio_all)),
            reference_se=float(r.se_all),
        )
        for r in recent.itertuples()
    ]
    return _rows(rows)


def value_quantities(values: pd.DataFrame | None) -> pd.DataFrame:
    """Total residual value of the active customers by segment (the clv stage's ``values``).

    The clv stage gives no interval for a total, so these rows have se NaN.

    Returns
    -------
    pandas.DataFrame
        One row per quantity, the columns of :data:`QUANTITY_COLUMNS` (a :class:`Quantity` each).
    """
    if values is None or values.empty or "value" not in values.columns:
        return _rows([])
    active = values.loc[values["active"].astype(bool)] if "active" in values else values
    by = active["segment"] if "segment" in active else pd.Series("all", index=active.index)
    totals = active.groupby(by.to_numpy())["value"].agg(["sum", "size"])
    rows = [
        Quantity(
            "clv",
            "value",
            "total value",
            f"segment={seg}",
            float(t["sum"]),
            n=float(t["size"]),
            unit=MONEY,
        )
        for seg, t in totals.iterrows()
    ]
    rows.append(
        Quantity(
            "clv",
            "value",
            "total value",
            "all",
            float(active["value"].sum()),
            n=float(len(active)),
            unit=MONEY,
        )
    )
    return _rows(rows)


def profile_quantities(profile: pd.DataFrame | None) -> pd.DataFrame:
    """Problem rates (per 1,000 customer-months) and churn-reason shares of the recent window.

    Rates are compared on the log scale with the Poisson SE ``1 / sqrt(count)``;
    shares with the binomial SE ``sqrt(p (1 - p) / n)``.

    Returns
    -------
    pandas.DataFrame
        One row per quantity, the columns of :data:`QUANTITY_COLUMNS` (a :class:`Quantity` each).
    """
    if profile is None or profile.empty:
        return _rows([])
    rows = []
    for r in profile.loc[profile["section"] == "problem_rate"].itertuples():
        if r.n <= 0:
            continue
        rate = 1000 * r.value / r.n
        se = 1 / np.sqrt(r.value) if r.value > 0 else np.nan
        rows.append(
            Quantity(
                "data",
                "problem rate",
                "problems per 1,000 customer-months",
                f"problem_type={r.level}",
                rate,
                se=se,
                lower=rate * np.exp(-Z95 * se),
                upper=rate * np.exp(Z95 * se),
                scale="log",
                n=r.value,
                unit="per 1,000 customer-months",
            )
        )
    for r in profile.loc[profile["section"] == "churn_reason"].itertuples():
        if r.n <= 0:
            continue
        p = r.value / r.n
        se = np.sqrt(max(p * (1 - p), 0.25 / r.n) / r.n)  # floor keeps a zero share testable
        rows.append(
            Quantity(
                "data",
                "churn reason",
                "share of recent churn",
                f"churn_reason={r.level}",
                p,
                se=se,
                lower=max(p - Z95 * se, 0.0),
                upper=min(p + Z95 * se, 1.0),
                n=r.n,
                unit="share",
            )
        )
    return _rows(rows)


def run_quantities(outputs: RunOutputs) -> pd.DataFrame:
    """Every monitored quantity of one run (the module docstring explains the columns).

    Returns
    -------
    pandas.DataFrame
        One row per quantity, the columns of :data:`QUANTITY_COLUMNS` (a :class:`Quantity` each).
    """
    survival = survival_quantities(
        outputs.metrics.get("survival", {}),
        {name: outputs.table("survival", name) for name in monitored_tables("history")["survival"]},
    )
    parts = [
        survival,
        effect_quantities(outputs.table("uplift", "effect_matrix")),
        hazard_effect_quantities(outputs.table("uplift", "instrument_hazard_ratios")),
        value_quantities(outputs.table("clv", "values")),
        profile_quantities(outputs.table("monitoring", "input_profile")),
    ]
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else _rows([])
