"""The job state machine: every allowed and refused move, its groups, and the diagram in docs/."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sixtyfour_sync.engine.jobs.states import (
    ACTIVE,
    FREED,
    HELD,
    HOLDS_ROWS,
    TERMINAL,
    TRANSITIONS,
    IllegalTransitionError,
    JobState,
    check_transition,
    is_allowed,
    mermaid,
)

S = JobState
ALLOWED = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
DOC = Path(__file__).resolve().parents[3] / "docs" / "job-states.md"


@pytest.mark.parametrize(("a", "b"), sorted(ALLOWED, key=lambda p: (p[0].value, p[1].value)))
def test_every_allowed_move_is_allowed(a: JobState, b: JobState) -> None:
    assert is_allowed(a, b)
    assert check_transition(a.value, b.value) == (a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [p for p in itertools.product(JobState, JobState) if p not in ALLOWED],
    ids=lambda s: s.value,
)
def test_every_other_move_is_refused(a: JobState, b: JobState) -> None:
    assert not is_allowed(a, b)
    with pytest.raises(IllegalTransitionError, match=f"from {a.value} to {b.value}"):
        check_transition(a, b)


def test_the_groups_partition_the_states() -> None:
    assert set(JobState) == ACTIVE | HELD | TERMINAL
    assert not (ACTIVE & HELD) and not (ACTIVE & TERMINAL) and not (HELD & TERMINAL)
    assert all(not TRANSITIONS[s] for s in TERMINAL)  # nothing leaves a final state
    assert all(TRANSITIONS[s] for s in ACTIVE | HELD)  # everything else has a way out
    assert HOLDS_ROWS == ACTIVE | HELD
    assert TERMINAL - {S.MERGED} == FREED


def test_a_paid_job_can_only_end_merged_or_held() -> None:
    """From `completed` (the API charged), every path ends in `merged` or in a state a person sees first.

    (`lost` is itself held: what it becomes when found again is what the API reports.)
    """
    seen, todo = set(), [S.COMPLETED]
    while todo:
        s = todo.pop()
        if s in seen:
            continue
        seen.add(s)
        if s is not S.LOST:
            todo.extend(TRANSITIONS[s])
    assert {s for s in seen if s in TERMINAL} == {S.MERGED, S.ABANDONED}
    assert S.LOST in HELD
    for src, dsts in TRANSITIONS.items():
        if S.ABANDONED in dsts and src in seen:
            assert src in HELD  # released on purpose by the user (--retry-lost / --retry-unreadable)


@given(st.lists(st.sampled_from(list(JobState)), min_size=1, max_size=30))
def test_random_walks_only_take_allowed_moves(path: list[JobState]) -> None:
    """A walk that follows check_transition never reaches a state the table does not allow."""
    state = S.WRITTEN
    for wanted in path:
        if is_allowed(state, wanted):
            assert check_transition(state, wanted)[1] is wanted
            state = wanted
        else:
            with pytest.raises(IllegalTransitionError):
                check_transition(state, wanted)
    assert state in set(JobState)


def test_the_diagram_in_the_docs_is_the_table() -> None:
    text = DOC.read_text()
    block = re.search(r"```mermaid\n(.*?)```", text, re.S)
    assert block is not None
    assert block.group(1) == mermaid(), "regenerate docs/job-states.md from engine/jobs/states.py's mermaid()"
    drawn = set(re.findall(r"^    (\w+) --> (\w+)", block.group(1), re.M))
    assert drawn == {(a.value, b.value) for a, b in ALLOWED}


def test_the_run_that_records_a_charge_keeps_it_when_a_later_run_downloads_again() -> None:
    from sixtyfour_sync.engine.jobs.states import stamp_run

    assert stamp_run(S.COMPLETED, "run-a", old=S.SUBMITTED) == {"charged_by": "run-a"}
    # back to completed to download again, or --retry-unreadable: the charge stays run-a's
    assert stamp_run(S.COMPLETED, "run-b", old=S.DOWNLOADED, charges=False) == {}
    assert stamp_run(S.COMPLETED, "run-b", old=S.RESULT_UNREADABLE, charges=False) == {}
    assert stamp_run(S.COMPLETED, "run-b", old=S.DOWNLOADED) == {}
    # a move to completed that carries no charge records none
    assert stamp_run(S.COMPLETED, "run-b", old=S.LOST, charges=False) == {}
    assert stamp_run(S.MERGED, "run-b", old=S.DOWNLOADED) == {"finished_by": "run-b"}
