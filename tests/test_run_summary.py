"""The executive summary from stage results, with stages present, absent or skipped."""

import json

from retention_lab import run_summary


def _results(run_dir, stage, metrics, status="succeeded"):
    folder = run_dir / stage
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(
        json.dumps({"stage": stage, "status": status, "metrics": metrics, "findings": []})
    )
    (folder / f"{stage}.html").write_text("<html></html>")


def test_every_answer_comes_from_the_results_and_links_its_stage(tmp_path):
    _results(tmp_path, "data", {"n_customers": 12000, "n_churned": 3000, "churn_rate": 0.25})
    _results(tmp_path, "survival", {"retention_12m": 0.8, "retention_12m_lower": 0.78,
                                    "retention_12m_upper": 0.82})  # fmt: skip
    prefix = run_summary.EFFECT_PREFIX
    _results(tmp_path, "uplift", {f"{prefix}discount": 0.02, f"{prefix}technician_visit": 0.05})
    _results(tmp_path, "plan", {"budget": 20000, "candidates": 1500, "treated": 120,
                                "spent": 19000, "expected_net_value": 4200,
                                "status_quo_expected_net_value": -2500,
                                "ope_dr_net_value": 3900, "ope_dr_net_value_lower": -300,
                                "ope_dr_net_value_upper": 9000,
                                "status_quo_ope_dr_net_value": -2100,
                                "status_quo_ope_dr_net_value_lower": -6000,
                                "status_quo_ope_dr_net_value_upper": 1500})  # fmt: skip
    _results(tmp_path, "monitoring", {"previous_runs": 2, "flags": 3, "large_untested_changes": 1})
    leaving, works, todo, changed = run_summary.summarise(tmp_path, currency="EUR")
    assert leaving.lines[:2] == [
        "3,000 of 12,000 customers have left (25.0%).",
        "Share of customers still with us after 12 months: 80.0% (95% CI 78.0% to 82.0%).",
    ]
    assert leaving.link == "survival/survival.html"
    assert "technician visit +5.0 pp; discount +2.0 pp" in works.lines[0]
    labels = {"technician_visit": "Engineer on site"}
    worded = run_summary.summarise(tmp_path, currency="EUR", labels=labels)[1]
    assert "Engineer on site +5.0 pp; discount +2.0 pp" in worded.lines[0]
    assert todo.lines == [
        "Treat 120 of 1,500 customers with an open problem, spending EUR 19,000 of the "
        "EUR 20,000 budget.",
        "Expected net value of the plan (saved value minus cost): EUR 4,200; the current "
        "practice (status quo) at the same budget: −EUR 2,500.",
        "Tested on the randomised past cases (doubly robust), the plan's rule is worth EUR 3,900 "
        "(95% CI −EUR 300 to EUR 9,000), the status quo −EUR 2,100 (95% CI −EUR 6,000 to "
        "EUR 1,500).",
    ]
    assert changed.lines == [
        "Compared with 2 earlier run(s): 3 estimate(s) changed beyond chance, "
        "1 large change(s) could not be tested."
    ]


def test_absent_and_skipped_stages_are_named_not_guessed(tmp_path):
    _results(tmp_path, "data", {"n_customers": 100, "n_churned": 10, "churn_rate": 0.1})
    _results(tmp_path, "uplift", {}, status="skipped")
    leaving, works, todo, changed = run_summary.summarise(tmp_path, currency="USD")
    assert leaving.lines == ["10 of 100 customers have left (10.0%)."]
    assert works.lines[0].startswith("Not answered in this run: the uplift stage")
    assert todo.lines[0].startswith("Not answered in this run: the plan stage")
    assert changed.link is None


def test_headline_metrics_are_named_by_stage():
    metrics = run_summary.headline_metrics("plan", {"expected_net_value": 5.0, "gap": 0.0})
    assert metrics == {"plan.expected_net_value": 5.0}
