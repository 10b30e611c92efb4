"""The command line as a user and a scheduler see it: exit codes, JSON logs, summaries, and no secrets."""

from __future__ import annotations

import json
import logging
import subprocess

import duckdb
import pytest

from sixtyfour_sync import commands as api
from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.test_run_duckdb import _setup_duckdb


def _cli(project: E2EProject, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(project, *args, env=env)


def test_validate_ok_and_every_problem_listed(project: E2EProject) -> None:
    _setup_duckdb(project, 5)
    ok = _cli(project, "validate")
    assert ok.returncode == 0, ok.stderr
    assert "1 sync(s) valid" in ok.stdout
    text = (project.dir / "models" / "leads.yml").read_text()
    bad = text.replace("tier: low", "tier: ultra").replace("columns: [first_name", "colums: [first_name")
    (project.dir / "models" / "leads.yml").write_text(bad)
    out = _cli(project, "validate")
    assert out.returncode == 1
    assert "leads.yml:" in out.stderr
    assert "unknown key 'colums'" in out.stderr
    assert "tier 'ultra'" in out.stderr
    assert "Traceback" not in out.stderr


def test_validate_reports_source_problems(project: E2EProject) -> None:
    _setup_duckdb(project, 5)
    text = (project.dir / "models" / "leads.yml").read_text().replace("domain]", "domain, phone]")
    (project.dir / "models" / "leads.yml").write_text(text)
    out = _cli(project, "validate")
    assert out.returncode == 1
    assert "column 'phone' is not in the source" in out.stderr


def test_usage_error_exits_2(project: E2EProject) -> None:
    out = _cli(project, "run", "--max-cost-cents", "minus-one")
    assert out.returncode == 2


def test_json_logs_summary_status_and_no_secrets(project: E2EProject) -> None:
    db = _setup_duckdb(project, 60)
    out = _cli(project, "--log-format", "json", "run", "--yes")
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stderr.splitlines() if line.strip()]
    assert {"sync.plan", "sync.submitted", "sync.merged"} <= {e.get("event") for e in events}
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["event"] == "run.summary"
    assert summary["syncs"][0]["rows_sent"] == 60
    assert set(summary["syncs"][0]["fill_rate"]) == {"email", "title", "employee_count"}

    status = _cli(project, "--log-format", "json", "status")
    assert status.returncode == 0
    report = json.loads(status.stdout)
    assert report["runs"][0]["status"] == "success"
    assert report["jobs"][0]["state"] == "merged"

    # the key never appears: not in output, not in the ledger
    for text in (out.stdout, out.stderr, status.stdout):
        assert project.api_key not in text
        assert "signature=" not in text
    con = duckdb.connect(str(db), read_only=True)
    try:
        for table in ("_sixtyfour_sync_runs", "_sixtyfour_sync_jobs"):
            dump = json.dumps(con.execute(f"SELECT * FROM {table}").fetchall(), default=str)
            assert project.api_key not in dump
            assert "signature" not in dump
    finally:
        con.close()


def test_debug_logs_hold_no_key_or_signed_link(project: E2EProject, caplog: pytest.LogCaptureFixture) -> None:
    _setup_duckdb(project, 40)  # more than the inline preview: a real signed download
    # httpx's own level too: a command line run earlier in this process may have set it to WARNING
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="httpx"):
        result = api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)
    assert result.exit_code == 0
    text = "\n".join(r.getMessage() for r in caplog.records)
    # httpx logged the download request, with the signed link's path (it may carry a token) and query masked
    assert any("HTTP Request: GET" in r.getMessage() and "/***" in r.getMessage() for r in caplog.records)
    assert "/downloads/" not in text
    assert project.api_key not in text
    assert "signature=" not in text


def test_status_and_cancel_of_a_running_job(project: E2EProject) -> None:
    from sixtyfour_sync.emulator import Emulator, EmulatorSettings

    _setup_duckdb(project, 10)
    slow = Emulator(EmulatorSettings(api_keys=frozenset({project.api_key}), job_seconds=60))
    with slow.serve() as server:
        env = {"SIXTYFOUR_API_URL": server.url}
        out = _cli(project, "run", "--yes", "--max-wait", "1", env=env)
        assert out.returncode == 3, out.stdout + out.stderr
        assert "stopped waiting" in out.stdout
        status = _cli(project, "status", env=env)
        assert "submitted" in status.stdout
        cancel = _cli(project, "cancel", env=env)
        assert cancel.returncode == 0, cancel.stdout + cancel.stderr
        assert "cancelled" in cancel.stdout
        assert next(iter(slow.jobs.values())).status in ("cancelled", "canceled")
        again = _cli(project, "cancel", env=env)
        assert "No unfinished jobs" in again.stdout


def test_missing_key_is_a_clear_error(project: E2EProject) -> None:
    _setup_duckdb(project, 3)
    out = _cli(project, "run", "--yes", env={"SIXTYFOUR_API_KEY": ""})
    assert out.returncode == 1
    assert "SIXTYFOUR_API_KEY" in out.stderr
    assert "Traceback" not in out.stderr
