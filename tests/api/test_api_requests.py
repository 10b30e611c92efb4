"""Status, live status, cancel, balance and wait."""

from __future__ import annotations

import pytest
from api_fakes import API_KEY, ClientFactory, FakeApi, FakeClock

from sixtyfour_sync.api import JobPoller, NotFoundError


def test_job_status_running_then_completed(api: FakeApi, make_client: ClientFactory) -> None:
    api.add(
        "GET",
        "/job-status/t1",
        {"id": "t1", "run_id": "r", "start_time": "2026-01-01T00:00:00Z", "status": "running"},
        {"id": "t1", "status": "completed", "results": [], "charge_amount": 42},
    )
    client = make_client()
    first = client.job_status("t1")
    assert first.status == "running" and not first.is_terminal
    second = client.job_status("t1")
    assert second.is_completed and second.charge_amount_cents == 42
    assert api.requests[0].headers["x-api-key"] == API_KEY


def test_job_not_found(api: FakeApi, make_client: ClientFactory) -> None:
    api.add("GET", "/job-status/nope", (404, {"detail": "Job not found"}))
    with pytest.raises(NotFoundError, match="Job not found"):
        make_client().job_status("nope")
    assert len(api.requests) == 1


def test_task_id_is_quoted_in_the_path(api: FakeApi, make_client: ClientFactory) -> None:
    api.add("GET", "/job-status/a/b", {"status": "running"})  # url.path shows the decoded form
    assert make_client().job_status("a/b").task_id == "a/b"
    assert api.requests[0].url.raw_path == b"/job-status/a%2Fb"
    with pytest.raises(ValueError, match="task_id"):
        make_client().job_status("")


def test_live_status_cancel_balance(api: FakeApi, make_client: ClientFactory) -> None:
    api.add(
        "GET",
        "/workflows/runs/t1/live_status",
        {"overall_status": "running", "overall_progress_percentage": 50, "blocks": [{"processed_count": 1}]},
    )
    api.add("POST", "/workflows/cancel", {"job_id": "t1", "status": "canceled"})
    api.add("GET", "/check-balance", {"credits": 99.5})
    client = make_client()
    live = client.live_status("t1")
    assert live.progress_percentage == 50.0 and live.blocks[0].processed_count == 1
    cancel = client.cancel("t1")
    assert cancel.status == "canceled"
    assert api.calls("POST", "/workflows/cancel")[0].url.params["job_id"] == "t1"
    assert client.check_balance().credits == 99.5


def test_wait_sleeps_as_the_poller_says(api: FakeApi, make_client: ClientFactory, clock: FakeClock) -> None:
    api.add("GET", "/job-status/t1", {"status": "running"}, {"status": "RUNNING"}, {"status": "completed"})
    status = make_client().wait("t1", poller=JobPoller(initial=2.0, factor=2.0, cap=5.0))
    assert status.is_completed
    assert clock.sleeps == [2.0, 4.0, 5.0]


def test_wait_timeout_returns_the_running_status(api: FakeApi, make_client: ClientFactory, clock: FakeClock) -> None:
    api.add("GET", "/job-status/t1", {"status": "running"})
    status = make_client().wait("t1", poller=JobPoller(initial=2.0, factor=2.0, cap=8.0), timeout=10.0)
    assert not status.is_terminal
    assert clock.sleeps == [2.0, 4.0]  # the next wait (8 s) would pass the 10 s timeout
