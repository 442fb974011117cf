"""The whole plan stage: ``read_inputs``, ``analyse`` -> ``PlanSummary``, ``findings``, actions."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from retention_lab import formatting as fmt
from retention_lab import progress
from retention_lab.errors import MissingStageOutput
from retention_lab.labels import label
from retention_lab.plan import evaluate as ev
from retention_lab.plan import inputs as pin
from retention_lab.plan.knapsack import Allocation, allocate, budget_curve
from retention_lab.plan.threats import playbook, threat_table
from retention_lab.units import Z95, horizon_weeks

log = logging.getLogger(__name__)

ACTION_COLUMNS = [
    "customer_id",
    "instrument",
    "problem_type",
    "segment",
    "expected_saved_value",
    "cost",
    "expected_net_value",
    "retention_gain",
    "gain_lower",
    "gain_upper",
    "p_churn",
    "value",
    "reason",
]


@dataclass(frozen=True)
class PlanInputs:
    """What the plan reads from earlier stages of the run."""

    values: pd.DataFrame
    scores: pd.DataFrame | None
    effects: pd.DataFrame | None
    threats: pd.DataFrame | None = None
    pooled: pd.DataFrame | None = None
    # the horizon (months) and annual discount rate the clv stage valued customers over
    value_months: int = field(kw_only=True)
    annual_discount: float = field(kw_only=True)


def read_inputs(stage, *, effects_source: str | None = None) -> PlanInputs:
    """Read the clv values, the survival scores and (when configured) the uplift effects.

    Raises
    ------
    MissingStageOutput
        When ``clv/values`` or ``survival/scores`` is missing, or the uplift
        effects are missing and ``plan.effects_source`` is "uplift"; the message
        names the stage to run.
    """
    source = effects_source or stage.config.plan.effects_source
    values = stage.read_output("clv", "values")
    scores = stage.read_output("survival", "scores")
    effects = None
    if source in ("uplift", "auto"):
        try:
            effects = stage.read_output("uplift", "effects")
        except MissingStageOutput:
            if source == "uplift":
                raise
            log.info("no uplift effects in this run: the plan fits its own effect model")
    try:  # the survival stage's Cox hazard ratios of problems, when it saved them
        threats = stage.read_output("survival", "threats")
    except MissingStageOutput:
        threats = None
    pooled = None
    if effects is not None:
        try:  # the uplift stage's partially pooled cell effects, when it saved them
            pooled = stage.read_output("uplift", "pooled_effects")
        except MissingStageOutput:
            log.info("no pooled cell effects in this run: the plan uses the learners' effects")
    return PlanInputs(
        values=values,
        scores=scores,
        effects=effects,
        threats=threats,
        pooled=pooled,
        value_months=stage.config.clv.horizon_months,
        annual_discount=stage.config.clv.discount_rate,
    )


@dataclass(frozen=True)
class PlanSummary:
    """Everything the plan report shows.

    Attributes
    ----------
    candidates : pandas.DataFrame
        Active customers with an open problem, their value, risk and choice.
    costs : pandas.DataFrame
        Cost per instrument (``inputs.instrument_costs``).
    threats : pandas.DataFrame
        The survival stage's threats valued and ranked by the value lost (``threats.threat_table``).
    playbook : pandas.DataFrame
        Best instrument per problem type x segment (``threats.playbook``).
    allocation : Allocation
        The optimised plan (choice per candidate, value, bound and gap).
    actions : pandas.DataFrame
        The action list for the CRM team (``ACTION_COLUMNS``).
    comparison : pandas.DataFrame
        policy, label, treated, spent, expected_customers, expected_net_value,
        and true_customers, true_net_value on simulated data.
    off_policy : pandas.DataFrame
        IPW and DR estimates on the randomised cases (``evaluate.off_policy``).
    budget_curve : pandas.DataFrame
        Optimal value against budget (``allocate.budget_curve``).
    by_instrument : pandas.DataFrame
        instrument, customers, spent, expected_net_value, capacity.
    """

    budget: float
    instruments: list[str]
    effects_source: str
    min_probability: float
    candidates: pd.DataFrame
    costs: pd.DataFrame
    threats: pd.DataFrame
    playbook: pd.DataFrame
    allocation: Allocation
    actions: pd.DataFrame
    comparison: pd.DataFrame
    off_policy: pd.DataFrame
    budget_curve: pd.DataFrame
    by_instrument: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def to_metrics(self) -> dict[str, float]:
        """Headline numbers for MLflow and ``results.json``."""
        a = self.allocation
        m = {
            "budget": self.budget,
            "candidates": float(len(self.candidates)),
            "treated": float(a.n_treated),
            "spent": a.cost,
            "expected_net_value": a.value,
            "optimality_gap": a.gap,
            "relative_gap": a.relative_gap,
        }
        plan = self.comparison.set_index("policy")
        if "true_net_value" in plan.columns and "plan" in plan.index:
            m["true_net_value"] = float(plan.loc["plan", "true_net_value"])
            m["true_customers_saved"] = float(plan.loc["plan", "true_customers"])
            others = plan.drop(index=["plan", "oracle"], errors="ignore")
            if len(others):
                m["true_net_value_best_baseline"] = float(others["true_net_value"].max())
            if "oracle" in plan.index:
                m["true_net_value_oracle"] = float(plan.loc["oracle", "true_net_value"])
        if "status_quo" in plan.index:
            m["status_quo_expected_net_value"] = float(plan.loc["status_quo", "expected_net_value"])
        if len(self.off_policy):
            dr = self.off_policy[self.off_policy["estimator"] == "DR"].set_index("policy")
            for policy, prefix in (("plan", "ope_dr"), ("status_quo", "status_quo_ope_dr")):
                if policy in dr.index:
                    r = dr.loc[policy]
                    m[f"{prefix}_net_value"] = float(r["net_value"])
                    m[f"{prefix}_net_value_lower"] = float(r["net_lower"])
                    m[f"{prefix}_net_value_upper"] = float(r["net_upper"])
                    m[f"{prefix}_customers"] = float(r["incremental_customers"])
        return m


def _value_of_cases(cases: pd.DataFrame, values: pd.DataFrame) -> np.ndarray:
    """Value of a retained past customer: mean active value of the same segment."""
    mean = float(values["value"].mean()) if len(values) else 0.0
    if "segment" in values.columns and "segment" in cases.columns:
        by = values.groupby(values["segment"].astype(str))["value"].mean()
        return cases["segment"].astype(str).map(by).fillna(mean).to_numpy(float)
    return np.full(len(cases), mean)


def _cross_fit(
    cases: pd.DataFrame, model_c: float, rng: np.random.Generator, folds: int = 2
) -> np.ndarray:
    """Out-of-fold predicted retention per case and arm (the DR outcome model)."""
    fold = rng.integers(0, folds, size=len(cases))
    out = None
    for k in range(folds):
        train, test = cases[fold != k], cases[fold == k]
        m = pin.EffectModel(model_c).fit(train)
        pred = m.predict_retention(test)
        if out is None:
            out = np.zeros((len(cases), len(m.arms_)))
        out[fold == k] = pred
    return out


def _reason(row) -> str:
    return (
        f"{row.problem_type} problem {int(row.days_open)} days ago; churn risk {row.p_churn:.0%}; "
        f"{row.instrument} adds {row.retention_gain:+.1%} retention on a value of {row.value:,.0f}"
    )


def analyse(tables, inputs, settings, *, truth=None, random_state=None) -> PlanSummary:
    """Run the plan stage: candidates, effects, threats, playbook, allocation, baselines.

    The plan acts on the expected net value in money (retention gain x value - cost)
    with one risk rule: an instrument is given only where P(net value > 0) is at least
    ``settings.min_probability``. Effects come from the uplift stage's pooled cells when
    present, else its learners, else the plan's own model.

    Parameters
    ----------
    tables
        The run's canonical tables (customers, problems, interventions).
    inputs : PlanInputs
        The earlier stages' outputs (``read_inputs``) and the clv stage's value horizon
        and discount rate, over which the truth values each arm's margin.
    settings : PlanSettings
        The ``plan`` section; a smoke run passes ``PlanSettings.fast()`` (fewer resamples).
    truth
        The simulator's ground truth, or None for real data.
    """
    rng = np.random.default_rng(random_state)
    notes: list[str] = []
    values, cand, cases, costs = _frames(tables, inputs, settings)
    randomised = cases[cases["assignment"] == "random"].reset_index(drop=True)
    model = pin.EffectModel(settings.effect_model_c).fit(randomised)
    instruments, capacity = _instruments(model, costs, settings, notes)
    boot_models = _bootstrap_models(randomised, inputs, settings, rng, notes)
    value = cand["value"].to_numpy(float)
    cost = pin.cost_matrix(cand, costs, instruments)
    source, effect, effect_std = _candidate_effects(inputs, cand, instruments, model, boot_models)
    net = _net_values(effect, effect_std, value, cost, settings.min_probability)
    cells = _cells(randomised, model, boot_models, values, costs, instruments, inputs.pooled)
    progress.step(f"allocating the budget over {len(cand):,} candidates")
    allocation = allocate(
        net, cost, budget=settings.budget, capacity=capacity,
        exact_max_customers=settings.exact_max_customers, random_state=random_state,
    )  # fmt: skip
    choice = allocation.choice
    true_effect, true_net = _truth(truth, cand, instruments, settings.horizon_months, inputs)
    baselines = _baselines(
        tables, cases, cand, instruments, effect, value, cost, capacity, settings, rng,
        random_state, true_net,
    )  # fmt: skip
    choices = {"plan": choice, **baselines.choices}
    comparison = pd.DataFrame(
        {"policy": name, "label": ev.LABELS[name],
         **ev.policy_totals(ch, effect, value, cost, true_effect, true_net)}
        for name, ch in choices.items()
    )  # fmt: skip
    progress.step(f"off-policy evaluation on {len(randomised):,} randomised cases")
    ope = _off_policy(
        randomised, values, costs, instruments, model, settings, allocation, choices,
        baselines.rule, baselines.most_used, baselines.best_single, len(cand), settings.bootstrap,
        rng, boot_models, inputs.pooled,
    )  # fmt: skip
    curve = budget_curve(
        net, cost, np.linspace(0.0, max(settings.budget * 2, 1.0), settings.budget_curve_points),
        capacity=capacity, exact_max_customers=min(settings.exact_max_customers, 5_000),
        random_state=random_state,
    )  # fmt: skip
    chosen = np.asarray(instruments, object)[np.maximum(choice, 0)]
    cand = cand.assign(instrument=np.where(choice >= 0, chosen, None))
    return PlanSummary(
        budget=float(settings.budget),
        instruments=instruments,
        min_probability=float(settings.min_probability),
        effects_source=source,
        candidates=cand,
        costs=costs,
        threats=threat_table(inputs.threats, tables, values=values),
        playbook=playbook(cells) if len(cells) else pd.DataFrame(),
        allocation=allocation,
        actions=_actions(cand, choice, effect, effect_std, cost, instruments),
        comparison=comparison,
        off_policy=ope,
        budget_curve=curve,
        by_instrument=_by_instrument(choice, effect, value, cost, instruments, capacity),
        notes=notes,
    )


def _net_values(effect, effect_std, value, cost, min_probability) -> np.ndarray:
    """Net value of each option (effect x value - cost); the risk rule caps a doubtful one at 0."""
    net = effect * value[:, None] - cost
    allowed = pin.net_value_probability(effect, effect_std, value, cost) >= min_probability
    return np.where(allowed, net, np.minimum(net, 0.0))


def _instruments(model, costs, config, notes) -> tuple[list[str], np.ndarray]:
    """The instruments the plan may give (seen in the randomised cases, with a cost) and capacities.

    A capacity configured for an instrument the data do not have is noted and ignored.
    """
    instruments = [a for a in model.arms_[1:] if a in set(costs["instrument"])]
    unknown = sorted(set(config.capacities) - set(instruments))
    if unknown:
        notes.append(f"capacities for unknown instruments {unknown} were ignored")
    return instruments, np.array([float(config.capacities.get(a, np.inf)) for a in instruments])


def _frames(tables, inputs, config):
    """The customers' values, the candidates, the past cases and the instruments' costs.

    Returns
    -------
    values : pandas.DataFrame
        The clv stage's values with ``value`` the configured ``value_basis``.
    candidates : pandas.DataFrame
        See ``inputs.candidates``.
    cases : pandas.DataFrame
        See ``inputs.past_cases``.
    costs : pandas.DataFrame
        See ``inputs.instrument_costs``.
    """
    values = inputs.values.assign(customer_id=inputs.values["customer_id"].astype(str))
    values = values.assign(value=values[config.value_basis].astype(float))
    cand = pin.candidates(
        tables,
        values=values,
        scores=inputs.scores,
        open_problem_days=config.open_problem_days,
        value_col="value",
    )
    cases = pin.past_cases(tables, horizon_months=config.horizon_months)
    costs = pin.instrument_costs(tables.interventions, tables.customers, overrides=config.costs)
    return values, cand, cases, costs


def _bootstrap_models(randomised, inputs, config, rng, notes) -> list[pin.EffectModel]:
    """The plan's own model refitted on ``config.bootstrap`` resamples of the randomised cases.

    Fitted only when the uplift stage's pooled cells are missing (they carry their own bands).
    """
    own_bands = inputs.pooled is None or inputs.pooled.empty
    boot_models = [
        pin.EffectModel(config.effect_model_c).fit(
            randomised.iloc[rng.integers(0, len(randomised), len(randomised))]
        )
        for _ in progress.each(
            range(config.bootstrap if own_bands else 0), "effect model bootstrap"
        )
    ]
    if inputs.effects is not None and inputs.effects.empty:
        notes.append("the uplift stage's effects table is empty; the plan used its own model")
    return boot_models


def _candidate_effects(inputs, cand, instruments, model, boot_models):
    """Each candidate's effect of each instrument and its standard error, and where it came from.

    The uplift stage's pooled cells (spread by churn risk) when present, else its
    learners' effects table, else the plan's own model with bootstrap bands.
    """
    if inputs.pooled is not None and len(inputs.pooled):
        source = "uplift stage (cells pooled within each instrument, spread by churn risk)"
        effect, effect_std = pin.spread_by_risk(
            *pin.pooled_matrix(inputs.pooled, cand, instruments), cand
        )
    elif inputs.effects is not None and len(inputs.effects):
        source = "uplift stage"
        effect, effect_std = pin.effect_matrix(inputs.effects, cand, instruments)
    else:
        source = "plan effect model (randomised cases)"
        effect, effect_std = _model_effects(model, boot_models, cand, instruments)
    return source, effect, effect_std


@dataclass(frozen=True)
class _Baselines:
    """The targeting rules the plan is compared with, and what the off-policy check needs."""

    choices: dict[str, np.ndarray]
    rule: ev.StatusQuoRule | None
    most_used: str
    best_single: str


def _baselines(
    tables, cases, cand, instruments, effect, value, cost, capacity, config, rng, random_state,
    true_net,
) -> _Baselines:  # fmt: skip
    """Each configured baseline's choice per candidate at the plan's budget, and the oracle's.

    The oracle (on simulated data, ``true_net`` not None) allocates on the true net values.
    """
    most_used = (
        tables.interventions["instrument"].astype(str).loc[lambda s: s.isin(instruments)].mode()
    )
    most_used = str(most_used.iloc[0]) if len(most_used) else instruments[0]
    best_single = instruments[int(np.argmax((effect * value[:, None] - cost).sum(axis=0)))]
    rule = None
    if "status_quo" in config.baselines:
        rule = ev.StatusQuoRule(random_state=random_state)
        rule.fit(cases, arms=[pin.CONTROL, *instruments])
    choices = {
        name: ev.baseline_choice(
            name,
            candidates=cand,
            instruments=instruments,
            cost=cost,
            budget=config.budget,
            capacity=capacity,
            most_used=most_used,
            best_single=best_single,
            rule=rule,
            rng=rng,
        )
        for name in config.baselines
    }
    if true_net is not None:
        choices["oracle"] = allocate(
            true_net, cost, budget=config.budget, capacity=capacity,
            exact_max_customers=config.exact_max_customers,
        ).choice  # fmt: skip
    return _Baselines(choices, rule, most_used, best_single)


def _model_effects(model, boot_models, frame, instruments) -> tuple[np.ndarray, np.ndarray]:
    """The plan's own model's effects on ``frame`` and their bootstrap standard deviation."""
    effect = _effects(model, frame, instruments)
    if len(frame) == 0 or len(boot_models) < 2:
        return effect, np.full(effect.shape, np.nan)
    draws = np.stack([_effects(m, frame, instruments) for m in boot_models])
    return effect, draws.std(axis=0, ddof=1)


def _truth(truth, cand, instruments, horizon_months, inputs: PlanInputs):
    """True retention gain at the horizon and true net value of every option, from the simulator.

    The net value is each arm's expected margin over ``inputs.value_months`` minus the
    control's, minus the arm's cost (``simulate.true_net_values``): no estimate
    enters it. Both are None on real data (no ``truth``) or without candidates.
    """
    from retention_lab.data.simulate import true_net_values, true_treatment_outcomes

    if truth is None or not len(cand):
        return None, None
    arms = [pin.CONTROL, *instruments]
    kinds = cand["problem_type"].to_numpy()
    tr = true_treatment_outcomes(
        truth, cand, kinds, arms=arms, horizon_weeks=horizon_weeks(horizon_months)
    )
    p = tr["p_retained"].to_numpy(float).reshape(len(cand), len(arms))
    tv = true_net_values(
        truth, cand, kinds, value_months=inputs.value_months,
        annual_discount=inputs.annual_discount, arms=arms,
    )  # fmt: skip
    net = tv["net_value"].to_numpy(float).reshape(len(cand), len(arms))
    return p[:, 1:] - p[:, :1], net[:, 1:]


def _effects(model: pin.EffectModel, frame: pd.DataFrame, instruments: list[str]) -> np.ndarray:
    p = model.predict_retention(frame)
    idx = [model.arms_.index(a) if a in model.arms_ else 0 for a in instruments]
    return p[:, idx] - p[:, :1]


def _off_policy(
    randomised, values, costs, instruments, model, config, allocation, choices, rule,
    most_used, best_single, n_candidates, n_boot, rng, boot_models, pooled,
) -> pd.DataFrame:  # fmt: skip
    arms = [pin.CONTROL, *instruments]
    cases = randomised[randomised["instrument"].isin(arms)].reset_index(drop=True)
    if cases.empty:
        return pd.DataFrame()
    p_all = _cross_fit(cases, config.effect_model_c, rng)
    p_hat = p_all[:, [model.arms_.index(a) for a in arms]]
    value = _value_of_cases(cases, values)
    cost = pin.cost_matrix(cases, costs, instruments)
    treated_share = allocation.n_treated / max(n_candidates, 1)
    rule_probs = rule.probabilities(cases) if rule is not None else None
    if pooled is not None and len(pooled):
        # as for the candidates: the cell's effect spread by risk, here each past case's
        # cross-fitted probability of leaving without an instrument
        effect, effect_std = pin.spread_by_risk(
            *pin.pooled_matrix(pooled, cases, instruments),
            cases.assign(p_churn=1.0 - p_hat[:, 0]),
        )
    else:
        effect, effect_std = _model_effects(model, boot_models, cases, instruments)
        effect = None  # the plan's rule on past cases uses the cross-fitted model
    prob = pin.net_value_probability(
        p_hat[:, 1:] - p_hat[:, :1] if effect is None else effect, effect_std, value, cost
    )
    allowed = prob >= config.min_probability
    policies = {}
    for name, ch in choices.items():
        if name == "oracle":  # needs the true effects: no rule to apply to past cases
            continue
        share = float((ch >= 0).mean()) if len(ch) else 0.0
        policies[name] = ev.rule_distribution(
            name,
            p_hat=p_hat,
            value=value,
            cost=cost,
            multipliers=allocation.multipliers,
            treated_share=share if name != "plan" else treated_share,
            instruments=instruments,
            most_used=most_used,
            rule_probs=rule_probs,
            best_single=best_single,
            effect=effect,
            allowed=allowed,
        )
    propensity = config.randomised_arm_probability or 1.0 / cases["instrument"].nunique()
    arm = pd.Categorical(cases["instrument"], categories=arms).codes
    return ev.off_policy(
        policies,
        arm=arm,
        retained=cases["retained"].to_numpy(bool),
        p_hat=p_hat,
        value=value,
        cost=cost,
        propensity=propensity,
        scale=float(n_candidates),
        n_boot=n_boot,
        random_state=rng,
    )


def _cells(randomised, model, boot_models, values, costs, instruments, pooled) -> pd.DataFrame:
    """Effect per problem type x segment x instrument: the pooled cells, else the plan's model.

    With the uplift stage's pooled cells the effect and its 95 % interval are
    theirs; otherwise the plan's model's mean prediction over the cell's
    randomised cases with a bootstrap interval. Cost and value are the cell's
    mean cost and its segment's mean customer value.
    """
    if randomised.empty or "segment" not in randomised.columns:
        return pd.DataFrame()
    if pooled is not None and len(pooled):
        eff, sd = pin.pooled_matrix(pooled, randomised, instruments)
        band = (eff - Z95 * sd, eff + Z95 * sd)  # one value per cell
    else:
        eff = _effects(model, randomised, instruments)
        band = None
        draws = (
            np.stack([_effects(m, randomised, instruments) for m in boot_models])
            if boot_models
            else eff[None]
        )
    cost = pin.cost_matrix(randomised, costs, instruments)
    seg_value = (
        values.groupby(values["segment"].astype(str))["value"].mean()
        if "segment" in values.columns
        else None
    )
    rows = []
    keys = randomised[["problem_type", "segment"]].astype(str)
    for (kind, seg), idx in keys.groupby(["problem_type", "segment"]).groups.items():
        pos = randomised.index.get_indexer(idx)
        v = (
            float(seg_value.get(seg, values["value"].mean()))
            if seg_value is not None
            else float(values["value"].mean())
        )
        for j, a in enumerate(instruments):
            if band is None:
                d = draws[:, pos, j].mean(axis=1)
                lo, hi = float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975))
            else:
                lo, hi = float(band[0][pos, j].mean()), float(band[1][pos, j].mean())
            rows.append(
                (kind, seg, a, float(eff[pos, j].mean()), lo, hi, float(cost[pos, j].mean()), v,
                 len(pos))
            )  # fmt: skip
    cols = ["problem_type", "segment", "instrument", "effect", "effect_lower", "effect_upper",
            "cost", "value", "cases"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def _actions(cand, choice, effect, effect_std, cost, instruments) -> pd.DataFrame:
    rows = np.flatnonzero(choice >= 0)
    if rows.size == 0:
        return pd.DataFrame(columns=ACTION_COLUMNS)
    a = choice[rows]
    c = cand.iloc[rows]
    gain = effect[rows, a]
    std = effect_std[rows, a] if effect_std is not None else np.full(rows.size, np.nan)
    out = pd.DataFrame(
        {
            "customer_id": c["customer_id"].to_numpy(),
            "instrument": np.asarray(instruments, dtype=object)[a],
            "problem_type": c["problem_type"].to_numpy(),
            "segment": c["segment"].to_numpy() if "segment" in c.columns else None,
            "expected_saved_value": gain * c["value"].to_numpy(float),
            "cost": cost[rows, a],
            "retention_gain": gain,
            "gain_lower": gain - Z95 * std,
            "gain_upper": gain + Z95 * std,
            "p_churn": c["p_churn"].to_numpy(float),
            "value": c["value"].to_numpy(float),
            "days_open": c["days_open"].to_numpy(),
        }
    )
    out["expected_net_value"] = out["expected_saved_value"] - out["cost"]
    out["reason"] = [_reason(r) for r in out.itertuples()]
    return out[ACTION_COLUMNS].sort_values("expected_net_value", ascending=False, ignore_index=True)


def _by_instrument(choice, effect, value, cost, instruments, capacity) -> pd.DataFrame:
    rows = []
    for j, a in enumerate(instruments):
        sel = choice == j
        rows.append(
            (a, int(sel.sum()), float(cost[sel, j].sum()),
             float((effect[sel, j] * value[sel] - cost[sel, j]).sum()), capacity[j])
        )  # fmt: skip
    return pd.DataFrame(
        rows, columns=["instrument", "customers", "spent", "expected_net_value", "capacity"]
    )


def write_actions_csv(actions: pd.DataFrame, directory: str | Path) -> Path:
    """Write the action list as ``actions.csv`` in ``directory`` (for the CRM team)."""
    path = Path(directory) / "actions.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    actions.to_csv(path, index=False, float_format="%.2f")
    return path


def findings(
    summary: PlanSummary, *, currency: str = "USD", labels: Mapping[str, str] | None = None
) -> list[str]:
    """Plain-language findings, every number computed from the results, money in ``currency``.

    Instruments and problems read as ``retention_lab.labels.label`` words them
    (``labels``: the configuration's ``report.labels``).
    """

    def money(value, interval=None):
        return fmt.money(value, currency, interval=interval)

    a = summary.allocation
    out = []
    n = len(summary.candidates)
    comp = summary.comparison.set_index("policy")
    rule = (
        f"only where the probability that the net value is positive is at least "
        f"{summary.min_probability:.0%}"
    )
    out.append(
        f"{n:,} active customers have an open problem; the plan treats {a.n_treated:,} of them "
        f"for {money(a.cost)} of the {money(summary.budget)} budget, {rule}. Its expected net "
        f"value (saved value minus cost) is {money(a.value)} (effects from the "
        f"{summary.effects_source})."
    )
    if a.method != "none needed":
        out.append(
            f"The allocation is within {currency} {a.gap:,.2f} ({a.relative_gap:.3%}) of the best "
            "possible "
            f"for these estimates (solver: {a.method})."
        )
    elif n and a.n_treated == 0:
        out.append(
            "No instrument's net value is positive with that probability for any candidate: "
            "the plan is to do nothing and keep the budget."
        )
    elif n:
        out.append(
            "The budget is not binding: every customer worth treating gets their best instrument."
        )
    if len(summary.by_instrument):
        used = summary.by_instrument[summary.by_instrument["customers"] > 0]
        if len(used):
            parts = ", ".join(
                f"{label(r.instrument, labels)} {r.customers:,}" for r in used.itertuples()
            )
            out.append(f"Instruments in the plan: {parts}.")
    truth = _truth_finding(comp, money)
    if truth:
        out.append(truth)
    dr = summary.off_policy
    if len(dr):
        d = dr[dr["estimator"] == "DR"].set_index("policy")
        if "plan" in d.index:
            r = d.loc["plan"]
            out.append(
                "Off-policy (doubly robust) on the randomised cases the plan's rule is worth "
                f"{money(r['net_value'], (r['net_lower'], r['net_upper']))} and "
                f"{r['incremental_customers']:,.1f} retained customers over the candidates."
            )
    if len(summary.threats):
        t = summary.threats.iloc[0]
        out.append(
            f"The most costly threat is {label(t['problem_type'], labels)}: while it is open the "
            f"churn hazard is {t['hazard_ratio']:.2f} times as high (95% CI {t['hr_lower']:.2f} to "
            f"{t['hr_upper']:.2f}), and the churn it causes ({t['share_of_churn']:.0%} of all "
            f"churn) destroyed about {money(t['value_lost'], (t['value_lower'], t['value_upper']))}"
            " of value."
        )
    if len(summary.playbook):
        nothing = int((summary.playbook["best"] == "do nothing").sum())
        out.append(
            f"In {nothing} of {len(summary.playbook)} problem-segment cells no instrument pays for "
            "itself: the playbook says do nothing there."
        )
    out.extend(summary.notes)
    return out


def _truth_finding(comp: pd.DataFrame, money) -> str:
    """The plan against the baselines and the oracle by the simulator's truth ("" without it)."""
    if not ("true_net_value" in comp.columns and "plan" in comp.index and len(comp) > 1):
        return ""
    others = comp.drop(index=["plan", "oracle"], errors="ignore")
    saved, worth = comp.loc["plan", "true_customers"], comp.loc["plan", "true_net_value"]
    text = (
        f"By the simulator's ground truth (each arm's true retention and margin over the "
        f"value horizon, minus cost) the plan saves {saved:,.1f} customers and "
        f"{money(worth)} of net value"
    )
    if len(others):
        best = others["true_net_value"].idxmax()
        text += (
            f"; the best baseline at the same budget ({ev.LABELS[best]}) reaches "
            f"{money(others.loc[best, 'true_net_value'])}"
        )
    if "status_quo" in comp.index:
        text += f", the status-quo rule {money(comp.loc['status_quo', 'true_net_value'])}"
    if "oracle" in comp.index and comp.loc["oracle", "true_net_value"] > 0:
        share = worth / comp.loc["oracle", "true_net_value"]
        text += f"; the plan captures {share:.0%} of the oracle's value (true effects known)"
    return text + "."
