"""A run killed with SIGKILL at any state transition, then run again, converges on a clean run's target.

The emulator (in this process) records every submission: no file may be submitted twice except as an
Idempotency-Key replay.
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
from pathlib import Path

import duckdb
import pytest

from sixtyfour_sync.engine import api
from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.test_run_duckdb import _setup_duckdb

POINTS = ["written", "submitting", "submitted", "completed", "downloaded", "merging", "merged"]
COLUMNS = (
    "lead_id, email, title, employee_count, email_confidence, title_confidence, _sixtyfour_status, "
    "_sixtyfour_input_hash, _sixtyfour_spec_hash"
)


def _cli(project: E2EProject, *args: str, failpoint: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(project, *args, failpoint=failpoint)


def _table(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT {COLUMNS} FROM leads_enriched ORDER BY lead_id").fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("point", POINTS)
def test_killed_run_then_run_again_equals_a_clean_run(project: E2EProject, tmp_path: Path, point: str) -> None:
    db = _setup_duckdb(project, 250)
    project.write_model(chunk_rows=100)
    # a clean run of the same project on a copy, against the same emulator: the reference
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    shutil.copytree(project.dir / "models", clean_dir / "models")
    shutil.copy(project.dir / "profiles.yml", clean_dir / "profiles.yml")
    shutil.copy(db, clean_dir / "wh.duckdb")

    crashed = _cli(project, "run", "--yes", failpoint=point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    resumed = _cli(project, "run", "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after_crash = len(project.emulator.submissions)

    reference = api.run(clean_dir, api_key=project.api_key, api_url=project.url, env=project.env)
    assert reference.exit_code == 0
    assert _table(db) == _table(clean_dir / "wh.duckdb")

    accepted = [s for s in project.emulator.submissions[:after_crash] if s.status_code == 200]
    fresh = collections.Counter(s.file_sha256 for s in accepted if not s.replay)
    assert all(n == 1 for n in fresh.values()), fresh
    assert sum(fresh.values()) == 3  # three files, each paid for once


def test_two_runs_at_once_do_not_both_submit(project: E2EProject) -> None:
    from sixtyfour_sync.config.profiles import load_target
    from sixtyfour_sync.engine.lease import Lease
    from sixtyfour_sync.engine.ledger import Ledger
    from sixtyfour_sync.warehouse import connect

    _setup_duckdb(project, 10)
    target = load_target(project_dir=project.dir)
    with connect(target, project_dir=project.dir) as adapter:
        ledger = Ledger(adapter)
        ledger.ensure()
        with Lease(ledger, "enrich_leads", "another-run"):  # held by a live process (this one)
            result = api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)
        assert result.exit_code == 1
        assert "is being run by run another-run" in result.syncs[0].errors[0]
        assert not project.emulator.submissions
