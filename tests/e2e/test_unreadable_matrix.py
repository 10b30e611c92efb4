"""One unreadable result holds that job only: every other paid job merges in the same run, the run is partial
(exit 3, never "This is a bug"), and the error names the task and the kind of problem without quoting the file.

Each kind of bad file the API (or a proxy in front of it) could hand back: garbage bytes, no header, a header
without the key, NUL bytes, a truncated row, an HTML error page, an empty file, JSON instead of CSV.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from sixtyfour_sync import commands as api
from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.warehouses import Warehouse, make_duckdb, setup_leads

BAD_FILES: dict[str, bytes] = {
    "garbage_header": b"\xef\xbb\xbf\x00\xff\xfe<<not a csv>>\x9c\x00\nlead_id,email\n1,a@b.c\n",
    "replacement_chars": "\ufffd<<not a csv>>,\ufffd\n1,2\n".encode(),
    "no_header": b"21,Ada,Lovelace,Acme,acme.com,ada@acme.com\n22,Grace,Hopper,Globex,globex.io,g@globex.io\n",
    "header_without_key": b"first_name,email,title\nAda,ada@acme.com,CEO\n",
    "nul_bytes": b"lead_id,email,title\n\x00\x00\x00,\x00,\x00\n",
    "truncated": b"lead_id,email,title,employee_count\n21,ada@acme.com,CEO,12\n22,grace@glo",
    "html_error_page": b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>502 Bad Gateway</h1><p>secret-token-abc</p></body></html>\n",
    "empty": b"",
    "json_instead_of_csv": b'{"detail": "Internal server error", "rows": [{"lead_id": 21}]}',
    "binary": bytes(range(256)) * 8,
}
#: What must never be echoed into a message, per kind (the file's own bytes).
ECHO = {
    "garbage_header": "<<not",
    "replacement_chars": "<<not",
    "no_header": "Lovelace",
    "header_without_key": "ada@acme",
    "truncated": "grace@glo",
    "html_error_page": "secret-token",
    "json_instead_of_csv": "Internal server error",
}


class _Corrupt(api.Reporter):
    """Replace the result of the ``nth`` submitted job with ``data``."""

    def __init__(self, project: E2EProject, data: bytes, nth: int = 3) -> None:
        self.project, self.data, self.nth, self.seen, self.lock = project, data, nth, 0, threading.Lock()

    def on(self, event_name: str, sync: str, **data: Any) -> None:
        if event_name == "submitted":
            with self.lock:
                self.seen += 1
                if self.seen == self.nth:
                    self.project.emulator.corrupt_result(data["task_id"], self.data)


def _five_jobs(project: E2EProject, wh: Warehouse) -> None:
    setup_leads(wh, 100)
    project.write_model(chunk_rows=20)


def _check_held(project: E2EProject, wh: Warehouse, result: api.RunResult, kind: str) -> None:
    assert result.exit_code == 3, result.to_dict()
    states = sorted(r[0] for r in wh.jobs())
    assert states == ["merged"] * 4 + ["result_unreadable"], states
    assert len(wh.target()) == 80  # the other four paid results are in the target
    (task, error) = next((r[1], r[5]) for r in wh.jobs() if r[0] == "result_unreadable")
    assert task and task in error  # the message names the task
    assert "cannot be read" in error and len(error) <= 1000
    assert "\x00" not in error and "This is a bug" not in error
    if kind in ECHO:
        assert ECHO[kind] not in error
    sync = result.syncs[0]
    assert sync.status == "partial"
    held = sync.jobs_needing_attention
    assert len(held) == 1 and held[0].task_id == task


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_each_kind_of_unreadable_result_holds_only_its_job(project: E2EProject, kind: str) -> None:
    wh = make_duckdb(project)
    _five_jobs(project, wh)
    result = api.run(
        project.dir,
        api_key=project.api_key,
        api_url=project.url,
        env=project.env,
        reporter=_Corrupt(project, BAD_FILES[kind]),
    )
    _check_held(project, wh, result, kind)


@pytest.mark.parametrize("kind", ["garbage_header", "header_without_key", "json_instead_of_csv"])
def test_the_command_line_says_partial_not_a_bug(project: E2EProject, wh: Warehouse, kind: str) -> None:
    """Through the CLI (DuckDB and PostgreSQL): exit 3, the summary names the held job, nothing says "bug"."""
    _five_jobs(project, wh)
    first = api.run(
        project.dir,
        api_key=project.api_key,
        api_url=project.url,
        env=project.env,
        reporter=_Corrupt(project, BAD_FILES[kind]),
    )
    _check_held(project, wh, first, kind)
    again = run_cli(project, "run", "--yes")
    out = again.stdout + again.stderr
    assert again.returncode == 3, out
    assert "This is a bug" not in out and "Internal error" not in out
    assert "result_unreadable" in out or "need attention" in out
    if kind in ECHO:
        assert ECHO[kind] not in out
    assert len(wh.target()) == 80  # nothing asked again, nothing lost
