"""One money story: every view of a run (summary, JSON summary, artifact, status, report, Dagster metadata) gives
the same numbers, derived from the ledger by one function, and the charges add up to what the API billed.

Each kind of run a team reconciles its bill with: a normal run, a replay across two ledgers (dev on DuckDB,
prod on PostgreSQL), a run that only asks new fields, an escalation run, a run killed and resumed, a run stopped
by its budget, and a run whose jobs a webhook delivery finished.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import duckdb
import pytest

from sixtyfour_sync.emulator import EmulatorSettings
from tests.e2e.conftest import E2EProject, lead_rows, run_cli
from tests.e2e.views import (
    assert_views_agree,
    billed,
    from_report,
    from_status,
    human_summary,
    run,
)
from tests.e2e.warehouses import Warehouse, setup_leads
from tests.services import require_service

pytestmark = pytest.mark.slow

FIELD = "      seniority: The individual's seniority level\n"


@pytest.fixture
def emulator_settings(api_key: str) -> EmulatorSettings:
    return EmulatorSettings(api_keys=frozenset({api_key}), job_seconds=0.1, failure_rate=0.1, seed=19)


def _add_field(project: E2EProject, extra: str = "", chunk_rows: int = 100_000) -> None:
    project.write_model(extra=extra, chunk_rows=chunk_rows)
    path = project.dir / "models" / "leads.yml"
    text = path.read_text()
    marker = "      employee_count:"
    assert marker in text
    path.write_text(text.replace(marker, FIELD + marker, 1))


def test_a_normal_run_tells_one_story(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 40)
    project.write_model(chunk_rows=15)
    result = run(project)
    assert result.exit_code in (0, 3)
    numbers = assert_views_agree(project, result)
    assert numbers["rows_sent"] == 40 and numbers["charged_cents"] > 0
    assert numbers["charged_cents"] == billed(project.emulator)
    text = human_summary(result)
    assert "fill rate of this run's" in text and "answer(s)" in text


@pytest.fixture
def dev_and_prod(project: E2EProject) -> Iterator[str]:
    """A profile whose ``dev`` target is DuckDB and ``prod`` PostgreSQL, each with the same leads."""
    require_service("postgres", "127.0.0.1", 5432)
    import psycopg

    schema = f"e2e_{uuid.uuid4().hex[:10]}"
    rows = lead_rows(25)
    con = duckdb.connect(str(project.dir / "wh.duckdb"))
    con.execute("CREATE TABLE leads (lead_id BIGINT, first_name VARCHAR, last_name VARCHAR, company VARCHAR, "
                "domain VARCHAR, country VARCHAR)")  # fmt: skip
    con.executemany("INSERT INTO leads VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.close()
    dsn = "host=127.0.0.1 port=5432 user=postgres dbname=test"
    with psycopg.connect(dsn, autocommit=True) as pg:
        pg.execute(f'CREATE SCHEMA "{schema}"')
        pg.execute(f'CREATE TABLE "{schema}".leads (lead_id BIGINT, first_name TEXT, last_name TEXT, company TEXT, '
                   "domain TEXT, country TEXT)")  # fmt: skip
        with pg.cursor() as cur:
            cur.executemany(f'INSERT INTO "{schema}".leads VALUES (%s, %s, %s, %s, %s, %s)', rows)
    (project.dir / "profiles.yml").write_text(
        "sixtyfour:\n  target: dev\n  outputs:\n"
        "    dev:\n      type: duckdb\n      path: wh.duckdb\n"
        "    prod:\n      type: postgres\n      host: 127.0.0.1\n      port: 5432\n      user: postgres\n"
        f"      dbname: test\n      schema: {schema}\n"
    )
    try:
        yield schema
    finally:
        with psycopg.connect(dsn, autocommit=True) as pg:
            pg.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_a_replay_across_two_ledgers_is_free_in_every_view(project: E2EProject, dev_and_prod: str) -> None:
    project.write_model(chunk_rows=10)
    dev = run(project, target="dev")
    dev_numbers = assert_views_agree(project, dev, target="dev")
    assert dev_numbers["charged_cents"] > 0
    paid = billed(project.emulator)
    assert paid == dev_numbers["charged_cents"]

    prod = run(project, target="prod")
    assert prod.exit_code in (0, 3), prod.to_dict()
    (sync,) = prod.syncs
    assert sync.replays == 3 and sync.replayed_rows == 25
    numbers = assert_views_agree(project, prod, target="prod")
    # the same question, the same Idempotency-Key: the API answered with dev's jobs and charged nothing new
    assert numbers["charged_cents"] == 0 and numbers["estimated_cost_cents"] == 0
    assert numbers["rows_sent"] == 25
    assert billed(project.emulator) == paid
    assert "answered by an earlier job" in human_summary(prod)
    assert from_status(project, prod.run_id, "prod")["charged_later_cents"] == 0


def test_a_run_that_only_asks_new_fields_is_not_nothing_to_do(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 30)
    project.write_model()
    first = run(project)
    assert first.exit_code in (0, 3)
    _add_field(project)
    second = run(project)
    (sync,) = second.syncs
    assert sync.status != "nothing_to_do" and sync.rows_sent > 0
    assert sync.new_fields and sync.fill_rate and "seniority" in sync.fill_rate
    numbers = assert_views_agree(project, second)
    assert numbers["rows_sent"] == sync.rows_sent
    assert sync.to_dict()["status"] == sync.status
    assert billed(project.emulator) == first.charged_cents + second.charged_cents


def test_an_escalation_run_tells_one_story_per_tier(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 60)
    wh.execute("UPDATE {t:leads} SET first_name = first_name || CAST(lead_id AS VARCHAR)")
    project.write_model(extra="escalate: [medium]\n")
    result = run(project)
    numbers = assert_views_agree(project, result)
    (sync,) = result.syncs
    assert list(sync.tiers) == ["low", "medium"]
    assert sum(t["rows_sent"] for t in sync.tiers.values()) == numbers["rows_sent"]
    assert sum(t["charged_cents"] for t in sync.tiers.values()) == pytest.approx(numbers["charged_cents"])
    # each tier's fill rate is over its own answers: never a share above 100%, never a "+"
    line = next(x for x in human_summary(result).splitlines() if "by tier" in x)
    assert "+" not in line
    for stats in sync.tiers.values():
        for rate in stats["fill_rate"].values():
            assert 0.0 <= rate <= 1.0
    assert numbers["charged_cents"] == billed(project.emulator)


def test_a_killed_run_and_the_run_that_resumes_it_agree_everywhere(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 30)
    project.write_model(chunk_rows=10)
    killed = run_cli(project, "run", "--yes", failpoint="submitted")
    assert killed.returncode != 0
    (killed_id,) = [r[0] for r in wh.runs("run_id")]
    # the killed run's numbers, before and after the next run finished its jobs: status and report agree
    assert from_status(project, killed_id) == from_report(project, killed_id)
    resumed = run(project)
    assert resumed.exit_code in (0, 3), resumed.to_dict()
    after = from_status(project, killed_id)
    assert after == from_report(project, killed_id)
    assert after["rows_sent"] >= 10  # the file it submitted is its own
    assert after["charged_cents"] == 0 and after["charged_later_cents"] > 0  # charged after it died
    numbers = assert_views_agree(project, resumed)
    assert resumed.resumed_charged_cents == pytest.approx(after["charged_later_cents"])
    assert numbers["charged_cents"] + after["charged_later_cents"] == billed(project.emulator)


def test_a_budget_stopped_run_tells_one_story(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 50)
    project.write_model(chunk_rows=10)
    result = run(project, max_cost_cents=35)
    (sync,) = result.syncs
    assert sync.status == "budget_reached"
    numbers = assert_views_agree(project, result)
    assert 0 < numbers["rows_sent"] < 50
    assert numbers["charged_cents"] <= 35 + 2  # one row's price at most
    assert numbers["charged_cents"] == billed(project.emulator)


def test_a_webhook_finished_run_books_its_charge_once(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 30)
    project.write_model(chunk_rows=10)
    left = run(project, no_wait=True)
    assert left.exit_code == 0
    numbers = assert_views_agree(project, left)
    assert numbers["rows_sent"] == 30 and numbers["charged_cents"] == 0
    tasks = [j.task_id for s in left.syncs for j in s.jobs if j.task_id]
    # what `webhooks serve` does when the deliveries arrive: finish just those tasks
    import time

    time.sleep(0.5)
    hook = run(project, only_tasks=tasks, command="webhook")
    assert hook.exit_code in (0, 3), hook.to_dict()
    later = from_status(project, left.run_id)
    assert later == from_report(project, left.run_id)
    assert later["charged_cents"] == 0 and later["charged_later_cents"] == billed(project.emulator)
    assert hook.resumed_charged_cents == pytest.approx(later["charged_later_cents"])


def test_a_run_with_nothing_to_do_is_in_the_ledger(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 5)
    project.write_model()
    assert run(project).exit_code in (0, 3)
    out = run_cli(project, "run", "--yes")
    assert out.returncode == 0, out.stderr
    assert "nothing_to_do" in out.stdout
    run_id = out.stdout.split("run ", 1)[1].split(":", 1)[0].strip()
    status = run_cli(project, "status", "--run", run_id)
    assert status.returncode == 0, status.stderr
    assert run_id in status.stdout


def test_a_refused_run_shows_no_run_id(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 5)
    project.write_model()
    out = run_cli(project, "run", "--yes", env={"SIXTYFOUR_API_KEY": "sk-not-a-key"})
    assert out.returncode != 0
    assert "not recorded" in out.stdout + out.stderr or "run " not in out.stdout
    assert not wh.exists("_sixtyfour_sync_runs") or wh.runs("run_id") == []
