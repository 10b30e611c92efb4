"""One suite, every backend: the adapter contract the sync engine relies on.

Runs against duckdb, postgres, mariadb, sqlite and snowflake (fakesnow) through the ``backend`` fixture
(tests/warehouse/conftest.py). Values are compared after light normalisation where drivers legitimately
differ (MySQL booleans are integers, SQLite timestamps are text, JSON may come back parsed or as text).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sixtyfour_sync.config.models import SyncSpec
from sixtyfour_sync.engine.plan.columns import owned_columns
from sixtyfour_sync.engine.results.parse import parse_result
from sixtyfour_sync.errors import DataError, UnsafeIdentifierError, WarehouseError
from sixtyfour_sync.warehouse import (
    Adapter,
    Column,
    Guard,
    LogicalType,
    Session,
    TableRef,
    UpsertPart,
)
from tests.warehouse.conftest import perturbed_twin

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 5, 17, 12, 30, 45, tzinfo=UTC)

KEY = [Column("lead_id", LogicalType.BIGINT)]
OWNED = [
    Column("email", LogicalType.TEXT),
    Column("employee_count", LogicalType.BIGINT),
    Column("score", LogicalType.DOUBLE),
    Column("is_ceo", LogicalType.BOOLEAN),
    Column("tags", LogicalType.JSON),
    Column("_sixtyfour_status", LogicalType.TEXT),
    Column("_sixtyfour_enriched_at", LogicalType.TIMESTAMP),
]
OTHER = Column("owner_note", LogicalType.TEXT)  # written by another tool; the sync never owns it

INJECTIONS = [
    'x"; DROP TABLE leads; --',
    "x'; DROP TABLE leads; --",
    "x`y",
    "lead id",
    "lead\tid",
    "lead\nid",
    "a;b",
    "a--b",
    "a/*b*/",
    "naïve",
    "ｌead_id",  # fullwidth l: a confusable
    "lead_іd",  # Cyrillic i
    "a\x00b",
    "1abc",
    "",
    "a.b",
    "a-b",
]


# ---------------------------------------------------------------------------------------------- utilities


def as_bool(v: Any) -> bool | None:
    return None if v is None else bool(int(v)) if isinstance(v, (int, str)) and not isinstance(v, bool) else bool(v)


def as_ts(v: Any) -> dt.datetime | None:
    if v is None:
        return None
    if isinstance(v, str):
        v = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
    if v.tzinfo is None:
        v = v.replace(tzinfo=UTC)
    return v.astimezone(UTC)


def as_json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, (str, bytes)) else v


def norm(row: dict[str, Any]) -> dict[str, Any]:
    """Lower-case keys (Snowflake returns upper-case names)."""
    return {k.lower(): v for k, v in row.items()}


def select_all(adapter: Adapter, table: TableRef, order_by: Sequence[str] = ("lead_id",)) -> list[dict[str, Any]]:
    with adapter.session() as s:
        return [norm(r) for r in s.select(table, order_by=list(order_by))]


def make_target(adapter: Adapter, name: str = "leads_enriched", *, other: bool = True) -> TableRef:
    table = TableRef(name)
    adapter.ensure_table(table, KEY, [*OWNED, OTHER] if other else OWNED)
    return table


def part(rows: list[dict[str, Any]], set_columns: Sequence[str], schema: pa.Schema | None = None) -> UpsertPart:
    return UpsertPart(pa.Table.from_pylist(rows, schema=schema), list(set_columns))


ENRICHED_SCHEMA = pa.schema(
    [
        ("lead_id", pa.int64()),
        ("email", pa.string()),
        ("employee_count", pa.int64()),
        ("score", pa.float64()),
        ("is_ceo", pa.bool_()),
        ("tags", pa.list_(pa.string())),
        ("_sixtyfour_status", pa.string()),
        ("_sixtyfour_enriched_at", pa.timestamp("us", tz="UTC")),
    ]
)
ENRICHED_COLS = [f.name for f in ENRICHED_SCHEMA][1:]


def enriched(lead_id: int, email: str | None = "a@x.io", **kw: Any) -> dict[str, Any]:
    row = {
        "lead_id": lead_id,
        "email": email,
        "employee_count": 10 * lead_id,
        "score": lead_id + 0.5,
        "is_ceo": lead_id % 2 == 0,
        "tags": ["b2b", "saas"],
        "_sixtyfour_status": "enriched",
        "_sixtyfour_enriched_at": T0,
    }
    row.update(kw)
    return row


def source_table(adapter: Adapter, name: str, rows: list[dict[str, Any]], columns: list[Column]) -> TableRef:
    """A plain source table (created through the adapter, filled through a session)."""
    table = TableRef(name)
    # Sources may hold NULL and duplicate keys: no primary key here, built with the adapter's quoting.
    cols = ", ".join(adapter.column_def_sql(c) for c in columns)
    with adapter.session() as s:
        s.execute(f"CREATE TABLE {adapter.table_sql(table)} ({cols})")
    with adapter.session() as s:
        s.insert(table, rows)
    return table


# ---------------------------------------------------------------------------------------------- identifiers


@pytest.mark.parametrize("name", INJECTIONS)
def test_unsafe_identifiers_are_rejected_naming_them(backend: Adapter, name: str) -> None:
    with pytest.raises(UnsafeIdentifierError) as info:
        backend.quote(name, what="struct field in models/leads.yml")
    assert "struct field in models/leads.yml" in str(info.value)
    if name:
        assert repr(name) in str(info.value)


def test_unsafe_identifiers_never_reach_sql(backend: Adapter) -> None:
    bad = 'x"; DROP TABLE leads_enriched; --'
    table = make_target(backend)
    with pytest.raises(UnsafeIdentifierError):
        backend.ensure_table(table, KEY, [Column(bad, LogicalType.TEXT)])
    with pytest.raises(UnsafeIdentifierError):
        backend.upsert(table, ["lead_id"], [part([{"lead_id": 1, bad: "v"}], [bad])])
    with pytest.raises(UnsafeIdentifierError):
        backend.table_exists(TableRef(bad))
    with pytest.raises(UnsafeIdentifierError):
        backend.source_sql(table=table, columns=[bad])
    with pytest.raises(UnsafeIdentifierError):
        backend.row_hash_sql([bad])
    assert backend.table_exists(table)


def test_overlong_identifier_is_rejected(backend: Adapter) -> None:
    name = "a" * (backend.capabilities.max_identifier_length + 1)
    with pytest.raises(UnsafeIdentifierError, match="at most"):
        backend.quote(name, what="column")
    ok = "a" * backend.capabilities.max_identifier_length
    assert ok.lower() in backend.quote(ok).lower()


def test_hostile_values_are_stored_verbatim(backend: Adapter) -> None:
    table = make_target(backend)
    nasty = ["'; DROP TABLE leads_enriched; --", 'a"b', "back\\slash", "50% ?", "тест ✓", "line\nbreak", ""]
    rows = [enriched(i + 1, email=v) for i, v in enumerate(nasty)]
    backend.upsert(table, ["lead_id"], [part(rows, ENRICHED_COLS, ENRICHED_SCHEMA)])
    got = [r["email"] for r in select_all(backend, table)]
    assert got == nasty
    with backend.session() as s:
        assert s.select(table, where={"email": "50% ?"}, columns=["lead_id"]) == [{"lead_id": 4}]


# ---------------------------------------------------------------------------------------------- DDL


def test_ensure_table_creates_then_is_idempotent(backend: Adapter) -> None:
    table = TableRef("leads_enriched")
    assert not backend.table_exists(table)
    first = backend.ensure_table(table, KEY, OWNED)
    assert first.created and backend.table_exists(table)
    cols = {k.lower(): v for k, v in backend.get_columns(table).items()}
    assert list(cols) == ["lead_id"] + [c.name for c in OWNED]
    for c in OWNED:
        assert backend.is_compatible(cols[c.name], c.type), (c, cols[c.name])
    again = backend.ensure_table(table, KEY, OWNED)
    assert not again.created and again.added_columns == ()


def test_ensure_table_adds_missing_columns_and_never_drops(backend: Adapter) -> None:
    table = make_target(backend)
    result = backend.ensure_table(table, KEY, [Column("email", LogicalType.TEXT), Column("title", LogicalType.TEXT)])
    assert result.added_columns == ("title",)
    cols = [c.lower() for c in backend.get_columns(table)]
    assert "title" in cols and "owner_note" in cols and "employee_count" in cols


def test_ensure_table_rejects_an_incompatible_owned_column(backend: Adapter) -> None:
    table = make_target(backend)
    with pytest.raises(DataError) as info:
        backend.ensure_table(table, KEY, [Column("email", LogicalType.BIGINT)])
    text = str(info.value)
    assert "leads_enriched" in text and "email" in text.lower() and "bigint" in text.lower()
    assert info.value.hint and "prefix" in info.value.hint


def test_table_and_columns_found_case_insensitively_for_lower_case_names(backend: Adapter) -> None:
    table = make_target(backend)
    cols = backend.get_columns(table)
    stored = backend.find_column(cols, "email")
    assert stored is not None and stored.lower() == "email"
    assert backend.find_column(cols, "nope") is None
    assert not backend.table_exists(TableRef("no_such_table"))
    assert backend.get_columns(TableRef("no_such_table")) == {}


# ---------------------------------------------------------------------------------------------- upsert


def test_upsert_inserts_updates_and_keeps_unowned_columns(backend: Adapter) -> None:
    table = make_target(backend)
    with backend.session() as s:
        s.insert(table, [{"lead_id": 1, "owner_note": "keep-1"}, {"lead_id": 2, "owner_note": "keep-2"}])

    # Path 1: existing rows updated + new rows inserted in one part.
    r1 = backend.upsert(table, ["lead_id"], [part([enriched(1), enriched(3)], ENRICHED_COLS, ENRICHED_SCHEMA)])
    assert (r1.inserted, r1.updated) == (1, 1)
    # Path 2: a part setting a subset (a failed row keeps earlier values) + a second part, same transaction.
    failed = pa.table({"lead_id": [3, 2], "_sixtyfour_status": ["failed", "failed"]})
    r2 = backend.upsert(
        table,
        ["lead_id"],
        [part([enriched(1, email="new@x.io")], ["email"], None), UpsertPart(failed, ["_sixtyfour_status"])],
    )
    assert (r2.inserted, r2.updated) == (0, 3)
    # Path 3: an upsert with a ledger write in the same transaction.
    ledger = TableRef("_sixtyfour_sync_jobs")
    backend.ensure_table(ledger, [Column("job_id", LogicalType.TEXT)], [Column("status", LogicalType.TEXT)])
    r3 = backend.upsert(
        table,
        ["lead_id"],
        [part([{"lead_id": 4, "email": "d@x.io"}], ["email"])],
        before_commit=lambda s: s.insert(ledger, [{"job_id": "j1", "status": "merged"}]),
    )
    assert (r3.inserted, r3.updated) == (1, 0)
    with backend.session() as s:
        assert [norm(r) for r in s.select(ledger)] == [{"job_id": "j1", "status": "merged"}]

    rows = {r["lead_id"]: r for r in select_all(backend, table)}
    assert [r["owner_note"] for r in rows.values()] == ["keep-1", "keep-2", None, None]
    assert rows[1]["email"] == "new@x.io" and rows[1]["employee_count"] == 10
    assert rows[1]["_sixtyfour_status"] == "enriched"
    assert rows[2]["_sixtyfour_status"] == "failed" and rows[2]["email"] is None
    assert rows[3]["_sixtyfour_status"] == "failed" and rows[3]["email"] == "a@x.io"
    assert rows[3]["score"] == pytest.approx(3.5) and as_bool(rows[3]["is_ceo"]) is False
    assert as_json(rows[3]["tags"]) == ["b2b", "saas"]
    assert as_ts(rows[3]["_sixtyfour_enriched_at"]) == T0
    assert rows[4]["email"] == "d@x.io" and rows[4]["employee_count"] is None


def test_unowned_column_survives_every_upsert_path(backend: Adapter) -> None:
    table = make_target(backend)
    with backend.session() as s:
        s.insert(table, [{"lead_id": i, "owner_note": f"note-{i}"} for i in range(1, 6)])
    backend.upsert(table, ["lead_id"], [part([enriched(i) for i in range(1, 4)], ENRICHED_COLS, ENRICHED_SCHEMA)])
    backend.upsert(
        table, ["lead_id"], [part([enriched(2), enriched(2, email="dup@x.io")], ENRICHED_COLS, ENRICHED_SCHEMA)]
    )
    backend.upsert(
        table,
        ["lead_id"],
        [UpsertPart(pa.table({"lead_id": [4, 5, 6], "_sixtyfour_status": ["failed"] * 3}), ["_sixtyfour_status"])],
        before_commit=lambda s: s.update(table, {"email": "from-ledger-hook"}, {"lead_id": 5}),
    )
    with pytest.raises(DataError):
        backend.upsert(
            table,
            ["lead_id"],
            [UpsertPart(pa.table({"lead_id": [1, None], "email": ["x", "y"]}), ["email"])],
        )
    backend.ensure_table(table, KEY, OWNED)  # owner_note not listed: must not be dropped
    notes = {r["lead_id"]: r["owner_note"] for r in select_all(backend, table)}
    assert notes == {1: "note-1", 2: "note-2", 3: "note-3", 4: "note-4", 5: "note-5", 6: None}


def test_session_upsert_joins_the_open_transaction(backend: Adapter) -> None:
    if not backend.capabilities.transactional_ddl:
        pytest.skip("staging DDL would commit the open transaction on this warehouse; use upsert(before_commit=)")
    table = make_target(backend)

    def upsert_then_fail() -> None:
        with backend.session() as s:
            result = s.upsert(table, ["lead_id"], [part([{"lead_id": 4, "email": "d@x.io"}], ["email"])])
            assert (result.inserted, result.updated) == (1, 0)
            raise RuntimeError("later step failed")

    with pytest.raises(RuntimeError):
        upsert_then_fail()
    assert select_all(backend, table) == []
    with backend.session() as s:
        s.upsert(table, ["lead_id"], [part([{"lead_id": 4, "email": "d@x.io"}], ["email"])])
    assert [r["email"] for r in select_all(backend, table)] == ["d@x.io"]


def test_upsert_dedupes_keys_last_occurrence_wins(backend: Adapter) -> None:
    table = make_target(backend)
    rows = [enriched(1, email="first"), enriched(2), enriched(1, email="second"), enriched(1, email="last")]
    result = backend.upsert(table, ["lead_id"], [part(rows, ENRICHED_COLS, ENRICHED_SCHEMA)])
    assert (result.inserted, result.updated, result.duplicates_dropped) == (2, 0, 2)
    assert [r["email"] for r in select_all(backend, table)] == ["last", "a@x.io"]


def test_upsert_rejects_null_keys_and_changes_nothing(backend: Adapter) -> None:
    table = make_target(backend)
    backend.upsert(table, ["lead_id"], [part([enriched(1)], ENRICHED_COLS, ENRICHED_SCHEMA)])
    before = select_all(backend, table)
    bad = pa.table({"lead_id": pa.array([2, None, None], pa.int64()), "email": ["b", "c", "d"]})
    with pytest.raises(DataError, match=r"2 row\(s\) have a NULL key"):
        backend.upsert(
            table, ["lead_id"], [part([enriched(3)], ENRICHED_COLS, ENRICHED_SCHEMA), UpsertPart(bad, ["email"])]
        )
    assert select_all(backend, table) == before


def test_failure_in_before_commit_rolls_back_everything(backend: Adapter) -> None:
    table = make_target(backend)
    ledger = TableRef("_sixtyfour_sync_jobs")
    backend.ensure_table(ledger, [Column("job_id", LogicalType.TEXT)], [Column("status", LogicalType.TEXT)])
    backend.upsert(table, ["lead_id"], [part([enriched(1)], ENRICHED_COLS, ENRICHED_SCHEMA)])
    before = select_all(backend, table)

    def hook(s: Session) -> None:
        s.insert(ledger, [{"job_id": "j1", "status": "merged"}])
        raise RuntimeError("ledger write failed")

    with pytest.raises(RuntimeError, match="ledger write failed"):
        backend.upsert(
            table,
            ["lead_id"],
            [part([enriched(1, email="changed"), enriched(2)], ENRICHED_COLS, ENRICHED_SCHEMA)],
            before_commit=hook,
        )
    assert select_all(backend, table) == before
    with backend.session() as s:
        assert s.select(ledger) == []
    # The adapter is still usable after the rollback.
    ok = backend.upsert(
        table,
        ["lead_id"],
        [part([enriched(2)], ENRICHED_COLS, ENRICHED_SCHEMA)],
        before_commit=lambda s: s.insert(ledger, [{"job_id": "j2", "status": "merged"}]),
    )
    assert ok.inserted == 1
    with backend.session() as s:
        assert [norm(r) for r in s.select(ledger)] == [{"job_id": "j2", "status": "merged"}]


def test_upsert_with_a_composite_key(backend: Adapter) -> None:
    table = TableRef("people")
    key = [Column("org_id", LogicalType.BIGINT), Column("email", LogicalType.TEXT)]
    backend.ensure_table(table, key, [Column("title", LogicalType.TEXT), OTHER])
    with backend.session() as s:
        s.insert(table, [{"org_id": 1, "email": "a@x", "owner_note": "n"}])
    data = pa.table({"org_id": [1, 1, 2], "email": ["a@x", "b@x", "a@x"], "title": ["CEO", "CTO", "VP"]})
    result = backend.upsert(table, ["org_id", "email"], [UpsertPart(data, ["title"])])
    assert (result.inserted, result.updated) == (2, 1)
    rows = select_all(backend, table, order_by=["org_id", "email"])
    assert [(r["org_id"], r["email"], r["title"], r["owner_note"]) for r in rows] == [
        (1, "a@x", "CEO", "n"),
        (1, "b@x", "CTO", None),
        (2, "a@x", "VP", None),
    ]


def test_empty_upsert_is_a_no_op(backend: Adapter) -> None:
    table = make_target(backend)
    empty = pa.Table.from_pylist([], schema=ENRICHED_SCHEMA)
    result = backend.upsert(table, ["lead_id"], [UpsertPart(empty, ENRICHED_COLS)])
    assert (result.inserted, result.updated) == (0, 0)
    assert select_all(backend, table) == []


def test_upsert_of_a_missing_column_is_a_clear_error(backend: Adapter) -> None:
    table = make_target(backend)
    with pytest.raises(DataError, match="no column"):
        backend.upsert(table, ["lead_id"], [UpsertPart(pa.table({"lead_id": [1]}), ["email"])])


# ---------------------------------------------------------------------------------------------- sessions


def test_session_operations_for_ledger_work(backend: Adapter) -> None:
    runs = TableRef("_sixtyfour_sync_runs")
    backend.ensure_table(
        runs,
        [Column("run_id", LogicalType.TEXT)],
        [
            Column("status", LogicalType.TEXT),
            Column("rows", LogicalType.BIGINT),
            Column("started_at", LogicalType.TIMESTAMP),
        ],
    )
    with backend.session() as s:
        s.insert(
            runs,
            [
                {"run_id": "r1", "status": "running", "rows": 10, "started_at": T0},
                {"run_id": "r2", "status": "running", "rows": None, "started_at": T0},
            ],
        )
        assert s.update(runs, {"status": "done", "rows": 12}, {"run_id": "r1"}) == 1
        assert s.update(runs, {"status": "x"}, {"run_id": "nope"}) == 0
    with backend.session() as s:
        done = s.select(runs, where={"status": "done"}, columns=["run_id", "rows"])
        nulls = s.select(runs, where={"rows": None}, columns=["run_id"])
        ordered = s.select(runs, columns=["run_id"], order_by=["run_id DESC"])
        count = s.fetchall(
            f"SELECT COUNT(*) FROM {backend.table_sql(runs)} WHERE {backend.quote('status')} = ?", ["running"]
        )
    assert done == [{"run_id": "r1", "rows": 12}]
    assert nulls == [{"run_id": "r2"}]
    assert [r["run_id"] for r in ordered] == ["r2", "r1"]
    assert count[0][0] == 1


def test_session_rolls_back_on_error(backend: Adapter) -> None:
    runs = TableRef("_sixtyfour_sync_runs")
    backend.ensure_table(runs, [Column("run_id", LogicalType.TEXT)], [Column("status", LogicalType.TEXT)])

    def write_then_fail() -> None:
        with backend.session() as s:
            s.insert(runs, [{"run_id": "r1", "status": "running"}])
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        write_then_fail()
    with backend.session() as s:
        assert s.select(runs) == []


def test_driver_errors_become_warehouse_errors(backend: Adapter) -> None:
    with pytest.raises(WarehouseError) as info, backend.session() as s:
        s.fetchall("SELECT * FROM this_table_does_not_exist_anywhere")
    assert info.value.__cause__ is not None
    # The connection is usable afterwards.
    with backend.session() as s:
        assert s.fetchall("SELECT 1")[0][0] == 1


# ---------------------------------------------------------------------------------------------- reading


SRC_COLS = [
    Column("lead_id", LogicalType.BIGINT),
    Column("name", LogicalType.TEXT),
    Column("revenue", LogicalType.DOUBLE),
    Column("active", LogicalType.BOOLEAN),
    Column("seen_at", LogicalType.TIMESTAMP),
]


def src_rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "lead_id": i,
            "name": None if i % 7 == 0 else ("" if i % 11 == 0 else f'name, "{i}"\n'),
            "revenue": None if i % 5 == 0 else i * 1.25,
            "active": None if i % 13 == 0 else i % 2 == 0,
            "seen_at": None if i % 17 == 0 else T0 + dt.timedelta(seconds=i),
        }
        for i in range(1, n + 1)
    ]


def test_stream_returns_every_row_faithfully_in_bounded_batches(backend: Adapter) -> None:
    rows = src_rows(250)
    table = source_table(backend, "src_leads", rows, SRC_COLS)
    sql = backend.source_sql(table=table, order_by=["lead_id"])
    batches = list(backend.stream(sql, batch_rows=100))
    assert all(isinstance(b, pa.RecordBatch) for b in batches)
    assert max(b.num_rows for b in batches) <= 100 and sum(b.num_rows for b in batches) == 250
    got = [norm(r) for b in batches for r in b.to_pylist()]
    assert [r["lead_id"] for r in got] == list(range(1, 251))
    for want, have in zip(rows, got, strict=True):
        assert have["name"] == want["name"]
        assert (have["revenue"] is None) == (want["revenue"] is None)
        if want["revenue"] is not None:
            assert float(have["revenue"]) == pytest.approx(want["revenue"])
        assert as_bool(have["active"]) == want["active"]
        assert as_ts(have["seen_at"]) == want["seen_at"]


def test_stream_takes_parameters_and_user_sql(backend: Adapter) -> None:
    table = source_table(backend, "src_leads", src_rows(30), SRC_COLS)
    where = f"{backend.quote('lead_id')} > 20"
    sql = backend.source_sql(table=table, columns=["lead_id", "name"], where=where, order_by=["lead_id DESC"])
    got = [norm(r) for b in backend.stream(sql) for r in b.to_pylist()]
    assert [r["lead_id"] for r in got] == list(range(30, 20, -1))
    assert set(got[0]) == {"lead_id", "name"}
    inner = f"SELECT * FROM {backend.table_sql(table)} WHERE {backend.quote('lead_id')} <= ?;"
    wrapped = backend.source_sql(sql=inner, columns=["lead_id"])
    got2 = [norm(r)["lead_id"] for b in backend.stream(wrapped, [3]) for r in b.to_pylist()]
    assert sorted(got2) == [1, 2, 3]


def test_stream_can_run_while_a_session_writes(backend: Adapter) -> None:
    table = source_table(backend, "src_leads", src_rows(50), SRC_COLS)
    runs = TableRef("_sixtyfour_sync_runs")
    backend.ensure_table(runs, [Column("run_id", LogicalType.TEXT)], [Column("status", LogicalType.TEXT)])
    seen = 0
    for i, batch in enumerate(backend.stream(backend.source_sql(table=table), batch_rows=10)):
        seen += batch.num_rows
        with backend.session() as s:
            s.insert(runs, [{"run_id": f"r{i}", "status": "chunk"}])
    assert seen == 50
    with backend.session() as s:
        assert len(s.select(runs)) >= 1


def test_key_report_and_clean_source(backend: Adapter) -> None:
    cols = [Column("lead_id", LogicalType.BIGINT), Column("name", LogicalType.TEXT)]
    rows = [
        {"lead_id": 1, "name": "a"},
        {"lead_id": 2, "name": "b"},
        {"lead_id": 2, "name": "b2"},
        {"lead_id": 3, "name": "c"},
        {"lead_id": 3, "name": "c2"},
        {"lead_id": 3, "name": "c3"},
        {"lead_id": None, "name": "n1"},
        {"lead_id": None, "name": "n2"},
        {"lead_id": 4, "name": "d"},
    ]
    table = source_table(backend, "src_dups", rows, cols)
    src = backend.source_sql(table=table)
    report = backend.key_report(src, ["lead_id"], sample=5)
    assert (report.total_rows, report.null_key_rows, report.duplicate_keys, report.duplicate_rows) == (9, 2, 2, 5)
    assert not report.ok and report.clean_rows == 2
    assert report.duplicate_samples[0] == ((3,), 3) and report.duplicate_samples[1] == ((2,), 2)
    assert report.null_samples == ((None,), (None,))
    assert "NULL" in report.describe() and "duplicated" in report.describe()
    clean = backend.clean_source_sql(src, ["lead_id"])
    got = sorted((norm(r)["lead_id"], norm(r)["name"]) for b in backend.stream(clean) for r in b.to_pylist())
    assert got == [(1, "a"), (4, "d")]
    assert backend.key_report(clean, ["lead_id"]).ok


def test_key_report_with_a_composite_key(backend: Adapter) -> None:
    cols = [Column("org_id", LogicalType.BIGINT), Column("email", LogicalType.TEXT)]
    rows = [
        {"org_id": 1, "email": "a"},
        {"org_id": 1, "email": "b"},
        {"org_id": 1, "email": "b"},
        {"org_id": 2, "email": None},
    ]
    table = source_table(backend, "src_pairs", rows, cols)
    src = backend.source_sql(table=table)
    report = backend.key_report(src, ["org_id", "email"])
    assert (report.null_key_rows, report.duplicate_keys, report.duplicate_rows) == (1, 1, 2)
    assert report.null_samples == ((2, None),)
    clean = backend.clean_source_sql(src, ["org_id", "email"])
    got = [norm(r) for b in backend.stream(clean) for r in b.to_pylist()]
    assert got == [{"org_id": 1, "email": "a"}]


# ---------------------------------------------------------------------------------------------- hashing, time


def test_row_hash_is_deterministic_null_safe_and_separator_safe(backend: Adapter) -> None:
    cols = [Column("lead_id", LogicalType.BIGINT), Column("a", LogicalType.TEXT), Column("b", LogicalType.TEXT)]
    rows = [
        {"lead_id": 1, "a": "ab", "b": "c"},
        {"lead_id": 2, "a": "a", "b": "bc"},
        {"lead_id": 3, "a": None, "b": "x"},
        {"lead_id": 4, "a": "", "b": "x"},
        {"lead_id": 5, "a": "N", "b": "x"},
        {"lead_id": 6, "a": "ab", "b": "c"},
        {"lead_id": 7, "a": "a|b", "b": None},
        {"lead_id": 8, "a": "a", "b": "|b"},
    ]
    table = source_table(backend, "src_hash", rows, cols)
    sql = (
        f"SELECT {backend.quote('lead_id')}, {backend.row_hash_sql(['a', 'b'], alias='t')} AS h "
        f"FROM {backend.table_sql(table)} t ORDER BY {backend.quote('lead_id')}"
    )
    with backend.session() as s:
        first = {r[0]: r[1] for r in s.fetchall(sql)}
        second = {r[0]: r[1] for r in s.fetchall(sql)}
    assert first == second
    hashes = [first[i] for i in range(1, 9)]
    assert all(isinstance(h, str) and len(h) == 32 and h == h.lower() for h in hashes)
    assert hashes[0] == hashes[5]  # same values, same hash
    assert len(set(hashes[:5] + hashes[6:])) == 7  # everything else differs


def test_age_seconds_for_stale_selection(backend: Adapter) -> None:
    runs = TableRef("ages")
    backend.ensure_table(runs, [Column("id", LogicalType.BIGINT)], [Column("at", LogicalType.TIMESTAMP)])
    now = dt.datetime.now(UTC)
    with backend.session() as s:
        s.insert(runs, [{"id": 1, "at": now - dt.timedelta(days=2)}, {"id": 2, "at": now - dt.timedelta(hours=1)}])
        age = backend.age_seconds_sql(f"t.{backend.quote('at')}")
        rows = s.fetchall(f"SELECT {backend.quote('id')}, {age} FROM {backend.table_sql(runs)} t ORDER BY 1")
        stale = s.fetchall(f"SELECT {backend.quote('id')} FROM {backend.table_sql(runs)} t WHERE {age} > ?", [86400])
        s.fetchall(f"SELECT {backend.now_sql()}")
    assert float(rows[0][1]) == pytest.approx(2 * 86400, abs=120)
    assert float(rows[1][1]) == pytest.approx(3600, abs=120)
    assert [r[0] for r in stale] == [1]


# ---------------------------------------------------------------------------------------------- connect()


def test_connect_picks_the_class_by_type_and_uses_the_project_dir(tmp_path: Path) -> None:
    from sixtyfour_sync.config.profiles import ResolvedTarget, parse_target_config
    from sixtyfour_sync.warehouse import connect
    from sixtyfour_sync.warehouse.duckdb import DuckDBAdapter

    config = parse_target_config({"type": "duckdb", "path": "rel.duckdb"})
    resolved = ResolvedTarget("sixtyfour", "dev", tmp_path / "profiles.yml", config, project_dir=tmp_path)
    with connect(resolved) as adapter:
        assert isinstance(adapter, DuckDBAdapter)
        assert adapter.path == str(tmp_path / "rel.duckdb")
    assert (tmp_path / "rel.duckdb").exists()


def test_a_missing_driver_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from sixtyfour_sync.errors import MissingDriverError
    from sixtyfour_sync.warehouse import adapter_class

    monkeypatch.delitem(sys.modules, "sixtyfour_sync.warehouse.postgres", raising=False)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes `import psycopg` raise ModuleNotFoundError
    with pytest.raises(MissingDriverError) as info:
        adapter_class("postgres")
    assert "psycopg" in str(info.value)
    assert info.value.hint == "pip install 'sixtyfour-sync[postgres]'"


def test_an_unknown_type_is_a_clear_error() -> None:
    from sixtyfour_sync.warehouse import adapter_class

    with pytest.raises(WarehouseError, match="no warehouse adapter for type 'oracle'; supported: duckdb, postgres"):
        adapter_class("oracle")


# ---------------------------------------------------------------------------------------------- the clock, leases


def test_now_epoch_is_the_warehouse_clock_as_a_float(backend: Adapter) -> None:
    with backend.session() as s:
        first = s.fetchone(f"SELECT {backend.now_epoch_sql()}")
    with backend.session() as s:
        second = s.fetchone(f"SELECT {backend.now_epoch_sql()}")
    assert first is not None and second is not None
    assert isinstance(first[0], float) and isinstance(second[0], float)
    # The servers here share the machine's clock; the value is the warehouse's, in seconds since the epoch.
    assert abs(first[0] - time.time()) < 120
    assert second[0] >= first[0]


LEASES = TableRef("_sixtyfour_sync_leases")
LEASE_COLUMNS = [
    Column("holder", LogicalType.TEXT),
    Column("expires_at", LogicalType.TIMESTAMP),
    Column("renewals", LogicalType.BIGINT),
]


def test_insert_if_absent_inserts_one_row_once(backend: Adapter) -> None:
    backend.ensure_table(LEASES, [Column("sync_name", LogicalType.TEXT)], LEASE_COLUMNS)
    cols = ["sync_name", "holder", "expires_at", "renewals"]
    sql = backend.insert_if_absent_sql(LEASES, cols, ["sync_name"])
    with backend.session() as s:
        assert s.execute_count(sql, ["enrich_leads", "run-1", T0, 0]) == 1
        assert s.execute_count(sql, ["enrich_leads", "run-2", T0, 0]) == 0
        assert s.insert_if_absent(LEASES, dict(zip(cols, ["other", "run-2", T0, 0], strict=True)), ["sync_name"])
        assert not s.insert_if_absent(LEASES, dict(zip(cols, ["other", "run-3", T0, 1], strict=True)), ["sync_name"])
    with backend.session() as s:
        rows = [norm(r) for r in s.select(LEASES, columns=["sync_name", "holder"], order_by=["sync_name"])]
    assert rows == [{"sync_name": "enrich_leads", "holder": "run-1"}, {"sync_name": "other", "holder": "run-2"}]


def test_execute_count_is_the_affected_row_count(backend: Adapter) -> None:
    backend.ensure_table(LEASES, [Column("sync_name", LogicalType.TEXT)], LEASE_COLUMNS)
    t, q = backend.table_sql(LEASES), backend.quote
    with backend.session() as s:
        s.insert(LEASES, [{"sync_name": n, "holder": "a", "renewals": 0} for n in ("x", "y", "z")])
        cas = f"UPDATE {t} SET {q('holder')} = ? WHERE {q('sync_name')} = ? AND {q('holder')} = ?"
        assert s.execute_count(cas, ["b", "x", "a"]) == 1  # compare-and-set: the expected state held
        assert s.execute_count(cas, ["c", "x", "a"]) == 0  # lost: the state moved on
        assert (
            s.execute_count(f"UPDATE {t} SET {q('renewals')} = {q('renewals')} + 1 WHERE {q('holder')} = ?", ["a"]) == 2
        )
        assert s.execute_count(f"DELETE FROM {t} WHERE {q('sync_name')} = ?", ["nope"]) == 0
        assert s.delete(LEASES, {"holder": "a"}) == 2


def test_a_sibling_has_its_own_connection(backend_name: str, backend: Adapter) -> None:
    backend.ensure_table(LEASES, [Column("sync_name", LogicalType.TEXT)], LEASE_COLUMNS)
    sibling = backend.sibling()
    try:
        errors: list[BaseException] = []

        def renew() -> None:  # as a lease-renewal thread would
            try:
                if backend_name == "sqlite":
                    # SQLite has one writer at a time and its sessions take the write lock when they begin
                    # (BEGIN IMMEDIATE): the sibling would wait for the parent. Read outside a transaction.
                    assert not [r for r in sibling.stream(f"SELECT sync_name FROM {sibling.table_sql(LEASES)}")
                                if r.num_rows and "parent" in r.column(0).to_pylist()]  # fmt: skip
                    return
                with sibling.session() as s:
                    assert s.select(LEASES, where={"sync_name": "parent"}) == []  # not committed yet
                    s.insert(LEASES, [{"sync_name": "sibling", "holder": "renewer"}])
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        def parent_writes_then_fails() -> None:
            with backend.session() as s:
                s.insert(LEASES, [{"sync_name": "parent", "holder": "main"}])
                worker = threading.Thread(target=renew)
                worker.start()
                worker.join(timeout=60)
                raise RuntimeError("roll back the parent's transaction")

        with pytest.raises(RuntimeError, match="roll back"):
            parent_writes_then_fails()
        assert not errors, errors
        if backend_name == "sqlite":
            with sibling.session() as s:
                s.insert(LEASES, [{"sync_name": "sibling", "holder": "renewer"}])
        with backend.session() as s:
            # The sibling's commit survived the parent's rollback; the parent's row did not.
            assert [norm(r)["sync_name"] for r in s.select(LEASES, columns=["sync_name"])] == ["sibling"]
    finally:
        sibling.close()
    with backend.session() as s:  # closing the sibling left the parent open
        assert s.fetchall("SELECT 1")[0][0] == 1


# ---------------------------------------------------------------------------------------------- upsert extensions


def test_insert_only_parts_insert_without_matching(backend: Adapter) -> None:
    table = make_target(backend)
    rows = [enriched(1), enriched(2), enriched(3, email=None)]
    result = backend.upsert(
        table,
        ["lead_id"],
        [UpsertPart(pa.Table.from_pylist(rows, schema=ENRICHED_SCHEMA), ENRICHED_COLS, insert_only=True)],
    )
    assert (result.inserted, result.updated) == (3, 0)
    got = select_all(backend, table)
    assert [r["email"] for r in got] == ["a@x.io", "a@x.io", None]
    assert as_json(got[0]["tags"]) == ["b2b", "saas"] and as_ts(got[0]["_sixtyfour_enriched_at"]) == T0
    assert all(r["owner_note"] is None for r in got)
    # The rows exist now: a normal part updates them.
    again = backend.upsert(table, ["lead_id"], [part([enriched(1, email="b@x.io")], ENRICHED_COLS, ENRICHED_SCHEMA)])
    assert (again.inserted, again.updated) == (0, 1)


def _guarded_part(rows: list[dict[str, Any]], *, insert_only: bool = False) -> UpsertPart:
    schema = pa.schema(
        [
            ("lead_id", pa.int64()),
            ("email", pa.string()),
            ("email_confidence", pa.int64()),
            ("_sixtyfour_status", pa.string()),
            ("__write_email", pa.bool_()),
        ]
    )
    guard = Guard(when="__write_email", not_below="email_confidence")
    return UpsertPart(
        pa.Table.from_pylist(rows, schema=schema),
        ["email", "email_confidence", "_sixtyfour_status"],
        guards={"email": guard, "email_confidence": guard},
        insert_only=insert_only,
    )


def test_one_guarded_part_carries_enriched_and_failed_rows(backend: Adapter) -> None:
    table = TableRef("guarded")
    backend.ensure_table(
        table, KEY, [Column("email", LogicalType.TEXT), Column("email_confidence", LogicalType.BIGINT), OWNED[5], OTHER]
    )
    first = [
        {
            "lead_id": 1,
            "email": "one@x",
            "email_confidence": 50,
            "_sixtyfour_status": "enriched",
            "__write_email": True,
        },
        {
            "lead_id": 2,
            "email": "two@x",
            "email_confidence": 90,
            "_sixtyfour_status": "enriched",
            "__write_email": True,
        },
        {
            "lead_id": 3,
            "email": "three@x",
            "email_confidence": None,
            "_sixtyfour_status": "enriched",
            "__write_email": True,
        },
        {"lead_id": 4, "email": "lost", "email_confidence": 99, "_sixtyfour_status": "failed", "__write_email": False},
    ]
    assert backend.upsert(table, ["lead_id"], [_guarded_part(first, insert_only=True)]).inserted == 4
    with backend.session() as s:
        s.update(table, {"owner_note": "theirs"}, {"lead_id": 1})
    second = [
        # higher confidence: overwritten
        {
            "lead_id": 1,
            "email": "one-new@x",
            "email_confidence": 70,
            "_sixtyfour_status": "enriched",
            "__write_email": True,
        },
        # lower confidence: the stored value stays
        {
            "lead_id": 2,
            "email": "two-new@x",
            "email_confidence": 40,
            "_sixtyfour_status": "enriched",
            "__write_email": True,
        },
        # failed row: keeps what an earlier run found, only its status changes
        {"lead_id": 3, "email": None, "email_confidence": None, "_sixtyfour_status": "failed", "__write_email": False},
        # stored confidence NULL never blocks
        {
            "lead_id": 4,
            "email": "four@x",
            "email_confidence": 10,
            "_sixtyfour_status": "enriched",
            "__write_email": True,
        },
        # new row that failed: no value written
        {
            "lead_id": 5,
            "email": "ignored",
            "email_confidence": 80,
            "_sixtyfour_status": "failed",
            "__write_email": False,
        },
    ]
    result = backend.upsert(table, ["lead_id"], [_guarded_part(second)])
    assert (result.inserted, result.updated) == (1, 4)
    got = [
        (r["lead_id"], r["email"], r["email_confidence"], r["_sixtyfour_status"]) for r in select_all(backend, table)
    ]
    assert got == [
        (1, "one-new@x", 70, "enriched"),
        (2, "two@x", 90, "enriched"),
        (3, "three@x", None, "failed"),
        (4, "four@x", 10, "enriched"),
        (5, None, None, "failed"),
    ]
    assert select_all(backend, table)[0]["owner_note"] == "theirs"
    assert "__write_email" not in [c.lower() for c in backend.get_columns(table)]


# ---------------------------------------------------------------------------------------------- struct types

#: One field of every struct type (and one the API's schema does not list), as a sync would define them.
TYPED_STRUCT: dict[str, Any] = {
    "name": "Full name",
    "employees": {"description": "Employees", "type": "integer"},
    "revenue": {"description": "Revenue", "type": "float"},
    "hiring": {"description": "Hiring?", "type": "boolean"},
    "anything": {"description": "Any list", "type": "list"},
    "skills": {"description": "Skills", "type": "list[str]"},
    "scores": {"description": "Scores", "type": "list[int]"},
    "ratios": {"description": "Ratios", "type": "list[float]"},
    "flags": {"description": "Flags", "type": "list[bool]"},
    "meta": {"description": "Metadata", "type": "dict"},
    "level": {"description": "Seniority", "type": "enum", "values": ["junior", "senior"]},
    "langs": {"description": "Languages", "type": "list[enum]", "values": ["en", "de"]},
    "hq": {"description": "HQ", "type": "object", "subfields": {"city": "City", "staff": {"description": "n",
                                                                                         "type": "int"}}},
    "offices": {"description": "Offices", "type": "object_list", "subfields": {"city": "City"}},
    "founded": {"description": "Founding date", "type": "date"},
}  # fmt: skip

#: A result file as the API would send it: every type answered (1), the words NA/null/nan and empty containers
#: (2), nothing (3: JSON null and empty fields), and values a warehouse would refuse (4: inf, nan).
TYPED_CSV = (
    "lead_id,name,employees,revenue,hiring,anything,skills,scores,ratios,flags,meta,level,langs,hq,offices,founded\n"
    '1,"Ann ""A"" Lee\nsecond line",42,2.5,true,"[""a"", 1, null]","[""sql"", ""dbt""]","[1, 2]","[1.5, -0.25]",'
    '"[true, false]","{""k"": {""n"": 1}, ""é"": ""✓""}",senior,"[""en"", ""de""]",'
    '"{""city"": ""Paris"", ""staff"": 3}","[{""city"": ""Oslo""}, {""city"": ""Lima""}]",1999-01-01\n'
    "2,NA,3.0,-1e3,no,[],[],[],[],[],{},Senior,[],{},[],null\n"
    "3,,,,,null,null,null,null,null,null,,null,null,null,\n"
    "4,nan,x,inf,maybe,{},{},{},{},{},{},nan,x,[],{},NA\n"
)


def test_every_struct_type_is_parsed_and_upserted_into_its_column(backend: Adapter, tmp_path: Path) -> None:
    spec = SyncSpec.model_validate(
        {"name": "typed", "endpoint": "people", "source": {"table": "leads", "key": "lead_id"},
         "struct": TYPED_STRUCT, "target": {"table": "typed_target"}}
    )  # fmt: skip
    table = TableRef("typed_target")
    created = backend.ensure_table(table, KEY, owned_columns(spec))  # the engine's own column types
    assert created.created
    stored = {k.lower(): v for k, v in backend.get_columns(table).items()}
    for col in owned_columns(spec):
        assert backend.is_compatible(stored[col.name], col.type), (col, stored[col.name])
    path = tmp_path / "typed.csv"
    path.write_text(TYPED_CSV, encoding="utf-8")
    parsed = parse_result(
        path, fmt="csv", key_types={"lead_id": pa.int64()}, struct=spec.struct, field_confidence=False
    )
    assert parsed.rows_read == 4 and not parsed.missing_columns
    fields = list(spec.struct)
    backend.upsert(table, ["lead_id"], [UpsertPart(parsed.table, [*fields, "_sixtyfour_status"])])

    rows = {r["lead_id"]: r for r in select_all(backend, table)}
    json_fields = [f for f in fields if spec.struct[f].is_json]

    def values(row: dict[str, Any]) -> dict[str, Any]:
        out = {f: row[f] for f in fields}
        out["hiring"] = as_bool(out["hiring"])
        out.update({f: as_json(out[f]) for f in json_fields})
        return out

    assert values(rows[1]) == {
        "name": 'Ann "A" Lee\nsecond line',
        "employees": 42,
        "revenue": 2.5,
        "hiring": True,
        "anything": ["a", 1, None],
        "skills": ["sql", "dbt"],
        "scores": [1, 2],
        "ratios": [1.5, -0.25],
        "flags": [True, False],
        "meta": {"k": {"n": 1}, "é": "✓"},
        "level": "senior",
        "langs": ["en", "de"],
        "hq": {"city": "Paris", "staff": 3},
        "offices": [{"city": "Oslo"}, {"city": "Lima"}],
        "founded": "1999-01-01",
    }
    assert values(rows[2]) == {
        "name": "NA", "employees": 3, "revenue": -1000.0, "hiring": False, "anything": [], "skills": [],
        "scores": [], "ratios": [], "flags": [], "meta": {}, "level": "Senior", "langs": [], "hq": {}, "offices": [],
        "founded": "null",
    }  # fmt: skip
    assert values(rows[3]) == dict.fromkeys(fields)
    assert rows[3]["_sixtyfour_status"] == "failed"
    # the words stay text; what a warehouse cannot hold (inf, nan) or has the wrong shape is NULL
    assert values(rows[4]) == {**dict.fromkeys(fields), "name": "nan", "level": "nan", "meta": {}, "founded": "NA"}
    assert parsed.outside_enum == {"level": 2}  # "Senior" (case matters) and "nan": kept as answered


# ---------------------------------------------------------------------------------------------- races, settings


def test_ddl_two_first_runs_can_race(backend: Adapter, monkeypatch: pytest.MonkeyPatch) -> None:
    table = TableRef("raced")
    with backend.session() as s:
        s.execute(backend.create_table_sql(table, KEY, OWNED[:2]))
    if backend.dialect.create_table_if_not_exists:
        with backend.session() as s:
            s.execute(backend.create_table_sql(table, KEY, OWNED[:2]))  # the other run's CREATE: no error
    if backend.dialect.add_column_if_not_exists:
        for _ in range(2):
            with backend.session() as s:
                s.execute(backend.add_column_sql(table, OWNED[2]))
    # The other run created the table between our check and our CREATE, with fewer columns.
    monkeypatch.setattr(type(backend), "table_exists", lambda self, t: False)
    result = backend.ensure_table(table, KEY, OWNED[:4])
    assert result.created
    assert {c.name for c in OWNED[:4]} <= {c.lower() for c in result.columns}


def test_row_hash_does_not_depend_on_session_settings(backend_name: str, backend: Adapter) -> None:
    cols = [
        Column("lead_id", LogicalType.BIGINT),
        Column("seen_at", LogicalType.TIMESTAMP),
        Column("score", LogicalType.DOUBLE),
        Column("name", LogicalType.TEXT),
    ]
    rows = [
        {"lead_id": 1, "seen_at": T0.replace(microsecond=123456), "score": 0.1 + 0.2, "name": "a"},
        {"lead_id": 2, "seen_at": dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), "score": 1e-7, "name": None},
        {"lead_id": 3, "seen_at": None, "score": 123456789.123456789, "name": "c"},
    ]
    table = source_table(backend, "src_hash_settings", rows, cols)
    if backend_name == "mariadb":  # MySQL's TIMESTAMP type is the one whose text follows time_zone
        with backend.session() as s:
            s.execute(f"ALTER TABLE {backend.table_sql(table)} ADD COLUMN `zoned` TIMESTAMP(6) NULL")
            s.execute(f"UPDATE {backend.table_sql(table)} SET `zoned` = `seen_at`")
    hashed = ["seen_at", "score", "name"] + (["zoned"] if backend_name == "mariadb" else [])

    def hashes(adapter: Adapter) -> dict[int, str]:
        sql = (
            f"SELECT {adapter.quote('lead_id')} AS k, {adapter.row_hash_sql(hashed, alias='c')} AS h "
            f"FROM {adapter.table_sql(table)} {adapter.subquery_alias('c')}"
        )
        return {int(r["k"]): r["h"] for b in adapter.stream(sql) for r in (norm(x) for x in b.to_pylist())}

    before = hashes(backend)
    with perturbed_twin(backend_name, backend) as (twin, probe):
        assert probe() in ("Asia/Kolkata", "+05:30")  # the default really changed
        assert hashes(twin) == before
        assert hashes(backend) == before


# ---------------------------------------------------------------------------------------------- the overwrite rule


@pytest.mark.parametrize("policy", ["always", "keep_more_confident"])
def test_the_overwrite_rule_in_sql_matches_its_statement_case_by_case(backend: Adapter, policy: str) -> None:
    """engine/results/overwrite.py states the rule (decide); the guards it builds must do exactly that in SQL, here."""
    import itertools

    from sixtyfour_sync.engine.results.overwrite import Outcome, confidence_guard, decide, value_guard

    table = TableRef(f"rule_{policy}")
    cols = [Column(c, LogicalType.TEXT) for c in ("email", "ih", "sh")] + [
        Column("email_confidence", LogicalType.BIGINT)
    ]
    backend.ensure_table(table, KEY, cols)
    cases = list(itertools.product([True, False], repeat=4))  # answered, meets, same question, stored more sure
    stored = [
        {"lead_id": i, "email": f"old{i}", "email_confidence": 80 if more else 20, "ih": "h", "sh": "s"}
        for i, (_, _, _, more) in enumerate(cases)
    ]
    backend.upsert(
        table, ["lead_id"], [UpsertPart(pa.Table.from_pylist(stored), ["email", "email_confidence", "ih", "sh"])]
    )
    staged = []
    for i, (answered, meets, same, _) in enumerate(cases):
        writes = answered and meets
        staged.append(
            {
                "lead_id": i,
                "email": f"new{i}",
                "email_confidence": 50,
                "ih": "h" if same else "h2",
                "sh": "s",
                "__w": writes,
                "__u": not writes,
                "__a": answered,
                "__n": not answered,
            }
        )
    same_cols = ("ih", "sh")
    guards = {
        "email": value_guard(
            write="__w",
            unwritten="__u",
            same=same_cols,
            confidence="email_confidence",
            policy=policy,  # type: ignore[arg-type]
        ),
        "email_confidence": confidence_guard(
            answered="__a",
            unanswered="__n",
            same=same_cols,
            confidence="email_confidence",
            policy=policy,  # type: ignore[arg-type]
        ),
    }
    part_ = UpsertPart(pa.Table.from_pylist(staged), ["email", "email_confidence", "ih", "sh"], guards=guards)
    backend.upsert(table, ["lead_id"], [part_])
    got = {r["lead_id"]: r for r in select_all(backend, table)}
    for i, (answered, meets, same, more) in enumerate(cases):
        args = {"same_question": same, "stored_more_confident": more, "policy": policy}
        want = {Outcome.WRITE: f"new{i}", Outcome.KEEP: f"old{i}", Outcome.CLEAR: None}[
            decide(answered=answered, meets_threshold=meets, **args)  # type: ignore[arg-type]
        ]
        want_conf = {Outcome.WRITE: 50, Outcome.KEEP: 80 if more else 20, Outcome.CLEAR: None}[
            decide(answered=answered, meets_threshold=True, **args)  # type: ignore[arg-type]
        ]
        assert (got[i]["email"], got[i]["email_confidence"]) == (want, want_conf), (backend.type, policy, cases[i])


# ------------------------------------------------------------------------------ rows gone from the source


@pytest.mark.parametrize("mode", ["flag", "delete"])
def test_rows_gone_from_the_source_are_flagged_or_deleted(backend: Adapter, mode: str) -> None:
    """The statements of engine/rows/deletions.py, on every warehouse: only the sync's own rows, one statement each."""
    from sixtyfour_sync.config.models import SyncSpec
    from sixtyfour_sync.engine.plan.columns import owned_columns
    from sixtyfour_sync.engine.rows.deletions import deletion_statements

    spec = SyncSpec.model_validate(
        {
            "name": "s",
            "endpoint": "people",
            "source": {"table": "gone_src", "key": "lead_id"},
            "struct": {"email": "Email"},
            "target": {"table": f"gone_{mode}", "on_source_delete": mode},
        }
    )
    source = source_table(
        backend,
        "gone_src",
        [{"lead_id": i, "email": None} for i in (1, 2, 4)],
        [KEY[0], Column("email", LogicalType.TEXT)],
    )
    assert source.name == "gone_src"
    target = TableRef(f"gone_{mode}")
    backend.ensure_table(target, KEY, owned_columns(spec))
    rows = [{"lead_id": i, "email": f"{i}@x", "_sixtyfour_status": "enriched"} for i in (1, 2, 3, 4, 5)]
    rows.append({"lead_id": 6, "email": None, "_sixtyfour_status": None})  # never written by the sync
    backend.upsert(target, ["lead_id"], [part(rows, ["email", "_sixtyfour_status"])])
    counts = {}
    statements = deletion_statements(
        backend, spec, target, backend.get_columns(target), backend.source_sql(table=TableRef("gone_src"))
    )
    with backend.session() as s:
        for sql, what in statements:
            counts[what] = s.execute_count(sql)
    got = {r["lead_id"]: r for r in select_all(backend, target)}
    if mode == "delete":
        assert sorted(got) == [1, 2, 4, 6] and counts == {"deleted": 2}
    else:
        flagged = sorted(k for k, r in got.items() if r["_sixtyfour_source_deleted_at"] is not None)
        assert flagged == [3, 5] and sorted(got) == [1, 2, 3, 4, 5, 6]
        assert counts["flagged"] == 2 and counts["unflagged"] == 0


# ---------------------------------------------------------------------------------------------- key types

#: Source key types per backend (SQL type, values as text): the target key keeps the type, and the keys
#: round-trip through an upsert and a join like with like. A backend without the type is left out.
KEY_TYPE_CASES: dict[str, tuple[dict[str, str], list[str]]] = {
    "bigint": ({"*": "BIGINT", "bigquery": "INT64"}, [str(2**53 + 1), str(2**53), str(-(2**63)), str(2**63 - 1)]),
    "decimal(20,0)": (
        {
            "duckdb": "DECIMAL(20,0)",
            "postgres": "NUMERIC(20,0)",
            "mariadb": "DECIMAL(20,0)",
            "snowflake": "NUMBER(20,0)",
            "databricks": "DECIMAL(20,0)",
        },
        [str(2**53 + 1), str(2**53), str(2**64 - 1), "99999999999999999999"],
    ),
    "decimal(38,10)": (
        {
            "duckdb": "DECIMAL(38,10)",
            "postgres": "NUMERIC(38,10)",
            "mariadb": "DECIMAL(38,10)",
            "snowflake": "NUMBER(38,10)",
            "databricks": "DECIMAL(38,10)",
        },
        ["1234567890123456789012345678.1234567890", "1234567890123456789012345678.1234567891", "-0.0000000001"],
    ),
    "unsigned": ({"duckdb": "UBIGINT", "mariadb": "BIGINT UNSIGNED"}, [str(2**63 + 1), str(2**64 - 1), "1"]),
    "uuid": (
        {"duckdb": "UUID", "postgres": "UUID"},
        ["00000000-0000-0000-0000-000000000001", "ffffffff-ffff-ffff-ffff-fffffffffffe"],
    ),
    "date": (
        {
            "duckdb": "DATE",
            "postgres": "DATE",
            "mariadb": "DATE",
            "snowflake": "DATE",
            "bigquery": "DATE",
            "databricks": "DATE",
        },
        ["2024-01-01", "1999-12-31", "2024-02-29"],
    ),
    "timestamp": (
        {
            "duckdb": "TIMESTAMP",
            "postgres": "TIMESTAMP",
            "mariadb": "DATETIME(6)",
            "snowflake": "TIMESTAMP_NTZ",
            "bigquery": "DATETIME",
        },
        ["2024-01-01 00:00:00.000001", "2024-01-01 00:00:00.000002", "1999-12-31 23:59:59"],
    ),
    "text": ({"*": "text"}, ["ümlaut ✓", "日本語", "a b"]),
}


@pytest.mark.parametrize("case", list(KEY_TYPE_CASES))
def test_a_target_keyed_by_each_supported_type_keeps_it(backend_name: str, backend: Adapter, case: str) -> None:
    """Through the engine's path: the source key's type is read, the target's key column created with it,
    the keys (as the selection hands them over) upserted twice, and joined back like with like."""
    from sixtyfour_sync.engine.rows.select import key_join_sql
    from sixtyfour_sync.warehouse.keytypes import transport_sql

    types, values = KEY_TYPE_CASES[case]
    sql_type = types.get(backend_name, types.get("*"))
    if sql_type is None:
        pytest.skip(f"{backend_name} has no {case} type")
    if sql_type == "text":
        sql_type = backend.sql_type(LogicalType.TEXT) if backend_name != "mariadb" else "VARCHAR(100)"
    q = backend.quote
    src = TableRef("kt_source")
    with backend.session() as s:
        text = backend.sql_type(LogicalType.TEXT)
        s.execute(f"CREATE TABLE {backend.table_sql(src)} ({q('k')} {sql_type}, {q('name')} {text})")
    with backend.session() as s:
        for i, v in enumerate(values):
            lit = "'" + v.replace("'", "''") + "'"
            if backend_name not in ("mariadb", "sqlite"):  # MySQL casts to few types; it converts on insert
                lit = f"CAST({lit} AS {sql_type})"
            s.execute(f"INSERT INTO {backend.table_sql(src)} ({q('k')}, {q('name')}) VALUES ({lit}, 'n{i}')")
    source_sql = backend.source_sql(table=src)
    kt = backend.key_types(source_sql, ["k"])["k"]
    assert kt is not None, case
    target = TableRef("kt_target")
    created = backend.ensure_table(
        target, [backend.key_column("k", kt)], [Column("_sixtyfour_status", LogicalType.TEXT)]
    )
    assert created.created

    handed = transport_sql(f"s.{q('k')}", kt, backend.dialect.types, backend.dialect.text_type)
    batches = list(backend.stream(f"SELECT {handed} AS {q('k')} FROM ({source_sql}) {backend.subquery_alias('s')}"))
    keys = pa.Table.from_batches(batches).column(0).combine_chunks()
    if keys.type != kt.arrow:
        keys = keys.cast(kt.arrow)
    assert len(keys) == len(values) and keys.null_count == 0
    for status in ("failed", "enriched"):  # an insert, then an update of every key
        data = pa.table({"k": keys, "_sixtyfour_status": pa.array([status] * len(keys))})
        backend.upsert(target, ["k"], [UpsertPart(data, ["_sixtyfour_status"])])
    columns = backend.get_columns(target)
    on = f"t.{q('k')} = {key_join_sql(backend, f's.{q(chr(107))}', 'k', {'k': kt}, columns)}"
    with backend.session() as s:
        rows = s.fetchall(
            f"SELECT COUNT(*), SUM(CASE WHEN t.{q('_sixtyfour_status')} = 'enriched' THEN 1 ELSE 0 END) "
            f"FROM ({source_sql}) {backend.subquery_alias('s')} JOIN {backend.table_sql(target)} t ON {on}"
        )
        total = s.fetchall(f"SELECT COUNT(*) FROM {backend.table_sql(target)}")
    assert [tuple(int(v) for v in r) for r in rows] == [(len(values), len(values))], case
    assert int(total[0][0]) == len(values)  # no key collided with another, none was written twice
