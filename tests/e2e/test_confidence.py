"""Confidence gating and the overwrite rule end to end: min_confidence per sync and per field; an answer to the
question asked now always replaces an earlier question's (cleared when below the threshold); a more confident
value stays only between answers to the same question, with ``overwrite: keep_more_confident``. DuckDB and
PostgreSQL, the emulator on a real socket."""

from __future__ import annotations

import json

from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.warehouses import Warehouse, setup_leads

COLUMNS = "lead_id, email, email_confidence, title, title_confidence, _sixtyfour_status, _sixtyfour_field_status"


def _summary(out: str) -> dict:
    return [json.loads(line) for line in out.splitlines() if '"run.summary"' in line][-1]


def test_answers_below_min_confidence_are_not_written_and_say_so(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 60)
    # every field gated at 70, title at 90
    project.write_model(extra="min_confidence: 70\n")
    model = project.dir / "models" / "leads.yml"
    model.write_text(
        model.read_text().replace(
            "title: The individual's job title",
            "title: {description: The individual's job title, min_confidence: 90}",
        )
    )
    out = run_cli(project, "run", "--yes", "--log-format", "json")
    assert out.returncode == 0, out.stderr
    rows = wh.target(COLUMNS)
    assert len(rows) == 60
    gated = {"email": 0, "title": 0}
    for lead_id, email, email_conf, title, title_conf, status, field_status in rows:
        held = json.loads(field_status) if field_status else {}
        if status != "enriched":
            assert email is None and held == {}
            continue
        for name, value, conf, threshold in (("email", email, email_conf, 70), ("title", title, title_conf, 90)):
            if conf is not None and conf >= threshold:
                assert value is not None and name not in held, (lead_id, name, conf)
            else:
                # the answer is not written; its confidence is kept; the status says why
                assert value is None and held.get(name) == "low_confidence", (lead_id, name, conf, value)
                gated[name] += 1
    assert gated["email"] > 0 and gated["title"] > gated["email"]  # the emulator's confidences spread over 0-100
    summary = _summary(out.stdout)["syncs"][0]
    counted = summary["gated_below_confidence"]
    assert {k: counted[k] for k in gated} == gated and counted["employee_count"] > 0
    doc = json.loads((project.dir / "target" / "sixtyfour_run_results.json").read_text())
    assert doc["results"][0]["gated_below_confidence"] == counted
    text = run_cli(project, "run", "--yes", "--full-refresh")
    assert "below min_confidence, not written: email" in " ".join(text.stdout.split())


def test_min_confidence_needs_field_confidence(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 3)
    project.write_model(extra="min_confidence: 70\n")
    model = project.dir / "models" / "leads.yml"
    model.write_text(model.read_text().replace("field_confidence: true", "field_confidence: false"))
    out = run_cli(project, "validate")
    assert out.returncode == 1
    assert "min_confidence needs field_confidence: true" in " ".join(out.stderr.split())
    assert "leads.yml" in out.stderr


def _vet(wh: Warehouse, leads: str) -> None:
    """A person vetted these values: confidence 100."""
    wh.execute(
        f"UPDATE {{t:leads_enriched}} SET email = 'vetted@x.io', email_confidence = 100 WHERE lead_id IN ({leads})"
    )


def test_a_changed_row_gets_the_new_answer_whatever_the_old_confidence(project: E2EProject, wh: Warehouse) -> None:
    """An answer to an earlier question never outranks the answer to the question asked now: a lead whose last
    name changed gets the new email, though the stored one was more confident, under either policy."""
    setup_leads(wh, 20)
    for policy in ("always", "keep_more_confident"):
        project.write_model(extra=f"overwrite: {policy}\n")
        assert run_cli(project, "run", "--yes").returncode == 0
        _vet(wh, "1, 2, 3, 4, 5")
        wh.execute("UPDATE {t:leads} SET last_name = last_name || 'x' WHERE lead_id IN (1, 2, 3, 4, 5)")
        again = run_cli(project, "run", "--yes")
        assert again.returncode == 0, again.stderr
        rows = {r[0]: r[1:] for r in wh.target("lead_id, email, email_confidence, _sixtyfour_status")}
        for lead in range(1, 6):
            email, conf, status = rows[lead]
            if status == "enriched":
                assert email != "vetted@x.io" and conf < 100, (policy, lead, rows[lead])
            else:  # the API could not enrich it: the old answer is not left standing as if it were current
                assert email is None and conf is None, (policy, lead, rows[lead])


def test_a_changed_row_answered_below_min_confidence_is_cleared_not_left_standing(
    project: E2EProject, wh: Warehouse
) -> None:
    setup_leads(wh, 40)
    project.write_model(extra="min_confidence: 60\n")
    assert run_cli(project, "run", "--yes").returncode == 0
    before = {r[0]: r[1:] for r in wh.target("lead_id, email, email_confidence")}
    wh.execute("UPDATE {t:leads} SET last_name = last_name || 'x' WHERE lead_id <= 20")
    assert run_cli(project, "run", "--yes").returncode == 0
    rows = {r[0]: r[1:] for r in wh.target(COLUMNS)}
    cleared = 0
    for lead in range(1, 21):
        email, conf, _title, _title_conf, status, field_status = rows[lead]
        held = json.loads(field_status) if field_status else {}
        if status == "enriched" and conf is not None and conf < 60:
            # the new question's answer is below the threshold: the old company's email is cleared, never kept
            assert email is None and held.get("email") == "low_confidence", (lead, rows[lead], before[lead])
            cleared += 1
        elif status == "enriched":
            assert email is not None and "email" not in held
    assert cleared > 0  # the emulator's confidences spread over 0-100
    for lead in range(21, 41):  # unchanged rows were not asked, and kept their values
        assert rows[lead][0] == before[lead][0]


def test_a_same_question_refresh_keeps_a_more_confident_value_only_when_asked_to(
    project: E2EProject, wh: Warehouse
) -> None:
    setup_leads(wh, 20)
    project.write_model()
    assert run_cli(project, "run", "--yes").returncode == 0
    _vet(wh, ", ".join(str(i) for i in range(1, 11)))
    # default (always): the refresh's answers replace the vetted values
    again = run_cli(project, "run", "--yes", "--full-refresh")
    assert again.returncode == 0, again.stderr
    rows = {r[0]: r[1:] for r in wh.target("lead_id, email, email_confidence, _sixtyfour_status")}
    assert all(rows[k][0] != "vetted@x.io" for k in range(1, 11) if rows[k][2] == "enriched")
    assert "_sixtyfour_field_status" not in wh.columns("leads_enriched")  # no gating, no status column

    _vet(wh, ", ".join(str(i) for i in range(1, 11)))
    project.write_model(extra="overwrite: keep_more_confident\n")
    kept_run = run_cli(project, "run", "--yes", "--full-refresh")
    assert kept_run.returncode == 0, kept_run.stderr
    rows = {r[0]: r[1:] for r in wh.target("lead_id, email, email_confidence, _sixtyfour_status")}
    kept = [k for k in range(1, 11) if rows[k][0] == "vetted@x.io"]
    assert len(kept) == 10 and all(rows[k][1] == 100 for k in kept)  # same question: the vetted values stay
    assert all(rows[k][0] != "vetted@x.io" for k in range(11, 21))
