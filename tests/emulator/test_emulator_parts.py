"""A final output split into several files: names, sizes, headers, listing order, previews and the controls."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import click
import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from sixtyfour_sync.emulator import EmulatorSettings
from sixtyfour_sync.emulator import output as emulator_output
from sixtyfour_sync.emulator.cli import _settings, emulator_command

from .helpers import Live

STRUCT: dict[str, Any] = {
    "email": "Work email",
    "title": "Job title",
    "skills": {"description": "Skills", "type": "list"},
}
CONFIG: dict[str, Any] = {"struct": STRUCT, "field_confidence": True, "columns": ["first_name", "last_name", "domain"]}
BOM = b"\xef\xbb\xbf"


def leads(n: int) -> tuple[str, list[dict[str, Any]]]:
    rows = [
        {"lead_id": str(i), "first_name": f"First{i}", "last_name": f"Last{i}", "domain": f"d{i}.example"}
        for i in range(n)
    ]
    content = "lead_id,first_name,last_name,domain\n" + "".join(
        f"{r['lead_id']},{r['first_name']},{r['last_name']},{r['domain']}\n" for r in rows
    )
    return content, rows


def read(data: bytes) -> list[dict[str, Any]]:
    table = pacsv.read_csv(
        io.BytesIO(data),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(strings_can_be_null=True, column_types={"lead_id": pa.string()}),
    )
    rows = table.to_pylist()
    for row in rows:
        if row.get("skills") is not None:
            row["skills"] = json.loads(row["skills"])
    return rows


def header(data: bytes) -> bytes:
    return data.split(b"\n", 1)[0]


def finals(live: Live, task_id: str) -> list[dict[str, Any]]:
    """The final block's entries in the order /job-status lists them."""
    return [e for e in live.status(task_id)["results"] if e["block_number"] == 3]


def by_part(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def number(e: dict[str, Any]) -> int:
        name = e["filename"]
        return 0 if name == "block_3_enriched.csv" else int(name.split(".part", 1)[1].split(".", 1)[0])

    return sorted(entries, key=number)


def names(n: int) -> list[str]:
    return ["block_3_enriched.csv", *(f"block_3_enriched.part{i}.csv" for i in range(1, n))]


def expected(live: Live, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return live.emu.reference_output(STRUCT, rows, field_confidence=True, columns=CONFIG["columns"])


def test_split_into_parts_of_about_equal_rows(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(result_parts=3, preview_max_rows=0)
    content, rows = leads(8)
    task_id = live.submit(CONFIG, content=content).json()["task_id"]
    listed = live.status(task_id)["results"]
    # Blocks still out of order (2, the final parts, 1); the parts in part order by default.
    assert [e["block_number"] for e in listed] == [2, 3, 3, 3, 1]
    entries = finals(live, task_id)
    assert [e["filename"] for e in entries] == names(3)
    assert [e["row_count"] for e in entries] == [3, 3, 2]
    got: list[dict[str, Any]] = []
    headers = set()
    for entry in entries:
        assert "results" not in entry and entry["content_type"] == "text/csv"
        data = live.client.get(entry["download_url"]).content
        assert data.startswith(BOM) and len(data) == entry["file_size"]
        headers.add(header(data))
        part = read(data)
        assert len(part) == entry["row_count"]
        got += part
    assert len(headers) == 1  # each part has the same header of its own
    assert got == expected(live, rows)


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
def test_parts_listed_out_of_order(serve_emulator: Callable[..., Live], order: str) -> None:
    live = serve_emulator(result_parts=5, result_parts_order=order, preview_max_rows=0)
    content, rows = leads(10)
    task_id = live.submit(CONFIG, content=content).json()["task_id"]
    listed = [e["filename"] for e in finals(live, task_id)]
    assert sorted(listed) == sorted(names(5)) and listed != names(5)
    if order == "reversed":
        assert listed == names(5)[::-1]
    assert [e["filename"] for e in finals(live, task_id)] == listed  # the same order on every poll
    got = [row for e in by_part(finals(live, task_id)) for row in read(live.client.get(e["download_url"]).content)]
    assert got == expected(live, rows)


def test_more_parts_than_rows_leaves_header_only_parts(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(result_parts=5, preview_max_rows=0)
    content, rows = leads(3)
    task_id = live.submit(CONFIG, content=content).json()["task_id"]
    entries = finals(live, task_id)
    assert [e["row_count"] for e in entries] == [1, 1, 1, 0, 0]
    contents = [live.client.get(e["download_url"]).content for e in entries]
    assert len({header(c) for c in contents}) == 1
    for data in contents[3:]:
        assert data.startswith(BOM) and data.count(b"\n") == 1 and read(data) == []
    assert [row for c in contents for row in read(c)] == expected(live, rows)


def test_split_slices_fill_the_parts_in_turn(
    serve_emulator: Callable[..., Live], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(emulator_output, "SLICE_ROWS", 4)  # part boundaries fall inside slices
    live = serve_emulator(result_parts=3, preview_max_rows=0)
    content, rows = leads(20)
    task_id = live.submit(CONFIG, content=content).json()["task_id"]
    entries = finals(live, task_id)
    assert [e["row_count"] for e in entries] == [7, 7, 6]
    got = [row for e in entries for row in read(live.client.get(e["download_url"]).content)]
    assert got == expected(live, rows)


def test_inline_previews_hold_each_parts_rows(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(result_parts=4, result_parts_order="reversed")
    content, rows = leads(3)
    task_id = live.submit(CONFIG, content=content).json()["task_id"]
    reference = expected(live, rows)
    entries = by_part(finals(live, task_id))
    assert [e["results"] for e in entries] == [reference[0:1], reference[1:2], reference[2:3], []]
    # Over preview_max_rows no part carries one, however small the parts.
    big = serve_emulator(result_parts=30, preview_max_rows=25)
    task_id = big.submit(CONFIG, content=leads(26)[0]).json()["task_id"]
    assert all("results" not in e for e in finals(big, task_id))


def test_split_control_before_and_after_completion(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(job_seconds=600, preview_max_rows=0)
    content, rows = leads(6)
    task_id = live.submit(CONFIG, content=content).json()["task_id"]
    live.emu.split_result(task_id, 3, "reversed")  # before completion: applied when it completes
    live.emu.complete(task_id)
    assert [e["filename"] for e in finals(live, task_id)] == names(3)[::-1]
    old_links = {e["filename"]: e["download_url"] for e in finals(live, task_id)}
    # After completion: the output is rewritten; the order alone can change too.
    job = live.emu.split_result(task_id, 2)
    assert (job.result_parts, job.result_parts_order) == (2, "reversed")
    entries = by_part(finals(live, task_id))
    assert [e["filename"] for e in entries] == names(2) and [e["row_count"] for e in entries] == [3, 3]
    assert live.client.get(old_links["block_3_enriched.part2.csv"]).status_code == 404
    assert not (job.upload_path.parent / "block_3_enriched.part2.csv").exists()
    got = [row for e in entries for row in read(live.client.get(e["download_url"]).content)]
    assert got == expected(live, rows)
    live.emu.split_result(task_id, 2, "in_order")
    assert [e["filename"] for e in finals(live, task_id)] == names(2)
    live.emu.split_result(task_id, 1)
    assert [e["filename"] for e in finals(live, task_id)] == names(1)


def test_split_over_http_and_its_refusals(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(job_seconds=600)
    task_id = live.submit(CONFIG).json()["task_id"]
    live.emu.complete(task_id)
    summary = httpx.post(f"{live.url}/_emulator/jobs/{task_id}/split", json={"parts": 2, "order": "shuffled"}).json()
    assert (summary["result_parts"], summary["result_parts_order"]) == (2, "shuffled")
    assert [f["filename"] for f in summary["files"] if f["block_number"] == 3] == names(2)
    assert [e["filename"] for e in finals(live, task_id)] == names(2)[::-1]  # two parts: shuffled is not in order
    for body in ({"parts": 0}, {"parts": 1001}, {"parts": "2"}, {"parts": 2, "order": "random"}, {}):
        response = httpx.post(f"{live.url}/_emulator/jobs/{task_id}/split", json=body)
        assert response.status_code == 400, body
    with pytest.raises(ValueError, match="result_parts"):
        live.emu.split_result(task_id, 0)
    with pytest.raises(ValueError, match="result_parts_order"):
        live.emu.split_result(task_id, 2, "sideways")  # type: ignore[arg-type]
    failed = live.submit(CONFIG).json()["task_id"]
    live.emu.fail(failed)
    with pytest.raises(ValueError, match="failed"):
        live.emu.split_result(failed, 2)


def test_corrupt_one_part(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(result_parts=3, job_seconds=600)
    content, _ = leads(6)
    task_id = live.submit(CONFIG, content=content).json()["task_id"]
    live.emu.corrupt_result(task_id, b"\x00garbage", part=1)  # before completion
    live.emu.complete(task_id)
    entries = finals(live, task_id)
    assert "results" not in entries[1] and entries[1]["file_size"] == 8
    assert live.client.get(entries[1]["download_url"]).content == b"\x00garbage"
    assert all(len(e["results"]) == 2 for e in (entries[0], entries[2]))  # the others keep their previews
    # Over HTTP, on a completed job: ?part=2.
    summary = httpx.post(f"{live.url}/_emulator/jobs/{task_id}/corrupt", params={"part": 2}, content=b"x").json()
    assert summary["corrupted"] is True and summary["corrupted_parts"] == [1, 2]
    assert live.client.get(finals(live, task_id)[2]["download_url"]).content == b"x"
    assert read(live.client.get(finals(live, task_id)[0]["download_url"]).content)  # part 0 untouched
    with pytest.raises(ValueError, match="no part 3"):
        live.emu.corrupt_result(task_id, b"x", part=3)
    with pytest.raises(ValueError, match="part number"):
        live.emu.corrupt_result(task_id, b"x", part=-1)
    for params in ({"part": 3}, {"part": "one"}):
        assert (
            httpx.post(f"{live.url}/_emulator/jobs/{task_id}/corrupt", params=params, content=b"x").status_code == 400
        )
    # A split that would lose a corrupted part is refused.
    with pytest.raises(ValueError, match="corrupted part 2"):
        live.emu.split_result(task_id, 2)


def test_drop_columns_applies_to_every_part(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(result_parts=3)
    task_id = live.submit(CONFIG, content=leads(4)[0]).json()["task_id"]
    live.emu.drop_result_columns(task_id, ["title", "title_confidence"])
    entries = finals(live, task_id)
    assert len(entries) == 3
    for entry in entries:
        data = live.client.get(entry["download_url"]).content
        assert b'"title"' not in header(data) and b'"email"' in header(data)
        assert all("title" not in row and "email" in row for row in entry["results"])


def test_expire_links_expires_every_part(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(result_parts=3)
    task_id = live.submit(CONFIG).json()["task_id"]
    entries = finals(live, task_id)
    live.emu.expire_links(task_id)
    for entry in entries:
        response = live.client.get(entry["download_url"])
        assert response.status_code == 403 and response.json() == {"detail": "Download link expired"}
    assert all(live.client.get(e["download_url"]).status_code == 200 for e in finals(live, task_id))


def test_webhook_link_is_the_first_part(serve_emulator: Callable[..., Live]) -> None:
    live = serve_emulator(result_parts=3, result_parts_order="reversed")
    task_id = live.submit(CONFIG).json()["task_id"]
    assert live.status(task_id)["status"] == "completed"
    body = live.emu._webhooks._payload(live.emu.jobs[task_id], "evt", "bulk_job.completed")
    assert "/block_3_enriched.csv?" in body["results_download_url"]


def test_settings_and_cli_flags() -> None:
    with pytest.raises(ValueError, match="result_parts"):
        EmulatorSettings(result_parts=0)
    with pytest.raises(ValueError, match="result_parts_order"):
        EmulatorSettings(result_parts_order="random")  # type: ignore[arg-type]
    ctx = emulator_command.make_context("emulator", ["--result-parts", "4", "--result-parts-order", "shuffled"])
    params = dict(ctx.params)
    for name in ("host", "port", "api_keys"):
        params.pop(name)
    settings = _settings(frozenset(), params)
    assert (settings.result_parts, settings.result_parts_order) == (4, "shuffled")
    defaults = {k: v for k, v in emulator_command.make_context("emulator", []).params.items()}
    assert (defaults["result_parts"], defaults["result_parts_order"]) == (1, "in_order")
    for bad in (["--result-parts", "0"], ["--result-parts-order", "random"]):
        with pytest.raises(click.BadParameter):
            emulator_command.make_context("emulator", bad)
