"""The answer store: a question answered and merged once is not paid for again, across runs, syncs and targets
that share a ledger; against the emulator on DuckDB and PostgreSQL.

The emulator's answer depends only on the row it was sent, and it counts the rows it was sent (and charged): a key
that takes a stored answer holds the values the asking key got, and costs nothing.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from sixtyfour_sync import commands as api
from sixtyfour_sync.emulator import Emulator
from tests.e2e.conftest import MODEL, E2EProject, run_cli
from tests.e2e.views import assert_views_agree, human_summary
from tests.e2e.warehouses import Warehouse, setup_leads

ANSWER = "email, title, employee_count, email_confidence, _sixtyfour_status, _sixtyfour_task_id"

#: A second sync over another table (``contacts``), asking the same question of the same input columns.
CONTACTS = (
    MODEL.replace("enrich_leads", "enrich_contacts")
    .replace("table: leads_enriched", "table: contacts_enriched")
    .replace("table: leads", "table: contacts")
    .replace("key: lead_id", "key: contact_id")
)


def rows_at(emu: Emulator) -> int:
    """Rows the emulator was sent in jobs it accepted."""
    return sum(j.row_count for j in emu.jobs.values())


def price(emu: Emulator, tier: str = "low") -> int:
    return int(emu.settings.prices_cents[tier])


def write_contacts(project: E2EProject, *, extra: str = "") -> None:
    text = CONTACTS.format(when="changed", chunk_rows=100_000, extra=_indent(extra))
    (project.dir / "models" / "contacts.yml").write_text(text)


def _indent(extra: str) -> str:
    return "".join("    " + line + "\n" for line in extra.splitlines()) if extra else ""


def setup_contacts(wh: Warehouse, *, of: range, new: int = 0, start: int = 5001) -> dict[int, int]:
    """A ``contacts`` table: one contact per lead of ``of`` (the same inputs under another key), then ``new``
    contacts with inputs no lead has; contact -> lead (0 for the new ones)."""
    wh.execute("DROP TABLE IF EXISTS {t:contacts}")
    wh.execute(
        "CREATE TABLE {t:contacts} (contact_id BIGINT, first_name VARCHAR(100), last_name VARCHAR(100), "
        "company VARCHAR(100), domain VARCHAR(100), country VARCHAR(10))"
    )
    origin: dict[int, int] = {}
    for i, lead in enumerate(of):
        wh.execute(
            "INSERT INTO {t:contacts} SELECT ?, first_name, last_name, company, domain, 'NL' FROM {t:leads} "
            "WHERE lead_id = ?",
            [start + i, lead],
        )
        origin[start + i] = lead
    for j in range(new):
        key = start + len(of) + j
        wh.execute(
            "INSERT INTO {t:contacts} VALUES (?, 'New', 'Person', 'Fresh', ?, 'FR')", [key, f"fresh{key}.example"]
        )
        origin[key] = 0
    return origin


def answers(wh: Warehouse, table: str, key: str) -> dict[int, tuple[Any, ...]]:
    return {int(r[0]): tuple(r[1:]) for r in wh.query(f"SELECT {key}, {ANSWER} FROM {{t:{table}}} ORDER BY {key}")}


def only(project: E2EProject, name: str) -> list[str]:
    return ["--select", name]


def run(project: E2EProject, api_key: str, *select: str, **kw: Any) -> Any:
    return api.run(project.dir, api_key=api_key, api_url=project.url, env=project.env, select=list(select), **kw)


def test_a_second_sync_pays_only_for_new_questions_and_every_key_gets_the_stored_answer(
    project: E2EProject, wh3: Warehouse, api_key: str
) -> None:
    wh = wh3  # DuckDB, PostgreSQL and MariaDB (the newest answer per question is each dialect's window)
    emu = project.emulator
    setup_leads(wh, 60)
    project.write_model()
    first = run(project, api_key, "enrich_leads")
    assert first.exit_code in (0, 1), first.to_dict()
    assert rows_at(emu) == 60
    origin = setup_contacts(wh, of=range(1, 41), new=10)  # 40 contacts ask what leads asked, 10 are new
    write_contacts(project)
    plan = api.plan(project.dir, env=project.env, select=["enrich_contacts"])
    p = plan.syncs[0] if hasattr(plan, "syncs") else plan[0]
    leads_before = answers(wh, "leads_enriched", "lead_id")
    assert {v[4] for v in leads_before.values()} == {"enriched", "failed"}  # the emulator fails 10% of rows
    reusable = [c for c, lead in origin.items() if lead]  # a failed answer is an answer too: not asked again
    assert p.rows == 50 and p.rows_reused == 40 and p.questions == 10

    second = run(project, api_key, "enrich_contacts")
    assert second.exit_code in (0, 1), second.to_dict()
    s = second.syncs[0]
    assert rows_at(emu) == 60 + 50 - len(reusable)  # only the questions no stored answer answered
    assert s.rows_reused == len(reusable) and s.questions_reused == len(reusable)
    assert s.rows_sent == 50 - len(reusable)
    assert s.reused_saved_cents == pytest.approx(len(reusable) * price(emu))
    leads = answers(wh, "leads_enriched", "lead_id")
    contacts = answers(wh, "contacts_enriched", "contact_id")
    assert len(contacts) == 50
    for contact in reusable:
        assert contacts[contact] == leads[origin[contact]], contact  # the same values, status and task id
    failed = [c for c in reusable if contacts[c][4] == "failed"]
    assert failed, "the contacts of leads the API could not enrich took that answer: failed, not asked again"
    numbers = assert_views_agree(project, second)
    assert numbers["rows_reused"] == len(reusable)
    assert numbers["reused_saved_cents"] == pytest.approx(len(reusable) * price(emu))
    assert f"{len(reusable)} row(s) took a stored answer" in human_summary(second)
    status = run_cli(project, "status")
    assert status.returncode == 0 and "reused" in status.stdout, status.stdout
    # nothing changed: the next run asks and takes nothing
    again = run(project, api_key, "enrich_contacts")
    assert again.syncs[0].rows_reused == 0 and again.syncs[0].rows_sent == 0
    assert rows_at(emu) == 60 + 50 - len(reusable)


def test_reuse_false_and_full_refresh_pay_again(project: E2EProject, wh: Warehouse, api_key: str) -> None:
    emu = project.emulator
    setup_leads(wh, 30)
    project.write_model()
    run(project, api_key, "enrich_leads")
    setup_contacts(wh, of=range(1, 21))
    write_contacts(project, extra="reuse: false")
    off = run(project, api_key, "enrich_contacts")
    assert off.syncs[0].rows_reused == 0 and off.syncs[0].rows_sent == 20
    assert rows_at(emu) == 50
    # a sync with reuse off stores nothing either: the store holds the leads' answers only
    stored_by = wh.query(
        "SELECT DISTINCT j.sync_name FROM {t:_sixtyfour_sync_answers} a JOIN {t:_sixtyfour_sync_jobs} j "
        "ON j.job_id = a.job_id"
    )
    assert {r[0] for r in stored_by} == {"enrich_leads"}
    # --full-refresh asks every row again, stored answers or not
    write_contacts(project)
    wh.execute("DROP TABLE {t:contacts_enriched}")
    full = run(project, api_key, "enrich_contacts", full_refresh=True)
    assert full.syncs[0].rows_reused == 0 and full.syncs[0].rows_sent == 20
    assert rows_at(emu) == 70


def test_a_max_age_refresh_never_reuses_and_old_answers_are_neither_taken_nor_kept(
    project: E2EProject, wh: Warehouse, api_key: str
) -> None:
    emu = project.emulator
    setup_leads(wh, 20)
    project.write_model(extra="reuse:\n  max_age: 2d\n")
    run(project, api_key, "enrich_leads")
    assert rows_at(emu) == 20
    # the answers grow old in the store and in the target
    wh.execute("UPDATE {t:_sixtyfour_sync_jobs} SET merged_at = merged_at - INTERVAL '3 days'")
    setup_contacts(wh, of=range(1, 11))
    write_contacts(project, extra="reuse:\n  max_age: 2d\n")
    contacts = run(project, api_key, "enrich_contacts")
    assert contacts.syncs[0].rows_reused == 0 and rows_at(emu) == 30  # older than reuse.max_age: asked
    # the run pruned what no sync of the project would take (older than the longest reuse.max_age)
    stored = wh.query(
        "SELECT j.sync_name, COUNT(*) FROM {t:_sixtyfour_sync_answers} a JOIN {t:_sixtyfour_sync_jobs} j "
        "ON j.job_id = a.job_id GROUP BY j.sync_name"
    )
    assert dict(stored) == {"enrich_contacts": 10}
    # a max_age refresh asks for newer answers than those it has: never from the store
    project.write_model(extra="  max_age: 1d\n")  # refresh.max_age (the line goes under refresh:)
    wh.execute("UPDATE {t:leads_enriched} SET _sixtyfour_enriched_at = _sixtyfour_enriched_at - INTERVAL '2 days'")
    stale = run(project, api_key, "enrich_leads")
    assert stale.syncs[0].rows_by_reason.get("stale", 0) >= 10
    assert stale.syncs[0].rows_reused == 0


def test_the_store_holds_only_the_fields_asked(project: E2EProject, wh: Warehouse, api_key: str) -> None:
    setup_leads(wh, 10)
    project.write_model()
    run(project, api_key, "enrich_leads")
    rows = wh.query(
        "SELECT a.answer, j.task_id, j.tier, j.question FROM {t:_sixtyfour_sync_answers} a "
        "JOIN {t:_sixtyfour_sync_jobs} j ON j.job_id = a.job_id"
    )
    target = answers(wh, "leads_enriched", "lead_id")
    assert len(rows) == len(target)  # every answer, enriched or failed
    assert sorted("failed" if r[0] is None else "enriched" for r in rows) == sorted(v[4] for v in target.values())
    for answer, task_id, tier, question in rows:
        assert task_id and tier == "low" and question
        if answer is not None:  # the three fields, then their confidences: nothing else of the row
            assert len(json.loads(answer)) == 6


@pytest.mark.parametrize("point", ["reusing", "reused"])
def test_a_kill_while_taking_stored_answers_neither_loses_nor_pays(
    project: E2EProject, wh: Warehouse, api_key: str, point: str
) -> None:
    emu = project.emulator
    setup_leads(wh, 30)
    project.write_model()
    run(project, api_key, "enrich_leads")
    origin = setup_contacts(wh, of=range(1, 31))
    write_contacts(project)
    crashed = run_cli(project, "run", "--yes", "--select", "enrich_contacts", failpoint=point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    merged = wh.exists("contacts_enriched") and bool(answers(wh, "contacts_enriched", "contact_id"))
    recorded = wh.query("SELECT COALESCE(SUM(rows_reused), 0) FROM {t:_sixtyfour_sync_reuses}")[0][0]
    assert merged == (point == "reused") and bool(recorded) == merged  # the rows and their record, or neither
    again = run_cli(project, "run", "--yes", "--select", "enrich_contacts")
    assert again.returncode == 0, again.stdout + again.stderr
    assert rows_at(emu) == 30  # every contact took its lead's answer; none was asked or paid
    contacts, leads = answers(wh, "contacts_enriched", "contact_id"), answers(wh, "leads_enriched", "lead_id")
    for contact, lead in origin.items():
        assert contacts[contact] == leads[lead]
    total = wh.query("SELECT SUM(rows_reused) FROM {t:_sixtyfour_sync_reuses}")[0][0]
    assert int(total) == 30  # each taken once


def test_an_answer_not_merged_is_never_taken(project: E2EProject, wh: Warehouse, api_key: str) -> None:
    emu = project.emulator
    setup_leads(wh, 20)
    project.write_model()
    crashed = run_cli(project, "run", "--yes", "--select", "enrich_leads", failpoint="merging")
    assert crashed.returncode == -signal.SIGKILL
    # the answer was paid for and downloaded, not merged: the store does not have it
    assert not wh.exists("_sixtyfour_sync_answers") or not wh.query("SELECT * FROM {t:_sixtyfour_sync_answers}")
    setup_contacts(wh, of=range(1, 21))
    write_contacts(project)
    contacts = run(project, api_key, "enrich_contacts")
    assert contacts.syncs[0].rows_reused == 0
    # the contacts asked for themselves; the leads' job is merged by the leads' next run, and stored then
    leads = run(project, api_key, "enrich_leads")
    assert leads.syncs[0].resumed.jobs >= 1
    stored = wh.query(
        "SELECT COUNT(*) FROM {t:_sixtyfour_sync_answers} a JOIN {t:_sixtyfour_sync_jobs} j ON j.job_id = a.job_id "
        "WHERE j.sync_name = 'enrich_leads'"
    )
    assert stored[0][0] > 0
    assert rows_at(emu) == 40


def test_a_key_whose_target_row_was_deleted_takes_its_answer_back_without_a_call(
    project: E2EProject, wh: Warehouse, api_key: str
) -> None:
    emu = project.emulator
    setup_leads(wh, 20)
    project.write_model()
    run(project, api_key, "enrich_leads")
    before = answers(wh, "leads_enriched", "lead_id")
    wh.execute("DELETE FROM {t:leads_enriched} WHERE lead_id <= 10")
    again = run(project, api_key, "enrich_leads")
    assert again.syncs[0].rows_reused == 10 and again.syncs[0].rows_sent == 0
    assert answers(wh, "leads_enriched", "lead_id") == before  # values, statuses and task ids as they were
    assert rows_at(emu) == 20


def test_a_failed_answer_taken_is_retried_after_retry_failed_after_and_takes_only_an_enriched_one(
    project: E2EProject, wh: Warehouse, api_key: str
) -> None:
    emu = project.emulator
    setup_leads(wh, 30)
    project.write_model()
    run(project, api_key, "enrich_leads")
    failed = [k for k, v in answers(wh, "leads_enriched", "lead_id").items() if v[4] == "failed"]
    assert failed
    setup_contacts(wh, of=failed)
    write_contacts(project, extra="  retry_failed_after: 1h")  # under refresh:
    first = run(project, api_key, "enrich_contacts")
    assert first.syncs[0].rows_reused == len(failed) and rows_at(emu) == 30  # failed: taken, not asked
    # an hour on: the failed answers are due a retry, and the store has no enriched answer for them
    wh.execute("UPDATE {t:contacts_enriched} SET _sixtyfour_enriched_at = _sixtyfour_enriched_at - INTERVAL '2 hours'")
    retry = run(project, api_key, "enrich_contacts")
    assert retry.syncs[0].rows_by_reason.get("failed_retry") == len(failed)
    assert retry.syncs[0].rows_reused == 0 and rows_at(emu) == 30 + len(failed)  # no enriched answer stored: asked
