"""Any SQLAlchemy URL: MySQL/MariaDB and SQLite tuned and tested, other dialects through a generic path.

``type: sqlalchemy`` takes one ``url``. The adapter picks a dialect variant from the URL:

- **MySQL / MariaDB** (``mysql+pymysql://``): names are quoted with backticks by the dialect's
  ``IdentifierPreparer``; the session runs with ``time_zone = '+00:00'`` so timestamps are UTC.
  TIMESTAMP columns are ``DATETIME(6)`` holding UTC (MySQL's ``TIMESTAMP`` stops in 2038 and shifts with
  the session time zone); JSON columns use ``JSON`` (a ``LONGTEXT`` alias with a validity check on
  MariaDB); text key columns are ``VARCHAR(255)`` because a ``TEXT`` column cannot be a primary key.
  Upserts stage rows in a per-connection ``TEMPORARY`` table (creating one does not commit the open
  transaction), then ``UPDATE target JOIN stage ... SET`` and ``INSERT ... SELECT ... WHERE NOT EXISTS``.
- **SQLite**: transactions are made real (pysqlite's implicit BEGIN is switched off and SQLAlchemy emits
  ``BEGIN``), file databases are switched to ``journal_mode = WAL`` (persistent: it lets the source
  stream read while ledger writes commit), an ``md5()`` SQL function is registered on every connection
  (SQLite has none) for :meth:`~sixtyfour_sync.warehouse.base.Adapter.row_hash_sql`, timestamps are
  stored as UTC ISO-8601 text (``YYYY-MM-DD HH:MM:SS.ffffff+00:00``, which SQLite's date functions
  read), JSON as ``TEXT``.
  Upserts use ``UPDATE ... FROM`` (SQLite 3.33+; older versions get the correlated form).
  A relative database path in the URL resolves against the project directory.
- **Anything else** (Redshift, BigQuery, Oracle, SQL Server...): ``?`` placeholders are converted to the
  driver's paramstyle, staging is a temporary table filled with ``executemany``, and the update is the
  portable correlated-subquery ``UPDATE`` + ``INSERT ... WHERE NOT EXISTS``. Dialects that fold unquoted
  names to upper case (``requires_name_normalize``, e.g. Oracle) get the same upper-casing rule as
  Snowflake.

Extraction runs on its own connection with ``stream_results=True`` (a server-side cursor where the
driver has one: pymysql's ``SSCursor``), converted to Arrow record batches of ``batch_rows`` rows. Driver
exceptions are converted once, here, into :class:`~sixtyfour_sync.errors.WarehouseError` carrying the
driver's own message (never SQLAlchemy's rendering of the bound parameters).
"""

from __future__ import annotations

import builtins
import hashlib
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from sixtyfour_sync.errors import ConfigError, DataError, MissingDriverError, WarehouseError
from sixtyfour_sync.warehouse.base import (
    Adapter,
    Capabilities,
    LogicalType,
    Session,
    TableRef,
    convert_qmark,
)

if TYPE_CHECKING:
    from sixtyfour_sync.config.profiles import TargetConfig

__all__ = ["MySQLAdapter", "SQLiteAdapter", "SqlAlchemyAdapter", "arrow_from_rows", "rows_to_batches"]

_PLACEHOLDER = "\x00"
#: Rows per ``executemany`` call when staging: large enough that pymysql's multi-row INSERT rewrite
#: amortises round trips, small enough to stay far below MariaDB's 16 MB ``max_allowed_packet``.
_STAGE_CHUNK_ROWS = 10_000
#: Rows converted from Python objects to Arrow at a time when reading (bounds the Python row objects).
_CONVERT_ROWS = 10_000


def _md5_text(value: object) -> str | None:
    """SQLite ``md5(text)``: lower-case hex digest of the UTF-8 text, NULL for NULL."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return hashlib.md5(value, usedforsecurity=False).hexdigest()
    return hashlib.md5(str(value).encode("utf-8"), usedforsecurity=False).hexdigest()


def _column_array(values: Sequence[Any]) -> pa.Array:
    """One column of Python values as Arrow; mixed or unconvertible values fall back to text."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def arrow_from_rows(
    names: Sequence[str], rows: Sequence[Sequence[Any]], schema: pa.Schema | None = None
) -> pa.RecordBatch:
    """Build a record batch from DB-API rows, conforming to ``schema`` (the stream's so far) when given.

    With a schema the known types are used directly (no inference pass); columns that were all NULL so
    far take whatever type shows up. A column whose values no longer fit its type (SQLite's per-value
    typing allows it) is a :class:`DataError` naming the column: earlier batches are already out.
    """
    # One list per column (2.5x faster to convert than the tuples zip(*rows) would give).
    columns = [[r[i] for r in rows] for i in range(len(names))]
    arrays: list[pa.Array] = []
    for i, values in enumerate(columns):
        want = None if schema is None else schema.field(i).type
        if want is None or pa.types.is_null(want):
            arrays.append(_column_array(values))
            continue
        try:
            arrays.append(pa.array(values, type=want))
            continue
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            arr = _column_array(values)
        try:
            arrays.append(arr.cast(want))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            raise DataError(
                f"column {names[i]!r} changes type while streaming ({want} first, then {arr.type})",
                hint=f"cast it in the source SQL, e.g. CAST({names[i]} AS TEXT)",
            ) from None
    return pa.RecordBatch.from_arrays(arrays, names=list(names))


def rows_to_batches(
    fetchmany: Callable[[int], Sequence[Sequence[Any]]], names: Sequence[str], batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """Turn a DB-API style ``fetchmany`` into Arrow batches of up to ``batch_rows`` rows.

    Rows are fetched and converted :data:`_CONVERT_ROWS` at a time, so at most that many Python row
    objects are alive (Python rows weigh ~10x their Arrow form); the converted slices are joined into
    one batch. Every batch has the same schema: the first type seen for a column wins, and columns that
    were all NULL so far take the type that shows up later.
    """
    schema: pa.Schema | None = None
    step = max(1, min(batch_rows, _CONVERT_ROWS))
    while True:
        parts: list[pa.RecordBatch] = []
        held = 0
        while held < batch_rows:
            rows = fetchmany(min(step, batch_rows - held))
            if not rows:
                break
            part = arrow_from_rows(names, rows, schema)
            if schema is None or any(pa.types.is_null(f.type) for f in schema):
                schema = _merge_schema(schema, part.schema)
            parts.append(part)
            held += part.num_rows
        if not parts:
            return
        assert schema is not None
        yield _concat(parts, schema)
        if held < batch_rows:
            return


def _merge_schema(old: pa.Schema | None, new: pa.Schema) -> pa.Schema:
    if old is None:
        return new
    fields = [o if not pa.types.is_null(o.type) else n for o, n in zip(old, new, strict=True)]
    return pa.schema(fields)


def _concat(parts: Sequence[pa.RecordBatch], schema: pa.Schema) -> pa.RecordBatch:
    conformed = []
    for part in parts:
        if part.schema != schema:
            arrays = [
                col
                if col.type == f.type
                else (pa.nulls(len(col), f.type) if pa.types.is_null(col.type) else col.cast(f.type))
                for col, f in zip(part.columns, schema, strict=True)
            ]
            part = pa.RecordBatch.from_arrays(arrays, schema=schema)
        conformed.append(part)
    if len(conformed) == 1:
        return conformed[0]
    return pa.Table.from_batches(conformed, schema=schema).combine_chunks().to_batches()[0]


class _SqlAlchemySession(Session):
    """One transaction on one pooled connection (temporary tables live as long as it does)."""

    adapter: SqlAlchemyAdapter

    def __init__(self, adapter: SqlAlchemyAdapter, conn: sa.Connection) -> None:
        super().__init__(adapter)
        self.conn = conn
        self.trans = conn.begin()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        stmt, args = self.adapter.driver_sql(sql, params)
        result = self.conn.exec_driver_sql(stmt, args)
        try:
            return int(result.rowcount)
        finally:
            result.close()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        stmt, args = self.adapter.driver_sql(sql, params)
        result = self.conn.exec_driver_sql(stmt, args)
        names = list(result.keys())
        return names, [tuple(r) for r in result.fetchall()]

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        stmt, _ = self.adapter.driver_sql(sql, rows[0])
        if self.adapter.dialect.paramstyle == "named":
            batch: Any = [{f"p{i}": v for i, v in enumerate(r)} for r in rows]
        else:
            batch = [tuple(r) for r in rows]
        self.conn.exec_driver_sql(stmt, batch).close()

    def _commit(self) -> None:
        self.trans.commit()

    def _rollback(self) -> None:
        self.trans.rollback()

    def _close(self) -> None:
        self.conn.close()


class SqlAlchemyAdapter(Adapter):
    """A warehouse reached through any SQLAlchemy URL (see the module docstring for each dialect)."""

    type: ClassVar[str] = "sqlalchemy"
    capabilities: ClassVar[Capabilities] = Capabilities(
        upsert="update_insert",
        staging="executemany",
        json_type=None,
        identifier_case="lower",
        max_identifier_length=128,
        transactional_ddl=False,
    )

    def __new__(cls, config: TargetConfig | None = None, **kwargs: Any) -> SqlAlchemyAdapter:
        # One `type: sqlalchemy` in profiles.yml, one variant per dialect family: pick it from the URL so
        # each variant can declare its capabilities as class data.
        if cls is SqlAlchemyAdapter:
            cls = _variant_for(_url_text(config, kwargs.get("url")))
        return super().__new__(cls)

    def __init__(
        self,
        config: TargetConfig | None = None,
        *,
        project_dir: Path | None = None,
        url: str | None = None,
        engine: sa.Engine | None = None,
    ) -> None:
        """Build from a profile output (``config.url``), or from a bare ``url``, or around an ``engine``.

        An ``engine`` given by the caller is used as is (its dialect's per-connection hooks are added);
        otherwise one is created (it connects on first use), with bound parameters hidden from errors.
        """
        super().__init__(config, project_dir=project_dir)
        raw = _url_text(config, url)
        if engine is None and raw is None:
            raise ConfigError("type: sqlalchemy needs a `url`")
        connect_args = dict(getattr(config, "connect_args", None) or {})
        if engine is None:
            engine = self._create_engine(raw or "", connect_args)
        else:
            self._install_events(engine)
        self.engine: sa.Engine = engine
        self.dialect = self.engine.dialect
        self._preparer = self.dialect.identifier_preparer

    # ------------------------------------------------------------------------------ connection
    def _create_engine(self, raw: str, connect_args: dict[str, Any]) -> sa.Engine:
        try:
            url = sa.engine.make_url(raw)
        except sa.exc.ArgumentError:
            raise ConfigError(
                "type: sqlalchemy: `url` is not a valid SQLAlchemy URL",
                hint="dialect+driver://user:pass@host/db, e.g. mysql+pymysql://... or sqlite:///file.db",
            ) from None
        url = self._adjust_url(url)
        try:
            engine: sa.Engine = sa.create_engine(
                url, connect_args=connect_args, hide_parameters=True, **self._engine_options()
            )
        except (ImportError, sa.exc.NoSuchModuleError) as exc:
            raise MissingDriverError(
                f"the driver for {url.drivername!r} is not installed ({exc})",
                hint=_driver_hint(url.drivername),
            ) from None
        self._install_events(engine)
        return engine

    def _adjust_url(self, url: sa.URL) -> sa.URL:
        """Dialect-specific URL fixes (SQLite: relative paths from the project directory)."""
        return url

    def _engine_options(self) -> dict[str, Any]:
        """Extra ``create_engine`` options for this dialect."""
        return {"pool_pre_ping": True}

    def _install_events(self, engine: sa.Engine) -> None:
        """Per-connection setup hooks (time zone, SQL functions, transaction mode)."""

    def open(self) -> None:
        """Connect now so a bad URL, password or host surfaces before any work."""
        with self._errors("connecting"), self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1").close()

    def close(self) -> None:
        """Dispose of the connection pool."""
        if not self._closed:
            self.engine.dispose()
        super().close()

    def describe(self) -> str:
        """The URL with its password masked, and the schema."""
        shown = self.engine.url.render_as_string(hide_password=True)
        return f"sqlalchemy {shown} (schema {self.default_schema})"

    def _driver_errors(self) -> tuple[builtins.type[BaseException], ...]:
        return (sa.exc.SQLAlchemyError,)

    def _wrap_error(self, exc: BaseException, doing: str, sql: str | None = None) -> WarehouseError:
        # SQLAlchemy's message embeds the statement and (unless hidden) the parameters; the driver's own
        # message is what the user needs.
        orig = getattr(exc, "orig", None)
        if isinstance(orig, BaseException):
            return super()._wrap_error(orig, doing, sql)
        return super()._wrap_error(exc, doing, sql)

    def _open_session(self) -> Session:
        return _SqlAlchemySession(self, self.engine.connect())

    # ------------------------------------------------------------------------------ SQL text
    def driver_sql(self, sql: str, params: Sequence[Any] = ()) -> tuple[str, Any]:
        """``sql`` with ``?`` placeholders rewritten for the driver's paramstyle, and its parameters."""
        style = self.dialect.paramstyle
        values = [self.adapt_value(v) for v in params]
        if style == "qmark":
            return sql, tuple(values)
        if style in ("format", "pyformat"):
            # SQLAlchemy always passes a parameter tuple, so the driver always %-formats: escape every %.
            return convert_qmark(sql, "%s", escape_percent=True), tuple(values)
        marked = convert_qmark(sql, _PLACEHOLDER, escape_percent=False)
        pieces = marked.split(_PLACEHOLDER)
        if style == "named":
            out = pieces[0] + "".join(f":p{i}{p}" for i, p in enumerate(pieces[1:]))
            return out, {f"p{i}": v for i, v in enumerate(values)}
        if style == "numeric_dollar":
            return pieces[0] + "".join(f"${i + 1}{p}" for i, p in enumerate(pieces[1:])), tuple(values)
        return pieces[0] + "".join(f":{i + 1}{p}" for i, p in enumerate(pieces[1:])), tuple(values)

    def quote(self, name: str, *, what: str = "identifier") -> str:
        """Validate, normalise and quote with the dialect's ``IdentifierPreparer`` (always quoted)."""
        self.validate_identifier(name, what=what)
        return str(self._preparer.quote_identifier(self.normalize_identifier(name)))

    # ------------------------------------------------------------------------------ staging + upsert
    def _stage_table_sql(self, name: str, table: TableRef) -> str:
        """Where the staging table lives (temporary tables are per connection)."""
        return self.quote(name)

    def create_stage_sql(self, name: str, table: TableRef, columns: Sequence[str]) -> str:
        """A temporary table with the target's column types (no rows)."""
        cols = ", ".join(self.quote(c, what="column") for c in columns)
        return (
            f"CREATE TEMPORARY TABLE {self._stage_table_sql(name, table)} AS "
            f"SELECT {cols} FROM {self.table_sql(table)} WHERE 1 = 0"
        )

    def _python_columns(self, data: pa.Table) -> list[list[Any]]:
        """The staged table's columns as Python values the driver binds correctly."""
        out: list[list[Any]] = []
        for col in data.columns:
            if pa.types.is_timestamp(col.type):
                col = self._timestamp_column(col)
            out.append(col.to_pylist())
        return out

    def _timestamp_column(self, col: pa.ChunkedArray) -> pa.ChunkedArray:
        """Timestamps as UTC-aware values (naive input is taken as UTC)."""
        if col.type.tz is None:
            return pc.assume_timezone(col, "UTC")
        return col.cast(pa.timestamp(col.type.unit, tz="UTC"))

    def _stage(self, session: Session, table: TableRef, key: Sequence[str], data: pa.Table) -> str:
        name = self.stage_name()
        stage = self._stage_table_sql(name, table)
        cols = ", ".join(self.quote(c, what="column") for c in data.column_names)
        session.execute(self.create_stage_sql(name, table, data.column_names))
        insert = f"INSERT INTO {stage} ({cols}) VALUES ({', '.join('?' for _ in data.column_names)})"
        for start in range(0, data.num_rows, _STAGE_CHUNK_ROWS):
            chunk = data.slice(start, _STAGE_CHUNK_ROWS)
            session._executemany(insert, list(zip(*self._python_columns(chunk), strict=True)))
        return stage

    def update_from_sql(self, table: TableRef, stage: str, key: Sequence[str], set_cols: Sequence[str]) -> str:
        """Portable correlated-subquery ``UPDATE`` (no ``UPDATE ... FROM``/``JOIN`` needed)."""
        target = self.table_sql(table)
        match = " AND ".join(
            f"s.{self.quote(k, what='key column')} = {target}.{self.quote(k, what='key column')}" for k in key
        )
        sets = ", ".join(
            f"{self.quote(c, what='column')} = (SELECT s.{self.quote(c, what='column')} FROM {stage} s WHERE {match})"
            for c in set_cols
        )
        return f"UPDATE {target} SET {sets} WHERE EXISTS (SELECT 1 FROM {stage} s WHERE {match})"

    # ------------------------------------------------------------------------------ introspection
    def _lookup_schema(self, table: TableRef) -> str | None:
        schema = super()._lookup_schema(table)
        if schema is None:
            # No schema in the profile: the connection's default (MySQL: the URL's database), which
            # SQLAlchemy learns on the first connect.
            if self.dialect.default_schema_name is None:
                self.open()
            default = self.dialect.default_schema_name
            return None if default is None else str(default)
        return schema

    # ------------------------------------------------------------------------------ reading
    def stream(self, sql: str, params: Sequence[Any] = (), *, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        """Run a SELECT on its own connection with a server-side cursor; yield Arrow batches."""
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        stmt, args = self.driver_sql(sql, params)
        with self._errors("reading rows", sql), self.engine.connect() as conn:
            streaming = conn.execution_options(stream_results=True, max_row_buffer=_CONVERT_ROWS)
            result = streaming.exec_driver_sql(stmt, args)
            try:
                yield from rows_to_batches(result.fetchmany, list(result.keys()), batch_rows)
            finally:
                result.close()

    # ------------------------------------------------------------------------------ types
    def _type_names(self) -> dict[LogicalType, str]:
        return {
            LogicalType.TEXT: "VARCHAR(4000)" if self.dialect.requires_name_normalize else "TEXT",
            LogicalType.BIGINT: "BIGINT",
            LogicalType.DOUBLE: "DOUBLE PRECISION",
            LogicalType.BOOLEAN: "BOOLEAN",
            LogicalType.JSON: "TEXT",
            LogicalType.TIMESTAMP: "TIMESTAMP WITH TIME ZONE",
        }


class _GenericUpperAdapter(SqlAlchemyAdapter):
    """Dialects that fold unquoted names to upper case (Oracle, DB2, ...)."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        upsert="update_insert",
        staging="executemany",
        json_type=None,
        identifier_case="upper",
        max_identifier_length=128,
        transactional_ddl=False,
    )


class MySQLAdapter(SqlAlchemyAdapter):
    """MySQL and MariaDB through pymysql (or another MySQL driver SQLAlchemy knows)."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        upsert="update_insert",
        staging="executemany",
        json_type="JSON",
        identifier_case="preserve",
        max_identifier_length=64,
        transactional_ddl=False,
    )
    # Column names compare case-insensitively; table names follow lower_case_table_names, and the
    # information_schema lookups below match both ways.
    identifiers_case_insensitive: ClassVar[bool] = True
    identifier_allows_dollar: ClassVar[bool] = True
    text_cast_type: ClassVar[str] = "CHAR"
    quote_char: ClassVar[str] = "`"

    def _install_events(self, engine: sa.Engine) -> None:
        def on_connect(dbapi_conn: Any, record: Any) -> None:
            cur = dbapi_conn.cursor()
            try:
                # UTC in and out: DATETIME holds UTC, NOW()/UTC_TIMESTAMP agree with it.
                cur.execute("SET time_zone = '+00:00'")
            finally:
                cur.close()

        sa.event.listen(engine, "connect", on_connect)

    def _type_names(self) -> dict[LogicalType, str]:
        return {
            LogicalType.TEXT: "TEXT",
            LogicalType.BIGINT: "BIGINT",
            LogicalType.DOUBLE: "DOUBLE",
            LogicalType.BOOLEAN: "BOOLEAN",
            LogicalType.JSON: "JSON",
            LogicalType.TIMESTAMP: "DATETIME(6)",
        }

    def create_table_sql(self, table: TableRef, key: Sequence[Any], columns: Sequence[Any]) -> str:
        """``CREATE TABLE``; a text key column becomes ``VARCHAR(255)`` (TEXT cannot be a primary key)."""
        defs = []
        for k in key:
            type_sql = "VARCHAR(255)" if k.type in (LogicalType.TEXT, LogicalType.JSON) else self.sql_type(k.type)
            defs.append(f"{self.quote(k.name, what='key column')} {type_sql} NOT NULL")
        defs += [self.column_def_sql(c) for c in columns]
        if key:
            defs.append("PRIMARY KEY (" + ", ".join(self.quote(k.name, what="key column") for k in key) + ")")
        return f"CREATE TABLE {self.table_sql(table)} ({', '.join(defs)})"

    def _stage_table_sql(self, name: str, table: TableRef) -> str:
        # Qualified by the target's database, so staging works even when the URL names no database.
        schema = table.schema if table.schema is not None else self.default_schema
        if schema:
            return f"{self.quote(schema, what='schema')}.{self.quote(name)}"
        return self.quote(name)

    def _drop_stage(self, session: Session, stage: str) -> None:
        # Plain DROP TABLE commits the open transaction in MySQL/MariaDB, even for a temporary table;
        # only DROP TEMPORARY TABLE does not. Without it a failed upsert would keep its UPDATE.
        session.execute(f"DROP TEMPORARY TABLE IF EXISTS {stage}")

    def _timestamp_column(self, col: pa.ChunkedArray) -> pa.ChunkedArray:
        # DATETIME has no zone: bind naive UTC values (pymysql would drop any tzinfo silently).
        utc = super()._timestamp_column(col)
        return utc.cast(pa.timestamp(col.type.unit))

    def update_from_sql(self, table: TableRef, stage: str, key: Sequence[str], set_cols: Sequence[str]) -> str:
        """``UPDATE target t JOIN stage s ON keys SET t.c = s.c`` (MySQL's update-join)."""
        sets = ", ".join(f"t.{self.quote(c, what='column')} = s.{self.quote(c, what='column')}" for c in set_cols)
        return f"UPDATE {self.table_sql(table)} AS t JOIN {stage} AS s ON {self._key_join(key, 't', 's')} SET {sets}"

    def concat_sql(self, parts: Sequence[str]) -> str:
        """``CONCAT(...)``: ``||`` is logical OR in MySQL unless PIPES_AS_CONCAT is set."""
        return "CONCAT(" + ", ".join(parts) + ")"

    def now_sql(self) -> str:
        """The current UTC time (microseconds)."""
        return "UTC_TIMESTAMP(6)"

    def age_seconds_sql(self, column_sql: str) -> str:
        """Seconds since a UTC ``DATETIME`` expression."""
        return f"(TIMESTAMPDIFF(MICROSECOND, {column_sql}, UTC_TIMESTAMP(6)) / 1000000.0)"


class SQLiteAdapter(SqlAlchemyAdapter):
    """SQLite files (and ``sqlite://`` in memory) through the standard library driver."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        upsert="update_insert",
        staging="executemany",
        json_type=None,
        identifier_case="preserve",
        max_identifier_length=128,
        transactional_ddl=True,
    )
    # SQLite compares every identifier case-insensitively, quoted or not.
    identifiers_case_insensitive: ClassVar[bool] = True
    text_cast_type: ClassVar[str] = "TEXT"

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
            dbapi_conn.create_function("md5", 1, _md5_text, deterministic=True)
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
                conn.exec_driver_sql("BEGIN")

        sa.event.listen(engine, "connect", on_connect)
        sa.event.listen(engine, "begin", on_begin)

    def _engine_options(self) -> dict[str, Any]:
        # Sessions always end in an explicit COMMIT/ROLLBACK; the pool's reset-on-return rollback could
        # only hit a transaction that another checkout of the same in-memory connection still owns.
        return {"pool_reset_on_return": None}

    def _driver_errors(self) -> tuple[builtins.type[BaseException], ...]:
        return (sa.exc.SQLAlchemyError, sqlite3.Error)

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

    def _type_names(self) -> dict[LogicalType, str]:
        return {
            LogicalType.TEXT: "TEXT",
            LogicalType.BIGINT: "BIGINT",
            LogicalType.DOUBLE: "DOUBLE",
            LogicalType.BOOLEAN: "BOOLEAN",
            # A JSON-named column has NUMERIC affinity in SQLite and would turn '123' into 123.
            LogicalType.JSON: "TEXT",
            LogicalType.TIMESTAMP: "TIMESTAMP",
        }

    def logical_type_of(self, raw: str) -> LogicalType | str:
        """SQLite keeps the declared type name as written; map ours back."""
        base = re.sub(r"\(.*\)", "", raw).strip().lower()
        if base in ("timestamp", "datetime"):
            return LogicalType.TIMESTAMP
        if base == "integer":
            return LogicalType.BIGINT
        return super().logical_type_of(raw)

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

    def update_from_sql(self, table: TableRef, stage: str, key: Sequence[str], set_cols: Sequence[str]) -> str:
        """``UPDATE ... FROM`` on SQLite 3.33+, else the portable correlated form."""
        if sqlite3.sqlite_version_info >= (3, 33, 0):
            return Adapter.update_from_sql(self, table, stage, key, set_cols)
        return super().update_from_sql(table, stage, key, set_cols)

    def now_sql(self) -> str:
        """The current UTC time as ISO text (comparable with stored timestamps)."""
        return "STRFTIME('%Y-%m-%d %H:%M:%f+00:00', 'now')"

    def age_seconds_sql(self, column_sql: str) -> str:
        """Seconds since a stored ISO timestamp."""
        return f"((JULIANDAY('now') - JULIANDAY({column_sql})) * 86400.0)"

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

    def table_exists(self, table: TableRef) -> bool:
        """Look the name up in the schema's ``sqlite_master`` (tables and views)."""
        self.validate_identifier(table.name, what="table name")
        schema = table.schema if table.schema is not None else self.default_schema
        master = f"{self.quote(schema, what='schema')}.sqlite_master" if schema else "sqlite_master"
        sql = f"SELECT name FROM {master} WHERE type IN ('table', 'view') AND LOWER(name) = LOWER(?)"
        with self.session() as s:
            return bool(s.fetchall(sql, [table.name]))

    def get_columns(self, table: TableRef) -> dict[str, LogicalType | str]:
        """Columns from ``PRAGMA table_info`` (SQLite has no information_schema)."""
        self.validate_identifier(table.name, what="table name")
        schema = table.schema if table.schema is not None else self.default_schema
        prefix = f"{self.quote(schema, what='schema')}." if schema else ""
        with self.session() as s:
            rows = s.fetchall(f"PRAGMA {prefix}table_info({self.quote(table.name, what='table name')})")
        return {str(r[1]): self.logical_type_of(str(r[2] or "")) for r in rows}


def _url_text(config: object, url: str | None) -> str | None:
    if url is not None:
        return url
    raw = getattr(config, "url", None)
    if raw is None:
        return None
    get = getattr(raw, "get", None)
    return str(get()) if callable(get) else str(raw)


def _variant_for(url: str | None) -> type[SqlAlchemyAdapter]:
    scheme = (url or "").split(":", 1)[0].split("+", 1)[0].lower()
    if scheme in ("mysql", "mariadb"):
        return MySQLAdapter
    if scheme == "sqlite":
        return SQLiteAdapter
    if scheme in ("oracle", "db2", "ibm_db_sa", "snowflake"):
        return _GenericUpperAdapter
    return SqlAlchemyAdapter


def _driver_hint(drivername: str) -> str:
    base = drivername.split("+", 1)[0]
    if base in ("mysql", "mariadb"):
        return "pip install 'sixtyfour-sync[mysql]'"
    if base == "postgresql":
        return "pip install 'sixtyfour-sync[postgres]' (or use `type: postgres`)"
    return f"install the SQLAlchemy dialect/driver for {drivername!r}"
