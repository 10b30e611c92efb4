"""One webhook delivery, checked: signature, timestamp, event id and the task it is about. No I/O.

Sixtyfour signs each delivery (``Sixtyfour-Signature: t=...,v1=...``) and names it with
``Sixtyfour-Event-Id``, ``Sixtyfour-Event-Type`` and ``Sixtyfour-Delivery-Attempt``. Those headers are not
signed: the event id (the dedupe key) is taken from the signed body's ``event_id`` when it has one, and a
header naming another id is refused (400), so a captured delivery replayed under a new header id is still the
same event. Only a body without ``event_id`` falls back to the header. The body's exact shape for bulk jobs is
not documented, so the task is looked for under every name it may have (``task_id``, ``job_id``, ``id``,
``run_id``, also inside ``data``); nothing else in the body is trusted: the receiver asks ``/job-status`` for
the job's state and fresh links.

Headers are read strictly: numbers are ASCII digits (``str.isdigit`` would take "²", which ``int`` refuses),
ids are printable ASCII; anything else is a 400, never an exception.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sixtyfour_sync._redact import Secret
from sixtyfour_sync.api.errors import WebhookSignatureError
from sixtyfour_sync.api.webhooks import SIGNATURE_HEADER, verify_webhook_signature

__all__ = ["MAX_BODY_BYTES", "Delivery", "Rejected", "ascii_int", "read_delivery"]

#: Largest body accepted (a bulk event carries at most a small inline preview).
MAX_BODY_BYTES = 5 * 1024 * 1024
EVENT_ID_HEADER = "Sixtyfour-Event-Id"
EVENT_TYPE_HEADER = "Sixtyfour-Event-Type"
ATTEMPT_HEADER = "Sixtyfour-Delivery-Attempt"
_TASK_FIELDS = ("task_id", "job_id", "id", "run_id")
_MAX_ID = 200
#: An id or an event type: printable ASCII, no spaces or control characters (a UUID, ``bulk_job.completed``).
_TOKEN = re.compile(rf"[\x21-\x7e]{{1,{_MAX_ID}}}")
_DIGITS = re.compile(r"[0-9]+")


def ascii_int(text: str | None, *, max_digits: int) -> int | None:
    """``text`` as a number when it is 1 to ``max_digits`` ASCII digits (surrounding blanks aside); else None."""
    if text is None:
        return None
    value = text.strip(" \t")
    if not value or len(value) > max_digits or not _DIGITS.fullmatch(value):
        return None
    return int(value)


@dataclass(frozen=True)
class Delivery:
    """A delivery whose signature checked out."""

    event_id: str
    #: Where the event id came from: ``"body"`` (signed) or ``"header"`` (the body had none).
    event_id_source: str
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
                text = value.strip() if isinstance(value, str) else str(value)
                if _TOKEN.fullmatch(text) and text not in found:
                    found.append(text)
    return found


def _event_id(headers: Mapping[str, str], payload: Mapping[str, Any]) -> tuple[str, str]:
    """The event id and where it came from: the signed body's ``event_id``, else the header."""
    header = _header(headers, EVENT_ID_HEADER) or None
    if header is not None and not _TOKEN.fullmatch(header):
        raise Rejected(400, f"{EVENT_ID_HEADER} is not a usable id (1 to {_MAX_ID} printable ASCII characters)")
    signed = payload.get("event_id")
    if signed is None:
        if not header:
            raise Rejected(400, f"no event id: the body has no event_id and there is no {EVENT_ID_HEADER} header")
        return header, "header"
    if isinstance(signed, int) and not isinstance(signed, bool):
        signed = str(signed)
    text = signed.strip() if isinstance(signed, str) else ""
    if not _TOKEN.fullmatch(text):
        raise Rejected(400, f"the body's event_id is not a usable id (1 to {_MAX_ID} printable ASCII characters)")
    if header and header != text:
        raise Rejected(400, f"{EVENT_ID_HEADER} does not match the signed body's event_id")
    return text, "body"


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
    except (UnicodeDecodeError, ValueError, RecursionError):  # ValueError: JSONDecodeError, a 5,000-digit number
        raise Rejected(400, "the body is not JSON") from None
    if not isinstance(payload, Mapping):
        raise Rejected(400, "the body is not a JSON object")
    event_id, source = _event_id(headers, payload)
    attempt_text = _header(headers, ATTEMPT_HEADER) or None
    attempt = ascii_int(attempt_text, max_digits=6)
    if attempt_text is not None and attempt is None:
        raise Rejected(400, f"{ATTEMPT_HEADER} is not a number")
    event_type = _header(headers, EVENT_TYPE_HEADER) or None
    if event_type is not None and not _TOKEN.fullmatch(event_type):
        raise Rejected(400, f"{EVENT_TYPE_HEADER} is not a usable event type")
    if not event_type:
        in_body = payload.get("event_type")
        event_type = in_body.strip() if isinstance(in_body, str) and _TOKEN.fullmatch(in_body.strip()) else None
    return Delivery(
        event_id=event_id,
        event_id_source=source,
        event_type=event_type,
        attempt=attempt,
        task_ids=tuple(_ids(payload)),
    )
