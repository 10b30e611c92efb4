"""DuckDB specifics: the exact SQL it renders (no database needed) and its file/lock/connection behaviour."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sixtyfour_sync.config.profiles import parse_target_config
from sixtyfour_sync.errors import ConfigError, WarehouseError
from sixtyfour_sync.warehouse import Column, LogicalType, TableRef, UpsertPart, connect
from sixtyfour_sync.warehouse.duckdb import DuckDBAdapter
from sixtyfour_sync.warehouse.sql import upsert


@pytest.fixture
def sql_only() -> DuckDBAdapter:
    """An adapter that renders SQL; it never connects."""
    return DuckDBAdapter(parse_target_config({"type": "duckdb", "path": "w.duckdb", "schema": "analytics"}))


def test_exact_ddl(sql_only: DuckDBAdapter) -> None:
    table = TableRef("leads_enriched")
    sql = sql_only.create_table_sql(
        table,
        [Column("lead_id", LogicalType.BIGINT)],
        [Column("email", LogicalType.TEXT), Column("tags", LogicalType.JSON), Column("at", LogicalType.TIMESTAMP)],
    )
    assert sql == (
        'CREATE TABLE IF NOT EXISTS "analytics"."leads_enriched" ("lead_id" BIGINT NOT NULL, "email" VARCHAR, '
        '"tags" JSON, "at" TIMESTAMPTZ, PRIMARY KEY ("lead_id"))'
    )
    assert (
        sql_only.add_column_sql(table, Column("score", LogicalType.DOUBLE))
        == 'ALTER TABLE "analytics"."leads_enriched" ADD COLUMN IF NOT EXISTS "score" DOUBLE'
    )
    assert [sql_only.sql_type(t) for t in LogicalType] == [
        "VARCHAR",
        "BIGINT",
        "DOUBLE",
        "BOOLEAN",
        "JSON",
        "TIMESTAMPTZ",
    ]


def test_exact_upsert_sql(sql_only: DuckDBAdapter) -> None:
    table = TableRef("leads_enriched")
    # applied in the target's rowid order: DuckDB 2.0's partial multi-column UPDATE is up to 200x slower otherwise
    names = sql_only.names
    assert upsert.update_from_sql(names, table, '"stage"', ["org_id", "email"], ["title", "_sixtyfour_status"]) == (
        'UPDATE "analytics"."leads_enriched" AS t SET "title" = s."title", "_sixtyfour_status" = s."_sixtyfour_status" '
        'FROM (SELECT t2.rowid AS _sixtyfour_rowid, s0.* FROM "stage" AS s0 JOIN "analytics"."leads_enriched" AS t2 '
        'ON t2."org_id" = s0."org_id" AND t2."email" = s0."email" ORDER BY t2.rowid) AS s '
        "WHERE t.rowid = s._sixtyfour_rowid"
    )
    assert upsert.insert_missing_sql(names, table, '"stage"', ["lead_id"], ["title"]) == (
        'INSERT INTO "analytics"."leads_enriched" ("lead_id", "title") SELECT s."lead_id", s."title" FROM "stage" AS s '
        'WHERE NOT EXISTS (SELECT 1 FROM "analytics"."leads_enriched" AS t WHERE t."lead_id" = s."lead_id")'
    )


def test_exact_replaced_rows_sql(sql_only: DuckDBAdapter) -> None:
    table = TableRef("leads_enriched")
    assert upsert.matched_vectors_sql(sql_only.names, table, '"stage"', ["lead_id"], 2048) == (
        'SELECT COUNT(*), COUNT(DISTINCT t2.rowid // 2048) FROM "stage" AS s0 '
        'JOIN "analytics"."leads_enriched" AS t2 ON t2."lead_id" = s0."lead_id"'
    )
    # the new version of each matched row: owned columns from the stage, every other column as stored
    # (stored names quoted as they are, a set column matched without regard to case)
    assert upsert.replaced_rows_sql(
        sql_only.names, table, '"stage"', ["lead_id"], ["title"], ["lead_id", 'My "notes"', "Title"]
    ) == (
        'SELECT t2."lead_id", t2."My ""notes""", s0."title" AS "Title", t2.rowid AS _sixtyfour_rowid '
        'FROM "stage" AS s0 JOIN "analytics"."leads_enriched" AS t2 ON t2."lead_id" = s0."lead_id"'
    )


def test_exact_selection_sql(sql_only: DuckDBAdapter) -> None:
    src = sql_only.source_sql(
        table=TableRef("leads", schema="raw"), columns=["lead_id", "name"], where="country = 'US'", order_by=["lead_id"]
    )
    assert src == 'SELECT "lead_id", "name" FROM "raw"."leads" WHERE (country = \'US\') ORDER BY "lead_id"'
    assert sql_only.source_sql(sql="select * from x;  ") == "SELECT * FROM (select * from x) AS _src"
    assert sql_only.clean_source_sql("select 1 as k", ["k"]) == (
        'SELECT s.* FROM (select 1 as k) AS s WHERE s."k" IS NOT NULL QUALIFY COUNT(*) OVER (PARTITION BY s."k") = 1'
    )
    assert sql_only.row_hash_sql(["a"], alias="t") == (
        'MD5((CASE WHEN "t"."a" IS NULL THEN \'N\' ELSE (\'V\' || CAST(LENGTH(CAST("t"."a" AS VARCHAR)) AS VARCHAR) '
        '|| \':\' || CAST("t"."a" AS VARCHAR)) END))'
    )
    assert sql_only.age_seconds_sql('t."at"') == 'EXTRACT(EPOCH FROM (CURRENT_TIMESTAMP - t."at"))'


def test_identifiers_keep_case_and_match_case_insensitively(sql_only: DuckDBAdapter) -> None:
    assert sql_only.quote("Lead_ID") == '"Lead_ID"'
    assert sql_only.find_column(["LEAD_ID", "email"], "lead_id") == "LEAD_ID"


def test_relative_path_resolves_against_the_project_dir(tmp_path: Path) -> None:
    cfg = parse_target_config({"type": "duckdb", "path": "data/w.duckdb"})
    (tmp_path / "data").mkdir()
    with connect(cfg, project_dir=tmp_path) as adapter:
        adapter.ensure_table(TableRef("t"), [Column("id", LogicalType.BIGINT)], [])
    assert (tmp_path / "data" / "w.duckdb").is_file()


def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    cfg = parse_target_config({"type": "duckdb", "path": str(tmp_path / "nope" / "w.duckdb")})
    with pytest.raises(ConfigError, match="does not exist"):
        connect(cfg)


def test_memory_database_and_settings() -> None:
    cfg = parse_target_config(
        {"type": "duckdb", "path": ":memory:", "settings": {"threads": 1, "memory_limit": "500MB"}}
    )
    with connect(cfg) as adapter, adapter.session() as s:
        assert s.fetchall("SELECT current_setting('threads')")[0][0] == 1
        assert s.fetchall("SELECT current_setting('TimeZone')")[0][0] == "UTC"


def test_a_file_locked_by_another_process_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "locked.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import duckdb, sys, time
                con = duckdb.connect({str(db)!r})
                print("ready", flush=True)
                sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        started = time.monotonic()
        with pytest.raises(WarehouseError) as info:
            connect(parse_target_config({"type": "duckdb", "path": str(db), "lock_wait_seconds": 0.5}))
        assert time.monotonic() - started >= 0.3  # it waited for the holder before giving up
        assert "is locked" in str(info.value) and f"PID {holder.pid}" in str(info.value)
        assert info.value.hint and "close the other process" in info.value.hint
        # a holder that lets go within the wait is waited for
        assert holder.stdin is not None
        threading.Timer(0.5, holder.stdin.close).start()
        adapter = connect(parse_target_config({"type": "duckdb", "path": str(db), "lock_wait_seconds": 20}))
        adapter.close()
    finally:
        assert holder.stdin is not None
        if not holder.stdin.closed:
            holder.stdin.close()
        holder.wait(timeout=10)


def test_closed_adapter_refuses_work(tmp_path: Path) -> None:
    adapter = connect(parse_target_config({"type": "duckdb", "path": str(tmp_path / "w.duckdb")}))
    adapter.close()
    with pytest.raises(WarehouseError, match="closed"):
        adapter.table_exists(TableRef("t"))


def test_stream_is_bounded_and_abandoning_it_is_safe(tmp_path: Path) -> None:
    with connect(parse_target_config({"type": "duckdb", "path": str(tmp_path / "w.duckdb")})) as adapter:
        stream = adapter.stream("SELECT range AS i FROM range(100000)", batch_rows=1000)
        first = next(stream)
        assert first.num_rows <= 1000
        stream.close()  # abandoned early: the cursor is closed, the adapter keeps working
        with adapter.session() as s:
            assert s.fetchall("SELECT 42")[0][0] == 42


def test_upsert_100k_rows_is_fast(tmp_path: Path) -> None:
    n = 100_000
    with connect(parse_target_config({"type": "duckdb", "path": str(tmp_path / "w.duckdb")})) as adapter:
        table = TableRef("t")
        adapter.ensure_table(table, [Column("id", LogicalType.BIGINT)], [Column("v", LogicalType.TEXT)])
        data = pa.table({"id": pa.array(range(n), pa.int64()), "v": pa.array([f"v{i}" for i in range(n)])})
        adapter.upsert(table, ["id"], [UpsertPart(data, ["v"])])
        start = time.perf_counter()
        result = adapter.upsert(table, ["id"], [UpsertPart(data.take(pa.array(range(n - 1, -1, -1))), ["v"])])
        elapsed = time.perf_counter() - start
    assert (result.inserted, result.updated) == (0, n)
    assert elapsed < 5, f"100k-row upsert took {elapsed:.2f}s"


@pytest.mark.parametrize("step", [100, 1], ids=["sparse-replaced", "dense-updated"])
def test_matched_rows_get_new_owned_values_and_keep_the_others(
    tmp_path: Path, step: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1% of the keys spread over every vector are replaced (DELETE + INSERT), 1% in one run of keys updated in
    # place (see DuckDBAdapter._apply_stage): either way the owned columns change, a column the sync does not
    # own keeps its value, and a key the target lacks is inserted once.
    n = 200_000
    replaced: list[int] = []
    replace = DuckDBAdapter._replace_matched

    def spy(self: DuckDBAdapter, *args: Any) -> int:
        replaced.append(replace(self, *args))
        return replaced[-1]

    monkeypatch.setattr(DuckDBAdapter, "_replace_matched", spy)
    with connect(parse_target_config({"type": "duckdb", "path": str(tmp_path / "w.duckdb")})) as adapter:
        table = TableRef("t")
        owned = ["a", "b", "c", "d"]
        adapter.ensure_table(table, [Column("id", LogicalType.BIGINT)], [Column(c, LogicalType.TEXT) for c in owned])
        with adapter.session() as s:
            s.execute('ALTER TABLE t ADD COLUMN "My notes" VARCHAR')
        data = pa.table({"id": pa.array(range(n), pa.int64()), **{c: [f"{c}{i}" for i in range(n)] for c in owned}})
        adapter.upsert(table, ["id"], [UpsertPart(data, owned, insert_only=True)])
        with adapter.session() as s:
            s.execute("""UPDATE t SET "My notes" = 'kept ' || id""")
        keys = [*range(0, step * (n // 100), step), n]
        changed = pa.table({"id": pa.array(keys, pa.int64()), **{c: [f"new {c}"] * len(keys) for c in owned}})
        result = adapter.upsert(table, ["id"], [UpsertPart(changed, owned)])
        with adapter.session() as s:
            rows = s.fetchall("SELECT COUNT(*), COUNT(DISTINCT id), COUNT(*) FILTER (WHERE a = 'new a') FROM t")
            kept = s.fetchall(f'SELECT "My notes", a, d FROM t WHERE id IN ({step}, {n - 1}, {n}) ORDER BY id')
    assert (result.inserted, result.updated) == (1, n // 100)
    assert replaced == ([n // 100] if step > 1 else [])
    assert rows == [(n + 1, n + 1, n // 100 + 1)]
    assert kept == [
        (f"kept {step}", "new a", "new d"),
        (f"kept {n - 1}", f"a{n - 1}", f"d{n - 1}"),
        (None, "new a", "new d"),
    ]


def test_every_cursor_runs_in_utc_whatever_the_profile_or_process_says(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = parse_target_config(
        {"type": "duckdb", "path": str(tmp_path / "w.duckdb"), "settings": {"TimeZone": "Asia/Kolkata"}}
    )
    with caplog.at_level("WARNING"), connect(cfg) as adapter:
        assert isinstance(adapter, DuckDBAdapter)
        adapter.connection().execute("SET GLOBAL TimeZone = 'America/New_York'")  # what new cursors start from
        sql = "SELECT current_setting('TimeZone') AS tz, CAST(TIMESTAMPTZ '2024-01-01 00:00:00+00' AS VARCHAR) AS ts"
        streamed = [r for b in adapter.stream(sql) for r in b.to_pylist()]
        with adapter.sibling() as sibling, sibling.session() as s:
            from_sibling = s.fetchall(sql)
        with adapter.session() as s:
            from_session = s.fetchall(sql)
    assert streamed == [{"tz": "UTC", "ts": "2024-01-01 00:00:00+00"}]
    assert from_sibling == from_session == [("UTC", "2024-01-01 00:00:00+00")]
    assert "settings.TimeZone is ignored" in caplog.text


def test_a_sibling_shares_the_database_instance_and_closing_it_keeps_the_parent(tmp_path: Path) -> None:
    with connect(parse_target_config({"type": "duckdb", "path": str(tmp_path / "w.duckdb")})) as adapter:
        sibling = adapter.sibling()
        sibling.ensure_table(TableRef("t"), [Column("id", LogicalType.BIGINT)], [])
        with sibling.session() as s:
            s.insert(TableRef("t"), [{"id": 1}])
        sibling.close()
        with adapter.session() as s:
            assert s.fetchall('SELECT id FROM "main"."t"') == [(1,)]
