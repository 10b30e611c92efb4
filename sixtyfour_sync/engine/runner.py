"""The sync engine: rows from the warehouse to Sixtyfour and back, safely with money and data.

One sync runs as a small pipeline:

- an extraction thread streams the selection (``select.py``) from its own cursor and writes JSONL files
  (``files.py``), at most a couple ahead of the submissions, so memory and disk stay bounded;
- the main thread owns the warehouse connection: it records every state change in the ledger
  (``ledger.py``) *before* the side effect that follows it, checks the budget before every submission,
  and merges each job's results as soon as they are downloaded, in one transaction with the ledger row;
- a few worker threads make the API calls (submit, poll, download), paced by the client's limiter.

Before selecting anything, a run finishes what earlier runs left unfinished (poll, download, merge), so a
crash at any instant followed by another ``run`` converges on the same target as an uninterrupted run, and a
file is never submitted twice except as an Idempotency-Key replay.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.api import (
    FatalApiError,
    InsufficientCreditsError,
    JobPoller,
    JobStatus,
    ResultDownload,
    SixtyfourClient,
    SubmitResult,
)
from sixtyfour_sync.api.errors import ApiError, DownloadError
from sixtyfour_sync.config.models import BOOKKEEPING_COLUMNS, LoadedSync, SyncSpec, build_api_config
from sixtyfour_sync.engine.files import ChunkFile, idempotency_key, write_chunks
from sixtyfour_sync.engine.ledger import ACTIVE_STATES, Job, Ledger, utcnow
from sixtyfour_sync.engine.localdb import duck_type, fetch_one, ident, json_path, literal, local_duckdb, registered
from sixtyfour_sync.engine.results import ResultParseError, parse_result
from sixtyfour_sync.engine.select import (
    HASH_COLUMN,
    REASON_COLUMN,
    Selection,
    build_selection,
    count_by_reason_sql,
    source_relation_sql,
)
from sixtyfour_sync.engine.summary import JobOutcome, SyncPlan, SyncResult
from sixtyfour_sync.errors import ConfigError, ConfigProblem, SixtyfourSyncError
from sixtyfour_sync.warehouse.base import Adapter, Column, LogicalType, Session, TableRef, UpsertPart

__all__ = ["Budget", "EngineSettings", "Reporter", "SyncRunner", "plan_sync"]

log = logging.getLogger("sixtyfour_sync.engine")

#: Reasons that ask a question again on purpose: their files get a run-specific Idempotency-Key, so the API
#: does not answer them with the earlier job.
DELIBERATE = ("stale", "failed_retry", "refresh")
FAILPOINT_ENV = "SIXTYFOUR_SYNC_FAILPOINT"


def failpoint(name: str) -> None:
    """Testing aid: ``SIXTYFOUR_SYNC_FAILPOINT=<name>`` kills the process with SIGKILL at that point."""
    wanted = os.environ.get(FAILPOINT_ENV)
    if wanted and wanted == name:
        os.kill(os.getpid(), signal.SIGKILL)


class Reporter:
    """Receives progress events; the CLI draws bars or prints lines. The default does nothing."""

    def on(self, event_name: str, sync: str, **data: Any) -> None:
        """One event: ``plan``, ``extracted``, ``file``, ``submitted``, ``job_done``, ``merged``, ``note``."""


@dataclass
class EngineSettings:
    """Knobs of a run that are not in the sync definitions."""

    state_dir: Path
    poll_interval: float | None = None
    max_wait_seconds: float | None = None
    api_workers: int = 4
    files_ahead: int = 2
    batch_rows: int = 50_000
    keep_files: bool = False
    cost_units: str = "cents"


@dataclass
class Budget:
    """A spending limit shared by the syncs of a run (``--max-cost-cents``), in cents."""

    limit_cents: float | None
    spent_cents: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def room(self) -> float | None:
        """Cents left (None: no limit)."""
        return None if self.limit_cents is None else self.limit_cents - self.spent_cents


# --------------------------------------------------------------------------------------------------
# Types


def _logical(t: pa.DataType) -> LogicalType:
    if pa.types.is_integer(t):
        return LogicalType.BIGINT
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return LogicalType.DOUBLE
    if pa.types.is_boolean(t):
        return LogicalType.BOOLEAN
    if pa.types.is_timestamp(t):
        return LogicalType.TIMESTAMP
    return LogicalType.TEXT


_FIELD_TYPES = {
    "str": LogicalType.TEXT,
    "int": LogicalType.BIGINT,
    "float": LogicalType.DOUBLE,
    "bool": LogicalType.BOOLEAN,
}


def owned_columns(spec: SyncSpec) -> list[Column]:
    """The columns a sync owns in its target: fields, confidences, bookkeeping."""
    cols = [
        Column(spec.column_for(n), LogicalType.JSON if f.is_json else _FIELD_TYPES[f.type])
        for n, f in spec.struct.items()
    ]
    if spec.field_confidence:
        cols += [Column(spec.column_for(f"{n}_confidence"), LogicalType.BIGINT) for n in spec.struct]
    cols += [
        Column("_sixtyfour_status", LogicalType.TEXT),
        Column("_sixtyfour_enriched_at", LogicalType.TIMESTAMP),
        Column("_sixtyfour_task_id", LogicalType.TEXT),
        Column("_sixtyfour_input_hash", LogicalType.TEXT),
        Column("_sixtyfour_spec_hash", LogicalType.TEXT),
    ]
    return cols


def target_ref(spec: SyncSpec) -> TableRef:
    """The sync's target table."""
    return TableRef(spec.target.table, spec.target.schema_, spec.target.database)


def _denormalize(adapter: Adapter, batch: pa.RecordBatch) -> pa.RecordBatch:
    names = [adapter.denormalize_identifier(n) for n in batch.schema.names]
    if names == batch.schema.names:
        return batch
    return pa.RecordBatch.from_arrays(batch.columns, names=names)


def query_columns(adapter: Adapter, sql: str) -> list[str]:
    """The column names a query returns (run with LIMIT 0)."""
    with adapter.session() as s:
        names, _ = s._query(adapter.limit_sql(f"SELECT * FROM ({sql}) {adapter.subquery_alias('q')}", 0))
    return [adapter.denormalize_identifier(n) for n in names]


def resolve_inputs(adapter: Adapter, loaded: LoadedSync, source_sql: str) -> list[str]:
    """The input columns of a sync: ``source.columns``, or every source column but the key."""
    spec = loaded.spec
    available = query_columns(adapter, source_sql)
    lower = {c.lower(): c for c in available}
    problems = []
    for k in spec.source.key:
        if k.lower() not in lower:
            problems.append(
                ConfigProblem(
                    str(loaded.file),
                    f"{spec.name}.source.key",
                    f"key column {k!r} is not in the source",
                    line=loaded.line,
                    hint=f"source columns: {', '.join(available)}",
                )
            )
    if spec.source.columns:
        for c in spec.source.columns:
            if c.lower() not in lower:
                problems.append(
                    ConfigProblem(
                        str(loaded.file),
                        f"{spec.name}.source.columns",
                        f"column {c!r} is not in the source",
                        line=loaded.line,
                        hint=f"source columns: {', '.join(available)}",
                    )
                )
        inputs = list(spec.source.columns)
    else:
        keys = {k.lower() for k in spec.source.key}
        inputs = [c for c in available if c.lower() not in keys and not c.lower().startswith("_sixtyfour")]
    clash = [f for f in spec.struct if f.lower() in {i.lower() for i in inputs}]
    if clash:
        problems.append(
            ConfigProblem(
                str(loaded.file),
                f"{spec.name}.struct",
                f"struct field(s) {', '.join(clash)} have the name of a source column that is sent",
                line=loaded.line,
                hint="rename the field, or list source.columns without that column",
            )
        )
    if problems:
        raise ConfigError(problems=problems)
    return inputs


def _price(spec: SyncSpec, ledger: Ledger | None) -> tuple[float | None, str | None]:
    if spec.budget.price_cents_per_row is not None:
        return spec.budget.price_cents_per_row, "configured"
    if ledger is not None and ledger.exists():
        learned = ledger.price_per_row(spec.endpoint, spec.spec_hash())
        if learned is None:
            learned = ledger.price_per_row(spec.endpoint)
        if learned is not None:
            return learned, "learned from earlier estimates"
    return None, None


# --------------------------------------------------------------------------------------------------
# plan


def plan_sync(
    adapter: Adapter,
    loaded: LoadedSync,
    *,
    ref_table: TableRef | None = None,
    full_refresh: bool = False,
    budget_cents: float | None = None,
) -> SyncPlan:
    """What a run would send for one sync and what it would cost; creates nothing, calls no API."""
    spec = loaded.spec
    target = target_ref(spec)
    source_sql = source_relation_sql(adapter, spec, ref_table)
    inputs = resolve_inputs(adapter, loaded, source_sql)
    exists = adapter.table_exists(target)
    columns = adapter.get_columns(target) if exists else None
    selection = build_selection(
        adapter,
        spec,
        source_sql=source_sql,
        inputs=inputs,
        target=target,
        target_columns=columns,
        spec_hash=spec.spec_hash(),
        full_refresh=full_refresh,
    )
    report = adapter.key_report(source_sql, spec.source.key)
    with adapter.session() as s:
        counts = {str(r): int(n) for r, n in s.fetchall(count_by_reason_sql(adapter, selection))}
    ledger = Ledger(adapter)
    price, source = _price(spec, ledger)
    rows = sum(counts.values())
    unfinished = 0
    if ledger.exists():
        unfinished = len(ledger.jobs_for(sync_name=spec.name, states=ACTIVE_STATES))
    limit = budget_cents if budget_cents is not None else spec.budget.max_cost_cents
    if spec.budget.max_cost_cents is not None and budget_cents is not None:
        limit = min(budget_cents, spec.budget.max_cost_cents)
    new_cols = []
    if columns is not None:
        new_cols = [c.name for c in owned_columns(spec) if adapter.find_column(columns, c.name) is None]
    return SyncPlan(
        name=spec.name,
        endpoint=spec.endpoint,
        tier=spec.tier,
        target=str(target),
        rows_by_reason=counts,
        files=math.ceil(rows / spec.chunk_rows) if rows else 0,
        chunk_rows=spec.chunk_rows,
        price_cents_per_row=price,
        price_source=source,
        estimated_cost_cents=None if price is None else round(price * rows, 2),
        budget_cents=None if limit is None else int(limit),
        unfinished_jobs=unfinished,
        key_problems=report.describe(),
        target_exists=exists,
        new_columns=new_cols,
    )


# --------------------------------------------------------------------------------------------------
# run


@dataclass
class _Tracked:
    job_id: str
    file: Path | None
    file_name: str
    rows: int
    content_hash: str
    key: str
    state: str
    task_id: str | None = None
    poller: JobPoller | None = None
    due: float = 0.0
    busy: bool = False
    outcome: JobOutcome | None = None
    status: JobStatus | None = None
    estimate: float | None = None
    resumed: bool = False
    #: Cents held against the budget from submission until the API's estimate replaces them.
    reserved: float = 0.0
    #: Whether this file holds one of the extraction thread's `files_ahead` slots.
    holds_slot: bool = False


class SyncRunner:
    """Runs one sync: resume what is unfinished, then select, submit, poll, download, merge."""

    def __init__(
        self,
        *,
        loaded: LoadedSync,
        adapter: Adapter,
        extract_adapter: Callable[[], Adapter] | None,
        ledger: Ledger,
        client: SixtyfourClient,
        run_id: str,
        settings: EngineSettings,
        budget: Budget,
        reporter: Reporter | None = None,
        ref_table: TableRef | None = None,
        full_refresh: bool = False,
    ) -> None:
        self.loaded = loaded
        self.spec = loaded.spec
        self.adapter = adapter
        self.extract_adapter = extract_adapter
        self.ledger = ledger
        self.client = client
        self.run_id = run_id
        self.settings = settings
        self.budget = budget
        self.reporter = reporter or Reporter()
        self.ref_table = ref_table
        self.full_refresh = full_refresh
        self.result = SyncResult(self.spec.name)
        self.target = target_ref(self.spec)
        self.spec_hash = self.spec.spec_hash()
        self.files_dir = settings.state_dir / "files" / self.spec.name
        self.results_dir = settings.state_dir / "results" / self.spec.name
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.jobs: dict[str, _Tracked] = {}
        self.stop_submitting = False
        self.stop_reason: str | None = None
        self.key_types: dict[str, pa.DataType] = {}
        self.inputs: list[str] = []
        self.price: float | None = None
        self.sync_budget_spent = 0.0
        self._slots = threading.Semaphore(max(1, settings.files_ahead))
        self._producer_stop = threading.Event()
        self._producer_done = True
        self._executor = ThreadPoolExecutor(max(1, settings.api_workers), thread_name_prefix=f"sf-{self.spec.name}")
        self._last_heartbeat = time.monotonic()
        self._started = time.monotonic()

    # ------------------------------------------------------------------ entry point

    def run(self) -> SyncResult:
        """Resume unfinished jobs, then send the rows that need work; return the outcome."""
        spec = self.spec
        try:
            source_sql = source_relation_sql(self.adapter, spec, self.ref_table)
            self.inputs = resolve_inputs(self.adapter, self.loaded, source_sql)
            self.key_types = self._key_types(source_sql)
            self.price, _ = _price(spec, self.ledger)
            self._resume()
            if self.stop_reason is None:
                self._run_new(source_sql)
        except SixtyfourSyncError as exc:
            self._stop("failed", str(exc))
            raise
        finally:
            self._producer_stop.set()
            self._executor.shutdown(wait=True, cancel_futures=True)
        self._finish_status()
        return self.result

    # ------------------------------------------------------------------ setup

    def _key_types(self, source_sql: str) -> dict[str, pa.DataType]:
        cols = ", ".join(self.adapter.quote(k, what="key column") for k in self.spec.source.key)
        sql = self.adapter.limit_sql(f"SELECT {cols} FROM ({source_sql}) {self.adapter.subquery_alias('k')}", 1)
        schema: pa.Schema | None = None
        for batch in self.adapter.stream(sql):
            schema = _denormalize(self.adapter, batch).schema
            break
        types: dict[str, pa.DataType] = {}
        if schema is not None:
            for k in self.spec.source.key:
                idx = [n.lower() for n in schema.names].index(k.lower())
                t = schema.field(idx).type
                types[k] = pa.string() if pa.types.is_null(t) else t
            return types
        existing = self.adapter.get_columns(self.target) if self.adapter.table_exists(self.target) else {}
        arrow = {LogicalType.BIGINT: pa.int64(), LogicalType.DOUBLE: pa.float64(), LogicalType.BOOLEAN: pa.bool_()}
        for k in self.spec.source.key:
            stored = self.adapter.find_column(existing, k)
            lt = existing.get(stored) if stored else None
            types[k] = arrow.get(lt, pa.string()) if isinstance(lt, LogicalType) else pa.string()
        return types

    def _ensure_target(self) -> None:
        key = [Column(k, _logical(t), nullable=False) for k, t in self.key_types.items()]
        if self.target.schema:
            self.adapter.ensure_schema(self.target.schema)
        res = self.adapter.ensure_table(self.target, key, owned_columns(self.spec))
        if res.created:
            self.reporter.on("note", self.spec.name, message=f"created target table {self.target}")
        elif res.added_columns:
            self.reporter.on(
                "note", self.spec.name, message=f"added columns {', '.join(res.added_columns)} to {self.target}"
            )

    # ------------------------------------------------------------------ resume

    def _resume(self) -> None:
        unfinished = self.ledger.jobs_for(sync_name=self.spec.name, states=ACTIVE_STATES)
        if not unfinished:
            return
        self._ensure_target()
        self.result.resumed_jobs = len(unfinished)
        self.reporter.on(
            "note", self.spec.name, message=f"finishing {len(unfinished)} unfinished job(s) from earlier runs"
        )
        for job in unfinished:
            tracked = self._track_existing(job)
            if tracked is None:
                continue
            self.jobs[tracked.job_id] = tracked
            if tracked.state in ("written", "submitting"):
                self._submit(tracked)
            elif tracked.state == "submitted":
                tracked.due = time.monotonic()
            elif tracked.state == "completed":
                self._download(tracked)
            elif tracked.state == "downloaded":
                self._merge(tracked)
        self._loop(producing=False)

    def _track_existing(self, job: Job) -> _Tracked | None:
        path = self.files_dir / job.file_name
        has_file = path.is_file()
        if job.state == "written" and not has_file:
            # Written on another machine and never sent: the rows are still unenriched and will be selected.
            self.ledger.set_job(job.job_id, "abandoned", error="file not on this machine; never submitted")
            return None
        if job.state == "submitting" and not has_file:
            # It may or may not have reached the API. Without the file it cannot be resent; the rows are
            # selected again, and an identical file gets the same Idempotency-Key, so the API replays the job.
            self.ledger.set_job(
                job.job_id, "abandoned", error="file not on this machine; resent as a replay if identical"
            )
            return None
        tracked = _Tracked(
            job.job_id,
            path if has_file else None,
            job.file_name,
            job.rows,
            job.content_hash,
            job.idempotency_key,
            job.state,
            job.task_id,
            resumed=True,
            estimate=job.estimated_cost_cents,
        )
        tracked.outcome = JobOutcome(
            job.job_id, job.file_name, job.rows, job.state, job.task_id, estimated_cost_cents=job.estimated_cost_cents
        )
        self.result.jobs.append(tracked.outcome)
        if job.state == "submitted":
            tracked.poller = self._poller()
        return tracked

    # ------------------------------------------------------------------ new rows

    def _run_new(self, source_sql: str) -> None:
        spec = self.spec
        exists = self.adapter.table_exists(self.target)
        if exists:
            self._ensure_target()
        columns = self.adapter.get_columns(self.target) if exists else None
        selection = build_selection(
            self.adapter,
            spec,
            source_sql=source_sql,
            inputs=self.inputs,
            target=self.target,
            target_columns=columns,
            spec_hash=self.spec_hash,
            full_refresh=self.full_refresh,
        )
        report = self.adapter.key_report(source_sql, spec.source.key)
        if not report.ok:
            self.result.warnings.append(report.describe())
            self.reporter.on("note", spec.name, message=report.describe(), level="warning")
        with self.adapter.session() as s:
            counts = {str(r): int(n) for r, n in s.fetchall(count_by_reason_sql(self.adapter, selection))}
        self.result.rows_by_reason = counts
        total = sum(counts.values())
        self.reporter.on("plan", spec.name, rows=total, files=math.ceil(total / spec.chunk_rows) if total else 0)
        if total == 0:
            if not self.result.jobs:
                self.result.status = "nothing_to_do"
            return
        if not exists:
            self._ensure_target()
        self._start_producer(selection)
        self._loop(producing=True)

    def _start_producer(self, selection: Selection) -> None:
        self._producer_done = False

        def describe(table: pa.Table) -> dict[str, Any]:
            counts = {
                str(item["values"]): int(item["counts"]) for item in pc.value_counts(table[REASON_COLUMN]).to_pylist()
            }
            return {"reasons": counts, "deliberate": any(r in DELIBERATE for r in counts)}

        def produce() -> None:
            adapter = self.extract_adapter() if self.extract_adapter else self.adapter
            try:
                for chunk in write_chunks(
                    self._batches(adapter, selection),
                    out_dir=self.files_dir,
                    prefix=self.spec.name,
                    chunk_rows=self.spec.chunk_rows,
                    drop=[REASON_COLUMN],
                    describe=describe,
                ):
                    while not self._slots.acquire(timeout=0.5):
                        if self._producer_stop.is_set():
                            chunk.path.unlink(missing_ok=True)
                            return
                    if self._producer_stop.is_set():
                        self._slots.release()
                        chunk.path.unlink(missing_ok=True)
                        return
                    self.events.put(("file", chunk))
                    self.reporter.on("extracted", self.spec.name, rows=chunk.rows)
            except BaseException as exc:  # reported to the main thread, which decides
                self.events.put(("producer_error", exc))
            finally:
                if adapter is not self.adapter:
                    adapter.close()
                self.events.put(("producer_done", None))

        threading.Thread(target=produce, name=f"extract-{self.spec.name}", daemon=True).start()

    def _batches(self, adapter: Adapter, selection: Selection) -> Iterator[pa.RecordBatch]:
        for batch in adapter.stream(selection.sql, batch_rows=self.settings.batch_rows):
            if self._producer_stop.is_set():
                return
            yield _denormalize(adapter, batch)

    # ------------------------------------------------------------------ main loop

    def _loop(self, *, producing: bool) -> None:
        while True:
            now = time.monotonic()
            self._heartbeat(now)
            # Only running jobs and calls under way keep the loop alive: a file left `submitting` after a
            # failed submission waits for the next run, which resends it with the same key.
            active = [t for t in self.jobs.values() if t.state == "submitted"]
            in_flight = any(t.busy for t in self.jobs.values())
            producer_running = producing and not self._producer_done
            if not active and not in_flight and not producer_running:
                return
            waited = now - self._started
            if self.settings.max_wait_seconds is not None and waited > self.settings.max_wait_seconds and not in_flight:
                self._give_up_waiting()
                return
            for t in active:
                if t.state == "submitted" and not t.busy and t.due <= now and self.stop_reason != "waited":
                    self._poll(t)
            due = [t.due for t in active if t.state == "submitted" and not t.busy]
            timeout = max(0.05, min(due) - time.monotonic()) if due else 0.5
            try:
                kind, payload = self.events.get(timeout=min(timeout, 5.0))
            except queue.Empty:
                continue
            self._handle(kind, payload)

    def _heartbeat(self, now: float) -> None:
        if now - self._last_heartbeat > 60:
            self._last_heartbeat = now
            self.ledger.heartbeat([self.spec.name], self.run_id)

    def _give_up_waiting(self) -> None:
        waiting = [t for t in self.jobs.values() if t.state in ACTIVE_STATES]
        self._producer_stop.set()
        self.stop_reason = "waited"
        msg = (
            f"stopped waiting after {self.settings.max_wait_seconds:.0f}s with {len(waiting)} job(s) unfinished; "
            "`sixtyfour-sync run` picks them up"
        )
        self.result.warnings.append(msg)
        self.reporter.on("note", self.spec.name, message=msg, level="warning")
        if self.result.status == "ok":
            self.result.status = "partial"

    def _handle(self, kind: str, payload: Any) -> None:
        if kind == "file":
            self._on_file(payload)
        elif kind == "producer_done":
            self._producer_done = True
        elif kind == "producer_error":
            self._producer_stop.set()
            if isinstance(payload, SixtyfourSyncError):
                self._stop("failed", str(payload))
            else:
                self._stop("failed", f"reading the source failed: {type(payload).__name__}: {payload}")
        elif kind == "api":
            tracked, what, value = payload
            tracked.busy = False
            getattr(self, f"_on_{what}")(tracked, value)

    # ------------------------------------------------------------------ files and budget

    def _budget_room(self) -> float | None:
        rooms = []
        if self.spec.budget.max_cost_cents is not None:
            rooms.append(self.spec.budget.max_cost_cents - self.sync_budget_spent)
        run_room = self.budget.room()
        if run_room is not None:
            rooms.append(run_room)
        return min(rooms) if rooms else None

    def _spend(self, cents: float) -> None:
        self.sync_budget_spent += cents
        with self.budget.lock:
            self.budget.spent_cents += cents

    def _on_file(self, chunk: ChunkFile) -> None:
        if self.stop_submitting:
            chunk.path.unlink(missing_ok=True)
            self._slots.release()
            return
        room = self._budget_room()
        if room is not None:
            if self.price is None and any(t.busy and t.state == "submitting" for t in self.jobs.values()):
                # The price is learned from the first estimate: wait for it before committing more money.
                self.events.put(("file", chunk))
                time.sleep(0.05)
                return
            if self.price is not None and self.price * chunk.rows > room + 1e-9:
                self._stop(
                    "budget",
                    f"budget reached: the next file ({chunk.rows:,} rows, about {self.price * chunk.rows:,.0f} cents) "
                    f"would exceed the {room:,.0f} cents left; nothing more was submitted",
                )
                chunk.path.unlink(missing_ok=True)
                self._slots.release()
                return
        deliberate = self._is_deliberate(chunk)
        salt = f":{self.run_id}" if deliberate else ""
        key = idempotency_key(self.spec.name, self.spec_hash, chunk.content_hash + salt)
        job_id = uuid.uuid4().hex
        self.ledger.add_job(
            None,
            job_id=job_id,
            run_id=self.run_id,
            sync_name=self.spec.name,
            endpoint=self.spec.endpoint,
            spec_hash=self.spec_hash,
            content_hash=chunk.content_hash,
            idempotency_key=key,
            file_name=chunk.path.name,
            rows=chunk.rows,
            nbytes=chunk.bytes,
        )
        failpoint("written")
        tracked = _Tracked(job_id, chunk.path, chunk.path.name, chunk.rows, chunk.content_hash, key, "written")
        if self.price is not None:
            tracked.reserved = self.price * chunk.rows
            self._spend(tracked.reserved)
        tracked.outcome = JobOutcome(job_id, chunk.path.name, chunk.rows, "written")
        self.result.jobs.append(tracked.outcome)
        self.jobs[job_id] = tracked
        # The producer's slot is given back when the API has answered, so extraction stays at most
        # `files_ahead` files ahead of the submissions (which the limiter paces) instead of racing to the end.
        tracked.holds_slot = True
        self._submit(tracked)

    def _is_deliberate(self, chunk: ChunkFile) -> bool:
        if self.full_refresh or self.spec.refresh.when == "always":
            return True
        return bool(chunk.meta.get("deliberate"))

    # ------------------------------------------------------------------ API calls (worker threads)

    def _dispatch(self, tracked: _Tracked, what: str, fn: Callable[[], Any]) -> None:
        tracked.busy = True

        def done(fut: Future[Any]) -> None:
            exc = fut.exception()
            self.events.put(("api", (tracked, what, exc if exc is not None else fut.result())))

        self._executor.submit(fn).add_done_callback(done)

    def _api_config(self) -> dict[str, Any]:
        return build_api_config(self.spec, self.inputs)

    def _submit(self, tracked: _Tracked) -> None:
        if tracked.file is None or self.stop_submitting:
            return
        if tracked.state != "submitting":
            self.ledger.set_job(tracked.job_id, "submitting")
            tracked.state = "submitting"
            failpoint("submitting")
        config = self._api_config()
        path = tracked.file
        self._dispatch(
            tracked,
            "submitted",
            lambda: self.client.submit(self.spec.endpoint, path, config, tracked.key),
        )

    def _on_submitted(self, tracked: _Tracked, value: SubmitResult | BaseException) -> None:
        if tracked.holds_slot:
            tracked.holds_slot = False
            self._slots.release()
        if isinstance(value, BaseException):
            self._submit_failed(tracked, value)
            return
        estimate: float | None = None if value.estimated_cost_cents is None else float(value.estimated_cost_cents)
        if estimate is None and value.is_replay:
            estimate = (
                tracked.estimate
                if tracked.estimate is not None
                else (None if self.price is None else round(self.price * tracked.rows, 2))
            )
        tracked.task_id = value.task_id
        tracked.estimate = float(estimate) if estimate is not None else None
        tracked.state = "submitted"
        self.ledger.set_job(
            tracked.job_id,
            "submitted",
            task_id=value.task_id,
            replay=int(value.is_replay),
            estimated_cost_cents=tracked.estimate,
            api_status=value.status,
        )
        failpoint("submitted")
        if value.estimated_cost_cents is not None and tracked.rows:
            self.price = value.estimated_cost_cents / tracked.rows
        self.result.rows_sent += tracked.rows
        if tracked.estimate is not None:
            self.result.estimated_cost_cents += tracked.estimate
            self._spend(tracked.estimate - tracked.reserved)
            tracked.reserved = 0.0
        if tracked.outcome:
            tracked.outcome.state, tracked.outcome.task_id = "submitted", value.task_id
            tracked.outcome.replay, tracked.outcome.estimated_cost_cents = value.is_replay, tracked.estimate
        self.reporter.on("submitted", self.spec.name, rows=tracked.rows, replay=value.is_replay, task_id=value.task_id)
        room = self._budget_room()
        if room is not None and room < -1e-9 and not value.is_replay:
            # The API's own estimate went past the budget: stop paying for this file if the API lets us.
            self._stop(
                "budget",
                f"the estimate for {tracked.file_name} ({tracked.estimate:,.0f} cents) went over the budget; "
                "the job was cancelled and nothing more was submitted",
            )
            self._cancel(tracked)
            return
        tracked.poller = self._poller()
        tracked.due = time.monotonic() + tracked.poller.next_delay(None)  # type: ignore[operator]

    def _submit_failed(self, tracked: _Tracked, exc: BaseException) -> None:
        if isinstance(exc, InsufficientCreditsError):
            self._reject(tracked, exc)
            self._stop(
                "no_credits",
                f"the API answered 402 (insufficient credits) for {tracked.file_name}; nothing was "
                "charged for it and nothing more was submitted. Jobs already running are finished.",
            )
        elif isinstance(exc, (FatalApiError, ConfigError)):
            self._reject(tracked, exc)
            self._stop("failed", f"the API refused {tracked.file_name}: {exc}")
        else:
            # Unknown whether it reached the API: keep it `submitting`; the next run resends it with the same key.
            msg = (
                f"submitting {tracked.file_name} failed after retries ({exc}); "
                "the next run resends it with the same key"
            )
            if tracked.outcome:
                tracked.outcome.error = str(exc)
            self.ledger.set_job(tracked.job_id, error=str(exc)[:2000])
            self._stop("failed", msg)

    def _reject(self, tracked: _Tracked, exc: BaseException) -> None:
        # Refused by the API: nothing is charged, so the budget held for it is free again.
        self._spend(-tracked.reserved)
        tracked.reserved = 0.0
        tracked.state = "rejected"
        self.ledger.set_job(tracked.job_id, "rejected", error=str(exc)[:2000])
        if tracked.outcome:
            tracked.outcome.state, tracked.outcome.error = "rejected", str(exc)

    def _poller(self) -> JobPoller:
        return JobPoller(initial=self.settings.poll_interval)

    def _poll(self, tracked: _Tracked) -> None:
        task = tracked.task_id
        assert task is not None
        self._dispatch(tracked, "polled", lambda: self.client.job_status(task))

    def _on_polled(self, tracked: _Tracked, value: JobStatus | BaseException) -> None:
        if isinstance(value, BaseException):
            if isinstance(value, FatalApiError):
                self._job_failed(tracked, f"job status refused: {value}")
                return
            delay = tracked.poller.next_delay(None) if tracked.poller else 5.0
            tracked.due = time.monotonic() + (delay or 5.0)
            log.warning("polling %s failed (%s); trying again", tracked.task_id, value)
            return
        assert tracked.poller is not None
        delay = tracked.poller.next_delay(value)
        if delay is not None:
            tracked.due = time.monotonic() + delay
            return
        if value.is_completed:
            charge = value.charge_amount_cents
            tracked.state = "completed"
            tracked.status = value
            self.ledger.set_job(
                tracked.job_id,
                "completed",
                api_status=value.status,
                charged_cents=None if charge is None else float(charge),
            )
            failpoint("completed")
            if charge is not None:
                self.result.charged_cents += float(charge)
            if tracked.outcome:
                tracked.outcome.state, tracked.outcome.charged_cents = "completed", charge
            self._download(tracked)
        else:
            self._job_failed(
                tracked,
                value.error or f"the job ended {value.status}",
                api_status=value.status,
                state="cancelled" if value.status in ("cancelled", "canceled") else "failed",
            )

    def _job_failed(
        self, tracked: _Tracked, message: str, *, api_status: str | None = None, state: str = "failed"
    ) -> None:
        tracked.state = state
        self.ledger.set_job(tracked.job_id, state, api_status=api_status, error=message[:2000])
        if tracked.outcome:
            tracked.outcome.state, tracked.outcome.error = state, message
        self.result.errors.append(f"{tracked.file_name} (task {tracked.task_id}): {message}")
        self.reporter.on("job_done", self.spec.name, state=state, rows=tracked.rows)
        if self.result.status == "ok":
            self.result.status = "partial"

    def _cancel(self, tracked: _Tracked) -> None:
        task = tracked.task_id
        assert task is not None
        self._dispatch(tracked, "cancelled", lambda: self.client.cancel(task))

    def _on_cancelled(self, tracked: _Tracked, value: Any) -> None:
        if isinstance(value, BaseException):
            self.result.errors.append(f"cancelling {tracked.task_id} failed: {value}; it may still be charged")
            tracked.poller = self._poller()
            tracked.due = time.monotonic()
            tracked.state = "submitted"
            return
        tracked.state = "cancelled"
        self.ledger.set_job(tracked.job_id, "cancelled", api_status="cancelled")
        if tracked.outcome:
            tracked.outcome.state = "cancelled"

    def _download(self, tracked: _Tracked) -> None:
        status = tracked.status
        task = tracked.task_id
        assert task is not None
        dest = self.results_dir / f"{tracked.job_id}.result"
        self._dispatch(
            tracked, "downloaded", lambda: self.client.download_result(status if status is not None else task, dest)
        )

    def _on_downloaded(self, tracked: _Tracked, value: ResultDownload | BaseException) -> None:
        if isinstance(value, BaseException):
            msg = f"downloading the result of {tracked.task_id} failed: {value}"
            if isinstance(value, (DownloadError, ApiError)):
                msg += "; the next run tries again (the job is paid for and kept)"
            self.result.errors.append(msg)
            self.ledger.set_job(tracked.job_id, error=msg[:2000])
            tracked.state = "completed_undownloaded"
            if self.result.status == "ok":
                self.result.status = "partial"
            return
        final = value.path.with_name(f"{tracked.job_id}.{value.format}")
        if value.path != final:
            os.replace(value.path, final)
        tracked.state = "downloaded"
        self.ledger.set_job(tracked.job_id, "downloaded", result_file=final.name, result_format=value.format)
        failpoint("downloaded")
        self._merge(tracked, final, value.format)

    # ------------------------------------------------------------------ merge

    def _merge(self, tracked: _Tracked, path: Path | None = None, fmt: str | None = None) -> None:
        if path is None:
            job = next(iter(j for j in self.ledger.jobs_for(sync_name=self.spec.name) if j.job_id == tracked.job_id))
            if not job.result_file:
                self._download(tracked)
                return
            path, fmt = self.results_dir / job.result_file, job.result_format
            if not path.is_file():
                self._download(tracked)
                return
        try:
            counts = self._merge_file(tracked, path, fmt or "csv")
        except Exception as exc:  # the job is paid for: keep it `downloaded` for the next run, whatever broke
            if not isinstance(exc, (ResultParseError, SixtyfourSyncError)):
                log.debug("merge failed", exc_info=True)
            msg = f"merging the result of {tracked.task_id} failed: {exc}; the next run tries again"
            self.result.errors.append(msg)
            self.ledger.set_job(tracked.job_id, error=msg[:2000])
            tracked.state = "merge_failed"
            if self.result.status == "ok":
                self.result.status = "partial"
            return
        tracked.state = "merged"
        failpoint("merged")
        if tracked.outcome:
            tracked.outcome.state = "merged"
            tracked.outcome.rows_enriched, tracked.outcome.rows_failed = counts["enriched"], counts["failed"]
            tracked.outcome.rows_not_returned, tracked.outcome.rows_unexpected = (
                counts["not_returned"],
                counts["unexpected"],
            )
        self.reporter.on("merged", self.spec.name, rows=counts["enriched"] + counts["failed"] + counts["not_returned"])
        self.reporter.on("job_done", self.spec.name, state="merged", rows=tracked.rows)
        if not self.settings.keep_files:
            if tracked.file is not None:
                tracked.file.unlink(missing_ok=True)
            path.unlink(missing_ok=True)

    def _sent_rows(self, tracked: _Tracked) -> pa.Table | None:
        """Key and input hash of the rows in the submitted file (None when the file is not here)."""
        if tracked.file is None or not tracked.file.is_file():
            return None
        path = literal(str(tracked.file))
        cols = [
            f"TRY_CAST(json_extract_string(json, {json_path(k)}) AS {duck_type(t)}) AS {ident(k)}"
            for k, t in self.key_types.items()
        ]
        cols.append(f"json_extract_string(json, {json_path(HASH_COLUMN)}) AS {ident(HASH_COLUMN)}")
        sql = f"SELECT {', '.join(cols)} FROM read_ndjson_objects({path}, maximum_object_size = 33554432)"
        return local_duckdb().sql(sql).to_arrow_table()

    def _merge_file(self, tracked: _Tracked, path: Path, fmt: str) -> dict[str, int]:
        spec = self.spec
        key = list(spec.source.key)
        parsed = parse_result(
            path,
            fmt=fmt,
            key_types=self.key_types,
            struct=spec.struct,
            field_confidence=spec.field_confidence,
            carry=[HASH_COLUMN],
        )
        if parsed.missing_columns:
            msg = f"{tracked.file_name}: the result has no column(s) {', '.join(parsed.missing_columns)}; left empty"
            self.result.warnings.append(msg)
        sent = self._sent_rows(tracked)
        on = " AND ".join(f"r.{ident(k)} = s.{ident(k)}" for k in key)
        if sent is not None:
            res = parsed.table.drop_columns([HASH_COLUMN]) if HASH_COLUMN in parsed.table.column_names else parsed.table
            with registered(res, sent) as (con, (r_name, s_name)):
                unexpected = _count(
                    con, f"SELECT count(*) FROM {r_name} r WHERE NOT EXISTS (SELECT 1 FROM {s_name} s WHERE {on})"
                )
                # rows the API returned for keys that were sent, with the hash that was sent
                returned = con.sql(
                    f"SELECT r.*, s.{ident(HASH_COLUMN)} AS __hash FROM {r_name} r JOIN {s_name} s ON {on}"
                ).to_arrow_table()
                missing = con.sql(
                    f"SELECT s.* FROM {s_name} s WHERE NOT EXISTS (SELECT 1 FROM {r_name} r WHERE {on}) "
                    f"QUALIFY row_number() OVER (PARTITION BY {', '.join('s.' + ident(k) for k in key)}) = 1"
                ).to_arrow_table()
        else:
            # Resumed on another machine: the file that was sent is gone. The result carries the input hash
            # (it was an uploaded column); without it the rows count as changed on the next run.
            unexpected = 0
            table = parsed.table
            if HASH_COLUMN in table.column_names:
                returned = table.rename_columns([c if c != HASH_COLUMN else "__hash" for c in table.column_names])
                note = "the submitted file is not on this machine: result keys were not checked against it"
            else:
                returned = table.append_column("__hash", pa.nulls(table.num_rows, pa.string()))
                note = (
                    "the submitted file is not on this machine and the result has no input hashes: "
                    "these rows count as changed next run"
                )
            missing = pa.table(
                {k: pa.array([], t) for k, t in self.key_types.items()} | {HASH_COLUMN: pa.array([], pa.string())}
            )
            self.result.warnings.append(f"{tracked.file_name}: {note}")
        now = utcnow()
        task = tracked.task_id

        def with_bookkeeping(table: pa.Table, status: str | None, hashes: pa.ChunkedArray | pa.Array) -> pa.Table:
            n = table.num_rows
            if status is not None:
                table = table.append_column("_sixtyfour_status", pa.array([status] * n, pa.string()))
            table = table.append_column("_sixtyfour_enriched_at", pa.array([now] * n, pa.timestamp("us", tz="UTC")))
            table = table.append_column("_sixtyfour_task_id", pa.array([task] * n, pa.string()))
            table = table.append_column("_sixtyfour_input_hash", hashes)
            table = table.append_column("_sixtyfour_spec_hash", pa.array([self.spec_hash] * n, pa.string()))
            return table

        status_col = returned.column("_sixtyfour_status")
        enriched_mask = pc.equal(status_col, "enriched")
        enriched = returned.filter(enriched_mask)
        failed = returned.filter(pc.invert(enriched_mask))
        field_cols = list(spec.struct)
        conf_cols = [f"{f}_confidence" for f in spec.struct] if spec.field_confidence else []
        rename = {c: spec.column_for(c) for c in [*field_cols, *conf_cols]}

        def shape_enriched(t: pa.Table) -> pa.Table:
            cols = {k: t.column(k) for k in key}
            for c in [*field_cols, *conf_cols]:
                cols[rename[c]] = t.column(c)
            out = pa.table(cols)
            out = out.append_column("_sixtyfour_status", t.column("_sixtyfour_status"))
            return with_bookkeeping(out, None, t.column("__hash"))

        def shape_failed(t: pa.Table, hash_col: str) -> pa.Table:
            out = pa.table({k: t.column(k) for k in key})
            return with_bookkeeping(out, "failed", t.column(hash_col))

        parts = []
        owned_fields = [rename[c] for c in [*field_cols, *conf_cols]]
        if enriched.num_rows:
            parts.append(UpsertPart(shape_enriched(enriched), [*owned_fields, *BOOKKEEPING_COLUMNS]))
        failed_rows = failed.num_rows + missing.num_rows
        if failed.num_rows:
            parts.append(UpsertPart(shape_failed(failed, "__hash"), list(BOOKKEEPING_COLUMNS)))
        if missing.num_rows:
            parts.append(
                UpsertPart(shape_failed(missing.select([*key, HASH_COLUMN]), HASH_COLUMN), list(BOOKKEEPING_COLUMNS))
            )
        counts = {
            "enriched": enriched.num_rows,
            "failed": failed.num_rows,
            "not_returned": missing.num_rows,
            "unexpected": int(unexpected),
        }

        def ledger_write(session: Session) -> None:
            failpoint("merging")  # inside the transaction: a crash here must leave the target as it was
            self.ledger.set_job(
                tracked.job_id,
                "merged",
                session=session,
                rows_enriched=counts["enriched"],
                rows_failed=counts["failed"],
                rows_not_returned=counts["not_returned"],
                rows_unexpected=counts["unexpected"],
            )

        self.adapter.upsert(self.target, key, parts, before_commit=ledger_write)
        r = self.result
        r.rows_enriched += counts["enriched"]
        r.rows_failed += counts["failed"]
        r.rows_not_returned += counts["not_returned"]
        r.rows_unexpected += counts["unexpected"]
        r.rows_merged += counts["enriched"] + failed_rows
        r.returned += returned.num_rows
        for f in field_cols:
            r.filled[f] = r.filled.get(f, 0) + int(pc.sum(pc.is_valid(returned.column(f))).as_py() or 0)
        if counts["unexpected"]:
            r.warnings.append(
                f"{tracked.file_name}: {counts['unexpected']} result row(s) had keys that were never sent; "
                "they were not merged"
            )
        if counts["not_returned"]:
            r.warnings.append(
                f"{tracked.file_name}: {counts['not_returned']} sent row(s) came back without a result; marked failed"
            )
        if parsed.duplicate_keys:
            r.warnings.append(f"{tracked.file_name}: {parsed.duplicate_keys} duplicate result row(s) were folded")
        return counts

    # ------------------------------------------------------------------ stopping

    def _stop(self, status: str, message: str) -> None:
        if not self.stop_submitting:
            self.result.errors.append(message)
            self.reporter.on("note", self.spec.name, message=message, level="error")
        self.stop_submitting = True
        self._producer_stop.set()
        if self.result.status in ("ok", "partial", "nothing_to_do"):
            self.result.status = status
        self.stop_reason = status

    def _finish_status(self) -> None:
        r = self.result
        if r.status == "ok" and any(j.state in ("failed", "cancelled") for j in r.jobs):
            r.status = "partial"


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = fetch_one(con, sql)
    return int(row[0]) if row else 0
