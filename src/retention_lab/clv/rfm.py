"""Transaction checks and the recency/frequency/monetary summary of a purchase log.

``rfm_summary`` gives the same numbers as
``lifetimes.utils.summary_data_from_transaction_data`` (same period rules,
same treatment of several purchases in one period) but works on integer codes
with one sort, so a log of ten million purchases takes seconds
(``benchmarks/bench_clv.py``).

Conventions
-----------
- Purchases are grouped into periods of ``freq`` ("D" days, "W" weeks starting
  on Monday, as pandas' ``to_period("W")``); several purchases in one period
  count once and their amounts are summed.
- ``frequency`` = periods with a purchase - 1 (repeat purchases), ``recency`` =
  last - first purchase period, ``T`` = ``observation_end``'s period - first
  period, both divided by ``freq_multiplier`` (``freq="D", freq_multiplier=7``
  gives weeks to the day).
- ``monetary_value`` = mean amount per repeat period (the first purchase is left
  out); 0 for customers without repeat purchases.
- A customer with one purchase only has ``frequency`` 0: that is valid data for
  BG/NBD and Pareto/NBD (it is the most common case), but the Gamma-Gamma spend
  model learns only from repeat buyers (see ``clv.transactional.fit_spend_model``).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from retention_lab.errors import DataError, DataProblem

SUMMARY_COLUMNS = ["customer_id", "frequency", "recency", "T", "monetary_value"]


def check_discount_rate(rate: float) -> float:
    """Return ``rate`` if it is an annual discount rate in [0, 1), else raise ``DataError``."""
    if not (isinstance(rate, int | float) and np.isfinite(rate) and 0.0 <= rate < 1.0):
        raise DataError(
            file="configuration",
            column="clv.discount_rate",
            expected=f"an annual discount rate in [0, 1) (got {rate!r})",
        )
    return float(rate)


def validate_transactions(
    transactions: pd.DataFrame,
    *,
    customers: pd.DataFrame | None = None,
    file: str = "transactions",
) -> pd.DataFrame:
    """Check a purchase log before modelling; raise one ``DataError`` listing every problem.

    Rejected: missing columns, missing dates, amounts that are zero or
    negative (refunds and free items must be removed or netted first), and,
    when ``customers`` with ``signup_date`` is given, purchases dated before the
    customer's signup.

    Returns
    -------
    pandas.DataFrame
        ``transactions`` unchanged: ``customer_id``, ``date``, ``amount`` and any other columns.
    """
    missing = [c for c in ("customer_id", "date", "amount") if c not in transactions.columns]
    if missing:
        raise DataError(
            file=file,
            column=missing[0],
            expected=f"columns customer_id, date, amount (missing {', '.join(missing)})",
        )
    problems = []
    ids = transactions["customer_id"]
    no_date = transactions["date"].isna().to_numpy()
    if no_date.any():
        problems.append(DataProblem(file, "date", "a purchase date", _unique(ids[no_date])))
    amount = pd.to_numeric(transactions["amount"], errors="coerce").to_numpy(float)
    bad = ~(amount > 0)
    if bad.any():
        problems.append(
            DataProblem(
                file,
                "amount",
                "amount > 0 (zero or negative amounts: remove refunds and free items)",
                _unique(ids[bad]),
            )
        )
    if customers is not None and "signup_date" in customers.columns:
        signup = transactions["customer_id"].map(customers.set_index("customer_id")["signup_date"])
        early = (transactions["date"] < signup).to_numpy(bool)
        if early.any():
            problems.append(
                DataProblem(
                    file,
                    "date",
                    "date >= the customer's signup_date (purchase before signup)",
                    _unique(ids[early]),
                )
            )
    if problems:
        raise DataError(problems=problems)
    return transactions


def _unique(values: pd.Series) -> list:
    return pd.unique(values.astype(str)).tolist()


def _days(values) -> np.ndarray:
    """Day numbers (days since 1970-01-01) of dates, without a per-element Python loop."""
    arr = np.asarray(pd.to_datetime(values).to_numpy())
    if arr.dtype == np.dtype("datetime64[ns]"):
        return np.floor_divide(arr.view(np.int64), 86_400 * 10**9)
    return arr.astype("datetime64[D]").astype(np.int64)


def _period(days: np.ndarray, freq: str) -> np.ndarray:
    if freq == "D":
        return days
    if freq == "W":  # weeks Monday..Sunday; 1970-01-05 (day 4) is a Monday
        return np.floor_divide(days + 3, 7)
    raise ValueError(f"freq must be 'D' or 'W', got {freq!r}")


MAX_DENSE_CODES = 2**25


def _id_bytes(ids: pd.Series, max_width: int = 16) -> np.ndarray | None:
    """ASCII identifiers as a zero-padded byte matrix (rows, width), else None."""
    import pyarrow as pa

    try:
        arr = ids.array._pa_array if hasattr(ids.array, "_pa_array") else pa.array(ids.array)
        arr = pa.chunked_array([arr] if isinstance(arr, pa.Array) else arr).combine_chunks()
    except (TypeError, ValueError, pa.ArrowException):
        return None
    if arr.null_count or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return None
    offset_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=offset_type)[
        arr.offset : arr.offset + len(arr) + 1
    ]
    lengths = np.diff(offsets)
    if lengths.size == 0 or lengths.max() > max_width or lengths.min() < 1:
        return None
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    used = data[offsets[0] : offsets[-1]]
    if (used == 0).any() or (used > 127).any():
        return None
    width = int(lengths.max())
    if lengths.min() == width:  # fixed-width identifiers: one reshape
        return used.reshape(len(arr), width)
    block = np.zeros((len(arr), width), dtype=np.uint8)
    for j in range(width):  # at most max_width passes over the column
        has = lengths > j
        block[has, j] = data[offsets[:-1][has] + j]
    return block


def _dense_codes(block: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Order-preserving mixed-radix integer per identifier when the id space is small.

    Each position's alphabet is the set of bytes seen there (the zero padding of
    shorter ids sorts first), so ``C0000001``-style ids map to integers below a
    few million; counting and ranking then need no sort and no hash at all.
    """
    n, width = block.shape
    block = np.asfortranarray(block)  # contiguous columns
    alphabets, radices = [], []
    for j in range(width):
        seen = np.bincount(block[:, j], minlength=256) > 0
        alphabets.append(np.flatnonzero(seen).astype(np.uint8))
        radices.append(int(seen.sum()))
    size = int(np.prod([float(r) for r in radices]))
    if size > MAX_DENSE_CODES:
        return None
    dense = np.zeros(n, dtype=np.int64)
    mult = 1
    mults = [0] * width
    for j in reversed(range(width)):
        mults[j] = mult
        if radices[j] > 1:
            lut = np.zeros(256, dtype=np.int64)
            lut[alphabets[j]] = np.arange(radices[j]) * mult
            dense += lut[block[:, j]]
        mult *= radices[j]
    present = np.bincount(dense, minlength=size) > 0
    rank = (np.cumsum(present, dtype=np.int64) - 1).astype(np.int32 if size < 2**31 else np.int64)
    index = np.flatnonzero(present)
    out = np.empty((len(index), width), dtype=np.uint8)
    for j in range(width):
        out[:, j] = alphabets[j][(index // mults[j]) % radices[j]]
    uniques = out.view(f"S{width}").ravel().astype(f"U{width}").astype(object)
    return rank[dense], uniques


def _encode_ids(ids: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Integer codes of customer ids numbered in sorted order, the sorted unique ids, a row order.

    ASCII identifiers are encoded from their bytes, without hashing ten million
    strings: from a small id space by a mixed-radix code, else (up to 8 bytes)
    as big-endian integers sorted once, in which case the rows come back in
    that order (``order``, to apply to the other columns). Other identifiers are
    factorized as strings and keep their order (``None``).
    """
    if isinstance(ids.dtype, pd.CategoricalDtype):
        ids = ids.astype(str)
    block = _id_bytes(ids)
    if block is not None:
        dense = _dense_codes(block)
        if dense is not None:
            return dense[0], dense[1], None
    if block is not None and block.shape[1] <= 8:
        padded = np.zeros((len(block), 8), dtype=np.uint8)
        padded[:, : block.shape[1]] = block
        short = padded.view(">u8").ravel().astype(np.uint64)
        order = np.argsort(short)
        ordered = short[order]
        start = np.r_[True, ordered[1:] != ordered[:-1]]
        codes = np.cumsum(start) - 1
        uniques = ordered[start].astype(">u8").view("S8").astype("U8").astype(object)
        return codes, uniques, order
    codes, uniques = pd.factorize(ids, sort=True)
    return codes, np.asarray(uniques, dtype=object), None


def rfm_summary(
    transactions: pd.DataFrame,
    *,
    observation_end: date | pd.Timestamp | str | None = None,
    freq: str = "D",
    freq_multiplier: float = 1.0,
    first_purchase: pd.Series | None = None,
) -> pd.DataFrame:
    """Recency, frequency, T and mean repeat spend per customer from a purchase log.

    Parameters
    ----------
    transactions
        ``customer_id``, ``date``, ``amount`` (validate with ``validate_transactions``).
    observation_end
        Last day observed (inclusive; as in lifetimes, the whole period containing
        it counts). Default: the last purchase date.
    freq, freq_multiplier
        Period of the summary and the divisor of recency and T (see module notes).
    first_purchase
        Optional first purchase date by ``customer_id`` (e.g. ``signup_date``):
        a customer's birth is the earlier of this and the first logged purchase,
        and customers in it without a logged purchase get frequency 0.

    Returns
    -------
    pandas.DataFrame
        customer_id, frequency, recency, T, monetary_value (floats), one row per
        customer born by ``observation_end``, sorted by customer_id.
    """
    days = _days(transactions["date"])
    end_day = days.max() if observation_end is None else _days([observation_end])[0]
    end_period = _period(np.array([end_day]), freq)[0]
    period = _period(days, freq)
    codes, uniques, order = _encode_ids(transactions["customer_id"])
    amount = transactions["amount"].to_numpy(float)
    if order is not None:
        period, amount = period[order], amount[order]
    keep = period <= end_period  # as lifetimes: the whole period of observation_end counts
    if not keep.all():
        codes, uniques, period, amount = _kept(codes, uniques, period[keep], amount[keep], keep)
    uniques = pd.Index(uniques, dtype=object)
    if first_purchase is not None:
        first_purchase, uniques = _born_by(first_purchase, uniques, freq, end_period)
    n_cust = len(uniques)
    p0 = period.min() if period.size else 0
    span = (period.max() - p0 + 1) if period.size else 1
    # one entry per (customer, period) from one sort of integer keys (no hashing)
    key = np.sort(codes.astype(np.int64) * span + (period - p0))
    pair_key = key[np.r_[True, key[1:] != key[:-1]]] if key.size else key
    pair_cust = pair_key // span
    pair_period = pair_key % span + p0
    count = np.bincount(pair_cust, minlength=n_cust)
    has = count > 0
    ends = np.cumsum(count)
    first = np.full(n_cust, np.iinfo(np.int64).max)
    last = np.full(n_cust, np.iinfo(np.int64).min)
    first[has] = pair_period[(ends - count)[has]]
    last[has] = pair_period[(ends - 1)[has]]
    total = np.bincount(codes, weights=amount, minlength=n_cust)
    in_first = period == first[codes]
    first_amount = np.bincount(codes[in_first], weights=amount[in_first], minlength=n_cust)
    if first_purchase is not None:
        first, last, count, first_amount = _with_births(
            first_purchase, uniques, freq, has, first, last, count, first_amount
        )
    frequency = (count - 1).astype(float)
    unit = 1.0 / float(freq_multiplier)
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(frequency > 0, (total - first_amount) / frequency, 0.0)
    out = pd.DataFrame(
        {
            "customer_id": uniques.to_numpy(),
            "frequency": frequency,
            "recency": (last - first) * unit,
            "T": (end_period - first) * unit,
            "monetary_value": monetary,
        }
    )
    return out.sort_values("customer_id", ignore_index=True) if first_purchase is not None else out


def _kept(codes, uniques, period, amount, keep):
    """The purchases kept, with the customer codes renumbered over the customers left."""
    codes = codes[keep]
    used = np.zeros(len(uniques), bool)
    used[codes] = True
    renumber = np.cumsum(used) - 1
    return renumber[codes], uniques[used], period, amount


def _born_by(first_purchase: pd.Series, uniques: pd.Index, freq: str, end_period):
    """The births by the end, and the customer ids with those born without a logged purchase."""
    first_purchase = first_purchase.copy()
    first_purchase.index = first_purchase.index.astype(str)
    birth_period = _period(_days(first_purchase.to_numpy()), freq)
    first_purchase = first_purchase[birth_period <= end_period]
    extra = first_purchase.index.difference(uniques)
    if len(extra):  # customers with a birth date but no logged purchase
        uniques = uniques.append(pd.Index(extra, dtype=object))
    return first_purchase, uniques


def _with_births(first_purchase, uniques, freq, has, first, last, count, first_amount):
    """First and last purchase periods, counts and first amounts with the births counted.

    A birth in a period before the first logged purchase adds that period as the
    first purchase (its amount unknown: the logged purchases all count as repeats).
    """
    birth = pd.Series(_period(_days(first_purchase.to_numpy()), freq), index=first_purchase.index)
    birth = birth.reindex(uniques).to_numpy(float)
    earlier = ~np.isnan(birth) & (birth < np.where(has, first, np.inf))
    first = np.where(earlier, np.nan_to_num(birth), first).astype(np.int64)
    last = np.where(has, last, first)
    return first, last, count + earlier, np.where(earlier, 0.0, first_amount)


def calibration_holdout(
    transactions: pd.DataFrame,
    *,
    calibration_end: date | pd.Timestamp | str,
    observation_end: date | pd.Timestamp | str,
    freq: str = "D",
    freq_multiplier: float = 1.0,
    first_purchase: pd.Series | None = None,
) -> pd.DataFrame:
    """Summary of the calibration period and the repeat purchases of the holdout period.

    Calibration: purchases up to ``calibration_end`` (inclusive), summarised as
    in ``rfm_summary``. Holdout: periods with a purchase after
    ``calibration_end`` up to ``observation_end``.

    Returns
    -------
    pandas.DataFrame
        customer_id, frequency, recency, T, monetary_value (calibration),
        frequency_holdout (periods with a purchase), duration_holdout (in the
        summary's unit), one row per customer born in the calibration period.
    """
    cal = _days([calibration_end])[0]
    end = _days([observation_end])[0]
    days = _days(transactions["date"])
    calib = rfm_summary(
        transactions[days <= cal],
        observation_end=calibration_end,
        freq=freq,
        freq_multiplier=freq_multiplier,
        first_purchase=first_purchase,
    )
    hold = transactions[(days > cal) & (days <= end)]
    periods = pd.DataFrame(
        {
            "customer_id": hold["customer_id"].to_numpy(),
            "p": _period(days[(days > cal) & (days <= end)], freq),
        }
    ).drop_duplicates()
    counts = periods.groupby("customer_id").size()
    calib["frequency_holdout"] = calib["customer_id"].map(counts).fillna(0).to_numpy(float)
    unit = 1.0 / float(freq_multiplier)
    calib["duration_holdout"] = float(
        (_period(np.array([end]), freq)[0] - _period(np.array([cal]), freq)[0]) * unit
    )
    return calib
