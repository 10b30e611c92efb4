"""Webhook-driven completion, end to end: `run --no-wait`, then `webhooks serve` finishes the jobs.

The emulator signs its deliveries and posts them (as a public HTTPS endpoint in front of the receiver
would) to a `webhooks serve` child process on loopback. DuckDB and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sixtyfour_sync.api.webhooks import sign_payload
from sixtyfour_sync.emulator import Emulator, EmulatorSettings
from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.warehouses import Warehouse, setup_leads

SECRET = "sk_whsec_" + "5e" * 32
HOOK = "https://hooks.example.com/sixtyfour/deliveries"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def receiver_port() -> int:
    return _free_port()


@pytest.fixture
def emulator_settings(api_key: str, receiver_port: int) -> EmulatorSettings:
    return EmulatorSettings(
        api_keys=frozenset({api_key}),
        job_seconds=0.5,
        failure_rate=0.1,
        seed=11,
        webhook_secret=SECRET,
        webhook_forward_to=f"http://127.0.0.1:{receiver_port}",
        webhook_retry_seconds=0.3,
        webhook_max_attempts=8,
    )


class Receiver:
    """A `sixtyfour-sync webhooks serve` child process."""

    def __init__(self, project: E2EProject, port: int, *extra: str) -> None:
        env = {**os.environ, **project.env, "SIXTYFOUR_WEBHOOK_SECRET": SECRET}
        self.url = f"http://127.0.0.1:{port}"
        self.log = project.dir / f"receiver-{port}.log"
        self._out = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sixtyfour_sync", "--project-dir", str(project.dir), "webhooks", "serve",
             "--port", str(port), "--finish-wait", "20", *extra],
            env=env, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
            if self.proc.poll() is not None:
                break
        raise AssertionError(f"the receiver did not start:\n{self.output()}")

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text()

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._out.close()
        return self.log.read_text()


@pytest.fixture
def receiver(project: E2EProject, receiver_port: int) -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(*extra: str) -> Receiver:
        r = Receiver(project, receiver_port, *extra)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


def _eventually(check: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as exc:  # a DuckDB file another process is writing cannot be opened for a moment
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: last {last!r}")


def _model(project: E2EProject, chunk_rows: int = 10) -> None:
    project.write_model(chunk_rows=chunk_rows, extra=f"webhook_url: {HOOK}\n")


def _states(wh: Warehouse) -> list[str]:
    return [r[0] for r in wh.jobs("state")]


def _post(
    url: str, body: dict[str, Any], *, secret: str = SECRET, at: int | None = None, event: str | None = None
) -> httpx.Response:
    raw = json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "Sixtyfour-Signature": sign_payload(secret, raw, at),
        "Sixtyfour-Event-Id": event or str(uuid.uuid4()),
        "Sixtyfour-Event-Type": "bulk_job.completed",
        "Sixtyfour-Delivery-Attempt": "1",
    }
    return httpx.post(url, content=raw, headers=headers, timeout=15)


def test_no_wait_submits_and_exits_then_the_webhooks_finish_every_job(
    project: E2EProject, wh: Warehouse, receiver: Callable[..., Receiver]
) -> None:
    setup_leads(wh, 30)
    _model(project)
    emu: Emulator = project.emulator
    out = run_cli(project, "run", "--yes", "--no-wait")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 job(s) in flight; they finish via webhook" in out.stdout + out.stderr
    assert _states(wh) == ["submitted"] * 3 and wh.target() == []
    assert len(emu.submissions) == 3

    r = receiver()
    _eventually(lambda: _states(wh) == ["merged"] * 3, what="the three jobs merged by the receiver")
    rows = wh.target("lead_id, _sixtyfour_status")
    assert [row[0] for row in rows] == list(range(1, 31))
    assert {row[1] for row in rows} <= {"enriched", "failed"}
    events = wh.query("SELECT event_id, task_id, outcome FROM {t:_sixtyfour_sync_webhook_events}")
    tasks = {row[0] for row in wh.jobs("task_id")}
    assert {e[1] for e in events} == tasks and {e[2] for e in events} == {"queued"}
    assert len({e[0] for e in events}) == len(events)
    assert [row[1] for row in wh.runs("command, status")].count("success") >= 1
    assert "webhook" in [row[0] for row in wh.runs("command, status")]
    # every event was answered 2xx in the end; the key and the secret never reach the logs
    ok = {d.event_id for d in emu.webhook_deliveries if d.status_code is not None and 200 <= d.status_code < 300}
    assert ok == {d.event_id for d in emu.webhook_deliveries}
    log = r.stop()
    assert SECRET not in log and project.api_key not in log

    again = run_cli(project, "run", "--yes")
    assert again.returncode == 0, again.stderr
    assert len(emu.submissions) == 3  # nothing asked twice


def test_duplicates_retries_bad_signatures_old_timestamps_and_unknown_tasks(
    project: E2EProject, wh: Warehouse, receiver: Callable[..., Receiver]
) -> None:
    setup_leads(wh, 8)
    _model(project)
    out = run_cli(project, "run", "--yes", "--no-wait")
    assert out.returncode == 0, out.stderr
    [task] = [row[0] for row in wh.jobs("task_id")]
    r = receiver()
    _eventually(lambda: _states(wh) == ["merged"], what="the job merged")
    before = wh.query("SELECT count(*) FROM {t:_sixtyfour_sync_webhook_events}")[0][0]
    merged_at = wh.jobs("merged_at")

    # the same event again (a retry Sixtyfour sends when an answer was lost): acknowledged, nothing changes
    [first] = [d.event_id for d in project.emulator.webhook_deliveries][:1]
    dup = _post(f"{r.url}/sixtyfour/deliveries", {"task_id": task}, event=first)
    assert dup.status_code == 200 and dup.json()["status"] == "duplicate"
    # a new event for a job already merged (out of order): acknowledged, recorded, nothing finished again
    late = _post(f"{r.url}/sixtyfour/deliveries", {"task_id": task, "status": "failed"})
    assert late.status_code == 200 and late.json()["status"] == "merged"
    # a bad signature and a timestamp 10 minutes old: 401, no trace in the ledger
    forged = _post(f"{r.url}/x", {"task_id": task}, secret="sk_whsec_" + "00" * 32)
    assert forged.status_code == 401
    stale = _post(f"{r.url}/x", {"task_id": task}, at=int(time.time()) - 600)
    assert stale.status_code == 401 and "tolerance" in stale.json()["error"]
    unsigned = httpx.post(f"{r.url}/x", content=b"{}", headers={"Sixtyfour-Event-Id": "e1"})
    assert unsigned.status_code == 401
    # a task nobody here submitted: acknowledged and ignored
    unknown = _post(f"{r.url}/x", {"task_id": "task-that-is-not-ours"})
    assert unknown.status_code == 200 and unknown.json()["status"] == "ignored"
    garbage = _post(f"{r.url}/x", {"hello": 1})
    assert garbage.status_code == 200
    after = wh.query("SELECT count(*) FROM {t:_sixtyfour_sync_webhook_events}")[0][0]
    assert after == before + 3  # the late event, the unknown task, the body without a task
    assert wh.jobs("merged_at") == merged_at and _states(wh) == ["merged"]
    assert len(project.emulator.submissions) == 1
    log = r.stop()
    assert SECRET not in log and project.api_key not in log


def test_a_delivery_while_a_run_holds_the_lease_is_left_to_that_run(
    project: E2EProject, wh: Warehouse, receiver: Callable[..., Receiver]
) -> None:
    if wh.kind == "duckdb":
        pytest.skip("a DuckDB file is held by one process: the receiver answers 503 until the run ends (next test)")
    setup_leads(wh, 20)
    _model(project)
    r = receiver()
    # a waiting run holds the lease for the whole time; the receiver hears of each job and must not merge it
    out = run_cli(project, "run", "--yes")
    assert out.returncode == 0, out.stderr
    assert _states(wh) == ["merged"] * 2
    emu = project.emulator
    _eventually(lambda: len({d.event_id for d in emu.webhook_deliveries}) == 2, what="both events delivered")
    _eventually(lambda: httpx.get(f"{r.url}/healthz").json()["queued"] == 0, what="the receiver idle")
    # the receiver stood back (the lease was held) or found the jobs merged: it never ran a finish of its own
    assert wh.runs("command, status") == [("run", "success")]
    assert len(wh.query("SELECT event_id FROM {t:_sixtyfour_sync_webhook_events}")) == 2
    assert len(project.emulator.submissions) == 2
    merged = wh.query("SELECT count(*) FROM {t:leads_enriched}")[0][0]
    assert merged == 20


def test_deliveries_during_a_duckdb_run_are_retried_until_the_file_is_free(
    project: E2EProject, wh: Warehouse, receiver: Callable[..., Receiver]
) -> None:
    if wh.kind != "duckdb":
        pytest.skip("DuckDB only")
    setup_leads(wh, 20)
    _model(project)
    receiver()
    out = run_cli(project, "run", "--yes")
    assert out.returncode == 0, out.stderr
    _eventually(lambda: _states(wh) == ["merged"] * 2, what="both jobs merged")  # the receiver may hold the file
    emu = project.emulator
    _eventually(
        lambda: (
            {d.event_id for d in emu.webhook_deliveries if d.status_code and d.status_code < 300}
            == {d.event_id for d in emu.webhook_deliveries}
        ),
        what="every event acknowledged",
    )
    assert len(emu.submissions) == 2


def test_serve_refuses_to_start_without_a_secret(project: E2EProject, wh: Warehouse) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SIXTYFOUR_WEBHOOK_SECRET"}
    out = subprocess.run(
        [sys.executable, "-m", "sixtyfour_sync", "--project-dir", str(project.dir), "webhooks", "serve", "--port", "0"],
        env={**env, **project.env}, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert out.returncode == 1
    assert "SIXTYFOUR_WEBHOOK_SECRET" in out.stderr


def test_a_private_webhook_url_is_refused_before_anything_is_written(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 3)
    project.write_model(extra="webhook_url: https://127.0.0.1:8443/hook\n")
    out = run_cli(project, "run", "--yes")
    assert out.returncode == 1
    assert "is not a public address" in " ".join((out.stderr + out.stdout).split())
    assert not wh.exists("leads_enriched") and not wh.exists("_sixtyfour_sync_jobs")
    assert Path(project.dir / "models" / "leads.yml").is_file()


def test_without_a_receiver_the_next_run_finishes_what_no_wait_left(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 12)
    project.write_model(chunk_rows=5)
    assert run_cli(project, "plan", "--no-wait").returncode == 0  # plan takes what run takes
    first = run_cli(project, "run", "--yes", "--no-wait", "--log-format", "json")
    assert first.returncode == 0, first.stderr
    summary = [json.loads(line) for line in first.stdout.splitlines() if '"run.summary"' in line][-1]
    assert summary["status"] == "success" and summary["syncs"][0]["jobs_left_to_finish"] == 3
    assert _states(wh) == ["submitted"] * 3
    second = run_cli(project, "run", "--yes")
    assert second.returncode == 0, second.stderr
    assert _states(wh) == ["merged"] * 3 and len(wh.target()) == 12
    assert len(project.emulator.submissions) == 3
