"""The exact SQL each builder renders per dialect (no database), and every statement parses in its dialect."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlglot

from sixtyfour_sync.warehouse.dialect import DUCKDB, GENERIC, MARIADB, MYSQL, POSTGRES, SNOWFLAKE, SQLITE, Dialect
from sixtyfour_sync.warehouse.sql import catalog, ddl, dml, select, upsert
from sixtyfour_sync.warehouse.sql.identifiers import Names
from sixtyfour_sync.warehouse.types import Column, Guard, LogicalType, TableRef

T = TableRef("leads")
KEY = [Column("lead_id", LogicalType.BIGINT), Column("email_key", LogicalType.TEXT)]
COLS = [Column("tags", LogicalType.JSON), Column("at", LogicalType.TIMESTAMP)]
GUARD = {"email": Guard(when="__write_email", not_below="email_confidence")}


def n(dialect: Dialect) -> Names:
    return Names(dialect, default_schema="crm")


def stg(dialect: Dialect) -> str:
    return "`stg`" if dialect.quote_char == "`" else '"stg"'


# ---------------------------------------------------------------------------------------------- DDL


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        (
            DUCKDB,
            'CREATE TABLE IF NOT EXISTS "crm"."leads" ("lead_id" BIGINT NOT NULL, "email_key" VARCHAR NOT NULL, '
            '"tags" JSON, "at" TIMESTAMPTZ, PRIMARY KEY ("lead_id", "email_key"))',
        ),
        (
            SNOWFLAKE,
            'CREATE TABLE IF NOT EXISTS "CRM"."LEADS" ("LEAD_ID" BIGINT NOT NULL, "EMAIL_KEY" VARCHAR NOT NULL, '
            '"TAGS" VARIANT, "AT" TIMESTAMP_TZ, PRIMARY KEY ("LEAD_ID", "EMAIL_KEY"))',
        ),
        (
            MYSQL,
            "CREATE TABLE IF NOT EXISTS `crm`.`leads` (`lead_id` BIGINT NOT NULL, `email_key` VARCHAR(255) NOT NULL, "
            "`tags` JSON, `at` DATETIME(6), PRIMARY KEY (`lead_id`, `email_key`))",
        ),
        (
            SQLITE,
            'CREATE TABLE IF NOT EXISTS "crm"."leads" ("lead_id" BIGINT NOT NULL, "email_key" TEXT NOT NULL, '
            '"tags" TEXT, "at" TIMESTAMP, PRIMARY KEY ("lead_id", "email_key"))',
        ),
        (
            GENERIC,
            'CREATE TABLE "crm"."leads" ("lead_id" BIGINT NOT NULL, "email_key" TEXT NOT NULL, "tags" TEXT, '
            '"at" TIMESTAMP WITH TIME ZONE, PRIMARY KEY ("lead_id", "email_key"))',
        ),
    ],
)
def test_create_table(dialect: Dialect, expected: str) -> None:
    assert ddl.create_table_sql(n(dialect), T, KEY, COLS) == expected


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        (POSTGRES, 'ALTER TABLE "crm"."leads" ADD COLUMN IF NOT EXISTS "score" DOUBLE PRECISION'),
        (SNOWFLAKE, 'ALTER TABLE "CRM"."LEADS" ADD COLUMN IF NOT EXISTS "SCORE" DOUBLE'),
        (MARIADB, "ALTER TABLE `crm`.`leads` ADD COLUMN IF NOT EXISTS `score` DOUBLE"),
        (MYSQL, "ALTER TABLE `crm`.`leads` ADD COLUMN `score` DOUBLE"),  # MySQL 8 has no IF NOT EXISTS here
        (SQLITE, 'ALTER TABLE "crm"."leads" ADD COLUMN "score" DOUBLE'),
    ],
)
def test_add_column(dialect: Dialect, expected: str) -> None:
    assert ddl.add_column_sql(n(dialect), T, Column("score", LogicalType.DOUBLE)) == expected


def test_stage_tables_type_flags_as_booleans() -> None:
    assert ddl.create_stage_sql(
        n(POSTGRES), '"_stg"', T, ["lead_id", "email"], ["__write_email"], options="ON COMMIT DROP"
    ) == (
        'CREATE TEMPORARY TABLE "_stg" ON COMMIT DROP AS SELECT "lead_id", "email", FALSE AS "__write_email" '
        'FROM "crm"."leads" WHERE 1 = 0'
    )
    assert ddl.create_schema_sql(n(SNOWFLAKE), "dbt_John") == 'CREATE SCHEMA IF NOT EXISTS "DBT_JOHN"'


# ---------------------------------------------------------------------------------------------- upsert


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        (
            POSTGRES,
            'UPDATE "crm"."leads" AS t SET "email" = CASE WHEN s."__write_email" AND (t."email_confidence" IS NULL '
            'OR s."email_confidence" >= t."email_confidence") THEN s."email" ELSE t."email" END, "status" = s."status" '
            'FROM "stg" AS s WHERE t."lead_id" = s."lead_id"',
        ),
        (
            DUCKDB,
            'UPDATE "crm"."leads" AS t SET "email" = s."email", "status" = s."status" FROM (SELECT t2.rowid AS '
            '_sixtyfour_rowid, CASE WHEN s0."__write_email" AND (t2."email_confidence" IS NULL OR '
            's0."email_confidence" >= t2."email_confidence") THEN s0."email" ELSE t2."email" END AS "email", '
            's0."status" AS "status" FROM "stg" AS s0 JOIN "crm"."leads" AS t2 ON t2."lead_id" = s0."lead_id" '
            "ORDER BY t2.rowid) AS s WHERE t.rowid = s._sixtyfour_rowid",
        ),
        (
            MYSQL,
            "UPDATE `crm`.`leads` AS t JOIN `stg` AS s ON t.`lead_id` = s.`lead_id` SET t.`email` = CASE WHEN "
            "s.`__write_email` AND (t.`email_confidence` IS NULL OR s.`email_confidence` >= t.`email_confidence`) "
            "THEN s.`email` ELSE t.`email` END, t.`status` = s.`status`",
        ),
        (
            GENERIC,
            'UPDATE "crm"."leads" SET "email" = (SELECT CASE WHEN s."__write_email" AND '
            '("crm"."leads"."email_confidence" IS NULL OR s."email_confidence" >= "crm"."leads"."email_confidence") '
            'THEN s."email" ELSE "crm"."leads"."email" END FROM "stg" s WHERE s."lead_id" = "crm"."leads"."lead_id"), '
            '"status" = (SELECT s."status" FROM "stg" s WHERE s."lead_id" = "crm"."leads"."lead_id") '
            'WHERE EXISTS (SELECT 1 FROM "stg" s WHERE s."lead_id" = "crm"."leads"."lead_id")',
        ),
    ],
)
def test_guarded_update_per_style(dialect: Dialect, expected: str) -> None:
    assert upsert.update_from_sql(n(dialect), T, stg(dialect), ["lead_id"], ["email", "status"], GUARD) == expected


def test_guarded_insert_writes_the_value_only_where_its_flag_is_true() -> None:
    assert upsert.insert_missing_sql(n(POSTGRES), T, '"stg"', ["lead_id"], ["email", "status"], GUARD) == (
        'INSERT INTO "crm"."leads" ("lead_id", "email", "status") SELECT s."lead_id", CASE WHEN s."__write_email" '
        'THEN s."email" END, s."status" FROM "stg" AS s WHERE NOT EXISTS (SELECT 1 FROM "crm"."leads" AS t '
        'WHERE t."lead_id" = s."lead_id")'
    )


def test_mysql_decides_comparing_guards_in_the_stage() -> None:
    sql = upsert.guard_stage_sql(n(MYSQL), T, "`stg`", ["lead_id"], ("__sixtyfour_guard_0", None), GUARD["email"])
    assert sql == (
        "UPDATE `stg` AS s JOIN `crm`.`leads` AS t ON s.`lead_id` = t.`lead_id` SET s.`__sixtyfour_guard_0` = "
        "(s.`__sixtyfour_guard_0` AND (t.`email_confidence` IS NULL OR s.`email_confidence` >= t.`email_confidence`))"
    )


#: The overwrite rule's guard (engine/results/overwrite.py): the floor only between answers to the same question, and a
#: value that answered another question cleared where the answer is not written.
RULE = Guard(when="__w", not_below="email_confidence", same=("ih", "sh"), clear="__u")


def test_a_guard_keeps_the_floor_for_the_same_question_and_clears_another_questions_value() -> None:
    sql = upsert.update_from_sql(n(POSTGRES), T, '"stg"', ["lead_id"], ["email", "ih", "sh"], {"email": RULE})
    same = 'COALESCE(t."ih" = s."ih" AND t."sh" = s."sh", FALSE)'
    assert sql == (
        f'UPDATE "crm"."leads" AS t SET "email" = CASE WHEN s."__w" AND (NOT {same} OR t."email_confidence" IS NULL '
        f'OR s."email_confidence" >= t."email_confidence") THEN s."email" WHEN s."__u" AND NOT {same} THEN NULL '
        'ELSE t."email" END, "ih" = s."ih", "sh" = s."sh" FROM "stg" AS s WHERE t."lead_id" = s."lead_id"'
    )


def test_mysql_decides_the_rule_in_the_stage_before_the_hashes_are_written() -> None:
    sql = upsert.guard_stage_sql(n(MYSQL), T, "`stg`", ["lead_id"], ("__g", "__c"), RULE)
    same = "COALESCE(t.`ih` = s.`ih` AND t.`sh` = s.`sh`, FALSE)"
    assert sql == (
        "UPDATE `stg` AS s JOIN `crm`.`leads` AS t ON s.`lead_id` = t.`lead_id` SET s.`__g` = (s.`__g` AND "
        f"(NOT {same} OR t.`email_confidence` IS NULL OR s.`email_confidence` >= t.`email_confidence`)), "
        f"s.`__c` = (s.`__c` AND NOT {same})"
    )


def test_insert_only_is_a_plain_insert_select() -> None:
    assert upsert.insert_select_sql(n(SNOWFLAKE), T, '"S"', ["lead_id", "tags"], frozenset({"tags"})) == (
        'INSERT INTO "CRM"."LEADS" ("LEAD_ID", "TAGS") SELECT s."LEAD_ID", PARSE_JSON(s."TAGS") FROM "S" AS s'
    )


def test_snowflake_merge_with_guards_decides_them_in_the_source() -> None:
    guards = {"email": GUARD["email"], "tags": Guard(when="__write_tags")}
    sql = upsert.merge_sql(n(SNOWFLAKE), T, '"CRM"."_S"', ["lead_id"], ["email", "tags"], frozenset({"tags"}), guards)
    assert sql == (
        'MERGE INTO "CRM"."LEADS" AS t USING (SELECT s0."LEAD_ID", CASE WHEN s0."__WRITE_EMAIL" AND '
        '(t0."EMAIL_CONFIDENCE" IS NULL OR s0."EMAIL_CONFIDENCE" >= t0."EMAIL_CONFIDENCE") THEN s0."EMAIL" ELSE '
        't0."EMAIL" END AS "EMAIL", CASE WHEN s0."__WRITE_TAGS" THEN PARSE_JSON(s0."TAGS") ELSE t0."TAGS" END AS '
        '"TAGS" FROM "CRM"."_S" AS s0 LEFT JOIN "CRM"."LEADS" AS t0 ON t0."LEAD_ID" = s0."LEAD_ID" QUALIFY '
        'ROW_NUMBER() OVER (PARTITION BY s0."LEAD_ID" ORDER BY s0."_SIXTYFOUR_SEQ" DESC) = 1) AS s ON '
        't."LEAD_ID" = s."LEAD_ID" WHEN MATCHED THEN UPDATE SET "EMAIL" = s."EMAIL", "TAGS" = s."TAGS" '
        'WHEN NOT MATCHED THEN INSERT ("LEAD_ID", "EMAIL", "TAGS") VALUES (s."LEAD_ID", s."EMAIL", s."TAGS")'
    )


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        (POSTGRES, 'INSERT INTO "crm"."leads" ("sync", "holder") VALUES (?, ?) ON CONFLICT ("sync") DO NOTHING'),
        (DUCKDB, 'INSERT INTO "crm"."leads" ("sync", "holder") VALUES (?, ?) ON CONFLICT ("sync") DO NOTHING'),
        (SQLITE, 'INSERT INTO "crm"."leads" ("sync", "holder") VALUES (?, ?) ON CONFLICT ("sync") DO NOTHING'),
        (
            SNOWFLAKE,
            'MERGE INTO "CRM"."LEADS" AS t USING (SELECT ? AS "SYNC", ? AS "HOLDER") AS s ON t."SYNC" = s."SYNC" '
            'WHEN NOT MATCHED THEN INSERT ("SYNC", "HOLDER") VALUES (s."SYNC", s."HOLDER")',
        ),
        (
            MYSQL,
            "INSERT INTO `crm`.`leads` (`sync`, `holder`) SELECT s.`sync`, s.`holder` FROM (SELECT ? AS `sync`, ? AS "
            "`holder`) AS s WHERE NOT EXISTS (SELECT 1 FROM `crm`.`leads` AS t WHERE t.`sync` = s.`sync`)",
        ),
    ],
)
def test_insert_if_absent(dialect: Dialect, expected: str) -> None:
    assert upsert.insert_if_absent_sql(n(dialect), T, ["sync", "holder"], ["sync"]) == expected


def test_insert_if_absent_needs_its_key_among_the_columns() -> None:
    with pytest.raises(ValueError, match="must be among the columns"):
        upsert.insert_if_absent_sql(n(POSTGRES), T, ["holder"], ["sync"])


# ---------------------------------------------------------------------------------------------- selection, clock


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        (POSTGRES, "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"),
        (DUCKDB, "(epoch_us(get_current_timestamp()) / 1000000.0)"),
        (MYSQL, "(UNIX_TIMESTAMP(NOW(6)) + 0E0)"),
        (SQLITE, "((JULIANDAY('now') - 2440587.5) * 86400.0)"),
        (SNOWFLAKE, "(CAST(DATE_PART(EPOCH_MICROSECOND, CURRENT_TIMESTAMP()) AS DOUBLE) / 1000000)"),
    ],
)
def test_now_epoch(dialect: Dialect, expected: str) -> None:
    assert select.now_epoch_sql(n(dialect)) == expected


def test_clean_source_uses_qualify_where_it_exists() -> None:
    assert select.clean_source_sql(n(SNOWFLAKE), "select * from raw", ["lead_id"]) == (
        'SELECT s.* FROM (select * from raw) AS s WHERE s."LEAD_ID" IS NOT NULL '
        'QUALIFY COUNT(*) OVER (PARTITION BY s."LEAD_ID") = 1'
    )
    portable = select.clean_source_sql(n(MYSQL), "select * from raw", ["lead_id"])
    assert "QUALIFY" not in portable and "HAVING COUNT(*) = 1" in portable


def test_key_report_queries() -> None:
    q = select.key_report_sql(n(POSTGRES), "select * from raw;", ["a", "b"], sample=3)
    assert q.totals == (
        'SELECT COUNT(*), COALESCE(SUM(CASE WHEN s."a" IS NULL OR s."b" IS NULL THEN 1 ELSE 0 END), 0) '
        "FROM (select * from raw) AS s"
    )
    assert q.null_samples.endswith("LIMIT 3")


def test_session_statements() -> None:
    names = n(SNOWFLAKE)
    assert (
        dml.insert_sql(names, T, ["run_id", "state"]) == 'INSERT INTO "CRM"."LEADS" ("RUN_ID", "STATE") VALUES (?, ?)'
    )
    assert dml.update_sql(names, T, ["state"], {"run_id": "r1", "ended_at": None}) == (
        'UPDATE "CRM"."LEADS" SET "STATE" = ? WHERE "RUN_ID" = ? AND "ENDED_AT" IS NULL',
        ["r1"],
    )
    assert dml.select_sql(names, T, {"state": "x"}, ["run_id"], ["run_id DESC"]) == (
        'SELECT "RUN_ID" FROM "CRM"."LEADS" WHERE "STATE" = ? ORDER BY "RUN_ID" DESC',
        ["x"],
    )


def test_catalog_lookups_pass_names_as_parameters() -> None:
    assert catalog.information_schema_tables_sql(n(SNOWFLAKE), TableRef("leads", database="db")) == (
        'SELECT table_name FROM "DB".information_schema.tables WHERE table_name = ? AND table_schema = ?',
        ["LEADS", "CRM"],
    )
    assert catalog.information_schema_columns_sql(n(MYSQL), T)[0].startswith(
        "SELECT column_name, data_type FROM information_schema.columns WHERE LOWER(table_name) = LOWER(?)"
    )
    sql, params = catalog.pg_table_exists_sql(n(POSTGRES), T)
    assert params == ["leads", "crm"] and "c.relname = ? AND n.nspname = ?" in sql


# ---------------------------------------------------------------------------------------------- syntax


def _statements(dialect: Dialect) -> list[str]:
    names = n(dialect)
    s = stg(dialect)
    out = [
        ddl.create_table_sql(names, T, KEY, COLS),
        ddl.add_column_sql(names, T, Column("score", LogicalType.DOUBLE)),
        ddl.create_stage_sql(names, s, T, ["lead_id"], ["__w"]),
        upsert.update_from_sql(names, T, s, ["lead_id"], ["email", "status"], GUARD),
        upsert.update_from_sql(names, T, s, ["lead_id"], ["email"]),
        upsert.insert_missing_sql(names, T, s, ["lead_id"], ["email"], GUARD),
        upsert.insert_select_sql(names, T, s, ["lead_id", "email"]),
        upsert.insert_if_absent_sql(names, T, ["sync", "holder"], ["sync"]),
        "SELECT " + select.now_epoch_sql(names),
        "SELECT " + select.age_seconds_sql(names, "t.at") + " FROM x AS t",
        select.clean_source_sql(names, "select * from raw", ["lead_id"]),
        "SELECT " + select.row_hash_sql(names, ["a", "b"], alias="c") + " FROM t AS c",
        select.key_report_sql(names, "select * from raw", ["lead_id"]).duplicate_samples,
    ]
    if dialect.update_style == "join":
        out.append(upsert.guard_stage_sql(names, T, s, ["lead_id"], ("__g", None), GUARD["email"]))
    if dialect is SNOWFLAKE:
        out.append(upsert.merge_sql(names, T, s, ["lead_id"], ["email"], frozenset(), GUARD))
        out.append(upsert.merge_sql(names, T, s, ["lead_id"], ["email"]))
    return out


@pytest.mark.parametrize("dialect", [DUCKDB, POSTGRES, SNOWFLAKE, MYSQL, MARIADB, SQLITE], ids=lambda d: d.name)
def test_every_statement_parses_in_its_dialect(dialect: Dialect) -> None:
    parse: Callable[[str], object] = lambda sql: sqlglot.parse_one(sql, read=dialect.sqlglot)  # noqa: E731
    for sql in _statements(dialect):
        parse(sql)


@pytest.mark.parametrize(
    ("sql", "dialect", "nested"),
    [
        ("select 1 -- trailing comment", "", "select 1"),
        ("select 1;\n-- a note\n;  ", "postgres", "select 1"),
        ("select ';--' as x /* done */ ;", "", "select ';--' as x"),
        ("select $$a -- b$$ as x -- c", "postgres", "select $$a -- b$$ as x"),
        ("select 1 # mysql comment", "mysql", "select 1"),
        ("select '", "", "select '\n"),  # unreadable: the plain rule, and a line break closes any comment
    ],
)
def test_user_sql_nests_in_parentheses_whatever_it_ends_with(sql: str, dialect: str, nested: str) -> None:
    from sixtyfour_sync.warehouse.sql.identifiers import strip_sql

    assert strip_sql(sql, dialect) == nested
