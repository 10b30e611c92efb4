"""Fetching a job's result on a worker thread: download every part (or take the files already on disk), parse
them against what was sent, and plan the merge. The main thread records and merges what comes back."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from sixtyfour_sync.api import JobStatus, ResultDownload, ResultPart
from sixtyfour_sync.engine.context import SyncContext
from sixtyfour_sync.engine.jobs.tracked import Tracked, Unreadable
from sixtyfour_sync.engine.ledger.store import utcnow
from sixtyfour_sync.engine.results import result_files
from sixtyfour_sync.engine.results.parse import ResultParseError, parse_result
from sixtyfour_sync.engine.results.upsert import MergePlan, plan_merge
from sixtyfour_sync.engine.reuse.store import stores_job_answers
from sixtyfour_sync.engine.rows.files import SpilledTable
from sixtyfour_sync.engine.rows.select import HASH_COLUMN

__all__ = ["fetch_work"]


def fetch_work(
    ctx: SyncContext, t: Tracked, parsing: threading.BoundedSemaphore, *, local: list[tuple[Path, str]] | None = None
) -> Callable[[], tuple[ResultDownload, MergePlan]]:
    """The worker's job for ``t``: its downloaded parts and merge plan, or :class:`Unreadable` raised for a
    result that cannot be read. ``parsing`` bounds the parses running at once; ``local``: the result's files
    already on disk and their formats."""
    dest = ctx.results_dir / f"{t.job_id}.result"
    source: JobStatus | str = t.status if t.status is not None else (t.task_id or "")
    sent, spec, key_types = t.sent, ctx.spec, ctx.key_types
    task_id, label = t.task_id, t.job.file_name
    insert_only = bool(t.extra.get("all_new")) and ctx.adapter.dialect.enforces_primary_key
    store = stores_job_answers(ctx, t)
    client = ctx.client

    def work() -> tuple[ResultDownload, MergePlan]:
        if local is not None:
            got = ResultDownload.from_parts([ResultPart(path, f, "local", None) for path, f in local], None)
        else:
            got = result_files.settle(client.download_result(source, dest), t.job_id)
        # Parsing is CPU-bound and holds a whole result in memory: two at a time are as fast, and half the size.
        with parsing:
            sent_rows = sent.load() if isinstance(sent, SpilledTable) else sent
            try:
                parsed = parse_result(
                    [(part.path, part.format) for part in got.all_parts],
                    key_types=key_types,
                    struct=spec.struct,
                    field_confidence=spec.field_confidence,
                    carry=[HASH_COLUMN],
                )
            except ResultParseError as exc:
                raise Unreadable(got, exc) from exc
            try:
                plan = plan_merge(
                    spec,
                    parsed,
                    sent_rows,
                    task_id=task_id,
                    now=utcnow(),
                    file_label=label,
                    insert_only=insert_only,
                    store=store,
                )
            except ResultParseError as exc:  # no row ties back: a broken file, held as unreadable
                raise Unreadable(got, exc) from exc
            # Anything else is a bug here, not the file's: it stops the run loudly, the job stays paid and
            # active, and the next run merges it.
        return got, plan

    return work
