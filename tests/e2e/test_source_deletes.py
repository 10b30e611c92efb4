"""``target.on_source_delete``: a target row whose key left the source is kept (default), flagged or deleted,
in one statement at the end of each run, never touching rows the sync did not write. DuckDB, PostgreSQL and
MariaDB, the emulator on a real socket."""

from __future__ import annotations

import pytest

from sixtyfour_sync import commands as api
from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.warehouses import Warehouse, setup_leads


def _run(project: E2EProject) -> api.RunResult:
    return api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)


def _with(project: E2EProject, target: str, source: str = "") -> None:
    project.write_model()
    model = project.dir / "models" / "leads.yml"
    text = model.read_text().replace("      table: leads_enriched\n", "      table: leads_enriched\n" + target)
    if source:
        text = text.replace("      key: lead_id\n", "      key: lead_id\n" + source)
    model.write_text(text)


def test_keep_is_the_default_and_leaves_the_row(project: E2EProject, wh3: Warehouse) -> None:
    setup_leads(wh3, 10)
    project.write_model()
    assert _run(project).exit_code == 0
    wh3.execute("DELETE FROM {t:leads} WHERE lead_id IN (2, 3)")
    again = _run(project)
    assert again.exit_code == 0 and again.syncs[0].rows_source_deleted == 0
    assert len(wh3.target()) == 10
    assert "_sixtyfour_source_deleted_at" not in wh3.columns("leads_enriched")


def test_flag_marks_rows_gone_and_clears_rows_back(project: E2EProject, wh3: Warehouse) -> None:
    setup_leads(wh3, 10)
    _with(project, "      on_source_delete: flag\n")
    assert _run(project).exit_code == 0
    # a row another tool put in the target: the sync never wrote it, so it is never flagged
    wh3.execute("INSERT INTO {t:leads_enriched} (lead_id) VALUES (99)")
    wh3.execute("DELETE FROM {t:leads} WHERE lead_id IN (2, 3)")
    second = _run(project)
    assert second.exit_code == 0, second.to_dict()
    assert second.syncs[0].rows_source_deleted == 2 and second.syncs[0].source_deletion == "flagged"
    flags = dict(wh3.query("SELECT lead_id, _sixtyfour_source_deleted_at FROM {t:leads_enriched}"))
    assert {k for k, v in flags.items() if v is not None} == {2, 3}
    assert len(flags) == 11  # nothing deleted
    third = _run(project)  # already flagged: not flagged again, the first sighting's time stays
    assert third.syncs[0].rows_source_deleted == 0
    assert dict(wh3.query("SELECT lead_id, _sixtyfour_source_deleted_at FROM {t:leads_enriched}")) == flags
    wh3.execute("INSERT INTO {t:leads} VALUES (2, 'Ada', 'Lovelace', 'Acme', 'acme.com', 'US')")
    fourth = _run(project)
    assert fourth.syncs[0].rows_source_restored == 1
    flags = dict(wh3.query("SELECT lead_id, _sixtyfour_source_deleted_at FROM {t:leads_enriched}"))
    assert {k for k, v in flags.items() if v is not None} == {3}


def test_delete_removes_the_rows_and_only_on_a_table_of_its_own(project: E2EProject, wh3: Warehouse) -> None:
    setup_leads(wh3, 10)
    _with(project, "      on_source_delete: delete\n")
    assert _run(project).exit_code == 0
    wh3.execute("DELETE FROM {t:leads} WHERE lead_id IN (2, 3)")
    second = _run(project)
    assert second.exit_code == 0 and second.syncs[0].rows_source_deleted == 2
    assert [r[0] for r in wh3.target()] == [1, 4, 5, 6, 7, 8, 9, 10]
    # another tool's column in the table: deleting whole rows would take its values too: refused, before paying
    wh3.execute("ALTER TABLE {t:leads_enriched} ADD COLUMN owner_note VARCHAR(20)")
    setup_leads(wh3, 12)
    paid = sum(j.row_count for j in project.emulator.jobs.values())
    refused = run_cli(project, "run", "--yes")
    assert refused.returncode == 1
    assert "owner_note" in " ".join((refused.stdout + refused.stderr).split())
    assert sum(j.row_count for j in project.emulator.jobs.values()) == paid


@pytest.mark.parametrize("scope", ["source", "selection"])
def test_a_filtered_source_needs_a_scope_and_honours_it(project: E2EProject, wh3: Warehouse, scope: str) -> None:
    setup_leads(wh3, 12)
    _with(project, "      on_source_delete: flag\n", "      where: \"country = 'US'\"\n")
    out = run_cli(project, "validate")
    assert out.returncode == 1 and "on_source_delete_scope" in " ".join(out.stderr.split())
    _with(project, f"      on_source_delete: flag\n      on_source_delete_scope: {scope}\n",
          "      where: \"country = 'US'\"\n")  # fmt: skip
    assert _run(project).exit_code == 0
    us = [r[0] for r in wh3.query("SELECT lead_id FROM {t:leads} WHERE country = 'US' ORDER BY lead_id")]
    moved = us[0]
    wh3.execute(f"UPDATE {{t:leads}} SET country = 'DE' WHERE lead_id = {moved}")  # leaves the filter
    second = _run(project)
    flagged = [
        r[0] for r in wh3.query("SELECT lead_id FROM {t:leads_enriched} WHERE _sixtyfour_source_deleted_at IS NOT NULL")
    ]
    assert flagged == ([moved] if scope == "selection" else [])
    assert second.syncs[0].rows_source_deleted == len(flagged)


def test_source_sql_and_where_may_end_with_comments_and_semicolons(project: E2EProject, wh3: Warehouse) -> None:
    setup_leads(wh3, 8)
    project.write_model()
    model = project.dir / "models" / "leads.yml"
    leads = wh3.table("leads") if wh3.kind == "postgres" else "leads"  # the others read the sync's schema
    text = model.read_text().replace(
        "      table: leads\n",
        f"      sql: |\n        select * from {leads} -- every lead\n        ;  -- the end\n"
        "      where: \"country = 'US' -- only the US\"\n",
        1,
    )
    model.write_text(text)
    result = _run(project)
    assert result.exit_code == 0, result.syncs[0].errors
    us = wh3.query("SELECT count(*) FROM {t:leads} WHERE country = 'US'")[0][0]
    assert result.syncs[0].rows_sent == us > 0


def test_a_target_holding_a_key_twice_never_sends_a_row_twice(project: E2EProject, wh3: Warehouse) -> None:
    """A table other tools write, without a primary key, holding a key twice: the row is sent (and paid) once."""
    setup_leads(wh3, 6)
    wh3.execute("CREATE TABLE {t:leads_enriched} (lead_id BIGINT, note VARCHAR(20))")
    wh3.execute("INSERT INTO {t:leads_enriched} VALUES (3, 'a'), (3, 'b'), (5, 'c'), (5, 'd'), (5, 'e')")
    project.write_model()
    plan = api.plan(project.dir, env=project.env)[0]
    assert plan.rows_by_reason == {"new": 6}
    result = _run(project)
    assert result.exit_code == 0, result.syncs[0].errors
    assert result.syncs[0].rows_sent == 6
    (job,) = project.emulator.jobs.values()
    assert job.row_count == 6
    assert any("holds key(s) more than once" in w for w in result.syncs[0].warnings)
