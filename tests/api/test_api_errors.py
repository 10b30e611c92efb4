"""Status codes map to error classes; the three documented error body shapes are all read."""

from __future__ import annotations

import httpx
import pytest
from api_fakes import API_KEY, SIGNED_URL

from sixtyfour_sync._redact import Secret
from sixtyfour_sync.api import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FatalApiError,
    InsufficientCreditsError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    RetryableApiError,
    ServerError,
    UnprocessableEntityError,
)
from sixtyfour_sync.api.errors import ApiTimeoutError, error_from_response, extract_detail
from sixtyfour_sync.errors import SixtyfourSyncError


def _response(status: int, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", "https://api.sixtyfour.test/bulk-intelligence/people")
    if isinstance(body, (str, bytes)):
        return httpx.Response(status, content=body, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (400, BadRequestError, False),
        (401, AuthenticationError, False),
        (402, InsufficientCreditsError, False),
        (403, PermissionDeniedError, False),
        (404, NotFoundError, False),
        (408, ApiTimeoutError, True),
        (409, ConflictError, False),
        (413, PayloadTooLargeError, False),
        (418, FatalApiError, False),
        (422, UnprocessableEntityError, False),
        (429, RateLimitError, True),
        (500, ServerError, True),
        (502, ServerError, True),
        (503, ServerError, True),
        (599, ServerError, True),
    ],
)
def test_status_maps_to_class(status: int, cls: type[ApiError], retryable: bool) -> None:
    error = error_from_response(_response(status, {"detail": "boom"}))
    assert type(error) is cls
    assert error.status_code == status
    assert error.retryable is retryable
    assert error.detail == "boom"
    assert isinstance(error, SixtyfourSyncError)


def test_hierarchy_branches() -> None:
    assert issubclass(AuthenticationError, FatalApiError)
    assert not issubclass(InsufficientCreditsError, FatalApiError)
    assert not issubclass(InsufficientCreditsError, RetryableApiError)
    assert issubclass(RateLimitError, RetryableApiError)
    assert issubclass(ServerError, RetryableApiError)


def test_detail_string_shape() -> None:
    error = error_from_response(_response(401, {"detail": "Invalid API key"}))
    assert error.detail == "Invalid API key"
    assert "401" in str(error) and "Invalid API key" in str(error)


def test_detail_fastapi_422_shape() -> None:
    body = {
        "detail": [
            {"loc": ["body", "config", "tier"], "msg": "Input should be 'micro' or 'low'", "type": "enum"},
            {"loc": ["body", "config", "bogus"], "msg": "Extra inputs are not permitted", "type": "extra"},
        ]
    }
    error = error_from_response(_response(422, body))
    assert isinstance(error, UnprocessableEntityError)
    assert error.detail == (
        "body.config.tier: Input should be 'micro' or 'low'; body.config.bogus: Extra inputs are not permitted"
    )
    assert [e["type"] for e in error.errors] == ["enum", "extra"]


def test_detail_error_message_shape() -> None:
    error = error_from_response(_response(400, {"error": "bad_request", "message": "file is empty"}))
    assert error.detail == "bad_request: file is empty"
    assert extract_detail({"message": "only message"}) == ("only message", [])
    assert extract_detail({"error": "only_error"}) == ("only_error", [])


def test_detail_from_non_json_body_and_empty_body() -> None:
    assert error_from_response(_response(502, "<html>Bad gateway</html>")).detail == "<html>Bad gateway</html>"
    assert error_from_response(_response(503, b"")).detail == "Service Unavailable"


def test_request_id_is_kept() -> None:
    error = error_from_response(_response(500, {"detail": "Internal server error"}, {"x-request-id": "req-42"}))
    assert error.request_id == "req-42"
    assert "req-42" in str(error)


def test_rate_limit_keeps_retry_after() -> None:
    error = error_from_response(_response(429, {"detail": "Rate limit exceeded"}), retry_after=12.0)
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 12.0


def test_error_text_never_holds_key_or_signed_url() -> None:
    Secret(API_KEY)  # registers the key for redaction, as the client does
    request = httpx.Request("GET", SIGNED_URL)
    response = httpx.Response(403, json={"detail": f"bad key {API_KEY} for {SIGNED_URL}"}, request=request)
    error = error_from_response(response)
    for text in (str(error), repr(error), error.detail or ""):
        assert API_KEY not in text
        assert "SIGNATURE" not in text
