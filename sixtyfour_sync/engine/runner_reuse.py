"""Stored answers: before a step asks, the rows whose question the answer store answered within ``reuse.max_age``
take that answer, merged as a result file is, each merge recorded with its rows in one transaction
(engine/reuse/ holds the rules; this is the runner's part)."""

from __future__ import annotations

import json

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
from sixtyfour_sync.engine.reuse.sql import lookup_sql
from sixtyfour_sync.engine.reuse.store import ReuseFacts, has_answers, read_reusable, record_reuse, stored_relation
from sixtyfour_sync.engine.rows.extract import denormalize
from sixtyfour_sync.engine.rows.select import (
    ANSWER,
    ANSWER_JOB,
    ANSWER_TASK,
    ANSWER_TIER,
    ANSWERED_AT,
    HASH_COLUMN,
    KEY_HASH_COLUMN,
    KEY_ROWS_COLUMN,
    REASON_COLUMN,
    REUSABLE_REASONS,
    bucket_count,
    drop_held,
)
from sixtyfour_sync.engine.runner_base import RunnerBase
from sixtyfour_sync.errors import WarehouseBusyError, WarehouseError
from sixtyfour_sync.warehouse.session import Session

__all__ = ["ReuseSteps"]


class ReuseSteps(RunnerBase):
    """The runner's stored answers."""

    def _stored(self) -> str | None:
        """The store's answers the step's rows may take (the relation its selection joins), or None: the step takes
        none (``reuse: false``, ``--full-refresh``, a step after the own pass) or the store has none to this
        question."""
        ctx = self.ctx
        own = self.step.own_pass
        if ctx.question is None or not takes_answers(ctx.spec, own_pass=own, full_refresh=self.full_refresh):
            return None
        if not has_answers(ctx.ledger, ctx.question):
            return None
        return stored_relation(ctx.ledger, ctx.spec, ctx.question)

    def _take_stored(self, source_rows: int) -> None:
        """Before the selection: merge the stored answers the step's rows take (the selection joined to the store,
        in buckets as it is read); the selection that follows no longer selects them."""
        ctx = self.ctx
        stored = self._stored()
        if stored is None:
            return
        grouped, self.group_questions = self.group_questions, False  # key order: grouping is the asking's business
        try:
            selections = self._selections(buckets=bucket_count(ctx.adapter, source_rows), stored=stored)
        finally:
            self.group_questions = grouped
        held = ctx.ledger.held_keys(ctx.name, sorted(HOLDS_ROWS), ctx.target_id)
        took = False
        for selection in selections:
            for raw in read_reusable(ctx.ledger, selection, batch_rows=ctx.settings.batch_rows):
                batch = drop_held(denormalize(ctx.adapter, raw), held)
                took = (batch.num_rows > 0 and self._merge_stored(batch)) or took
                if self.stop_reason is not None or ctx.stop.requested:
                    break
        if took:
            self.target_columns = None  # the target may have just been made, or widened: the selection reads it again

    def _split_stored(self, batches: list[pa.RecordBatch], *, probe: bool) -> list[pa.RecordBatch]:
        """Rows a selection read into memory (the one pass, ``probe``, or a small source's whole selection), less
        those that take a stored answer (merged here): when the store holds answers to the question, the same
        selection joined to them is read once more for the rows that take one. (Joined in the first read, a refresh
        with nothing to do would pay for reading the store.)"""
        ctx = self.ctx
        stored = self._stored()
        if stored is None:
            return batches
        lookup = lookup_sql(ctx.adapter, stored)
        if lookup is not None:  # by the rows' input hashes, in one statement: no second read of the source
            return self._look_up_stored(batches, lookup)
        grouped, self.group_questions = self.group_questions, False  # key order: grouping is the asking's business
        try:
            selection = self._selections(probe=probe, stored=stored)[0]
        finally:
            self.group_questions = grouped
        held = ctx.ledger.held_keys(ctx.name, sorted(HOLDS_ROWS), ctx.target_id)
        taken: list[pa.Array] = []
        for raw in read_reusable(ctx.ledger, selection, batch_rows=ctx.settings.batch_rows):
            batch = drop_held(denormalize(ctx.adapter, raw), held)
            if batch.num_rows and self._merge_stored(batch):
                taken.append(batch.column(KEY_HASH_COLUMN).cast(pa.string()))
        if not taken:
            return batches
        done = pa.chunked_array(taken, type=pa.string()).combine_chunks()
        rest = []
        for raw in batches:
            batch = denormalize(ctx.adapter, raw)  # the names as the sync spells them (Snowflake's are upper case)
            kept = batch.filter(pc.invert(pc.is_in(batch.column(KEY_HASH_COLUMN).cast(pa.string()), value_set=done)))
            if kept.num_rows:
                rest.append(kept)
        return rest

    def _look_up_stored(self, batches: list[pa.RecordBatch], lookup: str) -> list[pa.RecordBatch]:
        """:meth:`_split_stored` by the rows' input hashes: the store's answers to those hashes in one statement, the
        best for each picked here by the rule the joined selection follows (engine/rows/select.py ``_with_stored``)."""
        ctx, key = self.ctx, list(self.ctx.spec.source.key)
        rows = [denormalize(ctx.adapter, b) for b in batches]
        masks = [_may_take(b, key) for b in rows]
        asked = [b.column(HASH_COLUMN).filter(m).cast(pa.string()) for b, m in zip(rows, masks, strict=True)]
        hashes = pc.unique(pa.chunked_array(asked, type=pa.string())).to_pylist() if asked else []
        if not hashes:
            return rows
        found = [
            denormalize(ctx.adapter, b)
            for b in ctx.adapter.stream(lookup, [json.dumps(hashes)], batch_rows=ctx.settings.batch_rows)
        ]
        answers = pa.Table.from_batches(found) if found else None
        if answers is None or not answers.num_rows:
            return rows
        best = _best_answers(answers)
        held = ctx.ledger.held_keys(ctx.name, sorted(HOLDS_ROWS), ctx.target_id)
        rest: list[pa.RecordBatch] = []
        for batch, mask in zip(rows, masks, strict=True):
            where = pc.index_in(batch.column(HASH_COLUMN).cast(pa.string()), value_set=best.column("input_hash"))
            answer = best.column("answer").take(where)
            # a failed row due a retry takes only an enriched answer (a failed one is what it has)
            retry = pc.equal(batch.column(REASON_COLUMN), "failed_retry")
            takes = pc.and_(pc.and_(mask, pc.is_valid(where)), pc.or_(pc.invert(retry), pc.is_valid(answer)))
            takes = pc.fill_null(takes, False)
            taking = _with_answers(batch.filter(takes), best.take(where.filter(takes)))
            taking = drop_held(taking, held)
            merged = bool(taking.num_rows) and self._merge_stored(taking)
            if merged:
                done = taking.column(KEY_HASH_COLUMN).cast(pa.string())
                batch = batch.filter(
                    pc.invert(pc.is_in(batch.column(KEY_HASH_COLUMN).cast(pa.string()), value_set=done))
                )
            if batch.num_rows:
                rest.append(batch)
        return rest

    def _merge_stored(self, batch: pa.RecordBatch) -> bool:
        """Merge one batch of rows with their stored answers, and record it, in one transaction; False (and the
        rows left to be asked) when the target refused them."""
        ctx, spec = self.ctx, self.ctx.spec
        price = resolve_price(spec, ctx.ledger, ctx.settings.prices)
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
            price=None if price is None else price.cents_per_row,
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


def _may_take(batch: pa.RecordBatch, key: list[str]) -> pa.Array:
    """The rows of a selection that may take a stored answer: a reason in ``REUSABLE_REASONS`` and a good key."""
    mask = pc.is_in(batch.column(REASON_COLUMN), value_set=pa.array(REUSABLE_REASONS))
    rows = batch.column(KEY_ROWS_COLUMN)
    mask = pc.and_(mask, pc.equal(rows.cast(pa.int64()), 1))
    for k in key:
        mask = pc.and_(mask, pc.is_valid(batch.column(k)))
    return pc.fill_null(mask, False)


def _best_answers(answers: pa.Table) -> pa.Table:
    """One answer per input hash: an enriched one first (a later failure takes nothing back), then the newest."""
    failed = pc.is_null(answers.column("answer"))
    order = pc.sort_indices(
        pa.table({"failed": failed, "at": answers.column("answered_at"), "job": answers.column("job_id")}),
        sort_keys=[("failed", "ascending"), ("at", "descending"), ("job", "descending")],
    )
    ranked = answers.take(order)
    hashes = ranked.column("input_hash").cast(pa.string())
    first = pc.index_in(pc.unique(hashes), value_set=hashes)
    best = ranked.take(first)
    return best.set_column(
        best.schema.get_field_index("input_hash"), "input_hash", best.column("input_hash").cast(pa.string())
    )


def _with_answers(batch: pa.RecordBatch, best: pa.Table) -> pa.RecordBatch:
    """``batch``'s rows with the columns of the stored answer each takes (``best``: one row per row of ``batch``)."""
    columns = dict(zip(batch.schema.names, batch.columns, strict=True))
    for name, source in (
        (ANSWER, "answer"),
        (ANSWER_TASK, "task_id"),
        (ANSWER_JOB, "job_id"),
        (ANSWER_TIER, "tier"),
        (ANSWERED_AT, "answered_at"),
    ):
        columns[name] = best.column(source).combine_chunks()
    return pa.RecordBatch.from_pydict(columns)
