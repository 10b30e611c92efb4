"""The target table made ready for a merge: created, or given this sync's columns, which are recorded as the
sync's (engine/results/targets.py checks it before anything is paid)."""

from __future__ import annotations

from sixtyfour_sync.engine.context import SyncContext
from sixtyfour_sync.engine.plan.columns import arrow_to_logical, owned_columns
from sixtyfour_sync.engine.results.targets import claimed_columns
from sixtyfour_sync.warehouse.types import Column

__all__ = ["ensure_target", "key_columns"]


def key_columns(ctx: SyncContext) -> list[Column]:
    """The target's key columns, typed as the source's keys."""
    return [
        ctx.adapter.key_column(k, ctx.key_specs[k]) if k in ctx.key_specs else Column(k, arrow_to_logical(t), False)
        for k, t in ctx.key_types.items()
    ]


def ensure_target(ctx: SyncContext) -> None:
    """Create the target table or add this sync's columns (and record them as the sync's): when a paid result
    is to be merged."""
    if ctx.target_ready:
        return
    if ctx.target.schema and not ctx.adapter.schema_exists(ctx.target.schema):
        ctx.adapter.ensure_schema(ctx.target.schema)
    if ctx.adapter.table_exists(ctx.target):  # an older version's target the sync wrote: its columns are its
        created = ctx.ledger.created_columns(ctx.target_id)
        claimed = claimed_columns(ctx.spec, ctx.adapter.get_columns(ctx.target), created)
        ctx.ledger.record_columns(ctx.target_id, ctx.name, [c for c in claimed if c not in created])
    owned = owned_columns(ctx.spec)
    res = ctx.adapter.ensure_table(ctx.target, key_columns(ctx), owned)
    if res.created:
        ctx.note(f"created target table {ctx.target}")
        ctx.ledger.record_columns(ctx.target_id, ctx.name, [c.name for c in owned])
    elif res.added_columns:
        ctx.note(f"added columns {', '.join(res.added_columns)} to {ctx.target}")
        ctx.ledger.record_columns(ctx.target_id, ctx.name, list(res.added_columns))
    ctx.target_ready = True
