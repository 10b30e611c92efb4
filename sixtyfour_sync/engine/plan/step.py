"""One step of a sync's plan, as data: what it asks and of which rows. ``plan`` counts and prices the steps;
``run`` executes them, each runner receiving one (engine/runner.py), in the order engine/lifecycle.py takes.

A sync's steps: its own pass (the rows its selection needs, the whole question), then its "new fields" steps
(rows answered before a field was added: only those fields, at the sync's tier, then at each escalation tier the
rows reached), then its escalation tiers (the weak answers of the tier before, the whole question again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sixtyfour_sync.config.models import SyncSpec

__all__ = ["Step", "step_name"]

StepKind = Literal["own", "fields", "escalate"]


def step_name(spec: SyncSpec, *, escalated: bool = False) -> str:
    """How a plan and the ledger name a step: ``own``, ``fields:<f1,f2>@<tier>`` or ``escalate:<tier>``."""
    if spec.field_subset:
        return f"fields:{','.join(sorted(spec.struct))}@{spec.tier}"
    return f"escalate:{spec.tier}" if escalated else "own"


@dataclass(frozen=True)
class Step:
    """One step of a sync: the question it asks (``spec``: the sync narrowed to the step's fields, at its tier) and
    the rows it selects (``kind``, with the stamps of a "new fields" step or the tier an escalation asks after)."""

    kind: StepKind
    spec: SyncSpec
    #: A "new fields" step: the stamps whose enriched rows get just this step's fields.
    stamps: tuple[str, ...] = ()
    #: An escalation step: the tier whose weak answers it asks again.
    after: str | None = None

    @classmethod
    def own(cls, spec: SyncSpec) -> Step:
        """The sync's own pass."""
        return cls("own", spec)

    @classmethod
    def fields(cls, spec: SyncSpec, stamps: Sequence[str]) -> Step:
        """A "new fields" step: ``spec`` narrowed to the fields (and at the tier) it asks."""
        return cls("fields", spec, stamps=tuple(stamps))

    @classmethod
    def escalation(cls, spec: SyncSpec, tier: str, after: str) -> Step:
        """The escalation of ``spec`` to ``tier``, asking the weak answers of ``after``."""
        return cls("escalate", spec.escalated(tier), after=after)

    @property
    def name(self) -> str:
        return step_name(self.spec, escalated=self.kind == "escalate")

    @property
    def own_pass(self) -> bool:
        return self.kind == "own"

    def selection_args(self) -> dict[str, Any]:
        """What :func:`~sixtyfour_sync.engine.rows.select.build_selection` needs to select this step's rows."""
        return {
            "field_stamps": list(self.stamps) if self.kind == "fields" else None,
            "escalate_from": self.after if self.kind == "escalate" else None,
        }
