"""``sixtyfour-sync cancel``: stopping a recorded job on purpose, outside a run.

Every state it writes goes through :func:`~sixtyfour_sync.engine.jobs.driver.record_move`, the one function the
run's driver writes job states with (compare-and-set on the state the job was read in, stamped with the run
that moved it). A running job is moved to ``cancelling`` before the API is asked, so a crash between the two
leaves a job the next run polls; a job the API already finished stays for the next run to merge; a file never
sent is cancelled without a call; a job whose submission may be under way is left alone.
"""

from __future__ import annotations

from typing import Any

from sixtyfour_sync.api import ConflictError, NotFoundError, SixtyfourClient
from sixtyfour_sync.engine.jobs.driver import record_move
from sixtyfour_sync.engine.jobs.states import JobState
from sixtyfour_sync.engine.ledger.store import Job, Ledger
from sixtyfour_sync.errors import SixtyfourSyncError

__all__ = ["cancel_job", "cancel_row"]

S = JobState


def cancel_row(job: Job, **values: Any) -> dict[str, Any]:
    """What ``cancel`` reports of one job."""
    return {"job_id": job.job_id, "task_id": job.task_id, "sync": job.sync_name, **values}


def cancel_job(ledger: Ledger, api: SixtyfourClient, job: Job, run_id: str) -> dict[str, Any]:
    """Cancel one recorded job (the caller holds its sync's lease); what happened, as :func:`cancel_row`."""
    if job.state is S.WRITTEN:
        record_move(ledger, run_id, job.job_id, S.WRITTEN, S.CANCELLED, charged_cents=0.0,
                    error="cancelled before it was sent")  # fmt: skip
        return cancel_row(job, status="cancelled")
    if job.state is S.SUBMITTING or not job.task_id:
        return cancel_row(
            job, error="its submission may have reached the API: left for the next run, which finishes it"
        )
    record_move(ledger, run_id, job.job_id, S.SUBMITTED, S.CANCELLING)
    try:
        answer = api.cancel(job.task_id)
    except ConflictError as exc:  # already finished: the next run merges what it paid for
        record_move(ledger, run_id, job.job_id, S.CANCELLING, S.SUBMITTED, error=f"not cancelled: {exc}")
        return cancel_row(job, error=f"not cancelled: the job already ended ({exc}); the next run merges it")
    except NotFoundError as exc:
        record_move(ledger, run_id, job.job_id, S.CANCELLING, S.LOST, error=f"job-status answered 404 on cancel: {exc}")
        return cancel_row(job, error=f"the API does not know the job ({exc}); marked lost")
    except SixtyfourSyncError as exc:
        record_move(ledger, run_id, job.job_id, S.CANCELLING, S.SUBMITTED, error=f"cancel failed: {exc}")
        return cancel_row(job, error=str(exc))
    record_move(ledger, run_id, job.job_id, S.CANCELLING, S.CANCELLED, api_status=answer.status, charged_cents=0.0)
    return cancel_row(job, status="cancelled")
