"""What ``status`` and ``ls`` print."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from sixtyfour_sync.config.models import LoadedSync
from sixtyfour_sync.ui.common import Col, _cents, _console, _grid, when

log = logging.getLogger("sixtyfour_sync.progress")


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
    cols += [Col("shared", narrow=False)]
    reused = any(r.get("rows_reused") for r in runs)  # rows that took a stored answer: shown once there are any
    if reused:
        cols += [Col("reused", narrow=False)]
    cols += [Col("est. cost", narrow=False), Col("charged"), Col("charged later", narrow=False)]
    if wide:
        cols += [Col("finished", number=False), Col("error", number=False)]
    rows = []
    for r in runs:
        cells = [str(r.get("run_id")), str(r.get("status")), str(r.get("syncs")), when(r.get("started_at"))]
        cells += [_count(r, "rows_sent"), _count(r, "rows_enriched"), _count(r, "rows_failed")]
        cells += [_count(r, "rows_deduplicated")] + ([_count(r, "rows_reused")] if reused else [])
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
