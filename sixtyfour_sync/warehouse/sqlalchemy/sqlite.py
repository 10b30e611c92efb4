"""SQLite files (and ``sqlite://`` in memory) through SQLAlchemy and the standard library driver.

Transactions are made real (pysqlite's implicit BEGIN is switched off and SQLAlchemy emits ``BEGIN``),
file databases are switched to ``journal_mode = WAL`` (persistent: it lets the source stream read while
ledger writes commit), an ``md5()`` SQL function is registered on every connection (SQLite has none) for
the row hash, timestamps are stored as UTC ISO-8601 text (``YYYY-MM-DD HH:MM:SS.ffffff+00:00``, which
SQLite's date functions read), JSON as ``TEXT``. Upserts use ``UPDATE ... FROM`` (SQLite 3.33+; older
versions get the correlated form). A relative database path in the URL resolves against the project
directory. No session setting changes how SQLite renders a value as text.
"""

from __future__ import annotations

import builtins
import hashlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from sixtyfour_sync.errors import WarehouseError
from sixtyfour_sync.warehouse.arrow import rows_to_batches
from sixtyfour_sync.warehouse.dialect import SQLITE, Dialect
from sixtyfour_sync.warehouse.sql import catalog
from sixtyfour_sync.warehouse.sqlalchemy.generic import SqlAlchemyAdapter
from sixtyfour_sync.warehouse.types import Capabilities, LogicalType, TableRef

__all__ = ["SQLiteAdapter", "md5_text"]


def md5_text(value: object) -> str | None:
    """SQLite ``md5(text)``: lower-case hex digest of the UTF-8 text, NULL for NULL."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return hashlib.md5(value, usedforsecurity=False).hexdigest()
    return hashlib.md5(str(value).encode("utf-8"), usedforsecurity=False).hexdigest()


class SQLiteAdapter(SqlAlchemyAdapter):
    """SQLite (see the module docstring)."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        upsert="update_insert",
        staging="executemany",
        json_type=None,
        identifier_case="preserve",
        max_identifier_length=128,
        transactional_ddl=True,
    )
    # UPDATE ... FROM arrived in SQLite 3.33.
    dialect: Dialect = (
        SQLITE if sqlite3.sqlite_version_info >= (3, 33, 0) else replace(SQLITE, update_style="correlated")
    )

    def _adjust_url(self, url: sa.URL) -> sa.URL:
        db = url.database
        if db and db != ":memory:" and not db.startswith("file:") and self.project_dir is not None:
            p = Path(db).expanduser()
            if not p.is_absolute():
                return url.set(database=str(self.project_dir / p))
        return url

    def _install_events(self, engine: sa.Engine) -> None:
        def on_connect(dbapi_conn: Any, record: Any) -> None:
            # pysqlite's legacy mode begins transactions behind SQLAlchemy's back and not before DDL;
            # take control so BEGIN/COMMIT/ROLLBACK mean what they say.
            dbapi_conn.isolation_level = None
            dbapi_conn.create_function("md5", 1, md5_text, deterministic=True)
            cur = dbapi_conn.cursor()
            try:
                cur.execute("PRAGMA busy_timeout = 30000")
                # WAL lets the source stream keep reading while ledger writes commit (in the default
                # rollback journal a pending read blocks every commit). It is a property of the file;
                # an in-memory database answers "memory" and stays as it is.
                cur.execute("PRAGMA journal_mode = WAL")
            finally:
                cur.close()

        def on_begin(conn: Any) -> None:
            if not conn.connection.dbapi_connection.in_transaction:
                # IMMEDIATE: the write lock is taken (waiting up to busy_timeout) when the transaction starts.
                # A deferred transaction that reads and then writes while another connection (the lease's,
                # the key writer's) committed meanwhile fails at once with "database is locked" in WAL mode:
                # SQLite cannot upgrade a stale read snapshot, and busy_timeout does not apply.
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        sa.event.listen(engine, "connect", on_connect)
        sa.event.listen(engine, "begin", on_begin)

    def _engine_options(self) -> dict[str, Any]:
        # Sessions always end in an explicit COMMIT/ROLLBACK; the pool's reset-on-return rollback could
        # only hit a transaction that another checkout of the same in-memory connection still owns.
        return {"pool_reset_on_return": None}

    def _driver_errors(self) -> tuple[builtins.type[BaseException], ...]:
        return (sa.exc.SQLAlchemyError, sqlite3.Error)

    def _is_duplicate_key(self, exc: BaseException) -> bool:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        orig = getattr(cause, "orig", cause)
        return isinstance(orig, sqlite3.IntegrityError) and "UNIQUE" in str(orig).upper()

    def stream(self, sql: str, params: Sequence[Any] = (), *, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        """Read with a plain DB-API cursor (SQLite reads lazily), outside any transaction.

        SQLAlchemy's autobegin would open a transaction on the reading connection; on an in-memory
        database that connection is the one the sessions use, so the read stays out of it.
        """
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        stmt, args = self.driver_sql(sql, params)
        with self._errors("reading rows", sql):
            raw = self.engine.raw_connection()
            try:
                cur = raw.driver_connection.cursor()  # type: ignore[union-attr]
                try:
                    cur.execute(stmt, args)
                    names = [str(d[0]) for d in cur.description or ()]
                    yield from rows_to_batches(cur.fetchmany, names, batch_rows)
                finally:
                    cur.close()
            finally:
                raw.close()

    def _python_columns(self, data: pa.Table) -> list[list[Any]]:
        out: list[list[Any]] = []
        for col in data.columns:
            t = col.type
            if pa.types.is_timestamp(t):
                utc = self._timestamp_column(col)
                # ISO-8601 with the offset: sortable, and julianday()/datetime() read it.
                text = pc.strftime(utc.cast(pa.timestamp("us", tz="UTC")), format="%Y-%m-%d %H:%M:%S")
                out.append([None if v is None else v + "+00:00" for v in text.to_pylist()])
            elif pa.types.is_decimal(t):
                out.append([None if v is None else str(v) for v in col.to_pylist()])
            elif pa.types.is_date(t) or pa.types.is_time(t):
                out.append([None if v is None else v.isoformat() for v in col.to_pylist()])
            else:
                out.append(col.to_pylist())
        return out

    def ensure_schema(self, schema: str | None = None) -> None:
        """SQLite has no CREATE SCHEMA: ``main``/``temp`` always exist, any other must be attached."""
        schema = schema or self.default_schema
        if not schema:
            return
        with self.session() as s:
            names = [str(r[1]).lower() for r in s.fetchall("PRAGMA database_list")]
        if schema.lower() not in names:
            raise WarehouseError(
                f"sqlite: schema {schema!r} does not exist (attached: {', '.join(names)})",
                hint="leave `schema` unset (or `main`) for SQLite",
            )

    def schema_exists(self, schema: str) -> bool:
        """Whether the schema is attached."""
        self.validate_identifier(schema, what="schema")
        with self.session() as s:
            return schema.lower() in [str(r[1]).lower() for r in s.fetchall("PRAGMA database_list")]

    def _table_exists_query(self, table: TableRef) -> tuple[str, list[Any]]:
        return catalog.sqlite_table_exists_sql(self.names, table)

    def get_columns(self, table: TableRef) -> dict[str, LogicalType | str]:
        """Columns from ``PRAGMA table_info`` (SQLite has no information_schema)."""
        self.validate_identifier(table.name, what="table name")
        sql, params = catalog.sqlite_columns_sql(self.names, table)
        with self.session() as s:
            rows = s.fetchall(sql, params)
        return {str(r[1]): self.logical_type_of(str(r[2] or "")) for r in rows}
