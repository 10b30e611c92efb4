"""Webhook signature verification."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from sixtyfour_sync.api import WebhookSignatureError, sign_payload, verify_webhook_signature

SECRET = "sk_whsec_" + "ab" * 32
OLD_SECRET = "sk_whsec_" + "cd" * 32
BODY = b'{"event_id":"e1","run_id":"r1","status":"completed"}'
NOW = 1_800_000_000


def _sig(secret: str, t: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def test_valid_signature() -> None:
    header = f"t={NOW},v1={_sig(SECRET, NOW, BODY)}"
    verify_webhook_signature(SECRET, header, BODY, now=NOW + 10)
    assert sign_payload(SECRET, BODY, NOW) == header


def test_rotation_second_v1_matches() -> None:
    header = f"t={NOW},v1={_sig(OLD_SECRET, NOW, BODY)},v1={_sig(SECRET, NOW, BODY)}"
    verify_webhook_signature(SECRET, header, BODY, now=NOW)
    verify_webhook_signature(OLD_SECRET, header, BODY, now=NOW)


def test_tampered_body_rejected() -> None:
    header = f"t={NOW},v1={_sig(SECRET, NOW, BODY)}"
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_webhook_signature(SECRET, header, BODY.replace(b"completed", b"failed"), now=NOW)


def test_wrong_secret_rejected() -> None:
    header = f"t={NOW},v1={_sig(OLD_SECRET, NOW, BODY)}"
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_webhook_signature(SECRET, header, BODY, now=NOW)


def test_old_and_future_timestamps_rejected() -> None:
    header = f"t={NOW},v1={_sig(SECRET, NOW, BODY)}"
    with pytest.raises(WebhookSignatureError, match="301 s old"):
        verify_webhook_signature(SECRET, header, BODY, now=NOW + 301)
    with pytest.raises(WebhookSignatureError, match="in the future"):
        verify_webhook_signature(SECRET, header, BODY, now=NOW - 400)
    verify_webhook_signature(SECRET, header, BODY, now=NOW + 300)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("", "missing"),
        ("garbage", "malformed"),
        (f"v1={'a' * 64}", "no t="),
        (f"t={NOW}", "no v1="),
        (f"t=abc,v1={'a' * 64}", "unix timestamp"),
        (f"t={NOW},v1=xyz", "hex"),
        (f"t={NOW},t={NOW},v1={'a' * 64}", "more than one"),
    ],
)
def test_malformed_headers_rejected(header: str, reason: str) -> None:
    with pytest.raises(WebhookSignatureError, match=reason):
        verify_webhook_signature(SECRET, header, BODY, now=NOW)


def test_body_must_be_bytes() -> None:
    header = f"t={NOW},v1={_sig(SECRET, NOW, BODY)}"
    with pytest.raises(WebhookSignatureError, match="raw request bytes"):
        verify_webhook_signature(SECRET, header, BODY.decode(), now=NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize("t", ["\u00b2", "\u00b9\u00b3", "1\u00b2", "\u0661\u0662\u0663", "\uff11\uff12", "9" * 400])
def test_a_timestamp_is_ascii_digits_only(t: str) -> None:
    # str.isdigit() takes these; int() refuses the first ones and the last overflows a float
    header = f"t={t},v1={_sig(SECRET, NOW, BODY)}"
    with pytest.raises(WebhookSignatureError, match="unix timestamp"):
        verify_webhook_signature(SECRET, header, BODY, now=NOW)
