"""The emulator: state (organisations, jobs, submissions) and the WSGI application serving the API."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import math
import os
import random
import secrets
import shutil
import socket
import tempfile
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pacsv
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from sixtyfour_sync._redact import register_secret
from sixtyfour_sync.emulator.generate import generate_output, parse_struct, preview_value, reference_output
from sixtyfour_sync.emulator.models import InjectedFault, Job, ResultFile, SubmissionRecord, WebhookDelivery
from sixtyfour_sync.emulator.settings import CREDITS_PER_CENT, EmulatorSettings
from sixtyfour_sync.emulator.uploads import FORMATS, UploadError, load_table, read_upload, save_table
from sixtyfour_sync.emulator.validation import check_columns, parse_config, validate_config

__all__ = ["DOCUMENTED_DETAILS", "Emulator"]

log = logging.getLogger("sixtyfour_sync.emulator")

#: The documented error bodies, used for real and injected errors alike.
DOCUMENTED_DETAILS: Mapping[int, str] = {
    400: "Invalid request body",
    401: "Invalid API key",
    402: "Insufficient API credits",
    403: "Forbidden",
    404: "Job not found",
    409: "Conflict",
    422: "Unprocessable entity",
    429: "Rate limit exceeded",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}
_HIGH_TIER = "High tier {endpoint} enrichment is not enabled for this org. Contact sales to request access."
_CSV_BOM = b"\xef\xbb\xbf"
_CONTENT_TYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson", "json": "application/json"}
_WINDOW = 60.0


class _Drop(Exception):
    """Close the connection without answering."""


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False),
        status=status,
        headers=dict(headers or {}),
        mimetype="application/json",
    )


def _error(status: int, detail: Any = None, headers: Mapping[str, str] | None = None) -> Response:
    return _json({"detail": DOCUMENTED_DETAILS.get(status, "Error") if detail is None else detail}, status, headers)


def _key_id(api_key: str) -> str:
    # Organisations are indexed by a digest: raw keys are never stored in records or logs.
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:16]


@dataclass
class _Org:
    balance_cents: int
    holds_cents: int = 0
    submits: deque[float] = field(default_factory=deque)
    requests: deque[float] = field(default_factory=deque)
    submit_lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Ctx:
    """Per-request facts the dispatcher needs after the handler ran."""

    key_id: str | None = None
    record: dict[str, Any] | None = None
    truncate: bool = False


class _UploadRequest(Request):
    # A config of 300,000 characters may take up to 4 bytes each; uploads go to disk, not memory.
    max_form_memory_size = 2 * 1024 * 1024
    max_form_parts = 64
    upload_dir: Path

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        return tempfile.NamedTemporaryFile("w+b", dir=self.upload_dir, prefix="upload-", suffix=".part", delete=False)


class Emulator:
    """A faithful local Sixtyfour Bulk Intelligence API (see docs/emulator.md).

    State lives in memory; files live under ``settings.data_dir`` (or a temporary directory).
    ``submissions``, ``jobs`` and ``webhook_deliveries`` are there for tests to inspect.
    """

    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        self.settings = settings or EmulatorSettings()
        self.submissions: list[SubmissionRecord] = []
        self.jobs: dict[str, Job] = {}
        self.webhook_deliveries: list[WebhookDelivery] = []
        self._lock = threading.RLock()
        self._orgs: dict[str, _Org] = {}
        self._idempotency: dict[tuple[str, str, str], tuple[str, str, float]] = {}
        self._faults: list[InjectedFault] = []
        self._rng = random.Random(self.settings.faults.seed)
        self._link_secret = secrets.token_bytes(32)
        self._base_url: str | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        for key in (*self.settings.api_keys, *self.settings.high_tier_keys, self.settings.webhook_secret):
            register_secret(key)
        self._high_tier_ids = {_key_id(k) for k in self.settings.high_tier_keys}
        self._valid_ids = {_key_id(k) for k in self.settings.api_keys}
        if not self.settings.api_keys:
            log.warning("emulator: no API keys configured; accepting any non-empty x-api-key")
        self._urls = Map(
            [
                Rule("/bulk-intelligence/<any(people, company):endpoint>", methods=["POST"], endpoint="submit"),
                Rule("/job-status/<task_id>", methods=["GET"], endpoint="job_status"),
                Rule("/workflows/runs/<task_id>/live_status", methods=["GET"], endpoint="live_status"),
                Rule("/workflows/cancel", methods=["POST"], endpoint="cancel"),
                Rule("/check-balance", methods=["GET"], endpoint="balance"),
                Rule("/downloads/<task_id>/<filename>", methods=["GET"], endpoint="download"),
                Rule("/_emulator/health", methods=["GET"], endpoint="admin_health"),
                Rule("/_emulator/submissions", methods=["GET"], endpoint="admin_submissions"),
                Rule("/_emulator/jobs", methods=["GET"], endpoint="admin_jobs"),
                Rule("/_emulator/jobs/<task_id>", methods=["GET"], endpoint="admin_job"),
                Rule(
                    "/_emulator/jobs/<task_id>/<any(complete, fail, cancel, 'expire-links'):action>",
                    methods=["POST"],
                    endpoint="admin_job_action",
                ),
                Rule("/_emulator/inject", methods=["POST"], endpoint="admin_inject"),
                Rule("/_emulator/webhooks", methods=["GET"], endpoint="admin_webhooks"),
            ],
            strict_slashes=False,
        )
        if self.settings.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="sixtyfour-emulator-"))
            self._owns_data_dir = True
            # Also removed when an emulator that never served is garbage-collected.
            weakref.finalize(self, shutil.rmtree, str(self.data_dir), True)
        else:
            self.data_dir = Path(self.settings.data_dir)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._owns_data_dir = False
        (self.data_dir / "uploads").mkdir(exist_ok=True)

    # ------------------------------------------------------------------ public test controls

    def __repr__(self) -> str:
        return f"Emulator(jobs={len(self.jobs)}, url={self._base_url!r})"

    @property
    def url(self) -> str | None:
        """The base URL while serving, else None."""
        return self._base_url

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> contextlib.AbstractContextManager[Any]:
        """Serve over HTTP in a daemon thread: ``with emu.serve() as server: server.url``."""
        from sixtyfour_sync.emulator.server import serve

        return serve(self, host, port)

    def complete(self, task_id: str) -> Job:
        """Finish a running job now (its output is generated), as if its time had come."""
        job = self._job(task_id)
        with job.lock:
            if not job.is_terminal:
                self._finish(job, outcome="completed")
        return job

    def fail(self, task_id: str, message: str = "Enrichment pipeline failed") -> Job:
        """Make a running job fail now (nothing is charged)."""
        job = self._job(task_id)
        with job.lock:
            if not job.is_terminal:
                self._finish(job, outcome="failed", error=message)
        return job

    def cancel_job(self, task_id: str) -> Job:
        """Cancel a running job now (nothing is charged)."""
        job = self._job(task_id)
        with job.lock:
            if not job.is_terminal:
                self._finish(job, outcome="cancelled", error="Job was cancelled")
        return job

    def expire_links(self, task_id: str) -> None:
        """Make every download link of the job handed out so far expire now."""
        job = self._job(task_id)
        with job.lock:
            job.links_expire_before = math.floor(self.settings.clock()) + self.settings.download_ttl_seconds

    def inject(
        self,
        method: str,
        path_prefix: str,
        status: int | None = None,
        *,
        times: int = 1,
        drop: bool = False,
        delay: float = 0.0,
        truncate: bool = False,
        retry_after: float | None = None,
        phase: str = "before",
    ) -> InjectedFault:
        """Make the next ``times`` requests matching ``method`` ("*" for any) and ``path_prefix`` fail.

        ``status`` answers with the documented body for that code (429/503 carry Retry-After);
        ``drop`` closes the connection without an answer; ``delay`` sleeps first; ``truncate``
        sends fewer bytes than Content-Length announces, then closes. ``phase="after"`` applies
        the fault once the request took effect (a submission created its job).
        """
        if phase not in ("before", "after"):
            raise ValueError("phase must be 'before' or 'after'")
        if times < 1:
            raise ValueError("times must be at least 1")
        fault = InjectedFault(method.upper(), path_prefix, status, times, drop, delay, truncate, retry_after, phase)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Forget every injected fault that has not fired yet."""
        with self._lock:
            self._faults.clear()

    def balance_cents(self, api_key: str) -> int:
        """The spendable balance of the key's organisation (balance minus running jobs' holds)."""
        org = self._org(_key_id(api_key))
        with self._lock:
            return org.balance_cents - org.holds_cents

    def reference_output(
        self,
        struct: Mapping[str, Any] | None,
        rows: Iterable[Mapping[str, Any]],
        *,
        endpoint: str = "people",
        tier: str = "low",
        field_confidence: bool = False,
        columns: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """The output rows this emulator produces for these input rows (pure Python, for tests).

        The tier does not change values. Passthrough values are returned as given.
        """
        del tier  # documented as not influencing the values
        return reference_output(
            struct,
            rows,
            endpoint=endpoint,
            field_confidence=field_confidence,
            columns=columns,
            seed=self.settings.seed,
            failure_rate=self.settings.failure_rate,
        )

    def advance(self) -> None:
        """Move every running job whose time has come to its terminal state (the server does this)."""
        now = self.settings.clock()
        for job in list(self.jobs.values()):
            if not job.is_terminal and now >= job.due_at:
                self._advance(job)

    def close(self) -> None:
        """Stop background work and remove the temporary data directory (if the emulator made it)."""
        self._stop.set()
        for t in list(self._threads):
            t.join(timeout=2)
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # ------------------------------------------------------------------ state helpers

    def _job(self, task_id: str) -> Job:
        try:
            return self.jobs[task_id]
        except KeyError:
            raise KeyError(f"no job {task_id!r}") from None

    def _org(self, key_id: str) -> _Org:
        with self._lock:
            org = self._orgs.get(key_id)
            if org is None:
                org = self._orgs[key_id] = _Org(self.settings.balance_cents)
            return org

    def _advance(self, job: Job) -> None:
        with job.lock:
            if job.is_terminal or self.settings.clock() < job.due_at:
                return
            faults = self.settings.faults
            with self._lock:
                roll = self._rng.random() if (faults.job_failure_rate or faults.job_cancel_rate) else 1.0
            if roll < faults.job_failure_rate:
                self._finish(job, outcome="failed", error="Enrichment pipeline failed")
            elif roll < faults.job_failure_rate + faults.job_cancel_rate:
                self._finish(job, outcome="cancelled", error="Job was cancelled")
            else:
                self._finish(job, outcome="completed")

    def _finish(self, job: Job, *, outcome: str, error: str | None = None) -> None:
        """Move a job to a terminal state; the caller holds ``job.lock``."""
        if outcome == "completed":
            try:
                self._produce(job)
            except Exception as exc:  # a bug or a disk problem must not leave the job running forever
                log.exception("emulator: producing the output of job %s failed", job.task_id)
                outcome, error = "failed", f"Enrichment pipeline failed: {type(exc).__name__}"
        org = self._org(job.key_id)
        with self._lock:
            org.holds_cents -= job.estimate_cents
            if outcome == "completed":
                # Every row is charged, failed ones included: the estimate is what a job costs.
                job.charge_cents = job.estimate_cents
                org.balance_cents -= job.charge_cents
            else:
                job.charge_cents = 0
            job.status = outcome
            job.error = error
            job.closed_at = self.settings.clock()
        if job.config.get("webhook_url"):
            from sixtyfour_sync.emulator.webhooks import start_delivery

            start_delivery(self, job)

    def _produce(self, job: Job) -> None:
        parsed = job.upload_path.parent / "parsed.arrow"
        if parsed.exists():
            table = load_table(parsed)
        else:
            table = read_upload(job.upload_path, job.upload_format, job.upload_name)
        config = job.config
        out, failed = generate_output(
            table,
            config.get("struct"),
            endpoint=job.endpoint,
            field_confidence=bool(config.get("field_confidence", False)),
            columns=config.get("columns"),
            seed=self.settings.seed,
            failure_rate=self.settings.failure_rate,
        )
        job_dir = job.upload_path.parent
        now = self.settings.clock()
        files: list[ResultFile] = []
        # Block 1: the ingested upload, as received.
        files.append(
            ResultFile(
                1,
                f"block_1_input{job.upload_path.suffix}",
                job.upload_path,
                table.num_rows,
                _CONTENT_TYPES[job.upload_format],
                now,
            )
        )
        # Block 2: the research stage: the enriched values alone, without the uploaded columns.
        struct_names = [n for n, _ in parse_struct(config.get("struct"), job.endpoint)]
        research = out.select([c for c in out.column_names if c in set(struct_names)])
        files.append(self._write_csv(research, job_dir / "block_2_research.csv", 2, now))
        final = self._write_csv(out, job_dir / "block_3_enriched.csv", 3, now)
        if out.num_rows <= self.settings.preview_max_rows:
            kinds = dict(parse_struct(config.get("struct"), job.endpoint))
            final.preview = [
                {k: preview_value(kinds.get(k, "str"), v) for k, v in row.items()} for row in out.to_pylist()
            ]
        files.append(final)
        for f in files:
            f.file_size = f.path.stat().st_size
        job.files = files
        job.failed_rows = failed

    @staticmethod
    def _write_csv(table: pa.Table, path: Path, block: int, now: float) -> ResultFile:
        with open(path, "wb") as fh:
            fh.write(_CSV_BOM)
            pacsv.write_csv(table, fh)
        return ResultFile(block, path.name, path, table.num_rows, "text/csv", now)

    # ------------------------------------------------------------------ signed links

    def _sign(self, path: str, expires: int) -> str:
        return hmac.new(self._link_secret, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def _result_entries(self, job: Job, base_url: str) -> list[dict[str, Any]]:
        now = self.settings.clock()
        expires = max(math.floor(now) + self.settings.download_ttl_seconds, int(job.links_expire_before) + 1)
        by_block = {f.block_number: f for f in job.files}
        entries = []
        # Deliberately not in block order: the final output is neither first nor last.
        for block in sorted(by_block, key=lambda b: (b != 2, -b)):
            f = by_block[block]
            path = f"/downloads/{job.task_id}/{f.filename}"
            entry: dict[str, Any] = {
                "filename": f.filename,
                "download_url": f"{base_url}{path}?expires={expires}&signature={self._sign(path, expires)}",
                "block_number": f.block_number,
                "row_count": f.row_count,
                "file_size": f.file_size,
                "content_type": f.content_type,
                "created_at": _iso(f.created_at),
                "download_expires_in_seconds": max(0, int(expires - now)),
            }
            if f.preview is not None:
                entry["results"] = f.preview
            entries.append(entry)
        return entries

    def status_body(self, job: Job, base_url: str, cost_units: str | None = None) -> dict[str, Any]:
        """The /job-status answer for a job (fresh signed links on every call)."""
        body: dict[str, Any] = {
            "id": job.task_id,
            "run_id": job.run_id,
            "start_time": _iso(job.created_at),
            "status": job.status,
        }
        if job.closed_at is not None:
            body["close_time"] = _iso(job.closed_at)
        if job.status == "completed":
            body["results"] = self._result_entries(job, base_url)
            if (cost_units or job.cost_units) == "credits":
                body["charge_credits"] = round((job.charge_cents or 0) * CREDITS_PER_CENT, 6)
            else:
                body["charge_amount"] = job.charge_cents
        elif job.error:
            body["error"] = job.error
        return body

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI application."""
        request = _UploadRequest(environ)
        request.upload_dir = self.data_dir / "uploads"
        ctx = _Ctx()
        try:
            response = self._dispatch(request, ctx)
        except _Drop:
            self._finish_record(ctx, None)
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            raise ConnectionAbortedError("connection dropped on purpose") from None
        finally:
            self._discard_uploads(request)
        self._finish_record(ctx, response.status_code)
        response.headers.setdefault("x-request-id", str(uuid.uuid4()))
        if ctx.truncate:
            response = self._truncated(response)
        return response(environ, start_response)

    def _dispatch(self, request: Request, ctx: _Ctx) -> Response:
        adapter = self._urls.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except NotFound:
            return _error(404, "Not Found")
        except MethodNotAllowed:
            return _error(405, "Method Not Allowed")
        except HTTPException as exc:  # pragma: no cover - other routing answers
            return _error(exc.code or 400, exc.description)
        if endpoint.startswith("admin_"):
            return self._admin(endpoint, args, request)
        if endpoint == "submit":
            ctx.record = {"endpoint": args["endpoint"], "idempotency_key": request.headers.get("Idempotency-Key")}
        fault = self._take_fault(request)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.phase == "before":
                if fault.drop:
                    raise _Drop
                if fault.status is not None:
                    return self._fault_response(fault)
            ctx.truncate = fault.truncate
        response = self._api(endpoint, args, request, ctx)
        if fault is not None and fault.phase == "after":
            if fault.drop:
                raise _Drop
            if fault.status is not None:
                return self._fault_response(fault)
        return response

    def _take_fault(self, request: Request) -> InjectedFault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(request.method, request.path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
            settings = self.settings.faults
            if not settings.any_request_faults:
                return None
            is_submit = request.path.startswith("/bulk-intelligence/")
            is_download = request.path.startswith("/downloads/")
            rolls = [self._rng.random() for _ in range(5)]
        if rolls[0] < settings.drop_connection_rate:
            # On a submission the answer is lost after the job started: the case replays exist for.
            return InjectedFault("*", "/", drop=True, phase="after" if is_submit else "before")
        if rolls[1] < settings.error_5xx_rate:
            return InjectedFault("*", "/", status=503 if rolls[4] < 0.5 else 500)
        if rolls[2] < settings.burst_429_rate:
            return InjectedFault("*", "/", status=429, retry_after=1)
        delay = settings.slow_response_seconds if rolls[3] < settings.slow_response_rate else 0.0
        truncate = is_download and rolls[4] < settings.truncate_download_rate
        if delay or truncate:
            return InjectedFault("*", "/", delay=delay, truncate=truncate)
        return None

    @staticmethod
    def _fault_response(fault: InjectedFault) -> Response:
        assert fault.status is not None
        headers: dict[str, str] = {}
        if fault.retry_after is not None or fault.status == 429:
            headers["Retry-After"] = str(math.ceil(fault.retry_after if fault.retry_after is not None else 1))
        return _error(fault.status, headers=headers)

    @staticmethod
    def _truncated(response: Response) -> Response:
        if response.direct_passthrough:
            return response  # downloads truncate themselves, streaming from disk
        data = response.get_data()
        cut = Response(
            iter([data[: len(data) // 2]]),
            status=response.status_code,
            headers=response.headers,
            direct_passthrough=True,
        )
        cut.headers["Content-Length"] = str(len(data))
        return cut

    def _finish_record(self, ctx: _Ctx, status: int | None) -> None:
        if ctx.record is None:
            return
        rec = SubmissionRecord(
            task_id=ctx.record.get("task_id"),
            endpoint=ctx.record["endpoint"],
            idempotency_key=ctx.record.get("idempotency_key"),
            file_sha256=ctx.record.get("file_sha256"),
            row_count=ctx.record.get("row_count"),
            replay=bool(ctx.record.get("replay")),
            status_code=status,
            at=self.settings.clock(),
            detail=ctx.record.get("detail"),
        )
        ctx.record = None
        with self._lock:
            self.submissions.append(rec)

    @staticmethod
    def _discard_uploads(request: Request) -> None:
        if "files" not in request.__dict__:
            return  # the body was never parsed
        for storage in request.files.values():
            name = getattr(storage.stream, "name", None)
            with contextlib.suppress(OSError):
                storage.stream.close()
            if isinstance(name, str) and os.path.exists(name):
                with contextlib.suppress(OSError):
                    os.unlink(name)

    # ------------------------------------------------------------------ API handlers

    def _authenticate(self, request: Request) -> str | None:
        key = request.headers.get("x-api-key", "")
        if not key:
            return None
        key_id = _key_id(key)
        if self.settings.api_keys and key_id not in self._valid_ids:
            return None
        return key_id

    def _rate_check(self, window: deque[float], limit: int, now: float) -> int | None:
        """Seconds to wait when ``window`` is full, else None. The caller holds the lock."""
        while window and window[0] <= now - _WINDOW:
            window.popleft()
        if len(window) >= limit:
            return max(1, math.ceil(window[0] + _WINDOW - now))
        return None

    def _api(self, endpoint: str, args: Mapping[str, Any], request: Request, ctx: _Ctx) -> Response:
        key_id = self._authenticate(request)
        if key_id is None:
            if ctx.record is not None:
                ctx.record["detail"] = "Invalid API key"
            return _error(401)
        ctx.key_id = key_id
        org = self._org(key_id)
        limit = self.settings.request_limit_per_minute
        if limit:
            now = self.settings.clock()
            with self._lock:
                wait = self._rate_check(org.requests, limit, now)
                if wait is None:
                    org.requests.append(now)
            if wait is not None:
                return _error(429, headers={"Retry-After": str(wait)})
        if endpoint == "submit":
            return self._submit(args["endpoint"], request, ctx, org)
        if endpoint == "balance":
            with self._lock:
                credits = (org.balance_cents - org.holds_cents) * CREDITS_PER_CENT
            return _json({"credits": round(credits, 6)})
        if endpoint == "cancel":
            return self._cancel(request, key_id)
        job = self.jobs.get(args["task_id"])
        if job is None or job.key_id != key_id:
            return _error(404)
        if endpoint == "download":
            return self._download(job, args["filename"], request, ctx)
        if not job.is_terminal:
            self._advance(job)
        if endpoint == "job_status":
            units = request.args.get("cost_units")
            return _json(self.status_body(job, request.host_url.rstrip("/"), units))
        return _json(self._live_status(job))

    def _cancel(self, request: Request, key_id: str) -> Response:
        task_id = request.args.get("job_id")
        if not task_id:
            return _json({"detail": [{"loc": ["query", "job_id"], "msg": "Field required", "type": "missing"}]}, 422)
        job = self.jobs.get(task_id)
        if job is None or job.key_id != key_id:
            return _error(404)
        with job.lock:
            if not job.is_terminal:
                self._advance(job)
            if job.status == "running":
                self._finish(job, outcome="cancelled", error="Job was cancelled")
            elif job.status != "cancelled":
                return _error(409, f"Job is already {job.status} and cannot be cancelled")
        return _json({"job_id": job.task_id, "status": "canceled"})

    def _live_status(self, job: Job) -> dict[str, Any]:
        total = job.row_count
        if job.status == "completed":
            fraction = 1.0
        else:
            end = job.closed_at if job.closed_at is not None else self.settings.clock()
            span = max(job.due_at - job.created_at, 1e-9)
            fraction = min(1.0, max(0.0, (end - job.created_at) / span))
            if job.status == "running":
                fraction = min(fraction, 0.99)
        blocks = []
        names = ("ingest", "research", "enrich")
        for i, name in enumerate(names):
            share = min(1.0, max(0.0, fraction * len(names) - i))
            done = total if job.status == "completed" else math.floor(total * share)
            state = "completed" if done == total else ("running" if done or share > 0 else "pending")
            if job.status in ("failed", "cancelled") and done < total:
                state = job.status
            blocks.append(
                {"block_number": i + 1, "name": name, "status": state, "processed_count": done, "total_count": total}
            )
        return {
            "run_id": job.task_id,
            "overall_status": job.status,
            "overall_progress_percentage": round(100.0 * fraction, 1),
            "blocks": blocks,
        }

    def _download(self, job: Job, filename: str, request: Request, ctx: _Ctx) -> Response:
        f = next((x for x in job.files if x.filename == filename), None)
        if f is None or not f.path.exists():
            return _error(404, "File not found")
        path = f"/downloads/{job.task_id}/{filename}"
        expires_text = request.args.get("expires", "")
        signature = request.args.get("signature", "")
        if not expires_text.isdigit() or not hmac.compare_digest(signature, self._sign(path, int(expires_text))):
            return _error(403, "Invalid download signature")
        expires = int(expires_text)
        if expires <= self.settings.clock() or expires <= job.links_expire_before:
            return _error(403, "Download link expired")
        size = f.path.stat().st_size
        send = size // 2 if ctx.truncate else size
        ctx.truncate = False
        response = Response(_stream_file(f.path, send), status=200, mimetype=f.content_type, direct_passthrough=True)
        response.headers["Content-Length"] = str(size)
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    # ------------------------------------------------------------------ submit

    def _submit(self, endpoint: str, request: Request, ctx: _Ctx, org: _Org) -> Response:
        record = ctx.record if ctx.record is not None else {}
        settings = self.settings

        def reject(response: Response, detail: Any) -> Response:
            record["detail"] = detail if isinstance(detail, str) else json.dumps(detail)
            return response

        idem = request.headers.get("Idempotency-Key")
        if idem is not None and not 1 <= len(idem) <= 255:
            msg = f"Idempotency-Key must be 1 to 255 characters; got {len(idem)}"
            return reject(_error(400, msg), msg)
        cost_units = request.args.get("cost_units", "cents")
        if cost_units not in ("cents", "credits"):
            items = [{"loc": ["query", "cost_units"], "msg": "Input should be 'cents' or 'credits'", "type": "enum"}]
            return reject(_error(422, items), items)
        bound = settings.max_file_bytes + 4 * settings.max_config_chars + (1 << 20)
        if request.content_length is not None and request.content_length > bound:
            msg = (
                f"Request body is {request.content_length:,} bytes; the file limit is {settings.max_file_bytes:,} bytes"
            )
            return reject(_error(413, msg), msg)
        try:
            storage = request.files.get("file")
            config_text = request.form.get("config")
            if config_text is None and "config" in request.files:
                config_text = request.files["config"].read(4 * settings.max_config_chars + 1).decode("utf-8")
        except (ValueError, HTTPException, UnicodeDecodeError):
            return reject(_error(400), DOCUMENTED_DETAILS[400])
        missing = []
        if storage is None:
            missing.append({"loc": ["body", "file"], "msg": "Field required", "type": "missing"})
        if config_text is None:
            missing.append({"loc": ["body", "config"], "msg": "Field required", "type": "missing"})
        if missing:
            return reject(_error(422, missing), missing)
        assert storage is not None and config_text is not None
        upload = Path(storage.stream.name)
        storage.stream.flush()
        size = upload.stat().st_size
        digest = _sha256(upload)
        record["file_sha256"] = digest

        with org.submit_lock:  # one submission at a time per organisation: replays stay exact
            now = settings.clock()
            if idem is not None:
                with self._lock:
                    hit = self._idempotency.get((ctx.key_id or "", endpoint, idem))
                if hit is not None and now - hit[2] < settings.idempotency_ttl_seconds:
                    task_id, sha, _ = hit
                    if sha != digest:
                        msg = "Idempotency-Key was already used with a different file"
                        return reject(_error(422, msg), msg)
                    record.update(task_id=task_id, replay=True, row_count=self.jobs[task_id].row_count)
                    return _json({"task_id": task_id, "status": "RUNNING", "already_started": True})
            with self._lock:
                wait = self._rate_check(org.submits, settings.rate_limit_per_minute, now)
            if wait is not None:
                return reject(_error(429, headers={"Retry-After": str(wait)}), DOCUMENTED_DETAILS[429])
            if size > settings.max_file_bytes:
                msg = f"File is {size:,} bytes; the limit is {settings.max_file_bytes:,} bytes per file"
                return reject(_error(413, msg), msg)
            config, errors = parse_config(config_text, settings.max_config_chars)
            if config is not None:
                errors = validate_config(config, endpoint, allow_insecure_webhooks=settings.allow_insecure_webhooks)
            if errors or config is None:
                return reject(_error(422, errors), errors)
            name = storage.filename or ""
            ext = os.path.splitext(name)[1].lower()
            if ext not in FORMATS:
                msg = (
                    f"Unsupported file type '{ext or name}': upload a .csv, .json, .jsonl or .ndjson file"
                    if name
                    else "The file part has no filename; name it .csv, .json, .jsonl or .ndjson"
                )
                return reject(_error(400, msg), msg)
            try:
                table = read_upload(upload, FORMATS[ext], os.path.basename(name))
            except UploadError as exc:
                return reject(_error(400, str(exc)), str(exc))
            rows = table.num_rows
            record["row_count"] = rows
            if rows > settings.max_rows:
                msg = f"File has {rows:,} rows; the limit is {settings.max_rows:,} rows per file"
                return reject(_error(413, msg), msg)
            errors = check_columns(config.get("columns"), table.column_names)
            if errors:
                return reject(_error(422, errors), errors)
            tier = config.get("tier", "low")
            if tier == "high" and ctx.key_id not in self._high_tier_ids:
                msg = _HIGH_TIER.format(endpoint=endpoint)
                return reject(_error(403, msg), msg)
            price = int(settings.prices_cents[tier])
            estimate = rows * price
            with self._lock:
                if org.balance_cents - org.holds_cents < estimate:
                    return reject(_error(402), DOCUMENTED_DETAILS[402])
                org.holds_cents += estimate
                org.submits.append(now)
            task_id = str(uuid.uuid4())
            job_dir = self.data_dir / "jobs" / task_id
            job_dir.mkdir(parents=True)
            stored = job_dir / f"upload{ext}"
            storage.stream.close()
            os.replace(upload, stored)
            save_table(table, job_dir / "parsed.arrow")
            job = Job(
                task_id=task_id,
                run_id=str(uuid.uuid4()),
                endpoint=endpoint,
                tier=tier,
                key_id=ctx.key_id or "",
                row_count=rows,
                price_cents=price,
                estimate_cents=estimate,
                config=config,
                upload_path=stored,
                upload_format=FORMATS[ext],
                upload_name=os.path.basename(name),
                file_sha256=digest,
                idempotency_key=idem,
                cost_units=cost_units,
                created_at=now,
                due_at=now + settings.job_seconds,
            )
            with self._lock:
                self.jobs[task_id] = job
                if idem is not None:
                    self._idempotency[(ctx.key_id or "", endpoint, idem)] = (task_id, digest, now)
            record.update(task_id=task_id, replay=False)
        body: dict[str, Any] = {"task_id": task_id, "status": "RUNNING", "row_count": rows}
        if cost_units == "credits":
            body["estimated_cost_credits"] = round(estimate * CREDITS_PER_CENT, 6)
        else:
            body["estimated_cost_cents"] = estimate
        return _json(body)

    # ------------------------------------------------------------------ admin

    def _admin(self, endpoint: str, args: Mapping[str, Any], request: Request) -> Response:
        if endpoint == "admin_health":
            return _json({"status": "ok", "jobs": len(self.jobs)})
        if endpoint == "admin_submissions":
            with self._lock:
                return _json([asdict(s) for s in self.submissions])
        if endpoint == "admin_webhooks":
            with self._lock:
                return _json([asdict(d) for d in self.webhook_deliveries])
        if endpoint == "admin_jobs":
            return _json({tid: job.summary() for tid, job in list(self.jobs.items())})
        if endpoint == "admin_inject":
            try:
                spec = json.loads(request.get_data() or b"{}")
                fault = self.inject(spec.pop("method"), spec.pop("path_prefix"), spec.pop("status", None), **spec)
            except (ValueError, KeyError, TypeError) as exc:
                return _error(400, f"Invalid fault: {exc}")
            return _json(asdict(fault))
        job = self.jobs.get(args["task_id"])
        if job is None:
            return _error(404)
        action = args.get("action")
        if action == "complete":
            self.complete(job.task_id)
        elif action == "fail":
            self.fail(job.task_id)
        elif action == "cancel":
            self.cancel_job(job.task_id)
        elif action == "expire-links":
            self.expire_links(job.task_id)
        return _json(job.summary())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stream_file(path: Path, limit: int) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        left = limit
        while left > 0:
            chunk = fh.read(min(1 << 20, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
