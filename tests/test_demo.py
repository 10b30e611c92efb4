"""The README's first command: the demo runs to completion on DuckDB and the in-process emulator."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import duckdb

from sixtyfour_sync.demo import make_sample

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sixtyfour_sync", "demo", "--dir", str(tmp_path / "demo"), "--job-seconds", "0.2"],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "submissions to the API this time: 0" in out.stdout
    con = duckdb.connect(str(tmp_path / "demo" / "demo.duckdb"), read_only=True)
    try:
        leads = con.execute("SELECT count(*) FROM leads WHERE country = 'US'").fetchall()[0][0]
        enriched = con.execute("SELECT count(*), count(email) FROM leads_enriched").fetchall()[0]
        companies = con.execute("SELECT count(*) FROM companies_enriched").fetchall()[0][0]
    finally:
        con.close()
    assert enriched[0] == leads
    assert 0 < enriched[1] < leads  # most rows enriched, a few failed
    assert companies > 250


def test_sample_is_deterministic_and_plausible() -> None:
    companies, leads = make_sample()
    assert (companies, leads) == make_sample()
    assert len(companies) == 300
    assert len(leads) == 3000
    assert len({c[1] for c in companies}) == 300
    assert all("." in (c[2] or "x.y") for c in companies)


def test_repo_models_are_the_packaged_examples() -> None:
    packaged = ROOT / "sixtyfour_sync" / "examples" / "models"
    names = sorted(p.name for p in packaged.glob("*.yml"))
    assert names == sorted(p.name for p in (ROOT / "models").glob("*.yml"))
    _, mismatch, errors = filecmp.cmpfiles(packaged, ROOT / "models", names, shallow=False)
    assert not mismatch and not errors
