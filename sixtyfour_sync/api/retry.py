"""Pure retry decisions and backoff arithmetic.

No sleeping and no clock here: the client injects ``sleep``, ``clock`` and ``rng`` so tests assert the
exact waits. Modelled on stripe-python's ``_http_client`` (retry on 429, 5xx and network errors; honour
Retry-After within a ceiling; capped exponential backoff with jitter).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime

import httpx

from sixtyfour_sync.api.errors import RetryableApiError

__all__ = ["RetryPolicy", "backoff_delay", "parse_retry_after", "should_retry"]

# 408 (request timeout) and 429 say "try again later"; every 5xx is the server's failure.
_RETRY_STATUSES = frozenset({408, 429})
# Transport errors that mean "the request never got a complete answer"; the others (an unsupported
# scheme, a malformed request, proxy misconfiguration) fail the same way every time.
_NOT_RETRYABLE_TRANSPORT = (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.ProxyError)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: ``max_attempts`` in all (first try included), waits of ``base * 2**n`` seconds
    with full jitter, at most ``cap``; a server's Retry-After is honoured up to ``retry_after_cap``."""

    max_attempts: int = 5
    base: float = 1.0
    cap: float = 30.0
    retry_after_cap: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.base < 0 or self.cap < 0 or self.retry_after_cap < 0:
            raise ValueError("RetryPolicy waits must not be negative")


def should_retry(status_code: int | None, exc: BaseException | None = None) -> bool:
    """Whether a request that got ``status_code`` (or raised ``exc``) may be sent again.

    Safe for submissions too, because every submission carries the same Idempotency-Key on each try.
    """
    if exc is not None:
        if isinstance(exc, RetryableApiError):
            return True
        if isinstance(exc, _NOT_RETRYABLE_TRANSPORT):
            return False
        return isinstance(exc, httpx.TransportError)
    if status_code is None:
        return False
    return status_code in _RETRY_STATUSES or 500 <= status_code <= 599


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random,
    retry_after_cap: float | None = None,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 = the first try failed).

    Without Retry-After: full jitter, ``uniform(0, min(cap, base * 2**(attempt-1)))``, which spreads
    clients that failed together. With Retry-After: exactly the server's wait, never less (waiting less
    only earns another 429), but at most ``retry_after_cap`` (default: ``max(cap, 60)``) so a bogus
    header cannot stall a run for hours.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    if retry_after is not None and retry_after >= 0:
        ceiling = retry_after_cap if retry_after_cap is not None else max(cap, 60.0)
        return min(retry_after, ceiling)
    # Cap the exponent too: 2**attempt overflows a float long before anyone waits that long.
    exponential = base * (2.0 ** min(attempt - 1, 62))
    return rng.uniform(0.0, min(cap, exponential))


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (``now`` is Unix time).

    Returns None for a missing or unreadable header; a date in the past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):
            return None
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are GMT; a naive result means the zone was "-0000" or missing.
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)
