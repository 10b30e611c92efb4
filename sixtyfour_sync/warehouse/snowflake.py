"""Snowflake through ``snowflake-connector-python`` (the ``snowflake`` extra).

Connection: dbt-snowflake's keys - ``account``, ``user``, and one of ``password``,
``private_key_path`` (+ ``private_key_passphrase``) or an inline ``private_key``, or ``authenticator``
(``externalbrowser``, ``oauth`` with ``token``, ``username_password_mfa``, an Okta URL); ``role``,
``database``, ``warehouse``, ``schema``. Key-pair auth loads the PEM with ``cryptography`` and hands the
connector DER bytes. The session runs with ``TIMEZONE = 'UTC'``, ``paramstyle = 'qmark'`` (server-side
binding, so no ``%`` escaping) and ``autocommit = False``: a transaction starts with the first DML
statement and ends with :meth:`Session._commit`.

Identifier case: Snowflake folds unquoted names to UPPER case. Every name is quoted, and a name written
all in lower case (``lead_id``) is stored upper case (``"LEAD_ID"``), so ``select lead_id from leads``
written by a user still works; a name with any upper-case letter is kept exactly as written. Names read
back (``Session.select``) are lowered again when they are all upper case.

Upsert, in three steps, because Snowflake commits an open transaction before any DDL:

1. Outside the transaction, each part is written to a Parquet file with pyarrow, ``PUT`` into the table
   stage of a ``TRANSIENT`` staging table (``DATA_RETENTION_TIME_IN_DAYS = 0``) and loaded with ``COPY INTO
   ... MATCH_BY_COLUMN_NAME = CASE_SENSITIVE`` (``USE_LOGICAL_TYPE`` keeps timestamps' zones). No pandas.
   A transient table rather than a temporary one: it is what the local emulator (fakesnow) can also
   ``COPY INTO``; it is dropped when the upsert ends, and its name (``_SIXTYFOUR_STAGE_<hex>``) marks it
   as safe to drop if a crash leaves one behind.
2. In one transaction: per part one ``MERGE`` whose source keeps one row per key (``QUALIFY
   ROW_NUMBER() OVER (PARTITION BY key ORDER BY seq DESC) = 1``, last occurrence wins - real Snowflake
   rejects a MERGE where a target row matches two source rows), setting only the owned columns and
   ``PARSE_JSON`` for ``VARIANT``/``OBJECT``/``ARRAY`` columns; then ``before_commit`` (the ledger);
   then ``COMMIT``. Any failure rolls all of it back.
3. The staging tables are dropped.

For the same reason :meth:`Session.upsert` is refused here: staging inside an open transaction would
silently commit it. Use :meth:`SnowflakeAdapter.upsert` with ``before_commit``.

Extraction uses ``cursor.fetch_arrow_batches()`` (result chunks as Arrow, never the whole result in
memory), re-sliced to ``batch_rows``; a cursor without it (older connectors, fakesnow's in-process
cursor) is read with ``fetchmany``.
"""

from __future__ import annotations

import base64
import builtins
import datetime as dt
import logging
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.errors import ConfigError, DataError, MissingDriverError, WarehouseError
from sixtyfour_sync.warehouse.base import (
    Adapter,
    Capabilities,
    LogicalType,
    Session,
    TableRef,
    UpsertPart,
    UpsertResult,
)

if TYPE_CHECKING:
    from sixtyfour_sync.config.profiles import TargetConfig

__all__ = ["SnowflakeAdapter", "arrow_batches", "connect_kwargs", "load_private_key"]

log = logging.getLogger("sixtyfour_sync.warehouse.snowflake")

_SEQ = "_SIXTYFOUR_SEQ"
_JSON_TYPES = frozenset({"VARIANT", "OBJECT", "ARRAY"})
_INSTALL_HINT = "pip install 'sixtyfour-sync[snowflake]'"


# --------------------------------------------------------------------------------------------------
# Connection arguments


def _secret(value: object) -> str | None:
    if value is None:
        return None
    get = getattr(value, "get", None)
    return str(get()) if callable(get) else str(value)


def load_private_key(pem: bytes, passphrase: str | None, *, where: str) -> bytes:
    """A PEM (or base64 DER) private key, decrypted, as the PKCS#8 DER bytes the connector takes."""
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError as exc:  # pragma: no cover - cryptography comes with the connector
        raise MissingDriverError("key-pair auth needs the cryptography package", hint=_INSTALL_HINT) from exc
    password = passphrase.encode() if passphrase else None
    try:
        if b"-----BEGIN" in pem:
            key = serialization.load_pem_private_key(pem, password=password)
        else:
            key = serialization.load_der_private_key(base64.b64decode(pem.strip()), password=password)
    except (ValueError, TypeError) as exc:
        # The library's message says whether the passphrase is wrong or missing; it never holds the key.
        raise ConfigError(
            f"{where}: cannot load the private key: {exc}",
            hint="check private_key_passphrase, and that the key is an unencrypted or PKCS#8 PEM",
        ) from None
    return key.private_bytes(
        encoding=serialization.Encoding.DER,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def connect_kwargs(config: object, *, project_dir: Path | None = None) -> dict[str, Any]:
    """``snowflake.connector.connect`` arguments for a profile output (holds secrets: never log it)."""
    kw: dict[str, Any] = {
        "account": getattr(config, "account", None),
        "user": getattr(config, "user", None),
        "application": "sixtyfour-sync",
        "paramstyle": "qmark",
        "autocommit": False,
        "session_parameters": {"TIMEZONE": "UTC"},
    }
    for name in ("role", "database", "warehouse", "schema"):
        value = getattr(config, name, None)
        if value:
            kw[name] = value
    query_tag = getattr(config, "query_tag", None)
    if query_tag:
        kw["session_parameters"]["QUERY_TAG"] = query_tag
    timeout = getattr(config, "connect_timeout", None)
    if timeout:
        kw["login_timeout"] = timeout
    password = _secret(getattr(config, "password", None))
    if password:
        kw["password"] = password
    authenticator = getattr(config, "authenticator", None)
    if authenticator:
        kw["authenticator"] = authenticator
        token = _secret(getattr(config, "token", None))
        if token:
            kw["token"] = token
    passphrase = _secret(getattr(config, "private_key_passphrase", None))
    key_path = getattr(config, "private_key_path", None)
    inline_key = _secret(getattr(config, "private_key", None))
    if key_path:
        path = Path(key_path).expanduser()
        if not path.is_absolute() and project_dir is not None:
            path = project_dir / path
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"snowflake: private_key_path {str(path)!r} cannot be read: {exc.strerror}",
                hint="point private_key_path at the PEM file (relative paths start at the project directory)",
            ) from None
        kw["private_key"] = load_private_key(pem, passphrase, where=f"private_key_path {str(path)!r}")
    elif inline_key:
        kw["private_key"] = load_private_key(inline_key.encode(), passphrase, where="private_key")
    return kw


# --------------------------------------------------------------------------------------------------
# Reading


def arrow_batches(cursor: Any, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Yield an executed cursor's result as Arrow batches of at most ``batch_rows`` rows.

    ``fetch_arrow_batches`` hands over the result chunk by chunk as Snowflake serves them; each is
    re-sliced (zero copy). A cursor without it is read with ``fetchmany`` and converted.
    """
    fetch = getattr(cursor, "fetch_arrow_batches", None)
    if callable(fetch):
        try:
            # Without it each chunk picks its own timestamp unit (ns, or us for dates outside 1677-2262),
            # and the batches of one result stop sharing a schema. Connectors before 4.x lack the option.
            tables = fetch(force_microsecond_precision=True)
        except TypeError:
            tables = fetch()
        for table in tables:
            yield from table.to_batches(max_chunksize=batch_rows)
        return
    from sixtyfour_sync.warehouse.sqlalchemy import rows_to_batches

    names = [str(d[0]) for d in cursor.description or ()]
    yield from rows_to_batches(cursor.fetchmany, names, batch_rows)


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
        self.cur.execute(sql, [self.adapter.adapt_value(v) for v in params] if params else None)
        rc = self.cur.rowcount
        return -1 if rc is None else int(rc)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        self.cur.execute(sql, [self.adapter.adapt_value(v) for v in params] if params else None)
        names = [str(d[0]) for d in self.cur.description or ()]
        return names, [tuple(r) for r in self.cur.fetchall()]

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        # qmark executemany is array binding: one round trip (a stage upload for large batches).
        if rows:
            self.cur.executemany(sql, [[self.adapter.adapt_value(v) for v in r] for r in rows])

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


class SnowflakeAdapter(Adapter):
    """A Snowflake database/schema (see the module docstring for case, staging and upsert rules)."""

    type: ClassVar[str] = "snowflake"
    capabilities: ClassVar[Capabilities] = Capabilities(
        upsert="merge",
        staging="parquet_put_copy",
        json_type="VARIANT",
        identifier_case="upper",
        max_identifier_length=255,
        transactional_ddl=False,
    )
    identifier_allows_dollar: ClassVar[bool] = True
    text_cast_type: ClassVar[str] = "VARCHAR"

    def __init__(
        self,
        config: TargetConfig | None = None,
        *,
        project_dir: Path | None = None,
        connection: Any = None,
    ) -> None:
        super().__init__(config, project_dir=project_dir)
        self._conn: Any = connection
        self._owns_connection = connection is None
        self._errors_cache: tuple[builtins.type[BaseException], ...] | None = None

    # ------------------------------------------------------------------------------ connection
    def _connector(self) -> Any:
        try:
            import snowflake.connector
        except ImportError as exc:
            raise MissingDriverError(
                "the Snowflake driver (snowflake-connector-python) is not installed", hint=_INSTALL_HINT
            ) from exc
        return snowflake.connector

    def connection(self) -> Any:
        """The open connector connection (connects on first use)."""
        if self._closed:
            raise WarehouseError("snowflake: the connection is closed")
        if self._conn is None:
            if self.config is None:
                raise ConfigError("snowflake: no target configuration to connect with")
            connector = self._connector()
            kwargs = connect_kwargs(self.config, project_dir=self.project_dir)
            with self._errors("connecting"):
                self._conn = connector.connect(**kwargs)
        return self._conn

    def open(self) -> None:
        """Connect now so bad credentials or a wrong account surface before any work."""
        self.connection()

    def close(self) -> None:
        """Close the connection (one this adapter opened)."""
        if self._conn is not None and self._owns_connection and not self._closed:
            try:
                self._conn.close()
            except Exception:  # closing must not mask the error that led here
                log.debug("closing the Snowflake connection failed", exc_info=True)
        self._conn = None
        super().close()

    def describe(self) -> str:
        """Account, user, database and schema (never a secret)."""
        c = self.config
        return (
            f"snowflake {getattr(c, 'user', '?')}@{getattr(c, 'account', '?')}/"
            f"{getattr(c, 'database', '?')} (schema {self.default_schema})"
        )

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
        """Timestamps are bound as ISO text: qmark binding would otherwise send them as TIMESTAMP_NTZ."""
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.timezone.utc)
            return value.isoformat()
        if isinstance(value, dt.date):
            return value.isoformat()
        return super().adapt_value(value)

    # ------------------------------------------------------------------------------ types
    def _type_names(self) -> dict[LogicalType, str]:
        return {
            LogicalType.TEXT: "VARCHAR",
            LogicalType.BIGINT: "BIGINT",
            LogicalType.DOUBLE: "DOUBLE",
            LogicalType.BOOLEAN: "BOOLEAN",
            LogicalType.JSON: "VARIANT",
            LogicalType.TIMESTAMP: "TIMESTAMP_TZ",
        }

    def logical_type_of(self, raw: str) -> LogicalType | str:
        """Snowflake reports ``NUMBER``/``TEXT``/``FLOAT``; BIGINT is ``NUMBER(38,0)``."""
        base = re.sub(r"\(.*\)", "", raw).strip().upper()
        if base == "NUMBER" and re.search(r",\s*0\)$", raw.strip()):
            return LogicalType.BIGINT
        if base in ("FLOAT", "DOUBLE", "REAL", "FLOAT8", "DOUBLE PRECISION"):
            return LogicalType.DOUBLE
        if base in ("TEXT", "VARCHAR", "STRING"):
            return LogicalType.TEXT
        return super().logical_type_of(raw)

    def get_columns(self, table: TableRef) -> dict[str, LogicalType | str]:
        """Columns from ``information_schema.columns``, with NUMBER's scale so BIGINT is recognised."""
        self.validate_identifier(table.name, what="table name")
        sql = (
            f"SELECT column_name, data_type, numeric_precision, numeric_scale "
            f"FROM {self._information_schema(table)}.columns WHERE table_name = ?"
        )
        params: list[Any] = [self.normalize_identifier(table.name)]
        schema = self._lookup_schema(table)
        if schema is not None:
            sql += " AND table_schema = ?"
            params.append(schema)
        sql += " ORDER BY ordinal_position"
        with self.session() as s:
            rows = s.fetchall(sql, params)
        out: dict[str, LogicalType | str] = {}
        for name, raw, precision, scale in rows:
            raw = str(raw)
            if raw.upper() == "NUMBER" and scale is not None:
                raw = f"NUMBER({precision},{scale})"
            out[str(name)] = self.logical_type_of(raw)
        return out

    # ------------------------------------------------------------------------------ time
    def now_sql(self) -> str:
        """The current time (the session time zone is UTC)."""
        return "CURRENT_TIMESTAMP()"

    def age_seconds_sql(self, column_sql: str) -> str:
        """Whole seconds since the timestamp expression."""
        return f"DATEDIFF(second, {column_sql}, CURRENT_TIMESTAMP())"

    # ------------------------------------------------------------------------------ reading
    def stream(self, sql: str, params: Sequence[Any] = (), *, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        """Run a SELECT on its own cursor and yield its result chunks as Arrow batches."""
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        cur = self.connection().cursor()
        try:
            with self._errors("reading rows", sql):
                cur.execute(sql, [self.adapt_value(v) for v in params] if params else None)
                yield from arrow_batches(cur, batch_rows)
        finally:
            cur.close()

    # ------------------------------------------------------------------------------ upsert
    def _stage_type(self, t: pa.DataType) -> str:
        if pa.types.is_boolean(t):
            return "BOOLEAN"
        if pa.types.is_integer(t):
            return "NUMBER(38,0)"
        if pa.types.is_floating(t):
            return "DOUBLE"
        if pa.types.is_decimal(t):
            return f"NUMBER({t.precision},{t.scale})"
        if pa.types.is_timestamp(t):
            return "TIMESTAMP_TZ"
        if pa.types.is_date(t):
            return "DATE"
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return "BINARY"
        return "VARCHAR"

    @staticmethod
    def _parquet_ready(data: pa.Table, names: Sequence[str]) -> pa.Table:
        """Columns renamed to their stored spelling, UTC timestamps, text where Parquet has no type."""
        arrays: list[pa.ChunkedArray] = []
        for col in data.columns:
            t = col.type
            if pa.types.is_timestamp(t):
                col = pc.assume_timezone(col, "UTC") if t.tz is None else col.cast(pa.timestamp(t.unit, tz="UTC"))
            elif pa.types.is_null(t) or pa.types.is_large_string(t):
                col = col.cast(pa.string())
            arrays.append(col)
        out = pa.Table.from_arrays(arrays, names=list(names))
        return out.append_column(_SEQ, pa.array(range(out.num_rows), pa.int64()))

    def _stage_ref(self, table: TableRef, name: str) -> tuple[str, str]:
        """(the staging table's SQL name, its table stage ``@...%NAME``)."""
        schema = table.schema if table.schema is not None else self.default_schema
        ref = TableRef(name, schema=schema, database=table.database)
        prefix = ""
        if table.database:
            prefix += self.quote(table.database, what=f"database of table {table}") + "."
        if schema:
            prefix += self.quote(schema, what=f"schema of table {table}") + "."
        # The name is ours (_SIXTYFOUR_STAGE_<hex>, upper case), so it can appear unquoted after `%`.
        return self.table_sql(ref), f"@{prefix}%{name}"

    def _load_stage(self, table: TableRef, data: pa.Table, workdir: Path, created: list[str]) -> str:
        """Create a transient staging table and COPY ``data`` into it (outside any transaction).

        The table's name is appended to ``created`` before it exists, so the caller drops it whatever
        happens next.
        """
        import pyarrow.parquet as pq

        name = self.normalize_identifier(self.stage_name())
        if not re.fullmatch(r"[A-Z0-9_]+", name):  # pragma: no cover - stage_name() is ours
            raise WarehouseError(f"snowflake: unexpected staging table name {name!r}")
        stored = [self.normalize_identifier(c) for c in data.column_names]
        stage_sql, stage_at = self._stage_ref(table, name)
        created.append(stage_sql)
        ready = self._parquet_ready(data, stored)
        cols = ", ".join(
            f"{self.quote(c, what='column')} {self._stage_type(f.type)}"
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
                    f'CREATE TRANSIENT TABLE {stage_sql} ({cols}, "{_SEQ}" NUMBER(38,0)) '
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

    def merge_sql(
        self,
        table: TableRef,
        stage_sql: str,
        key: Sequence[str],
        set_cols: Sequence[str],
        json_cols: frozenset[str] = frozenset(),
    ) -> str:
        """One MERGE from the deduplicated stage; only ``set_cols`` are written (``PARSE_JSON`` for JSON)."""
        qk = [self.quote(k, what="key column") for k in key]
        qc = [self.quote(c, what="column") for c in set_cols]
        select = [*qk]
        for c, q in zip(set_cols, qc, strict=True):
            select.append(f"PARSE_JSON({q}) AS {q}" if c in json_cols else q)
        source = (
            f"SELECT {', '.join(select)} FROM {stage_sql} "
            f'QUALIFY ROW_NUMBER() OVER (PARTITION BY {", ".join(qk)} ORDER BY "{_SEQ}" DESC) = 1'
        )
        on = " AND ".join(f"t.{k} = s.{k}" for k in qk)
        sql = f"MERGE INTO {self.table_sql(table)} AS t USING ({source}) AS s ON {on}"
        if qc:
            sql += " WHEN MATCHED THEN UPDATE SET " + ", ".join(f"{q} = s.{q}" for q in qc)
        cols = [*qk, *qc]
        sql += f" WHEN NOT MATCHED THEN INSERT ({', '.join(cols)}) VALUES ({', '.join('s.' + c for c in cols)})"
        return sql

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

    def upsert(
        self,
        table: TableRef,
        key: Sequence[str],
        parts: Sequence[UpsertPart],
        *,
        before_commit: Callable[[Session], None] | None = None,
    ) -> UpsertResult:
        """Stage every part (outside the transaction), then MERGE all + ``before_commit`` in ONE transaction."""
        if self._session is not None:
            raise WarehouseError(
                "snowflake: upsert called inside an open session; staging DDL would commit it",
                hint="call adapter.upsert(..., before_commit=...) outside any session",
            )
        prepared = [self._prepare_part(table, key, p) for p in parts]
        existing = self.get_columns(table) if any(d.num_rows for d, _, _ in prepared) else {}
        json_stored = {
            n for n, t in existing.items() if t is LogicalType.JSON or (isinstance(t, str) and t.upper() in _JSON_TYPES)
        }
        stages: list[str] = []
        try:
            with tempfile.TemporaryDirectory(prefix="sixtyfour-sf-") as tmp:
                loaded: list[tuple[str, list[str], pa.Table, int]] = []
                for data, set_cols, dropped in prepared:
                    if data.num_rows == 0:
                        loaded.append(("", list(set_cols), data, dropped))
                        continue
                    stage_sql = self._load_stage(table, data, Path(tmp), stages)
                    loaded.append((stage_sql, list(set_cols), data, dropped))
            result = UpsertResult()
            with self.session() as s:
                for stage_sql, set_cols, _data, dropped in loaded:
                    result += UpsertResult(duplicates_dropped=dropped)
                    if not stage_sql:
                        continue
                    json_cols = frozenset(c for c in set_cols if (self.find_column(existing, c) or "") in json_stored)
                    sql = self.merge_sql(table, stage_sql, key, set_cols, json_cols)
                    with self._errors(f"merging into {table}", sql):
                        names, rows = s._query(sql)
                    inserted, updated = self._merge_counts(names, rows[0] if rows else None)
                    result += UpsertResult(inserted=inserted, updated=updated)
                if before_commit is not None:
                    before_commit(s)
            return result
        finally:
            self._drop_stages(stages)

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
