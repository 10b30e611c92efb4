"""Naming rules per dialect, without a database: validation, folding by dbt's quoting, quoting, lookup."""

from __future__ import annotations

import pytest

from sixtyfour_sync.config.profiles import QuotingConfig, quoting_from_dbt_project
from sixtyfour_sync.errors import UnsafeIdentifierError
from sixtyfour_sync.warehouse.dialect import DUCKDB, GENERIC_UPPER, MYSQL, POSTGRES, SNOWFLAKE, SQLITE
from sixtyfour_sync.warehouse.sql.identifiers import Names, strip_sql
from sixtyfour_sync.warehouse.types import Quoting, TableRef


def test_snowflake_folds_every_unquoted_name_like_dbt_snowflake() -> None:
    n = Names(SNOWFLAKE, default_schema="dbt_John")
    assert n.quote("lead_id") == '"LEAD_ID"'
    assert n.quote("firstName") == '"FIRSTNAME"'
    assert n.table(TableRef("Leads", database="Analytics")) == '"ANALYTICS"."DBT_JOHN"."LEADS"'
    assert n.normalize("dbt_John", "schema") == "DBT_JOHN"
    assert n.denormalize("FIRSTNAME") == "firstname" and n.denormalize("MixedCase") == "MixedCase"


def test_snowflake_quoting_true_keeps_the_spelling_per_part() -> None:
    n = Names(SNOWFLAKE, Quoting(database=None, schema=True, identifier=False, column=True), default_schema="dbt_John")
    assert n.table(TableRef("Leads", database="analytics")) == '"ANALYTICS"."dbt_John"."LEADS"'
    assert n.quote("firstName") == '"firstName"'
    # A part the policy leaves open keeps dbt-snowflake's default (fold).
    assert n.normalize("analytics", "database") == "ANALYTICS"


def test_quoting_policies_merge_part_by_part() -> None:
    project = Quoting.from_config(quoting_from_dbt_project({"quoting": {"schema": True, "identifier": True}}))
    profile = Quoting(identifier=False)
    merged = profile.over(project)
    assert (merged.database, merged.schema, merged.identifier, merged.column) == (None, True, False, None)
    assert quoting_from_dbt_project({"name": "x"}) is None
    assert QuotingConfig.model_validate({"schema": False, "snowflake_ignore_case": True}).schema_ is False


def test_sqlalchemy_convention_for_generic_upper_dialects() -> None:
    n = Names(GENERIC_UPPER)
    assert n.quote("lead_id") == '"LEAD_ID"'
    assert n.quote("LeadId") == '"LeadId"'  # with no policy, a name with upper case is exact


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [(POSTGRES, '"Lead_ID"'), (DUCKDB, '"Lead_ID"'), (SQLITE, '"Lead_ID"'), (MYSQL, "`Lead_ID`")],
)
def test_other_dialects_use_names_as_written(dialect: object, expected: str) -> None:
    n = Names(dialect)  # type: ignore[arg-type]
    assert n.quote("Lead_ID") == expected


def test_postgres_quoting_false_folds_to_lower_case() -> None:
    assert Names(POSTGRES, Quoting(column=False)).quote("Lead_ID") == '"lead_id"'


@pytest.mark.parametrize("bad", ['a"b', "a`b", "a b", "naïve", "1abc", "a;b", "", "a-b"])
def test_unsafe_names_are_refused_saying_where(bad: str) -> None:
    with pytest.raises(UnsafeIdentifierError) as info:
        Names(POSTGRES).quote(bad, what="struct field in models/x.yml")
    assert "struct field in models/x.yml" in str(info.value)


def test_dollar_and_length_follow_the_dialect() -> None:
    assert Names(POSTGRES).quote("price$usd") == '"price$usd"'
    with pytest.raises(UnsafeIdentifierError):
        Names(DUCKDB).quote("price$usd")
    with pytest.raises(UnsafeIdentifierError, match="at most 64"):
        Names(MYSQL).quote("x" * 65)


def test_find_column_exact_then_case_insensitive() -> None:
    assert Names(SNOWFLAKE).find_column(["LEAD_ID", "Email"], "lead_id") == "LEAD_ID"
    assert Names(POSTGRES).find_column(["lead_id"], "LEAD_ID") == "lead_id"  # unique folded match
    assert Names(POSTGRES).find_column(["a", "A"], "a") == "a"
    assert Names(POSTGRES).find_column(["A", "a_"], "a") == "A"
    assert Names(POSTGRES).find_column(["b"], "a") is None


def test_order_terms_alias_and_joins() -> None:
    n = Names(MYSQL)
    assert n.order_term("run_id desc", what="order") == "`run_id` DESC"
    assert n.key_join(["a", "b"], "t", "s") == "t.`a` = s.`a` AND t.`b` = s.`b`"
    assert n.alias("x") == "AS x"


def test_strip_sql() -> None:
    assert strip_sql(" select 1 ;; \n") == "select 1"
    with pytest.raises(ValueError, match="empty SQL"):
        strip_sql(" ; ")


@pytest.mark.parametrize(
    "sql",
    [
        "select name, domain\nfrom companies\nwhere domain is not null\n",
        "  select a / b - c from t  ",
        "select 1;",
        "select 1 -- done",
        "select 1 # mysql",
        "select 1 /* c */",
        "select 1 // snowflake",
        "select ';' as s",
        'select 1 as "x;"',
        "select $$ a; $$",
        "select `a` from t;",
        "country = 'US'",
        "name = 'it''s' and \"Col\" > 1",
        "name = 'a\"b'",
        "select 'a' as x -- 'b'",
    ],
)
def test_strip_sql_without_the_tokenizer_agrees_with_it(sql: str) -> None:
    from sqlglot import TokenType

    from sixtyfour_sync.warehouse.sql.placeholders import sqlglot_dialect

    text = sql.strip()
    tokens = [t for t in sqlglot_dialect("duckdb").tokenize(text) if t.token_type != TokenType.SEMICOLON]
    assert strip_sql(sql, "duckdb") == text[: tokens[-1].end + 1]
