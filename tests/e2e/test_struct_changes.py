"""Struct changes ask only what changed: a new field is asked alone, a changed field alone, a removed field
asks nothing, a changed tier everything. DuckDB and PostgreSQL, the emulator on a real socket."""

from __future__ import annotations

import json

from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.warehouses import Warehouse, setup_leads

TITLE = "      title: The individual's job title\n"


def _summary(out: str) -> dict:
    return [json.loads(line) for line in out.splitlines() if '"run.summary"' in line][-1]["syncs"][0]


def _plan(project: E2EProject) -> dict:
    out = run_cli(project, "plan", "--log-format", "json")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if '"plans"' in line][-1]["plans"][0]


def _edit(project: E2EProject, old: str, new: str) -> None:
    model = project.dir / "models" / "leads.yml"
    text = model.read_text()
    assert old in text
    model.write_text(text.replace(old, new))


def _structs(project: E2EProject) -> list[list[str]]:
    """The struct of each job the API created, in order."""
    jobs = sorted(project.emulator.jobs.values(), key=lambda j: j.created_at)
    return [sorted(j.config["struct"]) for j in jobs]


def test_only_what_changed_in_the_struct_is_asked(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 30)
    assert run_cli(project, "run", "--yes").returncode == 0
    before = {r[0]: r[1:] for r in wh.target("lead_id, email, title, _sixtyfour_status, _sixtyfour_task_id")}
    enriched = sorted(k for k, v in before.items() if v[2] == "enriched")
    failed = len(before) - len(enriched)

    # 1. a new field: enriched rows are asked just it; a failed row the whole question
    _edit(project, TITLE, TITLE + "      phone: The individual's phone number\n")
    plan = _plan(project)
    assert plan["new_fields"][0]["fields"] == ["phone"] and plan["new_fields"][0]["rows"] == len(enriched)
    assert plan["rows_by_reason"].get("changed", 0) == failed
    out = run_cli(project, "run", "--yes", "--log-format", "json")
    assert out.returncode == 0, out.stderr
    summary = _summary(out.stdout)
    assert summary["new_fields"]["phone"]["rows_sent"] == len(enriched)
    assert ["phone"] in _structs(project)
    after = {r[0]: r[1:] for r in wh.target("lead_id, email, title, phone, _sixtyfour_status")}
    for k in enriched:  # the earlier answers stay as they were
        assert after[k][:2] == before[k][:2]
    assert sum(1 for k in enriched if after[k][2] is not None) > 0
    jobs_before = len(project.emulator.jobs)
    plan = _plan(project)
    assert plan["new_fields"] == [] and sum(plan["rows_by_reason"].values()) == 0

    # 2. one field's description changes: only that field is asked again
    _edit(project, TITLE, "      title: The individual's current job title, as on their profile\n")
    plan = _plan(project)
    [group] = plan["new_fields"]
    assert group["fields"] == ["title"]
    assert run_cli(project, "run", "--yes").returncode == 0
    asked = _structs(project)[jobs_before:]
    assert ["title"] in asked  # enriched rows: just the changed field
    assert all(s in (["title"], ["email", "employee_count", "phone", "title"]) for s in asked)  # failed: whole
    jobs_before = len(project.emulator.jobs)

    # 3. a field removed: nothing is asked, of the enriched rows nor of those whose last answer failed (the
    #    question is the same but for the removed field: a removed field costs nothing; a failed row waits for
    #    refresh.retry_failed_after, as before)
    failed_now = sum(1 for r in wh.target("_sixtyfour_status") if r[0] == "failed")
    assert failed_now > 0
    _edit(project, "      phone: The individual's phone number\n", "")
    plan = _plan(project)
    assert plan["new_fields"] == [] and sum(plan["rows_by_reason"].values()) == 0
    paid = len(project.emulator.jobs)
    out = run_cli(project, "run", "--yes", "--log-format", "json")
    assert out.returncode == 0, out.stderr
    assert len(project.emulator.jobs) == paid and _summary(out.stdout)["status"] == "nothing_to_do"

    # 4. the tier changes: every row is asked the whole question
    _edit(project, "tier: low", "tier: medium")
    plan = _plan(project)
    assert plan["new_fields"] == [] and plan["rows_by_reason"] == {"changed": 30}
