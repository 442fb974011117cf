"""Individual effects: causalml's multi-treatment S-, T-, X- and DR-learners, fold-bagged.

:class:`UpliftModel` wraps one causalml meta-learner with scikit-learn's
histogram gradient boosting as the base model. It is fitted once per fold of
the training cases (each fit leaves one fold out), so a prediction is the mean
over the fold models and its spread (``effect_std``) shows how much the
estimate moves with the training sample. Propensities are passed in (known
shares for randomised cases, the cross-fitted model for rule cases), never
left to causalml's in-sample default.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.exceptions import NotFittedError
from threadpoolctl import threadpool_limits

from retention_lab import progress
from retention_lab.errors import DataError
from retention_lab.units import Z95
from retention_lab.uplift.design import (
    _as_str,
    _seed,
    categorical_columns,
    fold_ids,
    model_encoder,
)
from retention_lab.uplift.settings import DEFAULTS

log = logging.getLogger(__name__)

LEARNERS = ("s", "t", "x", "dr")
PREDICTION_COLUMNS = ["learner", "effect", "effect_std", "effect_lower", "effect_upper"]


def _meta_learner(kind: str, base, control: str):
    from causalml.inference.meta import (
        BaseDRRegressor,
        BaseSRegressor,
        BaseTRegressor,
        BaseXRegressor,
    )

    match kind:
        case "s":
            return BaseSRegressor(learner=base, control_name=control)
        case "t":
            return BaseTRegressor(learner=base, control_name=control)
        case "x":
            return BaseXRegressor(learner=base, control_name=control)
        case "dr":
            return BaseDRRegressor(learner=base, control_name=control)
    raise ValueError(f"unknown learner {kind!r}; choose one of {list(LEARNERS)}")


class UpliftModel:
    """A multi-treatment uplift learner (causalml) bagged over cross-fitting folds.

    Parameters
    ----------
    learner
        "s", "t", "x" or "dr" (causalml ``BaseSRegressor`` ... ``BaseDRRegressor``).
    control
        Label of the control arm.
    folds
        Number of fold models; each is fitted on the cases outside one fold.
    max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization
        Hyperparameters of the gradient-boosted base models.
    threads
        OpenMP threads of the base models when fitting and predicting (None: the
        process's limit). A stage passes its ``threads`` setting: on a busy host,
        OpenMP threads that wait for each other in every tree of a prediction
        cost more than they save.
    """

    def __init__(
        self,
        learner: str = "t",
        *,
        control: str = "none",
        folds: int = DEFAULTS.folds,
        max_iter: int = DEFAULTS.max_iter,
        learning_rate: float = DEFAULTS.learning_rate,
        max_leaf_nodes: int = DEFAULTS.max_leaf_nodes,
        min_samples_leaf: int = DEFAULTS.min_samples_leaf,
        l2_regularization: float = DEFAULTS.l2_regularization,
        threads: int | None = None,
        random_state: int | None = None,
    ):
        self.learner = learner
        self.control = control
        self.folds = folds
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.threads = threads
        self.random_state = random_state

    def __repr__(self) -> str:
        fitted = f", instruments={self.instruments_}" if hasattr(self, "instruments_") else ""
        return f"UpliftModel(learner={self.learner!r}, folds={self.folds}{fitted})"

    def _base(self, seed: int) -> HistGradientBoostingRegressor:
        categorical = self.categorical_
        if categorical and self.learner == "s":  # causalml's S-learner puts the arm first
            categorical = [j + 1 for j in categorical]
        return HistGradientBoostingRegressor(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            categorical_features=categorical,
            early_stopping=False,
            random_state=seed,
        )

    def fit(
        self,
        frame: pd.DataFrame,
        *,
        treatment_col: str = "instrument",
        outcome_col: str = "retained",
        features: list[str],
        propensity: pd.DataFrame | None = None,
    ) -> UpliftModel:
        """Fit one meta-learner per fold.

        Parameters
        ----------
        propensity
            Arm propensities, one column per arm (rows aligned with ``frame``);
            default: the arm shares of ``frame`` (a randomised campaign).
        """
        if self.learner not in LEARNERS:
            raise ValueError(f"unknown learner {self.learner!r}; choose one of {list(LEARNERS)}")
        t = frame[treatment_col].astype(str).to_numpy()
        y = frame[outcome_col].to_numpy(float)
        if not (t == self.control).any():
            raise DataError(
                file="cases", column=treatment_col, expected=f"a control arm '{self.control}'"
            )
        if np.unique(y).size < 2:
            raise DataError(
                file="cases", column=outcome_col, expected="an outcome that varies across cases"
            )
        counts = pd.Series(t).value_counts()
        if counts.min() < self.folds or len(frame) < self.folds:
            raise DataError(
                file="cases",
                column=treatment_col,
                expected=f"at least {self.folds} cases per arm to fit {self.folds} fold models "
                f"(arm '{counts.idxmin()}' has {int(counts.min())}; {len(frame)} rows)",
            )
        self.instruments_ = sorted(set(t) - {self.control})
        self.features_ = list(features)
        self.encoder_ = model_encoder(frame, self.features_)
        self.categorical_ = categorical_columns(frame, self.features_)
        x = self.encoder_.fit_transform(_as_str(frame, self.features_)).astype(np.float32)
        if propensity is None:
            shares = counts / counts.sum()
            propensity = pd.DataFrame({a: np.full(len(frame), shares[a]) for a in counts.index})
        e0 = propensity[self.control].to_numpy()
        pairwise = {
            a: np.clip(propensity[a].to_numpy() / (propensity[a].to_numpy() + e0), 0.01, 0.99)
            for a in self.instruments_
        }
        self.pairwise_share_ = {
            a: float(np.mean(p[t == a] if (t == a).any() else p)) for a, p in pairwise.items()
        }
        fid = fold_ids(t, self.folds, self.random_state)
        self.models_ = []
        for f in range(self.folds):
            train = fid != f
            seed = _seed([f] if self.random_state is None else [self.random_state, f])
            model = _meta_learner(self.learner, self._base(seed), self.control)
            p = {a: pairwise[a][train] for a in self.instruments_}
            with warnings.catch_warnings(), threadpool_limits(self.threads):
                warnings.simplefilter("ignore")
                if self.learner in ("x", "dr"):
                    kwargs = {"seed": seed} if self.learner == "dr" else {}
                    model.fit(x[train], t[train], y[train], p=p, **kwargs)
                else:
                    model.fit(x[train], t[train], y[train])
            self.models_.append(model)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "models_"):
            raise NotFittedError(
                f"This UpliftModel({self.learner!r}) is not fitted yet; call 'fit' first."
            )

    def predict_folds(self, frame: pd.DataFrame) -> np.ndarray:
        """Effect predictions of every fold model, shape ``(fold, case, instrument)``."""
        self._check_fitted()
        missing = [c for c in self.features_ if c not in frame.columns]
        if missing:
            raise DataError(file="customers", column=missing[0], expected="a feature of the model")
        x = self.encoder_.transform(_as_str(frame, self.features_)).astype(np.float32)
        out = np.empty((len(self.models_), len(frame), len(self.instruments_)))
        p = {a: np.full(len(frame), self.pairwise_share_[a]) for a in self.instruments_}
        for k, model in enumerate(self.models_):
            with warnings.catch_warnings(), threadpool_limits(self.threads):
                warnings.simplefilter("ignore")
                if self.learner == "x":
                    pred = model.predict(x, p=p)
                elif self.learner == "dr":
                    pred = _dr_effects(model, x)
                else:
                    pred = model.predict(x)
            pred = np.asarray(pred).reshape(len(frame), -1)
            groups = list(model.t_groups)
            out[k] = pred[:, [groups.index(a) for a in self.instruments_]]
        return out

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Mean predicted effect per instrument (columns), rows aligned with ``frame``.

        Returns
        -------
        pandas.DataFrame
            One column per instrument of ``instruments_`` (``discount``, ``bonus``, ...):
            the predicted effect averaged over the fold models.
        """
        return pd.DataFrame(self.predict_folds(frame).mean(axis=0), columns=self.instruments_)

    def predict_effects(self, frame: pd.DataFrame, *, id_col: str = "customer_id") -> pd.DataFrame:
        """Long table of predicted effects with their uncertainty.

        ``effect_std`` is the standard deviation of the fold models' predictions
        (the spread from resampling the training cases); the interval is
        ``effect +/- 1.96 * effect_std``.

        Returns
        -------
        pandas.DataFrame
            ``id_col``, instrument, learner, effect, effect_std, effect_lower, effect_upper.
        """
        folds = self.predict_folds(frame)
        mean, std = folds.mean(axis=0), folds.std(axis=0, ddof=1)
        n, k = mean.shape
        out = pd.DataFrame(
            {
                id_col: np.repeat(frame[id_col].to_numpy(), k),
                "instrument": np.tile(self.instruments_, n),
                "learner": self.learner,
                "effect": mean.ravel(),
                "effect_std": std.ravel(),
            }
        )
        out["effect_lower"] = out["effect"] - Z95 * out["effect_std"]
        out["effect_upper"] = out["effect"] + Z95 * out["effect_std"]
        return out


def _dr_effects(model, x: np.ndarray) -> np.ndarray:
    """The DR-learner's effects, one column per treatment group: its effect models' mean.

    This is what ``BaseDRLearner.predict`` returns, without the outcome models it
    also evaluates for diagnostics (two thirds of its time on large frames).
    """
    return np.column_stack(
        [np.mean([tau.predict(x) for tau in model.models_tau[group]], axis=0)
         for group in model.t_groups]
    )  # fmt: skip


def fit_learners(
    frame: pd.DataFrame,
    *,
    learners: list[str],
    treatment_col: str,
    outcome_col: str,
    features: list[str],
    control: str,
    propensity: pd.DataFrame | None = None,
    random_state=None,
    **params,
) -> dict[str, UpliftModel]:
    """Fit every learner on the same training cases; ``params`` go to :class:`UpliftModel`."""
    models = {}
    for i, kind in enumerate(learners, start=1):
        progress.step(f"fitting the {kind}-learner on {len(frame):,} cases", i, len(learners))
        models[kind] = UpliftModel(kind, control=control, random_state=random_state, **params).fit(
            frame,
            treatment_col=treatment_col,
            outcome_col=outcome_col,
            features=features,
            propensity=propensity,
        )
    return models
