"""One question is paid once: rows of a sync that share their inputs are sent as one row, and every key gets
the answer, against the emulator on DuckDB and PostgreSQL.

The emulator's answer depends only on the row it was sent, so the row that asked and the rows that share its
question must hold the same answer; the emulator counts the rows it was sent (and charged).
"""

from __future__ import annotations

import json
import shutil
import signal
from typing import Any

import pytest

from sixtyfour_sync import commands as api
from sixtyfour_sync.emulator import Emulator
from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.views import assert_views_agree, human_summary
from tests.e2e.warehouses import Warehouse, setup_leads

#: The answer columns and bookkeeping a key shares with the row that asked for it.
ANSWER = "email, title, employee_count, email_confidence, _sixtyfour_status, _sixtyfour_input_hash, _sixtyfour_task_id"


def add_copies(wh: Warehouse, copies: int, *, of: int, start: int) -> dict[int, int]:
    """``copies`` new leads (keys from ``start``) with the inputs of leads 1..``of``, cycling: key -> original."""
    origin = {start + i: 1 + (i * 7) % of for i in range(copies)}
    for new, old in origin.items():
        wh.execute(
            "INSERT INTO {t:leads} SELECT ?, first_name, last_name, company, domain, 'XX' FROM {t:leads} "
            "WHERE lead_id = ?",
            [new, old],
        )
    return origin


def rows_at(emu: Emulator) -> int:
    """Rows the emulator was sent in jobs it accepted (replays are not new jobs)."""
    return sum(j.row_count for j in emu.jobs.values())


def price(emu: Emulator, tier: str = "low") -> int:
    return int(emu.settings.prices_cents[tier])


def by_key(wh: Warehouse) -> dict[int, tuple[Any, ...]]:
    return {int(r[0]): tuple(r[1:]) for r in wh.target(f"lead_id, {ANSWER}")}


def test_rows_sharing_their_inputs_are_asked_once_and_every_key_gets_the_answer(
    project: E2EProject, wh3: Warehouse, api_key: str
) -> None:
    wh = wh3  # DuckDB, PostgreSQL and MariaDB (the window that groups the rows is each dialect's)
    setup_leads(wh, 70)
    origin = add_copies(wh, 30, of=70, start=1001)  # 30% of the 100 rows share their inputs with another
    project.write_model(chunk_rows=16)  # the rows of one question stay in one file across file boundaries
    result = api.run(project.dir, api_key=api_key, api_url=project.url, env=project.env)
    assert result.exit_code in (0, 1), result.to_dict()
    s = result.syncs[0]
    emu = project.emulator
    assert rows_at(emu) == 70  # paid for the distinct questions only
    assert s.rows_sent == 70 and s.rows_deduplicated == 30
    assert s.rows_merged == 100 and s.rows_enriched + s.rows_failed + s.rows_not_returned == 100
    assert s.charged_cents == pytest.approx(70 * price(emu))
    target = by_key(wh)
    assert len(target) == 100
    for new, old in origin.items():
        assert target[new] == target[old], (new, old)  # the same answer, the same bookkeeping
    assert {r[4] for r in target.values()} <= {"enriched", "failed"}
    # each file holds every key of its questions: no question was asked in two files
    jobs = wh.jobs('"rows", rows_merged, rows_deduplicated')
    assert sum(r[0] for r in jobs) == 70 and sum(r[1] for r in jobs) == 100 and sum(r[2] for r in jobs) == 30
    assert all(r[0] <= 16 for r in jobs)
    # every view shows the same numbers (summary, JSON, artifact, Dagster metadata, status, report)
    numbers = assert_views_agree(project, result)
    assert numbers["rows_deduplicated"] == 30 and numbers["saved_cents"] == pytest.approx(30 * price(emu))
    assert "30 row(s) answered by a shared question" in human_summary(result)
    status = run_cli(project, "status")
    assert status.returncode == 0 and "shared" in status.stdout, status.stdout
    again = run_cli(project, "run", "--yes", "--log-format", "json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert rows_at(emu) == 70  # nothing new: nothing asked


def test_failed_answers_are_shared_too(project: E2EProject, wh: Warehouse, api_key: str) -> None:
    setup_leads(wh, 40)
    origin = add_copies(wh, 20, of=40, start=501)
    project.emulator.settings.__dict__["failure_rate"] = 0.5
    result = api.run(project.dir, api_key=api_key, api_url=project.url, env=project.env)
    s = result.syncs[0]
    assert s.rows_sent == 40 and s.rows_deduplicated == 20
    target = by_key(wh)
    failed = [k for k, v in target.items() if v[4] == "failed"]
    assert failed, "some rows fail at a 50% failure rate"
    for new, old in origin.items():
        assert target[new][4] == target[old][4]
    assert s.rows_failed == len(failed)


def test_a_lost_file_is_rebuilt_with_the_same_bytes_and_still_answers_every_key(
    project: E2EProject, wh: Warehouse
) -> None:
    setup_leads(wh, 30)
    origin = add_copies(wh, 15, of=30, start=301)
    project.write_model(chunk_rows=8)
    crashed = run_cli(project, "run", "--yes", failpoint="submitting")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    stranded = {r[1] for r in wh.jobs("state, content_hash") if r[0] in ("written", "submitting")}
    assert stranded
    shutil.rmtree(project.dir / ".sixtyfour")  # the resume runs on a machine without the files
    again = run_cli(project, "run", "--yes", "--log-format", "json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "the rows changed since it was written" not in again.stdout + again.stderr
    # the rebuilt files hold the bytes the crashed run wrote (one row per question, the same first keys)
    assert stranded <= {j.file_sha256 for j in project.emulator.jobs.values()}
    target = by_key(wh)
    assert len(target) == 45
    for new, old in origin.items():
        assert target[new] == target[old]
    emu = project.emulator
    assert rows_at(emu) == 30  # the rebuilt file was the same: its Idempotency-Key replayed or sent it once
    summary = next(json.loads(line) for line in again.stdout.splitlines() if '"run.summary"' in line)
    assert summary["syncs"][0]["resumed"]["rows_merged"] + summary["syncs"][0]["rows_merged"] == 45


def test_a_budget_cut_keeps_each_question_with_its_keys(project: E2EProject, wh: Warehouse, api_key: str) -> None:
    setup_leads(wh, 20)
    add_copies(wh, 20, of=20, start=201)  # every question has two keys
    project.write_model(chunk_rows=100, extra="budget:\n  max_cost_cents: 30\n  price_cents_per_row: 2\n")
    result = api.run(project.dir, api_key=api_key, api_url=project.url, env=project.env)
    s = result.syncs[0]
    assert s.status == "budget_reached"
    sent = rows_at(project.emulator)
    assert 0 < sent < 20 and s.rows_sent == sent
    assert s.rows_merged == 2 * sent and s.rows_deduplicated == sent  # each question answered both its keys
    enriched_keys = {k for k, v in by_key(wh).items() if v[4] is not None}
    assert len(enriched_keys) == 2 * sent


def test_a_big_source_read_in_buckets_still_asks_each_question_once(
    project: E2EProject, wh: Warehouse, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sixtyfour_sync.engine.runner_submit as runner_submit

    setup_leads(wh, 60)
    origin = add_copies(wh, 40, of=60, start=2001)
    wh.execute("INSERT INTO {t:leads} VALUES (77, 'Dup', 'Key', 'Acme', 'dup.example', 'US')")
    wh.execute("INSERT INTO {t:leads} VALUES (77, 'Other', 'Inputs', 'Acme', 'dup2.example', 'US')")
    monkeypatch.setattr(runner_submit, "bucket_count", lambda adapter, rows: 4 if wh.kind == "duckdb" else 1)
    result = api.run(project.dir, api_key=api_key, api_url=project.url, env=project.env)
    s = result.syncs[0]
    assert rows_at(project.emulator) == 60 and s.rows_sent == 60 and s.rows_deduplicated == 40
    target = by_key(wh)
    assert 77 not in target  # a key held twice (with other inputs: in two buckets) is never sent
    for new, old in origin.items():
        assert target[new] == target[old]


def test_plan_counts_rows_and_questions_and_prices_the_questions(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 50)
    add_copies(wh, 25, of=50, start=701)
    project.write_model(extra="budget:\n  price_cents_per_row: 2\n")
    out = run_cli(project, "plan", "--log-format", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    (sync,) = _plan_json(out.stdout)["plans"]
    assert sync["rows"] == 75 and sync["questions"] == 50 and sync["rows_deduplicated"] == 25
    assert sync["price_cents_per_row"] == 2 and sync["estimated_cost_cents"] == pytest.approx(100)
    text = run_cli(project, "plan", "--preview", "60")
    assert "75 row(s) ask 50 question(s)" in " ".join(text.stdout.split()), text.stdout
    # the preview is the file a run sends: one row per question
    rows = (project.dir / "target" / "sixtyfour_preview" / "enrich_leads" / "rows.jsonl").read_text().splitlines()
    assert len(rows) == 50 and max(json.loads(r)["lead_id"] for r in rows) == 50


def _plan_json(stdout: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith("{") and '"plans"' in line:
            data: dict[str, Any] = json.loads(line)
            return data
    raise AssertionError(stdout)


def test_refresh_limit_counts_the_rows_sent_each_with_every_key_it_answers(
    project: E2EProject, wh: Warehouse, api_key: str
) -> None:
    setup_leads(wh, 20)
    add_copies(wh, 20, of=20, start=201)  # every question has two keys, far apart in key order
    project.write_model(extra="  limit: 5\n")
    result = api.run(project.dir, api_key=api_key, api_url=project.url, env=project.env)
    s = result.syncs[0]
    assert rows_at(project.emulator) == 5 and s.rows_sent == 5
    assert s.rows_merged == 10 and s.rows_deduplicated == 5  # no question left half asked for the next run
