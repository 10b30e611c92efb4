"""The pipeline on PostgreSQL (127.0.0.1:5432) against the emulator: runs, resume after a crash, leases."""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from sixtyfour_sync import commands as api
from sixtyfour_sync.emulator import Emulator, EmulatorSettings
from tests.e2e.conftest import E2EProject, lead_rows, run_cli
from tests.services import require_service

psycopg = pytest.importorskip("psycopg")
DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


@pytest.fixture
def pg_schema(project: E2EProject) -> Iterator[str]:
    require_service("postgres", "127.0.0.1", 5432)
    schema = f"e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(DSN, autocommit=True) as con:
        con.execute(f'CREATE SCHEMA "{schema}"')
        con.execute(
            f'CREATE TABLE "{schema}".leads (lead_id bigint, first_name text, last_name text, company text, '
            "domain text, country text)"
        )
        with con.cursor() as cur:
            cur.executemany(f'INSERT INTO "{schema}".leads VALUES (%s, %s, %s, %s, %s, %s)', lead_rows(250))
    (project.dir / "profiles.yml").write_text(
        "sixtyfour:\n  target: pg\n  outputs:\n    pg:\n      type: postgres\n      host: 127.0.0.1\n"
        f"      port: 5432\n      user: postgres\n      password: \"{{{{ env_var('PGPASSWORD', '') }}}}\"\n"
        f"      dbname: test\n      schema: {schema}\n"
    )
    try:
        yield schema
    finally:
        with psycopg.connect(DSN, autocommit=True) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _rows(schema: str) -> list[tuple]:
    with psycopg.connect(DSN) as con:
        return con.execute(
            f'SELECT lead_id, email, title, employee_count, _sixtyfour_status, _sixtyfour_input_hash FROM "{schema}".'
            "leads_enriched ORDER BY lead_id"
        ).fetchall()


def _run(project: E2EProject, **kw: object) -> api.RunResult:
    return api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env, **kw)  # type: ignore[arg-type]


def test_postgres_first_run_second_run_and_changes(project: E2EProject, pg_schema: str) -> None:
    project.write_model(chunk_rows=100)
    first = _run(project)
    assert first.exit_code == 0, first.to_dict()
    rows = _rows(pg_schema)
    assert len(rows) == 250
    assert {r[4] for r in rows} == {"enriched", "failed"}
    assert all("@" in r[1] for r in rows if r[4] == "enriched")
    n = len(project.emulator.submissions)
    assert _run(project).syncs[0].status == "nothing_to_do"
    assert len(project.emulator.submissions) == n
    with psycopg.connect(DSN, autocommit=True) as con:
        con.execute(f"UPDATE \"{pg_schema}\".leads SET company = 'Hooli' WHERE lead_id <= 5")
    third = _run(project)
    assert third.syncs[0].rows_by_reason == {"changed": 5}
    plan = api.plan(project.dir, env=project.env)[0]
    assert plan.rows == 0
    assert plan.price_cents_per_row == 2  # learned from the estimates in the ledger


def test_postgres_crash_after_submission_then_resume(project: E2EProject, pg_schema: str) -> None:
    project.write_model(chunk_rows=100)
    crashed = run_cli(project, "run", "--yes", failpoint="submitted")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    resumed = run_cli(project, "run", "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert re.search(r"picked up [1-3] job\(s\) left by earlier runs", resumed.stdout)
    fresh = collections.Counter(
        s.file_sha256 for s in project.emulator.submissions if s.status_code == 200 and not s.replay
    )
    assert sorted(fresh.values()) == [1, 1, 1]
    assert len(_rows(pg_schema)) == 250


@pytest.fixture
def emulator_settings(api_key: str) -> EmulatorSettings:
    return EmulatorSettings(api_keys=frozenset({api_key}), job_seconds=0.3, failure_rate=0.1, seed=7)


def test_a_second_concurrent_run_waits_its_turn(project: E2EProject, pg_schema: str) -> None:
    slow = Emulator(EmulatorSettings(api_keys=frozenset({project.api_key}), job_seconds=4.0))
    with slow.serve() as server:
        env = {**os.environ, **project.env, "SIXTYFOUR_API_URL": server.url}
        cmd = [sys.executable, "-m", "sixtyfour_sync", "--project-dir", str(project.dir), "run", "--yes"]
        first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.time() + 30
            while not slow.submissions and time.time() < deadline:
                time.sleep(0.1)
            assert slow.submissions, "the first run never submitted"
            second = api.run(project.dir, api_key=project.api_key, api_url=server.url, env=env)
            assert second.exit_code == 1
            assert "is being run by run" in second.syncs[0].errors[0]
            out, err = first.communicate(timeout=60)
            assert first.returncode == 0, out + err
        finally:
            if first.poll() is None:
                first.kill()
    fresh = [s for s in slow.submissions if s.status_code == 200 and not s.replay]
    assert len(fresh) == 1  # 250 rows in one file, submitted once: the second run sent nothing
