"""What tests and the admin routes do to the emulator: finish, fail, cancel, forget or break a job, split or trim
its result, manage keys and balances, and inject faults (docs/emulator.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from sixtyfour_sync.emulator.accounts import Accounts, key_id
from sixtyfour_sync.emulator.faults import FaultPlan
from sixtyfour_sync.emulator.generate import make_plan
from sixtyfour_sync.emulator.models import InjectedFault, Job
from sixtyfour_sync.emulator.settings import (
    EmulatorSettings,
    ResultPartsOrder,
    check_result_parts,
)


class Controls:
    """The test controls of :class:`~sixtyfour_sync.emulator.core.Emulator`."""

    settings: EmulatorSettings
    _accounts: Accounts
    _faults: FaultPlan

    def _job(self, task_id: str) -> Job:  # pragma: no cover - the emulator's
        raise NotImplementedError

    def _end(self, task_id: str, outcome: str, message: str | None = None) -> Job:  # pragma: no cover
        raise NotImplementedError

    def _produce(self, job: Job) -> None:  # pragma: no cover - the emulator's
        raise NotImplementedError

    # ------------------------------------------------------------------ test controls: jobs

    def complete(self, task_id: str) -> Job:
        """Finish a running job now (its output is generated), as if its time had come."""
        return self._end(task_id, "completed")

    def fail(self, task_id: str, message: str = "Enrichment pipeline failed") -> Job:
        """Make a running job fail now (nothing is charged), even while a client polls it."""
        return self._end(task_id, "failed", message)

    def cancel_job(self, task_id: str) -> Job:
        """Cancel a running job now, as the server would (nothing is charged)."""
        return self._end(task_id, "cancelled", "Job was cancelled")

    def expire_links(self, task_id: str) -> None:
        """Make every download link of the job handed out so far expire now."""
        job = self._job(task_id)
        with job.lock:
            job.links_expire_before = math.floor(self.settings.clock()) + self.settings.download_ttl_seconds

    def forget_job(self, task_id: str) -> Job:
        """Lose track of a job: every API endpoint answers 404 for it from now on (the admin ones still see it).

        Its Idempotency-Key still replays its task id; call :meth:`forget_idempotency_keys` too for a
        resubmission to start a new job.
        """
        job = self._job(task_id)
        with job.lock:
            job.lost = True
        return job

    def corrupt_result(self, task_id: str, data: bytes, part: int = 0) -> Job:
        """Replace the bytes of the job's final output (block 3; ``part`` of it when split) with ``data``; that
        file's inline preview goes.

        On a running job this takes effect when it completes; a failed or cancelled job has no output.
        """
        if isinstance(part, bool) or not isinstance(part, int) or part < 0:
            raise ValueError(f"part must be a part number (0 for the first file), got {part!r}")
        job = self._job(task_id)
        with job.lock:
            if job.status in ("failed", "cancelled"):
                raise ValueError(f"job {task_id} is {job.status}: it has no result to corrupt")
            if part >= job.result_parts:
                raise ValueError(f"job {task_id}'s result is in {job.result_parts} file(s): it has no part {part}")
            job.corrupted[part] = bytes(data)
            if job.status == "completed":
                final = next(f for f in job.files if f.block_number == 3 and f.part == part)
                final.path.write_bytes(data)
                final.file_size = len(data)
                final.preview = None
        return job

    def split_result(self, task_id: str, parts: int, order: ResultPartsOrder | None = None) -> Job:
        """Split the job's final output (block 3) into ``parts`` files of about equal rows (``parts=1``: one
        file again), listed by /job-status in ``order`` (None: unchanged).

        Each file is a whole CSV with its own header; more files than rows leaves some with only a header.
        On a running job this takes effect when it completes; on a completed one the output is rewritten.
        """
        job = self._job(task_id)
        check_result_parts(parts, job.result_parts_order if order is None else order)
        with job.lock:
            if job.status in ("failed", "cancelled"):
                raise ValueError(f"job {task_id} is {job.status}: it has no result")
            lost = sorted(p for p in job.corrupted if p >= parts)
            if lost:
                raise ValueError(f"job {task_id} has a corrupted part {lost[0]}: it cannot be split in {parts}")
            changed = parts != job.result_parts
            job.result_parts = parts
            if order is not None:
                job.result_parts_order = order
            if changed and job.status == "completed":
                self._produce(job)
        return job

    def drop_result_columns(self, task_id: str, names: Sequence[str]) -> Job:
        """Leave struct (or ``<field>_confidence``) columns out of the job's final output and inline preview.

        On a running job this takes effect when it completes; on a completed one the output is rewritten.
        """
        if isinstance(names, str):
            raise TypeError("names must be a list of column names, not one string")
        job = self._job(task_id)
        config = job.config
        plan = make_plan(
            [],
            config.get("struct"),
            endpoint=job.endpoint,
            field_confidence=bool(config.get("field_confidence")),
            columns=config.get("columns"),
        )
        unknown = [n for n in names if n not in plan.enriched_columns]
        if unknown:
            raise ValueError(
                f"not enriched columns of job {task_id}: {', '.join(unknown)} "
                f"(it has {', '.join(plan.enriched_columns)})"
            )
        with job.lock:
            if job.status in ("failed", "cancelled"):
                raise ValueError(f"job {task_id} is {job.status}: it has no result")
            job.dropped_columns = tuple(dict.fromkeys([*job.dropped_columns, *names]))
            if job.status == "completed":
                self._produce(job)
        return job

    # ------------------------------------------------------------------ test controls: keys and faults

    def forget_idempotency_keys(self) -> int:
        """Forget every Idempotency-Key now (the real API may keep them only a day); returns how many."""
        return self._accounts.forget_idempotency_keys()

    def add_key(self, api_key: str, *, same_org_as: str | None = None) -> None:
        """Accept ``api_key`` from now on; with ``same_org_as`` it sees that key's jobs and balance (rotation)."""
        self._accounts.add_key(api_key, same_org_as=same_org_as)

    def revoke_key(self, api_key: str) -> None:
        """Answer 401 to ``api_key`` from now on, though it worked before; its jobs stay."""
        self._accounts.revoke_key(api_key)

    def inject(
        self,
        method: str,
        path_prefix: str,
        status: int | None = None,
        *,
        times: int = 1,
        drop: bool = False,
        delay: float = 0.0,
        truncate: bool = False,
        retry_after: float | None = None,
        phase: str = "before",
    ) -> InjectedFault:
        """Make the next ``times`` requests matching ``method`` ("*" for any) and ``path_prefix`` fail.

        ``status`` answers with the documented body for that code (429/503 carry Retry-After);
        ``drop`` closes the connection without an answer; ``delay`` sleeps first; ``truncate``
        sends fewer bytes than Content-Length announces, then closes. ``phase="after"`` applies
        the fault once the request took effect (a submission created its job).
        """
        if phase not in ("before", "after"):
            raise ValueError("phase must be 'before' or 'after'")
        if times < 1:
            raise ValueError("times must be at least 1")
        fault = InjectedFault(method.upper(), path_prefix, status, times, drop, delay, truncate, retry_after, phase)
        self._faults.add(fault)
        return fault

    def clear_faults(self) -> None:
        """Forget every injected fault that has not fired yet."""
        self._faults.clear()

    def balance_cents(self, api_key: str) -> int:
        """The spendable balance of the key's organisation (balance minus running jobs' holds)."""
        return self._accounts.spendable(self._accounts.org_for(key_id(api_key)))
