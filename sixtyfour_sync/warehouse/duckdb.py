"""DuckDB: the embedded default warehouse.

- Reading streams with ``con.sql(q).to_arrow_reader(batch)`` on a separate cursor: the only DuckDB
  call that yields batches without materialising the whole result first, and a separate cursor so
  ledger writes during a stream do not cancel it.
- Upserts register the Arrow table as a view and run ``UPDATE ... FROM`` (in the target's rowid order)
  then ``INSERT ... WHERE NOT EXISTS``: the fastest measured path. Matched rows spread thinly over the
  target's vectors are replaced (DELETE + INSERT of their new versions) instead of updated: DuckDB's update
  keeps per-column before-images of every vector it touches (see ``_apply_stage``).
  ``UPDATE ... FROM read_csv(file)`` on unsorted keys is a 50x join-order trap, and SQLAlchemy's
  executemany into DuckDB is ~400 rows/s: neither is used. Rows known to be new are one
  ``INSERT ... SELECT`` from the registered table.
- Every cursor runs with ``TimeZone = 'UTC'`` and the Gregorian calendar: DuckDB keeps these per cursor
  (a cursor starts from the process's time zone, not its parent's), and timestamps' text - hence row
  hashes - depend on them. A profile's ``settings: {TimeZone: ...}`` is overridden, with a warning.
- DuckDB's memory is capped at 256MB unless the profile sets ``settings: {memory_limit: ...}``: selecting
  rows sorts and joins whole tables, and past the cap DuckDB spills to disk instead of growing with the data.
- A file held by another process (DuckDB allows one writer) is waited for up to the profile's
  ``lock_wait_seconds``, then reported as such, with the PID DuckDB names, instead of a bare IO error.
- :meth:`DuckDBAdapter.sibling` is another cursor on the same database instance (a file can have one
  writing process, so a second connection of the same process is the only way to share it).
- The adapter and its siblings share one :class:`~sixtyfour_sync.warehouse.duckdb_file.DuckDBFile`:
  :meth:`DuckDBAdapter.release` closes the file between transactions (the run calls it while it waits for the
  API), so a ``dbt build`` can write it meanwhile; the next transaction or read opens it again.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import duckdb
import pyarrow as pa

from sixtyfour_sync.config.profiles import DuckDBTarget
from sixtyfour_sync.errors import ConfigError, WarehouseBusyError, WarehouseError
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.dialect import DUCKDB, Dialect
from sixtyfour_sync.warehouse.duckdb_file import DuckDBFile, connect_waiting, holder_of, is_lock_error, release_path
from sixtyfour_sync.warehouse.parts import PreparedPart
from sixtyfour_sync.warehouse.session import Session
from sixtyfour_sync.warehouse.sql import catalog, upsert
from sixtyfour_sync.warehouse.types import Capabilities, Quoting, TableRef

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["DEFAULT_MEMORY_LIMIT", "PINNED_SETTINGS", "DuckDBAdapter"]

log = logging.getLogger("sixtyfour_sync.warehouse.duckdb")

#: Deleting and inserting a key again in one transaction needs DuckDB 1.2 (earlier versions reject the
#: insert against the deleted row's key); before it, matched rows are updated in place.
_REPLACES_ROWS = tuple(int(p) for p in re.findall(r"\d+", duckdb.__version__)[:2]) >= (1, 2)
#: DuckDB's vector: an UPDATE keeps before-images per column for each vector it touches.
VECTOR_ROWS = 2048
#: Matched rows filling less than this share of the vectors they touch are replaced, not updated in place.
DENSE_SHARE = 0.5
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: The memory DuckDB may use for a sync unless the profile's ``settings: {memory_limit: ...}`` says otherwise.
DEFAULT_MEMORY_LIMIT = "256MB"
#: Settings every cursor gets, after the profile's: the text of timestamps (and so row hashes) depends on them.
PINNED_SETTINGS = {"TimeZone": "UTC", "Calendar": "gregorian"}


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def pin_settings(con: duckdb.DuckDBPyConnection) -> None:
    """Apply :data:`PINNED_SETTINGS` to one connection or cursor."""
    for key, value in PINNED_SETTINGS.items():
        con.execute(f"SET {key} = {_literal(value)}")


class _DuckDBSession(Session):
    adapter: DuckDBAdapter

    def __init__(self, adapter: DuckDBAdapter, con: duckdb.DuckDBPyConnection) -> None:
        super().__init__(adapter)
        self.con = con

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        res = self.con.execute(sql, list(params) if params else None)
        desc = res.description
        # DML reports one BIGINT column named "Count"; DDL reports nothing.
        if desc and len(desc) == 1 and desc[0][0] == "Count":
            row = res.fetchone()
            return int(row[0]) if row and row[0] is not None else 0
        return -1

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.con.executemany(sql, [list(r) for r in rows])

    def _query(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        res = self.con.execute(sql, list(params) if params else None)
        names = [d[0] for d in res.description or ()]
        return names, [tuple(r) for r in res.fetchall()]

    def _commit(self) -> None:
        self.con.commit()

    def _rollback(self) -> None:
        self.con.rollback()

    def _close(self) -> None:
        self.adapter._file.leave()


class DuckDBAdapter(Adapter[DuckDBTarget]):
    """A DuckDB file (or ``:memory:``)."""

    type: ClassVar[str] = "duckdb"
    capabilities: ClassVar[Capabilities] = Capabilities(
        upsert="update_insert",
        staging="arrow",
        json_type="JSON",
        identifier_case="preserve",
        max_identifier_length=255,
        transactional_ddl=True,
    )
    dialect: Dialect = DUCKDB

    def __init__(
        self,
        config: DuckDBTarget | None = None,
        *,
        project_dir: Path | None = None,
        quoting: Quoting | None = None,
        connection: duckdb.DuckDBPyConnection | None = None,
        owns_connection: bool | None = None,
        file: DuckDBFile | None = None,
    ) -> None:
        super().__init__(config, project_dir=project_dir, quoting=quoting)
        if self.default_schema is None:
            self.default_schema = "main"
            self.ledger_schema = self.ledger_schema or "main"
        #: This adapter's cursor in a shared file (a sibling's); None: the file's own connection.
        self._slot: int | None = None
        if file is not None:
            self._file = file
            self._slot = file.new_slot()
        else:
            path = self.path
            self._file = DuckDBFile(
                path,
                self._connect,
                pin_settings,
                wait=self.config.lock_wait_seconds if self.config is not None else 0.0,
                releasable=path != ":memory:" and not path.startswith(("md:", "motherduck:")),
                connection=connection,
                owns=connection is None if owns_connection is None else owns_connection,
            )

    # ------------------------------------------------------------------------------ connection
    @property
    def path(self) -> str:
        """The database file (``:memory:`` when in memory)."""
        return self.config.resolved_path(self.project_dir) if self.config is not None else ":memory:"

    def describe(self) -> str:
        """Where this adapter points."""
        return f"duckdb {self.path} (schema {self.default_schema})"

    def _driver_errors(self) -> tuple[builtins.type[BaseException], ...]:
        return (duckdb.Error,)

    def _is_duplicate_key(self, exc: BaseException) -> bool:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        return isinstance(cause, duckdb.ConstraintException)

    def open(self) -> None:
        """Open the database file now."""
        self.connection()

    def connection(self) -> duckdb.DuckDBPyConnection:
        """The open DuckDB connection (opened on first use; valid until the next :meth:`release`)."""
        if self._closed:
            raise WarehouseError("duckdb: the connection is closed")
        return self._file.connection() if self._slot is None else self._file.slot(self._slot)

    def release(self) -> bool:
        """Close the file when no transaction or read is under way (on this adapter or a sibling), so another
        process may write it; the next use opens it again. Whether it was let go now. Other adapters of this
        process on the same file let go too where nothing is under way (they share DuckDB's instance of it)."""
        if self._closed:
            return False
        released = self._file.release()
        if self._file.releasable:
            release_path(self._file.path)
        if released:
            log.debug("duckdb: let go of %s until it is needed again", self._file.path)
        return released

    @contextlib.contextmanager
    def background(self) -> Iterator[None]:
        """Openings in the block do not wait for a file another process holds, and the file is let go again
        afterwards when it was let go before."""
        was_open = self._file.is_open
        try:
            with self._file.waiting_at_most(0.0):
                yield
        finally:
            if not was_open:
                self.release()

    def _connect(self, wait: float) -> duckdb.DuckDBPyConnection:
        path = self.path
        read_only = self.config.read_only if self.config is not None else False
        if path != ":memory:" and not path.startswith(("md:", "motherduck:")):
            parent = Path(path).parent
            if not parent.is_dir():
                raise ConfigError(
                    f"duckdb: the directory of {path} does not exist",
                    hint="create it, or fix path: in profiles.yml (relative paths start at the project directory)",
                )
        try:
            con = connect_waiting(path, read_only, wait)
        except duckdb.IOException as exc:
            text = str(exc)
            if is_lock_error(exc):
                waited = f" and was not let go within {wait:g}s (lock_wait_seconds)" if wait > 0 else ""
                raise WarehouseBusyError(
                    f"duckdb: {path} is locked{holder_of(text)}{waited}; DuckDB allows one writing process at a time",
                    hint="close the other process (a dbt run, a notebook, the DuckDB UI) and run again, or raise "
                    "lock_wait_seconds in profiles.yml; jobs in flight stay in the ledger and the next run finishes "
                    "them",
                ) from exc
            raise WarehouseError(f"duckdb: cannot open {path}: {text}") from exc
        except duckdb.Error as exc:
            raise WarehouseError(f"duckdb: cannot open {path}: {exc}") from exc
        try:
            self._configure(con)
        except duckdb.Error as exc:
            con.close()
            raise WarehouseError(f"duckdb: configuring {path} failed: {exc}") from exc
        except BaseException:
            con.close()
            raise
        return con

    def _configure(self, con: duckdb.DuckDBPyConnection) -> None:
        extensions = self.config.extensions if self.config is not None else []
        for ext in extensions:
            if not _SETTING_NAME.fullmatch(str(ext)):
                raise ConfigError(f"duckdb: extension name {ext!r} is not valid")
            con.execute(f"LOAD {ext}")
        settings: dict[str, Any] = dict(self.config.settings) if self.config is not None else {}
        # DuckDB may use 80% of the machine's memory by default; a sync streams and sorts whole tables, so
        # it gets a bounded share and spills to disk beyond it. A profile's `settings` overrides this.
        settings.setdefault("memory_limit", DEFAULT_MEMORY_LIMIT)
        pinned = {k.lower() for k in PINNED_SETTINGS}
        for key, value in settings.items():
            if not _SETTING_NAME.fullmatch(str(key)):
                raise ConfigError(f"duckdb: setting name {key!r} is not valid")
            if key.lower() in pinned:
                log.warning(
                    "duckdb: settings.%s is ignored: the sync always runs in UTC (row hashes depend on it)", key
                )
                continue
            # SET takes no parameters: the name is validated above, the value rendered as a literal.
            con.execute(f"SET {key} = {_literal(value)}")
        pin_settings(con)

    def sibling(self) -> Self:
        """Another cursor on the same database instance, closed with the sibling (the parent stays open)."""
        if self._closed:
            raise WarehouseError("duckdb: the connection is closed")
        return type(self)(self.config, project_dir=self.project_dir, quoting=self.quoting, file=self._file)

    def close(self) -> None:
        """Close this adapter: a sibling its cursor, the adapter that opened the file every connection on it."""
        if not self._closed:
            if self._slot is None:
                self._file.close()
            else:
                self._file.drop_slot(self._slot)
        super().close()

    def _open_session(self) -> Session:
        self._file.enter()
        try:
            con = self.connection()
            con.begin()
        except BaseException:
            self._file.leave()
            raise
        return _DuckDBSession(self, con)

    # ------------------------------------------------------------------------------ catalog
    def _table_exists_query(self, table: TableRef) -> tuple[str, list[Any]]:
        where, params = catalog.duckdb_filter(self.names, table)
        return f"SELECT 1 FROM information_schema.tables WHERE {where}", params

    def _columns_query(self, table: TableRef) -> tuple[str, list[Any]]:
        where, params = catalog.duckdb_filter(self.names, table)
        sql = f"SELECT column_name, data_type FROM information_schema.columns WHERE {where} ORDER BY ordinal_position"
        return sql, params

    def _key_is_unique(self, table: TableRef, key: Sequence[str]) -> bool:
        sql, params = catalog.duckdb_unique_keys_sql(self.names, table)
        with self.session() as s:
            rows = s.fetchall(sql, params)
        wanted = sorted(k.lower() for k in key)
        return any(sorted(str(c).lower() for c in cols) == wanted for (cols,) in rows)

    def source_column_types(self, sql: str, columns: Sequence[str]) -> dict[str, str]:
        """``DESCRIBE`` of the query: DuckDB's own names (``DECIMAL(18,0)``, ``UUID``, ``HUGEINT``...)."""
        cols = ", ".join(self.quote(c, what="key column") for c in columns)
        with self.session() as s:
            rows = s.fetchall(f"DESCRIBE SELECT {cols} FROM ({sql}) AS _k")
        return {str(r[0]): str(r[1]) for r in rows}

    # ------------------------------------------------------------------------------ reading
    def stream(self, sql: str, params: Sequence[Any] = (), *, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        """Yield the query's rows as Arrow batches of at most ``batch_rows`` (bounded memory).

        The file stays open (no release) until the stream ends or is closed."""
        with self._errors("reading"):
            self._file.enter()
        try:
            with self._errors("reading"):
                cur = self._file.cursor()
            reader: pa.RecordBatchReader | None = None
            try:
                with self._errors("reading"):
                    reader = cur.sql(sql, params=list(params) if params else None).to_arrow_reader(batch_rows)
                while True:
                    with self._errors("reading"):
                        try:
                            batch = reader.read_next_batch()
                        except StopIteration:
                            return
                    if batch.num_rows:
                        yield batch
            finally:
                reader = None  # an unfinished result keeps the database (and the file's lock) alive
                cur.close()
        finally:
            self._file.leave()

    # ------------------------------------------------------------------------------ writing
    def _stage(self, session: Session, table: TableRef, part: PreparedPart) -> str:
        assert isinstance(session, _DuckDBSession)
        name = self.stage_name()
        session.con.register(name, part.data)
        return self.quote(name, kind="identifier")

    def _drop_stage(self, session: Session, stage: str) -> None:
        assert isinstance(session, _DuckDBSession)
        session.con.unregister(stage.strip('"'))

    def _apply_stage(self, session: Session, table: TableRef, stage: str, part: PreparedPart) -> int:
        """Write the matched rows (replaced where they are sparse, updated in place where dense), then INSERT
        the keys not matched; returns rows inserted.

        DuckDB keeps an UPDATE's before-images per column for every vector of 2,048 rows it touches: an
        update of rows spread over a table (a refresh of 1% of a 1M-row target: 10,000 rows, some in every
        vector) took 2.7 s and 300 MB until its commit. Deleting those rows and inserting their new versions
        took 0.3 s and 15 MB. Where the matched rows fill most of the vectors they touch (a refresh of every
        row, merged in key order), the update in rowid order stays the cheaper. One join of the keys alone
        tells which; the count is one per matched target row either way, as an UPDATE's.
        """
        if not part.set_columns or not _REPLACES_ROWS:
            return super()._apply_stage(session, table, stage, part)
        found = session.fetchone(upsert.matched_vectors_sql(self.names, table, stage, part.key, VECTOR_ROWS))
        matched, vectors = (int(found[0] or 0), int(found[1] or 0)) if found else (0, 0)
        if matched == 0:
            updated = 0
        elif matched < DENSE_SHARE * VECTOR_ROWS * vectors:
            updated = self._replace_matched(session, table, stage, part)
        else:
            sql = upsert.update_from_sql(self.names, table, stage, part.key, part.set_columns, part.guards)
            updated = session.execute_count(sql)
        if updated == part.data.num_rows and self.key_is_unique(table, part.key):
            return 0  # every staged key matched exactly one row: nothing to insert
        inserted = session.execute_count(
            upsert.insert_missing_sql(self.names, table, stage, part.key, part.set_columns, part.guards)
        )
        if inserted < 0:
            raise WarehouseError("duckdb: the driver did not report the inserted row count")
        return inserted

    def _replace_matched(self, session: Session, table: TableRef, stage: str, part: PreparedPart) -> int:
        """Delete the target rows the stage matches and insert their new versions (guards decided against the
        stored values, every column the sync does not own carried as stored); returns their count."""
        sql, params = self._columns_query(table)
        columns = [str(r[0]) for r in session.fetchall(sql, params)]
        target = self.names.table(table)
        rows = self.quote(self.stage_name(), kind="identifier")
        new = upsert.replaced_rows_sql(self.names, table, stage, part.key, part.set_columns, columns, part.guards)
        session.execute(f"CREATE TEMP TABLE {rows} AS {new}")
        try:
            session.execute(f"DELETE FROM {target} WHERE rowid IN (SELECT {upsert.ROWID} FROM {rows})")
            cols = ", ".join(upsert.stored_name(c) for c in columns)
            replaced = session.execute_count(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {rows}")
        except BaseException:
            with contextlib.suppress(Exception):  # the error raised is the statement's, not the drop's
                session.execute(f"DROP TABLE IF EXISTS {rows}")
            raise
        session.execute(f"DROP TABLE {rows}")
        return replaced

    def _insert_new(self, session: Session, table: TableRef, data: pa.Table) -> int:
        """One ``INSERT ... SELECT`` from the registered Arrow table."""
        part = PreparedPart(data, (), tuple(data.column_names))
        stage = self._stage(session, table, part)
        try:
            return session.execute_count(upsert.insert_select_sql(self.names, table, stage, data.column_names))
        finally:
            self._drop_stage(session, stage)
