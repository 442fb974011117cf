"""Design checks: arm sizes, covariate balance, the propensity model and common support.

Pre-fit checks raise :class:`~retention_lab.errors.DataError` naming the column
and the stratum; estimators of the later modules share the feature encoders and
the fold assignment defined here: one-hot columns for the balance table (a
standardised difference per level), integer codes for the gradient-boosted
models, which split a categorical feature natively (one column instead of one
per level: the demo's 11 covariates make 11 columns instead of 27, and a fit on
its 32,000 cases takes about 40 % of the time).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

from retention_lab.errors import DataError, StatisticalWarning
from retention_lab.uplift.cases import UpliftInput

ARM_SIZE_COLUMNS = ["instrument", "assignment", "cases", "share", "retained_rate"]
# the most levels a gradient-boosted model splits natively (its max_bins); rarer ones share a code
MAX_LEVELS = 255


def is_categorical(series: pd.Series) -> bool:
    """Whether a feature is categorical (anything not numeric, plus booleans)."""
    return not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def make_encoder(frame: pd.DataFrame, features: list[str]) -> ColumnTransformer:
    """One-hot encoder for categorical features (unknown levels ignored), numeric passed through."""
    cats = [c for c in features if is_categorical(frame[c])]
    nums = [c for c in features if c not in cats]
    return ColumnTransformer(
        [
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), cats),
            ("num", "passthrough", nums),
        ],
        sparse_threshold=0.0,
        verbose_feature_names_out=False,
    )


def encoded(frame: pd.DataFrame, features: list[str]) -> tuple[np.ndarray, list[str]]:
    """The one-hot feature matrix (float) and the names of its columns."""
    enc = make_encoder(frame, features)
    x = enc.fit_transform(_as_str(frame, features)).astype(float)
    return x, list(enc.get_feature_names_out())


def model_encoder(frame: pd.DataFrame, features: list[str]) -> ColumnTransformer:
    """Encoder of the gradient-boosted models' features: categorical columns first, as codes.

    A categorical feature becomes one column of integer codes (the 254 most
    frequent levels their own, the rest one shared code; a level unseen in
    fitting is missing), to be split natively (``categorical_features`` of
    :func:`categorical_columns`); numeric features are passed through.
    """
    cats = [c for c in features if is_categorical(frame[c])]
    nums = [c for c in features if c not in cats]
    codes = OrdinalEncoder(
        handle_unknown="use_encoded_value", unknown_value=np.nan, max_categories=MAX_LEVELS
    )
    return ColumnTransformer(
        [("cat", codes, cats), ("num", "passthrough", nums)],
        sparse_threshold=0.0,
        verbose_feature_names_out=False,
    )


def categorical_columns(frame: pd.DataFrame, features: list[str]) -> list[int] | None:
    """Positions of the categorical columns in :func:`model_encoder`'s output (None: none)."""
    return list(range(sum(is_categorical(frame[c]) for c in features))) or None


def model_matrix(frame: pd.DataFrame, features: list[str]) -> tuple[np.ndarray, list[int] | None]:
    """The gradient-boosted models' feature matrix and the positions of its categorical columns."""
    x = model_encoder(frame, features).fit_transform(_as_str(frame, features))
    return x.astype(float), categorical_columns(frame, features)


def _as_str(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    out = frame[features].copy()
    for c in features:
        if is_categorical(out[c]):
            out[c] = out[c].astype(object).where(out[c].notna(), "missing").astype(str)
    return out


def check_input(data: UpliftInput, *, folds: int = 2, file: str = "cases") -> None:
    """Raise a clear ``DataError`` for inputs no estimator can use.

    Checks: the columns exist, a control arm exists, at least one instrument,
    the outcome varies, and every arm has at least ``folds`` cases.
    """
    frame = data.cases
    need = [data.treatment_col, data.outcome_col, *data.features]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise DataError(file=file, column=missing[0], expected="present in the cases")
    arms = frame[data.treatment_col].astype(str)
    if not (arms == data.control).any():
        raise DataError(
            file=file,
            column=data.treatment_col,
            expected=f"a control arm labelled '{data.control}' (got {sorted(arms.unique())[:8]})",
        )
    if arms.nunique() < 2:
        raise DataError(file=file, column=data.treatment_col, expected="at least one instrument")
    y = frame[data.outcome_col]
    if y.isna().any():
        rows = frame.loc[y.isna(), data.id_col].tolist()
        raise DataError(file=file, column=data.outcome_col, rows=rows, expected="a 0/1 outcome")
    if y.nunique() < 2:
        raise DataError(
            file=file,
            column=data.outcome_col,
            expected=f"an outcome that varies (every case has {data.outcome_col} = {y.iloc[0]}); "
            "no effect can be estimated",
        )
    counts = arms.value_counts()
    small = counts[counts < folds]
    if len(small):
        raise DataError(
            file=file,
            column=data.treatment_col,
            expected=f"at least {folds} cases per arm for {folds}-fold cross-fitting "
            f"(arm '{small.index[0]}' has {int(small.iloc[0])}; {len(frame)} rows in all)",
        )


def fold_ids(labels: np.ndarray, folds: int, random_state) -> np.ndarray:
    """Fold number per row, stratified by ``labels`` (each arm spread over every fold)."""
    if len(labels) < folds:
        raise DataError(
            file="cases",
            column=None,
            expected=f"at least {folds} rows for {folds}-fold cross-fitting (got {len(labels)})",
        )
    out = np.empty(len(labels), np.int64)
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=_seed(random_state))
    for k, (_, test) in enumerate(skf.split(np.zeros(len(labels)), labels)):
        out[test] = k
    return out


def _seed(random_state) -> int:
    rng = np.random.default_rng(random_state)
    return int(rng.integers(0, 2**31 - 1))


def arm_sizes(data: UpliftInput) -> pd.DataFrame:
    """Cases per arm and assignment, with the share and the observed retention rate.

    Returns
    -------
    pandas.DataFrame
        instrument, assignment ("random"/"rule"/"all"), cases, share (of the
        assignment's cases), retained_rate.
    """
    if not data.available:
        return pd.DataFrame(columns=ARM_SIZE_COLUMNS)
    frame = data.cases
    assignment = (
        frame[data.assignment_col].astype(str)
        if data.assignment_col
        else pd.Series("random", frame.index)
    )
    g = frame.groupby([frame[data.treatment_col].astype(str), assignment])[data.outcome_col]
    out = g.agg(cases="size", retained_rate="mean").reset_index()
    out.columns = ["instrument", "assignment", "cases", "retained_rate"]
    out["share"] = out["cases"] / out.groupby("assignment")["cases"].transform("sum")
    return out[ARM_SIZE_COLUMNS].sort_values(["assignment", "instrument"], ignore_index=True)


def _smd(x: np.ndarray, t: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Standardised mean differences (treated - control) / pooled sd of every column."""
    w = np.ones(len(t)) if w is None else w
    out = []
    for arm in (1, 0):
        m = t == arm
        ww = w[m] / w[m].sum()
        mean = ww @ x[m]
        var = ww @ (x[m] - mean) ** 2
        out.append((mean, var))
    (m1, v1), (m0, v0) = out
    sd = np.sqrt((v1 + v0) / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sd > 0, (m1 - m0) / sd, 0.0)


def balance(data: UpliftInput, *, propensity: pd.DataFrame | None = None) -> pd.DataFrame:
    """Covariate balance of every instrument against the control.

    Randomised cases should show |SMD| < 0.1 everywhere. Rule-assigned cases
    show the rule's confounding (``smd_rule``) and, with the propensity model,
    what inverse-probability weighting leaves of it (``smd_rule_weighted``).

    Returns
    -------
    pandas.DataFrame
        instrument, feature (numeric column or ``column_level``),
        smd_random, smd_rule, smd_rule_weighted (NaN where not applicable).
    """
    cols = ["instrument", "feature", "smd_random", "smd_rule", "smd_rule_weighted"]
    if not data.available:
        return pd.DataFrame(columns=cols)
    x, names = encoded(data.cases, data.features)
    x = np.nan_to_num(x, nan=np.nanmean(x, axis=0) if len(x) else 0.0)
    arms = data.cases[data.treatment_col].astype(str).to_numpy()
    rand = data.randomised()
    rows = []
    for inst in data.instruments:
        res = {}
        for key, mask in (("smd_random", rand), ("smd_rule", ~rand)):
            m = mask & np.isin(arms, [inst, data.control])
            t = (arms[m] == inst).astype(int)
            ok = t.sum() > 1 and (1 - t).sum() > 1
            res[key] = _smd(x[m], t) if ok else np.full(len(names), np.nan)
            if key == "smd_rule":
                weighted = np.full(len(names), np.nan)
                if ok and propensity is not None:
                    p = np.where(
                        t == 1,
                        propensity[inst].to_numpy(float)[m],
                        propensity[data.control].to_numpy(float)[m],
                    )
                    w = np.where(np.isfinite(p) & (p > 0), 1.0 / p, 0.0)
                    if w[t == 1].sum() > 0 and w[t == 0].sum() > 0:
                        weighted = _smd(x[m], t, w)
                res["smd_rule_weighted"] = weighted
        rows.append(pd.DataFrame({"instrument": inst, "feature": names, **res}))
    return pd.concat(rows, ignore_index=True)[cols]


def known_propensity(data: UpliftInput) -> pd.Series:
    """Arm shares among the randomised cases: the known randomisation probabilities."""
    rand = data.randomised()
    arms = data.cases.loc[rand, data.treatment_col].astype(str)
    return arms.value_counts(normalize=True).reindex(data.arms).fillna(0.0)


def fit_propensity(
    data: UpliftInput,
    *,
    folds: int = 3,
    max_iter: int = 100,
    learning_rate: float = 0.1,
    max_leaf_nodes: int = 15,
    min_samples_leaf: int = 50,
    trim_bounds: tuple[float, float] = (0.01, 0.99),
    random_state=None,
) -> pd.DataFrame:
    """Propensity of every arm for every case: known for randomised cases, modelled for the rest.

    The rule-assigned share gets a cross-fitted multinomial gradient-boosting
    model (each case scored by a model that did not see it); randomised cases
    get the randomisation shares. Rule cases with an estimated propensity
    outside ``trim_bounds`` for any arm lack common support and are marked
    ``trimmed``; the remaining propensities are clipped to the bounds.

    Returns
    -------
    pandas.DataFrame
        One column per arm (control first) with the propensity, plus
        ``trimmed`` (bool), rows aligned with ``data.cases``.
    """
    arms = data.arms
    n = len(data.cases)
    known = known_propensity(data)
    e = np.tile(known.to_numpy(), (n, 1))
    rand = data.randomised()
    trimmed = np.zeros(n, bool)
    lo, hi = trim_bounds
    if (~rand).any():
        rule = np.flatnonzero(~rand)
        t = data.cases[data.treatment_col].astype(str).to_numpy()[rule]
        present = [a for a in arms if (t == a).any()]
        counts = pd.Series(t).value_counts()
        k = int(min(folds, counts.min())) if len(counts) else 0
        if len(present) < len(arms) or k < 2:
            absent = [a for a in arms if a not in present] or [counts.idxmin()]
            raise DataError(
                file="cases",
                column=data.treatment_col,
                expected=f"every arm among the rule-assigned cases for the propensity model "
                f"(stratum assignment=rule: arm '{absent[0]}' has {int(counts.get(absent[0], 0))} "
                "cases); drop the arm or use randomised cases only",
            )
        x, categorical = model_matrix(data.cases.iloc[rule], data.features)
        fid = fold_ids(t, k, random_state)
        probs = np.empty((len(rule), len(arms)))
        for f in range(k):
            model = HistGradientBoostingClassifier(
                max_iter=max_iter,
                learning_rate=learning_rate,
                max_leaf_nodes=max_leaf_nodes,
                min_samples_leaf=min_samples_leaf,
                categorical_features=categorical,
                early_stopping=False,
                random_state=_seed([f, 7] if random_state is None else [random_state, f]),
            )
            model.fit(x[fid != f], t[fid != f])
            pred = model.predict_proba(x[fid == f])
            cols = list(model.classes_)
            probs[fid == f] = pred[:, [cols.index(a) for a in arms]]
        trimmed[rule] = (probs < lo).any(axis=1) | (probs > hi).any(axis=1)
        e[rule] = np.clip(probs, lo, hi)
        share = trimmed.sum() / len(rule)
        if share > 0.2:
            warnings.warn(
                f"{share:.0%} of the rule-assigned cases lack common support (a propensity outside "
                f"{trim_bounds}); the doubly robust estimates describe the rest only. "
                "Widen trim_bounds or add randomised cases.",
                StatisticalWarning,
                stacklevel=2,
            )
    out = pd.DataFrame(e, columns=arms)
    out["trimmed"] = trimmed
    return out


def overlap_table(data: UpliftInput, propensity: pd.DataFrame) -> pd.DataFrame:
    """Long table of the modelled propensities of the rule-assigned cases, for the overlap plot.

    Returns
    -------
    pandas.DataFrame
        instrument (arm whose propensity is shown), received ("instrument" or
        "control": the arm the case actually got), propensity, trimmed.
    """
    cols = ["instrument", "received", "propensity", "trimmed"]
    if not data.available or propensity is None:
        return pd.DataFrame(columns=cols)
    rule = ~data.randomised()
    arms = data.cases[data.treatment_col].astype(str).to_numpy()
    parts = []
    for inst in data.instruments:
        m = rule & np.isin(arms, [inst, data.control])
        e = propensity[inst].to_numpy()[m] / (
            propensity[inst].to_numpy()[m] + propensity[data.control].to_numpy()[m]
        )
        parts.append(
            pd.DataFrame(
                {
                    "instrument": inst,
                    "received": np.where(arms[m] == inst, "instrument", "control"),
                    "propensity": e,
                    "trimmed": propensity["trimmed"].to_numpy()[m],
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
