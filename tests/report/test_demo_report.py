"""The demo ends by writing the report and saying where it is."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from sixtyfour_sync.demo import run_demo
from tests.report.htmltree import parse


def test_the_demo_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "demo"
    assert run_demo(directory, job_seconds=0.1) == 0
    page = directory / "report.html"
    assert str(page) in "".join(capsys.readouterr().out.split())  # said, however the terminal wrapped it
    doc = parse(page.read_text(encoding="utf-8"))
    assert doc.find("title").text == "sixtyfour-sync report: demo"
    assert [s.attrs["data-sync"] for s in doc.find_all("section", class_="sync")] == [
        "enrich_companies",
        "enrich_leads",
    ]
    con = duckdb.connect(str(directory / "demo.duckdb"), read_only=True)
    try:
        (charged,) = con.execute("SELECT sum(charged_cents) FROM _sixtyfour_sync_jobs").fetchone() or (0,)
        (runs,) = con.execute("SELECT count(*) FROM _sixtyfour_sync_runs").fetchone() or (0,)
    finally:
        con.close()
    tiles = {
        t.attrs["data-tile"]: t.find(class_="value").text for t in doc.find("header").find_all("div", class_="tile")
    }
    assert tiles["charged"] == f"${charged / 100:,.2f}" and tiles["runs"] == str(runs)
