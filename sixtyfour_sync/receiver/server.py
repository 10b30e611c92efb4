"""``sixtyfour-sync webhooks serve``: receive Sixtyfour's deliveries and finish the jobs they announce.

Per delivery, within Sixtyfour's 10 s: check the signature (401 and nothing changes when it fails), record
the event id in the ledger (a second delivery of one event is acknowledged and changes nothing), find the
task's job, queue it and answer 202. The :class:`~sixtyfour_sync.receiver.finisher.Finisher` then finishes
it in the background under the sync's lease (fresh links through job-status, download, merge). A task the
ledger does not know is acknowledged (200) and ignored. When the ledger cannot be reached the answer is 503,
so Sixtyfour delivers again later.

The listener speaks plain HTTP: Sixtyfour delivers only to a public HTTPS address, so it runs behind one
(a load balancer, a reverse proxy, a tunnel) whose URL is the sync's ``webhook_url``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sixtyfour_sync._redact import Secret
from sixtyfour_sync.engine.ledger import Job, Ledger
from sixtyfour_sync.engine.states import ACTIVE
from sixtyfour_sync.receiver.delivery import MAX_BODY_BYTES, Delivery, Rejected, read_delivery
from sixtyfour_sync.receiver.finisher import Finisher

__all__ = ["Receiver", "WebhookServer"]

log = logging.getLogger("sixtyfour_sync.receiver")

LedgersFn = Callable[[], AbstractContextManager[list[Ledger]]]
Answer = tuple[int, dict[str, Any]]


class Receiver:
    """What the HTTP layer hands each delivery to: check, dedupe, look up, queue. One delivery at a time."""

    def __init__(
        self,
        secret: Secret,
        ledgers: LedgersFn,
        finisher: Finisher,
        *,
        tolerance: float = 300,
        answer_within: float = 8.0,
    ) -> None:
        self.secret = secret
        self.ledgers = ledgers
        self.finisher = finisher
        self.tolerance = tolerance
        #: Sixtyfour wants an answer within 10 s: ledger work that takes longer is answered 503 (and finishes
        #: anyway; the retry is then a duplicate).
        self.answer_within = answer_within
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sixtyfour-webhook-ledger")

    def handle(self, headers: Mapping[str, str], body: bytes) -> Answer:
        """The HTTP status and JSON body to answer a delivery with."""
        try:
            delivery = read_delivery(headers, body, self.secret, tolerance=self.tolerance)
        except Rejected as exc:
            log.warning("webhook: refused a delivery (%d): %s", exc.status, exc.message)
            return exc.status, {"error": exc.message}
        work = self._worker.submit(self._recorded, delivery)
        try:
            return work.result(timeout=self.answer_within)
        except FutureTimeout:
            log.warning("webhook: event %s is taking long to record; asking for a retry", delivery.event_id)
        except Exception as exc:  # the warehouse is down or locked: Sixtyfour retries a non-2xx
            log.warning("webhook: event %s could not be recorded (%s); asking for a retry", delivery.event_id, exc)
        return 503, {"error": "the ledger cannot be reached; deliver again later"}

    def _recorded(self, delivery: Delivery) -> Answer:
        with self.ledgers() as ledgers:  # one delivery at a time: the worker is a single thread
            return self._route(delivery, ledgers)

    def close(self) -> None:
        """Let the ledger work under way finish."""
        self._worker.shutdown(wait=True)

    def _route(self, d: Delivery, ledgers: list[Ledger]) -> Answer:
        if any(ledger.event_seen(d.event_id) for ledger in ledgers):
            log.info("webhook: event %s seen before (attempt %s); nothing to do", d.event_id, d.attempt)
            return 200, {"status": "duplicate", "event_id": d.event_id}
        for task in d.task_ids:
            for ledger in ledgers:
                job = ledger.job_by_task(task)
                if job is not None:
                    return self._known(d, ledger, task, job)
        if ledgers:
            named = d.task_ids[0] if d.task_ids else None
            if not ledgers[0].record_event(
                d.event_id, event_type=d.event_type, task_id=named, attempt=d.attempt, outcome="unknown_task"
            ):
                return 200, {"status": "duplicate", "event_id": d.event_id}
        for task in d.task_ids[:1]:
            # a run may be about to record this task (its job ended before the run wrote the task id down)
            self.finisher.enqueue(task, None)
        log.info("webhook: event %s names no task in the ledger (%s)", d.event_id, ", ".join(d.task_ids) or "none")
        return 200, {"status": "ignored", "reason": "unknown task", "event_id": d.event_id}

    def _known(self, d: Delivery, ledger: Ledger, task: str, job: Job) -> Answer:
        active = job.state in ACTIVE
        outcome = "queued" if active else f"already {job.state.value}"
        if not ledger.record_event(
            d.event_id, event_type=d.event_type, task_id=task, attempt=d.attempt, outcome=outcome, job=job
        ):
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
    timeout = 10  # a slow client must not hold a thread

    def do_POST(self) -> None:
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.strip().isdigit():
            self._answer(411, {"error": "Content-Length is required"})
            return
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            self._answer(413, {"error": f"the body is over {MAX_BODY_BYTES:,} bytes"})
            return
        body = self.rfile.read(length)
        headers = {k: v for k, v in self.headers.items()}
        status, answer = self.server.receiver.handle(headers, body)
        self._answer(status, answer)

    def do_GET(self) -> None:
        if self.path.split("?")[0].rstrip("/") in ("", "/healthz"):
            self._answer(200, {"status": "ok", "queued": len(self.server.receiver.finisher.pending())})
        else:
            self._answer(404, {"error": "not found"})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line holds the path, which may carry a token of the webhook URL: never log it.
        log.debug("webhook: %s answered", self.command)


class WebhookServer(ThreadingHTTPServer):
    """The listener: a thread per request, each handed to the :class:`Receiver`."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], receiver: Receiver) -> None:
        self.receiver = receiver
        super().__init__(address, _Handler)

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
