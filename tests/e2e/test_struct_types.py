"""Every struct type end to end: asked of the emulator over a real socket, parsed and written to DuckDB and
PostgreSQL columns of the right type; a type the API does not know is a warning locally and the API's 422."""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.warehouses import Warehouse, setup_leads

MODEL = """\
syncs:
  - name: typed_leads
    endpoint: people
    source:
      table: leads
      key: lead_id
      columns: [first_name, last_name, company, domain]
    struct:
      email: The individual's email address
      employee_count: {{description: Employees at their company, type: integer}}
      revenue: {{description: Company revenue in millions, type: float}}
      is_hiring: {{description: "Hiring now?", type: boolean}}
      skills: {{description: Skills, type: "list[str]"}}
      meta: {{description: Where this came from, type: dict}}
      seniority: {{description: Seniority level, type: enum, values: [junior, senior, executive]}}
      department: {{description: Department, type: enum}}
      languages: {{description: Languages spoken, type: "list[enum]", enum: [en, de, fr]}}
      headquarters:
        description: Company headquarters
        type: object
        subfields:
          city: City
          employees: {{description: Staff there, type: int}}
          listed: {{description: "Publicly listed?", type: bool}}
      offices:
        description: Other offices
        type: "list[object]"
        subfields:
          - {{name: city, description: City, type: string}}
          - {{name: share, description: Share of staff, type: float}}
{extra}    field_confidence: true
    target:
      table: leads_enriched
"""
UNKNOWN = "      founded: {description: Founding date, type: Date}\n"

JSON_FIELDS = ("skills", "meta", "languages", "headquarters", "offices")


def _write(project: E2EProject, extra: str = "") -> None:
    (project.dir / "models").mkdir(exist_ok=True)
    (project.dir / "models" / "leads.yml").write_text(MODEL.format(extra=extra))


def _summary(out: str) -> dict[str, Any]:
    return [json.loads(line) for line in out.splitlines() if '"run.summary"' in line][-1]


def _column_types(wh: Warehouse) -> dict[str, str]:
    schema = wh.schema or "main"
    rows = wh.query(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
        [schema, "leads_enriched"],
    )
    return {r[0]: str(r[1]).lower() for r in rows}


def test_every_struct_type_lands_in_a_column_of_its_type(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 40)
    _write(project)
    validated = run_cli(project, "validate")
    assert validated.returncode == 0, validated.stderr
    assert "warning" not in validated.stderr

    out = run_cli(project, "run", "--yes", "--log-format", "json")
    assert out.returncode == 0, out.stderr
    [sync] = _summary(out.stdout)["syncs"]
    assert sync["status"] == "ok" and sync["rows_enriched"] > 0
    assert not any("outside" in w for w in sync["warnings"])  # the emulator answers the listed values

    # what the API was asked: the StructField shape, the values in the description
    [job] = project.emulator.jobs.values()
    struct = job.config["struct"]
    assert struct["seniority"] == {
        "description": 'Seniority level. One of: "junior", "senior", "executive".',
        "type": "enum",
    }
    assert struct["offices"]["type"] == "object_list"
    assert struct["headquarters"]["subfields"][0] == {"name": "city", "description": "City", "type": "string"}

    types = _column_types(wh)
    json_type = "json" if wh.kind == "duckdb" else "jsonb"
    text_type = "varchar" if wh.kind == "duckdb" else "text"
    assert {f: types[f] for f in JSON_FIELDS} == dict.fromkeys(JSON_FIELDS, json_type)
    assert types["seniority"] == types["department"] == types["email"] == text_type
    assert types["employee_count"] == "bigint" and types["is_hiring"] == "boolean"

    columns = "lead_id, _sixtyfour_status, seniority, department, employee_count, revenue, is_hiring, " + ", ".join(
        JSON_FIELDS
    )
    rows = wh.query(f"SELECT {columns} FROM {{t:leads_enriched}} ORDER BY lead_id")
    assert len(rows) == 40
    enriched = [r for r in rows if r[1] == "enriched"]
    failed = [r for r in rows if r[1] == "failed"]
    assert enriched and failed  # the emulator fails ~10% of rows: their fields stay NULL
    assert all(v is None for r in failed for v in r[2:])
    for r in enriched:
        seniority, department, employees, revenue, hiring = r[2:7]
        skills, meta, languages, hq, offices = (json.loads(v) if isinstance(v, str) else v for v in r[7:])
        assert seniority in ("junior", "senior", "executive")
        assert department in ("engineering", "sales", "marketing", "finance", "operations")
        assert isinstance(employees, int) and isinstance(revenue, float) and isinstance(hiring, bool)
        assert isinstance(skills, list) and skills and all(isinstance(s, str) for s in skills)
        assert isinstance(meta, dict) and set(meta) == {"source", "score", "verified"}
        assert isinstance(languages, list) and 1 <= len(languages) <= 3 and set(languages) <= {"en", "de", "fr"}
        assert isinstance(hq, dict) and set(hq) == {"city", "employees", "listed"}
        assert isinstance(hq["city"], str) and isinstance(hq["employees"], int) and isinstance(hq["listed"], bool)
        assert isinstance(offices, list) and 1 <= len(offices) <= 3
        assert all(set(o) == {"city", "share"} and isinstance(o["share"], float) for o in offices)

    # nothing changed: nothing is asked again (the stamps of the new types are stable)
    again = run_cli(project, "run", "--yes", "--log-format", "json")
    assert again.returncode == 0, again.stderr
    assert _summary(again.stdout)["syncs"][0]["rows_sent"] == 0


def test_an_unknown_type_warns_locally_and_the_api_422_fails_the_sync_without_a_charge(
    project: E2EProject, wh: Warehouse
) -> None:
    setup_leads(wh, 10)
    _write(project, extra=UNKNOWN)
    warning = "struct field founded: type 'date' is not one the API is known to accept"

    validated = run_cli(project, "validate")
    assert validated.returncode == 0, validated.stderr  # a warning, never a failure
    assert "warning:" in validated.stderr and "founded.type: type 'date' is not one the API" in validated.stderr
    assert "leads.yml:" in validated.stderr
    as_json = run_cli(project, "validate", "--log-format", "json")
    event = [json.loads(line) for line in as_json.stdout.splitlines() if '"validate"' in line][-1]
    assert event["ok"] is True and event["warnings"][0]["path"] == "typed_leads.struct.founded.type"

    plan = run_cli(project, "plan")
    assert plan.returncode == 0, plan.stderr
    assert warning in plan.stdout.replace("\n  ", " ") or warning in plan.stdout
    plan_json = run_cli(project, "plan", "--log-format", "json")
    plans = [json.loads(line) for line in plan_json.stdout.splitlines() if '"plans"' in line][-1]["plans"]
    assert any(warning in w for w in plans[0]["warnings"])

    out = run_cli(project, "run", "--yes", "--log-format", "json")
    assert out.returncode != 0
    summary = _summary(out.stdout)
    [sync] = summary["syncs"]
    assert sync["status"] == "failed"
    assert any(warning in w for w in sync["warnings"])
    errors = " ".join(sync["errors"] + [j.get("error") or "" for j in sync["jobs"]])
    assert "HTTP 422" in errors and "struct.founded.type" in errors, sync
    assert project.emulator.jobs == {}  # the API created no job
    assert sync["charged_cents"] == 0 and wh.charged_in_ledger() == 0
    assert not wh.exists("leads_enriched") or all(r[1] is None for r in wh.target("lead_id, _sixtyfour_status"))
