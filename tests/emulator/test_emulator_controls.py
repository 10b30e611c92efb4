"""Test controls for failure paths: forgotten keys, revoked keys, lost jobs, poisoned results, stripped columns."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from .helpers import KEY, LEADS_CSV, OTHER_KEY, Live

STRUCT: dict[str, Any] = {"email": "Work email", "title": "Job title"}
CONFIG: dict[str, Any] = {"struct": STRUCT, "field_confidence": True, "columns": ["first_name", "last_name", "domain"]}


def _csv(data: bytes) -> pa.Table:
    return pacsv.read_csv(
        io.BytesIO(data),
        convert_options=pacsv.ConvertOptions(strings_can_be_null=True, column_types={"lead_id": pa.string()}),
    )


def _final_bytes(live: Live, task_id: str) -> tuple[dict[str, Any], bytes]:
    entry = live.final(task_id)
    response = live.client.get(entry["download_url"])
    assert response.status_code == 200
    return entry, response.content


# ----------------------------------------------------------------------------------------- Idempotency-Keys


def test_forget_idempotency_keys_makes_a_resubmission_a_new_job(live: Live) -> None:
    first = live.submit(CONFIG, headers={"Idempotency-Key": "k"}).json()["task_id"]
    assert live.submit(CONFIG, headers={"Idempotency-Key": "k"}).json()["already_started"] is True
    assert live.emu.forget_idempotency_keys() == 1
    again = live.submit(CONFIG, headers={"Idempotency-Key": "k"}).json()
    assert "already_started" not in again and again["task_id"] != first
    # Over HTTP for an emulator in another process.
    assert httpx.post(f"{live.url}/_emulator/forget-idempotency-keys").json() == {"forgotten": 1}
    third = live.submit(CONFIG, headers={"Idempotency-Key": "k"}).json()
    assert "already_started" not in third
    assert len(live.emu.jobs) == 3
    assert [r.replay for r in live.emu.submissions] == [False, True, False, False]


def test_ttl_zero_never_remembers_a_key(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(idempotency_ttl_seconds=0)
    a = live.submit(CONFIG, headers={"Idempotency-Key": "k"}).json()
    b = live.submit(CONFIG, headers={"Idempotency-Key": "k"}).json()
    assert "already_started" not in b and a["task_id"] != b["task_id"]
    # A different file under the same key is then no conflict either.
    c = live.submit(CONFIG, headers={"Idempotency-Key": "k"}, content=LEADS_CSV + "4,A,B,C,d\n")
    assert c.status_code == 200


def test_reused_key_with_another_file_stays_422_and_keeps_the_first_job(live: Live) -> None:
    first = live.submit(CONFIG, headers={"Idempotency-Key": "k"}).json()["task_id"]
    response = live.submit(CONFIG, headers={"Idempotency-Key": "k"}, content=LEADS_CSV + "4,A,B,C,d\n")
    assert response.status_code == 422
    assert response.json() == {"detail": "Idempotency-Key was already used with a different file"}
    assert list(live.emu.jobs) == [first]
    assert live.submit(CONFIG, headers={"Idempotency-Key": "k"}).json()["task_id"] == first


# ----------------------------------------------------------------------------------------- keys


def test_revoked_key_gets_401_where_it_worked_before(live: Live) -> None:
    task_id = live.submit(CONFIG).json()["task_id"]
    assert live.client.get(f"/job-status/{task_id}").status_code == 200
    live.emu.revoke_key(KEY)
    for response in (
        live.client.get(f"/job-status/{task_id}"),
        live.client.get("/check-balance"),
        live.submit(CONFIG),
    ):
        assert response.status_code == 401
        assert response.json() == {"detail": "Invalid API key"}
    assert live.emu.jobs[task_id].status == "completed"  # the job stays
    live.emu.add_key(KEY)
    assert live.client.get(f"/job-status/{task_id}").status_code == 200


def test_a_rotated_key_sees_the_old_keys_jobs_and_balance(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(job_seconds=600)
    task_id = live.submit(CONFIG).json()["task_id"]
    live.emu.add_key("rotated-key-0001", same_org_as=KEY)
    live.emu.revoke_key(KEY)
    with httpx.Client(base_url=live.url, headers={"x-api-key": "rotated-key-0001"}) as rotated:
        assert rotated.get(f"/job-status/{task_id}").json()["status"] == "running"
        live.emu.complete(task_id)
        body = rotated.get(f"/job-status/{task_id}").json()
        assert body["status"] == "completed"
        entry = max(body["results"], key=lambda e: e["block_number"])
        assert rotated.get(entry["download_url"]).status_code == 200
    assert live.emu.balance_cents("rotated-key-0001") == live.emu.balance_cents(KEY)
    # A key added without an organisation is its own: it cannot see the job.
    live.emu.add_key("fresh-key-0001")
    with httpx.Client(base_url=live.url, headers={"x-api-key": "fresh-key-0001"}) as fresh:
        assert fresh.get(f"/job-status/{task_id}").status_code == 404


def test_keys_over_the_admin_endpoints(live: Live) -> None:
    assert httpx.post(f"{live.url}/_emulator/keys/revoke", json={"key": KEY}).json() == {"status": "ok"}
    assert live.client.get("/check-balance").status_code == 401
    added = httpx.post(f"{live.url}/_emulator/keys", json={"key": "admin-added-key", "same_org_as": OTHER_KEY})
    assert added.status_code == 200
    with httpx.Client(base_url=live.url, headers={"x-api-key": "admin-added-key"}) as c:
        assert c.get("/check-balance").status_code == 200
    assert httpx.post(f"{live.url}/_emulator/keys", json={}).status_code == 400
    assert "admin-added-key" not in json.dumps(httpx.get(f"{live.url}/_emulator/jobs").json())


def test_revoking_works_when_any_key_is_accepted(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(api_keys=frozenset(), high_tier_keys=frozenset())
    assert live.client.get("/check-balance").status_code == 200
    live.emu.revoke_key(KEY)
    assert live.client.get("/check-balance").status_code == 401
    with httpx.Client(base_url=live.url, headers={"x-api-key": "anything"}) as c:
        assert c.get("/check-balance").status_code == 200


# ----------------------------------------------------------------------------------------- lost jobs


def test_forget_job_answers_404_for_a_job_that_exists(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(job_seconds=600)
    task_id = live.submit(CONFIG, headers={"Idempotency-Key": "k"}).json()["task_id"]
    live.emu.complete(task_id)
    url = live.final(task_id)["download_url"]
    live.emu.forget_job(task_id)
    assert live.client.get(f"/job-status/{task_id}").json() == {"detail": "Job not found"}
    assert live.client.get(f"/job-status/{task_id}").status_code == 404
    assert live.client.get(f"/workflows/runs/{task_id}/live_status").status_code == 404
    assert live.client.post("/workflows/cancel", params={"job_id": task_id}).status_code == 404
    assert live.client.get(url).status_code == 404
    # The job still exists for the admin side, and its key still replays its task id.
    summary = httpx.get(f"{live.url}/_emulator/jobs/{task_id}").json()
    assert summary["lost"] is True and summary["status"] == "completed"
    assert live.submit(CONFIG, headers={"Idempotency-Key": "k"}).json()["task_id"] == task_id


def test_forget_job_over_http_while_running(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(job_seconds=600)
    task_id = live.submit(CONFIG).json()["task_id"]
    assert live.client.get(f"/job-status/{task_id}").status_code == 200
    assert httpx.post(f"{live.url}/_emulator/jobs/{task_id}/forget").json()["lost"] is True
    assert live.client.get(f"/job-status/{task_id}").status_code == 404


# ----------------------------------------------------------------------------------------- poisoned results


@pytest.mark.parametrize(
    "data",
    [b"\x00\x01garbage\xff\xfe", b"lead_id,email\n1,\x00ada@example.com\n", b'"lead_id","first_name\n"1","Ad'],
    ids=["garbage", "nul-byte", "truncated"],
)
def test_corrupt_result_replaces_the_final_output(serve_emulator: Callable[..., Live], data: bytes) -> None:
    live = serve_emulator(job_seconds=600)
    task_id = live.submit(CONFIG).json()["task_id"]
    live.emu.corrupt_result(task_id, data)  # before completion: applied when the job completes
    live.emu.complete(task_id)
    entry, content = _final_bytes(live, task_id)
    assert content == data
    assert entry["file_size"] == len(data)
    assert "results" not in entry  # no inline preview to fall back on
    # The other stages are untouched.
    research = next(e for e in live.status(task_id)["results"] if e["block_number"] == 2)
    assert b"email" in live.client.get(research["download_url"]).content


def test_corrupt_a_completed_result_over_http(live: Live) -> None:
    task_id = live.submit(CONFIG).json()["task_id"]
    assert "results" in live.final(task_id)  # small output: an inline preview
    response = httpx.post(f"{live.url}/_emulator/jobs/{task_id}/corrupt", content=b"\x00nul")
    assert response.json()["corrupted"] is True
    entry, content = _final_bytes(live, task_id)
    assert content == b"\x00nul" and "results" not in entry


def test_corrupt_result_refuses_a_job_without_output(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(job_seconds=600)
    task_id = live.submit(CONFIG).json()["task_id"]
    live.emu.fail(task_id)
    with pytest.raises(ValueError, match="failed"):
        live.emu.corrupt_result(task_id, b"x")
    assert httpx.post(f"{live.url}/_emulator/jobs/{task_id}/corrupt", content=b"x").status_code == 400


def test_drop_result_columns_from_final_output_and_preview(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(job_seconds=600)
    task_id = live.submit(CONFIG).json()["task_id"]
    live.emu.drop_result_columns(task_id, ["title", "title_confidence"])
    live.emu.complete(task_id)
    entry, content = _final_bytes(live, task_id)
    table = _csv(content)
    assert "title" not in table.column_names and "title_confidence" not in table.column_names
    assert {"lead_id", "email", "email_confidence"} <= set(table.column_names)
    assert all("title" not in row and "email" in row for row in entry["results"])
    assert table.num_rows == 3


def test_drop_result_columns_of_a_completed_job_over_http(live: Live) -> None:
    task_id = live.submit(CONFIG).json()["task_id"]
    before = _csv(_final_bytes(live, task_id)[1])
    summary = httpx.post(f"{live.url}/_emulator/jobs/{task_id}/drop-columns", json={"columns": ["email"]}).json()
    assert summary["dropped_columns"] == ["email"]
    entry, content = _final_bytes(live, task_id)
    after = _csv(content)
    assert after.column_names == [c for c in before.column_names if c != "email"]
    assert after.to_pylist() == before.drop_columns(["email"]).to_pylist()  # the rest is unchanged
    assert all("email" not in row for row in entry["results"])


def test_drop_result_columns_refuses_unknown_columns(live: Live) -> None:
    task_id = live.submit(CONFIG).json()["task_id"]
    with pytest.raises(ValueError, match="lead_id"):
        live.emu.drop_result_columns(task_id, ["lead_id"])
    with pytest.raises(TypeError):
        live.emu.drop_result_columns(task_id, "email")
    bad = httpx.post(f"{live.url}/_emulator/jobs/{task_id}/drop-columns", json={"columns": ["nope"]})
    assert bad.status_code == 400 and "nope" in bad.json()["detail"]


# ----------------------------------------------------------------------------------------- carried columns


def test_strip_carried_columns(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(strip_carried_columns=True)
    csv = "lead_id,first_name,last_name,domain,_sixtyfour_input_hash\n1,Ada,Lovelace,a.example,h1\n"
    task_id = live.submit(CONFIG, content=csv).json()["task_id"]
    entry, content = _final_bytes(live, task_id)
    expected = ["first_name", "last_name", "domain", "email", "title", "email_confidence", "title_confidence"]
    assert _csv(content).column_names == expected
    assert list(entry["results"][0]) == expected
    # The values are those of a full output, less the carried columns.
    row = {"lead_id": "1", "first_name": "Ada", "last_name": "Lovelace", "domain": "a.example"}
    reference = live.emu.reference_output(STRUCT, [row], field_confidence=True, columns=CONFIG["columns"])
    assert entry["results"] == reference


def test_strip_carried_columns_but_keep_some(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(strip_carried_columns=True, keep_carried_columns=frozenset({"lead_id"}))
    csv = "lead_id,first_name,last_name,domain,_sixtyfour_input_hash\n1,Ada,Lovelace,a.example,h1\n"
    task_id = live.submit(CONFIG, content=csv).json()["task_id"]
    columns = _csv(_final_bytes(live, task_id)[1]).column_names
    assert columns[:4] == ["lead_id", "first_name", "last_name", "domain"]
    assert "_sixtyfour_input_hash" not in columns


def test_without_columns_nothing_is_carried_so_nothing_is_stripped(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(strip_carried_columns=True)
    task_id = live.submit({"struct": STRUCT}).json()["task_id"]
    columns = _csv(_final_bytes(live, task_id)[1]).column_names
    assert columns[:5] == ["lead_id", "first_name", "last_name", "company", "domain"]


# ----------------------------------------------------------------------------------------- server-side endings


def _poll_until_terminal(live: Live, task_id: str, seen: list[dict[str, Any]]) -> None:
    with httpx.Client(base_url=live.url, headers={"x-api-key": KEY}, timeout=10) as c:
        for _ in range(500):
            body = c.get(f"/job-status/{task_id}").json()
            seen.append(body)
            if body["status"] != "running":
                return
            time.sleep(0.01)


@pytest.mark.parametrize("how", ["fail", "cancel_job", "admin-fail", "admin-cancel"])
def test_fail_or_cancel_a_job_the_client_is_polling(serve_emulator: Callable[..., Live], how: str) -> None:
    live = serve_emulator(job_seconds=600)
    task_id = live.submit(CONFIG).json()["task_id"]
    balance = live.emu.balance_cents(KEY)
    seen: list[dict[str, Any]] = []
    poller = threading.Thread(target=_poll_until_terminal, args=(live, task_id, seen))
    poller.start()
    while not seen:
        time.sleep(0.01)
    if how == "fail":
        live.emu.fail(task_id, "Upstream provider outage")
    elif how == "cancel_job":
        live.emu.cancel_job(task_id)
    elif how == "admin-fail":
        httpx.post(f"{live.url}/_emulator/jobs/{task_id}/fail", json={"message": "Upstream provider outage"})
    else:
        httpx.post(f"{live.url}/_emulator/jobs/{task_id}/cancel")
    poller.join(timeout=10)
    last = seen[-1]
    expected = "failed" if "fail" in how else "cancelled"
    assert [b["status"] for b in seen[:-1]] == ["running"] * (len(seen) - 1)
    assert last["status"] == expected and "results" not in last and "charge_amount" not in last
    assert last["error"] == ("Upstream provider outage" if expected == "failed" else "Job was cancelled")
    # Nothing is charged, and the hold is released.
    assert live.emu.jobs[task_id].charge == 0
    assert live.emu.balance_cents(KEY) == balance + live.emu.jobs[task_id].estimate
    assert live.client.post("/workflows/cancel", params={"job_id": task_id}).status_code == (
        409 if expected == "failed" else 200
    )


# ----------------------------------------------------------------------------------------- callbacks and lifecycle


def test_job_finished_callbacks_and_stop_event(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(job_seconds=600)
    ended: list[tuple[str, str]] = []
    unsubscribe = live.emu.on_job_finished(lambda job: ended.append((job.task_id, job.status)))
    a = live.submit(CONFIG).json()["task_id"]
    b = live.submit(CONFIG).json()["task_id"]
    live.emu.complete(a)
    live.emu.complete(a)  # already ended: no second call
    unsubscribe()
    live.emu.cancel_job(b)
    assert ended == [(a, "completed")]
    assert not live.emu.stop_event.is_set()
    live.emu.close()
    assert live.emu.stop_event.is_set()
