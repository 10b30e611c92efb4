"""The scheduler's calls and their answers: no answer is still unseen once it says it is settled."""

from __future__ import annotations

import threading
import time

from sixtyfour_sync.engine.events import ApiAnswer, Call
from sixtyfour_sync.engine.jobs.scheduler import Scheduler


def test_an_answer_is_queued_before_its_call_stops_counting() -> None:
    """Whoever sees no call under way finds every answer already queued (the run's exit test relies on it)."""
    scheduler = Scheduler(2, "test")
    try:
        for i in range(200):
            scheduler.call(Call.POLL, i, lambda i=i: i * 2)
            deadline = time.monotonic() + 5
            while scheduler.busy and time.monotonic() < deadline:
                pass
            assert scheduler.busy == 0
            assert not scheduler.settled()  # the answer waits in the queue
            assert scheduler.next_event(1.0) == ApiAnswer(Call.POLL, i, i * 2)
            assert scheduler.settled()
    finally:
        scheduler.shutdown()


def test_a_call_that_raises_gives_its_exception_and_settles() -> None:
    scheduler = Scheduler(1, "test")
    release = threading.Event()

    def slow_failure() -> None:
        release.wait(5)
        raise ValueError("refused")

    try:
        scheduler.call(Call.SUBMIT, "job", slow_failure)
        assert not scheduler.settled() and scheduler.busy == 1
        release.set()
        answer = scheduler.next_event(5.0)
        assert isinstance(answer, ApiAnswer)
        assert (answer.call, answer.subject) == (Call.SUBMIT, "job") and isinstance(answer.value, ValueError)
        deadline = time.monotonic() + 5
        while not scheduler.settled() and time.monotonic() < deadline:
            time.sleep(0.001)
        assert scheduler.settled()
    finally:
        scheduler.shutdown()
