"""What the engine needs beyond the shared suite, for real on BigQuery (bqemulator) and Databricks (minilake).

The warehouse clock, insert-if-absent, true affected-row counts, sibling adapters, and upsert parts that
are insert-only or carry per-column guards.
"""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa
import pytest

from sixtyfour_sync.warehouse import Adapter, Column, Guard, LogicalType, TableRef, UpsertPart

Part = UpsertPart


@pytest.fixture(params=["bigquery", "databricks"])
def backend_name(request: pytest.FixtureRequest) -> str:
    """Only the cloud backends (the others get these tests in the shared suite)."""
    return str(request.param)


KEY = [Column("lead_id", LogicalType.BIGINT)]
COLS = [
    Column("email", LogicalType.TEXT),
    Column("email_confidence", LogicalType.BIGINT),
    Column("title", LogicalType.TEXT),
    Column("owner_note", LogicalType.TEXT),
]


def rows(adapter: Adapter, table: TableRef) -> dict[int, dict[str, Any]]:
    with adapter.session() as s:
        return {int(r["lead_id"]): r for r in s.select(table, order_by=["lead_id"])}


def test_warehouse_clock_in_epoch_seconds(backend: Adapter) -> None:
    with backend.session() as s:
        now = s.fetchone(f"SELECT {backend.now_epoch_sql()}")
    assert now is not None and abs(float(now[0]) - time.time()) < 60


def test_insert_if_absent_inserts_once_and_counts_truly(backend: Adapter) -> None:
    leases = TableRef("_sixtyfour_sync_leases")
    backend.ensure_table(leases, [Column("sync_name", LogicalType.TEXT)], [Column("expires_epoch", LogicalType.DOUBLE)])
    sql = backend.insert_if_absent_sql(leases, ["sync_name", "expires_epoch"], ["sync_name"])
    with backend.session() as s:
        assert s.execute_count(sql, ["enrich_leads", 0.0]) == 1
    with backend.session() as s:
        assert s.execute_count(sql, ["enrich_leads", 5.0]) == 0
        assert s.execute_count(sql, ["other", None]) == 1
    with backend.session() as s:
        got = sorted((r["sync_name"], r["expires_epoch"]) for r in s.select(leases))
        update = (
            f"UPDATE {backend.table_sql(leases)} SET {backend.quote('expires_epoch')} = ? "
            f"WHERE {backend.quote('sync_name')} = ? AND {backend.quote('expires_epoch')} IS NULL"
        )
        assert s.execute_count(update, [1.0, "other"]) == 1
        assert s.execute_count(update, [1.0, "other"]) == 0
    assert got == [("enrich_leads", 0.0), ("other", None)]


def test_a_sibling_has_its_own_connection(backend: Adapter) -> None:
    table = TableRef("leads_enriched")
    backend.ensure_table(table, KEY, COLS)
    other = backend.sibling()
    try:
        assert other is not backend and other.table_exists(table)
        with other.session() as s:
            s.insert(table, [{"lead_id": 1, "email": "a@x.io"}])
    finally:
        other.close()
    assert rows(backend, table)[1]["email"] == "a@x.io"


def test_insert_only_and_guarded_parts(backend: Adapter) -> None:
    table = TableRef("leads_enriched")
    backend.ensure_table(table, KEY, COLS)
    first = pa.table(
        {
            "lead_id": pa.array([1, 2, 3], pa.int64()),
            "email": ["a@x.io", "b@x.io", "c@x.io"],
            "email_confidence": pa.array([90, 50, None], pa.int64()),
            "title": ["CEO", "CTO", "VP"],
        }
    )
    r1 = backend.upsert(table, ["lead_id"], [Part(first, ["email", "email_confidence", "title"], insert_only=True)])
    assert (r1.inserted, r1.updated) == (3, 0)
    with backend.session() as s:
        s.update(table, {"owner_note": "keep"}, {"lead_id": 1})

    guard = {"email": Guard(when="__write_email", not_below="email_confidence")}
    second = pa.table(
        {
            "lead_id": pa.array([1, 2, 3, 4, 5], pa.int64()),
            "email": ["low@x.io", "high@x.io", "nulltarget@x.io", "new@x.io", "unwritten@x.io"],
            "email_confidence": pa.array([10, 80, 5, 70, 60], pa.int64()),
            "__write_email": [True, True, True, True, False],
            "title": ["T1", "T2", "T3", "T4", "T5"],
        }
    )
    r2 = backend.upsert(table, ["lead_id"], [Part(second, ["email", "title"], guards=guard)])
    assert (r2.inserted, r2.updated) == (2, 3)
    got = rows(backend, table)
    assert {k: v["email"] for k, v in got.items()} == {
        1: "a@x.io",  # stored confidence 90 is above 10: kept
        2: "high@x.io",  # 80 >= 50: written
        3: "nulltarget@x.io",  # stored confidence NULL never blocks
        4: "new@x.io",  # a new row where the flag is true
        5: None,  # a new row where the flag is false
    }
    assert [got[k]["title"] for k in range(1, 6)] == ["T1", "T2", "T3", "T4", "T5"]  # unguarded: always written
    assert got[1]["owner_note"] == "keep" and got[1]["email_confidence"] == 90  # not a set column: untouched
    assert "__write_email" not in {c.lower() for c in backend.get_columns(table)}


def test_databricks_without_a_volume_stages_with_values(backend: Adapter, backend_name: str) -> None:
    if backend_name != "databricks":
        pytest.skip("Databricks' second staging path")
    from sixtyfour_sync.warehouse.databricks import DatabricksAdapter

    assert backend.config is not None
    plain = DatabricksAdapter(backend.config.model_copy(update={"staging_volume": None}))  # type: ignore[union-attr]
    try:
        table = TableRef("leads_enriched")
        plain.ensure_table(table, KEY, COLS)
        nasty = ["O'Hara", "back\\slash", "tick`tock`", "50% ?", "тест ✓", "line\nbreak", ""]
        data = pa.table({"lead_id": pa.array(range(1, 8), pa.int64()), "email": nasty, "title": ["t"] * 7})
        result = plain.upsert(table, ["lead_id"], [UpsertPart(data, ["email", "title"])])
        assert (result.inserted, result.updated) == (7, 0)
        assert [rows(plain, table)[i]["email"] for i in range(1, 8)] == nasty
    finally:
        plain.close()


def test_a_refused_statement_is_a_warehouse_error_without_secrets(backend: Adapter, backend_name: str) -> None:
    from sixtyfour_sync.errors import WarehouseError

    config = backend.config
    assert config is not None
    secret = "dapi-do-not-print-0123456789" if backend_name == "databricks" else None
    other = type(backend)(config.model_copy(update={"token": _secret(secret)}) if secret else config)
    try:
        with pytest.raises(WarehouseError) as info, other.session() as s:
            s.fetchall(f"SELECT {other.quote('nope')} FROM {other.table_sql(TableRef('missing_table'))}")
        assert info.value.__cause__ is not None and "missing_table" in str(info.value)
        if secret:
            assert secret not in str(info.value) and secret not in repr(other.config)
    finally:
        other.close()


def _secret(value: str) -> Any:
    from sixtyfour_sync._redact import Secret

    return Secret(value)
