"""The steps after a sync's own pass ("new fields" and escalation) with a fake runner factory: which step runs,
with which fields, tier and stamps, in which order, and what ends them. No warehouse, no API."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from sixtyfour_sync.config.models import SyncSpec
from sixtyfour_sync.engine.jobs.scheduler import StopToken
from sixtyfour_sync.engine.ledger.store import Job
from sixtyfour_sync.engine.plan.step import Step
from sixtyfour_sync.engine.steps.escalation import escalate
from sixtyfour_sync.engine.steps.field_changes import FieldChanges
from sixtyfour_sync.engine.steps.new_fields import ask_new_fields
from sixtyfour_sync.engine.summary import JobOutcome, SyncResult

SPEC = SyncSpec.model_validate(
    {"name": "s", "endpoint": "people", "source": {"table": "t", "key": "id"},
     "struct": {"email": "Email", "title": "Title", "phone": "Phone"}, "target": {"table": "x"},
     "tier": "low", "escalate": ["medium", "high"]}
)  # fmt: skip


def _outcome(sent: int = 0, status: str = "ok", *, in_flight: bool = False) -> SyncResult:
    r = SyncResult("s", status=status, rows_sent=sent, rows_enriched=sent, charged_cents=10.0 * sent)
    if in_flight:
        r.jobs.append(JobOutcome("j", "j.jsonl", sent, "submitted"))
    return r


class FakeLedger:
    def __init__(self, jobs: list[Job] | None = None) -> None:
        self.jobs = jobs

    def exists(self) -> bool:
        return self.jobs is not None

    def jobs_for(self, *, sync_name: str, states: list[Any], target: str) -> list[Job]:
        return list(self.jobs or [])


class Runner:
    """What a step runner shows the steps: its spec, the budget spent so far, why it stopped, its notes."""

    def __init__(self, spec: SyncSpec, *, ledger: FakeLedger | None = None, changes: FieldChanges | None = None):
        self.notes: list[str] = []
        self.ctx = SimpleNamespace(
            spec=spec,
            ledger=ledger or FakeLedger(),
            target_id="main.x",
            note=lambda m, level="info": self.notes.append(m),
        )
        self.changes = changes
        self.stop_reason: str | None = None
        self.sync_spent = 0.0
        self.prepared = False
        self.answer: Callable[[Runner], SyncResult] = lambda r: _outcome()
        self.stop_with: str | None = None

    def prepare(self) -> None:
        self.prepared = True

    def run(self) -> SyncResult:
        assert self.prepared
        out = self.answer(self)
        self.sync_spent += out.charged_cents
        self.stop_reason = self.stop_with
        return out


class Factory:
    """A ``make_runner`` that records each step (fields, tier, stamps or the tier escalated from, budget given)."""

    def __init__(self, answer: Callable[[SyncSpec, Any], SyncResult], stop_with: Callable[[SyncSpec], str | None]):
        self.answer, self.stop_with = answer, stop_with
        self.steps: list[tuple[tuple[str, ...], str, Any, float]] = []

    def __call__(self, plan_step: Step) -> Runner:
        spec = plan_step.spec
        arg: Any = list(plan_step.stamps) if plan_step.kind == "fields" else plan_step.after
        step = Runner(spec)
        self.steps.append((tuple(sorted(spec.struct)), spec.tier, arg, -1.0))
        index = len(self.steps) - 1

        def answer(r: Runner) -> SyncResult:
            fields, tier, a, _ = self.steps[index]
            self.steps[index] = (fields, tier, a, r.sync_spent)  # the budget the step started with
            return self.answer(spec, arg)

        step.answer = answer
        step.stop_with = self.stop_with(spec)
        return step

    def tiers(self) -> list[tuple[tuple[str, ...], str]]:
        return [(f, t) for f, t, _, _ in self.steps]


def _factory(
    sent: dict[tuple[tuple[str, ...], str], int] | None = None, *, stop_at: str | None = None, reason="budget_reached"
):
    sent = sent or {}

    def answer(spec: SyncSpec, arg: Any) -> SyncResult:
        return _outcome(sent.get((tuple(sorted(spec.struct)), spec.tier), 0))

    return Factory(answer, lambda spec: reason if spec.tier == stop_at else None)


def _through(fields: list[str], tier: str) -> str:
    return SPEC.only_fields(fields).through_stamp(tier)[0]


# ------------------------------------------------------------------ new fields


def test_a_field_group_is_asked_at_its_own_tier_then_at_each_tier_rows_wait_for() -> None:
    runner = Runner(SPEC, changes=FieldChanges(groups={("phone",): ["stamp-a", "stamp-b"]}))
    runner.sync_spent = 5.0
    make = _factory({(("phone",), "low"): 4, (("phone",), "medium"): 2, (("phone",), "high"): 1})
    result = _outcome(10)
    ask_new_fields(result, runner, stop=StopToken(), make_runner=make)
    assert make.tiers() == [(("phone",), "low"), (("phone",), "medium"), (("phone",), "high")]
    stamps = [s for _, _, s, _ in make.steps]
    # own tier: the stamps of the rows that lack the field; each tier above: the rows the tier before passed on
    assert stamps == [["stamp-a", "stamp-b"], [_through(["phone"], "low")], [_through(["phone"], "medium")]]
    # the budget runs through the steps: each starts with what the ones before spent
    assert [b for *_, b in make.steps] == [5.0, 45.0, 65.0] and runner.sync_spent == 75.0
    assert result.rows_sent == 10 + 4 + 2 + 1 and result.status == "ok"


def test_no_escalation_step_when_the_own_tier_asked_nothing() -> None:
    runner = Runner(SPEC, changes=FieldChanges(groups={("phone",): ["stamp-a"]}))
    make = _factory({})  # the own tier's step found no row to ask
    ask_new_fields(_outcome(), runner, stop=StopToken(), make_runner=make)
    assert make.tiers() == [(("phone",), "low")]


def test_groups_run_one_after_the_other_each_with_its_own_waterfall() -> None:
    changes = FieldChanges(groups={("title",): ["s-title"], ("email", "phone"): ["s-both"]})
    runner = Runner(SPEC, changes=changes)
    make = _factory({(("email", "phone"), "low"): 3, (("title",), "low"): 2, (("title",), "medium"): 1})
    ask_new_fields(_outcome(), runner, stop=StopToken(), make_runner=make)
    assert make.tiers() == [
        (("email", "phone"), "low"), (("email", "phone"), "medium"), (("email", "phone"), "high"),
        (("title",), "low"), (("title",), "medium"), (("title",), "high"),
    ]  # fmt: skip


def test_a_waterfall_left_between_tiers_goes_on_above_the_own_tier() -> None:
    """Rows whose new field was asked at low by an earlier run and wait for medium: no own-tier step again."""
    runner = Runner(SPEC, changes=FieldChanges(pending={("phone",): ["through-stamp"]}))
    make = _factory({(("phone",), "medium"): 2})
    ask_new_fields(_outcome(), runner, stop=StopToken(), make_runner=make)
    assert make.tiers() == [(("phone",), "medium"), (("phone",), "high")]
    assert make.steps[0][2] == [_through(["phone"], "low")]


def test_an_unfinished_step_job_is_finished_at_its_own_tier() -> None:
    job = Job("j", "r", "s", "submitted", "h", "c", "k", "j.jsonl", 3, tier="medium", fields="phone")  # type: ignore[arg-type]
    runner = Runner(SPEC, ledger=FakeLedger([job]), changes=None)
    make = _factory({})
    ask_new_fields(_outcome(), runner, stop=StopToken(), make_runner=make)
    assert make.tiers() == [(("phone",), "medium")]


def test_a_removed_field_asks_nothing() -> None:
    gone = Job("j", "r", "s", "submitted", "h", "c", "k", "j.jsonl", 3, tier="low", fields="fax")  # type: ignore[arg-type]
    runner = Runner(SPEC, ledger=FakeLedger([gone]), changes=FieldChanges(groups={("fax",): ["s-fax"]}))
    make = _factory({(("fax",), "low"): 9})
    ask_new_fields(_outcome(), runner, stop=StopToken(), make_runner=make)
    assert make.steps == [] and runner.notes == []


def test_a_group_with_a_removed_field_asks_only_the_fields_still_in_the_struct() -> None:
    runner = Runner(SPEC, changes=FieldChanges(groups={("fax", "phone"): ["s-1"]}))
    make = _factory({})
    ask_new_fields(_outcome(), runner, stop=StopToken(), make_runner=make)
    assert make.tiers() == [(("phone",), "low")] and make.steps[0][2] == ["s-1"]


def test_a_budget_stop_ends_the_new_fields_steps() -> None:
    changes = FieldChanges(groups={("email",): ["s-e"], ("phone",): ["s-p"]})
    for reason in ("budget_reached", "no_credits"):
        make = _factory({(("email",), "low"): 3}, stop_at="low", reason=reason)
        ask_new_fields(_outcome(), Runner(SPEC, changes=changes), stop=StopToken(), make_runner=make)
        assert make.tiers() == [(("email",), "low")]  # not medium, not the next group


def test_a_stop_request_or_an_unsettled_step_ends_the_new_fields_steps() -> None:
    changes = FieldChanges(groups={("email",): ["s-e"], ("phone",): ["s-p"]})
    stop = StopToken()

    def answer(spec: SyncSpec, arg: Any) -> SyncResult:
        stop.request("stopped by Ctrl-C")
        return _outcome(3)

    make = Factory(answer, lambda spec: None)
    ask_new_fields(_outcome(), Runner(SPEC, changes=changes), stop=stop, make_runner=make)
    assert make.tiers() == [(("email",), "low")]

    result = _outcome()
    failing = Factory(lambda spec, arg: _outcome(3, status="partial"), lambda spec: None)
    ask_new_fields(result, Runner(SPEC, changes=changes), stop=StopToken(), make_runner=failing)
    assert failing.tiers() == [(("email",), "low")] and result.status == "partial"

    before = _outcome(status="failed")  # the sync's own pass did not settle: no step at all
    untouched = _factory({(("email",), "low"): 3})
    ask_new_fields(before, Runner(SPEC, changes=changes), stop=StopToken(), make_runner=untouched)
    assert untouched.steps == []


# ------------------------------------------------------------------ escalation


def test_escalation_asks_each_tier_in_order_from_the_one_before() -> None:
    runner = Runner(SPEC)
    runner.sync_spent = 7.0
    make = _factory({(("email", "phone", "title"), "medium"): 4, (("email", "phone", "title"), "high"): 2})
    result = _outcome(10)
    escalate(result, runner, stop=StopToken(), make_runner=make)
    assert [(t, prev) for _, t, prev, _ in make.steps] == [("medium", "low"), ("high", "medium")]
    assert [b for *_, b in make.steps] == [7.0, 47.0]
    assert set(result.tiers) == {"low", "medium", "high"} and result.tiers["medium"]["rows_sent"] == 4
    assert result.rows_sent == 16 and result.status == "ok"


def test_a_budget_stop_ends_the_escalation_and_is_not_a_failure() -> None:
    make = Factory(lambda spec, arg: _outcome(3, status="budget_reached"), lambda spec: "budget_reached")
    result = _outcome(10)
    escalate(result, Runner(SPEC), stop=StopToken(), make_runner=make)
    assert [t for _, t, _, _ in make.steps] == ["medium"]
    assert result.status == "ok" and any("stopped at the budget" in w for w in result.warnings)


def test_escalation_waits_while_the_tier_before_is_not_all_in() -> None:
    cases: list[tuple[SyncResult, StopToken, str | None]] = []
    stopped = StopToken()
    stopped.request("stopped by SIGTERM")
    cases.append((_outcome(10), stopped, None))  # asked to stop
    cases.append((_outcome(10, status="partial"), StopToken(), None))  # own pass not settled
    cases.append((_outcome(10, in_flight=True), StopToken(), None))  # own jobs still running
    cases.append((_outcome(10), StopToken(), "interrupted"))  # the own pass stopped
    for result, stop, reason in cases:
        runner = Runner(SPEC)
        runner.stop_reason = reason
        make = _factory({})
        escalate(result, runner, stop=stop, make_runner=make)
        assert make.steps == [] and runner.notes == [
            "escalation to medium waits for the next run (the answers at low are not all in)"
        ]


def test_a_tier_left_with_jobs_in_flight_holds_the_next_tier() -> None:
    make = Factory(lambda spec, arg: _outcome(3, in_flight=spec.tier == "medium"), lambda spec: None)
    result = _outcome(10)
    escalate(result, Runner(SPEC), stop=StopToken(), make_runner=make)
    assert [t for _, t, _, _ in make.steps] == ["medium"] and "high" not in result.tiers
