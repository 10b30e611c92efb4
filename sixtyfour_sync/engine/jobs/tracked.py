"""A job a run is working on, what its driver asks of the runner, and the one way job states are written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from sixtyfour_sync.api import JobPoller, JobStatus, ResultDownload
from sixtyfour_sync.engine.jobs.states import JobState, stamp_run
from sixtyfour_sync.engine.ledger.store import Job, Ledger
from sixtyfour_sync.engine.results.parse import ResultParseError
from sixtyfour_sync.engine.rows.files import SpilledTable
from sixtyfour_sync.engine.summary import JobOutcome
from sixtyfour_sync.warehouse.session import Session

__all__ = ["Host", "Tracked", "Unreadable", "record_move"]


@dataclass
class Tracked:
    """A job this run is working on: its ledger row, plus what only this process knows."""

    job: Job
    state: JobState
    outcome: JobOutcome
    file: Path | None = None
    #: What was sent: key columns and the input hash, in file order (None: not known here); a new file's waits
    #: on disk until its result is parsed.
    sent: pa.Table | SpilledTable | None = None
    resumed: bool = False
    task_id: str | None = None
    status: JobStatus | None = None
    poller: JobPoller | None = None
    #: The next call to make and when (monotonic seconds): "poll", "submit" or "download".
    action: str | None = None
    due: float = 0.0
    busy: bool = False
    estimate: float | None = None
    replay_of: str | None = None
    #: The API answered with an earlier job (this ledger's, ``replay_of``, or another one's): $0 to this job.
    free: bool = False
    #: Cents held against the budget from submission until the API's estimate replaces them.
    reserved: float = 0.0
    #: Whether this file holds one of the extraction thread's slots.
    holds_slot: bool = False
    failing_since: float | None = None
    attempts: int = 0
    downloads: int = 0
    redownloaded: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def job_id(self) -> str:
        """The ledger's id of the job."""
        return self.job.job_id

    @property
    def label(self) -> str:
        """How messages name the job."""
        return f"{self.job.file_name} (task {self.task_id})" if self.task_id else self.job.file_name


@dataclass
class Unreadable(Exception):
    """A downloaded result that could not be parsed (raised on a worker, handled on the main thread)."""

    download: ResultDownload
    error: ResultParseError


class Host(Protocol):
    """What the driver asks of the sync runner that owns it."""

    price: float | None

    def spend(self, cents: float) -> None:
        """Hold (or give back) budget."""

    def release_slot(self) -> None:
        """Give an extraction slot back."""

    def stop_sync(self, status: str, message: str) -> None:
        """Stop submitting for this sync."""

    def answered(self, price: float | None) -> None:
        """A submission was answered (``price``: the per-row price its estimate says; None when it says none,
        or the file was refused or given up): files waiting for the estimate go on."""


def record_move(
    ledger: Ledger,
    run_id: str,
    job_id: str,
    old: JobState,
    new: JobState,
    *,
    session: Session | None = None,
    **values: Any,
) -> None:
    """Record a job's move from ``old`` to ``new`` (compare-and-set), stamped with the run that made it
    (:func:`~sixtyfour_sync.engine.jobs.states.stamp_run`): the one way job states are written, by a run's
    driver and by ``cancel`` (engine/jobs/cancel.py)."""
    values.update(stamp_run(new, run_id, old=old, charges="charged_cents" in values))
    ledger.transition(job_id, old, new, session=session, **values)
