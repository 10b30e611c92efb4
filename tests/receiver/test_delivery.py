"""A delivery checked without a server: signature, timestamp, ids."""

from __future__ import annotations

import json

import pytest

from sixtyfour_sync.api.webhooks import compute_signature, sign_payload
from sixtyfour_sync.receiver.delivery import Rejected, read_delivery

SECRET = "sk_whsec_" + "ab" * 32
NOW = 1_800_000_000


def _headers(raw: bytes, **extra: str) -> dict[str, str]:
    return {"sixtyfour-signature": sign_payload(SECRET, raw, NOW), "Sixtyfour-Event-Id": "evt-1", **extra}


def test_a_signed_delivery_names_its_event_attempt_and_task_ids_in_order() -> None:
    raw = json.dumps({"task_id": "t-1", "run_id": "r-9", "data": {"job_id": "t-1", "id": 7}}).encode()
    d = read_delivery(_headers(raw, **{"Sixtyfour-Delivery-Attempt": "3"}), raw, SECRET, now=NOW + 10)
    assert (d.event_id, d.attempt, d.task_ids) == ("evt-1", 3, ("t-1", "r-9", "7"))


def test_any_v1_of_a_rotated_secret_is_accepted() -> None:
    raw = b'{"task_id": "t"}'
    old = compute_signature("sk_whsec_" + "cd" * 32, NOW, raw)
    header = f"t={NOW},v1={old},v1={compute_signature(SECRET, NOW, raw)}"
    assert read_delivery({"Sixtyfour-Signature": header, "Sixtyfour-Event-Id": "e"}, raw, SECRET, now=NOW).task_ids


@pytest.mark.parametrize(
    ("headers", "body", "now", "status", "says"),
    [
        ({}, b"{}", NOW, 401, "no Sixtyfour-Signature"),
        ({"Sixtyfour-Signature": "t=1,v1=zz"}, b"{}", NOW, 401, "malformed"),
        (None, b'{"task_id": "t"}', NOW + 301, 401, "tolerance"),
        (None, b'{"task_id": "t"}', NOW - 301, 401, "in the future"),
        ("tampered", b'{"task_id": "t"}', NOW, 401, "does not match"),
        (None, b"not json", NOW, 400, "not JSON"),
        (None, b"[1, 2]", NOW, 400, "not a JSON object"),
    ],
)
def test_refusals_say_why(headers: object, body: bytes, now: int, status: int, says: str) -> None:
    if headers is None:
        headers = _headers(body)
    elif headers == "tampered":
        headers = _headers(b'{"task_id": "other"}')
    with pytest.raises(Rejected) as err:
        read_delivery(headers, body, SECRET, now=now)  # type: ignore[arg-type]
    assert err.value.status == status and says in err.value.message
    assert SECRET not in err.value.message


def test_the_event_id_comes_from_the_body_when_the_header_is_missing_and_is_required() -> None:
    raw = b'{"event_id": "from-body", "task_id": "t"}'
    headers = {"Sixtyfour-Signature": sign_payload(SECRET, raw, NOW)}
    assert read_delivery(headers, raw, SECRET, now=NOW).event_id == "from-body"
    raw = b'{"task_id": "t"}'
    with pytest.raises(Rejected) as err:
        read_delivery({"Sixtyfour-Signature": sign_payload(SECRET, raw, NOW)}, raw, SECRET, now=NOW)
    assert err.value.status == 400
