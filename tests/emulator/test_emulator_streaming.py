"""Uploads are parsed and outputs generated a piece at a time: the result must not depend on the pieces."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from sixtyfour_sync.emulator import output, uploads
from sixtyfour_sync.emulator.server import serve

from .helpers import Live

STRUCT: dict[str, Any] = {
    "email": "Work email",
    "employee_count": {"description": "Employees", "type": "int"},
    "skills": {"description": "Skills", "type": "list[str]"},
    "summary": "Short bio",
}


def _rows(n: int) -> list[dict[str, Any]]:
    return [
        {"lead_id": i, "first_name": f"F{i}", "last_name": f"L{i % 7}", "company": f"Co {i % 11}", "ok": i % 2 == 0}
        for i in range(n)
    ]


def _jsonl(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _parse(tmp_path: Path, text: str, name: str = "rows.jsonl") -> list[dict[str, Any]]:
    src = tmp_path / name
    src.write_text(text)
    dest = tmp_path / "parsed.arrow"
    uploads.parse_upload(src, uploads.FORMATS[src.suffix], name, dest)
    return uploads.read_parsed(dest).to_pylist()


def test_output_generated_in_slices_equals_the_reference(
    serve_emulator: Callable[..., Live], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output, "SLICE_ROWS", 7)
    live = serve_emulator(preview_max_rows=0)
    rows = _rows(50)
    config = {"struct": STRUCT, "field_confidence": True, "columns": ["first_name", "last_name", "company"]}
    task_id = live.submit(config, filename="rows.jsonl", content=_jsonl(rows)).json()["task_id"]
    entry = live.final(task_id)
    data = live.client.get(entry["download_url"]).content
    table = pacsv.read_csv(
        io.BytesIO(data),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            strings_can_be_null=True, column_types={"lead_id": pa.string(), "ok": pa.string()}
        ),
    )
    expected = live.emu.reference_output(STRUCT, rows, field_confidence=True, columns=config["columns"])
    got = table.to_pylist()
    assert table.num_rows == 50 and entry["row_count"] == 50
    for g, e in zip(got, expected, strict=True):
        e = {**e, "lead_id": str(e["lead_id"]), "ok": "true" if e["ok"] else "false"}
        e["skills"] = json.dumps(e["skills"]) if e["skills"] is not None else None
        g["skills"] = json.dumps(json.loads(g["skills"])) if g["skills"] is not None else None
        assert g == e
    assert live.emu.jobs[task_id].failed_rows == sum(1 for e in expected if e["email"] is None)


def test_jsonl_pieces_keep_every_value_as_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uploads, "_BLOCK", 64)  # a piece per line or two
    rows = [{"id": 1, "name": "Ada", "seen": "2024-01-01 10:00:00", "ok": True, "gone": None}]
    rows += [{"id": i, "name": f"N{i}", "seen": "not a time", "ok": False, "gone": None} for i in range(2, 9)]
    got = _parse(tmp_path, _jsonl(rows))
    assert got[0] == {"id": "1", "name": "Ada", "seen": "2024-01-01 10:00:00", "ok": "true", "gone": None}
    assert [r["seen"] for r in got[1:]] == ["not a time"] * 7 and len(got) == 8


@pytest.mark.parametrize(
    ("late", "expected"),
    [
        ({"id": 9, "name": "Z", "extra": "new key"}, {"id": "9", "name": "Z", "extra": "new key"}),
        ({"id": "nine", "name": "Z"}, {"id": "nine", "name": "Z", "extra": None}),
        ({"id": 9, "name": 1.5}, {"id": "9", "name": "1.5", "extra": None}),
        ({"id": 9, "name": {"a": [1, 2]}}, {"id": "9", "name": '{"a":[1,2]}', "extra": None}),
    ],
    ids=["new-key", "type-change", "float", "nested"],
)
def test_a_later_piece_that_does_not_fit_falls_back_to_duckdb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, late: dict[str, Any], expected: dict[str, Any]
) -> None:
    monkeypatch.setattr(uploads, "_BLOCK", 64)
    rows = [{"id": i, "name": f"N{i}"} for i in range(6)] + [late]
    got = _parse(tmp_path, _jsonl(rows))
    assert len(got) == 7
    assert {k: got[-1].get(k) for k in expected} == expected
    assert got[0]["id"] == "0" and got[0]["name"] == "N0"


def test_a_long_line_is_one_piece(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uploads, "_BLOCK", 64)
    rows = [{"id": 1, "note": "x" * 5000}, {"id": 2, "note": "short"}]
    got = _parse(tmp_path, _jsonl(rows).rstrip("\n"))  # no final line break either
    assert [len(r["note"]) for r in got] == [5000, 5]


def test_csv_in_blocks_with_multiline_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uploads, "_CSV_BLOCK", 1 << 10)
    lines = "".join(f'{i},"line one\nline two {i}",x\n' for i in range(200))
    got = _parse(tmp_path, "id,text,other\n" + lines, "rows.csv")
    assert len(got) == 200 and got[150] == {"id": "150", "text": "line one\nline two 150", "other": "x"}


def test_server_serves_any_wsgi_app_and_ticks() -> None:
    ticks: list[int] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    with serve(app, "127.0.0.1", 0, tick=lambda: ticks.append(1)) as server:
        assert httpx.get(server.url + "/hello").text == "/hello"
        while not ticks:
            pass
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/hello", timeout=1)


def test_no_import_cycle_between_core_server_and_webhooks() -> None:
    code = (
        "import sys\n"
        "import sixtyfour_sync.emulator.server, sixtyfour_sync.emulator.webhooks\n"
        "assert 'sixtyfour_sync.emulator.core' not in sys.modules, 'server or webhooks imports core'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_concurrent_uploads_and_completions_all_finish(serve_emulator: Callable[..., Live]) -> None:
    # Parsing and generating take turns behind one semaphore: overlapping requests must neither deadlock
    # nor mix their files up.
    live = serve_emulator(preview_max_rows=0, rate_limit_per_minute=0)
    config = {"struct": STRUCT, "columns": ["first_name", "last_name", "company"]}
    results: dict[int, tuple[str, int]] = {}

    def one(i: int) -> None:
        rows = _rows(200 + i)
        with httpx.Client(base_url=live.url, headers={"x-api-key": live.client.headers["x-api-key"]}) as c:
            body = live.submit(config, filename="rows.jsonl", content=_jsonl(rows), client=c).json()
            status = c.get(f"/job-status/{body['task_id']}", timeout=30).json()
            final = max(status["results"], key=lambda e: e["block_number"])
            data = c.get(final["download_url"], timeout=30).content
        results[i] = (body["task_id"], pacsv.read_csv(io.BytesIO(data), parse_options=_MULTILINE).num_rows)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert {i: n for i, (_, n) in results.items()} == {i: 200 + i for i in range(6)}
    assert len({task for task, _ in results.values()}) == 6


_MULTILINE = pacsv.ParseOptions(newlines_in_values=True)
