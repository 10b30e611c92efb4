"""Databricks without a server: profiles, literals, staged VALUES, and the exact SQL the adapter sends.

minilake runs the SQL on DuckDB untranslated, so it checks the plumbing, not the dialect: every statement
here is also parsed with sqlglot's ``databricks`` dialect, and the literal forms are pinned exactly.
"""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest

from sixtyfour_sync.config.profiles import DatabricksTarget, load_target, parse_target_config
from sixtyfour_sync.errors import ConfigError
from sixtyfour_sync.warehouse import Column, Guard, LogicalType, TableRef, cloud_sql
from sixtyfour_sync.warehouse.databricks import DatabricksAdapter, render_params
from sixtyfour_sync.warehouse.databricks_client import _cast_batch
from sixtyfour_sync.warehouse.databricks_sql import (
    arrow_type_for,
    dml_count,
    literal,
    string_literal,
    values_statements,
)

sqlglot = pytest.importorskip("sqlglot")

BASE = {
    "type": "databricks",
    "host": "dbc-1234.cloud.databricks.com",
    "http_path": "/sql/1.0/warehouses/abc123def",
    "token": "dapi-0123456789abcdef",
    "catalog": "main",
    "schema": "dbt_ada",
}


def adapter(**over: object) -> DatabricksAdapter:
    return DatabricksAdapter(parse_target_config({**BASE, **over}))


def parses(sql: str) -> None:
    """The statement is valid Databricks syntax (sqlglot raises on a parse error)."""
    assert sqlglot.parse(sql, read="databricks", error_level=sqlglot.ErrorLevel.RAISE), sql


# ---------------------------------------------------------------------------------------------- profiles


def test_profile_keys_as_dbt_databricks_writes_them() -> None:
    cfg = parse_target_config({**BASE, "threads": 4, "connect_retries": 3, "session_properties": {"a": 1}})
    assert isinstance(cfg, DatabricksTarget)
    assert (cfg.url, cfg.warehouse_id, cfg.catalog, cfg.schema) == (
        "https://dbc-1234.cloud.databricks.com",
        "abc123def",
        "main",
        "dbt_ada",
    )
    assert "dapi-0123456789abcdef" not in repr(cfg) and "dapi" not in cfg.describe()
    oauth = parse_target_config(
        {**{k: v for k, v in BASE.items() if k != "token"}, "client_id": "sp-1", "client_secret": "s3cr3t-value"}
    )
    assert isinstance(oauth, DatabricksTarget) and oauth.token is None and "s3cr3t" not in repr(oauth)
    legacy = parse_target_config({**BASE, "database": "main", "http_path": "/sql/1.0/endpoints/xyz"})
    assert isinstance(legacy, DatabricksTarget) and legacy.warehouse_id == "xyz"


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"token": None}, "no credentials"),
        ({"http_path": "sql/protocolv1/o/123/0123-456789-abc"}, "not a SQL warehouse path"),
        ({"catalog": "a", "database": "b"}, "both catalog and database"),
        ({"schema": None}, "schema"),
    ],
)
def test_profile_problems_are_clear(over: dict[str, object], message: str) -> None:
    data = {k: v for k, v in {**BASE, **over}.items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        parse_target_config(data)


def test_profile_errors_name_the_line(tmp_path: Path) -> None:
    (tmp_path / "profiles.yml").write_text(
        "sixtyfour:\n  target: dbx\n  outputs:\n    dbx:\n      type: databricks\n"
        "      host: dbc-1234.cloud.databricks.com\n      http_path: /sql/1.0/warehouses/abc\n"
        "      token: \"{{ env_var('DATABRICKS_TOKEN') }}\"\n      schema: s\n      catalgo: main\n"
    )
    with pytest.raises(ConfigError) as info:
        load_target(project_dir=tmp_path, env={"DATABRICKS_TOKEN": "dapi-x"})
    problem = info.value.problems[0]
    assert (problem.path, problem.line, problem.message) == (
        "sixtyfour.outputs.dbx.catalgo",
        10,
        "unknown key 'catalgo'",
    )
    fixed = (tmp_path / "profiles.yml").read_text().replace("catalgo", "catalog")
    (tmp_path / "profiles.yml").write_text(fixed)
    with pytest.raises(ConfigError, match="token is empty"):
        load_target(project_dir=tmp_path, env={"DATABRICKS_TOKEN": " "})


# ---------------------------------------------------------------------------------------------- literals


def test_literals_read_the_same_with_or_without_backslash_escapes() -> None:
    assert string_literal("plain") == "'plain'"
    assert string_literal("it's") == "'it' || chr(39) || 's'"
    assert string_literal("a\\b`c") == "'a' || chr(92) || 'b' || chr(96) || 'c'"
    assert string_literal("'") == "chr(39)"
    assert string_literal("") == "''"
    assert literal(None) == "NULL" and literal(True) == "TRUE" and literal(7) == "7"
    assert literal(1.5) == "CAST('1.5' AS DOUBLE)" and literal(float("nan")) == "CAST('NaN' AS DOUBLE)"
    assert literal(decimal.Decimal("12.340")) == "CAST('12.340' AS DECIMAL(38, 3))"
    paris = dt.timezone(dt.timedelta(hours=2))
    assert literal(dt.datetime(2024, 5, 17, 14, 30, tzinfo=paris)) == "TIMESTAMP '2024-05-17 12:30:00.000000+00:00'"
    assert literal(dt.date(2024, 5, 17)) == "DATE '2024-05-17'"
    assert literal(b"\x00\xff") == "unhex('00ff')"
    for value in ("it's", "a\\b`c", 1.5, dt.date(2024, 5, 17), b"\x01"):
        parses(f"SELECT {literal(value)}")


def test_placeholders_become_literals_outside_strings_and_comments() -> None:
    sql = render_params("UPDATE t SET a = ?, b = ? WHERE c = '?' AND d = ? -- ?", ["x'y", None, 3])
    assert sql == "UPDATE t SET a = 'x' || chr(39) || 'y', b = NULL WHERE c = '?' AND d = 3 -- ?"
    with pytest.raises(ValueError, match="placeholder"):
        render_params("SELECT ?", [])


def test_staged_values_are_built_column_wise_and_split_by_size() -> None:
    data = pa.table(
        {
            "id": pa.array([1, None], pa.int64()),
            "score": [0.25, None],
            "name": ["O'Hara \\ `x`", None],
            "ok": [True, None],
            "at": pa.array([dt.datetime(2024, 5, 17, 12, 30, 45, 123456), None], pa.timestamp("us")),
            "day": pa.array([dt.date(2024, 5, 17), None]),
        }
    )
    (statement,) = values_statements("INSERT INTO s (id, score, name, ok, at, day)", data)
    assert statement == (
        "INSERT INTO s (id, score, name, ok, at, day) VALUES (1, CAST('0.25' AS DOUBLE), 'O' || chr(39) || "
        "'Hara ' || chr(92) || ' ' || chr(96) || 'x' || chr(96) || '', TRUE, TIMESTAMP '2024-05-17 "
        "12:30:45.123456+00:00', DATE '2024-05-17'), (NULL, NULL, NULL, NULL, NULL, NULL)"
    )
    parses(statement)
    many = pa.table({"id": pa.array(range(1000), pa.int64())})
    chunks = list(values_statements("INSERT INTO s (id)", many, max_bytes=1000))
    assert len(chunks) > 1 and all(len(c) < 1100 for c in chunks)
    assert sum(c.count("(") for c in chunks) - len(chunks) == 1000


def test_result_types_and_dml_counts() -> None:
    assert arrow_type_for("TIMESTAMP", None) == pa.timestamp("us", tz="UTC")
    assert arrow_type_for(None, "BIGINT") == pa.int64() and arrow_type_for(None, "DECIMAL(10,2)") is None
    assert dml_count(["num_affected_rows", "num_inserted_rows"], [5, 2]) == 5
    assert dml_count(["Count"], [3]) == 3 and dml_count([], None) == 0
    batch = pa.record_batch({"at": ["2024-05-17 12:30:45", None], "n": [1, 2]})
    cast = _cast_batch(batch, ["at", "n"], [pa.timestamp("us", tz="UTC"), pa.int64()])
    assert cast.column(0).to_pylist()[0] == dt.datetime(2024, 5, 17, 12, 30, 45, tzinfo=dt.timezone.utc)


# ---------------------------------------------------------------------------------------------- exact SQL


def test_names_are_backticked_and_fold_to_lower_case() -> None:
    a = adapter()
    assert a.table_sql(TableRef("Leads")) == "`main`.`dbt_ada`.`leads`"
    assert a.table_sql(TableRef("t", schema="S", database="Other")) == "`other`.`s`.`t`"
    no_catalog = adapter(catalog=None)
    assert no_catalog.table_sql(TableRef("t")) == "`dbt_ada`.`t`"
    assert no_catalog.create_schema_sql("dbt_ada") == "CREATE SCHEMA IF NOT EXISTS `dbt_ada`"
    assert a.create_schema_sql("dbt_ada") == "CREATE SCHEMA IF NOT EXISTS `main`.`dbt_ada`"


def test_ddl_merge_and_insert_if_absent() -> None:
    a = adapter()
    key = [Column("lead_id", LogicalType.BIGINT)]
    cols = [Column("email", LogicalType.TEXT), Column("tags", LogicalType.JSON), Column("at", LogicalType.TIMESTAMP)]
    create = a.create_table_sql(TableRef("leads_enriched"), key, cols)
    assert create == (
        "CREATE TABLE IF NOT EXISTS `main`.`dbt_ada`.`leads_enriched` (`lead_id` BIGINT NOT NULL, `email` STRING, "
        "`tags` STRING, `at` TIMESTAMP) USING DELTA"
    )
    add = a.add_column_sql(TableRef("leads_enriched"), Column("title", LogicalType.TEXT))
    assert add == "ALTER TABLE `main`.`dbt_ada`.`leads_enriched` ADD COLUMN `title` STRING"
    guard = Guard(when="__write_email")
    merge = cloud_sql.merge_sql(
        target=a.table_sql(TableRef("leads_enriched")),
        source=a.table_sql(TableRef("_sixtyfour_stage_1")),
        key=["lead_id"],
        set_columns=["email"],
        guards={"email": guard},
        quote=a.quote,
    )
    assert merge == (
        "MERGE INTO `main`.`dbt_ada`.`leads_enriched` AS t USING `main`.`dbt_ada`.`_sixtyfour_stage_1` AS s ON "
        "t.`lead_id` = s.`lead_id` WHEN MATCHED THEN UPDATE SET `email` = CASE WHEN s.`__write_email` THEN "
        "s.`email` ELSE t.`email` END WHEN NOT MATCHED THEN INSERT (`lead_id`, `email`) VALUES (s.`lead_id`, "
        "CASE WHEN s.`__write_email` THEN s.`email` END)"
    )
    absent = a.insert_if_absent_sql(TableRef("_sixtyfour_sync_leases"), ["sync_name", "expires_epoch"], ["sync_name"])
    assert absent == (
        "MERGE INTO `main`.`dbt_ada`.`_sixtyfour_sync_leases` AS t USING (SELECT ? AS `sync_name`, ? AS "
        "`expires_epoch`) AS s ON t.`sync_name` = s.`sync_name` WHEN NOT MATCHED THEN INSERT (`sync_name`, "
        "`expires_epoch`) VALUES (s.`sync_name`, s.`expires_epoch`)"
    )
    for sql in (create, add, merge, render_params(absent, ["enrich_leads", 0.0])):
        parses(sql)


def test_hashing_time_and_selection_sql() -> None:
    a = adapter()
    assert a.row_hash_sql(["a"]) == (
        "MD5((CASE WHEN `a` IS NULL THEN 'N' ELSE ('V' || CAST(LENGTH(CAST(`a` AS STRING)) AS STRING) || ':' || "
        "CAST(`a` AS STRING)) END))"
    )
    assert a.now_epoch_sql() == "unix_micros(current_timestamp) / 1000000"
    assert a.age_seconds_sql("t.`at`") == "(unix_micros(current_timestamp) - unix_micros(t.`at`)) / 1000000"
    src = a.source_sql(table=TableRef("leads"), columns=["lead_id", "name"], where="country = 'US'")
    for sql in (
        src,
        a.clean_source_sql(src, ["lead_id"]),
        f"SELECT {a.row_hash_sql(['name', 'lead_id'], alias='t')} FROM {a.table_sql(TableRef('leads'))} AS t",
        f"SELECT {a.now_epoch_sql()}, {a.age_seconds_sql('current_timestamp')}",
        a.limit_sql(src, 0),
        "SELECT column_name, data_type FROM information_schema.columns WHERE LOWER(table_schema) = LOWER('s')",
    ):
        parses(sql)


# ---------------------------------------------------------------------------------------------- result links


def _arrow_bytes(values: list[int]) -> bytes:
    sink = pa.BufferOutputStream()
    table = pa.table({"n": pa.array(values, pa.int64())})
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _link(index: int, url: str, next_index: int | None = None) -> SimpleNamespace:
    return SimpleNamespace(chunk_index=index, external_link=url, next_chunk_index=next_index)


def test_result_chunks_follow_links_and_refresh_an_expired_one() -> None:
    import httpx

    from sixtyfour_sync.warehouse.databricks_client import StatementFailed, StatementRunner

    seen: list[httpx.Request] = []

    def storage(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if "sig=old" in str(request.url):
            return httpx.Response(403, text="Request has expired")
        if "chunk1" in str(request.url):
            return httpx.Response(500, text="boom")
        return httpx.Response(200, content=_arrow_bytes([1, 2] if "chunk0" in str(request.url) else [3]))

    refreshed = SimpleNamespace(external_links=[_link(0, "https://store.example/chunk0?sig=new", None)])
    api = SimpleNamespace(get_statement_result_chunk_n=lambda statement_id, index: refreshed)
    cfg = parse_target_config(BASE)
    assert isinstance(cfg, DatabricksTarget)
    runner = StatementRunner(
        SimpleNamespace(statement_execution=api), cfg, http=httpx.Client(transport=httpx.MockTransport(storage))
    )
    columns = [SimpleNamespace(name="n", type_name=None, type_text="BIGINT")]
    response = SimpleNamespace(
        statement_id="st-1",
        manifest=SimpleNamespace(schema=SimpleNamespace(columns=columns)),
        result=SimpleNamespace(external_links=[_link(0, "https://store.example/chunk0?sig=old", None)]),
    )
    assert [r["n"] for b in runner.batches(response) for r in b.to_pylist()] == [1, 2]
    assert [str(r.url).split("?")[1] for r in seen] == ["sig=old", "sig=new"]
    assert all("authorization" not in r.headers for r in seen)  # presigned: the token never goes along

    response.result = SimpleNamespace(external_links=[_link(1, "https://store.example/chunk1?sig=x", None)])
    with pytest.raises(StatementFailed) as info:
        list(runner.batches(response))
    assert "500" in str(info.value) and "sig=x" not in str(info.value)
