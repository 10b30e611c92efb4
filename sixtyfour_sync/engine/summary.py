"""What a plan or a run reports: counts, costs, fill rates, per-job states; and the exit code."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["JobOutcome", "RunResult", "SyncPlan", "SyncResult"]


@dataclass
class SyncPlan:
    """What ``plan`` found for one sync (no paid call made)."""

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
    unfinished_jobs: int = 0
    key_problems: str = ""
    target_exists: bool = False
    new_columns: list[str] = field(default_factory=list)

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


@dataclass
class JobOutcome:
    """One file's fate in a run."""

    job_id: str
    file_name: str
    rows: int
    state: str
    task_id: str | None = None
    replay: bool = False
    estimated_cost_cents: float | None = None
    charged_cents: float | None = None
    rows_enriched: int = 0
    rows_failed: int = 0
    rows_not_returned: int = 0
    rows_unexpected: int = 0
    error: str | None = None


@dataclass
class SyncResult:
    """The outcome of one sync in a run."""

    name: str
    status: str = "ok"  # ok | nothing_to_do | partial | failed | budget | no_credits | skipped
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
    returned: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    resumed_jobs: int = 0

    @property
    def rows_selected(self) -> int:
        """Rows the selection returned."""
        return sum(self.rows_by_reason.values())

    @property
    def fill_rate(self) -> dict[str, float]:
        """Share of returned rows with a value, per struct field."""
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
            "fill_rate": {k: round(v, 4) for k, v in self.fill_rate.items()},
            "jobs": [vars(j) for j in self.jobs],
            "resumed_jobs": self.resumed_jobs,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
        }


@dataclass
class RunResult:
    """The outcome of a ``run``: what orchestrators read."""

    run_id: str
    syncs: list[SyncResult] = field(default_factory=list)
    duration_seconds: float = 0.0
    error: str | None = None

    @property
    def status(self) -> str:
        """``success``, ``partial`` or ``failed`` (CONTRACT.md's exit codes 0, 3, 1)."""
        if self.error or any(s.status in ("failed", "budget", "no_credits") for s in self.syncs):
            return "failed"
        if any(s.status == "partial" for s in self.syncs):
            return "partial"
        return "success"

    @property
    def exit_code(self) -> int:
        """0 success, 1 failure, 3 partial success."""
        return {"success": 0, "failed": 1, "partial": 3}[self.status]

    @property
    def estimated_cost_cents(self) -> float:
        """Sum of the estimates of the files submitted in this run."""
        return sum(s.estimated_cost_cents for s in self.syncs)

    @property
    def charged_cents(self) -> float:
        """Sum of the charges of the jobs completed in this run."""
        return sum(s.charged_cents for s in self.syncs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "exit_code": self.exit_code,
            "duration_seconds": round(self.duration_seconds, 3),
            "estimated_cost_cents": self.estimated_cost_cents,
            "charged_cents": self.charged_cents,
            "error": self.error,
            "syncs": [s.to_dict() for s in self.syncs],
        }
