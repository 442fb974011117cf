"""Evaluation of uplift models on held-out randomised cases only.

For each instrument and learner, the held-out randomised cases of that
instrument and of the control are sorted by predicted uplift. With
``n_t(phi), n_c(phi)`` treated and control cases and ``y_t, y_c`` retained
ones in the top share ``phi``:

- uplift(phi) = y_t/n_t - y_c/n_c: the observed effect within the top ``phi``;
- qini(phi) = (y_t - y_c n_t/n_c) / N_t: extra customers retained per treated
  case of the whole held-out set (``qini(1)`` is the average effect);
- the Qini coefficient is the mean over ``phi`` of ``qini(phi) - phi qini(1)``
  (area between the curve and random targeting), and the AUUC is the mean of
  ``phi * uplift(phi)``; both unnormalised, in the outcome's units.

The same curves in money (:func:`net_revenue`): each case's outcome is its
revenue over the horizon minus the instrument's cost where it was treated, so
``qini(phi)`` is the extra net revenue per treated case of the held-out set
when the top share by predicted uplift is treated.

Bands come from a Poisson bootstrap of the held-out cases (order kept fixed).
The curves are computed here in numpy because the bootstrap needs them
thousands of times; ``tests/test_uplift.py`` checks them against causalml's
``get_qini``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from retention_lab.units import Z95

SHARES = (0.1, 0.2, 0.3)
GRID = np.linspace(0.01, 1.0, 100)
METRIC_COLUMNS = [
    "instrument",
    "learner",
    "n_treated",
    "n_control",
    "qini",
    "qini_lower",
    "qini_upper",
    "auuc",
    "auuc_lower",
    "auuc_upper",
    *[f"uplift_at_{int(s * 100)}" for s in SHARES],
    *[f"uplift_at_{int(s * 100)}_lower" for s in SHARES],
    *[f"uplift_at_{int(s * 100)}_upper" for s in SHARES],
]

CURVE_COLUMNS = [
    "instrument",
    "learner",
    "share",
    "qini",
    "qini_lower",
    "qini_upper",
    "uplift",
    "uplift_lower",
    "uplift_upper",
    "random",
]


def _curves(score, w, y, weights, grid=GRID):
    """Qini and uplift on ``grid`` for every row of ``weights`` (bootstrap replicate)."""
    order = np.argsort(-score, kind="stable")
    w, y = w[order], y[order]
    wt = weights[:, order]
    nt = np.cumsum(wt * w, axis=1)
    nc = np.cumsum(wt * (1 - w), axis=1)
    yt = np.cumsum(wt * w * y, axis=1)
    yc = np.cumsum(wt * (1 - w) * y, axis=1)
    pos = np.clip(np.ceil(grid * len(w)).astype(int) - 1, 0, len(w) - 1)
    nt, nc, yt, yc = nt[:, pos], nc[:, pos], yt[:, pos], yc[:, pos]
    with np.errstate(invalid="ignore", divide="ignore"):
        uplift = np.where((nt > 0) & (nc > 0), yt / nt - yc / nc, np.nan)
        qini = np.where(nc > 0, yt - yc * nt / nc, np.nan) / nt[:, -1:]
    return qini, uplift


def net_revenue(
    cases: pd.DataFrame, *, treatment_col: str, control: str, revenue_col: str, cost_col: str
) -> np.ndarray:
    """Revenue over the horizon minus the instrument's cost (none for the control arm)."""
    treated = cases[treatment_col].astype(str).to_numpy() != str(control)
    cost = cases[cost_col].to_numpy(float)
    return cases[revenue_col].to_numpy(float) - np.where(treated, np.nan_to_num(cost), 0.0)


def uplift_curves(
    frame: pd.DataFrame,
    *,
    score_col: str,
    treatment_col: str = "instrument",
    outcome_col: str = "retained",
    instrument: str,
    control: str = "none",
) -> pd.DataFrame:
    """Qini and uplift curves of one instrument on a frame of randomised cases.

    Returns
    -------
    pandas.DataFrame
        share (targeted share, 0.01-1), qini, uplift, random (``share * qini(1)``).
    """
    arms = frame[treatment_col].astype(str).to_numpy()
    m = np.isin(arms, [instrument, control])
    w = (arms[m] == instrument).astype(float)
    y = frame[outcome_col].to_numpy(float)[m]
    qini, uplift = _curves(frame[score_col].to_numpy(float)[m], w, y, np.ones((1, m.sum())))
    return pd.DataFrame(
        {"share": GRID, "qini": qini[0], "uplift": uplift[0], "random": GRID * qini[0, -1]}
    )


def evaluate(
    test: pd.DataFrame,
    predictions: dict[str, pd.DataFrame],
    *,
    treatment_col: str,
    outcome_col: str,
    control: str,
    n_bootstrap: int = 200,
    random_state=None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Qini/AUUC/uplift-at-k with bootstrap bands, and the curves, per instrument and learner.

    Parameters
    ----------
    test
        Held-out randomised cases.
    predictions
        Learner -> predicted effects on ``test`` (one column per instrument).

    Returns
    -------
    tuple of pandas.DataFrame
        ``metrics`` (columns :data:`METRIC_COLUMNS`) and ``curves`` (instrument,
        learner, share, qini, qini_lower, qini_upper, uplift, uplift_lower,
        uplift_upper, random).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bootstrap slices in tiny arms
        return _evaluate(
            test, predictions, treatment_col, outcome_col, control, n_bootstrap, random_state
        )


def _evaluate(test, predictions, treatment_col, outcome_col, control, n_bootstrap, random_state):
    rng = np.random.default_rng(random_state)
    arms = test[treatment_col].astype(str).to_numpy()
    y_all = test[outcome_col].to_numpy(float)
    rows, curves = [], []
    for learner, pred in predictions.items():
        for inst in pred.columns:
            m = np.isin(arms, [inst, control])
            w = (arms[m] == inst).astype(float)
            if w.sum() < 2 or (1 - w).sum() < 2:
                continue
            y, score = y_all[m], pred[inst].to_numpy(float)[m]
            weights = np.vstack([np.ones(m.sum()), rng.poisson(1.0, (n_bootstrap, m.sum()))])
            qini, uplift = _curves(score, w, y, weights)
            area = np.nanmean(qini - GRID * qini[:, -1:], axis=1)
            auuc = np.nanmean(GRID * uplift, axis=1)

            def band(values):
                return values[0], *np.nanpercentile(values[1:], [2.5, 97.5])

            row = {
                "instrument": inst,
                "learner": learner,
                "n_treated": int(w.sum()),
                "n_control": int((1 - w).sum()),
            }
            row["qini"], row["qini_lower"], row["qini_upper"] = band(area)
            row["auuc"], row["auuc_lower"], row["auuc_upper"] = band(auuc)
            for s in SHARES:
                j = int(round(s * 100)) - 1
                v, lo, hi = band(uplift[:, j])
                k = int(s * 100)
                row[f"uplift_at_{k}"], row[f"uplift_at_{k}_lower"], row[f"uplift_at_{k}_upper"] = (
                    v,
                    lo,
                    hi,
                )
            rows.append(row)
            q_lo, q_hi = np.nanpercentile(qini[1:], [2.5, 97.5], axis=0)
            u_lo, u_hi = np.nanpercentile(uplift[1:], [2.5, 97.5], axis=0)
            curves.append(
                pd.DataFrame(
                    {
                        "instrument": inst,
                        "learner": learner,
                        "share": GRID,
                        "qini": qini[0],
                        "qini_lower": q_lo,
                        "qini_upper": q_hi,
                        "uplift": uplift[0],
                        "uplift_lower": u_lo,
                        "uplift_upper": u_hi,
                        "random": GRID * qini[0, -1],
                    }
                )
            )
    metrics = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    curves = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=CURVE_COLUMNS)
    return metrics, curves


def calibration(
    test: pd.DataFrame,
    predictions: dict[str, pd.DataFrame],
    *,
    treatment_col: str,
    outcome_col: str,
    control: str,
    bins: int = 10,
) -> pd.DataFrame:
    """Observed against predicted uplift by decile of the prediction, with 95 % CIs.

    Returns
    -------
    pandas.DataFrame
        instrument, learner, decile (1 = lowest predicted), predicted (mean),
        observed (difference in means), lower, upper, n_treated, n_control.
    """
    arms = test[treatment_col].astype(str).to_numpy()
    y_all = test[outcome_col].to_numpy(float)
    rows = []
    for learner, pred in predictions.items():
        for inst in pred.columns:
            m = np.isin(arms, [inst, control])
            if m.sum() < bins * 4:
                continue
            score = pred[inst].to_numpy(float)[m]
            w, y = arms[m] == inst, y_all[m]
            rank = pd.Series(score).rank(method="first").to_numpy()
            dec = np.ceil(rank * bins / len(score)).astype(int)
            for d in range(1, bins + 1):
                k = dec == d
                y1, y0 = y[k & w], y[k & ~w]
                obs = se = np.nan
                if len(y1) > 1 and len(y0) > 1:
                    obs = y1.mean() - y0.mean()
                    se = np.sqrt(y1.var(ddof=1) / len(y1) + y0.var(ddof=1) / len(y0))
                rows.append(
                    {
                        "instrument": inst,
                        "learner": learner,
                        "decile": d,
                        "predicted": score[k].mean(),
                        "observed": obs,
                        "lower": obs - Z95 * se,
                        "upper": obs + Z95 * se,
                        "n_treated": int(len(y1)),
                        "n_control": int(len(y0)),
                    }
                )
    cols = [
        "instrument",
        "learner",
        "decile",
        "predicted",
        "observed",
        "lower",
        "upper",
        "n_treated",
        "n_control",
    ]
    return pd.DataFrame(rows, columns=cols)


def choose_learners(metrics: pd.DataFrame) -> pd.DataFrame:
    """The learner per instrument, by a fixed rule on the held-out randomised cases.

    Rule: take the learner with the highest Qini coefficient for the
    instrument when its bootstrap band lies above zero (``reliable``: its
    ranking beats random targeting). Otherwise no learner separates from
    noise for this instrument, and the learner with the highest mean Qini
    coefficient over all instruments is taken (pooling is steadier than
    picking the noisiest winner).

    Returns
    -------
    pandas.DataFrame
        instrument, learner, qini, qini_lower, qini_upper, reliable, rule.
    """
    cols = ["instrument", "learner", "qini", "qini_lower", "qini_upper", "reliable", "rule"]
    if metrics.empty:
        return pd.DataFrame(columns=cols)
    pooled = metrics.groupby("learner")["qini"].mean().idxmax()
    rows = []
    for _, g in metrics.groupby("instrument", sort=True):
        best = g.loc[g["qini"].idxmax()]
        if best["qini_lower"] > 0:
            rule = "highest Qini coefficient for this instrument (band above zero)"
        else:
            best = g[g["learner"] == pooled].iloc[0]
            rule = "no reliable winner: highest mean Qini coefficient over all instruments"
        rows.append(
            {**best[cols[:5]].to_dict(), "reliable": bool(best["qini_lower"] > 0), "rule": rule}
        )
    return pd.DataFrame(rows, columns=cols)


def truth_metrics(
    test: pd.DataFrame,
    predictions: dict[str, pd.DataFrame],
    truth: pd.DataFrame,
    *,
    control: str,
    share: float = 0.3,
) -> pd.DataFrame:
    """Simulated data: predicted against true effects on the held-out cases.

    Returns
    -------
    pandas.DataFrame
        instrument, learner, pehe (root mean squared error of the individual
        effect), correlation (Pearson, predicted vs true), true_ate,
        true_gain_top (mean true effect among the top ``share`` by prediction),
        true_gain_random (mean true effect of a random ``share``: the average).
    """
    rows = []
    k = max(1, int(round(share * len(test))))
    for learner, pred in predictions.items():
        for inst in pred.columns:
            tau = truth[inst].to_numpy() - truth[control].to_numpy()
            hat = pred[inst].to_numpy(float)
            top = np.argsort(-hat, kind="stable")[:k]
            corr = np.corrcoef(hat, tau)[0, 1] if hat.std() > 0 and tau.std() > 0 else np.nan
            rows.append(
                {
                    "instrument": inst,
                    "learner": learner,
                    "pehe": float(np.sqrt(np.mean((hat - tau) ** 2))),
                    "correlation": float(corr),
                    "true_ate": float(tau.mean()),
                    "true_gain_top": float(tau[top].mean()),
                    "true_gain_random": float(tau.mean()),
                }
            )
    cols = [
        "instrument",
        "learner",
        "pehe",
        "correlation",
        "true_ate",
        "true_gain_top",
        "true_gain_random",
    ]
    return pd.DataFrame(rows, columns=cols)
