"""PostgreSQL through psycopg 3.

- Reading: ``COPY (query) TO STDOUT (FORMAT csv)`` on a dedicated connection, gathered into blocks of
  whole rows and parsed by pyarrow's CSV reader with every column's Arrow type declared up front from
  the query's result description (so no block ever decides the types). Each column is rendered by SQL into a
  form the parser reads exactly: timestamps as ISO-8601 in UTC, JSON/arrays as JSON text, unconstrained
  ``numeric`` as text (exact), booleans as ``t``/``f``. NULL and the empty string stay distinct (CSV
  unquoted empty vs ``""``). psycopg's default cursor buffers a whole result, so it is never used for
  reading sources.
- Upserts COPY the Arrow rows as CSV into a TEMP table shaped like the target's columns, ANALYZE it,
  and with ``SET LOCAL enable_hashjoin = off`` (a merge join on the key: the fastest measured plan on
  shuffled keys) run ``UPDATE ... FROM`` then ``INSERT ... WHERE NOT EXISTS``; the pre-existing table
  needs no unique index for that.
- Sessions run in UTC with ISO dates, so timestamps and row hashes never depend on the server's
  settings. Connection errors name user, host, port and database, never the password.
"""

from __future__ import annotations

import builtins
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

from sixtyfour_sync._redact import redact
from sixtyfour_sync.errors import WarehouseError
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

Buffer = bytes | bytearray | memoryview

__all__ = ["PostgresAdapter"]

# Type OIDs (pg_type) the reader decodes natively; anything else arrives as its text form.
_BOOL, _INT8, _INT2, _INT4, _OID = 16, 20, 21, 23, 26
_FLOAT4, _FLOAT8, _NUMERIC = 700, 701, 1700
_DATE, _TIMESTAMP, _TIMESTAMPTZ = 1082, 1114, 1184
_JSON, _JSONB = 114, 3802
_TEXTLIKE = {25, 1043, 1042, 19, 18, 2950}  # text, varchar, bpchar, name, char, uuid

_CSV_BLOCK = 4 << 20


def _sql(query: str, params: Sequence[Any]) -> tuple[str, Sequence[Any] | None]:
    """``?`` placeholders to psycopg's ``%s`` (and ``%`` doubled) only when there are parameters."""
    if not params:
        return query, None
    return convert_qmark(query, "%s"), list(params)


def _row_blocks(chunks: Iterable[Buffer], size: int = _CSV_BLOCK) -> Iterator[bytearray]:
    """Gather COPY's messages into blocks of whole rows.

    The server sends one CopyData message per row (PostgreSQL protocol docs, "COPY Operations"), so a
    block ending at a message boundary ends at a row boundary and parses on its own. Appending to a
    bytearray releases each message at once; holding and joining the messages costs twice the CPU.
    """
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        if len(buf) >= size:
            yield buf
            buf = bytearray()
    if buf:
        yield buf


class _PgSession(Session):
    adapter: PostgresAdapter

    def __init__(self, adapter: PostgresAdapter, conn: psycopg.Connection[Any]) -> None:
        super().__init__(adapter)
        self.conn = conn
        self.hashjoin = "on"

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        q, p = _sql(sql, params)
        with self.conn.cursor() as cur:
            cur.execute(q, p)
            return int(cur.rowcount)

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        with self.conn.cursor() as cur:
            cur.executemany(convert_qmark(sql, "%s"), [list(r) for r in rows])

    def _query(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        q, p = _sql(sql, params)
        with self.conn.cursor() as cur:
            cur.execute(q, p)
            names = [d.name for d in cur.description or ()]
            return names, [tuple(r) for r in cur.fetchall()]

    def _commit(self) -> None:
        self.conn.commit()

    def _rollback(self) -> None:
        self.conn.rollback()


class PostgresAdapter(Adapter):
    """A PostgreSQL database (psycopg 3)."""

    type: ClassVar[str] = "postgres"
    capabilities: ClassVar[Capabilities] = Capabilities(
        upsert="update_insert",
        staging="copy",
        json_type="JSONB",
        identifier_case="lower",
        max_identifier_length=63,
        transactional_ddl=True,
    )
    identifier_allows_dollar: ClassVar[bool] = True

    def __init__(
        self,
        config: TargetConfig | None = None,
        *,
        project_dir: Path | None = None,
        connection: psycopg.Connection[Any] | None = None,
    ) -> None:
        super().__init__(config, project_dir=project_dir)
        if self.default_schema is None:
            self.default_schema = "public"
            self.ledger_schema = self.ledger_schema or "public"
        self._conn: psycopg.Connection[Any] | None = connection
        self._owns_connection = connection is None
        self._stream_conn: psycopg.Connection[Any] | None = None

    # ------------------------------------------------------------------------------ connection
    def describe(self) -> str:
        """Where this adapter points (no password)."""
        c = self.config
        if c is None:
            return f"postgres (schema {self.default_schema})"
        return (
            f"postgres {getattr(c, 'user', '?')}@{getattr(c, 'host', '?')}:{getattr(c, 'port', '?')}/"
            f"{getattr(c, 'dbname', '?')} (schema {self.default_schema})"
        )

    def _driver_errors(self) -> tuple[builtins.type[BaseException], ...]:
        return (psycopg.Error,)

    def open(self) -> None:
        """Connect now."""
        self.connection()

    def connection(self) -> psycopg.Connection[Any]:
        """The main connection (opened on first use)."""
        if self._closed:
            raise WarehouseError("postgres: the connection is closed")
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> psycopg.Connection[Any]:
        c = self.config
        if c is None:
            raise WarehouseError("postgres: no connection settings")
        password = getattr(c, "password", None)
        kwargs: dict[str, Any] = {
            "host": c.host,  # type: ignore[union-attr]
            "port": c.port,  # type: ignore[union-attr]
            "user": c.user,  # type: ignore[union-attr]
            "dbname": c.dbname,  # type: ignore[union-attr]
            "connect_timeout": getattr(c, "connect_timeout", 10),
            "application_name": getattr(c, "application_name", "sixtyfour-sync"),
            "autocommit": False,
        }
        if password is not None:
            kwargs["password"] = password.get()
        for key in ("sslmode", "sslcert", "sslkey", "sslrootcert"):
            value = getattr(c, key, None)
            if value:
                kwargs[key] = value
        try:
            conn = psycopg.connect(**kwargs)
        except psycopg.Error as exc:
            detail = redact(str(exc).strip())
            if password is not None:
                detail = detail.replace(password.get(), "***")
            raise WarehouseError(
                f"postgres: cannot connect to {self.describe()}: {detail}",
                hint="check host, port, dbname, user and password (PGPASSWORD / env_var) in profiles.yml, "
                "and that the server accepts connections from this machine",
            ) from None
        try:
            with conn.cursor() as cur:
                cur.execute("SET TIME ZONE 'UTC'")
                cur.execute("SET DateStyle = 'ISO, YMD'")
                role = getattr(c, "role", None)
                if role:
                    cur.execute(f"SET ROLE {self.quote(role, what='role in profiles.yml')}")
            conn.commit()
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        """Close both connections (the main one only when this adapter opened it)."""
        if self._stream_conn is not None:
            self._stream_conn.close()
            self._stream_conn = None
        if self._conn is not None and self._owns_connection:
            self._conn.close()
        self._conn = None
        super().close()

    def _open_session(self) -> Session:
        conn = self.connection()
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            # Nothing of ours is open (sessions nest by joining), so this is stale: end it cleanly.
            conn.rollback()
        return _PgSession(self, conn)

    # ------------------------------------------------------------------------------ dialect
    def _type_names(self) -> Mapping[LogicalType, str]:
        return {
            LogicalType.TEXT: "TEXT",
            LogicalType.BIGINT: "BIGINT",
            LogicalType.DOUBLE: "DOUBLE PRECISION",
            LogicalType.BOOLEAN: "BOOLEAN",
            LogicalType.JSON: "JSONB",
            LogicalType.TIMESTAMP: "TIMESTAMPTZ",
        }

    def text_sql(self, expr: str) -> str:
        """``expr::text``."""
        return f"CAST({expr} AS TEXT)"

    def _catalog_filter(self, table: TableRef) -> tuple[str, list[Any]]:
        schema = self._lookup_schema(table)
        if table.database:
            self.validate_identifier(table.database, what=f"database of table {table}")
        sql = "c.relname = %s"
        params: list[Any] = [self.normalize_identifier(table.name)]
        if schema is not None:
            sql += " AND n.nspname = %s"
            params.append(schema)
        else:
            sql += " AND pg_catalog.pg_table_is_visible(c.oid)"
        return sql, params

    def table_exists(self, table: TableRef) -> bool:
        """Whether ``table`` exists as a table, view, materialized view or foreign table."""
        self.validate_identifier(table.name, what="table name")
        where, params = self._catalog_filter(table)
        sql = (
            "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {where}"
        ).replace("%s", "?")
        with self.session() as s:
            return bool(s.fetchall(sql, params))

    def get_columns(self, table: TableRef) -> dict[str, LogicalType | str]:
        """Columns in order: stored name -> logical type (or ``format_type`` text, e.g. ``text[]``)."""
        self.validate_identifier(table.name, what="table name")
        where, params = self._catalog_filter(table)
        sql = (
            "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a "
            "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = "
            f"c.relnamespace WHERE a.attnum > 0 AND NOT a.attisdropped AND {where} ORDER BY a.attnum"
        ).replace("%s", "?")
        with self.session() as s:
            rows = s.fetchall(sql, params)
        return {str(n): self.logical_type_of(str(t)) for n, t in rows}

    def _key_is_unique(self, table: TableRef, key: Sequence[str]) -> bool:
        where, params = self._catalog_filter(table)
        sql = (
            "SELECT array_agg(a.attname::text) FROM pg_catalog.pg_index i "
            "JOIN pg_catalog.pg_class c ON c.oid = i.indrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) "
            f"WHERE i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL AND {where} "
            "GROUP BY i.indexrelid"
        ).replace("%s", "?")
        with self.session() as s:
            rows = s.fetchall(sql, params)
        wanted = sorted(self.normalize_identifier(k) for k in key)
        return any(sorted(cols) == wanted for (cols,) in rows)

    def schema_exists(self, schema: str) -> bool:
        """Whether the schema exists."""
        with self.session() as s:
            return bool(s.fetchall("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = ?", [schema]))

    # ------------------------------------------------------------------------------ reading
    def _stream_connection(self) -> psycopg.Connection[Any]:
        # Reading runs on its own connection, so the engine can write its ledger while a stream is
        # open, and a commit there never ends the COPY.
        if self._closed:
            raise WarehouseError("postgres: the connection is closed")
        if self._stream_conn is None or self._stream_conn.closed:
            self._stream_conn = self._connect()
        return self._stream_conn

    @staticmethod
    def _arrow_type(col: Any) -> tuple[pa.DataType, str | None]:
        """The Arrow type for a result column, and a SQL rendering template (``{}`` = the column)."""
        oid = col.type_code
        if oid == _BOOL:
            return pa.bool_(), None
        if oid in (_INT8, _OID):
            return pa.int64(), None
        if oid == _INT4:
            return pa.int32(), None
        if oid == _INT2:
            return pa.int16(), None
        if oid == _FLOAT4:
            return pa.float32(), None
        if oid == _FLOAT8:
            return pa.float64(), None
        if oid == _NUMERIC:
            precision, scale = col.precision, col.scale
            if precision is not None and scale is not None and 0 < precision <= 38:
                return pa.decimal128(precision, scale), None
            return pa.string(), None  # unconstrained numeric: exact text rather than a lossy double
        if oid == _DATE:
            return pa.date32(), None
        if oid == _TIMESTAMPTZ:
            return pa.timestamp("us", tz="UTC"), None
        if oid == _TIMESTAMP:
            return pa.timestamp("us"), None
        if oid in (_JSON, _JSONB) or oid in _TEXTLIKE:
            return pa.string(), None
        # Arrays, composites, ranges...: their JSON form is what an API payload wants.
        return pa.string(), "to_json({})::text"

    def stream(self, sql: str, params: Sequence[Any] = (), *, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        """Yield the query's rows as Arrow batches via ``COPY ... TO STDOUT``, with bounded memory."""
        conn = self._stream_connection()
        query = self._strip_sql(sql)
        finished = False
        try:
            with self._errors("reading", query), conn.cursor() as cur:
                q, p = _sql(f"SELECT * FROM ({query}) AS _q LIMIT 0", params)
                cur.execute(q, p)
                desc = list(cur.description or ())
            names = [d.name for d in desc]
            aliases = [f"c{i}" for i in range(len(desc))]
            types: dict[str, pa.DataType] = {}
            exprs = []
            for alias, col in zip(aliases, desc, strict=True):
                arrow_type, template = self._arrow_type(col)
                types[alias] = arrow_type
                exprs.append(template.format(f"_q.{alias}") if template else f"_q.{alias}")
            copy_sql = (
                f"COPY (SELECT {', '.join(exprs)} FROM ({query}) AS _q({', '.join(aliases)})) TO STDOUT (FORMAT csv)"
            )
            read_opts = pacsv.ReadOptions(column_names=aliases, use_threads=False, block_size=2 * _CSV_BLOCK)
            parse_opts = pacsv.ParseOptions(newlines_in_values=True)
            conv_opts = pacsv.ConvertOptions(
                column_types=types,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                true_values=["t"],
                false_values=["f"],
            )
            schema = pa.schema([pa.field(n, types[a]) for n, a in zip(names, aliases, strict=True)])
            with self._errors("reading", query), conn.cursor() as cur:
                q, p = _sql(copy_sql, params)
                with cur.copy(q, p) as copy:
                    for block in _row_blocks(copy):
                        table = pacsv.read_csv(
                            pa.py_buffer(block),
                            read_options=read_opts,
                            parse_options=parse_opts,
                            convert_options=conv_opts,
                        )
                        for batch in table.to_batches(max_chunksize=batch_rows):
                            yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)
            conn.commit()
            finished = True
        finally:
            if not finished and self._stream_conn is not None:
                # Abandoned or failed mid-COPY: the connection's protocol state is unknown; drop it.
                self._stream_conn.close()
                self._stream_conn = None

    # ------------------------------------------------------------------------------ writing
    def _stage(self, session: Session, table: TableRef, key: Sequence[str], data: pa.Table) -> str:
        assert isinstance(session, _PgSession)
        name = self.stage_name()
        cols = ", ".join(self.quote(c, what="column") for c in data.column_names)
        session.execute(
            f"CREATE TEMPORARY TABLE {self.quote(name)} ON COMMIT DROP AS "
            f"SELECT {cols} FROM {self.table_sql(table)} WHERE false"
        )
        write_opts = pacsv.WriteOptions(include_header=False, batch_size=10_000)
        with session.conn.cursor() as cur:
            with cur.copy(f"COPY {self.quote(name)} ({cols}) FROM STDIN (FORMAT csv)") as copy:
                for batch in data.to_batches(max_chunksize=50_000):
                    buf = io.BytesIO()
                    pacsv.write_csv(batch, buf, write_opts)
                    copy.write(buf.getbuffer())
            cur.execute(f"ANALYZE {self.quote(name)}")
            cur.execute("SELECT current_setting('enable_hashjoin')")
            row = cur.fetchone()
            session.hashjoin = str(row[0]) if row else "on"
            # A merge join on the key beats the default hash join on shuffled keys (FINDINGS.md).
            cur.execute("SET LOCAL enable_hashjoin = off")
        return self.quote(name)

    def _drop_stage(self, session: Session, stage: str) -> None:
        assert isinstance(session, _PgSession)
        session.execute(f"DROP TABLE IF EXISTS {stage}")
        # Give the rest of the transaction (the ledger writes) the planner setting it had before.
        session.execute("SELECT set_config('enable_hashjoin', ?, true)", [session.hashjoin])
