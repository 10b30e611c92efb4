"""The plan is what the run executes: ``plan -o`` saves it, ``run --plan`` executes it and nothing more (refused
when the data or the definition moved since), and ``plan --preview`` writes the first file of the first step that
sends rows, exactly as the run then sends it, after a struct change too."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from sixtyfour_sync.emulator import EmulatorSettings
from tests.e2e.conftest import E2EProject, lead_rows, run_cli
from tests.e2e.views import billed
from tests.e2e.warehouses import Warehouse, setup_leads

pytestmark = pytest.mark.slow


@pytest.fixture
def emulator_settings(api_key: str) -> EmulatorSettings:
    """Every answer comes back: the rows a step sends are exactly the rows the test changed."""
    return EmulatorSettings(api_keys=frozenset({api_key}), job_seconds=0.1, failure_rate=0.0, seed=3)


FIELD = "      seniority: The individual's seniority level\n"


def _add_field(project: E2EProject) -> None:
    path = project.dir / "models" / "leads.yml"
    text = path.read_text()
    marker = "      employee_count:"
    assert marker in text
    path.write_text(text.replace(marker, FIELD + marker, 1))


def _doc(stdout: str, key: str) -> dict[str, Any]:
    """The JSON document of ``--log-format json`` output holding ``key``."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{") and key in (doc := json.loads(line)):
            return dict(doc)
    raise AssertionError(f"no JSON line with {key!r} in: {stdout[-500:]}")


def _jobs(project: E2EProject) -> set[str]:
    return set(project.emulator.jobs)


def test_an_approved_plan_runs_capped_at_what_it_approved(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 20)
    project.write_model(chunk_rows=8)
    saved = run_cli(project, "plan", "-o", str(project.dir / "plan.json"))
    assert saved.returncode == 0, saved.stderr
    doc = json.loads((project.dir / "plan.json").read_text())
    (sync,) = doc["syncs"]
    assert sync["rows"] == 20 and sync["steps"][0]["name"] == "own" and sync["definition"]
    assert not project.emulator.jobs  # planning calls no API
    ran = run_cli(project, "run", "--plan", str(project.dir / "plan.json"), "--log-format", "json")
    assert ran.returncode in (0, 3), ran.stderr
    summary = _doc(ran.stdout, "syncs")
    assert summary["syncs"][0]["rows_sent"] == 20


def test_a_plan_whose_data_grew_is_refused_and_nothing_is_paid(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 20)
    project.write_model(chunk_rows=8)
    assert run_cli(project, "plan", "-o", str(project.dir / "plan.json")).returncode == 0
    wh.executemany("INSERT INTO {t:leads} VALUES (?, ?, ?, ?, ?, ?)", lead_rows(5, start=21))
    ran = run_cli(project, "run", "--plan", str(project.dir / "plan.json"))
    assert ran.returncode == 1, ran.stdout + ran.stderr
    text = " ".join((ran.stdout + ran.stderr).split())
    assert "the data grew since the plan: 25 row(s) to send now" in text and "20 approved" in text
    assert not project.emulator.jobs and billed(project.emulator) == 0


def test_a_plan_of_a_changed_definition_is_refused(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 10)
    project.write_model()
    assert run_cli(project, "plan", "-o", str(project.dir / "plan.json")).returncode == 0
    project.write_model(chunk_rows=5)
    ran = run_cli(project, "run", "--plan", str(project.dir / "plan.json"))
    assert ran.returncode == 1
    assert "definition changed since the plan was approved" in " ".join((ran.stdout + ran.stderr).split())
    assert not project.emulator.jobs


def test_fewer_rows_than_approved_run_and_say_so(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 20)
    project.write_model()
    assert run_cli(project, "plan", "-o", str(project.dir / "plan.json")).returncode == 0
    wh.execute("DELETE FROM {t:leads} WHERE lead_id > 12")
    ran = run_cli(project, "run", "--plan", str(project.dir / "plan.json"), "--log-format", "json")
    assert ran.returncode in (0, 3), ran.stderr
    summary = _doc(ran.stdout, "syncs")
    (sync,) = summary["syncs"]
    assert sync["rows_sent"] == 12
    assert any("8 row(s) fewer to send than the plan approved (20)" in w for w in sync["warnings"])


def test_a_file_that_is_not_a_plan_is_refused_before_anything_runs(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 5)
    project.write_model()
    (project.dir / "plan.json").write_text('{"format": 7}')
    ran = run_cli(project, "run", "--plan", str(project.dir / "plan.json"))
    assert ran.returncode != 0 and "not a plan file of format 1" in ran.stderr
    assert not project.emulator.jobs


def _first_job_of(project: E2EProject, before: set[str]) -> object:
    new = [j for k, j in project.emulator.jobs.items() if k not in before]
    return min(new, key=lambda j: j.created_at)


@pytest.mark.parametrize("changed_rows", [5, 0])
def test_the_preview_after_a_struct_change_is_the_first_file_the_run_sends(
    project: E2EProject, wh: Warehouse, changed_rows: int
) -> None:
    setup_leads(wh, 30)
    project.write_model()
    first = run_cli(project, "run", "--yes")
    assert first.returncode in (0, 3), first.stderr
    _add_field(project)
    if changed_rows:
        wh.execute(f"UPDATE {{t:leads}} SET last_name = last_name || 'x' WHERE lead_id <= {changed_rows}")
    out = run_cli(project, "plan", "--preview", "200", "--log-format", "json")
    assert out.returncode == 0, out.stderr
    folder = project.dir / "target" / "sixtyfour_preview" / "enrich_leads"
    rows = (folder / "rows.jsonl").read_bytes()
    config = json.loads((folder / "config.json").read_text())
    (plan,) = _doc(out.stdout, "plans")["plans"]
    first_step = next(st for st in plan["steps"] if st["rows"] and not st["expected"])
    assert len(rows.splitlines()) == first_step["rows"]
    if changed_rows:  # the own pass asks the changed rows the whole question; the rest get the new field only
        assert first_step["name"] == "own" and first_step["rows"] == changed_rows
        assert set(config["struct"]) >= {"email", "seniority"}
    else:
        assert first_step["kind"] == "fields" and set(config["struct"]) == {"seniority"}
    before = _jobs(project)
    ran = run_cli(project, "run", "--yes")
    assert ran.returncode in (0, 3), ran.stderr
    job = _first_job_of(project, before)
    assert job.file_sha256 == hashlib.sha256(rows).hexdigest()  # type: ignore[attr-defined]
    assert job.config == config  # type: ignore[attr-defined]


def test_plan_json_carries_every_step_in_order(project: E2EProject, wh: Warehouse, tmp_path: Path) -> None:
    setup_leads(wh, 12)
    project.write_model(extra="escalate: [medium]\n")
    out = run_cli(project, "plan", "--log-format", "json")
    assert out.returncode == 0, out.stderr
    (plan,) = _doc(out.stdout, "plans")["plans"]
    assert [st["name"] for st in plan["steps"]] == ["own", "escalate:medium"]
    assert plan["steps"][0]["rows"] == 12 and plan["steps"][1]["expected"] is True


def test_a_run_reads_each_step_selection_once(
    project: E2EProject, wh: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The selection of each step is one query per run: the own pass and the new-fields step stream their rows
    once, and nothing counts them again on the side."""
    import sixtyfour_sync
    from sixtyfour_sync.engine.rows.select import REASON_COLUMN
    from sixtyfour_sync.warehouse.adapter import Adapter

    setup_leads(wh, 30)
    project.write_model()
    assert sixtyfour_sync.run(project.dir, env=project.env).exit_code in (0, 3)
    _add_field(project)
    wh.execute("UPDATE {t:leads} SET last_name = last_name || 'x' WHERE lead_id <= 4")

    def subclasses(cls: type) -> list[type]:
        return [cls, *(c for sub in cls.__subclasses__() for c in subclasses(sub))]

    seen: list[str] = []
    for cls in set(subclasses(Adapter)):
        if "stream" not in vars(cls):
            continue

        def counting(self: Adapter, sql: str, *args: object, _original: object = vars(cls)["stream"], **kw: object):  # type: ignore[no-untyped-def]
            if REASON_COLUMN in sql:
                seen.append(sql)
            return _original(self, sql, *args, **kw)  # type: ignore[operator]

        monkeypatch.setattr(cls, "stream", counting)
    result = sixtyfour_sync.run(project.dir, env=project.env)
    assert result.exit_code in (0, 3)
    (sync,) = result.syncs
    assert sync.rows_sent == 30  # 4 changed rows asked everything, 26 asked the new field only
    assert len(seen) == 2 == len(set(seen)), [s[:80] for s in seen]  # the own pass, the new-fields step
