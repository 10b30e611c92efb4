"""A run's numbers, derived from the ledger's facts about its jobs and steps. Pure logic: one function, every view.

The summary a run ends with, its JSON form, the run artifact, ``status``, the report and the Dagster metadata
all show what :func:`account` derives from the same facts: the ledger's rows for the jobs a run created or
finished (``_sixtyfour_sync_jobs``) and for the steps it ran (``_sixtyfour_sync_steps``). The rules:

- A job belongs to the run that created it (its ``run_id``): its rows sent, its estimate and its charge are that
  run's. The charge is *charged* when that run recorded it (``charged_by``), *charged later* when a later run or
  a webhook delivery did. The work a run did for jobs earlier runs created is its *resumed work*, kept apart.
- A replay (the API answered a submission with an earlier job: same question, same Idempotency-Key) is $0 to
  the run that received it: its estimate and charge are 0, whatever the API reports for the original task; the
  earlier job, in this ledger (``replay_of``) or another one, is the one that paid.
- Fill rate here is over *this run's answers*: the rows the API answered in the run's jobs (escalation answers
  included: a row answered at two tiers is two answers), the share with a value per field. Per tier, over that
  tier's answers. (The report also shows the target's fill rate now: another view, named there.)
- A sync's status is one rule over its steps (:func:`sync_status`): the worst step's, and a sync that sent rows
  (or took stored answers) is never ``nothing_to_do``.
- Rows that took a stored answer (the answer store, engine/reuse/) are the run's that merged them
  (``_sixtyfour_sync_reuses``): no job, no charge; what their questions would have cost at the price known then
  is what reuse saved (unknown without a price).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "JobFacts",
    "ReuseCount",
    "RunAccount",
    "StepFacts",
    "SyncAccount",
    "Tally",
    "account",
    "sync_status",
]

#: Step and sync statuses, worst first: the rule a sync's status follows over its steps.
SEVERITY = (
    "failed",
    "no_credits",
    "interrupted",
    "locked",
    "partial",
    "budget_reached",
    "ok",
    "nothing_to_do",
    "skipped",
)
#: Step statuses an earlier version recorded under another name.
_RENAMED = {"budget": "budget_reached"}
#: Job states whose rows the API accepted (a task exists, or may). An abandoned job with a task id was accepted
#: before it was given up (lost, or unreadable after --retry-unreadable): its rows stay sent in the run that sent
#: them.
_ACCEPTED_STATES = {
    "abandoned",
    "submitted",
    "cancelling",
    "completed",
    "downloaded",
    "merged",
    "failed",
    "cancelled",
    "lost",
    "needs_attention",
    "result_unreadable",
}


def _json_counts(text: Any) -> dict[str, int]:
    if not text:
        return {}
    if isinstance(text, Mapping):
        return {str(k): int(v or 0) for k, v in text.items()}
    try:
        data = json.loads(str(text))
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): int(v or 0) for k, v in data.items() if isinstance(v, (int, float))}


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _int(v: Any) -> int:
    return 0 if v is None else int(v)


@dataclass(frozen=True)
class JobFacts:
    """What the ledger records of one job, as the accounting reads it."""

    job_id: str
    run_id: str
    sync_name: str
    state: str
    rows: int
    file_name: str = ""
    task_id: str | None = None
    tier: str | None = None
    #: A "new fields" job: the fields it asked (comma-separated); None for the whole question.
    fields: str | None = None
    reasons: Mapping[str, int] = field(default_factory=dict)
    replay: bool = False
    replay_of: str | None = None
    estimated_cost_cents: float | None = None
    charged_cents: float | None = None
    #: What the API reported for the task (a replay's is the original task's charge, not this run's).
    api_charge_cents: float | None = None
    rows_enriched: int = 0
    rows_failed: int = 0
    rows_not_returned: int = 0
    rows_unexpected: int = 0
    rows_merged: int = 0
    rows_returned: int = 0
    rows_quarantined: int = 0
    #: Rows the job answered by a question another of its rows asked (the same inputs, paid once).
    rows_deduplicated: int = 0
    filled: Mapping[str, int] = field(default_factory=dict)
    gated: Mapping[str, int] = field(default_factory=dict)
    missing_columns: tuple[str, ...] = ()
    error: str | None = None
    #: The run that recorded the charge, and the run that ended the job (None: not yet, or an older ledger).
    charged_by: str | None = None
    finished_by: str | None = None
    completed_at: Any = None
    target: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JobFacts:
        """From a ledger row (``Ledger.job_rows``); unknown columns are ignored."""
        missing = str(row.get("missing_columns") or "")
        return cls(
            job_id=str(row["job_id"]),
            run_id=str(row["run_id"]),
            sync_name=str(row["sync_name"]),
            state=str(row["state"]),
            rows=_int(row.get("rows")),
            file_name=str(row.get("file_name") or ""),
            task_id=row.get("task_id"),
            tier=row.get("tier"),
            fields=row.get("fields") or None,
            reasons=_json_counts(row.get("reasons")),
            replay=bool(row.get("replay") or 0),
            replay_of=row.get("replay_of"),
            estimated_cost_cents=_num(row.get("estimated_cost_cents")),
            charged_cents=_num(row.get("charged_cents")),
            api_charge_cents=_num(row.get("api_charge_cents")),
            rows_enriched=_int(row.get("rows_enriched")),
            rows_failed=_int(row.get("rows_failed")),
            rows_not_returned=_int(row.get("rows_not_returned")),
            rows_unexpected=_int(row.get("rows_unexpected")),
            rows_merged=_int(row.get("rows_merged")),
            rows_returned=_int(row.get("rows_returned")),
            rows_quarantined=_int(row.get("rows_quarantined")),
            rows_deduplicated=_int(row.get("rows_deduplicated")),
            filled=_json_counts(row.get("filled")),
            gated=_json_counts(row.get("gated")),
            missing_columns=tuple(c for c in missing.split(",") if c),
            error=row.get("error"),
            charged_by=row.get("charged_by"),
            finished_by=row.get("finished_by"),
            completed_at=row.get("completed_at"),
            target=row.get("target"),
        )

    @property
    def accepted(self) -> bool:
        """Whether the API accepted the file (its rows were sent)."""
        return self.task_id is not None and self.state in _ACCEPTED_STATES

    def charge(self) -> float:
        """What this job cost: as recorded (a replay records $0), 0 for a job not charged yet."""
        if self.replay_of:
            return 0.0
        return self.charged_cents or 0.0

    def estimate(self) -> float:
        """The estimate the API quoted for this job (a replay records $0)."""
        if self.replay_of or not self.accepted:
            return 0.0
        return self.estimated_cost_cents or 0.0


@dataclass(frozen=True)
class StepFacts:
    """What a run recorded about one step of a sync (its own pass, a "new fields" step, an escalation tier)."""

    run_id: str
    sync_name: str
    #: ``own``, ``fields:<f1,f2>@<tier>`` or ``escalate:<tier>``.
    step: str
    status: str
    rows_by_reason: Mapping[str, int] = field(default_factory=dict)
    rows_released: int = 0
    rows_source_deleted: int = 0
    rows_source_restored: int = 0
    source_deletion: str = ""
    seq: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StepFacts:
        """From a ledger row (``Ledger.step_rows``)."""
        return cls(
            run_id=str(row["run_id"]),
            sync_name=str(row["sync_name"]),
            step=str(row.get("step") or "own"),
            status=_RENAMED.get(str(row.get("status") or "ok"), str(row.get("status") or "ok")),
            rows_by_reason=_json_counts(row.get("rows_by_reason")),
            rows_released=_int(row.get("rows_released")),
            rows_source_deleted=_int(row.get("rows_source_deleted")),
            rows_source_restored=_int(row.get("rows_source_restored")),
            source_deletion=str(row.get("source_deletion") or ""),
            seq=_int(row.get("seq")),
        )


@dataclass(frozen=True)
class ReuseCount:
    """What a run recorded of one merge of stored answers (a row of ``_sixtyfour_sync_reuses``)."""

    run_id: str
    sync_name: str
    rows: int
    questions: int = 0
    #: What the questions would have cost asked; None when no price was known.
    saved_cents: float | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ReuseCount:
        """From a ledger row (``Ledger.reuse_rows``)."""
        return cls(
            run_id=str(row["run_id"]),
            sync_name=str(row["sync_name"]),
            rows=_int(row.get("rows_reused")),
            questions=_int(row.get("questions_reused")),
            saved_cents=_num(row.get("saved_cents")),
        )


@dataclass
class Tally:
    """The counts and money of a set of jobs."""

    jobs: int = 0
    rows_sent: int = 0
    rows_enriched: int = 0
    rows_failed: int = 0
    rows_not_returned: int = 0
    rows_unexpected: int = 0
    rows_merged: int = 0
    #: Rows the API answered (enriched or failed): what fill rates are over.
    returned: int = 0
    estimated_cost_cents: float = 0.0
    charged_cents: float = 0.0
    charged_later_cents: float = 0.0
    #: Submissions the API answered with an earlier job ($0), and their rows.
    replays: int = 0
    replayed_rows: int = 0
    incomplete_rows: int = 0
    rows_quarantined: int = 0
    #: Rows answered by a shared question: they shared their inputs with a row that asked (not paid again).
    rows_deduplicated: int = 0
    filled: dict[str, int] = field(default_factory=dict)
    gated: dict[str, int] = field(default_factory=dict)

    def add(self, job: JobFacts, *, run_id: str, charged_here: bool) -> None:
        """Count ``job`` (``charged_here``: its charge was recorded by the run being accounted)."""
        self.jobs += 1
        if job.accepted:
            self.rows_sent += job.rows
        self.rows_enriched += job.rows_enriched
        self.rows_failed += job.rows_failed
        self.rows_not_returned += job.rows_not_returned
        self.rows_unexpected += job.rows_unexpected
        self.rows_merged += job.rows_merged
        self.returned += job.rows_returned
        self.estimated_cost_cents += job.estimate()
        if charged_here:
            self.charged_cents += job.charge()
        else:
            self.charged_later_cents += job.charge()
        if job.replay:
            self.replays += 1
            self.replayed_rows += job.rows
        if job.missing_columns:
            self.incomplete_rows += job.rows_enriched
        self.rows_quarantined += job.rows_quarantined
        self.rows_deduplicated += job.rows_deduplicated
        for f, n in job.filled.items():
            self.filled[f] = self.filled.get(f, 0) + n
        for f, n in job.gated.items():
            self.gated[f] = self.gated.get(f, 0) + n

    @property
    def saved_cents(self) -> float:
        """What the rows answered by a shared question would have cost asked one by one: at what the questions
        cost here (charged, else estimated) per row sent."""
        if not self.rows_deduplicated or not self.rows_sent:
            return 0.0
        paid = self.charged_cents + self.charged_later_cents or self.estimated_cost_cents
        return round(self.rows_deduplicated * paid / self.rows_sent, 4)

    @property
    def fill_rate(self) -> dict[str, float]:
        """Share of this tally's answers (rows answered) with a value, per field."""
        if not self.returned:
            return {k: 0.0 for k in self.filled}
        return {k: v / self.returned for k, v in self.filled.items()}

    def stats(self) -> dict[str, Any]:
        """A JSON-friendly form (a tier's or a "new fields" step's line)."""
        return {
            "rows_sent": self.rows_sent,
            "rows_enriched": self.rows_enriched,
            "rows_failed": self.rows_failed + self.rows_not_returned,
            "rows_deduplicated": self.rows_deduplicated,
            "saved_cents": self.saved_cents,
            "returned": self.returned,
            "filled": dict(self.filled),
            "fill_rate": {k: round(v, 4) for k, v in self.fill_rate.items()},
            "gated": dict(self.gated),
            "estimated_cost_cents": self.estimated_cost_cents,
            "charged_cents": self.charged_cents,
        }


@dataclass
class SyncAccount:
    """One sync's numbers in one run."""

    name: str
    status: str = "nothing_to_do"
    rows_by_reason: dict[str, int] = field(default_factory=dict)
    #: The jobs this run created.
    own: Tally = field(default_factory=Tally)
    #: The jobs earlier runs created that this run finished (their charge, when this run recorded it).
    resumed: Tally = field(default_factory=Tally)
    #: This run's own jobs by tier (the whole question) and by "new fields" step (``f1,f2`` or ``f1,f2@tier``).
    tiers: dict[str, Tally] = field(default_factory=dict)
    new_fields: dict[str, Tally] = field(default_factory=dict)
    rows_released: int = 0
    rows_source_deleted: int = 0
    rows_source_restored: int = 0
    source_deletion: str = ""
    #: Rows that took a stored answer instead of asking, the questions among them, and what asking would have
    #: cost (``reused_price_known`` False: some were merged without a known price, so the saving is a floor).
    rows_reused: int = 0
    questions_reused: int = 0
    reused_saved_cents: float = 0.0
    reused_price_known: bool = True
    jobs: list[JobFacts] = field(default_factory=list)
    resumed_jobs: list[JobFacts] = field(default_factory=list)
    steps: list[StepFacts] = field(default_factory=list)

    @property
    def rows_selected(self) -> int:
        """Rows the run's selections returned (all steps)."""
        return sum(self.rows_by_reason.values())


@dataclass
class RunAccount:
    """A run's numbers, per sync."""

    run_id: str
    syncs: dict[str, SyncAccount] = field(default_factory=dict)

    def total(self, name: str) -> Any:
        """The sum of one :class:`Tally` attribute of the syncs' own jobs (``rows_sent``, ``charged_cents``...)."""
        return sum(getattr(s.own, name) for s in self.syncs.values())

    @property
    def resumed_charged_cents(self) -> float:
        """What the jobs earlier runs created were charged, as this run recorded it."""
        return sum(s.resumed.charged_cents for s in self.syncs.values())

    def counts(self) -> dict[str, Any]:
        """The run's totals, as the ledger's run row keeps them."""
        return {
            "rows_selected": sum(s.rows_selected for s in self.syncs.values()),
            "rows_sent": self.total("rows_sent"),
            "rows_enriched": self.total("rows_enriched"),
            "rows_failed": self.total("rows_failed"),
            "rows_not_returned": self.total("rows_not_returned"),
            "rows_unexpected": self.total("rows_unexpected"),
            "rows_deduplicated": self.total("rows_deduplicated"),
            "saved_cents": self.total("saved_cents"),
            "rows_reused": sum(s.rows_reused for s in self.syncs.values()),
            "reused_saved_cents": round(sum(s.reused_saved_cents for s in self.syncs.values()), 4),
            "jobs": self.total("jobs"),
            "jobs_resumed": sum(s.resumed.jobs for s in self.syncs.values()),
            "estimated_cost_cents": self.total("estimated_cost_cents"),
            "charged_cents": self.total("charged_cents"),
        }


def sync_status(step_statuses: Iterable[str], *, sent: int = 0) -> str:
    """One rule over a sync's steps: the worst step's status; a sync that sent rows is never ``nothing_to_do``."""
    seen = [s for s in step_statuses if s]
    if not seen:
        return "ok" if sent else "nothing_to_do"
    worst = min(seen, key=lambda s: SEVERITY.index(s) if s in SEVERITY else 0)
    if worst in ("nothing_to_do", "skipped") and sent:
        return "ok"
    return worst


def _counted(step: StepFacts) -> str:
    """A step's status as the sync's counts it: the budget reached while escalating ends the escalation, not the
    sync (its own answers are all in)."""
    if step.step.startswith("escalate:") and step.status == "budget_reached":
        return "ok"
    return step.status


def _charged_here(job: JobFacts, run_id: str, run_finished: Any) -> bool:
    """Whether ``run_id`` recorded ``job``'s charge: its ``charged_by``; in an older ledger without it, the run
    that ended the job, else (the job's own run) whether the job completed before the run ended. One rule for a
    run's own jobs and those it finished for earlier runs: each charge is booked by one run."""
    if job.charged_by is not None:
        return job.charged_by == run_id
    if job.finished_by is not None:
        return job.finished_by == run_id
    if job.run_id != run_id:
        return False
    done, ended = _utc(job.completed_at), _utc(run_finished)
    if done is None or ended is None:
        return True
    return done <= ended


def _utc(value: Any) -> datetime | None:
    """A timestamp as the drivers return it (a datetime, or ISO text), aware, in UTC (naive values are UTC, as
    the ledger writes them)."""
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):  # Python 3.10's fromisoformat does not read the Z suffix
            text = text[:-1] + "+00:00"
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _new_fields_key(job: JobFacts, own_tier: str | None) -> str:
    fields = ",".join(f for f in (job.fields or "").split(",") if f)
    return fields if job.tier in (None, own_tier) else f"{fields}@{job.tier}"


def account(
    run_id: str,
    jobs: Sequence[JobFacts],
    steps: Sequence[StepFacts] = (),
    *,
    run_finished: Any = None,
    own_tiers: Mapping[str, str] | None = None,
    reuses: Sequence[ReuseCount] = (),
) -> RunAccount:
    """The numbers of run ``run_id`` from the ledger's facts.

    ``jobs``: the jobs the run created and those it finished (others are ignored); ``steps``: its steps;
    ``run_finished``: when it ended (for jobs an older ledger recorded without ``charged_by``); ``own_tiers``:
    each sync's own tier (a "new fields" job at another tier is keyed ``fields@tier``); ``reuses``: the merges of
    stored answers the run recorded.
    """
    out = RunAccount(run_id)

    def sync(name: str) -> SyncAccount:
        return out.syncs.setdefault(name, SyncAccount(name))

    for step in sorted(steps, key=lambda s: s.seq):
        if step.run_id != run_id:
            continue
        s = sync(step.sync_name)
        s.steps.append(step)
        for reason, n in step.rows_by_reason.items():
            s.rows_by_reason[reason] = s.rows_by_reason.get(reason, 0) + n
        s.rows_released += step.rows_released
        s.rows_source_deleted += step.rows_source_deleted
        s.rows_source_restored += step.rows_source_restored
        s.source_deletion = step.source_deletion or s.source_deletion
    for job in jobs:
        if job.run_id == run_id:
            s = sync(job.sync_name)
            here = _charged_here(job, run_id, run_finished)
            s.own.add(job, run_id=run_id, charged_here=here)
            s.jobs.append(job)
            if job.fields:
                key = _new_fields_key(job, (own_tiers or {}).get(job.sync_name))
                s.new_fields.setdefault(key, Tally()).add(job, run_id=run_id, charged_here=here)
            else:
                s.tiers.setdefault(job.tier or "", Tally()).add(job, run_id=run_id, charged_here=here)
        elif run_id in (job.finished_by, job.charged_by):
            s = sync(job.sync_name)
            s.resumed.add(job, run_id=run_id, charged_here=_charged_here(job, run_id, run_finished))
            s.resumed_jobs.append(job)
    for reuse in reuses:
        if reuse.run_id != run_id:
            continue
        s = sync(reuse.sync_name)
        s.rows_reused += reuse.rows
        s.questions_reused += reuse.questions
        if reuse.saved_cents is None:
            s.reused_price_known = False
        else:
            s.reused_saved_cents = round(s.reused_saved_cents + reuse.saved_cents, 4)
    for s in out.syncs.values():
        s.status = sync_status((_counted(st) for st in s.steps), sent=s.own.rows_sent + s.rows_reused)
    return out
