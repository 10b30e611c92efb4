"""The run report as one self-contained HTML page: a :class:`~.model.Report` in, a string out.

No script, no font, no image, no link to fetch: the styles are inline, the charts inline SVG
(:mod:`.charts`), and a Content-Security-Policy forbids loading anything, so the file can be mailed or
attached to a ticket and opened anywhere offline. Every value from users or the API (sync and field names,
errors, task ids) is escaped; errors are sanitised again (secrets, signed links) before they are shown.
"""

from __future__ import annotations

from datetime import tzinfo

from sixtyfour_sync._redact import sanitize
from sixtyfour_sync.report import charts
from sixtyfour_sync.report.fmt import axis_pattern, cell, count, duration, e, error_cell, money, stamp, when, zone
from sixtyfour_sync.report.model import Report, RunRow
from sixtyfour_sync.report.render_sync import render_sync
from sixtyfour_sync.report.style import CSS

__all__ = ["CSP", "render_html"]

#: Nothing may be fetched: inline styles and data: images only, no script at all.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

_STATUS_CLASS = {
    "success": "good",
    "ok": "good",
    "partial": "warn",
    "interrupted": "warn",
    "running": "info",
    "failed": "bad",
    "crashed": "bad",
}


def badge(status: str) -> str:
    """A coloured status label."""
    return f'<span class="badge {_STATUS_CLASS.get(status, "neutral")}">{e(status)}</span>'


def _tile(label: str, value: str, note: str = "", cls: str = "", key: str = "") -> str:
    data = f' data-tile="{e(key)}"' if key else ""
    extra = f'<div class="note">{e(note)}</div>' if note else ""
    return (
        f'<div class="tile {cls}"{data}><div class="label">{e(label)}</div>'
        f'<div class="value">{e(value)}</div>{extra}</div>'
    )


def _header(r: Report) -> str:
    tz = r.generated_at.tzinfo
    where = "; ".join(sanitize(w) for w in r.warehouses) or "no warehouse"
    tiles = [
        _tile("Rows enriched", count(r.rows_enriched), "in the target tables now", key="rows_enriched"),
        _tile("Charged", money(r.charged_cents), "all jobs in the ledger", key="charged"),
        _tile("Estimated", money(r.estimated_cents), "the API's estimates", key="estimated"),
        _tile("Runs", count(len(r.runs)), f"the latest {r.run_limit:,} at most", key="runs"),
        _tile(
            "Need attention",
            count(r.attention),
            "held jobs (see each sync)",
            "bad" if r.attention else "",
            key="attention",
        ),
        _tile("In flight", count(r.in_flight), "finished by the next run", key="in_flight"),
    ]
    return (
        '<header class="top">'
        f"<h1>Enrichment report: {e(r.project)}</h1>"
        '<dl class="meta">'
        f"<dt>Warehouse</dt><dd>{e(where)}</dd>"
        f"<dt>Syncs</dt><dd>{e(', '.join(s.name for s in r.syncs) or 'none selected')}</dd>"
        f'<dt>Generated</dt><dd><time data-generated="{e(r.generated_at.isoformat())}">'
        f"{e(when(r.generated_at, tz))} {e(zone(r.generated_at))}</time></dd>"
        "</dl>"
        f'<div class="tiles">{"".join(tiles)}</div>'
        "</header>"
    )


def _run_title(run: RunRow, tz: tzinfo | None) -> str:
    replays = f", {run.replays:,} answered from an earlier job ($0)" if run.replays else ""
    shared = (
        f", {run.rows_deduplicated:,} row(s) answered by a shared question ({money(run.saved_cents)} not spent)"
        if run.rows_deduplicated
        else ""
    )
    reused = (
        f", {run.rows_reused:,} row(s) took a stored answer ({money(run.reused_saved_cents)} not spent)"
        if run.rows_reused
        else ""
    )
    return (
        f"{run.run_id} ({run.status}), started {when(run.started_at, tz)}: {run.jobs:,} file(s){replays}{shared}"
        f"{reused}"
    )


def _runs_charts(runs: list[RunRow], tz: tzinfo | None) -> str:
    pattern = axis_pattern([r.started_at for r in runs if r.started_at is not None])
    rows = [
        charts.BarGroup(
            r.run_id,
            stamp(r.started_at, tz, pattern),
            (
                (
                    charts.Segment("enriched", r.rows_enriched, f"{r.rows_enriched:,} enriched"),
                    charts.Segment("failed", r.rows_failed, f"{r.rows_failed:,} failed"),
                    charts.Segment("missing", r.rows_not_returned, f"{r.rows_not_returned:,} not returned"),
                ),
            ),
            _run_title(r, tz),
        )
        for r in runs
    ]
    costs = [
        charts.BarGroup(
            r.run_id,
            stamp(r.started_at, tz, pattern),
            (
                (charts.Segment("estimated", r.estimated_cents, f"estimated {money(r.estimated_cents)}"),),
                (
                    charts.Segment("charged", r.charged_cents, f"charged during the run {money(r.charged_cents)}"),
                    charts.Segment(
                        "later", r.charged_later_cents, f"charged after the run {money(r.charged_later_cents)}"
                    ),
                ),
            ),
            _run_title(r, tz),
        )
        for r in runs
    ]
    rows_svg = charts.bar_chart(
        "chart-rows",
        "Rows per run",
        rows,
        [("enriched", "enriched"), ("failed", "failed"), ("missing", "not returned")],
        lambda v: f"{v:,.0f}",
    )
    cost_svg = charts.bar_chart(
        "chart-cost",
        "Cost per run",
        costs,
        [("estimated", "estimated"), ("charged", "charged during the run"), ("later", "charged after it")],
        lambda v: f"${v / 100:,.2f}",
    )
    return (
        '<div class="charts">'
        f"<figure><figcaption>Rows per run</figcaption>{rows_svg}</figure>"
        f"<figure><figcaption>Cost per run: estimated vs charged</figcaption>{cost_svg}</figure>"
        "</div>"
    )


_RUN_HEAD = (
    "Started", "Status", "Syncs", "Duration", "Sent", "Enriched", "Failed", "Not returned", "Estimated",
    "Charged", "Charged later", "Resumed jobs", "Error",
)  # fmt: skip


def _runs_table(runs: list[RunRow], tz: tzinfo | None) -> str:
    body = []
    for r in runs:
        body.append(
            f'<tr data-run="{e(r.run_id)}">'
            f'<td class="when">{e(when(r.started_at, tz))}<div class="id">{e(r.run_id)}</div></td>'
            f"<td>{badge(r.status)}</td>"
            f"<td>{e(', '.join(r.syncs))}</td>"
            + cell(r.duration_seconds, duration(r.duration_seconds), "duration")
            + cell(r.rows_sent, count(r.rows_sent), "rows_sent")
            + cell(r.rows_enriched, count(r.rows_enriched), "rows_enriched")
            + cell(r.rows_failed, count(r.rows_failed), "rows_failed")
            + cell(r.rows_not_returned, count(r.rows_not_returned), "rows_not_returned")
            + cell(r.estimated_cents, money(r.estimated_cents), "estimated_cents")
            + cell(r.charged_cents, money(r.charged_cents), "charged_cents")
            + cell(r.charged_later_cents, money(r.charged_later_cents), "charged_later_cents")
            + cell(r.jobs_resumed, count(r.jobs_resumed), "jobs_resumed")
            + error_cell(sanitize(r.error) if r.error else "")
            + "</tr>"
        )
    head = "".join(f"<th>{e(h)}</th>" for h in _RUN_HEAD)
    return (
        f'<div class="scroll"><table class="runs"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _runs(r: Report) -> str:
    tz = r.generated_at.tzinfo
    if not r.ledger_found:
        return (
            '<section class="runs"><h2>Runs</h2><p class="empty">No ledger yet: nothing has been run for these '
            "syncs. <code>sixtyfour-sync plan</code> shows what a run would send, <code>sixtyfour-sync run</code> "
            "sends it.</p></section>"
        )
    if not r.runs:
        return '<section class="runs"><h2>Runs</h2><p class="empty">No runs recorded for these syncs.</p></section>'
    oldest = r.runs_oldest_first()
    note = ""
    if len(r.runs) >= r.run_limit:
        note = f'<p class="note">The latest {r.run_limit:,} runs; <code>--runs N</code> shows more.</p>'
    return (
        '<section class="runs"><h2>Runs over time</h2>'
        + _runs_charts(oldest, tz)
        + note
        + _runs_table(list(r.runs), tz)
        + "</section>"
    )


_GLOSSARY = (
    ("Sent", "rows in the files the API accepted, in the run that submitted them."),
    ("Enriched / failed / not returned", "what came back for those rows: an answer, a row the API could not "
     "enrich, or a row missing from the result (marked failed)."),
    ("Charged", "what the API charged for the run's jobs while it ran; replays of an earlier answer are $0."),
    ("Charged later", "charges of the run's jobs that finished after it ended: a later run, or a webhook, "
     "finished them. Each charge is counted once, under the run that submitted the job."),
    ("Fill rate", "the share of the sync's rows in the target (those with a status) that have a value."),
)  # fmt: skip


def _footer(r: Report) -> str:
    items = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in _GLOSSARY)
    return (
        f'<footer><dl class="glossary">{items}</dl>'
        f"<p>Generated by sixtyfour-sync {e(r.version)} from the ledger and the target tables. This page loads "
        "nothing from the network.</p></footer>"
    )


def render_html(report: Report) -> str:
    """The whole page."""
    tz = report.generated_at.tzinfo
    syncs = "".join(render_sync(s, i, tz) for i, s in enumerate(report.syncs, start=1))
    if not report.syncs:
        syncs = '<section class="sync"><p class="empty">No sync selected.</p></section>'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="generator" content="sixtyfour-sync">'
        f"<title>sixtyfour-sync report: {e(report.project)}</title>"
        f"<style>{CSS}</style></head><body>"
        + _header(report)
        + "<main>"
        + _runs(report)
        + syncs
        + "</main>"
        + _footer(report)
        + "</body></html>\n"
    )
