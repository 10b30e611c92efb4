"""Typed results: status normalisation, final result selection, tolerance for missing keys."""

from __future__ import annotations

import pytest
from api_fakes import SIGNED_URL

from sixtyfour_sync.api import (
    JobStatus,
    ResultFile,
    SignedUrl,
    SubmitResult,
    final_result,
    is_terminal_status,
    normalize_status,
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


def test_final_result_ties_last_wins_and_missing_blocks_lose() -> None:
    assert final_result([_entry(2, "first"), _entry(2, "second")]).filename == "second"  # type: ignore[union-attr]
    assert final_result([_entry(None, "x"), _entry(0, "zero")]).filename == "zero"  # type: ignore[union-attr]
    assert final_result([_entry(0, "zero"), _entry(None, "x")]).filename == "zero"  # type: ignore[union-attr]
    assert final_result([]) is None


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
