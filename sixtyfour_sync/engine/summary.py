"""What a plan or a run reports: counts, costs, fill rates, per-job states; and the exit code."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sixtyfour_sync.engine.ledger.accounting import Tally

if TYPE_CHECKING:
    from sixtyfour_sync.engine.ledger.accounting import JobFacts, SyncAccount
    from sixtyfour_sync.engine.rows.preview import Preview

__all__ = ["JobOutcome", "ResumedWork", "RunResult", "StepPlan", "SyncPlan", "SyncResult"]


@dataclass
class StepPlan:
    """One step of a sync's plan, named as the ledger's steps table names it (engine/ledger/accounting.py): ``own`` (the
    sync's own pass), ``fields:<f1,f2>@<tier>`` (rows answered before those fields were added) or
    ``escalate:<tier>``. Rows of an ``expected`` step depend on the answers of the steps before it: they are
    what is waiting now plus what the learned weak rate expects, not a count."""

    name: str
    kind: str
    tier: str
    fields: list[str] | None = None
    rows_by_reason: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    files: int = 0
    price_cents_per_row: float | None = None
    price_source: str | None = None
    estimated_cost_cents: float | None = None
    expected: bool = False


@dataclass
class SyncPlan:
    """What ``plan`` found for one sync (no paid call made): its steps in the order a run takes them."""

    name: str
    endpoint: str
    tier: str
    target: str
    rows_by_reason: dict[str, int] = field(default_factory=dict)
    files: int = 0
    chunk_rows: int = 0
    price_cents_per_row: float | None = None
    price_source: str | None = None
    estimated_cost_cents: float | None = None
    budget_cents: int | None = None
    #: Jobs in flight for this sync and target (the unfinished states of docs/job-states.md: written, not yet merged
    #: or ended): the next run finishes them before it selects new rows, so it has work even when ``rows`` is 0.
    unfinished_jobs: int = 0
    #: Jobs that need a person (lost, refused on resume, unreadable result): their rows are not sent.
    held_jobs: int = 0
    key_problems: str = ""
    target_exists: bool = False
    new_columns: list[str] = field(default_factory=list)
    #: ``plan --preview``: the JSONL and config files written (see :mod:`sixtyfour_sync.engine.rows.preview`).
    preview: Preview | None = None
    #: With ``escalate:``, each step's expected rows and cost
    #: (see :func:`sixtyfour_sync.engine.plan.escalation.plan_escalation`).
    escalation: list[dict[str, Any]] = field(default_factory=list)
    #: Rows answered before fields were added or changed, asked just those: [{fields, rows, estimated_cost_cents}].
    new_fields: list[dict[str, Any]] = field(default_factory=list)
    #: What the sync's definition allows but the API may refuse (an unknown struct type): shown, never an error.
    warnings: list[str] = field(default_factory=list)
    #: A hash of the sync's whole definition (engine/plan/planner.py:definition_hash): ``run --plan`` checks it.
    definition: str = ""
    #: The steps a run takes, in order (the sync's own pass first).
    steps: list[StepPlan] = field(default_factory=list)
    #: The distinct questions among the rows (rows sharing their inputs ask one), and the rows that take the
    #: answer of another (sent in no file, paid once): the estimate prices the questions. None: not counted.
    questions: int | None = None
    rows_deduplicated: int = 0
    #: Rows that would take a stored answer (the answer store: their question was answered and merged within
    #: reuse.max_age), and the questions among them: asked of no one, priced at nothing.
    rows_reused: int = 0
    questions_reused: int = 0

    @property
    def rows(self) -> int:
        """Rows that would be sent."""
        return sum(self.rows_by_reason.values())

    @property
    def over_budget(self) -> bool:
        """The estimate exceeds the budget (the run would stop at the budget)."""
        return (
            self.budget_cents is not None
            and self.estimated_cost_cents is not None
            and self.estimated_cost_cents > self.budget_cents
        )

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON carries it (``plan --output json``, ``plan -o``, the plan artifact)."""
        d = {k: v for k, v in vars(self).items() if k not in ("preview", "steps")}
        d["rows"] = self.rows
        d["over_budget"] = self.over_budget
        d["preview"] = None if self.preview is None else self.preview.to_dict()
        d["steps"] = [dataclasses.asdict(st) for st in self.steps]
        return d


@dataclass
class JobOutcome:
    """One file's fate in a run."""

    job_id: str
    file_name: str
    rows: int
    state: str
    task_id: str | None = None
    replay: bool = False
    #: The earlier job whose answer a replay returned ($0 new charge).
    replay_of: str | None = None
    estimated_cost_cents: float | None = None
    charged_cents: float | None = None
    rows_enriched: int = 0
    rows_failed: int = 0
    rows_not_returned: int = 0
    rows_unexpected: int = 0
    missing_columns: list[str] = field(default_factory=list)
    error: str | None = None
    #: Started by an earlier run and finished (or moved on) by this one.
    resumed: bool = False


@dataclass
class ResumedWork:
    """What this run did for jobs that earlier runs left unfinished (kept apart from this run's own work)."""

    jobs: int = 0
    rows_enriched: int = 0
    rows_failed: int = 0
    rows_not_returned: int = 0
    rows_unexpected: int = 0
    rows_merged: int = 0
    charged_cents: float = 0.0


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class SyncResult:
    """The outcome of one sync in a run."""

    name: str
    #: ok | nothing_to_do | partial | failed | budget_reached | no_credits | interrupted | skipped | locked (a
    #: webhook receiver found the sync's lease held: the run holding it finishes the job). budget_reached: it
    #: sent what its budget allowed and stopped (a warning, exit 0; ``run --fail-on-budget`` makes it exit 1).
    status: str = "ok"
    rows_by_reason: dict[str, int] = field(default_factory=dict)
    rows_sent: int = 0
    rows_enriched: int = 0
    rows_failed: int = 0
    rows_not_returned: int = 0
    rows_unexpected: int = 0
    rows_merged: int = 0
    estimated_cost_cents: float = 0.0
    charged_cents: float = 0.0
    jobs: list[JobOutcome] = field(default_factory=list)
    filled: dict[str, int] = field(default_factory=dict)
    #: Answers held back per field (below min_confidence), not written.
    gated: dict[str, int] = field(default_factory=dict)
    #: With ``escalate:``, what each tier did in this run (rows asked and answered, fields filled).
    tiers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: "New fields" steps in this run: the fields asked (comma-separated) -> rows asked and answered.
    new_fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    returned: int = 0
    #: Rows selected and read but not sent because the budget was reached (rows of the selection not read yet
    #: when it stopped are not counted: ``plan`` counts them all).
    rows_unsent: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    resumed: ResumedWork = field(default_factory=ResumedWork)
    #: Submissions the API answered with an earlier job ($0 new charge).
    replays: int = 0
    #: Rows merged from a result that lacked a requested column (asked again next run).
    incomplete_rows: int = 0
    #: ``run --no-wait``: jobs left submitted on purpose, to finish via webhook or the next run.
    submitted_only: int = 0
    #: Paid answers the target refused, held one by one (the ledger's quarantine), and those merged in this run
    #: after an earlier run held them.
    rows_quarantined: int = 0
    rows_released: int = 0
    #: Rows answered by a shared question: rows whose inputs another selected row shares, which asked once
    #: for them all (each key gets the answer; the question is paid once).
    rows_deduplicated: int = 0
    #: What those rows would have cost asked one by one, at what this run's questions cost per row.
    saved_cents: float = 0.0
    #: Rows that took a stored answer (the answer store: a question answered and merged within reuse.max_age),
    #: the questions among them, and what asking them would have cost at the price known (a floor when
    #: ``reused_price_known`` is False: some were taken with no price known).
    rows_reused: int = 0
    questions_reused: int = 0
    reused_saved_cents: float = 0.0
    reused_price_known: bool = True
    #: ``target.on_source_delete``: target rows whose key left the source, flagged (or deleted) in this run,
    #: and flagged rows whose key came back.
    rows_source_deleted: int = 0
    rows_source_restored: int = 0
    #: What was done to them: ``flagged`` or ``deleted`` ("" with on_source_delete: keep).
    source_deletion: str = ""
    #: Own jobs' charges recorded after the run ended (by a later run or a webhook delivery).
    charged_later_cents: float = 0.0
    #: Rows of the files the API answered with an earlier job ($0 new charge).
    replayed_rows: int = 0
    #: When the sync started and ended in this run (unix seconds, UTC), and how long it took.
    started_at: float | None = None
    completed_at: float | None = None

    def add_step(self, step: SyncResult, reason_key: Mapping[str, str] | None = None) -> None:
        """Add the counts, jobs and messages of a step run after the sync's own pass (escalation, new fields).

        ``reason_key`` renames the step's selection reasons (``escalate`` -> ``escalate:medium``).
        """
        for name in (
            "rows_sent",
            "rows_enriched",
            "rows_failed",
            "rows_not_returned",
            "rows_unexpected",
            "rows_merged",
            "estimated_cost_cents",
            "charged_cents",
            "replays",
            "incomplete_rows",
            "rows_quarantined",
            "rows_unsent",
            "rows_deduplicated",
        ):
            setattr(self, name, getattr(self, name) + getattr(step, name))  # fmt: skip
        self.jobs.extend(step.jobs)
        for reason, n in step.rows_by_reason.items():
            key = (reason_key or {}).get(reason, reason)
            self.rows_by_reason[key] = self.rows_by_reason.get(key, 0) + n
        for f, n in step.gated.items():
            self.gated[f] = self.gated.get(f, 0) + n
        self.errors.extend(e for e in step.errors if e not in self.errors)
        self.warnings.extend(w for w in step.warnings if w not in self.warnings)

    def apply(self, acc: SyncAccount, *, tiers: Sequence[str] = ()) -> None:
        """Take this sync's numbers from the run's account (engine/ledger/accounting.py), the one source every view of
        the run shows: the counts kept while the run went are replaced by those derived from the ledger."""
        own = acc.own
        self.rows_by_reason = dict(acc.rows_by_reason)
        self.rows_sent, self.rows_enriched, self.rows_failed = own.rows_sent, own.rows_enriched, own.rows_failed
        self.rows_not_returned, self.rows_unexpected = own.rows_not_returned, own.rows_unexpected
        self.rows_merged, self.returned = own.rows_merged, own.returned
        self.estimated_cost_cents, self.charged_cents = own.estimated_cost_cents, own.charged_cents
        self.charged_later_cents = own.charged_later_cents
        self.replays, self.replayed_rows = own.replays, own.replayed_rows
        self.incomplete_rows, self.rows_quarantined = own.incomplete_rows, own.rows_quarantined
        self.rows_deduplicated, self.saved_cents = own.rows_deduplicated, own.saved_cents
        self.rows_reused, self.questions_reused = acc.rows_reused, acc.questions_reused
        self.reused_saved_cents, self.reused_price_known = acc.reused_saved_cents, acc.reused_price_known
        self.filled, self.gated = dict(own.filled), dict(own.gated)
        self.rows_released = acc.rows_released
        self.rows_source_deleted, self.rows_source_restored = acc.rows_source_deleted, acc.rows_source_restored
        self.source_deletion = acc.source_deletion or self.source_deletion
        r = acc.resumed
        self.resumed = ResumedWork(
            jobs=max(self.resumed.jobs, r.jobs),
            rows_enriched=r.rows_enriched,
            rows_failed=r.rows_failed,
            rows_not_returned=r.rows_not_returned,
            rows_unexpected=r.rows_unexpected,
            rows_merged=r.rows_merged,
            charged_cents=r.charged_cents,
        )
        # with escalate: each tier of the sync in order, the own tier always (``tiers``: [tier, *escalate])
        self.tiers = {
            t: (acc.tiers[t] if t in acc.tiers else Tally()).stats()
            for i, t in enumerate(tiers)
            if i == 0 or t in acc.tiers
        }
        self.new_fields = {k: v.stats() for k, v in acc.new_fields.items()}
        if acc.steps and self.status not in ("skipped", "locked"):
            self.status = acc.status
        known = {j.job_id: j for j in self.jobs}
        for facts, resumed in [(j, False) for j in acc.jobs] + [(j, True) for j in acc.resumed_jobs]:
            o = known.get(facts.job_id)
            if o is None:
                o = JobOutcome(facts.job_id, facts.file_name, facts.rows, facts.state, resumed=resumed)
                self.jobs.append(o)
            _outcome_from(o, facts)

    @property
    def resumed_jobs(self) -> int:
        """Jobs left by earlier runs that this run picked up."""
        return self.resumed.jobs

    @property
    def jobs_in_flight(self) -> list[JobOutcome]:
        """Jobs still unfinished when the run ended (the next run picks them up)."""
        return [
            j
            for j in self.jobs
            if j.state in ("written", "submitting", "submitted", "cancelling", "completed", "downloaded")
        ]

    @property
    def jobs_needing_attention(self) -> list[JobOutcome]:
        """Jobs held for a person: lost, refused on resume, or with an unreadable result."""
        return [j for j in self.jobs if j.state in ("lost", "needs_attention", "result_unreadable")]

    @property
    def rows_selected(self) -> int:
        """Rows the selection returned."""
        return sum(self.rows_by_reason.values())

    @property
    def fill_rate(self) -> dict[str, float]:
        """Share of this run's answers with a value, per struct field (a row answered at two tiers is two
        answers; the target's fill rate now is the report's, another view)."""
        if not self.returned:
            return {k: 0.0 for k in self.filled}
        return {k: v / self.returned for k, v in self.filled.items()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form (for ``--log-format json`` and orchestrators)."""
        return {
            "name": self.name,
            "status": self.status,
            "rows_selected": self.rows_selected,
            "rows_by_reason": dict(self.rows_by_reason),
            "rows_sent": self.rows_sent,
            "rows_enriched": self.rows_enriched,
            "rows_failed": self.rows_failed,
            "rows_not_returned": self.rows_not_returned,
            "rows_unexpected": self.rows_unexpected,
            "rows_merged": self.rows_merged,
            "estimated_cost_cents": self.estimated_cost_cents,
            "charged_cents": self.charged_cents,
            "charged_later_cents": self.charged_later_cents,
            "answers": self.returned,
            "fill_rate_of": "this run's answers",
            "fill_rate": {k: round(v, 4) for k, v in self.fill_rate.items()},
            "gated_below_confidence": dict(self.gated),
            "tiers": {t: dict(v) for t, v in self.tiers.items()},
            "new_fields": {t: dict(v) for t, v in self.new_fields.items()},
            "jobs": [vars(j) for j in self.jobs if not j.resumed],
            "replays": self.replays,
            "replayed_rows": self.replayed_rows,
            "incomplete_rows": self.incomplete_rows,
            "rows_quarantined": self.rows_quarantined,
            "rows_deduplicated": self.rows_deduplicated,
            "saved_cents": self.saved_cents,
            "rows_reused": self.rows_reused,
            "questions_reused": self.questions_reused,
            "reused_saved_cents": self.reused_saved_cents if self.reused_price_known else None,
            "rows_unsent": self.rows_unsent,
            "rows_released": self.rows_released,
            "rows_source_deleted": self.rows_source_deleted,
            "rows_source_restored": self.rows_source_restored,
            "resumed": {**vars(self.resumed), "job_list": [vars(j) for j in self.jobs if j.resumed]},
            "resumed_jobs": self.resumed_jobs,
            "jobs_in_flight": [j.task_id or j.job_id for j in self.jobs_in_flight],
            "jobs_needing_attention": [
                {"job_id": j.job_id, "task_id": j.task_id, "state": j.state, "error": j.error}
                for j in self.jobs_needing_attention
            ],
            "jobs_left_to_finish": self.submitted_only,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            **self._timing(),
        }

    def _timing(self) -> dict[str, Any]:
        if self.started_at is None or self.completed_at is None:
            return {}
        return {
            "started_at": _iso(self.started_at),
            "completed_at": _iso(self.completed_at),
            "duration_seconds": round(self.completed_at - self.started_at, 3),
        }


@dataclass
class RunResult:
    """The outcome of a ``run``: what orchestrators read."""

    run_id: str
    syncs: list[SyncResult] = field(default_factory=list)
    duration_seconds: float = 0.0
    error: str | None = None
    #: Set when the run was asked to stop (Ctrl-C, SIGTERM): its exit code (130/143).
    interrupted_exit: int | None = None
    #: Whether a ledger holds the run (a run refused before anything was accepted is recorded nowhere: it shows
    #: no run id, since ``status --run`` could not find it).
    recorded: bool = False
    #: ``run --fail-on-budget``: a sync that reached its budget fails the run (exit 1) instead of a warning.
    fail_on_budget: bool = False

    @property
    def status(self) -> str:
        """``success``, ``partial``, ``failed`` or ``interrupted`` (exit codes 0, 3, 1, 130/143)."""
        if self.interrupted_exit is not None:
            return "interrupted"
        refused = ("failed", "no_credits", "budget_reached") if self.fail_on_budget else ("failed", "no_credits")
        if self.error or any(s.status in refused for s in self.syncs):
            return "failed"
        if any(s.status == "partial" for s in self.syncs):
            return "partial"
        return "success"

    @property
    def exit_code(self) -> int:
        """0 success, 1 failure, 3 partial success, 130/143 interrupted."""
        if self.interrupted_exit is not None:
            return self.interrupted_exit
        return {"success": 0, "failed": 1, "partial": 3}[self.status]

    @property
    def estimated_cost_cents(self) -> float:
        """Sum of the estimates of the files submitted in this run."""
        return sum(s.estimated_cost_cents for s in self.syncs)

    @property
    def charged_cents(self) -> float:
        """Sum of the charges of the jobs this run submitted and saw complete."""
        return sum(s.charged_cents for s in self.syncs)

    @property
    def charged_later_cents(self) -> float:
        """Charges of this run's jobs recorded after it ended (a later run, a webhook delivery)."""
        return sum(s.charged_later_cents for s in self.syncs)

    @property
    def resumed_charged_cents(self) -> float:
        """Charges of jobs earlier runs submitted and this run saw complete."""
        return sum(s.resumed.charged_cents for s in self.syncs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form."""
        return {
            "run_id": self.run_id if self.recorded else None,
            "recorded": self.recorded,
            "status": self.status,
            "exit_code": self.exit_code,
            "duration_seconds": round(self.duration_seconds, 3),
            "estimated_cost_cents": self.estimated_cost_cents,
            "charged_cents": self.charged_cents,
            "charged_later_cents": self.charged_later_cents,
            "resumed_charged_cents": self.resumed_charged_cents,
            "error": self.error,
            "syncs": [s.to_dict() for s in self.syncs],
        }


def _outcome_from(o: JobOutcome, facts: JobFacts) -> None:
    """A job's outcome as the ledger records it."""
    o.state, o.task_id = facts.state, facts.task_id or o.task_id
    o.replay, o.replay_of = facts.replay, facts.replay_of
    o.estimated_cost_cents = facts.estimated_cost_cents
    o.charged_cents = facts.charged_cents
    o.rows_enriched, o.rows_failed = facts.rows_enriched, facts.rows_failed
    o.rows_not_returned, o.rows_unexpected = facts.rows_not_returned, facts.rows_unexpected
    o.missing_columns = list(facts.missing_columns)
    o.error = facts.error or o.error
