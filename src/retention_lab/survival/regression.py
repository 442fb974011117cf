"""Regression: Cox models (static, and with time-varying problems), PH test, AFT models."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from lifelines import LogLogisticAFTFitter, LogNormalAFTFitter, WeibullAFTFitter
from lifelines.exceptions import ConvergenceError
from lifelines.statistics import proportional_hazard_test

from retention_lab.cox import CoxPHFitter
from retention_lab.errors import DataError, StatisticalWarning
from retention_lab.survival._cox import CountingProcessCox, fit_counting_process_cox
from retention_lab.survival._prep import (
    DURATION,
    EVENT,
    FILE,
    Design,
    check_customers,
    check_level_events,
    design_matrix,
    make_rng,
    require_events,
    sample_customers,
    stratum_keys,
)
from retention_lab.survival.settings import DEFAULTS
from retention_lab.survival.threats import TREATED, mark_treated, problem_episodes
from retention_lab.units import DAYS_PER_MONTH, Z95

HR_COLUMNS = [
    "term",
    "covariate",
    "level",
    "reference",
    "kind",
    "log_hazard_ratio",
    "se",
    "log_hr_lower",
    "log_hr_upper",
    "hazard_ratio",
    "hr_lower",
    "hr_upper",
    "p_value",
]


@dataclass(frozen=True)
class CoxResult:
    """A fitted Cox model and its hazard ratios.

    ``hazard_ratios`` columns: ``term``, ``covariate``, ``level``, ``reference``, ``kind``
    ("categorical", "numeric", "problem" or "problem_treated"), ``log_hazard_ratio``, ``se``,
    ``log_hr_lower``,
    ``log_hr_upper``, ``hazard_ratio``, ``hr_lower``, ``hr_upper`` (95%), ``p_value``.
    Numeric covariates are per one unit of the column.
    """

    model: CoxPHFitter | CountingProcessCox
    hazard_ratios: pd.DataFrame
    design: Design = field(repr=False)
    strata: tuple[str, ...]
    n_customers: int
    n_events: int
    n_available: int
    means: pd.Series = field(repr=False)

    @property
    def concordance_in_sample(self) -> float:
        """Harrell's concordance on the customers the model was fitted on (lifelines').

        Published Cox analyses report this figure; the held-out one is in ``Validation``.
        """
        return float(getattr(self.model, "concordance_index_", float("nan")))

    @property
    def sampled(self) -> bool:
        """Whether the model was fitted on a random sample of the customers."""
        return self.n_customers < self.n_available

    def covariance(self) -> pd.DataFrame:
        """Variance-covariance matrix of the log hazard ratios.

        Returns
        -------
        pandas.DataFrame
            One row and one column per model term, labelled like the ``term`` column
            of ``hazard_ratios`` (``age``, ``segment[vip]``, ...).
        """
        return self.model.variance_matrix_


def _hr_table(model, design_terms: pd.DataFrame) -> pd.DataFrame:
    s = model.summary
    terms = design_terms.set_index("term").reindex(s.index)
    beta, se = s["coef"].to_numpy(), s["se(coef)"].to_numpy()
    out = pd.DataFrame(
        {
            "term": s.index,
            "covariate": terms["covariate"].to_numpy(),
            "level": terms["level"].to_numpy(),
            "reference": terms["reference"].to_numpy(),
            "kind": terms["kind"].to_numpy(),
            "log_hazard_ratio": beta,
            "se": se,
            "log_hr_lower": beta - Z95 * se,
            "log_hr_upper": beta + Z95 * se,
        }
    )
    out["hazard_ratio"] = np.exp(out["log_hazard_ratio"])
    out["hr_lower"], out["hr_upper"] = np.exp(out["log_hr_lower"]), np.exp(out["log_hr_upper"])
    out["p_value"] = s["p"].to_numpy()
    if not np.isfinite(out[["log_hazard_ratio", "se"]].to_numpy()).all():
        bad = out.loc[~np.isfinite(out["se"]), "term"].tolist()
        raise DataError(
            file=FILE,
            column=", ".join(bad),
            expected="covariates whose hazard ratio can be estimated (the fit gave no "
            "finite standard error): drop or merge them",
        )
    return out[HR_COLUMNS]


def _warn_unstable(table: pd.DataFrame) -> None:
    wide = table[(table["se"] > 2.0)]
    if len(wide):
        warnings.warn(
            f"hazard ratios of {wide['term'].tolist()} are very imprecise (standard error of "
            "the log hazard ratio above 2): merge sparse levels or collect more data",
            StatisticalWarning,
            stacklevel=3,
        )


def fit_cox(
    customers: pd.DataFrame,
    *,
    covariates: Sequence[str],
    strata: Sequence[str] = tuple(DEFAULTS.strata),
    references: Mapping[str, str] | None = None,
    max_customers: int | None = None,
    penalizer: float = 0.0,
    random_state: int | np.random.Generator | None = None,
) -> CoxResult:
    """Cox model of churn on tenure with covariates at signup, stratified by ``strata``.

    Stratifying gives each stratum (e.g. contract type) its own baseline hazard,
    the remedy when a factor does not act proportionally on the hazard. With more
    than ``max_customers`` customers the model is fitted on a random sample of that
    size, stratified by the strata and churn status.
    """
    check_customers(customers, columns=[*covariates, *strata])
    require_events(customers, what="fit a Cox model")
    rng = make_rng(random_state)
    fit_on = sample_customers(customers, max_customers, by=[*strata, EVENT], rng=rng)
    design = design_matrix(fit_on, covariates, references=references)
    check_level_events(design, fit_on[EVENT].to_numpy(bool))
    frame = design.X.assign(
        **{DURATION: fit_on[DURATION].to_numpy(float), EVENT: fit_on[EVENT].to_numpy(bool)}
    )
    for col in strata:
        frame[col] = fit_on[col].astype(str).to_numpy()
    model = CoxPHFitter(penalizer=penalizer)
    try:
        model.fit(frame, duration_col=DURATION, event_col=EVENT, strata=list(strata) or None)
    except ConvergenceError as exc:
        raise DataError(
            file=FILE,
            column=", ".join(covariates),
            expected=f"covariates a Cox model can fit (lifelines: {str(exc).splitlines()[0]}); "
            "look for a covariate that separates churned from active customers",
        ) from None
    return _cox_result(model, design.terms, design, strata, fit_on, n_available=len(customers))


def _cox_result(model, terms, design, strata, fit_on, *, n_available: int) -> CoxResult:
    """Hazard-ratio table (with the instability warning) and the fitted model's bookkeeping."""
    table = _hr_table(model, terms)
    _warn_unstable(table)
    return CoxResult(
        model=model,
        hazard_ratios=table,
        design=design,
        strata=tuple(strata),
        n_customers=len(fit_on),
        n_events=int(fit_on[EVENT].sum()),
        n_available=n_available,
        means=design.X.mean(),
    )


def fit_problem_cox(
    customers: pd.DataFrame,
    problems: pd.DataFrame,
    *,
    covariates: Sequence[str],
    strata: Sequence[str] = tuple(DEFAULTS.strata),
    window_days: float | dict[str, float] = 91.0,
    interventions: pd.DataFrame | None = None,
    references: Mapping[str, str] | None = None,
    max_customers: int | None = None,
    random_state: int | np.random.Generator | None = None,
) -> CoxResult:
    """Cox model with problem events as time-varying covariates (counting-process form).

    Each problem type is a 0/1 covariate that is 1 while a problem of that type
    is active (``window_days`` from its date), so its hazard ratio is the
    multiplication of the churn hazard while the problem lasts, adjusted for the
    covariates; strata get their own baseline. Large data are fitted on a random sample of
    customers, stratified by strata and churn status, when there are more than
    ``max_customers``.

    The fit uses :func:`~retention_lab.survival._cox.fit_counting_process_cox`
    (Breslow ties), because lifelines' ``CoxTimeVaryingFitter`` is too slow beyond
    some ten thousand customers; the two agree on data without ties.

    With ``interventions``, windows of problems answered by a retention action
    get their own terms ``problem[<type>, treated]`` (kind "problem_treated"; see
    :func:`~retention_lab.survival.threats.mark_treated`), so ``problem[<type>]``
    is the effect of an untreated problem.
    """
    check_customers(customers, columns=[*covariates, *strata, "signup_date"])
    require_events(customers, what="estimate problem hazard ratios")
    rng = make_rng(random_state)
    fit_on = sample_customers(customers, max_customers, by=[*strata, EVENT], rng=rng)
    problems = mark_treated(problems, interventions)
    types = sorted(problems["problem_type"].astype(str).unique())
    if not types:
        raise DataError(
            file="problems",
            column="problem_type",
            expected="at least one problem event to estimate problem hazard ratios",
        )
    design = design_matrix(fit_on, covariates, references=references)
    check_level_events(design, fit_on[EVENT].to_numpy(bool))
    episodes = problem_episodes(
        fit_on, problems, strata=strata, window_days=window_days, problem_types=types
    )
    types = _exposed_types(types, episodes)
    problem_cols = [f"problem[{t}]" for t in types]
    frame = _episode_frame(fit_on, design, episodes, problem_cols, strata)
    columns = [*design.X.columns, *problem_cols]
    strata_key = stratum_keys(frame, strata) if strata else None
    try:
        model = fit_counting_process_cox(
            frame[columns],
            frame["start"].to_numpy(),
            frame["stop"].to_numpy(),
            frame[EVENT].to_numpy(),
            strata_key,
        )
    except ConvergenceError as exc:
        raise DataError(
            file=FILE,
            column=", ".join(covariates),
            expected=f"covariates a Cox model can fit ({exc})",
        ) from None
    problem_terms = pd.DataFrame(
        {
            "term": problem_cols,
            "covariate": "problem_type",
            "level": [t.removesuffix(TREATED) for t in types],
            "reference": "no problem",
            "kind": ["problem_treated" if t.endswith(TREATED) else "problem" for t in types],
        }
    )
    terms = pd.concat([design.terms, problem_terms], ignore_index=True)
    return _cox_result(model, terms, design, strata, fit_on, n_available=len(customers))


def _exposed_types(types: list[str], episodes: pd.DataFrame) -> list[str]:
    """The problem types to fit: a treated type never open is dropped, an untreated one refused."""
    unexposed = [t for t in types if episodes[f"problem[{t}]"].sum() == 0]
    never = [f"problem[{t}]" for t in unexposed if not t.endswith(TREATED)]
    if never:
        raise DataError(
            file="problems",
            column="problem_type",
            expected=f"exposure for every problem type; {never} never overlap a "
            "customer's tenure in the fitted sample",
        )
    return [t for t in types if not (t.endswith(TREATED) and t in unexposed)]


def _episode_frame(fit_on, design, episodes, problem_cols, strata) -> pd.DataFrame:
    """The counting-process rows: each episode's covariates, open problems, interval and event."""
    pos = pd.Series(np.arange(len(fit_on)), index=fit_on["customer_id"].to_numpy())
    rows = pos.loc[episodes["customer_id"].to_numpy()].to_numpy()
    frame = pd.DataFrame(design.X.to_numpy()[rows], columns=design.X.columns)
    frame[problem_cols] = episodes[problem_cols].to_numpy(float)
    frame["id"] = rows
    frame["start"], frame["stop"] = episodes["start"].to_numpy(), episodes["stop"].to_numpy()
    frame[EVENT] = episodes[EVENT].to_numpy(bool)
    for col in strata:
        frame[col] = episodes[col].astype(str).to_numpy()
    return frame[frame["stop"] > frame["start"]]


def _time_ratios(name: str, model) -> pd.DataFrame:
    """An AFT model's time ratios (exp of the location parameter's coefficients) with 95% CIs."""
    s = model.summary.loc[
        model.params_.index.get_level_values(0) == model.params_.index.get_level_values(0)[0]
    ]
    s = s.reset_index()
    s = s[s["covariate"] != "Intercept"]
    return pd.DataFrame(
        {
            "model": name,
            "term": s["covariate"].to_numpy(),
            "time_ratio": np.exp(s["coef"].to_numpy()),
            "lower": np.exp(s["coef lower 95%"].to_numpy()),
            "upper": np.exp(s["coef upper 95%"].to_numpy()),
        }
    )


def _unstratified_frame(
    customers: pd.DataFrame,
    columns: Sequence[str],
    what: str,
    max_customers: int | None,
    random_state: int | np.random.Generator | None,
    *,
    shortest: float | None = None,
):
    """The model frame of a random sample: every column a covariate, then duration and event.

    ``what`` names the model in the error when the customers have no churn;
    durations below ``shortest`` are raised to it. Returns the frame and its
    design (the terms of each column).
    """
    cols = list(dict.fromkeys(columns))
    check_customers(customers, columns=cols)
    require_events(customers, what=what)
    fit_on = sample_customers(customers, max_customers, by=[EVENT], rng=make_rng(random_state))
    design = design_matrix(fit_on, cols)
    events = fit_on[EVENT].to_numpy(bool)
    check_level_events(design, events)
    durations = fit_on[DURATION].to_numpy(float)
    if shortest is not None:
        durations = np.maximum(durations, shortest)
    return design.X.assign(**{DURATION: durations, EVENT: events}), design


def ph_test(
    customers: pd.DataFrame,
    *,
    covariates: Sequence[str],
    strata: Sequence[str] = tuple(DEFAULTS.strata),
    max_customers: int | None = DEFAULTS.max_ph_customers,
    alpha: float = 0.01,
    random_state: int | np.random.Generator | None = None,
) -> pd.DataFrame:
    """Test proportional hazards (Schoenfeld residuals vs rank of time) and name the remedy.

    The strata candidates are entered as ordinary covariates first, so the test
    shows whether they need their own baseline. Each covariate failing at level
    ``alpha`` gets a remedy: stratify on a categorical covariate, or add an
    interaction with log tenure for a numeric one. A sample of ``max_customers``
    keeps the test fast; with very large samples tiny departures are significant,
    so read the statistic alongside the p-value.

    Returns
    -------
    pandas.DataFrame
        ``covariate``, ``test_statistic`` (largest over its terms), ``p_value`` (smallest),
        ``proportional`` (bool), ``in_model_as`` ("stratum" or "covariate"), ``remedy``.
    """
    frame, design = _unstratified_frame(
        customers, [*covariates, *strata], "test proportional hazards", max_customers, random_state
    )
    model = CoxPHFitter().fit(frame, duration_col=DURATION, event_col=EVENT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = proportional_hazard_test(model, frame, time_transform="rank")
    s = res.summary.reset_index()
    s = s.rename(columns={s.columns[0]: "term"})
    s["covariate"] = design.terms.set_index("term").loc[s["term"], "covariate"].to_numpy()
    kinds = design.terms.drop_duplicates("covariate").set_index("covariate")["kind"]
    out = (
        s.groupby("covariate", sort=False)
        .agg(test_statistic=("test_statistic", "max"), p_value=("p", "min"))
        .reset_index()
    )
    out["proportional"] = out["p_value"] >= alpha
    out["in_model_as"] = np.where(out["covariate"].isin(strata), "stratum", "covariate")

    def remedy(row) -> str:
        if row.proportional:
            return "none needed"
        if row.covariate in strata:
            return f"stratify on {row.covariate} (done in the model)"
        if kinds[row.covariate] == "numeric":
            return f"add {row.covariate} x log(tenure) interaction"
        return f"stratify on {row.covariate}"

    out["remedy"] = [remedy(r) for r in out.itertuples()]
    return out


@dataclass(frozen=True)
class AFTComparison:
    """Parametric accelerated-failure-time models compared by AIC.

    ``table``: ``model``, ``aic``, ``log_likelihood``, ``parameters``, ``delta_aic``,
    ``median_months`` (predicted for the typical customer), ``best`` (bool).
    ``time_ratios``: ``model``, ``term``, ``time_ratio``, ``lower``, ``upper`` (how much a term
    stretches tenure; above 1 = stays longer).
    """

    table: pd.DataFrame
    time_ratios: pd.DataFrame
    models: dict = field(repr=False)
    n_customers: int = 0


def fit_aft(
    customers: pd.DataFrame,
    *,
    covariates: Sequence[str],
    strata: Sequence[str] = tuple(DEFAULTS.strata),
    max_customers: int | None = DEFAULTS.max_aft_customers,
    random_state: int | np.random.Generator | None = None,
) -> AFTComparison:
    """Weibull, log-normal and log-logistic AFT models on the same sample, compared by AIC.

    AFT models have no strata, so the strata columns enter as covariates. Tenures of
    zero are moved to half a day (a parametric likelihood needs positive times).
    """
    cols = list(dict.fromkeys([*covariates, *strata]))
    frame, _ = _unstratified_frame(
        customers,
        cols,
        "fit AFT models",
        max_customers,
        random_state,
        shortest=0.5 / DAYS_PER_MONTH,
    )
    rows, ratios, models = [], [], {}
    typical = frame.drop(columns=[DURATION, EVENT]).mean().to_frame().T
    for name, cls in (
        ("weibull", WeibullAFTFitter),
        ("log-normal", LogNormalAFTFitter),
        ("log-logistic", LogLogisticAFTFitter),
    ):
        model = cls(penalizer=1e-6)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(frame, duration_col=DURATION, event_col=EVENT)
        except ConvergenceError:
            warnings.warn(
                f"the {name} AFT model did not converge and is left out of the comparison",
                StatisticalWarning,
                stacklevel=2,
            )
            continue
        models[name] = model
        rows.append(
            {
                "model": name,
                "aic": model.AIC_,
                "log_likelihood": model.log_likelihood_,
                "parameters": len(model.params_),
                "median_months": float(np.asarray(model.predict_median(typical)).ravel()[0]),
            }
        )
        ratios.append(_time_ratios(name, model))
    if not rows:
        raise DataError(
            file=FILE, column=", ".join(cols), expected="covariates an AFT model can fit"
        )
    table = pd.DataFrame(rows).sort_values("aic", ignore_index=True)
    table["delta_aic"] = table["aic"] - table["aic"].min()
    table["best"] = table.index == 0
    return AFTComparison(
        table=table,
        time_ratios=pd.concat(ratios, ignore_index=True),
        models=models,
        n_customers=len(frame),
    )
