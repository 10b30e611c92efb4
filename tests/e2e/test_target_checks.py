"""The target is checked before anything is paid for: a sync whose target cannot take its rows sends nothing and
says what to change (types, a view, a NOT NULL column without a default, a CHECK constraint, a trigger that
raises, a column too narrow), and a sync never writes a column it did not create unless told to
(``target.adopt_columns``); a source that is the target itself never has its inputs written. DuckDB and
PostgreSQL, the emulator on a real socket."""

from __future__ import annotations

import pytest

from sixtyfour_sync import commands as api
from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.warehouses import Warehouse, setup_leads


def _run(project: E2EProject) -> api.RunResult:
    return api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)


def _adopt(project: E2EProject, columns: str) -> None:
    model = project.dir / "models" / "leads.yml"
    model.write_text(
        model.read_text().replace(
            "      table: leads_enriched\n", f"      table: leads_enriched\n      adopt_columns: [{columns}]\n"
        )
    )


CASES = {
    "email_integer": ("CREATE TABLE {t:leads_enriched} (lead_id BIGINT PRIMARY KEY, email INTEGER)", "email", "type"),
    "status_integer": (
        "CREATE TABLE {t:leads_enriched} (lead_id BIGINT PRIMARY KEY, _sixtyfour_status INTEGER)",
        "",
        "_sixtyfour_status",
    ),
    "headcount_text": (
        "CREATE TABLE {t:leads_enriched} (lead_id BIGINT PRIMARY KEY, employee_count VARCHAR(20))",
        "employee_count",
        "the sync writes bigint",
    ),
    "not_null_without_default": (
        "CREATE TABLE {t:leads_enriched} (lead_id BIGINT PRIMARY KEY, owner_id BIGINT NOT NULL)",
        "",
        "refused",
    ),
    "check_constraint": (
        "CREATE TABLE {t:leads_enriched} (lead_id BIGINT PRIMARY KEY CHECK (lead_id > 1000))",
        "",
        "refused",
    ),
    "view": ("CREATE VIEW {t:leads_enriched} AS SELECT lead_id FROM {t:leads}", "", "leads_enriched"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_target_that_cannot_take_the_rows_is_refused_before_paying(
    project: E2EProject, wh: Warehouse, case: str
) -> None:
    ddl, adopt, says = CASES[case]
    setup_leads(wh, 5)
    project.write_model()
    if adopt:
        _adopt(project, adopt)
    wh.execute(ddl)
    out = run_cli(project, "run", "--yes")
    text = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 1, text
    assert says in text and "nothing" in text, text
    assert not project.emulator.submissions  # nothing sent, nothing paid
    assert not [r for r in wh.jobs()]


def test_postgres_varchar_and_trigger_are_refused_before_paying(project: E2EProject, wh: Warehouse) -> None:
    if wh.kind != "postgres":
        pytest.skip("PostgreSQL enforces VARCHAR lengths and runs triggers")
    setup_leads(wh, 5)
    project.write_model()
    _adopt(project, "title")
    wh.execute("CREATE TABLE {t:leads_enriched} (lead_id BIGINT PRIMARY KEY, title VARCHAR(5))")
    out = run_cli(project, "run", "--yes")
    assert out.returncode == 1 and "too long" in out.stdout + out.stderr
    wh.execute("DROP TABLE {t:leads_enriched}")
    wh.execute("CREATE TABLE {t:leads_enriched} (lead_id BIGINT PRIMARY KEY)")
    wh.execute(
        f"CREATE FUNCTION \"{wh.schema}\".no_writes() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'read only table'; "
        "END $$ LANGUAGE plpgsql"
    )
    wh.execute(
        "CREATE TRIGGER guard BEFORE INSERT OR UPDATE ON {t:leads_enriched} FOR EACH ROW EXECUTE FUNCTION "
        f'"{wh.schema}".no_writes()'
    )
    out = run_cli(project, "run", "--yes")
    assert out.returncode == 1 and "read only table" in out.stdout + out.stderr
    assert not project.emulator.submissions


def test_a_column_the_sync_did_not_create_is_written_only_when_adopted(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 5)
    project.write_model()
    wh.execute("CREATE TABLE {t:leads_enriched} (lead_id BIGINT PRIMARY KEY, title VARCHAR(100))")
    wh.execute("INSERT INTO {t:leads_enriched} VALUES (1, 'Founder (from the CRM)')")
    refused = _run(project)
    assert refused.exit_code == 1 and not project.emulator.submissions
    assert any("adopt_columns: [title]" in e for e in refused.syncs[0].errors)
    assert wh.query("SELECT title FROM {t:leads_enriched} WHERE lead_id = 1") == [("Founder (from the CRM)",)]
    _adopt(project, "title")
    written = _run(project)
    assert written.exit_code == 0, written.syncs[0].errors
    assert len(wh.target()) == 5
    # the sync's own columns are recorded, and a later run needs nothing adopted for them
    created = {r[0] for r in wh.query("SELECT column_name FROM {t:_sixtyfour_sync_columns}")}
    assert "email" in created and "_sixtyfour_status" in created and "title" not in created


def test_a_source_that_is_the_target_never_has_its_inputs_written(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 5)
    project.write_model()
    model = project.dir / "models" / "leads.yml"
    text = model.read_text().replace("      table: leads_enriched\n", "      table: leads\n")
    text = text.replace(
        "      columns: [first_name, last_name, company, domain]\n", "      columns: [first_name, last_name]\n"
    )
    text = text.replace("      title: The individual's job title\n", "      company: The company they work for\n")
    model.write_text(text.replace("      table: leads\n      adopt", "      table: leads\n      adopt"))
    _adopt(project, "company")  # adopted or not: an input... here company is not sent, but it is the source's
    first = _run(project)
    assert first.exit_code == 1 and not project.emulator.submissions
    assert any("company" in e for e in first.syncs[0].errors)


def test_an_older_versions_target_keeps_working(project: E2EProject, wh: Warehouse) -> None:
    """A target made and written before the ledger knew which columns a sync created: they are the sync's."""
    setup_leads(wh, 5)
    project.write_model()
    assert _run(project).exit_code == 0
    wh.execute("DROP TABLE {t:_sixtyfour_sync_columns}")  # as an older version left it
    setup_leads(wh, 8)
    again = _run(project)
    assert again.exit_code == 0, again.syncs[0].errors
    assert again.syncs[0].rows_sent == 3 and len(wh.target()) == 8


def test_validate_says_what_run_would_refuse(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 5)
    project.write_model()
    wh.execute("CREATE TABLE {t:leads_enriched} (lead_id BIGINT PRIMARY KEY, title VARCHAR(100), email INTEGER)")
    out = run_cli(project, "validate")
    text = " ".join(out.stderr.split()) + " ".join(out.stdout.split())
    assert out.returncode == 1
    assert "adopt_columns: [title]" in text and "'email' has type" in text
    assert not project.emulator.submissions
