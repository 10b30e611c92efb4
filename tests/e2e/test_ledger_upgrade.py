"""A ledger an older version wrote is brought up to date by whichever command sees it first, ``plan`` included:
the tables and columns a newer version reads are added, nothing else changes."""

from __future__ import annotations

from sixtyfour_sync import commands as api
from tests.e2e.conftest import E2EProject
from tests.e2e.warehouses import make_duckdb, setup_leads


def test_plan_and_run_read_a_ledger_that_lacks_newer_tables_and_columns(project: E2EProject) -> None:
    wh = make_duckdb(project)
    setup_leads(wh, 10)
    assert api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env).exit_code == 0
    # what an older version's ledger lacks: a column of the jobs table, the prices and quarantine tables
    wh.execute("ALTER TABLE {t:_sixtyfour_sync_jobs} DROP COLUMN tier")
    wh.execute("DROP TABLE {t:_sixtyfour_sync_prices}")
    wh.execute("DROP TABLE {t:_sixtyfour_sync_quarantine}")
    setup_leads(wh, 15)
    plans = api.plan(project.dir, env=project.env)
    assert plans[0].rows_by_reason == {"new": 5}
    assert "tier" in wh.columns("_sixtyfour_sync_jobs") and wh.exists("_sixtyfour_sync_prices")
    again = api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)
    assert again.exit_code == 0 and again.syncs[0].rows_sent == 5
