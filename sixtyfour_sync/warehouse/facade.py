"""The SQL vocabulary an adapter offers the engine: each method is one pure builder bound to its names.

:class:`SqlMethods` holds no state of its own: it reads ``self.names`` (the adapter's
:class:`~sixtyfour_sync.warehouse.sql.identifiers.Names`) and ``self.dialect``, so every method here is
as pure as the builder it calls and an adapter stays the place for I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sixtyfour_sync.warehouse.dialect import Dialect
from sixtyfour_sync.warehouse.sql import ddl, select, upsert
from sixtyfour_sync.warehouse.sql.identifiers import Names, adapt_value
from sixtyfour_sync.warehouse.types import (
    Column,
    LogicalType,
    NameKind,
    TableRef,
    is_compatible,
    logical_type_of,
)

__all__ = ["SqlMethods"]


class SqlMethods:
    """Identifier, type, DDL and selection SQL for one adapter (see the module docstring)."""

    dialect: Dialect

    @property
    def names(self) -> Names:
        """The naming rules in force (dialect, quoting policy, default schema)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------ identifiers
    @property
    def quote_char(self) -> str:
        """The identifier quote character."""
        return self.dialect.quote_char

    def normalize_identifier(self, name: str, kind: NameKind = "column") -> str:
        """The stored spelling of a name we write (Snowflake: ``lead_id`` -> ``LEAD_ID``)."""
        return self.names.normalize(name, kind)

    def denormalize_identifier(self, name: str) -> str:
        """The inverse of :meth:`normalize_identifier` for names read back (``LEAD_ID`` -> ``lead_id``)."""
        return self.names.denormalize(name)

    def validate_identifier(self, name: str, *, what: str) -> str:
        """``name`` when it is a safe identifier, else :class:`~sixtyfour_sync.errors.UnsafeIdentifierError`."""
        return self.names.validate(name, what=what)

    def quote(self, name: str, *, what: str = "identifier", kind: NameKind = "column") -> str:
        """Validate, normalise and quote one identifier (always quoted)."""
        return self.names.quote(name, what=what, kind=kind)

    def table_sql(self, table: TableRef) -> str:
        """The qualified, quoted name of ``table`` (the default schema when it names none)."""
        return self.names.table(table)

    def find_column(self, columns: Iterable[str], name: str) -> str | None:
        """The stored name in ``columns`` that ``name`` refers to, or None."""
        return self.names.find_column(columns, name)

    def subquery_alias(self, alias: str) -> str:
        """How a derived table is aliased (``AS x``; some dialects reject ``AS``)."""
        return self.names.alias(alias)

    def adapt_value(self, value: Any) -> Any:
        """A Python value as the driver should receive it (dicts and lists as JSON text)."""
        return adapt_value(value)

    # ------------------------------------------------------------------------------ types and DDL
    def sql_type(self, t: LogicalType) -> str:
        """The dialect's column type for a logical type."""
        return ddl.sql_type(self.names, t)

    def logical_type_of(self, raw: str) -> LogicalType | str:
        """Map a stored type name to a logical type, or return it unchanged when there is none."""
        return logical_type_of(raw, self.dialect.types)

    def is_compatible(self, actual: LogicalType | str, wanted: LogicalType) -> bool:
        """Whether an existing column of type ``actual`` can hold values of ``wanted``."""
        return is_compatible(actual, wanted)

    def column_def_sql(self, column: Column, *, not_null: bool = False) -> str:
        """``"name" TYPE [NOT NULL]``."""
        return ddl.column_def_sql(self.names, column, not_null=not_null)

    def create_table_sql(self, table: TableRef, key: Sequence[Column], columns: Sequence[Column]) -> str:
        """``CREATE TABLE [IF NOT EXISTS]`` with the key NOT NULL and its PRIMARY KEY."""
        return ddl.create_table_sql(self.names, table, key, columns)

    def add_column_sql(self, table: TableRef, column: Column) -> str:
        """``ALTER TABLE ... ADD COLUMN [IF NOT EXISTS]``."""
        return ddl.add_column_sql(self.names, table, column)

    def create_schema_sql(self, schema: str) -> str:
        """``CREATE SCHEMA IF NOT EXISTS``."""
        return ddl.create_schema_sql(self.names, schema)

    # ------------------------------------------------------------------------------ selection and hashing
    def source_sql(
        self,
        *,
        table: TableRef | None = None,
        sql: str | None = None,
        columns: Sequence[str] | None = None,
        where: str | None = None,
        order_by: Sequence[str] | None = None,
    ) -> str:
        """``SELECT columns FROM table|(sql) WHERE where ORDER BY ...``; ``where``/``sql`` are user SQL."""
        return select.source_sql(self.names, table=table, sql=sql, columns=columns, where=where, order_by=order_by)

    def limit_sql(self, sql: str, n: int) -> str:
        """``sql`` limited to ``n`` rows."""
        return select.limit_sql(sql, n)

    def clean_source_sql(self, source_sql: str, key: Sequence[str]) -> str:
        """The source minus rows with a NULL key part or a duplicated key, so they are never sent."""
        return select.clean_source_sql(self.names, source_sql, key)

    def row_hash_sql(self, columns: Sequence[str], alias: str | None = None) -> str:
        """A deterministic hex MD5 over the columns' text forms, NULL-safe and separator-safe."""
        return select.row_hash_sql(self.names, columns, alias)

    def now_sql(self) -> str:
        """The current UTC timestamp."""
        return select.now_sql(self.names)

    def now_epoch_sql(self) -> str:
        """The warehouse's own clock as epoch seconds (a float), for leases compared in SQL."""
        return select.now_epoch_sql(self.names)

    def age_seconds_sql(self, column_sql: str) -> str:
        """Seconds elapsed since the timestamp expression ``column_sql``."""
        return select.age_seconds_sql(self.names, column_sql)

    def insert_if_absent_sql(self, table: TableRef, columns: Sequence[str], key_columns: Sequence[str]) -> str:
        """ONE statement inserting one row (``?`` in column order) unless its key exists: 1 or 0 rows."""
        return upsert.insert_if_absent_sql(self.names, table, columns, key_columns)
