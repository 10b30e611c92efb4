"""Typed results: status normalisation, final result selection, tolerance for missing keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_fakes import SIGNED_URL

from sixtyfour_sync.api import (
    JobStatus,
    ResultDownload,
    ResultFile,
    ResultPart,
    SignedUrl,
    SubmitResult,
    final_result,
    final_results,
    is_terminal_status,
    normalize_status,
    part_number,
)
from sixtyfour_sync.api.models import Balance, CancelResult, LiveStatus


@pytest.mark.parametrize(
    "status", ["completed", "COMPLETED", "Failed", "cancelled", "canceled", "terminated", "TIMED_OUT"]
)
def test_terminal_statuses(status: str) -> None:
    assert is_terminal_status(status)


@pytest.mark.parametrize("status", ["running", "RUNNING", "continued_as_new", "queued", "weird", "", None, 7])
def test_everything_else_is_running(status: object) -> None:
    assert not is_terminal_status(status)


def test_normalize() -> None:
    assert normalize_status(" Completed ") == "completed"
    assert normalize_status(None) == "running"


def _entry(block: int | None, name: str) -> ResultFile:
    return ResultFile(filename=name, block_number=block)


def test_final_result_highest_block_whatever_the_order() -> None:
    entries = [_entry(3, "final"), _entry(1, "a"), _entry(None, "none"), _entry(2, "b")]
    assert final_result(entries).filename == "final"  # type: ignore[union-attr]
    assert final_result(list(reversed(entries))).filename == "final"  # type: ignore[union-attr]


def test_final_result_is_the_first_part_and_missing_blocks_lose() -> None:
    # Several entries of the highest block are parts of one output: final_result is the first of them.
    assert final_result([_entry(2, "second"), _entry(2, "first")]).filename == "first"  # type: ignore[union-attr]
    assert final_result([_entry(None, "x"), _entry(0, "zero")]).filename == "zero"  # type: ignore[union-attr]
    assert final_result([_entry(0, "zero"), _entry(None, "x")]).filename == "zero"  # type: ignore[union-attr]
    assert final_result([]) is None


def _names(entries: list[ResultFile]) -> list[str | None]:
    return [e.filename for e in entries]


@pytest.mark.parametrize(
    "names",
    [
        ["output", "output.part1", "output.part2", "output.part10"],
        ["block_3_enriched.csv", "block_3_enriched.part1.csv", "block_3_enriched.part2.csv"],
        ["part-00000.csv", "part-00001.csv", "part-00002.csv", "part-00011.csv"],
        ["result.csv", "result_part_1.csv", "result_part_2.csv", "result_part_12.csv"],
        ["out.part1.csv.gz", "out.part2.csv.gz", "out.part3.csv.gz"],
    ],
    ids=["dot-part", "dot-part-ext", "spark", "underscore", "compressed"],
)
def test_final_results_are_the_parts_in_numeric_order_whatever_the_listing(names: list[str]) -> None:
    stages = [_entry(1, "input.csv"), _entry(2, "research.csv")]
    parts = [_entry(3, n) for n in names]
    for listing in (
        [*stages, *parts],
        [*parts[::-1], *stages],
        [parts[1], stages[1], *parts[2:], stages[0], parts[0]],
    ):
        assert _names(final_results(listing)) == names
        assert final_result(listing).filename == names[0]  # type: ignore[union-attr]


def test_part_numbers() -> None:
    assert [part_number(n) for n in ("output", "output.part1", "output.part12", "X.part3.csv")] == [0, 1, 12, 3]
    assert [part_number(n) for n in ("part-00000.csv", "part-00007.csv", "a_part_2.csv", "a-part4")] == [0, 7, 2, 4]
    # Not part markers: a word containing "part", digits followed by more than extensions, no digits.
    assert [part_number(n) for n in ("departments.csv", "part2024summary.csv", "x.part.csv", None, "")] == [0] * 5
    assert part_number("part1.part2.csv") == 2  # the last marker counts
    assert part_number("OUT.PART3.CSV") == 3


def test_final_results_without_part_numbers_keep_a_stable_order() -> None:
    a, b, c = _entry(5, "b.csv"), _entry(5, "a.csv"), _entry(5, "c.csv")
    assert _names(final_results([a, b, c])) == ["a.csv", "b.csv", "c.csv"]
    assert _names(final_results([c, a, b])) == ["a.csv", "b.csv", "c.csv"]
    # Without names: list position.
    first, second = ResultFile(block_number=5, row_count=1), ResultFile(block_number=5, row_count=2)
    assert final_results([first, second]) == [first, second]
    assert final_results([_entry(4, "x"), first, second])[0] is first
    # Entries without a block number count only when none has one.
    assert _names(final_results([_entry(None, "n.csv"), _entry(1, "one.csv")])) == ["one.csv"]
    assert _names(final_results([_entry(None, "n.part1"), _entry(None, "n")])) == ["n", "n.part1"]
    assert final_results([]) == []


def test_job_status_final_results() -> None:
    raw = {
        "status": "completed",
        "results": [
            {"filename": "out.part1.csv", "block_number": 3, "row_count": 2},
            {"filename": "stage.csv", "block_number": 2},
            {"filename": "out.csv", "block_number": 3, "row_count": 3},
        ],
    }
    status = JobStatus.from_api(raw, task_id="t1")
    assert _names(status.final_results) == ["out.csv", "out.part1.csv"]
    assert status.final_result is not None and status.final_result.filename == "out.csv"


def test_result_download_parts(tmp_path: Path) -> None:
    single = ResultDownload(tmp_path / "r.csv", "csv", "download", 4, 3)
    assert single.parts == ()
    assert single.all_parts == (ResultPart(tmp_path / "r.csv", "csv", "download", 4, None),)
    parts = [
        ResultPart(tmp_path / "r.csv", "jsonl", "inline", 2, "out.csv"),
        ResultPart(tmp_path / "r.csv.part1", "csv", "download", 3, "out.part1.csv"),
    ]
    both = ResultDownload.from_parts(parts, 3)
    assert (both.path, both.format, both.source, both.row_count, both.block_number) == (
        tmp_path / "r.csv",
        "jsonl",
        "inline",
        5,
        3,
    )
    assert both.all_parts == tuple(parts)
    unknown = ResultDownload.from_parts([parts[0], ResultPart(tmp_path / "x", "csv", "download", None)], 3)
    assert unknown.row_count is None
    with pytest.raises(ValueError, match="at least one part"):
        ResultDownload.from_parts([], 3)


def test_job_status_completed_parses_everything() -> None:
    raw = {
        "id": "t1",
        "run_id": "r1",
        "status": "COMPLETED",
        "charge_amount": 250,
        "results": [
            {
                "filename": "final.csv",
                "download_url": SIGNED_URL,
                "block_number": "2",
                "row_count": 10,
                "file_size": 1234,
                "content_type": "text/csv",
                "created_at": "2026-01-01T00:00:00Z",
                "download_expires_in_seconds": 900,
                "results": [{"a": 1}],
            },
            {"filename": "stage.csv", "block_number": 1, "download_url": None},
            "not-an-entry",
        ],
    }
    status = JobStatus.from_api(raw, task_id="t1")
    assert status.is_terminal and status.is_completed and not status.is_failed
    assert status.charge_amount_cents == 250
    assert len(status.results) == 2
    final = status.final_result
    assert final is not None
    assert final.block_number == 2 and final.expires_in == 900 and final.preview_rows == [{"a": 1}]
    assert status.results[1].download_url is None


def test_job_status_tolerates_missing_keys() -> None:
    status = JobStatus.from_api({}, task_id="t9")
    assert status.task_id == "t9" and status.status == "running" and not status.is_terminal
    assert status.results == [] and status.charge_amount_cents is None and status.error is None
    failed = JobStatus.from_api({"status": "failed", "error": "boom", "charge_credits": 1.5}, task_id="t")
    assert failed.is_failed and failed.error == "boom" and failed.charge_credits == 1.5


def test_signed_url_never_prints_its_signature() -> None:
    url = SignedUrl(SIGNED_URL)
    entry = ResultFile.from_api({"download_url": SIGNED_URL})
    for text in (str(url), repr(url), repr(entry), str(entry)):
        assert "SIGNATURE" not in text
    assert url.get() == SIGNED_URL


def test_submit_result_and_replay_recognition() -> None:
    fresh = SubmitResult.from_api({"task_id": "t", "status": "RUNNING", "row_count": 5, "estimated_cost_cents": 10})
    assert not fresh.is_replay and fresh.status == "running" and fresh.row_count == 5
    flagged = SubmitResult.from_api({"task_id": "t", "status": "RUNNING", "already_started": True})
    assert flagged.is_replay and flagged.row_count is None
    unflagged = SubmitResult.from_api({"task_id": "t", "status": "RUNNING"})
    assert unflagged.is_replay
    credits = SubmitResult.from_api({"task_id": "t", "row_count": 5, "estimated_cost_credits": 0.1})
    assert credits.estimated_cost_credits == 0.1 and credits.estimated_cost_cents is None


def test_small_models() -> None:
    live = LiveStatus.from_api(
        {
            "overall_status": "RUNNING",
            "overall_progress_percentage": 42.5,
            "blocks": [{"name": "enrich", "processed_count": 4, "total_count": 10}, "junk"],
        },
        task_id="t",
    )
    assert live.overall_status == "running" and live.progress_percentage == 42.5
    assert live.blocks[0].processed_count == 4 and len(live.blocks) == 1
    assert Balance.from_api({"credits": 12.5}).credits == 12.5
    assert Balance.from_api({}).credits is None
    cancel = CancelResult.from_api({"job_id": "t", "status": "canceled"}, task_id="t")
    assert cancel.status == "canceled" and cancel.job_id == "t"
