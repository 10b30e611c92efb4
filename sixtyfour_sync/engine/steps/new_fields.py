"""After a sync's own pass: "new fields" steps, each asking only the fields a group of rows lacks.

The sync's own pass leaves out the enriched rows whose stamp lacks only some fields
(:mod:`sixtyfour_sync.engine.steps.field_changes`); here each group of stamps gets a step of its own over
just those rows and just those fields (``SyncSpec.only_fields``), under the same lease and budget. Jobs of a step left
unfinished by an earlier run are finished by a step with their own fields, whatever the struct is now.

With ``escalate:``, the new fields follow the waterfall the rows took: a step per tier, the sync's own first.
The step at a tier asks the rows whose fields were asked at the tier before and are waiting for this one,
because the row's answer came from a higher tier (``_sixtyfour_tier``) or because the new field came back weak
there. Its merge writes only the new fields' columns (the row's other fields, its status and its tier stay) and
then marks, in the same transaction, which rows wait for the next tier (:func:`through_statements`). A row is
asked each new field once per tier, and its own escalation never asks the whole question again for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sixtyfour_sync.config.models import SyncSpec
from sixtyfour_sync.engine.jobs.scheduler import StopToken
from sixtyfour_sync.engine.jobs.states import ACTIVE
from sixtyfour_sync.engine.plan.step import Step, step_name
from sixtyfour_sync.engine.steps.escalation import SETTLED, adopt_unsettled
from sixtyfour_sync.engine.steps.field_changes import FieldChanges
from sixtyfour_sync.engine.summary import SyncResult
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.types import TableRef

if TYPE_CHECKING:
    from sixtyfour_sync.engine.runner import SyncRunner

__all__ = ["FieldStep", "ask_new_fields", "field_steps", "step_name", "through_statements"]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _literals(values: Sequence[str]) -> str:
    return ", ".join(_literal(v) for v in values)


@dataclass(frozen=True)
class FieldStep:
    """One "new fields" step: the fields of a group, asked at one tier of the ladder."""

    #: The group of fields as the target's stamps name them (those since removed included).
    group: tuple[str, ...]
    #: The sync narrowed to the group's fields that still exist, at this step's tier.
    spec: SyncSpec
    #: The stamps of the rows it asks (at the sync's tier: the stamps lacking the fields; above it: the stamp of
    #: the rows waiting for this tier).
    stamps: list[str]
    tier_index: int
    #: The group was asked at some tier before this run (rows may be waiting for this tier already).
    asked_before: bool
    #: Jobs of this step left unfinished by an earlier run are there to finish.
    unfinished: bool

    @property
    def name(self) -> str:
        return step_name(self.spec)

    @property
    def step(self) -> Step:
        """The step a runner executes."""
        return Step.fields(self.spec, self.stamps)


def field_steps(
    spec: SyncSpec, changes: FieldChanges | None, unfinished: Mapping[tuple[str, ...], set[str]] | None = None
) -> Iterator[FieldStep]:
    """The "new fields" steps of a sync, in the order a run takes them: per group of fields, one at the sync's tier
    for the rows lacking them, then one per escalation tier for the rows waiting for it. ``unfinished``: the tiers
    at which jobs of each group are still unfinished. The one sequence both ``plan`` and ``run`` follow; a run
    skips a step above the sync's tier when nothing was asked at the tier before (see :func:`ask_new_fields`)."""
    groups: dict[tuple[str, ...], list[str]] = dict(changes.groups) if changes else {}
    pending = set(changes.pending) if changes else set()
    unfinished = unfinished or {}
    ladder = spec.ladder
    for group in sorted(set(groups) | pending | set(unfinished)):
        known = [f for f in group if f in spec.struct]
        if not known:
            continue  # every field of it was removed since: nothing to merge it into
        sub = spec.only_fields(known)
        for i, tier in enumerate(ladder):
            stamps = groups.get(group, []) if i == 0 else [sub.through_stamp(ladder[i - 1])[0]]
            left = tier in unfinished.get(group, set())
            if not stamps and not left:
                continue
            yield FieldStep(group, sub if i == 0 else sub.escalated(tier), stamps, i, group in pending, left)


def _unfinished_fields(runner: SyncRunner) -> dict[tuple[str, ...], set[str]]:
    """The tiers at which "new fields" jobs of each group are unfinished in the ledger."""
    spec, ledger = runner.ctx.spec, runner.ctx.ledger
    unfinished: dict[tuple[str, ...], set[str]] = {}
    if ledger.exists():
        for job in ledger.jobs_for(sync_name=spec.name, states=sorted(ACTIVE), target=runner.ctx.target_id):
            if job.fields:
                asked = tuple(sorted(f for f in job.fields.split(",") if f))
                unfinished.setdefault(asked, set()).add(job.tier or spec.tier)
    return unfinished


def ask_new_fields(
    result: SyncResult,
    runner: SyncRunner,
    *,
    stop: StopToken,
    make_runner: Callable[[Step], SyncRunner],
) -> None:
    """Run the steps of each group of fields the target's rows lack (and of unfinished step jobs left before)."""
    asked: dict[tuple[str, ...], bool] = {}
    for fs in field_steps(runner.ctx.spec, runner.changes, _unfinished_fields(runner)):
        if stop.requested or runner.stop_reason is not None or result.status not in SETTLED:
            return
        asked_before = asked.setdefault(fs.group, fs.asked_before)
        if fs.tier_index > 0 and not asked_before and not fs.unfinished:
            continue  # nothing was asked at the tier before: no row waits for this one
        step = make_runner(fs.step)
        step.sync_spent = runner.sync_spent
        step.prepare()
        known = ", ".join(fs.spec.struct)
        if fs.stamps and fs.tier_index == 0:
            step.ctx.note(f"asking only {known} for rows answered before the struct changed")
        elif fs.stamps:
            step.ctx.note(f"asking only {known} at {fs.spec.tier} for the rows that reached it")
        outcome = step.run()
        _fold(result, outcome)
        runner.sync_spent = step.sync_spent
        if step.stop_reason in ("budget_reached", "no_credits"):
            return
        asked[fs.group] = asked_before or bool(outcome.rows_sent) or bool(outcome.jobs)


def _fold(base: SyncResult, step: SyncResult) -> None:
    base.add_step(step)
    adopt_unsettled(base, step)


def through_statements(
    adapter: Adapter, spec: SyncSpec, target: TableRef, columns: Mapping[str, Any], tasks: Sequence[str]
) -> list[str]:
    """After a "new fields" step's merge (in its transaction): the rows that wait for the next tier get the
    step's ``through`` stamp (their answer came from a higher tier, or the new fields came back weak), and those
    whose answer came from a lower tier and are done get the ``done`` stamp (so their own escalation does not
    ask the whole question again). Empty without ``escalate:``."""
    ladder = spec.ladder
    if not spec.field_subset or len(ladder) < 2 or not tasks:
        return []

    def col(name: str) -> str | None:
        stored = adapter.find_column(columns, name)
        return None if stored is None else adapter.quote(stored, what="target column")

    stamp, task, tier = (
        col(spec.bookkeeping("spec_hash")),
        col(spec.bookkeeping("task_id")),
        col(spec.bookkeeping("tier")),
    )
    if stamp is None or task is None:
        return []
    at = ladder.index(spec.tier) if spec.tier in ladder else 0
    above, below = ladder[at + 1 :], ladder[:at]
    own = ladder[0]
    row_tier = f"COALESCE({tier}, {_literal(own)})" if tier is not None else _literal(own)
    mine = f"{task} IN ({_literals(sorted(set(tasks)))}) AND {stamp} = {_literal(spec.spec_hash())}"
    table = adapter.table_sql(target)
    out = []
    if above:
        weak = [f"{c} IS NULL" for c in (col(spec.column_for(f)) for f in spec.struct) if c is not None]
        waiting = " OR ".join([f"{row_tier} IN ({_literals(above)})", *weak])
        out.append(f"UPDATE {table} SET {stamp} = {_literal(spec.through_stamp()[0])} WHERE {mine} AND ({waiting})")
    if below:
        out.append(
            f"UPDATE {table} SET {stamp} = {_literal(spec.through_stamp(done=True)[0])} "
            f"WHERE {mine} AND {row_tier} IN ({_literals(below)})"
        )
    return out
