"""The SQLAlchemy adapter: exact SQL per dialect without a database, then MariaDB and SQLite for real.

The behaviour every backend shares lives in test_suite.py; this file covers what only these dialects do:
MySQL's update-join, backtick quoting and DATETIME-as-UTC, SQLite's md5 function and real transactions,
paramstyle conversion, and driver errors that never echo bound values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from sixtyfour_sync.config.profiles import parse_target_config
from sixtyfour_sync.errors import ConfigError, DataError, MissingDriverError, UnsafeIdentifierError, WarehouseError
from sixtyfour_sync.warehouse import connect
from sixtyfour_sync.warehouse.sql import ddl, upsert
from sixtyfour_sync.warehouse.sqlalchemy import (
    MySQLAdapter,
    SqlAlchemyAdapter,
    SQLiteAdapter,
    arrow_from_rows,
    rows_to_batches,
)
from sixtyfour_sync.warehouse.types import Column, LogicalType, TableRef, UpsertPart
from tests.services import require_service

MARIADB_HOST, MARIADB_PORT = "127.0.0.1", 3306


def unique(prefix: str) -> str:
    """A short, unique, lower-case identifier."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


MYSQL_URL = f"mysql+pymysql://root@{MARIADB_HOST}:{MARIADB_PORT}"
T = TableRef("leads_enriched")
KEY = [Column("lead_id", LogicalType.BIGINT)]
COLS = [
    Column("email", LogicalType.TEXT),
    Column("employees", LogicalType.BIGINT),
    Column("tags", LogicalType.JSON),
    Column("_sixtyfour_enriched_at", LogicalType.TIMESTAMP),
]
UTC = dt.timezone.utc


def _cfg(url: str, schema: str | None = None) -> Any:
    data: dict[str, Any] = {"type": "sqlalchemy", "url": url}
    if schema:
        data["schema"] = schema
    return parse_target_config(data)


# --------------------------------------------------------------------------------------------------
# Without a database


@pytest.fixture
def mysql_offline() -> Iterator[SqlAlchemyAdapter]:
    # create_engine does not connect: SQL rendering needs only the dialect.
    adapter = SqlAlchemyAdapter(_cfg(f"{MYSQL_URL}/shop", schema="shop"))
    yield adapter
    adapter.close()


@pytest.fixture
def sqlite_offline(tmp_path: Path) -> Iterator[SqlAlchemyAdapter]:
    adapter = SqlAlchemyAdapter(_cfg(f"sqlite:///{tmp_path / 'offline.db'}"))
    yield adapter
    adapter.close()


def test_the_url_picks_the_dialect_variant(mysql_offline: SqlAlchemyAdapter, sqlite_offline: SqlAlchemyAdapter) -> None:
    assert type(mysql_offline) is MySQLAdapter
    assert type(sqlite_offline) is SQLiteAdapter
    assert mysql_offline.type == sqlite_offline.type == "sqlalchemy"
    assert mysql_offline.capabilities.json_type == "JSON"
    assert mysql_offline.capabilities.max_identifier_length == 64
    assert sqlite_offline.capabilities.json_type is None


def test_mysql_exact_upsert_sql(mysql_offline: MySQLAdapter) -> None:
    a = mysql_offline
    assert upsert.update_from_sql(a.names, T, "`shop`.`stg`", ["org_id", "lead_id"], ["email", "tags"]) == (
        "UPDATE `shop`.`leads_enriched` AS t JOIN `shop`.`stg` AS s "
        "ON t.`org_id` = s.`org_id` AND t.`lead_id` = s.`lead_id` SET t.`email` = s.`email`, t.`tags` = s.`tags`"
    )
    assert upsert.insert_missing_sql(a.names, T, "`shop`.`stg`", ["lead_id"], ["email"]) == (
        "INSERT INTO `shop`.`leads_enriched` (`lead_id`, `email`) SELECT s.`lead_id`, s.`email` FROM `shop`.`stg` "
        "AS s WHERE NOT EXISTS (SELECT 1 FROM `shop`.`leads_enriched` AS t WHERE t.`lead_id` = s.`lead_id`)"
    )
    assert ddl.create_stage_sql(a.names, a._stage_table_sql("_sixtyfour_stage_x", T), T, ["lead_id", "email"]) == (
        "CREATE TEMPORARY TABLE `shop`.`_sixtyfour_stage_x` AS SELECT `lead_id`, `email` "
        "FROM `shop`.`leads_enriched` WHERE 1 = 0"
    )


def test_mysql_ddl_uses_varchar_keys_datetime_and_json(mysql_offline: MySQLAdapter) -> None:
    sql = mysql_offline.create_table_sql(T, [Column("email_key", LogicalType.TEXT)], COLS)
    assert sql == (
        "CREATE TABLE IF NOT EXISTS `shop`.`leads_enriched` (`email_key` VARCHAR(255) NOT NULL, `email` LONGTEXT, "
        "`employees` BIGINT, `tags` JSON, `_sixtyfour_enriched_at` DATETIME(6), PRIMARY KEY (`email_key`))"
    )


def test_mysql_hash_concatenates_with_concat_not_pipes(mysql_offline: MySQLAdapter) -> None:
    sql = mysql_offline.row_hash_sql(["a", "b"])
    assert "||" not in sql
    assert sql.startswith("MD5(CONCAT(CASE WHEN `a` IS NULL THEN 'N' ELSE CONCAT('V', CAST(LENGTH(CAST(`a` AS CHAR))")
    assert mysql_offline.now_sql() == "UTC_TIMESTAMP(6)"


def test_mysql_placeholders_become_format_and_percent_is_escaped(mysql_offline: MySQLAdapter) -> None:
    sql, params = mysql_offline.driver_sql("SELECT '?%' AS x, `a?` FROM t WHERE a LIKE 'b%' AND c = ?", ["v"])
    assert sql == "SELECT '?%%' AS x, `a?` FROM t WHERE a LIKE 'b%%' AND c = %s"
    assert params == ("v",)


def test_mysql_quoting_rejects_backticks_and_injection(mysql_offline: MySQLAdapter) -> None:
    assert mysql_offline.quote("Lead_Id") == "`Lead_Id`"
    for bad in ["a`b", "x; DROP TABLE t", "a -- b", "naïve", "a b"]:
        with pytest.raises(UnsafeIdentifierError, match="not a safe identifier"):
            mysql_offline.quote(bad, what="struct field")
    with pytest.raises(UnsafeIdentifierError, match="at most 64"):
        mysql_offline.quote("x" * 65)


def test_sqlite_exact_sql(sqlite_offline: SQLiteAdapter) -> None:
    a = sqlite_offline
    assert upsert.update_from_sql(a.names, T, '"stg"', ["lead_id"], ["email"]) == (
        'UPDATE "leads_enriched" AS t SET "email" = s."email" FROM "stg" AS s WHERE t."lead_id" = s."lead_id"'
    )
    assert a.sql_type(LogicalType.JSON) == "TEXT"
    assert a.sql_type(LogicalType.TIMESTAMP) == "TIMESTAMP"
    assert a.age_seconds_sql('"at"') == "((JULIANDAY('now') - JULIANDAY(\"at\")) * 86400.0)"
    assert a.driver_sql("SELECT '?' , ?", [1]) == ("SELECT '?' , ?", (1,))


def test_generic_dialect_uses_the_correlated_update(tmp_path: Path) -> None:
    # A plain SqlAlchemyAdapter over any engine: the portable statements.
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'g.db'}", paramstyle="named")
    a = SqlAlchemyAdapter(url="generic://", engine=engine)
    try:
        assert type(a) is SqlAlchemyAdapter
        assert upsert.update_from_sql(a.names, T, '"stg"', ["lead_id"], ["email", "title"]) == (
            'UPDATE "leads_enriched" SET "email" = (SELECT s."email" FROM "stg" s WHERE s."lead_id" = '
            '"leads_enriched"."lead_id"), "title" = (SELECT s."title" FROM "stg" s WHERE s."lead_id" = '
            '"leads_enriched"."lead_id") WHERE EXISTS (SELECT 1 FROM "stg" s WHERE s."lead_id" = '
            '"leads_enriched"."lead_id")'
        )
        assert a.driver_sql("SELECT ?, '?', ?", [1, 2]) == ("SELECT :p0, '?', :p1", {"p0": 1, "p1": 2})
    finally:
        a.close()


def test_bad_urls_and_missing_drivers_say_what_to_do() -> None:
    with pytest.raises(MissingDriverError) as info:
        SqlAlchemyAdapter(url="mysql+mysqldb://u:pw-hidden@h/db")
    assert "pw-hidden" not in str(info.value)
    with pytest.raises(ConfigError):
        SqlAlchemyAdapter(url="not a url")


def test_describe_masks_the_password() -> None:
    a = SqlAlchemyAdapter(_cfg("mysql+pymysql://root:s3cret-pw@127.0.0.1/db"))
    try:
        assert "s3cret-pw" not in repr(a) and "s3cret-pw" not in a.describe()
        assert "***" in a.describe()
    finally:
        a.close()


def test_arrow_from_rows_keeps_the_first_schema_and_falls_back_to_text() -> None:
    first = arrow_from_rows(["a", "b", "c"], [(1, None, "x"), (2, None, "y")])
    assert first.schema.field("a").type == pa.int64() and pa.types.is_null(first.schema.field("b").type)
    later = arrow_from_rows(["a", "b", "c"], [(3, 1.5, "z")], first.schema)
    assert later.schema.field("a").type == pa.int64() and later.column(1).to_pylist() == [1.5]
    mixed = arrow_from_rows(["a"], [(1,), ("two",)])
    assert mixed.column(0).to_pylist() == ["1", "two"]
    with pytest.raises(DataError, match="column 'a' changes type while streaming"):
        arrow_from_rows(["a", "b", "c"], [("three", None, "x")], first.schema)
    empty = arrow_from_rows(["a"], [])
    assert empty.num_rows == 0


def _fetcher(rows: list[tuple[Any, ...]]) -> tuple[Callable[[int], list[tuple[Any, ...]]], list[int]]:
    asked: list[int] = []

    def fetchmany(n: int) -> list[tuple[Any, ...]]:
        asked.append(n)
        out = rows[:n]
        del rows[:n]
        return out

    return fetchmany, asked


def test_rows_to_batches_converts_in_slices_and_keeps_one_schema() -> None:
    n = 25_000
    # The text column is NULL for the first 12,000 rows: the first slice cannot know its type.
    rows = [(i, None if i < 12_000 else f"v{i}") for i in range(n)]
    fetchmany, asked = _fetcher(rows)
    batches = list(rows_to_batches(fetchmany, ["id", "v"], batch_rows=20_000))
    assert [b.num_rows for b in batches] == [20_000, 5_000]
    assert max(asked) <= 10_000  # never more than one slice of Python rows at a time
    assert all(b.schema == pa.schema([("id", pa.int64()), ("v", pa.string())]) for b in batches)
    assert batches[0].column(1)[11_999].as_py() is None and batches[0].column(1)[12_000].as_py() == "v12000"
    assert sum(pa.compute.sum(b.column(0)).as_py() for b in batches) == sum(range(n))


def test_rows_to_batches_of_an_empty_result() -> None:
    fetchmany, _ = _fetcher([])
    assert list(rows_to_batches(fetchmany, ["id"], batch_rows=100)) == []


# --------------------------------------------------------------------------------------------------
# SQLite for real


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[SqlAlchemyAdapter]:
    adapter = connect(_cfg(f"sqlite:///{tmp_path / 'real.db'}"))
    assert isinstance(adapter, SqlAlchemyAdapter)
    yield adapter
    adapter.close()


def test_sqlite_md5_matches_python(sqlite: SqlAlchemyAdapter) -> None:
    with sqlite.session() as s:
        assert s.fetchall("SELECT md5(?), md5(NULL)", ["héllo|x"]) == [
            (hashlib.md5("héllo|x".encode()).hexdigest(), None)
        ]


def test_sqlite_rolls_back_ddl_and_dml_together(sqlite: SqlAlchemyAdapter) -> None:
    sqlite.ensure_table(T, KEY, COLS)

    def work() -> None:
        with sqlite.session() as s:
            s.execute('CREATE TABLE "scratch" (x INTEGER)')
            s.insert(T, [{"lead_id": 1, "email": "a@x"}])
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        work()
    assert not sqlite.table_exists(TableRef("scratch"))
    with sqlite.session() as s:
        assert s.fetchall('SELECT COUNT(*) FROM "leads_enriched"') == [(0,)]


def test_sqlite_timestamps_are_utc_text_and_age_works(sqlite: SqlAlchemyAdapter) -> None:
    sqlite.ensure_table(T, KEY, COLS)
    ten_min_ago = dt.datetime.now(UTC) - dt.timedelta(minutes=10)
    plus2 = dt.timezone(dt.timedelta(hours=2))
    data = pa.table(
        {
            "lead_id": [1],
            "_sixtyfour_enriched_at": pa.array([ten_min_ago.astimezone(plus2)], pa.timestamp("us", tz="+02:00")),
        }
    )
    sqlite.upsert(T, ["lead_id"], [UpsertPart(data, ["_sixtyfour_enriched_at"])])
    col = sqlite.quote("_sixtyfour_enriched_at")
    with sqlite.session() as s:
        stored, age = s.fetchall(f'SELECT {col}, {sqlite.age_seconds_sql(col)} FROM "leads_enriched"')[0]
    assert stored == ten_min_ago.strftime("%Y-%m-%d %H:%M:%S.%f") + "+00:00"
    assert 590 < age < 660


def test_sqlite_relative_path_resolves_against_the_project_dir(tmp_path: Path) -> None:
    adapter = connect(_cfg("sqlite:///rel.db"), project_dir=tmp_path)
    try:
        adapter.ensure_table(T, KEY, COLS)
        assert (tmp_path / "rel.db").exists()
    finally:
        adapter.close()


def test_sqlite_unknown_schema_is_a_clear_error(tmp_path: Path) -> None:
    adapter = connect(_cfg(f"sqlite:///{tmp_path / 's.db'}", schema="analytics"))
    try:
        with pytest.raises(WarehouseError, match="schema 'analytics' does not exist"):
            adapter.ensure_schema()
    finally:
        adapter.close()


@pytest.mark.parametrize("paramstyle", ["named", "numeric", "qmark"])
def test_paramstyles_convert_for_real(tmp_path: Path, paramstyle: str) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'p.db'}", paramstyle=paramstyle)
    a = SqlAlchemyAdapter(url=str(engine.url), engine=engine)
    try:
        a.ensure_table(T, KEY, COLS)
        with a.session() as s:
            s.insert(T, [{"lead_id": 1, "email": "it's ? here"}, {"lead_id": 2, "email": "b"}])
            assert s.update(T, {"employees": 5}, {"lead_id": 2}) == 1
            rows = s.select(T, where={"email": "it's ? here"}, columns=["lead_id", "email"])
        assert rows == [{"lead_id": 1, "email": "it's ? here"}]
    finally:
        a.close()


def test_sqlite_stream_batches(sqlite: SqlAlchemyAdapter) -> None:
    sqlite.ensure_table(T, KEY, COLS)
    n = 2_345
    data = pa.table({"lead_id": list(range(n)), "email": [f"e{i}" for i in range(n)]})
    sqlite.upsert(T, ["lead_id"], [UpsertPart(data, ["email"])])
    sizes = [
        b.num_rows for b in sqlite.stream(sqlite.source_sql(table=T, columns=["lead_id", "email"]), batch_rows=1000)
    ]
    assert sizes == [1000, 1000, 345]


# --------------------------------------------------------------------------------------------------
# MariaDB for real


@pytest.fixture
def mariadb() -> Iterator[SqlAlchemyAdapter]:
    require_service("mariadb", MARIADB_HOST, MARIADB_PORT)
    import pymysql

    db = unique("sa")
    root = pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root", password="", autocommit=True)
    try:
        with root.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{db}`")
        adapter = connect(_cfg(f"{MYSQL_URL}/{db}", schema=db))
        assert isinstance(adapter, MySQLAdapter)
        try:
            yield adapter
        finally:
            adapter.close()
    finally:
        with root.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
        root.close()


def test_mariadb_datetime_holds_utc(mariadb: SqlAlchemyAdapter) -> None:
    mariadb.ensure_table(T, KEY, COLS)
    instant = dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    data = pa.table(
        {"lead_id": [1], "_sixtyfour_enriched_at": pa.array([instant], pa.timestamp("us", tz="America/New_York"))}
    )
    mariadb.upsert(T, ["lead_id"], [UpsertPart(data, ["_sixtyfour_enriched_at"])])
    col = mariadb.quote("_sixtyfour_enriched_at")
    with mariadb.session() as s:
        stored, age = s.fetchall(f"SELECT {col}, {mariadb.age_seconds_sql(col)} FROM {mariadb.table_sql(T)}")[0]
    assert stored == dt.datetime(2024, 5, 1, 12, 0)
    expected = (dt.datetime.now(UTC) - instant).total_seconds()
    assert abs(float(age) - expected) < 120


def test_mariadb_text_key_and_json_check(mariadb: SqlAlchemyAdapter) -> None:
    table = TableRef("by_email")
    mariadb.ensure_table(table, [Column("email", LogicalType.TEXT)], [Column("tags", LogicalType.JSON)])
    ok = pa.table({"email": ["a@x", "b@x"], "tags": ['["x"]', '{"k": 1}']})
    assert mariadb.upsert(table, ["email"], [UpsertPart(ok, ["tags"])]).inserted == 2
    bad = pa.table({"email": ["a@x", "c@x"], "tags": ['["changed"]', "{not json"]})
    with pytest.raises(WarehouseError):
        mariadb.upsert(table, ["email"], [UpsertPart(bad, ["tags"])])
    with mariadb.session() as s:
        rows = s.select(table, columns=["email", "tags"], order_by=["email"])
    assert rows == [{"email": "a@x", "tags": '["x"]'}, {"email": "b@x", "tags": '{"k": 1}'}]


def test_mariadb_errors_never_echo_bound_values(mariadb: SqlAlchemyAdapter) -> None:
    mariadb.ensure_table(T, KEY, COLS)
    secret_value = f"value-{uuid.uuid4().hex}"
    with pytest.raises(WarehouseError) as info, mariadb.session() as s:
        s.execute(f"INSERT INTO {mariadb.table_sql(T)} (`lead_id`, `no_such_column`) VALUES (?, ?)", [1, secret_value])
    assert secret_value not in str(info.value)
    assert "no_such_column" in str(info.value)


def test_mariadb_staging_is_temporary_and_update_join_counts(mariadb: SqlAlchemyAdapter) -> None:
    mariadb.ensure_table(T, KEY, COLS)
    first = pa.table({"lead_id": [1, 2, 3], "email": ["a", "b", "c"]})
    assert mariadb.upsert(T, ["lead_id"], [UpsertPart(first, ["email"])]).inserted == 3
    # Same values again: MySQL reports 0 changed rows for an unchanged UPDATE, the counts must not care.
    again = pa.table({"lead_id": [1, 2, 3, 4], "email": ["a", "b", "c", "d"]})
    result = mariadb.upsert(T, ["lead_id"], [UpsertPart(again, ["email"])])
    assert (result.inserted, result.updated) == (1, 3)
    with mariadb.session() as s:
        tables = [r[0] for r in s.fetchall("SHOW TABLES")]
    assert tables == ["leads_enriched"]


def test_mariadb_stream_is_server_side_and_batched(mariadb: SqlAlchemyAdapter) -> None:
    mariadb.ensure_table(T, KEY, COLS)
    n = 2_500
    data = pa.table({"lead_id": list(range(n)), "employees": list(range(n))})
    mariadb.upsert(T, ["lead_id"], [UpsertPart(data, ["employees"])])
    batches = list(mariadb.stream(mariadb.source_sql(table=T, columns=["lead_id", "employees"]), batch_rows=1000))
    assert [b.num_rows for b in batches] == [1000, 1000, 500]
    assert all(b.schema == batches[0].schema for b in batches)
    assert sum(pa.compute.sum(b.column(1)).as_py() for b in batches) == sum(range(n))
