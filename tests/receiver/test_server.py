"""The listener and the receiver over real sockets, with an in-memory ledger: framing, hostile input, bursts,
event ids, and what a 503 leaves behind."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sixtyfour_sync._redact import Secret
from sixtyfour_sync.api.webhooks import sign_payload
from sixtyfour_sync.engine.jobs.states import JobState
from sixtyfour_sync.engine.ledger.store import Job
from sixtyfour_sync.receiver.server import Receiver, WebhookServer

SECRET = "sk_whsec_" + "ab" * 32
TASK = "task-1"


def _job(task: str = TASK, state: JobState = JobState.SUBMITTED) -> Job:
    return Job(
        job_id=f"job-{task}", run_id="run-1", sync_name="leads", state=state, spec_hash="s", content_hash="c",
        idempotency_key="k", file_name="f.csv", rows=3, task_id=task,
    )  # fmt: skip


class FakeLedger:
    """The ledger's event methods, in memory; ``record_gate`` holds ``record_event`` (a slow statement)."""

    def __init__(self, *jobs: Job) -> None:
        self.jobs = {j.task_id: j for j in jobs}
        self.events: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.record_gate: threading.Event | None = None
        self.forget_fails = False
        self.forgotten: list[str] = []

    def event_seen(self, event_id: str) -> bool:
        with self.lock:
            return event_id in self.events

    def job_by_task(self, task_id: str) -> Job | None:
        return self.jobs.get(task_id)

    def mine(self, job: Job) -> bool:
        """Every job here belongs to the receiver's project and target."""
        return True

    def record_event(self, event_id: str, **row: Any) -> bool:
        if self.record_gate is not None:
            assert self.record_gate.wait(20)
        with self.lock:
            if event_id in self.events:
                return False
            self.events[event_id] = row
            return True

    def forget_event(self, event_id: str) -> None:
        if self.forget_fails:
            raise RuntimeError("the warehouse went away")
        with self.lock:
            self.forgotten.append(event_id)
            self.events.pop(event_id, None)


class Ledgers:
    """``ledgers()`` for the receiver: counts its openings; ``gate`` holds an opening (a DuckDB file another
    process holds), ``open_seconds`` is what one costs."""

    def __init__(self, ledger: FakeLedger, open_seconds: float = 0.0) -> None:
        self.ledger = ledger
        self.open_seconds = open_seconds
        self.gate: threading.Event | None = None
        self.opens = 0
        self.done = threading.Event()  # set each time an opening is closed

    @contextlib.contextmanager
    def __call__(self) -> Iterator[list[Any]]:
        self.done.clear()
        try:
            if self.gate is not None and not self.gate.wait(20):
                raise RuntimeError("the file stayed locked")
            time.sleep(self.open_seconds)
            self.opens += 1
            yield [self.ledger]
        finally:
            self.done.set()


class FakeFinisher:
    def __init__(self) -> None:
        self.queued: list[tuple[str, str | None]] = []

    def enqueue(self, task_id: str, sync: str | None) -> None:
        self.queued.append((task_id, sync))

    def pending(self) -> list[str]:
        return []

    def stop(self, timeout: float = 30.0) -> None:
        return None


@contextlib.contextmanager
def serving(ledgers: Ledgers, **receiver: Any) -> Iterator[tuple[WebhookServer, FakeFinisher]]:
    finisher = FakeFinisher()
    server = WebhookServer(("127.0.0.1", 0), Receiver(Secret(SECRET), ledgers, finisher, **receiver))  # type: ignore[arg-type]
    with server.running():
        yield server, finisher


def _port(server: WebhookServer) -> int:
    return int(server.server_address[1])


def exchange(port: int, raw: bytes, *, timeout: float = 20.0, half_close: bool = True) -> bytes:
    """Send ``raw`` on a new connection and read everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1."), answer[:200]
    return int(answer.split(b" ", 2)[1])


def json_of(answer: bytes) -> dict[str, Any]:
    return dict(json.loads(answer.split(b"\r\n\r\n", 1)[1]))


def request(body: bytes, headers: dict[str, str] | list[tuple[bytes, bytes]], *, length: bool = True) -> bytes:
    items = [(k.encode(), v.encode()) for k, v in headers.items()] if isinstance(headers, dict) else list(headers)
    if length:
        items.append((b"Content-Length", str(len(body)).encode()))
    head = b"".join(k + b": " + v + b"\r\n" for k, v in items)
    return b"POST /sixtyfour/hook HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + head + b"\r\n" + body


def signed(payload: dict[str, Any], *, event: str | None = None, **extra: str) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(payload).encode()
    headers = {"Sixtyfour-Signature": sign_payload(SECRET, raw), "Sixtyfour-Delivery-Attempt": "1", **extra}
    if event is not None:
        headers["Sixtyfour-Event-Id"] = event
    return raw, headers


@contextlib.contextmanager
def quiet_process() -> Iterator[tuple[io.StringIO, list[logging.LogRecord]]]:
    """What reaches stderr (a traceback would) and the receiver's error records, for the block."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.ERROR)
    logger = logging.getLogger("sixtyfour_sync.receiver")
    logger.addHandler(handler)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            yield err, records
    finally:
        logger.removeHandler(handler)


# -- strict headers: every request is answered, nothing is printed -----------------------------------------


@pytest.mark.parametrize(
    ("lines", "body", "status", "says"),
    [
        ([(b"Content-Length", b"\xb2")], b"ab", 400, "Content-Length is not a number"),  # "²" in Latin-1
        ([(b"Content-Length", b"1\xb9")], b"ab", 400, "Content-Length is not a number"),
        ([(b"Content-Length", "١".encode())], b"a", 400, "Content-Length is not a number"),
        ([(b"Content-Length", b"9" * 5000)], b"a", 400, "Content-Length is not a number"),
        ([(b"Content-Length", b"-1")], b"", 400, "Content-Length is not a number"),
        ([(b"Content-Length", b"+2")], b"{}", 400, "Content-Length is not a number"),
        ([(b"Content-Length", b"2"), (b"Content-Length", b"3")], b"{}", 400, "more than once"),
        ([(b"Transfer-Encoding", b"chunked")], b"2\r\n{}\r\n0\r\n\r\n", 400, "Transfer-Encoding"),
        ([(b"Content-Length", b"2"), (b"Transfer-Encoding", b"chunked")], b"{}", 400, "Transfer-Encoding"),
        ([], b"{}", 411, "Content-Length is required"),
        ([(b"Content-Length", b"999999999")], b"{}", 413, "bytes"),
        ([(b"Content-Length", b"10")], b"{}", 400, "shorter than its Content-Length"),
        ([(b"Content-Length", b"2"), (b"Sixtyfour-Signature", b"t=\xb2,v1=" + b"a" * 64)], b"{}", 401, "malformed"),
        ([(b"Content-Length", b"2"), (b"Sixtyfour-Signature", b"t=" + b"9" * 400 + b",v1=" + b"a" * 64)], b"{}",
         401, "malformed"),
        ([(b"Content-Length", b"2"), (b"Sixtyfour-Signature", b"t=1,v1=a"), (b"Sixtyfour-Signature", b"t=2,v1=b")],
         b"{}", 400, "more than one Sixtyfour-Signature"),
    ],
)  # fmt: skip
def test_odd_framing_and_headers_get_an_answer_and_print_nothing(
    lines: list[tuple[bytes, bytes]], body: bytes, status: int, says: str
) -> None:
    ledgers = Ledgers(FakeLedger(_job()))
    with quiet_process() as (err, errors), serving(ledgers) as (server, _):
        answer = exchange(_port(server), request(body, lines, length=False))
    assert status_of(answer) == status and says in json_of(answer)["error"]
    assert err.getvalue() == "" and errors == []
    assert ledgers.ledger.events == {}


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"Sixtyfour-Delivery-Attempt": "²"}, "Sixtyfour-Delivery-Attempt is not a number"),
        ({"Sixtyfour-Delivery-Attempt": "1x"}, "Sixtyfour-Delivery-Attempt is not a number"),
        ({"Sixtyfour-Event-Type": "bulk job"}, "not a usable event type"),
        ({"Sixtyfour-Event-Id": "évènement"}, "not a usable id"),
    ],
)
def test_a_signed_delivery_with_an_odd_header_is_a_400(extra: dict[str, str], says: str) -> None:
    ledgers = Ledgers(FakeLedger(_job()))
    raw, headers = signed({"task_id": TASK}, event="evt-1")
    headers.update(extra)
    lines = [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
    with quiet_process() as (err, errors), serving(ledgers) as (server, finisher):
        answer = exchange(_port(server), request(raw, lines))
    assert status_of(answer) == 400 and says in json_of(answer)["error"]
    assert err.getvalue() == "" and errors == [] and ledgers.ledger.events == {} and finisher.queued == []


_ODD_VALUES = [
    b"\xb2", b"\xb9\xb3", b"1\xb2", "١٢".encode(), "１２".encode(), b"9" * 5000, b"-1", b"+5", b"0x10", b" 7 ",
    b"\x00", b"\x7f", b"", b"1e3", b"nan", b"t=\xb2,v1=" + b"a" * 64, b"t=" + b"9" * 400 + b",v1=" + b"b" * 64,
    b"t=1,v1=" + "é".encode() * 32, b"chunked", b"100-continue", b"close",
]  # fmt: skip
_NAMES = [
    b"Content-Length", b"Sixtyfour-Signature", b"Sixtyfour-Event-Id", b"Sixtyfour-Event-Type",
    b"Sixtyfour-Delivery-Attempt", b"Transfer-Encoding", b"Expect", b"Connection", b"X-Anything", b"content-length",
]  # fmt: skip
_values = st.one_of(
    st.sampled_from(_ODD_VALUES),
    st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b),
    st.integers(min_value=0, max_value=400).map(lambda n: str(n).encode()),
)
_names = st.one_of(
    st.sampled_from(_NAMES), st.binary(min_size=1, max_size=12).filter(lambda b: not set(b) & set(b"\r\n: \t"))
)
_bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"{}", b"[" * 50_000 + b"]" * 50_000, b'{"task_id": 1' + b"0" * 5000 + b"}", b"\xff\xfe"]),
    st.fixed_dictionaries(
        {"task_id": st.one_of(st.just(TASK), st.text(max_size=10), st.integers(), st.none())},
        optional={"event_id": st.one_of(st.text(max_size=8), st.integers(), st.lists(st.integers(), max_size=2))},
    ).map(lambda d: json.dumps(d).encode()),
)


@st.composite
def _requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"POST", b"POST", b"POST", b"GET", b"PUT", b"HEAD", b"P\xb2ST"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.\xb2", b"HTTP/2.0"]))
    path = draw(st.sampled_from([b"/", b"/hook?token=x", b"/healthz", b"/\xb2", b"*"]))
    body = draw(_bodies)
    lines = draw(st.lists(st.tuples(_names, _values), max_size=6))
    length = draw(st.sampled_from(["right", "right", "odd", "none"]))
    if length == "right":
        lines.append((b"Content-Length", str(len(body)).encode()))
    elif length == "odd":
        lines.append((b"Content-Length", draw(_values)))
    if draw(st.booleans()):  # a genuine signature over the body, with whatever else is there
        lines.append((b"Sixtyfour-Signature", sign_payload(SECRET, body).encode()))
    head = b"".join(k + b": " + v + b"\r\n" for k, v in lines)
    return method + b" " + path + b" " + version + b"\r\nHost: x\r\n" + head + b"\r\n" + body


def test_fuzzed_requests_always_get_an_http_answer_and_never_a_traceback() -> None:
    ledgers = Ledgers(FakeLedger(_job()))
    answers: list[int] = []
    with quiet_process() as (err, errors), serving(ledgers) as (server, _):

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
        @given(_requests())
        def check(raw: bytes) -> None:
            answer = exchange(_port(server), raw)
            assert answer.startswith(b"HTTP/1."), (raw[:300], answer[:300])
            answers.append(status_of(answer))
            assert status_of(answer) != 500, (raw[:300], answer[:300])

        check()
    assert err.getvalue() == "", err.getvalue()[:2000]
    assert [r.getMessage() for r in errors] == []
    assert len(set(answers)) > 3  # the fuzzing reached more than one answer


# -- bursts ---------------------------------------------------------------------------------------------------


def test_sixty_simultaneous_deliveries_are_all_answered_and_each_event_recorded_once() -> None:
    ledger = FakeLedger(_job(), _job("task-2"), _job("task-3", JobState.MERGED))
    ledgers = Ledgers(ledger, open_seconds=0.05)  # an opening costs a connection
    events = [f"evt-{i % 50}" for i in range(60)]  # ten of them delivered twice
    tasks = [TASK, "task-2", "task-3", "not-ours"]
    barrier = threading.Barrier(60)
    results: list[tuple[int | str, float]] = [("unset", 0.0)] * 60

    def deliver(i: int) -> None:
        raw, headers = signed({"event_id": events[i], "task_id": tasks[i % 4]})
        barrier.wait()
        began = time.monotonic()
        try:
            answer = exchange(_port(server), request(raw, headers), half_close=False)
            results[i] = (status_of(answer), time.monotonic() - began)
        except OSError as exc:
            results[i] = (f"{type(exc).__name__}: {exc}", time.monotonic() - began)

    with quiet_process() as (err, errors), serving(ledgers) as (server, finisher):
        assert server.request_queue_size >= 128  # the listen backlog holds a burst (the default, 5, does not)
        threads = [threading.Thread(target=deliver, args=(i,)) for i in range(60)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    statuses = [r[0] for r in results]
    assert all(isinstance(s, int) and 200 <= s < 300 for s in statuses), statuses
    assert max(r[1] for r in results) < 10
    assert sorted(ledger.events) == sorted(set(events))
    assert ledgers.opens < 30  # deliveries waiting together are recorded over one opening
    assert {t for t, _ in finisher.queued} <= {TASK, "task-2", "not-ours"}
    assert err.getvalue() == "" and errors == []


# -- the event id -------------------------------------------------------------------------------------------


def test_a_replay_under_a_new_event_id_header_is_refused_and_without_one_is_a_duplicate() -> None:
    ledgers = Ledgers(FakeLedger(_job()))
    raw, headers = signed({"event_id": "evt-signed", "task_id": TASK}, event="evt-signed")
    with serving(ledgers) as (server, finisher):
        first = exchange(_port(server), request(raw, headers))
        assert status_of(first) == 202
        # the same signed bytes within the 300 s, under an id of the attacker's choosing
        replay = exchange(_port(server), request(raw, {**headers, "Sixtyfour-Event-Id": "evt-new"}))
        assert status_of(replay) == 400 and "does not match" in json_of(replay)["error"]
        bare = dict(headers)
        del bare["Sixtyfour-Event-Id"]
        again = exchange(_port(server), request(raw, bare))
        assert status_of(again) == 200 and json_of(again) == {"status": "duplicate", "event_id": "evt-signed"}
    assert list(ledgers.ledger.events) == ["evt-signed"]
    assert finisher.queued == [(TASK, "leads")]  # finished once


def test_a_body_without_event_id_falls_back_to_the_header() -> None:
    ledgers = Ledgers(FakeLedger(_job()))
    raw, headers = signed({"task_id": TASK}, event="evt-header")
    with serving(ledgers) as (server, finisher):
        assert status_of(exchange(_port(server), request(raw, headers))) == 202
        assert status_of(exchange(_port(server), request(raw, headers))) == 200
    assert list(ledgers.ledger.events) == ["evt-header"] and finisher.queued == [(TASK, "leads")]


# -- a 503 leaves nothing behind ----------------------------------------------------------------------------


def test_a_delivery_answered_503_while_the_ledger_is_held_leaves_nothing_and_its_retry_is_new() -> None:
    ledgers = Ledgers(FakeLedger(_job()))
    ledgers.gate = threading.Event()  # another process holds the warehouse file
    raw, headers = signed({"event_id": "evt-1", "task_id": TASK}, event="evt-1")
    with serving(ledgers, answer_within=0.3, answer_by=0.5) as (server, finisher):
        began = time.monotonic()
        answer = exchange(_port(server), request(raw, headers))
        assert status_of(answer) == 503 and time.monotonic() - began < 2
        ledgers.gate.set()  # the file is free: the work that was waiting goes on...
        assert ledgers.done.wait(5)
        time.sleep(0.2)
        assert ledgers.ledger.events == {} and finisher.queued == []  # ...and writes nothing for it
        retry = exchange(_port(server), request(raw, {**headers, "Sixtyfour-Delivery-Attempt": "2"}))
        assert status_of(retry) == 202 and json_of(retry)["status"] == "accepted"
    assert list(ledgers.ledger.events) == ["evt-1"] and finisher.queued == [(TASK, "leads")]


def test_a_recording_that_outlasts_the_answer_is_taken_back() -> None:
    ledger = FakeLedger(_job())
    ledger.record_gate = threading.Event()  # the insert statement hangs past the answer
    ledgers = Ledgers(ledger)
    raw, headers = signed({"event_id": "evt-1", "task_id": TASK}, event="evt-1")
    with serving(ledgers, answer_within=0.2, answer_by=0.4) as (server, finisher):
        answer = exchange(_port(server), request(raw, headers))
        assert status_of(answer) == 503
        ledger.record_gate.set()
        assert ledgers.done.wait(5)
        assert ledger.events == {} and ledger.forgotten == ["evt-1"] and finisher.queued == []
        ledger.record_gate = None
        retry = exchange(_port(server), request(raw, headers))
        assert status_of(retry) == 202
    assert list(ledger.events) == ["evt-1"] and finisher.queued == [(TASK, "leads")]


def test_a_record_that_cannot_be_taken_back_still_gets_its_task_finished() -> None:
    ledger = FakeLedger(_job())
    ledger.record_gate = threading.Event()
    ledger.forget_fails = True
    ledgers = Ledgers(ledger)
    raw, headers = signed({"event_id": "evt-1", "task_id": TASK}, event="evt-1")
    with serving(ledgers, answer_within=0.2, answer_by=0.4) as (server, finisher):
        assert status_of(exchange(_port(server), request(raw, headers))) == 503
        ledger.record_gate.set()
        assert ledgers.done.wait(5)
        assert list(ledger.events) == ["evt-1"] and finisher.queued == [(TASK, "leads")]


def test_a_recording_that_ends_within_the_grace_is_answered_with_its_outcome() -> None:
    ledger = FakeLedger(_job())
    ledger.record_gate = threading.Event()
    ledgers = Ledgers(ledger)
    raw, headers = signed({"event_id": "evt-1", "task_id": TASK}, event="evt-1")
    with serving(ledgers, answer_within=0.2, answer_by=3.0) as (server, finisher):
        threading.Timer(0.5, ledger.record_gate.set).start()
        assert status_of(exchange(_port(server), request(raw, headers))) == 202
    assert list(ledger.events) == ["evt-1"] and ledger.forgotten == [] and finisher.queued == [(TASK, "leads")]


def test_an_unreachable_ledger_is_a_503_with_nothing_recorded() -> None:
    ledger = FakeLedger(_job())
    ledgers = Ledgers(ledger)
    ledgers.gate = threading.Event()

    def broken() -> Any:
        raise RuntimeError("connection refused")

    ledger.event_seen = broken  # type: ignore[method-assign]
    raw, headers = signed({"event_id": "evt-1", "task_id": TASK})
    ledgers.gate.set()
    with quiet_process() as (err, _), serving(ledgers) as (server, finisher):
        answer = exchange(_port(server), request(raw, headers))
    assert status_of(answer) == 503 and ledger.events == {} and finisher.queued == [] and err.getvalue() == ""


def test_a_delivery_for_another_targets_job_is_recorded_and_left_alone() -> None:
    """dev and prod share a ledger: a receiver serving prod never finishes dev's job (a run of dev does)."""

    class Elsewhere(FakeLedger):
        def mine(self, job: Job) -> bool:
            return False

    ledger = Elsewhere(_job())
    with serving(Ledgers(ledger)) as (server, finisher):
        raw, headers = signed({"event_id": "evt-dev", "task_id": TASK}, event="evt-dev")
        answer = exchange(_port(server), request(raw, headers))
    assert status_of(answer) == 200 and json_of(answer)["reason"] == "another target"
    assert finisher.queued == []  # not finished here
    assert "evt-dev" in ledger.events  # recorded once: a retry is a duplicate
