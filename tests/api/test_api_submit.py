"""Submitting files: validation first, multipart shape, idempotent retries, pacing, replays."""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx
import pytest
from api_fakes import API_KEY, PEOPLE_CONFIG, REPLAY, SUBMIT_OK, ClientFactory, FakeApi, FakeClock, multipart_parts

from sixtyfour_sync.api import (
    ApiConnectionError,
    ApiTimeoutError,
    AuthenticationError,
    BadRequestError,
    InsufficientCreditsError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    SixtyfourClient,
    SubmissionLimiter,
    UnprocessableEntityError,
)
from sixtyfour_sync.errors import ConfigError, LimitExceededError

PEOPLE = "/bulk-intelligence/people"


def test_submit_sends_multipart_key_and_idempotency_key(
    api: FakeApi, make_client: ClientFactory, rows_file: Path
) -> None:
    api.add("POST", PEOPLE, SUBMIT_OK)
    result = make_client().submit("people", rows_file, PEOPLE_CONFIG, "run1-file1")
    assert result.task_id == "task-1" and result.row_count == 3 and result.estimated_cost_cents == 6
    assert not result.is_replay
    (request,) = api.requests
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["idempotency-key"] == "run1-file1"
    assert "cost_units" not in request.url.params
    parts = multipart_parts(request)
    assert parts["file"][0] == "rows.jsonl"
    assert parts["file"][1] == "application/jsonl"
    assert parts["file"][2] == rows_file.read_bytes()
    assert json.loads(parts["config"][2]) == PEOPLE_CONFIG


def test_cost_units_credits(api: FakeApi, make_client: ClientFactory, rows_file: Path) -> None:
    api.add("POST", PEOPLE, {"task_id": "t", "status": "RUNNING", "row_count": 3, "estimated_cost_credits": 0.06})
    result = make_client().submit("people", rows_file, PEOPLE_CONFIG, "k1", cost_units="credits")
    assert api.requests[0].url.params["cost_units"] == "credits"
    assert result.estimated_cost_credits == 0.06 and result.estimated_cost_cents is None


@pytest.mark.parametrize("key", ["", "a" * 256, "has space", "tab\tkey", "naïve", None])
def test_bad_idempotency_key_sends_nothing(
    api: FakeApi, make_client: ClientFactory, rows_file: Path, key: object
) -> None:
    with pytest.raises(ConfigError, match="Idempotency-Key"):
        make_client().submit("people", rows_file, PEOPLE_CONFIG, key)  # type: ignore[arg-type]
    assert api.requests == []


def test_longest_idempotency_key_is_fine(api: FakeApi, make_client: ClientFactory, rows_file: Path) -> None:
    api.add("POST", PEOPLE, SUBMIT_OK)
    make_client().submit("people", rows_file, PEOPLE_CONFIG, "k" * 255)
    assert api.requests[0].headers["idempotency-key"] == "k" * 255


def test_invalid_config_or_file_sends_nothing(
    api: FakeApi, make_client: ClientFactory, rows_file: Path, tmp_path: Path
) -> None:
    client = make_client()
    with pytest.raises(ConfigError, match="tier"):
        client.submit("people", rows_file, {"tier": "ultra"}, "k1")
    with pytest.raises(ConfigError, match="struct"):
        client.submit("company", rows_file, {}, "k1")
    big = tmp_path / "big.jsonl"
    big.write_text('{"a":1}\n' * 100_001)
    with pytest.raises(LimitExceededError, match="100,001"):
        client.submit("people", big, PEOPLE_CONFIG, "k1")
    assert api.requests == []


def test_validate_false_lets_the_server_judge(api: FakeApi, make_client: ClientFactory, rows_file: Path) -> None:
    api.add(
        "POST",
        PEOPLE,
        (422, {"detail": [{"loc": ["body", "config", "tier"], "msg": "bad tier", "type": "enum"}]}),
    )
    with pytest.raises(UnprocessableEntityError) as exc:
        make_client().submit("people", rows_file, {"tier": "ultra"}, "k1", validate=False)
    assert exc.value.detail == "body.config.tier: bad tier"
    assert len(api.requests) == 1  # fatal: not retried


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (400, {"detail": "Invalid request body"}, BadRequestError),
        (401, {"detail": "Invalid API key"}, AuthenticationError),
        (402, {"detail": "Insufficient API credits"}, InsufficientCreditsError),
        (403, {"detail": "High tier company enrichment is not enabled for this org."}, PermissionDeniedError),
    ],
)
def test_fatal_answers_are_not_retried(
    api: FakeApi, make_client: ClientFactory, rows_file: Path, clock: FakeClock, status: int, body: object, cls: type
) -> None:
    api.add("POST", PEOPLE, (status, body))
    with pytest.raises(cls) as exc:
        make_client().submit("people", rows_file, PEOPLE_CONFIG, "k1")
    assert exc.value.status_code == status
    assert len(api.requests) == 1 and clock.sleeps == []


def test_retries_reuse_the_key_and_resend_the_whole_file(
    api: FakeApi, make_client: ClientFactory, rows_file: Path, clock: FakeClock
) -> None:
    request = httpx.Request("POST", "https://x.test")
    api.add(
        "POST",
        PEOPLE,
        (500, {"detail": "Internal server error"}),
        httpx.ReadTimeout("timed out", request=request),
        httpx.RemoteProtocolError("peer closed connection", request=request),
        SUBMIT_OK,
    )
    result = make_client().submit("people", rows_file, PEOPLE_CONFIG, "same-key")
    assert result.task_id == "task-1"
    assert len(api.requests) == 4
    assert {r.headers["idempotency-key"] for r in api.requests} == {"same-key"}
    assert all(multipart_parts(r)["file"][2] == rows_file.read_bytes() for r in api.requests)
    mirror = random.Random(7)
    assert clock.sleeps == [mirror.uniform(0, 1.0), mirror.uniform(0, 2.0), mirror.uniform(0, 4.0)]


def test_retry_after_seconds_is_waited_exactly(
    api: FakeApi, make_client: ClientFactory, rows_file: Path, clock: FakeClock
) -> None:
    api.add("POST", PEOPLE, (429, {"detail": "Rate limit exceeded"}, {"Retry-After": "17"}), SUBMIT_OK)
    make_client().submit("people", rows_file, PEOPLE_CONFIG, "k1")
    assert clock.sleeps == [17.0]


def test_retry_after_http_date(api: FakeApi, make_client: ClientFactory, rows_file: Path, clock: FakeClock) -> None:
    from email.utils import formatdate

    when = formatdate(clock.wall() + 42, usegmt=True)
    api.add("GET", "/check-balance", (503, {"detail": "busy"}, {"Retry-After": when}), {"credits": 5})
    assert make_client().check_balance().credits == 5
    assert clock.sleeps == [42.0]


def test_gives_up_after_max_attempts_with_the_right_class(
    api: FakeApi, make_client: ClientFactory, rows_file: Path, clock: FakeClock
) -> None:
    api.add("POST", PEOPLE, (503, {"detail": "down"}, {"x-request-id": "req-9"}))
    with pytest.raises(ServerError) as exc:
        make_client().submit("people", rows_file, PEOPLE_CONFIG, "k1")
    assert len(api.requests) == 4 and len(clock.sleeps) == 3
    assert exc.value.request_id == "req-9" and exc.value.retryable


def test_rate_limit_gives_up_as_rate_limit_error(api: FakeApi, make_client: ClientFactory, rows_file: Path) -> None:
    api.add("POST", PEOPLE, (429, {"detail": "Rate limit exceeded"}, {"Retry-After": "1"}))
    with pytest.raises(RateLimitError) as exc:
        make_client(retry=RetryPolicy(max_attempts=2)).submit("people", rows_file, PEOPLE_CONFIG, "k1")
    assert exc.value.retry_after == 1.0


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (httpx.ConnectError("refused", request=httpx.Request("GET", "https://x")), ApiConnectionError),
        (httpx.ReadTimeout("slow", request=httpx.Request("GET", "https://x")), ApiTimeoutError),
    ],
)
def test_transport_errors_converted_once_with_cause(
    api: FakeApi, make_client: ClientFactory, exc: Exception, cls: type
) -> None:
    api.add("GET", "/check-balance", exc)
    with pytest.raises(cls) as info:
        make_client(retry=RetryPolicy(max_attempts=2)).check_balance()
    assert info.value.__cause__ is exc
    assert info.value.status_code is None


def test_success_with_unreadable_body_is_retried(api: FakeApi, make_client: ClientFactory, rows_file: Path) -> None:
    api.add("POST", PEOPLE, (200, "<html>oops</html>"), (200, {"status": "RUNNING"}), REPLAY)
    result = make_client().submit("people", rows_file, PEOPLE_CONFIG, "k1")
    assert result.is_replay and len(api.requests) == 3


def test_replay_is_recognised_and_releases_the_slot(
    api: FakeApi, make_client: ClientFactory, rows_file: Path, limiter: SubmissionLimiter
) -> None:
    api.add("POST", PEOPLE, REPLAY, {"task_id": "t2", "status": "RUNNING"})
    client = make_client()
    first = client.submit("people", rows_file, PEOPLE_CONFIG, "k1")
    assert first.is_replay and first.row_count is None and first.estimated_cost_cents is None
    second = client.submit("people", rows_file, PEOPLE_CONFIG, "k2")
    assert second.is_replay  # no already_started flag, but no counts either
    assert limiter.in_window(API_KEY) == 0


def test_limiter_paces_submissions_across_clients(
    api: FakeApi, make_client: ClientFactory, rows_file: Path, clock: FakeClock, limiter: SubmissionLimiter
) -> None:
    api.add("POST", PEOPLE, SUBMIT_OK)
    clients = [make_client(), make_client()]
    for i in range(11):
        clients[i % 2].submit("people", rows_file, PEOPLE_CONFIG, f"k{i}")
    assert clock.sleeps == [60.0]
    assert len(api.requests) == 11


def test_server_429_pushes_the_shared_window(
    api: FakeApi, make_client: ClientFactory, rows_file: Path, clock: FakeClock, limiter: SubmissionLimiter
) -> None:
    api.add("POST", PEOPLE, (429, {"detail": "Rate limit exceeded"}, {"Retry-After": "30"}), SUBMIT_OK)
    make_client().submit("people", rows_file, PEOPLE_CONFIG, "k1")
    # The backoff waited 30 s; the limiter was blocked for the same 30 s so it added no wait of its own.
    assert clock.sleeps == [30.0]
    clock.sleeps.clear()
    limiter.penalize(API_KEY, 5.0)
    api.add("POST", PEOPLE, SUBMIT_OK)
    make_client().submit("people", rows_file, PEOPLE_CONFIG, "k2")
    assert clock.sleeps == [5.0]


def test_connect_error_gives_the_slot_back(
    api: FakeApi, make_client: ClientFactory, rows_file: Path, limiter: SubmissionLimiter
) -> None:
    api.add("POST", PEOPLE, httpx.ConnectError("refused", request=httpx.Request("POST", "https://x")), SUBMIT_OK)
    make_client().submit("people", rows_file, PEOPLE_CONFIG, "k1")
    assert limiter.in_window(API_KEY) == 1


def test_client_construction_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="empty"):
        SixtyfourClient("")
    with pytest.raises(ConfigError, match="spaces"):
        SixtyfourClient("key with space")
    with pytest.raises(ConfigError, match="SIXTYFOUR_API_URL"):
        SixtyfourClient("k", base_url="ftp://nope")
    monkeypatch.setenv("SIXTYFOUR_API_URL", "http://127.0.0.1:9/")
    with SixtyfourClient("k") as client:
        assert client.base_url == "http://127.0.0.1:9"
    monkeypatch.delenv("SIXTYFOUR_API_URL")
    with SixtyfourClient(API_KEY) as client:
        assert client.base_url == "https://api.sixtyfour.ai"
        assert API_KEY not in repr(client) and API_KEY not in str(vars(client))
