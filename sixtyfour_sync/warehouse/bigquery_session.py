"""The BigQuery session (one multi-statement transaction over several query jobs) and the staging load job.

The transaction begins (``BEGIN TRANSACTION``, in the adapter's BigQuery session) right before the first
DML statement, so a session that only reads or runs DDL starts none; ``COMMIT``/``ROLLBACK`` end it.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sixtyfour_sync.errors import WarehouseError
from sixtyfour_sync.warehouse.bigquery_sql import is_dml, parquet_ready, stage_schema
from sixtyfour_sync.warehouse.session import Session
from sixtyfour_sync.warehouse.types import TableRef, UpsertPart, UpsertResult

if TYPE_CHECKING:
    import pyarrow as pa

    from sixtyfour_sync.config.profiles import BigQueryTarget
    from sixtyfour_sync.warehouse.bigquery import BigQueryAdapter

__all__ = ["BigQuerySession", "load_parquet"]

#: A staging table expires by itself this long after it was created (if a killed run leaves it behind).
STAGE_TTL = dt.timedelta(days=1)

#: Held from BEGIN to COMMIT/ROLLBACK: a transaction waits (up to :data:`_LOCK_WAIT` seconds, then goes
#: ahead) while another thread of this process has one open, so the lease thread's renewals queue behind
#: the main thread's upsert. BigQuery aborts one of two concurrent transactions on the same table, and
#: some compatible servers (bqemulator) have a single server-wide transaction.
_TRANSACTION_LOCK = threading.RLock()
_LOCK_WAIT = 10.0


class BigQuerySession(Session):
    """One multi-statement transaction, begun lazily before the first DML statement."""

    adapter: BigQueryAdapter

    def __init__(self, adapter: BigQueryAdapter) -> None:
        super().__init__(adapter)
        self.in_transaction = False
        self._locked = False

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        if is_dml(sql) and not self.in_transaction:
            self._locked = _TRANSACTION_LOCK.acquire(timeout=_LOCK_WAIT)
            try:
                self.adapter._run("BEGIN TRANSACTION", (), session=True)
            except BaseException:
                self._unlock()
                raise
            self.in_transaction = True
        job = self.adapter._run(sql, params, session=self.in_transaction)
        if not is_dml(sql):
            return -1
        return int(job.num_dml_affected_rows or 0)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        job = self.adapter._run(sql, params, session=self.in_transaction)
        rows = job.result()
        names = [f.name for f in rows.schema]
        return names, [tuple(r.values()) for r in rows]

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        for row in rows:
            self._execute(sql, row)

    def insert(self, table: TableRef, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows with multi-row ``VALUES`` (one job per 500 rows, not one per row)."""
        if not rows:
            return
        a = self.adapter
        cols = list(rows[0].keys())
        if any(list(r.keys()) != cols for r in rows):
            raise ValueError(f"insert into {table}: every row must have the same columns {cols}")
        names = ", ".join(a.quote(c, what=f"column of {table}") for c in cols)
        one = "(" + ", ".join("?" for _ in cols) + ")"
        for start in range(0, len(rows), 500):
            chunk = rows[start : start + 500]
            sql = f"INSERT INTO {a.table_sql(table)} ({names}) VALUES " + ", ".join(one for _ in chunk)
            params = [a.adapt_value(r[c]) for r in chunk for c in cols]
            with a._errors("running SQL", sql):
                self._execute(sql, params)

    def _commit(self) -> None:
        self._end("COMMIT TRANSACTION")

    def _rollback(self) -> None:
        self._end("ROLLBACK TRANSACTION")

    def _end(self, sql: str) -> None:
        if not self.in_transaction:
            return
        self.in_transaction = False
        try:
            self.adapter._run(sql, (), session=True)
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self._locked:
            self._locked = False
            _TRANSACTION_LOCK.release()

    def upsert(self, table: TableRef, key: Sequence[str], parts: Sequence[UpsertPart]) -> UpsertResult:
        """Refused: staging needs DDL and a load job, which cannot run inside a BigQuery transaction."""
        raise WarehouseError(
            "bigquery: upsert inside an open session is not possible (staging runs outside transactions)",
            hint="call adapter.upsert(..., before_commit=...) to write the ledger in the same transaction",
        )


def load_parquet(client: Any, ref: str, data: pa.Table, path: Path, cfg: BigQueryTarget) -> int | None:
    """Create table ``ref`` (expiring after :data:`STAGE_TTL`) and fill it from ``data`` with one Parquet load job.

    The Parquet file is written to ``path`` and removed afterwards; returns the rows the job loaded.
    """
    import pyarrow.parquet as pq
    from google.cloud import bigquery

    ready = parquet_ready(data)
    spec = bigquery.Table(ref, schema=[bigquery.SchemaField(n, t) for n, t in stage_schema(ready)])
    spec.expires = dt.datetime.now(dt.timezone.utc) + STAGE_TTL
    load = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET,
        write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
    )
    pq.write_table(ready, path)
    try:
        client.create_table(spec)
        with path.open("rb") as fh:
            job = client.load_table_from_file(fh, ref, job_config=load, location=cfg.location)
        job.result(timeout=cfg.job_execution_timeout_seconds)
    finally:
        path.unlink(missing_ok=True)
    return None if job.output_rows is None else int(job.output_rows)
