"""The report opens offline in headless Chromium (Debian's package) with no console error and no request
beyond the file itself."""

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")


def open_in_chromium(page_path: Path, screenshot: Path) -> tuple[list[str], list[str]]:
    """(console errors and page errors, URLs requested) while loading the page and taking a screenshot."""
    from playwright.sync_api import sync_playwright

    errors, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(page_path.resolve().as_uri())
        page.wait_for_timeout(500)
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return errors, requests


def test_the_checker_sees_errors_and_requests(tmp_path):
    planted = tmp_path / "planted.html"
    planted.write_text(
        '<html><body><script>console.error("boom"); fetch("http://example.invalid/x")</script></body></html>'
    )
    errors, requests = open_in_chromium(planted, tmp_path / "planted.png")
    assert "boom" in errors and "http://example.invalid/x" in requests


def test_report_renders_offline(finished_run, tmp_path):
    report = finished_run / "results" / "report.html"
    errors, requests = open_in_chromium(report, tmp_path / "report.png")
    assert errors == []
    assert requests == [report.resolve().as_uri()]
    assert (tmp_path / "report.png").stat().st_size > 20_000  # a rendered page, not a blank one


def test_comparison_renders_offline(finished_experiment, tmp_path):
    page = finished_experiment / "results" / "compare.html"
    errors, requests = open_in_chromium(page, tmp_path / "compare.png")
    assert errors == []
    assert requests == [page.resolve().as_uri()]
    assert (tmp_path / "compare.png").stat().st_size > 20_000


def test_a_comparison_of_twelve_runs_renders(finished_experiment, tmp_path):
    """Twelve runs (the tiny experiment's three, each under four names) on one page, opened in Chromium."""
    import json
    import sys

    from tests.conftest import ROOT, compare_inputs

    sys.path.insert(0, str(ROOT / "scripts"))
    from compare import build_parser, compare

    from ftpipe.stage import namespace

    results = finished_experiment / "results"
    names = {f"{run}{copy}": run for copy in range(4) for run in "abc"}
    per_run: dict[str, list[str]] = {}
    lineages = {}
    for name, run in names.items():
        for key, path in compare_inputs(finished_experiment, run).items():
            per_run.setdefault(key, []).append(str(path))
        lineages[name] = json.loads((results / "runs" / run / "lineage.json").read_text())
    outputs = {
        "page": str(tmp_path / "compare.html"),
        "table": str(tmp_path / "compare.json"),
        "csv": str(tmp_path / "c.csv"),
    }
    args = namespace(build_parser(), runs=list(names), baseline="a0", lineages=lineages, **per_run, **outputs)
    table = compare(args)
    assert len(table["runs"]) == 12
    assert all(row["paired"] is None or isinstance(row["paired"], dict) for row in table["runs"])
    errors, _ = open_in_chromium(tmp_path / "compare.html", tmp_path / "twelve.png")
    assert errors == []
