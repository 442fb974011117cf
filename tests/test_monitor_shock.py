"""The monitor in the pipeline: a competitor enters the market between two scheduled runs.

Two runs of ``retention-lab run --config configs/shock.yaml --as-of ...`` a
year apart (see ``conftest.scheduled_runs``). At month 24 a competitor enters:
its offers reach customers four times as often and make the discount useless
against every problem (its true hazard ratio, about 0.75 over the segments of a
price or competitor-offer case, goes to 1). The later run's monitoring stage
must flag these changes, and nothing the shock left unchanged.
"""

import json

import pandas as pd
import pytest

from .conftest import CHANGED_BY_A_COMPETITOR_ENTRY, scheduled_runs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return scheduled_runs(tmp_path_factory.mktemp("shock"), shock=True)


def test_the_first_run_says_there_is_nothing_to_compare(runs):
    results = json.loads((runs[0] / "monitoring" / "results.json").read_text())
    assert results["status"] == "succeeded" and results["metrics"]["previous_runs"] == 0
    assert "nothing to compare yet" in results["findings"][0]


def test_the_competitor_entry_and_the_useless_discount_are_flagged_and_nothing_else(runs):
    comparison = pd.read_parquet(runs[1] / "monitoring" / "comparison.parquet")
    flagged = comparison.loc[comparison["flagged"]]
    groups = set(flagged["group"])
    assert {"problem_type=competitor_offer", "churn_reason=competitor"} <= groups
    discount_cells = sorted(g for g in groups if g.startswith("instrument=discount|"))
    assert discount_cells, "the useless discount is not flagged in any problem type"
    assert groups <= CHANGED_BY_A_COMPETITOR_ENTRY, groups - CHANGED_BY_A_COMPETITOR_ENTRY
    # the unchanged quantities were tested, not merely missing
    unchanged = comparison.loc[comparison["tested"] & ~comparison["group"].isin(groups)]
    families = unchanged.groupby("family").size()
    assert families["hazard ratio"] >= 5 and families["problem hazard ratio"] >= 5
    assert families["instrument hazard ratio"] >= 15 and families["instrument effect"] >= 40
    discount = flagged.set_index("group").loc[discount_cells]
    assert (discount["previous"] < 0.8).all() and (discount["current"] > 0.95).all()


def test_the_report_names_the_stale_estimates_and_the_stages_to_rerun(runs):
    results = json.loads((runs[1] / "monitoring" / "results.json").read_text())
    assert results["metrics"]["previous_runs"] == 1 and results["metrics"]["flags"] >= 3
    text = " ".join(results["findings"])
    assert "Stale: Problems per 1,000 customer-months (Problem type: competitor offer)" in text
    assert "(Instrument: discount, Problem type: " in text
    assert "Rerun with fresh data (since 2022-01-01): survival, uplift" in text
    html = (runs[1] / "monitoring" / "monitoring.html").read_text()
    flags_section = html[html.index('id="Flags,-ranked-by-impact-on-the-plan"') :]
    assert "instrument=discount|problem_type=" in flags_section
    uplift = json.loads((runs[1] / "uplift" / "results.json").read_text())
    assert uplift["metrics"]["recent_hazard_changes"] >= 1  # the uplift stage sees it too
