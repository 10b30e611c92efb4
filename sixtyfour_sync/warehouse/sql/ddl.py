"""DDL: column definitions, tables, columns, schemas and staging tables (pure).

``CREATE TABLE IF NOT EXISTS`` and ``ADD COLUMN IF NOT EXISTS`` (where the dialect has it) let two
first runs race: both may create the table or add the column, neither fails.
"""

from __future__ import annotations

from collections.abc import Sequence

from sixtyfour_sync.warehouse.sql.identifiers import Names
from sixtyfour_sync.warehouse.types import Column, LogicalType, TableRef

__all__ = [
    "add_column_sql",
    "column_def_sql",
    "create_schema_sql",
    "create_stage_sql",
    "create_table_sql",
    "sql_type",
]


def sql_type(names: Names, t: LogicalType, *, key: bool = False) -> str:
    """The dialect's column type for a logical type."""
    return names.dialect.type_name(t, key=key)


def column_def_sql(names: Names, column: Column, *, not_null: bool = False, key: bool = False) -> str:
    """``"name" TYPE [NOT NULL]``."""
    typ = column.sql or sql_type(names, column.type, key=key)
    sql = f"{names.quote(column.name, what='column')} {typ}"
    if not_null or not column.nullable:
        sql += " NOT NULL"
    return sql


def create_table_sql(names: Names, table: TableRef, key: Sequence[Column], columns: Sequence[Column]) -> str:
    """``CREATE TABLE [IF NOT EXISTS]`` with the key NOT NULL and its PRIMARY KEY."""
    defs = [column_def_sql(names, k, not_null=True, key=True) for k in key]
    defs += [column_def_sql(names, c) for c in columns]
    if key:
        defs.append("PRIMARY KEY (" + names.columns((k.name for k in key), what="key column") + ")")
    guard = " IF NOT EXISTS" if names.dialect.create_table_if_not_exists else ""
    return f"CREATE TABLE{guard} {names.table(table)} ({', '.join(defs)})"


def add_column_sql(names: Names, table: TableRef, column: Column) -> str:
    """``ALTER TABLE ... ADD COLUMN [IF NOT EXISTS]`` (always nullable: existing rows have no value)."""
    guard = " IF NOT EXISTS" if names.dialect.add_column_if_not_exists else ""
    return f"ALTER TABLE {names.table(table)} ADD COLUMN{guard} {column_def_sql(names, column)}"


def create_schema_sql(names: Names, schema: str) -> str:
    """``CREATE SCHEMA IF NOT EXISTS``."""
    return f"CREATE SCHEMA IF NOT EXISTS {names.quote(schema, what='schema', kind='schema')}"


def create_stage_sql(
    names: Names,
    stage: str,
    table: TableRef,
    columns: Sequence[str],
    flags: Sequence[str] = (),
    *,
    options: str = "",
) -> str:
    """A staging table with the target's column types for ``columns`` and booleans for ``flags`` (no rows).

    ``stage`` is the staging table's SQL name (already quoted); ``options`` follow it (PostgreSQL's
    ``ON COMMIT DROP``).
    """
    cols = [names.quote(c, what="column") for c in columns]
    cols += [f"{names.dialect.false_literal} AS {names.quote(f, what='guard column')}" for f in flags]
    head = f"{names.dialect.temp_table} {stage}" + (f" {options}" if options else "")
    return f"{head} AS SELECT {', '.join(cols)} FROM {names.table(table)} WHERE 1 = 0"
