"""An event answered anything but 2xx leaves nothing in the ledger: its retry is recorded as new, never answered
"duplicate". Real sockets, an in-memory ledger (tests/receiver/test_server.py's fakes)."""

from __future__ import annotations

import threading
import time

from sixtyfour_sync.engine.jobs.states import JobState
from tests.receiver.test_server import (
    TASK,
    FakeFinisher,
    FakeLedger,
    Ledgers,
    _job,
    _port,
    exchange,
    json_of,
    request,
    serving,
    signed,
    status_of,
)


def _wait_until(cond: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_record_that_could_not_be_taken_back_is_the_retrys_own() -> None:
    ledger = FakeLedger(_job())
    ledger.record_gate = threading.Event()  # the insert outlasts the answer...
    ledger.forget_fails = True  # ...and the warehouse is gone when the record is to be taken back
    ledgers = Ledgers(ledger)
    raw, headers = signed({"event_id": "evt-1", "task_id": TASK}, event="evt-1")
    with serving(ledgers, answer_within=0.2, answer_by=0.4) as (server, finisher):
        assert status_of(exchange(_port(server), request(raw, headers))) == 503
        ledger.record_gate.set()
        assert ledgers.done.wait(5)
        assert list(ledger.events) == ["evt-1"]  # still there: the warehouse is still refusing the delete
        ledger.record_gate = None
        # Sixtyfour's retry is taken as new: accepted and queued, not a "duplicate"
        retry = exchange(_port(server), request(raw, {**headers, "Sixtyfour-Delivery-Attempt": "2"}))
        assert status_of(retry) == 202 and json_of(retry)["status"] == "accepted"
        # and once answered 2xx, its record stands: a third delivery is the duplicate
        third = exchange(_port(server), request(raw, {**headers, "Sixtyfour-Delivery-Attempt": "3"}))
        assert status_of(third) == 200 and json_of(third)["status"] == "duplicate"
    assert list(ledger.events) == ["evt-1"] and ledger.forgotten == []
    assert finisher.queued == [(TASK, "leads"), (TASK, "leads")]  # finished all the same, then queued by the retry


def test_the_next_opening_of_the_ledgers_takes_back_a_record_that_stayed() -> None:
    """A retry that goes to another receiver (or comes after a restart) must not find the record either."""
    ledger = FakeLedger(_job(), _job("task-2"))
    ledger.record_gate = threading.Event()
    ledger.forget_fails = True
    ledgers = Ledgers(ledger)
    raw, headers = signed({"event_id": "evt-1", "task_id": TASK}, event="evt-1")
    with serving(ledgers, answer_within=0.2, answer_by=0.4) as (server, finisher):
        assert status_of(exchange(_port(server), request(raw, headers))) == 503
        ledger.record_gate.set()
        assert ledgers.done.wait(5)
        ledger.record_gate = None
        ledger.forget_fails = False
        other, other_headers = signed({"event_id": "evt-2", "task_id": "task-2"}, event="evt-2")
        assert status_of(exchange(_port(server), request(other, other_headers))) == 202
    assert ledger.forgotten == ["evt-1"] and list(ledger.events) == ["evt-2"]
    assert (TASK, "leads") in finisher.queued  # finished all the same while its record stayed


class SlowFinisher(FakeFinisher):
    """Queuing a task takes a while (the worker is slow after recording: a busy machine)."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    def enqueue(self, task_id: str, sync: str | None) -> None:
        assert self.gate.wait(20)
        super().enqueue(task_id, sync)


def test_an_answer_that_comes_after_the_grace_is_a_503_and_its_record_is_taken_back() -> None:
    """The recording finished, but the worker's answer came too late: the request answered 503, so the record
    goes; the retry is accepted."""
    from sixtyfour_sync._redact import Secret
    from sixtyfour_sync.receiver.server import Receiver, WebhookServer
    from tests.receiver.test_server import SECRET

    ledger = FakeLedger(_job())
    ledgers = Ledgers(ledger)
    gate = threading.Event()
    finisher = SlowFinisher(gate)
    receiver = Receiver(Secret(SECRET), ledgers, finisher, answer_within=0.2, answer_by=0.4)  # type: ignore[arg-type]
    server = WebhookServer(("127.0.0.1", 0), receiver)
    raw, headers = signed({"event_id": "evt-1", "task_id": TASK}, event="evt-1")
    with server.running():
        assert status_of(exchange(_port(server), request(raw, headers))) == 503
        gate.set()
        _wait_until(lambda: ledger.forgotten == ["evt-1"])
        assert ledger.events == {}
        retry = exchange(_port(server), request(raw, {**headers, "Sixtyfour-Delivery-Attempt": "2"}))
        assert status_of(retry) == 202 and json_of(retry)["status"] == "accepted"
    assert list(ledger.events) == ["evt-1"]


def test_a_failure_after_the_record_is_a_503_and_leaves_nothing() -> None:
    class Failing(FakeFinisher):
        fail = True

        def enqueue(self, task_id: str, sync: str | None) -> None:
            if self.fail:
                raise RuntimeError("the queue is gone")
            super().enqueue(task_id, sync)

    from sixtyfour_sync._redact import Secret
    from sixtyfour_sync.receiver.server import Receiver, WebhookServer
    from tests.receiver.test_server import SECRET

    ledger = FakeLedger(_job())
    finisher = Failing()
    server = WebhookServer(("127.0.0.1", 0), Receiver(Secret(SECRET), Ledgers(ledger), finisher))  # type: ignore[arg-type]
    raw, headers = signed({"event_id": "evt-1", "task_id": TASK}, event="evt-1")
    with server.running():
        assert status_of(exchange(_port(server), request(raw, headers))) == 503
        assert ledger.events == {} and ledger.forgotten == ["evt-1"]
        finisher.fail = False
        retry = exchange(_port(server), request(raw, headers))
        assert status_of(retry) == 202
    assert list(ledger.events) == ["evt-1"] and finisher.queued == [(TASK, "leads")]


def test_an_event_for_a_finished_job_answered_503_is_taken_back_too() -> None:
    ledger = FakeLedger(_job(state=JobState.MERGED))
    ledger.record_gate = threading.Event()
    ledgers = Ledgers(ledger)
    raw, headers = signed({"event_id": "evt-1", "task_id": TASK}, event="evt-1")
    with serving(ledgers, answer_within=0.2, answer_by=0.4) as (server, finisher):
        assert status_of(exchange(_port(server), request(raw, headers))) == 503
        ledger.record_gate.set()
        assert ledgers.done.wait(5)
        ledger.record_gate = None
        retry = exchange(_port(server), request(raw, headers))
        assert status_of(retry) == 200 and json_of(retry)["status"] == "merged"
    assert ledger.forgotten == ["evt-1"] and list(ledger.events) == ["evt-1"] and finisher.queued == []
