"""The console and the tables every summary draws with."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.table import Table

log = logging.getLogger("sixtyfour_sync.progress")


def _cents(v: float | None, state: str | None = None) -> str:
    if v is None:
        # nothing is ever charged for a job the API did not run to completion
        return "$0.00" if state in ("cancelled", "rejected", "failed", "abandoned") else "unknown"
    return f"${v / 100:,.2f}"


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


def reused_line(rows: int, questions: int, saved_cents: float, price_known: bool) -> str:
    """What taking stored answers saved, as the summary and ``report`` say it."""
    saved = (
        f"{_cents(saved_cents)} not spent"
        if price_known
        else (
            f"at least {_cents(saved_cents)} not spent (no price was known for some)"
            if saved_cents
            else "price unknown"
        )
    )
    return (
        f"{rows:,} row(s) took a stored answer ({questions:,} question(s) answered and merged before, within "
        f"reuse.max_age; no call made): {saved}"
    )
