"""The sync engine: rows from the warehouse to Sixtyfour and back, safely with money and data.

One sync runs as a small pipeline:

- before anything new, the jobs earlier runs left unfinished are finished (:meth:`SyncRunner._resume`): a
  file whose local copy is gone is rebuilt from the warehouse by the row keys the ledger kept, and resent
  with its stored Idempotency-Key;
- an extraction thread streams the selection (``select.py``) from its own connection into JSONL files
  (``extract.py``), at most a couple ahead of the submissions, so memory and disk stay bounded;
- the main thread owns the warehouse connection: it checks the budget before every submission (a one-row
  first file learns the price when none is known), records every move of every job in the ledger before the
  side effect that follows it (``jobs.py``), and merges each result in one transaction with its ledger row;
- a few worker threads make the API calls and parse results (``scheduler.py``).

The runner is one class in five parts: its state (runner_base.py), the target (runner_target.py), resuming
(runner_resume.py), stored answers (runner_reuse.py), new work (runner_submit.py); the pass and the event loop are
here.

A crash at any instant followed by another ``run`` converges on the same target as an uninterrupted run, and
a question is paid at most once unless the user asked to ask it again.
"""

from __future__ import annotations

import json
import math
import time

from sixtyfour_sync.api.schema import validate_config
from sixtyfour_sync.config.models import build_api_config
from sixtyfour_sync.engine.context import EngineSettings, Reporter, RunRecorder
from sixtyfour_sync.engine.events import ApiAnswer, Event, FileWritten, ProducerDone, ProducerFailed, RowsScanned
from sixtyfour_sync.engine.jobs.budget import Budget
from sixtyfour_sync.engine.jobs.states import ACTIVE
from sixtyfour_sync.engine.plan.columns import owned_columns, resolve_inputs, resolve_key_types, target_ref
from sixtyfour_sync.engine.plan.planner import plan_sync
from sixtyfour_sync.engine.plan.prices import resolve_price
from sixtyfour_sync.engine.results import result_files
from sixtyfour_sync.engine.reuse.question import question_id, stores_answers
from sixtyfour_sync.engine.rows.deletions import check_delete
from sixtyfour_sync.engine.rows.files import SpilledTable
from sixtyfour_sync.engine.rows.select import (
    Selection,
    build_selection,
    source_relation_sql,
)
from sixtyfour_sync.engine.runner_base import SENT_SUFFIX, S, _no_guard
from sixtyfour_sync.engine.runner_resume import ResumeSteps
from sixtyfour_sync.engine.runner_reuse import ReuseSteps
from sixtyfour_sync.engine.runner_submit import SubmitSteps
from sixtyfour_sync.engine.runner_target import TargetSteps
from sixtyfour_sync.engine.summary import SyncResult
from sixtyfour_sync.errors import ConfigError, ConfigProblem, SixtyfourSyncError

__all__ = [
    "Budget",
    "EngineSettings",
    "Reporter",
    "RunRecorder",
    "SyncRunner",
    "owned_columns",
    "plan_sync",
    "target_ref",
]


class SyncRunner(TargetSteps, ResumeSteps, ReuseSteps, SubmitSteps):
    """Runs one sync: resume what is unfinished, then select, submit, poll, download, merge."""

    # ------------------------------------------------------------------ entry point

    def run(self) -> SyncResult:
        """Resume unfinished jobs, then send the rows that need work; return the outcome."""
        ctx = self.ctx
        if ctx.lease is not None:
            ctx.ledger.guard = ctx.lease.check
        finished = False
        try:
            if not self.prepared:
                self.prepare()
            for stale in ctx.files_dir.glob(f"*{SENT_SUFFIX}") if ctx.files_dir.is_dir() else ():
                stale.unlink(missing_ok=True)  # what a killed run's files sent: only that run used it
            result_files.clean_leftovers(ctx.results_dir)  # downloads a killed run left half-written
            if self.step.own_pass and ctx.settings.only_tasks is None:
                self._merge_quarantined()
            self._resume()
            finishing_only = ctx.settings.only_tasks is not None
            if (
                self.stop_reason is None
                and not ctx.stop.requested
                and self.driver.key_refused is None
                and not finishing_only
            ):
                self._run_new()
                if self.stop_reason is None and not ctx.stop.requested and self.driver.key_refused is None:
                    self._source_deletions()
            if self.driver.key_refused is not None:
                raise self.driver.key_refused
            finished = True
        except SixtyfourSyncError as exc:
            self.stop_sync("failed", str(exc))
            raise
        finally:
            if self.producer is not None:
                # The extraction thread reads on the warehouse connection's cursor: it must be gone before the
                # connection does anything else (or is closed).
                self.producer.stop()
                self.producer.join()
            if self.keys_adapter is not None:
                self.keys_adapter.close()
            for chunk, _ in self.waiting_files:
                chunk.path.unlink(missing_ok=True)
            for t in self.driver.jobs.values():
                if isinstance(t.sent, SpilledTable):
                    t.sent.discard()  # a resumed job reads what it sent from its file (or the ledger's keys)
            ctx.scheduler.shutdown()
            ctx.ledger.guard = _no_guard
            if not finished:
                self._record_step()
        self._finish_status()
        self._record_step()
        return self.result

    @property
    def step_name(self) -> str:
        """How the ledger names this runner's step: ``own``, ``fields:<f1,f2>@<tier>`` or ``escalate:<tier>``."""
        return self.step.name

    def _reasons(self) -> dict[str, int]:
        """The step's selection by reason, as the run's numbers name them (``escalate:<tier>``)."""
        if self.step.kind != "escalate":
            return dict(self.result.rows_by_reason)
        tier = self.ctx.spec.tier
        return {(f"escalate:{tier}" if k == "escalate" else k): n for k, n in self.result.rows_by_reason.items()}

    def _record_step(self) -> None:
        """Keep the step's status and selection for the ledger (engine/ledger/accounting.py derives the run's numbers
        from them and the jobs); the run's recorder writes them once the sync is done (RunRecorder.flush)."""
        ctx, r = self.ctx, self.result
        if self.step_recorded:
            return
        self.step_recorded = True
        ctx.recorder.steps.append(
            {
                "run_id": ctx.run_id,
                "sync_name": ctx.name,
                "target": ctx.target_id,
                "step": self.step_name,
                "seq": ctx.recorder.next_seq(),
                "status": r.status,
                "rows_by_reason": json.dumps(self._reasons(), sort_keys=True),
                "rows_released": r.rows_released,
                "rows_source_deleted": r.rows_source_deleted,
                "rows_source_restored": r.rows_source_restored,
                "source_deletion": r.source_deletion or None,
            }
        )

    def prepare(self) -> None:
        """Read the source's shape and check the API config locally: nothing is written, nothing is sent."""
        ctx, spec = self.ctx, self.ctx.spec
        self.source_sql = source_relation_sql(ctx.adapter, spec, self.ref_table)
        self.inputs = resolve_inputs(ctx.adapter, ctx.loaded, self.source_sql)
        # Key types first: a key the sync cannot carry exactly is refused before anything is written or paid.
        ctx.key_specs = resolve_key_types(ctx.adapter, ctx.loaded, self.source_sql)
        ctx.key_types = {k: kt.arrow for k, kt in ctx.key_specs.items()}
        ctx.api_config = build_api_config(spec, self.inputs)
        if stores_answers(spec, own_pass=self.step.own_pass):
            ctx.question = question_id(spec, self.inputs or list(spec.source.key))
        try:  # the API's own rules (config size, struct types...), checked before anything is written
            validate_config(spec.endpoint, ctx.api_config)
        except ConfigError as exc:
            problems = [
                ConfigProblem(
                    str(ctx.loaded.file), f"{spec.name}.{p.path}", p.message, line=ctx.loaded.line, hint=p.hint
                )
                for p in exc.problems
            ] or [ConfigProblem(str(ctx.loaded.file), spec.name, str(exc), line=ctx.loaded.line)]
            raise ConfigError(problems=problems) from exc
        if spec.target.on_source_delete == "delete" and ctx.adapter.table_exists(ctx.target):
            columns = ctx.adapter.get_columns(ctx.target)  # checked before anything is paid for
            check_delete(spec, columns, spec.output_columns(), spec.source.key, where=str(ctx.loaded.file))
        ledger = ctx.ledger if ctx.ledger.exists() else None
        price = resolve_price(spec, ledger, ctx.settings.prices)
        self.price = None if price is None else price.cents_per_row
        self.prepared = True

    def _selections(self, *, buckets: int = 1, probe: bool = False, stored: str | None = None) -> list[Selection]:
        """The selection, as ``buckets`` queries over disjoint sets of keys (one when the dialect sorts all);
        ``probe``: one unordered query that does not count rows per key (see ``SubmitSteps._probe``); ``stored``:
        joined to the answer store's answers (see ``ReuseSteps``)."""
        ctx = self.ctx
        a = ctx.adapter
        if self.target_columns is None:
            exists = a.table_exists(ctx.target)
            if exists:
                ctx.target_ready = False  # columns may be missing; checked before the first merge
            self.target_columns = (a.get_columns(ctx.target),) if exists else (None,)
            read = self.target_columns[0]
            if self.step.own_pass and read is not None and not self.full_refresh and ctx.spec.refresh.when != "always":
                self.changes = self._field_changes(read)
        columns = self.target_columns[0]
        not_whole = self.changes.not_whole if self.changes is not None else []
        failed_current = self.changes.failed_current if self.changes is not None else []
        return [
            build_selection(
                a,
                ctx.spec,
                source_sql=self.source_sql,
                inputs=self.inputs,
                target=ctx.target,
                target_columns=columns,
                spec_hash=ctx.spec_hash,
                full_refresh=self.full_refresh,
                bucket=(b, buckets) if buckets > 1 else None,
                not_whole=not_whole,
                failed_current=failed_current,
                key_types=ctx.key_specs,
                probe=probe,
                stored=stored,
                **self.step.selection_args(),
                group_questions=self.group_questions,
            )
            for b in range(buckets)
        ]

    # ------------------------------------------------------------------ main loop

    def _loop(self) -> None:
        ctx, d = self.ctx, self.driver
        while True:
            if ctx.lease is not None:
                ctx.lease.check()
            now = time.monotonic()
            stopping = ctx.stop.requested or d.key_refused is not None
            if stopping and self.stop_reason is None and ctx.stop.requested:
                self._interrupted()
            producing = self.producer is not None and not self.producer.done and not stopping
            work = d.waiting() or self.waiting_files
            # Settled: no API call under way and none of their answers still queued (a submission's answer
            # is recorded before the run leaves, whatever the reason it leaves).
            settled = ctx.scheduler.settled()
            if (stopping and settled) or (not work and settled and not producing):
                d.merger.flush()  # paid results waiting are merged before the run leaves
                d.record_all_completed()
                return
            limit = ctx.settings.max_wait_seconds
            # --max-wait bounds the waiting for jobs, not the sending: the files still being written are sent first
            # (under load, a short limit could otherwise pass before the selection's last file was submitted).
            if limit is not None and now - self._started > limit and settled and not producing:
                d.merger.flush()
                d.record_all_completed()
                self._give_up_waiting()
                return
            d.dispatch_due(now, stopping=stopping)
            nxt = d.next_due()
            timeout = 0.5 if nxt is None else min(5.0, max(0.02, nxt - time.monotonic()))
            merger = d.merger
            # Results that arrive together are merged together; the batch goes when it is full, when it has
            # waited long enough, or when no job could add to it soon.
            coming = any(t.busy or t.action in ("poll", "download") for t in d.jobs.values())
            if merger.due(more_coming=coming):
                merger.flush()
            if not producing and not merger.pending:
                ctx.adapter.release()  # the run waits for the API: a DuckDB file is free for others meanwhile
            event = ctx.scheduler.next_event(min(timeout, 0.2) if merger.pending else timeout)
            if event is not None:
                self._handle(event)

    def _handle(self, event: Event) -> None:
        if isinstance(event, ApiAnswer):
            self.driver.handle(event)
        elif isinstance(event, FileWritten):
            self._on_file(event.chunk)
        elif isinstance(event, RowsScanned):
            self.ctx.reporter.on("scanned", self.ctx.name, rows=event.rows)
        elif isinstance(event, ProducerDone):
            if self.producer is not None:
                self.producer.done = True
            if self.scan is not None:
                total = sum(self.scan.rows_by_reason.values())
                files = math.ceil(total / self.ctx.spec.chunk_rows) if total else 0
                self.ctx.reporter.on("plan", self.ctx.name, rows=total, files=files)
                self._scan_done()
        elif isinstance(event, ProducerFailed):
            if self.producer is not None:
                self.producer.stop()
            if isinstance(event.error, SixtyfourSyncError):
                self.stop_sync("failed", str(event.error))
            else:
                raise event.error

    def _interrupted(self) -> None:
        reason = self.ctx.stop.reason or "stopped"
        self.stop_reason = "interrupted"
        if self.producer is not None:
            self.producer.stop()
        for chunk, holds_slot in self.waiting_files:
            chunk.path.unlink(missing_ok=True)
            if holds_slot:
                self.release_slot()
        self.waiting_files = []
        self.result.status = "interrupted"
        self.result.warnings.append(f"{reason}: nothing more was submitted; jobs in flight are kept")

    def _give_up_waiting(self) -> None:
        waiting = [t for t in self.driver.jobs.values() if t.state in ACTIVE]
        if self.producer is not None:
            self.producer.stop()
        self.stop_reason = "waited"
        msg = (
            f"stopped waiting after {self.ctx.settings.max_wait_seconds:.0f}s with {len(waiting)} job(s) "
            "unfinished; `sixtyfour-sync run` picks them up"
        )
        self.result.warnings.append(msg)
        self.ctx.note(msg, "warning")
        if self.result.status in ("ok", "nothing_to_do"):
            self.result.status = "partial"

    def _finish_status(self) -> None:
        r = self.result
        in_flight = r.jobs_in_flight
        if self.ctx.settings.no_wait and r.status in ("ok", "nothing_to_do") and not r.jobs_needing_attention:
            waiting = [j for j in in_flight if j.state == S.SUBMITTED.value]
            if waiting:
                r.status = "ok"
                r.submitted_only = len(waiting)
                self.ctx.note(
                    f"{len(waiting)} job(s) in flight; they finish via webhook (`sixtyfour-sync webhooks serve`) "
                    "or the next run"
                )
            if len(waiting) == len(in_flight):
                return
        if r.status == "ok" and (in_flight or r.jobs_needing_attention):
            r.status = "partial"
