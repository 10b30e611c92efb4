"""What ``plan`` prints: each sync's steps, rows, files and cost, and the preview."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from rich.console import Console

from sixtyfour_sync.engine.summary import StepPlan, SyncPlan
from sixtyfour_sync.ui.common import NARROW, Col, _cents, _console, _grid

log = logging.getLogger("sixtyfour_sync.progress")


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
        if p.rows_deduplicated:
            notes.append(
                f"{p.rows:,} row(s) ask {p.questions:,} question(s): {p.rows_deduplicated:,} share their inputs with "
                "another row and take its answer (priced once)"
            )
        if p.rows_reused:
            notes.append(
                f"{p.rows_reused:,} row(s) take a stored answer ({p.questions_reused:,} question(s) answered and "
                "merged before, within reuse.max_age): no call, not priced"
            )
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
