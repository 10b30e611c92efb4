"""Downloading results: inline previews, signed links, refreshes, truncation, atomic files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_fakes import API_KEY, ClientFactory, FakeApi, FakeClock

from sixtyfour_sync.api import DownloadError, JobStatus

TASK = "task-7"
STATUS_PATH = f"/job-status/{TASK}"
CSV = b'\xef\xbb\xbfid,email\n1,a@example.com\n2,"multi\nline"\n'


def link(n: int) -> str:
    return f"https://files.sixtyfour.test/dl/{n}/final.csv?sig=SIGNATURE{n}&exp=900"


def completed(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"id": TASK, "status": "completed", "charge_amount": 10, "results": list(entries)}


def final_entry(n: int = 1, **extra: Any) -> dict[str, Any]:
    entry = {
        "filename": "final.csv",
        "download_url": link(n),
        "block_number": 2,
        "row_count": 2,
        "file_size": len(CSV),
        "content_type": "text/csv",
        "download_expires_in_seconds": 900,
    }
    entry.update(extra)
    return entry


STAGE = {"filename": "stage.csv", "download_url": link(99), "block_number": 1, "content_type": "text/csv"}


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_downloads_the_highest_block_with_the_key(api: FakeApi, make_client: ClientFactory, tmp_path: Path) -> None:
    api.add("GET", STATUS_PATH, completed(final_entry(), STAGE))
    api.add("GET", "/dl/1/final.csv", (200, CSV, {"content-type": "text/csv"}))
    dest = tmp_path / "out" / "result.csv"
    result = make_client().download_result(TASK, dest)
    assert result.source == "download" and result.format == "csv" and result.block_number == 2
    assert result.row_count == 2 and result.path == dest
    assert dest.read_bytes() == CSV
    download = api.calls("GET", "/dl/1/final.csv")[0]
    assert download.headers["x-api-key"] == API_KEY
    assert download.url.params["sig"] == "SIGNATURE1"
    assert api.calls("GET", "/dl/99/final.csv") == []
    assert files_in(dest.parent) == ["result.csv"]


def test_inline_preview_is_written_without_download(api: FakeApi, make_client: ClientFactory, tmp_path: Path) -> None:
    rows = [{"id": 1, "email": "a@example.com"}, {"id": 2, "email": None}]
    api.add("GET", STATUS_PATH, completed(STAGE, final_entry(results=rows)))
    dest = tmp_path / "result.jsonl"
    result = make_client().download_result(TASK, dest)
    assert (result.source, result.format, result.row_count) == ("inline", "jsonl", 2)
    assert [json.loads(line) for line in dest.read_text().splitlines()] == rows
    assert [r.url.path for r in api.requests] == [STATUS_PATH]


def test_partial_preview_falls_back_to_the_file(api: FakeApi, make_client: ClientFactory, tmp_path: Path) -> None:
    api.add("GET", STATUS_PATH, completed(final_entry(results=[{"id": 1}], row_count=2)))
    api.add("GET", "/dl/1/final.csv", (200, CSV))
    assert make_client().download_result(TASK, tmp_path / "r.csv").source == "download"


def test_redirect_is_not_followed_and_link_refreshed(api: FakeApi, make_client: ClientFactory, tmp_path: Path) -> None:
    api.add("GET", STATUS_PATH, completed(final_entry(1)), completed(final_entry(2)))
    api.add("GET", "/dl/1/final.csv", (302, b"", {"location": "https://evil.test/steal"}))
    api.add("GET", "/dl/2/final.csv", (200, CSV))
    result = make_client().download_result(TASK, tmp_path / "r.csv")
    assert result.source == "download"
    assert [r.url.host for r in api.requests].count("evil.test") == 0
    assert len(api.calls("GET", STATUS_PATH)) == 2


@pytest.mark.parametrize("status", [401, 403, 404, 410])
def test_refused_link_is_refreshed(api: FakeApi, make_client: ClientFactory, tmp_path: Path, status: int) -> None:
    api.add("GET", STATUS_PATH, completed(final_entry(1)), completed(final_entry(2)))
    api.add("GET", "/dl/1/final.csv", (status, {"detail": "Signature expired"}))
    api.add("GET", "/dl/2/final.csv", (200, CSV))
    make_client().download_result(TASK, tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_bytes() == CSV


def test_null_link_is_refreshed(api: FakeApi, make_client: ClientFactory, tmp_path: Path) -> None:
    api.add("GET", STATUS_PATH, completed(final_entry(1, download_url=None)), completed(final_entry(2)))
    api.add("GET", "/dl/2/final.csv", (200, CSV))
    make_client().download_result(TASK, tmp_path / "r.csv")
    assert (tmp_path / "r.csv").exists()


def test_link_expired_by_age_is_refreshed_before_use(
    api: FakeApi, make_client: ClientFactory, tmp_path: Path, clock: FakeClock
) -> None:
    client = make_client()
    api.add("GET", STATUS_PATH, completed(final_entry(1)), completed(final_entry(2)))
    api.add("GET", "/dl/2/final.csv", (200, CSV))
    status = client.job_status(TASK)
    clock.now += 900  # the link has expired by the time the caller downloads
    client.download_result(status, tmp_path / "r.csv")
    assert api.calls("GET", "/dl/1/final.csv") == []


def test_refreshes_are_bounded(api: FakeApi, make_client: ClientFactory, tmp_path: Path) -> None:
    api.add("GET", STATUS_PATH, completed(final_entry(1)))
    api.add("GET", "/dl/1/final.csv", (403, {"detail": "Signature expired"}))
    with pytest.raises(DownloadError, match="after 2 link refreshes") as exc:
        make_client().download_result(TASK, tmp_path / "r.csv", max_refreshes=2)
    assert "SIGNATURE" not in str(exc.value)
    assert len(api.calls("GET", "/dl/1/final.csv")) == 3
    assert files_in(tmp_path) == []


def test_truncated_body_is_retried(api: FakeApi, make_client: ClientFactory, tmp_path: Path, clock: FakeClock) -> None:
    api.add("GET", STATUS_PATH, completed(final_entry(1)))
    api.add(
        "GET",
        "/dl/1/final.csv",
        (200, CSV[:10], {"content-length": str(len(CSV))}),
        (200, CSV[:10], {"content-length": "10"}),  # honest header, but shorter than file_size
        (200, CSV),
    )
    make_client().download_result(TASK, tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_bytes() == CSV
    assert len(clock.sleeps) == 2
    assert files_in(tmp_path) == ["r.csv"]


def test_truncation_every_time_leaves_nothing_behind(api: FakeApi, make_client: ClientFactory, tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_bytes(b"previous complete file")
    api.add("GET", STATUS_PATH, completed(final_entry(1)))
    api.add("GET", "/dl/1/final.csv", (200, CSV[:10], {"content-length": str(len(CSV))}))
    with pytest.raises(DownloadError, match="truncated") as exc:
        make_client().download_result(TASK, tmp_path / "r.csv")
    assert "SIGNATURE" not in str(exc.value)
    # The old file is untouched and no temp file is left.
    assert files_in(tmp_path) == ["r.csv"]
    assert (tmp_path / "r.csv").read_bytes() == b"previous complete file"


def test_dest_appears_only_when_complete(api: FakeApi, make_client: ClientFactory, tmp_path: Path) -> None:
    dest = tmp_path / "r.csv"
    seen_mid_stream: list[list[str]] = []

    def body() -> Iterator[bytes]:
        yield CSV[:5]
        seen_mid_stream.append(files_in(tmp_path))
        yield CSV[5:]

    api.add("GET", STATUS_PATH, completed(final_entry(1)))
    api.add("GET", "/dl/1/final.csv", lambda request: httpx.Response(200, content=body()))
    make_client().download_result(TASK, dest)
    (names,) = seen_mid_stream
    assert "r.csv" not in names and len(names) == 1 and names[0].endswith(".part")
    assert files_in(tmp_path) == ["r.csv"]


def test_server_errors_on_download_are_retried_then_fail(
    api: FakeApi, make_client: ClientFactory, tmp_path: Path
) -> None:
    api.add("GET", STATUS_PATH, completed(final_entry(1)))
    api.add("GET", "/dl/1/final.csv", (500, {"detail": "Internal server error"}), (200, CSV))
    make_client().download_result(TASK, tmp_path / "r.csv")
    api.add("GET", "/dl/1/final.csv", (400, {"detail": "bad"}))
    api.routes[("GET", "/dl/1/final.csv")] = [(400, {"detail": "bad"})]
    with pytest.raises(DownloadError, match="HTTP 400"):
        make_client().download_result(TASK, tmp_path / "r2.csv")
    assert not (tmp_path / "r2.csv").exists()


def test_dropped_connection_mid_download_is_retried(api: FakeApi, make_client: ClientFactory, tmp_path: Path) -> None:
    def dropping(request: httpx.Request) -> httpx.Response:
        def body() -> Iterator[bytes]:
            yield CSV[:4]
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

        return httpx.Response(200, content=body())

    api.add("GET", STATUS_PATH, completed(final_entry(1)))
    api.add("GET", "/dl/1/final.csv", dropping, (200, CSV))
    make_client().download_result(TASK, tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_bytes() == CSV
    assert files_in(tmp_path) == ["r.csv"]


def test_not_completed_or_empty_jobs(api: FakeApi, make_client: ClientFactory, tmp_path: Path) -> None:
    client = make_client()
    running = JobStatus.from_api({"status": "running"}, task_id=TASK)
    with pytest.raises(DownloadError, match="is running"):
        client.download_result(running, tmp_path / "r.csv")
    empty = JobStatus.from_api({"status": "completed", "results": []}, task_id=TASK)
    with pytest.raises(DownloadError, match="no result files"):
        client.download_result(empty, tmp_path / "r.csv")


@pytest.mark.parametrize(
    ("entry", "header", "fmt"),
    [
        ({"content_type": "application/x-ndjson"}, None, "jsonl"),
        ({"content_type": "application/json"}, None, "json"),
        ({"content_type": "application/octet-stream", "filename": "out.jsonl"}, None, "jsonl"),
        ({"content_type": None, "filename": "out.json"}, None, "json"),
        ({"content_type": None, "filename": None}, "text/csv; charset=utf-8", "csv"),
        ({"content_type": None, "filename": "out"}, None, "csv"),
    ],
)
def test_format_detection(
    api: FakeApi, make_client: ClientFactory, tmp_path: Path, entry: dict[str, Any], header: str | None, fmt: str
) -> None:
    api.add("GET", STATUS_PATH, completed(final_entry(1, file_size=None, **entry)))
    headers = {"content-type": header} if header else {}
    api.add("GET", "/dl/1/final.csv", (200, b"{}", headers))
    assert make_client().download_result(TASK, tmp_path / "r").format == fmt
