"""Faults the emulator applies to API requests: injected ones first, then the seeded random ones."""

from __future__ import annotations

import math
import random
import threading

from werkzeug.wrappers import Response

from sixtyfour_sync.emulator.models import InjectedFault
from sixtyfour_sync.emulator.responses import error
from sixtyfour_sync.emulator.settings import FaultSettings

__all__ = ["FaultPlan", "fault_response", "truncated"]


class FaultPlan:
    """Injected faults (each for its next ``times`` matching requests) and the random fault rates."""

    def __init__(self, settings: FaultSettings) -> None:
        self.settings = settings
        self._faults: list[InjectedFault] = []
        self._rng = random.Random(settings.seed)
        self._lock = threading.Lock()

    def add(self, fault: InjectedFault) -> None:
        """Queue an injected fault."""
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        """Forget every injected fault that has not fired yet."""
        with self._lock:
            self._faults.clear()

    def roll(self) -> float:
        """One draw of the seeded generator (job outcomes use it too, so runs stay reproducible)."""
        with self._lock:
            return self._rng.random()

    def take(self, method: str, path: str) -> InjectedFault | None:
        """The fault for this request, if any (an injected one is used up by one match)."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
            s = self.settings
            if not s.any_request_faults:
                return None
            rolls = [self._rng.random() for _ in range(5)]
        is_submit = path.startswith("/bulk-intelligence/")
        is_download = path.startswith("/downloads/")
        if rolls[0] < s.drop_connection_rate:
            # On a submission the answer is lost after the job started: the case replays exist for.
            return InjectedFault("*", "/", drop=True, phase="after" if is_submit else "before")
        if rolls[1] < s.error_5xx_rate:
            return InjectedFault("*", "/", status=503 if rolls[4] < 0.5 else 500)
        if rolls[2] < s.burst_429_rate:
            return InjectedFault("*", "/", status=429, retry_after=1)
        delay = s.slow_response_seconds if rolls[3] < s.slow_response_rate else 0.0
        truncate = is_download and rolls[4] < s.truncate_download_rate
        if delay or truncate:
            return InjectedFault("*", "/", delay=delay, truncate=truncate)
        return None


def fault_response(fault: InjectedFault) -> Response:
    """The documented error body of the fault's status (429/503 with Retry-After)."""
    assert fault.status is not None
    headers: dict[str, str] = {}
    if fault.retry_after is not None or fault.status == 429:
        headers["Retry-After"] = str(math.ceil(fault.retry_after if fault.retry_after is not None else 1))
    return error(fault.status, headers=headers)


def truncated(response: Response) -> Response:
    """Half of the body under the full Content-Length (downloads truncate themselves while streaming)."""
    if response.direct_passthrough:
        return response
    data = response.get_data()
    cut = Response(
        iter([data[: len(data) // 2]]),
        status=response.status_code,
        headers=response.headers,
        direct_passthrough=True,
    )
    cut.headers["Content-Length"] = str(len(data))
    return cut
