"""An approved plan: its file read back, and the rule deciding whether a run may execute it (no server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sixtyfour_sync.engine.plan.approval import ApprovedSync, hold_to, plan_document, read_plan
from sixtyfour_sync.engine.summary import StepPlan, SyncPlan
from sixtyfour_sync.errors import ConfigError


def _plan(rows: int = 100, price: float | None = 2.0, escalation: int = 0) -> SyncPlan:
    steps = [StepPlan("own", "own", "low", rows_by_reason={"new": rows}, rows=rows, files=1,
                      price_cents_per_row=price,
                      estimated_cost_cents=None if price is None else price * rows)]  # fmt: skip
    if escalation:
        steps.append(StepPlan("escalate:medium", "escalate", "medium", rows=escalation, expected=True,
                              price_cents_per_row=10.0, estimated_cost_cents=10.0 * escalation))  # fmt: skip
    return SyncPlan(
        name="leads",
        endpoint="people",
        tier="low",
        target="main.leads_enriched",
        definition="d1",
        rows_by_reason={"new": rows},
        files=1,
        price_cents_per_row=price,
        estimated_cost_cents=None if price is None else price * rows,
        steps=steps,
    )


def _approved(tmp_path: Path, plan: SyncPlan) -> ApprovedSync:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan_document([plan], project="p", target="dev", created_at="now"), default=str))
    return read_plan(path).syncs["leads"]


def test_a_plan_file_round_trips_with_its_steps(tmp_path: Path) -> None:
    approved = _approved(tmp_path, _plan(100, escalation=30))
    assert approved.rows == 100 and approved.estimated_cost_cents == 200.0
    assert approved.expected_rows == 30 and approved.expected_cost_cents == 300.0
    assert approved.definition == "d1" and approved.target == "main.leads_enriched"


def test_the_same_data_runs_capped_at_the_approved_rows_and_estimate_plus_one_row(tmp_path: Path) -> None:
    hold = hold_to(_approved(tmp_path, _plan(100, escalation=30)), _plan(100), definition="d1")
    assert hold.refusal is None
    assert hold.max_rows == 100
    assert hold.max_cost_cents == 200.0 + 300.0 + 2.0


def test_data_that_grew_is_refused_saying_both_numbers(tmp_path: Path) -> None:
    hold = hold_to(_approved(tmp_path, _plan(100)), _plan(101), definition="d1")
    assert hold.refusal is not None
    assert "101 row(s)" in hold.refusal and "100 approved" in hold.refusal and "$2.02" in hold.refusal


def test_a_price_that_rose_past_one_row_is_refused(tmp_path: Path) -> None:
    approved = _approved(tmp_path, _plan(100, price=2.0))
    assert hold_to(approved, _plan(100, price=2.01), definition="d1").refusal is None  # within one row's price
    refusal = hold_to(approved, _plan(100, price=3.0), definition="d1").refusal
    assert refusal is not None and "price rose" in refusal


def test_fewer_rows_run_and_say_so(tmp_path: Path) -> None:
    hold = hold_to(_approved(tmp_path, _plan(100)), _plan(60), definition="d1")
    assert hold.refusal is None and hold.max_rows == 100
    assert hold.notes == ["40 row(s) fewer to send than the plan approved (100)"]


def test_a_changed_definition_target_or_missing_sync_is_refused(tmp_path: Path) -> None:
    approved = _approved(tmp_path, _plan(100))
    assert "definition changed" in str(hold_to(approved, _plan(100), definition="d2").refusal)
    moved = _plan(100)
    moved.target = "prod.leads_enriched"
    assert "writes to main.leads_enriched" in str(hold_to(approved, moved, definition="d1").refusal)
    assert "not in the approved plan" in str(hold_to(None, _plan(100), definition="d1").refusal)


def test_an_unknown_price_caps_rows_only(tmp_path: Path) -> None:
    hold = hold_to(_approved(tmp_path, _plan(100, price=None)), _plan(100, price=None), definition="d1")
    assert hold.refusal is None and hold.max_rows == 100 and hold.max_cost_cents is None


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("", "not a plan file"),
        ("[1, 2]", "format 1"),
        ('{"format": 2, "syncs": []}', "format 1"),
        ('{"format": 1, "syncs": [{"rows": 3}]}', "without a name"),
        ('{"format": 1, "syncs": [{"name": "a", "definition": "d", "target": "t", "rows": -1}]}', "non-negative"),
        ('{"format": 1, "syncs": [{"name": "a", "definition": "d", "target": "t", "rows": "many"}]}', "non-negative"),
    ],
)
def test_a_file_that_is_not_a_plan_is_a_located_error(tmp_path: Path, content: str, says: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        read_plan(path)
    assert says in str(info.value.problems[0]) and str(path) in str(info.value)


def test_a_missing_plan_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        read_plan(tmp_path / "nope.json")
