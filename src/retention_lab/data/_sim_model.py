"""The generative model behind :mod:`retention_lab.data.simulate`.

Everything here works on integer codes and day numbers (days since the window
start); :mod:`~retention_lab.data.simulate` turns the arrays into the canonical
tables. The true parameters are module constants so that the ground truth is
read from the same numbers that drive the simulation.

Week conventions
----------------
Tenure week ``w`` of a customer covers the days ``[signup + 7w, signup + 7w + 7)``.
Problems (and the retention cases they open) start on the first day of a tenure
week; within a week the hazard is constant, the weekly churn probability is
``1 - exp(-lambda)`` and the churn day is uniform over the seven days.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEGMENTS = ("mass", "business", "vip")
PLANS = ("basic", "standard", "premium")
CONTRACTS = ("month-to-month", "one-year", "two-year")
CHANNELS = ("online", "retail", "telesales", "partner")
REGIONS = ("north", "south", "east", "west")
PROBLEM_TYPES = ("network", "billing", "price", "service", "competitor_offer")
INSTRUMENTS = ("none", "discount", "bonus", "technician_visit", "personal_manager", "plan_upgrade")
REASONS = ("price", "network", "service", "competitor", "relocation", "other")

# ---------------------------------------------------------------- customers
SEGMENT_P = np.array([0.80, 0.15, 0.05])
CHANNEL_P = np.array([[0.40, 0.30, 0.15, 0.15], [0.30, 0.20, 0.30, 0.20], [0.30, 0.40, 0.20, 0.10]])
PLAN_P = np.array([[0.45, 0.40, 0.15], [0.30, 0.45, 0.25], [0.15, 0.40, 0.45]])
CONTRACT_P = np.array([[0.55, 0.28, 0.17], [0.40, 0.35, 0.25], [0.35, 0.35, 0.30]])
PLAN_FEE = np.array([19.99, 34.99, 54.99])
SEGMENT_FEE_FACTOR = np.array([1.0, 1.1, 1.25])
CHANNEL_ACQUISITION = np.array([60.0, 120.0, 90.0, 150.0])
SIGNUP_GROWTH = 0.15  # yearly growth of the signup rate

# ------------------------------------------------- proportional hazards (beta)
# (covariate, level or None, unit, log hazard ratio, reference level, centre)
PH_TERMS = (
    ("segment", "business", None, -0.45, "mass", np.nan),
    ("segment", "vip", None, -0.80, "mass", np.nan),
    ("plan", "standard", None, -0.20, "basic", np.nan),
    ("plan", "premium", None, -0.35, "basic", np.nan),
    ("channel", "retail", None, -0.20, "online", np.nan),
    ("channel", "telesales", None, 0.35, "online", np.nan),
    ("channel", "partner", None, 0.25, "online", np.nan),
    ("age", None, "10 years", -0.15, None, 40.0),
    ("data_usage_gb", None, "10 GB per month", -0.25, None, 10.0),
)
UNIT_SCALE = {"10 years": 10.0, "10 GB per month": 10.0}

# --------------------------------------------------------- baseline hazard
MTM_LEVEL, MTM_EARLY, MTM_EARLY_WEEKS = 0.0055, 1.2, 10.0
CONTRACT_LEVEL = {1: 0.0012, 2: 0.0008}  # one-year, two-year
RENEWAL_SPIKE = {1: (52, 0.040), 2: (104, 0.045)}  # (period in weeks, peak weekly hazard)
RENEWAL_SD_WEEKS = 1.5

# -------------------------------------------------------------- problems
PROBLEM_RATE = np.array([0.0040, 0.0030, 0.0030, 0.0035, 0.0020])  # weekly, mass
PROBLEM_SEGMENT_FACTOR = np.array(
    [[1.0, 1.0, 1.0, 1.0, 1.0], [1.3, 1.2, 0.8, 1.0, 1.2], [1.0, 0.8, 0.6, 0.8, 1.5]]
)
# log hazard ratio while a problem is open: network, billing, price, service, competitor_offer
PROBLEM_GAMMA = np.array([1.50, 0.50, 1.30, 0.40, 1.80])
SEVERITY_P = np.array(
    [
        [0.40, 0.40, 0.20],
        [0.60, 0.30, 0.10],
        [0.50, 0.35, 0.15],
        [0.55, 0.30, 0.15],
        [0.45, 0.40, 0.15],
    ]
)
# churn reason of a problem type: network, billing, price, service, competitor_offer
PROBLEM_REASON = np.array([1, 2, 0, 2, 3])
BASE_REASON_P = np.array([0.25, 0.10, 0.10, 0.20, 0.20, 0.15])

# ----------------------------------------------------------- instruments
COST_FIXED = np.array([0.0, 0.0, 10.0, 40.0, 60.0, 25.0])
DISCOUNT_RATE, DISCOUNT_MONTHS = 0.20, 6
COST_FEE_MULTIPLE = np.array([0.0, DISCOUNT_RATE * DISCOUNT_MONTHS, 0.0, 0.0, 0.0, 0.0])
RULE_FLOOR = 0.10  # share of the staff rule mixed with uniform choice (positivity)
GROSS_MARGIN = 0.60


def theta_table(discount_after: float | None, *, null: bool = False) -> np.ndarray:
    """Return the true instrument effects on the log hazard (``null``: the harmful ones only).

    Returns
    -------
    numpy.ndarray
        Shape ``(instrument, problem_type, segment, period)``; period 0 is before
        the shock (or always without one), period 1 after it.
    """
    th = np.zeros((len(INSTRUMENTS), len(PROBLEM_TYPES), len(SEGMENTS)))
    net, bil, pri, ser, com = range(5)
    # discount: matching a competitor keeps business customers; mass customers leave anyway
    th[1, pri], th[1, com], th[1, bil] = [-0.25, -0.50, -0.20], [-0.20, -0.70, -0.30], -0.10
    th[2] = -0.05  # bonus, small everywhere
    th[3, net], th[3, ser] = [-0.70, -0.70, -0.50], -0.20  # technician visit fixes the network
    th[4, :, 1], th[4, :, 2] = -0.30, -0.70  # personal manager: business and VIP only
    th[5, pri] = [0.50, 0.20, 0.0]  # plan upgrade drives price-sensitive customers out
    if null:
        th = np.maximum(th, 0.0)  # only the harmful effects stay
    after = th.copy()
    if discount_after is not None:
        after[1] *= discount_after
    return np.stack([th, after], axis=-1)


def baseline_weekly_hazard(n_weeks: int) -> np.ndarray:
    """Weekly baseline hazard of the reference customer, shape ``(contract, week)``."""
    w = np.arange(n_weeks, dtype=float)
    out = np.empty((3, n_weeks))
    out[0] = MTM_LEVEL * (1.0 + MTM_EARLY * np.exp(-w / MTM_EARLY_WEEKS))
    for c, level in CONTRACT_LEVEL.items():
        period, peak = RENEWAL_SPIKE[c]
        k = np.maximum(np.rint(w / period), 1.0)  # nearest anniversary, from the first on
        out[c] = level + peak * np.exp(-0.5 * ((w - k * period) / RENEWAL_SD_WEEKS) ** 2)
    return out


def weekly_problem_rates(shock_multiplier: float) -> np.ndarray:
    """Weekly problem probability per (period, segment, problem_type)."""
    rates = PROBLEM_RATE[None, :] * PROBLEM_SEGMENT_FACTOR
    after = rates.copy()
    after[:, PROBLEM_TYPES.index("competitor_offer")] *= shock_multiplier
    return np.stack([rates, after])


def rule_propensities(
    seg: np.ndarray,
    severity: np.ndarray,
    fee: np.ndarray,
    tenure_weeks: np.ndarray,
    ptype: np.ndarray,
    contract: np.ndarray,
) -> np.ndarray:
    """Probabilities of each instrument under the staff rule, shape ``(case, instrument)``.

    The rule is confounded on purpose: it keeps low-risk customers (long contracts,
    long tenure, business and VIP) in "none" and gives discounts to the risky
    month-to-month customers with price or competitor problems.
    """
    n = len(seg)
    s = np.zeros((n, len(INSTRUMENTS)))
    s[:, 0] = 0.5 + 1.5 * (contract > 0) + 0.8 * (tenure_weeks > 104) - 1.0 * (severity == 3)
    s[:, 1] = 1.8 * np.isin(ptype, (2, 4)) + 1.2 * (contract == 0) + 0.4 * (severity >= 2)
    s[:, 2] = 0.3 + 0.6 * (severity == 1)
    s[:, 3] = 2.5 * (ptype == 0) + 0.5 * (ptype == 3) - 1.0
    s[:, 4] = 3.0 * (seg == 2) + 1.2 * (seg == 1) - 1.0
    s[:, 5] = 1.8 * (fee > 45.0) + 0.6 * (ptype == 2) - 0.8
    s = np.exp(s - s.max(axis=1, keepdims=True))
    s /= s.sum(axis=1, keepdims=True)
    return (1.0 - RULE_FLOOR) * s + RULE_FLOOR / len(INSTRUMENTS)


# ------------------------------------------------------------ calendar helpers
def anniversary_day(start: np.datetime64, signup_day: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Day number of the ``k``-th monthly anniversary of signup (clamped to month end)."""
    base = start + signup_day.astype("timedelta64[D]")
    month = base.astype("datetime64[M]")
    dom = (base - month.astype("datetime64[D]")).astype(np.int64)
    target = month + np.asarray(k).astype("timedelta64[M]")
    first = target.astype("datetime64[D]")
    dim = ((target + np.timedelta64(1, "M")).astype("datetime64[D]") - first).astype(np.int64)
    day = first + np.minimum(dom, dim - 1).astype("timedelta64[D]")
    return (day - start).astype(np.int64)


def first_bill_on_or_after(
    start: np.datetime64, signup_day: np.ndarray, day: np.ndarray
) -> np.ndarray:
    """Smallest ``k`` whose anniversary is on or after ``day`` (``day >= signup_day``)."""
    s_month = (start + signup_day.astype("timedelta64[D]")).astype("datetime64[M]")
    d_month = (start + day.astype("timedelta64[D]")).astype("datetime64[M]")
    k = (d_month - s_month).astype(np.int64)
    return k + (anniversary_day(start, signup_day, k) < day)


# --------------------------------------------------------------- population
@dataclass
class Population:
    """Customers as code arrays, sorted by signup day."""

    signup_day: np.ndarray
    segment: np.ndarray
    plan: np.ndarray
    contract: np.ndarray
    channel: np.ndarray
    region: np.ndarray
    age: np.ndarray
    usage: np.ndarray
    fee: np.ndarray
    acquisition: np.ndarray
    xb: np.ndarray


def _categorical(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray | None, n: int):
    u = rng.random(n)
    cum = np.cumsum(probs, axis=-1)
    cum = cum[None, :] if rows is None else cum[rows]
    return (u[:, None] >= cum[:, :-1]).sum(axis=1).astype(np.int8)


def linear_predictor(
    pop_codes: dict[str, np.ndarray], age: np.ndarray, usage: np.ndarray
) -> np.ndarray:
    """``x . beta`` from the :data:`PH_TERMS` (numeric terms centred)."""
    xb = np.zeros(len(age))
    levels = {"segment": SEGMENTS, "plan": PLANS, "channel": CHANNELS}
    numeric = {"age": age, "data_usage_gb": usage}
    for cov, level, unit, beta, _ref, centre in PH_TERMS:
        if level is None:
            xb += beta * (numeric[cov] - centre) / UNIT_SCALE[unit]
        else:
            xb += beta * (pop_codes[cov] == levels[cov].index(level))
    return xb


def draw_population(rng: np.random.Generator, n: int, total_days: int) -> Population:
    """Draw signup days and covariates (mildly correlated through the segment)."""
    years = total_days / 365.25
    u = np.sort(rng.random(n))
    g = SIGNUP_GROWTH
    t = np.log1p(u * np.expm1(g * years)) / g  # inverse cdf of exp(g t) on [0, years]
    signup_day = np.minimum((t * 365.25).astype(np.int64), total_days - 1)
    seg = _categorical(rng, SEGMENT_P, None, n)
    channel = _categorical(rng, CHANNEL_P, seg, n)
    plan = _categorical(rng, PLAN_P, seg, n)
    contract = _categorical(rng, CONTRACT_P, seg, n)
    region = _categorical(rng, np.full(4, 0.25), None, n)
    age = np.clip(np.rint(rng.normal(40.0 + 4.0 * (seg == 2), 12.0)), 18, 80).astype(np.int64)
    usage = np.round(np.exp(rng.normal(np.log(8.0) + 0.2 * plan, 0.6)), 1)
    fee = np.round(PLAN_FEE[plan] * SEGMENT_FEE_FACTOR[seg] + rng.normal(0.0, 2.0, n), 2)
    acquisition = np.round(CHANNEL_ACQUISITION[channel] * np.exp(rng.normal(0.0, 0.25, n)), 2)
    codes = {"segment": seg, "plan": plan, "channel": channel}
    return Population(
        signup_day=signup_day,
        segment=seg,
        plan=plan,
        contract=contract,
        channel=channel,
        region=region,
        age=age,
        usage=usage,
        fee=fee,
        acquisition=acquisition,
        xb=linear_predictor(codes, age, usage),
    )


# --------------------------------------------------------------- week loop
@dataclass
class History:
    """What happened: churn, problems in generation order, and the cases they opened."""

    end_day: np.ndarray  # day number of churn, -1 while active at as_of
    reason: np.ndarray  # REASONS code, -1 while active
    p_cust: np.ndarray
    p_week: np.ndarray
    p_type: np.ndarray
    p_severity: np.ndarray
    p_case: np.ndarray  # bool: the problem opened a case
    c_randomised: np.ndarray  # the rest below: one entry per case, in problem order
    c_arm: np.ndarray
    c_propensity: np.ndarray  # (case, instrument)
    c_remaining: np.ndarray  # (case, problem_type): weeks each type stays active
    c_after: np.ndarray  # case date on or after the shock


@dataclass(frozen=True)
class WeekModel:
    """Fixed inputs of the week loop."""

    total_days: int
    window: int
    block: int
    intervention_rate: float
    randomised_share: float
    shock_day: int | None
    cum_rates: np.ndarray  # (period * 3 + segment, problem_type), cumulative
    theta: np.ndarray  # see theta_table
    log_base: np.ndarray  # (contract, week)


def _mask_tables() -> tuple[np.ndarray, np.ndarray]:
    bits = (np.arange(32)[:, None] >> np.arange(5)) & 1
    gsum = bits @ PROBLEM_GAMMA
    share = np.cumsum(bits * PROBLEM_GAMMA, axis=1) / np.where(gsum > 0, gsum, 1.0)[:, None]
    return gsum, share


def simulate_weeks(rng: np.random.Generator, pop: Population, model: WeekModel) -> History:
    """Run the weekly hazard model over tenure weeks, vectorised over customers."""
    n = len(pop.signup_day)
    n_types = len(PROBLEM_TYPES)
    gsum, _ = _mask_tables()
    sev_cum = np.cumsum(SEVERITY_P, axis=1)
    mask = np.zeros(n, np.uint8)
    until = np.zeros((n, n_types), np.int32)
    block_until = np.zeros(n, np.int32)
    theta_cur = np.zeros(n)
    end_day = np.full(n, -1, np.int64)
    reason = np.full(n, -1, np.int8)
    started: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    problems: list[tuple[np.ndarray, ...]] = []
    cases: list[tuple[np.ndarray, ...]] = []
    act = np.arange(n)
    for w in range(-(-model.total_days // 7)):
        act = act[: np.searchsorted(act, np.searchsorted(pop.signup_day, model.total_days - 7 * w))]
        if w >= model.window:  # windows opened W weeks ago close now
            pc, pk, cc = started[w - model.window]
            done = until[pc, pk] == w
            mask[pc[done]] &= np.invert(np.left_shift(1, pk[done]).astype(np.uint8))
            theta_cur[cc] = 0.0
        if act.size == 0:
            break
        start = pop.signup_day[act] + 7 * w
        seg = pop.segment[act]
        row = seg.astype(np.int64)
        if model.shock_day is not None:
            row = row + 3 * (start >= model.shock_day)
        u = rng.random(act.size)
        new = np.flatnonzero((block_until[act] <= w) & (u < model.cum_rates[row, -1]))
        pc = act[new]
        pk = (u[new, None] >= model.cum_rates[row[new], :-1]).sum(axis=1)
        v = rng.random((new.size, 4))
        sev = (v[:, :1] >= sev_cum[pk, :-1]).sum(axis=1) + 1
        is_case = v[:, 1] < model.intervention_rate
        until[pc, pk] = w + model.window
        mask[pc] |= np.left_shift(1, pk).astype(np.uint8)
        ci = np.flatnonzero(is_case)
        cc, ck, cseg = pc[ci], pk[ci], seg[new[ci]]
        randomised = v[ci, 2] < model.randomised_share
        prop = np.full((ci.size, len(INSTRUMENTS)), 1.0 / len(INSTRUMENTS))
        r = ~randomised
        prop[r] = rule_propensities(
            cseg[r], sev[ci][r], pop.fee[cc[r]], np.full(r.sum(), w), ck[r], pop.contract[cc[r]]
        )
        arm = (v[ci, 3:4] >= np.cumsum(prop, axis=1)[:, :-1]).sum(axis=1)
        after = np.zeros(ci.size, bool)
        if model.shock_day is not None:
            after = start[new[ci]] >= model.shock_day
        theta_cur[cc] = model.theta[arm, ck, cseg, after.astype(np.int64)]
        block_until[cc] = w + model.block
        remaining = np.maximum(until[cc] - w, 0).astype(np.int16)
        started.append((pc, pk, cc))
        problems.append((pc, np.full(pc.size, w), pk, sev, is_case))
        cases.append((randomised, arm, prop, remaining, after))
        # churn in this week
        hazard = model.log_base[:, w][pop.contract[act]] + pop.xb[act]
        hazard += gsum[mask[act]] + theta_cur[act]
        act = _churn(rng, act, start, np.exp(hazard), mask, end_day, reason, model.total_days)
    p = [np.concatenate(x) for x in zip(*problems, strict=True)]
    c = [np.concatenate(x) for x in zip(*cases, strict=True)]
    return History(
        end_day, reason, p[0], p[1], p[2].astype(np.int8), p[3].astype(np.int8), p[4], *c
    )


def _churn(rng, act, start, weekly_hazard, mask, end_day, reason, total_days) -> np.ndarray:
    """Draw this week's churns: set their end day and reason; return the customers still active.

    A churn is caused by an open problem with the share of the hazard the open
    problems add, and then by one of them in proportion to its share; otherwise
    its reason is drawn from the base reasons.
    """
    gsum, gshare = _mask_tables()
    ch = np.flatnonzero(rng.standard_exponential(act.size) < weekly_hazard)
    day = start[ch] + (rng.random(ch.size) * 7).astype(np.int64)
    real = day < total_days
    ch, day = ch[real], day[real]
    cust = act[ch]
    end_day[cust] = day
    rr = rng.random((ch.size, 2))
    m = mask[cust]
    from_problem = rr[:, 0] < -np.expm1(-gsum[m])
    k = (rr[:, 1:] >= gshare[m, :-1]).sum(axis=1)
    base = (rr[:, 1:] >= np.cumsum(BASE_REASON_P)[:-1]).sum(axis=1)
    reason[cust] = np.where(from_problem, PROBLEM_REASON[k], base)
    keep = np.ones(act.size, bool)
    keep[ch] = False
    return act[keep]


# ------------------------------------------------------------ exact outcomes
@dataclass(frozen=True)
class CaseInputs:
    """What the exact outcome of one case depends on (one entry per case)."""

    customer: np.ndarray
    signup_day: np.ndarray
    case_day: np.ndarray
    week: np.ndarray
    contract: np.ndarray
    segment: np.ndarray
    xb: np.ndarray
    fee: np.ndarray
    ptype: np.ndarray
    remaining: np.ndarray
    after: np.ndarray


def bill_amount(fee: np.ndarray, discounted: np.ndarray | bool) -> np.ndarray:
    """Monthly bill in EUR (cents), reduced while a discount runs."""
    return np.where(discounted, np.round(fee * (1.0 - DISCOUNT_RATE), 2), fee)


def case_outcomes(
    start: np.datetime64,
    cases: CaseInputs,
    *,
    horizon: int,
    window: int,
    theta: np.ndarray,
    log_base: np.ndarray,
    chunk: int = 50_000,
    full_fee: bool = False,
    annual_discount: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact retention probability and expected bills over the horizon per case and arm.

    ``full_fee`` counts every bill at the full fee (the discount's reduction
    is then part of the instrument's cost, not of the bills); bill ``q`` after
    the case is weighted by ``(1 + annual_discount) ** (-q / 12)``.

    Returns
    -------
    tuple of numpy.ndarray
        ``p_retained`` and ``expected_revenue``, each of shape ``(case, instrument)``.
    """
    n, n_arms = len(cases.week), len(INSTRUMENTS)
    p_out, rev_out = np.empty((n, n_arms)), np.empty((n, n_arms))
    j = np.arange(horizon)
    n_bills = -(-horizon * 7 // 28) + 1
    weight = (1.0 + annual_discount) ** (-np.arange(n_bills) / 12.0)
    for lo in range(0, n, chunk):
        s = slice(lo, min(lo + chunk, n))
        week, rem = cases.week[s], cases.remaining[s]
        g = np.zeros((week.size, horizon))
        for k, gamma in enumerate(PROBLEM_GAMMA):
            g += gamma * (j[None, :] < rem[:, k : k + 1])
        base = np.exp(
            log_base[cases.contract[s][:, None], week[:, None] + j] + cases.xb[s][:, None] + g
        )
        k0 = first_bill_on_or_after(start, cases.signup_day[s], cases.case_day[s])
        q = np.arange(n_bills)
        bill = anniversary_day(start, cases.signup_day[s][:, None], k0[:, None] + q)
        dd = bill - cases.case_day[s][:, None]
        valid = dd < horizon * 7
        wb = np.minimum(dd // 7, horizon - 1)
        after_day = (6 - dd % 7) / 7.0  # P(churn day later than the bill | churn that week)
        rows = np.arange(week.size)[:, None]
        for a in range(n_arms):
            th = theta[a, cases.ptype[s], cases.segment[s], cases.after[s].astype(np.int64)]
            lam = base * np.where(j[None, :] < window, np.exp(th)[:, None], 1.0)
            cum = np.cumsum(lam, axis=1)
            p_out[s, a] = np.exp(-cum[:, -1])
            lam_b = lam[rows, wb]
            alive = np.exp(-(cum[rows, wb] - lam_b)) * (
                np.exp(-lam_b) - np.expm1(-lam_b) * after_day
            )
            discounted = (a == 1) & (q[None, :] < DISCOUNT_MONTHS) & (not full_fee)
            amount = bill_amount(cases.fee[s][:, None], discounted) * weight[None, :]
            rev_out[s, a] = (alive * amount * valid).sum(axis=1)
    return p_out, rev_out
