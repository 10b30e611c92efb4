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

from sixtyfour_sync.commands.evaluating import evaluate
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
    "quality_rows": "document.querySelectorAll('table.quality tbody tr').length",
}
#: How the page laid out its error cells and its horizontal bar charts (sizes in CSS pixels).
LAYOUT = {
    "body_px": "parseFloat(getComputedStyle(document.body).fontSize)",
    "errors": """[...document.querySelectorAll('td.error')].filter(td => td.textContent).map(td => {
        const msg = td.querySelector('.msg') || td, style = getComputedStyle(msg);
        return {table: td.closest('table').className, cell_h: td.getBoundingClientRect().height,
                msg_h: msg.getBoundingClientRect().height, msg_w: msg.getBoundingClientRect().width,
                line: parseFloat(style.lineHeight), font: parseFloat(style.fontSize)}; })""",
    # the horizontal bar charts: the size each text is drawn at (its font size times the chart's scale), and
    # whether it stays inside
    "hbars": """[...document.querySelectorAll('svg.chart-tier, svg.chart-fill, svg.chart-status')].map(svg => {
        const scale = svg.getScreenCTM().a, box = svg.getBoundingClientRect();
        const texts = [...svg.querySelectorAll('text')];
        return {cls: svg.getAttribute('class'),
                px: texts.map(t => parseFloat(getComputedStyle(t).fontSize) * scale),
                inside: texts.every(t => { const r = t.getBoundingClientRect();
                    return r.left >= box.left - 0.5 && r.right <= box.right + 0.5; })}; })""",
    "tables": """Object.fromEntries([...document.querySelectorAll('table')].map(t =>
        [t.className, [t.getBoundingClientRect().width, t.parentElement.getBoundingClientRect().width]]))""",
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
    # an evaluation of the titles against labels (a third of them wrong): the report shows its tables
    con = duckdb.connect(str(wh.path), read_only=True)
    stored = con.execute("SELECT lead_id, title FROM leads_enriched ORDER BY lead_id").fetchall()
    con.close()
    labels = tmp_path / "labels.csv"
    labels.write_text("lead_id,title\n" + "".join(f"{k},{t if k % 3 else 'Chief Pastry Officer'}\n" for k, t in stored))
    evaluate(project.dir, sync="enrich_leads", labels=labels, target_precision=0.9, env=project.env)
    out, report = write_report(project.dir, out=tmp_path / "report.html", env=project.env)
    fields = len(report.syncs[0].fields)
    started = time.monotonic()
    with Chromium(binary) as browser:
        page = browser.load(out, {**COUNTS, **LAYOUT})
    elapsed = time.monotonic() - started
    _keep(page, tmp_path / "report.png", "report.png")
    assert page.title == f"sixtyfour-sync report: {report.project}"
    v = page.values
    assert v["run_rows"] == 3 and v["run_bars"] == 3 * 3 and v["cost_bars"] == 3 * 3
    assert v["fill_bars"] == fields and v["conf_bars"] == 10 * fields and v["status_bars"] == 2
    assert v["svgs"] == 2 + 2 + fields + 1  # runs, cost, fill, status, one histogram per field, rows by tier
    assert v["held_rows"] == 1 and v["scripts"] == 0 and v["quality_rows"] == 1
    assert v["bar_px"] > 20
    assert v["page_width"] <= 1280  # nothing overflows the window sideways
    (tier,) = [c for c in v["hbars"] if "chart-tier" in c["cls"]]  # one tier: a chart of one bar
    assert tier["px"] and all(px == pytest.approx(v["body_px"], abs=0.05) for px in tier["px"]), tier
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


@pytest.mark.parametrize("width", [1280, 1024])
def test_long_errors_stay_a_few_lines_and_bar_charts_keep_the_page_font(tmp_path: Path, width: int) -> None:
    """A long error wraps between words in a column wide enough to read and shows four lines at most; a
    horizontal bar chart (the one-bar tier chart too) draws its text at the page's font size, inside itself."""
    from sixtyfour_sync.report.model import AttentionJob, ErrorLine, TierFill
    from sixtyfour_sync.report.render import render_html
    from tests.report.test_render import NOW, _report, _run, _sync

    binary = chromium_binary()
    task = "9171193a-2394-46a4-a541-618da4e59281"
    long = (
        f"the API answered 404 for job-status of task {task}: it does not know the task for this "
        "Idempotency-Key; `sixtyfour-sync run --retry-lost` looks again and releases the rows if it is still "
        "unknown, and https://api.example.com/job-status/a-very-long-path-segment-without-any-space-in-it"
    ) * 2
    sync = _sync(
        errors=(ErrorLine(NOW, "20261207T181509Z-c879cb91", "lost", task, long[:500]),),
        attention=(AttentionJob("j1", "20261207T181509Z-c879cb91", "lost", task, 10, None, long[:500], NOW),),
        by_tier=(TierFill("low", 1_234_567, (("email", 1_000_000),)),),
        rows=1_234_567,
        fields=(),
    )
    out = tmp_path / "long.html"
    out.write_text(render_html(_report(syncs=(sync,), runs=(_run(1, error=long[:500]), _run(2)))), encoding="utf-8")
    with Chromium(binary) as browser:
        page = browser.load(out, LAYOUT, width=width)
    _keep(page, tmp_path / f"long-{width}.png", f"long-{width}.png")
    v = page.values
    assert page.errors == []
    assert {e["table"] for e in v["errors"]} == {"runs", "attention", "errors"}
    for cell in v["errors"]:
        assert cell["msg_h"] <= 4 * cell["line"] + 1, cell  # four lines at most
        assert cell["msg_w"] >= 20 * cell["font"] - 1, cell  # wide enough for words, not a fragment a line
        if cell["table"] != "attention":  # (there, "What to do" may be taller)
            assert cell["cell_h"] <= 4 * cell["line"] + 12, cell  # the row is no taller either
    tier = [c for c in v["hbars"] if "chart-tier" in c["cls"]]
    assert tier and tier[0]["px"]
    assert all(px == pytest.approx(v["body_px"], abs=0.05) for px in tier[0]["px"]), tier
    assert all(c["inside"] for c in v["hbars"]), v["hbars"]  # long captions fit their chart
    if width == 1280:  # the runs table fits its section: the Error column is in view without scrolling
        table, box = v["tables"]["runs"]
        assert table <= box + 0.5, v["tables"]
