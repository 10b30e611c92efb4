"""Finishing jobs in the background once a delivery says they ended: one worker thread, retries with backoff.

The HTTP handler only records the event and queues the task; this worker does the slow part (job-status until
the API ends the job, then fresh links, download, merge) through ``finish(sync, tasks)``, which takes the
sync's lease only once the API has ended the job, to merge. It knows nothing of HTTP or warehouses: it is given

- ``finish(sync, tasks)``: finish those tasks of a sync; answers each task's ledger state afterwards
  (``"locked"`` when another run holds the lease: that run finishes them; an active state such as
  ``"submitted"`` while the API has not ended the job);
- ``lookup(task)``: the sync a task belongs to, or None while the ledger does not know it.

A task still unfinished afterwards (the API had not ended it yet, the lease was held, the warehouse was
down) is tried again later, with backoff, until ``give_up_after`` seconds from its first delivery; whatever
is left then is finished by the next ``run``, as any job in flight is. A delivery for a task the ledger does
not know yet (a ``run`` may be about to record it) is looked up again for ``unknown_grace`` seconds, then
ignored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sixtyfour_sync.engine.jobs.states import ACTIVE

__all__ = ["Finisher"]

log = logging.getLogger("sixtyfour_sync.receiver")

#: States after which nothing is left to do for a webhook (merged, failed, held for a person...).
_UNFINISHED = {s.value for s in ACTIVE} | {"locked", "error"}

FinishFn = Callable[[str, list[str]], Mapping[str, str | None]]
LookupFn = Callable[[str], "str | None"]


@dataclass
class _Item:
    task_id: str
    sync: str | None
    first_seen: float
    due: float
    delay: float


class Finisher:
    """A queue of tasks to finish, worked by one background thread."""

    def __init__(
        self,
        finish: FinishFn,
        lookup: LookupFn,
        *,
        give_up_after: float = 3600.0,
        unknown_grace: float = 60.0,
        first_retry: float = 2.0,
        max_retry: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self._finish = finish
        self._on_stop = on_stop
        self._lookup = lookup
        self.give_up_after = give_up_after
        self.unknown_grace = unknown_grace
        self.first_retry = first_retry
        self.max_retry = max_retry
        self._clock = clock
        self._items: dict[str, _Item] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        #: task id -> what became of it (for logs and tests): finished state, "ignored" or "gave up".
        self.outcomes: dict[str, str] = {}

    # -- queueing (any thread) ---------------------------------------------------------------------------

    def enqueue(self, task_id: str, sync: str | None) -> None:
        """Finish ``task_id`` (of ``sync``; None: look it up) as soon as the worker is free."""
        now = self._clock()
        with self._cond:
            item = self._items.get(task_id)
            if item is None:
                self._items[task_id] = _Item(task_id, sync, now, now, self.first_retry)
            else:  # a second event for a task already queued: try it now
                item.sync = item.sync or sync
                item.due = now
            self._cond.notify_all()

    def pending(self) -> list[str]:
        """The tasks queued or waiting for a retry."""
        with self._cond:
            return sorted(self._items)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued (tests); False on timeout."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._items:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    # -- the worker ----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread."""
        self._thread = threading.Thread(target=self._work, name="sixtyfour-webhook-finisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking new work; the finish under way ends (``on_stop`` asks it to, through its stop token)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._on_stop is not None:
            self._on_stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self.step(batch)
            except Exception:  # a bug here must not kill the receiver: log it, retry the tasks later
                log.exception("finishing %d task(s) failed; trying again later", len(batch))
                with self._cond:
                    for item in batch:
                        self._retry_later(item, self._clock())

    def _next_batch(self) -> list[_Item] | None:
        with self._cond:
            while not self._stopping:
                now = self._clock()
                due = [i for i in self._items.values() if i.due <= now]
                if due:
                    for i in due:
                        i.due = float("inf")  # being worked on
                    return due
                nxt = min((i.due for i in self._items.values()), default=None)
                self._cond.wait(0.5 if nxt is None else max(0.01, min(0.5, nxt - now)))
            return None

    def step(self, batch: list[_Item]) -> None:
        """Work one batch of due items (the worker's loop body; tests call it directly)."""
        by_sync: dict[str, list[_Item]] = {}
        for item in batch:
            if item.sync is None:
                item.sync = self._lookup(item.task_id)
            if item.sync is None:
                self._unknown(item)
            else:
                by_sync.setdefault(item.sync, []).append(item)
        for sync, items in by_sync.items():
            try:
                states = self._finish(sync, [i.task_id for i in items])
            except Exception as exc:
                log.warning("webhook: finishing %s failed (%s); trying again later", sync, exc)
                states = {i.task_id: "error" for i in items}
            now = self._clock()
            with self._cond:
                for item in items:
                    state = states.get(item.task_id)
                    if state in _UNFINISHED:
                        self._retry_later(item, now)
                    else:
                        self._done(item, state or "ignored")

    def _unknown(self, item: _Item) -> None:
        now = self._clock()
        with self._cond:
            if now - item.first_seen >= self.unknown_grace:
                log.info("webhook: task %s is not in the ledger; the delivery is ignored", item.task_id)
                self._done(item, "ignored")
            else:
                item.due, item.delay = now + item.delay, min(item.delay * 2, self.max_retry)
                self._cond.notify_all()

    def _retry_later(self, item: _Item, now: float) -> None:
        if now - item.first_seen >= self.give_up_after:
            log.warning(
                "webhook: task %s is still unfinished after %.0f s; the next `sixtyfour-sync run` finishes it",
                item.task_id,
                now - item.first_seen,
            )
            self._done(item, "gave up")
            return
        item.due, item.delay = now + item.delay, min(item.delay * 2, self.max_retry)
        self._cond.notify_all()

    def _done(self, item: _Item, outcome: str) -> None:
        self._items.pop(item.task_id, None)
        self.outcomes[item.task_id] = outcome
        self._cond.notify_all()
