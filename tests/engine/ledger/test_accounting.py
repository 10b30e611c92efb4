"""A run's numbers from the ledger's facts (engine/ledger/accounting.py), built by hand: no ledger, no API.

Every view of a run (summary, JSON summary, artifact, ``status``, report, Dagster metadata) shows what
``account`` derives, so each kind of run a team reconciles its bill with is pinned here: a normal run, replays
(from this ledger and from another), a charge recorded by a later run, a run that only asks new fields, an
escalation run, a budget stop, a crashed run and the run that resumes it, held jobs and gated answers. Property
tests then check the rules over any set of facts: each charge is booked once, by the run that recorded it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sixtyfour_sync.engine.jobs.states import HELD, JobState
from sixtyfour_sync.engine.ledger.accounting import (
    SEVERITY,
    JobFacts,
    ReuseCount,
    RunAccount,
    StepFacts,
    SyncAccount,
    Tally,
    account,
    sync_status,
)
from sixtyfour_sync.engine.summary import SyncResult

A, B, C = "run-a", "run-b", "run-c"
SYNC = "leads"
_ids = itertools.count(1)


def job(
    *,
    run: str = A,
    rows: int = 10,
    state: str = "merged",
    enriched: int | None = None,
    failed: int = 0,
    not_returned: int = 0,
    estimate: float | None = None,
    charged: float | None = None,
    by: str | None = None,
    finished: str | None = None,
    sent: bool = True,
    **kw: Any,
) -> JobFacts:
    """A job as the ledger records it. Merged by default: every row sent, answered and written; ``charged`` and
    ``by`` (charged_by) default to 2 cents a row recorded by the run that created it."""
    n = next(_ids)
    merged = state == "merged"
    if enriched is None:
        enriched = rows - failed - not_returned if merged else 0
    answered = enriched + failed
    if merged:
        charged = 2.0 * rows if charged is None else charged
        by = run if by is None else by
        finished = run if finished is None else finished
    kw.setdefault("rows_returned", answered)
    kw.setdefault("rows_merged", rows if merged else 0)
    return JobFacts(
        job_id=f"job-{n}",
        run_id=run,
        sync_name=kw.pop("sync_name", SYNC),
        state=state,
        rows=rows,
        file_name=f"{SYNC}-{n}.jsonl",
        task_id=f"task-{n}" if sent else None,
        tier=kw.pop("tier", "low"),
        estimated_cost_cents=(2.0 * rows if sent else None) if estimate is None else estimate,
        charged_cents=charged,
        rows_enriched=enriched,
        rows_failed=failed,
        rows_not_returned=not_returned,
        charged_by=by,
        finished_by=finished,
        **kw,
    )


def step(
    status: str = "ok",
    name: str = "own",
    run: str = A,
    seq: int = 0,
    reasons: Mapping[str, int] | None = None,
    **by: int,
) -> StepFacts:
    """A step as the ledger records it; its selection by reason from ``reasons`` and keywords."""
    by_reason = {**(reasons or {}), **by}
    return StepFacts(run_id=run, sync_name=SYNC, step=name, status=status, rows_by_reason=by_reason, seq=seq)


def one(acc: RunAccount) -> SyncAccount:
    (s,) = acc.syncs.values()
    return s


def viewed(s: SyncAccount, tiers: Sequence[str] = ("low",)) -> SyncResult:
    """The sync as the summary, its JSON form and the artifact take it from the account (engine/summary.py)."""
    r = SyncResult(s.name)
    r.apply(s, tiers=tiers)
    return r


# --- rows answered by a shared question ------------------------------------------------------------------------


def test_rows_answered_by_a_shared_question_are_written_not_sent_and_what_they_saved_is_at_the_price_paid() -> None:
    # 10 questions sent at 2 cents, answering 14 keys (4 shared another key's inputs); 5 questions answering 6 keys
    jobs = [
        job(rows=10, enriched=13, failed=1, rows_merged=14, rows_returned=14, rows_deduplicated=4),
        job(rows=5, enriched=6, rows_merged=6, rows_returned=6, rows_deduplicated=1),
    ]
    s = one(account(A, jobs, [step("ok", new=20)]))
    assert s.own.rows_sent == 15 and s.own.rows_merged == 20 and s.own.rows_deduplicated == 5
    assert s.own.saved_cents == pytest.approx(5 * 2.0)  # 30 cents paid for 15 questions: 2 a row
    shown = viewed(s)
    assert shown.rows_deduplicated == 5 and shown.saved_cents == pytest.approx(10.0)
    assert shown.to_dict()["rows_deduplicated"] == 5 and shown.to_dict()["saved_cents"] == pytest.approx(10.0)


def test_what_shared_answers_saved_is_priced_by_the_estimate_until_a_charge_is_known() -> None:
    jobs = [job(rows=10, state="submitted", estimate=30.0, rows_deduplicated=0)]
    s = one(account(A, jobs, [step("ok", new=10)]))
    assert s.own.saved_cents == 0.0
    jobs = [job(rows=10, state="merged", charged=0.0, estimate=30.0, rows_merged=12, rows_deduplicated=2)]
    s = one(account(A, jobs, [step("ok", new=12)]))
    assert s.own.saved_cents == pytest.approx(2 * 3.0)


# --- a normal run ---------------------------------------------------------------------------------------------


def test_a_normal_run_counts_selected_sent_answered_and_paid() -> None:
    jobs = [
        job(rows=15, failed=1, not_returned=1, estimate=30.0, charged=28.0, filled={"email": 12, "title": 7}),
        job(rows=15, failed=1, estimate=30.0, charged=30.0, filled={"email": 14, "title": 9}),
        job(rows=5, failed=1, estimate=10.0, charged=10.0, filled={"email": 3, "title": 0}),
    ]
    acc = account(A, jobs, [step("ok", new=30, changed=5)])
    s = one(acc)
    assert s.status == "ok" and s.rows_selected == 35 and s.rows_by_reason == {"new": 30, "changed": 5}
    assert acc.counts() == {
        "rows_selected": 35,
        "rows_sent": 35,
        "rows_enriched": 13 + 14 + 4,
        "rows_failed": 3,
        "rows_not_returned": 1,
        "rows_unexpected": 0,
        "rows_deduplicated": 0,
        "saved_cents": 0.0,
        "rows_reused": 0,
        "reused_saved_cents": 0.0,
        "jobs": 3,
        "jobs_resumed": 0,
        "estimated_cost_cents": 70.0,
        "charged_cents": 68.0,
    }
    # fill rate per field over the rows the API answered (34: one row did not come back)
    assert s.own.returned == 34
    assert s.own.fill_rate == {"email": pytest.approx(29 / 34), "title": pytest.approx(16 / 34)}
    assert s.own.charged_later_cents == 0 and s.own.replays == 0 and acc.resumed_charged_cents == 0
    assert s.tiers["low"].stats()["rows_sent"] == 35 and s.new_fields == {}
    assert [j.job_id for j in s.jobs] == [j.job_id for j in jobs] and s.resumed_jobs == []
    r = viewed(s)
    assert (r.rows_sent, r.charged_cents, r.returned, r.status) == (35, 68.0, 34, "ok")
    assert r.to_dict()["fill_rate"] == {"email": round(29 / 34, 4), "title": round(16 / 34, 4)}


def test_a_file_the_api_refused_was_neither_sent_nor_paid() -> None:
    refused = job(state="rejected", rows=20, sent=False, estimate=40.0, error="402 insufficient credits")
    acc = account(A, [job(rows=10), refused], [step("no_credits", new=30)])
    s = one(acc)
    assert s.own.jobs == 2 and s.own.rows_sent == 10
    assert s.own.estimated_cost_cents == 20.0  # a refused file's quote is no estimate of this run's cost
    assert s.own.charged_cents == 20.0 and s.status == "no_credits"


def test_facts_of_other_runs_are_ignored() -> None:
    other = job(run=B)  # created, charged and finished by B: nothing of A's
    acc = account(A, [job(rows=4), other], [step("ok", new=4), step("ok", run=B, new=10)])
    s = one(acc)
    assert s.rows_selected == 4 and s.own.jobs == 1 and s.resumed.jobs == 0
    assert acc.counts()["rows_sent"] == 4 and acc.counts()["charged_cents"] == 8.0


# --- replays --------------------------------------------------------------------------------------------------


def test_a_replay_of_an_earlier_job_in_this_ledger_is_free_to_this_run() -> None:
    first = job(run=A, rows=15, charged=30.0)
    # what an older record might hold for the replay: the API's numbers for the original task
    replay = job(
        run=B, rows=15, replay=True, replay_of=first.job_id, estimate=30.0, charged=30.0, api_charge_cents=30.0
    )
    acc = account(B, [first, replay], [step("ok", run=B, new=15)])
    s = one(acc)
    assert s.own.rows_sent == 15  # the rows were sent; the API answered them with the earlier job
    assert (s.own.replays, s.own.replayed_rows) == (1, 15)
    assert s.own.estimated_cost_cents == 0 and s.own.charged_cents == 0 and s.own.charged_later_cents == 0
    assert s.resumed.jobs == 0  # the earlier job is A's, not work B did for it
    r = viewed(s)
    (outcome,) = r.jobs
    assert outcome.replay and outcome.replay_of == first.job_id
    assert (r.replays, r.replayed_rows, r.charged_cents) == (1, 15, 0.0)
    # A's books are untouched: A paid, once
    assert account(A, [first, replay]).counts()["charged_cents"] == 30.0


def test_a_replay_of_another_ledgers_job_is_free_to_this_run() -> None:
    """Dev on one ledger paid; prod asked the same question and was answered with dev's job (engine/jobs/driver.py
    records such a replay with a $0 estimate and charge, and the API's charge of the original task apart)."""
    replays = [
        job(run=B, rows=10, replay=True, estimate=0.0, charged=0.0, api_charge_cents=20.0, filled={"email": 9}),
        job(run=B, rows=5, replay=True, estimate=0.0, charged=0.0, api_charge_cents=10.0, filled={"email": 5}),
    ]
    acc = account(B, replays, [step("ok", run=B, new=15)])
    s = one(acc)
    assert acc.counts()["charged_cents"] == 0 and acc.counts()["estimated_cost_cents"] == 0
    assert s.own.charged_later_cents == 0
    assert (s.own.rows_sent, s.own.replays, s.own.replayed_rows) == (15, 2, 15)
    assert s.own.fill_rate == {"email": pytest.approx(14 / 15)}  # the answers are this run's, the charge is not
    assert s.status == "ok"


def test_a_replay_finished_by_a_later_run_is_not_charged_later() -> None:
    replay = job(run=A, state="submitted", replay=True, estimate=0.0)
    done = job(run=A, replay=True, estimate=0.0, charged=0.0, api_charge_cents=20.0, by=B, finished=B)
    assert one(account(A, [replay])).own.charged_later_cents == 0
    a, b = one(account(A, [done])), one(account(B, [done]))
    assert a.own.charged_cents == a.own.charged_later_cents == 0
    assert b.resumed.jobs == 1 and b.resumed.charged_cents == 0


# --- charged later --------------------------------------------------------------------------------------------


def test_a_charge_recorded_by_a_later_run_counts_there_not_twice() -> None:
    """``run --no-wait`` left the jobs submitted; a webhook delivery (run W) finished them."""
    left = [job(run=A, state="submitted", rows=10) for _ in range(3)]
    before = one(account(A, left, [step("ok", new=30)]))
    assert before.own.rows_sent == 30 and before.own.estimated_cost_cents == 60.0
    assert before.own.charged_cents == before.own.charged_later_cents == 0
    W = "run-webhook"
    done = [job(run=A, rows=10, charged=20.0, by=W, finished=W) for _ in range(3)]
    a = account(A, done, [step("ok", new=30)])
    w = account(W, done, [step("ok", run=W)])
    assert one(a).own.charged_cents == 0 and one(a).own.charged_later_cents == 60.0
    assert a.counts()["rows_sent"] == 30 and a.counts()["estimated_cost_cents"] == 60.0  # still A's
    assert w.counts()["charged_cents"] == 0 and w.counts()["jobs"] == 0 and w.counts()["jobs_resumed"] == 3
    assert w.resumed_charged_cents == 60.0 and one(w).resumed.charged_later_cents == 0
    # the bill: what A recorded plus what W recorded for A's jobs, once
    assert a.counts()["charged_cents"] + w.resumed_charged_cents == 60.0
    assert viewed(one(a)).charged_later_cents == 60.0


def test_an_older_ledger_without_charged_by_reads_the_completion_time() -> None:
    ended = datetime(2026, 12, 1, 9, 0, 0)
    early = job(run=A, charged=10.0, completed_at=ended - timedelta(minutes=1))
    early = JobFacts(**{**vars(early), "charged_by": None, "finished_by": None})
    late = JobFacts(**{**vars(early), "job_id": "late", "completed_at": "2026-12-01T09:05:00+00:00"})
    s = one(account(A, [early, late], run_finished=ended.isoformat()))  # naive text: UTC, as the ledger writes it
    assert s.own.charged_cents == 10.0 and s.own.charged_later_cents == 10.0
    aware = datetime(2026, 12, 1, 10, 4, 0, tzinfo=timezone(timedelta(hours=1)))  # 09:04 UTC: before `late`
    assert one(account(A, [late], run_finished=aware)).own.charged_later_cents == 10.0
    # no time known: the run that created it recorded it
    undated = JobFacts(**{**vars(late), "completed_at": None})
    assert one(account(A, [undated], run_finished=ended)).own.charged_cents == 10.0


def test_an_older_ledger_books_a_charge_once_when_only_the_finishing_run_is_known() -> None:
    """No ``charged_by``, ``finished_by`` a later run: the creating run says "charged later", so the finishing
    run is the one that recorded it."""
    facts = JobFacts(**{**vars(job(run=A, charged=30.0)), "charged_by": None, "finished_by": B})
    a, b = account(A, [facts]), account(B, [facts])
    assert one(a).own.charged_cents == 0 and one(a).own.charged_later_cents == 30.0
    assert b.resumed_charged_cents == 30.0


# --- new fields -----------------------------------------------------------------------------------------------


def test_a_run_that_only_asks_new_fields_is_not_nothing_to_do() -> None:
    asked = [
        job(rows=20, fields="seniority", filled={"seniority": 15}),
        job(rows=10, fields="seniority", filled={"seniority": 8}),
    ]
    steps = [step("nothing_to_do", seq=0), step("ok", "fields:seniority@low", seq=1, new_fields=30)]
    acc = account(A, asked, steps, own_tiers={SYNC: "low"})
    s = one(acc)
    assert s.status == "ok" and s.rows_selected == 30 and s.rows_by_reason == {"new_fields": 30}
    assert list(s.new_fields) == ["seniority"] and s.tiers == {}
    stats = s.new_fields["seniority"].stats()
    assert (stats["rows_sent"], stats["rows_enriched"], stats["charged_cents"]) == (30, 30, 60.0)
    assert s.own.fill_rate == {"seniority": pytest.approx(23 / 30)}
    assert [st.step for st in s.steps] == ["own", "fields:seniority@low"]
    # even when every step says there was nothing to do, a sync that sent rows did something
    quiet = [step("nothing_to_do", seq=0), step("nothing_to_do", "fields:seniority@low", seq=1)]
    assert one(account(A, asked, quiet)).status == "ok"
    assert one(account(A, asked, [step("skipped")])).status == "ok"
    r = viewed(s)
    assert r.status == "ok" and r.rows_sent == 30 and "seniority" in r.fill_rate


def test_new_fields_asked_at_another_tier_are_keyed_with_it() -> None:
    asked = [job(rows=4, fields="seniority,title", tier="medium"), job(rows=6, fields="seniority", tier="low")]
    s = one(account(A, asked, own_tiers={SYNC: "low"}))
    assert set(s.new_fields) == {"seniority,title@medium", "seniority"}
    # a reader that does not know the sync's own tier (``status``) names every tier
    assert set(one(account(A, asked)).new_fields) == {"seniority,title@medium", "seniority@low"}


@pytest.mark.parametrize(
    ("statuses", "sent", "expected"),
    [
        ([], 0, "nothing_to_do"),
        ([], 5, "ok"),
        (["nothing_to_do"], 0, "nothing_to_do"),
        (["nothing_to_do"], 5, "ok"),
        (["skipped"], 5, "ok"),
        (["ok", "nothing_to_do"], 0, "ok"),
        (["ok", "partial", "budget_reached"], 5, "partial"),
        (["budget_reached", "ok"], 5, "budget_reached"),
        (["interrupted", "failed"], 5, "failed"),
        (["", "locked"], 0, "locked"),
    ],
)
def test_a_syncs_status_is_its_worst_steps_and_sent_rows_are_never_nothing_to_do(
    statuses: list[str], sent: int, expected: str
) -> None:
    assert sync_status(statuses, sent=sent) == expected


# --- escalation -----------------------------------------------------------------------------------------------


def _escalation_run() -> tuple[RunAccount, list[JobFacts]]:
    jobs = [
        job(rows=60, tier="low", failed=6, estimate=60.0, charged=60.0, filled={"email": 30, "title": 48}),
        job(rows=30, tier="medium", estimate=90.0, charged=90.0, filled={"email": 24, "title": 27}),
    ]
    steps = [step("ok", seq=0, new=60), step("ok", "escalate:medium", seq=1, reasons={"escalate:medium": 30})]
    return account(A, jobs, steps, own_tiers={SYNC: "low"}), jobs


def test_an_escalation_run_tells_each_tier_over_its_own_answers() -> None:
    acc, _ = _escalation_run()
    s = one(acc)
    assert list(s.tiers) == ["low", "medium"]
    low, medium = s.tiers["low"], s.tiers["medium"]
    assert low.fill_rate == {"email": 0.5, "title": 0.8} and medium.fill_rate == {"email": 0.8, "title": 0.9}
    # a row answered at two tiers is two answers: the run's fill rate is over all 90, a share, never a sum
    assert s.own.returned == 90 and low.returned + medium.returned == 90
    assert s.own.fill_rate == {"email": pytest.approx(54 / 90), "title": pytest.approx(75 / 90)}
    for f, rate in s.own.fill_rate.items():
        assert min(low.fill_rate[f], medium.fill_rate[f]) <= rate <= max(low.fill_rate[f], medium.fill_rate[f])
        assert 0.0 <= rate <= 1.0
    for name in ("rows_sent", "rows_enriched", "estimated_cost_cents", "charged_cents"):
        assert getattr(low, name) + getattr(medium, name) == getattr(s.own, name)
    assert s.rows_by_reason == {"new": 60, "escalate:medium": 30} and s.rows_selected == 90
    d = viewed(s, tiers=["low", "medium", "high"]).to_dict()
    assert d["fill_rate_of"] == "this run's answers" and d["answers"] == 90
    assert list(d["tiers"]) == ["low", "medium"]  # a tier the run never reached is not shown
    assert d["tiers"]["medium"]["fill_rate"] == {"email": 0.8, "title": 0.9}
    assert all(0.0 <= v <= 1.0 for t in d["tiers"].values() for v in t["fill_rate"].values())


def test_the_budget_reached_while_escalating_ends_the_escalation_not_the_sync() -> None:
    _, jobs = _escalation_run()
    steps = [step("ok", seq=0, new=60), step("budget_reached", "escalate:medium", seq=1)]
    assert one(account(A, jobs, steps)).status == "ok"
    steps = [step("budget_reached", seq=0, new=60), step("budget_reached", "escalate:medium", seq=1)]
    assert one(account(A, jobs, steps)).status == "budget_reached"


# --- budget ---------------------------------------------------------------------------------------------------


def test_a_budget_stopped_step_is_budget_reached() -> None:
    sent = [job(rows=10), job(rows=10), job(rows=10)]
    acc = account(A, sent, [step("budget_reached", new=50)])
    s = one(acc)
    assert s.status == "budget_reached" and s.rows_selected == 50 and s.own.rows_sent == 30
    assert acc.counts()["charged_cents"] == 60.0
    assert viewed(s).status == "budget_reached"


def test_the_legacy_step_status_budget_is_read_as_budget_reached() -> None:
    row = {"run_id": A, "sync_name": SYNC, "step": "own", "status": "budget", "rows_by_reason": '{"new": 50}'}
    facts = StepFacts.from_row(row)
    assert facts.status == "budget_reached" and facts.rows_by_reason == {"new": 50}
    assert one(account(A, [job(rows=10)], [facts])).status == "budget_reached"
    legacy_escalation = StepFacts.from_row({**row, "step": "escalate:medium", "seq": 1})
    assert one(account(A, [job(rows=10)], [step("ok"), legacy_escalation])).status == "ok"


# --- a crashed run, resumed -----------------------------------------------------------------------------------


def test_a_crashed_run_and_the_run_that_resumed_it() -> None:
    # A died with one file accepted and two written
    at_crash = [
        job(run=A, state="submitted", rows=10),
        job(run=A, state="written", rows=10, sent=False),
        job(run=A, state="written", rows=10, sent=False),
    ]
    a = one(account(A, at_crash, [step("interrupted", new=30)]))
    assert a.status == "interrupted" and a.own.rows_sent == 10 and a.own.estimated_cost_cents == 20.0
    assert a.own.charged_cents == a.own.charged_later_cents == 0
    # B sent the written files and finished all three: they stay A's jobs, B recorded their charges
    done = [job(run=A, rows=10, by=B, finished=B) for _ in at_crash]
    acc_a = account(A, done, [step("interrupted", new=30)])
    acc_b = account(B, done, [step("nothing_to_do", run=B)])
    a, b = one(acc_a), one(acc_b)
    assert acc_a.counts()["rows_sent"] == 30 and acc_a.counts()["estimated_cost_cents"] == 60.0
    assert a.own.charged_cents == 0 and a.own.charged_later_cents == 60.0
    assert acc_b.counts()["jobs"] == 0 and acc_b.counts()["rows_sent"] == 0 and acc_b.counts()["charged_cents"] == 0
    assert acc_b.counts()["jobs_resumed"] == 3 and b.resumed.rows_merged == 30
    assert acc_b.resumed_charged_cents == 60.0 == a.own.charged_later_cents
    r = viewed(b)
    assert r.resumed.jobs == 3 and r.resumed.charged_cents == 60.0 and r.charged_cents == 0
    assert all(o.resumed for o in r.jobs) and r.to_dict()["jobs"] == []  # B's own jobs: none


def test_a_job_charged_by_one_run_and_ended_by_another_is_charged_once() -> None:
    """A recorded the charge (``completed``); B merged it."""
    facts = job(run=A, rows=10, by=A, finished=B)
    a, b = account(A, [facts]), account(B, [facts])
    assert a.counts()["charged_cents"] == 20.0 and one(a).own.charged_later_cents == 0
    assert one(b).resumed.jobs == 1 and b.resumed_charged_cents == 0


# --- held jobs ------------------------------------------------------------------------------------------------


def test_held_jobs_are_counted_as_needing_attention() -> None:
    lost = job(state="lost", rows=10, finished=A, error="job-status answered 404")
    unreadable = job(state="result_unreadable", rows=10, charged=20.0, by=A, finished=A)
    refused = job(state="needs_attention", rows=10, sent=False, finished=A, error="stored key refused")
    merged = job(rows=10)
    acc = account(A, [lost, unreadable, refused, merged], [step("partial", new=40)])
    s = one(acc)
    assert s.status == "partial" and s.own.jobs == 4
    assert s.own.rows_sent == 30  # the refused file never reached the API
    assert s.own.charged_cents == 40.0  # the unreadable result was paid: counted, and shown as needing attention
    assert s.own.rows_merged == 10 and s.own.returned == 10
    r = viewed(s)
    held = {j.state for j in r.jobs_needing_attention}
    assert held == {"lost", "result_unreadable", "needs_attention"} == {x.value for x in HELD}
    assert r.jobs_in_flight == []
    assert {j["state"] for j in r.to_dict()["jobs_needing_attention"]} == held


def test_a_job_a_later_run_found_lost_needs_attention_in_that_run() -> None:
    lost = job(run=A, state="lost", rows=10, finished=B)
    b = one(account(B, [lost], [step("nothing_to_do", run=B)]))
    assert b.resumed.jobs == 1 and b.resumed.charged_cents == 0
    assert [j.state for j in viewed(b).jobs_needing_attention] == ["lost"]
    assert one(account(A, [lost])).own.rows_sent == 10  # still A's rows sent


# --- gated answers and the ledger's row form ------------------------------------------------------------------


def test_answers_below_min_confidence_are_counted_apart_from_the_fill_rate() -> None:
    jobs = [
        job(rows=10, filled={"email": 6, "title": 10}, gated={"email": 3, "title": 0}),
        job(rows=10, filled={"email": 8, "title": 9}, gated={"email": 1, "title": 1}),
    ]
    s = one(account(A, jobs))
    assert s.own.gated == {"email": 4, "title": 1}
    assert s.own.fill_rate == {"email": 0.7, "title": 0.95}  # a gated answer was not written: not filled
    stats = s.tiers["low"].stats()
    assert stats["gated"] == {"email": 4, "title": 1} and stats["filled"] == {"email": 14, "title": 19}
    assert viewed(s).to_dict()["gated_below_confidence"] == {"email": 4, "title": 1}


def test_a_ledger_row_is_read_whatever_the_warehouse_returns() -> None:
    row: dict[str, Any] = {
        "job_id": "j1",
        "run_id": A,
        "sync_name": SYNC,
        "state": "merged",
        "rows": Decimal(12),
        "task_id": "t1",
        "tier": "low",
        "fields": "",
        "reasons": '{"new": 12}',
        "replay": 0,
        "estimated_cost_cents": Decimal("24.00"),
        "charged_cents": Decimal("24.5"),
        "rows_enriched": 10,
        "rows_failed": 2,
        "rows_returned": 12,
        "rows_merged": None,
        "filled": '{"email": 9, "note": "n/a"}',
        "gated": "not json",
        "missing_columns": "title,",
        "charged_by": A,
        "finished_by": A,
        "a_column_added_later": 1,
    }
    facts = JobFacts.from_row(row)
    assert facts.rows == 12 and facts.fields is None and facts.reasons == {"new": 12}
    assert facts.filled == {"email": 9} and facts.gated == {} and facts.missing_columns == ("title",)
    assert facts.charge() == 24.5 and facts.estimate() == 24.0 and facts.rows_merged == 0
    s = one(account(A, [facts]))
    assert s.own.incomplete_rows == 10  # merged from a result without a requested column: asked again
    assert s.own.charged_cents == 24.5


# --- properties over any set of facts -------------------------------------------------------------------------

RUNS = (A, B, C)
STATES = tuple(s.value for s in JobState)
FIELDS = ("email", "title")
_n = st.integers(0, 40)
_cents = st.one_of(st.none(), st.integers(0, 5_000).map(float))
_run_or_none = st.sampled_from((None, *RUNS))


def _facts(i: int, d: tuple[Any, ...]) -> JobFacts:
    """A job from drawn numbers (dependent counts folded into range: answered <= rows, filled <= answered)."""
    run, sync_name, state, rows, answered, enriched, fills, sent, tier, fields, replay, of, est, paid, by, fin = d
    answered %= rows + 1
    enriched %= answered + 1
    filled = {f: n % (answered + 1) for f, n in zip(FIELDS, fills[:2], strict=True)}
    gated = {f: n % (answered - filled[f] + 1) for f, n in zip(FIELDS, fills[2:], strict=True)}
    return JobFacts(
        job_id=f"job-{i}",
        run_id=run,
        sync_name=sync_name,
        state=state,
        rows=rows,
        task_id=f"task-{i}" if sent else None,
        tier=tier,
        fields=fields,
        replay=replay or of,
        replay_of="job-earlier" if of else None,
        estimated_cost_cents=est,
        charged_cents=paid,
        rows_enriched=enriched,
        rows_failed=answered - enriched,
        rows_not_returned=rows - answered,
        rows_merged=fills[0] % (rows + 1),
        rows_returned=answered,
        rows_quarantined=fills[1] % 3,
        filled=filled,
        gated=gated,
        missing_columns=("title",) if fills[2] % 4 == 0 else (),
        charged_by=by,
        finished_by=fin,
    )


_JOB = st.tuples(
    st.sampled_from(RUNS),
    st.sampled_from(("leads", "accounts")),
    st.sampled_from(STATES),
    _n,
    _n,
    _n,
    st.tuples(_n, _n, _n, _n),
    st.booleans(),
    st.sampled_from(("low", "medium", "high", None)),
    st.sampled_from((None, None, "seniority", "seniority,title")),
    st.booleans(),
    st.booleans(),
    _cents,
    _cents,
    _run_or_none,
    _run_or_none,
)
_STEP = st.tuples(
    st.sampled_from(RUNS),
    st.sampled_from(("leads", "accounts")),
    st.sampled_from(("own", "escalate:medium", "fields:seniority@low")),
    st.sampled_from((*SEVERITY, "budget")),
    st.integers(0, 50),
)
Ledger = tuple[list[JobFacts], list[StepFacts]]
LEDGERS = st.tuples(st.lists(_JOB, max_size=10), st.lists(_STEP, max_size=4)).map(
    lambda d: (
        [_facts(i, j) for i, j in enumerate(d[0])],
        [
            StepFacts.from_row(
                {"run_id": r, "sync_name": n, "step": s, "status": x, "rows_by_reason": {"new": k}, "seq": i}
            )
            for i, (r, n, s, x, k) in enumerate(d[1])
        ],
    )
)


def _tallies(s: SyncAccount) -> list[Tally]:
    return [s.own, s.resumed, *s.tiers.values(), *s.new_fields.values()]


PROPERTY = settings(max_examples=30, deadline=None)


@PROPERTY
@given(LEDGERS)
def test_each_charge_is_booked_once_by_the_run_that_recorded_it(ledger: Ledger) -> None:
    jobs, steps = ledger
    accounts = {r: account(r, jobs, steps) for r in RUNS}

    def recorder(j: JobFacts) -> str:  # charged_by; for an older ledger, the run that ended it, else its own
        return j.charged_by or j.finished_by or j.run_id

    for r, acc in accounts.items():
        mine = [j for j in jobs if j.run_id == r]
        charged = sum(j.charge() for j in jobs if recorder(j) == r)
        assert acc.total("charged_cents") + acc.resumed_charged_cents == pytest.approx(charged)
        assert acc.total("charged_cents") == pytest.approx(sum(j.charge() for j in mine if recorder(j) == r))
        assert acc.total("charged_cents") + acc.total("charged_later_cents") == pytest.approx(
            sum(j.charge() for j in mine)
        )
        assert acc.total("estimated_cost_cents") == pytest.approx(
            sum(j.estimated_cost_cents or 0 for j in mine if j.accepted and not j.replay_of)
        )
        for s in acc.syncs.values():  # a job is one run's own, or work it did for another's: never both
            assert not {j.job_id for j in s.jobs} & {j.job_id for j in s.resumed_jobs}
    # over all runs, the bill: every charge, once
    total = sum(a.total("charged_cents") + a.resumed_charged_cents for a in accounts.values())
    assert total == pytest.approx(sum(j.charge() for j in jobs))
    assert all(j.charge() == 0 for j in jobs if j.replay_of)


@PROPERTY
@given(LEDGERS, st.sampled_from(RUNS))
def test_rows_sent_are_the_accepted_files_rows_replays_apart(ledger: Ledger, run: str) -> None:
    jobs, steps = ledger
    acc = account(run, jobs, steps)
    mine = [j for j in jobs if j.run_id == run]
    # a replay's rows were sent (the API answered them with an earlier job): in rows sent, and counted apart
    assert acc.total("rows_sent") == sum(j.rows for j in mine if j.accepted)
    assert acc.total("replayed_rows") == sum(j.rows for j in mine if j.replay)
    assert acc.total("replays") == sum(1 for j in mine if j.replay)
    assert acc.total("jobs") == len(mine)
    assert acc.counts()["jobs_resumed"] == sum(
        1 for j in jobs if j.run_id != run and run in (j.charged_by, j.finished_by)
    )


@PROPERTY
@given(LEDGERS, st.sampled_from(RUNS))
def test_no_number_is_negative_and_every_share_is_a_share(ledger: Ledger, run: str) -> None:
    jobs, steps = ledger
    acc = account(run, jobs, steps, own_tiers={"leads": "low", "accounts": "medium"})
    assert all(v >= 0 for v in acc.counts().values())
    for s in acc.syncs.values():
        assert s.rows_selected >= 0
        for t in _tallies(s):
            numbers = [v for v in vars(t).values() if isinstance(v, (int, float))]
            assert all(v >= 0 for v in numbers)
            assert all(v >= 0 for v in [*t.filled.values(), *t.gated.values()])
            assert all(0.0 <= v <= 1.0 for v in t.fill_rate.values())
            assert all(0.0 <= v <= 1.0 for v in t.stats()["fill_rate"].values())


@PROPERTY
@given(LEDGERS, st.sampled_from(RUNS))
def test_tiers_and_new_fields_steps_add_up_to_the_run(ledger: Ledger, run: str) -> None:
    jobs, steps = ledger
    acc = account(run, jobs, steps)
    for s in acc.syncs.values():
        parts = [*s.tiers.values(), *s.new_fields.values()]
        for name in ("jobs", "rows_sent", "rows_enriched", "returned", "replays", "rows_merged"):
            assert sum(getattr(p, name) for p in parts) == getattr(s.own, name)
        for name in ("estimated_cost_cents", "charged_cents", "charged_later_cents"):
            assert sum(getattr(p, name) for p in parts) == pytest.approx(getattr(s.own, name))
        for f in s.own.filled:
            assert sum(p.filled.get(f, 0) for p in parts) == s.own.filled[f]


@PROPERTY
@given(LEDGERS, st.sampled_from(RUNS))
def test_a_syncs_status_follows_the_one_rule(ledger: Ledger, run: str) -> None:
    jobs, steps = ledger
    for s in account(run, jobs, steps).syncs.values():
        assert s.status in SEVERITY  # a legacy name is read under its new one
        if s.own.rows_sent:
            assert s.status != "nothing_to_do"
        if not s.steps:
            assert s.status == ("ok" if s.own.rows_sent else "nothing_to_do")
        for x in s.steps:  # never better than a step it counts (the budget reached while escalating is not counted)
            if not (x.step.startswith("escalate:") and x.status == "budget_reached"):
                assert SEVERITY.index(s.status) <= SEVERITY.index(x.status)


def test_iso_text_with_a_z_suffix_is_read_as_utc() -> None:
    from datetime import datetime, timezone

    from sixtyfour_sync.engine.ledger.accounting import _utc

    want = datetime(2026, 12, 7, 18, 0, tzinfo=timezone.utc)
    assert _utc("2026-12-07T18:00:00Z") == want
    assert _utc("2026-12-07T18:00:00+00:00") == want
    assert _utc("2026-12-07 18:00:00") == want
    assert _utc("not a time") is None


def test_a_lost_job_given_up_later_stays_sent_in_the_run_that_sent_it() -> None:
    from sixtyfour_sync.engine.ledger.accounting import JobFacts

    given_up = JobFacts.from_row(
        {"job_id": "j", "run_id": "r1", "sync_name": "s", "state": "abandoned", "task_id": "t-1", "rows": 5}
    )
    never_sent = JobFacts.from_row(
        {"job_id": "k", "run_id": "r1", "sync_name": "s", "state": "abandoned", "task_id": None, "rows": 5}
    )
    assert given_up.accepted and not never_sent.accepted


# --- stored answers (the answer store) ------------------------------------------------------------------------


def test_stored_answers_count_as_reused_rows_with_what_their_questions_would_have_cost() -> None:
    reuses = [
        ReuseCount(A, SYNC, rows=12, questions=10, saved_cents=20.0),
        ReuseCount(A, SYNC, rows=3, questions=3, saved_cents=6.0),
        ReuseCount("another-run", SYNC, rows=100, questions=100, saved_cents=200.0),
    ]
    acc = account(A, [], [step("nothing_to_do")], reuses=reuses)
    s = one(acc)
    assert (s.rows_reused, s.questions_reused, s.reused_saved_cents) == (15, 13, 26.0)
    assert s.reused_price_known
    # a run that only took stored answers did something: never "nothing to do"
    assert s.status == "ok"
    assert acc.counts()["rows_reused"] == 15 and acc.counts()["reused_saved_cents"] == 26.0


def test_stored_answers_taken_without_a_known_price_make_the_saving_a_floor() -> None:
    reuses = [
        ReuseCount(A, SYNC, rows=5, questions=5, saved_cents=None),
        ReuseCount(A, SYNC, rows=2, questions=2, saved_cents=4.0),
    ]
    s = one(account(A, [], [step("ok", new=1)], reuses=reuses))
    assert s.rows_reused == 7 and s.reused_saved_cents == 4.0 and not s.reused_price_known
