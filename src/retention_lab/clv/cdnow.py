"""The CDNOW example: 2,357 customers who first bought CDs at CDNOW in the first quarter of 1997.

The ``lifetimes`` package ships the purchase log (``CDNOW_sample.txt``: master
id, customer id 1..2357, date YYYYMMDD, number of CDs, dollars). It is read
from the installed package's folder without importing ``lifetimes`` (which is
only a test and example dependency) and never from the network.

Fader, Hardie and Lee (2005) calibrate on the first 39 weeks of 1997: purchases
up to and including 1997-09-30, T and recency in weeks measured by the day
(``T = (1997-09-30 - first purchase) / 7`` days), several purchases on one day
counted once. Their BG/NBD estimates are r = 0.243, alpha = 4.414, a = 0.793,
b = 2.426; Fader and Hardie's Gamma-Gamma note (2013) fits the 946 repeat
buyers' mean repeat spend: p = 6.25, q = 3.74, gamma = 15.44.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from retention_lab.clv.rfm import calibration_holdout
from retention_lab.clv.settings import DEFAULTS
from retention_lab.clv.transactional import (
    PurchaseModel,
    SpendModel,
    fit_purchase_model,
    fit_spend_model,
)
from retention_lab.errors import DataError

CALIBRATION_END = "1997-09-30"
OBSERVATION_END = "1998-06-30"
PUBLISHED = {
    "bg_nbd": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
    "gamma_gamma": {"p": 6.25, "q": 3.74, "v": 15.44},
}


def cdnow_file() -> Path:
    """Path of ``CDNOW_sample.txt`` inside the installed ``lifetimes`` package."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            file="CDNOW_sample.txt",
            expected="the lifetimes package to be installed (pip install lifetimes); "
            "it ships the CDNOW sample",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "CDNOW_sample.txt"
    if not path.is_file():
        raise DataError(file=str(path), expected="the CDNOW sample shipped with lifetimes")
    return path


def cdnow_transactions(path: str | Path | None = None) -> pd.DataFrame:
    """The CDNOW purchase log as canonical transactions.

    Returns
    -------
    pandas.DataFrame
        customer_id (the sample's 1..2357 as text), date, amount (dollars; 8
        first purchases are for $0), cds (number of CDs).
    """
    frame = pd.read_csv(
        path or cdnow_file(),
        sep=r"\s+",
        header=None,
        names=["master_id", "customer_id", "date", "cds", "amount"],
        dtype={"master_id": str, "customer_id": int, "date": str},
    )
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"].astype(str),
            "date": pd.to_datetime(frame["date"], format="%Y%m%d"),
            "amount": frame["amount"].astype(float),
            "cds": frame["cds"].astype(int),
        }
    )


def cdnow_calibration(transactions: pd.DataFrame | None = None) -> pd.DataFrame:
    """The 39-week calibration summary and the 39-week holdout counts of Fader, Hardie & Lee.

    Returns
    -------
    pandas.DataFrame
        customer_id, frequency, recency, T (weeks), monetary_value (mean repeat
        spend in the calibration period), frequency_holdout, duration_holdout;
        2,357 rows ordered by the sample's customer number.
    """
    tx = cdnow_transactions() if transactions is None else transactions
    summary = calibration_holdout(
        tx,
        calibration_end=CALIBRATION_END,
        observation_end=OBSERVATION_END,
        freq="D",
        freq_multiplier=7,
    )
    order = summary["customer_id"].astype(int).argsort(kind="stable")
    return summary.iloc[order].reset_index(drop=True)


@dataclass(frozen=True, eq=False)
class CdnowFit:
    """The CDNOW models fitted on the calibration period, beside the published values."""

    calibration: pd.DataFrame
    purchases: PurchaseModel
    spend: SpendModel

    def comparison(self) -> pd.DataFrame:
        """Fitted against published parameters.

        Returns
        -------
        pandas.DataFrame
            model, parameter, fitted, published.
        """
        rows = []
        for model, fitted in (
            ("bg_nbd", self.purchases.params),
            ("gamma_gamma", self.spend.params),
        ):
            for name, published in PUBLISHED[model].items():
                rows.append((model, name, fitted[name], published))
        return pd.DataFrame(rows, columns=["model", "parameter", "fitted", "published"])


def fit_cdnow(*, priors: str = DEFAULTS.priors, random_state: int | None = 0) -> CdnowFit:
    """Fit BG/NBD and Gamma-Gamma to the CDNOW calibration period (maximum likelihood)."""
    calibration = cdnow_calibration()
    purchases = fit_purchase_model(
        calibration, kind="bg_nbd", priors=priors, random_state=random_state
    )
    spend = fit_spend_model(calibration, priors=priors, random_state=random_state)
    return CdnowFit(calibration=calibration, purchases=purchases, spend=spend)
