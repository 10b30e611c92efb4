"""BigQuery through ``google-cloud-bigquery`` (the ``bigquery`` extra).

Connection: dbt-bigquery's keys (see :class:`~sixtyfour_sync.config.profiles.BigQueryTarget`). Every
statement is a query job (standard SQL, ``?`` parameters bound as typed query parameters, ``None`` as a
``NULL`` literal), with the profile's ``priority``, ``maximum_bytes_billed`` and
``job_execution_timeout_seconds``. Table and dataset metadata come from the REST API, not from
``INFORMATION_SCHEMA`` queries (no job, nothing billed).

Names: a project, dataset and table are quoted with backticks exactly as written (BigQuery compares
them case-sensitively); columns are case-insensitive, so an existing column is found whatever its case.

Transactions: an :meth:`Adapter.session` is a BigQuery multi-statement transaction spanning several
query jobs in one BigQuery *session*. The transaction begins (``BEGIN TRANSACTION`` in the adapter's
session, created by that first job) right before the first DML statement and ends with ``COMMIT`` or
``ROLLBACK``; a session that only reads, or only runs DDL, needs none. DDL runs outside the
transaction (BigQuery refuses DDL on permanent tables inside one), so ``transactional_ddl`` is False.

Upsert, in three steps, like Snowflake's:

1. Outside the transaction each part is written to a Parquet file and loaded by a load job into a
   staging table ``_sixtyfour_stage_<hex>`` (created with a one-day expiration, so a crash leaves
   nothing behind for long; dropped when the upsert ends).
2. In one transaction: per part one ``MERGE`` with explicit columns (``PARSE_JSON`` for JSON columns,
   per-column guards as ``CASE``), or an ``INSERT ... SELECT`` for an insert-only part; then
   ``before_commit`` (the ledger); then ``COMMIT``. Any failure rolls all of it back.
3. The staging tables are deleted.

Reading: a query job's result pages, each converted to Arrow by the client (REST ``getQueryResults``),
or through the Storage Read API with ``storage_api: true``.
"""

from __future__ import annotations

import builtins
import datetime as dt
import logging
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from sixtyfour_sync.errors import ConfigError, MissingDriverError, WarehouseError
from sixtyfour_sync.warehouse import cloud_sql
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.bigquery_auth import credentials_for
from sixtyfour_sync.warehouse.bigquery_session import BigQuerySession, load_parquet
from sixtyfour_sync.warehouse.bigquery_sql import BigQueryNames, bind_params, insert_if_absent, merge_counts
from sixtyfour_sync.warehouse.dialect import BIGQUERY, Dialect
from sixtyfour_sync.warehouse.parts import PreparedPart, prepare_part
from sixtyfour_sync.warehouse.session import Session
from sixtyfour_sync.warehouse.sql.identifiers import Names
from sixtyfour_sync.warehouse.types import (
    AlsoWrite,
    Capabilities,
    Column,
    EnsureResult,
    LogicalType,
    Quoting,
    TableRef,
    UpsertPart,
    UpsertResult,
)

if TYPE_CHECKING:
    from sixtyfour_sync.config.profiles import BigQueryTarget

__all__ = ["BigQueryAdapter"]

log = logging.getLogger("sixtyfour_sync.warehouse.bigquery")

_INSTALL_HINT = "pip install 'sixtyfour-sync[bigquery]'"
_DML_RE = re.compile(r"^\s*(?:\(\s*)*(INSERT|UPDATE|DELETE|MERGE)\b", re.IGNORECASE)
_TRUNCATE_RE = re.compile(r"^\s*TRUNCATE\b", re.IGNORECASE)
_STAGE_TTL = dt.timedelta(days=1)
# --------------------------------------------------------------------------------------------------
# Adapter


class BigQueryAdapter(Adapter["BigQueryTarget"]):
    """A BigQuery dataset (see the module docstring for names, transactions and the upsert)."""

    type: ClassVar[str] = "bigquery"
    capabilities: ClassVar[Capabilities] = Capabilities(
        upsert="merge",
        staging="parquet_load_job",
        json_type="JSON",
        identifier_case="preserve",
        max_identifier_length=300,
        transactional_ddl=False,
    )
    dialect: Dialect = BIGQUERY

    def __init__(
        self,
        config: BigQueryTarget | None = None,
        *,
        project_dir: Path | None = None,
        quoting: Quoting | None = None,
        client: Any = None,
    ) -> None:
        super().__init__(config, project_dir=project_dir, quoting=quoting)
        self._client: Any = client
        self._owns_client = client is None
        self._bq_session: str | None = None
        self._last_job: Any = None
        #: Whether this API reports a MERGE's inserted/updated counts (``dmlStats``); None until seen.
        self._merge_reports_stats = False
        self._errors_cache: tuple[builtins.type[BaseException], ...] | None = None

    # ------------------------------------------------------------------------------ connection
    @property
    def cfg(self) -> BigQueryTarget:
        """The profile output (an adapter without one cannot connect)."""
        if self.config is None:
            raise ConfigError("bigquery: no target configuration to connect with")
        return self.config

    @property
    def project(self) -> str:
        """The project holding the target dataset."""
        return self.cfg.project

    def client(self) -> Any:
        """The ``google.cloud.bigquery.Client`` (created on first use)."""
        if self._closed:
            raise WarehouseError("bigquery: the connection is closed")
        if self._client is None:
            try:
                from google.api_core.client_options import ClientOptions
                from google.cloud import bigquery
            except ImportError as exc:
                raise MissingDriverError(
                    "the BigQuery client (google-cloud-bigquery) is not installed", hint=_INSTALL_HINT
                ) from exc
            cfg = self.cfg
            options = ClientOptions(api_endpoint=cfg.api_endpoint) if cfg.api_endpoint else None
            creds = credentials_for(cfg, project_dir=self.project_dir)
            with self._errors("connecting"):
                self._client = bigquery.Client(
                    project=cfg.execution_project or cfg.project,
                    credentials=creds,
                    location=cfg.location,
                    client_options=options,
                )
        return self._client

    def open(self) -> None:
        """Check now that the credentials work and jobs can run (``SELECT 1``, which bills nothing)."""
        with self._errors("connecting"):
            self._run("SELECT 1", (), session=False)

    def close(self) -> None:
        """End the BigQuery session (best effort) and close the client this adapter created."""
        if self._client is not None and not self._closed:
            if self._bq_session is not None:
                try:
                    self._run("CALL BQ.ABORT_SESSION()", (), session=True)
                except Exception:  # an idle session also ends by itself after 24 hours
                    log.debug("ending the BigQuery session failed", exc_info=True)
            if self._owns_client:
                try:
                    self._client.close()
                except Exception:  # closing must not mask the error that led here
                    log.debug("closing the BigQuery client failed", exc_info=True)
        self._client = None
        self._bq_session = None
        super().close()

    def describe(self) -> str:
        """Project, dataset and endpoint (never a secret)."""
        return self.cfg.describe() if self.config is not None else "bigquery (no target)"

    def _driver_errors(self) -> tuple[builtins.type[BaseException], ...]:
        if self._errors_cache is None:
            try:
                from google.api_core import exceptions as gexc
                from google.auth import exceptions as aexc
            except ImportError:
                return ()
            self._errors_cache = (gexc.GoogleAPIError, aexc.GoogleAuthError, TimeoutError)
        return self._errors_cache

    def _job_config(self, params: Sequence[tuple[str, Any]], *, session: bool) -> Any:
        from google.cloud import bigquery

        cfg = self.cfg
        job = bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter(None, t, v) for t, v in params],
            priority=bigquery.QueryPriority.BATCH if cfg.priority == "batch" else bigquery.QueryPriority.INTERACTIVE,
            maximum_bytes_billed=cfg.maximum_bytes_billed,
            use_legacy_sql=False,
        )
        if cfg.job_execution_timeout_seconds:
            job.job_timeout_ms = cfg.job_execution_timeout_seconds * 1000
        if session:
            if self._bq_session is None:
                job.create_session = True
            else:
                job.connection_properties = [bigquery.ConnectionProperty("session_id", self._bq_session)]
        return job

    def _run(self, sql: str, params: Sequence[Any], *, session: bool) -> Any:
        """Run one statement as a query job and wait for it; ``session`` runs it in the adapter's session."""
        bound_sql, bound = bind_params(sql, [self.adapt_value(v) for v in params])
        cfg = self.cfg
        job = self.client().query(
            bound_sql,
            job_config=self._job_config(bound, session=session),
            project=cfg.execution_project or cfg.project,
            location=cfg.location,
            timeout=cfg.job_creation_timeout_seconds,
        )
        job.result(timeout=cfg.job_execution_timeout_seconds)
        self._last_job = job
        if session and self._bq_session is None and job.session_info is not None:
            self._bq_session = job.session_info.session_id
        return job

    def _open_session(self) -> Session:
        self.client()
        return BigQuerySession(self)

    # ------------------------------------------------------------------------------ names
    @property
    def names(self) -> Names:
        """BigQuery's naming rules, tables qualified with the profile's project."""
        n = self._names
        if n is None or n.dialect is not self.dialect or n.default_schema != self.default_schema:
            project = self.config.project if self.config is not None else ""
            n = self._names = BigQueryNames(self.dialect, self.quoting, self.default_schema, project=project)
        return n

    def _ref(self, table: TableRef) -> str:
        """``project.dataset.table`` for the API (validated)."""
        self.table_sql(table)
        dataset = table.schema if table.schema is not None else self.default_schema
        return f"{table.database or self.project}.{dataset}.{table.name}"

    # ------------------------------------------------------------------------------ hashing
    def row_hash_sql(self, columns: Sequence[str], alias: str | None = None) -> str:
        """The shared NULL- and separator-safe hash, with ``TO_JSON_STRING`` as each value's text.

        ``CAST(x AS STRING)`` fails on JSON values and writes timestamps in the session's (or the
        project's default) time zone; ``TO_JSON_STRING`` takes every type and writes timestamps in UTC.
        """
        if not columns:
            raise ValueError("row_hash_sql needs at least one column")
        prefix = f"{self.quote(alias, what='table alias')}." if alias else ""
        parts = []
        for c in columns:
            col = prefix + self.quote(c, what="hashed column")
            txt = f"TO_JSON_STRING({col})"
            parts.append(
                f"CASE WHEN {col} IS NULL THEN 'N' ELSE ('V' || CAST(LENGTH({txt}) AS STRING) || ':' || {txt}) END"
            )
        return self.dialect.md5.format("(" + " || ".join(parts) + ")")

    # ------------------------------------------------------------------------------ DDL and metadata
    def create_table_sql(self, table: TableRef, key: Sequence[Column], columns: Sequence[Column]) -> str:
        """``CREATE TABLE IF NOT EXISTS`` with the key NOT NULL (BigQuery enforces no primary key)."""
        defs = [self.column_def_sql(k, not_null=True) for k in key] + [self.column_def_sql(c) for c in columns]
        return f"CREATE TABLE IF NOT EXISTS {self.table_sql(table)} ({', '.join(defs)})"

    def ensure_table(self, table: TableRef, key: Sequence[Column], columns: Sequence[Column]) -> EnsureResult:
        """Create or extend the table (see :meth:`Adapter.ensure_table`), then check the API sees new columns.

        Some BigQuery-compatible servers (bqemulator) apply ``ALTER TABLE ... ADD COLUMN`` without
        updating the table's metadata; a column missing there is added to the schema with
        ``tables.patch``. On BigQuery itself the metadata already has it and nothing more is sent.
        """
        result = super().ensure_table(table, key, columns)
        if not result.added_columns:
            return result
        found = self._get_table(table)
        if found is None:  # pragma: no cover - it was just created or altered
            return result
        present = {f.name.lower() for f in found.schema}
        lagging = [c for c in columns if c.name in result.added_columns and c.name.lower() not in present]
        if not lagging:
            return result
        from google.cloud import bigquery

        found.schema = [*found.schema, *(bigquery.SchemaField(c.name, self.sql_type(c.type)) for c in lagging)]
        with self._errors(f"adding columns to {table}"):
            self.client().update_table(found, ["schema"])
        return replace(result, columns=self.get_columns(table))

    def schema_exists(self, schema: str) -> bool:
        """Whether the dataset exists (``datasets.get``)."""
        from google.api_core.exceptions import NotFound

        self.validate_identifier(schema, what="dataset")
        with self._errors(f"looking up dataset {schema}"):
            try:
                self.client().get_dataset(f"{self.project}.{schema}")
            except NotFound:
                return False
        return True

    def ensure_schema(self, schema: str | None = None) -> None:
        """Create the dataset (in the profile's ``location``) when it does not exist."""
        from google.cloud import bigquery

        name = schema or self.default_schema
        if not name:
            return
        self.validate_identifier(name, what="dataset")
        dataset = bigquery.Dataset(f"{self.project}.{name}")
        if self.cfg.location:
            dataset.location = self.cfg.location
        with self._errors(f"creating dataset {name}"):
            self.client().create_dataset(dataset, exists_ok=True)

    def _get_table(self, table: TableRef) -> Any:
        from google.api_core.exceptions import NotFound

        ref = self._ref(table)
        with self._errors(f"looking up table {table}"):
            try:
                return self.client().get_table(ref)
            except NotFound:
                return None

    def table_exists(self, table: TableRef) -> bool:
        """Whether the table (or view) exists (``tables.get``, exact case)."""
        return self._get_table(table) is not None

    def get_columns(self, table: TableRef) -> dict[str, LogicalType | str]:
        """The table's columns in order, names as stored -> logical type (or the API's type name)."""
        found = self._get_table(table)
        if found is None:
            return {}
        return {f.name: self.logical_type_of(str(f.field_type)) for f in found.schema}

    def insert_if_absent_sql(self, table: TableRef, columns: Sequence[str], key_columns: Sequence[str]) -> str:
        """One INSERT of one row (``?`` per column, in order) that does nothing when the key exists.

        The values are cast to the stored column types (read from the table's metadata).
        """
        stored = self.get_columns(table)
        types = []
        for c in columns:
            self.validate_identifier(c, what=f"column of {table}")
            raw = stored.get(self.find_column(stored, c) or "", LogicalType.TEXT)
            types.append(self.sql_type(raw) if isinstance(raw, LogicalType) else raw)
        return insert_if_absent(self.table_sql(table), columns, key_columns, types, self.quote)

    # ------------------------------------------------------------------------------ reading
    def _storage_client(self) -> Any:
        if not self.cfg.storage_api:
            return None
        try:
            from google.cloud import bigquery_storage
        except ImportError as exc:
            raise MissingDriverError(
                "storage_api: true needs google-cloud-bigquery-storage",
                hint="pip install google-cloud-bigquery-storage, or set storage_api: false",
            ) from exc
        creds = credentials_for(self.cfg, project_dir=self.project_dir)
        return bigquery_storage.BigQueryReadClient(credentials=creds)  # type: ignore[no-untyped-call]

    def stream(self, sql: str, params: Sequence[Any] = (), *, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        """Run a SELECT as its own job (outside any transaction) and yield its result pages as Arrow."""
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        with self._errors("reading rows", sql):
            job = self._run(sql, params, session=False)
            for batch in self._pages(job, batch_rows):
                for offset in range(0, batch.num_rows, batch_rows):
                    yield batch.slice(offset, batch_rows)

    def _pages(self, job: Any, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """The finished job's result as Arrow: over the Storage Read API when enabled and allowed, else REST."""
        from google.api_core.exceptions import Forbidden, PermissionDenied

        timeout = self.cfg.job_execution_timeout_seconds
        storage = self._storage_client()
        if storage is None:
            yield from job.result(page_size=batch_rows, timeout=timeout).to_arrow_iterable(bqstorage_client=None)
            return
        try:
            batches = iter(
                job.result(page_size=batch_rows, timeout=timeout).to_arrow_iterable(bqstorage_client=storage)
            )
            first = next(batches, None)
        except (PermissionDenied, Forbidden) as exc:
            log.warning("bigquery: the Storage Read API was refused (%s); reading the result over REST", exc.code)
            yield from job.result(page_size=batch_rows, timeout=timeout).to_arrow_iterable(bqstorage_client=None)
            return
        if first is not None:
            yield first
        yield from batches

    # ------------------------------------------------------------------------------ upsert
    def _load_stage(self, table: TableRef, data: pa.Table, workdir: Path, created: list[str]) -> str:
        """Create a staging table and fill it with one Parquet load job; return its SQL name."""
        name = f"_sixtyfour_stage_{uuid.uuid4().hex[:12]}"
        stage = TableRef(name, schema=table.schema, database=table.database)
        ref = self._ref(stage)
        created.append(ref)
        with self._errors(f"staging rows for {table}"):
            loaded = load_parquet(self.client(), ref, data, workdir / f"{name}.parquet", self.cfg)
        if loaded is not None and loaded != data.num_rows:
            raise WarehouseError(f"bigquery: staging {table} loaded {loaded:,} of {data.num_rows:,} rows")
        return self.table_sql(stage)

    def _apply_part(
        self,
        s: BigQuerySession,
        table: TableRef,
        key: Sequence[str],
        part: PreparedPart,
        stage: str,
        json_cols: frozenset[str],
    ) -> UpsertResult:
        """Write one staged part inside the open transaction; return what it inserted and updated."""
        target = self.table_sql(table)
        args: dict[str, Any] = {
            "target": target,
            "source": stage,
            "key": key,
            "set_columns": part.set_columns,
            "guards": part.guards,
            "quote": self.quote,
            "json_columns": json_cols,
            "parse_json": "PARSE_JSON",
        }
        dropped = part.duplicates_dropped
        if part.insert_only:
            inserted = s.execute_count(cloud_sql.insert_select_sql(**args))
            return UpsertResult(inserted=inserted, duplicates_dropped=dropped, adjusted=part.adjusted)
        matched = None
        if not self._merge_reports_stats:
            # Until a MERGE has shown that the API reports inserted/updated counts, count the matches first.
            on = " AND ".join(f"t.{self.quote(k)} = s.{self.quote(k)}" for k in key)
            count_sql = f"SELECT COUNT(*) FROM {stage} AS s WHERE EXISTS (SELECT 1 FROM {target} AS t WHERE {on})"
            matched = int(s.fetchall(count_sql)[0][0])
        sql = cloud_sql.merge_sql(**args)
        with self._errors(f"merging into {table}", sql):
            s._execute(sql)
        job = self._last_job
        stats = getattr(job, "dml_stats", None)
        self._merge_reports_stats = stats is not None
        inserted, updated = merge_counts(stats, job.num_dml_affected_rows, part.data.num_rows, matched)
        return UpsertResult(inserted=inserted, updated=updated, duplicates_dropped=dropped, adjusted=part.adjusted)

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
                "bigquery: upsert called inside an open session; staging cannot run inside a transaction",
                hint="call adapter.upsert(..., before_commit=...) outside any session",
            )
        writes = [(table, list(key), [prepare_part(self.names, table, key, p) for p in parts])]
        writes += [(w.table, list(w.key), [prepare_part(self.names, w.table, w.key, p) for p in w.parts]) for w in also]
        stages: list[str] = []
        try:
            staged: list[tuple[TableRef, list[str], PreparedPart, str, set[str]]] = []
            with tempfile.TemporaryDirectory(prefix="sixtyfour-bq-") as tmp:
                for into, into_key, prepared in writes:
                    existing = self.get_columns(into) if any(p.data.num_rows for p in prepared) else {}
                    json_stored = {n for n, t in existing.items() if t is LogicalType.JSON}
                    for p in prepared:
                        stage = self._load_stage(into, p.data, Path(tmp), stages) if p.data.num_rows else ""
                        json_cols = {c for c in p.set_columns if (self.find_column(existing, c) or "") in json_stored}
                        staged.append((into, into_key, p, stage, json_cols))
            result = UpsertResult()
            with self.session() as s:
                assert isinstance(s, BigQuerySession)
                for into, into_key, p, stage, json_cols in staged:
                    if not stage:
                        done = UpsertResult(duplicates_dropped=p.duplicates_dropped)
                    else:
                        done = self._apply_part(s, into, into_key, p, stage, frozenset(json_cols))
                    if into is table:
                        result += done
                if before_commit is not None:
                    before_commit(s)
            return result
        finally:
            self._drop_stages(stages)

    def _drop_stages(self, stages: Sequence[str]) -> None:
        if not stages or self._client is None:
            return
        for ref in stages:
            try:
                self._client.delete_table(ref, not_found_ok=True)
            except Exception:  # a leftover staging table expires by itself within a day
                log.warning("could not delete staging table %s; it expires within a day", ref)

    def _upsert_in_session(
        self, session: Session, table: TableRef, key: Sequence[str], parts: Sequence[UpsertPart]
    ) -> UpsertResult:
        return session.upsert(table, key, parts)
