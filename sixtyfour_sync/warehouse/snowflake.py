"""Snowflake through ``snowflake-connector-python`` 4.x (the ``snowflake`` extra).

Connection arguments, credentials and the pinned session parameters are in
:mod:`~sixtyfour_sync.warehouse.snowflake_auth`. The session runs with ``paramstyle = 'qmark'``
(server-side binding, so no ``%`` escaping) and ``autocommit = False``: a transaction starts with the
first DML statement and ends with the session's commit.

Names follow dbt-snowflake's quoting: by default (``quoting:`` false, as in dbt-snowflake) every name folds
as an unquoted name would, to upper case, and is then quoted: a profile's ``schema: dbt_John`` is the
schema ``DBT_JOHN`` dbt created, a column ``firstName`` is ``FIRSTNAME``. A part whose ``quoting:`` is true
is used exactly as written. Names read back (``Session.select``) are lowered when they are all upper case.

Upsert, in three steps, because Snowflake commits an open transaction before any DDL:

1. Outside the transaction, each part is written to a Parquet file with pyarrow (decimals capped at
   Snowflake's 38 digits), ``PUT`` into the table stage of a ``TRANSIENT`` staging table
   (``DATA_RETENTION_TIME_IN_DAYS = 0``) and loaded with ``COPY INTO ... MATCH_BY_COLUMN_NAME =
   CASE_SENSITIVE`` (``USE_LOGICAL_TYPE`` keeps timestamps' zones). No pandas. A transient table rather
   than a temporary one: it is what the local emulator (fakesnow) can also ``COPY INTO``; it is dropped
   when the upsert ends, and its name (``_SIXTYFOUR_STAGE_<hex>``) marks it as safe to drop if a crash
   leaves one behind.
2. In one transaction: per part one ``MERGE`` whose source keeps one row per key (``QUALIFY``, last wins -
   real Snowflake rejects a MERGE where a target row matches two source rows), setting only the owned
   columns (guarded ones by their guards) and ``PARSE_JSON`` for ``VARIANT``/``OBJECT``/``ARRAY`` columns, or
   for a part of new rows one ``INSERT ... SELECT``; then ``before_commit`` (the ledger); then ``COMMIT``.
   Any failure rolls all of it back.
3. The staging tables are dropped.

For the same reason :meth:`Session.upsert` is refused here: staging inside an open transaction would
silently commit it. Use :meth:`SnowflakeAdapter.upsert` with ``before_commit``.

Extraction runs on its own connection (no DDL or commit of the main one touches it) with
``cursor.fetch_arrow_batches()`` (result chunks as Arrow, never the whole result in memory), re-sliced to
``batch_rows`` and cast to one schema from the result's metadata: chunks differ in integer width and
timestamp unit. A cursor without it (fakesnow's in-process cursor) is read with ``fetchmany``.
"""

from __future__ import annotations

import builtins
import datetime as dt
import logging
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from sixtyfour_sync.config.profiles import SnowflakeTarget
from sixtyfour_sync.errors import ConfigError, DataError, MissingDriverError, WarehouseError
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.dialect import SNOWFLAKE, Dialect
from sixtyfour_sync.warehouse.parts import PreparedPart, apply_insert_guards, prepare_part
from sixtyfour_sync.warehouse.session import Session
from sixtyfour_sync.warehouse.snowflake_arrow import arrow_batches, parquet_ready, result_types, stage_type
from sixtyfour_sync.warehouse.snowflake_auth import INSTALL_HINT, OAuthTokens, connect_kwargs, load_private_key
from sixtyfour_sync.warehouse.sql import catalog, upsert
from sixtyfour_sync.warehouse.sql.identifiers import Names
from sixtyfour_sync.warehouse.types import (
    AlsoWrite,
    Capabilities,
    LogicalType,
    Quoting,
    TableRef,
    UpsertPart,
    UpsertResult,
)

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["SnowflakeAdapter", "arrow_batches", "connect_kwargs", "load_private_key", "result_types"]

log = logging.getLogger("sixtyfour_sync.warehouse.snowflake")

_JSON_TYPES = frozenset({"VARIANT", "OBJECT", "ARRAY"})


# --------------------------------------------------------------------------------------------------
# Session


class _SnowflakeSession(Session):
    """The connection's current transaction (autocommit is off: the first DML statement opens it)."""

    adapter: SnowflakeAdapter

    def __init__(self, adapter: SnowflakeAdapter, conn: Any) -> None:
        super().__init__(adapter)
        self.conn = conn
        self.cur = conn.cursor()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        self.cur.execute(sql, list(params) if params else None)
        rc = self.cur.rowcount
        return -1 if rc is None else int(rc)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        self.cur.execute(sql, list(params) if params else None)
        names = [str(d[0]) for d in self.cur.description or ()]
        return names, [tuple(r) for r in self.cur.fetchall()]

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        # qmark executemany is array binding: one round trip (a stage upload for large batches).
        if rows:
            self.cur.executemany(sql, [list(r) for r in rows])

    def _commit(self) -> None:
        self.conn.commit()

    def _rollback(self) -> None:
        self.conn.rollback()

    def _close(self) -> None:
        self.cur.close()

    def upsert(self, table: TableRef, key: Sequence[str], parts: Sequence[UpsertPart]) -> UpsertResult:
        """Refused: staging needs DDL, and Snowflake commits an open transaction before any DDL."""
        raise WarehouseError(
            "snowflake: upsert inside an open session would commit it early (Snowflake commits before DDL)",
            hint="call adapter.upsert(..., before_commit=...) to write the ledger in the same transaction",
        )


# --------------------------------------------------------------------------------------------------
# Adapter


class SnowflakeAdapter(Adapter[SnowflakeTarget]):
    """A Snowflake database/schema (see the module docstring for names, staging and upsert rules)."""

    type: ClassVar[str] = "snowflake"
    capabilities: ClassVar[Capabilities] = Capabilities(
        upsert="merge",
        staging="parquet_put_copy",
        json_type="VARIANT",
        identifier_case="upper",
        max_identifier_length=255,
        transactional_ddl=False,
    )
    dialect: Dialect = SNOWFLAKE

    def __init__(
        self,
        config: SnowflakeTarget | None = None,
        *,
        project_dir: Path | None = None,
        quoting: Quoting | None = None,
        connection: Any = None,
    ) -> None:
        own = Quoting.from_config(config.quoting) if config is not None else None
        merged = own.over(quoting) if own is not None else quoting
        super().__init__(config, project_dir=project_dir, quoting=merged)
        self._conn: Any = connection
        #: A given connection is the only one: no stream or sibling connection is opened from it.
        self._owns_connection = connection is None
        self._stream_conn: Any = None
        self._errors_cache: tuple[builtins.type[BaseException], ...] | None = None
        needs_exchange = (
            config is not None and config.oauth_client_id and (config.authenticator or "").lower() == "oauth"
        )
        self._tokens: OAuthTokens | None = OAuthTokens(config) if needs_exchange and config is not None else None

    # ------------------------------------------------------------------------------ connection
    def _connector(self) -> Any:
        try:
            import snowflake.connector
        except ImportError as exc:
            raise MissingDriverError(
                "the Snowflake driver (snowflake-connector-python) is not installed", hint=INSTALL_HINT
            ) from exc
        return snowflake.connector

    def _new_connection(self) -> Any:
        if self.config is None:
            raise ConfigError("snowflake: no target configuration to connect with")
        connector = self._connector()
        policy = self.names.policy
        kwargs = connect_kwargs(
            self.config,
            project_dir=self.project_dir,
            tokens=self._tokens,
            quote_database=bool(policy.database),
            quote_schema=bool(policy.schema),
        )
        with self._errors("connecting"):
            return connector.connect(**kwargs)

    def connection(self) -> Any:
        """The open connector connection (connects on first use)."""
        if self._closed:
            raise WarehouseError("snowflake: the connection is closed")
        if self._conn is None:
            self._conn = self._new_connection()
        return self._conn

    def _stream_connection(self) -> Any:
        if self._closed:
            raise WarehouseError("snowflake: the connection is closed")
        if not self._owns_connection:
            return self.connection()
        if self._stream_conn is None:
            self._stream_conn = self._new_connection()
        return self._stream_conn

    def open(self) -> None:
        """Connect now so bad credentials or a wrong account surface before any work."""
        self.connection()

    def sibling(self) -> Self:
        """A new adapter on its own connection (sharing the cached OAuth access token)."""
        other = super().sibling()
        other._tokens = self._tokens
        return other

    def close(self) -> None:
        """Close the connections this adapter opened."""
        for conn in (self._stream_conn, self._conn if self._owns_connection else None):
            if conn is not None and not self._closed:
                try:
                    conn.close()
                except Exception:  # closing must not mask the error that led here
                    log.debug("closing a Snowflake connection failed", exc_info=True)
        self._conn = self._stream_conn = None
        super().close()

    def describe(self) -> str:
        """Account, user, database and schema (never a secret)."""
        c = self.config
        if c is None:
            return f"snowflake (schema {self.default_schema})"
        return f"snowflake {c.user}@{c.account}/{c.database} (schema {self.default_schema})"

    def _driver_errors(self) -> tuple[builtins.type[BaseException], ...]:
        if self._errors_cache is None:
            try:
                import snowflake.connector.errors as sf_errors
            except ImportError:
                return ()
            self._errors_cache = (sf_errors.Error,)
        return self._errors_cache

    def _open_session(self) -> Session:
        return _SnowflakeSession(self, self.connection())

    def adapt_value(self, value: Any) -> Any:
        """Timestamps are bound as UTC ISO text (qmark binding would send them as TIMESTAMP_NTZ)."""
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.timezone.utc)
            return value.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")
        if isinstance(value, dt.date):
            return value.isoformat()
        return super().adapt_value(value)

    # ------------------------------------------------------------------------------ catalog
    def _legacy_names(self) -> Names:
        """How an earlier version spelled names: all-lower-case folded, any other quoted as written."""
        return Names(replace(self.dialect, default_quoting=Quoting()), None, self.default_schema)

    def table_exists(self, table: TableRef) -> bool:
        """Whether the table exists under its folded name; a table spelled as written instead is an error.

        An earlier version quoted mixed-case names as written, so ``target.table: LeadsEnriched`` may exist as
        ``"LeadsEnriched"``; creating ``LEADSENRICHED`` beside it would send every row again.
        """
        if super().table_exists(table):
            return True
        legacy = self._legacy_names()
        if legacy.table(table) != self.table_sql(table):
            sql, params = catalog.information_schema_tables_sql(legacy, table)
            with self.session() as s:
                if s.fetchall(sql, params):
                    raise ConfigError(
                        f"snowflake: table {table} is not found as {self.table_sql(table)}, but "
                        f"{legacy.table(table)} (a case-sensitive name an earlier version created) exists",
                        hint="keep using it with quoting: {schema: true, identifier: true} in profiles.yml or "
                        "dbt_project.yml, or rename it to the upper-case names dbt-snowflake uses",
                    )
        return False

    def schema_exists(self, schema: str) -> bool:
        """Whether the schema exists under its folded name; one spelled as written instead is an error."""
        if super().schema_exists(schema):
            return True
        legacy = self._legacy_names()
        if legacy.normalize(schema, "schema") != self.normalize_identifier(schema, "schema"):
            sql, params = catalog.schemata_sql(legacy, schema)
            with self.session() as s:
                if s.fetchall(sql, params):
                    raise ConfigError(
                        f'snowflake: schema {schema!r} is not found as "{self.normalize_identifier(schema, "schema")}"'
                        f', but "{schema}" (a case-sensitive name an earlier version created) exists',
                        hint="keep using it with quoting: {schema: true} in profiles.yml or dbt_project.yml; "
                        "dbt-snowflake itself uses the upper-case name",
                    )
        return False

    def get_columns(self, table: TableRef) -> dict[str, LogicalType | str]:
        """Columns from ``information_schema.columns``, with NUMBER's scale so BIGINT is recognised."""
        sql, params = catalog.snowflake_columns_sql(self.names, table)
        with self.session() as s:
            rows = s.fetchall(sql, params)
        out: dict[str, LogicalType | str] = {}
        for name, raw, precision, scale in rows:
            raw = str(raw)
            if raw.upper() == "NUMBER" and scale is not None:
                raw = f"NUMBER({precision},{scale})"
            out[str(name)] = self.logical_type_of(raw)
        return out

    # ------------------------------------------------------------------------------ reading
    def stream(self, sql: str, params: Sequence[Any] = (), *, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        """Run a SELECT on the extraction connection and yield its result chunks as Arrow batches."""
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        with self._errors("connecting for reading"):
            cur = self._stream_connection().cursor()
        try:
            with self._errors("reading rows", sql):
                cur.execute(sql, [self.adapt_value(v) for v in params] if params else None)
                yield from arrow_batches(cur, batch_rows)
        finally:
            cur.close()

    # ------------------------------------------------------------------------------ staging
    def _stage_ref(self, table: TableRef, name: str) -> tuple[str, str]:
        """(the staging table's SQL name, its table stage ``@...%NAME``)."""
        ref = TableRef(name, schema=self.names.schema_of(table), database=table.database)
        qualified = self.table_sql(ref)
        prefix = qualified[: qualified.rfind(".") + 1] if "." in qualified else ""
        # The name is ours (_SIXTYFOUR_STAGE_<hex>, upper case), so it can appear unquoted after `%`.
        return qualified, f"@{prefix}%{name}"

    def _load_stage(self, table: TableRef, data: pa.Table, workdir: Path, created: list[str]) -> str:
        """Create a transient staging table and COPY ``data`` into it (outside any transaction).

        The table's name is appended to ``created`` before it exists, so the caller drops it whatever
        happens next.
        """
        import pyarrow.parquet as pq

        name = self.stage_name().upper()
        if not re.fullmatch(r"[A-Z0-9_]+", name):  # pragma: no cover - stage_name() is ours
            raise WarehouseError(f"snowflake: unexpected staging table name {name!r}")
        stored = [self.normalize_identifier(c) for c in data.column_names]
        stage_sql, stage_at = self._stage_ref(table, name)
        created.append(stage_sql)
        ready = parquet_ready(data, stored)
        cols = ", ".join(
            f"{self.quote(c, what='column')} {stage_type(f.type)}"
            for c, f in zip(data.column_names, ready.schema, strict=False)
        )
        path = workdir / f"{name.lower()}.parquet"
        pq.write_table(ready, path)
        # PUT takes the local path after file:// as written (no percent-encoding); quotes are escaped.
        file_url = "file://" + path.resolve().as_posix().replace("\\", "\\\\").replace("'", "\\'")
        conn = self.connection()
        cur = conn.cursor()
        try:
            with self._errors(f"staging rows for {table}"):
                cur.execute(
                    f'CREATE TRANSIENT TABLE {stage_sql} ({cols}, "{upsert.SEQ}" NUMBER(38,0)) '
                    "DATA_RETENTION_TIME_IN_DAYS = 0"
                )
                cur.execute(f"PUT '{file_url}' {stage_at} AUTO_COMPRESS = FALSE OVERWRITE = TRUE")
                cur.execute(
                    f"COPY INTO {stage_sql} FROM {stage_at} "
                    "FILE_FORMAT = (TYPE = PARQUET USE_LOGICAL_TYPE = TRUE) "
                    "MATCH_BY_COLUMN_NAME = CASE_SENSITIVE PURGE = TRUE"
                )
                loaded = self._rows_loaded(cur)
                conn.commit()
        finally:
            cur.close()
            path.unlink(missing_ok=True)
        if loaded is not None and loaded != data.num_rows:
            raise DataError(f"snowflake: staging {table} loaded {loaded:,} of {data.num_rows:,} rows")
        return stage_sql

    @staticmethod
    def _rows_loaded(cur: Any) -> int | None:
        """Sum of ``rows_loaded`` over the COPY result, or None when the result does not say."""
        names = [str(d[0]).lower() for d in cur.description or ()]
        if "rows_loaded" not in names:
            return None
        i = names.index("rows_loaded")
        return sum(int(r[i] or 0) for r in cur.fetchall())

    # ------------------------------------------------------------------------------ upsert
    def merge_sql(
        self,
        table: TableRef,
        stage_sql: str,
        key: Sequence[str],
        set_cols: Sequence[str],
        json_cols: frozenset[str] = frozenset(),
        guards: Any = None,
    ) -> str:
        """One MERGE from the deduplicated stage (see :func:`~sixtyfour_sync.warehouse.sql.upsert.merge_sql`)."""
        return upsert.merge_sql(self.names, table, stage_sql, key, set_cols, json_cols, guards)

    @staticmethod
    def _merge_counts(names: Sequence[str], row: Sequence[Any] | None) -> tuple[int, int]:
        """(inserted, updated) from MERGE's result row ("number of rows inserted", "...updated")."""
        if row is None:
            return 0, 0
        inserted = updated = 0
        for name, value in zip(names, row, strict=False):
            lowered = name.lower()
            if "inserted" in lowered:
                inserted = int(value or 0)
            elif "updated" in lowered:
                updated = int(value or 0)
        return inserted, updated

    def _json_columns(
        self, table: TableRef, parts: Sequence[PreparedPart]
    ) -> Callable[[Sequence[str]], frozenset[str]]:
        existing = self.get_columns(table) if any(p.data.num_rows for p in parts) else {}
        stored = {
            n for n, t in existing.items() if t is LogicalType.JSON or (isinstance(t, str) and t.upper() in _JSON_TYPES)
        }
        return lambda cols: frozenset(c for c in cols if (self.find_column(existing, c) or "") in stored)

    def upsert(
        self,
        table: TableRef,
        key: Sequence[str],
        parts: Sequence[UpsertPart],
        *,
        before_commit: Callable[[Session], None] | None = None,
        also: Sequence[AlsoWrite] = (),
    ) -> UpsertResult:
        """Stage every part (outside the transaction), then MERGE all, write ``also`` and run ``before_commit`` in
        ONE transaction."""
        if self._session is not None:
            raise WarehouseError(
                "snowflake: upsert called inside an open session; staging DDL would commit it",
                hint="call adapter.upsert(..., before_commit=...) outside any session",
            )
        writes = [(table, [prepare_part(self.names, table, key, p) for p in parts])]
        writes += [(w.table, [prepare_part(self.names, w.table, w.key, p) for p in w.parts]) for w in also]
        stages: list[str] = []
        try:
            result = UpsertResult()
            applied: list[
                tuple[TableRef, list[tuple[str, PreparedPart]], Callable[[Sequence[str]], frozenset[str]]]
            ] = []
            for into, prepared in writes:
                applied.append((into, self._load_parts(into, prepared, stages), self._json_columns(into, prepared)))
            with self.session() as s:
                for into, loaded, json_of in applied:
                    for stage_sql, part in loaded:
                        done = UpsertResult(duplicates_dropped=part.duplicates_dropped, adjusted=part.adjusted)
                        if stage_sql:
                            done += self._merge_part(s, into, stage_sql, part, json_of(part.set_columns))
                        if into is table:
                            result += done
                if before_commit is not None:
                    before_commit(s)
            return result
        finally:
            self._drop_stages(stages)

    def _load_parts(
        self, table: TableRef, prepared: Sequence[PreparedPart], stages: list[str]
    ) -> list[tuple[str, PreparedPart]]:
        """Load each part into a staging table (outside any transaction): the stage's SQL ("" for a part without
        rows) and the part as it is merged."""
        loaded: list[tuple[str, PreparedPart]] = []
        with tempfile.TemporaryDirectory(prefix="sixtyfour-sf-") as tmp:
            for part in prepared:
                if part.insert_only and part.data.num_rows:
                    part = PreparedPart(
                        apply_insert_guards(part),
                        part.key,
                        part.set_columns,
                        {},
                        True,
                        part.duplicates_dropped,
                        adjusted=part.adjusted,
                    )
                stage_sql = self._load_stage(table, part.data, Path(tmp), stages) if part.data.num_rows else ""
                loaded.append((stage_sql, part))
        return loaded

    def _merge_part(
        self, s: Session, table: TableRef, stage_sql: str, part: PreparedPart, json_cols: frozenset[str]
    ) -> UpsertResult:
        if part.insert_only:
            sql = upsert.insert_select_sql(self.names, table, stage_sql, [*part.key, *part.set_columns], json_cols)
            with self._errors(f"inserting into {table}", sql):
                return UpsertResult(inserted=s._execute(sql))
        sql = self.merge_sql(table, stage_sql, part.key, part.set_columns, json_cols, part.guards)
        with self._errors(f"merging into {table}", sql):
            names, rows = s._query(sql)
        inserted, updated = self._merge_counts(names, rows[0] if rows else None)
        return UpsertResult(inserted=inserted, updated=updated)

    def _drop_stages(self, stages: Sequence[str]) -> None:
        if not stages or self._conn is None:
            return
        cur = self._conn.cursor()
        try:
            for stage in stages:
                try:
                    cur.execute(f"DROP TABLE IF EXISTS {stage}")
                except Exception:  # a leftover staging table must not hide the upsert's outcome
                    log.warning("could not drop staging table %s; it is safe to drop by hand", stage)
        finally:
            cur.close()

    def _upsert_in_session(
        self, session: Session, table: TableRef, key: Sequence[str], parts: Sequence[UpsertPart]
    ) -> UpsertResult:
        return session.upsert(table, key, parts)
