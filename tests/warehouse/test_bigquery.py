"""BigQuery without a server: profiles, parameter binding, and the exact SQL the adapter sends.

Every generated statement is also parsed with sqlglot's ``bigquery`` dialect, a syntax check for
what bqemulator cannot show (it translates BigQuery SQL to DuckDB before running it).
"""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest

from sixtyfour_sync.config.profiles import BigQueryTarget, load_target, parse_target_config
from sixtyfour_sync.errors import ConfigError, UnsafeIdentifierError
from sixtyfour_sync.warehouse import Column, Guard, LogicalType, TableRef, cloud_sql
from sixtyfour_sync.warehouse.bigquery import BigQueryAdapter
from sixtyfour_sync.warehouse.bigquery_sql import (
    bind_params,
    insert_if_absent,
    is_dml,
    merge_counts,
    parquet_ready,
    stage_schema,
)

sqlglot = pytest.importorskip("sqlglot")

BASE = {"type": "bigquery", "method": "oauth", "project": "my-proj-1", "dataset": "dbt_ada"}
GUARD = Guard(when="__write_email", not_below="email_confidence")


def adapter(**over: object) -> BigQueryAdapter:
    return BigQueryAdapter(parse_target_config({**BASE, **over}))


def parses(sql: str) -> None:
    """The statement is valid BigQuery syntax (sqlglot raises on a parse error)."""
    assert sqlglot.parse(sql, read="bigquery", error_level=sqlglot.ErrorLevel.RAISE), sql


# ---------------------------------------------------------------------------------------------- profiles


def test_profile_keys_as_dbt_bigquery_writes_them() -> None:
    cfg = parse_target_config(
        {
            **BASE,
            "method": "service-account-json",
            "keyfile_json": {"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----abc"},
            "location": "EU",
            "priority": "batch",
            "job_execution_timeout_seconds": 300,
            "maximum_bytes_billed": 10**9,
            "impersonate_service_account": "sync@my-proj-1.iam.gserviceaccount.com",
            "threads": 4,
            "job_retries": 2,
        }
    )
    assert isinstance(cfg, BigQueryTarget)
    assert (cfg.project, cfg.schema, cfg.location, cfg.priority) == ("my-proj-1", "dbt_ada", "EU", "batch")
    assert "PRIVATE KEY" not in repr(cfg) and "PRIVATE KEY" not in cfg.describe()
    same = parse_target_config({"type": "bigquery", "database": "my-proj-1", "schema": "dbt_ada"})
    assert isinstance(same, BigQueryTarget) and (same.project, same.schema) == ("my-proj-1", "dbt_ada")


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"method": "service-account"}, "needs keyfile"),
        ({"method": "service-account-json"}, "needs keyfile_json"),
        ({"method": "oauth-secrets", "refresh_token": "r"}, "needs token, or refresh_token"),
        ({"method": "anonymous"}, "needs api_endpoint"),
        ({"method": "password"}, "method"),
        ({"dataset": "a", "schema": "b"}, "both dataset and schema"),
        ({"priority": "urgent"}, "priority"),
    ],
)
def test_profile_problems_are_clear(over: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_target_config({**BASE, **over})


def test_profile_errors_name_the_line(tmp_path: Path) -> None:
    (tmp_path / "profiles.yml").write_text(
        textwrap.dedent(
            """\
            sixtyfour:
              target: bq
              outputs:
                bq:
                  type: bigquery
                  method: oauth
                  project: my-proj-1
                  dataset: dbt_ada
                  priorty: batch
            """
        )
    )
    with pytest.raises(ConfigError) as info:
        load_target(project_dir=tmp_path, env={})
    problem = info.value.problems[0]
    assert (problem.path, problem.line, problem.message) == ("sixtyfour.outputs.bq.priorty", 9, "unknown key 'priorty'")


# ---------------------------------------------------------------------------------------------- binding


def test_parameters_are_typed_and_none_becomes_a_null_literal() -> None:
    when = dt.datetime(2024, 5, 17, 12, 30)
    sql, params = bind_params(
        "UPDATE t SET a = ?, b = ?, c = ? WHERE d = '?' AND e = ? -- ?\n AND f = ?", ["x", None, 3, when, True]
    )
    assert sql == "UPDATE t SET a = ?, b = NULL, c = ? WHERE d = '?' AND e = ? -- ?\n AND f = ?"
    assert params == [
        ("STRING", "x"),
        ("INT64", 3),
        ("TIMESTAMP", when.replace(tzinfo=dt.timezone.utc)),
        ("BOOL", True),
    ]
    with pytest.raises(ValueError, match="2 placeholder"):
        bind_params("SELECT ?, ?", [1])


def test_statement_kinds() -> None:
    assert is_dml("  MERGE INTO x") and is_dml("insert into t values (1)") and is_dml("(UPDATE t SET a = 1)")
    assert not is_dml("SELECT 1") and not is_dml("CREATE TABLE t (a INT64)") and not is_dml("BEGIN TRANSACTION")


def test_staged_parquet_is_utc_microseconds_and_typed() -> None:
    data = pa.table(
        {
            "id": pa.array([1], pa.int64()),
            "at": pa.array([dt.datetime(2024, 1, 1, 12)], pa.timestamp("ns")),
            "nothing": pa.array([None], pa.null()),
            "flag": [True],
        }
    )
    ready = parquet_ready(data)
    assert ready.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert stage_schema(ready) == [("id", "INT64"), ("at", "TIMESTAMP"), ("nothing", "STRING"), ("flag", "BOOL")]


def test_merge_counts_prefer_the_apis_dml_stats() -> None:
    stats = SimpleNamespace(inserted_row_count=3, updated_row_count=7)
    assert merge_counts(stats, 10, 10, None) == (3, 7)
    assert merge_counts(None, 10, 10, 6) == (4, 6)


# ---------------------------------------------------------------------------------------------- exact SQL


def test_names_are_backticked_per_part_and_validated() -> None:
    a = adapter()
    assert a.table_sql(TableRef("Leads")) == "`my-proj-1`.`dbt_ada`.`Leads`"
    assert a.table_sql(TableRef("t", schema="Other", database="other-proj")) == "`other-proj`.`Other`.`t`"
    with pytest.raises(UnsafeIdentifierError, match="project id"):
        a.table_sql(TableRef("t", database="bad`proj"))
    with pytest.raises(UnsafeIdentifierError):
        a.table_sql(TableRef("t`; DROP TABLE x; --"))
    assert a.find_column({"Email": "STRING"}, "email") == "Email"  # columns are case-insensitive


def test_ddl() -> None:
    a = adapter()
    key = [Column("lead_id", LogicalType.BIGINT)]
    cols = [Column("email", LogicalType.TEXT), Column("tags", LogicalType.JSON), Column("at", LogicalType.TIMESTAMP)]
    create = a.create_table_sql(TableRef("leads_enriched"), key, cols)
    assert create == (
        "CREATE TABLE IF NOT EXISTS `my-proj-1`.`dbt_ada`.`leads_enriched` "
        "(`lead_id` INT64 NOT NULL, `email` STRING, `tags` JSON, `at` TIMESTAMP)"
    )
    add = a.add_column_sql(TableRef("leads_enriched"), Column("title", LogicalType.TEXT))
    assert add == "ALTER TABLE `my-proj-1`.`dbt_ada`.`leads_enriched` ADD COLUMN IF NOT EXISTS `title` STRING"
    for sql in (create, add):
        parses(sql)


def test_merge_with_guards_json_and_insert_only() -> None:
    a = adapter()
    target, stage = a.table_sql(TableRef("leads_enriched")), a.table_sql(TableRef("_sixtyfour_stage_ab12"))
    common = {"target": target, "source": stage, "key": ["lead_id"], "quote": a.quote, "parse_json": "PARSE_JSON"}
    merge = cloud_sql.merge_sql(
        **common,
        set_columns=["email", "email_confidence", "tags"],
        guards={"email": GUARD},
        json_columns=["tags"],
    )
    assert merge == (
        "MERGE INTO `my-proj-1`.`dbt_ada`.`leads_enriched` AS t USING `my-proj-1`.`dbt_ada`.`_sixtyfour_stage_ab12` "
        "AS s ON t.`lead_id` = s.`lead_id` WHEN MATCHED THEN UPDATE SET `email` = CASE WHEN s.`__write_email` AND "
        "(t.`email_confidence` IS NULL OR s.`email_confidence` >= t.`email_confidence`) THEN s.`email` ELSE "
        "t.`email` END, `email_confidence` = s.`email_confidence`, `tags` = PARSE_JSON(s.`tags`) WHEN NOT MATCHED "
        "THEN INSERT (`lead_id`, `email`, `email_confidence`, `tags`) VALUES (s.`lead_id`, CASE WHEN "
        "s.`__write_email` THEN s.`email` END, s.`email_confidence`, PARSE_JSON(s.`tags`))"
    )
    insert = cloud_sql.insert_select_sql(**common, set_columns=["email"], guards={"email": GUARD})
    assert insert == (
        "INSERT INTO `my-proj-1`.`dbt_ada`.`leads_enriched` (`lead_id`, `email`) SELECT s.`lead_id`, "
        "CASE WHEN s.`__write_email` THEN s.`email` END FROM `my-proj-1`.`dbt_ada`.`_sixtyfour_stage_ab12` AS s"
    )
    for sql in (merge, insert):
        parses(sql)


def test_insert_if_absent_casts_each_value_to_its_column_type() -> None:
    a = adapter()
    sql = insert_if_absent(
        a.table_sql(TableRef("_sixtyfour_sync_leases")),
        ["sync_name", "expires_epoch"],
        ["sync_name"],
        ["STRING", "FLOAT64"],
        a.quote,
    )
    assert sql == (
        "MERGE INTO `my-proj-1`.`dbt_ada`.`_sixtyfour_sync_leases` AS t USING (SELECT CAST(? AS STRING) AS "
        "`sync_name`, CAST(? AS FLOAT64) AS `expires_epoch`) AS v ON t.`sync_name` = v.`sync_name` WHEN NOT "
        "MATCHED THEN INSERT (`sync_name`, `expires_epoch`) VALUES (v.`sync_name`, v.`expires_epoch`)"
    )
    parses(sql)
    with pytest.raises(ValueError, match="key columns"):
        insert_if_absent("t", ["a"], ["b"], ["STRING"], a.quote)


def test_hashing_time_and_selection_sql() -> None:
    a = adapter()
    assert a.row_hash_sql(["a"], alias="t") == (
        "TO_HEX(MD5((CASE WHEN `t`.`a` IS NULL THEN 'N' ELSE ('V' || CAST(LENGTH(TO_JSON_STRING(`t`.`a`)) AS STRING)"
        " || ':' || TO_JSON_STRING(`t`.`a`)) END)))"
    )
    assert a.now_epoch_sql() == "UNIX_MICROS(CURRENT_TIMESTAMP()) / 1000000"
    assert a.age_seconds_sql("t.`at`") == "(UNIX_MICROS(CURRENT_TIMESTAMP()) - UNIX_MICROS(t.`at`)) / 1000000"
    src = a.source_sql(table=TableRef("leads"), columns=["lead_id", "name"], where="country = 'US'")
    statements = [
        src,
        a.clean_source_sql(src, ["lead_id"]),
        f"SELECT {a.row_hash_sql(['name', 'lead_id'], alias='t')} FROM {a.table_sql(TableRef('leads'))} AS t",
        f"SELECT {a.now_epoch_sql()}, {a.age_seconds_sql('CURRENT_TIMESTAMP()')}",
        a.limit_sql(src, 0),
        "BEGIN TRANSACTION",
        "COMMIT TRANSACTION",
        "ROLLBACK TRANSACTION",
    ]
    for sql in statements:
        parses(sql)


# ---------------------------------------------------------------------------------------------- reading


def test_storage_read_refused_falls_back_to_rest(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from google.api_core.exceptions import PermissionDenied

    page = pa.record_batch({"n": pa.array([1, 2, 3], pa.int64())})

    class Rows:
        def to_arrow_iterable(self, bqstorage_client: object = None) -> object:
            if bqstorage_client is not None:
                raise PermissionDenied("bigquery.readsessions.create denied")
            return iter([page])

    class Job:
        def result(self, **_: object) -> Rows:
            return Rows()

    a = adapter(storage_api=True)
    monkeypatch.setattr(a, "_run", lambda *args, **kw: Job())
    monkeypatch.setattr(a, "_storage_client", lambda: object())
    got = list(a.stream("SELECT n FROM t", batch_rows=2))
    assert [b.num_rows for b in got] == [2, 1]
    assert "Storage Read API was refused" in caplog.text
