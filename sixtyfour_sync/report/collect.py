"""Gather a run report from the ledger and the target tables (the I/O half; :mod:`.render` draws it).

The ledger is read through :class:`~sixtyfour_sync.engine.ledger.store.Ledger` (its table references) and the job
state groups of :mod:`sixtyfour_sync.engine.jobs.states`; the bookkeeping columns come from the sync definition.
Every aggregate is one SQL statement in the warehouse (see :mod:`.queries`): no table is read whole.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from typing import Any

from sixtyfour_sync import __version__
from sixtyfour_sync._redact import sanitize
from sixtyfour_sync.config.models import LoadedSync, SyncSpec
from sixtyfour_sync.engine.jobs.states import ACTIVE, HELD
from sixtyfour_sync.engine.ledger.store import Job, Ledger, read_account
from sixtyfour_sync.engine.plan.columns import target_ref
from sixtyfour_sync.engine.project import Project
from sixtyfour_sync.errors import WarehouseError
from sixtyfour_sync.report import queries
from sixtyfour_sync.report.model import (
    CONFIDENCE_BUCKETS,
    AttentionJob,
    ErrorLine,
    Evaluation,
    EvaluationCell,
    FieldStats,
    Report,
    RunRow,
    SyncReport,
    TierFill,
    TierJobs,
)
from sixtyfour_sync.warehouse.adapter import Adapter

__all__ = ["collect_report", "collect_runs", "collect_sync"]

#: The package's own logger: it carries the redacting filter (see ``_redact.REDACTED_LOGGERS``).
log = logging.getLogger("sixtyfour_sync")

#: At most this many held jobs and recent errors are listed per sync.
MAX_HELD = 100
MAX_ERRORS = 10
#: Longest error text on the page.
MAX_ERROR = 500
_JOB_COLUMNS = [f.name for f in fields(Job)] + ["updated_at"]


def _int(v: Any) -> int:
    return 0 if v is None else int(v)


def _float(v: Any) -> float:
    return 0.0 if v is None else float(v)


def _ts(v: Any) -> datetime | None:
    """A timestamp as the drivers return it, as an aware datetime (naive values are UTC, as the ledger writes)."""
    if v is None:
        return None
    if isinstance(v, str):
        try:
            v = datetime.fromisoformat(v)
        except ValueError:
            return None
    if not isinstance(v, datetime):
        return None
    return v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v


def _text(v: Any) -> str | None:
    return None if v is None else sanitize(v, MAX_ERROR)


# -- runs ------------------------------------------------------------------------------------------


def collect_runs(adapter: Adapter, ledger: Ledger, names: Sequence[str], limit: int) -> list[RunRow]:
    """The latest ``limit`` runs of ``names`` in one ledger, with their jobs' rows and money."""
    runs = {r.run_id: r for r in _run_rows(adapter, ledger, names, limit)}
    wanted = set(names)
    for key, row in runs.items():
        # the numbers every view of a run shows, from the ledger's facts (engine/ledger/accounting.py)
        acc = read_account(ledger, key)
        syncs = [s for name, s in acc.syncs.items() if name in wanted]
        runs[key] = replace(
            row,
            jobs=sum(s.own.jobs for s in syncs),
            replays=sum(s.own.replays for s in syncs),
            rows_sent=sum(s.own.rows_sent for s in syncs),
            rows_enriched=sum(s.own.rows_enriched for s in syncs),
            rows_failed=sum(s.own.rows_failed for s in syncs),
            rows_not_returned=sum(s.own.rows_not_returned for s in syncs),
            rows_deduplicated=sum(s.own.rows_deduplicated for s in syncs),
            saved_cents=sum(s.own.saved_cents for s in syncs),
            rows_reused=sum(s.rows_reused for s in syncs),
            reused_saved_cents=round(sum(s.reused_saved_cents for s in syncs), 4),
            estimated_cents=sum(s.own.estimated_cost_cents for s in syncs),
            charged_cents=sum(s.own.charged_cents for s in syncs),
            charged_later_cents=sum(s.own.charged_later_cents for s in syncs),
        )
    return list(runs.values())


def _run_rows(adapter: Adapter, ledger: Ledger, names: Sequence[str], limit: int) -> list[RunRow]:
    """The latest ``limit`` run rows naming one of ``names`` (asking for more when a near match took a place)."""
    wanted = set(names)
    ask = limit
    while True:
        sql, params = queries.runs_sql(adapter, ledger.runs, list(names), ask)
        with adapter.session() as s:
            rows = s.fetchall(sql, params)
        kept = [r for r in (_run_row(row) for row in rows) if wanted & set(r.syncs)]
        if len(kept) >= limit or len(rows) < ask:
            return kept[:limit]
        ask *= 4


def _run_row(row: Sequence[Any]) -> RunRow:
    rec = dict(zip(queries.RUN_COLUMNS, row, strict=True))
    return RunRow(
        run_id=str(rec["run_id"]),
        status=str(rec["status"] or "unknown"),
        syncs=tuple(n for n in str(rec["syncs"] or "").split(",") if n),
        started_at=_ts(rec["started_at"]),
        finished_at=_ts(rec["finished_at"]),
        jobs_resumed=_int(rec["jobs_resumed"]),
        error=_text(rec["error"]),
    )


def _merge_runs(parts: Iterable[RunRow]) -> list[RunRow]:
    """One row per run id: a run that wrote to two warehouses has a row in each ledger."""
    merged: dict[str, RunRow] = {}
    for r in parts:
        seen = merged.get(r.run_id)
        if seen is None:
            merged[r.run_id] = r
            continue
        merged[r.run_id] = replace(
            seen,
            syncs=tuple(dict.fromkeys(seen.syncs + r.syncs)),
            finished_at=max((t for t in (seen.finished_at, r.finished_at) if t), default=None),
            jobs=seen.jobs + r.jobs,
            jobs_resumed=seen.jobs_resumed + r.jobs_resumed,
            replays=seen.replays + r.replays,
            rows_sent=seen.rows_sent + r.rows_sent,
            rows_enriched=seen.rows_enriched + r.rows_enriched,
            rows_failed=seen.rows_failed + r.rows_failed,
            rows_not_returned=seen.rows_not_returned + r.rows_not_returned,
            rows_deduplicated=seen.rows_deduplicated + r.rows_deduplicated,
            saved_cents=seen.saved_cents + r.saved_cents,
            rows_reused=seen.rows_reused + r.rows_reused,
            reused_saved_cents=seen.reused_saved_cents + r.reused_saved_cents,
            estimated_cents=seen.estimated_cents + r.estimated_cents,
            charged_cents=seen.charged_cents + r.charged_cents,
            charged_later_cents=seen.charged_later_cents + r.charged_later_cents,
            error=seen.error or r.error,
        )
    return sorted(merged.values(), key=lambda r: (r.started_at is not None, r.started_at, r.run_id), reverse=True)


# -- one sync --------------------------------------------------------------------------------------


def _target_columns(adapter: Adapter, spec: SyncSpec, existing: Iterable[str]) -> queries.TargetColumns | None:
    """The stored names of the columns to read, or None when the sync's status column is not there."""
    names = list(existing)
    status = adapter.find_column(names, spec.bookkeeping("status"))
    if status is None:
        return None
    cols = tuple(
        (
            f,
            adapter.find_column(names, spec.column_for(f)),
            adapter.find_column(names, spec.column_for(f"{f}_confidence")),
        )
        for f in spec.struct
    )
    return queries.TargetColumns(status, cols, adapter.find_column(names, spec.bookkeeping("tier")))


@dataclass
class _Acc:
    """Sums over the groups of the target scan."""

    table_rows: int = 0
    rows: int = 0


def _target_stats(adapter: Adapter, spec: SyncSpec, report: SyncReport) -> SyncReport:
    target = target_ref(spec)
    if not adapter.table_exists(target):
        return report
    cols = _target_columns(adapter, spec, adapter.get_columns(target))
    if cols is None:
        return replace(report, target_exists=True, problem="the target has no status column of this sync yet")
    sql, params = queries.target_stats_sql(adapter, target, cols)
    with adapter.session() as s:
        groups = s.fetchall(sql, params)
    n_fields = len(cols.fields)
    confs = [f for f, _, c in cols.fields if c is not None]
    acc = _Acc()
    filled = dict.fromkeys(spec.struct, 0)
    buckets = {f: [0] * CONFIDENCE_BUCKETS for f in confs}
    conf_sum = dict.fromkeys(confs, 0.0)
    by_status: dict[str, int] = {}
    by_tier: dict[str, TierFill] = {}
    for g in groups:
        status, tier = g[0], (g[1] if cols.tier else None)
        rest = list(g[2 if cols.tier else 1 :])
        count = _int(rest[0])
        acc.table_rows += count
        if status is None:
            continue  # rows of the table this sync has not answered
        acc.rows += count
        by_status[str(status)] = by_status.get(str(status), 0) + count
        counts = [_int(v) for v in rest[1 : 1 + n_fields]]
        for (f, _, _), n in zip(cols.fields, counts, strict=True):
            filled[f] += n
        pos = 1 + n_fields
        for f in confs:
            for i in range(CONFIDENCE_BUCKETS):
                buckets[f][i] += _int(rest[pos + i])
            conf_sum[f] += _float(rest[pos + CONFIDENCE_BUCKETS])
            pos += CONFIDENCE_BUCKETS + 1
        if cols.tier:
            label = "(none)" if tier is None else sanitize(tier, 40)
            old = by_tier.get(label, TierFill(label, 0, tuple((f, 0) for f in spec.struct)))
            by_tier[label] = TierFill(
                label,
                old.rows + count,
                tuple((f, n + c) for (f, n), c in zip(old.filled, counts, strict=True)),
            )
    stats = []
    for f, value, conf in cols.fields:
        hist = tuple(buckets[f]) if conf is not None else None
        n = sum(hist or ())
        stats.append(
            FieldStats(
                name=f,
                column=value or spec.column_for(f),
                in_table=value is not None,
                filled=filled[f],
                confidence=hist,
                confidence_avg=(conf_sum[f] / n) if n else None,
            )
        )
    return replace(
        report,
        target_exists=True,
        table_rows=acc.table_rows,
        rows=acc.rows,
        fields=tuple(stats),
        by_status=tuple(sorted(by_status.items(), key=lambda kv: (-kv[1], kv[0]))),
        by_tier=tuple(sorted(by_tier.values(), key=lambda t: t.tier)) if cols.tier else None,
    )


def _ledger_stats(adapter: Adapter, ledger: Ledger, name: str, report: SyncReport) -> SyncReport:
    with adapter.session() as s:
        sql, params = queries.tier_jobs_sql(adapter, ledger.jobs, name)
        by_tier = s.fetchall(sql, params)
        sql, params = queries.job_states_sql(adapter, ledger.jobs, name)
        states = s.fetchall(sql, params)
        held_states = sorted(x.value for x in HELD)
        sql, params = queries.held_jobs_sql(adapter, ledger.jobs, name, _JOB_COLUMNS, held_states, MAX_HELD)
        held = [dict(zip(_JOB_COLUMNS, r, strict=True)) for r in s.fetchall(sql, params)]
        sql, params = queries.recent_errors_sql(adapter, ledger.jobs, name, MAX_ERRORS)
        errors = s.fetchall(sql, params)
    tiers = [
        TierJobs("(none)" if t is None else sanitize(t, 40), _int(n), _int(r), _int(ok), _int(bad), _float(c))
        for t, n, r, ok, bad, c, _ in by_tier
    ]
    active = {x.value for x in ACTIVE}
    attention = []
    for row in held:
        job = Job.from_row(row)
        attention.append(
            AttentionJob(
                job_id=job.job_id,
                run_id=job.run_id,
                state=job.state.value,
                task_id=job.task_id,
                rows=job.rows,
                charged_cents=job.charged_cents,
                error=_text(job.error),
                updated_at=_ts(row["updated_at"]),
            )
        )
    return replace(
        report,
        tier_jobs=tuple(tiers),
        attention=tuple(attention),
        jobs_in_flight=sum(_int(n) for st, n, _ in states if st in active),
        rows_in_flight=sum(_int(r) for st, _, r in states if st in active),
        errors=tuple(
            ErrorLine(_ts(when), str(run_id), str(state), task, _text(msg) or "")
            for when, run_id, state, task, msg in errors
        ),
        estimated_cents=sum(_float(r[6]) for r in by_tier),
        charged_cents=sum(t.charged_cents for t in tiers),
    )


def collect_sync(adapter: Adapter, ledger: Ledger | None, loaded: LoadedSync) -> SyncReport:
    """One sync's section: its target's fill rates, confidences, statuses and tiers, and its ledger jobs."""
    spec = loaded.spec
    report = SyncReport(
        name=spec.name,
        endpoint=spec.endpoint,
        tier=spec.tier,
        target=str(target_ref(spec)),
        field_confidence=spec.field_confidence,
    )
    try:
        report = _target_stats(adapter, spec, report)
    except WarehouseError as exc:
        # one unreadable target (a column changed type, say) does not hide the rest of the report
        log.warning("%s: reading the target failed: %s", spec.name, exc)
        report = replace(report, problem=f"the target could not be read: {sanitize(exc, MAX_ERROR)}")
    if ledger is not None:
        report = _ledger_stats(adapter, ledger, spec.name, report)
        report = replace(report, evaluation=_latest_evaluation(ledger, spec.name))
    return report


def _latest_evaluation(ledger: Ledger, name: str) -> Evaluation | None:
    """The sync's latest evaluation in the ledger (``sixtyfour-sync evaluate``), or None."""
    from sixtyfour_sync.engine.ledger.evaluations import evaluation_rows

    rows = evaluation_rows(ledger, [name])
    if not rows:
        return None
    latest = rows[-1]["evaluation_id"]
    mine = [r for r in rows if r["evaluation_id"] == latest]
    first = mine[0]
    suggestions: dict[str, tuple[int | None, int | None]] = {}
    for r in mine:
        if r["suggested_min_confidence"] is not None or r["target_precision"] is not None:
            t, g = r["suggested_min_confidence"], r["would_gate"]
            suggestions[str(r["field"])] = (None if t is None else int(t), None if g is None else int(g))
    cells = tuple(
        EvaluationCell(
            str(r["field"]), str(r["tier"]), str(r["band"]), _int(r["correct"]), _int(r["wrong"]), _int(r["missing"])
        )
        for r in mine
    )
    precision = first["target_precision"]
    return Evaluation(
        evaluation_id=str(latest),
        evaluated_at=_ts(first["evaluated_at"]),
        labels=str(first["labels"] or ""),
        cells=cells,
        target_precision=None if precision is None else float(precision),
        suggestions=tuple((f, t, g) for f, (t, g) in suggestions.items()),
    )


# -- the whole report ------------------------------------------------------------------------------


def _project_name(project: Project) -> str:
    if project.dbt is not None and project.dbt.name:
        return project.dbt.name
    return project.project_dir.name or str(project.project_dir)


def collect_report(
    project: Project,
    syncs: Sequence[LoadedSync],
    *,
    run_limit: int = 100,
    now: datetime | None = None,
) -> Report:
    """Everything the page shows for ``syncs``, read from their warehouses."""
    generated = now or datetime.now().astimezone()
    by_adapter: dict[int, tuple[Adapter, list[LoadedSync]]] = {}
    for loaded in syncs:
        adapter = project.adapter_for(loaded)
        by_adapter.setdefault(id(adapter), (adapter, []))[1].append(loaded)
    warehouses, runs, sections = [], [], {}
    found = False
    for adapter, group in by_adapter.values():
        warehouses.append(sanitize(adapter.describe(), 200))
        ledger = Ledger(adapter)
        has_ledger = ledger.exists()
        if has_ledger:
            found = True
            runs.extend(collect_runs(adapter, ledger, [s.spec.name for s in group], run_limit))
        for loaded in group:
            sections[loaded.spec.name] = collect_sync(adapter, ledger if has_ledger else None, loaded)
    merged = _merge_runs(runs)[:run_limit]
    return Report(
        project=_project_name(project),
        generated_at=generated,
        warehouses=tuple(warehouses),
        runs=tuple(merged),
        syncs=tuple(sections[s.spec.name] for s in syncs),
        ledger_found=found,
        run_limit=run_limit,
        version=__version__,
    )
