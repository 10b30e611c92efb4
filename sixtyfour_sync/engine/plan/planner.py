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

from sixtyfour_sync.config.models import LoadedSync, StructField, SyncSpec, build_api_config
from sixtyfour_sync.engine.jobs.states import ACTIVE, HELD
from sixtyfour_sync.engine.jobs.states import JobState as S
from sixtyfour_sync.engine.ledger.store import Ledger
from sixtyfour_sync.engine.rows.extract import ScanStats, denormalize, missing_key
from sixtyfour_sync.engine.rows.select import (
    KEY_ROWS_COLUMN,
    REASON_COLUMN,
    Selection,
    answered_at_sql,
    bucket_count,
    build_selection,
    count_by_reason_sql,
    drop_held,
    source_relation_sql,
    stamp_counts_sql,
    weak_answer_sql,
)
from sixtyfour_sync.engine.steps.field_changes import FieldChanges, field_changes
from sixtyfour_sync.engine.summary import StepPlan, SyncPlan
from sixtyfour_sync.errors import ConfigError, ConfigProblem
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.keytypes import SUPPORTED_KEY_TYPES, KeyType, refusal_message
from sixtyfour_sync.warehouse.types import Column, LogicalType, TableRef

if TYPE_CHECKING:
    from sixtyfour_sync.engine.rows.preview import Preview

__all__ = [
    "Price",
    "arrow_to_logical",
    "field_logical_type",
    "owned_columns",
    "plan_sync",
    "query_columns",
    "resolve_inputs",
    "resolve_key_types",
    "resolve_price",
    "target_ref",
]

_FIELD_TYPES = {
    "str": LogicalType.TEXT,
    "int": LogicalType.BIGINT,
    "float": LogicalType.DOUBLE,
    "bool": LogicalType.BOOLEAN,
}


def arrow_to_logical(t: pa.DataType) -> LogicalType:
    """The nearest logical type of an Arrow key type (a new target's key columns take the source key's own
    type: :meth:`Adapter.key_column`). An exact number is never a double: a decimal or an unsigned 64-bit
    integer is text here."""
    if pa.types.is_integer(t) and not pa.types.is_uint64(t):
        return LogicalType.BIGINT
    if pa.types.is_floating(t):
        return LogicalType.DOUBLE
    if pa.types.is_boolean(t):
        return LogicalType.BOOLEAN
    if pa.types.is_timestamp(t):
        return LogicalType.TIMESTAMP
    return LogicalType.TEXT


def field_logical_type(field: StructField) -> LogicalType:
    """The target column type of a struct field: JSON for lists, dicts, objects and list[enum]; BIGINT, DOUBLE,
    BOOLEAN for int, float, bool; TEXT for str, enum and a type the API's schema does not list."""
    if field.is_json:
        return LogicalType.JSON
    return _FIELD_TYPES.get(field.type, LogicalType.TEXT)


def owned_columns(spec: SyncSpec) -> list[Column]:
    """The columns a sync owns in its target: fields, confidences, its own bookkeeping."""
    cols = [Column(spec.column_for(n), field_logical_type(f)) for n, f in spec.struct.items()]
    if spec.field_confidence:
        cols += [Column(spec.column_for(f"{n}_confidence"), LogicalType.BIGINT) for n in spec.struct]
    cols += [
        Column(spec.bookkeeping("status"), LogicalType.TEXT),
        Column(spec.bookkeeping("enriched_at"), LogicalType.TIMESTAMP),
        Column(spec.bookkeeping("task_id"), LogicalType.TEXT),
        Column(spec.bookkeeping("input_hash"), LogicalType.TEXT),
        Column(spec.bookkeeping("spec_hash"), LogicalType.TEXT),
        Column(spec.bookkeeping("tier"), LogicalType.TEXT),
    ]
    if spec.gating:  # which fields of the row's last answer were held back, and why (JSON)
        cols.append(Column(spec.bookkeeping("field_status"), LogicalType.TEXT))
    if spec.target.on_source_delete == "flag":  # when a run found the row's key gone from the source
        cols.append(Column(spec.bookkeeping("source_deleted_at"), LogicalType.TIMESTAMP))
    return cols


def target_ref(spec: SyncSpec) -> TableRef:
    """The sync's target table."""
    return TableRef(spec.target.table, spec.target.schema_, spec.target.database)


def query_columns(adapter: Adapter, sql: str) -> list[str]:
    """The column names a query returns (run with LIMIT 0)."""
    with adapter.session() as s:
        names, _ = s._query(adapter.limit_sql(f"SELECT * FROM ({sql}) {adapter.subquery_alias('q')}", 0))
    return [adapter.denormalize_identifier(n) for n in names]


def resolve_inputs(adapter: Adapter, loaded: LoadedSync, source_sql: str) -> list[str]:
    """The input columns of a sync: ``source.columns``, or every source column but the key and bookkeeping."""
    spec = loaded.spec
    available = query_columns(adapter, source_sql)
    lower = {c.lower(): c for c in available}
    problems = []

    def problem(path: str, message: str, hint: str) -> None:
        problems.append(ConfigProblem(str(loaded.file), f"{spec.name}.{path}", message, line=loaded.line, hint=hint))

    listing = f"source columns: {', '.join(available)}"
    for k in spec.source.key:
        if k.lower() not in lower:
            problem("source.key", f"key column {k!r} is not in the source", listing)
    if spec.source.columns:
        for c in spec.source.columns:
            if c.lower() not in lower:
                problem("source.columns", f"column {c!r} is not in the source", listing)
        inputs = list(spec.source.columns)
    else:
        keys = {k.lower() for k in spec.source.key}
        inputs = [c for c in available if c.lower() not in keys and not c.lower().startswith("_sixtyfour")]
    clash = [f for f in spec.struct if f.lower() in {i.lower() for i in inputs}]
    if clash:
        problem(
            "struct",
            f"struct field(s) {', '.join(clash)} have the name of a source column that is sent",
            "rename the field, or list source.columns without that column",
        )
    if problems:
        raise ConfigError(problems=problems)
    return inputs


def resolve_key_types(adapter: Adapter, loaded: LoadedSync, source_sql: str) -> dict[str, KeyType]:
    """Each source key column's type (warehouse/keytypes.py); a ConfigError naming every key of a type the sync
    cannot carry exactly, with the supported key types (``validate``, ``plan`` and ``run`` before paying)."""
    spec = loaded.spec
    found = adapter.key_types(source_sql, spec.source.key)
    problems = []
    for k, kt in found.items():
        if kt is None:
            label = adapter.source_column_types(source_sql, [k]).get(k) or _arrow_label(adapter, source_sql, k)
            problems.append(
                ConfigProblem(
                    str(loaded.file),
                    f"{spec.name}.source.key",
                    refusal_message(k, label),
                    line=loaded.line,
                    hint="cast the key in source.sql to one of these types (an id as text, say), or key the sync "
                    f"by another column; supported key types: {SUPPORTED_KEY_TYPES}",
                )
            )
    if problems:
        raise ConfigError(problems=problems)
    return {k: kt for k, kt in found.items() if kt is not None}


def _arrow_label(adapter: Adapter, source_sql: str, key: str) -> str:
    """A refused key's type as its rows arrive, for the message where the warehouse names none."""
    sql = adapter.limit_sql(
        f"SELECT {adapter.quote(key, what='key column')} FROM ({source_sql}) {adapter.subquery_alias('k')}", 1
    )
    for batch in adapter.stream(sql):
        return str(batch.schema.field(0).type)
    return "unknown"


@dataclass(frozen=True)
class Price:
    """A per-row price and where it came from."""

    cents_per_row: float
    source: str


def resolve_price(spec: SyncSpec, ledger: Ledger | None, prices: dict[tuple[str, str], float] | None) -> Price | None:
    """The per-row price to plan with: the sync's ``budget.price_cents_per_row``, the project's ``prices:``,
    what the ledger learned for the endpoint and tier, or None when nothing is known."""
    if spec.budget.price_cents_per_row is not None and spec.question_tier == spec.tier:
        return Price(spec.budget.price_cents_per_row, "budget.price_cents_per_row")  # the sync's own tier only
    if prices and (spec.endpoint, spec.tier) in prices:
        return Price(prices[(spec.endpoint, spec.tier)], "prices: in the project")
    if ledger is not None and ledger.exists():
        learned = ledger.learned_price(spec.endpoint, spec.tier)
        if learned is not None:
            price, when = learned
            date = "" if when is None else f" on {str(when)[:10]}"
            return Price(price, f"learned from the API's estimate{date}")
    return None


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
    target = target_ref(spec)
    source_sql = source_relation_sql(adapter, spec, ref_table)
    inputs = resolve_inputs(adapter, loaded, source_sql)
    key_types = resolve_key_types(adapter, loaded, source_sql)
    exists = adapter.table_exists(target)
    columns = adapter.get_columns(target) if exists else None
    ledger = Ledger(adapter)
    has_ledger = ledger.exists()
    target_id = adapter.table_sql(target)
    held = ledger.held_keys(spec.name, sorted(ACTIVE | HELD), target_id) if has_ledger else None
    changes = None
    if columns is not None and has_ledger and not full_refresh and spec.refresh.when != "always":
        changes = read_field_changes(adapter, ledger, spec, target, columns)
    common: dict[str, Any] = {
        "source_sql": source_sql,
        "inputs": inputs,
        "target": target,
        "target_columns": columns,
        "spec_hash": spec.spec_hash(),
        "key_types": key_types,
    }

    def own_selection(bucket: tuple[int, int] | None = None) -> Selection:
        # exactly the run's own pass (runner.SyncRunner._selections): the rows the new-fields steps ask are not in it
        return build_selection(
            adapter,
            spec,
            **common,
            full_refresh=full_refresh,
            bucket=bucket,
            not_whole=changes.not_whole if changes else (),
            failed_current=changes.failed_current if changes else (),
        )

    selection = own_selection()
    report = adapter.key_report(source_sql, spec.source.key)
    if held is not None and len(held):
        counts = _count_without_held(adapter, selection, held, spec.refresh.limit)
    else:
        with adapter.session() as s:
            counts = {
                str(r): int(n) for r, n in s.fetchall(count_by_reason_sql(adapter, selection, spec.refresh.limit))
            }
    price = resolve_price(spec, ledger, prices)
    steps = [_step("own", "own", spec, dict(counts), price)]
    field_steps: dict[str, tuple[SyncSpec, list[str]]] = {}
    for sub, stamps, tier_index in _field_step_specs(spec, changes):
        sel = build_selection(adapter, sub, **common, field_stamps=stamps)
        with adapter.session() as s:
            n = sum(int(c) for _, c in s.fetchall(count_by_reason_sql(adapter, sel, spec.refresh.limit)))
        name = f"fields:{','.join(sorted(sub.struct))}@{sub.tier}"
        if tier_index == 0:
            if n:
                steps.append(_step(name, "fields", sub, {"new_fields": n}, price, fields=sorted(sub.struct)))
                field_steps[name] = (sub, stamps)
        elif n or any(st.kind == "fields" and st.fields == sorted(sub.struct) for st in steps):
            # rows waiting for this tier now; the rows the step at the tier before sends may add to them
            step_price = resolve_price(sub, ledger, prices)
            steps.append(
                _step(name, "fields", sub, {"waiting": n}, step_price, fields=sorted(sub.struct), expected=True)
            )
    asked_fields = sum(st.rows for st in steps if st.kind == "fields" and not st.expected)
    new_fields = [
        {"fields": st.fields, "rows": st.rows, "estimated_cost_cents": st.estimated_cost_cents}
        for st in steps
        if st.kind == "fields" and not st.expected
    ]
    if asked_fields:  # they are sent too: counted in the rows, the files and the cost
        counts["new_fields"] = asked_fields
    rows = sum(counts.values())
    preview = None
    if preview_rows is not None:
        preview = _preview(adapter, spec, steps, field_steps, own_selection, common, held, report.total_rows,
                           inputs=inputs, rows=preview_rows, out_dir=preview_dir)  # fmt: skip
    unfinished = held_jobs = 0
    if has_ledger:
        unfinished = len(ledger.jobs_for(sync_name=spec.name, states=sorted(ACTIVE), target=target_id))
        held_jobs = len(ledger.jobs_for(sync_name=spec.name, states=sorted(HELD), target=target_id))
    limit = budget_cents if budget_cents is not None else spec.budget.max_cost_cents
    if spec.budget.max_cost_cents is not None and budget_cents is not None:
        limit = min(budget_cents, spec.budget.max_cost_cents)
    new_cols = []
    if columns is not None:
        new_cols = [c.name for c in owned_columns(spec) if adapter.find_column(columns, c.name) is None]
    escalation = (
        plan_escalation(adapter, spec, target, columns,
                        selection_args={"source_sql": source_sql, "inputs": inputs, "key_types": key_types},
                        rows=rows, ledger=ledger if has_ledger else None, prices=prices)
        if spec.escalate
        else []
    )  # fmt: skip
    for e in escalation:
        steps.append(
            StepPlan(
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
        )
    return SyncPlan(
        name=spec.name,
        endpoint=spec.endpoint,
        tier=spec.tier,
        target=str(target),
        rows_by_reason=counts,
        files=sum(st.files for st in steps if not st.expected),
        chunk_rows=spec.chunk_rows,
        price_cents_per_row=None if price is None else price.cents_per_row,
        price_source=None if price is None else price.source,
        estimated_cost_cents=None if price is None else round(price.cents_per_row * rows, 2),
        budget_cents=None if limit is None else int(limit),
        unfinished_jobs=unfinished,
        held_jobs=held_jobs,
        key_problems=report.describe(),
        target_exists=exists,
        new_columns=new_cols,
        preview=preview,
        escalation=escalation,
        new_fields=new_fields,
        warnings=spec.warnings(),
        definition=definition_hash(spec),
        steps=steps,
    )


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


def _field_step_specs(spec: SyncSpec, changes: FieldChanges | None) -> Iterator[tuple[SyncSpec, list[str], int]]:
    """The "new fields" steps a run takes (engine/steps/new_fields.py), in its order: per group of fields, one at the
    sync's tier for the rows lacking them, then one per escalation tier for the rows waiting for it."""
    if changes is None:
        return
    groups = dict(changes.groups)
    for fields in sorted(set(groups) | set(changes.pending)):
        known = [f for f in fields if f in spec.struct]
        if not known:
            continue
        sub = spec.only_fields(known)
        ladder = spec.ladder
        for i, tier in enumerate(ladder):
            if i == 0:
                if groups.get(fields):
                    yield sub, groups[fields], 0
                continue
            yield sub.escalated(tier), [sub.through_stamp(ladder[i - 1])[0]], i


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
            for b in buckets:
                yield build_selection(adapter, step_spec, **common, field_stamps=stamps, bucket=b)

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


def plan_escalation(
    adapter: Adapter,
    spec: SyncSpec,
    target: TableRef,
    columns: Mapping[str, LogicalType | str] | None,
    *,
    selection_args: Mapping[str, Any],
    rows: int,
    ledger: Ledger | None,
    prices: dict[tuple[str, str], float] | None,
) -> list[dict[str, Any]]:
    """Expected rows and cost of each escalation step: the weak answers waiting in the target, plus the rows
    this run sends times the weak rate learned at the step before (from the target's answers at that tier, or
    the ledger's failed rows)."""
    steps: list[dict[str, Any]] = []
    previous, coming = spec.tier, float(rows)
    ladder = [spec.tier, *spec.escalate]
    lit = "'" + spec.spec_hash().replace("'", "''") + "'"
    for tier in spec.escalate:
        waiting, rate, learned_from = 0, None, None
        if columns is not None:

            def col(name: str) -> str:
                stored = adapter.find_column(columns, name)
                return "NULL" if stored is None else f"t.{adapter.quote_char}{stored}{adapter.quote_char}"

            sel = build_selection(adapter, spec.escalated(tier), target=target, target_columns=columns,
                                  spec_hash=spec.spec_hash(), escalate_from=previous, **selection_args)  # fmt: skip
            # asked at ``previous``: rows answered there, and rows escalated beyond it (weak there)
            later = [answered_at_sql(spec, col, t, lit) for t in ladder[ladder.index(previous) + 1 :]]
            here = answered_at_sql(spec, col, previous, lit)
            beyond = " OR ".join(f"({c})" for c in later) or "1 = 0"
            with adapter.session() as s:
                waiting = sum(int(n) for _, n in s.fetchall(count_by_reason_sql(adapter, sel)))
                row = s.fetchone(
                    f"SELECT SUM(CASE WHEN ({here}) OR {beyond} THEN 1 ELSE 0 END), "
                    f"SUM(CASE WHEN (({here}) AND {weak_answer_sql(spec, col)}) OR {beyond} THEN 1 ELSE 0 END) "
                    f"FROM {adapter.table_sql(target)} t"
                )
            answered, weak = (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)
            if answered:
                rate, learned_from = weak / answered, f"{answered:,} answer(s) asked at {previous} in the target"
        if rate is None and ledger is not None:
            jobs = [
                j
                for j in ledger.job_rows()
                if j.get("sync_name") == spec.name and j.get("tier") == previous and j.get("state") == S.MERGED.value
            ]
            asked = sum(int(j.get("rows") or 0) for j in jobs)
            if asked:
                weak_rows = sum(int(j.get("rows_failed") or 0) + int(j.get("rows_not_returned") or 0) for j in jobs)
                rate, learned_from = weak_rows / asked, f"failed rows of {len(jobs)} job(s) at {previous}"
        expected = waiting + (coming * rate if rate is not None else 0.0)
        price = resolve_price(spec.escalated(tier), ledger, prices)
        steps.append(
            {
                "tier": tier,
                "from_tier": previous,
                "rows_waiting": waiting,
                "weak_rate": None if rate is None else round(rate, 4),
                "learned_from": learned_from,
                "rows": round(expected),
                "price_cents_per_row": None if price is None else price.cents_per_row,
                "estimated_cost_cents": None if price is None else round(price.cents_per_row * expected, 2),
            }
        )
        previous, coming = tier, expected
    return steps
