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
import threading
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
def job_seconds() -> float:
    return 0.5


@pytest.fixture
def emulator_settings(api_key: str, receiver_port: int, job_seconds: float) -> EmulatorSettings:
    return EmulatorSettings(
        api_keys=frozenset({api_key}),
        job_seconds=job_seconds,
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
    url: str,
    body: dict[str, Any],
    *,
    secret: str = SECRET,
    at: int | None = None,
    event: str | None = None,
    attempt: int = 1,
    client: httpx.Client | None = None,
) -> httpx.Response:
    raw = json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "Sixtyfour-Signature": sign_payload(secret, raw, at),
        "Sixtyfour-Event-Id": event or str(body.get("event_id") or uuid.uuid4()),
        "Sixtyfour-Event-Type": "bulk_job.completed",
        "Sixtyfour-Delivery-Attempt": str(attempt),
    }
    return (client or httpx).post(url, content=raw, headers=headers, timeout=15)


def _events(wh: Warehouse) -> list[tuple[Any, ...]]:
    if not wh.exists("_sixtyfour_sync_webhook_events"):
        return []
    return wh.query("SELECT event_id, task_id, outcome FROM {t:_sixtyfour_sync_webhook_events} ORDER BY event_id")


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
    setup_leads(wh, 20)
    _model(project)
    r = receiver()
    # a waiting run holds the lease for the whole time; the receiver hears of each job and must not merge it (on
    # DuckDB too: the run lets go of the file while it waits, so the receiver records the events meanwhile)
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
    # an event is recorded by the attempt that was acknowledged, never by one answered 503 (whose retry
    # would then have been a "duplicate" that finished nothing)
    first_ok: dict[str, int] = {}
    for d in sorted(emu.webhook_deliveries, key=lambda d: d.at):
        if d.status_code is not None and 200 <= d.status_code < 300:
            first_ok.setdefault(d.event_id, d.attempt)
    recorded = {str(e): int(a) for e, a in wh.query("SELECT event_id, attempt FROM {t:_sixtyfour_sync_webhook_events}")}
    assert recorded == first_ok


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


def _raw(port: int, request: bytes) -> bytes:
    """Send raw bytes and read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def test_headers_with_unicode_digits_are_answered_and_the_log_stays_json(
    project: E2EProject, wh: Warehouse, receiver: Callable[..., Receiver], receiver_port: int
) -> None:
    if wh.kind != "duckdb":
        pytest.skip("no warehouse is touched: once is enough")
    r = receiver("--log-format", "json")
    body = b'{"task_id": "t"}'
    for head in (
        b"Content-Length: \xb2\r\n",  # "²" in Latin-1, as a header arrives
        b"Content-Length: 1\xb9\r\n",
        b"Content-Length: %d\r\nSixtyfour-Signature: t=\xb2,v1=%s\r\n" % (len(body), b"a" * 64),
        b"Content-Length: %d\r\nSixtyfour-Signature: t=%s,v1=%s\r\n" % (len(body), b"9" * 400, b"a" * 64),
        b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(body),
    ):
        answer = _raw(receiver_port, b"POST /sixtyfour/deliveries HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n" + body)
        assert answer.split(b" ", 2)[1] in (b"400", b"401"), answer[:200]
    assert httpx.get(f"{r.url}/healthz").status_code == 200  # still serving
    log = r.stop()
    lines = [line for line in log.splitlines() if line.strip()]
    assert lines and all(json.loads(line) for line in lines), log
    assert "Traceback" not in log


def test_sixty_simultaneous_deliveries_are_all_answered_in_time_and_each_event_recorded_once(
    project: E2EProject, wh: Warehouse, receiver: Callable[..., Receiver]
) -> None:
    setup_leads(wh, 30)
    project.write_model(chunk_rows=10)  # no webhook_url: the deliveries below are the only ones
    out = run_cli(project, "run", "--yes", "--no-wait")
    assert out.returncode == 0, out.stderr
    tasks = [row[0] for row in wh.jobs("task_id")]
    assert len(tasks) == 3
    r = receiver()
    events = [str(uuid.uuid4()) for _ in range(50)]
    deliveries = [(events[i % 50], tasks[i % 3]) for i in range(60)]  # ten events delivered twice
    barrier = threading.Barrier(60)
    answers: list[Any] = [None] * 60

    def deliver(i: int) -> None:
        event, task = deliveries[i]
        with httpx.Client() as client:
            barrier.wait()
            began = time.monotonic()
            try:
                answer = _post(f"{r.url}/sixtyfour/deliveries", {"event_id": event, "task_id": task}, client=client)
                answers[i] = (answer.status_code, answer.json().get("status"), time.monotonic() - began)
            except httpx.HTTPError as exc:
                answers[i] = (f"{type(exc).__name__}: {exc}", None, time.monotonic() - began)

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(isinstance(a[0], int) and 200 <= a[0] < 300 for a in answers), answers
    assert max(a[2] for a in answers) < 10, answers  # Sixtyfour's rule: an answer within 10 s
    recorded = _events(wh)
    assert sorted(e[0] for e in recorded) == sorted(events)  # each event once
    assert sum(1 for a in answers if a[1] == "duplicate") == 10
    _eventually(lambda: _states(wh) == ["merged"] * 3, what="the three jobs merged by the receiver")
    assert len(wh.target()) == 30 and len(project.emulator.submissions) == 3
    assert "Traceback" not in r.stop()


def test_a_delivery_replayed_under_a_new_event_id_header_is_not_a_new_event(
    project: E2EProject, wh: Warehouse, receiver: Callable[..., Receiver]
) -> None:
    setup_leads(wh, 8)
    project.write_model()
    assert run_cli(project, "run", "--yes", "--no-wait").returncode == 0
    [task] = [row[0] for row in wh.jobs("task_id")]
    r = receiver()
    signed = {"event_id": str(uuid.uuid4()), "task_id": task}
    raw = json.dumps(signed).encode()
    headers = {"Content-Type": "application/json", "Sixtyfour-Signature": sign_payload(SECRET, raw)}
    first = httpx.post(f"{r.url}/x", content=raw, headers={**headers, "Sixtyfour-Event-Id": signed["event_id"]})
    assert first.status_code == 202
    _eventually(lambda: _states(wh) == ["merged"], what="the job merged")
    runs = wh.runs("command")
    # the captured delivery again, within its 300 s, under an id of the sender's choosing: not a new event
    replay = httpx.post(f"{r.url}/x", content=raw, headers={**headers, "Sixtyfour-Event-Id": str(uuid.uuid4())})
    assert replay.status_code == 400 and "does not match" in replay.json()["error"]
    # without the header it is the event it always was
    bare = httpx.post(f"{r.url}/x", content=raw, headers=headers)
    assert bare.status_code == 200 and bare.json()["status"] == "duplicate"
    assert [e[0] for e in _events(wh)] == [signed["event_id"]]
    assert wh.runs("command") == runs  # nothing finished twice
    assert len(project.emulator.submissions) == 1


@pytest.mark.parametrize("job_seconds", [3600.0])
def test_a_run_is_not_locked_out_while_the_receiver_waits_for_the_api(
    project: E2EProject, wh: Warehouse, receiver: Callable[..., Receiver], job_seconds: float
) -> None:
    setup_leads(wh, 8)
    project.write_model()  # no webhook_url: the delivery below is the only one
    assert run_cli(project, "run", "--yes", "--no-wait").returncode == 0
    [task] = [row[0] for row in wh.jobs("task_id")]
    r = receiver()  # --finish-wait 20
    # a delivery for a job the API has not ended yet: the receiver waits for the API, without the lease
    answer = _post(f"{r.url}/x", {"event_id": str(uuid.uuid4()), "task_id": task})
    assert answer.status_code == 202
    time.sleep(1.5)
    assert httpx.get(f"{r.url}/healthz").json()["queued"] == 1
    # a scheduled run of the same sync starts meanwhile; the job ends while it polls
    timer = threading.Timer(3.0, project.emulator.complete, args=[task])
    timer.start()
    try:
        out = run_cli(project, "run", "--yes")
    finally:
        timer.cancel()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "is being run by run" not in out.stdout + out.stderr
    assert _states(wh) == ["merged"]
    # the receiver then finds the job merged, under the lease, and merges nothing again
    _eventually(lambda: httpx.get(f"{r.url}/healthz").json()["queued"] == 0, what="the receiver idle")
    assert [row[0] for row in wh.runs("command, status") if row[0] == "run"] == ["run", "run"]
    assert all(status == "success" for _, status in wh.runs("command, status"))
    assert len(wh.target()) == 8 and len(project.emulator.submissions) == 1
    assert "Traceback" not in r.stop()


_HOLD = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(9); c.close()"


def test_a_delivery_answered_503_while_the_duckdb_file_is_held_leaves_nothing_and_its_retry_is_finished(
    project: E2EProject, wh: Warehouse, receiver: Callable[..., Receiver]
) -> None:
    if wh.kind != "duckdb":
        pytest.skip("DuckDB only: one process may open the file")
    setup_leads(wh, 8)
    project.write_model()
    assert run_cli(project, "run", "--yes", "--no-wait").returncode == 0
    [task] = [row[0] for row in wh.jobs("task_id")]
    r = receiver()
    # another process (a notebook) holds the file for 9 s: longer than the receiver's 8 s, shorter than the
    # profile's lock_wait_seconds its connection waits for the lock
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(wh.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        body = {"event_id": str(uuid.uuid4()), "task_id": task}
        began = time.monotonic()
        first = _post(f"{r.url}/x", body)
        assert first.status_code == 503 and time.monotonic() - began < 10
    finally:
        holder.wait(30)
    time.sleep(2)  # the file is free: the receiver's connection opens now, and must not record the event
    assert _events(wh) == []
    retry = _post(f"{r.url}/x", body, attempt=2)
    assert retry.status_code == 202 and retry.json()["status"] == "accepted", retry.text
    _eventually(lambda: _states(wh) == ["merged"], what="the job merged by the receiver")
    assert [(e[0], e[2]) for e in _events(wh)] == [(body["event_id"], "queued")]
    assert len(wh.target()) == 8
