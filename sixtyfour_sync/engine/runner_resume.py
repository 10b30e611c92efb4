"""Finishing what earlier runs left: each unfinished job tracked again, a lost file rebuilt from the warehouse by
the row keys the ledger kept and resent with its stored Idempotency-Key."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.api import JobPoller
from sixtyfour_sync.engine.jobs.driver import Tracked
from sixtyfour_sync.engine.jobs.states import ACTIVE, HELD, JobState
from sixtyfour_sync.engine.ledger.localdb import duck_type, ident, json_path, literal, local_duckdb
from sixtyfour_sync.engine.ledger.rowkeys import key_prefix
from sixtyfour_sync.engine.ledger.store import Job
from sixtyfour_sync.engine.plan.planner import read_field_changes
from sixtyfour_sync.engine.results import result_files
from sixtyfour_sync.engine.results.parse import max_object_size
from sixtyfour_sync.engine.rows.extract import denormalize, rebuild_file
from sixtyfour_sync.engine.rows.select import (
    HASH_COLUMN,
    KEY_HASH_COLUMN,
    KEY_PREFIX_COLUMN,
    Selection,
    keep_keys,
    rebuild_sql,
    sent_rows,
)
from sixtyfour_sync.engine.runner_base import RunnerBase, S
from sixtyfour_sync.engine.steps.field_changes import FieldChanges
from sixtyfour_sync.engine.summary import JobOutcome


class ResumeSteps(RunnerBase):
    """The runner's resume."""

    # ------------------------------------------------------------------ resume

    def _resume(self) -> None:
        ctx = self.ctx
        if not ctx.ledger.exists():
            return
        every = ctx.ledger.jobs_for(sync_name=ctx.name, states=sorted(ACTIVE | HELD))
        elsewhere = [j for j in every if not j.belongs_to(ctx.target_id)]
        if elsewhere:  # another target's jobs (dev and prod sharing a ledger): left for a run against it
            where = sorted({f"{j.target} ({j.profile_target or 'another target'})" for j in elsewhere})
            ctx.note(
                f"{len(elsewhere)} unfinished job(s) of this sync answer another target ({', '.join(where)}): left "
                "for a run against it"
            )
        jobs = [j for j in every if j.belongs_to(ctx.target_id) and self._owns(j)]
        only = ctx.settings.only_tasks
        if only is not None:  # a webhook receiver finishes the tasks it heard of, nothing else
            jobs = [j for j in jobs if j.task_id in only and j.state in ACTIVE]
        held = [j for j in jobs if j.state in HELD and not self._retrying(j.state)]
        todo = [j for j in jobs if j.state in ACTIVE or (j.state in HELD and self._retrying(j.state))]
        if held:
            # Paid (or perhaps paid) work that needs a person: every run says so until it is dealt with.
            for job in held:
                self.result.jobs.append(self._outcome(job))
            self.driver.partial(
                f"{len(held)} job(s) need attention and hold their rows (not asked again): `sixtyfour-sync status` "
                "says what to do"
            )
        if not todo:
            return
        ctx.recorder.ensure()
        self.result.resumed.jobs = len(todo)
        ctx.note(f"finishing {len(todo)} unfinished job(s) from earlier runs")
        selection = self._selections()[0]
        for job in todo:
            t = self._track_existing(job)
            self._restart(t, selection)
        self._loop()

    def _field_changes(self, columns: Mapping[str, Any]) -> FieldChanges | None:
        ctx = self.ctx
        if not ctx.ledger.exists():
            return None
        return read_field_changes(ctx.adapter, ctx.ledger, ctx.spec, ctx.target, columns)

    def _owns(self, job: Job) -> bool:
        """Whether this runner finishes ``job``: a step its own jobs (tier, fields), the sync the others."""
        spec = self.ctx.spec
        mine = ",".join(sorted(spec.struct)) if spec.field_subset else None
        if (job.fields or None) != mine:
            return False
        if spec.question_tier != spec.tier:
            return job.tier == spec.tier
        return job.tier is None or job.tier not in spec.escalate

    def _retrying(self, state: JobState) -> bool:
        s = self.ctx.settings
        return (state in (S.LOST, S.NEEDS_ATTENTION) and s.retry_lost) or (
            state is S.RESULT_UNREADABLE and s.retry_unreadable
        )

    @staticmethod
    def _outcome(job: Job) -> JobOutcome:
        return JobOutcome(
            job.job_id,
            job.file_name,
            job.rows,
            job.state.value,
            job.task_id,
            replay=job.replay,
            replay_of=job.replay_of,
            estimated_cost_cents=job.estimated_cost_cents,
            charged_cents=job.charged_cents,
            error=job.error,
            resumed=True,
        )

    def _track_existing(self, job: Job) -> Tracked:
        path = self.ctx.files_dir / job.file_name
        outcome = self._outcome(job)
        t = Tracked(job, job.state, outcome, file=path if path.is_file() else None, resumed=True)
        t.task_id, t.estimate, t.replay_of = job.task_id, job.estimated_cost_cents, job.replay_of
        t.free = bool(job.replay_of) or (job.replay and not job.charged_cents and job.estimated_cost_cents == 0)
        return self.driver.track(t)

    def _restart(self, t: Tracked, selection: Selection) -> None:
        """Pick up a job from where the ledger says it is."""
        ctx, d = self.ctx, self.driver
        state = t.state
        if state in (S.WRITTEN, S.SUBMITTING):
            if state is S.SUBMITTING:
                t.extra["may_have_landed"] = True  # the run that died may have reached the API with it
            if t.file is None:
                if not self._rebuild(t, selection):
                    return
            else:
                t.sent = self._sent_rows(t, selection)
            d.submit(t)
        elif state is S.SUBMITTED and ctx.settings.no_wait:
            return  # --no-wait: left in flight for a webhook receiver or the next run
        elif state in (S.SUBMITTED, S.LOST):
            t.sent = self._sent_rows(t, selection)
            t.poller = JobPoller(initial=ctx.settings.poll_interval)
            t.action, t.due = "poll", time.monotonic()
            if state is S.LOST:
                t.extra["was_lost"] = True
        elif state is S.CANCELLING:
            t.sent = self._sent_rows(t, selection)
            t.action, t.due = "cancel", time.monotonic()
        elif state is S.NEEDS_ATTENTION:
            d.move(t, S.ABANDONED, error="released by --retry-lost: its rows are asked again")
        elif state is S.DOWNLOADED and (
            local := result_files.stored_parts(ctx.results_dir, t.job.result_file, t.job.result_format)
        ):
            t.sent = self._sent_rows(t, selection)
            d.download(t, local=local)
        elif state in (S.COMPLETED, S.DOWNLOADED, S.RESULT_UNREADABLE):
            if state is S.RESULT_UNREADABLE:
                t.extra["retrying_unreadable"] = True
            if state is not S.COMPLETED:
                d.move(t, S.COMPLETED)
            t.sent = self._sent_rows(t, selection)
            d.download(t)

    def _rebuild(self, t: Tracked, selection: Selection) -> bool:
        """Rebuild a file that is not on this machine from the warehouse; False when its rows are gone."""
        ctx, d = self.ctx, self.driver
        keys = ctx.ledger.job_keys(t.job_id).column("key").combine_chunks()
        chunk = None
        if len(keys):
            chunk = rebuild_file(
                ctx.adapter, selection, keys, out_dir=ctx.files_dir, prefix=ctx.name, file_rows=t.job.rows
            )
        if chunk is None:
            d.move(
                t, S.ABANDONED, error="the file is not on this machine and none of its rows is in the source any more"
            )
            return False
        if chunk.content_hash != t.job.content_hash:
            ctx.note(
                f"{t.job.file_name}: rebuilt from the warehouse, but the rows changed since it was written; it is sent "
                "with its stored Idempotency-Key (the API may refuse it: then it needs attention)",
                "warning",
            )
        t.file = chunk.path
        t.sent = sent_rows(chunk.kept, ctx.spec.source.key) if chunk.kept is not None else None
        return True

    def _sent_rows(self, t: Tracked, selection: Selection) -> pa.Table | None:
        """What a resumed job sent: from its local file, else the ledger's row keys matched with the source."""
        ctx = self.ctx
        stored = ctx.ledger.job_keys(t.job_id)
        if t.file is not None and t.file.is_file() and not _answers_more_than_it_sent(stored, t.job.rows):
            cols = [
                f"TRY_CAST(json_extract_string(json, {json_path(k)}) AS {duck_type(typ)}) AS {ident(k)}"
                for k, typ in ctx.key_types.items()
            ]
            cols.append(f"json_extract_string(json, {json_path(HASH_COLUMN)}) AS {ident(HASH_COLUMN)}")
            source = f"read_ndjson_objects({literal(str(t.file))}, maximum_object_size = {max_object_size(t.file)})"
            sql = f"SELECT {', '.join(cols)} FROM {source}"
            rows = local_duckdb().sql(sql).to_arrow_table()
            # The ledger keeps the file's keys in the file's order: the same input hashes, row by row, say so.
            if (
                stored.num_rows == rows.num_rows
                and pc.all(pc.equal(stored.column("input_hash"), rows.column(HASH_COLUMN))).as_py()
            ):
                rows = rows.append_column(KEY_PREFIX_COLUMN, stored.column("key"))
            return rows
        # The keys the ledger kept, found in the source (a file answering keys that shared their inputs holds
        # only the first of them: the others are known by the ledger and the source alone).
        if stored.num_rows == 0:
            return None
        a, key = ctx.adapter, list(ctx.spec.source.key)
        wanted = stored.column("key").combine_chunks()
        found = [
            keep_keys(denormalize(a, b), wanted).select([*key, KEY_HASH_COLUMN])
            for b in a.stream(rebuild_sql(a, selection))
        ]
        rows = pa.Table.from_batches([b for b in found if b.num_rows]) if any(b.num_rows for b in found) else None
        if rows is None:
            return None
        # the input hash that was SENT (the source may have changed since): from the ledger, by key prefix
        prefixes = key_prefix(rows.column(KEY_HASH_COLUMN))
        where = pc.index_in(prefixes, value_set=wanted)
        sent = rows.select(key).append_column(HASH_COLUMN, stored.column("input_hash").take(where))
        return sent.append_column(KEY_PREFIX_COLUMN, prefixes)


def _answers_more_than_it_sent(stored: pa.Table, file_rows: int) -> bool:
    """Whether a job answers more keys than its file holds rows (keys sharing their inputs asked once)."""
    return bool(stored.num_rows > file_rows > 0)
