"""OpenLineage dataset names per warehouse (sixtyfour_sync/lineage/naming.py): the conventions' namespace and
name for each, and never a credential in a namespace."""

from __future__ import annotations

from typing import Any

import pytest

from sixtyfour_sync.config.profiles import parse_target_config
from sixtyfour_sync.lineage.naming import DatasetId, dataset_id, snowflake_account
from sixtyfour_sync.warehouse.types import TableRef

SECRET = "pw-s3cr3t-9f8e7d"


def config(**keys: Any) -> Any:
    return parse_target_config(keys)


def test_postgres_is_host_port_and_database_schema_table() -> None:
    pg = config(type="postgres", host="DB.internal", port=5433, user="enrich", password=SECRET, dbname="analytics")
    assert dataset_id(pg, TableRef("leads", "marts")) == DatasetId(
        "postgres://db.internal:5433", "analytics.marts.leads"
    )
    # no schema named: the profile's (dbt's default public), as the sync writes it
    assert dataset_id(pg, TableRef("leads"), default_schema=pg.schema).name == "analytics.public.leads"


def test_duckdb_is_the_profile_path_and_the_files_catalog() -> None:
    duck = config(type="duckdb", path="warehouse.duckdb")
    assert dataset_id(duck, TableRef("leads"), default_schema="main") == DatasetId(
        "duckdb://warehouse.duckdb", "warehouse.main.leads"
    )
    named = config(type="duckdb", path="/data/wh.db", database="wh")
    assert dataset_id(named, TableRef("t", "raw")) == DatasetId("duckdb:///data/wh.db", "wh.raw.t")
    assert dataset_id(config(type="duckdb"), TableRef("t")).name == "memory.main.t"


def test_a_motherduck_token_never_reaches_the_namespace() -> None:
    md = config(type="duckdb", path=f"md:analytics?motherduck_token={SECRET}")
    found = dataset_id(md, TableRef("leads", "main"))
    assert found == DatasetId("duckdb://md:analytics", "analytics.main.leads")


def test_snowflake_names_fold_as_the_warehouse_stores_them() -> None:
    sf = config(type="snowflake", account="MyOrg-MyAccount", user="u", password=SECRET, database="analytics")

    def upper(name: str, kind: str) -> str:
        return name.upper() if name == name.lower() else name

    found = dataset_id(sf, TableRef("leads", "marts"), normalize=upper)
    assert found == DatasetId("snowflake://myorg-myaccount", "ANALYTICS.MARTS.LEADS")


@pytest.mark.parametrize(
    ("account", "namespace"),
    [
        ("myorg-myaccount", "myorg-myaccount"),
        ("myorg-myaccount.snowflakecomputing.com", "myorg-myaccount"),
        ("xy12345", "xy12345.us-west-1.aws"),
        ("xy12345.us-east-1", "xy12345.us-east-1.aws"),
        ("xy12345.east-us-2.azure", "xy12345.east-us-2.azure"),
    ],
)
def test_snowflake_account_forms(account: str, namespace: str) -> None:
    assert snowflake_account(account) == namespace


def test_bigquery_is_project_dataset_table() -> None:
    bq = config(type="bigquery", method="oauth", project="acme-prod", dataset="marts")
    assert dataset_id(bq, TableRef("leads"), default_schema="marts") == DatasetId("bigquery", "acme-prod.marts.leads")
    assert dataset_id(bq, TableRef("leads", "raw", "other-project")).name == "other-project.raw.leads"


def test_databricks_is_the_workspace_host_and_catalog_schema_table() -> None:
    db = config(
        type="databricks",
        host="https://dbc-123.cloud.databricks.com/",
        http_path="/sql/1.0/warehouses/abc123",
        token=SECRET,
        catalog="main",
        schema="marts",
    )
    found = dataset_id(db, TableRef("leads"), default_schema="marts")
    assert found == DatasetId("databricks://dbc-123.cloud.databricks.com", "main.marts.leads")
    no_catalog = config(
        type="databricks", host="dbc-123.cloud.databricks.com", http_path="/sql/1.0/warehouses/abc123", token=SECRET,
        schema="marts",
    )  # fmt: skip
    assert dataset_id(no_catalog, TableRef("leads"), default_schema="marts", catalog="ws").name == "ws.marts.leads"


@pytest.mark.parametrize(
    ("url", "table", "expected"),
    [
        (
            f"mysql+pymysql://root:{SECRET}@127.0.0.1:3306/test",
            TableRef("leads"),
            ("mysql://127.0.0.1:3306", "test.leads"),
        ),
        (f"mariadb+pymysql://u:{SECRET}@db/crm", TableRef("leads", "sales"), ("mysql://db:3306", "sales.leads")),
        (
            f"postgresql+psycopg2://u:{SECRET}@pg.internal/analytics",
            TableRef("leads", "marts"),
            ("postgres://pg.internal:5432", "analytics.marts.leads"),
        ),
        (
            f"postgresql+psycopg2://u:{SECRET}@examplecluster.abc123xyz789.us-west-2.redshift.amazonaws.com:5439/dev",
            TableRef("leads", "public"),
            ("redshift://examplecluster.us-west-2:5439", "dev.public.leads"),
        ),
        (
            f"mssql+pyodbc://u:{SECRET}@sql.internal/crm",
            TableRef("leads"),
            ("mssql://sql.internal:1433", "crm.dbo.leads"),
        ),
        (f"trino://u:{SECRET}@trino:8080/hive/marts", TableRef("leads"), ("trino://trino:8080", "hive.marts.leads")),
        ("sqlite:////var/data/crm.db", TableRef("leads"), ("sqlite:///var/data/crm.db", "leads")),
    ],
)
def test_sqlalchemy_urls(url: str, table: TableRef, expected: tuple[str, str]) -> None:
    found = dataset_id(config(type="sqlalchemy", url=url), table)
    assert (found.namespace, found.name) == expected


@pytest.mark.parametrize(
    "keys",
    [
        {"type": "postgres", "host": "h", "user": "enrich", "password": SECRET, "dbname": "d"},
        {"type": "sqlalchemy", "url": f"mysql+pymysql://enrich:{SECRET}@h:3306/d?ssl_key={SECRET}"},
        {"type": "sqlalchemy", "url": f"postgresql://enrich:{SECRET}@h/d?password={SECRET}"},
        {"type": "snowflake", "account": "org-acct", "user": "enrich", "password": SECRET, "database": "d"},
        {"type": "duckdb", "path": f"md:d?motherduck_token={SECRET}"},
        {
            "type": "databricks", "host": f"https://token:{SECRET}@dbc-1.cloud.databricks.com",
            "http_path": "/sql/1.0/warehouses/a1", "token": SECRET, "schema": "s",
        },
    ],
)  # fmt: skip
def test_no_user_password_or_token_in_any_namespace(keys: dict[str, Any]) -> None:
    found = dataset_id(config(**keys), TableRef("t", "s"))
    assert SECRET not in found.namespace + found.name
    assert "enrich" not in found.namespace and "@" not in found.namespace
