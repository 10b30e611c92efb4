"""Keeping secrets out of logs, errors and reprs.

Three tools, used at the boundaries:

- :class:`Secret` holds a credential; its ``str``/``repr`` never show the value.
- :func:`redact_url` turns a signed URL into something safe to print (scheme, host, path only).
- :class:`RedactingFilter` scrubs every registered secret, every signed query string and the path of every
  signed download link from log records, on the package's loggers and on httpx/httpcore's, which log full
  request URLs.
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
    "redacting_filter",
    "register_link_path",
    "register_secret",
    "sanitize",
]

_MASK = "***"
_registered: set[str] = set()
_link_paths: dict[str, None] = {}
_lock = threading.Lock()
# A query string carrying a signature or token: anything after '?' in an http(s) URL.
_URL_QUERY = re.compile(r"(https?://[^\s'\"<>?#]+)\?[^\s'\"<>#]*")


def register_secret(value: str | None) -> None:
    """Remember a secret value so log redaction can scrub it wherever it appears."""
    if value and len(value) >= 4:
        with _lock:
            _registered.add(value)


def register_link_path(path: str) -> None:
    """Remember the path of a signed download link: it may carry a token, so logs show it masked.

    The most recent 2,000 paths are kept (a long-lived process sees many links; old ones have expired).
    """
    if path and len(path) >= 8:
        with _lock:
            if path in _link_paths:
                return
            _link_paths[path] = None
            while len(_link_paths) > 2000:
                del _link_paths[next(iter(_link_paths))]


def redact(text: str) -> str:
    """Return ``text`` with registered secrets, signed link paths and URL query strings masked."""
    if not text:
        return text
    with _lock:
        secrets = sorted(_registered, key=len, reverse=True)
        paths = [p for p in _link_paths if p in text]
    for s in secrets:
        if s in text:
            text = text.replace(s, _MASK)
    for p in sorted(paths, key=len, reverse=True):
        text = text.replace(p, "/" + _MASK)
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


#: Every logger this package logs on, and those of the HTTP stack it drives (httpx logs whole request URLs at
#: INFO, signed links included). A filter on a logger does not reach its children, so each is named.
REDACTED_LOGGERS = (
    "sixtyfour_sync",
    "sixtyfour_sync.api",
    "sixtyfour_sync.cli",
    "sixtyfour_sync.emulator",
    "sixtyfour_sync.engine",
    "sixtyfour_sync.engine.lease",
    "sixtyfour_sync.dagster",
    "sixtyfour_sync.dbt",
    "sixtyfour_sync.lineage",
    "sixtyfour_sync.selection",
    "sixtyfour_sync.progress",
    "sixtyfour_sync.receiver",
    "sixtyfour_sync.warehouse",
    "sixtyfour_sync.warehouse.bigquery",
    "sixtyfour_sync.warehouse.databricks",
    "sixtyfour_sync.warehouse.duckdb",
    "sixtyfour_sync.warehouse.snowflake",
    # --debug: the Databricks SDK logs response bodies, which hold presigned result links.
    "databricks.sdk",
    "sixtyfour_sync.webhooks",
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "werkzeug",
)
_FILTER = RedactingFilter()


def install_log_redaction() -> None:
    """Put the redacting filter on the package's loggers and the HTTP stack's (idempotent).

    The process-wide log record factory is left alone, so importing the package changes nothing in the
    logging of an orchestrator (Airflow, Dagster) that imports it; their own records are theirs.
    """
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def redacting_filter() -> RedactingFilter:
    """The filter itself, for handlers the package installs (the CLI's)."""
    return _FILTER
