"""Threads and time: API calls on worker threads, their answers back to the main thread as events.

The main thread owns the warehouse connection and the ledger. Worker threads only call the API (and parse
results, which needs no warehouse); each call's answer, or its exception, comes back through one queue, so
every ledger write happens on the main thread, in order.

:class:`StopToken` is how a run is asked to stop (Ctrl-C, SIGTERM, an orchestrator): it stops submitting,
lets the calls under way finish and be recorded, and then returns. The signals reach it through
``engine/jobs/signals.py``.
"""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sixtyfour_sync.engine.events import ApiAnswer, Call, Event

__all__ = ["Scheduler", "StopToken"]


class StopToken:
    """A request to stop, with why (and the signal, when one asked)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None
        self.signum: int | None = None

    def request(self, reason: str, signum: int | None = None) -> None:
        """Ask every runner using this token to stop."""
        if not self._event.is_set():
            self.reason, self.signum = reason, signum
        self._event.set()

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking when a stop is asked for; whether one was."""
        return self._event.wait(max(0.0, timeout))

    @property
    def exit_code(self) -> int:
        """130 after SIGINT, 143 after SIGTERM (128 + the signal), 130 otherwise."""
        return 128 + (self.signum or signal.SIGINT)


class Scheduler:
    """A pool of API workers whose results come back as events, plus a queue for other producers."""

    def __init__(self, workers: int, name: str) -> None:
        self.events: queue.Queue[Event] = queue.Queue()
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix=name)
        self._busy = 0
        self._lock = threading.Lock()

    def call(self, call: Call, subject: Any, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on a worker; its value or exception comes back as an :class:`ApiAnswer` to ``call``."""
        with self._lock:
            self._busy += 1

        def done(fut: Future[Any]) -> None:
            # The answer is queued before the call stops counting as under way, so whoever sees no call
            # under way and an empty queue (:meth:`settled`) has every answer already handled.
            try:
                if not fut.cancelled():
                    exc = fut.exception()
                    self.events.put(ApiAnswer(call, subject, exc if exc is not None else fut.result()))
            finally:
                with self._lock:
                    self._busy -= 1

        self._pool.submit(fn).add_done_callback(done)

    @property
    def busy(self) -> int:
        """Calls under way."""
        with self._lock:
            return self._busy

    def settled(self) -> bool:
        """No call under way and no event waiting to be handled (every API answer has been seen)."""
        with self._lock:
            return self._busy == 0 and self.events.empty()

    def next_event(self, timeout: float) -> Event | None:
        """The next event, or None after ``timeout`` seconds."""
        try:
            return self.events.get(timeout=max(0.01, timeout))
        except queue.Empty:
            return None

    def shutdown(self) -> None:
        """Wait for calls under way; drop the ones not started."""
        self._pool.shutdown(wait=True, cancel_futures=True)
