"""The reports as a reader meets them: every page of finished runs in Chromium at 1280 px.

The demo, smoke, Telco and CDNOW configurations are run once each through the CLI;
every page (run index and stage reports) must fit the window, keep its main
body within the height budget before the diagnostics appendix, show no Python
reprs, warning boxes or empty sections, and describe every image. The run
index's executive summary is read against the stages' ``results.json``, and
the MLflow UI is started on the finished smoke run.
"""

from __future__ import annotations

import csv
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from retention_lab import formatting as fmt
from retention_lab import report
from retention_lab.run_summary import EFFECT_PREFIX

from .conftest import SMOKE_CONFIG, cli

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
WIDTH = 1280
HEIGHT_BUDGET = 6000  # px of a page's main body before its diagnostics appendix
# reprs of Python objects, matched in the text a reader sees
REPR = re.compile(r"\[\{|\{'|array\(|dtype|\bNone\b|\bnan\b|\bNaN\b|\binf\b|\d[eE][+-]\d")
CURRENCY = "USD"


CONFIG_FILES = {
    "demo": CONFIGS / "demo.yaml",
    "smoke": SMOKE_CONFIG,  # the session's smoke_run, with --fast
    "telco": CONFIGS / "telco.yaml",
    "cdnow": CONFIGS / "cdnow.yaml",
}


class Runs:
    """Each configuration run once through the CLI, when a test first asks for it.

    The smoke run is the session's ``smoke_run`` (``--fast``), shared with other modules.
    """

    def __init__(self, factory, request):
        self.factory, self.request, self.done = factory, request, {}

    def __getitem__(self, name: str) -> dict:
        if name == "smoke" and name not in self.done:
            smoke = self.request.getfixturevalue("smoke_run")
            assert smoke["result"].returncode == 0, smoke["result"].stderr[-3000:]
            (run_dir,) = [p for p in smoke["reports_dir"].iterdir() if p.is_dir()]
            self.done[name] = {**smoke, "run_dir": run_dir}
        if name not in self.done:
            root = self.factory.mktemp(name)
            result = cli(
                "run", "--config", str(CONFIG_FILES[name]), "--reports-dir",
                str(root / "reports"), tmp_path=root, timeout=1800,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr[-3000:]
            (run_dir,) = [p for p in (root / "reports").iterdir() if p.is_dir()]
            self.done[name] = {
                "run_dir": run_dir,
                "tracking_uri": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
                "root": root,
            }
        return self.done[name]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, request) -> Runs:
    """The demo, smoke (fast), Telco and CDNOW configurations, each run once when first needed."""
    return Runs(tmp_path_factory, request)


def _page(browser):
    page = browser.new_page()
    page.set_viewport_size({"width": WIDTH, "height": 900})
    return page


def pages_of(run_dir: Path) -> list[Path]:
    record = json.loads((run_dir / "run.json").read_text())
    return [run_dir / "index.html"] + [run_dir / s["html"] for s in record["stages"] if s["html"]]


def _measure(page) -> dict:
    return page.evaluate(
        """() => {
        const appendix = document.querySelector('details.rl-appendix');
        const height = document.documentElement.scrollHeight;
        const main = appendix ? appendix.getBoundingClientRect().top + window.scrollY : height;
        const visible = e => e.offsetParent !== null || e.getClientRects().length > 0;
        const headings = Array.from(document.querySelectorAll('main h1, main h2, main h3, main h4'))
            .filter(visible);
        const content = Array.from(document.querySelectorAll(
            'main p, main li, main img, main table, main pre, main svg')).filter(visible);
        const level = h => Number(h.tagName[1]);
        const empty = headings.filter((h, i) => {
            const next = headings.slice(i + 1).find(o => level(o) <= level(h));
            return !content.some(c =>
                (h.compareDocumentPosition(c) & Node.DOCUMENT_POSITION_FOLLOWING) &&
                (!next || (next.compareDocumentPosition(c) & Node.DOCUMENT_POSITION_PRECEDING)));
        }).map(h => h.innerText);
        return {
            height: height,
            main: main,
            scroll_width: document.documentElement.scrollWidth,
            text: document.body.innerText,
            warnings: document.querySelectorAll(
                '[data-mime-type="application/vnd.jupyter.stderr"]').length,
            no_alt: Array.from(document.images).filter(i => !(i.alt || '').trim()).length,
            images: document.images.length,
            empty_sections: empty,
        };
    }"""
    )


@pytest.mark.parametrize("name", ["demo", "smoke", "telco", "cdnow"])
def test_every_page_reads_at_1280px(browser, runs, name):
    problems = []
    for path in pages_of(runs[name]["run_dir"]):
        page = _page(browser)
        page.goto(path.as_uri(), wait_until="load")
        m = _measure(page)
        page.close()
        where = f"{name}/{path.parent.name}/{path.name}"
        print(f"{where}: height {m['height']} px, main body {m['main']:.0f} px")
        if m["scroll_width"] > WIDTH:
            problems.append(f"{where} is {m['scroll_width']} px wide")
        if m["main"] > HEIGHT_BUDGET:
            problems.append(f"{where}: main body {m['main']:.0f} px > {HEIGHT_BUDGET} px")
        reprs = sorted({match.group(0) for match in REPR.finditer(m["text"])})
        if reprs:
            problems.append(f"{where} shows Python reprs {reprs}")
        if m["warnings"]:
            problems.append(f"{where} has {m['warnings']} warning/error output boxes")
        if m["no_alt"]:
            problems.append(f"{where}: {m['no_alt']} of {m['images']} images without alt text")
        if m["empty_sections"]:
            problems.append(f"{where}: empty sections {m['empty_sections']}")
    assert not problems, "\n".join(problems)


def test_the_demo_shows_a_plan_that_beats_the_staff_rule_by_truth(browser, runs):
    run_dir = runs["demo"]["run_dir"]
    plan = json.loads((run_dir / "plan" / "results.json").read_text())["metrics"]
    assert plan["treated"] > 0 and plan["expected_net_value"] > 0
    assert plan["true_net_value"] > max(plan["true_net_value_best_baseline"], 0)
    page = _page(browser)
    page.goto((run_dir / "index.html").as_uri(), wait_until="load")
    todo = _answer(page, "plan")
    assert fmt.count(plan["treated"]) in todo
    assert fmt.money(plan["expected_net_value"], CURRENCY) in todo
    page.close()


def test_money_in_the_value_findings_carries_the_currency(runs):
    for name in ("smoke", "telco"):
        findings = json.loads((runs[name]["run_dir"] / "clv" / "results.json").read_text())
        worth = next(line for line in findings["findings"] if "active customers are worth" in line)
        pattern = rf"worth {CURRENCY} \d{{1,3}}(,\d{{3}})+ in discounted margin"
        assert re.search(pattern, worth), worth


def test_long_tables_are_cut_with_the_whole_table_as_csv(runs):
    run_dir = runs["smoke"]["run_dir"]
    html = (run_dir / "survival" / "survival.html").read_text()
    links = re.findall(r'href="(report-tables/[^"]+\.csv)"', html)
    assert links, "the survival report cuts no table"
    for link in links:
        path = run_dir / "survival" / link
        assert path.is_file()
        rows = list(csv.reader(path.read_text().splitlines()))
        # the whole table: more rows than the 12 shown (and a header), or more than 8 columns
        assert len(rows) > 13 or max(len(row) for row in rows) > 8, link


def _answer(page, stage: str) -> str:
    return page.locator(f'dd[data-answer="{stage}"]').inner_text()


def test_run_index_summary_answers_from_results(browser, runs):
    run_dir = runs["smoke"]["run_dir"]
    results = {
        s: json.loads((run_dir / s / "results.json").read_text())["metrics"]
        for s in ("data", "survival", "uplift", "plan", "monitoring")
    }
    page = _page(browser)
    page.goto((run_dir / "index.html").as_uri(), wait_until="load")
    assert page.locator("#summary dt").count() == 4

    leaving = _answer(page, "survival")
    data, survival = results["data"], results["survival"]
    assert f"{fmt.count(data['n_churned'])} of {fmt.count(data['n_customers'])}" in leaving
    assert fmt.percent(data["churn_rate"]) in leaving
    assert fmt.percent(survival["retention_12m"]) in leaving

    works = _answer(page, "uplift")
    effects = {k[len(EFFECT_PREFIX) :]: v for k, v in results["uplift"].items()
               if k.startswith(EFFECT_PREFIX)}  # fmt: skip
    best = max(effects, key=effects.get)
    assert f"{best.replace('_', ' ')} {fmt.pp(effects[best])}" in works
    # best first
    positions = [works.index(name.replace("_", " ")) for name in sorted(effects, key=effects.get)]
    assert positions == sorted(positions, reverse=True)

    todo, plan = _answer(page, "plan"), results["plan"]
    assert fmt.money(plan["budget"], CURRENCY) in todo
    assert fmt.money(plan["expected_net_value"], CURRENCY) in todo
    assert fmt.count(plan["candidates"]) in todo

    changed, monitoring = _answer(page, "monitoring"), results["monitoring"]
    assert monitoring["previous_runs"] == 0 and "first run" in changed

    for stage in ("survival", "uplift", "plan", "monitoring"):
        link = page.locator(f'#summary a[data-stage="{stage}"]')
        assert link.get_attribute("href") == f"{stage}/{stage}.html"
    page.close()


def test_summary_of_a_run_without_uplift_or_plan_says_so(browser, runs):
    page = _page(browser)
    page.goto((runs["telco"]["run_dir"] / "index.html").as_uri(), wait_until="load")
    assert "the uplift stage did not run" in _answer(page, "uplift")
    assert "the plan stage did not run" in _answer(page, "plan")
    assert "customers have left" in _answer(page, "survival")
    page.close()


def test_stage_report_links_back_to_its_run_and_to_mlflow(browser, runs):
    run_dir = runs["smoke"]["run_dir"]
    record = json.loads((run_dir / "run.json").read_text())
    page = _page(browser)
    page.goto((run_dir / "plan" / "plan.html").as_uri(), wait_until="load")
    mlflow_link = page.locator(".rl-header a", has_text="MLflow run").get_attribute("href")
    assert f"#/experiments/{record['experiment_id']}/runs/" in mlflow_link
    page.locator(".rl-header a", has_text="run smoke").click()
    page.wait_for_load_state("load")
    assert page.url == (run_dir / "index.html").as_uri()
    page.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_ui(runs):
    """``mlflow server`` on the smoke run's store, on a free local port."""
    smoke = runs["smoke"]
    port = _free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server",
         "--backend-store-uri", smoke["tracking_uri"],
         "--default-artifact-root", str(smoke["root"] / "mlruns" / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(360):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if process.poll() is not None:
                    pytest.fail("mlflow server exited before answering")
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not answer within 3 minutes")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_mlflow_opens_on_runs_table_and_parent_run_has_metrics(browser, runs, mlflow_ui):
    from mlflow.tracking import MlflowClient

    run_dir = runs["smoke"]["run_dir"]
    record = json.loads((run_dir / "run.json").read_text())
    client = MlflowClient(runs["smoke"]["tracking_uri"])
    parent = client.get_run(record["mlflow_run_id"])
    assert parent.data.metrics["plan.expected_net_value"] is not None
    assert parent.data.params["data.as_of"] == "2023-01-01"
    assert parent.data.tags["retention_lab.report"] == (run_dir / "index.html").resolve().as_uri()

    page = _page(browser)
    experiment = f"{mlflow_ui}/#/experiments/{record['experiment_id']}"
    page.goto(f"{experiment}?{report.MLFLOW_VIEW}", wait_until="load")
    page.get_by_text(run_dir.name).first.wait_for(timeout=180_000)  # the parent run, in the table
    assert page.get_by_role("heading", name="Runs").count() == 1
    assert page.get_by_text("Model training").count() >= 1

    # the stage report's link opens the stage's run; the parent run page lists its metrics
    page.goto(report.run_url(mlflow_ui, record["experiment_id"], record["mlflow_run_id"]))
    page.get_by_text("plan.expected_net_value").first.wait_for(timeout=180_000)
    assert page.get_by_text("survival.concordance_held_out").count() >= 1
    page.close()
