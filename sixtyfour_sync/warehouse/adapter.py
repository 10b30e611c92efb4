"""The :class:`Adapter`: one connection to one warehouse target, doing the I/O the engine needs.

The engine uses an adapter to create and evolve the target table (:meth:`Adapter.ensure_table`), stream
source rows as Arrow record batches (:meth:`Adapter.stream`), build selection SQL (the
:class:`~sixtyfour_sync.warehouse.facade.SqlMethods` it inherits, each a pure builder), upsert enriched
rows together with its ledger writes in one transaction (:meth:`Adapter.upsert`), and keep its small
ledger tables through a :class:`~sixtyfour_sync.warehouse.session.Session`.

A backend subclasses :class:`Adapter` with its config class (``Adapter[PostgresTarget]``), names its
:class:`~sixtyfour_sync.warehouse.dialect.Dialect`, and implements :meth:`Adapter._open_session` and
:meth:`Adapter.stream`; for speed it overrides :meth:`Adapter._stage` (loading staged rows) and
:meth:`Adapter._insert_new` (rows known to be new). Everything else is built here from the pure modules.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol

import pyarrow as pa
from typing_extensions import TypeVar

from sixtyfour_sync._redact import redact
from sixtyfour_sync.errors import DataError, WarehouseError
from sixtyfour_sync.warehouse.dialect import GENERIC, Dialect
from sixtyfour_sync.warehouse.facade import SqlMethods
from sixtyfour_sync.warehouse.keytypes import KeyType, classify_key, key_logical_type, key_sql_type
from sixtyfour_sync.warehouse.parts import PreparedPart, apply_insert_guards, guards_decided_in_stage, prepare_part
from sixtyfour_sync.warehouse.session import Session
from sixtyfour_sync.warehouse.sql import catalog, ddl, select, upsert
from sixtyfour_sync.warehouse.sql.identifiers import Names
from sixtyfour_sync.warehouse.types import (
    AlsoWrite,
    Capabilities,
    Column,
    EnsureResult,
    KeyReport,
    LogicalType,
    Quoting,
    TableRef,
    UpsertPart,
    UpsertResult,
    type_label,
)

if TYPE_CHECKING:
    from typing_extensions import Self

    from sixtyfour_sync.config.profiles import ResolvedTarget

__all__ = ["Adapter", "ConfigT", "TargetLike"]

log = logging.getLogger("sixtyfour_sync.warehouse")


class TargetLike(Protocol):
    """What every profile output offers the adapter (its own keys come from its own config class)."""

    @property
    def schema(self) -> str | None:
        """The target schema."""

    @property
    def ledger_schema(self) -> str | None:
        """Where the ledger tables live (default: ``schema``)."""


#: The adapter's own config class; a bare ``Adapter`` annotation means any of them.
ConfigT = TypeVar("ConfigT", bound=TargetLike, default=Any)


class Adapter(SqlMethods, ABC, Generic[ConfigT]):
    """One connection to one warehouse target (see the module docstring)."""

    type: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    #: The SQL dialect; an instance may refine it once connected (MySQL vs MariaDB).
    dialect: Dialect = GENERIC

    default_schema: str | None

    def __init__(
        self, config: ConfigT | None = None, *, project_dir: Path | None = None, quoting: Quoting | None = None
    ) -> None:
        self.config = config
        self.project_dir = project_dir
        #: How names fold (dbt's ``quoting:``); None: the dialect's dbt default.
        self.quoting = quoting
        self.default_schema = config.schema if config is not None else None
        ledger_schema = config.ledger_schema if config is not None else None
        #: Where the ledger tables live (the target schema unless the profile says otherwise).
        self.ledger_schema: str | None = ledger_schema or self.default_schema
        self._session: Session | None = None
        self._closed = False
        self._unique_cache: dict[tuple[str, tuple[str, ...]], bool] = {}
        self._names: Names | None = None

    @property
    def names(self) -> Names:
        """The naming rules in force (dialect, quoting policy, default schema)."""
        n = self._names
        if n is None or n.dialect is not self.dialect or n.default_schema != self.default_schema:
            n = self._names = Names(self.dialect, self.quoting, self.default_schema)
        return n

    # ------------------------------------------------------------------------------ lifecycle
    @classmethod
    def from_target(
        cls, target: ResolvedTarget | Any, *, project_dir: Path | None = None, quoting: Quoting | None = None
    ) -> Adapter[Any]:
        """Build an adapter from a resolved target or a bare config (does not connect)."""
        from sixtyfour_sync.config.profiles import ResolvedTarget

        if isinstance(target, ResolvedTarget):
            merged = (
                quoting.over(Quoting.from_config(target.quoting)) if quoting else Quoting.from_config(target.quoting)
            )
            config: Any = target.config
            return cls(config, project_dir=project_dir or target.project_dir, quoting=merged)
        return cls(target, project_dir=project_dir, quoting=quoting)

    def open(self) -> None:
        """Connect now (adapters otherwise connect on first use), so connection errors surface early."""

    def close(self) -> None:
        """Close the connection; the adapter cannot be used afterwards."""
        self._closed = True

    def release(self) -> bool:
        """Let go of the warehouse between transactions while the caller waits (the engine calls it where a run
        waits for the API); the next use connects again. Whether something was let go: only where holding on
        keeps other processes out (a DuckDB file's lock, warehouse/duckdb.py); elsewhere a no-op."""
        return False

    @contextmanager
    def background(self) -> Iterator[None]:
        """For upkeep on a background thread (the lease's renewals): a connection made in the block does not wait
        for a warehouse another process holds (it fails at once, to be tried again later), and what the block
        opened is let go again when the warehouse was let go before. Elsewhere than DuckDB, nothing changes."""
        yield

    def sibling(self) -> Self:
        """A new adapter on its OWN connection to the same target (for another thread).

        No DDL, commit or rollback on one disturbs the other; closing the sibling leaves this one open.
        """
        if self.config is None:
            raise WarehouseError(f"{self.type}: this adapter was built around a connection; it cannot open another")
        return type(self)(self.config, project_dir=self.project_dir, quoting=self.quoting)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: builtins.type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def describe(self) -> str:
        """Where this adapter points, safe to print (no secrets)."""
        return f"{self.type} target (schema {self.default_schema})"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    # ------------------------------------------------------------------------------ errors
    def _driver_errors(self) -> tuple[builtins.type[BaseException], ...]:
        """The driver's exception classes that :meth:`_errors` converts to :class:`WarehouseError`."""
        return ()

    @contextmanager
    def _errors(self, doing: str, sql: str | None = None) -> Iterator[None]:
        """Convert driver errors raised inside the block to :class:`WarehouseError`, once, here."""
        kinds = self._driver_errors()
        if not kinds:
            yield
            return
        try:
            yield
        except kinds as exc:
            raise self._wrap_error(exc, doing, sql) from exc

    def _wrap_error(self, exc: BaseException, doing: str, sql: str | None = None) -> WarehouseError:
        text = redact(str(exc).strip()) or type(exc).__name__
        message = f"{self.type}: {doing} failed: {text}"
        if sql:
            short = " ".join(sql.split())
            message += f"\n  SQL: {redact(short[:300])}{'...' if len(short) > 300 else ''}"
        return WarehouseError(message)

    def _is_duplicate_key(self, exc: BaseException) -> bool:
        """Whether ``exc`` (or its cause) is the driver's primary-key/unique violation."""
        return False

    # ------------------------------------------------------------------------------ introspection
    def _table_exists_query(self, table: TableRef) -> tuple[str, list[Any]]:
        return catalog.information_schema_tables_sql(self.names, table)

    def _columns_query(self, table: TableRef) -> tuple[str, list[Any]]:
        return catalog.information_schema_columns_sql(self.names, table)

    def table_exists(self, table: TableRef) -> bool:
        """Whether ``table`` exists (a table or a view)."""
        sql, params = self._table_exists_query(table)
        with self.session() as s:
            return bool(s.fetchall(sql, params))

    def get_columns(self, table: TableRef) -> dict[str, LogicalType | str]:
        """The table's columns in order, actual names as stored -> logical type (or the raw type name)."""
        sql, params = self._columns_query(table)
        with self.session() as s:
            rows = s.fetchall(sql, params)
        return {str(name): self.logical_type_of(str(raw)) for name, raw, *_ in rows}

    def schema_exists(self, schema: str) -> bool:
        """Whether ``schema`` exists (checked first: CREATE SCHEMA needs a privilege the user may lack)."""
        sql, params = catalog.schemata_sql(self.names, schema)
        with self.session() as s:
            return bool(s.fetchall(sql, params))

    def key_is_unique(self, table: TableRef, key: Sequence[str]) -> bool:
        """Whether the target enforces a primary key or unique constraint on exactly ``key`` (cached).

        Only then does an UPDATE row count equal the number of matched staged keys (a table without one
        may hold a key twice). Default: unknown (False).
        """
        cache_key = (self.table_sql(table), tuple(key))
        cached = self._unique_cache.get(cache_key)
        if cached is None:
            cached = self._unique_cache[cache_key] = self._key_is_unique(table, key)
        return cached

    def _key_is_unique(self, table: TableRef, key: Sequence[str]) -> bool:
        return False

    def key_report(self, source_sql: str, key: Sequence[str], *, sample: int = 20) -> KeyReport:
        """Count NULL and duplicate keys of a source query in SQL, with up to ``sample`` examples each."""
        q = select.key_report_sql(self.names, source_sql, key, sample=sample)
        with self.session() as sess:
            total, nulls = sess.fetchall(q.totals)[0]
            dup_keys, dup_rows = sess.fetchall(q.duplicates)[0]
            null_samples: list[tuple[Any, ...]] = []
            dup_samples: list[tuple[tuple[Any, ...], int]] = []
            if int(nulls or 0) and sample > 0:
                null_samples = [tuple(r) for r in sess.fetchall(q.null_samples)]
            if int(dup_keys or 0) and sample > 0:
                dup_samples = [(tuple(r[:-1]), int(r[-1])) for r in sess.fetchall(q.duplicate_samples)]
        return KeyReport(
            key=tuple(key),
            total_rows=int(total or 0),
            null_key_rows=int(nulls or 0),
            duplicate_keys=int(dup_keys or 0),
            duplicate_rows=int(dup_rows or 0),
            null_samples=tuple(null_samples),
            duplicate_samples=tuple(dup_samples),
        )

    # ------------------------------------------------------------------------------ key types
    def source_column_types(self, sql: str, columns: Sequence[str]) -> dict[str, str]:
        """The warehouse's own type names of some columns of a query (as written in the query's output),
        where the warehouse tells them cheaply; a column left out is classified by its Arrow type."""
        return {}

    def key_types(self, sql: str, key: Sequence[str]) -> dict[str, KeyType | None]:
        """Each key column's :class:`KeyType` (None: a type the sync refuses as a key), from the warehouse's
        name for it and the Arrow type of one row of ``sql``."""
        native = {k.lower(): t for k, t in self.source_column_types(sql, key).items()}
        arrow: dict[str, pa.DataType] = {}
        cols = ", ".join(self.quote(k, what="key column") for k in key)
        probe = self.limit_sql(f"SELECT {cols} FROM ({sql}) {self.subquery_alias('k')}", 1)
        for batch in self.stream(probe):
            names = [self.denormalize_identifier(n).lower() for n in batch.schema.names]
            for k in key:
                if k.lower() in names:
                    t = batch.schema.field(names.index(k.lower())).type
                    if not pa.types.is_null(t):
                        arrow[k.lower()] = t
            break
        return {k: classify_key(native.get(k.lower()), arrow.get(k.lower()), self.dialect.types) for k in key}

    def key_column(self, name: str, kt: KeyType) -> Column:
        """The target's key column for a source key of type ``kt``: the same type on this warehouse."""
        text = self.dialect.type_name(LogicalType.TEXT, key=True)
        return Column(name, key_logical_type(kt), nullable=False, sql=key_sql_type(self.dialect.types, kt, text))

    # ------------------------------------------------------------------------------ DDL
    def ensure_schema(self, schema: str | None = None) -> None:
        """Create the schema (default: the target schema) when it does not exist."""
        schema = schema or self.default_schema
        if schema:
            with self.session() as s:
                s.execute(self.create_schema_sql(schema))

    def ensure_table(self, table: TableRef, key: Sequence[Column], columns: Sequence[Column]) -> EnsureResult:
        """Create ``table`` when missing, add missing listed columns; never drop or alter others.

        Safe when two first runs race: the table is created and columns are added ``IF NOT EXISTS`` (where
        the dialect has it), and the columns are checked after creating. An existing listed column of an
        incompatible type raises :class:`DataError`.
        """
        if not key:
            raise ValueError("ensure_table needs at least one key column")
        for c in (*key, *columns):
            self.validate_identifier(c.name, what=f"column of target table {table}")
        lowered = [c.name.lower() for c in (*key, *columns)]
        dup = {n for n in lowered if lowered.count(n) > 1}
        if dup:
            raise DataError(
                f"target table {table}: column(s) {sorted(dup)} listed twice",
                hint="rename a struct field or set target.prefix",
            )
        created = False
        if not self.table_exists(table):
            schema = self.names.schema_of(table)
            if schema and not table.database and not self.schema_exists(schema):
                self.ensure_schema(schema)
            with self._errors(f"creating table {table}"), self.session() as s:
                s.execute(self.create_table_sql(table, key, columns))
            created = True
        existing = self.get_columns(table)
        missing = self._check_columns(table, existing, key, columns)
        if missing:
            with self._errors(f"adding columns to {table}"), self.session() as s:
                for col in missing:
                    s.execute(self.add_column_sql(table, col))
            existing = self.get_columns(table)
        return EnsureResult(created=created, added_columns=tuple(c.name for c in missing), columns=existing)

    def _check_columns(
        self, table: TableRef, existing: dict[str, LogicalType | str], key: Sequence[Column], columns: Sequence[Column]
    ) -> list[Column]:
        """The listed columns the table lacks; DataError naming every incompatible one."""
        problems: list[str] = []
        missing: list[Column] = []
        for col in key:
            if self.find_column(existing, col.name) is None:
                problems.append(f"key column {col.name!r} is missing")
        for col in columns:
            stored = self.find_column(existing, col.name)
            if stored is None:
                missing.append(col)
            elif not self.is_compatible(existing[stored], col.type):
                problems.append(
                    f"column {stored!r} has type {type_label(existing[stored])}, the sync writes "
                    f"{col.type.value} ({self.sql_type(col.type)})"
                )
        if problems:
            raise DataError(
                f"target table {table} is not compatible: " + "; ".join(problems),
                hint="rename the struct field, set target.prefix so the sync writes its own columns, "
                "or drop the conflicting column",
            )
        return missing

    # ------------------------------------------------------------------------------ transactions
    @abstractmethod
    def _open_session(self) -> Session:
        """Begin a transaction on the connection and return its :class:`Session`."""

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back when it raises.

        Nested calls join the open transaction (the outermost block commits or rolls back).
        """
        if self._closed:
            raise WarehouseError(f"{self.type}: the connection is closed")
        if self._session is not None:
            yield self._session
            return
        with self._errors("beginning a transaction"):
            sess = self._open_session()
        self._session = sess
        try:
            yield sess
        except BaseException:
            try:
                with self._errors("rolling back"):
                    sess._rollback()
            except WarehouseError:
                log.warning("rollback failed after an error", exc_info=True)
            raise
        else:
            with self._errors("committing"):
                sess._commit()
        finally:
            self._session = None
            sess._close()

    # ------------------------------------------------------------------------------ reading
    @abstractmethod
    def stream(self, sql: str, params: Sequence[Any] = (), *, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        """Run any SELECT and yield its rows as Arrow record batches of at most ``batch_rows`` rows.

        Memory stays bounded whatever the result size. Reading runs on its own cursor or connection,
        outside any open :meth:`session`: it sees committed data, and ledger writes (and commits) while
        a stream is open do not disturb it. Every batch of one stream has the same schema. Closing the
        generator early is safe.
        """

    # ------------------------------------------------------------------------------ upsert
    def upsert(
        self,
        table: TableRef,
        key: Sequence[str],
        parts: Sequence[UpsertPart],
        *,
        before_commit: Callable[[Session], None] | None = None,
        also: Sequence[AlsoWrite] = (),
    ) -> UpsertResult:
        """Upsert every part, write ``also`` and run ``before_commit`` in ONE transaction; any failure changes
        nothing.

        For existing keys only each part's ``set_columns`` are written (guarded ones where their guard
        allows); new keys are inserted with the key and ``set_columns`` (other columns NULL). Keys within
        a part are deduplicated (last occurrence wins); a NULL key part raises :class:`DataError` before
        anything is written. The result counts ``table``'s rows.
        """
        prepared = [prepare_part(self.names, table, key, p) for p in parts]
        others = [(w.table, prepare_part(self.names, w.table, w.key, p)) for w in also for p in w.parts]
        with self.session() as s:
            result = UpsertResult()
            for part in prepared:
                result += self._upsert_prepared(s, table, part)
            for other, part in others:
                self._upsert_prepared(s, other, part)
            if before_commit is not None:
                before_commit(s)
        return result

    def _upsert_in_session(
        self, session: Session, table: TableRef, key: Sequence[str], parts: Sequence[UpsertPart]
    ) -> UpsertResult:
        result = UpsertResult()
        for p in parts:
            result += self._upsert_prepared(session, table, prepare_part(self.names, table, key, p))
        return result

    def _upsert_prepared(self, session: Session, table: TableRef, part: PreparedPart) -> UpsertResult:
        """Insert a new-rows part; else stage it, UPDATE existing keys and INSERT missing ones."""
        dropped = UpsertResult(duplicates_dropped=part.duplicates_dropped, adjusted=part.adjusted)
        n = part.data.num_rows
        if n == 0:
            return dropped
        with self._errors(f"upserting into {table}"):
            if part.insert_only:
                return UpsertResult(inserted=self._insert_new(session, table, apply_insert_guards(part))) + dropped
            part, decide = guards_decided_in_stage(part, self.dialect)
            stage = self._stage(session, table, part)
            with self._stage_dropped(session, stage):
                for flag, guard in decide:
                    session.execute(upsert.guard_stage_sql(self.names, table, stage, part.key, flag, guard))
                inserted = self._apply_stage(session, table, stage, part)
        return UpsertResult(inserted=inserted, updated=n - inserted) + dropped

    def _apply_stage(self, session: Session, table: TableRef, stage: str, part: PreparedPart) -> int:
        """UPDATE from the stage, then INSERT the keys it did not match; returns rows inserted."""
        n = part.data.num_rows
        updated = -1
        if part.set_columns:
            sql = upsert.update_from_sql(self.names, table, stage, part.key, part.set_columns, part.guards)
            updated = session.execute_count(sql)
        if updated == n and self.key_is_unique(table, part.key):
            # Every staged key matched exactly one row: nothing to insert, skip the anti-join.
            return 0
        sql = upsert.insert_missing_sql(self.names, table, stage, part.key, part.set_columns, part.guards)
        inserted = session.execute_count(sql)
        if inserted < 0:
            raise WarehouseError(f"{self.type}: the driver did not report the inserted row count")
        return inserted

    @contextlib.contextmanager
    def _stage_dropped(self, session: Session, stage: str) -> Iterator[None]:
        """Drop the stage after the block; when the block failed, its error is the one raised (the drop may fail
        too in a transaction the error aborted, and the rollback that follows drops a temporary stage anyway)."""
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                self._drop_stage(session, stage)
            raise
        self._drop_stage(session, stage)

    def stage_name(self) -> str:
        """A unique name for a staging relation."""
        return f"_sixtyfour_stage_{uuid.uuid4().hex[:12]}"

    def _stage(self, session: Session, table: TableRef, part: PreparedPart) -> str:
        """Load the part's rows into a temporary relation; return its SQL name.

        Generic path: a temporary table shaped like the target's columns (booleans for guard flags),
        filled with executemany in chunks. Backends override with their bulk path (Arrow, COPY, PUT...).
        """
        name = self.quote(self.stage_name(), kind="identifier")
        data = part.data
        flags = set(part.flag_columns)
        plain = [c for c in data.column_names if c not in flags]
        staged_flags = [c for c in data.column_names if c in flags]
        session.execute(ddl.create_stage_sql(self.names, name, table, plain, staged_flags))
        marks = ", ".join("?" for _ in data.column_names)
        insert = f"INSERT INTO {name} ({self.names.columns(data.column_names)}) VALUES ({marks})"
        for batch in data.to_batches(max_chunksize=5_000):
            session._executemany(insert, [tuple(r.values()) for r in batch.to_pylist()])
        return name

    def _drop_stage(self, session: Session, stage: str) -> None:
        session.execute(f"{self.dialect.drop_temp_table} {stage}")

    def _insert_new(self, session: Session, table: TableRef, data: pa.Table) -> int:
        """Insert rows the caller knows are new (no UPDATE, no anti-join); returns rows inserted.

        Generic path: stage, then one ``INSERT ... SELECT``. Backends override to load the target directly.
        """
        part = PreparedPart(data, (), tuple(data.column_names))
        stage = self._stage(session, table, part)
        with self._stage_dropped(session, stage):
            return session.execute_count(upsert.insert_select_sql(self.names, table, stage, data.column_names))
