"""Kill -9 at random instants, with the API failing at random too: money and data still add up.

Each seed runs the CLI again and again against an emulator with faults on (5xx, 429 bursts, dropped
connections, truncated downloads, failed and cancelled jobs), killing it with SIGKILL at a random instant, until
a run finishes cleanly. Then:

- no question was paid twice: each file content was charged by at most one job (replays are free, and a job
  the API failed or cancelled is not charged);
- every charged job ended merged in the ledger;
- the target equals that of a clean run on the same source, and a further run has nothing to do.

CI runs two seeds; ``SIXTYFOUR_SYNC_CHAOS_SEEDS=N`` runs N.
"""

from __future__ import annotations

import collections
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from sixtyfour_sync import commands as api
from sixtyfour_sync.emulator import Emulator, EmulatorSettings, FaultSettings
from tests.e2e.conftest import E2EProject
from tests.e2e.warehouses import TARGET_COLUMNS, make_duckdb, setup_leads

SEEDS = list(range(int(os.environ.get("SIXTYFOUR_SYNC_CHAOS_SEEDS", "2"))))


def _target(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT {TARGET_COLUMNS} FROM leads_enriched ORDER BY lead_id").fetchall()
    finally:
        con.close()


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_random_kills_with_faults_keep_money_and_data_right(project: E2EProject, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    wh = make_duckdb(project)
    setup_leads(wh, 160)
    project.write_model(chunk_rows=40)
    clean = tmp_path / "clean"
    clean.mkdir()
    shutil.copytree(project.dir / "models", clean / "models")
    shutil.copy(project.dir / "profiles.yml", clean / "profiles.yml")
    shutil.copy(wh.path, clean / "wh.duckdb")  # type: ignore[arg-type]

    faults = FaultSettings(
        error_5xx_rate=0.08,
        burst_429_rate=0.04,
        drop_connection_rate=0.05,
        truncate_download_rate=0.05,
        job_failure_rate=0.05,
        job_cancel_rate=0.03,
        seed=seed,
    )
    settings = dict(api_keys=frozenset({project.api_key}), job_seconds=0.2, failure_rate=0.1, seed=7)
    chaotic = Emulator(EmulatorSettings(**settings, faults=faults))  # type: ignore[arg-type]
    with chaotic.serve() as server:
        env = {**os.environ, **project.env, "SIXTYFOUR_API_URL": server.url}
        env.pop("SIXTYFOUR_SYNC_FAILPOINT", None)
        cmd = [sys.executable, "-m", "sixtyfour_sync", "--project-dir", str(project.dir), "run", "--yes"]
        finished, attempts, kills = False, 0, 0
        while not finished:
            attempts += 1
            assert attempts <= 30, f"no clean finish after {attempts} runs ({kills} killed)"
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            kill_after = rng.uniform(0.2, 3.0) if attempts <= 8 else None  # then let it finish
            try:
                out, err = proc.communicate(timeout=kill_after if kill_after is not None else 240)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                kills += 1
                continue
            assert proc.returncode in (0, 3), out + err  # partial (a job failed or was cancelled) is fine
            finished = proc.returncode == 0
        time.sleep(0.1)
        # One more run: nothing left to do (no job unfinished, no row unasked).
        again = api.run(project.dir, api_key=project.api_key, api_url=server.url, env=project.env)
        assert again.syncs[0].status == "nothing_to_do", again.to_dict()

        charged = [j for j in chaotic.jobs.values() if (j.charge_cents or 0) > 0]
        per_content = collections.Counter(j.file_sha256 for j in charged)
        assert all(n == 1 for n in per_content.values()), per_content
        merged = {r[0] for r in wh.jobs("task_id, state") if r[1] == "merged"}
        assert {j.task_id for j in charged} <= merged
        # what the ledger says was charged is what the API charged
        assert wh.charged_in_ledger() == pytest.approx(sum(j.charge_cents or 0 for j in charged))

    calm = Emulator(EmulatorSettings(**settings))  # type: ignore[arg-type]
    with calm.serve() as server:
        reference = api.run(clean, api_key=project.api_key, api_url=server.url, env=project.env)
    assert reference.exit_code == 0
    assert _target(wh.path) == _target(clean / "wh.duckdb")  # type: ignore[arg-type]
