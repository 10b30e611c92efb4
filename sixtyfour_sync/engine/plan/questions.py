"""How many questions a selection asks: rows sharing their inputs ask one (engine/rows/select.py), so ``plan``
prices the distinct questions, not the rows."""

from __future__ import annotations

import dataclasses
import math

from sixtyfour_sync.engine.rows.select import Selection, count_questions_sql
from sixtyfour_sync.engine.summary import StepPlan
from sixtyfour_sync.warehouse.adapter import Adapter

__all__ = ["count_questions", "priced_by_questions"]


def count_questions(adapter: Adapter, selection: Selection, limit: int | None = None) -> tuple[int, int]:
    """``(rows, questions)`` of the rows a run would send (good keys; at most ``limit`` rows), in one query."""
    with adapter.session() as s:
        row = s.fetchone(count_questions_sql(adapter, selection, limit))
    if not row:
        return 0, 0
    return int(row[0] or 0), int(row[1] or 0)


def priced_by_questions(step: StepPlan, shared: int, chunk_rows: int) -> StepPlan:
    """``step`` with its files and cost counted over its questions: ``shared`` of its rows take the answer of a
    row that asks the same question (they are sent in no file and paid for once)."""
    if shared <= 0:
        return step
    questions = max(0, step.rows - shared)
    cost = step.estimated_cost_cents
    if step.price_cents_per_row is not None:
        cost = round(step.price_cents_per_row * questions, 2)
    return dataclasses.replace(
        step, files=math.ceil(questions / chunk_rows) if questions else 0, estimated_cost_cents=cost
    )
