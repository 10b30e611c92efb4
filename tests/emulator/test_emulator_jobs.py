"""Job status, result files, signed downloads, live status, cancel and balance."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from .helpers import KEY, LEADS_CSV, OTHER_KEY, FakeClock, Live

STRUCT: dict[str, Any] = {
    "email": "The individual's email address",
    "title": "Job title",
    "employee_count": {"description": "Employees", "type": "int"},
    "skills": {"description": "Skills", "type": "list[str]"},
    "address": "Office address",
}
CONFIG: dict[str, Any] = {"struct": STRUCT, "field_confidence": True, "columns": ["first_name", "last_name", "domain"]}


def _read_csv(data: bytes) -> pa.Table:
    return pacsv.read_csv(
        io.BytesIO(data),
        convert_options=pacsv.ConvertOptions(strings_can_be_null=True, column_types={"lead_id": pa.string()}),
    )


def _leads(n: int) -> tuple[str, list[dict[str, str]]]:
    rows = [
        {
            "lead_id": str(i),
            "first_name": f"First{i}",
            "last_name": f"Last{i}",
            "company": f"Co {i}",
            "domain": f"co{i}.example",
        }
        for i in range(n)
    ]
    header = "lead_id,first_name,last_name,company,domain\n"
    return header + "".join(",".join(r.values()) + "\n" for r in rows), rows


def test_running_then_completed(serve_emulator: Callable[..., Live]) -> None:
    clock = FakeClock()
    live = serve_emulator(job_seconds=30, clock=clock)
    task_id = live.submit(CONFIG).json()["task_id"]
    running = live.status(task_id)
    assert set(running) == {"id", "run_id", "start_time", "status"}
    assert running["status"] == "running" and running["id"] == task_id and running["run_id"] != task_id
    clock.advance(30)
    done = live.status(task_id)
    assert done["status"] == "completed"
    assert {"close_time", "results", "charge_amount"} <= set(done)
    assert done["start_time"] == running["start_time"]


def test_job_seconds_zero_completes_at_first_poll(live: Live) -> None:
    task_id = live.submit(CONFIG).json()["task_id"]
    assert live.status(task_id)["status"] == "completed"


def test_jobs_finish_without_being_polled(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(job_seconds=0.05)
    task_id = live.submit(CONFIG).json()["task_id"]
    for _ in range(100):
        if live.emu.jobs[task_id].is_terminal:
            break
        import time

        time.sleep(0.02)
    assert live.emu.jobs[task_id].status == "completed"


def test_unknown_and_foreign_jobs_are_404(live: Live) -> None:
    task_id = live.submit(CONFIG).json()["task_id"]
    assert live.client.get("/job-status/nope").json() == {"detail": "Job not found"}
    with httpx.Client(base_url=live.url, headers={"x-api-key": OTHER_KEY}) as other:
        for path in (f"/job-status/{task_id}", f"/workflows/runs/{task_id}/live_status"):
            response = other.get(path)
            assert response.status_code == 404 and response.json() == {"detail": "Job not found"}
        assert other.post("/workflows/cancel", params={"job_id": task_id}).status_code == 404


def test_results_entries_out_of_order_with_final_highest(live: Live) -> None:
    task_id = live.submit(CONFIG).json()["task_id"]
    results = live.status(task_id)["results"]
    blocks = [e["block_number"] for e in results]
    assert len(blocks) >= 2
    assert blocks not in (sorted(blocks), sorted(blocks, reverse=True))
    for entry in results:
        assert {
            "filename",
            "download_url",
            "block_number",
            "row_count",
            "file_size",
            "content_type",
            "created_at",
            "download_expires_in_seconds",
        } <= set(entry)
        assert entry["download_url"].startswith(live.url + "/")
        assert entry["download_expires_in_seconds"] in (899, 900)
    final = max(results, key=lambda e: e["block_number"])
    data = live.client.get(final["download_url"]).content
    assert len(data) == final["file_size"]
    table = _read_csv(data)
    assert table.num_rows == final["row_count"] == 3
    assert {"lead_id", "email", "email_confidence", "skills_confidence"} <= set(table.column_names)
    # The intermediate stage is not the final output: it lacks the uploaded key column.
    research = next(e for e in results if e["block_number"] == 2)
    assert "lead_id" not in _read_csv(live.client.get(research["download_url"]).content).column_names


def test_output_matches_the_reference_and_csv_traps(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(failure_rate=0.3, preview_max_rows=0)
    content, rows = _leads(40)
    rows[0]["first_name"] = 'Quote "Q" Person, Jr.'
    content = content.replace("First0,", '"Quote ""Q"" Person, Jr.",', 1)
    task_id = live.submit(CONFIG, content=content).json()["task_id"]
    final = live.final(task_id)
    assert "results" not in final  # above preview_max_rows
    data = live.client.get(final["download_url"]).content
    assert data.startswith(b"\xef\xbb\xbf")
    got = _read_csv(data).to_pylist()
    expected = live.emu.reference_output(
        STRUCT, rows, endpoint="people", field_confidence=True, columns=CONFIG["columns"]
    )
    for row in got:
        if row["skills"] is not None:
            row["skills"] = json.loads(row["skills"])
    assert got == expected
    failed = [r for r in got if r["email"] is None]
    assert failed and all(r["email_confidence"] is None and r["lead_id"] is not None for r in failed)
    assert any(r["address"] and "\n" in r["address"] for r in got)
    assert got[0]["first_name"] == 'Quote "Q" Person, Jr.'
    assert live.emu.jobs[task_id].failed_rows == len(failed)


def test_inline_preview_for_small_outputs(live: Live) -> None:
    content, rows = _leads(3)
    task_id = live.submit(CONFIG, content=content).json()["task_id"]
    final = live.final(task_id)
    expected = live.emu.reference_output(STRUCT, rows, field_confidence=True, columns=CONFIG["columns"])
    assert final["results"] == expected
    others = [e for e in live.status(task_id)["results"] if e is not final and e["block_number"] != 3]
    assert all("results" not in e for e in others)


def test_people_without_struct_get_default_fields(live: Live) -> None:
    task_id = live.submit({"tier": "micro"}).json()["task_id"]
    row = live.final(task_id)["results"][0]
    assert {"email", "linkedin", "title"} <= set(row)


def test_fresh_links_on_every_poll(serve_emulator: Callable[..., Live]) -> None:
    clock = FakeClock()
    live = serve_emulator(clock=clock)
    task_id = live.submit(CONFIG).json()["task_id"]
    first = live.final(task_id)["download_url"]
    clock.advance(5)
    second = live.final(task_id)["download_url"]
    assert first != second
    assert live.client.get(first).status_code == 200
    assert live.client.get(second).status_code == 200


def test_links_expire_after_the_ttl(serve_emulator: Callable[..., Live]) -> None:
    clock = FakeClock()
    live = serve_emulator(clock=clock, download_ttl_seconds=900)
    task_id = live.submit(CONFIG).json()["task_id"]
    url = live.final(task_id)["download_url"]
    clock.advance(899)
    assert live.client.get(url).status_code == 200
    clock.advance(2)
    response = live.client.get(url)
    assert response.status_code == 403
    assert response.json() == {"detail": "Download link expired"}
    assert live.client.get(live.final(task_id)["download_url"]).status_code == 200


def test_expire_links_now(live: Live) -> None:
    task_id = live.submit(CONFIG).json()["task_id"]
    url = live.final(task_id)["download_url"]
    live.emu.expire_links(task_id)
    assert live.client.get(url).json() == {"detail": "Download link expired"}
    assert live.client.get(live.final(task_id)["download_url"]).status_code == 200


@pytest.mark.parametrize("tamper", ["signature", "expires", "path"])
def test_tampered_links_are_refused(live: Live, tamper: str) -> None:
    task_id = live.submit(CONFIG).json()["task_id"]
    url = live.final(task_id)["download_url"]
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    path = parts.path
    if tamper == "signature":
        query["signature"] = "0" * 64
    elif tamper == "expires":
        query["expires"] = str(int(query["expires"]) + 3600)
    else:
        path = path.replace("block_3_enriched.csv", "block_1_input.csv")
    response = live.client.get(live.url + path, params=query)
    assert response.status_code == 403
    assert response.json() == {"detail": "Invalid download signature"}


def test_downloads_need_the_key_and_never_redirect(live: Live) -> None:
    task_id = live.submit(CONFIG).json()["task_id"]
    url = live.final(task_id)["download_url"]
    assert httpx.get(url).status_code == 401
    with httpx.Client(headers={"x-api-key": OTHER_KEY}) as other:
        assert other.get(url).status_code == 404
    response = live.client.get(url, follow_redirects=False)
    assert response.status_code == 200 and not response.is_redirect


def test_live_status_advances_with_time(serve_emulator: Callable[..., Live]) -> None:
    clock = FakeClock()
    live = serve_emulator(job_seconds=30, clock=clock)
    task_id = live.submit(CONFIG).json()["task_id"]

    def progress() -> tuple[float, list[int]]:
        body = live.client.get(f"/workflows/runs/{task_id}/live_status").json()
        assert all(b["total_count"] == 3 for b in body["blocks"])
        return body["overall_progress_percentage"], [b["processed_count"] for b in body["blocks"]]

    start, counts0 = progress()
    clock.advance(15)
    middle, counts1 = progress()
    clock.advance(15)
    live.status(task_id)
    body = live.client.get(f"/workflows/runs/{task_id}/live_status").json()
    assert start < middle < body["overall_progress_percentage"] == 100.0
    assert sum(counts0) < sum(counts1) < sum(b["processed_count"] for b in body["blocks"]) == 9
    assert body["overall_status"] == "completed"


def test_cancel_running_and_completed(serve_emulator: Callable[..., Live]) -> None:
    clock = FakeClock()
    live = serve_emulator(job_seconds=60, clock=clock)
    balance = live.emu.balance_cents(KEY)
    task_id = live.submit(CONFIG).json()["task_id"]
    assert live.emu.balance_cents(KEY) == balance - 6  # held while running
    response = live.client.post("/workflows/cancel", params={"job_id": task_id})
    assert response.json() == {"job_id": task_id, "status": "canceled"}
    status = live.status(task_id)
    assert status["status"] == "cancelled" and status["error"] and "results" not in status
    assert live.emu.balance_cents(KEY) == balance  # released, nothing charged
    # Cancelling again is harmless; a completed job cannot be cancelled.
    assert live.client.post("/workflows/cancel", params={"job_id": task_id}).status_code == 200
    other = live.submit(CONFIG).json()["task_id"]
    live.emu.complete(other)
    refused = live.client.post("/workflows/cancel", params={"job_id": other})
    assert refused.status_code == 409
    assert "completed" in refused.json()["detail"]
    assert live.client.post("/workflows/cancel", params={"job_id": "nope"}).status_code == 404
    missing = live.client.post("/workflows/cancel")
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["query", "job_id"]


def test_forced_failure_has_an_error_and_no_charge(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(job_seconds=60)
    balance = live.emu.balance_cents(KEY)
    task_id = live.submit(CONFIG).json()["task_id"]
    live.emu.fail(task_id, "boom")
    status = live.status(task_id)
    assert status["status"] == "failed" and status["error"] == "boom"
    assert "results" not in status and "charge_amount" not in status
    assert live.emu.balance_cents(KEY) == balance


def test_json_upload_passes_values_as_text(live: Live) -> None:
    rows = [{"id": 1, "first_name": "Ada", "meta": {"a": [1, 2]}, "ok": True}, {"id": 2, "first_name": None}]
    content = "\n".join(json.dumps(r) for r in rows)
    task_id = live.submit({"struct": {"email": "e"}}, filename="rows.jsonl", content=content).json()["task_id"]
    preview = live.final(task_id)["results"]
    assert preview[0]["id"] == "1" and preview[0]["meta"] == '{"a":[1,2]}' and preview[0]["ok"] == "true"
    assert preview[1]["first_name"] is None
    expected = live.emu.reference_output({"email": "e"}, rows)
    assert [r["email"] for r in preview] == [r["email"] for r in expected]


def test_uploads_and_spool_files_do_not_pile_up(live: Live) -> None:
    for _ in range(3):
        live.submit({"tier": "gold"})
    assert list((live.emu.data_dir / "uploads").iterdir()) == []
    data_dir = live.emu.data_dir
    live.submit(CONFIG)
    assert data_dir.exists()


def test_temporary_data_dir_is_removed_on_exit() -> None:
    from sixtyfour_sync.emulator import Emulator, EmulatorSettings

    emu = Emulator(EmulatorSettings(api_keys=frozenset({KEY}), job_seconds=0))
    with emu.serve() as server, httpx.Client(base_url=server.url, headers={"x-api-key": KEY}) as c:
        files = {"file": ("leads.csv", LEADS_CSV.encode())}
        assert c.post("/bulk-intelligence/people", files=files, data={"config": "{}"}).status_code == 200
    assert not emu.data_dir.exists()
