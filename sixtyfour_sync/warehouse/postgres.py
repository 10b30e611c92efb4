"""PostgreSQL through psycopg 3.

- Reading: ``COPY (query) TO STDOUT (FORMAT csv)`` on a dedicated connection, parsed by pyarrow's CSV
  reader with every column's type declared up front (:mod:`~sixtyfour_sync.warehouse.postgres_copy`).
  psycopg's default cursor buffers a whole result, so it is never used for reading sources.
- Upserts COPY the Arrow rows as CSV into a TEMP table shaped like the target's columns, ANALYZE it,
  and with ``SET LOCAL enable_hashjoin = off`` (a merge join on the key: the fastest measured plan on
  shuffled keys) run ``UPDATE ... FROM`` then ``INSERT ... WHERE NOT EXISTS``; the pre-existing table
  needs no unique index for that. Rows known to be new are COPYed straight into the target.
- Every connection pins the settings that the text of values (and so row hashes) depends on:
  ``TimeZone`` UTC, ``DateStyle`` ISO/YMD, ``IntervalStyle`` postgres, ``extra_float_digits`` 1 (the
  shortest exact float text), ``bytea_output`` hex; and ``standard_conforming_strings`` on, which the
  placeholder tokenizer assumes. A role's or database's own defaults therefore never change a hash.
  Connection errors name user, host, port and database, never the password.
- Every connection turns JIT compilation off (where the server has it): the selection's cost estimate puts it
  past ``jit_optimize_above_cost``, and compiling took 3.1 s of a 4.2 s selection over 1M rows that runs in
  2.7 s without it (``EXPLAIN ANALYZE``; docs/benchmarks.md).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

from sixtyfour_sync._redact import redact
from sixtyfour_sync.config.profiles import PostgresTarget
from sixtyfour_sync.errors import WarehouseError
from sixtyfour_sync.warehouse import postgres_copy as pgc
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.dialect import POSTGRES, Dialect
from sixtyfour_sync.warehouse.parts import PreparedPart
from sixtyfour_sync.warehouse.session import Session
from sixtyfour_sync.warehouse.sql import catalog, ddl
from sixtyfour_sync.warehouse.sql.identifiers import strip_sql
from sixtyfour_sync.warehouse.sql.placeholders import convert_qmark
from sixtyfour_sync.warehouse.types import Capabilities, Quoting, TableRef

__all__ = ["PINNED_SETTINGS", "PostgresAdapter", "pin_settings_sql"]

#: Settings every connection gets: the text of timestamps, floats, intervals and bytes depends on them.
PINNED_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "1",
    "bytea_output": "hex",
    "standard_conforming_strings": "on",
}


def pin_settings_sql() -> str:
    """One statement setting :data:`PINNED_SETTINGS` for the session (one round trip)."""
    calls = ", ".join(f"set_config('{k}', '{v}', false)" for k, v in PINNED_SETTINGS.items())
    return f"SELECT {calls}"


#: JIT off for the session, on a server that has the setting (a server without it sets nothing).
JIT_OFF_SQL = "SELECT set_config('jit', 'off', false) FROM pg_catalog.pg_settings WHERE name = 'jit'"


def _sql(query: str, params: Sequence[Any]) -> tuple[str, Sequence[Any] | None]:
    """``?`` placeholders to psycopg's ``%s`` (and ``%`` doubled) only when there are parameters."""
    if not params:
        return query, None
    return convert_qmark(query, "%s", dialect="postgres"), list(params)


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
            cur.executemany(convert_qmark(sql, "%s", dialect="postgres"), [list(r) for r in rows])

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

    def copy_in(self, table_sql: str, columns_sql: str, data: pa.Table) -> None:
        """COPY ``data`` (CSV) into ``table_sql``."""
        with self.conn.cursor() as cur, cur.copy(pgc.copy_in_sql(table_sql, columns_sql)) as copy:
            for chunk in pgc.csv_chunks(data):
                copy.write(chunk)


class PostgresAdapter(Adapter[PostgresTarget]):
    """A PostgreSQL database (psycopg 3)."""

    type: ClassVar[str] = "postgres"
    capabilities: ClassVar[Capabilities] = Capabilities(
        upsert="update_insert",
        staging="copy",
        json_type="JSONB",
        identifier_case="lower",
        max_identifier_length=63,
        transactional_ddl=True,
        # A merge holds the run's only connection: while 250,000 rows are inserted (0.8 s), files that are
        # ready wait to be submitted. 100,000-row merges: 6% less wall and 40 MB less peak memory at 1M rows.
        insert_batch_rows=100_000,
    )
    dialect: Dialect = POSTGRES

    def __init__(
        self,
        config: PostgresTarget | None = None,
        *,
        project_dir: Path | None = None,
        quoting: Quoting | None = None,
        connection: psycopg.Connection[Any] | None = None,
    ) -> None:
        super().__init__(config, project_dir=project_dir, quoting=quoting)
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
        return f"postgres {c.user}@{c.host}:{c.port}/{c.dbname} (schema {self.default_schema})"

    def _driver_errors(self) -> tuple[builtins.type[BaseException], ...]:
        return (psycopg.Error,)

    def _is_duplicate_key(self, exc: BaseException) -> bool:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        return isinstance(cause, psycopg.errors.UniqueViolation)

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
        kwargs: dict[str, Any] = {
            "host": c.host,
            "port": c.port,
            "user": c.user,
            "dbname": c.dbname,
            "connect_timeout": c.connect_timeout,
            "application_name": c.application_name,
            "autocommit": False,
        }
        if c.password is not None:
            kwargs["password"] = c.password.get()
        for key, value in (("sslmode", c.sslmode), ("sslcert", c.sslcert), ("sslkey", c.sslkey)):
            if value:
                kwargs[key] = value
        if c.sslrootcert:
            kwargs["sslrootcert"] = c.sslrootcert
        try:
            conn = psycopg.connect(**kwargs)
        except psycopg.Error as exc:
            detail = redact(str(exc).strip())
            if c.password is not None:
                detail = detail.replace(c.password.get(), "***")
            raise WarehouseError(
                f"postgres: cannot connect to {self.describe()}: {detail}",
                hint="check host, port, dbname, user and password (PGPASSWORD / env_var) in profiles.yml, "
                "and that the server accepts connections from this machine",
            ) from None
        try:
            with conn.cursor() as cur:
                cur.execute(pin_settings_sql())
                cur.execute(JIT_OFF_SQL)
                if c.role:
                    cur.execute(f"SET ROLE {self.quote(c.role, what='role in profiles.yml')}")
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

    # ------------------------------------------------------------------------------ catalog
    def _table_exists_query(self, table: TableRef) -> tuple[str, list[Any]]:
        return catalog.pg_table_exists_sql(self.names, table)

    def _columns_query(self, table: TableRef) -> tuple[str, list[Any]]:
        return catalog.pg_columns_sql(self.names, table)

    def _key_is_unique(self, table: TableRef, key: Sequence[str]) -> bool:
        sql, params = catalog.pg_unique_keys_sql(self.names, table)
        with self.session() as s:
            rows = s.fetchall(sql, params)
        wanted = sorted(self.normalize_identifier(k) for k in key)
        return any(sorted(cols) == wanted for (cols,) in rows)

    def schema_exists(self, schema: str) -> bool:
        """Whether the schema exists."""
        self.validate_identifier(schema, what="schema")
        with self.session() as s:
            sql = "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = ?"
            return bool(s.fetchall(sql, [self.normalize_identifier(schema, "schema")]))

    def source_column_types(self, sql: str, columns: Sequence[str]) -> dict[str, str]:
        """``format_type`` of each column of the query's result description (``numeric(20,0)``, ``uuid``...)."""
        cols = ", ".join(self.quote(c, what="key column") for c in columns)
        with self.session() as s:
            assert isinstance(s, _PgSession)
            with s.conn.cursor() as cur:
                cur.execute(f"SELECT {cols} FROM ({strip_sql(sql)}) AS _k LIMIT 0")
                described = [(d.name, d.type_code, int(getattr(d, "_fmod", -1))) for d in cur.description or ()]
                if not described:
                    return {}
                calls = ", ".join("pg_catalog.format_type(%s, %s)" for _ in described)
                cur.execute(f"SELECT {calls}", [v for _, oid, mod in described for v in (oid, mod)])
                row = cur.fetchone()
        return {name: str(t) for (name, _, _), t in zip(described, row or (), strict=False)}

    # ------------------------------------------------------------------------------ reading
    def _stream_connection(self) -> psycopg.Connection[Any]:
        # Reading runs on its own connection, so the engine can write its ledger while a stream is
        # open, and a commit there never ends the COPY.
        if self._closed:
            raise WarehouseError("postgres: the connection is closed")
        if self._stream_conn is None or self._stream_conn.closed:
            self._stream_conn = self._connect()
        return self._stream_conn

    def stream(self, sql: str, params: Sequence[Any] = (), *, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        """Yield the query's rows as Arrow batches via ``COPY ... TO STDOUT``, with bounded memory."""
        conn = self._stream_connection()
        query = strip_sql(sql, self.dialect.sqlglot)
        values = [self.adapt_value(v) for v in params]
        finished = False
        try:
            with self._errors("reading", query), conn.cursor() as cur:
                q, p = _sql(f"SELECT * FROM ({query}) AS _q LIMIT 0", values)
                cur.execute(q, p)
                names, types, templates = pgc.describe_columns(list(cur.description or ()))
            read_opts, parse_opts, conv_opts = pgc.read_options(types)
            schema = pa.schema([pa.field(n, t) for n, t in zip(names, types, strict=True)])
            with self._errors("reading", query), conn.cursor() as cur:
                q, p = _sql(pgc.copy_out_sql(query, templates), values)
                with cur.copy(q, p) as copy:
                    for block in pgc.row_blocks(copy):
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
    def _stage(self, session: Session, table: TableRef, part: PreparedPart) -> str:
        assert isinstance(session, _PgSession)
        name = self.quote(self.stage_name(), kind="identifier")
        data = part.data
        flags = set(part.flag_columns)
        plain = [c for c in data.column_names if c not in flags]
        staged_flags = [c for c in data.column_names if c in flags]
        session.execute(ddl.create_stage_sql(self.names, name, table, plain, staged_flags, options="ON COMMIT DROP"))
        session.copy_in(name, self.names.columns(data.column_names), data)
        with session.conn.cursor() as cur:
            cur.execute(f"ANALYZE {name}")
            cur.execute("SELECT current_setting('enable_hashjoin')")
            row = cur.fetchone()
            session.hashjoin = str(row[0]) if row else "on"
            # A merge join on the key beats the default hash join on shuffled keys (FINDINGS.md).
            cur.execute("SET LOCAL enable_hashjoin = off")
        return name

    def _drop_stage(self, session: Session, stage: str) -> None:
        assert isinstance(session, _PgSession)
        session.execute(f"DROP TABLE IF EXISTS {stage}")
        # Give the rest of the transaction (the ledger writes) the planner setting it had before.
        session.execute("SELECT set_config('enable_hashjoin', ?, true)", [session.hashjoin])

    def _insert_new(self, session: Session, table: TableRef, data: pa.Table) -> int:
        """COPY the rows straight into the target (no staging table, no join)."""
        assert isinstance(session, _PgSession)
        session.copy_in(self.table_sql(table), self.names.columns(data.column_names), data)
        return int(data.num_rows)
