"""PostgreSQL specifics: exact SQL (no database), connection errors, and the COPY-based reader and writer."""

from __future__ import annotations

import datetime as dt
import decimal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sixtyfour_sync.config.profiles import parse_target_config
from sixtyfour_sync.errors import WarehouseError
from sixtyfour_sync.warehouse import Column, LogicalType, TableRef, UpsertPart, connect
from sixtyfour_sync.warehouse.postgres import PINNED_SETTINGS, PostgresAdapter, pin_settings_sql
from sixtyfour_sync.warehouse.sql import upsert
from sixtyfour_sync.warehouse.sql.placeholders import convert_qmark

UTC = dt.timezone.utc


@pytest.fixture
def sql_only() -> PostgresAdapter:
    """An adapter that renders SQL; it never connects."""
    return PostgresAdapter(
        parse_target_config({"type": "postgres", "host": "db.invalid", "user": "u", "dbname": "d", "schema": "crm"})
    )


@pytest.fixture
def pg(pg_config: dict[str, Any]) -> Iterator[PostgresAdapter]:
    schema = f"w_{uuid.uuid4().hex[:10]}"
    adapter = connect(parse_target_config({**pg_config, "schema": schema}))
    assert isinstance(adapter, PostgresAdapter)
    try:
        adapter.ensure_schema(schema)
        yield adapter
    finally:
        try:
            with adapter.session() as s:
                s.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            adapter.close()


# ---------------------------------------------------------------------------------------------- exact SQL


def test_exact_ddl(sql_only: PostgresAdapter) -> None:
    table = TableRef("leads_enriched")
    sql = sql_only.create_table_sql(
        table,
        [Column("org_id", LogicalType.BIGINT), Column("email", LogicalType.TEXT)],
        [Column("tags", LogicalType.JSON), Column("score", LogicalType.DOUBLE), Column("at", LogicalType.TIMESTAMP)],
    )
    assert sql == (
        'CREATE TABLE IF NOT EXISTS "crm"."leads_enriched" ("org_id" BIGINT NOT NULL, "email" TEXT NOT NULL, '
        '"tags" JSONB, "score" DOUBLE PRECISION, "at" TIMESTAMPTZ, PRIMARY KEY ("org_id", "email"))'
    )
    assert [sql_only.sql_type(t) for t in LogicalType] == [
        "TEXT",
        "BIGINT",
        "DOUBLE PRECISION",
        "BOOLEAN",
        "JSONB",
        "TIMESTAMPTZ",
    ]


def test_exact_upsert_and_selection_sql(sql_only: PostgresAdapter) -> None:
    table = TableRef("leads_enriched")
    names = sql_only.names
    assert upsert.update_from_sql(names, table, '"stg"', ["lead_id"], ["email"]) == (
        'UPDATE "crm"."leads_enriched" AS t SET "email" = s."email" FROM "stg" AS s WHERE t."lead_id" = s."lead_id"'
    )
    assert upsert.insert_missing_sql(names, table, '"stg"', ["lead_id"], ["email"]) == (
        'INSERT INTO "crm"."leads_enriched" ("lead_id", "email") SELECT s."lead_id", s."email" FROM "stg" AS s '
        'WHERE NOT EXISTS (SELECT 1 FROM "crm"."leads_enriched" AS t WHERE t."lead_id" = s."lead_id")'
    )
    assert sql_only.clean_source_sql("select * from leads", ["lead_id"]) == (
        'SELECT s.* FROM (select * from leads) AS s JOIN (SELECT u."lead_id" FROM (select * from leads) AS u '
        'WHERE u."lead_id" IS NOT NULL GROUP BY u."lead_id" HAVING COUNT(*) = 1) AS k ON s."lead_id" = k."lead_id"'
    )
    assert sql_only.row_hash_sql(["a"]) == (
        "MD5((CASE WHEN \"a\" IS NULL THEN 'N' ELSE ('V' || CAST(LENGTH(CAST(\"a\" AS TEXT)) AS TEXT) || ':' || "
        'CAST("a" AS TEXT)) END))'
    )


def test_identifier_rules(sql_only: PostgresAdapter) -> None:
    assert sql_only.quote("lead_id") == '"lead_id"'
    assert sql_only.quote("Lead_ID") == '"Lead_ID"'  # mixed case is taken as exactly spelled
    assert sql_only.quote("price$usd") == '"price$usd"'
    assert sql_only.find_column(["lead_id"], "LEAD_ID") == "lead_id"  # unique case-insensitive match


def test_placeholders_are_converted_outside_literals_only() -> None:
    sql = "SELECT '?', \"a?\", x FROM t WHERE a = ? AND b LIKE '50%' -- what?\n AND c = ?"
    assert convert_qmark(sql) == "SELECT '?', \"a?\", x FROM t WHERE a = %s AND b LIKE '50%%' -- what?\n AND c = %s"


# ---------------------------------------------------------------------------------------------- connection


def test_connection_error_names_the_server_but_not_the_password() -> None:
    cfg = parse_target_config(
        {
            "type": "postgres",
            "host": "127.0.0.1",
            "port": 1,
            "user": "sync_user",
            "password": "s3cr3t-pw-value",
            "dbname": "crm",
            "connect_timeout": 2,
        }
    )
    with pytest.raises(WarehouseError) as info:
        connect(cfg)
    text = str(info.value)
    assert "sync_user@127.0.0.1:1/crm" in text
    assert "s3cr3t-pw-value" not in text and "s3cr3t-pw-value" not in repr(info.value)
    assert "s3cr3t-pw-value" not in repr(cfg) and "s3cr3t-pw-value" not in str(cfg)


def test_wrong_database_is_reported(pg_config: dict[str, Any]) -> None:
    with pytest.raises(WarehouseError, match="no_such_db_sf"):
        connect(parse_target_config({**pg_config, "dbname": "no_such_db_sf"}))


# ---------------------------------------------------------------------------------------------- reading


def test_stream_preserves_types_nulls_and_awkward_text(pg: PostgresAdapter) -> None:
    t = pg.table_sql(TableRef("typed"))
    with pg.session() as s:
        s.execute(
            f"CREATE TABLE {t} (i8 bigint, i4 int, i2 smallint, f8 float8, f4 real, num numeric(10,3), "
            "bignum numeric, b boolean, t text, empty text, tstz timestamptz, ts timestamp, d date, j jsonb, "
            "arr int[], u uuid, vc varchar(3))"
        )
        s.execute(
            f"INSERT INTO {t} VALUES (1, 2, 3, 1.5, 2.25, 12.345, 1e30, true, 'a,\"b\"' || chr(10) || 'c\\d', '', "
            "'2024-05-17 12:30:45.123456+02', '2024-05-17 12:30:45', '2024-05-17', '{\"a\": [1, 2]}', "
            "ARRAY[1, 2], '7a6f2b4c-8e3d-4c5e-9f1a-2b3c4d5e6f70', 'x')"
        )
        s.execute(f"INSERT INTO {t} (i8) VALUES (NULL)")
    sql = f"SELECT * FROM {t} WHERE i8 = ? OR i8 IS NULL ORDER BY i8 NULLS LAST"
    batches = list(pg.stream(sql, [1]))
    table = pa.Table.from_batches(batches)
    types = {f.name: f.type for f in table.schema}
    assert types["i8"] == pa.int64() and types["i4"] == pa.int32() and types["i2"] == pa.int16()
    assert types["num"] == pa.decimal128(10, 3) and types["bignum"] == pa.string()
    assert types["tstz"] == pa.timestamp("us", tz="UTC") and types["ts"] == pa.timestamp("us")
    row, nulls = table.to_pylist()
    assert row["f8"] == 1.5 and row["f4"] == pytest.approx(2.25)
    assert row["num"] == decimal.Decimal("12.345") and row["bignum"] == "1000000000000000000000000000000"
    assert row["b"] is True
    assert row["t"] == 'a,"b"\nc\\d' and row["empty"] == ""
    assert row["tstz"] == dt.datetime(2024, 5, 17, 10, 30, 45, 123456, tzinfo=UTC)
    assert row["ts"] == dt.datetime(2024, 5, 17, 12, 30, 45)
    assert row["d"] == dt.date(2024, 5, 17)
    assert row["j"] == '{"a": [1, 2]}' and row["arr"] == "[1,2]"
    assert row["u"] == "7a6f2b4c-8e3d-4c5e-9f1a-2b3c4d5e6f70" and row["vc"] == "x"
    assert all(v is None for v in nulls.values())


def test_stream_many_rows_in_bounded_batches_and_abandon(pg: PostgresAdapter) -> None:
    sql = "SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 30000) g"
    sizes = [b.num_rows for b in pg.stream(sql, batch_rows=4000)]
    assert sum(sizes) == 30000 and max(sizes) <= 4000
    stream = pg.stream(sql, batch_rows=1000)
    assert next(stream).num_rows <= 1000
    stream.close()  # abandoned mid-COPY: the next stream and sessions still work
    assert sum(b.num_rows for b in pg.stream("SELECT 1 AS x")) == 1
    with pg.session() as s:
        assert s.fetchall("SELECT 2")[0][0] == 2


def test_stream_of_bad_sql_is_a_warehouse_error(pg: PostgresAdapter) -> None:
    with pytest.raises(WarehouseError, match="no_such_table"):
        list(pg.stream("SELECT * FROM no_such_table"))
    assert sum(b.num_rows for b in pg.stream("SELECT 1 AS x")) == 1


# ---------------------------------------------------------------------------------------------- writing


def test_upsert_into_jsonb_timestamptz_and_a_table_without_primary_key(pg: PostgresAdapter) -> None:
    table = TableRef("legacy")
    with pg.session() as s:
        # Created by another tool: no primary key, no unique index.
        s.execute(f"CREATE TABLE {pg.table_sql(table)} (id bigint, data jsonb, at timestamptz, note text)")
        s.execute(f"INSERT INTO {pg.table_sql(table)} VALUES (1, NULL, NULL, 'theirs')")
    at = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    data = pa.table(
        {
            "id": pa.array([1, 2], pa.int64()),
            "data": pa.array([{"k": "v"}, None], pa.struct([("k", pa.string())])),
            "at": pa.array([at, at], pa.timestamp("us", tz="UTC")),
        }
    )
    result = pg.upsert(table, ["id"], [UpsertPart(data, ["data", "at"])])
    assert (result.inserted, result.updated) == (1, 1)
    with pg.session() as s:
        rows = s.select(table, order_by=["id"])
        setting = s.fetchall("SELECT current_setting('enable_hashjoin')")[0][0]
    assert rows == [
        {"id": 1, "data": {"k": "v"}, "at": at, "note": "theirs"},
        {"id": 2, "data": None, "at": at, "note": None},
    ]
    assert setting == "on"


def test_zoned_text_keeps_the_instant_for_every_unit_zone_and_year() -> None:
    """What COPY receives for a time-zone-aware timestamp: the instant, its offset, NULL as NULL (no server)."""
    from sixtyfour_sync.warehouse.postgres_copy import zoned_text

    utc = pa.array(
        [
            dt.datetime(2026, 12, 1, 19, 8, 14, 403057, tzinfo=UTC),
            None,
            dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            dt.datetime(1, 1, 1, tzinfo=UTC),
            dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
        ],
        pa.timestamp("us", tz="UTC"),
    )
    assert zoned_text(utc).to_pylist() == [
        "2026-12-01 19:08:14.403057+00",
        None,
        "1969-12-31 23:59:59.999999+00",
        "0001-01-01 00:00:00.000000+00",
        "9999-12-31 23:59:59.000000+00",
    ]
    plus5 = pa.array([dt.datetime(2026, 1, 1, 5, 0, tzinfo=UTC)], pa.timestamp("s", tz="+05:00"))
    assert zoned_text(plus5).to_pylist() == ["2026-01-01 05:00:00+00"]


def test_copy_in_of_zoned_timestamps_round_trips(pg: PostgresAdapter) -> None:
    """Every unit and zone, NULLs, before 1970, and the naive kind beside them, read back as written."""
    table = TableRef("stamps")
    key = [Column("id", LogicalType.BIGINT)]
    pg.ensure_table(table, key, [Column("at", LogicalType.TIMESTAMP)])
    tokyo = dt.timezone(dt.timedelta(hours=9))
    values = [
        dt.datetime(2026, 12, 1, 19, 8, 14, 403057, tzinfo=UTC),
        None,
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        dt.datetime(2000, 2, 29, 12, 0, tzinfo=tokyo),
    ]
    ids = pa.array(range(len(values)), pa.int64())
    for n, typ in enumerate(
        [
            pa.timestamp("us", tz="UTC"),
            pa.timestamp("ms", tz="UTC"),
            pa.timestamp("s", tz="Asia/Tokyo"),
            pa.timestamp("ns", tz="+09:00"),
        ]
    ):
        cut = [v.replace(microsecond=v.microsecond // 1000 * 1000) if v and typ.unit != "us" else v for v in values]
        cut = [v.replace(microsecond=0) if v and typ.unit == "s" else v for v in cut]
        data = pa.table({"id": pc.add(ids, n * 10), "at": pa.array(cut, typ)})
        pg.upsert(table, ["id"], [UpsertPart(data, ["at"], insert_only=True)])
        with pg.session() as s:
            got = [r["at"] for r in s.select(table, order_by=["id"]) if n * 10 <= r["id"] < n * 10 + 10]
        assert got == cut, typ


def test_upsert_50k_shuffled_rows(pg: PostgresAdapter) -> None:
    n = 50_000
    table = TableRef("big")
    pg.ensure_table(
        table, [Column("id", LogicalType.BIGINT)], [Column("v", LogicalType.TEXT), Column("keep", LogicalType.TEXT)]
    )
    base = pa.table({"id": pa.array(range(n), pa.int64()), "v": [f"a{i}" for i in range(n)]})
    pg.upsert(table, ["id"], [UpsertPart(base, ["v"])])
    with pg.session() as s:
        s.execute(f"UPDATE {pg.table_sql(table)} SET keep = 'k'")
    shuffled = base.take(pa.array([(i * 7919) % n for i in range(n)])).set_column(
        1, "v", pa.array([f"b{(i * 7919) % n}" for i in range(n)])
    )
    start = time.perf_counter()
    result = pg.upsert(table, ["id"], [UpsertPart(shuffled, ["v"])])
    elapsed = time.perf_counter() - start
    assert (result.inserted, result.updated) == (0, n)
    with pg.session() as s:
        assert s.fetchall(f"SELECT count(*) FROM {pg.table_sql(table)} WHERE v = 'b' || id AND keep = 'k'")[0][0] == n
    assert elapsed < 10, f"50k-row upsert took {elapsed:.2f}s"


def test_mixed_case_names_are_exact_and_lower_case_names_fold(pg: PostgresAdapter) -> None:
    with pg.session() as s:
        s.execute(f'CREATE TABLE "{pg.default_schema}".leads (Lead_ID bigint, "Email" text)')
    cols = pg.get_columns(TableRef("leads"))
    assert list(cols) == ["lead_id", "Email"]  # unquoted Lead_ID was folded by PostgreSQL
    assert pg.find_column(cols, "LEAD_ID") == "lead_id" and pg.find_column(cols, "Email") == "Email"
    assert pg.table_exists(TableRef("leads")) and not pg.table_exists(TableRef("Leads"))


def test_every_connection_pins_the_settings_values_are_rendered_with(pg: PostgresAdapter) -> None:
    names = ", ".join(f"current_setting('{k}') AS s{i}" for i, k in enumerate(PINNED_SETTINGS))
    with pg.session() as s:
        main = s.fetchall(f"SELECT {names}")[0]
    streamed = next(iter(pg.stream(f"SELECT {names}"))).to_pylist()[0]
    assert list(main) == list(streamed.values()) == list(PINNED_SETTINGS.values())
    assert pin_settings_sql().startswith("SELECT set_config('TimeZone', 'UTC', false), ")


def test_every_connection_turns_jit_off(pg: PostgresAdapter) -> None:
    """JIT compilation costs more than the selection it would speed up: off on every connection."""
    with pg.session() as s:
        assert s.fetchall("SELECT current_setting('jit')")[0][0] == "off"
    streamed = next(iter(pg.stream("SELECT current_setting('jit') AS jit"))).to_pylist()[0]
    assert streamed["jit"] == "off"


def test_jsonb_key_operator_next_to_parameters(pg: PostgresAdapter) -> None:
    t = pg.table_sql(TableRef("docs"))
    with pg.session() as s:
        s.execute(f"CREATE TABLE {t} (id bigint, data jsonb)")
        s.execute(f"INSERT INTO {t} VALUES (1, '{{\"vip\": true}}'), (2, '{{}}'), (3, '{{\"vip\": 1}}')")
        rows = s.fetchall(f"SELECT id FROM {t} WHERE data ? 'vip' AND id > ? ORDER BY id", [1])
        dollar = s.fetchall("SELECT $$a ? b$$, ?::int", [5])
    assert rows == [(3,)]
    assert dollar == [("a ? b", 5)]
    got = [r["id"] for b in pg.stream(f"SELECT id FROM {t} WHERE data ? 'vip' AND id < ?", [3]) for r in b.to_pylist()]
    assert got == [1]


def test_the_repeat_check_finds_rows_sharing_their_inputs_whatever_their_types(pg: PostgresAdapter) -> None:
    """The one count that lets a first run keep the plain key order (engine/rows/select.py inputs_repeat_sql):
    0 only when no two rows share their inputs; rows with the same inputs, NULLs included, are found, and types
    without a hash of their own (json, arrays, floats) are counted by their text."""
    from sixtyfour_sync.engine.rows.select import inputs_repeat_sql

    table = TableRef("src")
    with pg.session() as s:
        s.execute(f"CREATE TABLE {pg.table_sql(table)} (id INT, name TEXT, info JSON, tags TEXT[], score FLOAT8)")
        s.execute(
            f"INSERT INTO {pg.table_sql(table)} VALUES (1, 'a', '{{\"x\": 1}}', '{{p,q}}', 0.1), "
            "(2, 'a', '{\"x\": 2}', '{p,q}', 0.1), (3, NULL, NULL, NULL, NULL), (4, '', '[]', '{}', -0.0), "
            "(5, 'a,b', NULL, '{p}', 1e300)"
        )
    source = f"SELECT * FROM {pg.table_sql(table)}"
    inputs = ["name", "info", "tags", "score"]

    def repeats(where: str = "") -> int:
        with pg.session() as s:
            row = s.fetchone(inputs_repeat_sql(pg, inputs, source + where))
        return int(row[0]) if row else -1

    assert repeats() == 0
    with pg.session() as s:
        s.execute(f"INSERT INTO {pg.table_sql(table)} SELECT 6, name, info, tags, score FROM {pg.table_sql(table)} "
                  "WHERE id = 3")  # fmt: skip
    assert repeats() == 1  # two rows of NULL inputs ask the same question
    with pg.session() as s:
        s.execute(f"INSERT INTO {pg.table_sql(table)} SELECT 7, name, info, tags, score FROM {pg.table_sql(table)} "
                  "WHERE id = 1")  # fmt: skip
    assert repeats() == 2
    assert repeats(" WHERE id <> 6 AND id <> 7") == 0
