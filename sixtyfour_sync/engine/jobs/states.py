"""The life of a submitted file (a *job*): one closed set of states and the moves allowed between them.

Pure code, no I/O. The ledger stores a job's state in its row and changes it only by a compare-and-set
on the state it expects (``UPDATE ... WHERE job_id = ? AND state = ?``), refusing any move this table does
not allow, so a lost race is seen instead of overwritten. ``docs/job-states.md`` draws the diagram from
:func:`mermaid`, and a test checks that the two agree.

The states fall into three groups that the engine asks, never literals:

- :data:`ACTIVE`: work in progress that the next ``run`` finishes before it selects new rows;
- :data:`HELD`: a paid or possibly paid job that needs a person; its rows are not asked again until the user
  says so (``run --retry-lost``, ``run --retry-unreadable``);
- :data:`TERMINAL`: nothing more will happen; rows of a job that did not merge are free to be asked again.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

__all__ = [
    "ACTIVE",
    "FREED",
    "HELD",
    "HOLDS_ROWS",
    "INITIAL",
    "TERMINAL",
    "TRANSITIONS",
    "IllegalTransitionError",
    "JobState",
    "check_transition",
    "is_allowed",
    "mermaid",
    "stamp_run",
]


class JobState(str, Enum):
    """Where a job stands. The value is what the ledger stores."""

    #: The file is written locally and its row keys and Idempotency-Key are in the ledger; not sent yet.
    WRITTEN = "written"
    #: The submission is about to be sent or under way: the API may or may not have it.
    SUBMITTING = "submitting"
    #: The API accepted the file (a new job or a replay of an earlier one); it is running.
    SUBMITTED = "submitted"
    #: A cancel was asked for; the API's answer is not recorded yet.
    CANCELLING = "cancelling"
    #: The API says the job completed (the charge is recorded); the result is not downloaded yet.
    COMPLETED = "completed"
    #: The result file is on local disk; it is not merged yet.
    DOWNLOADED = "downloaded"
    #: The result is in the target table.
    MERGED = "merged"
    #: The API refused the submission (4xx, 402): nothing was charged.
    REJECTED = "rejected"
    #: The API's job failed, was terminated or timed out.
    FAILED = "failed"
    #: The job was cancelled (by ``cancel``, the budget or the server): $0.
    CANCELLED = "cancelled"
    #: The API answers 404 for the task: it does not know the job (another key, or the job expired).
    LOST = "lost"
    #: The API refused to resume the job under its stored Idempotency-Key (e.g. 409/422: the rebuilt file differs).
    NEEDS_ATTENTION = "needs_attention"
    #: The paid result cannot be read (garbage, a NUL byte, no key column) even after a fresh download.
    RESULT_UNREADABLE = "result_unreadable"
    #: Given up: never sent (its rows are gone), or released by the user after being held.
    ABANDONED = "abandoned"


S = JobState

#: The states a new job is recorded in: ``written`` when it waits, ``submitting`` when it is sent at once.
INITIAL: frozenset[JobState] = frozenset({S.WRITTEN, S.SUBMITTING})

#: Every allowed move. A state not listed as a source has no way out.
TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    S.WRITTEN: frozenset({S.SUBMITTING, S.CANCELLED, S.ABANDONED}),
    S.SUBMITTING: frozenset({S.SUBMITTED, S.REJECTED, S.NEEDS_ATTENTION, S.ABANDONED}),
    S.SUBMITTED: frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.CANCELLING, S.LOST}),
    S.CANCELLING: frozenset({S.CANCELLED, S.SUBMITTED, S.COMPLETED, S.FAILED, S.LOST}),
    S.COMPLETED: frozenset({S.DOWNLOADED, S.LOST}),
    S.DOWNLOADED: frozenset({S.MERGED, S.RESULT_UNREADABLE, S.COMPLETED}),
    S.LOST: frozenset({S.SUBMITTED, S.COMPLETED, S.FAILED, S.CANCELLED, S.ABANDONED}),
    S.NEEDS_ATTENTION: frozenset({S.ABANDONED}),
    S.RESULT_UNREADABLE: frozenset({S.COMPLETED, S.ABANDONED}),
    S.MERGED: frozenset(),
    S.REJECTED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.ABANDONED: frozenset(),
}

ACTIVE: frozenset[JobState] = frozenset({S.WRITTEN, S.SUBMITTING, S.SUBMITTED, S.CANCELLING, S.COMPLETED, S.DOWNLOADED})
HELD: frozenset[JobState] = frozenset({S.LOST, S.NEEDS_ATTENTION, S.RESULT_UNREADABLE})
TERMINAL: frozenset[JobState] = frozenset({S.MERGED, S.REJECTED, S.FAILED, S.CANCELLED, S.ABANDONED})
#: States whose rows a selection must leave out: the job is still working on them, or a person must decide.
HOLDS_ROWS: frozenset[JobState] = ACTIVE | HELD
#: Terminal states that did not merge: asking the same rows again is a new question (a new Idempotency-Key).
FREED: frozenset[JobState] = frozenset({S.REJECTED, S.FAILED, S.CANCELLED, S.ABANDONED})

#: Why each move happens, for the diagram.
_REASONS: Mapping[tuple[JobState, JobState], str] = {
    (S.WRITTEN, S.SUBMITTING): "send",
    (S.WRITTEN, S.CANCELLED): "cancel before sending",
    (S.WRITTEN, S.ABANDONED): "rows gone",
    (S.SUBMITTING, S.SUBMITTED): "accepted / replay",
    (S.SUBMITTING, S.REJECTED): "4xx, 402",
    (S.SUBMITTING, S.NEEDS_ATTENTION): "stored key refused",
    (S.SUBMITTING, S.ABANDONED): "rows gone",
    (S.SUBMITTED, S.COMPLETED): "completed",
    (S.SUBMITTED, S.FAILED): "failed",
    (S.SUBMITTED, S.CANCELLED): "cancelled by the server",
    (S.SUBMITTED, S.CANCELLING): "cancel",
    (S.SUBMITTED, S.LOST): "404",
    (S.CANCELLING, S.CANCELLED): "cancelled",
    (S.CANCELLING, S.SUBMITTED): "cancel refused",
    (S.CANCELLING, S.COMPLETED): "completed first",
    (S.CANCELLING, S.FAILED): "failed",
    (S.CANCELLING, S.LOST): "404",
    (S.COMPLETED, S.DOWNLOADED): "download",
    (S.COMPLETED, S.LOST): "404",
    (S.DOWNLOADED, S.MERGED): "merge",
    (S.DOWNLOADED, S.RESULT_UNREADABLE): "unreadable",
    (S.DOWNLOADED, S.COMPLETED): "download again",
    (S.LOST, S.SUBMITTED): "found again",
    (S.LOST, S.COMPLETED): "found completed",
    (S.LOST, S.FAILED): "found failed",
    (S.LOST, S.CANCELLED): "found cancelled",
    (S.LOST, S.ABANDONED): "--retry-lost",
    (S.NEEDS_ATTENTION, S.ABANDONED): "--retry-lost",
    (S.RESULT_UNREADABLE, S.COMPLETED): "--retry-unreadable",
    (S.RESULT_UNREADABLE, S.ABANDONED): "still unreadable",
}


class IllegalTransitionError(ValueError):
    """A move the table does not allow: a bug in the caller, never a user error."""


def is_allowed(current: JobState, new: JobState) -> bool:
    """Whether ``current -> new`` is an allowed move (staying in a state is not a move)."""
    return new in TRANSITIONS[current]


def check_transition(current: JobState | str, new: JobState | str) -> tuple[JobState, JobState]:
    """Both states as enums, or :class:`IllegalTransitionError` when the move is not allowed."""
    a, b = JobState(current), JobState(new)
    if not is_allowed(a, b):
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[a])) or "none (final)"
        raise IllegalTransitionError(f"a job cannot move from {a.value} to {b.value} (allowed: {allowed})")
    return a, b


#: States a job reaches only after its charge was recorded (``completed``).
_AFTER_CHARGE = frozenset({S.DOWNLOADED, S.RESULT_UNREADABLE})


def stamp_run(new: JobState, run_id: str, *, old: JobState | None = None, charges: bool = True) -> dict[str, str]:
    """The run a move records beside it: the run that records a job's charge (the move to ``completed`` that
    carries it, ``charges``) is ``charged_by``; the run that ends or holds a job is ``finished_by``
    (engine/ledger/accounting.py). A move back to ``completed`` after the charge was recorded (to download a
    result again, ``--retry-unreadable``) leaves ``charged_by`` as it was: the charge stays the run's that
    recorded it."""
    out: dict[str, str] = {}
    if new is JobState.COMPLETED and charges and old not in _AFTER_CHARGE:
        out["charged_by"] = run_id
    if new in TERMINAL or new in HELD:
        out["finished_by"] = run_id
    return out


def mermaid() -> str:
    """The state diagram as a mermaid ``stateDiagram-v2``, built from :data:`TRANSITIONS`."""
    lines = ["stateDiagram-v2", f"    [*] --> {S.WRITTEN.value}", f"    [*] --> {S.SUBMITTING.value}: sent at once"]
    for src in JobState:
        for dst in sorted(TRANSITIONS[src], key=lambda s: list(JobState).index(s)):
            label = _REASONS.get((src, dst))
            lines.append(f"    {src.value} --> {dst.value}" + (f": {label}" if label else ""))
    for s in JobState:
        if s in TERMINAL:
            lines.append(f"    {s.value} --> [*]")
    return "\n".join(lines) + "\n"
