"""Ctrl-C and SIGTERM: one request to stop a run, however many times the signal is delivered.

A run stopped by a signal stops submitting, records the calls under way, closes its run as ``interrupted``
and prints its summary (:class:`~sixtyfour_sync.engine.jobs.scheduler.StopToken`). A second request quits at
once: the ledger is safe at every instant, and the next run picks up the jobs in flight.

One request often arrives as several signals: a terminal's Ctrl-C and a CI runner's cancel signal the whole
process group, and ``timeout`` sends its signal to the child and then to the group again. So a signal within
:data:`REPEAT_WINDOW_SECONDS` of the first is the same request; only a later one quits at once.

The signals are read on a thread of their own, from the wakeup file descriptor the interpreter writes each
signal's number to as it arrives (:func:`signal.set_wakeup_fd`). The Python-level handler does nothing: nothing
runs on the main thread between two of its instructions (it may hold a lock the handler would need, or be
inside a database driver's call), no ``KeyboardInterrupt`` is raised in the middle of a ledger write, and a
second Ctrl-C quits even while the main thread waits in C code.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Literal

from sixtyfour_sync.engine.jobs.scheduler import StopToken

__all__ = ["REPEAT_WINDOW_SECONDS", "Repeats", "handle_signals"]

log = logging.getLogger("sixtyfour_sync")

#: Signals this close to the first are the same request to stop (a process group signalled, twice).
REPEAT_WINDOW_SECONDS = 1.0

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

Verdict = Literal["stop", "repeat", "quit"]


class Repeats:
    """What each signal means: the first stops, one within ``window`` seconds of it repeats it, a later one quits."""

    def __init__(self, window: float = REPEAT_WINDOW_SECONDS) -> None:
        self.window = window
        self.first_at: float | None = None

    def see(self, now: float) -> Verdict:
        """The verdict on a signal arriving at ``now`` (a monotonic time)."""
        if self.first_at is None:
            self.first_at = now
            return "stop"
        return "repeat" if now - self.first_at < self.window else "quit"


def signal_name(signum: int) -> str:
    """``Ctrl-C`` for SIGINT, the signal's name otherwise."""
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


class _Watcher:
    """The thread that reads signal numbers from the wakeup socket and acts on them."""

    def __init__(
        self, token: StopToken, on_first: Callable[[str], None] | None, window: float, reader: socket.socket
    ) -> None:
        self.token, self.on_first, self.reader = token, on_first, reader
        self.repeats = Repeats(window)

    @property
    def stopped(self) -> bool:
        """Whether a signal asked the token to stop."""
        return self.repeats.first_at is not None

    def run(self) -> None:
        while True:
            try:
                data = self.reader.recv(64)
            except OSError:
                return
            if not data:  # the block ended: the writing end is closed
                return
            for signum in data:
                if signum in STOP_SIGNALS:
                    self._seen(signum)

    def _seen(self, signum: int) -> None:
        name = signal_name(signum)
        verdict = self.repeats.see(time.monotonic())
        if verdict == "stop":
            self.token.request(f"stopped by {name}", signum)
            if self.on_first is not None:
                self.on_first(name)
        elif verdict == "repeat":
            log.debug("%s again within %.1fs of the first: the same request to stop", name, self.repeats.window)
        else:
            log.warning("%s again: quitting at once; the next `sixtyfour-sync run` picks up the jobs in flight", name)
            os._exit(128 + signum)


def _noted(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: the signal was already written to the wakeup socket; nothing more to do here."""


@contextmanager
def handle_signals(
    token: StopToken,
    on_first: Callable[[str], None] | None = None,
    *,
    window: float = REPEAT_WINDOW_SECONDS,
) -> Iterator[StopToken]:
    """While the block runs, SIGINT/SIGTERM ask ``token`` to stop; one ``window`` s or more after the first quits.

    ``on_first`` is called (on the signal thread) with ``Ctrl-C`` or ``SIGTERM`` when the first one arrives.
    When the block ends after a signal asked to stop, both signals stay ignored: the process is on its way out
    and a late repeat must not cut its summary or its exit code short. Otherwise the previous handlers (and
    wakeup file descriptor) come back. Only the main thread can install handlers; elsewhere this does nothing
    (the caller's token still works).
    """
    if threading.current_thread() is not threading.main_thread():
        yield token
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    watcher = _Watcher(token, on_first, window, reader)
    thread = threading.Thread(target=watcher.run, name="sixtyfour-signals", daemon=True)
    thread.start()
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    try:
        for s in STOP_SIGNALS:
            signal.signal(s, _noted)
        yield token
    finally:
        for s, h in previous.items():  # (None: a handler not set from Python, taken as the default)
            signal.signal(s, signal.SIG_IGN if watcher.stopped else signal.SIG_DFL if h is None else h)
        signal.set_wakeup_fd(previous_fd)
        writer.close()  # the thread reads what is left, then the end of the stream
        thread.join(timeout=5.0)
        reader.close()
