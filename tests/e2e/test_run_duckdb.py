"""The whole pipeline on DuckDB against the emulator over a real socket."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from sixtyfour_sync import commands as api
from tests.e2e.conftest import E2EProject, lead_rows, run_cli


def _setup_duckdb(project: E2EProject, rows: int) -> Path:
    db = project.dir / "wh.duckdb"
    con = duckdb.connect(str(db))
    con.execute(
        "CREATE TABLE leads (lead_id BIGINT, first_name VARCHAR, last_name VARCHAR, company VARCHAR, "
        "domain VARCHAR, country VARCHAR)"
    )
    con.executemany("INSERT INTO leads VALUES (?, ?, ?, ?, ?, ?)", lead_rows(rows))
    con.close()
    (project.dir / "profiles.yml").write_text(
        "sixtyfour:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: wh.duckdb\n"
    )
    return db


def _run(project: E2EProject, **kw: object) -> api.RunResult:
    return api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env, **kw)  # type: ignore[arg-type]


def _target(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            "SELECT lead_id, email, title, employee_count, email_confidence, _sixtyfour_status "
            "FROM leads_enriched ORDER BY lead_id"
        ).fetchall()
    finally:
        con.close()


def test_first_run_then_nothing_to_do(project: E2EProject) -> None:
    db = _setup_duckdb(project, 250)
    project.write_model(chunk_rows=100)
    result = _run(project)
    assert result.exit_code == 0, result.to_dict()
    s = result.syncs[0]
    assert s.rows_by_reason == {"new": 250}
    assert s.rows_sent == 250
    assert len(s.jobs) == 3
    assert s.rows_enriched + s.rows_failed == 250
    assert s.rows_failed > 0  # the emulator fails ~10% of rows
    assert s.estimated_cost_cents > 0
    rows = _target(db)
    assert len(rows) == 250
    # what each file sent waited on disk until its result was merged, and is gone with it
    assert list(project.dir.rglob("*.sent.arrow")) == []
    enriched = [r for r in rows if r[5] == "enriched"]
    assert all(r[1] and "@" in r[1] for r in enriched)
    assert all(r[1] is None for r in rows if r[5] == "failed")
    submissions = len(project.emulator.submissions)

    again = _run(project)
    assert again.exit_code == 0
    assert again.syncs[0].status == "nothing_to_do"
    assert len(project.emulator.submissions) == submissions  # no API call at all


def test_plan_counts_without_calling_the_api(project: E2EProject) -> None:
    _setup_duckdb(project, 40)
    plans = api.plan(project.dir, env=project.env)
    assert plans[0].rows_by_reason == {"new": 40}
    assert plans[0].files == 1
    assert not project.emulator.submissions
    con = duckdb.connect(str(project.dir / "wh.duckdb"), read_only=True)
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    con.close()
    assert tables == {"leads"}  # plan created nothing


def test_changed_inputs_are_sent_again_and_only_they(project: E2EProject) -> None:
    db = _setup_duckdb(project, 30)
    assert _run(project).exit_code == 0
    con = duckdb.connect(str(db))
    con.execute("UPDATE leads SET company = 'Hooli', domain = 'hooli.xyz' WHERE lead_id IN (3, 4)")
    con.close()
    result = _run(project)
    assert result.syncs[0].rows_by_reason == {"changed": 2}
    after = {r[0]: r for r in _target(db)}
    for lead in (3, 4):
        email, status = after[lead][1], after[lead][5]
        if status == "enriched":
            assert email.endswith("@hooli.xyz")
        else:  # a row the API could not enrich keeps what an earlier run found
            assert email is None or not email.endswith("@hooli.xyz")


def test_budget_stops_before_spending(project: E2EProject) -> None:
    _setup_duckdb(project, 300)
    project.write_model(chunk_rows=100, extra="budget:\n  max_cost_cents: 250\n  price_cents_per_row: 2\n")
    result = _run(project)
    s = result.syncs[0]
    assert s.status == "budget_reached"
    assert result.exit_code == 0  # the budget is a cap: what fits is sent, the rest waits, the run succeeds
    assert any("budget reached" in w for w in s.warnings) and not s.errors
    assert 75 <= s.rows_unsent <= 300 - 125  # the rest of the second file at least; rows not read are not counted
    # a one-row file checks the configured price first; then the rest of the first file (198 cents) fits, and of
    # the second only the 25 rows that fit the 50 cents left are sent
    assert s.rows_sent == 125
    assert s.estimated_cost_cents <= 250
    assert [x.row_count for x in project.emulator.submissions] == [1, 99, 25]


def test_a_budget_reached_is_exit_0_with_a_warning_and_fail_on_budget_makes_it_1(project: E2EProject) -> None:
    import json

    _setup_duckdb(project, 60)
    project.write_model(chunk_rows=20, extra="budget:\n  max_cost_cents: 41\n  price_cents_per_row: 2\n")
    capped = run_cli(project, "run", "--yes", "--log-format", "json")
    assert capped.returncode == 0, capped.stdout + capped.stderr
    summary = next(json.loads(line) for line in capped.stdout.splitlines() if '"run.summary"' in line)
    (sync,) = summary["syncs"]
    assert sync["status"] == "budget_reached" and 0 < sync["rows_sent"] < 60 and sync["rows_unsent"] > 0
    assert any("budget reached" in w for w in sync["warnings"]) and not sync["errors"]
    artifact = json.loads((project.dir / "target" / "sixtyfour_run_results.json").read_text())
    assert artifact["results"][0]["rows"]["unsent_at_budget"] == sync["rows_unsent"]
    strict = run_cli(project, "run", "--yes", "--fail-on-budget")
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "budget_reached" in strict.stdout


@pytest.mark.parametrize("when", ["missing"])
def test_missing_mode_ignores_changes(project: E2EProject, when: str) -> None:
    db = _setup_duckdb(project, 10)
    project.write_model(when=when)
    assert _run(project).exit_code == 0
    con = duckdb.connect(str(db))
    con.execute("UPDATE leads SET company = 'Hooli' WHERE lead_id = 3")
    con.close()
    assert _run(project).syncs[0].status == "nothing_to_do"


def test_no_wait_leaves_no_sent_rows_behind_and_the_next_run_merges(project: E2EProject) -> None:
    db = _setup_duckdb(project, 150)
    project.write_model(chunk_rows=100)
    first = _run(project, no_wait=True)
    assert first.exit_code == 0, first.to_dict()
    assert first.syncs[0].rows_sent == 150
    assert list(project.dir.rglob("*.sent.arrow")) == []  # a resume reads what was sent from the file itself
    files_dir = next(project.dir.rglob("*.jsonl")).parent  # the files in flight stay for the resume
    (files_dir / "killed-run.sent.arrow").write_bytes(b"left by a run killed with -9")
    second = _run(project)
    assert list(project.dir.rglob("*.sent.arrow")) == []  # a killed run's leftovers are removed
    assert second.exit_code == 0, second.to_dict()
    assert second.syncs[0].resumed.rows_merged == 150  # the jobs in flight, finished and merged
    assert len(_target(db)) == 150


def test_max_wait_stops_waiting_only_after_every_file_is_sent(project: E2EProject) -> None:
    db = _setup_duckdb(project, 250)
    # A known price: with none, the files wait for a one-row job's estimate, which --max-wait may cut short.
    project.write_model(chunk_rows=100, extra="budget:\n  price_cents_per_row: 2\n")
    first = _run(project, max_wait_seconds=0)
    assert first.exit_code in (0, 3), first.to_dict()
    assert first.syncs[0].rows_sent == 250  # the limit passed at once, yet the whole selection went out
    assert len(project.emulator.submissions) == 3
    second = _run(project)
    assert second.exit_code == 0, second.to_dict()
    assert len(_target(db)) == 250
    assert len(project.emulator.submissions) == 3  # the jobs in flight were finished, nothing asked twice
