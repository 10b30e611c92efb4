"""Pure retry decisions and backoff arithmetic."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from email.utils import format_datetime

import httpx
import pytest

from sixtyfour_sync.api import RetryPolicy, backoff_delay, parse_retry_after, should_retry
from sixtyfour_sync.api.errors import ServerError


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    assert should_retry(status)


@pytest.mark.parametrize("status", [200, 400, 401, 402, 403, 404, 409, 413, 422])
def test_not_retryable_statuses(status: int) -> None:
    assert not should_retry(status)


def test_exceptions() -> None:
    request = httpx.Request("GET", "https://x.test/")
    assert should_retry(None, httpx.ConnectError("refused", request=request))
    assert should_retry(None, httpx.ReadTimeout("slow", request=request))
    assert should_retry(None, httpx.RemoteProtocolError("peer closed", request=request))
    assert should_retry(None, ServerError("x"))
    assert not should_retry(None, httpx.UnsupportedProtocol("ftp", request=request))
    assert not should_retry(None, ValueError("x"))
    assert not should_retry(None, None)


def test_full_jitter_exact_values() -> None:
    rng, mirror = random.Random(3), random.Random(3)
    waits = [backoff_delay(n, base=1.0, cap=8.0, rng=rng) for n in range(1, 7)]
    expected = [mirror.uniform(0, min(8.0, 2.0 ** (n - 1))) for n in range(1, 7)]
    assert waits == expected
    assert all(0 <= w <= 8.0 for w in waits)


def test_huge_attempt_does_not_overflow() -> None:
    assert 0 <= backoff_delay(10_000, base=1.0, cap=30.0, rng=random.Random(1)) <= 30.0


def test_retry_after_honoured_and_capped() -> None:
    rng = random.Random(0)
    assert backoff_delay(1, base=1.0, cap=8.0, retry_after=20.0, rng=rng) == 20.0
    assert backoff_delay(1, base=1.0, cap=8.0, retry_after=5000.0, rng=rng) == 60.0
    assert backoff_delay(1, base=1.0, cap=8.0, retry_after=5000.0, rng=rng, retry_after_cap=90.0) == 90.0
    assert backoff_delay(1, base=1.0, cap=8.0, retry_after=0.0, rng=rng) == 0.0


def test_parse_retry_after_seconds_and_date() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after(" 2.5 ", now=now) == 2.5
    when = datetime.fromtimestamp(now + 30, tz=timezone.utc)
    assert parse_retry_after(format_datetime(when, usegmt=True), now=now) == 30.0
    past = datetime.fromtimestamp(now - 30, tz=timezone.utc)
    assert parse_retry_after(format_datetime(past, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after("", now=now) is None
    assert parse_retry_after(None, now=now) is None
    assert parse_retry_after("-5", now=now) == 0.0
    assert parse_retry_after("nan", now=now) is None


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="attempt counts from 1"):
        backoff_delay(0, base=1, cap=1, rng=random.Random())
