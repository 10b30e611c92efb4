"""What a run report shows, as plain data: filled in by :mod:`.collect`, turned into HTML by :mod:`.render`.

Everything here is pure and immutable, so a page can be rendered (and tested) without a warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "CONFIDENCE_BUCKETS",
    "AttentionJob",
    "ErrorLine",
    "FieldStats",
    "Report",
    "RunRow",
    "SyncReport",
    "TierFill",
    "TierJobs",
    "bucket_label",
]

#: Confidence histograms have ten buckets: 0-9, 10-19, ..., 80-89 and 90-100.
CONFIDENCE_BUCKETS = 10


def bucket_label(i: int) -> str:
    """The label of confidence bucket ``i`` (``"0-9"`` ... ``"90-100"``)."""
    lo = i * 10
    return f"{lo}-{100 if i == CONFIDENCE_BUCKETS - 1 else lo + 9}"


@dataclass(frozen=True)
class RunRow:
    """One run, with the work and money of its jobs (of the selected syncs).

    A job's rows and charge belong to the run that submitted it. ``charged_later_cents`` is what those jobs
    were charged after the run had ended: a later run (or a webhook delivery) finished them.
    """

    run_id: str
    status: str
    syncs: tuple[str, ...]
    started_at: datetime | None
    finished_at: datetime | None
    jobs: int = 0
    jobs_resumed: int = 0
    replays: int = 0
    rows_sent: int = 0
    rows_enriched: int = 0
    rows_failed: int = 0
    rows_not_returned: int = 0
    #: Rows answered by a shared question (their inputs were another row's, asked once), and what that saved.
    rows_deduplicated: int = 0
    saved_cents: float = 0.0
    #: Rows that took a stored answer (the answer store), and what asking their questions would have cost.
    rows_reused: int = 0
    reused_saved_cents: float = 0.0
    estimated_cents: float = 0.0
    charged_cents: float = 0.0
    charged_later_cents: float = 0.0
    error: str | None = None

    @property
    def duration_seconds(self) -> float | None:
        """Wall time of the run, or None while it runs (or when it left no end)."""
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0.0, (self.finished_at - self.started_at).total_seconds())


@dataclass(frozen=True)
class FieldStats:
    """One struct field in the target: how often it has a value, and how confident the answers are."""

    name: str
    column: str
    #: Whether the column exists in the target (a field added since the last run has none yet).
    in_table: bool
    filled: int = 0
    #: Rows per confidence bucket, or None when the target has no ``<field>_confidence`` column.
    confidence: tuple[int, ...] | None = None
    confidence_avg: float | None = None

    @property
    def confidence_count(self) -> int:
        """Rows with a confidence value."""
        return sum(self.confidence or ())


@dataclass(frozen=True)
class TierFill:
    """Rows whose latest answer came from one tier (the target's tier column), and what they filled."""

    tier: str
    rows: int
    filled: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class TierJobs:
    """The ledger's jobs of one sync at one tier."""

    tier: str
    jobs: int
    rows: int
    rows_enriched: int
    rows_failed: int
    charged_cents: float


@dataclass(frozen=True)
class AttentionJob:
    """A job held for a person (lost, refused on resume, unreadable result)."""

    job_id: str
    run_id: str
    state: str
    task_id: str | None
    rows: int
    charged_cents: float | None
    error: str | None
    updated_at: datetime | None


@dataclass(frozen=True)
class ErrorLine:
    """One error recorded in the ledger (already sanitised)."""

    when: datetime | None
    run_id: str
    state: str
    task_id: str | None
    message: str


@dataclass(frozen=True)
class EvaluationCell:
    """RECON's counts for one field, tier and confidence band of an evaluation."""

    field: str
    tier: str
    band: str
    correct: int
    wrong: int
    missing: int


@dataclass(frozen=True)
class Evaluation:
    """The latest ``sixtyfour-sync evaluate`` of a sync, as the ledger keeps it."""

    evaluation_id: str
    evaluated_at: datetime | None
    labels: str
    cells: tuple[EvaluationCell, ...]
    target_precision: float | None = None
    #: field -> (suggested min_confidence or None, stored values it would gate or None)
    suggestions: tuple[tuple[str, int | None, int | None], ...] = ()

    def fields(self) -> list[str]:
        """The scored fields, in the order first seen."""
        return list(dict.fromkeys(c.field for c in self.cells))

    def sums(self, field: str, *, tier: str | None = None, band: str | None = None) -> tuple[int, int, int]:
        """(correct, wrong, missing) of a field, over one tier or band or all."""
        picked = [
            c
            for c in self.cells
            if c.field == field and (tier is None or c.tier == tier) and (band is None or c.band == band)
        ]
        return (sum(c.correct for c in picked), sum(c.wrong for c in picked), sum(c.missing for c in picked))


@dataclass(frozen=True)
class SyncReport:
    """One sync: its target's contents and its jobs."""

    name: str
    endpoint: str
    tier: str
    target: str
    field_confidence: bool
    target_exists: bool = False
    #: Every row of the target table (other syncs' rows too, when the table is shared).
    table_rows: int = 0
    #: Rows this sync has answered (its status column is set).
    rows: int = 0
    fields: tuple[FieldStats, ...] = ()
    by_status: tuple[tuple[str, int], ...] = ()
    #: Rows by the target's tier column, None when the target has none.
    by_tier: tuple[TierFill, ...] | None = None
    tier_jobs: tuple[TierJobs, ...] = ()
    attention: tuple[AttentionJob, ...] = ()
    jobs_in_flight: int = 0
    rows_in_flight: int = 0
    errors: tuple[ErrorLine, ...] = ()
    estimated_cents: float = 0.0
    charged_cents: float = 0.0
    #: Why part of the section could not be filled (e.g. the target could not be read), or None.
    problem: str | None = None
    #: The latest evaluation of the answers against labels (``sixtyfour-sync evaluate``), or None.
    evaluation: Evaluation | None = None

    @property
    def enriched(self) -> int:
        """Rows whose status is ``enriched``."""
        return sum(n for s, n in self.by_status if s == "enriched")

    @property
    def has_confidence(self) -> bool:
        """Whether any field has a confidence column."""
        return any(f.confidence is not None for f in self.fields)


@dataclass(frozen=True)
class Report:
    """Everything on the page."""

    project: str
    generated_at: datetime
    warehouses: tuple[str, ...]
    runs: tuple[RunRow, ...] = ()
    syncs: tuple[SyncReport, ...] = ()
    #: Whether any selected sync's warehouse has a ledger at all.
    ledger_found: bool = False
    #: How many recent runs were asked for (the page says when there may be more).
    run_limit: int = 0
    version: str = ""

    @property
    def rows_enriched(self) -> int:
        """Rows marked ``enriched`` in the targets now."""
        return sum(s.enriched for s in self.syncs)

    @property
    def charged_cents(self) -> float:
        """Everything the selected syncs' jobs were charged, as the ledger records it."""
        return sum(s.charged_cents for s in self.syncs)

    @property
    def estimated_cents(self) -> float:
        """The API's estimates for every job of the selected syncs."""
        return sum(s.estimated_cents for s in self.syncs)

    @property
    def attention(self) -> int:
        """Jobs needing a person, over every sync."""
        return sum(len(s.attention) for s in self.syncs)

    @property
    def in_flight(self) -> int:
        """Unfinished jobs, over every sync."""
        return sum(s.jobs_in_flight for s in self.syncs)

    def runs_oldest_first(self) -> list[RunRow]:
        """The runs in time order, for charts."""
        return sorted(self.runs, key=lambda r: (r.started_at is None, r.started_at or self.generated_at, r.run_id))
