"""What people and schedulers see: progress while a run works, and the summaries at the end.

On a terminal: rich progress bars (rows extracted, files submitted, jobs finished, rows merged). Otherwise, or
with ``--log-format json``: one log line (or JSON object) per event, so a scheduler can follow and parse it.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from sixtyfour_sync.config.models import LoadedSync
from sixtyfour_sync.engine.runner import Reporter
from sixtyfour_sync.engine.summary import RunResult, StepPlan, SyncPlan
from sixtyfour_sync.logging import event

__all__ = [
    "LogReporter",
    "RichReporter",
    "make_reporter",
    "print_plans",
    "print_run",
    "print_status",
    "print_syncs",
    "sync_row",
]

log = logging.getLogger("sixtyfour_sync.progress")


def _cents(v: float | None, state: str | None = None) -> str:
    if v is None:
        # nothing is ever charged for a job the API did not run to completion
        return "$0.00" if state in ("cancelled", "rejected", "failed", "abandoned") else "unknown"
    return f"${v / 100:,.2f}"


class LogReporter(Reporter):
    """Plain progress lines (text or JSON logs), one per event."""

    def on(self, event_name: str, sync: str, **data: Any) -> None:
        if event_name == "scan":
            event("sync.scan", f"{sync}: reading {data['source_rows']:,} source row(s)", sync=sync, **data)
        elif event_name == "plan":
            event("sync.plan", f"{sync}: {data['rows']:,} row(s) to send in {data['files']} file(s)", sync=sync, **data)
        elif event_name == "extracted":
            event("sync.file_written", f"{sync}: wrote a file of {data['rows']:,} rows", sync=sync, **data)
        elif event_name == "submitted":
            what = "replayed" if data.get("replay") else "submitted"
            event(
                "sync.submitted", f"{sync}: {what} {data['rows']:,} rows as task {data['task_id']}", sync=sync, **data
            )
        elif event_name == "merged":
            event("sync.merged", f"{sync}: merged {data['rows']:,} rows", sync=sync, **data)
        elif event_name == "job_done":
            event("sync.job_done", f"{sync}: a job ended {data['state']}", sync=sync, **data)
        elif event_name == "note":
            level = {"warning": logging.WARNING, "error": logging.ERROR}.get(str(data.get("level")), logging.INFO)
            event("sync.note", f"{sync}: {data['message']}", level=level, sync=sync)


class RichReporter(Reporter):
    """Progress bars on a terminal."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.fields[sync]}[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.tasks: dict[tuple[str, str], TaskID] = {}
        self.lock = threading.Lock()
        self.started = False

    def _task(self, sync: str, name: str, total: float | None) -> TaskID:
        key = (sync, name)
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(name, total=total, sync=sync)
        return self.tasks[key]

    def on(self, event_name: str, sync: str, **data: Any) -> None:
        with self.lock:
            if not self.started:
                self.progress.start()
                self.started = True
            if event_name == "scan":
                self._task(sync, "source rows read", data["source_rows"])
                for name in ("rows extracted", "files submitted", "jobs finished", "rows merged"):
                    self._task(sync, name, None)
            elif event_name == "scanned":
                self.progress.advance(self._task(sync, "source rows read", None), data["rows"])
            elif event_name == "plan":
                # the pass is over: the totals are known now
                rows, files = data["rows"], data["files"]
                for name, total in (
                    ("rows extracted", rows),
                    ("files submitted", files),
                    ("jobs finished", files),
                    ("rows merged", rows),
                ):
                    self.progress.update(self._task(sync, name, total), total=total)
            elif event_name == "extracted":
                self.progress.advance(self._task(sync, "rows extracted", None), data["rows"])
            elif event_name == "submitted":
                self.progress.advance(self._task(sync, "files submitted", None), 1)
            elif event_name == "job_done":
                self.progress.advance(self._task(sync, "jobs finished", None), 1)
            elif event_name == "merged":
                self.progress.advance(self._task(sync, "rows merged", None), data["rows"])
            elif event_name == "note":
                style = {"warning": "yellow", "error": "red"}.get(str(data.get("level")), "dim")
                self.progress.console.print(f"[{style}]{sync}: {data['message']}[/]", highlight=False)

    def close(self) -> None:
        """Stop drawing."""
        if self.started:
            self.progress.stop()


def make_reporter(log_format: str, stream: TextIO | None = None) -> Reporter:
    """Bars on an interactive terminal with text logs; plain events otherwise."""
    out = stream or sys.stderr
    if log_format == "text" and out.isatty():
        return RichReporter()
    return LogReporter()


def _console(log_format: str) -> Console:
    # Piped into a log or CI, a report is still read by a person: give tables room rather than 80 columns.
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)
    return console


#: Below this width, tables keep only their essential columns (the others are in --wide or JSON output).
NARROW = 100


@dataclass(frozen=True)
class Col:
    """A table column: text columns fold long cells onto more lines, numbers stay whole and right-aligned;
    ``narrow=False`` columns are left out on a narrow terminal."""

    name: str
    number: bool = True
    narrow: bool = True


def _grid(console: Console, title: str, cols: Sequence[Col], rows: Sequence[Sequence[str]], wide: bool = False) -> None:
    keep = [i for i, c in enumerate(cols) if wide or c.narrow or console.width >= NARROW]
    table = Table(title=title)
    for i in keep:
        c = cols[i]
        table.add_column(c.name, justify="right" if c.number else "left", overflow="fold", no_wrap=c.number)
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    console.print(table)


def when(value: Any) -> str:
    """A ledger timestamp with its zone: ``2026-12-01 09:10:26 UTC`` (naive values are UTC, as written)."""
    if value is None or value == "":
        return "-"
    moment: Any = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        stamp: datetime = moment.astimezone(timezone.utc)
        return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def _step_line(i: int, st: StepPlan) -> str:
    what = {"own": "own pass", "fields": f"new fields {', '.join(st.fields or [])}", "escalate": "escalation"}
    rows = f"~{st.rows:,} row(s) expected" if st.expected else f"{st.rows:,} row(s)"
    cost = "price unknown" if st.estimated_cost_cents is None else _cents(st.estimated_cost_cents)
    return f"step {i} {st.name}: {what.get(st.kind, st.kind)} at {st.tier}, {rows}, {st.files} file(s), {cost}"


def print_plans(plans: Sequence[SyncPlan], log_format: str, console: Console | None = None) -> None:
    """The ``plan`` report."""
    if log_format == "json":
        print(json.dumps({"plans": [p.to_dict() for p in plans]}, default=str))
        return
    console = console or _console(log_format)
    reasons = ("new", "changed", "stale", "failed_retry", "refresh")
    cols = [Col("sync", number=False), Col("target", number=False)]
    cols += [Col(k.replace("_", " "), narrow=False) for k in reasons]
    cols += [Col("rows")]
    cols += [Col("files", narrow=False), Col("est. cost"), Col("budget", narrow=False)]
    rows = []
    for p in plans:
        r = p.rows_by_reason
        cells = [p.name, p.target + ("" if p.target_exists else " (new)")]
        cells += [f"{r.get(k, 0):,}" for k in reasons] + [f"{p.rows:,}"]
        cells += [str(p.files), _cents(p.estimated_cost_cents)]
        cells += ["-" if p.budget_cents is None else _cents(p.budget_cents) + (" OVER" if p.over_budget else "")]
        rows.append(cells)
    _grid(console, "sixtyfour-sync plan (no API call made)", cols, rows)
    for p in plans:
        notes = []
        if console.width < NARROW and p.rows:  # the reason columns did not fit: say it in words
            why = ", ".join(
                f"{k.replace('_', ' ')} {p.rows_by_reason[k]:,}" for k in reasons if p.rows_by_reason.get(k)
            )
            budget = "" if p.budget_cents is None else f", budget {_cents(p.budget_cents)}"
            notes.append(f"{why}; {p.files} file(s){budget}")
        if p.price_cents_per_row is None and p.rows:
            notes.append(
                f"price per row unknown for {p.endpoint}/{p.tier}: set budget.price_cents_per_row, or "
                f"prices: {{{p.endpoint}: {{{p.tier}: CENTS}}}} in a models file; a run learns it from a "
                "one-row first job (its answer is kept)"
            )
        elif p.price_cents_per_row is not None:
            notes.append(f"{p.price_cents_per_row:g} cents/row ({p.price_source})")
        if p.unfinished_jobs:
            notes.append(f"{p.unfinished_jobs} unfinished job(s) will be finished first")
        if len(p.steps) > 1:  # the steps a run takes, in its order
            notes += [_step_line(i, st) for i, st in enumerate(p.steps, 1)]
        for nf in p.new_fields:
            cost = _cents(nf["estimated_cost_cents"]) if nf["estimated_cost_cents"] is not None else "price unknown"
            notes.append(
                f"new fields: {nf['rows']:,} row(s) x {len(nf['fields'])} field(s) ({', '.join(nf['fields'])}), {cost}"
            )
        for step in p.escalation:
            cost = _cents(step["estimated_cost_cents"]) if step["estimated_cost_cents"] is not None else "price unknown"
            if step["weak_rate"] is None:
                waiting = f"{step['rows_waiting']:,} waiting now, " if step["rows_waiting"] else ""
                notes.append(
                    f"escalation to {step['tier']}: {waiting}more after the {step['from_tier']} answers (no weak "
                    f"rate learned yet); {cost}"
                )
            else:
                notes.append(
                    f"escalation to {step['tier']}: ~{step['rows']:,} row(s), {cost} ({step['weak_rate']:.0%} of "
                    f"answers weak, from {step['learned_from']})"
                )
        if p.key_problems:
            notes.append(p.key_problems)
        if p.new_columns:
            notes.append(f"adds column(s) {', '.join(p.new_columns)}")
        if p.over_budget:
            notes.append("the run stops at the budget: not every row would be sent")
        notes += [f"warning: {w}" for w in p.warnings]
        for n in notes:
            console.print(f"  {p.name}: {n}", markup=False, highlight=False)
    for p in plans:
        if p.preview is not None:
            _print_preview(console, p)


#: Lines of a preview's JSONL shown on the terminal (the file holds them all).
PREVIEW_LINES = 20


def _print_preview(console: Console, p: SyncPlan) -> None:
    pv = p.preview
    assert pv is not None
    console.print(
        f"{p.name}: preview of {pv.rows:,} row(s), {pv.bytes:,} bytes, as a run would send them (no API call)",
        markup=False,
        highlight=False,
    )
    console.print(f"  {pv.config_file}", markup=False, highlight=False)
    console.print(pv.config_file.read_text(encoding="utf-8").rstrip(), markup=False, highlight=False, soft_wrap=True)
    console.print(f"  {pv.rows_file}", markup=False, highlight=False)
    with pv.rows_file.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i == PREVIEW_LINES:
                console.print(f"  ... {pv.rows - PREVIEW_LINES:,} more row(s) in the file", markup=False)
                break
            console.print(line.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
    if pv.rows == 0:
        console.print("  (no row would be sent)", markup=False)


#: What to do about a job held for a person, when it carries no error of its own (docs/job-states.md).
NEXT_STEP = {
    "lost": "the API does not know this task under this key; `sixtyfour-sync run --retry-lost` looks again",
    "needs_attention": "the API refused to resume it; `sixtyfour-sync run --retry-lost` asks its rows again",
    "result_unreadable": "its paid result cannot be read; `sixtyfour-sync run --retry-unreadable` downloads it again",
}


def print_run(result: RunResult, log_format: str, console: Console | None = None) -> None:
    """The summary every run ends with: rows, jobs, cost, fill rate per field."""
    if log_format == "json":
        print(json.dumps({"event": "run.summary", **result.to_dict()}, default=str))
        return
    console = console or _console(log_format)
    cols = [Col("sync", number=False), Col("status", number=False), Col("selected", narrow=False), Col("sent")]
    cols += [Col("enriched"), Col("failed"), Col("not returned", narrow=False), Col("jobs", narrow=False)]
    cols += [Col("est. cost", narrow=False), Col("charged")]
    rows = [
        [s.name, s.status, f"{s.rows_selected:,}", f"{s.rows_sent:,}", f"{s.rows_enriched:,}", f"{s.rows_failed:,}",
         f"{s.rows_not_returned:,}", str(len(s.jobs)), _cents(s.estimated_cost_cents), _cents(s.charged_cents)]
        for s in result.syncs
    ]  # fmt: skip
    # a run refused before anything was accepted is in no ledger: it shows no run id `status --run` could not find
    title = f"run {result.run_id}" if result.recorded else "run (not recorded: nothing was sent or written)"
    _grid(console, f"{title}: {result.status} in {result.duration_seconds:,.1f}s", cols, rows)
    for s in result.syncs:
        if s.fill_rate and s.returned:
            rates = ", ".join(f"{k} {v:.0%}" for k, v in s.fill_rate.items())
            console.print(f"  {s.name} fill rate of this run's {s.returned:,} answer(s): {rates}")
        for fields, stats in s.new_fields.items():
            console.print(
                f"  {s.name}: asked only {fields.replace(',', ', ')} for {stats['rows_sent']:,} row(s) answered "
                f"before: {stats['rows_enriched']:,} enriched",
                markup=False,
            )
        if len(s.tiers) > 1:
            console.print(f"  {s.name} by tier: " + "; ".join(_tier_line(t, v, s) for t, v in s.tiers.items()))
        if any(s.gated.values()):
            held = ", ".join(f"{k} {v:,}" for k, v in s.gated.items() if v)
            console.print(f"  {s.name}: below min_confidence, not written: {held}")
        if s.replays:
            console.print(
                f"  {s.name}: {s.replays} file(s), {s.replayed_rows:,} row(s), answered by an earlier job (replay: "
                "$0 new charge; the earlier job is the one that paid)"
            )
        if s.charged_later_cents:
            console.print(f"  {s.name}: {_cents(s.charged_later_cents)} charged for this run's jobs after it ended")
        if s.rows_source_deleted or s.rows_source_restored:
            back = f"; {s.rows_source_restored:,} back in the source (flag cleared)" if s.rows_source_restored else ""
            console.print(
                f"  {s.name}: {s.rows_source_deleted:,} target row(s) whose key left the source "
                f"{s.source_deletion or 'flagged'}{back}"
            )
        if s.rows_released:
            console.print(f"  {s.name}: {s.rows_released:,} held row(s) the target refused before are merged now")
        if s.resumed_jobs:
            r = s.resumed
            console.print(
                f"  {s.name}: picked up {r.jobs} job(s) left by earlier runs: {r.rows_merged:,} row(s) merged, "
                f"{_cents(r.charged_cents)} charged for them (not counted above)"
            )
        if s.submitted_only:
            console.print(
                f"  {s.name}: {s.submitted_only} job(s) in flight; they finish via webhook "
                "(`sixtyfour-sync webhooks serve`) or the next run"
            )
        for j in s.jobs_in_flight:
            if s.submitted_only and j.state == "submitted":
                continue
            console.print(
                f"  [yellow]{s.name}: {j.file_name} is {j.state} (task {j.task_id or '-'}): "
                "the next `sixtyfour-sync run` picks it up[/]"
            )
        for j in s.jobs_needing_attention:
            what = j.error or NEXT_STEP.get(j.state, "`sixtyfour-sync status --wide` shows it")
            console.print(
                f"  {s.name}: {j.file_name} needs attention ({j.state}, task {j.task_id or '-'}): {what}",
                style="red",
                markup=False,
                soft_wrap=True,
            )
        # messages hold paths and file:line references: printed whole (never folded) and never read as markup
        for w in s.warnings:
            console.print(f"  {s.name}: {w}", style="yellow", markup=False, soft_wrap=True)
        for e in s.errors:
            console.print(f"  {s.name}: {e}", style="red", markup=False, soft_wrap=True)
    if result.error:
        console.print(result.error, style="red", markup=False, soft_wrap=True)


def _tier_line(tier: str, stats: Mapping[str, Any], s: Any) -> str:
    """``medium: 40 asked, 31 enriched, fill of its 38 answers: email 82%, title 40%``: what one tier did (each
    tier's fill rate is over its own answers)."""
    answers = int(stats.get("returned") or 0)
    rates = ", ".join(f"{f} {n / answers:.0%}" for f, n in stats["filled"].items()) if answers else ""
    line = f"{tier}: {stats['rows_sent']:,} asked, {stats['rows_enriched']:,} enriched"
    return line + (f", fill of its {answers:,} answer(s): {rates}" if rates else "")


def _charged(row: Mapping[str, Any]) -> str:
    # a job the API did not run to completion is not charged: say $0, not "unknown"; a replay is $0 new charge
    text = _cents(row.get("charged_cents"), str(row.get("state")))
    return text + (" (replay)" if row.get("replay_of") or (row.get("replay") and not row.get("charged_cents")) else "")


def _count(row: Mapping[str, Any], key: str) -> str:
    return f"{int(row.get(key) or 0):,}"


def print_status(
    runs: Sequence[dict[str, Any]],
    jobs: Sequence[dict[str, Any]],
    log_format: str,
    *,
    wide: bool = False,
    console: Console | None = None,
    quarantined: Sequence[dict[str, Any]] = (),
) -> None:
    """The ``status`` report: runs, jobs, then the answers the target refused (held in the quarantine); ``wide``
    shows full task ids, files, timestamps and errors."""
    if log_format == "json":
        print(json.dumps({"runs": list(runs), "jobs": list(jobs), "quarantined": list(quarantined)}, default=str))
        return
    console = console or _console(log_format)
    if not runs and not jobs:
        console.print("No runs recorded yet.")
        return
    _print_jobs_and_runs(console, runs, jobs, wide)
    if quarantined:
        console.print(
            f"[red]{len(quarantined):,} paid row(s) the target refused are held in the quarantine[/] (never asked "
            "again; each run tries to merge them, so fixing the target merges them):"
        )
        for q in quarantined[: None if wide else 20]:
            reason = str(q.get("reason") or "")
            reason = reason if wide or len(reason) <= 100 else reason[:99] + "…"
            console.print(f"  {q.get('sync_name')}: key {q.get('key_text')}, task {q.get('task_id')}: {reason}")
        if not wide and len(quarantined) > 20:
            console.print(f"  ... and {len(quarantined) - 20:,} more (--wide lists them all)")


def _print_jobs_and_runs(
    console: Console, runs: Sequence[dict[str, Any]], jobs: Sequence[dict[str, Any]], wide: bool
) -> None:
    cols = [Col("run", number=False), Col("status", number=False), Col("syncs", number=False, narrow=False)]
    cols += [Col("started", number=False), Col("sent"), Col("enriched"), Col("failed", narrow=False)]
    cols += [Col("est. cost", narrow=False), Col("charged"), Col("charged later", narrow=False)]
    if wide:
        cols += [Col("finished", number=False), Col("error", number=False)]
    rows = []
    for r in runs:
        cells = [str(r.get("run_id")), str(r.get("status")), str(r.get("syncs")), when(r.get("started_at"))]
        cells += [_count(r, "rows_sent"), _count(r, "rows_enriched"), _count(r, "rows_failed")]
        cells += [_cents(r.get("estimated_cost_cents")), _cents(r.get("charged_cents") or 0.0)]
        cells += [_cents(r.get("charged_later_cents") or 0.0)]
        if wide:
            cells += [when(r.get("finished_at")), str(r.get("error") or "")]
        rows.append(cells)
    if rows:
        _grid(console, "runs", cols, rows, wide)
    if not jobs:
        return
    # jobs of several targets share this ledger (dev and prod): say where each one's answers go
    targets = len({r.get("target") for r in jobs}) > 1
    cols = [Col("run", number=False), Col("sync", number=False), Col("file", number=False, narrow=False)]
    if targets:
        cols.append(Col("target", number=False))
    cols += [Col("rows"), Col("state", number=False), Col("task", number=False), Col("est. cost", narrow=False)]
    cols += [Col("charged"), Col("updated", number=False, narrow=False), Col("error", number=False, narrow=False)]
    rows = []
    for row in jobs:
        task = str(row.get("task_id") or "-")
        error = str(row.get("error") or "")
        where = [str(row.get("profile_target") or row.get("target") or "-")] if targets else []
        rows.append(
            [
                str(row.get("run_id")),
                str(row.get("sync_name")),
                str(row.get("file_name")),
                *where,
                _count(row, "rows"),
                str(row.get("state")),
                task if wide or len(task) <= 13 else task[:8] + "…",
                _cents(row.get("estimated_cost_cents")),
                _charged(row),
                when(row.get("updated_at") or row.get("created_at")),
                error if wide or len(error) <= 80 else error[:79] + "…",
            ]
        )
    _grid(console, "jobs", cols, rows, wide)
    if not wide and any(len(str(r.get("task_id") or "")) > 13 for r in jobs):
        console.print("  (task ids shortened: --wide shows them whole)")


def _relation(database: str | None, schema: str | None, table: str) -> str:
    return ".".join(p for p in (database, schema, table) if p)


def sync_row(loaded: LoadedSync) -> dict[str, Any]:
    """What ``ls`` shows of one sync (its JSON object under ``--output json``)."""
    spec = loaded.spec
    src = spec.source
    if src.ref:
        source = f"ref:{src.ref}"
    elif src.sql:
        source = "sql: " + " ".join(src.sql.split())
    else:
        source = _relation(src.database, src.schema_, src.table or "")
    tgt = spec.target
    return {
        "name": spec.name,
        "endpoint": spec.endpoint,
        "tier": spec.tier,
        "source": source,
        "target": _relation(tgt.database, tgt.schema_, tgt.table),
        "tags": list(spec.tags),
        "enabled": spec.enabled,
        "file": str(loaded.file),
        "line": loaded.line,
    }


def print_syncs(syncs: Sequence[LoadedSync], output: str, console: Console | None = None) -> None:
    """The ``ls`` listing: a table, one name per line (``name``) or one JSON object (``json``)."""
    rows = [sync_row(s) for s in syncs]
    if output == "json":
        print(json.dumps({"event": "ls", "syncs": rows}, default=str))
        return
    if output == "name":
        for r in rows:
            print(r["name"])
        return
    console = console or _console("text")
    if not rows:
        console.print("No sync selected.")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("name", "endpoint", "tier", "source", "target", "tags"):
        table.add_column(column, overflow="fold")
    for r in rows:
        name = r["name"] if r["enabled"] else f"{r['name']} (disabled)"
        source = r["source"] if len(r["source"]) <= 60 else r["source"][:59] + "…"
        table.add_row(name, r["endpoint"], r["tier"], source, r["target"], ", ".join(r["tags"]))
    console.print(table)
