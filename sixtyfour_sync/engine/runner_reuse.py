"""Stored answers: before a step asks, the rows whose question the answer store answered within ``reuse.max_age``
take that answer, merged as a result file is, each merge recorded with its rows in one transaction
(engine/reuse/ holds the rules; this is the runner's part)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.config.models import SyncSpec
from sixtyfour_sync.engine.failpoints import failpoint
from sixtyfour_sync.engine.jobs.states import HOLDS_ROWS
from sixtyfour_sync.engine.ledger.tables import utcnow
from sixtyfour_sync.engine.plan.prices import resolve_price
from sixtyfour_sync.engine.results.parse import ResultParseError, parse_result
from sixtyfour_sync.engine.results.target_table import ensure_target
from sixtyfour_sync.engine.results.upsert import plan_merge
from sixtyfour_sync.engine.reuse.answers import with_answer_columns
from sixtyfour_sync.engine.reuse.question import takes_answers
from sixtyfour_sync.engine.reuse.sql import ANSWER_TASK, ANSWERED_AT
from sixtyfour_sync.engine.reuse.store import ReuseFacts, has_answers, read_reusable, record_reuse
from sixtyfour_sync.engine.rows.select import HASH_COLUMN, KEY_HASH_COLUMN, bucket_count, drop_held
from sixtyfour_sync.engine.runner_base import RunnerBase
from sixtyfour_sync.errors import WarehouseBusyError, WarehouseError
from sixtyfour_sync.warehouse.session import Session

__all__ = ["ReuseSteps"]


class ReuseSteps(RunnerBase):
    """The runner's stored answers."""

    def _take_stored(self, source_rows: int, read: list[pa.RecordBatch] | None) -> list[pa.RecordBatch] | None:
        """Merge the stored answers the step's rows can take; return ``read`` (the one pass's rows, when read)
        without the rows answered so."""
        ctx = self.ctx
        if ctx.question is None or not takes_answers(
            ctx.spec, own_pass=self.step.own_pass, full_refresh=self.full_refresh
        ):
            return read
        if read is not None and not any(b.num_rows for b in read):
            return read  # nothing to ask: nothing to look up
        if not has_answers(ctx.ledger, ctx.question):
            return read
        held = ctx.ledger.held_keys(ctx.name, sorted(HOLDS_ROWS), ctx.target_id)
        grouped, self.group_questions = self.group_questions, False  # key order: grouping is the asking's business
        try:
            if read is not None:
                selections = self._selections(probe=True)
            else:
                selections = self._selections(buckets=bucket_count(ctx.adapter, source_rows))
        finally:
            self.group_questions = grouped
        price = resolve_price(ctx.spec, ctx.ledger, ctx.settings.prices)
        cents = None if price is None else price.cents_per_row
        taken: list[pa.Array] = []
        for selection in selections:
            for batch in read_reusable(
                ctx.ledger,
                selection,
                question=ctx.question,
                max_age_seconds=int(ctx.spec.reuse_max_age.total_seconds()),
                batch_rows=ctx.settings.batch_rows,
            ):
                batch = drop_held(batch, held)
                if not batch.num_rows or not self._merge_stored(batch, cents):
                    continue
                taken.append(batch.column(KEY_HASH_COLUMN).cast(pa.string()))
                if self.stop_reason is not None or ctx.stop.requested:
                    break
        if not taken:
            return read
        self.target_columns = None  # the target may have just been made, or widened: the selection reads it again
        if read is None:
            return None
        done = pa.chunked_array(taken, type=pa.string()).combine_chunks()
        kept = [
            b.filter(pc.invert(pc.is_in(b.column(KEY_HASH_COLUMN).cast(pa.string()), value_set=done))) for b in read
        ]
        return [b for b in kept if b.num_rows]

    def _merge_stored(self, batch: pa.RecordBatch, price: float | None) -> bool:
        """Merge one batch of rows with their stored answers, and record it, in one transaction; False (and the
        rows left to be asked) when the target refused them."""
        ctx, spec = self.ctx, self.ctx.spec
        key = list(spec.source.key)
        now = utcnow()
        try:
            parsed = parse_result(
                with_answer_columns(spec, batch, key),
                key_types=ctx.key_types,
                struct=spec.struct,
                field_confidence=spec.field_confidence,
            )
            sent = pa.Table.from_batches([batch]).select([*key, HASH_COLUMN])
            plan = plan_merge(spec, parsed, sent, task_id=None, now=now, file_label="stored answers")
        except ResultParseError as exc:
            ctx.note(f"stored answers could not be read ({exc}); those rows are asked instead", "warning")
            return False
        parts = [_as_answered(part_data, batch, spec) for part_data in (p.data for p in plan.parts)]
        plan.parts = [
            type(p)(d, p.set_columns, guards=p.guards, insert_only=False, unique_keys=p.unique_keys)
            for p, d in zip(plan.parts, parts, strict=True)
        ]
        questions = len(pc.unique(batch.column(HASH_COLUMN)))
        facts = ReuseFacts(
            run_id=ctx.run_id,
            sync_name=ctx.name,
            target=ctx.target_id,
            question=ctx.question or "",
            rows=plan.rows,
            questions=questions,
            price_cents_per_row=price,
        )

        def record(session: Session) -> None:
            failpoint("reusing")  # inside the transaction: a crash here leaves the target as it was
            ctx.ledger.record_specs(ctx.name, spec.stamp_definitions(), session)
            record_reuse(ctx.ledger, facts, session, now=now)

        ensure_target(ctx)
        ctx.ledger.ensure()
        ctx.ledger.guard()
        try:
            ctx.adapter.upsert(ctx.target, key, plan.parts, before_commit=record)
        except WarehouseBusyError:
            raise
        except (WarehouseError, pa.ArrowException) as exc:
            ctx.note(
                f"{plan.rows:,} stored answer(s) could not be merged ({exc}); those rows are asked instead", "warning"
            )
            return False
        failpoint("reused")
        r = ctx.result
        r.rows_reused += plan.rows
        r.questions_reused += questions
        if facts.saved_cents is None:
            r.reused_price_known = False
        else:
            r.reused_saved_cents = round(r.reused_saved_cents + facts.saved_cents, 4)
        ctx.reporter.on("merged", ctx.name, rows=plan.rows)
        return True


def _as_answered(data: pa.Table, batch: pa.RecordBatch, spec: SyncSpec) -> pa.Table:
    """The merge's rows with the bookkeeping of the answer each took: the task that answered it and when (not
    this run's), looked up by the input hash the row and its answer share."""
    bk = spec.bookkeeping
    hashes = batch.column(HASH_COLUMN).cast(pa.string())
    where = pc.index_in(data.column(bk("input_hash")).cast(pa.string()), value_set=hashes)
    for name, source in ((bk("task_id"), ANSWER_TASK), (bk("enriched_at"), ANSWERED_AT)):
        if name not in data.column_names:
            continue
        i = data.schema.get_field_index(name)
        typ = data.schema.field(name).type
        values = batch.column(source).take(where)
        data = data.set_column(i, data.schema.field(name), values.cast(typ))
    return data
