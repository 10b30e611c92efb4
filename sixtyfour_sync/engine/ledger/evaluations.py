"""``_sixtyfour_sync_evaluations``: the scores ``sixtyfour-sync evaluate`` measured, kept beside the runs so
``report`` shows them (one row per evaluation, field, tier and confidence band)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sixtyfour_sync.engine.ledger.store import Ledger

__all__ = ["EVALUATION_FIELDS", "evaluation_rows", "record_evaluation"]

#: The columns of one evaluation row (besides its id), in the table's order.
EVALUATION_FIELDS = (
    "evaluation_id",
    "sync_name",
    "target",
    "labels",
    "field",
    "tier",
    "band",
    "correct",
    "wrong",
    "missing",
    "target_precision",
    "suggested_min_confidence",
    "would_gate",
    "evaluated_at",
)


def record_evaluation(ledger: Ledger, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write one evaluation's rows in one transaction (the ledger tables are created when missing)."""
    if not rows:
        return
    ledger.ensure()
    data = [
        {
            "row_id": f"{r['evaluation_id']}:{r['field']}:{r['tier']}:{r['band']}",
            **{name: r.get(name) for name in EVALUATION_FIELDS},
        }
        for r in rows
    ]
    ledger.guard()
    with ledger.adapter.session() as s:
        s.insert(ledger.evaluations, data)


def evaluation_rows(ledger: Ledger, sync_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Every recorded evaluation row (of these syncs), oldest evaluation first; [] without the table."""
    if not ledger.adapter.table_exists(ledger.evaluations):
        return []
    with ledger.adapter.session() as s:
        rows = s.select(ledger.evaluations, None, columns=list(EVALUATION_FIELDS))
    wanted = set(sync_names) if sync_names is not None else None
    kept = [r for r in rows if wanted is None or r["sync_name"] in wanted]
    return sorted(kept, key=lambda r: (_when(r["evaluated_at"]), str(r["evaluation_id"])))


def _when(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value or "")
