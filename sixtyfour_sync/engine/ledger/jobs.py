"""The jobs and their row keys: every move of a job is a compare-and-set on the state its writer expects."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from sixtyfour_sync._redact import sanitize
from sixtyfour_sync.engine.jobs.states import ACTIVE, FREED, HELD, TERMINAL, JobState, check_transition
from sixtyfour_sync.engine.ledger import rowkeys
from sixtyfour_sync.engine.ledger.job import _JOB_READ, Job, LedgerConflictError
from sixtyfour_sync.engine.ledger.tables import _STAMPS, INPUT_HASH, KEY_HASH, MAX_ERROR, LedgerBase, utcnow
from sixtyfour_sync.warehouse.session import Session
from sixtyfour_sync.warehouse.types import UpsertPart


class JobRecords(LedgerBase):
    """Writes and reads ``_sixtyfour_sync_jobs`` and ``_sixtyfour_sync_job_keys``."""

    def add_job(self, job: Job, keys: pa.Table | None) -> None:
        """Record a new job (state ``written``, or ``submitting`` when it is sent at once) with its row keys.

        ``keys`` None: they were written already (:meth:`write_keys`, by the thread that made the file). Where
        the warehouse can stage rows inside a transaction, keys and job row are one transaction. Elsewhere
        (Snowflake, BigQuery, Databricks) the keys go first in their own, then the job row: keys left without
        a job by a crash in between are ignored and pruned (:meth:`prune_keys`).
        """
        if job.state not in (JobState.WRITTEN, JobState.SUBMITTING):
            raise ValueError("a new job starts as written or submitting")
        self.guard()
        parts = _key_rows(job.job_id, keys) if keys is not None and keys.num_rows else []
        now = utcnow()
        row: dict[str, Any] = {
            "job_id": job.job_id,
            "run_id": job.run_id,
            "sync_name": job.sync_name,
            "endpoint": job.endpoint,
            "tier": job.tier,
            "spec_hash": job.spec_hash,
            "content_hash": job.content_hash,
            "idempotency_key": job.idempotency_key,
            "salt": job.salt,
            "reasons": job.reasons,
            "fields": job.fields,
            "target": job.target,
            "profile_target": job.profile_target,
            "project": job.project,
            "file_name": job.file_name,
            "rows": job.rows,
            "bytes": 0,
            "state": job.state.value,
            "replay": 0,
            "created_at": now,
            f"{job.state.value}_at": now,
            "updated_at": now,
            "updated_epoch": time.time(),
        }
        if row.get("written_at"):
            del row["written_at"]
        keys_part = _keys_part(parts) if parts else None
        one_transaction = self.adapter.capabilities.transactional_ddl
        if keys_part is not None and not one_transaction:
            self.adapter.upsert(self.keys, ["job_id", "part"], [keys_part])
        with self.adapter.session() as s:
            if keys_part is not None and one_transaction:
                s.upsert(self.keys, ["job_id", "part"], [keys_part])
            s.insert(self.jobs, [row])

    def write_keys(self, job_id: str, keys: pa.Table) -> None:
        """Record the row keys of a job about to be recorded (its own transaction; before the job row).

        ``keys`` has the selection's key hash and input hash columns.
        """
        self.guard()
        if keys.num_rows:
            self.adapter.upsert(self.keys, ["job_id", "part"], [_keys_part(_key_rows(job_id, keys))])

    def prune_keys(self) -> None:
        """Delete the row keys no unfinished or held job needs (those of ended jobs, and orphans).

        Done once at the start and the end of a sync's run rather than with each job's last move: deleting
        a hundred thousand rows at a time, file after file, costs more than the rest of the merge.
        """
        a = self.adapter
        q = a.quote
        keep = ", ".join(f"'{s.value}'" for s in sorted(ACTIVE | HELD))
        sql = (
            f"DELETE FROM {a.table_sql(self.keys)} WHERE {q('job_id')} NOT IN "
            f"(SELECT {q('job_id')} FROM {a.table_sql(self.jobs)} WHERE {q('state')} IN ({keep}))"
        )
        with a.session() as s:
            s.execute(sql)

    def transition(
        self,
        job_id: str,
        expected: JobState,
        new: JobState,
        *,
        session: Session | None = None,
        **values: Any,
    ) -> None:
        """Move a job from ``expected`` to ``new`` (stamping ``<new>_at``) with ``values``, as a compare-and-set.

        Raises :class:`~sixtyfour_sync.engine.jobs.states.IllegalTransitionError` for a move the state machine
        does not allow and :class:`LedgerConflictError` when the row was not in ``expected``.
        """
        check_transition(expected, new)
        data = dict(values)
        data["state"] = new.value
        stamp = f"{new.value}_at"
        now = utcnow()
        if stamp in _STAMPS:
            data[stamp] = now
        if new in TERMINAL or new in HELD:
            data["ended_at"] = now
        self._write(job_id, expected, data, session)

    def annotate(self, job_id: str, state: JobState, *, session: Session | None = None, **values: Any) -> None:
        """Record values on a job that must still be in ``state`` (compare-and-set, no move)."""
        self._write(job_id, state, dict(values), session)

    def _write(self, job_id: str, expected: JobState, data: dict[str, Any], session: Session | None) -> None:
        self.guard()
        if "error" in data and data["error"] is not None:
            data["error"] = sanitize(data["error"], MAX_ERROR)
        data["updated_at"] = utcnow()
        data["updated_epoch"] = time.time()
        with self._session(session) as s:
            n = s.update(self.jobs, data, {"job_id": job_id, "state": expected.value})
        if n == 0:
            actual = self.job(job_id)
            now = "gone" if actual is None else actual.state.value
            raise LedgerConflictError(
                f"job {job_id} was expected to be {expected.value} but is {now}: another run or `cancel` changed it",
                hint="`sixtyfour-sync status` shows the job; run again to pick it up from where it is",
            )

    def discard_job(self, job_id: str, expected: JobState) -> bool:
        """Delete a job that never became work (its submission was refused); True when deleted."""
        self.guard()
        with self.adapter.session() as s:
            n = s.delete(self.jobs, {"job_id": job_id, "state": expected.value})
            s.delete(self.keys, {"job_id": job_id})
        return n != 0

    def job(self, job_id: str) -> Job | None:
        """One job, or None."""
        with self.adapter.session() as s:
            rows = s.select(self.jobs, {"job_id": job_id}, columns=_JOB_READ)
        return Job.from_row(rows[0]) if rows else None

    def jobs_for(
        self,
        *,
        sync_name: str | None = None,
        run_id: str | None = None,
        states: Sequence[JobState | str] | None = None,
        target: str | None = None,
    ) -> list[Job]:
        """Jobs filtered by sync, run, states and target (:meth:`Job.belongs_to`), oldest first."""
        where: dict[str, Any] = {}
        if sync_name is not None:
            where["sync_name"] = sync_name
        if run_id is not None:
            where["run_id"] = run_id
        with self.adapter.session() as s:
            rows = s.select(self.jobs, where, columns=_JOB_READ, order_by=["created_at", "job_id"])
        jobs = [j for j in (Job.from_row(r) for r in rows) if j.belongs_to(target)]
        if states is not None:
            wanted = {JobState(s) for s in states}
            jobs = [j for j in jobs if j.state in wanted]
        return jobs

    def mine(self, job: Job) -> bool:
        """Whether a job belongs to a sync of the command and the target it writes (see :attr:`targets`)."""
        return job.sync_name in self.targets and job.belongs_to(self.targets[job.sync_name])

    def job_by_task(self, task_id: str) -> Job | None:
        """The earliest job that the API answered with ``task_id`` (not counting replays of it)."""
        with self.adapter.session() as s:
            rows = s.select(self.jobs, {"task_id": task_id}, columns=_JOB_READ, order_by=["created_at", "job_id"])
        jobs = [Job.from_row(r) for r in rows]
        originals = [j for j in jobs if not j.replay_of] or jobs
        return originals[0] if originals else None

    def dead_job_for(self, sync_name: str, spec_hash: str, content_hash: str) -> Job | None:
        """The latest job that asked this exact question and ended without merging (rows free to ask again)."""
        where = {"sync_name": sync_name, "spec_hash": spec_hash, "content_hash": content_hash}
        with self.adapter.session() as s:
            rows = s.select(self.jobs, where, columns=_JOB_READ, order_by=["created_at", "job_id"])
        dead = [Job.from_row(r) for r in rows if r["state"] in {f.value for f in FREED}]
        return dead[-1] if dead else None

    def job_rows(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Every column of the jobs (of one run, or all), oldest first: for ``status``."""
        with self.adapter.session() as s:
            return s.select(self.jobs, {"run_id": run_id} if run_id else None, order_by=["created_at", "job_id"])

    def run_job_rows(self, run_id: str) -> list[dict[str, Any]]:
        """The jobs a run created, and those of earlier runs it finished or recorded the charge of."""
        out: dict[str, dict[str, Any]] = {}
        with self.adapter.session() as s:
            for column in ("run_id", "finished_by", "charged_by"):
                for row in s.select(self.jobs, {column: run_id}, order_by=["created_at", "job_id"]):
                    out.setdefault(str(row["job_id"]), row)
        return list(out.values())

    def job_keys(self, job_id: str) -> pa.Table:
        """A job's row keys: ``key`` (the key hash's stored prefix) and ``input_hash`` (empty when pruned)."""
        with self.adapter.session() as s:
            rows = s.select(self.keys, {"job_id": job_id}, columns=["part", "data"])
        return rowkeys.unpack(str(r["data"] or "") for r in sorted(rows, key=lambda r: int(r["part"])))


def _keys_part(rows: list[dict[str, Any]]) -> UpsertPart:
    """The packed parts as one bulk insert (a few rows of up to 48 KB each: one statement, not many)."""
    data = pa.table(
        {
            "job_id": pa.array([r["job_id"] for r in rows], pa.string()),
            "part": pa.array([r["part"] for r in rows], pa.int64()),
            "data": pa.array([r["data"] for r in rows], pa.string()),
        }
    )
    return UpsertPart(data, ["data"], insert_only=True, unique_keys=True)


def _key_rows(job_id: str, keys: pa.Table) -> list[dict[str, Any]]:
    parts = rowkeys.pack(keys.column(KEY_HASH), keys.column(INPUT_HASH))
    return [{"job_id": job_id, "part": i, "data": text} for i, text in enumerate(parts)]
