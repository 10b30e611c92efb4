"""Any SQLAlchemy URL through the portable path; the MySQL and SQLite variants build on it.

``type: sqlalchemy`` takes one ``url``; :class:`SqlAlchemyAdapter` picks a variant from the URL
(:mod:`.mysql`, :mod:`.sqlite`, or this module's generic classes). The generic path converts ``?``
placeholders to the driver's paramstyle, quotes with the dialect's own quote characters, stages rows in a
temporary table filled with ``executemany``, and updates with the portable correlated-subquery ``UPDATE`` +
``INSERT ... WHERE NOT EXISTS``. Dialects that fold unquoted names to upper case (``requires_name_normalize``,
e.g. Oracle) get the SQLAlchemy convention: an all-lower-case name folds.

Extraction runs on its own connection with ``stream_results=True`` (a server-side cursor where the driver
has one: pymysql's ``SSCursor``), converted to Arrow record batches of ``batch_rows`` rows. Driver
exceptions are converted once, here, into :class:`~sixtyfour_sync.errors.WarehouseError` carrying the
driver's own message (never SQLAlchemy's rendering of the bound parameters).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from sixtyfour_sync.config.profiles import SqlAlchemyTarget
from sixtyfour_sync.errors import ConfigError, MissingDriverError, WarehouseError
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.arrow import CONVERT_ROWS, rows_to_batches
from sixtyfour_sync.warehouse.dialect import GENERIC, GENERIC_UPPER, Dialect
from sixtyfour_sync.warehouse.parts import PreparedPart
from sixtyfour_sync.warehouse.session import Session
from sixtyfour_sync.warehouse.sql import ddl
from sixtyfour_sync.warehouse.sql.identifiers import Names
from sixtyfour_sync.warehouse.sql.placeholders import convert_qmark
from sixtyfour_sync.warehouse.types import Capabilities, Quoting, TableRef

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["SqlAlchemyAdapter"]

#: Rows per ``executemany`` call when staging: large enough that pymysql's multi-row INSERT rewrite
#: amortises round trips, small enough to stay far below MariaDB's 16 MB ``max_allowed_packet``.
STAGE_CHUNK_ROWS = 10_000
#: SQLAlchemy dialect names whose sqlglot tokenizer has another name.
_SQLGLOT_NAMES = {"mssql": "tsql", "postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}


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
        if self.adapter.engine.dialect.paramstyle == "named":
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


def url_text(config: SqlAlchemyTarget | None, url: str | None) -> str | None:
    """The URL given, else the profile's (a secret: never printed)."""
    if url is not None:
        return url
    return config.url.get() if config is not None else None


class SqlAlchemyAdapter(Adapter[SqlAlchemyTarget]):
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
    dialect: Dialect = GENERIC

    def __new__(cls, config: SqlAlchemyTarget | None = None, **kwargs: Any) -> SqlAlchemyAdapter:
        # One `type: sqlalchemy` in profiles.yml, one variant per dialect family: pick it from the URL so
        # each variant can declare its capabilities as class data.
        if cls is SqlAlchemyAdapter:
            from sixtyfour_sync.warehouse.sqlalchemy import variant_for

            cls = variant_for(url_text(config, kwargs.get("url")))
        return super().__new__(cls)

    def __init__(
        self,
        config: SqlAlchemyTarget | None = None,
        *,
        project_dir: Path | None = None,
        quoting: Quoting | None = None,
        url: str | None = None,
        engine: sa.Engine | None = None,
        owns_engine: bool | None = None,
    ) -> None:
        """Build from a profile output (``config.url``), or from a bare ``url``, or around an ``engine``.

        An ``engine`` given by the caller is used as is (its dialect's per-connection hooks are added) and
        not disposed of on close; otherwise one is created (it connects on first use), with bound parameters
        hidden from errors.
        """
        super().__init__(config, project_dir=project_dir, quoting=quoting)
        raw = url_text(config, url)
        if engine is None and raw is None:
            raise ConfigError("type: sqlalchemy needs a `url`")
        self._owns_engine = engine is None if owns_engine is None else owns_engine
        if engine is None:
            engine = self._create_engine(raw or "", dict(config.connect_args) if config is not None else {})
        elif self._owns_engine or owns_engine is None:
            self._install_events(engine)
        self.engine: sa.Engine = engine
        self.dialect = self._dialect_for(engine.dialect)

    def _dialect_for(self, sa_dialect: sa.Dialect) -> Dialect:
        """This variant's dialect; the generic ones take the driver's quote characters and limits."""
        base = type(self).dialect
        if base not in (GENERIC, GENERIC_UPPER):
            return base
        preparer = sa_dialect.identifier_preparer
        return replace(
            base,
            name=f"sqlalchemy {sa_dialect.name}",
            sqlglot=_SQLGLOT_NAMES.get(sa_dialect.name, ""),
            quote_char=preparer.initial_quote,
            quote_end=preparer.final_quote,
            max_identifier_length=int(sa_dialect.max_identifier_length or 128),
        )

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
                f"the driver for {url.drivername!r} is not installed ({exc})", hint=_driver_hint(url.drivername)
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

    def sibling(self) -> Self:
        """A new adapter on the same engine: its own pooled connections, and closing it keeps the pool."""
        other = type(self)(
            self.config,
            project_dir=self.project_dir,
            quoting=self.quoting,
            url="",
            engine=self.engine,
            owns_engine=False,
        )
        other.default_schema, other.ledger_schema = self.default_schema, self.ledger_schema
        return other

    def close(self) -> None:
        """Dispose of the connection pool (one this adapter created)."""
        if not self._closed and self._owns_engine:
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
        style = self.engine.dialect.paramstyle
        values = [self.adapt_value(v) for v in params]
        d = self.dialect.sqlglot
        if style == "qmark":
            return sql, tuple(values)
        if style in ("format", "pyformat"):
            # SQLAlchemy always passes a parameter tuple, so the driver always %-formats: escape every %.
            return convert_qmark(sql, "%s", escape_percent=True, dialect=d), tuple(values)
        if style == "named":
            out = convert_qmark(sql, ":p{i}", escape_percent=False, dialect=d)
            return out, {f"p{i}": v for i, v in enumerate(values)}
        if style == "numeric_dollar":
            return convert_qmark(sql, "${n}", escape_percent=False, dialect=d), tuple(values)
        return convert_qmark(sql, ":{n}", escape_percent=False, dialect=d), tuple(values)

    # ------------------------------------------------------------------------------ catalog
    @property
    def catalog_names(self) -> Names:
        """Names for catalog lookups: the connection's default schema when the profile names none."""
        if self.default_schema is not None:
            return self.names
        if self.engine.dialect.default_schema_name is None:
            # SQLAlchemy learns it on the first connect (MySQL: the URL's database).
            self.open()
        default = self.engine.dialect.default_schema_name
        return Names(self.dialect, self.quoting, None if default is None else str(default))

    def _table_exists_query(self, table: TableRef) -> tuple[str, list[Any]]:
        from sixtyfour_sync.warehouse.sql import catalog

        return catalog.information_schema_tables_sql(self.catalog_names, table)

    def _columns_query(self, table: TableRef) -> tuple[str, list[Any]]:
        from sixtyfour_sync.warehouse.sql import catalog

        return catalog.information_schema_columns_sql(self.catalog_names, table)

    # ------------------------------------------------------------------------------ reading
    def stream(self, sql: str, params: Sequence[Any] = (), *, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        """Run a SELECT on its own connection with a server-side cursor; yield Arrow batches."""
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        stmt, args = self.driver_sql(sql, params)
        with self._errors("reading rows", sql), self.engine.connect() as conn:
            streaming = conn.execution_options(stream_results=True, max_row_buffer=CONVERT_ROWS)
            result = streaming.exec_driver_sql(stmt, args)
            try:
                yield from rows_to_batches(result.fetchmany, list(result.keys()), batch_rows)
            finally:
                result.close()

    # ------------------------------------------------------------------------------ staging + upsert
    def _stage_table_sql(self, name: str, table: TableRef) -> str:
        """Where the staging table lives (temporary tables are per connection)."""
        return self.quote(name, kind="identifier")

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

    def _insert_chunks(self, session: Session, target: str, data: pa.Table) -> None:
        cols = self.names.columns(data.column_names)
        insert = f"INSERT INTO {target} ({cols}) VALUES ({', '.join('?' for _ in data.column_names)})"
        for start in range(0, data.num_rows, STAGE_CHUNK_ROWS):
            chunk = data.slice(start, STAGE_CHUNK_ROWS)
            session._executemany(insert, list(zip(*self._python_columns(chunk), strict=True)))

    def _stage(self, session: Session, table: TableRef, part: PreparedPart) -> str:
        name = self.stage_name()
        stage = self._stage_table_sql(name, table)
        data = part.data
        flags = set(part.flag_columns)
        plain = [c for c in data.column_names if c not in flags]
        session.execute(
            ddl.create_stage_sql(self.names, stage, table, plain, [c for c in data.column_names if c in flags])
        )
        self._insert_chunks(session, stage, data)
        return stage

    def _insert_new(self, session: Session, table: TableRef, data: pa.Table) -> int:
        """``executemany`` straight into the target (no staging table)."""
        self._insert_chunks(session, self.table_sql(table), data)
        return int(data.num_rows)


class GenericUpperAdapter(SqlAlchemyAdapter):
    """Dialects that fold unquoted names to upper case (Oracle, DB2, ...)."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        upsert="update_insert",
        staging="executemany",
        json_type=None,
        identifier_case="upper",
        max_identifier_length=128,
        transactional_ddl=False,
    )
    dialect: Dialect = GENERIC_UPPER


def _driver_hint(drivername: str) -> str:
    base = drivername.split("+", 1)[0]
    if base in ("mysql", "mariadb"):
        return "pip install 'sixtyfour-sync[mysql]'"
    if base == "postgresql":
        return "pip install 'sixtyfour-sync[postgres]' (or use `type: postgres`)"
    return f"install the SQLAlchemy dialect/driver for {drivername!r}"
