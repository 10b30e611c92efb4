"""Client-side submission limit: at most N submissions per rolling window per API key.

The API allows 10 submissions per minute per organisation and answers 429 beyond. Pacing ourselves
avoids burning retries (and log noise) on 429s. One :class:`SubmissionLimiter` tracks every key it is
given, keyed by a SHA-256 of the key (the key itself is never stored), and is safe to share between
client instances, threads and asyncio tasks. :func:`shared_limiter` is the process-wide instance that
clients use unless given their own.

A slot is reserved *before* a submission is sent (so concurrent senders cannot overshoot), and given
back when the answer shows the server did not count it (an idempotent replay, or nothing was sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sixtyfour_sync._redact import Secret

__all__ = ["KeyLimiter", "Reservation", "SubmissionLimiter", "key_fingerprint", "shared_limiter"]


def key_fingerprint(api_key: str | Secret) -> str:
    """A stable, non-reversible id for an API key (the registry never holds the key itself)."""
    raw = api_key.get() if isinstance(api_key, Secret) else api_key
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]


@dataclass(eq=False)
class Reservation:
    """One reserved submission slot; hand it back with :meth:`SubmissionLimiter.release`."""

    key_id: str
    at: float
    released: bool = field(default=False)


@dataclass
class _KeyWindow:
    slots: deque[Reservation] = field(default_factory=deque)
    blocked_until: float = 0.0


class SubmissionLimiter:
    """At most ``limit`` submissions per rolling ``window`` seconds for each API key.

    ``clock`` must be monotonic; ``sleep``/``async_sleep`` are injected so tests control time.
    """

    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError("SubmissionLimiter.limit must be at least 1")
        if window <= 0:
            raise ValueError("SubmissionLimiter.window must be positive")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._lock = threading.Lock()
        self._keys: dict[str, _KeyWindow] = {}

    def __repr__(self) -> str:
        return f"SubmissionLimiter(limit={self.limit}, window={self.window}, keys={len(self._keys)})"

    def _try_reserve(self, key_id: str) -> Reservation | float:
        """Reserve a slot now, or return how many seconds until one may free up."""
        with self._lock:
            now = self._clock()
            state = self._keys.setdefault(key_id, _KeyWindow())
            horizon = now - self.window
            while state.slots and state.slots[0].at <= horizon:
                state.slots.popleft()
            if state.blocked_until > now:
                return state.blocked_until - now
            if len(state.slots) < self.limit:
                reservation = Reservation(key_id, now)
                state.slots.append(reservation)
                return reservation
            return state.slots[0].at + self.window - now

    def acquire(self, api_key: str | Secret) -> Reservation:
        """Block until a submission slot for ``api_key`` is free, then reserve it."""
        key_id = key_fingerprint(api_key)
        while True:
            outcome = self._try_reserve(key_id)
            if isinstance(outcome, Reservation):
                return outcome
            self._sleep(outcome)

    async def acquire_async(self, api_key: str | Secret) -> Reservation:
        """Like :meth:`acquire`, but waits with ``async_sleep`` so the event loop keeps running."""
        key_id = key_fingerprint(api_key)
        while True:
            outcome = self._try_reserve(key_id)
            if isinstance(outcome, Reservation):
                return outcome
            await self._async_sleep(outcome)

    def release(self, reservation: Reservation) -> None:
        """Give a slot back: the server did not count that submission (a replay, or nothing was sent)."""
        with self._lock:
            if reservation.released:
                return
            reservation.released = True
            state = self._keys.get(reservation.key_id)
            if state is None:
                return
            # A reservation may already have aged out of the window.
            with contextlib.suppress(ValueError):
                state.slots.remove(reservation)

    def penalize(self, api_key: str | Secret, retry_after: float | None) -> None:
        """The server answered 429: send nothing more for this key for ``retry_after`` seconds.

        Without a Retry-After, treat the window as full: no new slot until the oldest one ages out.
        """
        key_id = key_fingerprint(api_key)
        with self._lock:
            now = self._clock()
            state = self._keys.setdefault(key_id, _KeyWindow())
            if retry_after is not None and retry_after > 0:
                until = now + retry_after
            elif state.slots:
                until = state.slots[0].at + self.window
            else:
                until = now
            state.blocked_until = max(state.blocked_until, until)

    def bind(self, api_key: str | Secret) -> KeyLimiter:
        """A view of this limiter for one key, so callers need not pass the key around."""
        return KeyLimiter(self, api_key if isinstance(api_key, Secret) else Secret(api_key))

    def in_window(self, api_key: str | Secret) -> int:
        """How many submissions of ``api_key`` currently count against the window."""
        key_id = key_fingerprint(api_key)
        with self._lock:
            state = self._keys.get(key_id)
            if state is None:
                return 0
            horizon = self._clock() - self.window
            return sum(1 for r in state.slots if r.at > horizon)


class KeyLimiter:
    """One API key's share of a :class:`SubmissionLimiter` (same window, same registry)."""

    def __init__(self, limiter: SubmissionLimiter, api_key: Secret) -> None:
        self.limiter = limiter
        self._key = api_key

    def __repr__(self) -> str:
        return f"KeyLimiter(key={key_fingerprint(self._key)[:8]}..., limiter={self.limiter!r})"

    def acquire(self) -> Reservation:
        """Block until a slot is free, then reserve it."""
        return self.limiter.acquire(self._key)

    async def acquire_async(self) -> Reservation:
        """Wait (without blocking the event loop) until a slot is free, then reserve it."""
        return await self.limiter.acquire_async(self._key)

    def release(self, reservation: Reservation) -> None:
        """Give a slot back (a replay, or nothing was sent)."""
        self.limiter.release(reservation)

    def penalize(self, retry_after: float | None) -> None:
        """The server answered 429: hold further submissions."""
        self.limiter.penalize(self._key, retry_after)

    def in_window(self) -> int:
        """Submissions currently counted in the window."""
        return self.limiter.in_window(self._key)


_shared: SubmissionLimiter | None = None
_shared_lock = threading.Lock()


def shared_limiter() -> SubmissionLimiter:
    """The process-wide limiter (10 per 60 s per key) that every client uses by default."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SubmissionLimiter()
        return _shared
