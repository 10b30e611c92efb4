"""A delivery between the request thread that answers it and the ledger worker that records it.

The rule it keeps: an event answered anything but 2xx leaves nothing in the ledger, so Sixtyfour's retry is
recorded as new (never answered "duplicate"). The request thread and the worker agree on the answer under one
lock: either the worker's answer is handed over (:meth:`Pending.finish` returns True) or the request has given
up and answered 503 (it returns False), never both. A record the worker made for a delivery whose answer is
not 2xx (the request gave up, or the work failed after the record) is taken back by the worker
(server.py, ``Receiver._one``).
"""

from __future__ import annotations

import threading
from typing import Any

from sixtyfour_sync.engine.ledger.store import Ledger
from sixtyfour_sync.receiver.delivery import Delivery

__all__ = ["ABANDONED", "LATE", "QUEUED", "RECORDED", "RECORDING", "WORKING", "Answer", "Pending"]

Answer = tuple[int, dict[str, Any]]

# What became of a delivery handed to the ledger worker (guarded by its lock):
QUEUED = "queued"  # waiting for the worker
WORKING = "working"  # the worker reads the ledger for it; nothing written yet
RECORDING = "recording"  # the statement recording it is under way
RECORDED = "recorded"  # recorded (or found recorded): the answer follows at once
ABANDONED = "abandoned"  # answered 503 before anything was written: the worker writes nothing
LATE = "late"  # answered 503 once the recording had begun: the worker takes its record back


class Pending:
    """One delivery in flight between its request and the ledger worker."""

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.lock = threading.Lock()
        self.state = QUEUED
        self.done = threading.Event()
        self.answer: Answer | None = None
        #: The ledger the worker recorded the event in (None: it wrote nothing for this delivery).
        self.recorded_in: Ledger | None = None
        #: The task and sync the delivery was queued to finish (finished even if its record cannot be taken back).
        self.task: tuple[str, str | None] | None = None

    def take(self) -> bool:
        """The worker starts on it, unless its request was answered already."""
        with self.lock:
            if self.state != QUEUED:
                return False
            self.state = WORKING
            return True

    def finish(self, answer: Answer) -> bool:
        """Hand the worker's answer to the request; False when the request answered 503 already."""
        with self.lock:
            if self.state in (ABANDONED, LATE):
                return False
            if not self.done.is_set():
                self.answer = answer
                self.done.set()
            return True

    def wait(self, within: float, grace_until: float) -> Answer | None:
        """The worker's answer, or None (the request answers 503) when it does not come within ``within`` s, or
        by ``grace_until`` s when the recording statement is under way by then."""
        if self.done.wait(within):
            return self.answer
        with self.lock:
            if self.done.is_set():
                return self.answer
            if self.state in (QUEUED, WORKING):
                self.state = ABANDONED
                return None
        # The statement recording it is under way: a moment more, still within Sixtyfour's 10 s.
        if self.done.wait(max(0.0, grace_until - within)):
            return self.answer
        with self.lock:
            if self.done.is_set():
                return self.answer
            self.state = LATE
            return None
