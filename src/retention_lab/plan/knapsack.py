"""Budget allocation: a multiple-choice knapsack with per-instrument capacities.

Each candidate gets at most one instrument ("do nothing" is always allowed);
the total cost stays within the budget and each instrument within its
capacity; the sum of net values (expected saved value minus cost) is
maximised. The linear relaxation is solved first with HiGHS' interior point
method and crossover: its basic optimum is integral for all but at most
``1 + number of capacities`` customers (one per coupling constraint); those
are dropped and the spare budget is filled greedily. The relaxation's optimum
bounds the integer optimum, so ``bound - value`` is a proven optimality gap.
When that gap is visible and there are at most ``exact_max_customers``
candidates, the integer program is solved with HiGHS (``scipy.optimize.milp``,
time-limited). Above ``lp_max_customers`` candidates the relaxation is solved
through its Lagrangian dual instead (see ``_lagrangian``), again with a proven gap.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from retention_lab.plan.settings import DEFAULTS

log = logging.getLogger(__name__)

NOTHING = -1
_TOL = 1e-7
LP_SAMPLE = 100_000  # candidates in the LP whose multipliers start the Lagrangian search
SWEEPS = 3  # rounds of bisection over the multipliers
ITERATIONS = 30  # bisection steps per multiplier
MIP_REL_GAP = 1e-6  # the integer solver stops once its proven gap is this small


@dataclass(frozen=True)
class Allocation:
    """One instrument (or nothing) per candidate, and how close it is to the optimum.

    Attributes
    ----------
    choice : numpy.ndarray
        Instrument index per candidate (column of the value matrix), ``-1`` = nothing.
    value : float
        Sum of the chosen net values.
    cost : float
        Sum of the chosen costs.
    bound : float
        Upper bound on the best achievable value (the optimum when ``method`` is exact).
    method : str
        "none needed" (every candidate got its best option), "milp" (exact) or
        "lp rounding" (linear relaxation rounded down, then filled greedily).
    seconds : float
        Solve time.
    multipliers : numpy.ndarray
        Prices of the budget and of each instrument's capacity, ``(1 + instrument,)``,
        from the relaxation (zeros where a constraint does not bind). The plan as a
        rule: give each customer the option with the largest positive
        ``value - multipliers[0] * cost - multipliers[1 + a]``.
    """

    choice: np.ndarray
    value: float
    cost: float
    bound: float
    method: str
    seconds: float
    multipliers: np.ndarray

    @property
    def gap(self) -> float:
        """Proven optimality gap, ``bound - value`` (currency units, >= 0)."""
        return max(self.bound - self.value, 0.0)

    @property
    def relative_gap(self) -> float:
        """Gap as a share of the bound (0 when the bound is 0)."""
        return self.gap / self.bound if self.bound > 0 else 0.0

    @property
    def n_treated(self) -> int:
        """Candidates given an instrument."""
        return int((self.choice >= 0).sum())


def _check(value: np.ndarray, cost: np.ndarray, budget: float, capacity: np.ndarray | None):
    value = np.asarray(value, dtype=float)
    cost = np.asarray(cost, dtype=float)
    if value.ndim != 2 or value.shape != cost.shape:
        raise ValueError(
            f"value and cost must be 2-d of the same shape, got {value.shape}, {cost.shape}"
        )
    if np.isnan(value).any() or np.isnan(cost).any():
        raise ValueError("value and cost must not contain NaN")
    if (cost < 0).any():
        raise ValueError("costs must be non-negative")
    if budget < 0 or not np.isfinite(budget):
        raise ValueError(f"budget must be a finite non-negative number, got {budget}")
    m = value.shape[1]
    cap = np.full(m, np.inf) if capacity is None else np.asarray(capacity, dtype=float)
    if cap.shape != (m,) or (cap < 0).any():
        raise ValueError(f"capacity must hold {m} non-negative numbers (inf = unlimited)")
    return value, cost, cap


def usage(choice: np.ndarray, cost: np.ndarray, n_options: int) -> tuple[float, np.ndarray]:
    """Total cost and customers per instrument of a choice vector."""
    rows = np.flatnonzero(choice >= 0)
    total = float(cost[rows, choice[rows]].sum())
    counts = np.bincount(choice[rows], minlength=n_options)
    return total, counts


def is_feasible(
    choice: np.ndarray, cost: np.ndarray, *, budget: float, capacity: np.ndarray | None = None
) -> bool:
    """Whether a choice vector keeps within the budget and every capacity."""
    total, counts = usage(choice, cost, cost.shape[1])
    cap = np.full(cost.shape[1], np.inf) if capacity is None else np.asarray(capacity, float)
    return total <= budget * (1 + 1e-9) + 1e-6 and bool((counts <= cap).all())


def allocate(
    value: np.ndarray,
    cost: np.ndarray,
    *,
    budget: float,
    capacity: np.ndarray | None = None,
    exact_max_customers: int = DEFAULTS.exact_max_customers,
    lp_max_customers: int = 100_000,
    time_limit: float = 20.0,
    dual: bool = False,
    random_state: int | np.random.Generator | None = None,
) -> Allocation:
    """Best instrument per candidate under a budget and per-instrument capacities.

    Parameters
    ----------
    value
        Net value of each option, ``(candidate, instrument)``; doing nothing is worth 0.
    cost
        Cost of each option, same shape, non-negative.
    budget
        Total cost allowed.
    capacity
        Most candidates per instrument (``inf`` = unlimited); default unlimited.
    exact_max_customers
        Up to this many candidates with a positive option, the integer program
        is solved when rounding the linear relaxation leaves a visible gap;
        above, the rounded relaxation is kept.
    lp_max_customers
        Above this many candidates the relaxation is solved through its
        Lagrangian dual (multipliers from a sample's LP, refined by bisection).
    time_limit
        Seconds allowed to the integer solver before falling back to rounding.
    dual
        Solve the relaxation (not the integer program) to report its multipliers.
    random_state
        Seed or generator of the Lagrangian route's sample of candidates.

    Returns
    -------
    Allocation
    """
    t0 = time.perf_counter()
    value, cost, cap = _check(value, cost, budget, capacity)
    n, m = value.shape
    eligible = (value > 0) & (cost <= budget) & (cap[None, :] >= 1)
    if not eligible.any():
        nothing = np.full(n, NOTHING, dtype=np.int64)
        return Allocation(
            nothing, 0.0, 0.0, 0.0, "none needed", time.perf_counter() - t0, np.zeros(m + 1)
        )
    # every candidate's best option, if that fits, is optimal
    masked = np.where(eligible, value, -np.inf)
    greedy = np.where(np.isfinite(masked.max(axis=1)), masked.argmax(axis=1), NOTHING)
    if is_feasible(greedy, cost, budget=budget, capacity=cap):
        return _result(greedy, value, cost, None, "none needed", t0, np.zeros(m + 1))
    program = _program(value, cost, eligible, budget, cap)
    rows, cols, customers, v, A, b, _ = program
    if customers.size > lp_max_customers:
        return _lagrangian(value, cost, eligible, budget, cap, t0, random_state=random_state)
    rounded = _round_relaxation(value, cost, eligible, budget, cap, program, t0)
    if dual or customers.size > exact_max_customers or rounded.relative_gap <= MIP_REL_GAP:
        return rounded
    # small instance with a visible gap: solve the integer program (time-limited)
    res = milp(
        -v,
        constraints=LinearConstraint(A, -np.inf, b),
        integrality=np.ones(v.size),
        bounds=Bounds(0, 1),
        options={"time_limit": time_limit, "mip_rel_gap": MIP_REL_GAP},
    )
    if res.x is None or res.status not in (0, 1) or -res.fun <= rounded.value:
        return rounded
    exact = np.full(n, NOTHING, dtype=np.int64)
    x = res.x > 0.5
    exact[rows[x]] = cols[x]
    bound = min(rounded.bound, -float(res.mip_dual_bound)) if res.status == 1 else -float(res.fun)
    method = "milp" if res.status == 0 else "milp (time limit)"
    bound = max(bound, -float(res.fun))
    return _result(exact, value, cost, bound, method, t0, rounded.multipliers)


def _round_relaxation(value, cost, eligible, budget, cap, program, t0) -> Allocation:
    """Solve the linear relaxation, keep its whole options, repair and fill greedily.

    The relaxation's value is the bound; its prices of the budget and of each
    capacity are the multipliers.
    """
    rows, cols, customers, v, A, b, limited = program
    res = linprog(-v, A_ub=A, b_ub=b, bounds=(0, 1), method="highs-ipm")
    if res.status != 0:
        raise RuntimeError(f"the linear relaxation failed: {res.message}")
    choice = np.full(value.shape[0], NOTHING, dtype=np.int64)
    whole = res.x >= 1 - 1e-6
    choice[rows[whole]] = cols[whole]
    choice = _repair(choice, value, cost, budget, cap)
    choice = fill_greedily(choice, value, cost, budget=budget, capacity=cap, eligible=eligible)
    prices = -res.ineqlin.marginals[customers.size :]
    duals = np.zeros(value.shape[1] + 1)
    duals[0] = max(prices[0], 0.0)
    duals[1 + limited] = np.maximum(prices[1:], 0.0)
    return _result(choice, value, cost, float(-res.fun), "lp rounding", t0, duals)


def _program(value, cost, eligible, budget, cap):
    """The eligible options and the constraints of the allocation's linear program.

    Returns
    -------
    tuple
        Row and column of each option, the candidates with an option, each option's
        value, the sparse constraint matrix (one option per candidate, the budget,
        each limited instrument's capacity), its bounds, and the limited instruments.
    """
    rows, cols = np.nonzero(eligible)
    customers, row_index = np.unique(rows, return_inverse=True)
    v, c = value[rows, cols], cost[rows, cols]
    limited = np.flatnonzero(np.isfinite(cap))
    k = v.size
    blocks = [sp.csr_matrix((np.ones(k), (row_index, np.arange(k))), shape=(customers.size, k))]
    blocks.append(sp.csr_matrix(c[None, :]))
    upper = [np.ones(customers.size), [budget]]
    if limited.size:
        sel = np.isin(cols, limited)
        pos = np.searchsorted(limited, cols[sel])
        blocks.append(
            sp.csr_matrix((np.ones(sel.sum()), (pos, np.flatnonzero(sel))), shape=(limited.size, k))
        )
        upper.append(cap[limited])
    return rows, cols, customers, v, sp.vstack(blocks, format="csr"), np.concatenate(upper), limited


def _lagrangian(value, cost, eligible, budget, cap, t0, *, random_state) -> Allocation:
    """Large instances: multipliers from a sample's LP, refined by bisection on all candidates.

    Any non-negative multipliers ``(lam, mu)`` give the bound
    ``lam * budget + sum(mu * cap) + sum_i max(0, max_a v_ia - lam c_ia - mu_a)``;
    the candidates' best options at the refined multipliers, trimmed to the
    budget and capacities and topped up greedily, give the allocation.
    """
    keep = np.flatnonzero(eligible.any(axis=1))
    v = np.where(eligible[keep], value[keep], -np.inf)
    c = cost[keep]
    n, m = v.shape
    limited = np.flatnonzero(np.isfinite(cap))
    rng = np.random.default_rng(random_state)
    sample = rng.choice(n, size=min(n, LP_SAMPLE), replace=False)
    share = sample.size / n
    sub = allocate(
        np.where(np.isfinite(v[sample]), v[sample], 0.0),
        c[sample],
        budget=budget * share,
        capacity=np.where(np.isfinite(cap), np.floor(cap * share), np.inf),
        exact_max_customers=0,
        lp_max_customers=LP_SAMPLE,
        dual=True,
    )
    lam, mu = sub.multipliers[0], np.zeros(m)
    mu[limited] = sub.multipliers[1:][limited] if sub.multipliers.size > 1 else 0.0

    def pick(lam, mu):
        r = v - lam * c - mu[None, :]
        best = r.argmax(axis=1)
        top = r[np.arange(n), best]
        return np.where(top > 0, best, NOTHING), top

    def spend(lam, mu):
        ch, _ = pick(lam, mu)
        return usage(ch, c, m)

    def smallest(f, lo, hi, iters=ITERATIONS):
        if f(lo):
            return lo
        while not f(hi):
            hi *= 2.0
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if f(mid) else (mid, hi)
        return hi

    vmax = float(np.nanmax(np.where(np.isfinite(v), v, np.nan)))
    for _ in range(SWEEPS):
        for a in limited:

            def within_cap(x, a=a, lam=lam):
                trial = mu.copy()
                trial[a] = x
                return spend(lam, trial)[1][a] <= cap[a]

            mu[a] = smallest(within_cap, 0.0, max(mu[a] * 2, vmax / 8 + 1.0))
        lam = smallest(lambda x: spend(x, mu)[0] <= budget, 0.0, max(lam * 2, 1.0))
    choice_k, top = pick(lam, mu)
    bound = (
        lam * budget + float((mu[limited] * cap[limited]).sum()) + float(np.maximum(top, 0).sum())
    )
    choice = np.full(value.shape[0], NOTHING, dtype=np.int64)
    choice[keep] = choice_k
    choice = _trim(choice, value, cost, budget, cap)
    choice = fill_greedily(choice, value, cost, budget=budget, capacity=cap, eligible=eligible)
    duals = np.concatenate([[lam], mu])
    out = _result(choice, value, cost, bound, "lagrangian", t0, duals)
    log.info("allocated %d candidates in %.1f s, gap %.2g", value.shape[0], out.seconds, out.gap)
    return out


def _trim(choice, value, cost, budget, cap) -> np.ndarray:
    """Drop the lowest value-per-cost choices until every capacity and the budget hold."""
    choice = choice.copy()
    rows = np.flatnonzero(choice >= 0)
    ratio = value[rows, choice[rows]] / np.maximum(cost[rows, choice[rows]], _TOL)
    for a in np.flatnonzero(np.isfinite(cap)):
        mine = np.flatnonzero(choice[rows] == a)
        extra = mine.size - int(cap[a])
        if extra > 0:
            choice[rows[mine[np.argsort(ratio[mine])[:extra]]]] = NOTHING
    rows = np.flatnonzero(choice >= 0)
    c = cost[rows, choice[rows]]
    ratio = value[rows, choice[rows]] / np.maximum(c, _TOL)
    order = np.argsort(-ratio, kind="stable")
    over = np.cumsum(c[order]) > budget * (1 + 1e-12)
    choice[rows[order[over]]] = NOTHING
    return choice


def _result(choice, value, cost, bound, method, t0, multipliers) -> Allocation:
    rows = np.flatnonzero(choice >= 0)
    achieved = float(value[rows, choice[rows]].sum())
    spent = float(cost[rows, choice[rows]].sum())
    return Allocation(
        choice=choice,
        value=achieved,
        cost=spent,
        bound=achieved if bound is None else max(bound, achieved),
        method=method,
        seconds=time.perf_counter() - t0,
        multipliers=np.asarray(multipliers, float),
    )


def _repair(choice, value, cost, budget, cap) -> np.ndarray:
    """Drop the lowest value-per-cost choices until budget and capacities hold (numerical slack)."""
    choice = choice.copy()
    while not is_feasible(choice, cost, budget=budget, capacity=cap):
        rows = np.flatnonzero(choice >= 0)
        ratio = value[rows, choice[rows]] / np.maximum(cost[rows, choice[rows]], _TOL)
        choice[rows[np.argmin(ratio)]] = NOTHING
    return choice


def fill_greedily(
    choice: np.ndarray,
    value: np.ndarray,
    cost: np.ndarray,
    *,
    budget: float,
    capacity: np.ndarray,
    eligible: np.ndarray,
) -> np.ndarray:
    """Give spare budget to untreated candidates, best value per cost first."""
    choice = choice.copy()
    spent, counts = usage(choice, cost, cost.shape[1])
    left = budget - spent
    open_ = eligible & (choice[:, None] == NOTHING) & (cost <= left + 1e-9)
    rows, cols = np.nonzero(open_)
    if rows.size == 0:
        return choice
    v, c = value[rows, cols], cost[rows, cols]
    order = np.lexsort((-v, -(v / np.maximum(c, _TOL))))
    room = capacity - counts
    for i in order:
        r, a = rows[i], cols[i]
        if choice[r] == NOTHING and c[i] <= left + 1e-9 and room[a] >= 1:
            choice[r] = a
            left -= c[i]
            room[a] -= 1
    return choice


def fill_in_order(
    order: np.ndarray,
    instrument: np.ndarray,
    cost: np.ndarray,
    *,
    budget: float,
    capacity: np.ndarray | None = None,
) -> np.ndarray:
    """Baseline targeting: go down ``order`` giving each candidate ``instrument`` while it fits.

    A candidate whose instrument no longer fits (budget or capacity) is skipped
    and the next one tried, so cheaper options still use up the budget.
    ``instrument[i] = -1`` leaves candidate ``i`` alone.
    """
    n, m = cost.shape
    cap = np.full(m, np.inf) if capacity is None else np.asarray(capacity, float).copy()
    choice = np.full(n, NOTHING, dtype=np.int64)
    left = float(budget)
    order = np.asarray(order)
    inst = np.asarray(instrument)[order]
    price = np.where(inst >= 0, cost[order, np.maximum(inst, 0)], np.inf)
    if np.isfinite(price).any():
        cheapest = float(price[np.isfinite(price)].min())
    else:
        return choice
    for r, a, p in zip(order, inst, price, strict=True):
        if left < cheapest - 1e-9:
            break
        if a >= 0 and p <= left + 1e-9 and cap[a] >= 1:
            choice[r] = a
            left -= p
            cap[a] -= 1
    return choice


def budget_curve(
    value: np.ndarray,
    cost: np.ndarray,
    budgets: np.ndarray,
    *,
    capacity: np.ndarray | None = None,
    exact_max_customers: int = DEFAULTS.exact_max_customers,
    random_state: int | np.random.Generator | None = None,
) -> pd.DataFrame:
    """Optimal net value, spend and customers treated at each budget.

    Returns
    -------
    pandas.DataFrame
        budget, net_value, saved_value (net value plus cost), spent, treated, bound, gap.
    """
    rows = []
    for b in np.asarray(budgets, float):
        a = allocate(
            value,
            cost,
            budget=b,
            capacity=capacity,
            exact_max_customers=exact_max_customers,
            random_state=random_state,
        )
        rows.append((b, a.value, a.value + a.cost, a.cost, a.n_treated, a.bound, a.gap))
    cols = ["budget", "net_value", "saved_value", "spent", "treated", "bound", "gap"]
    return pd.DataFrame(rows, columns=cols)
