"""Partial pooling of the effect cells (instrument x problem type x segment), empirical Bayes.

Most of the 75 cells of a telecom market hold a few dozen randomised cases;
their raw estimates are noisy and a table of 75 of them, each with its own
significance test, finds "effects" by chance. Within an instrument the cells
share information: a technician visit that helps against network problems in
one segment probably helps in the others. Per instrument the cell effects are
modelled as

``theta[problem, segment] = mu + a[problem] + b[segment] + u[problem, segment]``

with normal random effects ``a ~ N(0, tau_p^2)``, ``b ~ N(0, tau_s^2)``,
``u ~ N(0, tau_c^2)`` and each raw estimate ``y ~ N(theta, se^2)`` with its
own standard error. The three variances get a uniform prior and are
integrated out on a grid weighted by the restricted likelihood (``mu`` under a
flat prior); given them, the cells' posterior means and variances are
Henderson's (including the uncertainty of ``mu``), mixed over the grid.
Cells with too few cases for a raw estimate get the model's prediction and
its wider interval; no interval has zero width.

Raw estimates use every case that identifies an effect: the randomised cases
directly (difference in means; a rate ratio of churn on the log-hazard scale)
and the rule-assigned cases through their doubly robust (AIPW) scores (inverse
probability weights on the log-hazard scale). The two are combined by inverse
variance, so the randomised share counts as much as its precision warrants.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from retention_lab.units import Z95
from retention_lab.uplift import effects as ef
from retention_lab.uplift.cases import UpliftInput

SCALES = ("retention", "log_hazard")
POOLED_COLUMNS = [
    "instrument",
    "scale",
    "problem_type",
    "segment",
    "raw",
    "raw_se",
    "raw_lower",
    "raw_upper",
    "random_estimate",
    "random_se",
    "rule_estimate",
    "rule_se",
    "n_treated",
    "n_control",
    "pooled",
    "pooled_sd",
    "lower",
    "upper",
    "shrinkage",
    "prob_benefit",
    "lfsr",
    "true_effect",
]


def _combine(est: np.ndarray, se: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-variance combination over the last axis (NaN entries skipped)."""
    w = np.where(np.isfinite(est) & np.isfinite(se) & (se > 0), 1.0 / np.square(se), 0.0)
    total = w.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(total > 0, (w * np.nan_to_num(est)).sum(axis=-1) / total, np.nan)
        return mean, np.where(total > 0, 1.0 / np.sqrt(total), np.nan)


def _floor_se(table: pd.DataFrame, outcome: pd.Series, arms: pd.Series, control: str):
    """Standard errors never below that of one event in the cell's arms (no zero width)."""
    p = (outcome.sum() + 1.0) / (len(outcome) + 2.0)
    floor = np.sqrt(p * (1 - p) * (1 / table["n_treated"].clip(lower=1)
                                   + 1 / table["n_control"].clip(lower=1)))  # fmt: skip
    return np.fmax(table["std_error"].to_numpy(float), floor.to_numpy(float))


def retention_cells(
    data: UpliftInput, scores: pd.DataFrame, *, keep: np.ndarray, min_cases: int = 2
) -> pd.DataFrame:
    """Raw cell effects on retention at the horizon: randomised, rule (AIPW) and combined.

    Parameters
    ----------
    scores
        AIPW scores of every arm (``effects.aipw_scores``), rows aligned with ``data.cases``.
    keep
        Cases with common support (rule cases outside it are left out).

    Returns
    -------
    pandas.DataFrame
        instrument, problem_type, segment, random_estimate, random_se,
        rule_estimate, rule_se, n_treated, n_control, raw, raw_se.
    """
    by = ["problem_type", "segment"]
    rand = data.randomised()
    y = data.cases[data.outcome_col]
    arms = data.cases[data.treatment_col].astype(str)
    parts = []
    for name, mask in (("random", rand), ("rule", ~rand & keep)):
        if name == "random":
            t = ef.difference_in_means(
                data.cases[mask], treatment_col=data.treatment_col,
                outcome_col=data.outcome_col, control=data.control, by=by, min_cases=min_cases,
            )  # fmt: skip
        else:
            t = ef.aipw_effects(
                data, scores, mask=mask, outcome_col=data.outcome_col, by=by,
                min_cases=min_cases, population="rule",
            )  # fmt: skip
        t["std_error"] = _floor_se(t, y[mask], arms[mask], data.control)
        t = t.rename(
            columns={
                "effect": f"{name}_estimate",
                "std_error": f"{name}_se",
                "n_treated": f"{name}_n1",
                "n_control": f"{name}_n0",
            }
        )
        parts.append(t[[*by, "instrument", f"{name}_estimate", f"{name}_se",
                        f"{name}_n1", f"{name}_n0"]])  # fmt: skip
    cells = parts[0].merge(parts[1], on=[*by, "instrument"], how="outer")
    raw, raw_se = _combine(
        cells[["random_estimate", "rule_estimate"]].to_numpy(float),
        cells[["random_se", "rule_se"]].to_numpy(float),
    )
    cells["n_treated"] = (
        cells[["random_n1", "rule_n1"]].astype(float).fillna(0).sum(axis=1).astype(int)
    )
    cells["n_control"] = (
        cells[["random_n0", "rule_n0"]].astype(float).fillna(0).sum(axis=1).astype(int)
    )
    return cells.assign(raw=raw, raw_se=raw_se).drop(
        columns=["random_n1", "random_n0", "rule_n1", "rule_n0"]
    )


def _log_rate_ratio(d, t, w, treated) -> tuple[float, float]:
    """Weighted log churn-rate ratio (treated vs control) and its sandwich standard error."""
    out = []
    for arm in (True, False):
        m = treated == arm
        events, exposure = (w[m] * d[m]).sum(), (w[m] * t[m]).sum()
        if events <= 0 or exposure <= 0:
            return np.nan, np.nan
        rate = events / exposure
        out.append((np.log(rate), (np.square(w[m] * (d[m] - rate * t[m]))).sum() / events**2))
    (l1, v1), (l0, v0) = out
    return l1 - l0, float(np.sqrt(v1 + v0))


def log_hazard_cells(
    data: UpliftInput, propensity: pd.DataFrame, *, keep: np.ndarray, min_cases: int = 2
) -> pd.DataFrame:
    """Raw cell effects on the log hazard of churn over the outcome horizon.

    The churn rate (events per week at risk within the horizon) of each arm,
    treated against control: the randomised cases unweighted, the rule cases
    weighted by the inverse of their modelled propensity; the two log rate
    ratios are combined by inverse variance.

    Returns
    -------
    pandas.DataFrame
        Same columns as :func:`retention_cells`.
    """
    cases = data.cases
    h = float(data.horizon_days or 182)
    follow = (cases["end_date"] - cases["date"]).dt.days.to_numpy(float)
    d = (1 - cases[data.outcome_col].to_numpy(float)).astype(float)
    t = np.where(d > 0, np.minimum(follow, h), h) / 7.0
    arms = cases[data.treatment_col].astype(str).to_numpy()
    rand = data.randomised()
    e = np.ones(len(cases))
    for arm in data.arms:
        m = arms == arm
        e[m] = propensity[arm].to_numpy(float)[m]
    w_rule = 1.0 / e
    keys = cases[["problem_type", "segment"]].astype(str)
    rows = []
    for (kind, seg), idx in keys.groupby(["problem_type", "segment"]).groups.items():
        pos = cases.index.get_indexer(idx)
        for inst in data.instruments:
            row = {"problem_type": kind, "segment": seg, "instrument": inst}
            for name, mask, w in (("random", rand, np.ones(len(cases))),
                                  ("rule", ~rand & keep, w_rule)):  # fmt: skip
                sel = pos[mask[pos] & np.isin(arms[pos], [inst, data.control])]
                n1 = int((arms[sel] == inst).sum())
                n0 = sel.size - n1
                est = se = np.nan
                if n1 >= min_cases and n0 >= min_cases:
                    est, se = _log_rate_ratio(d[sel], t[sel], w[sel], arms[sel] == inst)
                row.update({f"{name}_estimate": est, f"{name}_se": se,
                            f"{name}_n1": n1, f"{name}_n0": n0})  # fmt: skip
            rows.append(row)
    cells = pd.DataFrame(rows)
    raw, raw_se = _combine(
        cells[["random_estimate", "rule_estimate"]].to_numpy(float),
        cells[["random_se", "rule_se"]].to_numpy(float),
    )
    cells["n_treated"] = cells["random_n1"] + cells["rule_n1"]
    cells["n_control"] = cells["random_n0"] + cells["rule_n0"]
    return cells.assign(raw=raw, raw_se=raw_se).drop(
        columns=["random_n1", "random_n0", "rule_n1", "rule_n0"]
    )


def _design(problems: np.ndarray, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    zp = (problems[:, None] == np.unique(problems)[None, :]).astype(float)
    zs = (segments[:, None] == np.unique(segments)[None, :]).astype(float)
    return zp @ zp.T, zs @ zs.T


GRID = 10  # points per standard deviation of the grid over (tau_p, tau_s, tau_c)


def pool_instrument(cells: pd.DataFrame) -> pd.DataFrame:
    """Posterior of one instrument's cells given their raw estimates (see the module doc).

    The three standard deviations get a uniform prior on ``[0, 2 x spread]``
    (``spread`` the larger of the raw estimates' spread and their typical
    standard error) and are integrated out on a grid, weighted by the
    restricted likelihood (``mu`` integrated out under a flat prior): the
    intervals carry the uncertainty of the variances too, which matters with
    five problem types and three segments.

    ``cells``: problem_type, segment, raw, raw_se (NaN where not estimable).

    Returns
    -------
    pandas.DataFrame
        ``cells`` plus pooled, pooled_sd, prob_positive (posterior probability
        of an effect above 0), shrinkage (weight taken off the raw estimate, 1
        where there is none), tau_problem, tau_segment, tau_cell (posterior means).
    """
    kp, ks = _design(cells["problem_type"].astype(str).to_numpy(),
                     cells["segment"].astype(str).to_numpy())  # fmt: skip
    y_all, se_all = cells["raw"].to_numpy(float), cells["raw_se"].to_numpy(float)
    obs = np.flatnonzero(np.isfinite(y_all) & np.isfinite(se_all) & (se_all > 0))
    out = cells.copy()
    if obs.size < 2:
        cols = ["pooled", "pooled_sd", "prob_positive", "shrinkage", "tau_problem",
                "tau_segment", "tau_cell"]  # fmt: skip
        return out.assign(**dict.fromkeys(cols, np.nan))
    y, s2 = y_all[obs], np.square(se_all[obs])
    spread = max(float(np.std(y)), float(np.sqrt(s2.mean())), 1e-9)
    axis = np.linspace(0.0, 2.0 * spread, GRID)
    tp, ts, tc = (t.ravel() for t in np.meshgrid(axis, axis, axis, indexing="ij"))
    k = len(cells)
    prior = (np.square(tp)[:, None, None] * kp + np.square(ts)[:, None, None] * ks
             + np.square(tc)[:, None, None] * np.eye(k))  # fmt: skip
    m_o = prior[:, :, obs]
    vi = np.linalg.inv(prior[:, obs][:, :, obs] + np.diag(s2))
    a = vi.sum(axis=(1, 2))
    mu = np.einsum("gij,j->g", vi, y) / a
    resid = y[None, :] - mu[:, None]
    gain = m_o @ vi  # (grid, cell, observed)
    mean = mu[:, None] + np.einsum("gkj,gj->gk", gain, resid)
    lever = 1.0 - gain.sum(axis=2)
    var = (np.diagonal(prior, axis1=1, axis2=2) - np.einsum("gkj,gkj->gk", gain, m_o)
           + np.square(lever) / a[:, None])  # fmt: skip
    var = np.maximum(var, 1e-18)
    _, logdet = np.linalg.slogdet(prior[:, obs][:, :, obs] + np.diag(s2))
    nll = 0.5 * (logdet + np.log(a) + np.einsum("gi,gij,gj->g", resid, vi, resid))
    w = np.exp(-(nll - nll.min()))
    w /= w.sum()
    post_mean = w @ mean
    post_var = w @ (var + np.square(mean)) - np.square(post_mean)
    own = np.ones(k)
    own[obs] = 1.0 - w @ gain[:, obs, np.arange(obs.size)]
    return out.assign(
        pooled=post_mean,
        pooled_sd=np.sqrt(np.maximum(post_var, 0.0)),
        prob_positive=w @ stats.norm.cdf(mean / np.sqrt(var)),
        shrinkage=own,
        tau_problem=w @ tp,
        tau_segment=w @ ts,
        tau_cell=w @ tc,
    )


def pool_cells(cells: pd.DataFrame, *, scale: str) -> pd.DataFrame:
    """Pool every instrument's cells; add intervals and posterior probabilities.

    ``prob_benefit`` is the posterior probability that the instrument helps in
    the cell (a retention gain above 0, or a log hazard below 0); ``lfsr``
    (local false sign rate) is the probability that the sign of the pooled
    estimate is wrong, the quantity to read instead of a significance star.

    Returns
    -------
    pandas.DataFrame
        :data:`POOLED_COLUMNS` (true_effect NaN unless ``cells`` carries it).
    """
    parts = [pool_instrument(g) for _, g in cells.groupby("instrument", sort=True)]
    out = pd.concat(parts, ignore_index=True) if parts else cells.iloc[0:0].copy()
    out["scale"] = scale
    out["raw_lower"], out["raw_upper"] = out["raw"] - Z95 * out["raw_se"], out["raw"] + Z95 * out[
        "raw_se"]  # fmt: skip
    out["lower"] = out["pooled"] - Z95 * out["pooled_sd"]
    out["upper"] = out["pooled"] + Z95 * out["pooled_sd"]
    p_pos = np.clip(out["prob_positive"].to_numpy(float), 0.0, 1.0)
    out["prob_benefit"] = p_pos if scale == "retention" else 1.0 - p_pos
    out["lfsr"] = np.minimum(p_pos, 1.0 - p_pos)
    for c in POOLED_COLUMNS:
        if c not in out.columns:
            out[c] = np.nan
    return out[POOLED_COLUMNS + [c for c in ("tau_problem", "tau_segment", "tau_cell")]]


def true_cell_effects(data: UpliftInput, *, scale: str) -> pd.DataFrame:
    """Simulated data: each cell's true effect over its cases (both scales).

    Returns
    -------
    pandas.DataFrame
        problem_type, segment, instrument, true_effect.
    """
    by = ["problem_type", "segment"]
    if data.truth is None:
        return pd.DataFrame(columns=[*by, "instrument", "true_effect"])
    if scale == "retention":
        return ef.true_effects(data, mask=np.ones(len(data.cases), bool), by=by)
    tr = data.truth
    frame = data.cases[by].astype(str).reset_index(drop=True)
    for inst in data.instruments:
        frame[inst] = tr[f"log_hazard:{inst}"].to_numpy() - tr[f"log_hazard:{data.control}"]
    wide = frame.groupby(by, observed=True)[data.instruments].mean().reset_index()
    return wide.melt(id_vars=by, var_name="instrument", value_name="true_effect")


def pooled_effects(
    data: UpliftInput,
    scores: pd.DataFrame,
    propensity: pd.DataFrame,
    *,
    keep: np.ndarray,
    min_cases: int = 2,
) -> pd.DataFrame:
    """Raw and pooled cell effects on both scales (retention at the horizon, log hazard).

    Returns
    -------
    pandas.DataFrame
        :data:`POOLED_COLUMNS` plus the fitted standard deviations, one row per
        scale x instrument x problem type x segment.
    """
    if not {"problem_type", "segment"} <= set(data.cases.columns):
        return pd.DataFrame(columns=POOLED_COLUMNS)
    parts = []
    for scale in SCALES:
        if scale == "retention":
            cells = retention_cells(data, scores, keep=keep, min_cases=min_cases)
        elif "end_date" in data.cases.columns:
            cells = log_hazard_cells(data, propensity, keep=keep, min_cases=min_cases)
        else:
            continue
        truth = true_cell_effects(data, scale=scale)
        cells = cells.drop(columns="true_effect", errors="ignore").merge(
            truth, on=["problem_type", "segment", "instrument"], how="left"
        )
        parts.append(pool_cells(cells, scale=scale))
    return pd.concat(parts, ignore_index=True)


def pooling_accuracy(pooled: pd.DataFrame) -> pd.DataFrame:
    """Simulated data: RMSE of raw and pooled cell estimates against truth, and coverage.

    Returns
    -------
    pandas.DataFrame
        scale, cells, raw_rmse, pooled_rmse, rmse_ratio, raw_coverage,
        pooled_coverage (share of true effects inside the 95 % intervals; the
        raw RMSE and coverage over the cells that have a raw estimate).
    """
    rows = []
    for scale, g in pooled.dropna(subset=["true_effect"]).groupby("scale", sort=False):
        r = g.dropna(subset=["raw"])
        raw_rmse = float(np.sqrt(np.mean(np.square(r["raw"] - r["true_effect"]))))
        pooled_rmse = float(np.sqrt(np.mean(np.square(r["pooled"] - r["true_effect"]))))
        rows.append(
            {
                "scale": scale,
                "cells": len(g),
                "raw_rmse": raw_rmse,
                "pooled_rmse": pooled_rmse,
                "rmse_ratio": pooled_rmse / raw_rmse if raw_rmse > 0 else np.nan,
                "raw_coverage": float(
                    (
                        (r["raw_lower"] <= r["true_effect"]) & (r["true_effect"] <= r["raw_upper"])
                    ).mean()
                ),
                "pooled_coverage": float(
                    ((g["lower"] <= g["true_effect"]) & (g["true_effect"] <= g["upper"])).mean()
                ),
            }  # fmt: skip
        )
    return pd.DataFrame(rows)


def observational_vs_randomised(cells: pd.DataFrame, *, min_se: float = 0.5) -> pd.DataFrame:
    """Per cell with both: the rule cases' doubly robust estimate against the randomised one.

    ``cells`` is :func:`pool_cells` output (one scale). Cells where either
    estimate is missing, or its standard error exceeds ``min_se`` (too few
    cases to compare), are left out.

    Returns
    -------
    pandas.DataFrame
        instrument, problem_type, segment, random_estimate, rule_estimate,
        difference (rule - randomised), lower, upper, disagree (95 % interval
        of the difference excludes 0).
    """
    c = cells.dropna(subset=["random_estimate", "rule_estimate"])
    c = c[(c["random_se"] <= min_se) & (c["rule_se"] <= min_se)]
    diff = c["rule_estimate"] - c["random_estimate"]
    se = np.sqrt(np.square(c["random_se"]) + np.square(c["rule_se"]))
    out = c[["instrument", "problem_type", "segment", "random_estimate", "rule_estimate"]].assign(
        difference=diff, lower=diff - Z95 * se, upper=diff + Z95 * se
    )
    out["disagree"] = (out["lower"] > 0) | (out["upper"] < 0)
    return out.reset_index(drop=True)
