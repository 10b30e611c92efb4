"""Driving one job through its states: submit, poll, download, merge, each move recorded first.

Every move is a compare-and-set in the ledger (:meth:`Ledger.transition`) made on the main thread before the
side effect that follows it; the API calls run on worker threads and come back as events
(:mod:`sixtyfour_sync.engine.jobs.scheduler`). Money rules kept here:

- a file refused by the API is not charged: it never became work, so before the run's first accepted request
  it leaves no trace in the ledger, and afterwards it is recorded ``rejected``;
- a replay of another job's Idempotency-Key is booked as a replay ($0 new charge), never as a second charge;
- 401/403 while polling or downloading stop the run and leave every job as it was (a valid key finishes them);
  a 404 on job-status makes the job ``lost``, its rows held until ``run --retry-lost``;
- 429/5xx on a submission keep the job ``submitting`` and try again later in the same run, with its key;
- a result that cannot be read is downloaded once more, then the job is ``result_unreadable`` (its rows held)
  and the other jobs go on.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from sixtyfour_sync._redact import sanitize
from sixtyfour_sync.api import (
    AuthenticationError,
    ConflictError,
    FatalApiError,
    InsufficientCreditsError,
    JobPoller,
    JobStatus,
    NotFoundError,
    PermissionDeniedError,
    ResultDownload,
    RetryableApiError,
    SubmitResult,
    UnprocessableEntityError,
)
from sixtyfour_sync.api.errors import ApiError, DownloadError
from sixtyfour_sync.engine.context import SyncContext
from sixtyfour_sync.engine.events import ApiAnswer, Call
from sixtyfour_sync.engine.failpoints import failpoint
from sixtyfour_sync.engine.jobs.states import JobState
from sixtyfour_sync.engine.jobs.tracked import Host, Tracked, Unreadable, record_move
from sixtyfour_sync.engine.results import result_files
from sixtyfour_sync.engine.results.fetch import fetch_work
from sixtyfour_sync.engine.results.merger import Merger
from sixtyfour_sync.engine.results.upsert import MergePlan
from sixtyfour_sync.errors import ApiKeyRefusedError, ConfigError
from sixtyfour_sync.warehouse.session import Session

__all__ = ["JobDriver", "Tracked", "Unreadable", "record_move"]

log = logging.getLogger("sixtyfour_sync.engine")
S = JobState
#: A failed download is tried again after this many seconds, times the attempts so far (three in a run).
DOWNLOAD_RETRY_SECONDS = 10.0


class JobDriver:
    """Moves tracked jobs through the state machine for one sync."""

    def __init__(self, ctx: SyncContext, host: Host) -> None:
        self.ctx = ctx
        self.host = host
        self.jobs: dict[str, Tracked] = {}
        self.merger = Merger(ctx, self)
        self._parsing = threading.BoundedSemaphore(2)
        self.accepted_any = False
        #: Set when the API refused the key: the run stops, every job stays as it is.
        self.key_refused: ApiKeyRefusedError | None = None

    # ------------------------------------------------------------------ bookkeeping

    def move(self, t: Tracked, new: JobState, *, session: Session | None = None, **values: Any) -> None:
        """Record ``t``'s move to ``new`` (compare-and-set on its current state), then adopt it.

        The run that records a job's charge (``completed``) or its end is recorded with it: a run's numbers
        (engine/ledger/accounting.py) tell its own charges from those of jobs it finished for earlier runs.
        """
        record_move(self.ctx.ledger, self.ctx.run_id, t.job_id, t.state, new, session=session, **values)
        t.state = new
        t.outcome.state = new.value

    def partial(self, message: str) -> None:
        """Record an error that leaves the sync partly done (exit 3)."""
        r = self.ctx.result
        r.errors.append(message)
        if r.status in ("ok", "nothing_to_do"):
            r.status = "partial"

    def track(self, t: Tracked) -> Tracked:
        """Start following a job."""
        self.jobs[t.job_id] = t
        self.ctx.result.jobs.append(t.outcome)
        return t

    def waiting(self) -> list[Tracked]:
        """Jobs with something left to do in this run."""
        return [t for t in self.jobs.values() if t.busy or t.action is not None]

    def due(self, now: float) -> list[Tracked]:
        """Jobs whose next call is due."""
        return [t for t in self.jobs.values() if not t.busy and t.action is not None and t.due <= now]

    def next_due(self) -> float | None:
        """When the next call is due (monotonic), or None."""
        times = [t.due for t in self.jobs.values() if not t.busy and t.action is not None]
        return min(times) if times else None

    def dispatch_due(self, now: float, *, stopping: bool) -> None:
        """Make every call that is due (none once the run is stopping)."""
        if stopping:
            return
        for t in self.due(now):
            action, t.action = t.action, None
            if action == "poll":
                self.poll(t)
            elif action == "submit":
                self.submit(t)
            elif action == "download":
                self.download(t)
            elif action == "cancel":
                self.cancel(t)

    def handle(self, answer: ApiAnswer) -> None:
        """An API call's answer (or exception) for the job it was made for."""
        t: Tracked = answer.subject
        t.busy = False
        handler = {
            Call.SUBMIT: self.on_submitted,
            Call.POLL: self.on_polled,
            Call.DOWNLOAD: self.on_downloaded,
            Call.CANCEL: self.on_cancelled,
        }[answer.call]
        handler(t, answer.value)

    def record_completed(self, t: Tracked, session: Session | None = None) -> None:
        """Record ``completed`` (and the charge) for a job the API finished, if not recorded yet."""
        done = t.extra.pop("completed", None)
        if done is not None and t.state is not S.COMPLETED:
            self.move(t, S.COMPLETED, session=session, **done)

    def record_all_completed(self) -> None:
        """Before the run leaves: every job known to be completed (paid) is recorded so."""
        for t in self.jobs.values():
            if "completed" in t.extra and not t.busy:
                self.record_completed(t)

    def _later(self, t: Tracked, action: str, delay: float) -> None:
        t.action = action
        t.due = time.monotonic() + max(0.0, delay)

    # ------------------------------------------------------------------ submit

    def submit(self, t: Tracked) -> None:
        """Send ``t``'s file (recording ``submitting`` first); the answer arrives as an event."""
        ctx = self.ctx
        if ctx.lease is not None and t.state is not S.SUBMITTING:
            ctx.lease.confirm()
        if t.file is None:
            raise RuntimeError(f"job {t.job_id}: no file to submit")
        if t.state is S.WRITTEN:
            self.move(t, S.SUBMITTING)
            failpoint("submitting")
        path, key, spec = t.file, t.job.idempotency_key, ctx.spec
        config = ctx.api_config
        t.busy = True
        t.attempts += 1
        # The config was checked against the API's rules before anything was written, and the file was made
        # here within the limits: no need to count its rows again.
        ctx.scheduler.call(Call.SUBMIT, t, lambda: ctx.client.submit(spec.endpoint, path, config, key, validate=False))

    def on_submitted(self, t: Tracked, value: SubmitResult | BaseException) -> None:
        """Record the API's answer to a submission."""
        ctx = self.ctx
        if t.holds_slot:
            t.holds_slot = False
            self.host.release_slot()
        if isinstance(value, BaseException):
            self._submit_failed(t, value)
            return
        failpoint("answered")  # the API has the job; the ledger does not know yet
        t.failing_since = None
        replay_of, free = self._replay(t, value)
        if free:
            estimate: float | None = 0.0  # the earlier job is the one that pays
        elif value.estimated_cost_cents is not None:
            estimate = float(value.estimated_cost_cents)
        elif value.estimated_cost_credits is not None:
            estimate = float(value.estimated_cost_credits) * 100.0
        else:  # our own earlier attempt, whose answer was lost: the original upload's estimate stands
            price = self.host.price
            estimate = t.job.estimated_cost_cents or (None if price is None else round(price * t.job.rows, 2))
        ctx.recorder.ensure()
        self.accepted_any = True
        t.task_id, t.estimate, t.replay_of, t.free = value.task_id, estimate, replay_of, free
        self.move(
            t,
            S.SUBMITTED,
            task_id=value.task_id,
            replay=int(free),
            replay_of=replay_of,
            estimated_cost_cents=estimate,
            api_status=value.status,
        )
        failpoint("submitted")
        # The estimate replaces what was held for the file before the files waiting for the price are fitted:
        # they must see this job's cost, or the budget would be overrun by it.
        self.host.spend((estimate or 0.0) - t.reserved)
        t.reserved = 0.0
        quoted = value.estimated_cost_cents is not None or value.estimated_cost_credits is not None
        quoted_price: float | None = None
        if quoted and estimate is not None and t.job.rows and not free and not value.is_replay:
            quoted_price = estimate / t.job.rows
            known = self.host.price
            if known is None or abs(known - quoted_price) > 1e-9:  # the ledger keeps it once, not once per file
                ctx.ledger.learn_price(
                    ctx.spec.endpoint, ctx.spec.tier, quoted_price, job_id=t.job_id, sync_name=ctx.name
                )
        self.host.answered(quoted_price)
        o = t.outcome
        o.task_id, o.replay, o.replay_of, o.estimated_cost_cents = value.task_id, free, replay_of, estimate
        if not t.resumed:
            ctx.result.rows_sent += t.job.rows
            ctx.result.estimated_cost_cents += estimate or 0.0
            if free:
                ctx.result.replays += 1
        ctx.reporter.on("submitted", ctx.name, rows=t.job.rows, replay=free, task_id=value.task_id)
        t.poller = JobPoller(initial=ctx.settings.poll_interval)
        if ctx.settings.no_wait:
            return  # recorded as submitted: a webhook receiver or the next run finishes it
        self._later(t, "poll", t.poller.next_delay(None) or 0.0)

    def _replay(self, t: Tracked, value: SubmitResult) -> tuple[str | None, bool]:
        """Whether the API's answer is a replay of another job ($0 to this one), and the earlier job when this
        ledger has it.

        An answer that names an earlier job is this job's own upload when an earlier attempt of it may have
        reached the API (a retry after a timeout or a 5xx, or a run that died while submitting): then this job
        is the one that pays. Otherwise another submission asked the same question first, in this ledger or in
        another (dev and prod asking the same rows): a replay, $0 new charge.
        """
        if not value.is_replay:
            return None, False
        earlier = self.ctx.ledger.job_by_task(value.task_id)
        if earlier is not None and earlier.job_id != t.job_id:
            return earlier.job_id, True
        if earlier is not None:  # this job's own task: recorded before, its answer lost
            return None, False
        own_earlier = value.earlier_attempt or t.attempts > 1 or bool(t.extra.get("may_have_landed"))
        return None, not own_earlier

    def _submit_failed(self, t: Tracked, exc: BaseException) -> None:
        ctx = self.ctx
        if isinstance(exc, RetryableApiError):
            now = time.monotonic()
            t.failing_since = t.failing_since or now
            if now - t.failing_since > ctx.settings.submit_retry_seconds:
                self.partial(
                    f"submitting {t.label} failed for {now - t.failing_since:.0f}s ({exc}); it stays `submitting` "
                    "and the next run sends it again with the same Idempotency-Key"
                )
                self.host.answered(None)
                return
            wait = exc.retry_after if exc.retry_after is not None else min(300.0, 15.0 * 2 ** min(t.attempts, 4))
            ctx.note(f"submitting {t.label} failed ({exc}); trying again in {wait:.0f}s", "warning")
            self._later(t, "submit", max(wait, 1.0))
            return
        if isinstance(exc, AuthenticationError) and (t.resumed or self.accepted_any):
            # The key worked before (or this file may already be with the API under it): keep the job
            # `submitting`, so the next run with a valid key resends it with the same Idempotency-Key.
            self.key_refused = ApiKeyRefusedError(
                f"the API key was refused while submitting {t.label} ({exc}); jobs in flight are kept and the "
                "next run with a valid key finishes them"
            )
            return
        if isinstance(exc, (ConflictError, UnprocessableEntityError)) and t.resumed:
            self.move(
                t,
                S.NEEDS_ATTENTION,
                error=f"the API refused to resume this file under its Idempotency-Key: {exc}. The rebuilt file "
                "probably differs from the one first sent (the source changed). Its rows are held: "
                "`sixtyfour-sync run --retry-lost` asks them again as a new question",
            )
            self.host.spend(-t.reserved)
            t.reserved = 0.0
            self.partial(f"{t.label}: needs attention: the API refused its stored Idempotency-Key ({exc})")
            return
        if isinstance(exc, (FatalApiError, InsufficientCreditsError, ConfigError)):
            self._refused(t, exc)
            return
        raise exc

    def _refused(self, t: Tracked, exc: BaseException) -> None:
        """The API (or the local checks) refused the file: nothing was charged."""
        ctx = self.ctx
        self.host.spend(-t.reserved)
        t.reserved = 0.0
        self.host.answered(None)
        if not self.accepted_any and not t.resumed:
            ctx.ledger.discard_job(t.job_id, t.state)
            t.state = S.REJECTED
            t.outcome.state = S.REJECTED.value
        else:
            self.move(t, S.REJECTED, error=str(exc))
        t.outcome.error = sanitize(exc)
        if isinstance(exc, InsufficientCreditsError):
            self.host.stop_sync(
                "no_credits",
                f"the API answered 402 (insufficient credits) for {t.job.file_name}; nothing was charged for it and "
                "nothing more was submitted. Jobs already running are finished.",
            )
        elif isinstance(exc, AuthenticationError):
            self.host.stop_sync("failed", f"the API refused the key: {exc}")
        else:
            self.host.stop_sync("failed", f"the API refused {t.job.file_name}: {exc}")

    # ------------------------------------------------------------------ poll

    def poll(self, t: Tracked) -> None:
        """Ask for the job's status; the answer arrives as an event."""
        task = t.task_id
        assert task is not None
        t.busy = True
        self.ctx.scheduler.call(Call.POLL, t, lambda: self.ctx.client.job_status(task))

    def _refused_key(self, t: Tracked, exc: BaseException, doing: str) -> None:
        self.key_refused = ApiKeyRefusedError(
            f"the API key was refused while {doing} {t.label} ({exc}); jobs in flight are kept and the next run "
            "with a valid key finishes them"
        )

    def on_polled(self, t: Tracked, value: JobStatus | BaseException) -> None:
        """Record what the job's status says."""
        if isinstance(value, BaseException):
            if isinstance(value, (AuthenticationError, PermissionDeniedError)):
                self._refused_key(t, value, "polling")
            elif isinstance(value, NotFoundError):
                self._lost(t, value)
            elif isinstance(value, (ApiError, OSError)):
                delay = t.poller.next_delay(None) if t.poller else 5.0
                log.warning("polling %s failed (%s); trying again", t.task_id, value)
                self._later(t, "poll", max(delay or 5.0, 5.0))
            else:
                raise value
            return
        assert t.poller is not None
        if t.state is S.LOST and not value.is_terminal:
            self.move(t, S.SUBMITTED, error=None)
        delay = t.poller.next_delay(value)
        if delay is not None:
            self._later(t, "poll", delay)
            return
        self._ended(t, value)

    def _lost(self, t: Tracked, exc: BaseException) -> None:
        if t.state is S.LOST:  # looked for again with --retry-lost, still unknown: release its rows
            self.move(
                t, S.ABANDONED, error=f"still unknown to the API after --retry-lost ({exc}); its rows are asked again"
            )
            self.ctx.result.warnings.append(f"{t.label}: still unknown to the API: released, its rows are asked again")
            return
        self.move(
            t,
            S.LOST,
            error=f"job-status answered 404 ({exc}): the API does not know this task for this key. Its rows are "
            "held; with the key that submitted it, `sixtyfour-sync run --retry-lost` looks again, and asks the rows "
            "again if it is still unknown",
        )
        self.partial(f"{t.label}: lost (the API answered 404); its rows are held: see `sixtyfour-sync status`")

    def _ended(self, t: Tracked, status: JobStatus) -> None:
        ctx = self.ctx
        if status.is_completed:
            api_charge: float | None = None if status.charge_amount_cents is None else float(status.charge_amount_cents)
            if api_charge is None and status.charge_credits is not None:
                api_charge = status.charge_credits * 100.0
            charge = 0.0 if (t.replay_of or t.free) else (None if api_charge is None else float(api_charge))
            t.status = status
            # Recorded with the merge, in its transaction (one commit less per file): until then the ledger
            # says `submitted`, and a run that stops before the merge polls the job again and finds it done.
            t.extra["completed"] = {
                "api_status": status.status,
                "charged_cents": charge,
                "api_charge_cents": None if api_charge is None else float(api_charge),
            }
            failpoint("completed")
            t.outcome.charged_cents = charge
            if charge:
                if t.resumed:
                    ctx.result.resumed.charged_cents += charge
                else:
                    ctx.result.charged_cents += charge
            self.download(t)
            return
        state = S.CANCELLED if status.status in ("cancelled", "canceled") else S.FAILED
        message = status.error or f"the job ended {status.status}"
        self.move(t, state, api_status=status.status, charged_cents=0.0, error=message)
        t.outcome.charged_cents = 0.0
        t.outcome.error = sanitize(message)
        ctx.reporter.on("job_done", ctx.name, state=state.value, rows=t.job.rows)
        self.partial(f"{t.label}: the job ended {status.status}: {message}; its rows are asked again next run")

    # ------------------------------------------------------------------ cancel (stopping a job on purpose)

    def cancel(self, t: Tracked) -> None:
        """Ask the API to cancel (recording ``cancelling`` first)."""
        if t.state is S.SUBMITTED:
            self.move(t, S.CANCELLING)
        task = t.task_id
        assert task is not None
        t.busy = True
        self.ctx.scheduler.call(Call.CANCEL, t, lambda: self.ctx.client.cancel(task))

    def on_cancelled(self, t: Tracked, value: Any) -> None:
        """Whatever the answer, polling tells how the job ended."""
        if isinstance(value, (AuthenticationError, PermissionDeniedError)):
            self._refused_key(t, value, "cancelling")
            return
        if isinstance(value, NotFoundError):
            self._lost(t, value)
            return
        if isinstance(value, BaseException) and not isinstance(value, ApiError):
            raise value
        t.poller = JobPoller(initial=self.ctx.settings.poll_interval)
        self._later(t, "poll", 0.0)

    # ------------------------------------------------------------------ download and merge

    def download(self, t: Tracked, *, local: list[tuple[Path, str]] | None = None) -> None:
        """Download (unless ``local`` is the result already on disk: its files and formats) and parse on a
        worker; the main thread records and merges it."""
        work = fetch_work(self.ctx, t, self._parsing, local=local)
        t.busy = True
        t.downloads += 1
        self.ctx.scheduler.call(Call.DOWNLOAD, t, work)

    def on_downloaded(self, t: Tracked, value: tuple[ResultDownload, MergePlan] | BaseException) -> None:
        """Record the download, then merge (or hold a result that cannot be read)."""
        ctx = self.ctx
        if isinstance(value, Unreadable):
            self._unreadable(t, value)
            return
        if isinstance(value, BaseException):
            if isinstance(value, (AuthenticationError, PermissionDeniedError)):
                self._refused_key(t, value, "downloading the result of")
            elif isinstance(value, NotFoundError):
                self._lost(t, value)
            elif isinstance(value, (DownloadError, ApiError, OSError)):
                self.record_completed(t)
                if t.downloads < 3:
                    log.warning("downloading the result of %s failed (%s); trying again", t.label, value)
                    self._later(t, "download", DOWNLOAD_RETRY_SECONDS * t.downloads)
                else:
                    msg = (
                        f"downloading the result of {t.label} failed: {value}; the job is paid for and kept, "
                        "the next run tries again"
                    )
                    ctx.ledger.annotate(t.job_id, t.state, error=msg)
                    self.partial(msg)
            else:
                raise value
            return
        got, plan = value
        failpoint("downloaded")
        self.merger.add(t, got, plan)

    def _unreadable(self, t: Tracked, failure: Unreadable) -> None:
        ctx = self.ctx
        got, error = failure.download, failure.error
        self.record_completed(t)
        if t.state is not S.DOWNLOADED:
            self.move(t, S.DOWNLOADED, **result_files.ledger_values(got))
        if not t.redownloaded:
            # Perhaps the copy is damaged: fetch a fresh one once before deciding.
            t.redownloaded = True
            result_files.discard(got)
            self.move(t, S.COMPLETED, error=f"the result could not be read ({error}); downloading it again")
            t.status = None
            self.download(t)
            return
        kept = ", ".join(str(part.path) for part in got.all_parts)
        message = (
            f"the paid result of task {t.task_id} cannot be read: {error}. The file is kept as {kept}; its rows "
            "are held (not asked again). `sixtyfour-sync run --retry-unreadable` downloads it again; if it still "
            "cannot be read, its rows are asked again"
        )
        self.move(t, S.RESULT_UNREADABLE, error=message)
        if t.extra.get("retrying_unreadable"):
            self.move(
                t, S.ABANDONED, error=f"still unreadable after --retry-unreadable ({error}); its rows are asked again"
            )
            ctx.reporter.on("job_done", ctx.name, state=S.ABANDONED.value, rows=t.job.rows)
            ctx.result.warnings.append(f"{t.label}: still unreadable: released, its rows are asked again")
            return
        t.outcome.error = sanitize(message)
        ctx.reporter.on("job_done", ctx.name, state=S.RESULT_UNREADABLE.value, rows=t.job.rows)
        self.partial(f"{t.label}: result unreadable ({sanitize(error, 200)}); see `sixtyfour-sync status`")
