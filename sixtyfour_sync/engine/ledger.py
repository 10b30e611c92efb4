"""The ledger: what every run did and where every submitted file stands, kept in the warehouse.

Three tables live in the ledger schema (the target's schema unless the profile sets ``ledger_schema``), so a
scheduled job on a throwaway machine resumes where the last one stopped:

- ``_sixtyfour_sync_runs``: one row per run (counts, costs, outcome);
- ``_sixtyfour_sync_jobs``: one row per file, moving through the states below, each transition committed
  before the next side effect;
- ``_sixtyfour_sync_leases``: one row per sync while a run holds it, so two runs never submit the same rows.

File states::

    written -> submitting -> submitted -> completed -> downloaded -> merged
                  |              |             \\-> failed (the API failed or cancelled the job)
                  |              \\-> cancelled
                  \\-> rejected (the API refused it: 4xx; nothing was charged)
    abandoned: a file written on another machine that never reached the API

Timestamps are stored as UTC timestamps for people and as epoch seconds where the engine compares them, so
no driver's time zone handling can change an answer.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sixtyfour_sync import __version__
from sixtyfour_sync.errors import SixtyfourSyncError
from sixtyfour_sync.warehouse.base import Adapter, Column, LogicalType, Session, TableRef

__all__ = [
    "ACTIVE_STATES",
    "JOBS_TABLE",
    "LEASES_TABLE",
    "RUNS_TABLE",
    "LeaseHeldError",
    "Ledger",
    "new_run_id",
    "utcnow",
]

RUNS_TABLE = "_sixtyfour_sync_runs"
JOBS_TABLE = "_sixtyfour_sync_jobs"
LEASES_TABLE = "_sixtyfour_sync_leases"

#: Jobs a later run must finish before selecting new rows.
ACTIVE_STATES = ("written", "submitting", "submitted", "completed", "downloaded")
FINAL_STATES = ("merged", "failed", "cancelled", "rejected", "abandoned")

T, B, D, TS = LogicalType.TEXT, LogicalType.BIGINT, LogicalType.DOUBLE, LogicalType.TIMESTAMP

_RUN_COLUMNS = [
    Column("command", T),
    Column("status", T),
    Column("syncs", T),
    Column("started_at", TS),
    Column("finished_at", TS),
    Column("rows_selected", B),
    Column("rows_sent", B),
    Column("rows_enriched", B),
    Column("rows_failed", B),
    Column("rows_not_returned", B),
    Column("rows_unexpected", B),
    Column("jobs", B),
    Column("estimated_cost_cents", D),
    Column("charged_cents", D),
    Column("host", T),
    Column("pid", B),
    Column("version", T),
    Column("error", T),
]
_JOB_COLUMNS = [
    Column("run_id", T),
    Column("sync_name", T),
    Column("endpoint", T),
    Column("spec_hash", T),
    Column("content_hash", T),
    Column("idempotency_key", T),
    Column("file_name", T),
    Column("rows", B),
    Column("bytes", B),
    Column("state", T),
    Column("task_id", T),
    Column("api_status", T),
    Column("replay", B),
    Column("estimated_cost_cents", D),
    Column("charged_cents", D),
    Column("result_file", T),
    Column("result_format", T),
    Column("rows_enriched", B),
    Column("rows_failed", B),
    Column("rows_not_returned", B),
    Column("rows_unexpected", B),
    Column("error", T),
    Column("created_at", TS),
    Column("submitting_at", TS),
    Column("submitted_at", TS),
    Column("completed_at", TS),
    Column("downloaded_at", TS),
    Column("merged_at", TS),
    Column("updated_at", TS),
    Column("updated_epoch", D),
]
_LEASE_COLUMNS = [
    Column("run_id", T),
    Column("host", T),
    Column("pid", B),
    Column("acquired_at", TS),
    Column("expires_epoch", D),
]

#: How long a lease lives without a heartbeat.
LEASE_SECONDS = 600.0


def utcnow() -> datetime:
    """Now, as a timezone-aware UTC datetime."""
    return datetime.now(timezone.utc)


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus randomness."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


class LeaseHeldError(SixtyfourSyncError):
    """Another run holds the sync; this run does not submit its rows."""


@dataclass(frozen=True)
class Job:
    """A ledger row of ``_sixtyfour_sync_jobs`` (the columns that the engine reads back)."""

    job_id: str
    run_id: str
    sync_name: str
    state: str
    spec_hash: str
    content_hash: str
    idempotency_key: str
    file_name: str
    rows: int
    task_id: str | None
    estimated_cost_cents: float | None
    charged_cents: float | None
    result_file: str | None
    result_format: str | None
    error: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        """Build from a ``select`` row."""

        def num(v: Any) -> float | None:
            return None if v is None else float(v)

        return cls(
            job_id=str(row["job_id"]),
            run_id=str(row["run_id"]),
            sync_name=str(row["sync_name"]),
            state=str(row["state"]),
            spec_hash=str(row["spec_hash"]),
            content_hash=str(row["content_hash"]),
            idempotency_key=str(row["idempotency_key"]),
            file_name=str(row["file_name"]),
            rows=int(row["rows"] or 0),
            task_id=row["task_id"],
            estimated_cost_cents=num(row["estimated_cost_cents"]),
            charged_cents=num(row["charged_cents"]),
            result_file=row["result_file"],
            result_format=row["result_format"],
            error=row["error"],
        )


_JOB_READ = [
    "job_id",
    "run_id",
    "sync_name",
    "state",
    "spec_hash",
    "content_hash",
    "idempotency_key",
    "file_name",
    "rows",
    "task_id",
    "estimated_cost_cents",
    "charged_cents",
    "result_file",
    "result_format",
    "error",
]


class Ledger:
    """Reads and writes the ledger tables through one adapter."""

    def __init__(self, adapter: Adapter, schema: str | None = None) -> None:
        self.adapter = adapter
        self.schema = schema if schema is not None else adapter.ledger_schema
        self.runs = TableRef(RUNS_TABLE, self.schema)
        self.jobs = TableRef(JOBS_TABLE, self.schema)
        self.leases = TableRef(LEASES_TABLE, self.schema)
        self.host = socket.gethostname()
        self.pid = os.getpid()

    # -- setup ---------------------------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether the ledger tables have been created (a ``plan`` must not create them)."""
        return self.adapter.table_exists(self.jobs)

    def ensure(self) -> None:
        """Create the ledger tables (and their schema) when missing; add columns new versions need."""
        if self.schema:
            self.adapter.ensure_schema(self.schema)
        self.adapter.ensure_table(self.runs, [Column("run_id", T, nullable=False)], _RUN_COLUMNS)
        self.adapter.ensure_table(self.jobs, [Column("job_id", T, nullable=False)], _JOB_COLUMNS)
        self.adapter.ensure_table(self.leases, [Column("sync_name", T, nullable=False)], _LEASE_COLUMNS)

    # -- runs ----------------------------------------------------------------------------------------

    def start_run(self, run_id: str, command: str, syncs: Sequence[str]) -> None:
        """Record the start of a run."""
        with self.adapter.session() as s:
            s.insert(
                self.runs,
                [
                    {
                        "run_id": run_id,
                        "command": command,
                        "status": "running",
                        "syncs": ",".join(syncs),
                        "started_at": utcnow(),
                        "host": self.host,
                        "pid": self.pid,
                        "version": __version__,
                    }
                ],
            )

    def finish_run(self, run_id: str, status: str, counts: Mapping[str, Any], error: str | None = None) -> None:
        """Record the outcome and totals of a run."""
        values = {"status": status, "finished_at": utcnow(), "error": error, **counts}
        with self.adapter.session() as s:
            s.update(self.runs, values, {"run_id": run_id})

    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent runs, newest first."""
        with self.adapter.session() as s:
            rows = s.select(self.runs, order_by=["started_at DESC"])
        return rows[:limit]

    # -- jobs ----------------------------------------------------------------------------------------

    def add_job(
        self,
        session: Session | None,
        *,
        job_id: str,
        run_id: str,
        sync_name: str,
        endpoint: str,
        spec_hash: str,
        content_hash: str,
        idempotency_key: str,
        file_name: str,
        rows: int,
        nbytes: int,
    ) -> None:
        """Record a file that was written (state ``written``)."""
        now = utcnow()
        row = {
            "job_id": job_id,
            "run_id": run_id,
            "sync_name": sync_name,
            "endpoint": endpoint,
            "spec_hash": spec_hash,
            "content_hash": content_hash,
            "idempotency_key": idempotency_key,
            "file_name": file_name,
            "rows": rows,
            "bytes": nbytes,
            "state": "written",
            "created_at": now,
            "updated_at": now,
            "updated_epoch": time.time(),
        }
        if session is not None:
            session.insert(self.jobs, [row])
        else:
            with self.adapter.session() as s:
                s.insert(self.jobs, [row])

    def set_job(self, job_id: str, state: str | None = None, session: Session | None = None, **values: Any) -> None:
        """Move a job to ``state`` (stamping ``<state>_at``) and/or record values; committed on return."""
        data = dict(values)
        now = utcnow()
        if state is not None:
            data["state"] = state
            stamp = f"{state}_at"
            if stamp in {c.name for c in _JOB_COLUMNS}:
                data[stamp] = now
        data["updated_at"] = now
        data["updated_epoch"] = time.time()
        if session is not None:
            session.update(self.jobs, data, {"job_id": job_id})
        else:
            with self.adapter.session() as s:
                s.update(self.jobs, data, {"job_id": job_id})

    def jobs_for(
        self,
        *,
        sync_name: str | None = None,
        run_id: str | None = None,
        states: Sequence[str] | None = None,
    ) -> list[Job]:
        """Jobs filtered by sync, run and states, oldest first."""
        where: dict[str, Any] = {}
        if sync_name is not None:
            where["sync_name"] = sync_name
        if run_id is not None:
            where["run_id"] = run_id
        with self.adapter.session() as s:
            rows = s.select(self.jobs, where, columns=_JOB_READ, order_by=["created_at", "job_id"])
        jobs = [Job.from_row(r) for r in rows]
        if states is not None:
            jobs = [j for j in jobs if j.state in states]
        return jobs

    def job_rows(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Every column of the jobs (of one run, or all), oldest first: for ``status``."""
        with self.adapter.session() as s:
            return s.select(self.jobs, {"run_id": run_id} if run_id else None, order_by=["created_at", "job_id"])

    def price_per_row(self, endpoint: str, tier_spec_hash: str | None = None) -> float | None:
        """The per-row price learned from earlier estimates for the same question (newest first)."""
        a = self.adapter
        sql = (
            f"SELECT {a.quote('estimated_cost_cents')}, {a.quote('rows')} FROM {a.table_sql(self.jobs)} "
            f"WHERE {a.quote('endpoint')} = ? AND {a.quote('estimated_cost_cents')} IS NOT NULL "
            f"AND {a.quote('rows')} > 0"
        )
        params: list[Any] = [endpoint]
        if tier_spec_hash is not None:
            sql += f" AND {a.quote('spec_hash')} = ?"
            params.append(tier_spec_hash)
        sql += f" ORDER BY {a.quote('updated_epoch')} DESC"
        with a.session() as s:
            rows = s.fetchall(sql, params)
        for cents, rows_ in rows:
            if cents is not None and rows_:
                return float(cents) / float(rows_)
        return None

    # -- leases --------------------------------------------------------------------------------------

    def acquire(self, sync_name: str, run_id: str) -> None:
        """Take the sync's lease or raise :class:`LeaseHeldError` saying who holds it and until when.

        A lease is free when it expired, or when its holder ran on this host and that process is gone
        (a run killed mid-way need not wait for the expiry).
        """
        a = self.adapter
        now = time.time()
        q = a.quote
        take = (
            f"UPDATE {a.table_sql(self.leases)} SET {q('run_id')} = ?, {q('host')} = ?, {q('pid')} = ?, "
            f"{q('acquired_at')} = ?, {q('expires_epoch')} = ? WHERE {q('sync_name')} = ? AND {q('run_id')} = ?"
        )
        with a.session() as s:
            rows = s.select(self.leases, {"sync_name": sync_name}, columns=["run_id", "host", "pid", "expires_epoch"])
            if not rows:
                s.insert(
                    self.leases,
                    [
                        {
                            "sync_name": sync_name,
                            "run_id": run_id,
                            "host": self.host,
                            "pid": self.pid,
                            "acquired_at": utcnow(),
                            "expires_epoch": now + LEASE_SECONDS,
                        }
                    ],
                )
                return
            holder = rows[0]
            expired = float(holder["expires_epoch"] or 0) < now
            dead = holder["host"] == self.host and not _pid_alive(int(holder["pid"] or 0))
            mine = holder["run_id"] == run_id
            if not (expired or dead or mine):
                left = int(float(holder["expires_epoch"]) - now)
                raise LeaseHeldError(
                    f"sync {sync_name!r} is being run by run {holder['run_id']} (host {holder['host']}, "
                    f"pid {holder['pid']}); its lease expires in {left}s",
                    hint="wait for that run to finish; if it died on another machine, the lease frees itself "
                    f"after {int(LEASE_SECONDS)}s",
                )
            changed = s.execute_count(
                take, [run_id, self.host, self.pid, utcnow(), now + LEASE_SECONDS, sync_name, holder["run_id"]]
            )
            if changed == 0:
                raise LeaseHeldError(f"sync {sync_name!r} was taken by another run just now")

    def heartbeat(self, sync_names: Sequence[str], run_id: str) -> None:
        """Extend the leases this run holds."""
        a = self.adapter
        sql = (
            f"UPDATE {a.table_sql(self.leases)} SET {a.quote('expires_epoch')} = ? "
            f"WHERE {a.quote('sync_name')} = ? AND {a.quote('run_id')} = ?"
        )
        with a.session() as s:
            for name in sync_names:
                s.execute(sql, [time.time() + LEASE_SECONDS, name, run_id])

    def release(self, sync_names: Sequence[str], run_id: str) -> None:
        """Give the leases back."""
        with self.adapter.session() as s:
            for name in sync_names:
                s.delete(self.leases, {"sync_name": name, "run_id": run_id})


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
