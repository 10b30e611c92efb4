"""Money and data under failure: 402, failed jobs, expired links, odd results, grown structs, resets."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from sixtyfour_sync import commands as api
from sixtyfour_sync.emulator import Emulator, EmulatorSettings, FaultSettings
from tests.e2e.conftest import E2EProject
from tests.e2e.test_run_duckdb import _run, _setup_duckdb, _target


def _query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _jobs(db: Path) -> list[tuple]:
    return _query(db, "SELECT state, task_id, error FROM _sixtyfour_sync_jobs ORDER BY created_at")


@pytest.fixture
def emulator_settings(api_key: str) -> EmulatorSettings:
    # 402 once the first 100-row file (200 cents at tier low) has been paid for
    return EmulatorSettings(api_keys=frozenset({api_key}), job_seconds=0.1, failure_rate=0.0, balance_cents=300)


def test_402_stops_cleanly_and_keeps_what_was_done(project: E2EProject) -> None:
    db = _setup_duckdb(project, 300)
    project.write_model(chunk_rows=100)
    result = _run(project)
    s = result.syncs[0]
    assert s.status == "no_credits"
    assert result.exit_code == 1
    assert any("402" in e for e in s.errors)
    states = [j[0] for j in _jobs(db)]
    assert states.count("merged") == 1  # the paid job was finished and merged
    assert "rejected" in states  # the refused file is recorded, with nothing charged
    assert len(_target(db)) == 100


def test_a_failed_job_is_recorded_and_partial(tmp_path: Path, project: E2EProject) -> None:
    emu = Emulator(
        EmulatorSettings(
            api_keys=frozenset({project.api_key}), job_seconds=0.1, faults=FaultSettings(job_failure_rate=1.0)
        )
    )
    with emu.serve() as server:
        db = _setup_duckdb(project, 20)
        result = api.run(project.dir, api_key=project.api_key, api_url=server.url, env=project.env)
    s = result.syncs[0]
    assert s.status == "partial"
    assert result.exit_code == 3
    assert [j[0] for j in _jobs(db)] == ["failed"]
    # nothing was paid for, so nothing changed in the warehouse beyond the ledger: no target table yet (the target
    # was tried before the file was sent, in a transaction that was rolled back)
    assert not _query(db, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'leads_enriched'")[0][0]
    # A failed job is not retried blindly: the rows were never enriched, so the next run asks again.
    with emu.serve() as server:
        assert api.plan(project.dir, env=project.env)[0].rows_by_reason == {"new": 20}


def test_an_expired_link_is_refreshed(project: E2EProject) -> None:
    db = _setup_duckdb(project, 40)  # over the preview size: a real download
    project.emulator.inject("GET", "/download", status=403, times=1)
    result = _run(project)
    assert result.exit_code == 0, result.to_dict()
    assert len(_target(db)) == 40


def test_download_failure_keeps_the_paid_job_for_the_next_run(
    project: E2EProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sixtyfour_sync.engine.jobs.driver.DOWNLOAD_RETRY_SECONDS", 0.3)  # three attempts, quickly
    db = _setup_duckdb(project, 40)
    project.emulator.inject("GET", "/download", status=403, times=50)
    first = _run(project)
    assert first.exit_code == 3
    assert [j[0] for j in _jobs(db)] == ["completed"]
    submissions = len(project.emulator.submissions)
    project.emulator.clear_faults()
    second = _run(project)
    assert second.exit_code == 0, second.to_dict()
    assert second.syncs[0].resumed_jobs == 1
    assert len(project.emulator.submissions) == submissions  # nothing paid twice
    assert len(_target(db)) == 40


def test_grown_struct_adds_columns_and_re_enriches(project: E2EProject) -> None:
    db = _setup_duckdb(project, 10)
    assert _run(project).exit_code == 0
    text = (project.dir / "models" / "leads.yml").read_text()
    text = text.replace(
        "      title: The individual's job title\n", "      title: The individual's job title\n      phone: Phone\n"
    )
    (project.dir / "models" / "leads.yml").write_text(text)
    plan = api.plan(project.dir, env=project.env)[0]
    enriched = _query(db, "SELECT count(*) FROM leads_enriched WHERE _sixtyfour_status = 'enriched'")[0][0]
    # enriched rows are asked only the new field; a failed row is asked the whole new question
    assert plan.new_fields == [{"fields": ["phone"], "rows": enriched, "estimated_cost_cents": plan.new_fields[0][
        "estimated_cost_cents"]}]  # fmt: skip
    assert plan.rows_by_reason.get("changed", 0) == 10 - enriched
    assert "phone" in plan.new_columns
    assert _run(project).exit_code == 0
    phones = _query(db, "SELECT count(phone) FROM leads_enriched WHERE _sixtyfour_status = 'enriched'")[0][0]
    assert phones > 0


def test_failed_rows_keep_earlier_values(project: E2EProject) -> None:
    db = _setup_duckdb(project, 10)
    assert _run(project).exit_code == 0
    before = {r[0]: r for r in _target(db)}
    failing = Emulator(EmulatorSettings(api_keys=frozenset({project.api_key}), job_seconds=0.1, failure_rate=1.0))
    with failing.serve() as server:
        result = api.run(project.dir, api_key=project.api_key, api_url=server.url, env=project.env, full_refresh=True)
    assert result.syncs[0].rows_failed == 10
    after = {r[0]: r for r in _target(db)}
    for lead, row in after.items():
        assert row[5] == "failed"
        assert row[1] == before[lead][1]  # the email an earlier run found is kept


def test_unknown_and_missing_result_keys_are_counted_not_merged(
    project: E2EProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sixtyfour_sync.engine.results import parse as results

    db = _setup_duckdb(project, 5)
    real = results.parse_result

    def tampered(*args, **kwargs):  # the API returns a key never sent and loses one that was
        parsed = real(*args, **kwargs)
        import pyarrow as pa

        t = parsed.table
        rows = t.to_pylist()
        rows = [r for r in rows if r["lead_id"] != 2]
        extra = dict(rows[0])
        extra["lead_id"] = 999
        rows.append(extra)
        parsed.table = pa.Table.from_pylist(rows, schema=t.schema)
        return parsed

    monkeypatch.setattr("sixtyfour_sync.engine.results.fetch.parse_result", tampered)
    result = _run(project)
    s = result.syncs[0]
    assert s.rows_unexpected == 1
    assert s.rows_not_returned == 1
    keys = {r[0]: r[5] for r in _target(db)}
    assert 999 not in keys
    assert keys[2] == "failed"
