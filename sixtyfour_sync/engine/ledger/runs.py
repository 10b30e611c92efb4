"""The runs and their steps: one row per run, one per step of each sync it ran."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sixtyfour_sync import __version__
from sixtyfour_sync._redact import sanitize
from sixtyfour_sync.engine.ledger.tables import MAX_ERROR, LedgerBase, utcnow
from sixtyfour_sync.warehouse.session import Session


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus randomness."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


class RunRecords(LedgerBase):
    """Writes and reads ``_sixtyfour_sync_runs`` and ``_sixtyfour_sync_steps``."""

    def open_run(self, run_id: str, command: str, syncs: Sequence[str], session: Session | None = None) -> None:
        """Record the start of a run (status ``running``)."""
        row = {
            "run_id": run_id,
            "command": command,
            "status": "running",
            "syncs": ",".join(syncs),
            "started_at": utcnow(),
            "host": self.host,
            "pid": self.pid,
            "version": __version__,
        }
        with self._session(session) as s:
            s.insert(self.runs, [row])

    def close_run(self, run_id: str, status: str, counts: Mapping[str, Any], error: str | None = None) -> None:
        """Record the outcome and totals of a run."""
        values = {
            "status": status,
            "finished_at": utcnow(),
            "error": None if error is None else sanitize(error, MAX_ERROR),
            **counts,
        }
        with self.adapter.session() as s:
            s.update(self.runs, values, {"run_id": run_id})

    def run_exists(self, run_id: str) -> bool:
        """Whether a run row was written."""
        with self.adapter.session() as s:
            return bool(s.select(self.runs, {"run_id": run_id}, columns=["run_id"]))

    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent runs, newest first."""
        with self.adapter.session() as s:
            rows = s.select(self.runs, order_by=["started_at DESC"])
        return rows[:limit]

    def close_stale_runs(self, live_run_ids: Sequence[str], alive: Callable[[Mapping[str, Any]], bool]) -> list[str]:
        """Mark runs left ``running`` by a process that is gone as ``crashed``; return their ids."""
        closed = []
        with self.adapter.session() as s:
            rows = s.select(self.runs, {"status": "running"}, columns=["run_id", "host", "pid"])
        for row in rows:
            if row["run_id"] in live_run_ids or alive(row):
                continue
            with self.adapter.session() as s:
                n = s.update(
                    self.runs,
                    {"status": "crashed", "finished_at": utcnow(), "error": "the process stopped before the run ended"},
                    {"run_id": row["run_id"], "status": "running"},
                )
            if n:
                closed.append(str(row["run_id"]))
        return closed

    # -- jobs ----------------------------------------------------------------------------------------

    def record_step(self, row: Mapping[str, Any]) -> None:
        """Record what a run did in one step of a sync (once per run, sync, target and step)."""
        self.guard()
        data = dict(row)
        data["recorded_at"] = utcnow()
        step_id = "|".join(str(data.get(k) or "") for k in ("run_id", "sync_name", "target", "step"))
        with self.adapter.session() as s:
            s.delete(self.steps, {"step_id": step_id})
            s.insert(self.steps, [{"step_id": step_id, **data}])

    def step_rows(self, run_id: str) -> list[dict[str, Any]]:
        """What a run recorded of its steps, in order."""
        if not self.adapter.table_exists(self.steps):
            return []
        with self.adapter.session() as s:
            return s.select(self.steps, {"run_id": run_id}, order_by=["seq"])

    def reuse_rows(self, run_id: str) -> list[dict[str, Any]]:
        """The stored answers a run merged instead of asking (engine/reuse/), one row per merge."""
        if not self.adapter.table_exists(self.reuses):
            return []
        with self.adapter.session() as s:
            return s.select(self.reuses, {"run_id": run_id})

    def run_row(self, run_id: str) -> dict[str, Any] | None:
        """The run's row, or None."""
        with self.adapter.session() as s:
            rows = s.select(self.runs, {"run_id": run_id})
        return rows[0] if rows else None
