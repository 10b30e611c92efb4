"""After a sync's own pass: "new fields" steps, each asking only the fields a group of rows lacks.

The sync's own pass leaves out the enriched rows whose stamp lacks only some fields
(:mod:`sixtyfour_sync.engine.fields`); here each group of stamps gets a step of its own over just those rows
and just those fields (``SyncSpec.only_fields``), under the same lease and budget. Jobs of a step left
unfinished by an earlier run are finished by a step with their own fields, whatever the struct is now.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sixtyfour_sync.config.models import SyncSpec
from sixtyfour_sync.engine.escalation import SETTLED, adopt_unsettled, tier_stats
from sixtyfour_sync.engine.scheduler import StopToken
from sixtyfour_sync.engine.states import ACTIVE
from sixtyfour_sync.engine.summary import SyncResult

if TYPE_CHECKING:
    from sixtyfour_sync.engine.runner import SyncRunner

__all__ = ["ask_new_fields"]


def _fold(base: SyncResult, step: SyncResult, fields: tuple[str, ...]) -> None:
    base.add_step(step)
    base.new_fields[",".join(fields)] = tier_stats(step)
    adopt_unsettled(base, step)


def ask_new_fields(
    result: SyncResult,
    runner: SyncRunner,
    *,
    stop: StopToken,
    make_runner: Callable[[SyncSpec, list[str]], SyncRunner],
) -> None:
    """Run a step per group of fields the target's rows lack (and per unfinished step job left before)."""
    spec = runner.ctx.spec
    groups: dict[tuple[str, ...], list[str]] = dict(runner.changes.groups) if runner.changes else {}
    ledger = runner.ctx.ledger
    if ledger.exists():
        for job in ledger.jobs_for(sync_name=spec.name, states=sorted(ACTIVE), target=runner.ctx.target_id):
            if job.fields:
                asked = tuple(sorted(f for f in job.fields.split(",") if f))
                groups.setdefault(asked, [])
    for fields, stamps in sorted(groups.items()):
        if stop.requested or runner.stop_reason is not None or result.status not in SETTLED:
            return
        known = [f for f in fields if f in spec.struct]
        if not known:
            continue  # every field of it was removed since: nothing to merge it into
        step = make_runner(spec.only_fields(known), stamps)
        step.sync_spent = runner.sync_spent
        step.prepare()
        if stamps:
            step.ctx.note(f"asking only {', '.join(known)} for rows answered before the struct changed")
        outcome = step.run()
        _fold(result, outcome, fields)
        runner.sync_spent = step.sync_spent
        if step.stop_reason in ("budget", "no_credits"):
            return
