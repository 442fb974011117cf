"""Telecom-like subscription simulator with exact ground truth.

``simulate`` draws the four canonical tables (customers, problems,
interventions, transactions) and a :class:`GroundTruth` from one seed; the same
``random_state`` gives identical tables. The generative model (weekly
piecewise-constant hazards, problems, retention cases and instrument effects)
lives in :mod:`retention_lab.data._sim_model`.

Conventions
-----------
- Tenure week ``w`` of a customer covers ``[signup_date + 7w, signup_date + 7w + 7)``
  days. Problems and their retention cases are dated on the first day of a
  tenure week; churn happens on a day drawn uniformly within its week.
- ``customer_id`` is ``string[pyarrow]`` (``pd.StringDtype("pyarrow")``) in all four
  tables, as are ``problem_id`` and ``intervention_id``; other labels are plain
  ``object`` strings.
- Bills: one on each monthly anniversary of signup (``signup_date + k`` calendar
  months, ``k = 0, 1, ...``; day clamped to the month end) while
  ``date < end_date`` and ``date < as_of``. A discount cuts the first six bills
  dated on or after its case date by 20 %.
- Uplift outcome: a case with date ``d`` is *retained* when ``end_date`` is NaT or
  ``end_date >= d + horizon_days`` (``horizon_days = 7 * horizon_weeks``,
  ``horizon_weeks = round(outcome_horizon_months * 30.4375 / 7)``). The outcome is
  observed only when ``d + horizon_days <= as_of``; ``p_retained`` is given for
  every case and arm anyway, and the uplift stage drops the unobserved ones.
- No new problem reaches a customer for ``block_weeks`` (at least the horizon,
  the problem window and the discount's run) after a case opens, so every
  case's outcome has an exact expectation.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from retention_lab.data import _sim_model as sm
from retention_lab.units import horizon_weeks

log = logging.getLogger(__name__)

CUSTOMER_ID_DTYPE = pd.StringDtype("pyarrow")


class MarketShock(BaseModel):
    """A competitor entering the market at a given month of the simulated window."""

    model_config = ConfigDict(extra="forbid")

    month: int = Field(..., ge=0, description="Months after the window start when the shock begins")
    competitor_offer_rate: float = Field(
        2.5, gt=0, description="Multiplier of the monthly rate of competitor offers from then on"
    )
    discount_effect: float = Field(
        0.4,
        ge=0,
        description="Multiplier of the discount's log-hazard effect from then on (weaker)",
    )


class SimulatorSettings(BaseModel):
    """Size and behaviour of the simulated market."""

    model_config = ConfigDict(extra="forbid")

    n_customers: int = Field(50_000, ge=10, description="Customers signed up over the window")
    start: date = Field(date(2020, 1, 1), description="First day of the simulated window")
    months: int = Field(
        72, ge=12, le=240, description="Length of the window; as_of = start + months"
    )
    randomised_share: float = Field(
        0.3, ge=0, le=1, description="Share of retention cases whose instrument is randomised"
    )
    intervention_rate: float = Field(
        0.7, ge=0, le=1, description="Share of problems that open a retention case"
    )
    outcome_horizon_months: int = Field(
        6, ge=1, le=24, description="Horizon of the intervention outcome in the ground truth"
    )
    shock: MarketShock | None = Field(None, description="Optional market shock")
    transactions: bool = Field(True, description="Also produce monthly bills as transactions")
    problem_window_weeks: int = Field(
        26, ge=1, le=52, description="Weeks a problem (and the instrument answering it) acts"
    )
    null_effects: bool = Field(
        False,
        description="A market where no instrument helps: every beneficial effect is zero and "
        "only the harmful ones (the plan upgrade on price problems) remain",
    )

    @property
    def end(self) -> date:
        """The last day of the simulated window: the default snapshot date."""
        return _add_months(self.start, self.months)


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """The true parameters and the exact expected outcome of every case under every arm.

    Attributes
    ----------
    log_hazard_ratios : pandas.DataFrame
        term, covariate, level (None for numeric), unit, log_hazard_ratio,
        reference (reference level), centre (value of a numeric covariate at
        which the baseline hazard holds; NaN for categorical).
    problem_log_hazard_ratios : pandas.DataFrame
        problem_type, log_hazard_ratio, window_weeks.
    baseline_hazard : pandas.DataFrame
        contract, tenure_week, weekly_hazard (reference customer, x . beta = 0).
    instrument_effects : pandas.DataFrame
        instrument, problem_type, segment, period ("before"/"after" the shock, or
        "all" without one), log_hazard_effect, cost (fixed EUR), cost_fee_multiple
        (the cost also includes this multiple of the monthly fee).
    intervention_outcomes : pandas.DataFrame
        intervention_id, arm, p_retained, expected_revenue, propensity, cost,
        horizon_days; one row per case and arm, "none" included.
    parameters : dict
        Seed, settings, as_of, rates, costs and conventions (JSON-serialisable).
    """

    log_hazard_ratios: pd.DataFrame
    problem_log_hazard_ratios: pd.DataFrame
    baseline_hazard: pd.DataFrame
    instrument_effects: pd.DataFrame
    intervention_outcomes: pd.DataFrame
    parameters: dict[str, Any] = field(default_factory=dict)

    TABLES = (
        "log_hazard_ratios",
        "problem_log_hazard_ratios",
        "baseline_hazard",
        "instrument_effects",
        "intervention_outcomes",
    )


@dataclass(frozen=True, eq=False)
class SimulatedData:
    """The four canonical tables, the snapshot date and the ground truth."""

    customers: pd.DataFrame
    problems: pd.DataFrame
    interventions: pd.DataFrame
    transactions: pd.DataFrame | None
    as_of: date
    truth: GroundTruth


# ------------------------------------------------------------------ helpers
def _add_months(day: date, months: int) -> date:
    return (pd.Timestamp(day) + pd.DateOffset(months=months)).date()


def _dates(start: np.datetime64, days: np.ndarray) -> np.ndarray:
    return (start + days.astype("timedelta64[D]")).astype("datetime64[ns]")


def _ids(prefix: str, n: int, width: int = 7) -> pa.Array:
    width = max(width, len(str(n)))
    return pa.array([f"{prefix}{i:0{width}d}" for i in range(1, n + 1)], type=pa.string())


def _id_column(ids: pa.Array, index: np.ndarray | None = None) -> pd.arrays.ArrowStringArray:
    arr = ids if index is None else ids.take(pa.array(index, type=pa.int64()))
    # an empty id column arrives with Arrow's null type; name the string type explicitly
    return pd.arrays.ArrowStringArray(pa.chunked_array([arr.cast(pa.string())]))


def _labels(names: tuple[str, ...], codes: np.ndarray) -> np.ndarray:
    return np.asarray(names, dtype=object)[codes]


# ------------------------------------------------------------------- tables
def _customers(pop: sm.Population, hist: sm.History, ids: pa.Array, start: np.datetime64):
    churned = hist.end_day >= 0
    end = np.where(churned, _dates(start, hist.end_day), np.datetime64("NaT"))
    reason = _labels(sm.REASONS, np.maximum(hist.reason, 0))
    reason[~churned] = None
    return pd.DataFrame(
        {
            "customer_id": _id_column(ids),
            "signup_date": _dates(start, pop.signup_day),
            "end_date": end.astype("datetime64[ns]"),
            "segment": _labels(sm.SEGMENTS, pop.segment),
            "churn_reason": reason,
            "plan": _labels(sm.PLANS, pop.plan),
            "contract": _labels(sm.CONTRACTS, pop.contract),
            "monthly_fee": pop.fee,
            "acquisition_cost": pop.acquisition,
            "channel": _labels(sm.CHANNELS, pop.channel),
            "region": _labels(sm.REGIONS, pop.region),
            "age": pop.age,
            "data_usage_gb": pop.usage,
        }
    )


def _events(pop: sm.Population, hist: sm.History, ids: pa.Array, start: np.datetime64):
    """Problems and interventions, sorted by date then customer."""
    p_day = pop.signup_day[hist.p_cust] + 7 * hist.p_week
    order = np.lexsort((hist.p_cust, p_day))
    problem_ids = _ids("P", order.size, 8)
    problems = pd.DataFrame(
        {
            "problem_id": _id_column(problem_ids),
            "customer_id": _id_column(ids, hist.p_cust[order]),
            "date": _dates(start, p_day[order]),
            "problem_type": _labels(sm.PROBLEM_TYPES, hist.p_type[order]),
            "severity": hist.p_severity[order].astype(np.int64),
        }
    )
    case_pos = np.cumsum(hist.p_case) - 1  # problem (generation order) -> case index
    c_order = case_pos[order[hist.p_case[order]]]  # cases, in table order
    prob_rows = np.flatnonzero(hist.p_case[order])
    cust = hist.p_cust[order][prob_rows]
    arm = hist.c_arm[c_order]
    fee = pop.fee[cust]
    interventions = pd.DataFrame(
        {
            "intervention_id": _id_column(_ids("I", c_order.size, 8)),
            "customer_id": _id_column(ids, cust),
            "problem_id": _id_column(problem_ids, prob_rows),
            "date": problems["date"].to_numpy()[prob_rows],
            "instrument": _labels(sm.INSTRUMENTS, arm),
            "assignment": np.where(hist.c_randomised[c_order], "random", "rule").astype(object),
            "problem_type": problems["problem_type"].to_numpy()[prob_rows],
            "cost": np.round(sm.COST_FIXED[arm] + sm.COST_FEE_MULTIPLE[arm] * fee, 2),
        }
    )
    case = sm.CaseInputs(
        customer=cust,
        signup_day=pop.signup_day[cust],
        case_day=p_day[order][prob_rows],
        week=hist.p_week[order][prob_rows],
        contract=pop.contract[cust],
        segment=pop.segment[cust],
        xb=pop.xb[cust],
        fee=fee,
        ptype=hist.p_type[order][prob_rows].astype(np.int64),
        remaining=hist.c_remaining[c_order],
        after=hist.c_after[c_order],
    )
    return problems, interventions, case, c_order


def _transactions(
    pop: sm.Population,
    hist: sm.History,
    ids: pa.Array,
    start: np.datetime64,
    total_days: int,
    case: sm.CaseInputs,
    arms: np.ndarray,
) -> pd.DataFrame:
    """Monthly bills per customer (by customer, then date), discounted while a discount runs."""
    limit = np.where(hist.end_day >= 0, hist.end_day, total_days)
    n_bills = sm.first_bill_on_or_after(start, pop.signup_day, limit)
    offsets = np.concatenate([[0], np.cumsum(n_bills)])
    cust = np.repeat(np.arange(n_bills.size, dtype=np.int32), n_bills)
    k = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], n_bills)
    day = sm.anniversary_day(start, pop.signup_day[cust], k)
    del k
    discounted = np.zeros(day.size, bool)
    disc = np.flatnonzero(arms == sm.INSTRUMENTS.index("discount"))
    c = case.customer[disc]
    k0 = sm.first_bill_on_or_after(start, case.signup_day[disc], case.case_day[disc])
    kk = k0[:, None] + np.arange(sm.DISCOUNT_MONTHS)
    ok = kk < n_bills[c][:, None]
    discounted[(offsets[c][:, None] + kk)[ok]] = True
    amount = sm.bill_amount(pop.fee[cust], discounted)
    return pd.DataFrame(
        {"customer_id": _id_column(ids, cust), "date": _dates(start, day), "amount": amount}
    )


# -------------------------------------------------------------------- truth
def _log_hazard_ratios() -> pd.DataFrame:
    rows = []
    for cov, level, unit, beta, ref, centre in sm.PH_TERMS:
        term = cov if level is None else f"{cov}_{level}"
        rows.append((term, cov, level, unit, beta, ref, centre))
    cols = ["term", "covariate", "level", "unit", "log_hazard_ratio", "reference", "centre"]
    return pd.DataFrame(rows, columns=cols)


def _instrument_effects(theta: np.ndarray, shock: bool) -> pd.DataFrame:
    a, k, s, p = np.meshgrid(*(np.arange(d) for d in theta.shape), indexing="ij")
    keep = (p < 2) if shock else (p == 0)
    a, k, s, p = (x[keep] for x in (a, k, s, p))
    period = (
        np.array(["before", "after"], dtype=object)[p] if shock else np.full(a.size, "all", object)
    )
    return pd.DataFrame(
        {
            "instrument": _labels(sm.INSTRUMENTS, a),
            "problem_type": _labels(sm.PROBLEM_TYPES, k),
            "segment": _labels(sm.SEGMENTS, s),
            "period": period,
            "log_hazard_effect": theta[a, k, s, p],
            "cost": sm.COST_FIXED[a],
            "cost_fee_multiple": sm.COST_FEE_MULTIPLE[a],
        }
    )


def _intervention_outcomes(
    interventions: pd.DataFrame,
    case: sm.CaseInputs,
    propensity: np.ndarray,
    p_retained: np.ndarray,
    revenue: np.ndarray,
    horizon_days: int,
) -> pd.DataFrame:
    n_arms = len(sm.INSTRUMENTS)
    n = len(interventions)
    cost = np.round(sm.COST_FIXED[None, :] + sm.COST_FEE_MULTIPLE[None, :] * case.fee[:, None], 2)
    ids = pa.chunked_array([pa.array(interventions["intervention_id"].array)]).combine_chunks()
    return pd.DataFrame(
        {
            "intervention_id": _id_column(ids, np.repeat(np.arange(n), n_arms)),
            "arm": np.tile(np.asarray(sm.INSTRUMENTS, dtype=object), n),
            "p_retained": p_retained.ravel(),
            "expected_revenue": revenue.ravel(),
            "propensity": propensity.ravel(),
            "cost": cost.ravel(),
            "horizon_days": np.full(n * n_arms, horizon_days, dtype=np.int64),
        }
    )


def _parameters(
    settings: SimulatorSettings,
    random_state: int | None,
    as_of: date,
    rates: np.ndarray,
    h_weeks: int,
    block: int,
    shock_date: date | None,
) -> dict[str, Any]:
    periods = ["before", "after"] if settings.shock else ["all"]
    return {
        "seed": random_state,
        "settings": settings.model_dump(mode="json"),
        "start": settings.start.isoformat(),
        "as_of": as_of.isoformat(),
        "shock_date": shock_date.isoformat() if shock_date else None,
        "customer_id_dtype": "string[pyarrow]",
        "week_convention": "tenure week w covers [signup_date + 7w, signup_date + 7w + 7) days; "
        "problems and cases start on signup_date + 7w; churn day uniform within the week",
        "weekly_churn_probability": "1 - exp(weekly_hazard * exp(x.beta + sum gamma + theta))",
        "horizon_weeks": h_weeks,
        "horizon_days": 7 * h_weeks,
        "problem_window_weeks": settings.problem_window_weeks,
        "block_weeks": block,
        "weekly_problem_rates": {
            period: {
                seg: dict(zip(sm.PROBLEM_TYPES, rates[i, j].tolist(), strict=True))
                for j, seg in enumerate(sm.SEGMENTS)
            }
            for i, period in enumerate(periods)
        },
        "severity_probabilities": {
            k: sm.SEVERITY_P[i].tolist() for i, k in enumerate(sm.PROBLEM_TYPES)
        },
        "instruments": list(sm.INSTRUMENTS),
        "control_arm": "none",
        "randomised_arm_probability": 1.0 / len(sm.INSTRUMENTS),
        "rule_uniform_share": sm.RULE_FLOOR,
        "costs_fixed_eur": dict(zip(sm.INSTRUMENTS, sm.COST_FIXED.tolist(), strict=True)),
        "costs_fee_multiple": dict(zip(sm.INSTRUMENTS, sm.COST_FEE_MULTIPLE.tolist(), strict=True)),
        "discount_rate": sm.DISCOUNT_RATE,
        "discount_bills": sm.DISCOUNT_MONTHS,
        "billing": "bills on signup_date + k months (k >= 0, day clamped to month end) "
        "while date < end_date and date < as_of",
        "gross_margin": sm.GROSS_MARGIN,
        "churn_reason_of_problem": {
            k: sm.REASONS[sm.PROBLEM_REASON[i]] for i, k in enumerate(sm.PROBLEM_TYPES)
        },
    }


# ---------------------------------------------------------------------- API
def simulate(
    settings: SimulatorSettings | None = None, *, random_state: int | None = None
) -> SimulatedData:
    """Simulate customers, problems, retention cases and bills with exact ground truth.

    Parameters
    ----------
    settings
        Size and behaviour of the market; defaults to ``SimulatorSettings()``.
    random_state
        Seed of ``numpy.random.default_rng``; the same seed gives identical tables.

    Returns
    -------
    SimulatedData
        ``customers`` (customer_id, signup_date, end_date, segment, churn_reason,
        plan, contract, monthly_fee, acquisition_cost, channel, region, age,
        data_usage_gb), ``problems`` (problem_id, customer_id, date,
        problem_type, severity), ``interventions`` (intervention_id,
        customer_id, problem_id, date, instrument, assignment, problem_type,
        cost), ``transactions`` (customer_id, date, amount; None when
        ``settings.transactions`` is False), ``as_of`` and ``truth``.

    Notes
    -----
    Uplift outcome: a case dated ``d`` is retained when ``end_date`` is NaT or
    ``end_date >= d + horizon_days``; it is observed only when
    ``d + horizon_days <= as_of``, but ``truth.intervention_outcomes`` gives
    ``p_retained`` for every case and arm.
    """
    settings = settings or SimulatorSettings()
    t0 = time.perf_counter()
    rng = np.random.default_rng(random_state)
    as_of = settings.end
    start = np.datetime64(settings.start, "D")
    total_days = (as_of - settings.start).days
    h_weeks = horizon_weeks(settings.outcome_horizon_months)
    window, shock = settings.problem_window_weeks, settings.shock
    model, base, rates, block, shock_date = _week_model(settings, total_days, h_weeks)
    theta, n_weeks = model.theta, base.shape[-1]
    pop = sm.draw_population(rng, settings.n_customers, total_days)
    hist = sm.simulate_weeks(rng, pop, model)
    log.info("simulated %d weeks in %.1f s", n_weeks, time.perf_counter() - t0)
    ids = _ids("C", settings.n_customers)
    customers = _customers(pop, hist, ids, start)
    problems, interventions, case, c_order = _events(pop, hist, ids, start)
    arms = hist.c_arm[c_order]
    p_ret, revenue = sm.case_outcomes(
        start, case, horizon=h_weeks, window=window, theta=theta, log_base=model.log_base
    )
    transactions = None
    if settings.transactions:
        transactions = _transactions(pop, hist, ids, start, total_days, case, arms)
    truth = GroundTruth(
        log_hazard_ratios=_log_hazard_ratios(),
        problem_log_hazard_ratios=_problem_log_hazard_ratios(window),
        baseline_hazard=_baseline_hazard(base, n_weeks),
        instrument_effects=_instrument_effects(theta, shock is not None),
        intervention_outcomes=_intervention_outcomes(
            interventions, case, hist.c_propensity[c_order], p_ret, revenue, 7 * h_weeks
        ),
        parameters=_parameters(settings, random_state, as_of, rates, h_weeks, block, shock_date),
    )
    log.info(
        "simulated %d customers, %d problems, %d interventions in %.1f s",
        len(customers),
        len(problems),
        len(interventions),
        time.perf_counter() - t0,
    )
    return SimulatedData(customers, problems, interventions, transactions, as_of, truth)


def _week_model(settings: SimulatorSettings, total_days: int, h_weeks: int):
    """The weekly model's parameters: problem rates, effects, baseline hazard, the shock.

    Returns
    -------
    tuple
        The ``WeekModel``, the baseline weekly hazard (contract x week), the
        weekly problem rates, the block of weeks simulated past the window, and
        the shock's date (None without a shock).
    """
    window = settings.problem_window_weeks
    discount_weeks = math.ceil((sm.DISCOUNT_MONTHS + 1) * 31 / 7)
    block = max(h_weeks, window, discount_weeks)
    shock = settings.shock
    shock_date = _add_months(settings.start, shock.month) if shock else None
    rates = sm.weekly_problem_rates(shock.competitor_offer_rate if shock else 1.0)
    theta = sm.theta_table(shock.discount_effect if shock else None, null=settings.null_effects)
    n_weeks = -(-total_days // 7) + block + 1
    base = sm.baseline_weekly_hazard(n_weeks)
    model = sm.WeekModel(
        total_days=total_days,
        window=window,
        block=block,
        intervention_rate=settings.intervention_rate,
        randomised_share=settings.randomised_share,
        shock_day=(shock_date - settings.start).days if shock_date else None,
        cum_rates=np.cumsum(rates, axis=-1).reshape(-1, len(sm.PROBLEM_TYPES)),
        theta=theta,
        log_base=np.log(base),
    )
    return model, base, rates, block, shock_date


def _baseline_hazard(base: np.ndarray, n_weeks: int) -> pd.DataFrame:
    """The true weekly baseline hazard: contract, tenure_week, weekly_hazard."""
    return pd.DataFrame(
        {
            "contract": np.repeat(np.asarray(sm.CONTRACTS, dtype=object), n_weeks),
            "tenure_week": np.tile(np.arange(n_weeks, dtype=np.int64), len(sm.CONTRACTS)),
            "weekly_hazard": base.ravel(),
        }
    )


def _problem_log_hazard_ratios(window: int) -> pd.DataFrame:
    """The true problem log hazard ratios: problem_type, log_hazard_ratio, window_weeks."""
    return pd.DataFrame(
        {
            "problem_type": list(sm.PROBLEM_TYPES),
            "log_hazard_ratio": sm.PROBLEM_GAMMA,
            "window_weeks": window,
        }
    )


def write_simulation(data: SimulatedData, directory: str | Path) -> Path:
    """Write the tables and ``truth/`` (Parquet plus ``parameters.json``) to a new directory.

    Dates are stored in microseconds, the finest unit Spark reads, so the
    folder serves every source (files, DuckDB, Spark).

    Raises
    ------
    FileExistsError
        If ``directory`` exists and is not empty.
    """
    out = Path(directory)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty; choose a new directory")
    (out / "truth").mkdir(parents=True, exist_ok=True)
    for name in ("customers", "problems", "interventions", "transactions"):
        table = getattr(data, name)
        if table is not None:
            table.to_parquet(out / f"{name}.parquet", index=False, coerce_timestamps="us")
    for name in GroundTruth.TABLES:
        getattr(data.truth, name).to_parquet(out / "truth" / f"{name}.parquet", index=False)
    text = json.dumps(data.truth.parameters, indent=2, sort_keys=True)
    (out / "truth" / "parameters.json").write_text(text + "\n", encoding="utf-8")
    log.info("wrote simulation to %s", out)
    return out


def read_ground_truth(directory: str | Path) -> GroundTruth:
    """Read the ``truth/`` folder written by :func:`write_simulation`."""
    truth_dir = Path(directory) / "truth"
    tables = {name: pd.read_parquet(truth_dir / f"{name}.parquet") for name in GroundTruth.TABLES}
    params = json.loads((truth_dir / "parameters.json").read_text(encoding="utf-8"))
    return GroundTruth(**tables, parameters=params)


def write_ground_truth(truth: GroundTruth, directory: str | Path) -> Path:
    """Write ``truth`` to ``directory/truth`` (Parquet tables plus ``parameters.json``)."""
    truth_dir = Path(directory) / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    for name in GroundTruth.TABLES:
        getattr(truth, name).to_parquet(truth_dir / f"{name}.parquet", index=False)
    text = json.dumps(truth.parameters, indent=2, sort_keys=True)
    (truth_dir / "parameters.json").write_text(text + "\n", encoding="utf-8")
    return truth_dir


def true_treatment_outcomes(
    truth: GroundTruth,
    customers: pd.DataFrame,
    problem_type: str | np.ndarray | pd.Series,
    *,
    arms: list[str] | None = None,
    horizon_weeks: int | None = None,
    full_fee: bool = False,
    annual_discount: float = 0.0,
) -> pd.DataFrame:
    """Exact outcome of acting now on active customers, under every arm, from the generative model.

    For each customer a problem of the given type is taken to start on the first
    day of the customer's current tenure week at ``as_of`` (no other problem
    active), and a retention case answering it opens that day with each arm in
    turn. The retention probability and expected bills over the horizon come
    from the same code as ``truth.intervention_outcomes`` (``case_outcomes``).

    Parameters
    ----------
    truth
        The simulation's ground truth (its ``parameters`` give the window, the
        shock and the horizon).
    customers
        Active customers with the simulator's columns (customer_id, signup_date,
        segment, plan, contract, channel, age, data_usage_gb, monthly_fee).
    problem_type
        One problem type for everyone, or one per customer.
    arms
        Arms to return (default every instrument, "none" included).
    horizon_weeks
        Horizon of the outcome (default the simulation's ``horizon_weeks``).
    full_fee, annual_discount
        Bills at the full fee and discounted to today (see ``case_outcomes``).

    Returns
    -------
    pandas.DataFrame
        customer_id, arm, p_retained, expected_revenue, cost; one row per
        customer and arm, customers in input order.
    """
    params = truth.parameters
    settings = params["settings"]
    start = np.datetime64(params["start"], "D")
    horizon = int(horizon_weeks or params["horizon_weeks"])
    window = int(params["problem_window_weeks"])
    n = len(customers)
    ptype = np.broadcast_to(np.asarray(problem_type, dtype=object), (n,))
    unknown = sorted(set(ptype) - set(sm.PROBLEM_TYPES))
    if unknown:
        raise ValueError(f"unknown problem types {unknown}; expected one of {sm.PROBLEM_TYPES}")
    case = _case_now(customers, ptype, params, start, window)
    shock = settings.get("shock")
    theta = sm.theta_table(
        shock["discount_effect"] if shock else None, null=bool(settings.get("null_effects"))
    )
    log_base = np.log(sm.baseline_weekly_hazard(int(case.week.max(initial=0)) + horizon + 1))
    p_ret, revenue = sm.case_outcomes(
        start, case, horizon=horizon, window=window, theta=theta, log_base=log_base,
        full_fee=full_fee, annual_discount=annual_discount,
    )  # fmt: skip
    names = list(arms) if arms is not None else list(sm.INSTRUMENTS)
    idx = [sm.INSTRUMENTS.index(a) for a in names]
    fixed, per_fee = sm.COST_FIXED[None, idx], sm.COST_FEE_MULTIPLE[None, idx]
    cost = np.round(fixed + per_fee * case.fee[:, None], 2)
    return pd.DataFrame(
        {
            "customer_id": np.repeat(customers["customer_id"].to_numpy(), len(idx)),
            "arm": np.tile(np.asarray(names, dtype=object), n),
            "p_retained": p_ret[:, idx].ravel(),
            "expected_revenue": revenue[:, idx].ravel(),
            "cost": cost.ravel(),
        }
    )


def _case_now(customers: pd.DataFrame, ptype: np.ndarray, params: dict, start, window: int):
    """A retention case opened now (the customer's current tenure week) on a new problem.

    Returns
    -------
    CaseInputs
        The case of each customer with the problem ``ptype`` open for ``window`` weeks.
    """
    n = len(customers)
    as_of_day = int((np.datetime64(params["as_of"], "D") - start).astype(np.int64))
    settings = params["settings"]

    def codes(column: str, names: tuple[str, ...]) -> np.ndarray:
        return pd.Categorical(customers[column], categories=names).codes.astype(np.int64)

    signup = (customers["signup_date"].to_numpy("datetime64[D]") - start).astype(np.int64)
    week = np.maximum(as_of_day - signup, 0) // 7
    seg = codes("segment", sm.SEGMENTS)
    xb = sm.linear_predictor(
        {
            "segment": seg,
            "plan": codes("plan", sm.PLANS),
            "channel": codes("channel", sm.CHANNELS),
        },
        customers["age"].to_numpy(float),
        customers["data_usage_gb"].to_numpy(float),
    )
    k = pd.Categorical(ptype, categories=sm.PROBLEM_TYPES).codes.astype(np.int64)
    remaining = np.zeros((n, len(sm.PROBLEM_TYPES)), np.int64)
    remaining[np.arange(n), k] = window
    shock = settings.get("shock")
    case_day = signup + 7 * week
    after = np.zeros(n, bool)
    if shock and params.get("shock_date"):
        shock_day = int((np.datetime64(params["shock_date"], "D") - start).astype(np.int64))
        after = case_day >= shock_day
    fee = customers["monthly_fee"].to_numpy(float)
    case = sm.CaseInputs(
        customer=np.arange(n),
        signup_day=signup,
        case_day=case_day,
        week=week,
        contract=codes("contract", sm.CONTRACTS),
        segment=seg,
        xb=xb,
        fee=fee,
        ptype=k,
        remaining=remaining,
        after=after,
    )
    return case


def true_net_values(
    truth: GroundTruth,
    customers: pd.DataFrame,
    problem_type: str | np.ndarray | pd.Series,
    *,
    value_months: int,
    annual_discount: float = 0.0,
    arms: list[str] | None = None,
) -> pd.DataFrame:
    """True net value of each arm for active customers, entirely from the generative model.

    An arm's margin is the expected bills over ``value_months`` at the full fee
    (discounted to today at ``annual_discount``) times the simulator's gross
    margin; its net value is that margin minus the control's, minus the arm's
    cost (for a discount, the fee it gives away).

    Returns
    -------
    pandas.DataFrame
        customer_id, arm, p_retained (at ``value_months``), margin, cost,
        net_value (0 for the control); one row per customer and arm.
    """
    names = list(arms) if arms is not None else list(sm.INSTRUMENTS)
    if sm.INSTRUMENTS[0] not in names:
        names = [sm.INSTRUMENTS[0], *names]
    out = true_treatment_outcomes(
        truth,
        customers,
        problem_type,
        arms=names,
        horizon_weeks=horizon_weeks(value_months),
        full_fee=True,
        annual_discount=annual_discount,
    )
    margin = out["expected_revenue"].to_numpy(float) * float(truth.parameters["gross_margin"])
    k = len(names)
    control = margin.reshape(-1, k)[:, names.index(sm.INSTRUMENTS[0])]
    cost = np.where(out["arm"].to_numpy() == sm.INSTRUMENTS[0], 0.0, out["cost"].to_numpy(float))
    out = out.drop(columns=["expected_revenue"]).assign(margin=margin, cost=cost)
    out["net_value"] = margin - np.repeat(control, k) - cost
    if arms is not None and sm.INSTRUMENTS[0] not in arms:
        out = out[out["arm"] != sm.INSTRUMENTS[0]].reset_index(drop=True)
    return out[["customer_id", "arm", "p_retained", "margin", "cost", "net_value"]]
