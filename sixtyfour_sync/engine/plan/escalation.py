"""The expected rows and cost of each escalation step of a plan."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sixtyfour_sync.config.models import SyncSpec
from sixtyfour_sync.engine.jobs.states import JobState as S
from sixtyfour_sync.engine.ledger.store import Ledger
from sixtyfour_sync.engine.plan.prices import resolve_price
from sixtyfour_sync.engine.plan.step import Step
from sixtyfour_sync.engine.rows.select import answered_at_sql, build_selection, count_by_reason_sql, weak_answer_sql
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.types import LogicalType, TableRef

__all__ = ["plan_escalation"]


def plan_escalation(
    adapter: Adapter,
    spec: SyncSpec,
    target: TableRef,
    columns: Mapping[str, LogicalType | str] | None,
    *,
    selection_args: Mapping[str, Any],
    rows: int,
    ledger: Ledger | None,
    prices: dict[tuple[str, str], float] | None,
) -> list[dict[str, Any]]:
    """Expected rows and cost of each escalation step: the weak answers waiting in the target, plus the rows
    this run sends times the weak rate learned at the step before (from the target's answers at that tier, or
    the ledger's failed rows)."""
    steps: list[dict[str, Any]] = []
    previous, coming = spec.tier, float(rows)
    ladder = [spec.tier, *spec.escalate]
    lit = "'" + spec.spec_hash().replace("'", "''") + "'"
    for tier in spec.escalate:
        waiting, rate, learned_from = 0, None, None
        if columns is not None:

            def col(name: str) -> str:
                stored = adapter.find_column(columns, name)
                return "NULL" if stored is None else f"t.{adapter.quote_char}{stored}{adapter.quote_char}"

            step = Step.escalation(spec, tier, previous)  # the run's escalation step (engine/plan/step.py)
            sel = build_selection(adapter, step.spec, target=target, target_columns=columns,
                                  spec_hash=spec.spec_hash(), **step.selection_args(), **selection_args)  # fmt: skip
            # asked at ``previous``: rows answered there, and rows escalated beyond it (weak there)
            later = [answered_at_sql(spec, col, t, lit) for t in ladder[ladder.index(previous) + 1 :]]
            here = answered_at_sql(spec, col, previous, lit)
            beyond = " OR ".join(f"({c})" for c in later) or "1 = 0"
            with adapter.session() as s:
                waiting = sum(int(n) for _, n in s.fetchall(count_by_reason_sql(adapter, sel)))
                row = s.fetchone(
                    f"SELECT SUM(CASE WHEN ({here}) OR {beyond} THEN 1 ELSE 0 END), "
                    f"SUM(CASE WHEN (({here}) AND {weak_answer_sql(spec, col)}) OR {beyond} THEN 1 ELSE 0 END) "
                    f"FROM {adapter.table_sql(target)} t"
                )
            answered, weak = (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)
            if answered:
                rate, learned_from = weak / answered, f"{answered:,} answer(s) asked at {previous} in the target"
        if rate is None and ledger is not None:
            jobs = [
                j
                for j in ledger.job_rows()
                if j.get("sync_name") == spec.name and j.get("tier") == previous and j.get("state") == S.MERGED.value
            ]
            asked = sum(int(j.get("rows") or 0) for j in jobs)
            if asked:
                weak_rows = sum(int(j.get("rows_failed") or 0) + int(j.get("rows_not_returned") or 0) for j in jobs)
                rate, learned_from = weak_rows / asked, f"failed rows of {len(jobs)} job(s) at {previous}"
        expected = waiting + (coming * rate if rate is not None else 0.0)
        price = resolve_price(spec.escalated(tier), ledger, prices)
        steps.append(
            {
                "tier": tier,
                "from_tier": previous,
                "rows_waiting": waiting,
                "weak_rate": None if rate is None else round(rate, 4),
                "learned_from": learned_from,
                "rows": round(expected),
                "price_cents_per_row": None if price is None else price.cents_per_row,
                "estimated_cost_cents": None if price is None else round(price.cents_per_row * expected, 2),
            }
        )
        previous, coming = tier, expected
    return steps
