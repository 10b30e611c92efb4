"""The client against the local emulator over a real socket, with the final output split into several files."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_fakes import FakeClock

from sixtyfour_sync.api import (
    DownloadError,
    ResultDownload,
    RetryPolicy,
    SixtyfourClient,
    SubmissionLimiter,
)

try:
    from sixtyfour_sync.emulator import Emulator, EmulatorSettings
except ImportError:  # pragma: no cover - the emulator ships in the same package
    pytest.skip("the emulator is not importable", allow_module_level=True)

KEY = "live_parts_key_0123456789"
CONFIG: dict[str, Any] = {"struct": {"email": "The email", "title": "The job title"}, "tier": "low"}


class Setup:
    def __init__(self, emu: Any, client: SixtyfourClient, clock: FakeClock, fetched: list[str]) -> None:
        self.emu, self.client, self.clock, self.fetched = emu, client, clock, fetched

    def submit(self, tmp_path: Path, rows: int, key: str) -> str:
        path = tmp_path / f"{key}.jsonl"
        with path.open("w") as fh:
            for i in range(rows):
                fh.write(json.dumps({"lead_id": i, "first_name": f"Ada{i}", "last_name": "L", "domain": "x.io"}) + "\n")
        return self.client.submit("people", path, CONFIG, key).task_id

    def downloads(self) -> list[str]:
        return [p.rsplit("/", 1)[1] for p in self.fetched if p.startswith("/downloads/")]


Start = Callable[..., Setup]


@pytest.fixture
def start() -> Iterator[Start]:
    stack = contextlib.ExitStack()

    def make(**settings: Any) -> Setup:
        settings.setdefault("api_keys", frozenset({KEY}))
        settings.setdefault("job_seconds", 0.0)
        emu = Emulator(EmulatorSettings(**settings))
        stack.callback(emu.close)
        server = stack.enter_context(emu.serve(host="127.0.0.1", port=0))
        fetched: list[str] = []
        http = httpx.Client(
            timeout=10.0,
            follow_redirects=False,
            event_hooks={"request": [lambda request: fetched.append(request.url.path)]},
        )
        stack.callback(http.close)
        clock = FakeClock()
        client = SixtyfourClient(
            KEY,
            base_url=server.url,
            http_client=http,
            retry=RetryPolicy(max_attempts=4, base=0.0, cap=0.0, retry_after_cap=5.0),
            limiter=SubmissionLimiter(clock=clock, sleep=clock.sleep),
            sleep=clock.sleep,
            clock=clock,
        )
        stack.callback(client.close)
        return Setup(emu, client, clock, fetched)

    with stack:
        yield make


def rows_of(got: ResultDownload) -> list[dict[str, Any]]:
    """Every part read and concatenated, as the engine must."""
    rows: list[dict[str, Any]] = []
    for part in got.all_parts:
        text = part.path.read_text(encoding="utf-8-sig")
        if part.format == "csv":
            rows += [{k: v or None for k, v in r.items()} for r in csv.DictReader(io.StringIO(text))]
        else:
            rows += [
                {k: None if v is None else str(v) for k, v in json.loads(line).items()} for line in text.splitlines()
            ]
    return rows


def names(n: int) -> list[str]:
    return ["block_3_enriched.csv", *(f"block_3_enriched.part{i}.csv" for i in range(1, n))]


@pytest.mark.parametrize("parts", [1, 2, 5])
@pytest.mark.parametrize("order", ["in_order", "reversed", "shuffled"])
def test_every_part_downloaded_and_concatenated(start: Start, tmp_path: Path, parts: int, order: str) -> None:
    one = start(preview_max_rows=0)
    split = start(preview_max_rows=0, result_parts=parts, result_parts_order=order)
    whole = one.client.download_result(one.submit(tmp_path, 12, "whole"), tmp_path / "whole" / "r.csv")
    got = split.client.download_result(split.submit(tmp_path, 12, "split"), tmp_path / "split" / "r.csv")
    assert [p.filename for p in got.all_parts] == names(parts)
    assert [p.path.name for p in got.all_parts] == ["r.csv", *(f"r.csv.part{i}" for i in range(1, parts))]
    assert got.row_count == 12 and got.block_number == 3 and got.format == "csv"
    assert rows_of(got) == rows_of(whole) and len(rows_of(got)) == 12
    assert sorted(split.downloads()) == sorted(names(parts))  # each part once
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == sorted(p.path.name for p in got.all_parts)


def test_header_only_parts(start: Start, tmp_path: Path) -> None:
    s = start(preview_max_rows=0, result_parts=5)
    got = s.client.download_result(s.submit(tmp_path, 2, "few"), tmp_path / "r.csv")
    assert [p.row_count for p in got.all_parts] == [1, 1, 0, 0, 0]
    assert len(rows_of(got)) == 2
    assert all(p.path.read_text(encoding="utf-8-sig").count("\n") == 1 for p in got.all_parts[2:])


def test_inline_previews_per_part(start: Start, tmp_path: Path) -> None:
    s = start(result_parts=3, result_parts_order="reversed")
    reference = start(preview_max_rows=0)
    got = s.client.download_result(s.submit(tmp_path, 4, "inline"), tmp_path / "r.jsonl")
    whole = reference.client.download_result(reference.submit(tmp_path, 4, "ref"), tmp_path / "ref.csv")
    assert [(p.source, p.format, p.row_count) for p in got.all_parts] == [
        ("inline", "jsonl", 2),
        ("inline", "jsonl", 1),
        ("inline", "jsonl", 1),
    ]
    assert s.downloads() == []
    assert [r["lead_id"] for r in rows_of(got)] == [r["lead_id"] for r in rows_of(whole)]


def test_one_refused_part_is_fetched_again_alone(
    start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = start(preview_max_rows=0, result_parts=3, result_parts_order="shuffled")
    task_id = s.submit(tmp_path, 9, "expired")
    s.emu.inject("GET", f"/downloads/{task_id}/block_3_enriched.part1.csv", 403)
    caplog.set_level(logging.INFO, logger="sixtyfour_sync.api")
    got = s.client.download_result(task_id, tmp_path / "r.csv")
    assert sorted(s.downloads()) == sorted([*names(3), "block_3_enriched.part1.csv"])
    assert [p for p in s.fetched if p.startswith("/job-status/")] == [f"/job-status/{task_id}"] * 2
    assert "file 2 of 3 (block_3_enriched.part1.csv)" in caplog.text and "(1 of 3)" in caplog.text
    assert len(rows_of(got)) == 9


def test_links_expired_between_polls_are_refreshed(start: Start, tmp_path: Path) -> None:
    s = start(preview_max_rows=0, result_parts=3)
    task_id = s.submit(tmp_path, 9, "expire")
    status = s.client.job_status(task_id)
    s.emu.expire_links(task_id)
    got = s.client.download_result(status, tmp_path / "r.csv")
    # The first part's link is refused, the poll renews every link: the others are fetched once, from it.
    assert s.downloads() == [names(3)[0], *names(3)]
    assert len(rows_of(got)) == 9


def test_a_truncated_part_is_retried(start: Start, tmp_path: Path) -> None:
    s = start(preview_max_rows=0, result_parts=3)
    task_id = s.submit(tmp_path, 30, "trunc")
    s.emu.inject("GET", f"/downloads/{task_id}/block_3_enriched.part2.csv", truncate=True)
    got = s.client.download_result(task_id, tmp_path / "out" / "r.csv")
    assert s.downloads().count("block_3_enriched.part2.csv") == 2 and len(s.clock.sleeps) == 1
    assert len(rows_of(got)) == 30
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["r.csv", "r.csv.part1", "r.csv.part2"]


def test_a_corrupted_part_is_downloaded_as_served(start: Start, tmp_path: Path) -> None:
    s = start(preview_max_rows=0, result_parts=2)
    task_id = s.submit(tmp_path, 4, "corrupt")
    s.emu.corrupt_result(task_id, b"\x00not a csv", part=1)
    got = s.client.download_result(task_id, tmp_path / "r.csv")
    assert got.all_parts[1].path.read_bytes() == b"\x00not a csv"  # reading it is the caller's job


def test_a_failure_mid_way_leaves_no_files(start: Start, tmp_path: Path) -> None:
    s = start(preview_max_rows=0, result_parts=4)
    task_id = s.submit(tmp_path, 8, "fail")
    s.emu.inject("GET", f"/downloads/{task_id}/block_3_enriched.part2.csv", 400)
    out = tmp_path / "out"
    with pytest.raises(DownloadError, match="HTTP 400") as exc:
        s.client.download_result(task_id, out / "r.csv")
    assert "signature" not in str(exc.value) and KEY not in str(exc.value)
    assert list(out.iterdir()) == []


def test_a_job_split_after_the_first_poll_starts_over(start: Start, tmp_path: Path) -> None:
    s = start(preview_max_rows=0)
    task_id = s.submit(tmp_path, 6, "resplit")
    status = s.client.job_status(task_id)  # one file
    s.emu.split_result(task_id, 3)  # its old file is rewritten, its link now refused
    s.emu.expire_links(task_id)
    got = s.client.download_result(status, tmp_path / "r.csv")
    assert [p.filename for p in got.all_parts] == names(3)
    assert len(rows_of(got)) == 6
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".jsonl")) == [
        "r.csv",
        "r.csv.part1",
        "r.csv.part2",
    ]
