"""Keeping secrets out of logs, errors and reprs.

Three tools, used at the boundaries:

- :class:`Secret` holds a credential; its ``str``/``repr`` never show the value.
- :func:`redact_url` turns a signed URL into something safe to print (scheme, host, path only).
- :class:`RedactingFilter` scrubs every registered secret and every signed query string from log
  records, including those emitted by httpx/httpcore, which log full request URLs.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "RedactingFilter",
    "Secret",
    "install_log_redaction",
    "redact",
    "redact_url",
    "register_secret",
    "sanitize",
]

_MASK = "***"
_registered: set[str] = set()
_lock = threading.Lock()
# A query string carrying a signature or token: anything after '?' in an http(s) URL.
_URL_QUERY = re.compile(r"(https?://[^\s'\"<>?#]+)\?[^\s'\"<>#]*")


def register_secret(value: str | None) -> None:
    """Remember a secret value so log redaction can scrub it wherever it appears."""
    if value and len(value) >= 4:
        with _lock:
            _registered.add(value)


def redact(text: str) -> str:
    """Return ``text`` with registered secrets and URL query strings masked."""
    if not text:
        return text
    with _lock:
        secrets = sorted(_registered, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, _MASK)
    return _URL_QUERY.sub(lambda m: f"{m.group(1)}?{_MASK}", text)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]")


def sanitize(text: object, limit: int = 500) -> str:
    """``text`` made safe to store and print anywhere (the ledger, JSON logs, a terminal).

    Secrets and signed URLs are masked, NUL and other control characters (which some warehouses refuse in
    text) are replaced, runs of whitespace are folded, and the result is cut to ``limit`` characters.
    """
    cleaned = _CONTROL.sub("?", redact(str(text)))
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > limit:
        cleaned = cleaned[: max(0, limit - 3)] + "..."
    return cleaned


def redact_url(url: object) -> str:
    """A printable form of a (possibly signed) URL: scheme, host and path, no query or fragment."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return _MASK
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, _MASK if parts.query else "", ""))


class Secret:
    """A credential that never prints itself.

    >>> s = Secret("sk-123")
    >>> str(s), repr(s)
    ('***', "Secret('***')")
    >>> s.get()
    'sk-123'
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)

    def get(self) -> str:
        """The secret value itself: pass it only to the code that must send it."""
        return self._value

    def __str__(self) -> str:
        return _MASK

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("Secret values are not picklable")


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets and signed URL query strings in every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not break logging
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        return True


_installed = False


def install_log_redaction() -> None:
    """Scrub secrets from every log record this process creates (idempotent).

    Logger filters do not reach child loggers (``httpcore.http11``...), and httpx logs whole request
    URLs, signed query strings included, at INFO. So redaction happens in the log record factory: every
    record, from any library, is cleaned when it is made, before any handler sees it.
    """
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()
    flt = RedactingFilter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        flt.filter(record)
        return record

    logging.setLogRecordFactory(factory)
