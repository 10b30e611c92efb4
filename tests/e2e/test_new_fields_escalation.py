"""Struct changes and escalation compose: a field added to a sync with ``escalate:`` is asked along the waterfall
each row took (at the sync's tier, then at each tier the row's answer reached or at which the new field came back
weak), once per tier, and nothing else of the row changes. A removed field asks nothing."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from sixtyfour_sync.emulator import Emulator, EmulatorSettings
from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.warehouses import Warehouse, setup_leads

pytestmark = pytest.mark.slow

NEW = "      seniority: The individual's seniority level\n"
ESCALATE = "escalate: [medium]\n"


@pytest.fixture
def emulator_settings(api_key: str) -> EmulatorSettings:
    return EmulatorSettings(api_keys=frozenset({api_key}), job_seconds=0.1, failure_rate=0.15, seed=23)


def _distinct(wh: Warehouse) -> None:
    wh.execute("UPDATE {t:leads} SET first_name = first_name || CAST(lead_id AS VARCHAR)")


def _with_field(project: E2EProject) -> None:
    path = project.dir / "models" / "leads.yml"
    text = path.read_text()
    path.write_text(text.replace("      employee_count:", NEW + "      employee_count:", 1))


def _asked(emu: Emulator, since: int = 0) -> list[tuple[str, tuple[str, ...], list[Any]]]:
    """(tier, struct fields, lead ids) of each job the API received, in order."""
    out = []
    for job in list(emu.jobs.values())[since:]:
        ids = [json.loads(line)["lead_id"] for line in job.upload_path.read_text().splitlines() if line.strip()]
        out.append((job.tier, tuple(sorted(job.config["struct"])), ids))
    return out


def _rows(wh: Warehouse) -> dict[Any, tuple[Any, ...]]:
    cols = "lead_id, email, title, employee_count, _sixtyfour_status, _sixtyfour_tier"
    return {r[0]: r[1:] for r in wh.target(cols)}


def test_a_new_field_follows_the_waterfall_once_per_tier_and_changes_nothing_else(
    project: E2EProject, wh: Warehouse
) -> None:
    setup_leads(wh, 80)
    _distinct(wh)
    project.write_model(extra=ESCALATE)
    first = run_cli(project, "run", "--yes")
    assert first.returncode in (0, 3), first.stdout + first.stderr
    before = _rows(wh)
    medium_rows = {k for k, v in before.items() if v[4] == "medium"}
    assert medium_rows, "some answers were escalated"
    seen = len(project.emulator.jobs)

    _with_field(project)
    second = run_cli(project, "run", "--yes", "--log-format", "json")
    assert second.returncode in (0, 3), second.stdout + second.stderr
    asked = _asked(project.emulator, seen)
    enriched = {k for k, v in before.items() if v[3] == "enriched"}
    failed = set(before) - enriched
    new_field = [a for a in asked if a[1] == ("seniority",)]
    whole = [a for a in asked if a[1] != ("seniority",)]
    # the whole question only for rows whose last answer failed (a new question is a new chance)
    assert {k for _, _, ids in whole for k in ids} <= failed, whole
    per_tier = Counter((tier, key) for tier, _, ids in new_field for key in ids)
    assert per_tier and max(per_tier.values()) == 1  # once per tier
    low = {k for (t, k) in per_tier if t == "low"}
    medium = {k for (t, k) in per_tier if t == "medium"}
    assert low == enriched  # every answered row at the sync's tier
    assert medium_rows & enriched <= medium  # and at the tier its answer reached
    after = _rows(wh)
    for key in enriched:
        assert after[key][:5] == before[key], f"row {key} changed beyond its new field"  # fields, status, tier
    filled = wh.query("SELECT COUNT(*) FROM {t:leads_enriched} WHERE seniority IS NOT NULL")[0][0]
    assert filled > 0

    third = run_cli(project, "run", "--yes")
    assert third.returncode in (0, 3), third.stderr
    assert len(project.emulator.jobs) == seen + len(asked)  # nothing left to ask


def test_a_removed_field_submits_nothing(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 30)
    _distinct(wh)
    project.write_model(extra=ESCALATE)
    assert run_cli(project, "run", "--yes").returncode in (0, 3)
    seen = len(project.emulator.submissions)
    path = project.dir / "models" / "leads.yml"
    path.write_text(path.read_text().replace("      title: The individual's job title\n", ""))
    out = run_cli(project, "run", "--yes", "--log-format", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(project.emulator.submissions) == seen
