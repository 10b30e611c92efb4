"""Struct changes ask only what changed: which fields each stamp in the target still lacks. Pure logic.

A target row carries the spec hash of the question it answered (``_sixtyfour_spec_hash``); the ledger keeps
what each hash stands for (``_sixtyfour_sync_specs``: the shared part, and one hash per field of its
description and type). Against the sync as it is now, an enriched row whose stamp has the same shared part
(endpoint, tier, field_confidence, research_plan) needs only the fields that are new or whose hash changed:

- none (fields were only removed): the row is current, nothing is asked;
- some: a "new fields" step asks just those, for the rows with that stamp, and merges just their columns.

With ``escalate:``, the new fields follow the waterfall the row took: asked at the sync's tier, then at each
tier above it that the row's answer reached (``_sixtyfour_tier``) or at which the new field came back weak,
just those fields, once per tier (engine/steps/new_fields.py). Between tiers the row carries a stamp that says how
far the fields were asked (``through``: pending, or done above the row's own tier), so a run that stops between
two tiers is continued, never repeated, and the row's own escalation does not ask the whole question again.

A row the API could not enrich is asked again whole when the question grew or changed (a new question is a new
chance), but not when fields were only removed: a removed field costs nothing, and the row waits for
``refresh.retry_failed_after`` as before. A stamp the ledger does not know (written before stamps were recorded),
a changed shared part or changed inputs are a new question, asked whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sixtyfour_sync.config.models import SyncSpec

__all__ = ["FieldChanges", "field_changes"]


@dataclass
class FieldChanges:
    """What the target's stamps need from the sync as it is now."""

    #: Stamps whose enriched rows are not asked whole (current but for fields added/changed, or removed).
    not_whole: list[str] = field(default_factory=list)
    #: Fields to ask -> the stamps whose enriched rows lack exactly those.
    groups: dict[tuple[str, ...], list[str]] = field(default_factory=dict)
    #: Fields to ask -> how many enriched rows have those stamps (inputs not checked: an upper bound).
    rows: dict[tuple[str, ...], int] = field(default_factory=dict)
    #: Stamps whose failed rows asked the question as it is now but for fields since removed: not asked again.
    failed_current: list[str] = field(default_factory=list)
    #: With ``escalate:``, fields whose "new fields" waterfall has rows waiting at a tier above the sync's
    #: (a step stopped between tiers, or a run ended there): those fields -> the stamps of the rows waiting.
    pending: dict[tuple[str, ...], list[str]] = field(default_factory=dict)


def field_changes(
    spec: SyncSpec,
    stamp_counts: Mapping[str, int],
    definitions: Mapping[str, Mapping[str, Any]],
    failed_stamps: Sequence[str] = (),
) -> FieldChanges:
    """Group the target's stamps (enriched rows per stamp) by the fields each still needs; and the stamps of
    failed rows (``failed_stamps``) that differ from the question now only by removed fields."""
    out = FieldChanges()
    current, base, now = spec.spec_hash(), spec.question_base(), spec.field_hashes()
    for stamp in sorted(set(failed_stamps)):
        definition = definitions.get(stamp)
        if stamp == current or definition is None or definition.get("base") != base:
            continue
        had = definition.get("fields") or {}
        if all(had.get(f) == h for f, h in now.items()):  # nothing new or changed: only removals
            out.failed_current.append(stamp)
    for stamp, n in sorted(stamp_counts.items()):
        definition = definitions.get(stamp)
        if stamp == current or definition is None or definition.get("base") != base:
            continue
        had = definition.get("fields") or {}
        ask = tuple(sorted(f for f, h in now.items() if had.get(f) != h))
        out.not_whole.append(stamp)
        if ask:
            out.groups.setdefault(ask, []).append(stamp)
            out.rows[ask] = out.rows.get(ask, 0) + int(n)
            continue
        through = definition.get("through") or {}
        if through and not through.get("done"):  # a new field's waterfall goes on at the next tier
            waiting = tuple(sorted(str(f) for f in through.get("fields") or ()))
            if waiting and all(f in spec.struct for f in waiting):
                out.pending.setdefault(waiting, []).append(stamp)
    return out
