"""cancel writes job states through the one function the run's driver writes them with (no server)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from sixtyfour_sync.api import ConflictError, NotFoundError
from sixtyfour_sync.engine.jobs.cancel import cancel_job
from sixtyfour_sync.engine.jobs.states import TRANSITIONS, JobState

S = JobState


class FakeLedger:
    def __init__(self) -> None:
        self.moves: list[tuple[str, JobState, JobState, dict[str, Any]]] = []

    def transition(self, job_id: str, old: JobState, new: JobState, *, session: Any = None, **values: Any) -> None:
        assert new in TRANSITIONS[old], f"{old} -> {new} is not a move the state machine allows"
        self.moves.append((job_id, old, new, values))


class FakeApi:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[str] = []
        self.ledger: FakeLedger | None = None

    def cancel(self, task_id: str) -> Any:
        # the job is recorded as cancelling before the API is asked
        assert self.ledger is not None and self.ledger.moves[-1][2] is S.CANCELLING
        self.calls.append(task_id)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def _job(state: JobState, task_id: str | None = "t-1") -> Any:
    return SimpleNamespace(job_id="j-1", task_id=task_id, sync_name="leads", state=state)


@pytest.mark.parametrize(
    ("answer", "last", "says"),
    [
        (SimpleNamespace(status="cancelled"), S.CANCELLED, "cancelled"),
        (ConflictError("already completed"), S.SUBMITTED, "the next run merges it"),
        (NotFoundError("no such task"), S.LOST, "marked lost"),
    ],
)
def test_a_running_job_is_cancelling_before_the_call_and_ends_as_the_api_says(
    answer: Any, last: JobState, says: str
) -> None:
    ledger, api = FakeLedger(), FakeApi(answer)
    api.ledger = ledger
    row = cancel_job(ledger, api, _job(S.SUBMITTED), "cancel-1")  # type: ignore[arg-type]
    assert [(m[1], m[2]) for m in ledger.moves] == [(S.SUBMITTED, S.CANCELLING), (S.CANCELLING, last)]
    assert api.calls == ["t-1"]
    assert says in str(row.get("status") or row.get("error"))
    if last in (S.CANCELLED, S.LOST):  # an ended job names what ended it, as a run's driver stamps it
        assert ledger.moves[-1][3]["finished_by"] == "cancel-1"


def test_a_file_never_sent_is_cancelled_without_a_call_and_a_submission_under_way_is_left() -> None:
    ledger, api = FakeLedger(), FakeApi(None)
    assert cancel_job(ledger, api, _job(S.WRITTEN, None), "c")["status"] == "cancelled"  # type: ignore[arg-type]
    assert ledger.moves[0][1:3] == (S.WRITTEN, S.CANCELLED) and ledger.moves[0][3]["charged_cents"] == 0.0
    row = cancel_job(ledger, api, _job(S.SUBMITTING), "c")  # type: ignore[arg-type]
    assert "may have reached the API" in row["error"] and len(ledger.moves) == 1 and not api.calls
