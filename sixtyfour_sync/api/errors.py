"""Errors raised by the Sixtyfour API client.

The engine decides what to do by class, never by message text:

- :class:`FatalApiError` (400, 401, 403, 404, 409, 413, 422 and any other 4xx): retrying the same request
  cannot help; fix the input, the key or the access.
- :class:`InsufficientCreditsError` (402): the balance does not cover the estimate; nothing was charged.
  Stop the run cleanly and tell the user to top up.
- :class:`RetryableApiError` (429, 5xx, timeouts, dropped connections): the client already retried with
  backoff; a later run may succeed.
- :class:`DownloadError`: a result file could not be fetched after bounded link refreshes and retries.

Every message is safe to print: the API key and signed URLs never appear in it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from sixtyfour_sync._redact import redact, redact_url
from sixtyfour_sync.errors import SixtyfourSyncError

__all__ = [
    "ApiConnectionError",
    "ApiError",
    "ApiTimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "DownloadError",
    "FatalApiError",
    "InsufficientCreditsError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "RetryableApiError",
    "ServerError",
    "UnexpectedResponseError",
    "UnprocessableEntityError",
    "WebhookSignatureError",
    "error_class_for_status",
    "error_from_response",
    "extract_detail",
    "extract_request_id",
]

#: Headers that may carry the server's request id, most specific first.
REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-amzn-requestid", "x-correlation-id", "cf-ray")
_MAX_DETAIL = 500


class ApiError(SixtyfourSyncError):
    """The Sixtyfour API refused or failed a request.

    ``status_code`` is None when no response arrived (timeouts, dropped connections).
    ``detail`` is the API's own message, read from any documented error body shape.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        detail: str | None = None,
        request_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        # Server text may echo what it was sent; scrub it like everything else.
        message = redact(message)
        if request_id:
            message += f" (request id {request_id})"
        super().__init__(message, hint=hint)
        self.status_code = status_code
        self.detail = redact(detail) if detail is not None else None
        self.request_id = request_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code!r}, detail={self.detail!r})"


class FatalApiError(ApiError):
    """A 4xx answer that the same request will always get again."""


class BadRequestError(FatalApiError):
    """400: the file could not be read or parsed, or the request was malformed."""


class AuthenticationError(FatalApiError):
    """401: the API key is missing or invalid."""

    hint = "check SIXTYFOUR_API_KEY"


class PermissionDeniedError(FatalApiError):
    """403: the organisation has no access (e.g. the gated ``high`` tier)."""


class NotFoundError(FatalApiError):
    """404: the job (or resource) does not exist for this key."""


class ConflictError(FatalApiError):
    """409: the request conflicts with an earlier one (e.g. an Idempotency-Key in use)."""


class PayloadTooLargeError(FatalApiError):
    """413: the file or config is larger than the API accepts; split it and submit again."""


class UnprocessableEntityError(FatalApiError):
    """422: the config breaks the API's schema. ``errors`` holds the FastAPI validation entries."""

    def __init__(self, message: str, *, errors: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.errors = errors or []


class InsufficientCreditsError(ApiError):
    """402: the balance does not cover the estimated cost; nothing was charged."""

    hint = "top up the Sixtyfour balance, or lower refresh.limit / budget for this run"


class RetryableApiError(ApiError):
    """A failure that may pass on a later attempt (the client has already retried).

    ``retry_after`` is the server's Retry-After in seconds, when it sent one (429 and 503 often do).
    """

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class RateLimitError(RetryableApiError):
    """429: too many requests or submissions; ``retry_after`` is the server's wait in seconds, if any."""


class ServerError(RetryableApiError):
    """5xx: the API failed on its side."""


class ApiTimeoutError(RetryableApiError):
    """The request timed out (connect, write, read or pool)."""


class ApiConnectionError(RetryableApiError):
    """The connection failed or dropped before a complete response arrived."""


class UnexpectedResponseError(RetryableApiError):
    """A success status with a body the client cannot read (not JSON, or required keys missing).

    Retryable: every submission carries an Idempotency-Key, so asking again returns the same job.
    """


class DownloadError(ApiError):
    """A result file could not be downloaded after bounded link refreshes and retries."""


class WebhookSignatureError(SixtyfourSyncError):
    """A webhook delivery's signature is missing, malformed, stale or does not match."""


def extract_detail(body: object) -> tuple[str | None, list[dict[str, Any]]]:
    """Read the API's message from any of the three documented error body shapes.

    Returns ``(detail, validation_errors)``; the list is non-empty only for the FastAPI 422 shape.
    """
    if not isinstance(body, Mapping):
        return None, []
    detail = body.get("detail")
    if isinstance(detail, str):
        return detail, []
    if isinstance(detail, list):
        entries = [e for e in detail if isinstance(e, Mapping)]
        parts = []
        for entry in entries:
            loc = entry.get("loc")
            where = ".".join(str(p) for p in loc) if isinstance(loc, (list, tuple)) else None
            msg = str(entry.get("msg", entry.get("type", "invalid")))
            parts.append(f"{where}: {msg}" if where else msg)
        text = "; ".join(parts) if parts else json.dumps(detail)[:_MAX_DETAIL]
        return text, [dict(e) for e in entries]
    if detail is not None:
        return json.dumps(detail, default=str)[:_MAX_DETAIL], []
    error, message = body.get("error"), body.get("message")
    if isinstance(error, str) and isinstance(message, str):
        return (message if message.startswith(error) else f"{error}: {message}"), []
    if isinstance(message, str):
        return message, []
    if isinstance(error, str):
        return error, []
    return None, []


def extract_request_id(headers: Mapping[str, str] | httpx.Headers) -> str | None:
    """The server's request id from the response headers, when it sent one."""
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value[:200]
    return None


def error_class_for_status(status_code: int) -> type[ApiError]:
    """The error class for an HTTP status (only meaningful for non-2xx statuses)."""
    mapping: dict[int, type[ApiError]] = {
        400: BadRequestError,
        401: AuthenticationError,
        402: InsufficientCreditsError,
        403: PermissionDeniedError,
        404: NotFoundError,
        408: ApiTimeoutError,
        409: ConflictError,
        413: PayloadTooLargeError,
        422: UnprocessableEntityError,
        429: RateLimitError,
    }
    if status_code in mapping:
        return mapping[status_code]
    if status_code >= 500:
        return ServerError
    if status_code >= 400:
        return FatalApiError
    # A 1xx/3xx where a final 2xx was expected: the API does not redirect its endpoints.
    return UnexpectedResponseError


def error_from_response(
    response: httpx.Response, *, retry_after: float | None = None, what: str | None = None
) -> ApiError:
    """Build the error for a non-2xx response (its body must already be read).

    ``what`` describes the request (defaults to the method and redacted URL).
    """
    status = response.status_code
    try:
        body: object = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    detail, validation = extract_detail(body)
    if detail is None:
        text = response.text.strip() if response.content else ""
        detail = text[:_MAX_DETAIL] or response.reason_phrase or None
    request_id = extract_request_id(response.headers)
    if what is None:
        what = f"{response.request.method} {redact_url(response.request.url)}"
    message = f"{what} failed with HTTP {status}"
    if detail:
        message += f": {detail}"
    cls = error_class_for_status(status)
    kwargs: dict[str, Any] = {"status_code": status, "detail": detail, "request_id": request_id}
    if issubclass(cls, RetryableApiError):
        return cls(message, retry_after=retry_after, **kwargs)
    if cls is UnprocessableEntityError:
        return UnprocessableEntityError(message, errors=validation, **kwargs)
    return cls(message, **kwargs)
