"""MySQL and MariaDB through SQLAlchemy (pymysql, or another MySQL driver SQLAlchemy knows).

Names are quoted with backticks. Every connection runs with ``time_zone = '+00:00'`` (set after any
``init_command`` of the profile's ``connect_args``), so timestamps are UTC and a ``TIMESTAMP`` column's text
- hence a row hash - never shifts with a server or user default. TIMESTAMP columns are ``DATETIME(6)``
holding UTC (MySQL's ``TIMESTAMP`` stops in 2038 and shifts with the session time zone); JSON columns use
``JSON`` (a ``LONGTEXT`` alias with a validity check on MariaDB); text key columns are ``VARCHAR(255)``
because a ``TEXT`` column cannot be a primary key. Upserts stage rows in a per-connection ``TEMPORARY``
table (creating one does not commit the open transaction), then ``UPDATE target JOIN stage ... SET`` and
``INSERT ... SELECT ... WHERE NOT EXISTS``. A multi-table UPDATE may apply its assignments in any order, so
a guard comparing a column that the same UPDATE writes is decided in the stage first. Once connected to
MariaDB the adapter adds ``ADD COLUMN IF NOT EXISTS``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

import pyarrow as pa
import sqlalchemy as sa

from sixtyfour_sync.warehouse.dialect import MARIADB, MYSQL, Dialect
from sixtyfour_sync.warehouse.session import Session
from sixtyfour_sync.warehouse.sqlalchemy.generic import SqlAlchemyAdapter
from sixtyfour_sync.warehouse.types import Capabilities, TableRef

__all__ = ["MySQLAdapter"]

#: MySQL's error numbers for a duplicate key (ER_DUP_ENTRY, ER_DUP_KEY).
_DUPLICATE_KEY = frozenset({1062, 1022})


class MySQLAdapter(SqlAlchemyAdapter):
    """MySQL and MariaDB (see the module docstring)."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        upsert="update_insert",
        staging="executemany",
        json_type="JSON",
        identifier_case="preserve",
        max_identifier_length=64,
        transactional_ddl=False,
    )
    dialect: Dialect = MYSQL

    def _install_events(self, engine: sa.Engine) -> None:
        def on_connect(dbapi_conn: Any, record: Any) -> None:
            cur = dbapi_conn.cursor()
            try:
                # UTC in and out: DATETIME holds UTC, NOW()/UTC_TIMESTAMP agree with it.
                cur.execute("SET time_zone = '+00:00'")
            finally:
                cur.close()

        sa.event.listen(engine, "connect", on_connect)

    def open(self) -> None:
        """Connect now, and learn whether the server is MariaDB."""
        super().open()
        if getattr(self.engine.dialect, "is_mariadb", False):
            self.dialect = MARIADB

    def _is_duplicate_key(self, exc: BaseException) -> bool:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        orig = getattr(cause, "orig", cause)
        args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
        return bool(args) and args[0] in _DUPLICATE_KEY

    def source_column_types(self, sql: str, columns: Sequence[str]) -> dict[str, str]:
        """The query's column types as MySQL names them (``bigint(20) unsigned``, ``decimal(30,0)``): from an
        empty temporary table created from it (which neither commits nor holds a row)."""
        name = f"_sixtyfour_keys_{uuid.uuid4().hex[:12]}"
        table = self._stage_table_sql(name, TableRef(name, self.default_schema))
        cols = ", ".join(self.quote(c, what="key column") for c in columns)
        with self.session() as s:
            s.execute(f"CREATE TEMPORARY TABLE {table} AS SELECT {cols} FROM ({sql}) AS _k LIMIT 0")
            try:
                rows = s.fetchall(f"SHOW COLUMNS FROM {table}")
            finally:
                s.execute(f"{self.dialect.drop_temp_table} {table}")
        return {str(r[0]): str(r[1].decode() if isinstance(r[1], bytes) else r[1]) for r in rows}

    def _stage_table_sql(self, name: str, table: TableRef) -> str:
        # Qualified by the target's database, so staging works even when the URL names no database.
        schema = self.names.schema_of(table)
        quoted = self.quote(name, kind="identifier")
        return f"{self.quote(schema, what='schema', kind='schema')}.{quoted}" if schema else quoted

    def _drop_stage(self, session: Session, stage: str) -> None:
        # Plain DROP TABLE commits the open transaction in MySQL/MariaDB, even for a temporary table;
        # only DROP TEMPORARY TABLE does not. Without it a failed upsert would keep its UPDATE.
        session.execute(f"{self.dialect.drop_temp_table} {stage}")

    def _timestamp_column(self, col: pa.ChunkedArray) -> pa.ChunkedArray:
        # DATETIME has no zone: bind naive UTC values (pymysql would drop any tzinfo silently).
        utc = super()._timestamp_column(col)
        return utc.cast(pa.timestamp(col.type.unit))
