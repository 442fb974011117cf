"""Reviewers' view: the reports open in headless Chromium, figures render, no console errors."""

import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("pipeline")]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture
def browser(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run `make browser` (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        yield browser
        browser.close()


def open_page(browser, url):
    page = browser.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    response = page.goto(url, wait_until="load")
    assert response is None or response.ok
    return page, errors


def broken_images(page) -> int:
    return page.evaluate(
        "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length"
    )


def test_reports_index_run_index_and_stage_report_render(browser, smoke_run):
    assert smoke_run["result"].returncode == 0, smoke_run["result"].stderr[-3000:]
    index = smoke_run["reports_dir"] / "index.html"

    page, errors = open_page(browser, index.as_uri())
    assert "retention_lab reports" in page.title()
    assert page.locator("td.status", has_text="succeeded").count() == 1
    page.locator("td a", has_text="-smoke").first.click()
    page.wait_for_load_state("load")
    assert page.locator("h1").first.inner_text().startswith("Run smoke")

    page.locator("td a", has_text="data").first.click()
    page.wait_for_load_state("load")
    assert page.locator(".rl-findings li").count() >= 3
    assert "customers signed up" in page.locator(".rl-findings").inner_text()
    images = page.locator("img").count()
    assert images >= 3
    assert broken_images(page) == 0
    assert page.locator(".jp-CodeCell .jp-InputArea").count() == 0  # code is hidden
    assert "open_stage" not in page.content()
    assert errors == []
