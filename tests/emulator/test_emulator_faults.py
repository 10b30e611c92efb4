"""Deterministic one-shot faults (emu.inject) and seeded random faults."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from sixtyfour_sync.emulator import FaultSettings

from .helpers import KEY, Live

CONFIG = {"struct": {"email": "e"}}


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        (500, "Internal server error"),
        (503, "Service unavailable"),
        (429, "Rate limit exceeded"),
        (402, "Insufficient API credits"),
    ],
)
def test_injected_status_has_the_documented_body_then_clears(live: Live, status: int, detail: str) -> None:
    live.emu.inject("GET", "/check-balance", status, times=2)
    for _ in range(2):
        response = live.client.get("/check-balance")
        assert response.status_code == status
        assert response.json() == {"detail": detail}
    assert live.client.get("/check-balance").status_code == 200


def test_injected_429_carries_retry_after(live: Live) -> None:
    live.emu.inject("POST", "/bulk-intelligence/", 429, retry_after=7)
    response = live.submit(CONFIG)
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert live.emu.jobs == {}
    assert live.emu.submissions[-1].status_code == 429
    assert live.submit(CONFIG).status_code == 200


def test_drop_before_creates_nothing(live: Live) -> None:
    live.emu.inject("POST", "/bulk-intelligence/people", drop=True)
    with pytest.raises(httpx.RemoteProtocolError):
        live.submit(CONFIG, headers={"Idempotency-Key": "k1"})
    assert live.emu.jobs == {}
    assert live.emu.submissions[-1].status_code is None
    assert live.submit(CONFIG, headers={"Idempotency-Key": "k1"}).json().get("already_started") is None


def test_drop_after_accepting_then_replay_pays_once(live: Live) -> None:
    live.emu.inject("POST", "/bulk-intelligence/people", drop=True, phase="after")
    balance = live.emu.balance_cents(KEY)
    with pytest.raises(httpx.RemoteProtocolError):
        live.submit(CONFIG, headers={"Idempotency-Key": "file-1"})
    assert len(live.emu.jobs) == 1
    lost = live.emu.submissions[-1]
    assert lost.status_code is None and lost.task_id is not None and not lost.replay
    retry = live.submit(CONFIG, headers={"Idempotency-Key": "file-1"})
    assert retry.json() == {"task_id": lost.task_id, "status": "RUNNING", "already_started": True}
    assert len(live.emu.jobs) == 1
    assert live.emu.balance_cents(KEY) == balance - 6
    # The proof a sync can use: every file went in once, other attempts were replays.
    created = [r for r in live.emu.submissions if r.task_id and not r.replay]
    assert len(created) == 1


def test_status_after_accepting(live: Live) -> None:
    live.emu.inject("POST", "/bulk-intelligence/people", 500, phase="after")
    assert live.submit(CONFIG).status_code == 500
    assert len(live.emu.jobs) == 1


def test_delay(live: Live) -> None:
    live.emu.inject("GET", "/check-balance", delay=0.3)
    started = time.perf_counter()
    assert live.client.get("/check-balance").status_code == 200
    assert time.perf_counter() - started >= 0.3


def test_truncated_download_then_full(live: Live) -> None:
    task_id = live.submit(CONFIG).json()["task_id"]
    final = live.final(task_id)
    live.emu.inject("GET", "/downloads/", truncate=True)
    with pytest.raises(httpx.RemoteProtocolError):
        live.client.get(final["download_url"])
    # Streaming shows the short body against the announced length.
    live.emu.inject("GET", "/downloads/", truncate=True)
    received: list[bytes] = []

    def read_all(response: httpx.Response) -> None:
        for chunk in response.iter_raw():
            received.append(chunk)

    with live.client.stream("GET", final["download_url"]) as response:
        assert int(response.headers["Content-Length"]) == final["file_size"]
        with pytest.raises(httpx.RemoteProtocolError):
            read_all(response)
    assert 0 < len(b"".join(received)) < final["file_size"]
    assert len(live.client.get(final["download_url"]).content) == final["file_size"]


def test_truncated_json_answer(live: Live) -> None:
    live.emu.inject("GET", "/check-balance", truncate=True)
    with pytest.raises(httpx.RemoteProtocolError):
        live.client.get("/check-balance")


def test_faults_match_method_and_prefix(live: Live) -> None:
    live.emu.inject("POST", "/check-balance", 500)
    live.emu.inject("*", "/job-status/", 503)
    assert live.client.get("/check-balance").status_code == 200
    assert live.client.get("/job-status/x").status_code == 503
    live.emu.clear_faults()
    assert live.client.get("/check-balance").status_code == 200


def _codes(live: Live, n: int) -> list[int | None]:
    out: list[int | None] = []
    for _ in range(n):
        try:
            out.append(live.client.get("/check-balance").status_code)
        except httpx.TransportError:
            out.append(None)
    return out


def test_random_faults_are_seeded(serve_emulator: Callable[..., Live]) -> None:
    faults = FaultSettings(error_5xx_rate=0.2, burst_429_rate=0.2, drop_connection_rate=0.1, seed=42)
    a = _codes(serve_emulator(faults=faults), 40)
    b = _codes(serve_emulator(faults=faults), 40)
    assert a == b
    assert {200, 429, None} <= set(a) and ({500, 503} & set(a))


def test_random_job_failure(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(faults=FaultSettings(job_failure_rate=1.0))
    task_id = live.submit(CONFIG).json()["task_id"]
    status = live.status(task_id)
    assert status["status"] == "failed" and status["error"]


def test_random_job_cancel(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(faults=FaultSettings(job_cancel_rate=1.0))
    task_id = live.submit(CONFIG).json()["task_id"]
    assert live.status(task_id)["status"] == "cancelled"


def test_fault_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="error_5xx_rate"):
        FaultSettings(error_5xx_rate=2)


def test_random_slow_responses(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(faults=FaultSettings(slow_response_seconds=0.2, slow_response_rate=1.0))
    started = time.perf_counter()
    assert live.client.get("/check-balance").status_code == 200
    assert time.perf_counter() - started >= 0.2


def test_random_truncated_downloads(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(faults=FaultSettings(truncate_download_rate=1.0))
    task_id = live.submit(CONFIG).json()["task_id"]
    url = live.final(task_id)["download_url"]  # other endpoints are not truncated
    with pytest.raises(httpx.RemoteProtocolError):
        live.client.get(url)
