"""The summary at the end of a run."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from rich.console import Console

from sixtyfour_sync.engine.summary import RunResult
from sixtyfour_sync.ui.common import Col, _cents, _console, _grid, reused_line

log = logging.getLogger("sixtyfour_sync.progress")


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
        if s.rows_deduplicated:
            console.print(
                f"  {s.name}: {s.rows_deduplicated:,} row(s) answered by a shared question (their inputs were "
                f"another row's, asked once): {_cents(s.saved_cents)} not spent"
            )
        if s.rows_reused:
            line = reused_line(s.rows_reused, s.questions_reused, s.reused_saved_cents, s.reused_price_known)
            console.print(f"  {s.name}: {line}")
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
