"""A row of the jobs table, and the error a lost compare-and-set raises."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sixtyfour_sync.engine.jobs.states import JobState
from sixtyfour_sync.errors import SixtyfourSyncError


class LedgerConflictError(SixtyfourSyncError):
    """A ledger row was not in the state the writer expected: another process moved it first."""


@dataclass(frozen=True)
class Job:
    """A row of ``_sixtyfour_sync_jobs``."""

    job_id: str
    run_id: str
    sync_name: str
    state: JobState
    spec_hash: str
    content_hash: str
    idempotency_key: str
    file_name: str
    rows: int
    endpoint: str | None = None
    tier: str | None = None
    salt: str | None = None
    reasons: str | None = None
    task_id: str | None = None
    replay: bool = False
    replay_of: str | None = None
    estimated_cost_cents: float | None = None
    charged_cents: float | None = None
    api_charge_cents: float | None = None
    result_file: str | None = None
    result_format: str | None = None
    missing_columns: str | None = None
    fields: str | None = None
    target: str | None = None
    profile_target: str | None = None
    project: str | None = None
    error: str | None = None
    created_at: datetime | None = None

    def belongs_to(self, target: str | None) -> bool:
        """Whether this job's answers go to ``target`` (a job an older version recorded names none: any)."""
        return target is None or self.target is None or self.target == target

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        """Build from a ``select`` row (unknown columns are ignored)."""

        def num(v: Any) -> float | None:
            return None if v is None else float(v)

        return cls(
            job_id=str(row["job_id"]),
            run_id=str(row["run_id"]),
            sync_name=str(row["sync_name"]),
            state=JobState(str(row["state"])),
            spec_hash=str(row["spec_hash"]),
            content_hash=str(row["content_hash"]),
            idempotency_key=str(row["idempotency_key"]),
            file_name=str(row["file_name"]),
            rows=int(row["rows"] or 0),
            endpoint=row.get("endpoint"),
            tier=row.get("tier"),
            salt=row.get("salt"),
            reasons=row.get("reasons"),
            task_id=row.get("task_id"),
            replay=bool(row.get("replay") or 0),
            replay_of=row.get("replay_of"),
            estimated_cost_cents=num(row.get("estimated_cost_cents")),
            charged_cents=num(row.get("charged_cents")),
            api_charge_cents=num(row.get("api_charge_cents")),
            result_file=row.get("result_file"),
            result_format=row.get("result_format"),
            missing_columns=row.get("missing_columns"),
            target=row.get("target"),
            profile_target=row.get("profile_target"),
            project=row.get("project"),
            fields=row.get("fields"),
            error=row.get("error"),
            created_at=row.get("created_at"),
        )


_JOB_READ = [f.name for f in fields(Job)]
