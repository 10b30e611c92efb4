"""The Sixtyfour Bulk Intelligence API client.

Every API call the engine makes goes through :class:`SixtyfourClient`: it builds the URLs, sends the
key, retries what is safe to retry, paces submissions, parses answers into typed results and turns
every failure into one of the classes in :mod:`sixtyfour_sync.api.errors`.

Retries of a submission reuse the same Idempotency-Key, so a retried upload that had in fact reached
the server comes back as a replay of the original job instead of a second, paid job.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from itertools import count
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx

from sixtyfour_sync import __version__
from sixtyfour_sync._redact import Secret, redact
from sixtyfour_sync.api.download import ResultDownloads
from sixtyfour_sync.api.errors import (
    ApiConnectionError,
    ApiError,
    ApiTimeoutError,
    RateLimitError,
    RetryableApiError,
    UnexpectedResponseError,
    error_from_response,
)
from sixtyfour_sync.api.models import (
    Balance,
    CancelResult,
    JobStatus,
    LiveStatus,
    SubmitResult,
)
from sixtyfour_sync.api.poll import JobPoller
from sixtyfour_sync.api.ratelimit import Reservation, SubmissionLimiter, shared_limiter
from sixtyfour_sync.api.retry import RetryPolicy, backoff_delay, parse_retry_after, should_retry
from sixtyfour_sync.api.schema import check_upload_file, encode_config, file_format, validate_config
from sixtyfour_sync.errors import ConfigError, ConfigProblem

__all__ = [
    "API_URL_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "SixtyfourClient",
    "validate_idempotency_key",
]

log = logging.getLogger("sixtyfour_sync.api")

API_URL_ENV = "SIXTYFOUR_API_URL"
DEFAULT_BASE_URL = "https://api.sixtyfour.ai"
#: Uploads of up to 100 MB need a generous write timeout; reads of JSON answers do not.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=300.0, pool=30.0)

_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_CONTENT_TYPES = {
    ".csv": "text/csv",
    ".json": "application/json",
    ".jsonl": "application/jsonl",
    ".ndjson": "application/x-ndjson",
}


def validate_idempotency_key(key: object) -> str:
    """Return ``key`` if it is a valid Idempotency-Key (1-255 visible ASCII characters), else raise."""
    if not isinstance(key, str) or not _IDEMPOTENCY_KEY.fullmatch(key):
        shown = f"{len(key)} characters" if isinstance(key, str) else type(key).__name__
        raise ConfigError(
            problems=[
                ConfigProblem(
                    file=None,
                    path="Idempotency-Key",
                    message=f"must be 1-255 visible ASCII characters (no spaces), got {shown}",
                    hint="derive it from the file's content hash so a retry reuses it",
                )
            ]
        )
    return key


def _base_url(base_url: str | None) -> str:
    url = (base_url or os.environ.get(API_URL_ENV) or DEFAULT_BASE_URL).strip().rstrip("/")
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(
            problems=[
                ConfigProblem(
                    file=None,
                    path=API_URL_ENV,
                    message=f"not an http(s) URL: {redact(url)!r}",
                    hint=f"e.g. {DEFAULT_BASE_URL} or http://127.0.0.1:8064 for the emulator",
                )
            ]
        )
    return url


class SixtyfourClient(ResultDownloads):
    """A synchronous client for the Sixtyfour Bulk Intelligence API.

    ``sleep``, ``clock`` (monotonic), ``wall_clock`` (Unix time, for HTTP-date Retry-After) and ``rng``
    are injectable so tests control every wait. ``http_client`` or ``transport`` replace the network
    (an ``http_client`` passed in is not closed by :meth:`close`). Submissions are paced by ``limiter``,
    by default the process-wide one shared by every client.
    """

    def __init__(
        self,
        api_key: str | Secret,
        *,
        base_url: str | None = None,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        limiter: SubmissionLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        raw = key.get()
        if not raw or not raw.strip():
            raise ConfigError(
                problems=[ConfigProblem(None, "SIXTYFOUR_API_KEY", "the API key is empty")],
            )
        if not all(0x20 < ord(c) < 0x7F for c in raw):
            raise ConfigError(
                problems=[
                    ConfigProblem(
                        None,
                        "SIXTYFOUR_API_KEY",
                        "the API key holds spaces, line breaks or non-ASCII characters",
                        hint="copy the key again without surrounding whitespace",
                    )
                ]
            )
        self._key = key
        self.base_url = _base_url(base_url)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(transport=transport, timeout=timeout, follow_redirects=False)
        self._retry = retry or RetryPolicy()
        #: Per calling thread: whether an earlier attempt of the call under way may have reached the API.
        self._local = threading.local()
        self._limiter = limiter or shared_limiter()
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()

    def __repr__(self) -> str:
        return f"SixtyfourClient(base_url={self.base_url!r})"

    def __enter__(self) -> SixtyfourClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection pool (only when this client created it)."""
        if self._owns_http:
            self._http.close()

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy in use."""
        return self._retry

    # -- plumbing -----------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {
            "x-api-key": self._key.get(),
            "accept": "application/json",
            "user-agent": f"sixtyfour-sync/{__version__}",
        }

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _wait_before_retry(self, attempt: int, error: ApiError) -> None:
        retry_after = error.retry_after if isinstance(error, RetryableApiError) else None
        delay = backoff_delay(
            attempt,
            base=self._retry.base,
            cap=self._retry.cap,
            retry_after=retry_after,
            rng=self._rng,
            retry_after_cap=self._retry.retry_after_cap,
        )
        log.warning(
            "%s; retry %d of %d in %.2f s",
            error,
            attempt,
            self._retry.max_attempts - 1,
            delay,
        )
        self._sleep(delay)

    def _transport_error(self, exc: httpx.HTTPError, what: str) -> ApiError:
        # httpx messages name hosts and errno text, not URLs; redact anyway in case a version changes.
        text = redact(str(exc)) or type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):
            return ApiTimeoutError(f"{what} timed out ({type(exc).__name__}: {text})")
        if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
            raise ConfigError(
                problems=[ConfigProblem(None, API_URL_ENV, f"cannot reach the API at {self.base_url}: {text}")]
            ) from exc
        return ApiConnectionError(f"{what} failed: connection error ({type(exc).__name__}: {text})")

    def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        upload: tuple[Path, str, str] | None = None,
        submission: bool = False,
        required: tuple[str, ...] = (),
        extra_headers: Mapping[str, str] | None = None,
    ) -> tuple[dict[str, Any], Reservation | None]:
        """Send a request with retries and return its JSON object (and the limiter slot, if any).

        ``upload`` is ``(file, content_type, config_json)``: the file is reopened on every attempt and
        streamed from disk by httpx's multipart encoder.
        """
        url = self._url(path)
        headers = self._headers()
        if extra_headers:
            headers.update(extra_headers)
        self._local.landed = False
        for attempt in count(1):
            reservation = self._limiter.acquire(self._key) if submission else None
            cause: BaseException | None = None
            try:
                if upload is not None:
                    file, content_type, config_json = upload
                    with file.open("rb") as fh:
                        response = self._http.request(
                            method,
                            url,
                            params=params,
                            headers=headers,
                            files={"file": (file.name, fh, content_type)},
                            data={"config": config_json},
                        )
                else:
                    response = self._http.request(method, url, params=params, headers=headers)
            except httpx.HTTPError as exc:
                if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
                    # Nothing reached the server, so nothing counted against its window.
                    if reservation is not None:
                        self._limiter.release(reservation)
                else:
                    self._local.landed = True  # the request may have reached the server: a job may exist
                cause = exc
                error = self._transport_error(exc, what)
                retry = should_retry(None, exc)
            except OSError as exc:
                if reservation is not None:
                    self._limiter.release(reservation)
                raise ConfigError(
                    problems=[ConfigProblem(str(upload[0]) if upload else None, None, f"cannot read: {exc}")]
                ) from exc
            else:
                if response.is_success:
                    data = self._json_object(response, what, required)
                    if isinstance(data, dict):
                        return data, reservation
                    error = data
                    retry = True
                else:
                    retry_after = parse_retry_after(response.headers.get("retry-after"), now=self._wall_clock())
                    error = error_from_response(response, retry_after=retry_after, what=what)
                    retry = should_retry(response.status_code)
                    if response.status_code >= 500:
                        self._local.landed = True  # a 5xx may have created the job before it failed
                    if reservation is not None and 400 <= response.status_code < 500:
                        # Refused (429, 4xx): no job was accepted, so it takes no place in the API's window; a
                        # 5xx may have created one, so its slot stays counted.
                        self._limiter.release(reservation)
                    if submission and isinstance(error, RateLimitError):
                        self._limiter.penalize(self._key, retry_after)
            if not retry or attempt >= self._retry.max_attempts:
                raise error from cause
            self._wait_before_retry(attempt, error)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _json_object(
        response: httpx.Response, what: str, required: tuple[str, ...]
    ) -> dict[str, Any] | UnexpectedResponseError:
        try:
            data = response.json()
        except (ValueError, UnicodeDecodeError):
            return UnexpectedResponseError(
                f"{what}: HTTP {response.status_code} answer is not JSON",
                status_code=response.status_code,
            )
        if not isinstance(data, dict):
            return UnexpectedResponseError(
                f"{what}: expected a JSON object, got {type(data).__name__}", status_code=response.status_code
            )
        missing = [k for k in required if not data.get(k)]
        if missing:
            return UnexpectedResponseError(
                f"{what}: answer lacks {', '.join(missing)}", status_code=response.status_code
            )
        return data

    @staticmethod
    def _task_path(task_id: object) -> str:
        if not isinstance(task_id, str) or not task_id.strip():
            raise ValueError("task_id must be a non-empty string")
        return quote(task_id.strip(), safe="")

    # -- endpoints ----------------------------------------------------------------------------------

    def submit(
        self,
        endpoint: Literal["people", "company"],
        file: Path | str,
        config: Mapping[str, Any],
        idempotency_key: str,
        *,
        cost_units: Literal["cents", "credits"] = "cents",
        validate: bool = True,
    ) -> SubmitResult:
        """Submit a file of rows for enrichment; return the job handle and estimate (or a replay).

        With ``validate`` the config and file are checked first and nothing is sent when they break a
        rule. Retries (429, 5xx, timeouts, dropped connections) reuse ``idempotency_key``.
        """
        key = validate_idempotency_key(idempotency_key)
        if endpoint not in ("people", "company"):
            raise ConfigError(problems=[ConfigProblem(None, "endpoint", f"unknown endpoint {endpoint!r}")])
        if cost_units not in ("cents", "credits"):
            raise ConfigError(problems=[ConfigProblem(None, "cost_units", "must be cents or credits")])
        path = Path(file)
        if validate:
            config_json = validate_config(endpoint, config)
            check_upload_file(path)
        else:
            try:
                config_json = encode_config(config)
            except (TypeError, ValueError) as exc:
                raise ConfigError(problems=[ConfigProblem(None, "config", f"not JSON: {exc}")]) from exc
            file_format(path)
        content_type = _CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        what = f"submit {path.name} to /bulk-intelligence/{endpoint}"
        params = {"cost_units": "credits"} if cost_units == "credits" else None
        data, reservation = self._call(
            "POST",
            f"/bulk-intelligence/{endpoint}",
            what=what,
            params=params,
            upload=(path, content_type, config_json),
            submission=True,
            required=("task_id",),
            extra_headers={"Idempotency-Key": key},
        )
        result = SubmitResult.from_api(data)
        if getattr(self._local, "landed", False):
            result = dataclasses.replace(result, earlier_attempt=True)
        if result.is_replay and reservation is not None:
            # Replays do not count against the API's submission limit: give the slot back.
            self._limiter.release(reservation)
        log.info(
            "submitted %s: task %s%s",
            path.name,
            result.task_id,
            " (replay of an earlier submission)" if result.is_replay else f", {result.row_count} rows",
        )
        return result

    def job_status(self, task_id: str) -> JobStatus:
        """``GET /job-status/{task_id}``: the job's state, and its result files once completed."""
        data, _ = self._call("GET", f"/job-status/{self._task_path(task_id)}", what=f"status of job {task_id}")
        return JobStatus.from_api(data, task_id=task_id, fetched_at=self._clock())

    def live_status(self, task_id: str) -> LiveStatus:
        """``GET /workflows/runs/{task_id}/live_status``: per-block progress of a running job."""
        data, _ = self._call(
            "GET",
            f"/workflows/runs/{self._task_path(task_id)}/live_status",
            what=f"live status of job {task_id}",
        )
        return LiveStatus.from_api(data, task_id=task_id)

    def cancel(self, task_id: str) -> CancelResult:
        """``POST /workflows/cancel?job_id=...``: ask the API to stop a job."""
        self._task_path(task_id)
        data, _ = self._call("POST", "/workflows/cancel", what=f"cancel job {task_id}", params={"job_id": task_id})
        return CancelResult.from_api(data, task_id=task_id)

    def check_balance(self) -> Balance:
        """``GET /check-balance``: the organisation's remaining credits."""
        data, _ = self._call("GET", "/check-balance", what="check balance")
        return Balance.from_api(data)

    def wait(self, task_id: str, *, poller: JobPoller | None = None, timeout: float | None = None) -> JobStatus:
        """Poll until the job ends, sleeping as ``poller`` says; return its final status.

        With ``timeout`` (seconds), return the last, still running, status once waiting longer would
        pass it: the caller decides what a job still running means (CONTRACT: exit 3).
        """
        poller = poller or JobPoller()
        start = self._clock()
        status: JobStatus | str = "running"
        while True:
            delay = poller.next_delay(status)
            if delay is None:
                assert isinstance(status, JobStatus)
                return status
            past_deadline = timeout is not None and self._clock() - start + delay > timeout
            if past_deadline and isinstance(status, JobStatus):
                return status
            self._sleep(delay)
            status = self.job_status(task_id)

    # -- downloads ----------------------------------------------------------------------------------
