"""One webhook delivery, checked: signature, timestamp, event id and the task it is about. No I/O.

Sixtyfour signs each delivery (``Sixtyfour-Signature: t=...,v1=...``) and names it with
``Sixtyfour-Event-Id`` (the dedupe key), ``Sixtyfour-Event-Type`` and ``Sixtyfour-Delivery-Attempt``. The
body's exact shape for bulk jobs is not documented, so the task is looked for under every name it may have
(``task_id``, ``job_id``, ``id``, ``run_id``, also inside ``data``); nothing else in the body is trusted: the
receiver asks ``/job-status`` for the job's state and fresh links.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sixtyfour_sync._redact import Secret
from sixtyfour_sync.api.errors import WebhookSignatureError
from sixtyfour_sync.api.webhooks import SIGNATURE_HEADER, verify_webhook_signature

__all__ = ["MAX_BODY_BYTES", "Delivery", "Rejected", "read_delivery"]

#: Largest body accepted (a bulk event carries at most a small inline preview).
MAX_BODY_BYTES = 5 * 1024 * 1024
EVENT_ID_HEADER = "Sixtyfour-Event-Id"
EVENT_TYPE_HEADER = "Sixtyfour-Event-Type"
ATTEMPT_HEADER = "Sixtyfour-Delivery-Attempt"
_TASK_FIELDS = ("task_id", "job_id", "id", "run_id")
_MAX_ID = 200


@dataclass(frozen=True)
class Delivery:
    """A delivery whose signature checked out."""

    event_id: str
    event_type: str | None
    attempt: int | None
    #: The ids the body names, in the order they are tried against the ledger.
    task_ids: tuple[str, ...]


class Rejected(Exception):
    """A delivery refused with an HTTP status (401: not from Sixtyfour; 400: unusable)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return None if value is None else str(value).strip()


def _ids(body: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for where in (body, body.get("data") if isinstance(body.get("data"), Mapping) else None):
        if where is None:
            continue
        for name in _TASK_FIELDS:
            value = where.get(name)
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                text = str(value).strip()
                if text and len(text) <= _MAX_ID and text not in found:
                    found.append(text)
    return found


def read_delivery(
    headers: Mapping[str, str], body: bytes, secret: Secret | str, *, now: float | None = None, tolerance: float = 300
) -> Delivery:
    """Check a delivery: 401 unless signed with ``secret`` within ``tolerance`` s; 400 when it is unusable."""
    signature = _header(headers, SIGNATURE_HEADER)
    if not signature:
        raise Rejected(401, f"no {SIGNATURE_HEADER} header")
    try:
        verify_webhook_signature(secret, signature, body, now=now, tolerance=tolerance)
    except WebhookSignatureError as exc:
        raise Rejected(401, str(exc)) from None
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Rejected(400, "the body is not JSON") from None
    if not isinstance(payload, Mapping):
        raise Rejected(400, "the body is not a JSON object")
    event_id = _header(headers, EVENT_ID_HEADER) or str(payload.get("event_id") or "").strip()
    if not event_id or len(event_id) > _MAX_ID:
        raise Rejected(400, f"no usable {EVENT_ID_HEADER}")
    attempt_text = _header(headers, ATTEMPT_HEADER)
    attempt = int(attempt_text) if attempt_text and attempt_text.isdigit() else None
    event_type = _header(headers, EVENT_TYPE_HEADER) or payload.get("event_type")
    return Delivery(
        event_id=event_id,
        event_type=None if event_type is None else str(event_type)[:_MAX_ID],
        attempt=attempt,
        task_ids=tuple(_ids(payload)),
    )
