"""One sync's section of the run report: fill rates, confidences, statuses, tiers, held jobs, errors."""

from __future__ import annotations

from datetime import tzinfo

from sixtyfour_sync._redact import sanitize
from sixtyfour_sync.report import charts
from sixtyfour_sync.report.fmt import cell, count, e, error_cell, money, pct, when
from sixtyfour_sync.report.model import SyncReport, bucket_label

__all__ = ["ADVICE", "render_sync"]

#: What to do about a job held for a person, by state (docs/job-states.md).
ADVICE = {
    "lost": "The API answers 404 for this task: it does not know it under this key. With the key that submitted "
    "it, run `sixtyfour-sync run --retry-lost` to look again; a job still unknown is released and its rows are "
    "asked (and paid for) again.",
    "needs_attention": "The API refused to resume this file under its stored key (the source rows changed "
    "since). `sixtyfour-sync run --retry-lost` releases its rows; they are asked again as a new question.",
    "result_unreadable": "The paid result cannot be read, even after a fresh download. `sixtyfour-sync run "
    "--retry-unreadable` downloads it again and releases its rows if it still cannot be read.",
}
_LABELS = [bucket_label(i) for i in range(10)]


def _tile(label: str, value: str, key: str) -> str:
    return (
        f'<div class="tile small" data-tile="{e(key)}"><div class="label">{e(label)}</div>'
        f'<div class="value">{e(value)}</div></div>'
    )


def _fill(s: SyncReport) -> str:
    items = []
    for f in s.fields:
        if not f.in_table:
            items.append((f.name, 0.0, "not in the table yet"))
        else:
            share = f.filled / s.rows if s.rows else 0.0
            items.append((f.name, share, f"{pct(f.filled, s.rows)} · {f.filled:,} of {s.rows:,}"))
    svg = charts.hbar_chart("chart-fill", f"Fill rate per field in the target now: {s.name}", items)
    return (
        '<figure class="wide"><figcaption>Fill rate per field in the target now (share of its rows with a value; '
        f"a run's summary counts that run's answers)</figcaption>{svg}</figure>"
    )


def _fill_by_tier(s: SyncReport) -> str:
    if not s.by_tier:
        return ""
    head = "".join(f"<th>{e(f.name)}</th>" for f in s.fields)
    body = []
    for t in s.by_tier:
        filled = dict(t.filled)
        cells = "".join(
            cell(filled.get(f.name, 0), pct(filled.get(f.name, 0), t.rows), f"fill:{f.name}") for f in s.fields
        )
        rows = cell(t.rows, count(t.rows), "rows")
        body.append(f'<tr data-tier="{e(t.tier)}"><td>{e(t.tier)}</td>{rows}{cells}</tr>')
    return (
        "<h3>Fill rate by the tier of the latest answer</h3>"
        f'<div class="scroll"><table class="tierfill"><thead><tr><th>Tier</th><th>Rows</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _confidence(s: SyncReport) -> str:
    if not s.has_confidence:
        why = (
            "field_confidence is on, but the target has no confidence columns yet."
            if s.field_confidence
            else "No confidence columns: set <code>field_confidence: true</code> to get a 0-100 confidence per field."
        )
        return f'<h3>Confidence</h3><p class="empty">{why}</p>'
    figures = []
    for f in s.fields:
        if f.confidence is None:
            continue
        mean = "-" if f.confidence_avg is None else f"{f.confidence_avg:.0f}"
        svg = charts.histogram("chart-conf", f"Confidence of {f.name}", f.confidence, _LABELS)
        figures.append(
            f'<figure class="hist" data-field="{e(f.name)}"><figcaption><b>{e(f.name)}</b> mean {e(mean)} · '
            f"{f.confidence_count:,} row(s)</figcaption>{svg}</figure>"
        )
    return f'<h3>Confidence per field (0-100)</h3><div class="hists">{"".join(figures)}</div>'


def _status(s: SyncReport) -> str:
    items = [(st, n / s.rows if s.rows else 0.0, f"{n:,} ({pct(n, s.rows)})") for st, n in s.by_status]
    other = s.table_rows - s.rows
    note = ""
    if other > 0:
        note = f'<p class="note">{other:,} other row(s) of the table have no status of this sync.</p>'
    svg = charts.hbar_chart("chart-status", f"Rows by status: {s.name}", items, label_width=120)
    return f"<figure><figcaption>Rows by status</figcaption>{svg}</figure>{note}"


def _tiers(s: SyncReport) -> str:
    rows = []
    for t in s.tier_jobs:
        rows.append(
            f'<tr data-tier="{e(t.tier)}"><td>{e(t.tier)}</td>'
            + cell(t.jobs, count(t.jobs), "jobs")
            + cell(t.rows, count(t.rows), "rows")
            + cell(t.rows_enriched, count(t.rows_enriched), "rows_enriched")
            + cell(t.rows_failed, count(t.rows_failed), "rows_failed")
            + cell(t.charged_cents, money(t.charged_cents), "charged_cents")
            + "</tr>"
        )
    if not rows:
        table = '<p class="empty">No jobs in the ledger yet.</p>'
    else:
        table = (
            '<table class="tiers"><thead><tr><th>Tier</th><th>Jobs</th><th>Rows asked</th><th>Enriched</th>'
            f"<th>Failed</th><th>Charged</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    target = ""
    if s.by_tier is not None:
        items = [(t.tier, t.rows / s.rows if s.rows else 0.0, f"{t.rows:,} ({pct(t.rows, s.rows)})") for t in s.by_tier]
        svg = charts.hbar_chart("chart-tier", f"Rows by tier: {s.name}", items, label_width=120)
        target = f"<figure><figcaption>Rows in the target by tier</figcaption>{svg}</figure>"
    return f'<div class="block"><h3>Jobs by tier</h3>{table}{target}</div>'


def _attention(s: SyncReport, tz: tzinfo | None) -> str:
    flight = ""
    if s.jobs_in_flight:
        flight = (
            f'<p class="note">{s.jobs_in_flight:,} job(s) with {s.rows_in_flight:,} row(s) are unfinished: the next '
            "<code>sixtyfour-sync run</code> finishes them before it selects new rows.</p>"
        )
    if not s.attention:
        return f'<h3>Jobs needing attention</h3><p class="empty ok">None.</p>{flight}'
    rows = []
    for j in s.attention:
        rows.append(
            f'<tr data-job="{e(j.job_id)}" data-state="{e(j.state)}">'
            f'<td><span class="badge bad">{e(j.state)}</span></td>'
            f'<td class="mono">{e(j.task_id or "-")}</td>'
            + cell(j.rows, count(j.rows), "rows")
            + cell(j.charged_cents, money(j.charged_cents), "charged_cents")
            + f'<td class="mono">{e(j.run_id)}</td><td class="when">{e(when(j.updated_at, tz))}</td>'
            + error_cell(sanitize(j.error or ""))
            + f'<td class="advice">{e(ADVICE.get(j.state, ""))}</td></tr>'
        )
    return (
        f'<h3>Jobs needing attention <span class="badge bad">{len(s.attention):,}</span></h3>'
        '<p class="note">Their rows are held: they are not asked again until you decide.</p>'
        '<div class="scroll"><table class="attention"><thead><tr><th>State</th><th>Task id</th><th>Rows</th>'
        "<th>Charged</th><th>Run</th><th>Updated</th><th>Error</th><th>What to do</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>{flight}"
    )


def _errors(s: SyncReport, tz: tzinfo | None) -> str:
    if not s.errors:
        return '<h3>Last errors</h3><p class="empty ok">No errors recorded.</p>'
    rows = "".join(
        f'<tr><td class="when">{e(when(x.when, tz))}</td><td class="mono">{e(x.run_id)}</td><td>{e(x.state)}</td>'
        f'<td class="mono">{e(x.task_id or "-")}</td>{error_cell(sanitize(x.message))}</tr>'
        for x in s.errors
    )
    return (
        '<h3>Last errors</h3><div class="scroll"><table class="errors"><thead><tr><th>When</th><th>Run</th>'
        f"<th>Job state</th><th>Task id</th><th>Message</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )


def _ratio(num: int, den: int) -> str:
    return "-" if not den else f"{num / den:.0%}"


def _share(num: int, den: int) -> float | None:
    return num / den if den else None


def _quality(s: SyncReport, tz: tzinfo | None) -> str:
    """The latest evaluation against labels: precision per field and tier, and against confidence."""
    ev = s.evaluation
    if ev is None:
        return ""
    from sixtyfour_sync.evaluate.score import BAND_ORDER

    tiers = list(dict.fromkeys(c.tier for c in ev.cells))
    bands = [b for b in BAND_ORDER if any(c.band == b for c in ev.cells)]
    head = "".join(f"<th>Precision at {e(t)}</th>" for t in tiers)
    band_head = "".join(f"<th>{e(b)}</th>" for b in bands)
    body, band_body = [], []
    for name in ev.fields():
        c, w, m = ev.sums(name)
        cells = [
            cell(_share(c, c + w), _ratio(c, c + w), "precision"),
            cell(_share(c, c + w + m), _ratio(c, c + w + m), "accuracy"),
            cell(_share(c + w, c + w + m), _ratio(c + w, c + w + m), "coverage"),
            f'<td class="num">{c:,} / {w:,} / {m:,}</td>',
        ]
        for t in tiers:
            tc, tw, _ = ev.sums(name, tier=t)
            cells.append(cell(_share(tc, tc + tw), _ratio(tc, tc + tw), f"precision:{t}"))
        body.append(f'<tr data-field="{e(name)}"><td>{e(name)}</td>{"".join(cells)}</tr>')
        per_band = []
        for b in bands:
            bc, bw, _ = ev.sums(name, band=b)
            text = f"{_ratio(bc, bc + bw)} ({bc + bw:,})" if bc + bw else "-"
            per_band.append(cell(_share(bc, bc + bw), text, f"precision:{b}"))
        band_body.append(f'<tr data-field="{e(name)}"><td>{e(name)}</td>{"".join(per_band)}</tr>')
    advice = ""
    if ev.target_precision is not None and ev.suggestions:
        items = []
        for field, threshold, gate in ev.suggestions:
            if threshold is None:
                items.append(f"<li><b>{e(field)}</b>: no threshold reaches it on the labels</li>")
            else:
                gated = "" if gate is None else f" (would hold back {gate:,} stored value(s))"
                items.append(f"<li><b>{e(field)}</b>: <code>min_confidence: {threshold}</code>{e(gated)}</li>")
        advice = (
            f"<p>For precision {ev.target_precision:.0%} on the labelled rows:</p>"
            f'<ul class="suggestions">{"".join(items)}</ul>'
        )
    return (
        f'<div class="block evaluation" data-evaluation="{e(ev.evaluation_id)}"><h3>Answer quality against labels</h3>'
        f'<p class="note">Latest <code>sixtyfour-sync evaluate</code>, {e(when(ev.evaluated_at, tz))}, labels '
        f"<code>{e(ev.labels)}</code>: precision = correct / (correct + wrong), accuracy = correct / scored, "
        "coverage = answered / scored.</p>"
        '<div class="scroll"><table class="quality"><thead><tr><th>Field</th><th>Precision</th><th>Accuracy</th>'
        f"<th>Coverage</th><th>Correct / wrong / missing</th>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
        "<h3>Precision against confidence (answers in each band)</h3>"
        f'<div class="scroll"><table class="quality-bands"><thead><tr><th>Field</th>{band_head}</tr></thead>'
        f"<tbody>{''.join(band_body)}</tbody></table></div>{advice}</div>"
    )


def render_sync(s: SyncReport, index: int, tz: tzinfo | None) -> str:
    """The section of one sync (``index`` makes its anchor)."""
    tiles = "".join(
        [
            _tile("Rows answered", count(s.rows), "rows"),
            _tile("Enriched", count(s.enriched), "enriched"),
            _tile("Failed", count(sum(n for st, n in s.by_status if st == "failed")), "failed"),
            _tile("Charged", money(s.charged_cents), "charged"),
            _tile("Estimated", money(s.estimated_cents), "estimated"),
        ]
    )
    meta = (
        f'<p class="meta">{e(s.endpoint)} endpoint · tier {e(s.tier)} · target <code>{e(s.target)}</code> · '
        f"field confidence {'on' if s.field_confidence else 'off'}</p>"
    )
    problem = f'<p class="problem">{e(sanitize(s.problem))}</p>' if s.problem else ""
    if not s.target_exists:
        body = (
            f'<p class="empty">The target table <code>{e(s.target)}</code> does not exist yet: the first run '
            "creates it.</p>"
        )
    elif not s.fields:
        body = ""
    else:
        body = '<div class="pair">' + _fill(s) + _status(s) + "</div>" + _fill_by_tier(s) + _confidence(s)
    return (
        f'<section class="sync" id="sync-{index}" data-sync="{e(s.name)}">'
        f'<h2>{e(s.name)}</h2>{meta}<div class="tiles">{tiles}</div>{problem}{body}'
        + _tiers(s)
        + _quality(s, tz)
        + _attention(s, tz)
        + _errors(s, tz)
        + "</section>"
    )
