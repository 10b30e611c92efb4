"""Formatting for the run report: every value that reaches the page is escaped here or in the charts."""

from __future__ import annotations

from datetime import datetime, tzinfo
from html import escape

__all__ = ["axis_pattern", "cell", "count", "duration", "e", "error_cell", "money", "pct", "stamp", "when", "zone"]


def e(v: object) -> str:
    """``v`` as text safe in HTML content and in quoted attributes."""
    return escape("" if v is None else str(v), quote=True)


def error_cell(message: str) -> str:
    """An Error column's cell for an already sanitised ``message``: a few lines at most on screen (the page's
    stylesheet clamps it), the whole message in its tooltip and on paper."""
    if not message:
        return '<td class="error"></td>'
    return f'<td class="error"><div class="msg" title="{e(message)}">{e(message)}</div></td>'


def money(cents: float | None) -> str:
    """Cents as dollars: ``$1,234.56``; ``-`` when unknown."""
    if cents is None:
        return "-"
    return f"${cents / 100:,.2f}"


def count(n: int | None) -> str:
    """A row count with thousands separators."""
    return "-" if n is None else f"{n:,}"


def pct(part: float, whole: float) -> str:
    """``part`` of ``whole`` as a percentage with one decimal (``-`` when there is no whole)."""
    if not whole:
        return "-"
    return f"{100 * part / whole:.1f}%"


def duration(seconds: float | None) -> str:
    """``1h 02m``, ``3m 04s`` or ``12.3s``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(round(seconds), 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m"


def when(dt: datetime | None, tz: tzinfo | None) -> str:
    """A timestamp in the report's time zone, to the second."""
    if dt is None:
        return "-"
    return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def stamp(dt: datetime | None, tz: tzinfo | None, pattern: str = "%m-%d %H:%M") -> str:
    """A short label for chart axes: ``06-01 14:03`` (or ``pattern``)."""
    if dt is None:
        return "?"
    return dt.astimezone(tz).strftime(pattern)


def axis_pattern(times: list[datetime]) -> str:
    """Labels that tell runs apart: seconds for runs within an hour, the date for runs over a year."""
    if len(times) < 2:
        return "%Y-%m-%d %H:%M"
    span = (max(times) - min(times)).total_seconds()
    if span < 3600:
        return "%H:%M:%S"
    return "%m-%d %H:%M" if span < 300 * 86400 else "%Y-%m-%d"


def zone(dt: datetime) -> str:
    """The zone of an aware datetime: ``CEST (UTC+02:00)``, ``UTC+05:30`` or ``UTC``."""
    offset = dt.strftime("%z") or "+0000"
    utc = f"UTC{offset[:3]}:{offset[3:5]}"
    name = dt.tzname() or ""
    if name in ("", "UTC") or name.startswith(("UTC+", "UTC-")):
        return "UTC" if offset == "+0000" and name in ("", "UTC") else utc
    return f"{name} ({utc})"


def cell(value: object, text: str, col: str, cls: str = "num") -> str:
    """A table cell showing ``text``, with the raw value in ``data-value`` and its meaning in ``data-col``."""
    raw = "" if value is None else (repr(float(value)) if isinstance(value, float) else str(value))
    return f'<td class="{cls}" data-col="{e(col)}" data-value="{e(raw)}">{e(text)}</td>'
