"""``sixtyfour-sync webhooks serve``: receive Sixtyfour's deliveries and finish the jobs they announce.

Per delivery, within Sixtyfour's 10 s: check the signature (401 and nothing changes when it fails), record
the event id in the ledger (a second delivery of one event is acknowledged and changes nothing), find the
task's job, queue it and answer 202. Only that much happens while the request waits: the
:class:`~sixtyfour_sync.receiver.finisher.Finisher` finishes the job in the background (it waits for the API
without the sync's lease, then takes the lease to download and merge). A task the ledger does not know is
acknowledged (200) and ignored. When the ledger cannot be reached in time the answer is 503 and the event is
not in the ledger (it is recorded only by the step that accepts it, and taken back when the answer is not 2xx
after all: given up on while the statement ran, or a failure after it), so Sixtyfour's retry is handled as new.
A record that cannot be taken back at once (the warehouse went away) is remembered: this receiver takes the
retry as new and removes the record at its next opening of the ledgers (receiver/pending.py).

Recording goes through one worker thread that takes every delivery waiting at once and records them over one
opening of the ledgers, so a burst of deliveries costs one connection, not one each. The listen backlog is
sized for bursts (:attr:`WebhookServer.request_queue_size`). Requests are framed strictly (an ASCII
``Content-Length``; no ``Transfer-Encoding``); every request gets an answer, and a failure is a log line in the
configured format, never a traceback on stderr.

The listener speaks plain HTTP: Sixtyfour delivers only to a public HTTPS address, so it runs behind one
(a load balancer, a reverse proxy, a tunnel) whose URL is the sync's ``webhook_url``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sixtyfour_sync._redact import Secret
from sixtyfour_sync.api.webhooks import SIGNATURE_HEADER
from sixtyfour_sync.engine.jobs.states import ACTIVE
from sixtyfour_sync.engine.ledger.store import Job, Ledger
from sixtyfour_sync.receiver.delivery import (
    ATTEMPT_HEADER,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    MAX_BODY_BYTES,
    Rejected,
    ascii_int,
    read_delivery,
)
from sixtyfour_sync.receiver.finisher import Finisher
from sixtyfour_sync.receiver.pending import LATE, RECORDED, RECORDING, WORKING, Answer, Pending

__all__ = ["Receiver", "WebhookServer"]

log = logging.getLogger("sixtyfour_sync.receiver")

LedgersFn = Callable[[], AbstractContextManager[list[Ledger]]]

_RETRY: Answer = (503, {"error": "the ledger cannot be reached; deliver again later"})
#: A connection closed after an answer is read from for at most this long / this much before it is closed.
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 1024 * 1024
#: Deliveries recorded over one opening of the ledgers, at most (then the ledgers are opened afresh).
_BATCH = 256


class Receiver:
    """What the HTTP layer hands each delivery to: check, dedupe, look up, queue.

    Checking happens on the request's thread; recording on one worker thread, one delivery after another (the
    ledger's insert-if-absent is what makes an event count once, also across processes).
    """

    def __init__(
        self,
        secret: Secret,
        ledgers: LedgersFn,
        finisher: Finisher,
        *,
        tolerance: float = 300,
        answer_within: float = 8.0,
        answer_by: float = 9.5,
    ) -> None:
        self.secret = secret
        self.ledgers = ledgers
        self.finisher = finisher
        self.tolerance = tolerance
        #: Sixtyfour wants an answer within 10 s: a delivery not recorded after ``answer_within`` s is answered
        #: 503 and nothing of it is written. One whose recording statement is under way then is given until
        #: ``answer_by`` s; if it is still running, the answer is 503 and the record is taken back.
        self.answer_within = answer_within
        self.answer_by = max(answer_by, answer_within)
        self._queue: queue.SimpleQueue[Pending | None] = queue.SimpleQueue()
        self._closing = False
        #: Events recorded for a delivery answered 503 whose record could not be taken back (the worker's alone).
        self._unanswered: set[str] = set()
        self._worker = threading.Thread(target=self._work, name="sixtyfour-webhook-ledger", daemon=True)
        self._worker.start()

    # -- the request's thread --------------------------------------------------------------------------

    def handle(self, headers: Mapping[str, str], body: bytes) -> Answer:
        """The HTTP status and JSON body to answer a delivery with."""
        try:
            delivery = read_delivery(headers, body, self.secret, tolerance=self.tolerance)
        except Rejected as exc:
            log.warning("webhook: refused a delivery (%d): %s", exc.status, exc.message)
            return exc.status, {"error": exc.message}
        if self._closing:
            return _RETRY
        pending = Pending(delivery)
        self._queue.put(pending)
        answer = self._wait(pending)
        if answer is None:
            log.warning(
                "webhook: event %s could not be recorded within %.0f s; asking for a retry (nothing recorded)",
                delivery.event_id,
                self.answer_within,
            )
            return _RETRY
        return answer

    def _wait(self, p: Pending) -> Answer | None:
        """The worker's answer; None (and nothing left in the ledger) when it does not come in time."""
        return p.wait(self.answer_within, self.answer_by)

    # -- the worker --------------------------------------------------------------------------------------

    def close(self) -> None:
        """Let the ledger work under way finish; deliveries still waiting are answered 503."""
        self._closing = True
        self._queue.put(None)
        self._worker.join(30)

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                break
            batch = self._drain([first])
            if batch:
                self._work_batch(batch)
            if self._closing:
                break
        for left in self._drain([]):
            left.finish(_RETRY)

    def _drain(self, items: list[Pending]) -> list[Pending]:
        """``items`` and every delivery waiting now, less those already answered (marked as taken)."""
        while len(items) < _BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._closing = True
                break
            items.append(item)
        return [p for p in items if p.take()]

    def _work_batch(self, batch: list[Pending]) -> None:
        taken = list(batch)
        try:
            with self.ledgers() as ledgers:  # one opening for every delivery waiting: a burst is one connection
                if self._unanswered:
                    self._forget_unanswered(ledgers)
                while batch:
                    for p in batch:
                        self._one(p, ledgers)
                    if self._closing or len(taken) >= _BATCH:
                        break
                    batch = self._drain([])
                    taken.extend(batch)
        except Exception as exc:  # the warehouse is down or locked: Sixtyfour retries a non-2xx
            waiting = [p for p in taken if not p.done.is_set()]
            if waiting:
                log.warning(
                    "webhook: the ledger cannot be reached (%s); asking for a retry of %d event(s)", exc, len(waiting)
                )
            for p in waiting:
                p.finish(_RETRY)

    def _one(self, p: Pending, ledgers: list[Ledger]) -> None:
        try:
            answer = self._route(p, ledgers)
        except Exception as exc:
            log.warning("webhook: event %s could not be recorded (%s); asking for a retry", p.delivery.event_id, exc)
            answer = _RETRY
        if p.finish(answer) and answer[0] < 300:
            self._unanswered.discard(p.delivery.event_id)  # answered 2xx: its record stands
        elif p.recorded_in is not None:
            self._take_back(p, p.recorded_in)

    def _record(self, p: Pending, ledger: Ledger, **row: Any) -> bool | None:
        """Record the event, as the one step that accepts it: True when recorded now, False when an earlier
        delivery of it was recorded (and answered 2xx), None when its request was answered 503 meanwhile (then
        :meth:`_one` takes the record back)."""
        event = p.delivery.event_id
        with p.lock:
            if p.state != WORKING:
                return None
            p.state = RECORDING
        try:
            inserted = ledger.record_event(event, **row)
        except BaseException:
            with p.lock:
                if p.state == RECORDING:
                    p.state = WORKING
            raise
        if not inserted and event in self._unanswered:
            inserted = True  # the record of an earlier delivery answered 503 that could not be taken back: this one's
        if inserted:
            p.recorded_in = ledger
        with p.lock:
            if p.state == LATE:
                return None
            p.state = RECORDED
        return inserted

    def _take_back(self, p: Pending, ledger: Ledger) -> None:
        """Remove the record of a delivery answered with a non-2xx, so its retry is recorded as new."""
        event = p.delivery.event_id
        try:
            ledger.forget_event(event)
        except Exception as exc:
            # Remembered: this receiver takes the retry as new, and forgets the record at its next opening of the
            # ledgers. The task is finished now all the same, as if the answer had been 2xx.
            self._unanswered.add(event)
            log.warning(
                "webhook: event %s was answered 503 but stays recorded for now (%s); its task is finished all the same",
                event,
                exc,
            )
            if p.task is not None:
                self.finisher.enqueue(*p.task)
            return
        self._unanswered.discard(event)

    def _forget_unanswered(self, ledgers: list[Ledger]) -> None:
        """Take back the records of deliveries answered 503 that could not be taken back then."""
        for event in sorted(self._unanswered):
            try:
                for ledger in ledgers:
                    if ledger.event_seen(event):
                        ledger.forget_event(event)
            except Exception as exc:
                log.warning("webhook: the record of event %s (answered 503) cannot be taken back yet (%s)", event, exc)
                continue
            self._unanswered.discard(event)

    def _route(self, p: Pending, ledgers: list[Ledger]) -> Answer:
        d = p.delivery
        seen = d.event_id not in self._unanswered and any(ledger.event_seen(d.event_id) for ledger in ledgers)
        if seen:
            log.info("webhook: event %s seen before (attempt %s); nothing to do", d.event_id, d.attempt)
            return 200, {"status": "duplicate", "event_id": d.event_id}
        for task in d.task_ids:
            for ledger in ledgers:
                job = ledger.job_by_task(task)
                if job is not None and not ledger.mine(job):
                    return self._elsewhere(p, ledger, task, job)
                if job is not None:
                    return self._known(p, ledger, task, job)
        if ledgers:
            named = d.task_ids[0] if d.task_ids else None
            recorded = self._record(
                p, ledgers[0], event_type=d.event_type, task_id=named, attempt=d.attempt, outcome="unknown_task"
            )
            if recorded is None:
                return _RETRY
            if not recorded:
                return 200, {"status": "duplicate", "event_id": d.event_id}
        for task in d.task_ids[:1]:
            # a run may be about to record this task (its job ended before the run wrote the task id down)
            self.finisher.enqueue(task, None)
        log.info("webhook: event %s names no task in the ledger (%s)", d.event_id, ", ".join(d.task_ids) or "none")
        return 200, {"status": "ignored", "reason": "unknown task", "event_id": d.event_id}

    def _elsewhere(self, p: Pending, ledger: Ledger, task: str, job: Job) -> Answer:
        """A job of another target sharing the ledger (dev's, at a receiver serving prod): left for a run of that
        target, never merged here."""
        d = p.delivery
        recorded = self._record(
            p, ledger, event_type=d.event_type, task_id=task, attempt=d.attempt, outcome="another target", job=job
        )
        if recorded is None:
            return _RETRY
        log.info("webhook: task %s answers %s (%s), not this receiver's target: left to it", task, job.target,
                 job.profile_target)  # fmt: skip
        return 200, {"status": "ignored", "reason": "another target", "event_id": d.event_id}

    def _known(self, p: Pending, ledger: Ledger, task: str, job: Job) -> Answer:
        d = p.delivery
        active = job.state in ACTIVE
        outcome = "queued" if active else f"already {job.state.value}"
        if active:
            p.task = (task, job.sync_name)
        recorded = self._record(
            p, ledger, event_type=d.event_type, task_id=task, attempt=d.attempt, outcome=outcome, job=job
        )
        if recorded is None:
            return _RETRY
        if not recorded:
            return 200, {"status": "duplicate", "event_id": d.event_id}
        if not active:
            log.info("webhook: task %s of %s is already %s", task, job.sync_name, job.state.value)
            return 200, {"status": job.state.value, "task_id": task}
        self.finisher.enqueue(task, job.sync_name)
        log.info("webhook: task %s of %s ended (%s); finishing it", task, job.sync_name, d.event_type or "event")
        return 202, {"status": "accepted", "task_id": task, "sync": job.sync_name}


class _Handler(BaseHTTPRequestHandler):
    server: WebhookServer
    protocol_version = "HTTP/1.1"
    #: Until a request line is understood, answers still start with a status line (the default, HTTP/0.9,
    #: answers a malformed request with a bare HTML page).
    default_request_version = "HTTP/1.0"
    timeout = 10  # a slow client must not hold a thread

    _answered = False

    def do_POST(self) -> None:
        self._answered = False
        try:
            self._post()
        except Exception as exc:
            self._failed(exc)

    def do_GET(self) -> None:
        self._answered = False
        try:
            if self.path.split("?")[0].rstrip("/") in ("", "/healthz"):
                self._answer(200, {"status": "ok", "queued": len(self.server.receiver.finisher.pending())})
            else:
                self._answer(404, {"error": "not found"})
        except Exception as exc:
            self._failed(exc)

    def _post(self) -> None:
        refused = self._framing()
        if refused is not None:
            self.close_connection = True  # the body was not read: what follows cannot be told from a request
            self._answer(refused[0], {"error": refused[1]})
            return
        length = ascii_int(self.headers.get("Content-Length"), max_digits=12) or 0
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            self._answer(408, {"error": "the body did not arrive in time"})
            return
        if len(body) < length:
            self.close_connection = True
            self._answer(400, {"error": "the body is shorter than its Content-Length"})
            return
        headers = {k: v for k, v in self.headers.items()}
        status, answer = self.server.receiver.handle(headers, body)
        self._answer(status, answer)

    def _framing(self) -> tuple[int, str] | None:
        """Why the request cannot be read as one delivery (status, message), or None."""
        if self.headers.get_all("Transfer-Encoding"):
            return 400, "Transfer-Encoding is not supported: send the body with a Content-Length"
        values = self.headers.get_all("Content-Length") or []
        if not values:
            return 411, "Content-Length is required"
        lengths = {ascii_int(v, max_digits=12) for v in values}
        if None in lengths:
            return 400, "Content-Length is not a number (ASCII digits)"
        if len(lengths) > 1:
            return 400, "Content-Length is given more than once, with different values"
        length = next(iter(lengths)) or 0
        if length > MAX_BODY_BYTES:
            return 413, f"the body is over {MAX_BODY_BYTES:,} bytes"
        for name in (SIGNATURE_HEADER, EVENT_ID_HEADER, EVENT_TYPE_HEADER, ATTEMPT_HEADER):
            if len(self.headers.get_all(name) or []) > 1:
                return 400, f"more than one {name} header"
        return None

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        self._answered = True
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(raw)

    def _failed(self, exc: Exception) -> None:
        """A request that could not be handled: a log line (no traceback on stderr) and, if possible, a 500."""
        self.close_connection = True
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("webhook: the client went away (%s)", type(exc).__name__)
            return
        log.error("webhook: a request failed (%s: %s)", type(exc).__name__, str(exc)[:200])
        log.debug("webhook: the failure in full", exc_info=exc)
        if not self._answered:
            with contextlib.suppress(OSError):
                self._answer(500, {"error": "the receiver failed on this request; deliver again later"})

    def log_message(self, format: str, *args: Any) -> None:
        # The request line holds the path, which may carry a token of the webhook URL: never log it.
        log.debug("webhook: %s answered", self.command)


class WebhookServer(ThreadingHTTPServer):
    """The listener: a thread per request, each handed to the :class:`Receiver`."""

    daemon_threads = True
    #: The listen backlog: a burst of deliveries (every job of a large run ending together) waits to be
    #: accepted instead of being refused (the default of 5 resets most of 60 simultaneous connections).
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], receiver: Receiver) -> None:
        self.receiver = receiver
        super().__init__(address, _Handler)

    def shutdown_request(self, request: Any) -> None:
        """Close a connection without losing the answer: stop writing, read what the client still sends (a
        body that was refused unread) for a moment, then close. Closing with unread bytes would send a reset,
        and a client may then never see the answer."""
        with contextlib.suppress(OSError):
            request.shutdown(socket.SHUT_WR)
            request.settimeout(0.2)
            end = time.monotonic() + _LINGER_SECONDS
            left = _LINGER_BYTES
            while left > 0 and time.monotonic() < end:
                data = request.recv(min(left, 65536))
                if not data:
                    break
                left -= len(data)
        self.close_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A request that failed outside the handler's own care: a log line, never a traceback on stderr."""
        exc = sys.exc_info()[1]
        if exc is None or isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("webhook: a connection ended early (%s)", type(exc).__name__)
            return
        log.error("webhook: a request failed (%s: %s)", type(exc).__name__, str(exc)[:200])
        log.debug("webhook: the failure in full", exc_info=exc)

    @property
    def url(self) -> str:
        """``http://host:port`` it listens on."""
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{name}:{port}"

    @contextlib.contextmanager
    def running(self) -> Iterator[WebhookServer]:
        """Serve in a background thread for the block (tests, embedding)."""
        thread = threading.Thread(target=self.serve_forever, name="sixtyfour-webhooks", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.shutdown()
            thread.join(10)
            self.close()

    def close(self) -> None:
        """Stop the finisher (the finish under way ends first) and release the socket."""
        self.receiver.finisher.stop()
        self.receiver.close()
        self.server_close()
