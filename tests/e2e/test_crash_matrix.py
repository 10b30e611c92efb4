"""The crash-resume matrix, extended: deliberate re-asks and a lost work directory.

A run killed with SIGKILL at a state transition, then run again (after the local work directory was removed,
as on another machine), converges on the target of a clean run, and no question is paid twice except as a
replay. Deliberate re-asks (``--full-refresh``, ``max_age``, ``retry_failed_after``) are killed and resumed
too: their salted keys are stored before the first send, so a resume resends them under the same key. A source
where 30% of the rows share their inputs with another (``shared``: one question per inputs, its answer written to
every key) is killed and resumed the same way: no answer lost, no question asked twice, no key left without it.
A run where new keys ask questions the answer store holds (``reuse``: 52 keys with the inputs of leads enriched
by an earlier run, and 30 leads with inputs of their own) is killed at every transition, and while it merges the
stored answers (``reusing``, ``reused``): the stored answers are taken once, never paid, and only the new leads'
questions are asked.

CI runs a representative subset; ``SIXTYFOUR_SYNC_FULL_MATRIX=1`` runs every combination.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import time
from pathlib import Path

import duckdb
import pytest

from sixtyfour_sync import commands as api
from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.warehouses import TARGET_COLUMNS, make_duckdb, setup_leads

POINTS = ["written", "submitting", "answered", "submitted", "completed", "downloaded", "merging", "merged"]
MODES = ["new", "full_refresh", "max_age", "retry_failed_after", "shared", "reuse"]
#: Where a run that takes stored answers can be killed besides the job transitions.
REUSE_POINTS = ["reusing", "reused"]
FULL = os.environ.get("SIXTYFOUR_SYNC_FULL_MATRIX", "") not in ("", "0")
#: Seconds of max_age / retry_failed_after in the deliberate re-ask modes: longer than a loaded machine takes
#: between the killed run's merge and the resume's selection (7 s measured at a load average of 10 on 2 cores),
#: or the rows the killed run merged are stale again and rightly asked again.
AGE = 10


def _cases() -> list[tuple[str, str, bool]]:
    if FULL:
        cases = [(m, p, lose) for m in MODES for p in POINTS for lose in (False, True)]
        return cases + [("reuse", p, lose) for p in REUSE_POINTS for lose in (False, True)]
    cases = [("new", p, False) for p in ("written", "submitting", "answered", "submitted", "completed", "merging")]
    cases += [("new", p, True) for p in ("submitting", "downloaded")]
    cases += [(m, p, True) for m in MODES[1:] for p in ("submitting", "downloaded")]
    cases += [("full_refresh", "answered", False)]
    cases += [("shared", p, False) for p in ("answered", "merging", "merged")]
    cases += [("reuse", "reusing", False), ("reuse", "reused", True), ("reuse", "merging", False)]
    return cases


def _target(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT {TARGET_COLUMNS} FROM leads_enriched ORDER BY lead_id").fetchall()
    finally:
        con.close()


def _args(mode: str) -> list[str]:
    return ["run", "--yes", *(["--full-refresh"] if mode == "full_refresh" else [])]


@pytest.mark.parametrize(("mode", "point", "lose_dir"), _cases())
def test_killed_then_resumed_equals_a_clean_run(
    project: E2EProject, tmp_path: Path, mode: str, point: str, lose_dir: bool
) -> None:
    wh = make_duckdb(project)
    setup_leads(wh, 120)
    if mode == "shared":  # 52 more keys with the inputs of the first 120: 30% of the rows share a question
        wh.execute(
            "INSERT INTO {t:leads} SELECT 1000 + lead_id, first_name, last_name, company, domain, 'XX' "
            "FROM {t:leads} WHERE lead_id % 7 IN (1, 4, 6) AND lead_id <= 120"
        )
    project.write_model(chunk_rows=50)
    if mode not in ("new", "shared"):
        assert api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env).exit_code == 0
        if mode in ("max_age", "retry_failed_after"):
            # long enough that rows the killed run merged are not stale again when the resume selects (a resume
            # that first finishes the jobs in flight can take a few seconds on a loaded machine)
            project.write_model(chunk_rows=50, extra=f"  {mode}: {AGE}s\n")
            time.sleep(AGE + 0.1)
    if mode == "reuse":  # new keys: 52 asking what the leads asked (the store has it), 30 with inputs of their own
        wh.execute(
            "INSERT INTO {t:leads} SELECT 1000 + lead_id, first_name, last_name, company, domain, 'XX' "
            "FROM {t:leads} WHERE lead_id % 7 IN (1, 4, 6) AND lead_id <= 120"
        )
        wh.execute(
            "INSERT INTO {t:leads} SELECT 2000 + lead_id, first_name, last_name, company, 'new-' || domain, 'XX' "
            "FROM {t:leads} WHERE lead_id <= 30"
        )
    # the reference: a clean run of the same project, from the same state, against the same emulator
    clean = tmp_path / "clean"
    clean.mkdir()
    shutil.copytree(project.dir / "models", clean / "models")
    shutil.copy(project.dir / "profiles.yml", clean / "profiles.yml")
    shutil.copy(wh.path, clean / "wh.duckdb")  # type: ignore[arg-type]
    before = len(project.emulator.submissions)

    crashed = run_cli(project, *_args(mode), failpoint=point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    if lose_dir:
        shutil.rmtree(project.dir / ".sixtyfour", ignore_errors=True)
    resumed = run_cli(project, "run", "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    ours = project.emulator.submissions[before:]

    reference = api.run(
        clean, api_key=project.api_key, api_url=project.url, env=project.env, full_refresh=mode == "full_refresh"
    )
    assert reference.exit_code == 0
    assert _target(wh.path) == _target(clean / "wh.duckdb")  # type: ignore[arg-type]
    fresh = collections.Counter(s.file_sha256 for s in ours if s.status_code == 200 and not s.replay)
    assert fresh and all(n == 1 for n in fresh.values()), fresh
    assert {r[0] for r in wh.jobs("state")} == {"merged"}
    if mode == "shared":  # one question per inputs: 120 paid rows in all, every one of the 172 keys answered
        paid = collections.Counter(s.file_sha256 for s in ours if s.status_code == 200 and not s.replay)
        sent = {j.file_sha256: j.row_count for j in project.emulator.jobs.values()}
        assert sum(sent[h] for h in paid) == 120
        assert len(_target(wh.path)) == 172  # type: ignore[arg-type]
    if mode == "reuse":  # only the 30 new leads' questions paid; each stored answer taken once, by one run
        paid = collections.Counter(s.file_sha256 for s in ours if s.status_code == 200 and not s.replay)
        sent = {j.file_sha256: j.row_count for j in project.emulator.jobs.values()}
        assert sum(sent[h] for h in paid) == 30
        assert len(_target(wh.path)) == 202  # type: ignore[arg-type]
        assert _reused(wh.path) == 52  # type: ignore[arg-type]
    assert again_nothing_to_do(project)


def _reused(db: Path) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute("SELECT COALESCE(SUM(rows_reused), 0) FROM _sixtyfour_sync_reuses").fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


def again_nothing_to_do(project: E2EProject) -> bool:
    text = (project.dir / "models" / "leads.yml").read_text()
    # max_age / retry_failed_after would find work again after a second: plan as a plain `changed` sync
    (project.dir / "models" / "leads.yml").write_text(
        text.replace(f"      max_age: {AGE}s\n", "").replace(f"      retry_failed_after: {AGE}s\n", "")
    )
    result = api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env)
    return result.syncs[0].status == "nothing_to_do"
