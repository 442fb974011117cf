"""The monitor in the pipeline: two scheduled runs of a market that did not change.

The same market and snapshots as ``test_monitor_shock`` without the shock. The
flag rule keeps the chance of any false flag in a run at 5% (Holm over every
test of the run), so this fixed-seed pair must flag nothing.
"""

import json

import pandas as pd
import pytest

from .conftest import scheduled_runs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return scheduled_runs(tmp_path_factory.mktemp("no-shock"), shock=False)


def test_a_stable_market_raises_no_flag(runs):
    comparison = pd.read_parquet(runs[1] / "monitoring" / "comparison.parquet")
    assert not comparison["flagged"].any(), comparison.loc[comparison["flagged"], "group"]
    assert comparison["tested"].sum() >= 100
    results = json.loads((runs[1] / "monitoring" / "results.json").read_text())
    assert results["metrics"]["flags"] == 0 and results["metrics"]["previous_runs"] == 1
    assert any("No statistically meaningful change" in f for f in results["findings"])
