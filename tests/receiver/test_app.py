"""Waiting for the API without the lease: the part of finishing a job that holds nothing."""

from __future__ import annotations

import threading
import time

from sixtyfour_sync.api import JobPoller, NotFoundError, ServerError
from sixtyfour_sync.api.models import JobStatus
from sixtyfour_sync.engine.jobs.scheduler import StopToken
from sixtyfour_sync.receiver.app import wait_for_api


def _status(task: str, status: str) -> JobStatus:
    return JobStatus.from_api({"id": task, "status": status}, task_id=task)


class FakeApi:
    """job_status answers from a script per task (the last answer repeats)."""

    def __init__(self, **script: list[str | Exception]) -> None:
        self.script = {task: iter(answers) for task, answers in script.items()}
        self.last: dict[str, str | Exception] = {}
        self.asked: list[str] = []

    def job_status(self, task: str) -> JobStatus:
        self.asked.append(task)
        answer = next(self.script[task], self.last.get(task, "running"))
        self.last[task] = answer
        if isinstance(answer, Exception):
            raise answer
        return _status(task, answer)


def _poller() -> JobPoller:
    return JobPoller(initial=0.01, factor=1.0, cap=0.01)


def test_it_polls_until_the_job_ends() -> None:
    api = FakeApi(t=["running", "RUNNING", "completed"])
    ended, running = wait_for_api(api, ["t"], wait_seconds=10, stop=StopToken(), poller=_poller())  # type: ignore[arg-type]
    assert (ended, running) == (["t"], []) and api.asked == ["t", "t", "t"]


def test_it_returns_as_soon_as_one_task_ended() -> None:
    api = FakeApi(a=["running"], b=["running", "failed"])
    ended, running = wait_for_api(api, ["a", "b"], wait_seconds=10, stop=StopToken(), poller=_poller())  # type: ignore[arg-type]
    assert (ended, running) == (["b"], ["a"])


def test_a_job_the_api_does_not_know_is_left_to_the_engine_and_a_passing_failure_is_asked_again() -> None:
    api = FakeApi(
        gone=[NotFoundError("job-status answered 404", status_code=404)],
        flaky=[ServerError("502 from the API", status_code=502), "completed"],
    )
    ended, running = wait_for_api(api, ["flaky", "gone"], wait_seconds=10, stop=StopToken(), poller=_poller())  # type: ignore[arg-type]
    assert (ended, running) == (["gone"], ["flaky"])
    ended, running = wait_for_api(api, ["flaky"], wait_seconds=10, stop=StopToken(), poller=_poller())  # type: ignore[arg-type]
    assert (ended, running) == (["flaky"], [])


def test_it_gives_up_after_the_wait_and_on_a_stop() -> None:
    api = FakeApi(t=["running"])
    began = time.monotonic()
    assert wait_for_api(api, ["t"], wait_seconds=0.2, stop=StopToken(), poller=_poller()) == ([], ["t"])  # type: ignore[arg-type]
    assert time.monotonic() - began < 2
    stop = StopToken()
    threading.Timer(0.2, stop.request, args=["stopping"]).start()
    began = time.monotonic()
    slow = JobPoller(initial=30, factor=1.0, cap=30)
    assert wait_for_api(api, ["t"], wait_seconds=60, stop=stop, poller=slow) == ([], ["t"])  # type: ignore[arg-type]
    assert time.monotonic() - began < 5
