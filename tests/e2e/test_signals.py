"""A signal to the whole process group stops a run exactly as one Ctrl-C does.

A terminal's Ctrl-C and a CI runner's cancel signal the process group; ``timeout`` signals its child and then the
group again; some runners signal twice. However many copies arrive, the run records the calls under way, closes
itself as ``interrupted``, prints its summary and exits 130 (SIGINT) or 143 (SIGTERM); the next run finishes the
jobs in flight without paying for them again.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from sixtyfour_sync import commands as api
from sixtyfour_sync.emulator import Emulator, EmulatorSettings
from tests.e2e.conftest import E2EProject
from tests.e2e.warehouses import Warehouse, setup_leads


def _start(project: E2EProject, url: str, *, via_timeout: bool) -> subprocess.Popen[str]:
    """The run in a process group (a session) of its own, as a runner starts a job's command."""
    env = {**os.environ, **project.env, "SIXTYFOUR_API_URL": url}
    env.pop("SIXTYFOUR_SYNC_FAILPOINT", None)
    cmd = [sys.executable, "-m", "sixtyfour_sync", "--project-dir", str(project.dir), "run", "--yes"]
    if via_timeout:
        cmd = ["timeout", "-s", "INT", "600", *cmd]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


CASES = [
    pytest.param(signal.SIGINT, (0.0,), False, id="group-sigint"),
    pytest.param(signal.SIGINT, (0.0, 0.05, 0.05), False, id="group-sigint-3x-50ms"),
    # timeout passes the signal it gets to its child, then to the whole group: the run gets it twice
    pytest.param(
        signal.SIGINT,
        (0.0,),
        True,
        id="timeout-forwards-sigint",
        marks=pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils timeout"),
    ),
    pytest.param(signal.SIGTERM, (0.0, 0.05), False, id="group-sigterm-2x"),
]


@pytest.mark.parametrize(("sig", "gaps", "via_timeout"), CASES)
def test_a_signalled_process_group_stops_like_one_ctrl_c(
    project: E2EProject, wh: Warehouse, api_key: str, sig: int, gaps: tuple[float, ...], via_timeout: bool
) -> None:
    setup_leads(wh, 30)
    project.write_model(chunk_rows=10)
    slow = Emulator(EmulatorSettings(api_keys=frozenset({api_key}), job_seconds=600, failure_rate=0.0))
    with slow.serve() as server:
        proc = _start(project, server.url, via_timeout=via_timeout)
        deadline = time.time() + 60
        while not any(s.status_code == 200 for s in slow.submissions):  # a job is submitted (and paid for)
            assert proc.poll() is None and time.time() < deadline, "the run ended before submitting"
            time.sleep(0.02)
        for gap in gaps:
            time.sleep(gap)
            if via_timeout:
                os.kill(proc.pid, sig)  # timeout itself, as a runner stopping the job would
            else:
                os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + sig, out + err
        # the summary, and the run closed as one Ctrl-C closes it
        assert "interrupted in" in out and "the next `sixtyfour-sync run` picks it up" in out, out + err
        name = "Ctrl-C" if sig == signal.SIGINT else "SIGTERM"
        assert f"stopped by {name}: nothing more was submitted" in out
        assert "quitting at once" not in err
        assert [r[0] for r in wh.runs("status")] == ["interrupted"]
        jobs = wh.jobs("state, idempotency_key, rows")
        assert jobs and any(state == "submitted" for state, _, _ in jobs), jobs
        first_jobs = len(jobs)
        for task in list(slow.jobs):
            slow.complete(task)
        slow.settings.__dict__["job_seconds"] = 0.1  # the rest finishes quickly
        again = api.run(project.dir, api_key=api_key, api_url=server.url, env=project.env)
        assert again.exit_code == 0, again.to_dict()
        assert again.syncs[0].resumed_jobs == first_jobs
        # every question asked once: one job per file at the API, each paid once, as the ledger says
        keys = [j.idempotency_key for j in slow.jobs.values()]
        assert len(keys) == len(set(keys)) == 3
        assert wh.charged_in_ledger() == pytest.approx(sum(j.charge_cents or 0 for j in slow.jobs.values()))
    assert len(wh.target()) == 30
    assert [r[0] for r in wh.runs("status")] == ["interrupted", "success"]
