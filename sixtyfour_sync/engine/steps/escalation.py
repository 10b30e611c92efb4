"""Tier escalation (``escalate: [medium, high]``): a waterfall within Sixtyfour.

Once a sync's answers at its own tier are merged, the rows whose current answer is weak (failed, a requested
field empty, or held back below ``min_confidence``) are asked again at the next tier, then the next, each
step a sync run of its own over just those rows (:func:`~sixtyfour_sync.engine.rows.select.build_selection` with
``escalate_from``), under the same lease and the same budget. An escalated answer is stamped with the sync's
question (its spec hash at the sync's tier) and its own tier in ``_sixtyfour_tier``, so the next run takes it
as answered, and a row is never asked twice at one tier for one question: a step only selects rows answered
at the step before.

Each step's counts are folded into the sync's result, and kept per tier (``SyncResult.tiers``), with the
fields each tier filled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sixtyfour_sync.engine.jobs.scheduler import StopToken
from sixtyfour_sync.engine.plan.step import Step
from sixtyfour_sync.engine.summary import SyncResult

if TYPE_CHECKING:
    from sixtyfour_sync.engine.runner import SyncRunner

__all__ = ["SETTLED", "adopt_unsettled", "escalate", "fold", "tier_stats"]

log = logging.getLogger("sixtyfour_sync.engine")

#: A sync result a step may follow: its answers are all merged.
SETTLED = ("ok", "nothing_to_do")


def tier_stats(r: SyncResult) -> dict[str, Any]:
    """What one tier did in a run: rows asked, answered, filled per field."""
    return {
        "rows_sent": r.rows_sent,
        "rows_enriched": r.rows_enriched,
        "rows_failed": r.rows_failed + r.rows_not_returned,
        "returned": r.returned,
        "filled": dict(r.filled),
        "gated": dict(r.gated),
        "estimated_cost_cents": r.estimated_cost_cents,
        "charged_cents": r.charged_cents,
    }


def fold(base: SyncResult, step: SyncResult, tier: str) -> None:
    """Add an escalation step's outcome to the sync's result."""
    base.add_step(step, {"escalate": f"escalate:{tier}"})
    base.tiers[tier] = tier_stats(step)
    if step.status == "budget_reached":
        # the sync's own answers are all in: a budget that stops the extra asking is not a failure
        base.warnings.extend(e for e in step.errors if e not in base.warnings)
        base.errors = [e for e in base.errors if e not in step.errors]
        base.warnings.append(f"escalation to {tier} stopped at the budget; the next run goes on")
    else:
        adopt_unsettled(base, step)


def adopt_unsettled(base: SyncResult, step: SyncResult) -> None:
    """A step that did not settle gives its status to a sync that had (a failed step fails the sync)."""
    if step.status not in SETTLED and base.status in SETTLED:
        base.status = step.status


def escalate(
    result: SyncResult,
    runner: SyncRunner,
    *,
    stop: StopToken,
    make_runner: Callable[[Step], SyncRunner],
) -> None:
    """Run the sync's escalation steps after its own pass, while each step before ended settled."""
    spec = runner.ctx.spec
    result.tiers[spec.tier] = tier_stats(result)
    previous, last = spec.tier, result
    for tier in spec.escalate:
        if stop.requested or runner.stop_reason is not None or last.status not in SETTLED or last.jobs_in_flight:
            runner.ctx.note(f"escalation to {tier} waits for the next run (the answers at {previous} are not all in)")
            return
        step = make_runner(Step.escalation(spec, tier, previous))
        step.sync_spent = runner.sync_spent  # the sync's budget covers all its tiers
        step.prepare()
        step.ctx.note(f"escalating weak answers from {previous} to {tier}")
        outcome = step.run()
        fold(result, outcome, tier)
        if step.stop_reason in ("budget_reached", "no_credits"):
            return
        previous, last, runner = tier, outcome, step
