"""The job driver, the one writer of job states, against a fake ledger, API and scheduler: no server, no thread.

Every ledger write, API call and scheduled call goes into one list in the order it happened, so a test reads
the order off it: a move is recorded before the call that follows it, a replay is booked at $0, a move the
state machine forbids is refused before anything changes, and each move names the run that saw it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sixtyfour_sync.api import JobStatus, NotFoundError, SubmitResult
from sixtyfour_sync.api.errors import BadRequestError, DownloadError
from sixtyfour_sync.config.models import SyncSpec
from sixtyfour_sync.engine.events import ApiAnswer, Call
from sixtyfour_sync.engine.jobs.driver import JobDriver, Tracked
from sixtyfour_sync.engine.jobs.states import (
    HELD,
    TERMINAL,
    TRANSITIONS,
    IllegalTransitionError,
    JobState,
    check_transition,
)
from sixtyfour_sync.engine.ledger.store import Job, LedgerConflictError
from sixtyfour_sync.engine.summary import JobOutcome, SyncResult

S = JobState
RUN = "run-now"

# ------------------------------------------------------------------ fakes


class FakeLedger:
    """Job rows in a dict; a move is a compare-and-set checked against the state machine, as the real one."""

    def __init__(self, log: list[tuple[Any, ...]], earlier: dict[str, Job] | None = None) -> None:
        self.log = log
        self.states: dict[str, JobState] = {}
        self.moves: list[tuple[str, JobState, JobState, dict[str, Any]]] = []
        self.by_task = dict(earlier or {})
        self.prices: list[float] = []

    def transition(self, job_id: str, expected: JobState, new: JobState, *, session: Any = None, **values: Any):
        check_transition(expected, new)
        if self.states.get(job_id) is not expected:
            raise LedgerConflictError(f"job {job_id} is not {expected.value}")
        self.states[job_id] = new
        self.moves.append((job_id, expected, new, dict(values)))
        self.log.append(("ledger", new.value))

    def annotate(self, job_id: str, state: JobState, *, session: Any = None, **values: Any) -> None:
        assert self.states.get(job_id) is state
        self.log.append(("annotate", state.value))

    def discard_job(self, job_id: str, expected: JobState) -> bool:
        self.log.append(("discard", expected.value))
        return self.states.pop(job_id, None) is expected

    def job_by_task(self, task_id: str) -> Job | None:
        return self.by_task.get(task_id)

    def learn_price(self, endpoint: str, tier: str, price: float, **_: Any) -> None:
        self.prices.append(price)

    def values(self, new: JobState) -> dict[str, Any]:
        """What was recorded with the (last) move to ``new``."""
        return [v for _, _, n, v in self.moves if n is new][-1]


#: How the log names the call each answer is to (as the driver's handlers are named).
ANSWERED = {Call.SUBMIT: "submitted", Call.POLL: "polled", Call.DOWNLOAD: "downloaded", Call.CANCEL: "cancelled"}


class FakeScheduler:
    """Keeps each call instead of running it on a worker; the test runs it when it likes."""

    def __init__(self, log: list[tuple[Any, ...]]) -> None:
        self.log = log
        self.calls: list[tuple[Call, Tracked, Callable[[], Any]]] = []

    def call(self, call: Call, subject: Tracked, fn: Callable[[], Any]) -> None:
        self.log.append(("schedule", ANSWERED[call]))
        self.calls.append((call, subject, fn))

    def run_last(self, driver: JobDriver) -> None:
        """Make the last scheduled call and hand its answer (or its exception) to the driver."""
        what, t, fn = self.calls.pop()
        try:
            value = fn()
        except Exception as exc:  # an answer, as the real scheduler hands it back
            value = exc
        driver.handle(ApiAnswer(what, t, value))


class FakeClient:
    def __init__(self, log: list[tuple[Any, ...]]) -> None:
        self.log = log
        self.submit_answer: SubmitResult | BaseException = _accepted("task-1")
        self.status_answer: JobStatus | BaseException = _status("task-1")
        self.download_error = DownloadError("the link expired")

    def submit(self, endpoint: str, path: Path, config: Any, key: str, *, validate: bool) -> SubmitResult:
        self.log.append(("api", "submit", key))
        if isinstance(self.submit_answer, BaseException):
            raise self.submit_answer
        return self.submit_answer

    def job_status(self, task_id: str) -> JobStatus:
        self.log.append(("api", "job_status", task_id))
        if isinstance(self.status_answer, BaseException):
            raise self.status_answer
        return self.status_answer

    def download_result(self, source: Any, dest: Path) -> Any:
        self.log.append(("api", "download"))
        raise self.download_error

    def cancel(self, task_id: str) -> None:
        self.log.append(("api", "cancel", task_id))


class FakeHost:
    def __init__(self, log: list[tuple[Any, ...]]) -> None:
        self.log = log
        self.price: float | None = None
        self.spent = 0.0
        self.stopped: list[str] = []

    def spend(self, cents: float) -> None:
        self.spent += cents

    def release_slot(self) -> None:
        self.log.append(("host", "release_slot"))

    def stop_sync(self, status: str, message: str) -> None:
        self.stopped.append(status)

    def answered(self, price: float | None) -> None:
        self.log.append(("host", "answered"))


def _accepted(task: str, *, replay: bool = False, cents: int | None = 300) -> SubmitResult:
    return SubmitResult(
        task_id=task,
        status="queued",
        row_count=None if replay else 3,
        estimated_cost_cents=None if replay else cents,
        estimated_cost_credits=None,
        already_started=replay,
        raw={},
    )


def _status(task: str, status: str = "completed", cents: int | None = 275) -> JobStatus:
    done = status == "completed"
    return JobStatus(
        task_id=task,
        status=status,
        is_terminal=status in ("completed", "failed", "cancelled"),
        is_completed=done,
        results=[],
        charge_amount_cents=cents if done else None,
        charge_credits=None,
        error=None if done else "it broke",
        raw={},
    )


SPEC = SyncSpec.model_validate(
    {"name": "s", "endpoint": "people", "source": {"table": "t", "key": "id"}, "struct": {"email": "Email"},
     "target": {"table": "x"}}
)  # fmt: skip


class World:
    """A driver over the fakes, with one shared log of everything in order."""

    def __init__(self, tmp_path: Path, *, earlier: dict[str, Job] | None = None, run_id: str = RUN) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.ledger = FakeLedger(self.log, earlier)
        self.scheduler = FakeScheduler(self.log)
        self.client = FakeClient(self.log)
        self.host = FakeHost(self.log)
        self.result = SyncResult("s")
        self.notes: list[str] = []
        self.ctx = SimpleNamespace(
            run_id=run_id,
            name="s",
            ledger=self.ledger,
            scheduler=self.scheduler,
            client=self.client,
            result=self.result,
            lease=None,
            spec=SPEC,
            api_config={},
            recorder=SimpleNamespace(ensure=lambda: self.log.append(("recorder", "ensure"))),
            settings=SimpleNamespace(poll_interval=0.0, no_wait=False, submit_retry_seconds=900.0),
            reporter=SimpleNamespace(on=lambda *a, **k: None),
            results_dir=tmp_path,
            key_types={},
            adapter=SimpleNamespace(dialect=SimpleNamespace(enforces_primary_key=False)),
            note=lambda message, level="info": self.notes.append(message),
            question=None,
        )
        self.driver = JobDriver(self.ctx, self.host)  # type: ignore[arg-type]
        self.merged: list[tuple[JobState, dict[str, Any]]] = []
        # The merge is the merger's (tests/engine/results/test_merger_units.py): here, what the driver hands it.
        self.driver.merger = SimpleNamespace(add=lambda t, got, plan: self.merged.append((t.state, dict(t.extra))))
        self.tmp = tmp_path

    def job(self, state: JobState = S.WRITTEN, *, job_id: str = "job-1", run_id: str = RUN, **kw: Any) -> Tracked:
        job = Job(
            job_id=job_id, run_id=run_id, sync_name="s", state=state, spec_hash="h", content_hash="c",
            idempotency_key=f"key-{job_id}", file_name=f"{job_id}.jsonl", rows=3,
        )  # fmt: skip
        self.ledger.states[job_id] = state
        file = self.tmp / f"{job_id}.jsonl"
        file.write_text('{"id": 1}\n')
        outcome = JobOutcome(job_id, job.file_name, 3, state.value)
        return self.driver.track(Tracked(job=job, state=state, outcome=outcome, file=file, **kw))

    def index(self, entry: tuple[Any, ...]) -> int:
        return self.log.index(entry)


def _submit_and_answer(w: World, t: Tracked) -> None:
    w.driver.submit(t)
    w.scheduler.run_last(w.driver)


def _poll(w: World, t: Tracked, answer: JobStatus | BaseException) -> None:
    """The poll that is due is made, and the API answers ``answer``."""
    assert t.action == "poll"
    w.client.status_answer = answer
    w.driver.dispatch_due(float("inf"), stopping=False)
    w.scheduler.run_last(w.driver)


# ------------------------------------------------------------------ each move before the call that follows it


def test_submitting_is_recorded_before_the_file_is_sent(tmp_path: Path) -> None:
    w = World(tmp_path)
    t = w.job()
    w.driver.submit(t)
    assert w.ledger.states["job-1"] is S.SUBMITTING and t.state is S.SUBMITTING
    assert ("api", "submit", "key-job-1") not in w.log  # only scheduled so far
    w.scheduler.run_last(w.driver)
    sent = w.index(("api", "submit", "key-job-1"))
    assert w.index(("ledger", "submitting")) < w.index(("schedule", "submitted")) < sent
    # The answer is recorded before the job is polled.
    assert sent < w.index(("ledger", "submitted"))
    assert t.state is S.SUBMITTED and t.action == "poll"
    submitted = w.ledger.values(S.SUBMITTED)
    assert submitted["task_id"] == "task-1" and submitted["estimated_cost_cents"] == 300.0
    assert submitted["replay"] == 0 and submitted["replay_of"] is None
    assert w.result.rows_sent == 3 and w.result.estimated_cost_cents == 300.0


def test_a_job_resent_while_submitting_is_not_moved_again(tmp_path: Path) -> None:
    """A retry (429, 5xx, a run that died while sending) keeps `submitting`: the same key goes out again."""
    w = World(tmp_path)
    t = w.job(S.SUBMITTING, resumed=True)
    w.driver.submit(t)
    assert w.ledger.moves == [] and w.log == [("schedule", "submitted")]


def test_cancelling_is_recorded_before_the_cancel_is_asked(tmp_path: Path) -> None:
    w = World(tmp_path)
    t = w.job()
    _submit_and_answer(w, t)
    w.driver.cancel(t)
    w.scheduler.run_last(w.driver)
    assert w.index(("ledger", "cancelling")) < w.index(("schedule", "cancelled")) < w.index(("api", "cancel", "task-1"))
    assert t.state is S.CANCELLING and t.action == "poll"  # polling tells how it ended


def test_a_completed_job_holds_its_charge_until_the_merge_records_it(tmp_path: Path) -> None:
    """`completed` and its charge are written in the merge's transaction (one commit less per file): until
    then the ledger says `submitted`, so a run that stops in between polls the job again and finds it done."""
    w = World(tmp_path)
    t = w.job()
    _submit_and_answer(w, t)
    _poll(w, t, _status("task-1", cents=275))
    assert w.ledger.states["job-1"] is S.SUBMITTED
    assert t.extra["completed"] == {"api_status": "completed", "charged_cents": 275.0, "api_charge_cents": 275.0}
    assert w.log[-1] == ("schedule", "downloaded") and w.result.charged_cents == 275.0
    # What the merge writes first, in its transaction: `completed` with the charge, stamped with this run.
    w.driver.record_completed(t, session="the merge's transaction")
    assert w.ledger.values(S.COMPLETED) == {
        "api_status": "completed", "charged_cents": 275.0, "api_charge_cents": 275.0, "charged_by": RUN
    }  # fmt: skip
    w.driver.record_completed(t)  # recorded once
    assert [n for _, _, n, _ in w.ledger.moves].count(S.COMPLETED) == 1


def test_a_failed_download_records_completed_and_its_charge_before_downloading_again(tmp_path: Path) -> None:
    w = World(tmp_path)
    t = w.job()
    _submit_and_answer(w, t)
    _poll(w, t, _status("task-1", cents=275))
    w.scheduler.run_last(w.driver)  # the download fails (the fake client raises DownloadError)
    assert w.ledger.states["job-1"] is S.COMPLETED and w.ledger.values(S.COMPLETED)["charged_cents"] == 275.0
    assert w.index(("api", "download")) < w.index(("ledger", "completed"))
    assert t.action == "download" and t.downloads == 1  # tried again later in the run
    w.driver.dispatch_due(float("inf"), stopping=False)
    w.scheduler.run_last(w.driver)
    w.driver.dispatch_due(float("inf"), stopping=False)
    w.scheduler.run_last(w.driver)
    # After three tries the job stays paid and `completed`, with the error, for the next run.
    assert t.downloads == 3 and t.action is None and w.ledger.states["job-1"] is S.COMPLETED
    assert w.log[-1] == ("annotate", "completed") and w.result.status == "partial"


def test_a_downloaded_result_goes_to_the_merge_with_the_charge_still_to_record(tmp_path: Path) -> None:
    w = World(tmp_path)
    t = w.job()
    _submit_and_answer(w, t)
    _poll(w, t, _status("task-1", cents=275))
    got, plan = object(), object()
    w.driver.handle(ApiAnswer(Call.DOWNLOAD, t, (got, plan)))
    [(state, extra)] = w.merged
    assert state is S.SUBMITTED and extra["completed"]["charged_cents"] == 275.0


def test_a_job_that_ended_badly_is_recorded_at_no_charge(tmp_path: Path) -> None:
    w = World(tmp_path)
    t = w.job()
    _submit_and_answer(w, t)
    _poll(w, t, _status("task-1", status="failed"))
    assert t.state is S.FAILED and w.ledger.values(S.FAILED)["charged_cents"] == 0.0
    assert w.ledger.values(S.FAILED)["finished_by"] == RUN and t.action is None
    assert w.result.status == "partial"


# ------------------------------------------------------------------ replays


def test_a_replay_of_an_earlier_job_is_booked_as_a_replay_at_no_charge(tmp_path: Path) -> None:
    earlier = Job("job-0", "run-before", "s", S.MERGED, "h", "c", "key-job-0", "job-0.jsonl", 3, task_id="task-0")
    w = World(tmp_path, earlier={"task-0": earlier})
    t = w.job(reserved=150.0)
    w.host.spent = 150.0
    w.client.submit_answer = _accepted("task-0", replay=True)
    _submit_and_answer(w, t)
    submitted = w.ledger.values(S.SUBMITTED)
    assert submitted["replay"] == 1 and submitted["replay_of"] == "job-0"
    assert submitted["estimated_cost_cents"] == 0.0 and submitted["task_id"] == "task-0"
    assert w.host.spent == 0.0  # what was held for the file is given back: the earlier job paid
    assert w.result.replays == 1 and w.result.estimated_cost_cents == 0.0 and w.ledger.prices == []
    # The API reports the original task's charge; this job's is $0.
    _poll(w, t, _status("task-0", cents=275))
    assert t.extra["completed"]["charged_cents"] == 0.0 and t.extra["completed"]["api_charge_cents"] == 275.0
    w.driver.record_completed(t)
    assert w.ledger.values(S.COMPLETED)["charged_cents"] == 0.0 and w.result.charged_cents == 0.0
    assert t.outcome.replay and t.outcome.replay_of == "job-0" and t.outcome.charged_cents == 0.0


def test_a_replay_of_another_ledgers_job_is_free_too(tmp_path: Path) -> None:
    """Dev and prod asked the same rows: the task is not in this ledger, and this was the file's first try."""
    w = World(tmp_path)
    t = w.job()
    w.client.submit_answer = _accepted("task-elsewhere", replay=True)
    _submit_and_answer(w, t)
    submitted = w.ledger.values(S.SUBMITTED)
    assert submitted["replay"] == 1 and submitted["replay_of"] is None and submitted["estimated_cost_cents"] == 0.0


def test_a_replay_of_the_jobs_own_earlier_try_is_paid_by_this_job(tmp_path: Path) -> None:
    """A retry after a timeout may answer this file's own first upload: not a replay, this job pays."""
    w = World(tmp_path)
    t = w.job(attempts=1)  # one try already went out (its answer was lost)
    w.host.price = 100.0
    w.client.submit_answer = _accepted("task-mine", replay=True)
    _submit_and_answer(w, t)
    submitted = w.ledger.values(S.SUBMITTED)
    assert submitted["replay"] == 0 and submitted["replay_of"] is None
    assert submitted["estimated_cost_cents"] == 300.0  # the known price times its 3 rows
    _poll(w, t, _status("task-mine", cents=275))
    assert t.extra["completed"]["charged_cents"] == 275.0


# ------------------------------------------------------------------ never backwards, never a skipped state

ALLOWED = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
REFUSED = [p for p in itertools.product(JobState, JobState) if p not in ALLOWED]


@pytest.mark.parametrize(("a", "b"), REFUSED, ids=lambda s: s.value)
def test_the_driver_cannot_make_a_move_the_state_machine_forbids(tmp_path: Path, a: JobState, b: JobState) -> None:
    w = World(tmp_path)
    t = w.job(a)
    with pytest.raises(IllegalTransitionError):
        w.driver.move(t, b)
    assert t.state is a and t.outcome.state == a.value and w.ledger.states["job-1"] is a and w.ledger.moves == []


def test_a_lost_race_leaves_the_job_as_the_ledger_has_it(tmp_path: Path) -> None:
    """Another run (or `cancel`) moved the job first: the compare-and-set fails and the driver does not adopt."""
    w = World(tmp_path)
    t = w.job(S.SUBMITTED)
    w.ledger.states["job-1"] = S.CANCELLED
    with pytest.raises(LedgerConflictError):
        w.driver.move(t, S.COMPLETED)
    assert t.state is S.SUBMITTED


def _chain(w: World) -> list[JobState]:
    """The states the ledger went through, checking that each move starts where the last one ended."""
    path = [w.ledger.moves[0][1]]
    for _, expected, new, _ in w.ledger.moves:
        assert expected is path[-1], f"a move from {expected.value} after reaching {path[-1].value}"
        assert (expected, new) in ALLOWED
        path.append(new)
    return path


def test_a_whole_life_moves_only_forward_and_one_step_at_a_time(tmp_path: Path) -> None:
    w = World(tmp_path)
    t = w.job()
    _submit_and_answer(w, t)
    _poll(w, t, _status("task-1", status="running"))  # still running: no move
    _poll(w, t, _status("task-1"))
    w.scheduler.run_last(w.driver)  # the download fails once
    w.driver.move(t, S.DOWNLOADED, result_file="job-1.jsonl", result_format="jsonl")
    w.driver.move(t, S.MERGED)
    assert _chain(w) == [S.WRITTEN, S.SUBMITTING, S.SUBMITTED, S.COMPLETED, S.DOWNLOADED, S.MERGED]
    with pytest.raises(IllegalTransitionError):  # merged is final
        w.driver.move(t, S.SUBMITTED)


def test_a_lost_job_found_again_and_an_unreadable_result_follow_the_machine(tmp_path: Path) -> None:
    w = World(tmp_path)
    t = w.job()
    _submit_and_answer(w, t)
    _poll(w, t, NotFoundError("404", status_code=404))
    assert t.state is S.LOST and w.result.status == "partial"
    assert t.action is None  # held: not polled again in this run
    t.action = "poll"  # a later run with --retry-lost looks again
    _poll(w, t, _status("task-1", status="running"))  # found again
    assert t.state is S.SUBMITTED
    _poll(w, t, _status("task-1"))
    from sixtyfour_sync.api import ResultDownload
    from sixtyfour_sync.engine.jobs.driver import Unreadable
    from sixtyfour_sync.engine.results.parse import ResultParseError

    got = ResultDownload(tmp_path / "job-1.result", "jsonl", "download", 3, None)
    broken = Unreadable(got, ResultParseError("not valid JSON"))
    w.driver.handle(ApiAnswer(Call.DOWNLOAD, t, broken))  # read once more first
    assert t.state is S.COMPLETED and w.log[-1] == ("schedule", "downloaded")
    w.driver.handle(ApiAnswer(Call.DOWNLOAD, t, broken))  # still broken: held
    assert t.state is S.RESULT_UNREADABLE
    assert _chain(w) == [
        S.WRITTEN, S.SUBMITTING, S.SUBMITTED, S.LOST, S.SUBMITTED, S.COMPLETED, S.DOWNLOADED, S.COMPLETED,
        S.DOWNLOADED, S.RESULT_UNREADABLE,
    ]  # fmt: skip


# ------------------------------------------------------------------ who saw the move


def test_charged_by_and_finished_by_name_the_run_that_recorded_the_move(tmp_path: Path) -> None:
    """A job an earlier run created, finished by this one: the charge and the end are this run's."""
    w = World(tmp_path, run_id="run-later")
    t = w.job(S.SUBMITTED, run_id="run-earlier", resumed=True, task_id="task-1")
    t.extra["completed"] = {"api_status": "completed", "charged_cents": 275.0, "api_charge_cents": 275.0}
    w.driver.record_completed(t)
    w.driver.move(t, S.DOWNLOADED)
    w.driver.move(t, S.MERGED)
    assert w.ledger.values(S.COMPLETED)["charged_by"] == "run-later"
    assert "finished_by" not in w.ledger.values(S.COMPLETED)
    assert w.ledger.values(S.DOWNLOADED) == {}  # neither a charge nor an end
    assert w.ledger.values(S.MERGED) == {"finished_by": "run-later"}


@pytest.mark.parametrize("new", sorted(TERMINAL | HELD, key=lambda s: s.value), ids=lambda s: s.value)
def test_every_move_that_ends_or_holds_a_job_names_the_run(tmp_path: Path, new: JobState) -> None:
    source = next(a for a, b in sorted(ALLOWED, key=lambda p: (p[0].value, p[1].value)) if b is new)
    w = World(tmp_path, run_id="run-x")
    t = w.job(source)
    w.driver.move(t, new, error="why")
    values = w.ledger.values(new)
    assert values["finished_by"] == "run-x" and "charged_by" not in values and values["error"] == "why"


def test_moves_in_progress_name_no_run(tmp_path: Path) -> None:
    w = World(tmp_path)
    t = w.job()
    _submit_and_answer(w, t)
    w.driver.cancel(t)
    for _, _, new, values in w.ledger.moves:
        assert new not in TERMINAL | HELD | {S.COMPLETED}
        assert "charged_by" not in values and "finished_by" not in values


def test_a_file_refused_before_anything_was_accepted_leaves_no_trace(tmp_path: Path) -> None:
    """Nothing was charged and nothing was accepted yet in this run: the job row is deleted, not moved."""
    w = World(tmp_path)
    t = w.job()
    w.client.submit_answer = BadRequestError("bad config", status_code=400)
    _submit_and_answer(w, t)
    assert ("discard", "submitting") in w.log and "job-1" not in w.ledger.states
    assert t.state is S.REJECTED and w.host.stopped == ["failed"]
    assert [n for _, _, n, _ in w.ledger.moves] == [S.SUBMITTING]


def test_a_file_refused_after_another_was_accepted_is_recorded_rejected(tmp_path: Path) -> None:
    w = World(tmp_path)
    first, second = w.job(job_id="job-1"), w.job(job_id="job-2")
    _submit_and_answer(w, first)
    w.client.submit_answer = BadRequestError("bad row", status_code=400)
    _submit_and_answer(w, second)
    assert w.ledger.states["job-2"] is S.REJECTED
    assert w.ledger.values(S.REJECTED)["finished_by"] == RUN
