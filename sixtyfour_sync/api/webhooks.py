"""Verifying signed webhook deliveries.

Header ``Sixtyfour-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]``; each ``v1`` is the hex
HMAC-SHA256, keyed with the signing secret's UTF-8 bytes, over ``f"{t}."`` followed by the raw body
bytes. A secret rotation signs twice, so any matching ``v1`` is accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import string
import time

from sixtyfour_sync._redact import Secret
from sixtyfour_sync.api.errors import WebhookSignatureError

__all__ = [
    "SIGNATURE_HEADER",
    "WebhookSignatureError",
    "compute_signature",
    "parse_signature_header",
    "sign_payload",
    "verify_webhook_signature",
]

SIGNATURE_HEADER = "Sixtyfour-Signature"
_HEX = frozenset(string.hexdigits)
_MAX_HEADER = 4096
#: A unix timestamp: ASCII digits only (``str.isdigit`` also takes "²" and other Unicode digits, which
#: ``int`` then refuses), and few enough of them to stay a number a float can hold.
_TIMESTAMP = re.compile(r"[0-9]{1,15}")


def _secret_bytes(secret: str | Secret) -> bytes:
    raw = secret.get() if isinstance(secret, Secret) else secret
    if not raw:
        raise WebhookSignatureError("webhook signing secret is empty")
    return raw.encode("utf-8")


def compute_signature(secret: str | Secret, timestamp: int, raw_body: bytes) -> str:
    """The hex ``v1`` signature of ``raw_body`` sent at ``timestamp``."""
    message = f"{timestamp}.".encode() + raw_body
    return hmac.new(_secret_bytes(secret), message, hashlib.sha256).hexdigest()


def sign_payload(secret: str | Secret, raw_body: bytes, timestamp: int | None = None) -> str:
    """A complete ``Sixtyfour-Signature`` header value for ``raw_body`` (for receivers' tests)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={compute_signature(secret, t, raw_body)}"


def parse_signature_header(header: str) -> tuple[int, list[str]]:
    """Split a signature header into its timestamp and ``v1`` signatures; malformed -> error."""
    if not isinstance(header, str) or not header.strip():
        raise WebhookSignatureError("webhook signature header is missing or empty")
    if len(header) > _MAX_HEADER:
        raise WebhookSignatureError("webhook signature header is too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise WebhookSignatureError(f"malformed webhook signature header: element {part.strip()!r}"[:120])
        if name == "t":
            if timestamp is not None:
                raise WebhookSignatureError("malformed webhook signature header: more than one t=")
            if not _TIMESTAMP.fullmatch(value):
                raise WebhookSignatureError("malformed webhook signature header: t is not a unix timestamp")
            timestamp = int(value)
        elif name == "v1":
            if not value or len(value) != 64 or not set(value) <= _HEX:
                raise WebhookSignatureError("malformed webhook signature header: v1 is not a hex SHA-256")
            signatures.append(value.lower())
        # Other schemes (v0, future versions) are ignored, as with Stripe-style headers.
    if timestamp is None:
        raise WebhookSignatureError("malformed webhook signature header: no t= timestamp")
    if not signatures:
        raise WebhookSignatureError("malformed webhook signature header: no v1= signature")
    return timestamp, signatures


def verify_webhook_signature(
    secret: str | Secret,
    header: str,
    raw_body: bytes,
    now: float | None = None,
    tolerance: float = 300,
) -> None:
    """Check a delivery's signature; raise :class:`WebhookSignatureError` saying why when it fails.

    Verify the raw request bytes exactly as received (re-serialised JSON will not match). Deliveries
    whose timestamp is more than ``tolerance`` seconds from ``now`` are rejected, against replays.
    """
    if not isinstance(raw_body, (bytes, bytearray, memoryview)):
        raise WebhookSignatureError("webhook body must be the raw request bytes")
    timestamp, signatures = parse_signature_header(header)
    current = time.time() if now is None else now
    age = current - timestamp
    if abs(age) > tolerance:
        direction = "old" if age > 0 else "in the future"
        raise WebhookSignatureError(
            f"webhook timestamp is {abs(age):.0f} s {direction}, outside the {tolerance:.0f} s tolerance"
        )
    expected = compute_signature(secret, timestamp, bytes(raw_body))
    # compare_digest every candidate: stopping at the first match would leak timing about the rest.
    matched = False
    for candidate in signatures:
        if hmac.compare_digest(expected, candidate):
            matched = True
    if not matched:
        raise WebhookSignatureError("webhook signature does not match the body (no v1 signature matched)")
