"""Runs that are interrupted, syncs that share a table, and cancels that respect a running run.

Case 8: Ctrl-C/SIGTERM stop submitting, finish the move in progress, record the run as ``interrupted`` with its
counts, say which jobs are in flight, exit 130/143; a second Ctrl-C (a second or more after the first) exits at
once; the next run picks the jobs up and counts only its own work, listing the resumed jobs apart.
Case 10: ``cancel`` holds the sync's lease and moves jobs by compare-and-set: it never overwrites a running run.
Case 13: two syncs sharing a target table need their own bookkeeping; with one prefix they are refused.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from sixtyfour_sync import commands as api
from sixtyfour_sync.emulator import Emulator, EmulatorSettings
from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.warehouses import Warehouse, setup_leads


def _start(project: E2EProject, url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, **project.env, "SIXTYFOUR_API_URL": url}
    env.pop("SIXTYFOUR_SYNC_FAILPOINT", None)
    cmd = [sys.executable, "-m", "sixtyfour_sync", "--project-dir", str(project.dir), "run", "--yes", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(cond: Any, seconds: float = 30.0) -> None:
    deadline = time.time() + seconds
    while not cond():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_records_itself_and_the_next_run_finishes(
    project: E2EProject, wh: Warehouse, api_key: str, sig: int, code: int
) -> None:
    setup_leads(wh, 30)
    project.write_model(chunk_rows=10)
    slow = Emulator(EmulatorSettings(api_keys=frozenset({api_key}), job_seconds=600, failure_rate=0.0))
    with slow.serve() as server:
        proc = _start(project, server.url)
        _wait_for(lambda: any(s.status_code == 200 for s in slow.submissions))
        time.sleep(0.3)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == code, out + err
        assert "interrupted" in out
        assert "the next `sixtyfour-sync run` picks it up" in out
        (run,) = wh.runs("status, jobs, rows_sent, charged_cents")
        submitted = [r for r in wh.jobs("state, rows") if r[0] == "submitted"]
        assert run[0] == "interrupted"
        assert run[1] == len(wh.jobs()) and run[2] == sum(r[1] for r in submitted)
        assert all(r[0] in ("submitted", "submitting", "written") for r in wh.jobs())
        first_rows = sum(r[1] for r in wh.jobs("state, rows"))
        first_jobs = len(wh.jobs())
        for task in list(slow.jobs):
            slow.complete(task)
        slow.settings.__dict__["job_seconds"] = 0.1  # the rest finishes quickly
        again = api.run(project.dir, api_key=api_key, api_url=server.url, env=project.env)
    assert again.exit_code == 0, again.to_dict()
    s = again.syncs[0]
    # this run's own work is counted apart from the jobs it picked up
    assert s.resumed_jobs == first_jobs
    assert s.resumed.rows_merged == first_rows
    assert s.rows_sent == s.rows_merged == 30 - first_rows
    assert len(wh.target()) == 30
    assert [r[0] for r in wh.runs("status")] == ["interrupted", "success"]


def test_a_second_ctrl_c_exits_at_once(project: E2EProject, wh: Warehouse, api_key: str) -> None:
    setup_leads(wh, 10)
    slow = Emulator(EmulatorSettings(api_keys=frozenset({api_key}), job_seconds=600, failure_rate=0.0))
    slow.inject("GET", "/job-status", delay=60, times=100)  # every poll hangs: a first Ctrl-C would wait for it
    with slow.serve() as server:
        proc = _start(project, server.url)
        _wait_for(lambda: any(s.status_code == 200 for s in slow.submissions))
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)  # a repeat within a second of the first is the same request
        time.sleep(1.2)
        assert proc.poll() is None  # still finishing the call under way
        proc.send_signal(signal.SIGINT)
        started = time.time()
        proc.communicate(timeout=20)
        assert proc.returncode == 130
        assert time.time() - started < 5
    assert [r[0] for r in wh.jobs()] == ["submitted"]  # the ledger is safe: the next run picks it up


def test_cancel_does_not_touch_a_sync_another_run_holds(project: E2EProject, wh: Warehouse, api_key: str) -> None:
    setup_leads(wh, 10)
    slow = Emulator(EmulatorSettings(api_keys=frozenset({api_key}), job_seconds=600, failure_rate=0.0))
    with slow.serve() as server:
        proc = _start(project, server.url)
        try:
            _wait_for(lambda: any(s.status_code == 200 for s in slow.submissions))
            time.sleep(0.3)
            out = run_cli(project, "cancel", env={"SIXTYFOUR_API_URL": server.url})
            assert out.returncode == 1
            text = out.stdout + out.stderr
            # the lease says who holds the sync (a run lets go of a DuckDB file while it waits for its jobs)
            assert "is being run by run" in text, text
            assert [r[0] for r in wh.jobs()] == ["submitted"]
            assert all(j.status == "running" for j in slow.jobs.values())
        finally:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=60)
        out = run_cli(project, "cancel", env={"SIXTYFOUR_API_URL": server.url})
        assert out.returncode == 0, out.stdout + out.stderr
    assert [r[0] for r in wh.jobs()] == ["cancelled"]


SHARED = """\
syncs:
  - name: people
    endpoint: people
    source: {{table: leads, key: lead_id, columns: [first_name, last_name, company]}}
    struct: {{email: Email address, title: Job title}}
    target: {{table: accounts_enriched, prefix: "{p1}"}}
  - name: companies
    endpoint: company
    source: {{table: leads, key: lead_id, columns: [company, domain]}}
    struct: {{employees: {{description: Employee count, type: int}}, industry: Industry}}
    target: {{table: accounts_enriched, prefix: "{p2}"}}
"""


def test_two_syncs_sharing_a_table_keep_their_bookkeeping_apart(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 20)
    (project.dir / "models" / "leads.yml").write_text(SHARED.format(p1="", p2="co_"))
    first = api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)
    assert first.exit_code == 0, first.to_dict()
    columns = wh.columns("accounts_enriched")
    assert "_sixtyfour_status" in columns and "_sixtyfour_co_status" in columns
    assert "_sixtyfour_co_input_hash" in columns and "co_employees" in columns
    n = len(project.emulator.submissions)
    again = api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)
    assert [s.status for s in again.syncs] == ["nothing_to_do", "nothing_to_do"]
    assert len(project.emulator.submissions) == n


def test_two_syncs_with_one_prefix_on_one_table_are_refused(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 5)
    (project.dir / "models" / "leads.yml").write_text(SHARED.format(p1="x_", p2="x_"))
    out = run_cli(project, "validate")
    assert out.returncode == 1
    text = out.stdout + out.stderr
    assert "both write table 'accounts_enriched'" in text and "leads.yml:" in text and "prefix" in text
    assert not project.emulator.submissions
