"""OpenLineage dataset names for the tables a sync reads and writes. Pure logic: no connection, no client.

A dataset is a ``namespace`` (the data source, ``scheme://authority``) and a ``name`` (the table within it), as
OpenLineage's naming conventions define them per warehouse:

==============  ==========================================  =========================================
warehouse       namespace                                   name
==============  ==========================================  =========================================
PostgreSQL      ``postgres://{host}:{port}``                ``{database}.{schema}.{table}``
MySQL/MariaDB   ``mysql://{host}:{port}``                   ``{database}.{table}``
Snowflake       ``snowflake://{org}-{account}`` (or the     ``{database}.{schema}.{table}``
                account locator with region and cloud)
BigQuery        ``bigquery``                                ``{project}.{dataset}.{table}``
SQL Server      ``mssql://{host}:{port}``                   ``{database}.{schema}.{table}``
Redshift        ``redshift://{cluster}.{region}:{port}``    ``{database}.{schema}.{table}``
Trino           ``trino://{host}:{port}``                   ``{catalog}.{schema}.{table}``
DuckDB          ``duckdb://{path}``                         ``{database}.{schema}.{table}``
Databricks      ``databricks://{host}``                     ``{catalog}.{schema}.{table}``
==============  ==========================================  =========================================

DuckDB and Databricks have no row in the conventions' table; their names are the ones OpenLineage's dbt
integration gives the same relations (``duckdb://`` with the profile's ``path``, ``databricks://`` with the
workspace host), so a sync's input joins the dbt model that built it. SQLite and other SQLAlchemy databases get
``{backend}://{host}:{port}`` (``sqlite://{file}``) and ``{database}.{schema}.{table}`` with the parts they have.

A namespace never carries a user, a password, a token or a query string: it is built from the host, the port
and the path alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sixtyfour_sync.warehouse.types import NameKind, TableRef

__all__ = ["DatasetId", "dataset_id", "snowflake_account"]

#: The stored spelling of a name we write (the adapter's ``normalize_identifier``).
Normalize = Callable[[str, NameKind], str]

_DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306, "mssql": 1433, "redshift": 5439, "trino": 8080}
#: SQLAlchemy backend names -> the conventions' scheme.
_SCHEMES = {
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "mssql": "mssql",
    "redshift": "redshift",
    "trino": "trino",
    "snowflake": "snowflake",
    "bigquery": "bigquery",
    "databricks": "databricks",
}
_REDSHIFT_HOST = re.compile(r"^([^.]+)\.[^.]+\.([a-z0-9-]+)\.redshift(?:-serverless)?\.amazonaws\.com$", re.I)


@dataclass(frozen=True)
class DatasetId:
    """One dataset as OpenLineage names it."""

    namespace: str
    name: str


def _plain(normalize: Normalize | None) -> Normalize:
    return normalize or (lambda name, kind: name)


def _dotted(parts: list[tuple[str | None, NameKind]], normalize: Normalize) -> str:
    return ".".join(normalize(p, kind) for p, kind in parts if p)


def _host_port(host: str | None, port: int | None, default: int | None) -> str:
    host = (host or "").strip().lower()
    port = port or default
    return f"{host}:{port}" if port else host


def snowflake_account(account: str) -> str:
    """A Snowflake account as the namespace names it: ``org-account`` as is; an account locator with its region
    and cloud (AWS and its default region filled in when left out, as Snowflake reads them)."""
    account = account.strip().lower().removesuffix(".snowflakecomputing.com")
    parts = account.split(".")
    if "-" in parts[0] or len(parts) >= 3:
        return parts[0] if "-" in parts[0] else account
    if len(parts) == 2:
        return f"{parts[0]}.{parts[1]}.aws"
    return f"{parts[0]}.us-west-1.aws"


def _duckdb_path(path: str) -> str:
    """The profile's path without a query string (a MotherDuck token travels in one)."""
    return path.split("?", 1)[0]


def _duckdb_catalog(path: str) -> str:
    """The catalog DuckDB names a database after: ``memory``, a MotherDuck database, or the file's stem."""
    path = _duckdb_path(path)
    if path == ":memory:":
        return "memory"
    if path.startswith(("md:", "motherduck:")):
        return path.split(":", 1)[1] or "my_db"
    return path.replace("\\", "/").rsplit("/", 1)[-1].split(".", 1)[0]


def dataset_id(
    config: Any,
    table: TableRef,
    *,
    normalize: Normalize | None = None,
    default_schema: str | None = None,
    catalog: str | None = None,
) -> DatasetId:
    """``table`` on the warehouse a profile output (``config``) points to, named as OpenLineage names it.

    ``normalize`` gives each part its stored spelling (Snowflake folds unquoted names to upper case);
    ``default_schema`` is the schema a table that names none is in; ``catalog`` the database the connection is
    in when the profile does not say (DuckDB, Databricks), as the warehouse reported it.
    """
    norm = _plain(normalize)
    schema = table.schema or default_schema
    kind = getattr(config, "type", None)
    if kind == "duckdb":
        database = table.database or config.database or catalog or _duckdb_catalog(config.path)
        return DatasetId(
            f"duckdb://{_duckdb_path(config.path)}",
            _dotted([(database, "database"), (schema or "main", "schema"), (table.name, "identifier")], norm),
        )
    if kind == "postgres":
        return DatasetId(
            f"postgres://{_host_port(config.host, config.port, 5432)}",
            _dotted(
                [
                    (table.database or config.dbname, "database"),
                    (schema or "public", "schema"),
                    (table.name, "identifier"),
                ],
                norm,
            ),
        )
    if kind == "snowflake":
        return DatasetId(
            f"snowflake://{snowflake_account(config.account)}",
            _dotted(
                [(table.database or config.database, "database"), (schema, "schema"), (table.name, "identifier")], norm
            ),
        )
    if kind == "bigquery":
        return DatasetId(
            "bigquery",
            _dotted(
                [(table.database or config.project, "database"), (schema, "schema"), (table.name, "identifier")], norm
            ),
        )
    if kind == "databricks":
        host = re.sub(r"^[a-z]+://", "", config.host.strip(), flags=re.I).split("/", 1)[0].rsplit("@", 1)[-1].lower()
        return DatasetId(
            f"databricks://{host}",
            _dotted(
                [
                    (table.database or config.catalog or catalog, "database"),
                    (schema, "schema"),
                    (table.name, "identifier"),
                ],
                norm,
            ),
        )
    if kind == "sqlalchemy":
        return _sqlalchemy_id(config.url.get(), table, schema, norm)
    raise ValueError(f"no OpenLineage naming for warehouse type {kind!r}")


def _sqlalchemy_id(url_text: str, table: TableRef, schema: str | None, norm: Normalize) -> DatasetId:
    """A table behind a SQLAlchemy URL: the namespace from its host and port only (never its user or password)."""
    from sqlalchemy.engine import make_url

    url = make_url(url_text)
    backend = url.get_backend_name()
    scheme = _SCHEMES.get(backend, backend)
    database = url.database or None
    if scheme == "mysql":  # a MySQL schema is its database: {database}.{table}
        name = _dotted([(table.database or schema or database, "schema"), (table.name, "identifier")], norm)
        return DatasetId(f"mysql://{_host_port(url.host, url.port, 3306)}", name)
    if backend == "sqlite":
        return DatasetId(
            f"sqlite://{database or ':memory:'}", _dotted([(schema, "schema"), (table.name, "identifier")], norm)
        )
    if scheme == "snowflake":
        first, _, rest = (database or "").partition("/")
        name = _dotted(
            [(table.database or first, "database"), (schema or rest or None, "schema"), (table.name, "identifier")],
            norm,
        )
        return DatasetId(f"snowflake://{snowflake_account(url.host or '')}", name)
    if scheme == "bigquery":
        name = _dotted(
            [(table.database or url.host, "database"), (schema or database, "schema"), (table.name, "identifier")], norm
        )
        return DatasetId("bigquery", name)
    if scheme == "trino":  # trino://host:port/catalog[/schema]
        first, _, rest = (database or "").partition("/")
        name = _dotted(
            [(table.database or first, "database"), (schema or rest or None, "schema"), (table.name, "identifier")],
            norm,
        )
        return DatasetId(f"trino://{_host_port(url.host, url.port, 8080)}", name)
    authority = _host_port(url.host, url.port, _DEFAULT_PORTS.get(scheme))
    if scheme == "redshift" or (scheme == "postgres" and _REDSHIFT_HOST.match(url.host or "")):
        found = _REDSHIFT_HOST.match(url.host or "")
        if found:
            authority = f"{found.group(1).lower()}.{found.group(2).lower()}:{url.port or 5439}"
        scheme = "redshift"
    default = {"postgres": "public", "redshift": "public", "mssql": "dbo"}.get(scheme)
    name = _dotted(
        [(table.database or database, "database"), (schema or default, "schema"), (table.name, "identifier")], norm
    )
    return DatasetId(f"{scheme}://{authority}" if authority else scheme, name)
