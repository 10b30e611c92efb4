"""Catalog queries: does a table or schema exist, its columns and types, its unique keys (pure).

Each returns ``(sql, params)`` with ``?`` placeholders; names are passed as parameters, normalised to
the spelling the warehouse stores. ``information_schema`` serves most dialects; PostgreSQL, DuckDB and
SQLite have their own catalogs where information_schema is slower or missing something.
"""

from __future__ import annotations

from typing import Any

from sixtyfour_sync.warehouse.sql.identifiers import Names
from sixtyfour_sync.warehouse.types import TableRef

__all__ = [
    "duckdb_filter",
    "duckdb_unique_keys_sql",
    "information_schema_columns_sql",
    "information_schema_tables_sql",
    "pg_columns_sql",
    "pg_table_exists_sql",
    "pg_unique_keys_sql",
    "schemata_sql",
    "snowflake_columns_sql",
    "sqlite_columns_sql",
    "sqlite_table_exists_sql",
]

Query = tuple[str, list[Any]]


def _match(names: Names, column: str) -> str:
    if names.dialect.case_insensitive:
        return f"LOWER({column}) = LOWER(?)"
    return f"{column} = ?"


def _info(names: Names, table: TableRef) -> str:
    if table.database:
        return f"{names.quote(table.database, what=f'database of table {table}', kind='database')}.information_schema"
    return "information_schema"


def _info_filter(names: Names, table: TableRef) -> Query:
    names.validate(table.name, what="table name")
    sql = _match(names, "table_name")
    params: list[Any] = [names.normalize(table.name, "identifier")]
    schema = names.schema_of(table)
    if schema is not None:
        sql += f" AND {_match(names, 'table_schema')}"
        params.append(names.normalize(schema, "schema"))
    return sql, params


def information_schema_tables_sql(names: Names, table: TableRef) -> Query:
    """The table (or view) by name and schema in ``information_schema.tables``."""
    where, params = _info_filter(names, table)
    return f"SELECT table_name FROM {_info(names, table)}.tables WHERE {where}", params


def information_schema_columns_sql(names: Names, table: TableRef) -> Query:
    """``(column_name, data_type)`` in order from ``information_schema.columns``."""
    where, params = _info_filter(names, table)
    sql = f"SELECT column_name, data_type FROM {_info(names, table)}.columns WHERE {where} ORDER BY ordinal_position"
    return sql, params


def snowflake_columns_sql(names: Names, table: TableRef) -> Query:
    """Snowflake's columns with NUMBER's precision and scale (BIGINT is NUMBER(38,0))."""
    where, params = _info_filter(names, table)
    sql = (
        "SELECT column_name, data_type, numeric_precision, numeric_scale "
        f"FROM {_info(names, table)}.columns WHERE {where} ORDER BY ordinal_position"
    )
    return sql, params


def schemata_sql(names: Names, schema: str) -> Query:
    """The schema by name in ``information_schema.schemata``."""
    names.validate(schema, what="schema")
    return (
        f"SELECT 1 FROM information_schema.schemata WHERE {_match(names, 'schema_name')}",
        [names.normalize(schema, "schema")],
    )


# ---------------------------------------------------------------------------------------------- DuckDB


def duckdb_filter(names: Names, table: TableRef) -> Query:
    """Name, schema and catalog, case-insensitively (DuckDB compares names that way)."""
    names.validate(table.name, what="table name")
    sql = "lower(table_name) = lower(?)"
    params: list[Any] = [table.name]
    schema = names.schema_of(table)
    if schema is not None:
        sql += " AND lower(table_schema) = lower(?)"
        params.append(schema)
    if table.database:
        sql += " AND lower(table_catalog) = lower(?)"
        params.append(table.database)
    else:
        sql += " AND table_catalog = current_database()"
    return sql, params


def duckdb_unique_keys_sql(names: Names, table: TableRef) -> Query:
    """The column lists of the table's PRIMARY KEY and UNIQUE constraints."""
    sql = (
        "SELECT constraint_column_names FROM duckdb_constraints() WHERE constraint_type IN "
        "('PRIMARY KEY', 'UNIQUE') AND lower(table_name) = lower(?) AND lower(schema_name) = lower(?)"
    )
    params: list[Any] = [table.name, names.schema_of(table) or "main"]
    if table.database:
        sql += " AND lower(database_name) = lower(?)"
        params.append(table.database)
    else:
        sql += " AND database_name = current_database()"
    return sql, params


# ---------------------------------------------------------------------------------------------- PostgreSQL


def _pg_filter(names: Names, table: TableRef) -> Query:
    names.validate(table.name, what="table name")
    if table.database:
        names.validate(table.database, what=f"database of table {table}")
    sql = "c.relname = ?"
    params: list[Any] = [names.normalize(table.name, "identifier")]
    schema = names.schema_of(table)
    if schema is not None:
        sql += " AND n.nspname = ?"
        params.append(names.normalize(schema, "schema"))
    else:
        sql += " AND pg_catalog.pg_table_is_visible(c.oid)"
    return sql, params


def pg_table_exists_sql(names: Names, table: TableRef) -> Query:
    """A table, view, materialized view or foreign table by name in ``pg_class``."""
    where, params = _pg_filter(names, table)
    return (
        "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {where}",
        params,
    )


def pg_columns_sql(names: Names, table: TableRef) -> Query:
    """``(attname, format_type)`` in order (``format_type`` keeps ``text[]``, ``numeric(10,2)``...)."""
    where, params = _pg_filter(names, table)
    return (
        "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a "
        "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = "
        f"c.relnamespace WHERE a.attnum > 0 AND NOT a.attisdropped AND {where} ORDER BY a.attnum",
        params,
    )


def pg_unique_keys_sql(names: Names, table: TableRef) -> Query:
    """The column lists of the table's plain unique indexes (no predicate, no expressions)."""
    where, params = _pg_filter(names, table)
    return (
        "SELECT array_agg(a.attname::text) FROM pg_catalog.pg_index i "
        "JOIN pg_catalog.pg_class c ON c.oid = i.indrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) "
        f"WHERE i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL AND {where} "
        "GROUP BY i.indexrelid",
        params,
    )


# ---------------------------------------------------------------------------------------------- SQLite


def _sqlite_prefix(names: Names, table: TableRef) -> str:
    schema = names.schema_of(table)
    return f"{names.quote(schema, what='schema', kind='schema')}." if schema else ""


def sqlite_table_exists_sql(names: Names, table: TableRef) -> Query:
    """The name in the schema's ``sqlite_master`` (tables and views)."""
    names.validate(table.name, what="table name")
    return (
        f"SELECT name FROM {_sqlite_prefix(names, table)}sqlite_master "
        "WHERE type IN ('table', 'view') AND LOWER(name) = LOWER(?)",
        [table.name],
    )


def sqlite_columns_sql(names: Names, table: TableRef) -> Query:
    """``PRAGMA table_info`` (SQLite has no information_schema): rows of (cid, name, type, ...)."""
    quoted = names.quote(table.name, what="table name", kind="identifier")
    return f"PRAGMA {_sqlite_prefix(names, table)}table_info({quoted})", []
