"""What the report reads, on every warehouse: a ledger and a target written by hand, then aggregated in SQL.

Runs on the ``backend`` fixture (DuckDB, PostgreSQL, MariaDB, SQLite, fakesnow): the same queries must give the
same numbers in every dialect. The exact SQL of the builders is checked without a database.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sixtyfour_sync.config.models import LoadedSync, SyncSpec
from sixtyfour_sync.config.profiles import parse_target_config
from sixtyfour_sync.engine.ledger.store import Ledger
from sixtyfour_sync.engine.plan.columns import owned_columns, target_ref
from sixtyfour_sync.report import queries
from sixtyfour_sync.report.collect import collect_runs, collect_sync
from sixtyfour_sync.warehouse import Adapter, Column, LogicalType, TableRef, UpsertPart
from sixtyfour_sync.warehouse.duckdb import DuckDBAdapter

T0 = datetime(2025, 5, 1, 12, 0, tzinfo=timezone.utc)
SPEC = SyncSpec.model_validate(
    {
        "name": "leads_x",
        "endpoint": "people",
        "source": {"table": "leads", "key": "lead_id"},
        "struct": {"email": "Email", "title": "Title", "phone": "Phone"},
        "field_confidence": True,
        "target": {"table": "leads_enriched"},
    }
)
LOADED = LoadedSync(SPEC, Path("models/leads.yml"), 1, None)
SECRET_LINK = "https://files.example.com/out.csv?X-Amz-Signature=topsecret"


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _job(job_id: str, run_id: str, state: str, rows: int, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "job_id": job_id,
        "run_id": run_id,
        "sync_name": kw.pop("sync_name", "leads_x"),
        "endpoint": "people",
        "tier": kw.pop("tier", "low"),
        "spec_hash": "s",
        "content_hash": job_id,
        "idempotency_key": f"k-{job_id}",
        "file_name": f"{job_id}.jsonl",
        "rows": rows,
        "state": state,
        "task_id": None,
        "replay": 0,
        "estimated_cost_cents": float(rows),
        "charged_cents": None,
        "rows_enriched": 0,
        "rows_failed": 0,
        "rows_not_returned": 0,
        "error": None,
        "completed_at": None,
        "created_at": _at(1),
        "updated_at": _at(1),
    }
    row.update(kw)
    return row


def _run(run_id: str, syncs: str, start: float, end: float | None, status: str = "success") -> dict[str, Any]:
    return {
        "run_id": run_id,
        "command": "run",
        "status": status,
        "syncs": syncs,
        "started_at": _at(start),
        "finished_at": None if end is None else _at(end),
        "jobs_resumed": 0,
        "error": None,
    }


def write_ledger(adapter: Adapter) -> Ledger:
    ledger = Ledger(adapter)
    ledger.ensure()
    runs = [
        _run("A", "leads_x,other", 0, 60),
        _run("B", "leads_x", 300, 400, status="partial"),
        _run("C", "other", 500, 510),
        _run("D", "leadsyx", 600, 610),  # '%,leads_x,%' would match this if LIKE's _ were not escaped
        _run("E", "LEADS_X", 700, 710),  # another sync: MariaDB's LIKE matches it (case-insensitive)
        _run("F", "a,leads_x,b", 260, 270),  # the name in the middle of the list, and last
        _run("G", "other,leads_x", 250, 255),
    ]
    jobs = [
        _job("j1", "A", "merged", 10, task_id="t1", rows_enriched=8, rows_failed=2, charged_cents=8.0,
             completed_at=_at(30)),
        _job("j2", "A", "merged", 5, task_id="t2", rows_enriched=5, charged_cents=5.0, completed_at=_at(100),
             updated_at=_at(100)),
        _job("j3", "A", "lost", 7, task_id="t3", error=f"job-status answered 404 for {SECRET_LINK}",
             updated_at=_at(50)),
        _job("j4", "B", "rejected", 4, charged_cents=0.0, error="402 payment required", updated_at=_at(310)),
        _job("j5", "B", "submitted", 3, task_id="t5", tier="medium"),
        _job("j6", "B", "result_unreadable", 2, task_id="t6", tier="medium", charged_cents=2.0,
             completed_at=_at(350), updated_at=_at(350)),
        _job("j7", "C", "merged", 9, task_id="t7", sync_name="other", charged_cents=9.0, completed_at=_at(505)),
        _job("j8", "D", "merged", 1, task_id="t8", sync_name="leadsyx", charged_cents=1.0, completed_at=_at(605)),
    ]  # fmt: skip
    with adapter.session() as s:
        s.insert(ledger.runs, runs)
        s.insert(ledger.jobs, jobs)
    return ledger


#: (lead_id, status, email, email_confidence, title, title_confidence, tier)
TARGET_ROWS: list[tuple[Any, ...]] = [
    (1, "enriched", "a@x.com", 5, "CEO", 95, "low"),
    (2, "enriched", "b@x.com", 9, None, None, "low"),
    (3, "enriched", "c@x.com", 10, "CTO", 100, "low"),
    (4, "enriched", "d@x.com", 89, "VP", 90, "medium"),
    (5, "enriched", "e@x.com", 90, None, None, "medium"),
    (6, "enriched", "f@x.com", 100, "CFO", 42, None),
    (7, "failed", None, None, None, None, "low"),
    (8, "failed", "kept@x.com", 70, None, None, "low"),  # a value an earlier run found stays
    (9, None, None, None, None, None, None),  # another tool's row in a shared table
    (10, None, "other@x.com", None, None, None, None),
]


def write_target(adapter: Adapter) -> TableRef:
    target = target_ref(SPEC)
    wanted = [c for c in owned_columns(SPEC) if not c.name.startswith("phone")]  # phone: added since the last run
    adapter.ensure_table(
        target,
        [Column("lead_id", LogicalType.BIGINT, nullable=False)],
        wanted,  # the sync's own columns include its tier
    )
    names = [
        "lead_id",
        "_sixtyfour_status",
        "email",
        "email_confidence",
        "title",
        "title_confidence",
        "_sixtyfour_tier",
    ]
    cols = list(zip(*TARGET_ROWS, strict=True))
    types = [pa.int64(), pa.string(), pa.string(), pa.int64(), pa.string(), pa.int64(), pa.string()]
    data = pa.table({n: pa.array(c, t) for n, c, t in zip(names, cols, types, strict=True)})
    adapter.upsert(target, ["lead_id"], [UpsertPart(data, names[1:])])
    return target


def test_runs_carry_their_jobs_rows_and_money_with_later_charges_apart(backend: Adapter) -> None:
    ledger = write_ledger(backend)
    runs = collect_runs(backend, ledger, ["leads_x"], limit=10)
    # newest first; C is another sync's, D and E only look alike
    assert [r.run_id for r in runs] == ["B", "F", "G", "A"]
    b, f, _, a = runs
    assert (f.jobs, f.rows_sent, f.charged_cents) == (0, 0, 0.0)
    assert (a.jobs, a.rows_sent, a.rows_enriched, a.rows_failed) == (3, 22, 13, 2)
    assert a.estimated_cents == pytest.approx(22.0)
    assert a.charged_cents == pytest.approx(8.0)  # j1 completed while A ran
    assert a.charged_later_cents == pytest.approx(5.0)  # j2 completed after A ended: a later run finished it
    assert a.syncs == ("leads_x", "other") and a.duration_seconds == pytest.approx(60)
    assert (b.jobs, b.rows_sent, b.status) == (3, 5, "partial")  # the rejected file was never sent
    assert b.charged_cents == pytest.approx(2.0) and b.charged_later_cents == 0
    assert a.started_at == T0 and a.started_at is not None and a.started_at.tzinfo is not None
    # the newest match may be a near one (E on MariaDB): the reader asks for more until it has its runs
    assert [r.run_id for r in collect_runs(backend, ledger, ["leads_x"], limit=1)] == ["B"]


def test_a_sync_section_from_the_target_and_the_ledger(backend: Adapter) -> None:
    ledger = write_ledger(backend)
    write_target(backend)
    s = collect_sync(backend, ledger, LOADED)
    assert s.problem is None and s.target_exists
    assert (s.table_rows, s.rows) == (10, 8)
    assert dict(s.by_status) == {"enriched": 6, "failed": 2}
    fields = {f.name: f for f in s.fields}
    assert fields["email"].filled == 7 and fields["title"].filled == 4  # rows of this sync only
    assert not fields["phone"].in_table and fields["phone"].filled == 0 and fields["phone"].confidence is None
    # buckets 0-9, 10-19, ..., 90-100: 5 and 9 in the first, 10 in the second, 89 in the ninth, 90 and 100 last
    assert fields["email"].confidence == (2, 1, 0, 0, 0, 0, 0, 1, 1, 2)
    assert fields["email"].confidence_avg == pytest.approx((5 + 9 + 10 + 89 + 90 + 100 + 70) / 7)
    assert fields["title"].confidence == (0, 0, 0, 0, 1, 0, 0, 0, 0, 3)
    assert s.by_tier is not None
    tiers = {t.tier: t for t in s.by_tier}
    assert {k: v.rows for k, v in tiers.items()} == {"(none)": 1, "low": 5, "medium": 2}
    assert dict(tiers["low"].filled) == {"email": 4, "title": 2, "phone": 0}
    jobs = {t.tier: t for t in s.tier_jobs}
    assert (jobs["low"].jobs, jobs["low"].rows, jobs["low"].charged_cents) == (4, 26, pytest.approx(13.0))
    assert (jobs["medium"].jobs, jobs["medium"].rows) == (2, 5)
    assert s.charged_cents == pytest.approx(15.0) and s.estimated_cents == pytest.approx(31.0)
    assert [(j.state, j.task_id) for j in s.attention] == [("result_unreadable", "t6"), ("lost", "t3")]
    assert (s.jobs_in_flight, s.rows_in_flight) == (1, 3)
    assert [e.task_id for e in s.errors] == [None, "t3"]  # newest first
    assert "topsecret" not in s.errors[1].message and "X-Amz" not in s.errors[1].message


def test_a_target_not_created_yet_and_a_ledger_not_created_yet(backend: Adapter) -> None:
    s = collect_sync(backend, None, LOADED)
    assert not s.target_exists and s.rows == 0 and s.fields == () and s.tier_jobs == ()


def test_exact_sql_quotes_every_identifier() -> None:
    a = DuckDBAdapter(parse_target_config({"type": "duckdb", "path": "w.duckdb", "schema": "main"}))
    cols = queries.TargetColumns("_sixtyfour_status", (("email", "email", "email_confidence"), ("x", None, None)))
    sql, params = queries.target_stats_sql(a, TableRef("leads_enriched"), cols)
    c = '"email_confidence"'
    buckets = [f"SUM(CASE WHEN {c} < 10 THEN 1 ELSE 0 END)"]
    buckets += [f"SUM(CASE WHEN {c} >= {lo} AND {c} < {lo + 10} THEN 1 ELSE 0 END)" for lo in range(10, 90, 10)]
    buckets += [f"SUM(CASE WHEN {c} >= 90 THEN 1 ELSE 0 END)", f"SUM({c})"]
    assert sql == (
        'SELECT "_sixtyfour_status", COUNT(*), COUNT("email"), 0, '
        + ", ".join(buckets)
        + ' FROM "main"."leads_enriched" GROUP BY "_sixtyfour_status"'
    )
    assert params == []
    sql, params = queries.runs_sql(a, TableRef("_sixtyfour_sync_runs"), ["a_b", "c"], 5)
    one = """("syncs" = ? OR "syncs" LIKE ? ESCAPE '!' OR "syncs" LIKE ? ESCAPE '!' OR "syncs" LIKE ? ESCAPE '!')"""
    assert sql == (
        'SELECT "run_id", "status", "syncs", "started_at", "finished_at", "jobs_resumed", "error" '
        f'FROM "main"."_sixtyfour_sync_runs" WHERE {one} OR {one} ORDER BY "started_at" DESC LIMIT 5'
    )
    assert params == ["a_b", "a!_b,%", "%,a!_b", "%,a!_b,%", "c", "c,%", "%,c", "%,c,%"]
    with pytest.raises(Exception, match="not a safe identifier"):
        queries.target_stats_sql(a, TableRef("t"), queries.TargetColumns('x"; DROP TABLE t; --', ()))


def test_a_run_over_two_warehouses_is_one_row() -> None:
    from sixtyfour_sync.report.collect import _merge_runs
    from sixtyfour_sync.report.model import RunRow

    a = RunRow("R", "success", ("leads",), T0, _at(10), jobs=1, rows_sent=5, charged_cents=1.5, error=None)
    b = RunRow("R", "success", ("companies",), T0, _at(30), jobs=2, rows_sent=7, charged_later_cents=2.0, error="x")
    older = RunRow("Q", "failed", ("leads",), _at(-100), _at(-90))
    merged = _merge_runs([older, a, b])
    assert [r.run_id for r in merged] == ["R", "Q"]
    r = merged[0]
    assert (r.syncs, r.jobs, r.rows_sent, r.finished_at, r.error) == (("leads", "companies"), 3, 12, _at(30), "x")
    assert (r.charged_cents, r.charged_later_cents) == (1.5, 2.0)


def test_an_unreadable_target_is_reported_on_the_page_not_raised(tmp_path: Path) -> None:
    from sixtyfour_sync.warehouse import connect

    adapter = connect(parse_target_config({"type": "duckdb", "path": str(tmp_path / "w.duckdb")}))
    try:
        ledger = write_ledger(adapter)
        with adapter.session() as s:  # another tool turned a confidence column into free text
            s.execute(
                'CREATE TABLE "leads_enriched" (lead_id BIGINT, email VARCHAR, email_confidence VARCHAR, '
                "_sixtyfour_status VARCHAR)"
            )
            s.execute("INSERT INTO \"leads_enriched\" VALUES (1, 'a@x.com', 'very high', 'enriched')")
        s_report = collect_sync(adapter, ledger, LOADED)
    finally:
        adapter.close()
    assert s_report.problem is not None and s_report.problem.startswith("the target could not be read")
    assert s_report.tier_jobs and s_report.attention  # the ledger's part is still there
