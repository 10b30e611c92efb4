"""Records the emulator keeps: submissions, jobs, result files, webhook deliveries, faults."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["InjectedFault", "Job", "ResultFile", "SubmissionRecord", "WebhookDelivery"]


@dataclass(frozen=True)
class SubmissionRecord:
    """One submit attempt as the server saw it, whatever its outcome.

    ``task_id`` is set when the attempt created a job or was answered as a replay of one;
    ``status_code`` is None when the connection was dropped without an answer.
    """

    task_id: str | None
    endpoint: str
    idempotency_key: str | None
    file_sha256: str | None
    row_count: int | None
    replay: bool
    status_code: int | None
    at: float
    detail: str | None = None


@dataclass
class ResultFile:
    """One stage output of a job, on disk under the emulator's data directory."""

    block_number: int
    filename: str
    path: Path
    row_count: int
    content_type: str
    created_at: float
    file_size: int = 0
    preview: list[dict[str, Any]] | None = None
    #: Its place among the files of its block (0 unless the final output is split).
    part: int = 0


@dataclass
class Job:
    """A bulk job: what was submitted, where it stands, what it cost and produced."""

    task_id: str
    run_id: str
    endpoint: str
    tier: str
    org_id: str
    row_count: int
    price_cents: int
    estimate_cents: int
    config: dict[str, Any]
    upload_path: Path
    upload_format: str
    upload_name: str
    file_sha256: str
    idempotency_key: str | None
    cost_units: str
    created_at: float
    due_at: float
    status: str = "running"
    closed_at: float | None = None
    charge_cents: int | None = None
    failed_rows: int | None = None
    error: str | None = None
    files: list[ResultFile] = field(default_factory=list)
    # Links whose expiry is at or before this instant are refused (expire_links).
    links_expire_before: float = 0.0
    #: Into how many files the final output is split, and how /job-status lists them (set from the
    #: settings at submission; the split control changes them).
    result_parts: int = 1
    result_parts_order: str = "in_order"
    #: Test controls: the API lost track of the job (404 everywhere), columns dropped from the final
    #: output, bytes that replace a part of it (part number -> bytes).
    lost: bool = False
    dropped_columns: tuple[str, ...] = ()
    corrupted: dict[int, bytes] = field(default_factory=dict, repr=False)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    @property
    def rows(self) -> int:
        """Rows in the uploaded file."""
        return self.row_count

    @property
    def estimate(self) -> int:
        """The estimate given at submission, in cents."""
        return self.estimate_cents

    @property
    def charge(self) -> int | None:
        """What the job cost, in cents, once it ended (0 when failed or cancelled)."""
        return self.charge_cents

    @property
    def is_terminal(self) -> bool:
        """True once the job completed, failed or was cancelled."""
        return self.status != "running"

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view for the admin endpoints (no credentials in it)."""
        return {
            "task_id": self.task_id,
            "run_id": self.run_id,
            "endpoint": self.endpoint,
            "tier": self.tier,
            "status": self.status,
            "row_count": self.row_count,
            "estimated_cost_cents": self.estimate_cents,
            "charge_cents": self.charge_cents,
            "failed_rows": self.failed_rows,
            "error": self.error,
            "idempotency_key": self.idempotency_key,
            "file_sha256": self.file_sha256,
            "lost": self.lost,
            "dropped_columns": list(self.dropped_columns),
            "corrupted": bool(self.corrupted),
            "corrupted_parts": sorted(self.corrupted),
            "result_parts": self.result_parts,
            "result_parts_order": self.result_parts_order,
            "created_at": self.created_at,
            "closed_at": self.closed_at,
            "files": [
                {
                    "block_number": f.block_number,
                    "filename": f.filename,
                    "row_count": f.row_count,
                    "file_size": f.file_size,
                    "part": f.part,
                }
                for f in self.files
            ],
        }


@dataclass(frozen=True)
class WebhookDelivery:
    """One webhook delivery attempt."""

    event_id: str
    event_type: str
    task_id: str
    url: str
    attempt: int
    status_code: int | None
    error: str | None
    at: float


@dataclass
class InjectedFault:
    """A deterministic fault for the next ``times`` requests matching method and path prefix.

    ``phase="after"`` lets the request take effect (a job is created, a cancel happens) and then
    replaces or drops the response, as when an answer is lost on the way back.
    """

    method: str
    path_prefix: str
    status: int | None = None
    times: int = 1
    drop: bool = False
    delay: float = 0.0
    truncate: bool = False
    retry_after: float | None = None
    phase: str = "before"

    def matches(self, method: str, path: str) -> bool:
        """True when this fault applies to a request."""
        return self.times > 0 and self.method in ("*", method.upper()) and path.startswith(self.path_prefix)
