"""The submission limiter: a rolling window per API key, shared by threads and asyncio tasks."""

from __future__ import annotations

import asyncio
import threading
import time

from api_fakes import FakeClock

from sixtyfour_sync._redact import Secret
from sixtyfour_sync.api import SubmissionLimiter, shared_limiter
from sixtyfour_sync.api.ratelimit import key_fingerprint


def test_eleventh_submission_waits_until_first_slot_frees() -> None:
    clock = FakeClock(start=0.0)
    limiter = SubmissionLimiter(10, 60.0, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        limiter.acquire("k")
        clock.now += 1.0  # submissions at t = 0, 1, ..., 9
    assert clock.now == 10.0
    limiter.acquire("k")
    # The first slot (t=0) frees at t=60: wait exactly 50 s.
    assert clock.sleeps == [50.0]
    assert clock.now == 60.0
    assert limiter.in_window("k") == 10


def test_replay_release_frees_the_slot() -> None:
    clock = FakeClock(start=0.0)
    limiter = SubmissionLimiter(2, 60.0, clock=clock, sleep=clock.sleep)
    first = limiter.acquire("k")
    limiter.acquire("k")
    limiter.release(first)
    limiter.release(first)  # twice is harmless
    limiter.acquire("k")
    assert clock.sleeps == []
    assert limiter.in_window("k") == 2


def test_keys_are_separate_and_never_stored() -> None:
    clock = FakeClock(start=0.0)
    limiter = SubmissionLimiter(1, 60.0, clock=clock, sleep=clock.sleep)
    limiter.acquire("key-a")
    limiter.acquire(Secret("key-b"))
    assert clock.sleeps == []
    assert limiter.in_window("key-a") == 1
    assert limiter.in_window(Secret("key-a")) == 1
    assert "key-a" not in repr(limiter.__dict__)
    assert key_fingerprint("key-a") != key_fingerprint("key-b")
    assert key_fingerprint("key-a") == key_fingerprint(Secret("key-a"))


def test_penalize_honours_retry_after() -> None:
    clock = FakeClock(start=0.0)
    limiter = SubmissionLimiter(10, 60.0, clock=clock, sleep=clock.sleep)
    limiter.acquire("k")
    limiter.penalize("k", 30.0)
    limiter.acquire("k")
    assert clock.sleeps == [30.0]


def test_penalize_without_retry_after_waits_for_the_window() -> None:
    clock = FakeClock(start=0.0)
    limiter = SubmissionLimiter(10, 60.0, clock=clock, sleep=clock.sleep)
    limiter.acquire("k")
    clock.now = 5.0
    limiter.penalize("k", None)
    limiter.acquire("k")
    assert clock.sleeps == [55.0]


def test_shared_limiter_is_process_wide() -> None:
    assert shared_limiter() is shared_limiter()
    assert shared_limiter().limit == 10 and shared_limiter().window == 60.0


def test_threads_never_exceed_the_window() -> None:
    limit, window = 3, 0.3
    limiter = SubmissionLimiter(limit, window)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        limiter.acquire("threaded")
        with lock:
            stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    assert len(stamps) == 7
    stamps.sort()
    for i in range(len(stamps) - limit):
        # Any limit+1 consecutive acquisitions span at least one window.
        assert stamps[i + limit] - stamps[i] >= window - 0.01


def test_asyncio_tasks_share_the_window() -> None:
    clock = FakeClock(start=0.0)
    slept: list[float] = []

    async def fake_async_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds
        await asyncio.sleep(0)

    limiter = SubmissionLimiter(2, 60.0, clock=clock, sleep=clock.sleep, async_sleep=fake_async_sleep)

    async def main() -> list[float]:
        async def one() -> float:
            await limiter.acquire_async("async-key")
            return clock.now

        return list(await asyncio.gather(*(one() for _ in range(5))))

    times = sorted(asyncio.run(main()))
    assert times[:2] == [0.0, 0.0]
    assert times[2] >= 60.0 and times[4] >= 120.0
    assert slept  # tasks waited through the injected sleep, not the event loop's real clock


def test_bound_view_shares_the_window() -> None:
    clock = FakeClock(start=0.0)
    limiter = SubmissionLimiter(1, 60.0, clock=clock, sleep=clock.sleep)
    bound = limiter.bind("bound-key")
    reservation = bound.acquire()
    assert limiter.in_window("bound-key") == 1 and bound.in_window() == 1
    assert "bound-key" not in repr(bound)
    bound.release(reservation)
    asyncio.run(bound.acquire_async())
    bound.penalize(10.0)
    limiter.acquire("bound-key")
    assert clock.sleeps == [10.0, 50.0]  # the penalty, then the rest of the full window
