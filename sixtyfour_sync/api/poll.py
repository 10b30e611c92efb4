"""A pure poller: how long to wait before asking for a job's status again.

A state object in the style of dlt's paginators: the engine's loop asks :meth:`JobPoller.next_delay`
with the last status it saw, sleeps that long (or stops on None) and polls again.
"""

from __future__ import annotations

import math
import os

from sixtyfour_sync.api.models import JobStatus, is_terminal_status
from sixtyfour_sync.errors import ConfigError, ConfigProblem

__all__ = ["DEFAULT_POLL_INTERVAL", "POLL_INTERVAL_ENV", "JobPoller", "poll_interval_from_env"]

POLL_INTERVAL_ENV = "SIXTYFOUR_SYNC_POLL_INTERVAL"
DEFAULT_POLL_INTERVAL = 5.0


def poll_interval_from_env(default: float = DEFAULT_POLL_INTERVAL) -> float:
    """Seconds before the first poll, from ``SIXTYFOUR_SYNC_POLL_INTERVAL`` (a non-negative number)."""
    raw = os.environ.get(POLL_INTERVAL_ENV)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ConfigError(
            problems=[
                ConfigProblem(
                    file=None,
                    path=POLL_INTERVAL_ENV,
                    message=f"must be a non-negative number of seconds, got {raw!r}",
                    hint="e.g. SIXTYFOUR_SYNC_POLL_INTERVAL=5",
                )
            ]
        )
    return value


class JobPoller:
    """Waits ``initial`` seconds before the first poll, then ``factor`` times longer each time, at most
    ``cap``. ``initial`` defaults to ``SIXTYFOUR_SYNC_POLL_INTERVAL`` or 5 s."""

    def __init__(self, initial: float | None = None, factor: float = 1.5, cap: float = 60.0) -> None:
        if initial is None:
            initial = poll_interval_from_env()
        if initial < 0 or cap < 0 or factor < 1:
            raise ValueError("JobPoller needs initial >= 0, cap >= 0 and factor >= 1")
        self.initial = float(initial)
        self.factor = float(factor)
        self.cap = float(cap)
        self._next = min(self.initial, self.cap)
        self.polls = 0

    def __repr__(self) -> str:
        return f"JobPoller(initial={self.initial}, factor={self.factor}, cap={self.cap}, polls={self.polls})"

    def next_delay(self, status: JobStatus | str | None) -> float | None:
        """Seconds to wait before the next poll, or None when ``status`` ends the job."""
        if isinstance(status, JobStatus):
            if status.is_terminal:
                return None
        elif status is not None and is_terminal_status(status):
            return None
        delay = self._next
        # A zero initial interval (tests, demo) must still grow, or a stuck job would spin the CPU.
        grown = delay * self.factor if delay > 0 else min(0.05, self.cap)
        self._next = min(grown, self.cap)
        self.polls += 1
        return delay

    def reset(self) -> None:
        """Start again from ``initial`` (e.g. after a job was resubmitted)."""
        self._next = min(self.initial, self.cap)
        self.polls = 0
