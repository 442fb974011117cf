"""Input checks, samples and design matrices shared by the survival functions.

Pre-fit problems a user can fix (a missing column, no churn at all, a constant
covariate, a level with a single customer) raise ``DataError`` naming the
column and the rows; post-fit concerns warn with ``StatisticalWarning``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from retention_lab.errors import DataError

DURATION = "tenure_months"
EVENT = "churned"
FILE = "customers"
COHORT = "signup_cohort"


def check_customers(customers: pd.DataFrame, *, columns: Sequence[str] = ()) -> None:
    """Raise ``DataError`` when required columns are missing or tenure is unusable."""
    needed = ["customer_id", DURATION, EVENT, *columns]
    missing = [c for c in dict.fromkeys(needed) if c not in customers.columns]
    if missing:
        raise DataError(
            file=FILE,
            column=", ".join(missing),
            expected=f"columns the survival analysis needs (present: {sorted(customers.columns)}); "
            "derive tenure with retention_lab.data.derive_tenure",
        )
    if customers.empty:
        raise DataError(file=FILE, expected="at least one customer for the survival analysis")
    tenure = customers[DURATION]
    bad = ~np.isfinite(tenure.to_numpy(dtype=float)) | (tenure.to_numpy(dtype=float) < 0)
    if bad.any():
        raise DataError(
            file=FILE,
            column=DURATION,
            rows=customers.loc[bad, "customer_id"].tolist(),
            expected="a finite, non-negative tenure",
        )


def require_events(customers: pd.DataFrame, *, what: str) -> None:
    """Raise ``DataError`` when no customer has churned (nothing to estimate)."""
    if int(customers[EVENT].sum()) == 0:
        raise DataError(
            file=FILE,
            column=EVENT,
            expected=f"at least one churned customer to {what}; all {len(customers):,} customers "
            "are censored (still active), so churn hazards cannot be estimated: "
            "move as_of later or add churned customers",
        )


def with_cohort(customers: pd.DataFrame) -> pd.DataFrame:
    """Add ``signup_cohort`` (signup year as text) when ``signup_date`` is present."""
    if COHORT in customers.columns or "signup_date" not in customers.columns:
        return customers
    return customers.assign(
        **{COHORT: pd.to_datetime(customers["signup_date"]).dt.year.astype(str)}
    )


STREAM = 0x5A1F  # the survival stage's own random stream, see make_rng


def make_rng(random_state: int | np.random.Generator | None) -> np.random.Generator:
    """A generator for the survival functions, distinct from other users of the same seed.

    The run seed also seeds the simulator; drawing samples from
    ``default_rng(seed)`` would replay the simulator's own draws (a sample chosen by
    the same uniforms that chose the segments holds one segment only). Mixing in
    a stage constant gives an independent stream; a Generator is used as given.
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None:
        return np.random.default_rng()
    return np.random.default_rng([STREAM, int(random_state)])


def sample_customers(
    customers: pd.DataFrame,
    max_customers: int | None,
    *,
    by: Sequence[str],
    rng: np.random.Generator,
) -> pd.DataFrame:
    """A random sample of at most ``max_customers``, stratified by ``by`` (same fraction in each).

    Sampling customers at random keeps every estimator consistent; it only widens
    the confidence intervals. The full frame is returned when it is small enough.
    """
    if max_customers is None or len(customers) <= max_customers:
        return customers
    fraction = max_customers / len(customers)
    keep = np.zeros(len(customers), dtype=bool)
    codes = (
        pd.factorize(stratum_keys(customers, by))[0] if by else np.zeros(len(customers), np.int64)
    )
    u = rng.random(len(customers))
    for code in np.unique(codes):
        idx = np.flatnonzero(codes == code)
        n = max(1, int(round(fraction * idx.size)))
        keep[idx[np.argsort(u[idx])[:n]]] = True
    return customers.loc[keep]


def stratum_keys(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """One text key per row joining the ``columns`` with "|" (lifelines' stratum naming)."""
    columns = list(columns)
    first = frame[columns[0]].astype(str)
    if len(columns) == 1:
        return first.to_numpy()
    return first.str.cat([frame[c].astype(str) for c in columns[1:]], sep="|").to_numpy()


@dataclass(frozen=True)
class Design:
    """A model matrix and what each of its columns means.

    ``terms`` has one row per column: ``term`` (column name), ``covariate``,
    ``level`` (None for numeric), ``reference`` (None for numeric) and ``kind``
    ("categorical" or "numeric").
    """

    X: pd.DataFrame
    terms: pd.DataFrame
    references: dict[str, str]


def design_matrix(
    customers: pd.DataFrame,
    covariates: Sequence[str],
    *,
    references: Mapping[str, str] | None = None,
    levels: Mapping[str, Sequence[str]] | None = None,
) -> Design:
    """Dummy-code categorical covariates (reference: most frequent level) and keep numeric ones.

    ``levels`` fixes the levels of each categorical covariate (used to score new
    data with a fitted model's coding); without it the levels are checked: a
    covariate must vary and every level needs at least two customers.
    """
    references = dict(references or {})
    missing = [c for c in covariates if c not in customers.columns]
    if missing:
        raise DataError(
            file=FILE,
            column=", ".join(missing),
            expected="covariates listed in survival.covariates; drop them from the "
            "configuration if this dataset does not have them",
        )
    columns, rows = {}, []
    chosen: dict[str, str] = {}
    for cov in covariates:
        values = customers[cov]
        nan = values.isna().to_numpy()
        if nan.any():
            raise DataError(
                file=FILE,
                column=cov,
                rows=customers.loc[nan, "customer_id"].tolist(),
                expected="a value for the covariate (impute it or drop the covariate)",
            )
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if numeric:
            if levels is None and values.nunique() < 2:
                raise DataError(
                    file=FILE,
                    column=cov,
                    expected=f"a covariate that varies; it is constant ({values.iloc[0]!r}) "
                    "over the data, so its hazard ratio is not identified: drop it",
                )
            columns[cov] = values.to_numpy(dtype=float)
            rows.append(
                {"term": cov, "covariate": cov, "level": None, "reference": None, "kind": "numeric"}
            )
            continue
        text = values.astype(str)
        if levels is not None and cov in levels:
            order = list(levels[cov])
            ref = references[cov]
        else:
            order, ref = _checked_levels(customers, cov, text, references)
        chosen[cov] = ref
        for level in order:
            if level == ref:
                continue
            name = f"{cov}[{level}]"
            columns[name] = (text == level).to_numpy(dtype=float)
            rows.append(
                {
                    "term": name,
                    "covariate": cov,
                    "level": level,
                    "reference": ref,
                    "kind": "categorical",
                }
            )
    X = pd.DataFrame(columns, index=customers.index)
    terms = pd.DataFrame(rows, columns=["term", "covariate", "level", "reference", "kind"])
    return Design(X=X, terms=terms, references=chosen)


def _checked_levels(customers, cov: str, text: pd.Series, references) -> tuple[list[str], str]:
    """A categorical covariate's levels (sorted) and reference, refused unless it varies.

    Every level needs two customers; the reference is the configured one, else
    the most frequent level.
    """
    counts = text.value_counts()
    if len(counts) < 2:
        raise DataError(
            file=FILE,
            column=cov,
            expected=f"a covariate that varies; every customer has {counts.index[0]!r}, "
            "so its hazard ratio is not identified: drop it",
        )
    small = counts[counts < 2]
    if len(small):
        ids = customers.loc[text.isin(small.index), "customer_id"].tolist()
        raise DataError(
            file=FILE,
            column=cov,
            rows=ids,
            expected=f"at least two customers per level (levels {list(small.index)} "
            "have one): merge the level into another or drop the covariate",
        )
    ref = references.get(cov, str(counts.index[0]))
    if ref not in counts.index:
        raise DataError(
            file=FILE,
            column=cov,
            expected=f"the reference level {ref!r} among {sorted(counts.index)}",
        )
    return sorted(counts.index), ref


def check_level_events(design: Design, events: np.ndarray) -> None:
    """Raise ``DataError`` for a categorical level without any churn (its hazard ratio is zero)."""
    cat = design.terms[design.terms["kind"] == "categorical"]
    empty = [t for t in cat["term"] if events[design.X[t].to_numpy() > 0].sum() == 0]
    if empty:
        raise DataError(
            file=FILE,
            column=", ".join(sorted(set(cat.set_index("term").loc[empty, "covariate"]))),
            expected=f"at least one churned customer in every level (none in {empty}): "
            "merge those levels into others or drop the covariate",
        )
