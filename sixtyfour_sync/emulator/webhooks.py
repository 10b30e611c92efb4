"""Signed webhook deliveries when a job ends, retried with backoff on failure (bounded).

A :class:`WebhookSender` knows nothing of the emulator: it is handed a job when one ends (subscribe
:meth:`WebhookSender.job_finished` to the emulator's job-finished callbacks), a function that renders
the job's status body, the stop event that ends retries, and a list to record each attempt in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from sixtyfour_sync._redact import redact_url
from sixtyfour_sync.emulator.models import Job, WebhookDelivery
from sixtyfour_sync.emulator.settings import EmulatorSettings
from sixtyfour_sync.emulator.validation import webhook_url_problem

__all__ = ["EVENT_TYPES", "WebhookSender", "sign_payload"]

log = logging.getLogger("sixtyfour_sync.emulator")

EVENT_TYPES = {"completed": "bulk_job.completed", "failed": "bulk_job.failed", "cancelled": "bulk_job.cancelled"}
_MAX_BACKOFF = 60.0

#: Renders a job's /job-status body with fresh links, or None while nothing is being served.
StatusRenderer = Callable[[Job], "dict[str, Any] | None"]


def sign_payload(secret: str, timestamp: int, raw_body: bytes) -> str:
    """Hex HMAC-SHA256 keyed with the secret's UTF-8 over ``f"{t}." + raw body``."""
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + raw_body, hashlib.sha256).hexdigest()


class WebhookSender:
    """Delivers each ended job's event to its ``webhook_url`` in a background thread."""

    def __init__(
        self,
        settings: EmulatorSettings,
        render_status: StatusRenderer,
        stop: threading.Event,
        deliveries: list[WebhookDelivery],
        lock: threading.RLock,
    ) -> None:
        self.settings = settings
        self._render = render_status
        self._stop = stop
        self._deliveries = deliveries
        self._lock = lock
        self._threads: list[threading.Thread] = []

    def job_finished(self, job: Job) -> None:
        """Start delivering the job's terminal event, when its config asks for a webhook."""
        url = job.config.get("webhook_url")
        if not url:
            return
        event_id = str(uuid.uuid4())
        event_type = EVENT_TYPES.get(job.status, f"bulk_job.{job.status}")
        raw = json.dumps(self._payload(job, event_id, event_type), ensure_ascii=False).encode("utf-8")
        thread = threading.Thread(
            target=self._deliver,
            args=(job.task_id, str(url), event_id, event_type, raw),
            name=f"emulator-webhook-{job.task_id[:8]}",
            daemon=True,
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def join(self, timeout: float) -> None:
        """Wait for the delivery threads (after the stop event was set)."""
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(timeout=timeout)

    def _payload(self, job: Job, event_id: str, event_type: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "event_id": event_id,
            "event_type": event_type,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.settings.clock())),
            "task_id": job.task_id,
            "run_id": job.run_id,
            "endpoint": job.endpoint,
            "row_count": job.row_count,
        }
        status = self._render(job)
        if status is None:
            body["status"] = job.status
            return body
        status.pop("id", None)
        status.pop("run_id", None)
        body.update(status)
        results = status.get("results", [])
        if results:
            top = max(int(r.get("block_number", 0)) for r in results)
            # The final output's first file when it is split (block_3_enriched.csv sorts before its .partN.csv).
            final = min(
                (r for r in results if int(r.get("block_number", 0)) == top), key=lambda r: str(r.get("filename"))
            )
            body["results_download_url"] = final["download_url"]
        return body

    def _headers(self, event_id: str, event_type: str, attempt: int, raw: bytes) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Sixtyfour-Webhooks (sixtyfour-sync emulator)",
            "Sixtyfour-Event-Id": event_id,
            "Sixtyfour-Event-Type": event_type,
            "Sixtyfour-Delivery-Attempt": str(attempt),
        }
        secret = self.settings.webhook_secret
        if secret:
            t = int(self.settings.clock())
            headers["Sixtyfour-Signature"] = f"t={t},v1={sign_payload(secret, t, raw)}"
        return headers

    def _target(self, url: str) -> str:
        forward = self.settings.webhook_forward_to
        if not forward:
            return url
        parts = urlsplit(url)
        base = urlsplit(forward)
        return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))

    def _deliver(self, task_id: str, url: str, event_id: str, event_type: str, raw: bytes) -> None:
        settings = self.settings
        delay = settings.webhook_retry_seconds
        with httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False) as client:
            for attempt in range(1, settings.webhook_max_attempts + 1):
                if self._stop.is_set():
                    return
                status: int | None = None
                problem = webhook_url_problem(url, allow_insecure=settings.allow_insecure_webhooks)
                if problem is None:
                    try:
                        headers = self._headers(event_id, event_type, attempt, raw)
                        status = client.post(self._target(url), content=raw, headers=headers).status_code
                    except httpx.HTTPError as exc:
                        problem = type(exc).__name__
                delivery = WebhookDelivery(
                    event_id, event_type, task_id, redact_url(url), attempt, status, problem, settings.clock()
                )
                with self._lock:
                    self._deliveries.append(delivery)
                if status is not None and 200 <= status < 300:
                    return
                log.info("emulator: webhook attempt %d for job %s failed (%s)", attempt, task_id, status or problem)
                if attempt < settings.webhook_max_attempts and self._stop.wait(delay):
                    return
                delay = min(delay * 2, _MAX_BACKOFF)
