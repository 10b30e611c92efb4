"""The emulator: state (organisations, jobs, submissions), its test controls and the WSGI application.

Other modules do one job each and none imports this one: accounts (keys, organisations, limits,
Idempotency-Keys), submit (the submission checks), output (result files), status (status bodies,
signed links), faults, webhooks (subscribed to the job-finished callbacks) and server (serves any
WSGI application).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from sixtyfour_sync._redact import register_secret
from sixtyfour_sync.emulator.accounts import Accounts
from sixtyfour_sync.emulator.admin import admin_response, admin_routes
from sixtyfour_sync.emulator.controls import Controls
from sixtyfour_sync.emulator.faults import FaultPlan, fault_response, truncated
from sixtyfour_sync.emulator.generate import reference_output
from sixtyfour_sync.emulator.models import Job, SubmissionRecord, WebhookDelivery
from sixtyfour_sync.emulator.output import OutputOptions, produce_outputs
from sixtyfour_sync.emulator.responses import DOCUMENTED_DETAILS, UploadRequest, error, json_response, stream_file
from sixtyfour_sync.emulator.server import EmulatorServer, serve
from sixtyfour_sync.emulator.settings import (
    CREDITS_PER_CENT,
    EmulatorSettings,
)
from sixtyfour_sync.emulator.status import LinkSigner, live_status, status_body
from sixtyfour_sync.emulator.submit import SubmitHandler
from sixtyfour_sync.emulator.truth import truth_rows
from sixtyfour_sync.emulator.webhooks import WebhookSender

__all__ = ["DOCUMENTED_DETAILS", "Emulator"]

log = logging.getLogger("sixtyfour_sync.emulator")

#: Called with a job once it reached a terminal state (completed, failed, cancelled).
JobFinished = Callable[[Job], None]


def _routes() -> list[Rule]:
    """The routes (new Rule objects each time: a Rule binds to one Map)."""
    return [
        Rule("/bulk-intelligence/<any(people, company):endpoint>", methods=["POST"], endpoint="submit"),
        Rule("/job-status/<task_id>", methods=["GET"], endpoint="job_status"),
        Rule("/workflows/runs/<task_id>/live_status", methods=["GET"], endpoint="live_status"),
        Rule("/workflows/cancel", methods=["POST"], endpoint="cancel"),
        Rule("/check-balance", methods=["GET"], endpoint="balance"),
        Rule("/downloads/<task_id>/<filename>", methods=["GET"], endpoint="download"),
        *admin_routes(),
    ]


class _Drop(Exception):
    """Close the connection without answering."""


@dataclass
class _Ctx:
    """Per-request facts the dispatcher needs after the handler ran."""

    record: dict[str, Any] | None = None
    truncate: bool = False


class Emulator(Controls):
    """A faithful local Sixtyfour Bulk Intelligence API (see docs/emulator.md).

    State lives in memory; files live under ``settings.data_dir`` (or a temporary directory).
    ``submissions``, ``jobs`` and ``webhook_deliveries`` are there for tests to inspect.
    """

    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        self.settings = settings or EmulatorSettings()
        s = self.settings
        self.submissions: list[SubmissionRecord] = []
        self.jobs: dict[str, Job] = {}
        self.webhook_deliveries: list[WebhookDelivery] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._finished_callbacks: list[JobFinished] = []
        self._base_url: str | None = None
        self._accounts = Accounts(s.api_keys, s.high_tier_keys, s.balance_cents, s.idempotency_ttl_seconds)
        self._faults = FaultPlan(s.faults)
        self._signer = LinkSigner()
        self._urls = Map(_routes(), strict_slashes=False)
        if s.webhook_secret:
            register_secret(s.webhook_secret)
        if not s.api_keys:
            log.warning("emulator: no API keys configured; accepting any non-empty x-api-key")
        if s.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="sixtyfour-emulator-"))
            self._owns_data_dir = True
            # Also removed when an emulator that never served is garbage-collected.
            weakref.finalize(self, shutil.rmtree, str(self.data_dir), True)
        else:
            self.data_dir = Path(s.data_dir)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._owns_data_dir = False
        (self.data_dir / "uploads").mkdir(exist_ok=True)
        # Parsing an upload and generating an output take turns: memory holds one file's working set, not
        # one per request in flight (the engine uploads while earlier jobs complete).
        self._heavy = threading.BoundedSemaphore(1)
        self._submit = SubmitHandler(s, self._accounts, self.data_dir, self._register, self._find, self._heavy)
        self._webhooks = WebhookSender(s, self._render_for_webhook, self._stop, self.webhook_deliveries, self._lock)
        self.on_job_finished(self._webhooks.job_finished)

    def __repr__(self) -> str:
        return f"Emulator(jobs={len(self.jobs)}, url={self._base_url!r})"

    # ------------------------------------------------------------------ serving and lifecycle

    @property
    def url(self) -> str | None:
        """The base URL while serving, else None."""
        return self._base_url

    @property
    def stop_event(self) -> threading.Event:
        """Set when the emulator stops: background work (webhook retries) ends on it."""
        return self._stop

    def on_job_finished(self, callback: JobFinished) -> Callable[[], None]:
        """Call ``callback(job)`` whenever a job ends; returns a function that unsubscribes it."""
        with self._lock:
            self._finished_callbacks.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._finished_callbacks.remove(callback)

        return unsubscribe

    @contextlib.contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[EmulatorServer]:
        """Serve over HTTP in a daemon thread: ``with emu.serve() as server: server.url``."""
        self._stop.clear()
        (self.data_dir / "uploads").mkdir(parents=True, exist_ok=True)
        try:
            with serve(self, host, port, tick=self.advance) as server:
                self._base_url = server.url
                yield server
        finally:
            self._base_url = None
            self.close()

    def advance(self) -> None:
        """Move every running job whose time has come to its terminal state (the server does this)."""
        now = self.settings.clock()
        for job in list(self.jobs.values()):
            if not job.is_terminal and now >= job.due_at:
                self._advance(job)

    def close(self) -> None:
        """Stop background work and remove the temporary data directory (if the emulator made it)."""
        self._stop.set()
        self._webhooks.join(timeout=2)
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

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

        Each tier has its own values and failure rate (``tier_seed``, ``tier_failure_rate``), and with
        ``answer_errors`` its own wrong answers (``tier_errors``). Passthrough values are returned as given.
        """
        return reference_output(
            struct,
            rows,
            endpoint=endpoint,
            field_confidence=field_confidence,
            columns=columns,
            seed=self.settings.tier_seed(tier),
            failure_rate=self.settings.tier_failure_rate(tier),
            carried=self._carried(),
            errors=self.settings.tier_errors(tier),
        )

    def truth(
        self,
        struct: Mapping[str, Any] | None,
        rows: Iterable[Mapping[str, Any]],
        *,
        endpoint: str = "people",
        columns: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """The true value of every struct field for each input row (the ground truth; see truth.py)."""
        return truth_rows(struct, rows, endpoint=endpoint, columns=columns, seed=self.settings.seed)

    def status_body(self, job: Job, base_url: str, cost_units: str | None = None) -> dict[str, Any]:
        """The /job-status answer for a job (fresh signed links on every call)."""
        return status_body(
            job,
            base_url,
            self._signer,
            now=self.settings.clock(),
            download_ttl_seconds=self.settings.download_ttl_seconds,
            cost_units=cost_units,
        )

    # ------------------------------------------------------------------ jobs

    def _job(self, task_id: str) -> Job:
        try:
            return self.jobs[task_id]
        except KeyError:
            raise KeyError(f"no job {task_id!r}") from None

    def _find(self, task_id: str) -> Job | None:
        return self.jobs.get(task_id)

    def _register(self, job: Job) -> None:
        with self._lock:
            self.jobs[job.task_id] = job

    def _carried(self) -> frozenset[str] | None:
        return self.settings.keep_carried_columns if self.settings.strip_carried_columns else None

    def _render_for_webhook(self, job: Job) -> dict[str, Any] | None:
        base = self._base_url
        return None if base is None else self.status_body(job, base)

    def _end(self, task_id: str, outcome: str, message: str | None = None) -> Job:
        job = self._job(task_id)
        with job.lock:
            if not job.is_terminal:
                self._finish(job, outcome=outcome, error=message)
        return job

    def _advance(self, job: Job) -> None:
        with job.lock:
            if job.is_terminal or self.settings.clock() < job.due_at:
                return
            faults = self.settings.faults
            roll = self._faults.roll() if (faults.job_failure_rate or faults.job_cancel_rate) else 1.0
            if roll < faults.job_failure_rate:
                self._finish(job, outcome="failed", error="Enrichment pipeline failed")
            elif roll < faults.job_failure_rate + faults.job_cancel_rate:
                self._finish(job, outcome="cancelled", error="Job was cancelled")
            else:
                self._finish(job, outcome="completed")

    def _finish(self, job: Job, *, outcome: str, error: str | None = None) -> None:
        """Move a job to a terminal state and tell the subscribers; the caller holds ``job.lock``."""
        if outcome == "completed":
            try:
                self._produce(job)
            except Exception as exc:  # a bug or a disk problem must not leave the job running forever
                log.exception("emulator: producing the output of job %s failed", job.task_id)
                outcome, error = "failed", f"Enrichment pipeline failed: {type(exc).__name__}"
        charge = job.estimate_cents if outcome == "completed" else 0
        # Every row is charged, failed ones included: the estimate is what a job costs.
        self._accounts.settle(job.org_id, job.estimate_cents, charge)
        with self._lock:
            job.charge_cents = charge
            job.status = outcome
            job.error = error
            job.closed_at = self.settings.clock()
            callbacks = list(self._finished_callbacks)
        for callback in callbacks:
            try:
                callback(job)
            except Exception:
                log.exception("emulator: a job-finished callback failed for job %s", job.task_id)

    def _produce(self, job: Job) -> None:
        s = self.settings
        tier = str(job.config.get("tier") or "low")
        options = OutputOptions(
            s.tier_seed(tier), s.tier_failure_rate(tier), s.preview_max_rows, self._carried(), s.tier_errors(tier)
        )
        with self._heavy:
            job.files, job.failed_rows = produce_outputs(job, options, s.clock())

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI application."""
        request = UploadRequest(environ)
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
            _discard_uploads(request)
        self._finish_record(ctx, response.status_code)
        response.headers.setdefault("x-request-id", str(uuid.uuid4()))
        if ctx.truncate:
            response = truncated(response)
        return response(environ, start_response)

    def _dispatch(self, request: Request, ctx: _Ctx) -> Response:
        adapter = self._urls.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except NotFound:
            return error(404, "Not Found")
        except MethodNotAllowed:
            return error(405, "Method Not Allowed")
        except HTTPException as exc:  # pragma: no cover - other routing answers
            return error(exc.code or 400, exc.description)
        if endpoint.startswith("admin_"):
            return admin_response(self, endpoint, args, request)
        if endpoint == "submit":
            ctx.record = {"endpoint": args["endpoint"], "idempotency_key": request.headers.get("Idempotency-Key")}
        fault = self._faults.take(request.method, request.path)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.phase == "before":
                if fault.drop:
                    raise _Drop
                if fault.status is not None:
                    return fault_response(fault)
            ctx.truncate = fault.truncate
        response = self._api(endpoint, args, request, ctx)
        if fault is not None and fault.phase == "after":
            if fault.drop:
                raise _Drop
            if fault.status is not None:
                return fault_response(fault)
        return response

    def _finish_record(self, ctx: _Ctx, status: int | None) -> None:
        if ctx.record is None:
            return
        r = ctx.record
        rec = SubmissionRecord(
            task_id=r.get("task_id"),
            endpoint=r["endpoint"],
            idempotency_key=r.get("idempotency_key"),
            file_sha256=r.get("file_sha256"),
            row_count=r.get("row_count"),
            replay=bool(r.get("replay")),
            status_code=status,
            at=self.settings.clock(),
            detail=r.get("detail"),
        )
        ctx.record = None
        with self._lock:
            self.submissions.append(rec)

    # ------------------------------------------------------------------ API handlers

    def _api(self, endpoint: str, args: Mapping[str, Any], request: Request, ctx: _Ctx) -> Response:
        kid = self._accounts.authenticate(request.headers.get("x-api-key", ""))
        if kid is None:
            if ctx.record is not None:
                ctx.record["detail"] = "Invalid API key"
            return error(401)
        wait = self._accounts.take_request(kid, self.settings.request_limit_per_minute, self.settings.clock())
        if wait is not None:
            return error(429, headers={"Retry-After": str(wait)})
        org = self._accounts.org_for(kid)
        if endpoint == "submit":
            return self._submit(args["endpoint"], request, org, ctx.record if ctx.record is not None else {})
        if endpoint == "balance":
            return json_response({"credits": round(self._accounts.spendable(org) * CREDITS_PER_CENT, 6)})
        task_id = request.args.get("job_id") if endpoint == "cancel" else args["task_id"]
        if endpoint == "cancel" and not task_id:
            return json_response(
                {"detail": [{"loc": ["query", "job_id"], "msg": "Field required", "type": "missing"}]}, 422
            )
        job = self.jobs.get(task_id or "")
        if job is None or job.org_id != org.org_id or job.lost:
            return error(404)
        if endpoint == "download":
            return self._download(job, args["filename"], request, ctx)
        if not job.is_terminal:
            self._advance(job)
        if endpoint == "cancel":
            return self._cancel(job)
        if endpoint == "job_status":
            return json_response(self.status_body(job, request.host_url.rstrip("/"), request.args.get("cost_units")))
        return json_response(live_status(job, self.settings.clock()))

    def _cancel(self, job: Job) -> Response:
        with job.lock:
            if job.status == "running":
                self._finish(job, outcome="cancelled", error="Job was cancelled")
            elif job.status != "cancelled":
                return error(409, f"Job is already {job.status} and cannot be cancelled")
        return json_response({"job_id": job.task_id, "status": "canceled"})

    def _download(self, job: Job, filename: str, request: Request, ctx: _Ctx) -> Response:
        f = next((x for x in job.files if x.filename == filename), None)
        if f is None or not f.path.exists():
            return error(404, "File not found")
        problem = self._signer.problem(
            f"/downloads/{job.task_id}/{filename}",
            request.args.get("expires", ""),
            request.args.get("signature", ""),
            self.settings.clock(),
            job.links_expire_before,
        )
        if problem is not None:
            return error(403, problem)
        size = f.path.stat().st_size
        send = size // 2 if ctx.truncate else size
        ctx.truncate = False
        response = Response(stream_file(f.path, send), status=200, mimetype=f.content_type, direct_passthrough=True)
        response.headers["Content-Length"] = str(size)
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


def _discard_uploads(request: Request) -> None:
    if "files" not in request.__dict__:
        return  # the body was never parsed
    for storage in request.files.values():
        name = getattr(storage.stream, "name", None)
        with contextlib.suppress(OSError):
            storage.stream.close()
        if isinstance(name, str):
            Path(name).unlink(missing_ok=True)
