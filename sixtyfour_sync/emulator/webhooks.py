"""Signed webhook deliveries when a job ends, retried with backoff on failure (bounded)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx

from sixtyfour_sync._redact import redact_url
from sixtyfour_sync.emulator.models import Job, WebhookDelivery
from sixtyfour_sync.emulator.validation import webhook_url_problem

if TYPE_CHECKING:
    from sixtyfour_sync.emulator.core import Emulator

__all__ = ["EVENT_TYPES", "sign_payload", "start_delivery"]

log = logging.getLogger("sixtyfour_sync.emulator")

EVENT_TYPES = {"completed": "bulk_job.completed", "failed": "bulk_job.failed", "cancelled": "bulk_job.cancelled"}
_MAX_BACKOFF = 60.0


def sign_payload(secret: str, timestamp: int, raw_body: bytes) -> str:
    """Hex HMAC-SHA256 keyed with the secret's UTF-8 over ``f"{t}." + raw body``."""
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + raw_body, hashlib.sha256).hexdigest()


def _payload(emu: Emulator, job: Job, event_id: str, event_type: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": event_id,
        "event_type": event_type,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(emu.settings.clock())),
        "task_id": job.task_id,
        "run_id": job.run_id,
        "endpoint": job.endpoint,
        "row_count": job.row_count,
    }
    if emu.url is not None:
        status = emu.status_body(job, emu.url)
        status.pop("id", None)
        status.pop("run_id", None)
        body.update(status)
        results = status.get("results", [])
        if results:
            final = max(results, key=lambda r: int(r.get("block_number", 0)))
            body["results_download_url"] = final["download_url"]
    else:
        body["status"] = job.status
    return body


def start_delivery(emu: Emulator, job: Job) -> None:
    """Deliver the job's terminal event to its webhook_url in a background thread."""
    url = str(job.config["webhook_url"])
    event_id = str(uuid.uuid4())
    event_type = EVENT_TYPES.get(job.status, f"bulk_job.{job.status}")
    raw = json.dumps(_payload(emu, job, event_id, event_type), ensure_ascii=False).encode("utf-8")
    thread = threading.Thread(
        target=_deliver,
        args=(emu, job.task_id, url, event_id, event_type, raw),
        name=f"emulator-webhook-{job.task_id[:8]}",
        daemon=True,
    )
    emu._threads.append(thread)
    thread.start()


def _deliver(emu: Emulator, task_id: str, url: str, event_id: str, event_type: str, raw: bytes) -> None:
    settings = emu.settings
    delay = settings.webhook_retry_seconds
    with httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False) as client:
        for attempt in range(1, settings.webhook_max_attempts + 1):
            if emu._stop.is_set():
                return
            status: int | None = None
            error: str | None = webhook_url_problem(url, allow_insecure=settings.allow_insecure_webhooks)
            if error is None:
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "Sixtyfour-Webhooks (sixtyfour-sync emulator)",
                    "Sixtyfour-Event-Id": event_id,
                    "Sixtyfour-Event-Type": event_type,
                    "Sixtyfour-Delivery-Attempt": str(attempt),
                }
                if settings.webhook_secret:
                    t = int(settings.clock())
                    headers["Sixtyfour-Signature"] = f"t={t},v1={sign_payload(settings.webhook_secret, t, raw)}"
                try:
                    status = client.post(url, content=raw, headers=headers).status_code
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}"
            delivery = WebhookDelivery(
                event_id, event_type, task_id, redact_url(url), attempt, status, error, settings.clock()
            )
            with emu._lock:
                emu.webhook_deliveries.append(delivery)
            if status is not None and 200 <= status < 300:
                return
            log.info("emulator: webhook attempt %d for job %s failed (%s)", attempt, task_id, status or error)
            if attempt < settings.webhook_max_attempts and emu._stop.wait(delay):
                return
            delay = min(delay * 2, _MAX_BACKOFF)
