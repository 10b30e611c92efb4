"""Databricks through the SQL Statement Execution API (``databricks-sdk``, the ``databricks`` extra).

Connection: dbt-databricks's keys (see :class:`~sixtyfour_sync.config.profiles.DatabricksTarget`): a
personal access ``token``, or OAuth machine-to-machine ``client_id``/``client_secret``; the SQL
warehouse comes from ``http_path``. Every statement runs on that warehouse with the profile's
``catalog`` and ``schema`` as defaults, and ``?`` placeholders are filled with SQL literals
(:mod:`sixtyfour_sync.warehouse.databricks_sql`).

Names: Unity Catalog stores catalog, schema and table names in lower case and compares every name
case-insensitively; names are quoted with backticks and matched without regard to case.

Transactions: the Statement Execution API runs each statement as its own Delta transaction; it has
no session in which a ``BEGIN``/``COMMIT`` could span several calls. A :meth:`Adapter.session` here
groups statements but each one commits when it succeeds (a rollback cannot undo them, and says so
in the log). The upsert therefore commits each part's ``MERGE`` on its own and runs ``before_commit``
after the last one: a crash between the two leaves the rows merged and the ledger not yet updated,
and merging the same result file again writes the same values (the upsert is idempotent).

Upsert: each part is staged in a Delta table ``_sixtyfour_stage_<hex>`` by multi-row ``INSERT ...
VALUES`` statements of at most 4 MiB, then one ``MERGE INTO`` (or ``INSERT ... SELECT`` for an
insert-only part) writes only the owned columns; the staging table is dropped at the end.

Reading: ``EXTERNAL_LINKS`` + ``ARROW_STREAM``: the result is fetched chunk by chunk from the links
(presigned URLs, fetched without the workspace token and never logged), each cast to the manifest's
column types so every batch has one schema.
"""

from __future__ import annotations

import builtins
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
import pyarrow as pa

from sixtyfour_sync.errors import ConfigError, MissingDriverError, WarehouseError
from sixtyfour_sync.warehouse import cloud_sql
from sixtyfour_sync.warehouse import databricks_sql as dsql
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.databricks_client import StatementFailed, StatementRunner
from sixtyfour_sync.warehouse.dialect import DATABRICKS, Dialect
from sixtyfour_sync.warehouse.parts import PreparedPart, prepare_part
from sixtyfour_sync.warehouse.session import Session
from sixtyfour_sync.warehouse.sql.identifiers import Names
from sixtyfour_sync.warehouse.sql.placeholders import placeholder_positions
from sixtyfour_sync.warehouse.types import (
    AlsoWrite,
    Capabilities,
    Column,
    LogicalType,
    Quoting,
    TableRef,
    UpsertPart,
    UpsertResult,
)

if TYPE_CHECKING:
    from sixtyfour_sync.config.profiles import DatabricksTarget

__all__ = ["DatabricksAdapter", "StatementFailed", "render_params"]

log = logging.getLogger("sixtyfour_sync.warehouse.databricks")

_INSTALL_HINT = "pip install 'sixtyfour-sync[databricks]'"
_TERMINAL = {"SUCCEEDED", "FAILED", "CANCELED", "CLOSED"}


@dataclass(frozen=True)
class DatabricksNames(Names):
    """Unity Catalog names: a table the profile does not place elsewhere is in the profile's catalog."""

    catalog: str | None = None

    def table(self, table: TableRef) -> str:
        """```catalog`.`schema`.`table``` (the profile's catalog and schema when the table names none)."""
        return super().table(replace(table, database=table.database or self.catalog))


def render_params(sql: str, params: Sequence[Any]) -> str:
    """``sql`` with each ``?`` placeholder (outside literals and comments) replaced by its value's literal."""
    positions = list(placeholder_positions(sql, "databricks"))
    return cloud_sql.substitute_qmarks(sql, positions, [dsql.literal(v) for v in params])


# --------------------------------------------------------------------------------------------------
# Session


class _DatabricksSession(Session):
    """Statements grouped for the caller; each commits on its own (see the module docstring)."""

    adapter: DatabricksAdapter

    def __init__(self, adapter: DatabricksAdapter) -> None:
        super().__init__(adapter)
        self.writes = 0

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        names, rows = self.adapter._statement(render_params(sql, [self.adapter.adapt_value(v) for v in params]))
        self.writes += 1
        return dsql.dml_count(names, rows[0] if rows else None)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        return self.adapter._statement(render_params(sql, [self.adapter.adapt_value(v) for v in params]))

    def insert(self, table: TableRef, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows with multi-row ``VALUES`` (one statement per 4 MiB)."""
        if not rows:
            return
        a = self.adapter
        cols = list(rows[0].keys())
        if any(list(r.keys()) != cols for r in rows):
            raise ValueError(f"insert into {table}: every row must have the same columns {cols}")
        names = ", ".join(a.quote(c, what=f"column of {table}") for c in cols)
        tuples = ["(" + ", ".join(dsql.literal(a.adapt_value(r[c])) for c in cols) + ")" for r in rows]
        for start in range(0, len(tuples), 1000):
            sql = f"INSERT INTO {a.table_sql(table)} ({names}) VALUES " + ", ".join(tuples[start : start + 1000])
            with a._errors("running SQL", sql):
                self._execute(sql)

    def _commit(self) -> None:
        """Nothing to do: every statement has committed already."""

    def _rollback(self) -> None:
        if self.writes:
            log.warning(
                "databricks: %d statement(s) of the failed session had already committed (Databricks' "
                "Statement Execution API has no multi-statement transactions)",
                self.writes,
            )

    def upsert(self, table: TableRef, key: Sequence[str], parts: Sequence[UpsertPart]) -> UpsertResult:
        """:meth:`DatabricksAdapter.upsert` (each MERGE commits on its own)."""
        return self.adapter._upsert_parts(table, key, parts)


# --------------------------------------------------------------------------------------------------
# Adapter


class DatabricksAdapter(Adapter["DatabricksTarget"]):
    """A Unity Catalog schema on a Databricks SQL warehouse (see the module docstring)."""

    type: ClassVar[str] = "databricks"
    capabilities: ClassVar[Capabilities] = Capabilities(
        upsert="merge",
        staging="insert_values",
        json_type=None,
        identifier_case="lower",
        max_identifier_length=255,
        transactional_ddl=False,
        atomic_upsert=False,
    )
    dialect: Dialect = DATABRICKS

    def __init__(
        self,
        config: DatabricksTarget | None = None,
        *,
        project_dir: Path | None = None,
        quoting: Quoting | None = None,
        client: Any = None,
    ) -> None:
        super().__init__(config, project_dir=project_dir, quoting=quoting)
        self._client: Any = client
        self._runner: StatementRunner | None = None
        self._errors_cache: tuple[builtins.type[BaseException], ...] | None = None

    # ------------------------------------------------------------------------------ connection
    @property
    def cfg(self) -> DatabricksTarget:
        """The profile output (an adapter without one cannot connect)."""
        if self.config is None:
            raise ConfigError("databricks: no target configuration to connect with")
        return self.config

    def client(self) -> Any:
        """The ``databricks.sdk.WorkspaceClient`` (created on first use)."""
        if self._closed:
            raise WarehouseError("databricks: the connection is closed")
        if self._client is None:
            try:
                from databricks.sdk import WorkspaceClient
                from databricks.sdk.core import Config
            except ImportError as exc:
                raise MissingDriverError(
                    "the Databricks SDK (databricks-sdk) is not installed", hint=_INSTALL_HINT
                ) from exc
            cfg = self.cfg
            kw: dict[str, Any] = {"host": cfg.url, "http_timeout_seconds": cfg.connect_timeout}
            if cfg.token is not None:
                kw.update(token=cfg.token.get(), auth_type="pat")
            else:
                secret = cfg.client_secret.get() if cfg.client_secret is not None else None
                kw.update(client_id=cfg.client_id, client_secret=secret, auth_type="oauth-m2m")
            with self._errors("connecting"):
                self._client = WorkspaceClient(config=Config(**kw))
        return self._client

    def open(self) -> None:
        """Check now that the token works and the warehouse answers (``SELECT 1``)."""
        with self._errors("connecting"):
            self._statement("SELECT 1")

    def close(self) -> None:
        """Release the HTTP client used for result downloads."""
        if self._runner is not None:
            self._runner.close()
        self._runner = None
        self._client = None
        super().close()

    def describe(self) -> str:
        """Workspace, warehouse, catalog and schema (never the token)."""
        return self.cfg.describe() if self.config is not None else "databricks (no target)"

    def _driver_errors(self) -> tuple[builtins.type[BaseException], ...]:
        if self._errors_cache is None:
            try:
                from databricks.sdk.errors.base import DatabricksError
            except ImportError:
                return (StatementFailed, httpx.HTTPError)
            self._errors_cache = (StatementFailed, DatabricksError, httpx.HTTPError, ValueError)
        return self._errors_cache

    def _open_session(self) -> Session:
        self.runner()
        return _DatabricksSession(self)

    def runner(self) -> StatementRunner:
        """Where statements run (created with the client on first use)."""
        if self._runner is None:
            self._runner = StatementRunner(self.client(), self.cfg)
        return self._runner

    def _statement(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one statement; return its (small) result as column names and rows."""
        with self._errors("running SQL", sql):
            return self.runner().rows(sql)

    # ------------------------------------------------------------------------------ statements
    # ------------------------------------------------------------------------------ names and types
    @property
    def names(self) -> Names:
        """Unity Catalog's naming rules, tables in the profile's catalog."""
        n = self._names
        if n is None or n.dialect is not self.dialect or n.default_schema != self.default_schema:
            catalog = self.config.catalog if self.config is not None else None
            n = self._names = DatabricksNames(self.dialect, self.quoting, self.default_schema, catalog=catalog)
        return n

    # ------------------------------------------------------------------------------ DDL and metadata
    def create_table_sql(self, table: TableRef, key: Sequence[Column], columns: Sequence[Column]) -> str:
        """``CREATE TABLE IF NOT EXISTS ... USING DELTA`` with the key NOT NULL."""
        defs = [self.column_def_sql(k, not_null=True) for k in key] + [self.column_def_sql(c) for c in columns]
        return f"CREATE TABLE IF NOT EXISTS {self.table_sql(table)} ({', '.join(defs)}) USING DELTA"

    def create_schema_sql(self, schema: str) -> str:
        """``CREATE SCHEMA IF NOT EXISTS catalog.schema``."""
        name = self.quote(schema, what="schema", kind="schema")
        if self.cfg.catalog:
            name = f"{self.quote(self.cfg.catalog, what='catalog', kind='database')}.{name}"
        return f"CREATE SCHEMA IF NOT EXISTS {name}"

    def _information_schema(self, table: TableRef) -> str:
        # Unqualified, it is the information schema of the statement's catalog (the profile's catalog).
        if table.database:
            return f"{self.quote(table.database, what=f'catalog of table {table}', kind='database')}.information_schema"
        return "information_schema"

    def _catalog_rows(
        self, relation: str, where: Mapping[str, str], columns: str, order: str = ""
    ) -> list[tuple[Any, ...]]:
        terms = " AND ".join(f"LOWER({k}) = LOWER(?)" for k in where)
        with self.session() as s:
            return s.fetchall(f"SELECT {columns} FROM {relation} WHERE {terms}{order}", list(where.values()))

    def schema_exists(self, schema: str) -> bool:
        """Whether the schema exists in the profile's catalog."""
        self.validate_identifier(schema, what="schema")
        return bool(self._catalog_rows("information_schema.schemata", {"schema_name": schema}, "schema_name"))

    def _where_table(self, table: TableRef) -> dict[str, str]:
        self.validate_identifier(table.name, what="table name")
        schema = table.schema if table.schema is not None else self.default_schema
        return {"table_schema": str(schema), "table_name": table.name}

    def table_exists(self, table: TableRef) -> bool:
        """Whether the table (or view) exists."""
        relation = f"{self._information_schema(table)}.tables"
        return bool(self._catalog_rows(relation, self._where_table(table), "table_name"))

    def get_columns(self, table: TableRef) -> dict[str, LogicalType | str]:
        """The table's columns in order, names as stored -> logical type (or the catalog's type name)."""
        relation = f"{self._information_schema(table)}.columns"
        order = " ORDER BY ordinal_position"
        where = self._where_table(table)
        rows = self._catalog_rows(relation, where, "column_name, data_type", order)
        # The information schema can trail a CREATE TABLE that just committed: a table that exists has
        # columns, so an empty answer for one is asked again briefly before it is believed.
        delay = 0.1
        while not rows and delay < 3 and self.table_exists(table):
            time.sleep(delay)
            delay *= 2
            rows = self._catalog_rows(relation, where, "column_name, data_type", order)
        return {str(name): self.logical_type_of(str(raw)) for name, raw in rows}

    # ------------------------------------------------------------------------------ reading
    def stream(self, sql: str, params: Sequence[Any] = (), *, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        """Run a SELECT and yield its result chunks (EXTERNAL_LINKS, ARROW_STREAM) re-sliced to ``batch_rows``."""
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        rendered = render_params(sql, [self.adapt_value(v) for v in params])
        with self._errors("reading rows", rendered):
            runner = self.runner()
            response = runner.execute(rendered, links=True)
            for batch in runner.batches(response):
                for offset in range(0, batch.num_rows, batch_rows):
                    yield batch.slice(offset, batch_rows)

    # ------------------------------------------------------------------------------ upsert
    def _load_stage(self, table: TableRef, data: pa.Table, created: list[str]) -> str:
        """A Delta staging table holding ``data``; its name is recorded before it exists."""
        name = f"_sixtyfour_stage_{uuid.uuid4().hex[:12]}"
        stage_sql = self.table_sql(TableRef(name, schema=table.schema, database=table.database))
        created.append(stage_sql)
        volume = self.cfg.staging_volume
        if volume:
            path = f"{volume.rstrip('/')}/{name}.parquet"
            self._upload_parquet(data, path)
            try:
                with self.session() as s:
                    s.execute(
                        f"CREATE TABLE {stage_sql} AS SELECT * FROM "
                        f"read_files({dsql.string_literal(path)}, format => 'parquet')"
                    )
            finally:
                self._delete_file(path)
            return stage_sql
        cols = ", ".join(f"{self.quote(f.name)} {dsql.stage_type(f.type)}" for f in data.schema)
        with self.session() as s:
            s.execute(f"CREATE TABLE {stage_sql} ({cols}) USING DELTA")
            names = ", ".join(self.quote(c) for c in data.column_names)
            for statement in dsql.values_statements(f"INSERT INTO {stage_sql} ({names})", data):
                s.execute(statement)
        return stage_sql

    def _upload_parquet(self, data: pa.Table, path: str) -> None:
        """Write ``data`` as Parquet (UTC microsecond timestamps) to a volume path with the Files API."""
        import tempfile

        import pyarrow.parquet as pq

        with tempfile.TemporaryDirectory(prefix="sixtyfour-dbx-") as tmp:
            local = Path(tmp) / "stage.parquet"
            pq.write_table(cloud_sql.parquet_ready(data), local)
            with self._errors(f"uploading staged rows to {path}"), local.open("rb") as fh:
                self.client().api_client.do(
                    "PUT",
                    f"/api/2.0/fs/files{path}",
                    query={"overwrite": "true"},
                    headers={"Content-Type": "application/octet-stream"},
                    data=fh,
                )

    def _delete_file(self, path: str) -> None:
        try:
            with self._errors(f"deleting {path}"):
                self.client().api_client.do("DELETE", f"/api/2.0/fs/files{path}")
        except WarehouseError:  # a leftover staging file must not hide the upsert's outcome
            log.warning("could not delete staging file %s; it is safe to delete by hand", path)

    def _upsert_parts(self, table: TableRef, key: Sequence[str], parts: Sequence[UpsertPart]) -> UpsertResult:
        prepared = [prepare_part(self.names, table, key, p) for p in parts]
        result = UpsertResult()
        stages: list[str] = []
        try:
            for p in prepared:
                result += UpsertResult(duplicates_dropped=p.duplicates_dropped, adjusted=p.adjusted)
                if p.data.num_rows:
                    result += self._apply_part(table, key, p, self._load_stage(table, p.data, stages))
        finally:
            self._drop_stages(stages)
        return result

    def _apply_part(self, table: TableRef, key: Sequence[str], part: PreparedPart, stage: str) -> UpsertResult:
        target = self.table_sql(table)
        args: dict[str, Any] = {
            "target": target,
            "source": stage,
            "key": key,
            "set_columns": part.set_columns,
            "guards": part.guards,
            "quote": self.quote,
        }
        n = part.data.num_rows
        with self.session() as s:
            if part.insert_only:
                return UpsertResult(inserted=s.execute_count(cloud_sql.insert_select_sql(**args)))
            on = " AND ".join(f"t.{self.quote(k)} = s.{self.quote(k)}" for k in key)
            # MERGE reports num_inserted_rows on Databricks; counting the matches first works everywhere.
            matched = int(
                s.fetchall(f"SELECT COUNT(*) FROM {stage} AS s WHERE EXISTS (SELECT 1 FROM {target} AS t WHERE {on})")[
                    0
                ][0]
            )
            s.execute(cloud_sql.merge_sql(**args))
        return UpsertResult(inserted=n - matched, updated=matched)

    def upsert(
        self,
        table: TableRef,
        key: Sequence[str],
        parts: Sequence[UpsertPart],
        *,
        before_commit: Callable[[Session], None] | None = None,
        also: Sequence[AlsoWrite] = (),
    ) -> UpsertResult:
        """MERGE every part and write ``also`` (each commits on its own), then run ``before_commit`` (see the module
        docstring)."""
        result = self._upsert_parts(table, key, parts)
        for w in also:
            self._upsert_parts(w.table, w.key, w.parts)
        if before_commit is not None:
            with self.session() as s:
                before_commit(s)
        return result

    def _drop_stages(self, stages: Sequence[str]) -> None:
        for stage in stages:
            try:
                self._statement(f"DROP TABLE IF EXISTS {stage}")
            except WarehouseError:  # a leftover staging table must not hide the upsert's outcome
                log.warning("could not drop staging table %s; it is safe to drop by hand", stage)

    def _upsert_in_session(
        self, session: Session, table: TableRef, key: Sequence[str], parts: Sequence[UpsertPart]
    ) -> UpsertResult:
        return self._upsert_parts(table, key, parts)
