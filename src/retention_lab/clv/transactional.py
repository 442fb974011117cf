"""Non-contractual lifetime value: BG/NBD or Pareto/NBD for repeat purchases, Gamma-Gamma for spend.

The models are pymc-marketing's ``BetaGeoModel``, ``ParetoNBDModel`` and
``GammaGammaModel``. With ``priors="flat"`` every parameter gets a flat prior
on the positive reals and the fit is the maximum a posteriori point
(``method="map"``), which then equals the maximum likelihood estimate of the
original papers; pymc-marketing's default priors shift the estimates.
Everything here works in the summary's time unit (weeks by default).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from retention_lab.clv.rfm import check_discount_rate
from retention_lab.clv.settings import DEFAULTS
from retention_lab.errors import DataError
from retention_lab.units import DAYS_PER_MONTH

log = logging.getLogger(__name__)

PURCHASE_PARAMETERS = {
    "bg_nbd": ("r", "alpha", "a", "b"),
    "pareto_nbd": ("r", "alpha", "s", "beta"),
}
SPEND_PARAMETERS = ("p", "q", "v")
MODEL_NAMES = {"bg_nbd": "BG/NBD", "pareto_nbd": "Pareto/NBD", "gamma_gamma": "Gamma-Gamma"}


def _model_config(parameters, priors: str) -> dict | None:
    if priors == "default":
        return None
    if priors != "flat":
        raise ValueError(f"priors must be 'flat' or 'default', got {priors!r}")
    from pymc_marketing.prior import Prior

    return {name: Prior("HalfFlat") for name in parameters}


def _fit(model, data: pd.DataFrame, random_state: int | None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(data=data, method="map", progressbar=False, seed=random_state)


def _params(model, names) -> dict[str, float]:
    summary = model.fit_summary()
    return {name: float(summary[name]) for name in names}


def _sample(frame: pd.DataFrame, max_rows: int | None, random_state: int | None) -> pd.DataFrame:
    if max_rows is None or len(frame) <= max_rows:
        return frame
    return frame.sample(n=max_rows, random_state=random_state)


@dataclass(frozen=True, eq=False)
class PurchaseModel:
    """A fitted repeat-purchase model (BG/NBD or Pareto/NBD) and its parameters."""

    kind: str
    params: dict[str, float]
    model: object = field(repr=False)
    n_customers: int = 0

    def expected_purchases(self, summary: pd.DataFrame, t: float) -> np.ndarray:
        """Expected repeat purchases of each customer in the next ``t`` time units."""
        data = summary[["customer_id", "frequency", "recency", "T"]]
        return _squeeze(self.model.expected_purchases(data=data, future_t=t))

    def probability_alive(self, summary: pd.DataFrame) -> np.ndarray:
        """Probability that each customer is still a customer at the end of the summary."""
        data = summary[["customer_id", "frequency", "recency", "T"]]
        return _squeeze(self.model.expected_probability_alive(data=data))


@dataclass(frozen=True, eq=False)
class SpendModel:
    """A fitted Gamma-Gamma spend model and its parameters."""

    params: dict[str, float]
    model: object = field(repr=False)
    n_customers: int = 0

    @property
    def mean_spend(self) -> float:
        """Expected mean spend per purchase of a new customer, ``p v / (q - 1)``."""
        p, q, v = (self.params[k] for k in SPEND_PARAMETERS)
        return p * v / (q - 1.0) if q > 1 else float("nan")

    def expected_spend(self, summary: pd.DataFrame) -> np.ndarray:
        """Expected mean spend per future purchase (the population mean for frequency 0)."""
        p, q, v = (self.params[k] for k in SPEND_PARAMETERS)
        x = summary["frequency"].to_numpy(float)
        m = summary["monetary_value"].to_numpy(float)
        weight = p * x / (p * x + q - 1.0)
        return (1.0 - weight) * self.mean_spend + weight * m


def _squeeze(values) -> np.ndarray:
    arr = values.mean(dim=[d for d in ("chain", "draw") if d in values.dims])
    return np.asarray(arr.values, dtype=float)


def _check_summary(summary: pd.DataFrame, columns: list[str], file: str) -> None:
    missing = [c for c in columns if c not in summary.columns]
    if missing:
        raise DataError(file=file, column=missing[0], expected=f"columns {columns}")
    bad = (summary["recency"] > summary["T"]) | (summary["frequency"] < 0)
    if bad.any():
        raise DataError(
            file=file,
            column="recency",
            rows=summary.loc[bad, "customer_id"].astype(str).tolist(),
            expected="0 <= frequency and recency <= T",
        )


def fit_purchase_model(
    summary: pd.DataFrame,
    *,
    kind: str = "bg_nbd",
    priors: str = DEFAULTS.priors,
    max_customers: int | None = None,
    random_state: int | None = None,
) -> PurchaseModel:
    """Fit BG/NBD (``kind="bg_nbd"``) or Pareto/NBD (``"pareto_nbd"``) to an RFM summary.

    Customers with frequency 0 (one purchase only) are valid and needed: they
    tell the model how many customers never come back. A random sample of
    ``max_customers`` is used for large bases; predictions work for everyone.
    """
    if kind not in PURCHASE_PARAMETERS:
        raise ValueError(f"kind must be one of {sorted(PURCHASE_PARAMETERS)}, got {kind!r}")
    _check_summary(summary, ["customer_id", "frequency", "recency", "T"], "rfm summary")
    from pymc_marketing.clv import BetaGeoModel, ParetoNBDModel

    cls = BetaGeoModel if kind == "bg_nbd" else ParetoNBDModel
    data = _sample(summary, max_customers, random_state)[
        ["customer_id", "frequency", "recency", "T"]
    ]
    model = cls(model_config=_model_config(PURCHASE_PARAMETERS[kind], priors))
    _fit(model, data.reset_index(drop=True), random_state)
    params = _params(model, PURCHASE_PARAMETERS[kind])
    log.info("%s fitted on %d customers: %s", MODEL_NAMES[kind], len(data), params)
    return PurchaseModel(kind=kind, params=params, model=model, n_customers=len(data))


def fit_spend_model(
    summary: pd.DataFrame,
    *,
    priors: str = DEFAULTS.priors,
    max_customers: int | None = None,
    random_state: int | None = None,
) -> SpendModel:
    """Fit the Gamma-Gamma model of spend per purchase to the repeat buyers of a summary.

    Only customers with frequency > 0 carry information about their mean spend
    (their first purchase is not counted), so customers with one purchase only
    are left out of the fit; they are predicted the population mean spend. A
    summary without any repeat buyer raises ``DataError``.
    """
    _check_summary(summary, ["customer_id", "frequency", "recency", "T", "monetary_value"], "rfm")
    repeat = summary[summary["frequency"] > 0]
    if repeat.empty:
        raise DataError(
            file="transactions",
            column="customer_id",
            expected="at least one customer with a repeat purchase: every customer has one "
            "purchase only, and the Gamma-Gamma spend model learns from repeat buyers",
        )
    bad = ~(repeat["monetary_value"] > 0)
    if bad.any():
        raise DataError(
            file="transactions",
            column="amount",
            rows=repeat.loc[bad, "customer_id"].astype(str).tolist(),
            expected="a positive mean repeat spend",
        )
    from pymc_marketing.clv import GammaGammaModel

    data = _sample(repeat, max_customers, random_state)[
        ["customer_id", "frequency", "monetary_value"]
    ]
    model = GammaGammaModel(model_config=_model_config(SPEND_PARAMETERS, priors))
    _fit(model, data.reset_index(drop=True), random_state)
    params = _params(model, SPEND_PARAMETERS)
    log.info("Gamma-Gamma fitted on %d repeat buyers: %s", len(data), params)
    return SpendModel(params=params, model=model, n_customers=len(data))


def customer_values(
    summary: pd.DataFrame,
    purchases: PurchaseModel,
    spend: SpendModel,
    *,
    horizon_months: int = 36,
    discount_rate: float = DEFAULTS.discount_rate,
    margin: float = 1.0,
    time_unit_days: float = DEFAULTS.time_unit_days,
) -> pd.DataFrame:
    """Probability alive, expected purchases, spend and discounted lifetime value per customer.

    The value sums, month by month over ``horizon_months``, the expected
    purchases in the month times the expected spend times ``margin``,
    discounted at the annual ``discount_rate`` to the end of the month.

    Returns
    -------
    pandas.DataFrame
        customer_id, frequency, recency, T, monetary_value, p_alive,
        expected_purchases (over the horizon), expected_spend (per purchase),
        clv (discounted margin over the horizon).
    """
    rate = check_discount_rate(discount_rate)
    months_per_unit = time_unit_days / DAYS_PER_MONTH
    prev = np.zeros(len(summary))
    value = np.zeros(len(summary))
    for k in range(1, horizon_months + 1):
        cum = purchases.expected_purchases(summary, k / months_per_unit)
        value += (cum - prev) / (1.0 + rate) ** (k / 12.0)
        prev = cum
    spend_each = spend.expected_spend(summary)
    out = summary[["customer_id", "frequency", "recency", "T", "monetary_value"]].copy()
    out["p_alive"] = purchases.probability_alive(summary)
    out["expected_purchases"] = prev
    out["expected_spend"] = spend_each
    out["clv"] = value * spend_each * margin
    return out.reset_index(drop=True)


def holdout_check(
    calibration: pd.DataFrame,
    purchases: PurchaseModel,
    *,
    max_frequency: int = 7,
) -> pd.DataFrame:
    """Predicted against actual holdout repeat purchases by calibration frequency.

    ``calibration`` comes from ``rfm.calibration_holdout`` and ``purchases`` was
    fitted on it. Customers with ``max_frequency`` or more calibration repeat
    purchases form the last group ("7+").

    Returns
    -------
    pandas.DataFrame
        frequency ("0", "1", ..., "7+"), customers, actual (mean holdout
        purchases), predicted (mean expected), plus a final "all" row.
    """
    t = calibration["duration_holdout"].to_numpy(float)
    predicted = purchases.expected_purchases(calibration, t)
    freq = calibration["frequency"].to_numpy(int)
    group = np.where(freq >= max_frequency, f"{max_frequency}+", freq.astype(str))
    frame = pd.DataFrame(
        {
            "frequency": group,
            "actual": calibration["frequency_holdout"].to_numpy(float),
            "predicted": predicted,
            "order": np.minimum(freq, max_frequency),
        }
    )
    table = (
        frame.groupby(["order", "frequency"], as_index=False)
        .agg(
            customers=("actual", "size"), actual=("actual", "mean"), predicted=("predicted", "mean")
        )
        .drop(columns="order")
    )
    total = pd.DataFrame(
        {
            "frequency": ["all"],
            "customers": [len(frame)],
            "actual": [frame["actual"].mean()],
            "predicted": [frame["predicted"].mean()],
        }
    )
    return pd.concat([table, total], ignore_index=True)
