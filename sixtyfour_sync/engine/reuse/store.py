"""Writing to and reading the ledger's answer store: the answers a merge stores, the reuses a run records, the
answers it reads back, and pruning. Each write joins the transaction it is given (the merge's)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from sixtyfour_sync.config.models import SyncSpec
from sixtyfour_sync.engine.ledger.store import Ledger
from sixtyfour_sync.engine.reuse.answers import store_rows
from sixtyfour_sync.engine.reuse.sql import has_answers_sql, matched_sql, prune_sql, stored_answers_sql
from sixtyfour_sync.engine.rows.select import Selection
from sixtyfour_sync.warehouse.session import Session
from sixtyfour_sync.warehouse.types import AlsoWrite, UpsertPart

if TYPE_CHECKING:
    from sixtyfour_sync.engine.context import SyncContext
    from sixtyfour_sync.engine.jobs.tracked import Tracked
    from sixtyfour_sync.engine.results.upsert import MergePlan

__all__ = [
    "ReuseFacts",
    "answer_writes",
    "has_answers",
    "prune_answers",
    "read_reusable",
    "record_reuse",
    "stored_question",
    "stored_relation",
    "stores_job_answers",
]

#: The store's columns, in the table's order.


def stores_job_answers(ctx: SyncContext, t: Tracked) -> bool:
    """Whether a job's answers go to the store: the step stores answers (``ctx.question``), and the job asked the
    question as the step asks it now (the same spec hash and tier, the whole struct). A job an earlier run left
    unfinished under another definition answered another question."""
    job = t.job
    return (
        ctx.question is not None
        and job.spec_hash == ctx.spec_hash
        and (job.tier is None or job.tier == ctx.spec.tier)
        and not job.fields
    )


def answer_writes(ctx: SyncContext, batch: Sequence[tuple[Tracked, MergePlan]], *, now: datetime) -> list[AlsoWrite]:
    """The store's rows for the answers of the jobs a merge writes, to be written in its transaction (``also`` of
    :meth:`Adapter.upsert`)."""
    if ctx.question is None:
        return []
    tables = [
        store_rows(plan.answers, job_id=t.job_id)
        for t, plan in batch
        if plan.answers is not None and plan.answers.num_rows
    ]
    if not tables:
        return []
    rows = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    # appended: an answer asked again is a row more (the reader takes the newest), so no key is looked up
    part = UpsertPart(rows, ["answer"], insert_only=True, unique_keys=True)
    return [AlsoWrite(ctx.ledger.answers, ["job_id", "input_hash"], [part])]


def stored_question(ctx: SyncContext, plan: MergePlan) -> str | None:
    """The question a merged job's row records (``_sixtyfour_sync_jobs.question``): its answers' in the store."""
    return ctx.question if plan.answers is not None and plan.answers.num_rows else None


def has_answers(ledger: Ledger, question: str) -> bool:
    """Whether the store holds any answer to ``question`` (no table yet: none)."""
    a = ledger.adapter
    if not ledger.exists():
        return False
    with a.session() as s:
        return s.fetchone(has_answers_sql(a, ledger.jobs), [question]) is not None


def stored_relation(ledger: Ledger, spec: SyncSpec, question: str) -> str:
    """The store's answers to ``question`` a sync takes (within its ``reuse.max_age``): what its selection joins."""
    max_age = int(spec.reuse_max_age.total_seconds())
    return stored_answers_sql(ledger.adapter, ledger.answers, ledger.jobs, question=question, max_age_seconds=max_age)


def read_reusable(ledger: Ledger, selection: Selection, *, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The rows of a selection joined to the store that take a stored answer, with it, streamed."""
    yield from ledger.adapter.stream(
        matched_sql(ledger.adapter, selection), list(selection.params), batch_rows=batch_rows
    )


@dataclass(frozen=True)
class ReuseFacts:
    """What one merge of stored answers records (a row of ``_sixtyfour_sync_reuses``)."""

    run_id: str
    sync_name: str
    target: str
    question: str
    rows: int
    questions: int
    #: The price per question known when the answers were taken; None: unknown.
    price: float | None

    @property
    def saved_cents(self) -> float | None:
        """What the questions would have cost asked (each question once): unknown without a price."""
        return None if self.price is None else round(self.questions * self.price, 4)

    def row(self, now: datetime) -> dict[str, Any]:
        """The ledger row."""
        return {
            "reuse_id": uuid.uuid4().hex,
            "run_id": self.run_id,
            "sync_name": self.sync_name,
            "target": self.target,
            "question": self.question,
            "rows_reused": self.rows,
            "questions_reused": self.questions,
            "price_cents_per_row": self.price,
            "saved_cents": self.saved_cents,
            "reused_at": now,
        }


def record_reuse(ledger: Ledger, facts: ReuseFacts, session: Session, *, now: datetime) -> None:
    """Record a merge of stored answers, in its transaction."""
    session.insert(ledger.reuses, [facts.row(now)])


def prune_answers(ledger: Ledger, *, max_age_seconds: int) -> int:
    """Delete the stored answers older than ``max_age_seconds``; the rows deleted."""
    if not ledger.exists():
        return 0
    ledger.guard()
    with ledger.adapter.session() as s:
        sql = prune_sql(ledger.adapter, ledger.answers, ledger.jobs, max_age_seconds=max_age_seconds)
        return max(0, s.execute_count(sql))
