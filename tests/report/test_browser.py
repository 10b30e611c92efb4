"""The report in a real browser: headless Chromium loads the file, renders it, and complains about nothing.

Chromium is driven over the DevTools protocol on a pipe (tests/report/browser.py). The test checks the title,
the charts (an ``<svg>`` with the expected number of bars), that the page made no request but for itself, and
that there was no console message, exception or log error. The full-page screenshot is kept in the test's
directory; set ``SIXTYFOUR_REPORT_SHOTS=DIR`` to keep a copy.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import duckdb
import pytest

from sixtyfour_sync.emulator import EmulatorSettings
from sixtyfour_sync.report import write_report
from tests.e2e.conftest import E2EProject
from tests.e2e.warehouses import make_duckdb
from tests.report import scenario
from tests.report.browser import Chromium, PageLoad, chromium_binary

COUNTS = {
    "run_bars": "document.querySelectorAll('svg.chart-rows rect.bar').length",
    "cost_bars": "document.querySelectorAll('svg.chart-cost rect.bar').length",
    "fill_bars": "document.querySelectorAll('svg.chart-fill rect.bar').length",
    "conf_bars": "document.querySelectorAll('svg.chart-conf rect.bar').length",
    "status_bars": "document.querySelectorAll('svg.chart-status rect.bar').length",
    "svgs": "document.querySelectorAll('svg.chart').length",
    "run_rows": "document.querySelectorAll('table.runs tbody tr').length",
    "held_rows": "document.querySelectorAll('table.attention tbody tr').length",
    # the browser laid the charts out: the tallest enriched bar has a real height on screen
    "bar_px": "Math.max(...[...document.querySelectorAll('svg.chart-rows rect.enriched')]"
    ".map(r => r.getBoundingClientRect().height))",
    "page_width": "document.documentElement.scrollWidth",
    "scripts": "document.scripts.length",
}


@pytest.fixture
def emulator_settings(api_key: str) -> EmulatorSettings:
    return scenario.settings(api_key)


def _keep(page: PageLoad, path: Path, name: str) -> None:
    path.write_bytes(page.screenshot)
    shots = os.environ.get("SIXTYFOUR_REPORT_SHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(shots) / name)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_the_report_renders_in_chromium(project: E2EProject, tmp_path: Path) -> None:
    binary = chromium_binary()
    wh = make_duckdb(project)
    scenario.three_runs(project, wh)
    out, report = write_report(project.dir, out=tmp_path / "report.html", env=project.env)
    fields = len(report.syncs[0].fields)
    started = time.monotonic()
    with Chromium(binary) as browser:
        page = browser.load(out, COUNTS)
    elapsed = time.monotonic() - started
    _keep(page, tmp_path / "report.png", "report.png")
    assert page.title == f"sixtyfour-sync report: {report.project}"
    v = page.values
    assert v["run_rows"] == 3 and v["run_bars"] == 3 * 3 and v["cost_bars"] == 3 * 3
    assert v["fill_bars"] == fields and v["conf_bars"] == 10 * fields and v["status_bars"] == 2
    assert v["svgs"] == 2 + 2 + fields + 1  # runs, cost, fill, status, one histogram per field, rows by tier
    assert v["held_rows"] == 1 and v["scripts"] == 0
    assert v["bar_px"] > 20
    assert v["page_width"] <= 1280  # nothing overflows the window sideways
    assert page.errors == []
    assert page.requests == [out.resolve().as_uri()]  # the page itself, nothing else
    width, height = _png_size(page.screenshot)
    assert width == 1280 and height > 1500
    assert elapsed < 30, elapsed


def test_an_empty_report_renders_too(project: E2EProject, tmp_path: Path) -> None:
    binary = chromium_binary()
    make_duckdb(project)
    con = duckdb.connect(str(project.dir / "wh.duckdb"))
    con.execute(
        "CREATE TABLE leads (lead_id BIGINT, first_name VARCHAR, last_name VARCHAR, company VARCHAR, domain VARCHAR)"
    )
    con.close()
    out, _ = write_report(project.dir, out=tmp_path / "empty.html", env=project.env)
    with Chromium(binary) as browser:
        page = browser.load(out, {"svgs": "document.querySelectorAll('svg').length", "text": "document.body.innerText"})
    _keep(page, tmp_path / "empty.png", "empty.png")
    assert page.errors == [] and page.values["svgs"] == 0
    assert "No ledger yet" in page.values["text"]


def test_the_driver_sees_console_errors_exceptions_and_fetches(tmp_path: Path) -> None:
    """The checks above are not vacuous: a page that logs, throws and fetches is caught on each count."""
    binary = chromium_binary()
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><title>bad</title></head><body>"
        "<script>console.error('boom'); setTimeout(() => { throw new Error('thrown'); }, 0);</script>"
        '<img src="http://127.0.0.1:9/pixel.png"></body></html>',
        encoding="utf-8",
    )
    with Chromium(binary) as browser:
        page = browser.load(bad, {"wait": "new Promise(r => setTimeout(() => r(1), 200))"})
    assert page.title == "bad"
    joined = "\n".join(page.errors)
    assert "console.error: boom" in joined and "thrown" in joined
    assert "http://127.0.0.1:9/pixel.png" in page.requests and page.failed
