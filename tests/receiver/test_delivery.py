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


def test_the_signed_body_names_the_event_and_a_header_naming_another_is_refused() -> None:
    raw = b'{"event_id": "evt-body", "task_id": "t"}'
    d = read_delivery(_headers(raw, **{"Sixtyfour-Event-Id": "evt-body"}), raw, SECRET, now=NOW)
    assert (d.event_id, d.event_id_source) == ("evt-body", "body")
    # a captured delivery replayed under a fresh header id is not a new event
    with pytest.raises(Rejected) as err:
        read_delivery(_headers(raw, **{"Sixtyfour-Event-Id": "evt-new"}), raw, SECRET, now=NOW)
    assert err.value.status == 400 and "does not match the signed body's event_id" in err.value.message
    # without a header: the body's id
    d = read_delivery({"Sixtyfour-Signature": sign_payload(SECRET, raw, NOW)}, raw, SECRET, now=NOW)
    assert (d.event_id, d.event_id_source) == ("evt-body", "body")
    # a body without event_id: the header (the dedupe then relies on the unsigned header)
    raw = b'{"task_id": "t"}'
    d = read_delivery(_headers(raw), raw, SECRET, now=NOW)
    assert (d.event_id, d.event_id_source) == ("evt-1", "header")


@pytest.mark.parametrize(
    ("body", "extra", "says"),
    [
        (b'{"event_id": ["a"], "task_id": "t"}', {}, "the body's event_id is not a usable id"),
        (b'{"event_id": "has space", "task_id": "t"}', {}, "the body's event_id is not a usable id"),
        (b'{"event_id": "' + b"e" * 201 + b'"}', {}, "the body's event_id is not a usable id"),
        (b'{"task_id": "t"}', {"Sixtyfour-Event-Id": "\u00e9v\u00e9nement"}, "Sixtyfour-Event-Id is not a usable id"),
        (b'{"task_id": "t"}', {"Sixtyfour-Delivery-Attempt": "\u00b2"}, "Sixtyfour-Delivery-Attempt is not a number"),
        (b'{"task_id": "t"}', {"Sixtyfour-Delivery-Attempt": "\u0663"}, "Sixtyfour-Delivery-Attempt is not a number"),
        (b'{"task_id": "t"}', {"Sixtyfour-Delivery-Attempt": "-1"}, "Sixtyfour-Delivery-Attempt is not a number"),
        (b'{"task_id": "t"}', {"Sixtyfour-Event-Type": "bulk\x00job"}, "not a usable event type"),
        (b"[" * 100_000 + b"]" * 100_000, {}, "not JSON"),
        (b'{"task_id": 1' + b"0" * 5000 + b"}", {}, "not JSON"),
    ],
)
def test_odd_ids_numbers_and_bodies_are_a_400_not_an_exception(body: bytes, extra: dict[str, str], says: str) -> None:
    with pytest.raises(Rejected) as err:
        read_delivery(_headers(body, **extra), body, SECRET, now=NOW)
    assert err.value.status == 400 and says in err.value.message


@pytest.mark.parametrize("t", ["\u00b2", "1\u00b2", "\u0661\u0662", "\uff11", "9" * 400, "+1", "-1", " "])
def test_a_timestamp_that_is_not_ascii_digits_is_a_401_not_an_exception(t: str) -> None:
    raw = b'{"task_id": "t"}'
    with pytest.raises(Rejected) as err:
        read_delivery({"Sixtyfour-Signature": f"t={t},v1={'a' * 64}"}, raw, SECRET, now=NOW)
    assert err.value.status == 401 and "malformed" in err.value.message


def test_task_ids_that_are_not_printable_ascii_are_left_out() -> None:
    raw = json.dumps({"task_id": "t\x00x", "job_id": "caf\u00e9", "run_id": "r-1", "id": True}).encode()
    assert read_delivery(_headers(raw), raw, SECRET, now=NOW).task_ids == ("r-1",)
