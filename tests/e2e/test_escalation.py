"""Tier escalation end to end: weak answers at the sync's tier are asked again at the next tiers, in the same
run, never twice at one tier, within the budget. DuckDB and PostgreSQL, the emulator on a real socket."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from sixtyfour_sync.emulator import EmulatorSettings
from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.warehouses import Warehouse, setup_leads


@pytest.fixture
def emulator_settings(api_key: str) -> EmulatorSettings:
    # 40% of the rows fail at low, 20% at medium, 10% at high
    return EmulatorSettings(
        api_keys=frozenset({api_key}), high_tier_keys=frozenset({api_key}), job_seconds=0.1, failure_rate=0.4, seed=3
    )


def _distinct(wh: Warehouse) -> None:
    """Every lead a person of their own (the sample leads repeat every 20 rows, and so would the answers)."""
    wh.execute("UPDATE {t:leads} SET first_name = first_name || CAST(lead_id AS VARCHAR)")


def _summary(out: str) -> dict:
    return [json.loads(line) for line in out.splitlines() if '"run.summary"' in line][-1]["syncs"][0]


def _weak(row: tuple) -> bool:
    status, email, title, employees = row[1], row[2], row[3], row[4]
    return status == "failed" or None in (email, title, employees)


def _rows_by_tier(project: E2EProject) -> Counter[str]:
    """Rows the API was asked, per tier (every job it created: replays create none)."""
    out: Counter[str] = Counter()
    for job in list(project.emulator.jobs.values()):
        out[str(job.config.get("tier"))] += int(job.row_count or 0)
    return out


def test_weak_answers_climb_the_tiers_in_one_run_and_are_never_asked_twice(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 200)
    _distinct(wh)
    project.write_model(extra="escalate: [medium, high]\n")
    out = run_cli(project, "run", "--yes", "--log-format", "json")
    assert out.returncode == 0, out.stderr
    summary = _summary(out.stdout)
    tiers = summary["tiers"]
    assert list(tiers) == ["low", "medium", "high"]
    assert tiers["low"]["rows_sent"] == 200
    assert 0 < tiers["medium"]["rows_sent"] < 200
    assert 0 < tiers["high"]["rows_sent"] < tiers["medium"]["rows_sent"]
    assert summary["rows_by_reason"]["escalate:medium"] == tiers["medium"]["rows_sent"]
    assert sum(tiers["medium"]["filled"].values()) > 0  # the deeper tier filled what low left empty

    rows = wh.target("lead_id, _sixtyfour_status, email, title, employee_count, _sixtyfour_tier, _sixtyfour_spec_hash")
    assert len(rows) == 200
    by_tier = Counter(r[5] for r in rows)
    assert by_tier["high"] == tiers["high"]["rows_sent"]
    assert by_tier["medium"] == tiers["medium"]["rows_sent"] - tiers["high"]["rows_sent"]
    assert not [r for r in rows if r[5] in ("low", "medium") and _weak(r)]  # what stayed below was good
    assert len({r[6] for r in rows}) == 1  # every answer is stamped with the sync's question
    # the ledger keeps the tier of each job; the API saw each row at most once per tier
    jobs = wh.jobs("tier, state")
    assert {t for t, _ in jobs} == {"low", "medium", "high"} and {s for _, s in jobs} == {"merged"}
    sent = _rows_by_tier(project)
    assert sent == Counter({"low": 200, "medium": tiers["medium"]["rows_sent"], "high": tiers["high"]["rows_sent"]})

    # the next run asks nothing: no row is asked again at a tier it was asked at
    again = run_cli(project, "run", "--yes", "--log-format", "json")
    assert again.returncode == 0, again.stderr
    assert _rows_by_tier(project) == sent
    assert _summary(again.stdout)["rows_sent"] == 0

    # the text summary shows what each tier added
    project.write_model(extra="escalate: [medium, high]\n")
    text = run_cli(project, "run", "--yes", "--full-refresh")
    assert text.returncode == 0, text.stderr
    assert "by tier: low: 200 asked" in " ".join(text.stdout.split())


def test_low_confidence_answers_escalate_and_the_plan_prices_the_escalation(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 40)
    _distinct(wh)
    project.write_model(extra="escalate: [medium]\nmin_confidence: 50\n")
    plan = run_cli(project, "plan", "--log-format", "json")
    assert plan.returncode == 0, plan.stderr
    out = run_cli(project, "run", "--yes", "--log-format", "json")
    assert out.returncode == 0, out.stderr
    summary = _summary(out.stdout)
    gated_low = sum(summary["tiers"]["low"]["gated"].values())
    assert gated_low > 0 and summary["tiers"]["medium"]["rows_sent"] > 0
    rows = wh.target("lead_id, _sixtyfour_tier, _sixtyfour_field_status")
    assert not [r for r in rows if r[1] == "low" and r[2]]  # a low answer held back was asked at medium
    # learned from this run: the next plan shows the escalation it expects, priced at medium
    setup_leads(wh, 60)  # 20 new rows
    _distinct(wh)
    plan = run_cli(project, "plan", "--log-format", "json")
    assert plan.returncode == 0, plan.stderr
    doc = [json.loads(line) for line in plan.stdout.splitlines() if '"plans"' in line][-1]["plans"][0]
    assert doc["rows_by_reason"] == {"new": 20}
    [step] = doc["escalation"]
    assert step["tier"] == "medium" and step["rows"] > 0 and step["rows_waiting"] == 0
    assert 0 < step["weak_rate"] < 1 and "answer(s) asked at low in the target" in step["learned_from"]
    assert step["estimated_cost_cents"] == pytest.approx(step["price_cents_per_row"] * step["rows"], rel=0.2)
    assert step["price_cents_per_row"] == 5  # learned from the medium job's estimate
    text = run_cli(project, "plan")
    assert "escalation to medium: ~" in " ".join(text.stdout.split())


def test_escalation_stays_within_the_budget(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 40)
    # 40 rows at low cost 80 cents; the medium step (5 cents a row) gets what is left of 100
    project.write_model(extra="escalate: [medium]\nbudget: {max_cost_cents: 100}\n")
    (project.dir / "models" / "prices.yml").write_text("prices:\n  people: {low: 2, medium: 5}\n")
    out = run_cli(project, "run", "--yes", "--log-format", "json")
    summary = _summary(out.stdout)
    assert summary["tiers"]["low"]["rows_sent"] == 40
    assert summary["tiers"]["medium"]["rows_sent"] <= 4
    assert summary["estimated_cost_cents"] <= 100
    assert out.returncode == 0, out.stderr  # the sync's own answers are in: stopping the extra asking is no failure
    assert "escalation to medium stopped at the budget" in " ".join(summary["warnings"])


def test_a_step_whose_file_equals_the_first_is_a_new_question_not_a_replay(
    project: E2EProject, wh: Warehouse, emulator_settings: EmulatorSettings
) -> None:
    # every row fails at low, so the medium file holds exactly the rows (and bytes) of the low file
    import dataclasses

    project.emulator.settings = dataclasses.replace(emulator_settings, failure_rate=1.0)
    setup_leads(wh, 5)
    project.write_model(extra="escalate: [medium]\n")
    out = run_cli(project, "run", "--yes", "--log-format", "json")
    assert out.returncode == 0, out.stderr
    summary = _summary(out.stdout)
    assert summary["tiers"]["low"]["rows_failed"] == 5 and summary["tiers"]["medium"]["rows_sent"] == 5
    assert summary["replays"] == 0
    assert _rows_by_tier(project) == Counter({"low": 5, "medium": 5})
    keys = [s.idempotency_key for s in project.emulator.submissions if s.status_code == 200]
    assert len(set(keys)) == 2
