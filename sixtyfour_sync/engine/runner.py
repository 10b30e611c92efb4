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

A crash at any instant followed by another ``run`` converges on the same target as an uninterrupted run, and
a question is paid at most once unless the user asked to ask it again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.api import JobPoller, SixtyfourClient
from sixtyfour_sync.api.schema import validate_config
from sixtyfour_sync.config.models import LoadedSync, SyncSpec, build_api_config
from sixtyfour_sync.engine.context import EngineSettings, Reporter, RunRecorder, SyncContext
from sixtyfour_sync.engine.events import ApiAnswer, Event, FileWritten, ProducerDone, ProducerFailed, RowsScanned
from sixtyfour_sync.engine.failpoints import failpoint
from sixtyfour_sync.engine.jobs.budget import Budget, fit_file
from sixtyfour_sync.engine.jobs.driver import JobDriver, Tracked
from sixtyfour_sync.engine.jobs.keys import idempotency_key, salt_for
from sixtyfour_sync.engine.jobs.scheduler import Scheduler, StopToken
from sixtyfour_sync.engine.jobs.states import ACTIVE, HELD, HOLDS_ROWS, JobState
from sixtyfour_sync.engine.ledger.lease import Lease
from sixtyfour_sync.engine.ledger.localdb import duck_type, ident, json_path, literal, local_duckdb
from sixtyfour_sync.engine.ledger.rowkeys import key_prefix
from sixtyfour_sync.engine.ledger.store import Job, Ledger
from sixtyfour_sync.engine.plan.columns import owned_columns, resolve_inputs, resolve_key_types, target_ref
from sixtyfour_sync.engine.plan.planner import plan_sync, read_field_changes
from sixtyfour_sync.engine.plan.prices import resolve_price
from sixtyfour_sync.engine.results import quarantine, result_files, targets
from sixtyfour_sync.engine.results.parse import max_object_size
from sixtyfour_sync.engine.results.target_table import ensure_target, key_columns
from sixtyfour_sync.engine.rows.deletions import check_delete, deletion_statements, scope_sql
from sixtyfour_sync.engine.rows.extract import Producer, ScanStats, denormalize, rebuild_file
from sixtyfour_sync.engine.rows.files import ChunkFile, SpilledTable, head_chunk, spill, tail_chunk
from sixtyfour_sync.engine.rows.select import (
    EXISTS_COLUMN,
    HASH_COLUMN,
    KEY_HASH_COLUMN,
    KEY_PREFIX_COLUMN,
    Selection,
    bucket_count,
    build_selection,
    keep_keys,
    rebuild_sql,
    sent_rows,
    source_relation_sql,
)
from sixtyfour_sync.engine.steps.field_changes import FieldChanges
from sixtyfour_sync.engine.steps.new_fields import step_name
from sixtyfour_sync.engine.summary import JobOutcome, SyncResult
from sixtyfour_sync.errors import ConfigError, ConfigProblem, SixtyfourSyncError
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.types import TableRef

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

log = logging.getLogger("sixtyfour_sync.engine")
S = JobState
#: Beside a file in flight: what it sent (its keys and input hashes), until its result is merged.
SENT_SUFFIX = ".sent.arrow"


class SyncRunner:
    """Runs one sync: resume what is unfinished, then select, submit, poll, download, merge."""

    def __init__(
        self,
        *,
        loaded: LoadedSync,
        adapter: Adapter,
        ledger: Ledger,
        client: SixtyfourClient,
        run_id: str,
        settings: EngineSettings,
        budget: Budget,
        recorder: RunRecorder,
        stop: StopToken | None = None,
        lease: Lease | None = None,
        reporter: Reporter | None = None,
        ref_table: TableRef | None = None,
        full_refresh: bool = False,
        extract_adapter: Any = None,
        escalate_from: str | None = None,
        field_stamps: Sequence[str] | None = None,
    ) -> None:
        spec = loaded.spec
        self.ctx = SyncContext(
            loaded=loaded,
            adapter=adapter,
            ledger=ledger,
            client=client,
            run_id=run_id,
            settings=settings,
            budget=budget,
            reporter=reporter or Reporter(),
            recorder=recorder,
            stop=stop or StopToken(),
            scheduler=Scheduler(settings.api_workers, f"sf-{spec.name}"),
            lease=lease,
            result=SyncResult(spec.name),
            target=target_ref(spec),
            spec_hash=spec.spec_hash(),
            files_dir=settings.state_dir / "files" / spec.name,
            results_dir=settings.state_dir / "results" / spec.name,
        )
        self.driver = JobDriver(self.ctx, self)
        self.ref_table = ref_table
        self.full_refresh = full_refresh
        self.extract_adapter = extract_adapter
        #: An escalation step: only rows whose current answer came from this tier, and are weak, are asked.
        self.escalate_from = escalate_from
        #: A "new fields" step: the stamps whose enriched rows get just this step's fields.
        self.field_stamps = None if field_stamps is None else list(field_stamps)
        #: The sync's own pass: what the target's stamps still need (see engine/steps/field_changes.py).
        self.changes: FieldChanges | None = None
        self.price: float | None = None
        self.sync_spent = 0.0
        self.stop_reason: str | None = None
        self.inputs: list[str] = []
        self.source_sql = ""
        self.producer: Producer | None = None
        self.keys_adapter: Adapter | None = None
        self.scan: ScanStats | None = None
        #: Files waiting for the price to be learned (the first, one-row file is in flight), with whether
        #: each holds an extraction slot.
        self.waiting_files: list[tuple[ChunkFile, bool]] = []
        #: Under a budget, the next file waits for the estimate of the one submitted before it: files are fitted
        #: with the price the API quotes now, so a price that moved is seen before anything more is sent.
        self.awaiting_estimate = False
        #: Whether this run has seen the API quote the price (a price from the ledger or the config is checked
        #: with a one-row first file under a budget: it may have moved since).
        self.price_confirmed = False
        #: Whether the target was checked (and made ready) before this runner's first submission.
        self.target_checked = False
        self.prepared = False
        self.step_recorded = False
        self._started = time.monotonic()

    @property
    def result(self) -> SyncResult:
        """The outcome so far."""
        return self.ctx.result

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
            if self.escalate_from is None and self.field_stamps is None and ctx.settings.only_tasks is None:
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
        return step_name(self.ctx.spec, escalated=self.escalate_from is not None)

    def _reasons(self) -> dict[str, int]:
        """The step's selection by reason, as the run's numbers name them (``escalate:<tier>``)."""
        if self.escalate_from is None:
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

    def _selections(self, *, buckets: int = 1) -> list[Selection]:
        """The selection, as ``buckets`` queries over disjoint sets of keys (one when the dialect sorts all)."""
        ctx = self.ctx
        a = ctx.adapter
        exists = a.table_exists(ctx.target)
        if exists:
            ctx.target_ready = False  # columns may be missing; checked before the first merge
        columns = a.get_columns(ctx.target) if exists else None
        own_pass = self.escalate_from is None and self.field_stamps is None
        if own_pass and columns is not None and not self.full_refresh and ctx.spec.refresh.when != "always":
            self.changes = self._field_changes(columns)
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
                escalate_from=self.escalate_from,
                not_whole=not_whole,
                failed_current=failed_current,
                field_stamps=self.field_stamps,
                key_types=ctx.key_specs,
            )
            for b in range(buckets)
        ]

    # ------------------------------------------------------------------ the target, before paying

    def _source_is_target(self) -> bool:
        spec, a = self.ctx.spec, self.ctx.adapter
        if not spec.source.table:
            return False
        return a.table_sql(TableRef(spec.source.table, spec.source.schema_, spec.source.database)) == self.ctx.target_id

    def _prepare_target(self, first: ChunkFile) -> str | None:
        """Check the target before the first submission (engine/results/targets.py): None, or why the sync stops without
        paying. Nothing is written: the first merge creates or completes the target."""
        ctx, spec, a = self.ctx, self.ctx.spec, self.ctx.adapter
        inputs = self.inputs if self._source_is_target() else []
        try:
            problems = targets.check(a, ctx.ledger, ctx.loaded, ctx.target, ctx.target_id, inputs_of_target=inputs)
            if problems:
                return str(targets.refuse(ctx.loaded, ctx.target, problems))
            assert first.kept is not None
            sample = {k: first.kept.column(k).slice(0, 1) for k in spec.source.key}
            refusal = targets.dry_run(a, spec, ctx.target, sample, key_columns(ctx))
        except SixtyfourSyncError as exc:
            return f"the target {ctx.target} cannot be checked: {exc}; nothing was sent"
        if refusal is not None:
            return str(targets.refuse(ctx.loaded, ctx.target, [f"a row like this sync's was refused: {refusal}"]))
        return None

    # ------------------------------------------------------------------ rows gone from the source

    def _source_deletions(self) -> None:
        """``target.on_source_delete``: flag or delete the target rows whose key left the source (one statement)."""
        ctx, spec, a = self.ctx, self.ctx.spec, self.ctx.adapter
        if not spec.target.tracks_deletions or self.escalate_from is not None or self.field_stamps is not None:
            return
        source = TableRef(spec.source.table, spec.source.schema_, spec.source.database) if spec.source.table else None
        if source is not None and a.table_sql(source) == a.table_sql(ctx.target):
            return  # the target is the source: its rows go with the source's
        if not a.table_exists(ctx.target):
            return
        ensure_target(self.ctx)  # the flag column of a sync that just turned flagging on
        columns = a.get_columns(ctx.target)
        check_delete(spec, columns, spec.output_columns(), spec.source.key, where=str(ctx.loaded.file))
        statements = deletion_statements(
            a, spec, ctx.target, columns, scope_sql(a, spec, self.ref_table), key_types=ctx.key_specs
        )
        if ctx.lease is not None:
            ctx.lease.confirm()
        counts: dict[str, int] = {}
        with a.session() as s:
            for sql, what in statements:
                counts[what] = max(0, s.execute_count(sql))
        r = self.result
        r.source_deletion = "deleted" if spec.target.on_source_delete == "delete" else "flagged"
        r.rows_source_deleted = counts.get("deleted", 0) + counts.get("flagged", 0)
        r.rows_source_restored = counts.get("unflagged", 0)
        if r.status == "nothing_to_do" and (r.rows_source_deleted or r.rows_source_restored):
            r.status = "ok"

    # ------------------------------------------------------------------ quarantined answers

    def _merge_quarantined(self) -> None:
        """Merge the answers an earlier run held because the target refused them; say what is still held."""
        ctx = self.ctx
        held = ctx.ledger.quarantined(ctx.name, ctx.target_id) if ctx.ledger.exists() else []
        if not held:
            return
        key = list(ctx.spec.source.key)
        by_spec: dict[str, list[dict[str, Any]]] = {}
        for row in held:
            by_spec.setdefault(str(row["merge_spec"]), []).append(row)
        still: list[dict[str, Any]] = []
        for spec_text, rows in by_spec.items():
            part = quarantine.part_from_rows(quarantine.unpack_rows([str(r["row_data"]) for r in rows]), spec_text)
            ids = [str(r["quarantine_id"]) for r in rows]

            def attempt(start: int, stop: int, part: Any = part, ids: list[str] = ids) -> None:
                def release(session: Any) -> None:
                    ctx.ledger.release_quarantined(ids[start:stop], session)

                ctx.adapter.upsert(ctx.target, key, [quarantine.slice_part(part, start, stop)], before_commit=release)

            ensure_target(self.ctx)
            try:
                attempt(0, len(rows))
                refused: list[quarantine.Refused] | None = []
            except quarantine.REFUSALS:
                refused = quarantine.find_refused(attempt, len(rows))
            left = rows if refused is None else [rows[r.index] for r in refused]
            self.result.rows_released += len(rows) - len(left)
            still.extend(left)
        if self.result.rows_released:
            ctx.note(f"{self.result.rows_released:,} held row(s) the target refused before are merged now")
        if still:
            self.driver.partial(
                f"{len(still):,} paid row(s) the target refused are still held, not asked again (e.g. "
                f"{still[0]['key_text']}: {still[0]['reason']}); `sixtyfour-sync status` lists them"
            )

    # ------------------------------------------------------------------ resume

    def _resume(self) -> None:
        ctx = self.ctx
        if not ctx.ledger.exists():
            return
        every = ctx.ledger.jobs_for(sync_name=ctx.name, states=sorted(ACTIVE | HELD))
        elsewhere = [j for j in every if not j.belongs_to(ctx.target_id)]
        if elsewhere:  # another target's jobs (dev and prod sharing a ledger): left for a run against it
            where = sorted({f"{j.target} ({j.profile_target or 'another target'})" for j in elsewhere})
            ctx.note(
                f"{len(elsewhere)} unfinished job(s) of this sync answer another target ({', '.join(where)}): left "
                "for a run against it"
            )
        jobs = [j for j in every if j.belongs_to(ctx.target_id) and self._owns(j)]
        only = ctx.settings.only_tasks
        if only is not None:  # a webhook receiver finishes the tasks it heard of, nothing else
            jobs = [j for j in jobs if j.task_id in only and j.state in ACTIVE]
        held = [j for j in jobs if j.state in HELD and not self._retrying(j.state)]
        todo = [j for j in jobs if j.state in ACTIVE or (j.state in HELD and self._retrying(j.state))]
        if held:
            # Paid (or perhaps paid) work that needs a person: every run says so until it is dealt with.
            for job in held:
                self.result.jobs.append(self._outcome(job))
            self.driver.partial(
                f"{len(held)} job(s) need attention and hold their rows (not asked again): `sixtyfour-sync status` "
                "says what to do"
            )
        if not todo:
            return
        ctx.recorder.ensure()
        self.result.resumed.jobs = len(todo)
        ctx.note(f"finishing {len(todo)} unfinished job(s) from earlier runs")
        selection = self._selections()[0]
        for job in todo:
            t = self._track_existing(job)
            self._restart(t, selection)
        self._loop()

    def _field_changes(self, columns: Mapping[str, Any]) -> FieldChanges | None:
        ctx = self.ctx
        if not ctx.ledger.exists():
            return None
        return read_field_changes(ctx.adapter, ctx.ledger, ctx.spec, ctx.target, columns)

    def _owns(self, job: Job) -> bool:
        """Whether this runner finishes ``job``: a step its own jobs (tier, fields), the sync the others."""
        spec = self.ctx.spec
        mine = ",".join(sorted(spec.struct)) if spec.field_subset else None
        if (job.fields or None) != mine:
            return False
        if spec.question_tier != spec.tier:
            return job.tier == spec.tier
        return job.tier is None or job.tier not in spec.escalate

    def _retrying(self, state: JobState) -> bool:
        s = self.ctx.settings
        return (state in (S.LOST, S.NEEDS_ATTENTION) and s.retry_lost) or (
            state is S.RESULT_UNREADABLE and s.retry_unreadable
        )

    @staticmethod
    def _outcome(job: Job) -> JobOutcome:
        return JobOutcome(
            job.job_id,
            job.file_name,
            job.rows,
            job.state.value,
            job.task_id,
            replay=job.replay,
            replay_of=job.replay_of,
            estimated_cost_cents=job.estimated_cost_cents,
            charged_cents=job.charged_cents,
            error=job.error,
            resumed=True,
        )

    def _track_existing(self, job: Job) -> Tracked:
        path = self.ctx.files_dir / job.file_name
        outcome = self._outcome(job)
        t = Tracked(job, job.state, outcome, file=path if path.is_file() else None, resumed=True)
        t.task_id, t.estimate, t.replay_of = job.task_id, job.estimated_cost_cents, job.replay_of
        t.free = bool(job.replay_of) or (job.replay and not job.charged_cents and job.estimated_cost_cents == 0)
        return self.driver.track(t)

    def _restart(self, t: Tracked, selection: Selection) -> None:
        """Pick up a job from where the ledger says it is."""
        ctx, d = self.ctx, self.driver
        state = t.state
        if state in (S.WRITTEN, S.SUBMITTING):
            if state is S.SUBMITTING:
                t.extra["may_have_landed"] = True  # the run that died may have reached the API with it
            if t.file is None:
                if not self._rebuild(t, selection):
                    return
            else:
                t.sent = self._sent_rows(t, selection)
            d.submit(t)
        elif state is S.SUBMITTED and ctx.settings.no_wait:
            return  # --no-wait: left in flight for a webhook receiver or the next run
        elif state in (S.SUBMITTED, S.LOST):
            t.sent = self._sent_rows(t, selection)
            t.poller = JobPoller(initial=ctx.settings.poll_interval)
            t.action, t.due = "poll", time.monotonic()
            if state is S.LOST:
                t.extra["was_lost"] = True
        elif state is S.CANCELLING:
            t.sent = self._sent_rows(t, selection)
            t.action, t.due = "cancel", time.monotonic()
        elif state is S.NEEDS_ATTENTION:
            d.move(t, S.ABANDONED, error="released by --retry-lost: its rows are asked again")
        elif state is S.DOWNLOADED and (
            local := result_files.stored_parts(ctx.results_dir, t.job.result_file, t.job.result_format)
        ):
            t.sent = self._sent_rows(t, selection)
            d.download(t, local=local)
        elif state in (S.COMPLETED, S.DOWNLOADED, S.RESULT_UNREADABLE):
            if state is S.RESULT_UNREADABLE:
                t.extra["retrying_unreadable"] = True
            if state is not S.COMPLETED:
                d.move(t, S.COMPLETED)
            t.sent = self._sent_rows(t, selection)
            d.download(t)

    def _rebuild(self, t: Tracked, selection: Selection) -> bool:
        """Rebuild a file that is not on this machine from the warehouse; False when its rows are gone."""
        ctx, d = self.ctx, self.driver
        keys = ctx.ledger.job_keys(t.job_id).column("key").combine_chunks()
        chunk = None
        if len(keys):
            chunk = rebuild_file(ctx.adapter, selection, keys, out_dir=ctx.files_dir, prefix=ctx.name)
        if chunk is None:
            d.move(
                t, S.ABANDONED, error="the file is not on this machine and none of its rows is in the source any more"
            )
            return False
        if chunk.content_hash != t.job.content_hash:
            ctx.note(
                f"{t.job.file_name}: rebuilt from the warehouse, but the rows changed since it was written; it is sent "
                "with its stored Idempotency-Key (the API may refuse it: then it needs attention)",
                "warning",
            )
        t.file = chunk.path
        t.sent = sent_rows(chunk.kept, ctx.spec.source.key) if chunk.kept is not None else None
        return True

    def _sent_rows(self, t: Tracked, selection: Selection) -> pa.Table | None:
        """What a resumed job sent: from its local file, else the ledger's row keys matched with the source."""
        ctx = self.ctx
        if t.file is not None and t.file.is_file():
            cols = [
                f"TRY_CAST(json_extract_string(json, {json_path(k)}) AS {duck_type(typ)}) AS {ident(k)}"
                for k, typ in ctx.key_types.items()
            ]
            cols.append(f"json_extract_string(json, {json_path(HASH_COLUMN)}) AS {ident(HASH_COLUMN)}")
            source = f"read_ndjson_objects({literal(str(t.file))}, maximum_object_size = {max_object_size(t.file)})"
            sql = f"SELECT {', '.join(cols)} FROM {source}"
            rows = local_duckdb().sql(sql).to_arrow_table()
            stored = ctx.ledger.job_keys(t.job_id)
            # The ledger keeps the file's keys in the file's order: the same input hashes, row by row, say so.
            if (
                stored.num_rows == rows.num_rows
                and pc.all(pc.equal(stored.column("input_hash"), rows.column(HASH_COLUMN))).as_py()
            ):
                rows = rows.append_column(KEY_PREFIX_COLUMN, stored.column("key"))
            return rows
        stored = ctx.ledger.job_keys(t.job_id)
        if stored.num_rows == 0:
            return None
        a, key = ctx.adapter, list(ctx.spec.source.key)
        wanted = stored.column("key").combine_chunks()
        found = [
            keep_keys(denormalize(a, b), wanted).select([*key, KEY_HASH_COLUMN])
            for b in a.stream(rebuild_sql(a, selection))
        ]
        rows = pa.Table.from_batches([b for b in found if b.num_rows]) if any(b.num_rows for b in found) else None
        if rows is None:
            return None
        # the input hash that was SENT (the source may have changed since): from the ledger, by key prefix
        prefixes = key_prefix(rows.column(KEY_HASH_COLUMN))
        where = pc.index_in(prefixes, value_set=wanted)
        sent = rows.select(key).append_column(HASH_COLUMN, stored.column("input_hash").take(where))
        return sent.append_column(KEY_PREFIX_COLUMN, prefixes)

    # ------------------------------------------------------------------ new rows

    def _run_new(self) -> None:
        """One pass over the source: select, check keys and count as the rows stream into files."""
        ctx, spec = self.ctx, self.ctx.spec
        a = ctx.adapter
        if self.escalate_from is not None and not a.table_exists(ctx.target):
            self.result.status = "nothing_to_do"  # no answer yet, so nothing to escalate
            return
        with a.session() as s:
            row = s.fetchone(f"SELECT COUNT(*) FROM ({self.source_sql}) {a.subquery_alias('n')}")
        source_rows = int(row[0]) if row and row[0] is not None else 0
        if source_rows == 0:
            if not self.result.jobs:
                self.result.status = "nothing_to_do"
            return
        selections = self._selections(buckets=bucket_count(a, source_rows))
        held = ctx.ledger.held_keys(ctx.name, sorted(HOLDS_ROWS), ctx.target_id) if ctx.ledger.exists() else None
        self.scan = ScanStats(tuple(spec.source.key), source_rows=source_rows)
        ctx.reporter.on("scan", spec.name, source_rows=source_rows)
        ctx.ledger.ensure()
        self.keys_adapter = a.sibling()
        keys_ledger = Ledger(self.keys_adapter, schema=ctx.ledger.schema)
        keys_ledger.guard = ctx.ledger.guard
        self.producer = Producer(
            adapter_factory=self._extract_factory(),
            selections=selections,
            out_dir=ctx.files_dir,
            prefix=spec.name,
            chunk_rows=spec.chunk_rows,
            batch_rows=ctx.settings.batch_rows,
            files_ahead=ctx.settings.files_ahead,
            events=ctx.scheduler.events,
            owns_adapter=self.extract_adapter is not None,
            stats=self.scan,
            limit=spec.refresh.limit,
            key_writer=keys_ledger.write_keys,
            held=held,
        )
        self.producer.start()
        self._loop()
        self._scan_done()

    def _scan_done(self) -> None:
        """Report what the pass found (keys skipped, rows by reason) once the producer has finished."""
        if self.scan is None:
            return
        ctx, r = self.ctx, self.result
        report = self.scan.report()
        if not report.ok and report.describe() not in r.warnings:
            r.warnings.append(report.describe())
            ctx.note(report.describe(), "warning")
        if self.scan.target_repeats:
            repeats = (
                f"the target {ctx.target} holds key(s) more than once (e.g. {list(self.scan.target_repeat_samples[:3])}"
                f"; {self.scan.target_repeats:,} repeated row(s) of the selection dropped): each source row was sent "
                "once; remove the duplicated target rows (the merge writes every copy)"
            )
            if repeats not in r.warnings:
                r.warnings.append(repeats)
                ctx.note(repeats, "warning")
        r.rows_by_reason = dict(self.scan.rows_by_reason)
        if not r.rows_selected and not r.jobs and r.status == "ok":
            r.status = "nothing_to_do"

    def _extract_factory(self) -> Any:
        if self.extract_adapter is not None:
            return self.extract_adapter
        return lambda: self.ctx.adapter

    def _on_file(self, chunk: ChunkFile, *, holds_slot: bool = True) -> None:
        ctx = self.ctx
        if self.stop_reason is not None or ctx.stop.requested:
            chunk.path.unlink(missing_ok=True)
            if holds_slot:
                self.release_slot()
            return
        if self.awaiting_estimate:
            self.waiting_files.append((chunk, holds_slot))
            return
        if not self.target_checked:
            self.target_checked = True
            refusal = self._prepare_target(chunk)
            if refusal is not None:
                self.stop_sync("failed", refusal)
                chunk.path.unlink(missing_ok=True)
                if holds_slot:
                    self.release_slot()
                return
        room = self._room()
        # A price of 0 is no price: a budget is never switched off by it.
        trusted = self.price if self.price_confirmed and self.price is not None and self.price > 0 else None
        fit = fit_file(chunk.rows, room, trusted)
        if fit.stop:
            at = f" at {trusted:g} cents per row, as the API quoted it in this run" if trusted else ""
            self.result.rows_unsent += chunk.rows
            self.stop_sync("budget_reached", f"budget reached: {fit.reason}{at}; nothing more was submitted")
            chunk.path.unlink(missing_ok=True)
            if holds_slot:
                self.release_slot()
            return
        send = chunk
        if fit.rows < chunk.rows:
            send = head_chunk(chunk, fit.rows)
            if fit.learn_price:
                rest = tail_chunk(chunk, fit.rows)
                chunk.path.unlink(missing_ok=True)
                self.waiting_files.append((rest, holds_slot))
                holds_slot = False
                if self.price is not None and self.price > 0:
                    ctx.note(
                        f"a one-row file goes first to check the price per row ({self.price:g} cents, as known before "
                        "this run): a price that moved cannot overrun the budget"
                    )
                else:
                    ctx.note("the price per row is not known yet: a one-row file goes first to learn it")
            else:
                chunk.path.unlink(missing_ok=True)
                self.result.rows_unsent += chunk.rows - fit.rows
                self.stop_sync(
                    "budget_reached",
                    f"budget reached: only {fit.rows:,} of the next file's {chunk.rows:,} rows fit the budget at "
                    f"{trusted:g} cents per row; they were sent and nothing more was submitted",
                )
        if room is not None:
            self.awaiting_estimate = True  # the next file is fitted with this one's estimate
        self._submit_new(send, holds_slot=holds_slot)

    def _submit_new(self, chunk: ChunkFile, *, holds_slot: bool) -> None:
        ctx, spec = self.ctx, self.ctx.spec
        reasons = dict(chunk.meta.get("reasons", {}))
        deliberate = self.full_refresh or spec.refresh.when == "always" or bool(chunk.meta.get("deliberate"))
        asked = asked_hash(spec, ctx.spec_hash)
        dead = ctx.ledger.dead_job_for(spec.name, asked, chunk.content_hash)
        salt = salt_for(run_id=ctx.run_id if deliberate else None, after_job=dead.job_id if dead else None)
        job = Job(
            job_id=uuid.uuid4().hex,
            run_id=ctx.run_id,
            sync_name=spec.name,
            state=S.SUBMITTING,  # recorded as on its way: it is sent right away
            spec_hash=asked,
            content_hash=chunk.content_hash,
            idempotency_key=idempotency_key(spec.name, asked, chunk.content_hash, salt),
            file_name=chunk.path.name,
            rows=chunk.rows,
            endpoint=spec.endpoint,
            tier=spec.tier,
            salt=salt or None,
            reasons=json.dumps(reasons, sort_keys=True),
            fields=",".join(sorted(spec.struct)) if spec.field_subset else None,
            target=ctx.target_id,
            profile_target=ctx.profile_target,
            project=ctx.project_name,
        )
        assert chunk.kept is not None
        if ctx.lease is not None:
            ctx.lease.confirm()  # the lease is checked before money is spent, not after
        written = chunk.meta.get("job_id")
        if written:
            job = dataclasses.replace(job, job_id=str(written))
        ctx.ledger.add_job(job, None if written else chunk.kept.select([KEY_HASH_COLUMN, HASH_COLUMN]))
        failpoint("written")
        failpoint("submitting")
        outcome = JobOutcome(job.job_id, job.file_name, job.rows, S.SUBMITTING.value)
        t = Tracked(job, S.SUBMITTING, outcome, file=chunk.path, holds_slot=holds_slot)
        # What the file sent waits on disk until its result is merged: memory does not grow with the jobs in flight.
        t.sent = spill(sent_rows(chunk.kept, spec.source.key), chunk.path.with_suffix(SENT_SUFFIX))
        if EXISTS_COLUMN in chunk.kept.column_names:
            # none of the file's keys is in the target: its result is inserted, not upserted
            t.extra["all_new"] = not _any_true(chunk.kept.column(EXISTS_COLUMN))
        if self.price is not None:
            t.reserved = self.price * chunk.rows
            self.spend(t.reserved)
        self.driver.track(t)
        ctx.reporter.on("extracted", spec.name, rows=chunk.rows)
        self.driver.submit(t)

    # ------------------------------------------------------------------ host hooks for the driver

    def _room(self) -> float | None:
        rooms = []
        if self.ctx.spec.budget.max_cost_cents is not None:
            rooms.append(self.ctx.spec.budget.max_cost_cents - self.sync_spent)
        run_room = self.ctx.budget.room()
        if run_room is not None:
            rooms.append(run_room)
        return min(rooms) if rooms else None

    def spend(self, cents: float) -> None:
        """Hold (or give back) budget for this sync and the run."""
        self.sync_spent += cents
        self.ctx.budget.spend(cents)

    def release_slot(self) -> None:
        """Give an extraction slot back."""
        if self.producer is not None:
            self.producer.release()

    def answered(self, price: float | None) -> None:
        """A submission was answered: its estimate's per-row price (when it quoted one) fits the files that
        waited for it."""
        if price is not None:
            if self.price_confirmed and self.price is not None and abs(price - self.price) > 1e-9:
                self.ctx.note(
                    f"the API now quotes {price:g} cents per row (was {self.price:g}): the files left are fitted "
                    "with it"
                )
            self.price, self.price_confirmed = price, price > 0
        if not self.awaiting_estimate:
            return
        self.awaiting_estimate = False
        waiting, self.waiting_files = self.waiting_files, []
        for chunk, holds_slot in waiting:
            self._on_file(chunk, holds_slot=holds_slot)

    def stop_sync(self, status: str, message: str, *, partial_ok: bool = False) -> None:
        """Stop submitting for this sync (jobs under way are still finished)."""
        r = self.result
        # a budget reached is a cap doing its job: a warning, and the sync succeeds (run --fail-on-budget: exit 1)
        warn = partial_ok or status == "budget_reached"
        if self.stop_reason is None:
            (r.warnings if warn else r.errors).append(message)
            self.ctx.note(message, "warning" if warn else "error")
        self.stop_reason = self.stop_reason or status
        if self.producer is not None:
            self.producer.stop()
        for chunk, holds_slot in self.waiting_files:
            if status == "budget_reached":
                r.rows_unsent += chunk.rows
            chunk.path.unlink(missing_ok=True)
            if holds_slot:
                self.release_slot()
        self.waiting_files = []
        self.awaiting_estimate = False
        if status == "budget_reached":
            if r.status in ("ok", "nothing_to_do"):
                r.status = status
        elif not partial_ok and r.status in ("ok", "partial", "nothing_to_do", "budget_reached"):
            r.status = status

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


def _no_guard() -> None:
    return None


def _any_true(column: pa.ChunkedArray) -> bool:
    """Whether any value of a flag column is true; warehouses without a boolean type send 0/1."""
    if not pa.types.is_boolean(column.type):
        column = (
            pc.not_equal(column, pa.scalar(0, column.type))
            if pa.types.is_integer(column.type)
            else pc.cast(column, pa.bool_())
        )
    return bool(pc.any(column).as_py())


def asked_hash(spec: SyncSpec, stamp: str) -> str:
    """The hash of the question a job asks: the sync's stamp, plus the tier for an escalation step.

    Escalated answers are stamped with the sync's question, but the same rows asked at another tier are
    another question for the API: without the tier in the Idempotency-Key, a step whose file equals an earlier
    file (every row of it weak) would be answered with the earlier job, as a replay.
    """
    parts = []
    if spec.tier != spec.question_tier:
        parts.append(f"@{spec.tier}")
    if spec.field_subset:  # a "new fields" job asks part of the question: another question for the API
        parts.append("+" + ",".join(sorted(spec.struct)))
    if not parts:
        return stamp
    return hashlib.sha256((stamp + "".join(parts)).encode()).hexdigest()[:32]
