"""The ledger's tables and their columns, and the base each part of the ledger builds on (what each table
holds, and why: engine/ledger/store.py)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from sixtyfour_sync.engine.jobs.states import ACTIVE
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.session import Session
from sixtyfour_sync.warehouse.types import Column, LogicalType, TableRef

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
EVALUATIONS_TABLE = "_sixtyfour_sync_evaluations"
ANSWERS_TABLE = "_sixtyfour_sync_answers"
REUSES_TABLE = "_sixtyfour_sync_reuses"
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
    #: Rows answered by a shared question (asked once for rows sharing their inputs), and what that saved.
    Column("rows_deduplicated", B),
    Column("saved_cents", D),
    #: Rows that took a stored answer (the answer store: engine/reuse/), and what those questions would have cost.
    Column("rows_reused", B),
    Column("reused_saved_cents", D),
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
    #: Rows answered by a shared question: keys whose inputs another key of the job shares (asked once).
    Column("rows_deduplicated", B),
    #: Per field, the answers with a value, and those held back below min_confidence (JSON objects).
    Column("filled", T),
    Column("gated", T),
    #: The run that recorded the job's charge (``completed``), and the run that ended it
    #: (see engine/ledger/accounting.py).
    Column("charged_by", T),
    Column("finished_by", T),
    #: A "new fields" job: the fields it asked (comma-separated); NULL for a job asking the whole struct.
    Column("fields", T),
    #: The question whose answers the job's merge kept in the answer store (engine/reuse/question.py); NULL when
    #: it kept none.
    Column("question", T),
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
#: How right a sync's answers were against labels (``sixtyfour-sync evaluate``): one row per evaluation, field,
#: tier and confidence band, with RECON's counts; a field's suggested ``min_confidence`` on each of its rows.
_EVALUATION_COLUMNS = [
    Column("evaluation_id", T),
    Column("sync_name", T),
    Column("target", T),
    Column("labels", T),
    Column("field", T),
    Column("tier", T),
    Column("band", T),
    Column("correct", B),
    Column("wrong", B),
    Column("missing", B),
    Column("target_precision", D),
    Column("suggested_min_confidence", B),
    Column("would_gate", B),
    Column("evaluated_at", TS),
]
#: The answer store (engine/reuse/): one row per answer merged, by the job that got it and its input hash, and the
#: answer: the fields' and confidences' text as a JSON array in the order of the struct (then the confidences),
#: NULL when the API returned the row and could not enrich it. What the answer answered (its question), the task,
#: tier and time are the job's (``_sixtyfour_sync_jobs``: ``question``, ``task_id``, ``tier``, ``merged_at``).
#: Written in the transaction that merges the answer; no primary key (appended to, read by question and hash).
ANSWER_COLUMNS = [Column("job_id", T), Column("input_hash", T), Column("answer", T)]
#: Rows a run answered from the store instead of asking: which run and sync, how many rows and questions, at
#: what price per question (None: unknown) and what that saved; written in the transaction that merges them.
_REUSE_COLUMNS = [
    Column("run_id", T),
    Column("sync_name", T),
    Column("target", T),
    Column("question", T),
    Column("rows_reused", B),
    Column("questions_reused", B),
    Column("price_cents_per_row", D),
    Column("saved_cents", D),
    Column("reused_at", TS),
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


class LedgerBase:
    """The ledger's adapter, schema and table references, shared by each part of the ledger
    (engine/ledger/store.py puts them together).

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
        self.evaluations = TableRef(EVALUATIONS_TABLE, self.schema)
        self.answers = TableRef(ANSWERS_TABLE, self.schema)
        self.reuses = TableRef(REUSES_TABLE, self.schema)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.guard: Callable[[], None] = _no_guard
        #: The target each sync of the command writes (sync name -> target table, as jobs record it), where the
        #: command set it: a job of another target sharing this ledger is not this command's.
        self.targets: dict[str, str] = {}
        self._ensured = False

    # -- setup ---------------------------------------------------------------------------------------

    # -- setup ---------------------------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether the ledger tables have been created (a ``plan`` must not create them).

        An existing ledger is brought up to date the first time it is seen (the tables and columns a newer
        version reads are added), so every command, ``plan`` included, reads a ledger an older version wrote.
        """
        if self._ensured:
            return True  # made sure of in this command: ledger tables are never dropped by the engine
        found = self.adapter.table_exists(self.jobs)
        if found:
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
        a.ensure_table(self.evaluations, [Column("row_id", T, nullable=False)], _EVALUATION_COLUMNS)
        a.ensure_table(self.reuses, [Column("reuse_id", T, nullable=False)], _REUSE_COLUMNS)
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
        if not a.table_exists(self.answers):  # appended to, read by question and input hash (see ANSWER_COLUMNS)
            with a.session() as s:
                s.execute(a.create_table_sql(self.answers, [], ANSWER_COLUMNS))
        self._ensured = True

    # -- runs ----------------------------------------------------------------------------------------

    def _session(self, session: Session | None) -> Any:
        return _Joined(session) if session is not None else self.adapter.session()


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
