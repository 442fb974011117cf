"""The workbench's Cox model: lifelines' fit, with its central rows computed at once."""

import lifelines
import numpy as np
import pandas as pd
import pytest

from retention_lab.cox import CoxPHFitter


@pytest.fixture
def frame(rng) -> pd.DataFrame:
    n = 5_000
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "x": x,
            "dummy": rng.integers(0, 2, n).astype(float),
            "count": rng.integers(0, 5, n),
            "months": rng.exponential(10 * np.exp(-0.5 * x)),
            "churned": rng.random(n) < 0.7,
            "region": rng.choice(list("abcdef"), n),
            "plan": rng.choice(["basic", "plus"], n),
        }
    )


@pytest.mark.parametrize("strata", [None, "region", ["region", "plan"]])
def test_the_fit_and_its_central_rows_equal_lifelines(frame, strata):
    kept = {"region", "plan"} & set([strata] if isinstance(strata, str) else strata or [])
    data = frame.drop(columns=list({"region", "plan"} - kept))
    ours = CoxPHFitter(penalizer=0.01).fit(data, "months", "churned", strata=strata)
    theirs = lifelines.CoxPHFitter(penalizer=0.01).fit(data, "months", "churned", strata=strata)
    pd.testing.assert_frame_equal(ours.summary, theirs.summary)
    pd.testing.assert_frame_equal(ours._central_values, theirs._central_values)
    assert ours.params_["x"] == pytest.approx(0.5, abs=0.05)  # the simulated log hazard ratio
