"""Comparing a run with the previous one and with the trend of the last runs.

The flag rule
-------------
1. Every quantity with a standard error in both runs gets a two-sided
   difference-of-estimates z-test, ``z = (current - previous) / sqrt(se_c^2 +
   se_p^2)`` (on the log scale for ratios and rates). The two estimates are
   treated as independent; runs that share data are positively correlated, which
   makes the test conservative (fewer flags), never more alarming.
2. Every input distribution (a key feature of the active customers) gets a
   chi-square test of homogeneity on its bins and its population stability
   index (PSI) against the previous run's bins.
3. Holm's step-down correction runs over all the tests of the run together, so
   the chance that a run raises one or more false flags is at most ``alpha``
   (the family-wise false-alarm rate per run).
4. A quantity is flagged when its Holm-adjusted p-value is below ``alpha``; an
   input distribution needs in addition a PSI of at least ``psi_threshold``
   (a significant but tiny shift in a large book is not worth a reviewer's time).
5. A quantity without a standard error cannot be flagged; a relative change
   above ``max_untested_change`` is listed as a large untested change.

The trend over the last ``n_runs`` runs is a weighted least-squares slope per
run (weights ``1 / se^2``) with a z-test; a trend is called drifting when its
p-value is below ``alpha`` divided by the number of trends tested (Bonferroni).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from retention_lab.monitor.quantities import MONEY
from retention_lab.monitor.settings import DEFAULTS
from retention_lab.units import Z95

KEYS = ["stage", "family", "quantity", "group"]
PSI_EPSILON = 1e-4
DECILES = np.round(np.linspace(0.1, 0.9, 9), 4)


def group_keys(group: str) -> dict[str, str]:
    """The cell a quantity's group names: ``"instrument=discount|segment=vip"`` -> a mapping."""
    return dict(part.split("=", 1) for part in str(group).split("|") if "=" in part)


def _as_reference(previous: pd.DataFrame) -> pd.DataFrame:
    """The previous run's quantities as a later run compares with them (``reference`` first)."""
    if "reference" not in previous:
        return previous
    out = previous.copy()
    has = out["reference"].notna()
    if not has.any():
        return out
    ref, se = out.loc[has, "reference"], out.loc[has, "reference_se"]
    log = out.loc[has, "scale"].eq("log")
    with np.errstate(divide="ignore", invalid="ignore"):
        centre = np.where(log, np.log(ref), ref)
        lower, upper = centre - Z95 * se, centre + Z95 * se
        out.loc[has, "lower"] = np.where(log, np.exp(lower), lower)
        out.loc[has, "upper"] = np.where(log, np.exp(upper), upper)
    out.loc[has, "estimate"], out.loc[has, "se"] = ref, se
    return out


def compare_quantities(current: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """Current against previous estimate of every quantity both runs have.

    The previous run's ``reference`` replaces its estimate where it has one
    (see ``quantities``).

    Returns
    -------
    pandas.DataFrame
        stage, family, quantity, group, unit, scale, previous, previous_lower,
        previous_upper, current, current_lower, current_upper, change (current -
        previous), relative_change, z, p_value (NaN when untested), tested.
    """
    cols = ["estimate", "se", "lower", "upper"]
    merged = current[[*KEYS, "unit", "scale", *cols]].merge(
        _as_reference(previous)[[*KEYS, *cols]], on=KEYS, suffixes=("_c", "_p")
    )
    log = merged["scale"].eq("log")
    cur, prev = merged["estimate_c"], merged["estimate_p"]
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = np.where(log, np.log(cur) - np.log(prev), cur - prev)
        se = np.sqrt(merged["se_c"] ** 2 + merged["se_p"] ** 2)
        z = diff / se
        relative = np.where(prev != 0, (cur - prev) / prev.abs(), np.nan)
    tested = np.isfinite(z)
    out = pd.DataFrame(
        {
            **{k: merged[k] for k in [*KEYS, "unit", "scale"]},
            "previous": prev,
            "previous_lower": merged["lower_p"],
            "previous_upper": merged["upper_p"],
            "current": cur,
            "current_lower": merged["lower_c"],
            "current_upper": merged["upper_c"],
            "change": cur - prev,
            "relative_change": relative,
            "z": np.where(tested, z, np.nan),
            "p_value": np.where(tested, 2 * stats.norm.sf(np.abs(z)), np.nan),
            "tested": tested,
        }
    )
    return out


def _shares(counts: pd.Series) -> pd.Series:
    shares = counts / counts.sum() if counts.sum() > 0 else counts
    return shares.clip(lower=PSI_EPSILON)


def psi(expected: pd.Series, actual: pd.Series) -> float:
    """Population stability index ``sum((a - e) * ln(a / e))`` of two share vectors.

    Shares are floored at 0.0001 so an empty bin does not give an infinite index.
    """
    e, a = _shares(expected), _shares(actual)
    return float(((a - e) * np.log(a / e)).sum())


def _numeric_counts(previous: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame | None:
    def quantiles(frame):
        levels = frame["level"].str.slice(1).astype(float).to_numpy()
        order = np.argsort(levels)
        return levels[order], frame["value"].to_numpy(float)[order], float(frame["n"].iloc[0])

    lp, vp, n_p = quantiles(previous)
    lc, vc, n_c = quantiles(current)
    edges = np.unique(np.interp(DECILES, lp, vp))
    if len(edges) == 0:
        return None

    def shares(levels, values):
        # the CDF at the edges, interpolated between the stored quantiles; a value
        # repeated over several quantiles (a discrete feature) takes the highest level
        unique, first = np.unique(values[::-1], return_index=True)
        top = levels[::-1][first]
        cdf = np.clip(np.interp(edges, unique, top, left=0.0, right=1.0), 0, 1)
        return np.diff(np.concatenate([[0.0], cdf, [1.0]]))

    return pd.DataFrame({"previous": shares(lp, vp) * n_p, "current": shares(lc, vc) * n_c})


def compare_distributions(current: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """PSI and chi-square test of each key feature of the two input profiles.

    Numeric features are cut at the previous run's deciles; both runs' shares
    are read from their stored quantiles.

    Returns
    -------
    pandas.DataFrame
        stage ("data"), family ("input distribution"), quantity ("PSI"), group
        (``feature=<name>``), unit, scale, previous (0), current (the PSI),
        change, relative_change (NaN), z (NaN), p_value (chi-square), tested,
        psi, top_level (the bin whose share moved most).
    """
    rows = []
    for section in ("categorical", "numeric"):
        cur = current.loc[current["section"] == section]
        prev = previous.loc[previous["section"] == section]
        for feature in sorted(set(cur["feature"]) & set(prev["feature"])):
            c, p = cur.loc[cur["feature"] == feature], prev.loc[prev["feature"] == feature]
            if section == "categorical":
                table = pd.DataFrame(
                    {
                        "previous": p.set_index("level")["value"],
                        "current": c.set_index("level")["value"],
                    }
                ).fillna(0.0)
            else:
                table = _numeric_counts(p, c)
                if table is None:
                    continue
            table = table.loc[table.sum(axis=1) > 0]
            if len(table) < 2:
                continue
            index = psi(table["previous"], table["current"])
            p_value = float(stats.chi2_contingency(table.T.to_numpy())[1])
            moved = (_shares(table["current"]) - _shares(table["previous"])).abs()
            rows.append(
                {
                    "stage": "data",
                    "family": "input distribution",
                    "quantity": "PSI",
                    "group": f"feature={feature}",
                    "unit": "index",
                    "scale": "linear",
                    "previous": 0.0,
                    "current": index,
                    "change": index,
                    "p_value": p_value,
                    "tested": True,
                    "psi": index,
                    "top_level": str(moved.idxmax()) if section == "categorical" else "",
                }
            )
    return pd.DataFrame(rows)


def holm(p_values: pd.Series) -> pd.Series:
    """Holm step-down adjusted p-values (statsmodels), NaN staying NaN."""
    out = pd.Series(np.nan, index=p_values.index)
    tested = p_values.notna()
    if tested.any():
        out[tested] = multipletests(p_values[tested].to_numpy(float), method="holm")[1]
    return out


def flag_changes(
    comparison: pd.DataFrame,
    *,
    alpha: float = DEFAULTS.alpha,
    psi_threshold: float = DEFAULTS.psi_threshold,
    max_untested_change: float = DEFAULTS.max_untested_change,
) -> pd.DataFrame:
    """Apply the flag rule (module docstring) to a comparison table.

    Returns
    -------
    pandas.DataFrame
        ``comparison`` (the columns of :func:`compare_quantities`: stage, family,
        quantity, group, previous, current, z, p_value, tested, ...) with ``p_holm``,
        ``flagged`` (bool) and ``large_untested`` (bool) added.
    """
    out = comparison.copy()
    if out.empty:
        return out.assign(p_holm=[], flagged=[], large_untested=[])
    out["p_holm"] = holm(out["p_value"])
    significant = out["p_holm"] < alpha
    psi_col = out["psi"] if "psi" in out else pd.Series(np.nan, index=out.index)
    is_distribution = out["family"].eq("input distribution")
    out["flagged"] = significant & (~is_distribution | (psi_col >= psi_threshold))
    out["large_untested"] = ~out["tested"].astype(bool) & (
        out["relative_change"].abs() > max_untested_change
    )
    return out


def trends(history: pd.DataFrame, *, alpha: float = DEFAULTS.alpha) -> pd.DataFrame:
    """Weighted least-squares trend per quantity over the runs in ``history``.

    ``history`` holds ``run_order`` (0 = oldest) and the quantity columns;
    quantities with fewer than three runs with a standard error are left out.

    Returns
    -------
    pandas.DataFrame
        stage, family, quantity, group, runs, slope_per_run (on the comparison
        scale: log units for ratios and rates), slope_se, p_value, drifting.
    """
    rows = []
    for key, g in history.groupby(KEYS, sort=False):
        g = g.loc[np.isfinite(g["se"]) & (g["se"] > 0) & np.isfinite(g["estimate"])]
        if len(g) < 3 or g["run_order"].nunique() < 3:
            continue
        y = np.log(g["estimate"]) if g["scale"].iloc[0] == "log" else g["estimate"]
        x, w = g["run_order"].to_numpy(float), 1 / g["se"].to_numpy() ** 2
        xm = np.average(x, weights=w)
        sxx = np.sum(w * (x - xm) ** 2)
        slope = np.sum(w * (x - xm) * (y - np.average(y, weights=w))) / sxx
        se = 1 / np.sqrt(sxx)
        rows.append(
            dict(zip(KEYS, key, strict=True))
            | {
                "runs": len(g),
                "slope_per_run": slope,
                "slope_se": se,
                "p_value": 2 * stats.norm.sf(abs(slope / se)),
            }
        )
    out = pd.DataFrame(rows, columns=[*KEYS, "runs", "slope_per_run", "slope_se", "p_value"])
    out["drifting"] = out["p_value"] < alpha / max(len(out), 1)
    return out


def rank_flags(
    flags: pd.DataFrame,
    value_base: pd.Series,
    *,
    unit: str = MONEY,
    plan_actions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Rank flagged changes by how much of the plan's value they move.

    ``impact = min(|relative change|, 1) * base``. For a flag on an instrument
    (its group names ``instrument=...``) that the plan uses, the base is the
    saved value the plan expects from that instrument's actions in the flag's
    problem type and segment (``plan_actions``: instrument, problem_type,
    segment, expected_saved_value). Otherwise it is the value of the customers
    concerned: ``value_base`` by segment (read from the group, ``segment=vip``;
    index "all" for the whole book). An input distribution's relative change is
    its PSI. Ties are broken by the size of the z statistic.

    Returns
    -------
    pandas.DataFrame
        The flags with segment, impact, impact_unit, impact_basis ("plan" or
        "customers") and rank (1 = largest).
    """
    if flags.empty:
        return flags.assign(segment=[], impact=[], impact_unit=[], impact_basis=[], rank=[])
    out = flags.copy()
    out["segment"] = [group_keys(g).get("segment", "all") for g in out["group"]]
    size = out["relative_change"].where(~out["family"].eq("input distribution"), out["current"])
    if "scale" in out:
        log_size = np.expm1(np.abs(np.log(out["current"] / out["previous"])))
        size = size.where(~out["scale"].eq("log"), log_size)
    base = out["segment"].map(value_base).fillna(value_base.get("all", np.nan))
    planned = _planned_value(out["group"], plan_actions)
    out["impact_basis"] = np.where(planned > 0, "plan", "customers")
    base = base.where(~(planned > 0), planned)
    out["impact"] = np.minimum(size.abs(), 1.0) * base
    out["impact_unit"] = unit
    out = out.assign(_z=out["z"].abs().fillna(0)).sort_values(
        ["impact", "_z"], ascending=False, na_position="last"
    )
    out["rank"] = np.arange(1, len(out) + 1)
    return out.drop(columns="_z").reset_index(drop=True)


def _planned_value(groups: pd.Series, actions: pd.DataFrame | None) -> pd.Series:
    """Saved value the plan expects from the instrument (problem type, segment) of each group."""
    planned = pd.Series(0.0, index=groups.index)
    if actions is None or actions.empty or "expected_saved_value" not in actions:
        return planned
    for i, group in groups.items():
        keys = group_keys(group)
        if "instrument" not in keys:
            continue
        mask = np.ones(len(actions), bool)
        for column, level in keys.items():
            if column in actions.columns:
                mask &= actions[column].astype(str).to_numpy() == level
        planned[i] = float(actions.loc[mask, "expected_saved_value"].sum())
    return planned


def ci_overlap(comparison: pd.DataFrame) -> pd.Series:
    """Whether the two 95% intervals overlap (shown beside the z-test for reviewers)."""
    return ~(
        (comparison["current_lower"] > comparison["previous_upper"])
        | (comparison["current_upper"] < comparison["previous_lower"])
    )


__all__ = [
    "Z95",
    "ci_overlap",
    "compare_distributions",
    "compare_quantities",
    "flag_changes",
    "holm",
    "psi",
    "rank_flags",
    "trends",
]
