"""What a sync reads and writes, and what a run of it would send: shared by ``plan``, ``validate`` and ``run``.

Nothing here writes anything or calls the API.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.config.models import LoadedSync, SyncSpec, build_api_config
from sixtyfour_sync.engine.jobs.states import ACTIVE, HELD
from sixtyfour_sync.engine.jobs.states import JobState as S
from sixtyfour_sync.engine.ledger.store import Ledger
from sixtyfour_sync.engine.plan.columns import owned_columns, resolve_inputs, resolve_key_types, target_ref
from sixtyfour_sync.engine.plan.escalation import plan_escalation
from sixtyfour_sync.engine.plan.prices import Price, resolve_price
from sixtyfour_sync.engine.plan.questions import count_questions, priced_by_questions
from sixtyfour_sync.engine.plan.step import Step
from sixtyfour_sync.engine.reuse.question import question_id, takes_answers
from sixtyfour_sync.engine.reuse.sql import count_reusable_sql
from sixtyfour_sync.engine.reuse.store import has_answers, stored_relation
from sixtyfour_sync.engine.rows.extract import ScanStats, denormalize, missing_key
from sixtyfour_sync.engine.rows.select import (
    KEY_ROWS_COLUMN,
    REASON_COLUMN,
    Selection,
    bucket_count,
    build_selection,
    count_by_reason_sql,
    drop_held,
    source_relation_sql,
    stamp_counts_sql,
)
from sixtyfour_sync.engine.steps.field_changes import FieldChanges, field_changes
from sixtyfour_sync.engine.steps.new_fields import field_steps
from sixtyfour_sync.engine.summary import StepPlan, SyncPlan
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.keytypes import KeyType
from sixtyfour_sync.warehouse.types import TableRef

if TYPE_CHECKING:
    from sixtyfour_sync.engine.rows.preview import Preview
__all__ = ["definition_hash", "plan_sync", "read_field_changes"]


def _count_without_held(adapter: Adapter, selection: Selection, held: pa.Array, limit: int | None) -> dict[str, int]:
    """Rows by reason, leaving out those a job still holds (read, not counted in SQL: held jobs are rare)."""
    counts: dict[str, int] = {}
    left = limit
    stats = ScanStats(tuple(selection.key))
    for raw in adapter.stream(selection.sql):
        batch = denormalize(adapter, raw)
        good = pc.equal(batch.column(KEY_ROWS_COLUMN), 1)
        for k in selection.key:
            good = pc.and_(good, pc.invert(missing_key(batch.column(k))))
        batch = drop_held(stats.skip_repeated(batch.filter(good)), held)
        if left is not None:
            batch = batch.slice(0, max(0, left))
            left -= batch.num_rows
        for item in pc.value_counts(batch.column(REASON_COLUMN)).to_pylist():
            counts[str(item["values"])] = counts.get(str(item["values"]), 0) + int(item["counts"])
    return counts


def read_field_changes(
    adapter: Adapter, ledger: Ledger, spec: SyncSpec, target: TableRef, columns: Mapping[str, Any]
) -> FieldChanges | None:
    """What the target's stamps need from the sync as it is now (engine/steps/field_changes.py), read with one
    GROUP BY; None when every row carries the current stamp."""
    sql = stamp_counts_sql(adapter, spec, target, columns)
    if not sql:
        return None
    with adapter.session() as s:
        rows = [(str(st), str(h), int(n)) for st, h, n in s.fetchall(sql) if h is not None]
    current = spec.spec_hash()
    enriched = {h: n for st, h, n in rows if st == "enriched"}
    failed = [h for st, h, _ in rows if st == "failed" and h != current]
    others = sorted({h for _, h, _ in rows if h != current})
    if not others:
        return None
    return field_changes(spec, enriched, ledger.spec_definitions(others), failed)


@dataclass(frozen=True)
class _Reads:
    """What a plan reads from the warehouse and the ledger before it counts anything."""

    source_sql: str
    inputs: list[str]
    key_types: dict[str, KeyType]
    target: TableRef
    target_id: str
    exists: bool
    columns: dict[str, Any] | None
    ledger: Ledger
    has_ledger: bool
    held: pa.Array | None
    changes: FieldChanges | None

    def common(self, spec: SyncSpec) -> dict[str, Any]:
        """The arguments every selection of this sync shares."""
        return {
            "source_sql": self.source_sql,
            "inputs": self.inputs,
            "target": self.target,
            "target_columns": self.columns,
            "spec_hash": spec.spec_hash(),
            "key_types": self.key_types,
        }


def _read(adapter: Adapter, loaded: LoadedSync, ref_table: TableRef | None, full_refresh: bool) -> _Reads:
    spec = loaded.spec
    target = target_ref(spec)
    source_sql = source_relation_sql(adapter, spec, ref_table)
    exists = adapter.table_exists(target)
    columns = adapter.get_columns(target) if exists else None
    ledger = Ledger(adapter)
    has_ledger = ledger.exists()
    target_id = adapter.table_sql(target)
    held = ledger.held_keys(spec.name, sorted(ACTIVE | HELD), target_id) if has_ledger else None
    changes = None
    if columns is not None and has_ledger and not full_refresh and spec.refresh.when != "always":
        changes = read_field_changes(adapter, ledger, spec, target, columns)
    return _Reads(
        source_sql=source_sql,
        inputs=resolve_inputs(adapter, loaded, source_sql),
        key_types=resolve_key_types(adapter, loaded, source_sql),
        target=target,
        target_id=target_id,
        exists=exists,
        columns=columns,
        ledger=ledger,
        has_ledger=has_ledger,
        held=held,
        changes=changes,
    )


def plan_sync(
    adapter: Adapter,
    loaded: LoadedSync,
    *,
    ref_table: TableRef | None = None,
    full_refresh: bool = False,
    budget_cents: float | None = None,
    prices: dict[tuple[str, str], float] | None = None,
    preview_rows: int | None = None,
    preview_dir: Path | None = None,
) -> SyncPlan:
    """What a run would send for one sync and what it would cost; calls no API and writes to no warehouse.

    With ``preview_rows``, the first that many rows a run would send are written to ``preview_dir`` as the
    JSONL file and ``config`` JSON it would submit (:mod:`sixtyfour_sync.engine.rows.preview`).
    """
    spec = loaded.spec
    r = _read(adapter, loaded, ref_table, full_refresh)
    common = r.common(spec)

    def own_selection(bucket: tuple[int, int] | None = None, stored: str | None = None) -> Selection:
        # exactly the run's own pass (runner.SyncRunner._selections): the rows the new-fields steps ask are not in it
        return build_selection(
            adapter,
            spec,
            **common,
            full_refresh=full_refresh,
            bucket=bucket,
            not_whole=r.changes.not_whole if r.changes else (),
            failed_current=r.changes.failed_current if r.changes else (),
            stored=stored,
        )

    report = adapter.key_report(r.source_sql, spec.source.key)
    counts = _own_counts(adapter, own_selection(), r.held, spec.refresh.limit)
    price = resolve_price(spec, r.ledger, prices)
    shared = _shared_rows(adapter, own_selection(), sum(counts.values()), spec.refresh.limit)
    reused, reused_questions = _reusable(adapter, spec, r, own_selection, full_refresh)
    # the rows that ask no question of their own: those sharing another's, and those a stored answer answers
    unasked = shared + reused_questions
    steps = [priced_by_questions(_step("own", "own", spec, dict(counts), price), unasked, spec.chunk_rows)]
    field_steps = _add_field_steps(adapter, spec, r, steps, price, prices)
    asked_fields = sum(st.rows for st in steps if st.kind == "fields" and not st.expected)
    if asked_fields:  # they are sent too: counted in the rows, the files and the cost
        counts["new_fields"] = asked_fields
    rows = sum(counts.values())
    preview = None
    if preview_rows is not None:
        preview = _preview(adapter, spec, steps, field_steps, own_selection, common, r.held, report.total_rows,
                           inputs=r.inputs, rows=preview_rows, out_dir=preview_dir)  # fmt: skip
    escalation = (
        plan_escalation(adapter, spec, r.target, r.columns,
                        selection_args={"source_sql": r.source_sql, "inputs": r.inputs, "key_types": r.key_types},
                        rows=rows, ledger=r.ledger if r.has_ledger else None, prices=prices)
        if spec.escalate
        else []
    )  # fmt: skip
    steps.extend(_escalation_step(spec, e) for e in escalation)
    limit = _budget_limit(spec, budget_cents)
    return SyncPlan(
        name=spec.name,
        endpoint=spec.endpoint,
        tier=spec.tier,
        target=str(r.target),
        rows_by_reason=counts,
        files=sum(st.files for st in steps if not st.expected),
        chunk_rows=spec.chunk_rows,
        price_cents_per_row=None if price is None else price.cents_per_row,
        price_source=None if price is None else price.source,
        estimated_cost_cents=None if price is None else round(price.cents_per_row * max(0, rows - unasked), 2),
        questions=max(0, rows - unasked),
        rows_deduplicated=max(0, shared - reused + reused_questions),
        rows_reused=reused,
        questions_reused=reused_questions,
        budget_cents=None if limit is None else int(limit),
        unfinished_jobs=_count_jobs(r, spec, ACTIVE),
        held_jobs=_count_jobs(r, spec, HELD),
        key_problems=report.describe(),
        target_exists=r.exists,
        new_columns=[] if r.columns is None else _new_columns(adapter, spec, r.columns),
        preview=preview,
        escalation=escalation,
        new_fields=[
            {"fields": st.fields, "rows": st.rows, "estimated_cost_cents": st.estimated_cost_cents}
            for st in steps
            if st.kind == "fields" and not st.expected
        ],
        warnings=spec.warnings(),
        definition=definition_hash(spec),
        steps=steps,
    )


def _reusable(
    adapter: Adapter,
    spec: SyncSpec,
    r: _Reads,
    selection: Callable[..., Selection],
    full_refresh: bool,
) -> tuple[int, int]:
    """Of the own pass's rows, those a stored answer would answer, and the questions among them: the selection
    joined to the store, as the run joins it (engine/runner_reuse.py)."""
    if not r.has_ledger or not takes_answers(spec, own_pass=True, full_refresh=full_refresh):
        return 0, 0
    question = question_id(spec, r.inputs or list(spec.source.key))
    if not has_answers(r.ledger, question):
        return 0, 0
    joined = selection(stored=stored_relation(r.ledger, spec, question))
    with adapter.session() as s:
        row = s.fetchone(count_reusable_sql(adapter, joined), list(joined.params))
    return (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)


def _shared_rows(adapter: Adapter, selection: Selection, rows: int, limit: int | None) -> int:
    """Of the own pass's ``rows``, those that share their question with another (asked once, paid once)."""
    if not rows:
        return 0
    counted, questions = count_questions(adapter, selection, limit)
    return max(0, min(rows, counted) - questions)


def _own_counts(adapter: Adapter, selection: Selection, held: pa.Array | None, limit: int | None) -> dict[str, int]:
    """The own pass's rows by reason (those a job still holds left out)."""
    if held is not None and len(held):
        return _count_without_held(adapter, selection, held, limit)
    with adapter.session() as s:
        return {str(r): int(n) for r, n in s.fetchall(count_by_reason_sql(adapter, selection, limit))}


def _add_field_steps(
    adapter: Adapter,
    spec: SyncSpec,
    r: _Reads,
    steps: list[StepPlan],
    price: Price | None,
    prices: dict[tuple[str, str], float] | None,
) -> dict[str, tuple[SyncSpec, list[str]]]:
    """Append the "new fields" steps to ``steps``; return those that send rows now, by name (for the preview)."""
    sending: dict[str, tuple[SyncSpec, list[str]]] = {}
    common = r.common(spec)
    for fs in field_steps(spec, r.changes):  # the run's sequence (engine/steps/new_fields.py)
        sub, stamps, tier_index, name = fs.spec, fs.stamps, fs.tier_index, fs.name
        sel = build_selection(adapter, sub, **common, **fs.step.selection_args())
        with adapter.session() as s:
            n = sum(int(c) for _, c in s.fetchall(count_by_reason_sql(adapter, sel, spec.refresh.limit)))
        if tier_index == 0:
            if n:
                steps.append(_step(name, "fields", sub, {"new_fields": n}, price, fields=sorted(sub.struct)))
                sending[name] = (sub, stamps)
        elif n or any(st.kind == "fields" and st.fields == sorted(sub.struct) for st in steps):
            # rows waiting for this tier now; the rows the step at the tier before sends may add to them
            step_price = resolve_price(sub, r.ledger, prices)
            steps.append(
                _step(name, "fields", sub, {"waiting": n}, step_price, fields=sorted(sub.struct), expected=True)
            )
    return sending


def _escalation_step(spec: SyncSpec, e: Mapping[str, Any]) -> StepPlan:
    return StepPlan(
        name=f"escalate:{e['tier']}",
        kind="escalate",
        tier=e["tier"],
        rows_by_reason={"waiting": int(e["rows_waiting"])},
        rows=int(e["rows"]),
        files=math.ceil(int(e["rows"]) / spec.chunk_rows) if e["rows"] else 0,
        price_cents_per_row=e["price_cents_per_row"],
        estimated_cost_cents=e["estimated_cost_cents"],
        expected=True,
    )


def _budget_limit(spec: SyncSpec, budget_cents: float | None) -> float | None:
    """The run's cap: ``--budget`` and the sync's ``budget.max_cost_cents``, the lower of the two."""
    limit = budget_cents if budget_cents is not None else spec.budget.max_cost_cents
    if spec.budget.max_cost_cents is not None and budget_cents is not None:
        limit = min(budget_cents, spec.budget.max_cost_cents)
    return limit


def _count_jobs(r: _Reads, spec: SyncSpec, states: frozenset[S]) -> int:
    if not r.has_ledger:
        return 0
    return len(r.ledger.jobs_for(sync_name=spec.name, states=sorted(states), target=r.target_id))


def _new_columns(adapter: Adapter, spec: SyncSpec, columns: Mapping[str, Any]) -> list[str]:
    return [c.name for c in owned_columns(spec) if adapter.find_column(columns, c.name) is None]


def definition_hash(spec: SyncSpec) -> str:
    """A hash of everything the sync's definition says (source, key, struct, tier, escalation, target, budget...):
    an approved plan (``run --plan``) is executed only for the definition it was made with."""
    blob = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _step(
    name: str,
    kind: str,
    spec: SyncSpec,
    rows_by_reason: dict[str, int],
    price: Price | None,
    *,
    fields: list[str] | None = None,
    expected: bool = False,
) -> StepPlan:
    rows = sum(rows_by_reason.values())
    return StepPlan(
        name=name,
        kind=kind,
        tier=spec.tier,
        fields=fields,
        rows_by_reason=rows_by_reason,
        rows=rows,
        files=math.ceil(rows / spec.chunk_rows) if rows else 0,
        price_cents_per_row=None if price is None else price.cents_per_row,
        price_source=None if price is None else price.source,
        estimated_cost_cents=None if price is None else round(price.cents_per_row * rows, 2),
        expected=expected,
    )


def _preview(
    adapter: Adapter,
    spec: SyncSpec,
    steps: list[StepPlan],
    field_steps: Mapping[str, tuple[SyncSpec, list[str]]],
    own_selection: Callable[[tuple[int, int] | None], Selection],
    common: Mapping[str, Any],
    held: pa.Array | None,
    total_rows: int,
    *,
    inputs: list[str],
    rows: int,
    out_dir: Path | None,
) -> Preview:
    """``plan --preview``: the first file of the first step that sends rows, from that step's own selection."""
    from sixtyfour_sync.engine.rows.preview import write_preview

    n = bucket_count(adapter, total_rows)
    buckets = [(b, n) if n > 1 else None for b in range(n)]
    first = next((st for st in steps if st.rows and not st.expected), None)
    step_spec = spec
    if first is not None and first.kind == "fields":
        step_spec, stamps = field_steps[first.name]

        def selections() -> Iterator[Selection]:
            chosen = Step.fields(step_spec, stamps).selection_args()
            for b in buckets:
                yield build_selection(adapter, step_spec, **common, **chosen, bucket=b)

    else:

        def selections() -> Iterator[Selection]:
            for b in buckets:
                yield own_selection(b)

    limit_rows = rows if spec.refresh.limit is None else min(rows, spec.refresh.limit)
    return write_preview(
        adapter,
        selections,
        key=tuple(spec.source.key),
        config=build_api_config(step_spec, inputs),
        rows=max(1, limit_rows),
        out_dir=out_dir or Path("target") / "sixtyfour_preview" / spec.name,
        held=held,
    )
