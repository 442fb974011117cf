"""The survival stage in one call: ``analyse`` -> ``SurvivalSummary``; ``findings`` words it."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from retention_lab import progress, units
from retention_lab.errors import DataError, StatisticalWarning
from retention_lab.labels import label
from retention_lab.survival import descriptive as desc
from retention_lab.survival import regression as reg
from retention_lab.survival import threats as thr
from retention_lab.survival._prep import (
    DURATION,
    EVENT,
    check_customers,
    make_rng,
    require_events,
    with_cohort,
)
from retention_lab.survival.scores import score_active
from retention_lab.survival.validation import Validation, compare_to_truth, validate
from retention_lab.units import TenureUnit

log = logging.getLogger(__name__)

EMPTY_CIF = pd.DataFrame(
    columns=["grouping", "group", "churn_reason", "time_months", "cif", "lower", "upper"]
)
EMPTY_RMST = pd.DataFrame(
    columns=[
        "grouping",
        "group",
        "customers",
        "tau_months",
        "rmst_months",
        "lower",
        "upper",
        "reference",
        "difference_months",
        "difference_lower",
        "difference_upper",
    ]
)
# the columns of a summary's tables that hold tenures (months) and rates per customer-month,
# shown in the declared tenure unit by ``SurvivalSummary.in_unit``
TENURE_COLUMNS = {
    "median": {"tenures": ["median_months", "lower", "upper", "max_followup_months"]},
    "retention": {"tenures": ["horizon_months"]},
    "km": {"tenures": ["time_months"]},
    "aft": {"tenures": ["median_months"]},
    "brier": {"tenures": ["time_months"]},
    "hazard": {"tenures": ["time_months"], "rates": ["hazard", "lower", "upper"]},
    "rmst": {
        "tenures": [
            "tau_months",
            "rmst_months",
            "lower",
            "upper",
            "difference_months",
            "difference_lower",
            "difference_upper",
        ]
    },
}
EMPTY_REASONS = pd.DataFrame(columns=["churn_reason", "churned", "share_of_churn"])
EMPTY_THREATS = pd.DataFrame(
    columns=[
        "problem_type",
        "hazard_ratio",
        "hr_lower",
        "hr_upper",
        "churned_while_active",
        "attributable_churn",
        "attributable_lower",
        "attributable_upper",
        "share_of_churn",
        "rank",
    ]
)


@dataclass(frozen=True)
class SurvivalSummary:
    """Everything the survival stage estimated; tables are DataFrames (see each function).

    ``median``/``retention``/``km``/``hazard``/``rmst`` come from
    :mod:`~retention_lab.survival.descriptive`; ``cif`` and ``reasons`` from the
    competing-risks analysis; ``cox`` is the static stratified Cox model (fitted
    on all customers or a stated sample), ``problem_cox`` the model with problem
    events as time-varying covariates (None without a problems table) and
    ``threats`` its ranking of problem types; ``validation`` the held-out checks;
    ``scores`` one row per active customer; ``truth`` estimated vs true hazard
    ratios (empty on real data); ``timings`` seconds per step.

    Tables hold tenures in months; ``unit`` is the unit the user declared
    (``data.tenure_unit``), in which :meth:`in_unit`, :meth:`to_metrics` and
    :func:`findings` report them (the scores keep the months of their contract).
    """

    n_customers: int
    n_churned: int
    n_active: int
    horizon_months: float
    median: pd.DataFrame
    retention: pd.DataFrame
    km: pd.DataFrame
    logrank: pd.DataFrame
    logrank_pairwise: pd.DataFrame
    hazard: pd.DataFrame
    rmst: pd.DataFrame
    cif: pd.DataFrame
    reasons: pd.DataFrame
    cox: reg.CoxResult
    ph: pd.DataFrame
    aft: reg.AFTComparison
    problem_cox: reg.CoxResult | None
    threats: pd.DataFrame
    validation: Validation
    scores: pd.DataFrame
    truth: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    unit: TenureUnit = field(default_factory=TenureUnit)

    def in_unit(self, table: str) -> pd.DataFrame:
        """A table of the report in the declared unit.

        ``table`` is median, retention, km, hazard, rmst, aft (``aft.table``) or
        brier (``validation.brier``).

        Tenures are converted and their ``*_months`` columns renamed ``*_<unit>``;
        hazards are per customer-``unit``.

        Returns
        -------
        pandas.DataFrame
            The columns of the table, ``median_months``, ``max_followup_months``,
            ``horizon_months``, ``time_months``, ``tau_months``, ``rmst_months`` and
            ``difference_months`` named for the unit (``median_days``, ``horizon_days``...).
        """
        nested = {"aft": self.aft.table, "brier": self.validation.brier}
        frame = nested[table] if table in nested else getattr(self, table)
        return self.unit.table(frame, **TENURE_COLUMNS[table])

    @property
    def hazard_ratios(self) -> pd.DataFrame:
        """Hazard ratios of the most complete model (with problems when available).

        Returns
        -------
        pandas.DataFrame
            ``term``, ``covariate``, ``level``, ``reference``, ``kind``, ``log_hazard_ratio``,
            ``se``, ``log_hr_lower``, ``log_hr_upper``, ``hazard_ratio``, ``hr_lower``,
            ``hr_upper`` (95%), ``p_value`` (see
            :class:`~retention_lab.survival.regression.CoxResult`).
        """
        return (self.problem_cox or self.cox).hazard_ratios

    def _overall(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["grouping"] == desc.ALL]

    def to_metrics(self) -> dict[str, float]:
        """Headline numbers for MLflow and ``results.json``.

        Only finite numbers are returned: a median tenure (or CI bound) the data do
        not reach is left out and ``median_reached`` is 0. Tenures are in the
        declared unit, which the names carry: ``median_tenure_months`` and
        ``retention_12m`` for months, ``median_tenure_days`` and ``retention_365.25d``
        for days (and so on for the Brier scores at the same horizons); the score
        horizon's metrics stay in months, as the scores table.
        """
        u = self.unit
        med = self._overall(self.in_unit("median")).iloc[0]
        m = {
            "n_customers": float(self.n_customers),
            "n_churned": float(self.n_churned),
            "n_active": float(self.n_active),
            f"median_tenure_{u.name}": float(med[f"median_{u.name}"]),
            "median_tenure_lower": float(med["lower"]),
            "median_tenure_upper": float(med["upper"]),
        }
        for r in self._overall(self.retention).itertuples():
            key = f"retention_{u.from_months(r.horizon_months):g}{u.letter}"
            m[key] = float(r.retention)
            m[f"{key}_lower"] = float(r.lower)
            m[f"{key}_upper"] = float(r.upper)
        v = self.validation
        m["concordance_held_out"] = v.concordance
        m["concordance_in_sample"] = self.cox.concordance_in_sample
        if np.isfinite(v.ici):
            m.update({"calibration_ici": v.ici, "calibration_e50": v.e50})
        for r in v.brier.itertuples():
            m[f"brier_{u.from_months(r.time_months):g}{u.letter}"] = float(r.brier)
        m["ph_violations"] = float(
            (~self.ph["proportional"] & (self.ph["in_model_as"] == "covariate")).sum()
        )
        if len(self.threats):
            top = self.threats.iloc[0]
            m["top_threat_share_of_churn"] = float(top["share_of_churn"])
        if len(self.scores):
            m[f"mean_p_churn_{self.horizon_months:g}m"] = float(
                self.scores["p_churn_horizon"].mean()
            )
            m["mean_expected_remaining_months"] = float(
                self.scores["expected_remaining_months"].mean()
            )
        if len(self.truth):
            m["truth_coverage"] = float(self.truth["covered"].mean())
        m["median_reached"] = float(np.isfinite(m[f"median_tenure_{u.name}"]))
        return {k: v for k, v in m.items() if np.isfinite(v)}


def analyse(tables, inputs, settings, *, truth=None, random_state=None) -> SurvivalSummary:
    """Run the whole survival analysis of customer tenure.

    Parameters
    ----------
    tables
        The run's canonical tables (a ``Tables``): ``customers`` is required;
        ``problems`` feeds the problem model and ``interventions`` (optional)
        gives treated problem windows their own hazard ratios. Tenures are
        reported in ``tables.tenure_unit`` (the declared ``data.tenure_unit``).
    inputs
        None: the survival stage reads no earlier stage's outputs.
    settings
        The configuration's ``survival`` section (``SurvivalSettings``); a smoke
        run passes ``SurvivalSettings.fast()`` (every model sample capped). Every
        ``*_months`` option stays in months; ``horizons``, when given, are the
        retention horizons in the tenure unit. The ``max_*`` options cap the
        customers a model is fitted on (a random sample, stratified by strata and
        churn status); descriptive statistics and scores always use every customer.
    truth
        The simulator's ``GroundTruth``, or None on real data.
    """
    if inputs is not None:
        raise TypeError("the survival stage reads no earlier stage's outputs: pass inputs=None")
    s = settings
    customers = with_cohort(tables.customers)
    covariates, strata, groups = _available(
        customers, covariates=s.covariates, strata=s.strata, groups=s.groups
    )
    check_customers(customers, columns=[*covariates, *strata, *groups])
    require_events(customers, what="analyse survival")
    unit = units.tenure_unit(tables.tenure_unit)
    horizons = s.horizons_months if s.horizons is None else [unit.to_months(h) for h in s.horizons]
    timed = _Timer(len(customers))
    described = _describe(customers, groups, strata, horizons, s, timed)
    rng = make_rng(random_state)
    models = _fit_models(customers, covariates, strata, s, rng, timed)
    problem_cox, threats = _problem_model(
        customers, tables.problems, tables.interventions, covariates, strata, models["cox"], s,
        rng, timed,
    )  # fmt: skip
    validation = timed(
        "validation",
        validate,
        customers,
        covariates=covariates,
        strata=strata,
        horizon_months=s.score_horizon_months,
        brier_times=[h for h in horizons if h < customers[DURATION].max()],
        test_share=s.test_share,
        max_customers=s.max_validation_customers,
        random_state=rng,
    )
    scores = timed(
        "scores", score_active, models["cox"], customers, horizon_months=s.score_horizon_months
    )
    truth_table = compare_to_truth(
        problem_cox or models["cox"],
        getattr(truth, "log_hazard_ratios", None),
        getattr(truth, "problem_log_hazard_ratios", None),
    )
    n_churned = int(customers[EVENT].sum())
    return SurvivalSummary(
        n_customers=len(customers),
        n_churned=n_churned,
        n_active=len(customers) - n_churned,
        horizon_months=float(s.score_horizon_months),
        **described,
        **models,
        problem_cox=problem_cox,
        threats=threats,
        validation=validation,
        scores=scores,
        truth=truth_table,
        timings=timed.timings,
        unit=unit,
    )


class _Timer:
    """Run a step with a progress line and record its seconds under its name."""

    def __init__(self, n_customers: int):
        self.n_customers = n_customers
        self.timings: dict[str, float] = {}

    def __call__(self, name, fn, *args, **kwargs):
        progress.step(f"{name.replace('_', ' ')} on {self.n_customers:,} customers")
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.timings[name] = time.perf_counter() - start
        log.info("survival: %s took %.1f s", name, self.timings[name])
        return out


def _describe(customers, groups, strata, horizons, s, timed) -> dict[str, pd.DataFrame]:
    """The descriptive tables: medians, retention, Kaplan-Meier, log-rank, hazard, RMST, CIF."""
    by = [None, *groups]
    out = {
        "median": timed("median", _stack, desc.median_tenure, customers, by),
        "retention": timed(
            "retention", _stack, desc.retention_at, customers, by, horizons=horizons
        ),
        "km": timed("kaplan_meier", _stack, desc.km_table, customers, by),
    }
    out["logrank"], out["logrank_pairwise"] = timed(
        "logrank", desc.logrank_tests, customers, by=groups
    )
    out["hazard"] = timed(
        "hazard",
        _stack,
        desc.hazard_table,
        customers,
        [None, *strata],
        bandwidth_months=s.hazard_bandwidth_months,
    )
    out["rmst"] = (
        timed("rmst", _stack, desc.rmst_table, customers, groups, tau_months=s.rmst_months)
        if groups
        else EMPTY_RMST
    )
    out["cif"], out["reasons"] = EMPTY_CIF, EMPTY_REASONS
    if "churn_reason" in customers.columns:
        by_reason = [None, *(["segment"] if "segment" in customers.columns else [])]
        out["cif"] = timed(
            "cumulative_incidence", _stack, thr.cumulative_incidence, customers, by_reason
        )
        out["reasons"] = thr.reason_table(out["cif"], customers, horizons=horizons)
    return out


def _fit_models(customers, covariates, strata, s, rng, timed) -> dict:
    """The Cox model, its proportional-hazards test (warning on a violation) and the AFT models."""
    model = {"covariates": covariates, "strata": strata, "random_state": rng}
    cox = timed("cox", reg.fit_cox, customers, max_customers=s.max_cox_customers, **model)
    ph = timed("ph_test", reg.ph_test, customers, max_customers=s.max_ph_customers, **model)
    violated = ~ph["proportional"] & (ph["in_model_as"] == "covariate")
    if violated.any():
        bad = ph.loc[violated, "covariate"].tolist()
        warnings.warn(
            f"proportional hazards is rejected for {bad}; see the remedy column of the PH "
            "test table",
            StatisticalWarning,
            stacklevel=3,
        )
    aft = timed("aft", reg.fit_aft, customers, max_customers=s.max_aft_customers, **model)
    return {"cox": cox, "ph": ph, "aft": aft}


def _problem_model(customers, problems, interventions, covariates, strata, cox, s, rng, timed):
    """The problem events as time-varying covariates and the threat table they rank."""
    if problems is None or not len(problems):
        return None, EMPTY_THREATS
    problem_cox = timed(
        "problem_cox",
        reg.fit_problem_cox,
        customers,
        problems,
        covariates=covariates,
        strata=strata,
        window_days=s.problem_window_days,
        interventions=interventions,
        references=cox.design.references,
        max_customers=s.max_problem_customers,
        random_state=rng,
    )
    hr = problem_cox.hazard_ratios
    problem_hr = hr[hr["kind"].isin(["problem", "problem_treated"])]
    exposed = timed(
        "exposure",
        thr.events_while_exposed,
        customers,
        thr.mark_treated(problems, interventions),
        window_days=s.problem_window_days,
        problem_types=[term[len("problem[") : -1] for term in problem_hr["term"]],
    )
    return problem_cox, thr.threat_table(problem_hr, exposed, n_churned=int(customers[EVENT].sum()))


def _stack(function, customers: pd.DataFrame, groupings: Sequence[str | None], **kwargs):
    """Concatenate ``function(customers, by=g, **kwargs)`` over the groupings."""
    return pd.concat([function(customers, by=g, **kwargs) for g in groupings], ignore_index=True)


FALLBACK_COVARIATES = ("segment", "monthly_fee", "plan", "channel")


def _available(customers: pd.DataFrame, **lists: Sequence[str]) -> list[list[str]]:
    """Keep the configured columns this dataset has; warn about the others."""
    out, missing = [], []
    for name, columns in lists.items():
        out.append([c for c in columns if c in customers.columns])
        missing += [f"{c} ({name})" for c in columns if c not in customers.columns]
    if missing:
        warnings.warn(
            f"this dataset has no column {', '.join(missing)}; left out of the survival "
            "analysis (set survival.covariates, strata and groups to silence this)",
            StatisticalWarning,
            stacklevel=3,
        )
    if not out[0]:  # the Cox model needs one covariate: the first of these the data have
        out[0] = [c for c in FALLBACK_COVARIATES if c in customers.columns][:1]
    if not out[0]:
        raise DataError(
            file="customers",
            column=", ".join(lists["covariates"]),
            expected=f"a covariate of the Cox model: set survival.covariates to columns the "
            f"customers table has (present: {sorted(customers.columns)[:15]})",
        )
    return out


def _bound(x: float) -> str:
    return f"{x:,.1f}" if np.isfinite(x) else "not reached"


def _tenure(x: float, unit: TenureUnit) -> str:
    return f"{x:,.1f} {unit.name}"


POOR_CALIBRATION_ICI = 0.05  # mean absolute error of churn probabilities that calls for a warning


def findings(result: SurvivalSummary, *, labels: Mapping[str, str] | None = None) -> list[str]:
    """Plain-language sentences for the top of the report, computed from the results.

    Terms and levels read as ``retention_lab.labels.label`` words them, with
    ``labels`` (the configuration's ``report.labels``) first.
    """
    return [
        *_tenure_findings(result, labels),
        *_threat_findings(result, labels),
        *_model_findings(result),
    ]


def _tenure_findings(result: SurvivalSummary, labels) -> list[str]:
    """How long customers stay: the median, retention, the gap between segments, the peak risk."""
    out, u = [], result.unit
    median = result.in_unit("median")
    med = median[median["grouping"] == desc.ALL].iloc[0]
    if np.isfinite(med[f"median_{u.name}"]):
        out.append(
            f"Half of the customers leave within {_tenure(med[f'median_{u.name}'], u)} "
            f"(95% CI {_bound(med['lower'])} to {_bound(med['upper'])}); "
            f"{result.n_churned:,} of {result.n_customers:,} customers have churned."
        )
    else:
        out.append(
            f"More than half of the customers are still retained after "
            f"{_tenure(med[f'max_followup_{u.name}'], u)}, the longest tenure observed, so the "
            "median "
            f"tenure is not reached; {result.n_churned:,} of {result.n_customers:,} have churned."
        )
    retention = result.in_unit("retention")
    ret = retention[retention["grouping"] == desc.ALL]
    horizon = f"horizon_{u.name}"
    if len(ret):
        parts = [f"{r.retention:.0%} after {getattr(r, horizon):g}" for r in ret.itertuples()]
        out.append("Share still retained: " + ", ".join(parts) + f" {u.name}.")
    seg = median[median["grouping"] == "segment"]
    rmst = result.in_unit("rmst")
    rm = rmst[rmst["grouping"] == "segment"]
    mean, tau = f"rmst_{u.name}", f"tau_{u.name}"
    if len(rm) > 1:
        best, worst = rm.loc[rm[mean].idxmax()], rm.loc[rm[mean].idxmin()]
        out.append(
            f"Within the first {best[tau]:g} {u.name}, {label(best['group'], labels)} "
            f"customers stay {best[mean] - worst[mean]:,.1f} {u.name} longer on "
            f"average than {label(worst['group'], labels)} customers "
            f"({best[mean]:,.1f} vs {worst[mean]:,.1f})."
        )
    elif len(seg) > 1:
        out.append(
            f"Median tenure by segment ranges from {seg[f'median_{u.name}'].min():,.1f} to "
            f"{seg[f'median_{u.name}'].max():,.1f} {u.name}."
        )
    hazard = result.in_unit("hazard")
    haz = hazard[hazard["grouping"] != desc.ALL]
    if len(haz):
        peak = haz.loc[haz["hazard"].idxmax()]
        out.append(
            f"The churn risk peaks at {_tenure(peak[f'time_{u.name}'], u)} of tenure for "
            f"{label(peak['grouping'], labels)} {label(peak['group'], labels)} "
            f"({peak['hazard']:.1%} per {u.singular})."
        )
    return out


def _threat_findings(result: SurvivalSummary, labels) -> list[str]:
    """Why customers leave: the top threat and reason, the covariates, the model checks."""
    out: list[str] = []
    if len(result.threats):
        top = result.threats.iloc[0]
        out.append(
            f"The most damaging threat is {label(top['problem_type'], labels)} problems: while "
            "active they "
            f"multiply the churn hazard by {top['hazard_ratio']:.2f} (95% CI {top['hr_lower']:.2f}"
            f" to {top['hr_upper']:.2f}) and caused about {top['attributable_churn']:,.0f} churns "
            f"({top['share_of_churn']:.1%} of all churn)."
        )
    if len(result.reasons):
        r0 = result.reasons.iloc[0]
        out.append(
            f"The most common churn reason is {label(r0['churn_reason'], labels)} "
            f"({r0['share_of_churn']:.0%} of churned customers)."
        )
    hr = result.hazard_ratios
    cov = hr[~hr["kind"].isin(["problem", "problem_treated"])]
    if len(cov):
        hi, lo = cov.loc[cov["hazard_ratio"].idxmax()], cov.loc[cov["hazard_ratio"].idxmin()]
        out.append(
            f"Adjusted for the other covariates, {label(hi['term'], labels)} has the highest "
            f"churn hazard (HR {hi['hazard_ratio']:.2f}) and {label(lo['term'], labels)} the "
            f"lowest (HR {lo['hazard_ratio']:.2f})."
        )
    bad = result.ph[~result.ph["proportional"]]
    if len(bad):
        out.append(
            "Proportional hazards fails for "
            + ", ".join(label(c, labels) for c in bad["covariate"])
            + "; remedy: "
            + "; ".join(dict.fromkeys(bad["remedy"]))
            + "."
        )
    best = result.aft.table.iloc[0]
    out.append(
        f"Among the parametric models, the {best['model']} AFT fits best by AIC "
        f"(next best {result.aft.table['delta_aic'].iloc[1]:.0f} AIC points worse)."
    )
    return out


def _model_findings(result: SurvivalSummary) -> list[str]:
    """How far the churn scores can be trusted: validation, scores, truth, samples."""
    out: list[str] = []
    v = result.validation
    ranks = (
        f"On {v.n_test:,} held-out customers the model ranks churners with a concordance of "
        f"{v.concordance:.2f} ({result.cox.concordance_in_sample:.2f} on the customers it was "
        "fitted on, the figure published analyses report)"
    )
    if not np.isfinite(v.ici):
        out.append(ranks + "; its calibration could not be assessed (the smoothing fit failed).")
    elif v.ici > POOR_CALIBRATION_ICI:
        out.append(
            ranks + f". Warning: its {v.horizon_months:g}-month churn probabilities are off by "
            f"{v.ici:.1%} on average (ICI above {POOR_CALIBRATION_ICI:.0%}): use them to rank "
            "customers, not as rates, until the model is improved."
        )
    else:
        out.append(
            ranks + f"; its {v.horizon_months:g}-month churn probabilities are off by "
            f"{v.ici:.1%} on average (ICI)."
        )
    if len(result.scores):
        s = result.scores
        out.append(
            f"Of {len(s):,} active customers, {(s['p_churn_horizon'] > 0.5).sum():,} are more "
            f"likely than not to leave within {result.horizon_months:g} months; the average "
            f"risk is {s['p_churn_horizon'].mean():.1%}."
        )
    if len(result.truth):
        t = result.truth
        out.append(
            f"On simulated data, {int(t['covered'].sum())} of {len(t)} true hazard ratios lie "
            "inside the 95% confidence intervals of the estimates."
        )
    sampled = [
        n for n, m in (("Cox", result.cox), ("problem Cox", result.problem_cox)) if m and m.sampled
    ]
    if sampled:
        out.append(
            "For speed, "
            + " and ".join(
                f"the {n} model was fitted on a random sample of {m.n_customers:,} customers"
                for n, m in (("Cox", result.cox), ("problem Cox", result.problem_cox))
                if m and m.sampled
            )
            + "."
        )
    return out
