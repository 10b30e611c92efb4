"""POST /bulk-intelligence/{people,company}: auth, formats, validation, limits, gates, money, idempotency."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from .helpers import HIGH_KEY, KEY, LEADS_CSV, OTHER_KEY, FakeClock, Live

STRUCT = {"struct": {"email": "The email", "title": "Job title"}}


def _loc_types(response: httpx.Response) -> list[tuple[tuple[object, ...], str]]:
    assert response.status_code == 422, response.text
    return [(tuple(item["loc"]), item["type"]) for item in response.json()["detail"]]


# ----------------------------------------------------------------------------------------- auth


@pytest.mark.parametrize("headers", [{}, {"x-api-key": ""}, {"x-api-key": "wrong"}])
def test_submit_without_a_valid_key_is_401(live: Live, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=live.url, headers=headers) as anon:
        response = live.submit(STRUCT, client=anon)
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid API key"}
    assert live.emu.jobs == {}
    assert live.emu.submissions[-1].status_code == 401


@pytest.mark.parametrize("path", ["/job-status/x", "/check-balance", "/workflows/runs/x/live_status"])
def test_every_endpoint_requires_the_key(live: Live, path: str) -> None:
    response = httpx.get(live.url + path)
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid API key"}


def test_empty_key_set_accepts_any_key_as_its_own_org(
    serve_emulator: Callable[..., Live], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="sixtyfour_sync.emulator")
    live = serve_emulator(api_keys=frozenset(), high_tier_keys=frozenset())
    assert "accepting any non-empty" in caplog.text
    with httpx.Client(base_url=live.url, headers={"x-api-key": "anything"}) as c:
        ok = live.submit(STRUCT, client=c)
        assert ok.status_code == 200
        task_id = ok.json()["task_id"]
    with httpx.Client(base_url=live.url, headers={"x-api-key": "someone-else"}) as other:
        assert other.get(f"/job-status/{task_id}").status_code == 404


# ----------------------------------------------------------------------------------------- success


def test_success_body_and_estimate(live: Live) -> None:
    response = live.submit({**STRUCT, "tier": "medium"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"task_id", "status", "row_count", "estimated_cost_cents"}
    assert body["status"] == "RUNNING"
    assert body["row_count"] == 3
    assert body["estimated_cost_cents"] == 3 * 5
    assert len(body["task_id"]) == 36
    assert live.emu.jobs[body["task_id"]].tier == "medium"


def test_cost_units_credits(live: Live) -> None:
    response = live.submit(STRUCT, params={"cost_units": "credits"})
    body = response.json()
    assert "estimated_cost_cents" not in body
    assert body["estimated_cost_credits"] == pytest.approx(3 * 2 / 100)
    status = live.status(body["task_id"])
    assert "charge_amount" not in status
    assert status["charge_credits"] == pytest.approx(0.06)
    assert live.submit(STRUCT, params={"cost_units": "euros"}).status_code == 422


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("rows.csv", "\ufefffirst_name,last_name\nAda,Lovelace\nAlan,Turing\n"),
        ("rows.json", json.dumps([{"first_name": "Ada", "n": 1}, {"first_name": "Alan", "extra": {"a": [1]}}])),
        ("rows.jsonl", '{"first_name": "Ada"}\n{"first_name": "Alan", "n": 2.5}\n'),
        ("rows.NDJSON", '{"first_name": "Ada"}\n\n{"first_name": "Alan"}\n'),
    ],
)
def test_accepted_formats(live: Live, filename: str, content: str) -> None:
    response = live.submit(STRUCT, filename=filename, content=content)
    assert response.status_code == 200, response.text
    assert response.json()["row_count"] == 2


# ----------------------------------------------------------------------------------------- 400


@pytest.mark.parametrize(
    ("filename", "content", "needle"),
    [
        ("rows.txt", "a\n1\n", "Unsupported file type '.txt'"),
        ("rows.csv", b"a,b\n1,2,3\n", "Could not parse CSV"),
        ("rows.csv", b"a\n\xff\xfe\n", "UTF8"),
        ("rows.csv", b"", "is empty"),
        ("rows.csv", b"a,b\n", "no data rows"),
        ("rows.csv", b"a,a\n1,2\n", "duplicate column names: a"),
        ("rows.jsonl", b'{"a": 1}\n{"a": \n', "Could not parse file 'rows.jsonl'"),
        ("rows.jsonl", b'{"a": 1}\n[1, 2]\n', "row 2 is not an object"),
        ("rows.json", b'{"a": 1}', "JSON array"),
    ],
)
def test_unreadable_files_are_400_with_the_reason(live: Live, filename: str, content: bytes, needle: str) -> None:
    response = live.submit(STRUCT, filename=filename, content=content)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert needle in detail
    assert str(live.emu.data_dir) not in detail
    assert live.emu.jobs == {}


def test_idempotency_key_too_long_is_400(live: Live) -> None:
    response = live.submit(STRUCT, headers={"Idempotency-Key": "k" * 256})
    assert response.status_code == 400
    assert "255" in response.json()["detail"]
    assert live.submit(STRUCT, headers={"Idempotency-Key": "k" * 255}).status_code == 200


# ----------------------------------------------------------------------------------------- 422


@pytest.mark.parametrize(
    ("endpoint", "config", "expected"),
    [
        ("people", {**STRUCT, "surprise": 1}, (("body", "config", "surprise"), "extra_forbidden")),
        ("people", {**STRUCT, "find_people": True}, (("body", "config", "find_people"), "extra_forbidden")),
        ("company", {"tier": "low"}, (("body", "config", "struct"), "missing")),
        ("company", {"struct": {"site": "x"}, "tier": "xhigh"}, (("body", "config", "tier"), "enum")),
        ("people", {"struct": {"e": "x"}, "tier": "gold"}, (("body", "config", "tier"), "enum")),
        (
            "people",
            {"struct": {"e": {"description": "x", "type": "decimal"}}},
            (("body", "config", "struct", "e", "type"), "enum"),
        ),
        ("people", {"struct": {"e": {"type": "int"}}}, (("body", "config", "struct", "e", "description"), "missing")),
        (
            "people",
            {"struct": {"e": {"description": "x", "type": "date"}}},
            (("body", "config", "struct", "e", "type"), "enum"),
        ),
        (
            "people",
            {
                "struct": {
                    "o": {
                        "description": "x",
                        "type": "object",
                        "subfields": [{"name": "a", "description": "a", "type": "object"}],
                    }
                }
            },
            (("body", "config", "struct", "o", "subfields", 0, "type"), "enum"),
        ),
        (
            "people",
            {"struct": {"o": {"description": "x", "type": "object", "subfields": [{"description": "a"}]}}},
            (("body", "config", "struct", "o", "subfields", 0, "name"), "missing"),
        ),
        (
            "people",
            {"struct": {"o": {"description": "x", "type": "object", "subfields": {"a": "b"}}}},
            (("body", "config", "struct", "o", "subfields"), "list_type"),
        ),
        (
            "people",
            {"struct": {"e": {"description": "x", "why": 1}}},
            (("body", "config", "struct", "e", "why"), "extra_forbidden"),
        ),
        ("people", {"struct": {"e": 5}}, (("body", "config", "struct", "e"), "model_type")),
        ("people", {"struct": {}}, (("body", "config", "struct"), "too_short")),
        ("people", {**STRUCT, "field_confidence": "yes"}, (("body", "config", "field_confidence"), "bool_type")),
        ("people", {**STRUCT, "webhook_url": "http://e.com/h"}, (("body", "config", "webhook_url"), "url_scheme")),
        ("people", {**STRUCT, "webhook_url": "https://10.0.0.1/h"}, (("body", "config", "webhook_url"), "url_parsing")),
        (
            "people",
            {**STRUCT, "webhook_url": "https://e.com/" + "a" * 2100},
            (("body", "config", "webhook_url"), "url_too_long"),
        ),
        ("people", {**STRUCT, "columns": ["first_name", 3]}, (("body", "config", "columns", 1), "string_type")),
        ("people", {**STRUCT, "columns": ["nope"]}, (("body", "config", "columns", 0), "value_error")),
        ("people", {**STRUCT, "result_formats": ["xml"]}, (("body", "config", "result_formats", 0), "enum")),
        ("people", {**STRUCT, "research_plan": 5}, (("body", "config", "research_plan"), "string_type")),
        ("people", {**STRUCT, "save_json": 1}, (("body", "config", "save_json"), "bool_type")),
    ],
)
def test_config_violations_are_422_in_fastapi_shape(
    live: Live, endpoint: str, config: dict[str, object], expected: tuple[tuple[object, ...], str]
) -> None:
    response = live.submit(config, endpoint=endpoint)
    assert expected in _loc_types(response)
    for item in response.json()["detail"]:
        assert set(item) == {"loc", "msg", "type"} and item["msg"]
    assert live.emu.jobs == {}


def test_every_struct_type_of_the_schema_is_accepted(live: Live) -> None:
    kinds = ["str", "string", "int", "integer", "float", "bool", "boolean", "dict", "enum", "list[enum]", "object",
             "object_list", "list", "list[str]", "list[int]", "list[float]", "list[bool]"]  # fmt: skip
    struct: dict[str, object] = {f"f{i}": {"description": "d", "type": k} for i, k in enumerate(kinds)}
    subfields = [{"name": n, "description": n, "type": t} for n, t in (("a", "string"), ("b", "int"), ("c", "dict"))]
    struct["hq"] = {"description": "HQ", "type": "object", "subfields": subfields}
    response = live.submit({"struct": struct})
    assert response.status_code == 200, response.text


def test_every_problem_is_listed_at_once(live: Live) -> None:
    config = {"struct": {"e": {"description": "x", "type": "nope"}}, "tier": "gold", "extra": 1}
    assert len(_loc_types(live.submit(config))) == 3


def test_company_keys_are_accepted_on_company(live: Live) -> None:
    config = {
        "struct": {"website": "site"},
        "find_people": True,
        "people_focus_prompt": "CTOs",
        "lead_struct": {"email": "e"},
        "full_org_chart": False,
        "tier": "micro",
    }
    content = "company,domain\nAcme,acme.example\n"
    assert live.submit(config, endpoint="company", content=content).status_code == 200


@pytest.mark.parametrize(
    ("config_text", "kind"),
    [("{not json", "json_invalid"), ("[1, 2]", "dict_type")],
)
def test_config_that_is_not_a_json_object_is_422(live: Live, config_text: str, kind: str) -> None:
    assert _loc_types(live.submit(config_text)) == [(("body", "config"), kind)]


def test_config_over_the_character_limit_is_422(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(max_config_chars=1000)
    config = {"struct": {"e": "x"}, "research_plan": "p" * 1000}
    response = live.submit(config)
    assert _loc_types(response) == [(("body", "config"), "string_too_long")]
    assert "1000" in response.json()["detail"][0]["msg"]


def test_missing_parts_are_422(live: Live) -> None:
    response = live.client.post("/bulk-intelligence/people", data={"x": "1"})
    assert set(_loc_types(response)) == {(("body", "file"), "missing"), (("body", "config"), "missing")}


def test_insecure_webhooks_need_the_flag_and_loopback(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(allow_insecure_webhooks=True)
    assert live.submit({**STRUCT, "webhook_url": "http://127.0.0.1:9/hook"}).status_code == 200
    assert live.submit({**STRUCT, "webhook_url": "http://example.com/hook"}).status_code == 422


# ----------------------------------------------------------------------------------------- limits


def test_too_many_rows_is_413_naming_limit_and_actual(live: Live) -> None:
    content = "n\n" + "\n".join(str(i) for i in range(100_001)) + "\n"
    response = live.submit(STRUCT, content=content)
    assert response.status_code == 413
    assert response.json()["detail"] == "File has 100,001 rows; the limit is 100,000 rows per file"
    assert live.emu.jobs == {}


def test_exactly_the_row_limit_is_accepted(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(max_rows=3)
    assert live.submit(STRUCT).status_code == 200
    assert live.submit(STRUCT, content=LEADS_CSV + "4,A,B,C,d.example\n").status_code == 413


def test_too_large_file_is_413(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(max_file_bytes=100)
    response = live.submit(STRUCT, content=LEADS_CSV)
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert f"{len(LEADS_CSV.encode()):,} bytes" in detail and "100 bytes" in detail


# ----------------------------------------------------------------------------------------- gates and money


def test_high_tier_is_gated(live: Live) -> None:
    response = live.submit({**STRUCT, "tier": "high"}, endpoint="company")
    assert response.status_code == 403
    assert response.json() == {
        "detail": "High tier company enrichment is not enabled for this org. Contact sales to request access."
    }
    with httpx.Client(base_url=live.url, headers={"x-api-key": HIGH_KEY}) as c:
        ok = live.submit({**STRUCT, "tier": "high"}, client=c)
    assert ok.status_code == 200
    assert ok.json()["estimated_cost_cents"] == 3 * 20


def test_insufficient_balance_is_402_and_nothing_is_charged(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(balance_cents=10)
    assert live.submit({**STRUCT, "tier": "medium"}).status_code == 402  # needs 15
    assert live.submit({**STRUCT, "tier": "medium"}).json() == {"detail": "Insufficient API credits"}
    assert live.client.get("/check-balance").json() == {"credits": 0.1}
    ok = live.submit({**STRUCT, "tier": "low"})  # 6 cents
    assert ok.status_code == 200
    assert live.emu.balance_cents(KEY) == 4
    # A second org has its own balance.
    assert live.emu.balance_cents(OTHER_KEY) == 10


def test_charge_is_deducted_on_completion(live: Live) -> None:
    before = live.client.get("/check-balance").json()["credits"]
    task_id = live.submit(STRUCT).json()["task_id"]
    status = live.status(task_id)
    assert status["charge_amount"] == 6
    assert live.client.get("/check-balance").json()["credits"] == pytest.approx(before - 0.06)


# ----------------------------------------------------------------------------------------- rate limit


def test_rate_limit_rolls_over_sixty_seconds(serve_emulator: Callable[..., Live]) -> None:
    clock = FakeClock()
    live = serve_emulator(rate_limit_per_minute=3, clock=clock)
    for i in range(3):
        assert live.submit(STRUCT, headers={"Idempotency-Key": f"k{i}"}).status_code == 200
        clock.advance(10)
    # Replays and rejected requests do not count.
    assert live.submit(STRUCT, headers={"Idempotency-Key": "k0"}).json()["already_started"] is True
    limited = live.submit(STRUCT, headers={"Idempotency-Key": "k3"})
    assert limited.status_code == 429
    assert limited.json() == {"detail": "Rate limit exceeded"}
    assert limited.headers["Retry-After"] == "30"
    clock.advance(30)
    assert live.submit(STRUCT, headers={"Idempotency-Key": "k3"}).status_code == 200
    assert live.submit({"tier": "bad"}).status_code == 429
    # Per key: another organisation is not limited.
    with httpx.Client(base_url=live.url, headers={"x-api-key": OTHER_KEY}) as other:
        assert live.submit(STRUCT, client=other).status_code == 200


def test_rejected_submissions_do_not_use_the_quota(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(rate_limit_per_minute=2)
    for _ in range(5):
        assert live.submit({"tier": "gold"}).status_code == 422
    assert live.submit(STRUCT).status_code == 200
    assert live.submit(STRUCT).status_code == 200
    assert live.submit(STRUCT).status_code == 429


def test_general_request_limit(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(request_limit_per_minute=3)
    codes = [live.client.get("/check-balance").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


# ----------------------------------------------------------------------------------------- idempotency


def test_replay_returns_the_original_job_without_charging(live: Live) -> None:
    first = live.submit(STRUCT, headers={"Idempotency-Key": "run-1-file-1"})
    balance = live.emu.balance_cents(KEY)
    again = live.submit(STRUCT, headers={"Idempotency-Key": "run-1-file-1"})
    assert again.status_code == 200
    assert again.json() == {"task_id": first.json()["task_id"], "status": "RUNNING", "already_started": True}
    assert len(live.emu.jobs) == 1
    assert live.emu.balance_cents(KEY) == balance
    records = live.emu.submissions
    assert [(r.replay, r.task_id) for r in records] == [(False, first.json()["task_id"])] * 1 + [
        (True, first.json()["task_id"])
    ]
    assert records[0].file_sha256 == records[1].file_sha256


def test_same_key_with_another_file_is_422(live: Live) -> None:
    assert live.submit(STRUCT, headers={"Idempotency-Key": "k"}).status_code == 200
    response = live.submit(STRUCT, headers={"Idempotency-Key": "k"}, content=LEADS_CSV + "4,A,B,C,d\n")
    assert response.status_code == 422
    assert "different file" in response.json()["detail"]
    assert len(live.emu.jobs) == 1


def test_keys_are_scoped_per_endpoint_and_org(live: Live) -> None:
    assert live.submit(STRUCT, headers={"Idempotency-Key": "k"}).status_code == 200
    company = live.submit({"struct": {"website": "w"}}, endpoint="company", headers={"Idempotency-Key": "k"})
    assert "already_started" not in company.json()
    with httpx.Client(base_url=live.url, headers={"x-api-key": OTHER_KEY}) as other:
        assert "already_started" not in live.submit(STRUCT, client=other, headers={"Idempotency-Key": "k"}).json()
    assert len(live.emu.jobs) == 3


def test_a_rejected_submission_does_not_reserve_its_key(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(balance_cents=0)
    assert live.submit(STRUCT, headers={"Idempotency-Key": "k"}).status_code == 402
    assert live.submit(STRUCT, headers={"Idempotency-Key": "k"}).status_code == 402
    assert [r.replay for r in live.emu.submissions] == [False, False]
