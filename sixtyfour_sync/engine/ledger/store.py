"""The ledger: what every run did and where every submitted file stands, kept in the warehouse.

Tables in the ledger schema (the target's schema unless the profile sets ``ledger_schema``), so a scheduled
job on a throwaway machine resumes where the last one stopped:

- ``_sixtyfour_sync_runs``: one row per run (counts, costs, outcome);
- ``_sixtyfour_sync_jobs``: one row per file, moving through :class:`~sixtyfour_sync.engine.jobs.states.JobState`;
  every move is a compare-and-set on the state the writer expects, committed before the side effect that
  follows it. A lost race raises :class:`LedgerConflictError`: it is never a silent overwrite;
- ``_sixtyfour_sync_job_keys``: the row keys of each unfinished file (a hash of the key, computed by the
  warehouse, and the hash of the inputs that were sent), packed in a few rows per job
  (:mod:`sixtyfour_sync.engine.ledger.rowkeys`) and written before the job is submitted, so another machine can
  rebuild a lost file, a selection can leave out rows that a job still holds, and a merge knows what was sent.
  Those of ended jobs are pruned at the start and end of each sync's run;
- ``_sixtyfour_sync_prices``: per-row prices learned from the API's estimates, per endpoint and tier;
- ``_sixtyfour_sync_columns``: the target columns each sync created, so a sync never writes a column it does
  not own (another tool's) unless told to (``target.adopt_columns``);
- ``_sixtyfour_sync_quarantine``: paid answers the target refused (a CHECK constraint, a trigger, a value too
  long for a column someone narrowed), one row each with its key, the warehouse's reason and the answer itself;
  their rows are held (never asked again) until they merge (see :mod:`sixtyfour_sync.engine.results.quarantine`);
- ``_sixtyfour_sync_steps``: what each run did in each step of each sync (status, selection by reason),
  which with the jobs is everything a run's numbers are derived from (:mod:`sixtyfour_sync.engine.ledger.accounting`);
- ``_sixtyfour_sync_leases``: see :mod:`sixtyfour_sync.engine.ledger.lease`.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from sixtyfour_sync import __version__
from sixtyfour_sync._redact import sanitize
from sixtyfour_sync.engine.jobs.states import ACTIVE, FREED, HELD, TERMINAL, JobState, check_transition
from sixtyfour_sync.engine.ledger import rowkeys
from sixtyfour_sync.engine.ledger.accounting import JobFacts, RunAccount, StepFacts, account
from sixtyfour_sync.errors import SixtyfourSyncError
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.session import Session
from sixtyfour_sync.warehouse.types import Column, LogicalType, TableRef, UpsertPart

__all__ = [
    "ACTIVE_STATES",
    "COLUMNS_TABLE",
    "EVENTS_TABLE",
    "JOBS_TABLE",
    "JOB_KEYS_TABLE",
    "KEY_HASH",
    "LEASES_TABLE",
    "PRICES_TABLE",
    "QUARANTINE_TABLE",
    "RUNS_TABLE",
    "SPECS_TABLE",
    "STEPS_TABLE",
    "Job",
    "Ledger",
    "LedgerConflictError",
    "new_run_id",
    "read_account",
    "utcnow",
]

RUNS_TABLE = "_sixtyfour_sync_runs"
JOBS_TABLE = "_sixtyfour_sync_jobs"
JOB_KEYS_TABLE = "_sixtyfour_sync_job_keys"
PRICES_TABLE = "_sixtyfour_sync_prices"
LEASES_TABLE = "_sixtyfour_sync_leases"
EVENTS_TABLE = "_sixtyfour_sync_webhook_events"
SPECS_TABLE = "_sixtyfour_sync_specs"
QUARANTINE_TABLE = "_sixtyfour_sync_quarantine"
COLUMNS_TABLE = "_sixtyfour_sync_columns"
STEPS_TABLE = "_sixtyfour_sync_steps"
#: The column of a selection (and of the job keys) holding the warehouse's hash of a row's key.
KEY_HASH = "_sixtyfour_key_hash"
INPUT_HASH = "_sixtyfour_input_hash"

#: Jobs a later run must finish before selecting new rows (kept for callers of the old name).
ACTIVE_STATES = tuple(s.value for s in ACTIVE)

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
    Column("jobs_resumed", B),
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
    Column("tier", T),
    Column("spec_hash", T),
    Column("content_hash", T),
    Column("idempotency_key", T),
    Column("salt", T),
    Column("reasons", T),
    Column("file_name", T),
    Column("rows", B),
    Column("bytes", B),
    Column("state", T),
    Column("task_id", T),
    Column("api_status", T),
    Column("replay", B),
    Column("replay_of", T),
    Column("estimated_cost_cents", D),
    Column("charged_cents", D),
    Column("api_charge_cents", D),
    Column("result_file", T),
    Column("result_format", T),
    Column("rows_enriched", B),
    Column("rows_failed", B),
    Column("rows_not_returned", B),
    Column("rows_unexpected", B),
    Column("missing_columns", T),
    #: What the merge wrote (rows), how many rows the API answered, and those a target refused (quarantined).
    Column("rows_merged", B),
    Column("rows_returned", B),
    Column("rows_quarantined", B),
    #: Per field, the answers with a value, and those held back below min_confidence (JSON objects).
    Column("filled", T),
    Column("gated", T),
    #: The run that recorded the job's charge (``completed``), and the run that ended it
    #: (see engine/ledger/accounting.py).
    Column("charged_by", T),
    Column("finished_by", T),
    #: A "new fields" job: the fields it asked (comma-separated); NULL for a job asking the whole struct.
    Column("fields", T),
    #: Where the job's answers go: the target table, qualified as the warehouse names it; with the profile's
    #: target and the project, for people reading the ledger. Targets sharing a ledger keep apart by it.
    Column("target", T),
    Column("profile_target", T),
    Column("project", T),
    Column("error", T),
    Column("created_at", TS),
    Column("submitting_at", TS),
    Column("submitted_at", TS),
    Column("completed_at", TS),
    Column("downloaded_at", TS),
    Column("merged_at", TS),
    Column("ended_at", TS),
    Column("updated_at", TS),
    Column("updated_epoch", D),
]
#: The lease of each sync: who holds it and until when, on the warehouse's clock (see engine/ledger/lease.py).
_LEASE_COLUMNS = [
    Column("run_id", T),
    Column("host", T),
    Column("pid", B),
    Column("acquired_at", TS),
    Column("expires_epoch", D),
    Column("renewed_epoch", D),
]
#: Webhook deliveries received, one row per event id (the dedupe key), and what was done with each.
_EVENT_COLUMNS = [
    Column("event_type", T),
    Column("task_id", T),
    Column("job_id", T),
    Column("sync_name", T),
    Column("attempt", B),
    Column("outcome", T),
    Column("received_at", TS),
]
#: What each spec hash stamped into a target stands for: its shared part and one hash per field (JSON).
_SPEC_COLUMNS = [Column("sync_name", T), Column("definition", T), Column("recorded_at", TS)]
_KEY_COLUMNS = [Column("job_id", T), Column("part", B), Column("data", T)]
#: Which sync created which column of which target (the target as jobs record it; the column lower-cased).
_CREATED_COLUMNS = [Column("sync_name", T), Column("created_at", TS)]
#: An answer the target refused: whose, its key (the stored prefix of its hash, and as JSON text to show), why,
#: and the staged row itself (Arrow IPC, base64) with how to merge it, so it merges without asking again.
_QUARANTINE_COLUMNS = [
    Column("sync_name", T),
    Column("job_id", T),
    Column("task_id", T),
    Column("key_prefix", T),
    Column("key_text", T),
    Column("target", T),
    Column("reason", T),
    Column("row_data", T),
    Column("merge_spec", T),
    Column("quarantined_at", TS),
    Column("released_at", TS),
]
#: What a run did in each step of a sync (its own pass, a "new fields" step, an escalation tier): the step's
#: status, its selection by reason, and what it did besides jobs (see engine/ledger/accounting.py).
_STEP_COLUMNS = [
    Column("run_id", T),
    Column("sync_name", T),
    Column("target", T),
    Column("step", T),
    Column("seq", B),
    Column("status", T),
    Column("rows_by_reason", T),
    Column("rows_released", B),
    Column("rows_source_deleted", B),
    Column("rows_source_restored", B),
    Column("source_deletion", T),
    Column("recorded_at", TS),
]
_PRICE_COLUMNS = [
    Column("price_cents_per_row", D),
    Column("learned_at", TS),
    Column("job_id", T),
    Column("sync_name", T),
]
#: The timestamp column stamped when a job enters a state (the ``<state>_at`` columns).
_STAMPS = {c.name for c in _JOB_COLUMNS if c.name.endswith("_at")}

#: Longest error text stored in the ledger.
MAX_ERROR = 1000


def utcnow() -> datetime:
    """Now, as a timezone-aware UTC datetime."""
    return datetime.now(timezone.utc)


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus randomness."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def read_account(ledger: Ledger, run_id: str, own_tiers: Mapping[str, str] | None = None) -> RunAccount:
    """A run's numbers from this ledger's facts (engine/ledger/accounting.py): what every view of a run shows."""
    jobs = [JobFacts.from_row(r) for r in ledger.run_job_rows(run_id)]
    steps = [StepFacts.from_row(r) for r in ledger.step_rows(run_id)]
    row = ledger.run_row(run_id)
    finished = row.get("finished_at") if row else None
    return account(run_id, jobs, steps, run_finished=finished, own_tiers=own_tiers)


class LedgerConflictError(SixtyfourSyncError):
    """A ledger row was not in the state the writer expected: another process moved it first."""


@dataclass(frozen=True)
class Job:
    """A row of ``_sixtyfour_sync_jobs``."""

    job_id: str
    run_id: str
    sync_name: str
    state: JobState
    spec_hash: str
    content_hash: str
    idempotency_key: str
    file_name: str
    rows: int
    endpoint: str | None = None
    tier: str | None = None
    salt: str | None = None
    reasons: str | None = None
    task_id: str | None = None
    replay: bool = False
    replay_of: str | None = None
    estimated_cost_cents: float | None = None
    charged_cents: float | None = None
    api_charge_cents: float | None = None
    result_file: str | None = None
    result_format: str | None = None
    missing_columns: str | None = None
    fields: str | None = None
    target: str | None = None
    profile_target: str | None = None
    project: str | None = None
    error: str | None = None
    created_at: datetime | None = None

    def belongs_to(self, target: str | None) -> bool:
        """Whether this job's answers go to ``target`` (a job an older version recorded names none: any)."""
        return target is None or self.target is None or self.target == target

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        """Build from a ``select`` row (unknown columns are ignored)."""

        def num(v: Any) -> float | None:
            return None if v is None else float(v)

        return cls(
            job_id=str(row["job_id"]),
            run_id=str(row["run_id"]),
            sync_name=str(row["sync_name"]),
            state=JobState(str(row["state"])),
            spec_hash=str(row["spec_hash"]),
            content_hash=str(row["content_hash"]),
            idempotency_key=str(row["idempotency_key"]),
            file_name=str(row["file_name"]),
            rows=int(row["rows"] or 0),
            endpoint=row.get("endpoint"),
            tier=row.get("tier"),
            salt=row.get("salt"),
            reasons=row.get("reasons"),
            task_id=row.get("task_id"),
            replay=bool(row.get("replay") or 0),
            replay_of=row.get("replay_of"),
            estimated_cost_cents=num(row.get("estimated_cost_cents")),
            charged_cents=num(row.get("charged_cents")),
            api_charge_cents=num(row.get("api_charge_cents")),
            result_file=row.get("result_file"),
            result_format=row.get("result_format"),
            missing_columns=row.get("missing_columns"),
            target=row.get("target"),
            profile_target=row.get("profile_target"),
            project=row.get("project"),
            fields=row.get("fields"),
            error=row.get("error"),
            created_at=row.get("created_at"),
        )


_JOB_READ = [f.name for f in fields(Job)]


class Ledger:
    """Reads and writes the ledger tables through one adapter.

    ``guard`` is called before every write; the engine passes its lease check, so a run that lost its lease
    stops before its next side effect.
    """

    def __init__(self, adapter: Adapter, schema: str | None = None) -> None:
        self.adapter = adapter
        self.schema = schema if schema is not None else adapter.ledger_schema
        self.runs = TableRef(RUNS_TABLE, self.schema)
        self.jobs = TableRef(JOBS_TABLE, self.schema)
        self.keys = TableRef(JOB_KEYS_TABLE, self.schema)
        self.prices = TableRef(PRICES_TABLE, self.schema)
        self.leases = TableRef(LEASES_TABLE, self.schema)
        self.events = TableRef(EVENTS_TABLE, self.schema)
        self.specs = TableRef(SPECS_TABLE, self.schema)
        self.quarantine = TableRef(QUARANTINE_TABLE, self.schema)
        self.created = TableRef(COLUMNS_TABLE, self.schema)
        self.steps = TableRef(STEPS_TABLE, self.schema)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.guard: Callable[[], None] = _no_guard
        #: The target each sync of the command writes (sync name -> target table, as jobs record it), where the
        #: command set it: a job of another target sharing this ledger is not this command's.
        self.targets: dict[str, str] = {}
        self._ensured = False

    # -- setup ---------------------------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether the ledger tables have been created (a ``plan`` must not create them).

        An existing ledger is brought up to date the first time it is seen (the tables and columns a newer
        version reads are added), so every command, ``plan`` included, reads a ledger an older version wrote.
        """
        found = self.adapter.table_exists(self.jobs)
        if found and not self._ensured:
            self.ensure()
        return found

    def ensure(self) -> None:
        """Create the ledger tables (and their schema) when missing; add columns new versions need."""
        if self._ensured:
            return
        a = self.adapter
        if self.schema and not a.schema_exists(self.schema):
            a.ensure_schema(self.schema)
        a.ensure_table(self.runs, [Column("run_id", T, nullable=False)], _RUN_COLUMNS)
        a.ensure_table(self.jobs, [Column("job_id", T, nullable=False)], _JOB_COLUMNS)
        a.ensure_table(
            self.prices, [Column("endpoint", T, nullable=False), Column("tier", T, nullable=False)], _PRICE_COLUMNS
        )
        a.ensure_table(self.leases, [Column("sync_name", T, nullable=False)], _LEASE_COLUMNS)
        a.ensure_table(self.events, [Column("event_id", T, nullable=False)], _EVENT_COLUMNS)
        a.ensure_table(self.specs, [Column("spec_hash", T, nullable=False)], _SPEC_COLUMNS)
        a.ensure_table(self.quarantine, [Column("quarantine_id", T, nullable=False)], _QUARANTINE_COLUMNS)
        a.ensure_table(self.steps, [Column("step_id", T, nullable=False)], _STEP_COLUMNS)
        a.ensure_table(
            self.created,
            [Column("target", T, nullable=False), Column("column_name", T, nullable=False)],
            _CREATED_COLUMNS,
        )
        # No primary key on the job keys: they are only ever read by job, and an index over millions of hashes
        # would cost more memory than the rows themselves.
        if not a.table_exists(self.keys):
            with a.session() as s:
                s.execute(a.create_table_sql(self.keys, [], _KEY_COLUMNS))
        self._ensured = True

    # -- runs ----------------------------------------------------------------------------------------

    def open_run(self, run_id: str, command: str, syncs: Sequence[str], session: Session | None = None) -> None:
        """Record the start of a run (status ``running``)."""
        row = {
            "run_id": run_id,
            "command": command,
            "status": "running",
            "syncs": ",".join(syncs),
            "started_at": utcnow(),
            "host": self.host,
            "pid": self.pid,
            "version": __version__,
        }
        with self._session(session) as s:
            s.insert(self.runs, [row])

    def close_run(self, run_id: str, status: str, counts: Mapping[str, Any], error: str | None = None) -> None:
        """Record the outcome and totals of a run."""
        values = {
            "status": status,
            "finished_at": utcnow(),
            "error": None if error is None else sanitize(error, MAX_ERROR),
            **counts,
        }
        with self.adapter.session() as s:
            s.update(self.runs, values, {"run_id": run_id})

    def run_exists(self, run_id: str) -> bool:
        """Whether a run row was written."""
        with self.adapter.session() as s:
            return bool(s.select(self.runs, {"run_id": run_id}, columns=["run_id"]))

    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent runs, newest first."""
        with self.adapter.session() as s:
            rows = s.select(self.runs, order_by=["started_at DESC"])
        return rows[:limit]

    def close_stale_runs(self, live_run_ids: Sequence[str], alive: Callable[[Mapping[str, Any]], bool]) -> list[str]:
        """Mark runs left ``running`` by a process that is gone as ``crashed``; return their ids."""
        closed = []
        with self.adapter.session() as s:
            rows = s.select(self.runs, {"status": "running"}, columns=["run_id", "host", "pid"])
        for row in rows:
            if row["run_id"] in live_run_ids or alive(row):
                continue
            with self.adapter.session() as s:
                n = s.update(
                    self.runs,
                    {"status": "crashed", "finished_at": utcnow(), "error": "the process stopped before the run ended"},
                    {"run_id": row["run_id"], "status": "running"},
                )
            if n:
                closed.append(str(row["run_id"]))
        return closed

    # -- jobs ----------------------------------------------------------------------------------------

    def add_job(self, job: Job, keys: pa.Table | None) -> None:
        """Record a new job (state ``written``, or ``submitting`` when it is sent at once) with its row keys.

        ``keys`` None: they were written already (:meth:`write_keys`, by the thread that made the file). Where
        the warehouse can stage rows inside a transaction, keys and job row are one transaction. Elsewhere
        (Snowflake, BigQuery, Databricks) the keys go first in their own, then the job row: keys left without
        a job by a crash in between are ignored and pruned (:meth:`prune_keys`).
        """
        if job.state not in (JobState.WRITTEN, JobState.SUBMITTING):
            raise ValueError("a new job starts as written or submitting")
        self.guard()
        parts = _key_rows(job.job_id, keys) if keys is not None and keys.num_rows else []
        now = utcnow()
        row: dict[str, Any] = {
            "job_id": job.job_id,
            "run_id": job.run_id,
            "sync_name": job.sync_name,
            "endpoint": job.endpoint,
            "tier": job.tier,
            "spec_hash": job.spec_hash,
            "content_hash": job.content_hash,
            "idempotency_key": job.idempotency_key,
            "salt": job.salt,
            "reasons": job.reasons,
            "fields": job.fields,
            "target": job.target,
            "profile_target": job.profile_target,
            "project": job.project,
            "file_name": job.file_name,
            "rows": job.rows,
            "bytes": 0,
            "state": job.state.value,
            "replay": 0,
            "created_at": now,
            f"{job.state.value}_at": now,
            "updated_at": now,
            "updated_epoch": time.time(),
        }
        if row.get("written_at"):
            del row["written_at"]
        keys_part = _keys_part(parts) if parts else None
        one_transaction = self.adapter.capabilities.transactional_ddl
        if keys_part is not None and not one_transaction:
            self.adapter.upsert(self.keys, ["job_id", "part"], [keys_part])
        with self.adapter.session() as s:
            if keys_part is not None and one_transaction:
                s.upsert(self.keys, ["job_id", "part"], [keys_part])
            s.insert(self.jobs, [row])

    def write_keys(self, job_id: str, keys: pa.Table) -> None:
        """Record the row keys of a job about to be recorded (its own transaction; before the job row).

        ``keys`` has the selection's key hash and input hash columns.
        """
        self.guard()
        if keys.num_rows:
            self.adapter.upsert(self.keys, ["job_id", "part"], [_keys_part(_key_rows(job_id, keys))])

    def prune_keys(self) -> None:
        """Delete the row keys no unfinished or held job needs (those of ended jobs, and orphans).

        Done once at the start and the end of a sync's run rather than with each job's last move: deleting
        a hundred thousand rows at a time, file after file, costs more than the rest of the merge.
        """
        a = self.adapter
        q = a.quote
        keep = ", ".join(f"'{s.value}'" for s in sorted(ACTIVE | HELD))
        sql = (
            f"DELETE FROM {a.table_sql(self.keys)} WHERE {q('job_id')} NOT IN "
            f"(SELECT {q('job_id')} FROM {a.table_sql(self.jobs)} WHERE {q('state')} IN ({keep}))"
        )
        with a.session() as s:
            s.execute(sql)

    def transition(
        self,
        job_id: str,
        expected: JobState,
        new: JobState,
        *,
        session: Session | None = None,
        **values: Any,
    ) -> None:
        """Move a job from ``expected`` to ``new`` (stamping ``<new>_at``) with ``values``, as a compare-and-set.

        Raises :class:`~sixtyfour_sync.engine.jobs.states.IllegalTransitionError` for a move the state machine
        does not allow and :class:`LedgerConflictError` when the row was not in ``expected``.
        """
        check_transition(expected, new)
        data = dict(values)
        data["state"] = new.value
        stamp = f"{new.value}_at"
        now = utcnow()
        if stamp in _STAMPS:
            data[stamp] = now
        if new in TERMINAL or new in HELD:
            data["ended_at"] = now
        self._write(job_id, expected, data, session)

    def annotate(self, job_id: str, state: JobState, *, session: Session | None = None, **values: Any) -> None:
        """Record values on a job that must still be in ``state`` (compare-and-set, no move)."""
        self._write(job_id, state, dict(values), session)

    def _write(self, job_id: str, expected: JobState, data: dict[str, Any], session: Session | None) -> None:
        self.guard()
        if "error" in data and data["error"] is not None:
            data["error"] = sanitize(data["error"], MAX_ERROR)
        data["updated_at"] = utcnow()
        data["updated_epoch"] = time.time()
        with self._session(session) as s:
            n = s.update(self.jobs, data, {"job_id": job_id, "state": expected.value})
        if n == 0:
            actual = self.job(job_id)
            now = "gone" if actual is None else actual.state.value
            raise LedgerConflictError(
                f"job {job_id} was expected to be {expected.value} but is {now}: another run or `cancel` changed it",
                hint="`sixtyfour-sync status` shows the job; run again to pick it up from where it is",
            )

    def discard_job(self, job_id: str, expected: JobState) -> bool:
        """Delete a job that never became work (its submission was refused); True when deleted."""
        self.guard()
        with self.adapter.session() as s:
            n = s.delete(self.jobs, {"job_id": job_id, "state": expected.value})
            s.delete(self.keys, {"job_id": job_id})
        return n != 0

    def job(self, job_id: str) -> Job | None:
        """One job, or None."""
        with self.adapter.session() as s:
            rows = s.select(self.jobs, {"job_id": job_id}, columns=_JOB_READ)
        return Job.from_row(rows[0]) if rows else None

    def jobs_for(
        self,
        *,
        sync_name: str | None = None,
        run_id: str | None = None,
        states: Sequence[JobState | str] | None = None,
        target: str | None = None,
    ) -> list[Job]:
        """Jobs filtered by sync, run, states and target (:meth:`Job.belongs_to`), oldest first."""
        where: dict[str, Any] = {}
        if sync_name is not None:
            where["sync_name"] = sync_name
        if run_id is not None:
            where["run_id"] = run_id
        with self.adapter.session() as s:
            rows = s.select(self.jobs, where, columns=_JOB_READ, order_by=["created_at", "job_id"])
        jobs = [j for j in (Job.from_row(r) for r in rows) if j.belongs_to(target)]
        if states is not None:
            wanted = {JobState(s) for s in states}
            jobs = [j for j in jobs if j.state in wanted]
        return jobs

    def mine(self, job: Job) -> bool:
        """Whether a job belongs to a sync of the command and the target it writes (see :attr:`targets`)."""
        return job.sync_name in self.targets and job.belongs_to(self.targets[job.sync_name])

    def job_by_task(self, task_id: str) -> Job | None:
        """The earliest job that the API answered with ``task_id`` (not counting replays of it)."""
        with self.adapter.session() as s:
            rows = s.select(self.jobs, {"task_id": task_id}, columns=_JOB_READ, order_by=["created_at", "job_id"])
        jobs = [Job.from_row(r) for r in rows]
        originals = [j for j in jobs if not j.replay_of] or jobs
        return originals[0] if originals else None

    def dead_job_for(self, sync_name: str, spec_hash: str, content_hash: str) -> Job | None:
        """The latest job that asked this exact question and ended without merging (rows free to ask again)."""
        where = {"sync_name": sync_name, "spec_hash": spec_hash, "content_hash": content_hash}
        with self.adapter.session() as s:
            rows = s.select(self.jobs, where, columns=_JOB_READ, order_by=["created_at", "job_id"])
        dead = [Job.from_row(r) for r in rows if r["state"] in {f.value for f in FREED}]
        return dead[-1] if dead else None

    def job_rows(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Every column of the jobs (of one run, or all), oldest first: for ``status``."""
        with self.adapter.session() as s:
            return s.select(self.jobs, {"run_id": run_id} if run_id else None, order_by=["created_at", "job_id"])

    def run_job_rows(self, run_id: str) -> list[dict[str, Any]]:
        """The jobs a run created, and those of earlier runs it finished or recorded the charge of."""
        out: dict[str, dict[str, Any]] = {}
        with self.adapter.session() as s:
            for column in ("run_id", "finished_by", "charged_by"):
                for row in s.select(self.jobs, {column: run_id}, order_by=["created_at", "job_id"]):
                    out.setdefault(str(row["job_id"]), row)
        return list(out.values())

    def record_step(self, row: Mapping[str, Any]) -> None:
        """Record what a run did in one step of a sync (once per run, sync, target and step)."""
        self.guard()
        data = dict(row)
        data["recorded_at"] = utcnow()
        step_id = "|".join(str(data.get(k) or "") for k in ("run_id", "sync_name", "target", "step"))
        with self.adapter.session() as s:
            s.delete(self.steps, {"step_id": step_id})
            s.insert(self.steps, [{"step_id": step_id, **data}])

    def step_rows(self, run_id: str) -> list[dict[str, Any]]:
        """What a run recorded of its steps, in order."""
        if not self.adapter.table_exists(self.steps):
            return []
        with self.adapter.session() as s:
            return s.select(self.steps, {"run_id": run_id}, order_by=["seq"])

    def run_row(self, run_id: str) -> dict[str, Any] | None:
        """The run's row, or None."""
        with self.adapter.session() as s:
            rows = s.select(self.runs, {"run_id": run_id})
        return rows[0] if rows else None

    def job_keys(self, job_id: str) -> pa.Table:
        """A job's row keys: ``key`` (the key hash's stored prefix) and ``input_hash`` (empty when pruned)."""
        with self.adapter.session() as s:
            rows = s.select(self.keys, {"job_id": job_id}, columns=["part", "data"])
        return rowkeys.unpack(str(r["data"] or "") for r in sorted(rows, key=lambda r: int(r["part"])))

    def held_keys(self, sync_name: str, states: Sequence[JobState], target: str | None = None) -> pa.Array | None:
        """The key prefixes that jobs of ``sync_name`` (for ``target``) in ``states`` hold, and those of its
        quarantined answers; None when there are none."""
        jobs = self.jobs_for(sync_name=sync_name, states=states, target=target)
        held = [self.job_keys(j.job_id).column("key") for j in jobs]
        quarantined = [r["key_prefix"] for r in self.quarantined(sync_name, target) if r["key_prefix"]]
        if quarantined:
            held.append(pa.chunked_array([pa.array(quarantined, pa.string())]))
        if not held:
            return None
        return pa.chunked_array([c for col in held for c in col.chunks], type=pa.string()).combine_chunks()

    # -- columns the syncs created --------------------------------------------------------------------

    def created_columns(self, target: str) -> dict[str, str]:
        """The columns of ``target`` a sync created: lower-cased name -> the sync's name."""
        if not self.adapter.table_exists(self.created):
            return {}
        with self.adapter.session() as s:
            rows = s.select(self.created, {"target": target}, columns=["column_name", "sync_name"])
        return {str(r["column_name"]): str(r["sync_name"]) for r in rows}

    def record_columns(self, target: str, sync_name: str, names: Sequence[str]) -> None:
        """Record that ``sync_name`` created (or, for a table an older version made, has always written) columns."""
        if not names:
            return
        self.ensure()
        self.guard()
        now = utcnow()
        with self.adapter.session() as s:
            for name in dict.fromkeys(n.lower() for n in names):
                row = {"target": target, "column_name": name, "sync_name": sync_name, "created_at": now}
                s.insert_if_absent(self.created, row, ["target", "column_name"])

    # -- quarantined answers -------------------------------------------------------------------------

    def quarantine_rows(self, rows: Sequence[Mapping[str, Any]], session: Session) -> None:
        """Record answers the target refused (in the merge's transaction)."""
        self.guard()
        now = utcnow()
        with self._session(session) as s:
            s.insert(self.quarantine, [{**r, "quarantine_id": uuid.uuid4().hex, "quarantined_at": now} for r in rows])

    def quarantined(self, sync_name: str | None = None, target: str | None = None) -> list[dict[str, Any]]:
        """Answers still held because the target refused them (of one sync and target, or all), oldest first."""
        if not self.adapter.table_exists(self.quarantine):
            return []
        with self.adapter.session() as s:
            where = {"sync_name": sync_name} if sync_name else None
            rows = s.select(self.quarantine, where, order_by=["quarantined_at"])
        return [
            r for r in rows if r.get("released_at") is None and (target is None or r.get("target") in (None, target))
        ]

    def release_quarantined(self, ids: Sequence[str], session: Session) -> None:
        """Mark quarantined answers merged (in the transaction that merged them)."""
        self.guard()
        now = utcnow()
        with self._session(session) as s:
            for qid in ids:
                s.update(self.quarantine, {"released_at": now}, {"quarantine_id": qid})

    # -- prices --------------------------------------------------------------------------------------

    def learned_price(self, endpoint: str, tier: str) -> tuple[float, datetime | None] | None:
        """The per-row price learned for an endpoint and tier, and when, or None."""
        with self.adapter.session() as s:
            rows = s.select(
                self.prices,
                {"endpoint": endpoint, "tier": tier},
                columns=["price_cents_per_row", "learned_at"],
            )
        if not rows or rows[0]["price_cents_per_row"] is None:
            return None
        return float(rows[0]["price_cents_per_row"]), rows[0]["learned_at"]

    def learn_price(self, endpoint: str, tier: str, price: float, *, job_id: str, sync_name: str) -> None:
        """Remember the per-row price an estimate showed (the newest estimate wins)."""
        data = pa.table(
            {
                "endpoint": [endpoint],
                "tier": [tier],
                "price_cents_per_row": pa.array([float(price)], pa.float64()),
                "learned_at": pa.array([utcnow()], pa.timestamp("us", tz="UTC")),
                "job_id": [job_id],
                "sync_name": [sync_name],
            }
        )
        self.adapter.upsert(
            self.prices,
            ["endpoint", "tier"],
            [UpsertPart(data, ["price_cents_per_row", "learned_at", "job_id", "sync_name"])],
        )

    # -- spec definitions ----------------------------------------------------------------------------

    def record_specs(self, sync_name: str, definitions: Mapping[str, Mapping[str, Any]], session: Session) -> None:
        """Remember what each stamp stands for (once per hash), in the caller's transaction (a merge's)."""
        for spec_hash, definition in definitions.items():
            row = {
                "spec_hash": spec_hash,
                "sync_name": sync_name,
                "definition": json.dumps(definition, sort_keys=True),
                "recorded_at": utcnow(),
            }
            session.insert_if_absent(self.specs, row, ["spec_hash"])

    def spec_definitions(self, hashes: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The recorded definitions of these stamps (those never recorded are left out)."""
        if not hashes or not self.adapter.table_exists(self.specs):
            return {}
        with self.adapter.session() as s:
            rows = s.select(self.specs, None, columns=["spec_hash", "definition"])
        wanted = set(hashes)
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            if r["spec_hash"] in wanted and r["definition"]:
                try:
                    out[str(r["spec_hash"])] = json.loads(str(r["definition"]))
                except ValueError:
                    continue
        return out

    # -- webhook events ------------------------------------------------------------------------------

    def event_seen(self, event_id: str) -> bool:
        """Whether a webhook delivery with this event id was received before."""
        if not self.adapter.table_exists(self.events):
            return False
        with self.adapter.session() as s:
            return bool(s.select(self.events, {"event_id": event_id}, columns=["event_id"]))

    def record_event(
        self,
        event_id: str,
        *,
        event_type: str | None,
        task_id: str | None,
        attempt: int | None,
        outcome: str,
        job: Job | None = None,
    ) -> bool:
        """Record a delivery once; False (and nothing written) when its event id is already there."""
        self.ensure()
        row = {
            "event_id": event_id,
            "event_type": event_type,
            "task_id": task_id,
            "job_id": None if job is None else job.job_id,
            "sync_name": None if job is None else job.sync_name,
            "attempt": attempt,
            "outcome": outcome,
            "received_at": utcnow(),
        }
        with self.adapter.session() as s:  # one statement: two receivers racing on one event insert it once
            return s.insert_if_absent(self.events, row, ["event_id"])

    def forget_event(self, event_id: str) -> None:
        """Remove a delivery's record: it was answered with a non-2xx after all, so its retry must be new."""
        with self.adapter.session() as s:
            s.delete(self.events, {"event_id": event_id})

    def set_event_outcome(self, event_id: str, outcome: str) -> None:
        """Say what became of a delivery (finished, ignored, left to a run)."""
        with self.adapter.session() as s:
            s.update(self.events, {"outcome": outcome}, {"event_id": event_id})

    # -- helpers -------------------------------------------------------------------------------------

    def _session(self, session: Session | None) -> Any:
        return _Joined(session) if session is not None else self.adapter.session()


def _keys_part(rows: list[dict[str, Any]]) -> UpsertPart:
    """The packed parts as one bulk insert (a few rows of up to 48 KB each: one statement, not many)."""
    data = pa.table(
        {
            "job_id": pa.array([r["job_id"] for r in rows], pa.string()),
            "part": pa.array([r["part"] for r in rows], pa.int64()),
            "data": pa.array([r["data"] for r in rows], pa.string()),
        }
    )
    return UpsertPart(data, ["data"], insert_only=True, unique_keys=True)


def _key_rows(job_id: str, keys: pa.Table) -> list[dict[str, Any]]:
    parts = rowkeys.pack(keys.column(KEY_HASH), keys.column(INPUT_HASH))
    return [{"job_id": job_id, "part": i, "data": text} for i, text in enumerate(parts)]


class _Joined:
    """A context manager handing back a session that someone else commits."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def __enter__(self) -> Session:
        return self.session

    def __exit__(self, *exc: object) -> None:
        return None


def _no_guard() -> None:
    return None
