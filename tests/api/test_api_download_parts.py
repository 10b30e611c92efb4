"""Downloading a final output split into several files: every part, in order, each link refreshed on its own."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_fakes import API_KEY, ClientFactory, FakeApi, FakeClock

from sixtyfour_sync.api import DownloadError, ResultDownload

TASK = "task-parts"
STATUS_PATH = f"/job-status/{TASK}"
HEADER = b"\xef\xbb\xbf" + b'"id","email"\n'


def body(i: int) -> bytes:
    """Part i's CSV: its own header, then two rows."""
    return HEADER + f'"{2 * i}","a{i}@example.com"\n"{2 * i + 1}","b{i}@example.com"\n'.encode()


def name(i: int) -> str:
    return "output.csv" if i == 0 else f"output.part{i}.csv"


def url_path(poll: int, i: int) -> str:
    return f"/dl/{poll}/{name(i)}"


def link(poll: int, i: int) -> str:
    return f"https://files.sixtyfour.test{url_path(poll, i)}?sig=SIGNATURE{poll}x{i}&exp=900"


def entry(poll: int, i: int, **extra: Any) -> dict[str, Any]:
    e = {
        "filename": name(i),
        "download_url": link(poll, i),
        "block_number": 3,
        "row_count": 2,
        "file_size": len(body(i)),
        "content_type": "text/csv",
        "download_expires_in_seconds": 900,
    }
    e.update(extra)
    return e


STAGES = [
    {"filename": "research.csv", "download_url": link(99, 0), "block_number": 2, "content_type": "text/csv"},
    {"filename": "input.jsonl", "download_url": link(98, 0), "block_number": 1},
]


def completed(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": TASK, "status": "completed", "charge_amount": 10, "results": [STAGES[0], *entries, STAGES[1]]}


def serve_parts(api: FakeApi, poll: int, n: int) -> None:
    for i in range(n):
        api.add("GET", url_path(poll, i), (200, body(i), {"content-type": "text/csv"}))


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def part_paths(dest: Path, n: int) -> list[Path]:
    return [dest, *(dest.with_name(f"{dest.name}.part{i}") for i in range(1, n))]


def downloads(api: FakeApi) -> list[str]:
    return [r.url.path for r in api.requests if r.url.path.startswith("/dl/")]


@pytest.mark.parametrize("n", [1, 2, 5])
@pytest.mark.parametrize("order", ["in_order", "reversed", "shuffled"])
def test_every_part_is_downloaded_in_order(
    api: FakeApi, make_client: ClientFactory, tmp_path: Path, n: int, order: str
) -> None:
    entries = [entry(1, i) for i in range(n)]
    if order == "reversed":
        entries.reverse()
    elif order == "shuffled":
        entries = entries[1::2] + entries[0::2]
    api.add("GET", STATUS_PATH, completed(entries))
    serve_parts(api, 1, n)
    dest = tmp_path / "out" / "result.csv"
    got = make_client().download_result(TASK, dest)
    paths = part_paths(dest, n)
    assert [p.path for p in got.all_parts] == paths
    assert [p.filename for p in got.all_parts] == [name(i) for i in range(n)]
    assert all(p.format == "csv" and p.source == "download" and p.row_count == 2 for p in got.all_parts)
    assert (got.path, got.format, got.source, got.row_count, got.block_number) == (dest, "csv", "download", 2 * n, 3)
    assert [p.read_bytes() for p in paths] == [body(i) for i in range(n)]
    assert files_in(dest.parent) == sorted(p.name for p in paths)
    # Each part once, each with the key; the other blocks never.
    assert sorted(downloads(api)) == sorted(url_path(1, i) for i in range(n))
    assert all(r.headers["x-api-key"] == API_KEY for r in api.requests)


def test_one_expired_part_is_fetched_again_alone_after_a_poll(
    api: FakeApi, make_client: ClientFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api.add("GET", STATUS_PATH, completed([entry(1, i) for i in range(3)]), completed([entry(2, i) for i in range(3)]))
    serve_parts(api, 1, 3)
    api.routes[("GET", url_path(1, 1))] = [(403, {"detail": "Download link expired"})]
    serve_parts(api, 2, 3)
    caplog.set_level(logging.INFO, logger="sixtyfour_sync.api")
    dest = tmp_path / "r.csv"
    got = make_client().download_result(TASK, dest)
    # Part 1 again from its fresh link, part 2 from the fresh listing too; part 0 is not fetched again.
    assert downloads(api) == [url_path(1, 0), url_path(1, 1), url_path(2, 1), url_path(2, 2)]
    assert len(api.calls("GET", STATUS_PATH)) == 2
    assert [p.read_bytes() for p in part_paths(dest, 3)] == [body(i) for i in range(3)]
    assert got.row_count == 6
    assert "file 2 of 3 (output.part1.csv) of the result: the download link was refused" in caplog.text
    assert "polling for fresh links (1 of 3)" in caplog.text
    assert "SIGNATURE" not in caplog.text


def test_a_link_that_expires_while_earlier_parts_download_is_refreshed_before_use(
    api: FakeApi, make_client: ClientFactory, tmp_path: Path, clock: FakeClock
) -> None:
    def slow_first_part(request: httpx.Request) -> httpx.Response:
        clock.now += 880  # the other links are within the expiry margin once it is done
        return httpx.Response(200, content=body(0))

    api.add("GET", STATUS_PATH, completed([entry(1, 0), entry(1, 1)]), completed([entry(2, 0), entry(2, 1)]))
    api.add("GET", url_path(1, 0), slow_first_part)
    serve_parts(api, 2, 2)
    make_client().download_result(TASK, tmp_path / "r.csv")
    assert downloads(api) == [url_path(1, 0), url_path(2, 1)]  # the stale link of part 1 is never tried


def test_parts_are_matched_by_name_whatever_the_new_listing_order(
    api: FakeApi, make_client: ClientFactory, tmp_path: Path
) -> None:
    first = [entry(1, i) for i in range(3)]
    again = [entry(2, i) for i in (2, 0, 1)]
    api.add("GET", STATUS_PATH, completed(first), completed(again))
    serve_parts(api, 1, 3)
    api.routes[("GET", url_path(1, 2))] = [(410, {"detail": "Gone"})]
    serve_parts(api, 2, 3)
    got = make_client().download_result(TASK, tmp_path / "r.csv")
    assert downloads(api) == [url_path(1, 0), url_path(1, 1), url_path(1, 2), url_path(2, 2)]
    assert [p.path.read_bytes() for p in got.all_parts] == [body(i) for i in range(3)]


def test_parts_without_names_are_matched_by_position(api: FakeApi, make_client: ClientFactory, tmp_path: Path) -> None:
    def nameless(poll: int, i: int) -> dict[str, Any]:
        return entry(poll, i, filename=None)

    polls = [completed([nameless(p, 0), nameless(p, 1)]) for p in (1, 2)]
    api.add("GET", STATUS_PATH, *polls)
    serve_parts(api, 1, 2)
    api.routes[("GET", url_path(1, 1))] = [(302, b"", {"location": "https://elsewhere.test/x"})]
    serve_parts(api, 2, 2)
    got = make_client().download_result(TASK, tmp_path / "r.csv")
    assert downloads(api) == [url_path(1, 0), url_path(1, 1), url_path(2, 1)]
    assert [p.path.read_bytes() for p in got.all_parts] == [body(0), body(1)]
    assert all(r.url.host != "elsewhere.test" for r in api.requests)


def test_each_part_has_its_own_refresh_budget(api: FakeApi, make_client: ClientFactory, tmp_path: Path) -> None:
    polls = [completed([entry(p, 0), entry(p, 1)]) for p in range(1, 6)]
    api.add("GET", STATUS_PATH, *polls)
    # Part 0 works at the third link, part 1 at the fifth: two refreshes each.
    for p in (1, 2):
        api.add("GET", url_path(p, 0), (403, {"detail": "expired"}))
    for p in (3, 4):
        api.add("GET", url_path(p, 1), (403, {"detail": "expired"}))
    api.add("GET", url_path(3, 0), (200, body(0)))
    api.add("GET", url_path(5, 1), (200, body(1)))
    got = make_client().download_result(TASK, tmp_path / "r.csv", max_refreshes=2)
    assert len(api.calls("GET", STATUS_PATH)) == 5
    assert [p.path.read_bytes() for p in got.all_parts] == [body(0), body(1)]


def test_a_part_past_its_refresh_budget_fails_and_leaves_nothing(
    api: FakeApi, make_client: ClientFactory, tmp_path: Path
) -> None:
    api.add("GET", STATUS_PATH, completed([entry(1, i) for i in range(3)]))
    serve_parts(api, 1, 3)
    api.routes[("GET", url_path(1, 2))] = [(403, {"detail": f"Signature expired {API_KEY}"})]
    with pytest.raises(DownloadError) as exc:
        make_client().download_result(TASK, tmp_path / "r.csv", max_refreshes=2)
    message = str(exc.value)
    assert "file 3 of 3 (output.part2.csv) of the result of job task-parts" in message
    assert "after 2 link refreshes" in message
    assert "SIGNATURE" not in message and API_KEY not in message and "/dl/" not in message
    # Parts 0 and 1 were complete, but a result without its last part must not look like one.
    assert files_in(tmp_path) == []
    assert api.calls("GET", url_path(1, 0)) and len(api.calls("GET", url_path(1, 0))) == 1


def test_a_fatal_error_mid_way_leaves_no_part_and_keeps_older_files(
    api: FakeApi, make_client: ClientFactory, tmp_path: Path
) -> None:
    dest = tmp_path / "r.csv"
    dest.write_bytes(b"an older result")
    api.add("GET", STATUS_PATH, completed([entry(1, i) for i in range(3)]))
    serve_parts(api, 1, 3)
    api.routes[("GET", url_path(1, 1))] = [(400, {"detail": "bad"})]
    with pytest.raises(DownloadError, match="HTTP 400") as exc:
        make_client().download_result(TASK, dest)
    assert "file 2 of 3 (output.part1.csv)" in str(exc.value)
    assert files_in(tmp_path) == ["r.csv"] and dest.read_bytes() == b"an older result"
    assert api.calls("GET", url_path(1, 2)) == []  # nothing after the failure


def test_an_interrupt_mid_way_leaves_nothing(api: FakeApi, make_client: ClientFactory, tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def interrupted(request: httpx.Request) -> httpx.Response:
        seen.append(files_in(tmp_path))
        raise KeyboardInterrupt

    api.add("GET", STATUS_PATH, completed([entry(1, i) for i in range(3)]))
    serve_parts(api, 1, 3)
    api.routes[("GET", url_path(1, 2))] = [interrupted]
    with pytest.raises(KeyboardInterrupt):
        make_client().download_result(TASK, tmp_path / "r.csv")
    # Parts 0 and 1 waited as temp files, never in place; all are gone.
    (names,) = seen
    assert len(names) == 2 and all(n.startswith(".r.csv.") and n.endswith(".part") for n in names)
    assert any(n.startswith(".r.csv.part1.") for n in names)
    assert files_in(tmp_path) == []


def test_a_failure_while_renaming_removes_the_parts_already_in_place(
    api: FakeApi, make_client: ClientFactory, tmp_path: Path
) -> None:
    (tmp_path / "r.csv.part2").mkdir()  # the last part cannot be renamed into place
    (tmp_path / "r.csv.part2" / "keep").write_text("x")
    api.add("GET", STATUS_PATH, completed([entry(1, i) for i in range(3)]))
    serve_parts(api, 1, 3)
    with pytest.raises(IsADirectoryError):
        make_client().download_result(TASK, tmp_path / "r.csv")
    assert files_in(tmp_path) == ["r.csv.part2"]


def test_a_truncated_part_is_retried(
    api: FakeApi, make_client: ClientFactory, tmp_path: Path, clock: FakeClock
) -> None:
    api.add("GET", STATUS_PATH, completed([entry(1, i) for i in range(3)]))
    serve_parts(api, 1, 3)
    api.routes[("GET", url_path(1, 1))] = [
        (200, body(1)[:9], {"content-length": str(len(body(1)))}),
        (200, body(1)[:9]),  # an honest header, but shorter than the listed file_size
        (200, body(1)),
    ]
    got = make_client().download_result(TASK, tmp_path / "r.csv")
    assert [p.path.read_bytes() for p in got.all_parts] == [body(i) for i in range(3)]
    assert len(clock.sleeps) == 2 and len(api.calls("GET", STATUS_PATH)) == 1
    assert files_in(tmp_path) == ["r.csv", "r.csv.part1", "r.csv.part2"]


def test_header_only_parts(api: FakeApi, make_client: ClientFactory, tmp_path: Path) -> None:
    entries = [entry(1, 0, row_count=1), entry(1, 1, row_count=0, file_size=len(HEADER))]
    entries.append(entry(1, 2, row_count=0, file_size=len(HEADER)))
    api.add("GET", STATUS_PATH, completed(entries))
    api.add("GET", url_path(1, 0), (200, body(0)))
    api.add("GET", url_path(1, 1), (200, HEADER))
    api.add("GET", url_path(1, 2), (200, HEADER))
    got = make_client().download_result(TASK, tmp_path / "r.csv")
    assert [p.path.read_bytes() for p in got.all_parts] == [body(0), HEADER, HEADER]
    assert [p.row_count for p in got.all_parts] == [1, 0, 0] and got.row_count == 1


def test_inline_previews_are_written_per_part(api: FakeApi, make_client: ClientFactory, tmp_path: Path) -> None:
    rows0 = [{"id": 0, "email": "a@example.com"}, {"id": 1, "email": None}]
    rows2: list[dict[str, Any]] = []
    entries = [
        entry(1, 0, results=rows0),
        entry(1, 1, results=[{"id": 2}]),  # a partial preview (row_count 2): the file is downloaded
        entry(1, 2, results=rows2, row_count=0),
    ]
    api.add("GET", STATUS_PATH, completed(entries[::-1]))
    serve_parts(api, 1, 3)
    dest = tmp_path / "r.csv"
    got = make_client().download_result(TASK, dest)
    assert [(p.source, p.format, p.row_count) for p in got.all_parts] == [
        ("inline", "jsonl", 2),
        ("download", "csv", 2),
        ("inline", "jsonl", 0),
    ]
    assert (got.source, got.format, got.row_count) == ("inline", "jsonl", 4)
    assert [json.loads(line) for line in dest.read_text().splitlines()] == rows0
    assert dest.with_name("r.csv.part1").read_bytes() == body(1)
    assert dest.with_name("r.csv.part2").read_bytes() == b""
    assert downloads(api) == [url_path(1, 1)]


def test_a_changed_set_of_parts_starts_over(
    api: FakeApi, make_client: ClientFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api.add("GET", STATUS_PATH, completed([entry(1, i) for i in range(3)]), completed([entry(2, i) for i in range(2)]))
    serve_parts(api, 1, 3)
    api.routes[("GET", url_path(1, 2))] = [(404, {"detail": "File not found"})]
    serve_parts(api, 2, 2)
    caplog.set_level(logging.INFO, logger="sixtyfour_sync.api")
    dest = tmp_path / "r.csv"
    got = make_client().download_result(TASK, dest)
    assert downloads(api) == [url_path(1, 0), url_path(1, 1), url_path(1, 2), url_path(2, 0), url_path(2, 1)]
    assert [p.path for p in got.all_parts] == part_paths(dest, 2)
    assert files_in(tmp_path) == ["r.csv", "r.csv.part1"]
    assert "the result's files changed between polls (2 now, 3 before); starting over" in caplog.text


def test_parts_that_keep_changing_give_up_cleanly(api: FakeApi, make_client: ClientFactory, tmp_path: Path) -> None:
    def listing(poll: int) -> dict[str, Any]:
        n = 2 + poll % 2
        return completed([entry(poll, i, download_url=None) if i == n - 1 else entry(poll, i) for i in range(n)])

    api.add("GET", STATUS_PATH, *(listing(p) for p in range(1, 10)))
    for p in range(1, 10):
        serve_parts(api, p, 3)
    with pytest.raises(DownloadError, match="changed between polls 3 times"):
        make_client().download_result(TASK, tmp_path / "r.csv", max_refreshes=2)
    assert len(api.calls("GET", STATUS_PATH)) == 4  # the first poll and three refreshes
    assert files_in(tmp_path) == []


@pytest.mark.parametrize(
    "make_status",
    [
        lambda: {"id": TASK, "status": "failed", "error": "boom"},
        lambda: {"id": TASK, "status": "completed", "results": []},
    ],
    ids=["failed-after-refresh", "empty-after-refresh"],
)
def test_a_refresh_that_finds_no_result_leaves_nothing(
    api: FakeApi, make_client: ClientFactory, tmp_path: Path, make_status: Callable[[], dict[str, Any]]
) -> None:
    api.add("GET", STATUS_PATH, completed([entry(1, 0), entry(1, 1)]), make_status())
    serve_parts(api, 1, 2)
    api.routes[("GET", url_path(1, 1))] = [(403, {"detail": "expired"})]
    with pytest.raises(DownloadError):
        make_client().download_result(TASK, tmp_path / "r.csv")
    assert files_in(tmp_path) == []


def test_a_hand_built_download_has_one_part(tmp_path: Path) -> None:
    got = ResultDownload(tmp_path / "x.csv", "csv", "local", None, None)
    (part,) = got.all_parts
    assert (part.path, part.format, part.source, part.row_count) == (tmp_path / "x.csv", "csv", "local", None)
