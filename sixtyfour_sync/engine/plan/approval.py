"""An approved plan: ``plan -o plan.json`` saves what a run would send and spend, ``run --plan plan.json`` executes
it and nothing more (the plan-then-apply habit, for paid work reviewed in CI).

Pure: the plan document's shape, reading it back with located errors, and the rule that decides whether a sync's
plan made now still fits what was approved (:func:`hold_to`). The run applies the caps this returns: at most the
approved rows, never more than the approved estimate plus one row's price.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sixtyfour_sync.config.models import SyncSpec
from sixtyfour_sync.engine.summary import SyncPlan
from sixtyfour_sync.errors import ConfigError, ConfigProblem

__all__ = [
    "PLAN_FORMAT",
    "ApprovedPlan",
    "ApprovedSync",
    "Hold",
    "approved_from",
    "capped",
    "hold_to",
    "plan_document",
    "read_plan",
]

#: The plan file's format; a file of another format is refused, never guessed at.
PLAN_FORMAT = 1


def _cents(value: float | None) -> str:
    return "cost unknown" if value is None else f"${value / 100:,.2f}"


def plan_document(plans: Sequence[SyncPlan], *, project: str, target: str | None, created_at: str) -> dict[str, Any]:
    """The JSON a plan file holds: per sync, what a run would send (rows by step and reason), at what price, and
    the definition it was planned with."""
    return {
        "format": PLAN_FORMAT,
        "created_at": created_at,
        "project": project,
        "target": target,
        "syncs": [p.to_dict() for p in plans],
    }


@dataclass(frozen=True)
class ApprovedSync:
    """One sync of an approved plan."""

    name: str
    definition: str
    target: str
    rows: int
    estimated_cost_cents: float | None
    price_cents_per_row: float | None
    #: What escalation steps were expected to add (rows and cents): an expectation, approved with the rest.
    expected_rows: int = 0
    expected_cost_cents: float | None = 0.0


@dataclass(frozen=True)
class ApprovedPlan:
    """A plan file, read back."""

    path: Path
    project: str
    target: str | None
    created_at: str
    syncs: dict[str, ApprovedSync] = field(default_factory=dict)


def _problem(path: Path, where: str, message: str) -> ConfigError:
    return ConfigError(
        f"{path}: {message}",
        problems=[ConfigProblem(str(path), where, message, hint="make it again with `sixtyfour-sync plan -o FILE`")],
    )


def _number(path: Path, where: str, value: Any, *, optional: bool = True) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise _problem(path, where, f"expected a non-negative number, found {json.dumps(value)[:40]}")
    return float(value)


def read_plan(path: Path | str) -> ApprovedPlan:
    """Read a plan file written by ``plan -o``; a file that is not one is a ConfigError naming what and where."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _problem(path, "plan", "no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _problem(path, "plan", f"not a plan file: {type(exc).__name__}") from None
    return approved_from(doc, path)


def approved_from(doc: Any, path: Path) -> ApprovedPlan:
    """A plan document (:func:`plan_document`) as an approved plan; ``path`` names it in errors."""
    if not isinstance(doc, Mapping) or doc.get("format") != PLAN_FORMAT or not isinstance(doc.get("syncs"), list):
        raise _problem(path, "format", f"not a plan file of format {PLAN_FORMAT} (written by `plan -o`)")
    syncs: dict[str, ApprovedSync] = {}
    for i, item in enumerate(doc["syncs"]):
        where = f"syncs[{i}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise _problem(path, where, "a sync without a name")
        if not isinstance(item.get("definition"), str) or not isinstance(item.get("target"), str):
            raise _problem(path, where, "a sync without its definition hash or target")
        expected = [s for s in item.get("steps") or [] if isinstance(s, Mapping) and s.get("expected")]
        expected_cost: float | None = 0.0
        for s in expected:
            c = _number(path, f"{where}.steps", s.get("estimated_cost_cents"))
            expected_cost = None if c is None or expected_cost is None else expected_cost + c
        syncs[item["name"]] = ApprovedSync(
            name=item["name"],
            definition=item["definition"],
            target=item["target"],
            rows=int(_number(path, f"{where}.rows", item.get("rows"), optional=False) or 0),
            estimated_cost_cents=_number(path, f"{where}.estimated_cost_cents", item.get("estimated_cost_cents")),
            price_cents_per_row=_number(path, f"{where}.price_cents_per_row", item.get("price_cents_per_row")),
            expected_rows=sum(int(_number(path, f"{where}.steps", s.get("rows")) or 0) for s in expected),
            expected_cost_cents=expected_cost,
        )
    target = doc.get("target")
    return ApprovedPlan(
        path=path,
        project=str(doc.get("project") or ""),
        target=target if isinstance(target, str) else None,
        created_at=str(doc.get("created_at") or ""),
        syncs=syncs,
    )


@dataclass(frozen=True)
class Hold:
    """Whether a sync may run under an approved plan, and the caps it runs with."""

    #: Why it may not (nothing is sent), or None.
    refusal: str | None = None
    #: At most this many rows are sent by the sync's own pass and its new-fields steps.
    max_rows: int | None = None
    #: Never more than this is spent by the sync, every step included (None: the price is unknown).
    max_cost_cents: float | None = None
    #: What moved since the plan, said when the run goes ahead anyway (fewer rows, a lower price).
    notes: list[str] = field(default_factory=list)


def hold_to(approved: ApprovedSync | None, now: SyncPlan, *, definition: str) -> Hold:
    """Whether ``now`` (the sync planned again at run time) still fits ``approved``, and the caps to run with.

    Refused: a sync the plan does not hold, a definition or target that changed, more rows than approved, or an
    estimate above the approved one by more than one row's price (the price rose). Allowed otherwise, capped at
    the approved rows and at the approved estimate (escalation's expectation included) plus one row's price.
    """
    if approved is None:
        return Hold(refusal="not in the approved plan (plan it and approve it again to run it)")
    if approved.definition != definition:
        return Hold(refusal="its definition changed since the plan was approved (plan it and approve it again)")
    if approved.target != now.target:
        return Hold(refusal=f"the plan writes to {approved.target}, this run to {now.target}")
    notes: list[str] = []
    if now.rows > approved.rows:
        return Hold(
            refusal=f"the data grew since the plan: {now.rows:,} row(s) to send now "
            f"({_cents(now.estimated_cost_cents)}), {approved.rows:,} approved "
            f"({_cents(approved.estimated_cost_cents)}); plan it and approve it again"
        )
    price = now.price_cents_per_row if now.price_cents_per_row is not None else approved.price_cents_per_row
    one_row = price or 0.0
    if (
        approved.estimated_cost_cents is not None
        and now.estimated_cost_cents is not None
        and now.estimated_cost_cents > approved.estimated_cost_cents + one_row
    ):
        return Hold(
            refusal=f"the price rose since the plan: {_cents(now.estimated_cost_cents)} for {now.rows:,} row(s) now, "
            f"{_cents(approved.estimated_cost_cents)} approved; plan it and approve it again"
        )
    if now.rows < approved.rows:
        notes.append(f"{approved.rows - now.rows:,} row(s) fewer to send than the plan approved ({approved.rows:,})")
    cap: float | None = None
    if approved.estimated_cost_cents is not None and approved.expected_cost_cents is not None:
        cap = approved.estimated_cost_cents + approved.expected_cost_cents + one_row
    elif approved.price_cents_per_row is not None:
        cap = approved.price_cents_per_row * (approved.rows + approved.expected_rows + 1)
    return Hold(max_rows=approved.rows, max_cost_cents=None if cap is None else round(cap, 4), notes=notes)


def capped(spec: SyncSpec, hold: Hold) -> SyncSpec:
    """The sync's definition with the caps of an approved plan: ``refresh.limit`` at most the approved rows (when
    it approved any), ``budget.max_cost_cents`` at most the approved estimate plus one row's price."""
    refresh, budget = spec.refresh, spec.budget
    if hold.max_rows:
        limit = hold.max_rows if refresh.limit is None else min(refresh.limit, hold.max_rows)
        refresh = refresh.model_copy(update={"limit": limit})
    if hold.max_cost_cents is not None:
        cents = hold.max_cost_cents
        if budget.max_cost_cents is not None:
            cents = min(cents, float(budget.max_cost_cents))
        budget = budget.model_copy(update={"max_cost_cents": cents})
    return spec.model_copy(update={"refresh": refresh, "budget": budget})
