"""Merging results into the target: one transaction with the ledger, several files at once when ready together.

A merge writes the target and records ``downloaded`` and ``merged`` for its jobs in ONE transaction, so a crash
leaves either all of it or none. When results arrive faster than they are merged (short jobs, a resume with
many finished jobs), the ones waiting are merged together: fewer statements and commits, and the rule is
unchanged, since each job's moves are in the same transaction as its rows. If such a batch fails, each file
is merged on its own, so one bad file does not hold the others back.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from sixtyfour_sync.api import ResultDownload
from sixtyfour_sync.engine.context import SyncContext
from sixtyfour_sync.engine.failpoints import failpoint
from sixtyfour_sync.engine.jobs.states import JobState
from sixtyfour_sync.engine.ledger.tables import utcnow
from sixtyfour_sync.engine.results import quarantine, result_files
from sixtyfour_sync.engine.results.target_table import ensure_target
from sixtyfour_sync.engine.results.upsert import MergePlan, counts
from sixtyfour_sync.engine.reuse.store import answer_writes, stored_question
from sixtyfour_sync.engine.rows.files import SpilledTable
from sixtyfour_sync.engine.rows.select import KEY_PREFIX_COLUMN
from sixtyfour_sync.engine.steps.new_fields import through_statements
from sixtyfour_sync.errors import WarehouseBusyError, WarehouseError
from sixtyfour_sync.warehouse.session import Session
from sixtyfour_sync.warehouse.types import UpsertPart

if TYPE_CHECKING:
    from sixtyfour_sync.engine.jobs.driver import JobDriver, Tracked

__all__ = ["BATCH_ROWS", "MAX_BATCH_FILES", "MAX_WAIT_SECONDS", "UPDATE_BATCH_ROWS", "Merger"]

S = JobState
#: A batch of new rows is merged once it holds the warehouse's ``capabilities.insert_batch_rows`` (this
#: many unless the adapter says otherwise: DuckDB, for one, writes a transaction of a quarter million rows
#: straight to the table, three times faster than one of 100,000 through its log), or this many files, or
#: once its oldest result has waited this long.
BATCH_ROWS = 250_000
#: A batch that updates rows stays at one file's worth: until it commits, the warehouse holds the old versions
#: of every row it changed, beside the selection still being read. Under DuckDB's memory cap, update batches
#: of 250,000 rows made that selection fail for memory (1M-row update runs at a 192 MB cap: 3 of 5 failed;
#: with 100,000-row batches none of 4 did).
UPDATE_BATCH_ROWS = 100_000
MAX_BATCH_FILES = 5
MAX_WAIT_SECONDS = 2.0

Item = tuple["Tracked", ResultDownload, MergePlan]


class Merger:
    """Results waiting to be merged, and the merges themselves (on the thread that owns the connection)."""

    def __init__(self, ctx: SyncContext, driver: JobDriver) -> None:
        self.ctx = ctx
        self.driver = driver
        self.pending: list[Item] = []
        self._since = 0.0

    def add(self, t: Tracked, got: ResultDownload, plan: MergePlan) -> None:
        """Queue a downloaded, parsed result; merge now when the batch is full."""
        if not self.pending:
            self._since = time.monotonic()
        self.pending.append((t, got, plan))
        if self.full():
            self.flush()

    def full(self) -> bool:
        """Whether the waiting results make a batch worth merging now."""
        rows = sum(p.rows for _, _, p in self.pending)
        inserting = all(part.insert_only for _, _, p in self.pending for part in p.parts)
        insert_rows = self.ctx.adapter.capabilities.insert_batch_rows
        return len(self.pending) >= MAX_BATCH_FILES or rows >= (insert_rows if inserting else UPDATE_BATCH_ROWS)

    def due(self, *, more_coming: bool) -> bool:
        """Whether to merge what waits: a full batch, one that waited long enough, or nothing more coming."""
        if not self.pending:
            return False
        return self.full() or not more_coming or time.monotonic() - self._since >= MAX_WAIT_SECONDS

    def flush(self) -> None:
        """Merge everything waiting (one transaction; file by file if that fails)."""
        batch, self.pending = self.pending, []
        if not batch:
            return
        if len(batch) == 1 or not self._merge(batch, report=False):
            for item in batch:
                self._merge([item], report=True)

    def _merge(self, batch: list[Item], *, report: bool) -> bool:
        """One transaction for ``batch``; False (and nothing written) when the warehouse refused it."""
        ctx, d = self.ctx, self.driver
        before = [t.state for t, _, _ in batch]
        # the charges waiting to be recorded with the merge: taken out inside the transaction, put back if it rolls
        # back (else a retry would move a job the ledger still has as submitted straight to merged)
        held = [t.extra.get("completed") for t, _, _ in batch]

        ensure_target(ctx)
        if ctx.question is not None:
            ctx.ledger.ensure()  # the answer store is written in the transaction below
        tasks = [t.task_id for t, _, _ in batch if t.task_id]
        columns = ctx.adapter.get_columns(ctx.target) if ctx.spec.field_subset and len(ctx.spec.ladder) > 1 else {}
        marks = through_statements(ctx.adapter, ctx.spec, ctx.target, columns, tasks) if columns else []

        def ledger_write(session: Session) -> None:
            failpoint("merging")  # inside the transaction: a crash here must leave the target as it was
            for sql in marks:  # which rows a new field's next tier waits for (engine/steps/new_fields.py)
                session.execute(sql)
            stamps: dict[str, dict[str, Any]] = {}
            for _, _, plan in batch:
                stamps.update(ctx.spec.stamp_definitions(plan.missing_columns))
            ctx.ledger.record_specs(ctx.name, stamps, session)  # what the stamps merged below stand for
            for t, got, plan in batch:
                d.record_completed(t, session)
                if t.state is S.COMPLETED:
                    d.move(t, S.DOWNLOADED, session=session, **result_files.ledger_values(got))
                d.move(
                    t,
                    S.MERGED,
                    session=session,
                    missing_columns=",".join(plan.missing_columns) or None,
                    question=stored_question(ctx, plan),
                    **counts(plan),
                )

        try:
            written = ctx.adapter.upsert(
                ctx.target,
                list(ctx.spec.source.key),
                _combine(batch),
                before_commit=ledger_write,
                # the answers, kept for a key asking the same question later (engine/reuse/), with their merge
                also=answer_writes(ctx, [(t, plan) for t, _, plan in batch], now=utcnow()),
            )
        except (WarehouseError, pa.ArrowException) as exc:
            for (t, _, _), was, charge in zip(batch, before, held, strict=True):  # rolled back: as it was
                t.state = was
                t.outcome.state = was.value
                if charge is not None:
                    t.extra["completed"] = charge
            if isinstance(exc, WarehouseBusyError):
                raise  # out of reach, not refusing rows: the run stops; the ledger keeps the job to merge next run
            if report and not self._quarantine(batch[0], exc):
                t, got, _ = batch[0]
                self._failed(t, got, exc)
            return False
        failpoint("merged")
        for t, got, plan in batch:
            self._done(t, got, plan)
        if written.adjusted:
            ctx.result.warnings.append(
                f"{written.adjusted:,} value(s) were changed so {ctx.adapter.type} could store them (NUL characters "
                "removed from text, infinite or NaN numbers stored as NULL)"
            )
        return True

    def _quarantine(self, item: Item, exc: BaseException) -> bool:
        """One file's merge failed: merge it in halves to find the rows the target refuses alone, merge the rest,
        and hold those rows in the ledger's quarantine (engine/results/quarantine.py). False (nothing recorded) when the
        rows cannot be told apart or held: then the whole file is held, as before."""
        ctx, d = self.ctx, self.driver
        t, got, plan = item
        sent = t.sent.load() if isinstance(t.sent, SpilledTable) else t.sent
        if len(plan.parts) != 1 or sent is None or KEY_PREFIX_COLUMN not in sent.column_names:
            return False
        part, key = plan.parts[0], list(ctx.spec.source.key)

        def attempt(start: int, stop: int) -> None:
            ctx.adapter.upsert(ctx.target, key, [quarantine.slice_part(part, start, stop)])

        refused = quarantine.find_refused(attempt, part.data.num_rows)
        if refused is None:
            return False
        if not refused:  # every row merges: what failed was not the rows (the ledger write): once more, whole
            return self._merge([item], report=False)
        records = quarantine.refused_records(
            part, refused, sent, key, KEY_PREFIX_COLUMN, sync_name=ctx.name, job_id=t.job_id, task_id=t.task_id
        )
        if records is not None:
            records = [{**r, "target": ctx.target_id} for r in records]
        if records is None:
            return False
        _discount(plan, part.data.column(ctx.spec.bookkeeping("status")).take([r.index for r in refused]))
        ctx.ledger.ensure()
        with ctx.adapter.session() as session:
            ctx.ledger.record_specs(ctx.name, ctx.spec.stamp_definitions(plan.missing_columns), session)
            ctx.ledger.quarantine_rows(records, session)
            d.record_completed(t, session)
            if t.state is S.COMPLETED:
                d.move(t, S.DOWNLOADED, session=session, **result_files.ledger_values(got))
            d.move(
                t,
                S.MERGED,
                session=session,
                missing_columns=",".join(plan.missing_columns) or None,
                error=f"{len(records):,} row(s) refused by the target are held in the quarantine",
                rows_quarantined=len(records),
                **counts(plan),
            )
        failpoint("merged")
        self._done(t, got, plan)
        ctx.result.rows_quarantined += len(records)
        sample = ", ".join(str(r["key_text"]) for r in records[:3])
        d.partial(
            f"{t.label}: {ctx.adapter.type} refused {len(records):,} paid row(s) ({sample}): {refused[0].reason}. "
            "The rest of the file is merged; these rows are held, not asked again (`sixtyfour-sync status` lists "
            "them). Fix the target and the next run merges them"
        )
        return True

    def _failed(self, t: Tracked, got: ResultDownload, exc: BaseException) -> None:
        msg = f"merging the result of {t.label} failed: {exc}; the job is paid for and kept, the next run tries again"
        self.driver.record_completed(t)
        if t.state is S.COMPLETED:
            self.driver.move(t, S.DOWNLOADED, error=msg, **result_files.ledger_values(got))
        else:
            self.ctx.ledger.annotate(t.job_id, S.DOWNLOADED, error=msg)
        self.driver.partial(msg)

    def _done(self, t: Tracked, got: ResultDownload, plan: MergePlan) -> None:
        ctx, r = self.ctx, self.ctx.result
        o = t.outcome
        o.rows_enriched, o.rows_failed = plan.enriched, plan.failed
        o.rows_not_returned, o.rows_unexpected = plan.not_returned, plan.unexpected
        o.missing_columns = list(plan.missing_columns)
        bucket = r.resumed if t.resumed else r
        bucket.rows_enriched += plan.enriched
        bucket.rows_failed += plan.failed
        bucket.rows_not_returned += plan.not_returned
        bucket.rows_unexpected += plan.unexpected
        bucket.rows_merged += plan.rows
        if not t.resumed:
            r.rows_deduplicated += plan.deduplicated
        if not t.resumed:
            r.returned += plan.returned
            for f, n in plan.filled.items():
                r.filled[f] = r.filled.get(f, 0) + n
        for f, n in plan.gated.items():
            r.gated[f] = r.gated.get(f, 0) + n
        if plan.missing_columns:
            r.incomplete_rows += plan.enriched
            if r.status in ("ok", "nothing_to_do"):
                r.status = "partial"
        r.warnings.extend(plan.warnings)
        for problem in plan.problems:  # paid rows that could not be tied back: partial, and said
            self.driver.partial(problem)
        ctx.reporter.on("merged", ctx.name, rows=plan.rows)
        ctx.reporter.on("job_done", ctx.name, state="merged", rows=t.job.rows)
        if not ctx.settings.keep_files:
            if t.file is not None:
                t.file.unlink(missing_ok=True)
            result_files.discard(got)
        if isinstance(t.sent, SpilledTable):
            t.sent.discard()
            t.sent = None


def _discount(plan: MergePlan, statuses: pa.Array | pa.ChunkedArray) -> None:
    """Take the refused rows out of the counts of what the merge wrote (they are counted as quarantined)."""
    for status in statuses.to_pylist():
        if status == "enriched" and plan.enriched:
            plan.enriched -= 1
        elif plan.failed:
            plan.failed -= 1
        elif plan.not_returned:
            plan.not_returned -= 1


def _combine(batch: list[Item]) -> list[UpsertPart]:
    """The batch's parts as one (they have the same columns: one sync, one spec)."""
    parts = [part for _, _, plan in batch for part in plan.parts]
    if len(parts) <= 1:
        return parts
    first = parts[0]
    return [
        UpsertPart(
            pa.concat_tables([p.data for p in parts], promote_options="permissive"),
            first.set_columns,
            guards=first.guards,
            insert_only=all(p.insert_only for p in parts),
            unique_keys=all(p.unique_keys for p in parts),  # one key is in one file only
        )
    ]
