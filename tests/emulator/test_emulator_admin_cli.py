"""The /_emulator/ admin endpoints and the ``sixtyfour-sync emulator`` command in a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO

import httpx
import pytest

from .helpers import LEADS_CSV, Live

CONFIG = {"struct": {"email": "e", "title": "t"}}


def test_admin_lists_submissions_and_jobs(live: Live) -> None:
    live.submit(CONFIG, headers={"Idempotency-Key": "a"})
    live.submit(CONFIG, headers={"Idempotency-Key": "a"})
    live.submit({"tier": "gold"})
    records = httpx.get(f"{live.url}/_emulator/submissions").json()
    assert [(r["replay"], r["status_code"]) for r in records] == [(False, 200), (True, 200), (False, 422)]
    assert records[0]["task_id"] == records[1]["task_id"]
    jobs = httpx.get(f"{live.url}/_emulator/jobs").json()
    assert list(jobs) == [records[0]["task_id"]]
    assert "x-api-key" not in json.dumps(jobs) and "test-key" not in json.dumps(jobs)
    assert httpx.get(f"{live.url}/_emulator/health").json()["status"] == "ok"


def test_admin_controls_jobs_and_faults(serve_emulator: object) -> None:
    live: Live = serve_emulator(job_seconds=600)  # type: ignore[operator]
    task_id = live.submit(CONFIG).json()["task_id"]
    done = httpx.post(f"{live.url}/_emulator/jobs/{task_id}/complete").json()
    assert done["status"] == "completed"
    url = live.final(task_id)["download_url"]
    httpx.post(f"{live.url}/_emulator/jobs/{task_id}/expire-links")
    assert live.client.get(url).status_code == 403
    other = live.submit(CONFIG).json()["task_id"]
    assert httpx.post(f"{live.url}/_emulator/jobs/{other}/cancel").json()["status"] == "cancelled"
    fault = httpx.post(
        f"{live.url}/_emulator/inject", json={"method": "GET", "path_prefix": "/check-balance", "status": 503}
    ).json()
    assert fault["status"] == 503
    assert live.client.get("/check-balance").status_code == 503
    assert httpx.post(f"{live.url}/_emulator/inject", json={"path_prefix": "/"}).status_code == 400
    assert httpx.post(f"{live.url}/_emulator/jobs/nope/fail").status_code == 404
    assert httpx.get(f"{live.url}/_emulator/webhooks").json() == []


def test_unknown_routes_and_methods(live: Live) -> None:
    assert live.client.get("/nope").json() == {"detail": "Not Found"}
    assert live.client.get("/bulk-intelligence/people").status_code == 405


def _read_lines(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


@pytest.fixture
def emulator_process() -> Iterator[tuple[subprocess.Popen[str], str, queue.Queue[str]]]:
    with _cli(["--job-seconds", "0"]) as started:
        yield started


@contextlib.contextmanager
def _cli(args: list[str]) -> Iterator[tuple[subprocess.Popen[str], str, queue.Queue[str]]]:
    env = dict(os.environ, SIXTYFOUR_API_KEY="cli-secret-key-123")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sixtyfour_sync", "emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    # A thread reads stdout: select() cannot see lines already buffered by the text wrapper.
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    url = ""
    deadline = time.monotonic() + 30
    while not url and time.monotonic() < deadline and proc.poll() is None:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if line.startswith("export SIXTYFOUR_API_URL="):
            url = line.strip().split("=", 1)[1]
    try:
        assert url, f"no URL printed: {seen!r}"
        yield proc, url, lines
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=10)
        reader.join(timeout=5)
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()


def test_cli_serves_submit_poll_download(
    emulator_process: tuple[subprocess.Popen[str], str, queue.Queue[str]],
) -> None:
    proc, url, lines = emulator_process
    assert url.startswith("http://127.0.0.1:")
    with httpx.Client(base_url=url, headers={"x-api-key": "cli-secret-key-123"}, timeout=10) as c:
        assert httpx.get(url + "/check-balance", headers={"x-api-key": "other"}).status_code == 401
        files = {"file": ("leads.csv", LEADS_CSV.encode())}
        submitted = c.post("/bulk-intelligence/people", files=files, data={"config": json.dumps(CONFIG)})
        assert submitted.status_code == 200
        status = c.get(f"/job-status/{submitted.json()['task_id']}").json()
        assert status["status"] == "completed"
        final = max(status["results"], key=lambda e: e["block_number"])
        data = c.get(final["download_url"]).content
        assert data.startswith(b"\xef\xbb\xbf") and b"email" in data
    proc.terminate()
    assert proc.wait(timeout=10) == 0
    assert proc.stderr is not None
    err = proc.stderr.read()
    out = ""
    deadline = time.monotonic() + 10
    while "Emulator stopped." not in out and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            out += lines.get(timeout=0.2)
    assert "Emulator stopped." in out
    assert "cli-secret-key-123" not in out + err
    assert "signature=" not in out + err


def test_cli_without_keys_says_so() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SIXTYFOUR_API_KEY"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sixtyfour_sync", "emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "any non-empty key" in first
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "accepting any non-empty x-api-key" in err


def test_cli_rejects_bad_settings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sixtyfour_sync", "emulator", "--webhook-secret", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "sk_whsec_" in result.stderr


def test_cli_test_control_flags() -> None:
    args = ["--job-seconds", "0", "--rate-limit-per-minute", "0", "--request-limit-per-minute", "0"]
    args += ["--idempotency-ttl-seconds", "0", "--strip-carried-columns", "--keep-carried-column", "lead_id"]
    csv = "lead_id,first_name,last_name,note\n1,Ada,Lovelace,carried\n"
    config = json.dumps({"struct": {"email": "e"}, "columns": ["first_name", "last_name"]})
    with _cli(args) as (_, url, _), httpx.Client(base_url=url, headers={"x-api-key": "cli-secret-key-123"}) as c:
        task_ids = set()
        for _ in range(12):  # past the default 10 a minute, under one Idempotency-Key
            r = c.post(
                "/bulk-intelligence/people",
                files={"file": ("leads.csv", csv.encode())},
                data={"config": config},
                headers={"Idempotency-Key": "same"},
            )
            assert r.status_code == 200 and "already_started" not in r.json()
            task_ids.add(r.json()["task_id"])
        assert len(task_ids) == 12
        status = c.get(f"/job-status/{task_ids.pop()}").json()
        final = max(status["results"], key=lambda e: e["block_number"])
        header = c.get(final["download_url"]).content.decode("utf-8-sig").splitlines()[0]
        assert header == '"lead_id","first_name","last_name","email"'
        assert c.post(f"{url}/_emulator/forget-idempotency-keys").json() == {"forgotten": 0}
