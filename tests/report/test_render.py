"""The page rendered from data alone (no warehouse): escaping, secrets, empty ledgers, no confidence, many runs."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from sixtyfour_sync._redact import register_secret
from sixtyfour_sync.report import charts, fmt
from sixtyfour_sync.report.model import (
    AttentionJob,
    ErrorLine,
    FieldStats,
    Report,
    RunRow,
    SyncReport,
    TierFill,
    TierJobs,
    bucket_label,
)
from sixtyfour_sync.report.render import CSP, render_html
from tests.report.htmltree import Node, parse

NOW = datetime(2025, 6, 2, 9, 30, tzinfo=timezone(timedelta(hours=2)))
EVIL = '<script>alert("x")</script>&"\''


def _run(i: int, **kw: object) -> RunRow:
    start = NOW - timedelta(days=10 - i)
    values: dict[str, object] = {
        "run_id": f"run-{i}",
        "status": "success",
        "syncs": ("leads",),
        "started_at": start,
        "finished_at": start + timedelta(seconds=75),
        "jobs": 2,
        "rows_sent": 100 + i,
        "rows_enriched": 90 + i,
        "rows_failed": 10,
        "estimated_cents": 50.0 + i,
        "charged_cents": 40.0 + i,
    }
    values.update(kw)
    return RunRow(**values)  # type: ignore[arg-type]


def _sync(name: str = "leads", **kw: object) -> SyncReport:
    values: dict[str, object] = {
        "name": name,
        "endpoint": "people",
        "tier": "low",
        "target": "main.leads_enriched",
        "field_confidence": True,
        "target_exists": True,
        "table_rows": 120,
        "rows": 100,
        "fields": (
            FieldStats("email", "email", True, 80, (0, 1, 2, 3, 4, 5, 6, 7, 8, 44), 81.5),
            FieldStats("title", "title", True, 55, (10, 0, 0, 0, 0, 0, 0, 0, 0, 45), 60.0),
        ),
        "by_status": (("enriched", 90), ("failed", 10)),
        "tier_jobs": (TierJobs("low", 2, 100, 90, 10, 40.0),),
        "charged_cents": 40.0,
        "estimated_cents": 50.0,
    }
    values.update(kw)
    return SyncReport(**values)  # type: ignore[arg-type]


def _report(**kw: object) -> Report:
    values: dict[str, object] = {
        "project": "acme",
        "generated_at": NOW,
        "warehouses": ("duckdb wh.duckdb (schema main)",),
        "runs": tuple(_run(i) for i in range(3)),
        "syncs": (_sync(),),
        "ledger_found": True,
        "run_limit": 100,
        "version": "0.1.0",
    }
    values.update(kw)
    return Report(**values)  # type: ignore[arg-type]


def _header_tiles(doc: Node) -> dict[str, str]:
    return {
        t.attrs["data-tile"]: t.find(class_="value").text for t in doc.find("header").find_all("div", class_="tile")
    }


def _bars(doc: Node, chart: str) -> list[Node]:
    svg = doc.find("svg", class_=chart)
    return svg.find_all("rect", class_="bar")


def test_a_page_is_self_contained_and_forbids_every_fetch() -> None:
    html = render_html(_report())
    doc = parse(html)
    assert doc.find("title").text == "sixtyfour-sync report: acme"
    csp = doc.find("meta", http_equiv="Content-Security-Policy")
    assert csp.attrs["content"] == CSP and "default-src 'none'" in CSP
    # nothing to fetch: no script, no external stylesheet, no image, no link, no src at all
    assert not doc.find_all("script") and not doc.find_all("link") and not doc.find_all("img")
    assert all("src" not in n.attrs and "href" not in n.attrs for n in doc.iter())
    assert "@import" not in html and "url(" not in html
    assert html.startswith("<!DOCTYPE html>")


def test_every_user_and_api_value_is_escaped() -> None:
    field = FieldStats("email", "email", True, 1, None)
    sync = _sync(
        name=EVIL,
        target=EVIL,
        fields=(field,),
        by_status=((EVIL, 100),),
        tier_jobs=(TierJobs(EVIL, 1, 1, 1, 0, 1.0),),
        attention=(AttentionJob("j1", EVIL, "lost", EVIL, 10, None, EVIL, NOW),),
        errors=(ErrorLine(NOW, EVIL, "failed", EVIL, EVIL),),
        by_tier=(TierFill(EVIL, 100, (("email", 1),)),),
    )
    html = render_html(_report(project=EVIL, warehouses=(EVIL,), syncs=(sync,), runs=(_run(1, error=EVIL),)))
    assert "<script" not in html
    assert html.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&quot;&#x27;") >= 10
    doc = parse(html)
    assert doc.find("section", class_="sync").attrs["data-sync"] == EVIL  # attributes escaped, and intact
    assert doc.find("title").text == f"sixtyfour-sync report: {EVIL}"


def test_secrets_and_signed_links_in_errors_never_reach_the_page() -> None:
    secret = "sk-live-report-secret-0042"
    register_secret(secret)
    link = "https://storage.example.com/results/abc.csv?X-Amz-Signature=deadbeefcafe&X-Amz-Credential=AKIA123"
    message = f"download failed for {link} with key {secret}"
    sync = _sync(
        errors=(ErrorLine(NOW, "run-1", "failed", "task-1", message),),
        attention=(AttentionJob("j1", "run-1", "result_unreadable", "task-1", 10, 5.0, message, NOW),),
    )
    html = render_html(_report(syncs=(sync,), runs=(_run(1, error=message),)))
    assert secret not in html
    assert "deadbeefcafe" not in html and "AKIA123" not in html
    assert "https://storage.example.com/results/abc.csv?***" in html


def test_a_project_never_run_says_so_and_draws_no_bars() -> None:
    sync = _sync(target_exists=False, rows=0, table_rows=0, fields=(), by_status=(), tier_jobs=(), charged_cents=0.0)
    doc = parse(render_html(_report(runs=(), ledger_found=False, syncs=(sync,))))
    text = doc.text
    assert "No ledger yet" in text
    assert "does not exist yet" in text
    assert "No jobs in the ledger yet." in text
    assert not doc.find_all("rect", class_="bar")
    tiles = {
        t.attrs["data-tile"]: t.find(class_="value").text for t in doc.find("header").find_all("div", class_="tile")
    }
    assert tiles["rows_enriched"] == "0" and tiles["charged"] == "$0.00" and tiles["runs"] == "0"


def test_a_ledger_without_runs_of_these_syncs() -> None:
    doc = parse(render_html(_report(runs=())))
    assert "No runs recorded for these syncs." in doc.text
    assert not doc.find_all("svg", class_="chart-rows")


def test_a_sync_without_confidence_has_no_histograms() -> None:
    fields = (FieldStats("email", "email", True, 80), FieldStats("phone", "phone", False))
    doc = parse(render_html(_report(syncs=(_sync(fields=fields, field_confidence=False),))))
    assert not doc.find_all("svg", class_="chart-conf")
    assert "set field_confidence: true" in doc.text
    fill = _bars(doc, "chart-fill")
    assert [b.attrs["data-value"] for b in fill] == ["0.8", "0.0"]
    assert "not in the table yet" in doc.find("svg", class_="chart-fill").text


def test_confidence_histograms_have_ten_buckets_per_field() -> None:
    doc = parse(render_html(_report()))
    hists = doc.find_all("figure", class_="hist")
    assert [h.attrs["data-field"] for h in hists] == ["email", "title"]
    email = hists[0].find_all("rect", class_="bar")
    assert [int(b.attrs["data-value"]) for b in email] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 44]
    assert "mean 82" in hists[0].text and "80 row(s)" in hists[0].text
    assert [bucket_label(i) for i in (0, 1, 9)] == ["0-9", "10-19", "90-100"]


def test_runs_table_and_charts_carry_the_numbers() -> None:
    runs = (_run(0), _run(1, charged_cents=10.0, charged_later_cents=32.5, jobs_resumed=1), _run(2, status="crashed"))
    doc = parse(render_html(_report(runs=runs)))
    row = doc.find("tr", data_run="run-1")
    cells = {c.attrs["data-col"]: c for c in row.find_all("td") if "data-col" in c.attrs}
    assert cells["rows_sent"].attrs["data-value"] == "101" and cells["rows_sent"].text == "101"
    assert cells["charged_cents"].text == "$0.10" and cells["charged_later_cents"].text == "$0.33"
    assert cells["duration"].text == "1m 15s"
    assert "crashed" in doc.find("tr", data_run="run-2").text
    # three stacked segments per run in each chart, oldest run first
    groups = doc.find("svg", class_="chart-cost").find_all("g", class_="group")
    assert [g.attrs["data-key"] for g in groups] == ["run-0", "run-1", "run-2"]
    assert [b.attrs["data-value"] for b in groups[1].find_all("rect", class_="bar")] == ["51.0", "10.0", "32.5"]
    assert len(_bars(doc, "chart-rows")) == 9


def test_many_runs_render_fast_with_few_axis_labels() -> None:
    runs = tuple(_run(i, started_at=NOW - timedelta(hours=500 - i)) for i in range(500))
    started = time.perf_counter()
    html = render_html(_report(runs=runs, run_limit=500))
    elapsed = time.perf_counter() - started
    doc = parse(html)
    assert len(_bars(doc, "chart-rows")) == 1500 and len(_bars(doc, "chart-cost")) == 1500
    labels = [t for t in doc.find("svg", class_="chart-rows").find_all("text") if ":" in t.text]
    assert 5 <= len(labels) <= 14
    assert len(doc.find("table", class_="runs").find_all("tr")) == 501  # the head and one row per run
    assert "The latest 500 runs" in doc.text
    assert elapsed < 1.0, elapsed


def test_held_jobs_say_what_to_do() -> None:
    held = (
        AttentionJob("j1", "run-1", "lost", "task-lost", 10, None, "job-status answered 404", NOW),
        AttentionJob("j2", "run-1", "needs_attention", None, 5, None, None, None),
        AttentionJob("j3", "run-1", "result_unreadable", "task-bad", 7, 3.5, "no key column", NOW),
    )
    doc = parse(render_html(_report(syncs=(_sync(attention=held, jobs_in_flight=2, rows_in_flight=20),))))
    table = doc.find("table", class_="attention")
    rows = {r.attrs["data-state"]: r for r in table.find_all("tr") if "data-state" in r.attrs}
    assert "task-lost" in rows["lost"].text and "--retry-lost" in rows["lost"].find("td", class_="advice").text
    assert "--retry-lost" in rows["needs_attention"].text
    assert "--retry-unreadable" in rows["result_unreadable"].text
    assert "2 job(s) with 20 row(s) are unfinished" in doc.text
    tile = doc.find("div", data_tile="attention")
    assert tile.find(class_="value").text == "3" and "bad" in tile.attrs["class"]


def test_the_header_shows_the_zone_and_totals() -> None:
    syncs = (_sync(), _sync("companies", charged_cents=12.34, by_status=(("enriched", 5),)))
    doc = parse(render_html(_report(syncs=syncs)))
    generated = doc.find("time")
    assert generated.attrs["data-generated"] == "2025-06-02T09:30:00+02:00"
    assert generated.text == "2025-06-02 09:30:00 UTC+02:00"
    tiles = {
        t.attrs["data-tile"]: t.find(class_="value").text for t in doc.find("header").find_all("div", class_="tile")
    }
    assert tiles["rows_enriched"] == "95" and tiles["charged"] == "$0.52"


@pytest.mark.parametrize(
    ("top", "ticks"),
    [(0, [0.0, 1.0]), (7, [0, 2, 4, 6, 8]), (1624, [0, 500, 1000, 1500, 2000]), (0.3, [0, 0.1, 0.2, 0.3])],
)
def test_axis_ticks_are_round(top: float, ticks: list[float]) -> None:
    assert charts.nice_ticks(top) == pytest.approx(ticks)


def test_formatting() -> None:
    assert fmt.money(123456.7) == "$1,234.57" and fmt.money(None) == "-"
    assert fmt.duration(12.34) == "12.3s" and fmt.duration(3725) == "1h 02m" and fmt.duration(None) == "-"
    assert fmt.pct(1, 3) == "33.3%" and fmt.pct(1, 0) == "-"
    assert fmt.zone(datetime(2025, 1, 1, tzinfo=timezone.utc)) == "UTC"
    assert fmt.zone(datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=30)))) == "UTC+05:30"
    assert fmt.zone(datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=-5), "EST"))) == "EST (UTC-05:00)"


def test_a_one_bar_chart_is_never_drawn_wider_than_its_width() -> None:
    """A chart scaled to a wide column scales its text too: the one-tier chart drew 13px labels at about 26px."""
    doc = parse(render_html(_report(syncs=(_sync(by_tier=(TierFill("low", 100, (("email", 80),)),)),))))
    svgs = doc.find_all("svg")
    assert any("chart-tier" in svg.attrs["class"] for svg in svgs)
    for svg in svgs:
        width = float(svg.attrs["viewbox"].split()[2])  # the parser lowercases attribute names
        assert svg.attrs["style"] == f"max-width: {width:g}px", svg.attrs["class"]


def test_an_error_cell_holds_the_whole_message_for_its_tooltip() -> None:
    """The page clamps a long error to a few lines on screen (checked in tests/report/test_browser.py): the
    cell still holds all of it, as its text and as its tooltip."""
    long = "the API refused the file: " + " ".join(f"row {i} has no value for the key column" for i in range(12))
    assert 400 < len(long) <= 500  # errors are stored cut to 500 characters
    sync = _sync(errors=(ErrorLine(NOW, "run-1", "failed", "task-1", long),))
    doc = parse(render_html(_report(syncs=(sync,), runs=(_run(1, error=long), _run(2)))))
    cells = doc.find_all("td", class_="error")
    assert len(cells) == 3  # two runs (one without an error), one of the last errors
    full = [c for c in cells if c.text]
    assert len(full) == 2 and all(c.find("div", class_="msg").attrs["title"] == long for c in full)
    assert all(c.text == long for c in full)


def test_a_bar_charts_columns_fit_its_longest_label_and_caption() -> None:
    """Horizontal bar charts draw their text at the page's size: a long caption widens the chart, never
    overflows it."""
    short = charts.hbar_chart("chart-x", "x", [("low", 1.0, "100 (100.0%)")])
    wide = charts.hbar_chart(
        "chart-x", "x", [("a_long_field_name_here", 0.5, "55.0% · 1,234,567 of 2,244,666 and some more")]
    )
    assert 'viewBox="0 0 570 36"' in short and "chart hbar chart-x" in short
    width = float(parse(wide).find("svg").attrs["viewbox"].split()[2])
    assert width > 570
    caption_x = float(parse(wide).find_all("text")[-1].attrs["x"])
    assert width - caption_x >= 8.0 * len("55.0% · 1,234,567 of 2,244,666 and some more")


def test_the_latest_evaluation_shows_precision_per_field_tier_and_band() -> None:
    from sixtyfour_sync.report.model import Evaluation, EvaluationCell

    ev = Evaluation(
        evaluation_id="eval-1",
        evaluated_at=NOW,
        labels=EVIL,
        cells=(
            EvaluationCell("email", "low", "50-69", 6, 4, 1),
            EvaluationCell("email", "low", "90-100", 9, 0, 0),
            EvaluationCell("email", "medium", "90-100", 5, 1, 0),
            EvaluationCell("title", "low", "0-49", 0, 3, 2),
        ),
        target_precision=0.9,
        suggestions=(("email", 70, 12), ("title", None, None)),
    )
    html = render_html(_report(syncs=(_sync(evaluation=ev),)))
    assert "<script" not in html
    doc = parse(html)
    block = doc.find("div", class_="evaluation")
    rows = {r.attrs["data-field"]: r for r in block.find("table", class_="quality").find("tbody").find_all("tr")}
    email = {c.attrs["data-col"]: c.text for c in rows["email"].find_all("td") if "data-col" in c.attrs}
    # email: 20 correct, 5 wrong, 1 missing; low 15/19, medium 5/6
    assert email == {
        "precision": "80%",
        "accuracy": "77%",
        "coverage": "96%",
        "precision:low": "79%",
        "precision:medium": "83%",
    }
    title = {c.attrs["data-col"]: c.text for c in rows["title"].find_all("td") if "data-col" in c.attrs}
    assert title["precision"] == "0%" and title["precision:medium"] == "-"
    bands = block.find("table", class_="quality-bands")
    assert [th.text for th in bands.find_all("th")] == ["Field", "0-49", "50-69", "90-100"]
    email_bands = [c.text for c in bands.find("tr", data_field="email").find_all("td")]
    assert email_bands == ["email", "-", "60% (10)", "93% (15)"]
    advice = block.find("ul", class_="suggestions").text
    assert "min_confidence: 70" in advice and "would hold back 12 stored value(s)" in advice
    assert "title: no threshold reaches it" in advice
    assert not parse(render_html(_report())).find_all("div", class_="evaluation")
