"""The monitor in the pipeline: two scheduled runs of a market that did not change.

The snapshots of ``test_monitor_shock`` on a market without the shock, of
100,000 customers: the shock test needs 300,000 to see the weaker discount,
while this one needs every family of quantities tested (120 quantities at this
size, at least 100 asserted) and costs a third of the time. The flag rule
keeps the chance of any false flag in a run at 5% (Holm over every test of the
run), so this fixed-seed pair must flag nothing.
"""

import json

import pandas as pd
import pytest

from .conftest import scheduled_runs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return scheduled_runs(tmp_path_factory.mktemp("no-shock"), shock=False, n_customers=100_000)


def test_a_stable_market_raises_no_flag(runs):
    comparison = pd.read_parquet(runs[1] / "monitoring" / "comparison.parquet")
    assert not comparison["flagged"].any(), comparison.loc[comparison["flagged"], "group"]
    assert comparison["tested"].sum() >= 100
    tested = comparison.loc[comparison["tested"]].groupby("family").size()
    assert (tested >= 4).all() and len(tested) == 8, tested  # every family, not only the many
    results = json.loads((runs[1] / "monitoring" / "results.json").read_text())
    assert results["metrics"]["flags"] == 0 and results["metrics"]["previous_runs"] == 1
    assert any("No statistically meaningful change" in f for f in results["findings"])
