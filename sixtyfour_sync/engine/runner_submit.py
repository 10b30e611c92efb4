"""New rows: the extraction thread streams the selection into files; each file is fitted to the budget, recorded,
then submitted (the driver's host: budget, slots, the learned price, stopping the sync)."""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from typing import Any

import pyarrow as pa

from sixtyfour_sync.engine.failpoints import failpoint
from sixtyfour_sync.engine.jobs.budget import fit_file
from sixtyfour_sync.engine.jobs.driver import Tracked
from sixtyfour_sync.engine.jobs.keys import idempotency_key, salt_for
from sixtyfour_sync.engine.jobs.states import HOLDS_ROWS
from sixtyfour_sync.engine.ledger.store import Job
from sixtyfour_sync.engine.rows.extract import Producer, ScanStats
from sixtyfour_sync.engine.rows.files import ChunkFile, head_chunk, spill, tail_chunk
from sixtyfour_sync.engine.rows.select import (
    EXISTS_COLUMN,
    HASH_COLUMN,
    KEY_HASH_COLUMN,
    Selection,
    bucket_count,
    duplicated_keys_sql,
    inputs_repeat_sql,
    questions_may_repeat,
    repeated_keys_sql,
    sent_rows,
)
from sixtyfour_sync.engine.runner_base import SENT_SUFFIX, RunnerBase, S, _any_true, asked_hash
from sixtyfour_sync.engine.summary import JobOutcome
from sixtyfour_sync.errors import ConfigError
from sixtyfour_sync.warehouse.types import TableRef

#: A refresh of a source above this many rows tries the one pass (:meth:`SubmitSteps._probe`); below it the full
#: selection is one pass already. The environment variable :data:`PROBE_SOURCE_ENV` (a number of rows) overrides it.
PROBE_SOURCE_ROWS = 100_000
PROBE_SOURCE_ENV = "SIXTYFOUR_SYNC_ONE_PASS_ABOVE"
#: The one pass holds at most this many rows that need work; more, and the ordered selection reads them.
PROBE_ROWS = 100_000


class SubmitSteps(RunnerBase):
    """The runner's new work."""

    # ------------------------------------------------------------------ new rows

    def _run_new(self) -> None:
        """One pass over the source: select, check keys and count as the rows stream into files."""
        ctx, spec = self.ctx, self.ctx.spec
        a = ctx.adapter
        self.target_columns = None  # read again: the jobs just resumed may have made or widened the target
        if self.step.kind == "escalate" and not a.table_exists(ctx.target):
            self.result.status = "nothing_to_do"  # no answer yet, so nothing to escalate
            return
        with a.session() as s:
            row = s.fetchone(f"SELECT COUNT(*) FROM ({self.source_sql}) {a.subquery_alias('n')}")
        source_rows = int(row[0]) if row and row[0] is not None else 0
        if source_rows == 0:
            if not self.result.jobs:
                self.result.status = "nothing_to_do"
            return
        read = self._probe(source_rows)
        if read is None:
            self.group_questions = self._questions_may_repeat()
            if source_rows <= PROBE_ROWS and a.table_exists(ctx.target):
                read = self._read_small()  # a small source's refresh: read once, the store looked up for its rows
            else:
                self._take_stored(source_rows)  # before the selection, which then no longer selects those rows
        selections = self._selections(buckets=1 if read is not None else bucket_count(a, source_rows))
        held = ctx.ledger.held_keys(ctx.name, sorted(HOLDS_ROWS), ctx.target_id) if ctx.ledger.exists() else None
        self.scan = ScanStats(tuple(spec.source.key), source_rows=source_rows)
        ctx.reporter.on("scan", spec.name, source_rows=source_rows)
        ctx.ledger.ensure()
        self.keys_adapter = a.sibling()
        keys_ledger = ctx.ledger.beside(self.keys_adapter)
        keys_ledger.guard = ctx.ledger.guard
        self.producer = Producer(
            adapter_factory=self._extract_factory(),
            selections=selections,
            out_dir=ctx.files_dir,
            prefix=spec.name,
            chunk_rows=spec.chunk_rows,
            batch_rows=ctx.settings.batch_rows,
            files_ahead=ctx.settings.files_ahead,
            events=ctx.scheduler.events,
            owns_adapter=self.extract_adapter is not None,
            stats=self.scan,
            limit=spec.refresh.limit,
            key_writer=keys_ledger.write_keys,
            held=held,
            read=read,
            duplicated=None if read is not None else self._duplicated_keys(selections),
        )
        self.producer.start()
        self._loop()
        self._scan_done()

    def _probe(self, source_rows: int) -> list[pa.RecordBatch] | None:
        """A refresh's rows in one pass over the source, as a plain diff reads it, when they are few.

        The full selection counts the rows of each key over the whole source (to find NULL and repeated keys) and
        reads a big source in buckets, each a pass: the price of sending many rows in bounded memory. A refresh
        of an enriched target sends few: once the keys are known unique (:meth:`_keys_unique`), the same selection
        without those counts (:func:`~sixtyfour_sync.engine.rows.select.build_selection`, ``probe``) is read once,
        at most :data:`PROBE_ROWS` + 1 rows of it, grouped by question and ordered in SQL over the selected rows
        alone. None, and the full selection is read, when the source is small (:data:`PROBE_SOURCE_ROWS`), the
        target does not exist yet (every row is sent), a key repeats, or more than :data:`PROBE_ROWS` rows come.
        """
        ctx, a = self.ctx, self.ctx.adapter
        if source_rows <= _one_pass_above() or not a.table_exists(ctx.target):
            return None
        if not self._keys_unique():
            return None
        self.group_questions = questions_may_repeat(ctx.spec, self.inputs)  # grouping the few selected rows is cheap
        probe = self._selections(probe=True)[0]
        batches: list[pa.RecordBatch] = []
        rows = 0
        for raw in a.stream(
            a.limit_sql(probe.sql, PROBE_ROWS + 1), list(probe.params), batch_rows=ctx.settings.batch_rows
        ):
            rows += raw.num_rows
            if rows > PROBE_ROWS:
                return None  # many rows need work: the full selection reads them in bounded memory
            batches.append(raw)
        return self._split_stored(batches, probe=True) if any(b.num_rows for b in batches) else batches

    def _read_small(self) -> list[pa.RecordBatch]:
        """The whole selection of a source of at most :data:`PROBE_ROWS` rows, read once into memory, less the rows
        that take a stored answer (merged here): a refresh with nothing to do reads nothing more."""
        ctx, a = self.ctx, self.ctx.adapter
        selection = self._selections()[0]
        batches = list(a.stream(selection.sql, list(selection.params), batch_rows=ctx.settings.batch_rows))
        return self._split_stored(batches, probe=False) if any(b.num_rows for b in batches) else batches

    def _keys_unique(self) -> bool:
        """Whether the source holds each key once: a table's primary key or unique constraint on exactly the key
        says so; else one GROUP BY over the key counts the keys it holds more than once."""
        ctx, a, src = self.ctx, self.ctx.adapter, self.ctx.spec.source
        table = self.ref_table if src.ref else TableRef(src.table or "", src.schema_, src.database)
        if src.sql:
            table = None
        if table is not None and a.key_is_unique(table, list(src.key)):
            return True
        with a.session() as s:
            row = s.fetchone(repeated_keys_sql(a, ctx.spec, self.source_sql))
        return row is not None and not int(row[0] or 0)

    def _questions_may_repeat(self) -> bool:
        """Whether two source rows may share their inputs (one question): asked of the warehouse where its cheap
        hash tells (one pass), else assumed. When none can, the selection keeps its plain key order."""
        ctx = self.ctx
        if not questions_may_repeat(ctx.spec, self.inputs):
            return False
        sql = inputs_repeat_sql(ctx.adapter, self.inputs, self.source_sql)
        if not sql:
            return True
        with ctx.adapter.session() as s:
            row = s.fetchone(sql)
        return bool(row and row[0])

    def _duplicated_keys(self, selections: list[Selection]) -> pa.Array | None:
        """For a selection read in buckets by the rows' inputs, the keys the whole source holds more than once."""
        if len(selections) <= 1 or not self.group_questions:
            return None
        a = self.ctx.adapter
        with a.session() as s:
            found = [str(r[0]) for r in s.fetchall(duplicated_keys_sql(a, selections[0], self.source_sql))]
        return pa.array(found, pa.string())

    def _scan_done(self) -> None:
        """Report what the pass found (keys skipped, rows by reason) once the producer has finished."""
        if self.scan is None:
            return
        ctx, r = self.ctx, self.result
        report = self.scan.report()
        if not report.ok and report.describe() not in r.warnings:
            r.warnings.append(report.describe())
            ctx.note(report.describe(), "warning")
        if self.scan.target_repeats:
            repeats = (
                f"the target {ctx.target} holds key(s) more than once (e.g. {list(self.scan.target_repeat_samples[:3])}"
                f"; {self.scan.target_repeats:,} repeated row(s) of the selection dropped): each source row was sent "
                "once; remove the duplicated target rows (the merge writes every copy)"
            )
            if repeats not in r.warnings:
                r.warnings.append(repeats)
                ctx.note(repeats, "warning")
        r.rows_by_reason = dict(self.scan.rows_by_reason)
        if not r.rows_selected and not r.jobs and not r.rows_reused and r.status == "ok":
            r.status = "nothing_to_do"

    def _extract_factory(self) -> Any:
        if self.extract_adapter is not None:
            return self.extract_adapter
        return lambda: self.ctx.adapter

    def _on_file(self, chunk: ChunkFile, *, holds_slot: bool = True) -> None:
        ctx = self.ctx
        if self.stop_reason is not None or ctx.stop.requested:
            chunk.path.unlink(missing_ok=True)
            if holds_slot:
                self.release_slot()
            return
        if self.awaiting_estimate:
            self.waiting_files.append((chunk, holds_slot))
            return
        if not self.target_checked:
            self.target_checked = True
            refusal = self._prepare_target(chunk)
            if refusal is not None:
                self.stop_sync("failed", refusal)
                chunk.path.unlink(missing_ok=True)
                if holds_slot:
                    self.release_slot()
                return
        room = self._room()
        # A price of 0 is no price: a budget is never switched off by it.
        trusted = self.price if self.price_confirmed and self.price is not None and self.price > 0 else None
        fit = fit_file(chunk.rows, room, trusted)
        if fit.stop:
            at = f" at {trusted:g} cents per row, as the API quoted it in this run" if trusted else ""
            self.result.rows_unsent += chunk.rows
            self.stop_sync("budget_reached", f"budget reached: {fit.reason}{at}; nothing more was submitted")
            chunk.path.unlink(missing_ok=True)
            if holds_slot:
                self.release_slot()
            return
        send = chunk
        if fit.rows < chunk.rows:
            send = head_chunk(chunk, fit.rows)
            if fit.learn_price:
                rest = tail_chunk(chunk, fit.rows)
                chunk.path.unlink(missing_ok=True)
                self.waiting_files.append((rest, holds_slot))
                holds_slot = False
                if self.price is not None and self.price > 0:
                    ctx.note(
                        f"a one-row file goes first to check the price per row ({self.price:g} cents, as known before "
                        "this run): a price that moved cannot overrun the budget"
                    )
                else:
                    ctx.note("the price per row is not known yet: a one-row file goes first to learn it")
            else:
                chunk.path.unlink(missing_ok=True)
                self.result.rows_unsent += chunk.rows - fit.rows
                self.stop_sync(
                    "budget_reached",
                    f"budget reached: only {fit.rows:,} of the next file's {chunk.rows:,} rows fit the budget at "
                    f"{trusted:g} cents per row; they were sent and nothing more was submitted",
                )
        if room is not None:
            self.awaiting_estimate = True  # the next file is fitted with this one's estimate
        self._submit_new(send, holds_slot=holds_slot)

    def _submit_new(self, chunk: ChunkFile, *, holds_slot: bool) -> None:
        ctx, spec = self.ctx, self.ctx.spec
        reasons = dict(chunk.meta.get("reasons", {}))
        deliberate = self.full_refresh or spec.refresh.when == "always" or bool(chunk.meta.get("deliberate"))
        asked = asked_hash(spec, ctx.spec_hash)
        dead = ctx.ledger.dead_job_for(spec.name, asked, chunk.content_hash)
        salt = salt_for(run_id=ctx.run_id if deliberate else None, after_job=dead.job_id if dead else None)
        job = Job(
            job_id=uuid.uuid4().hex,
            run_id=ctx.run_id,
            sync_name=spec.name,
            state=S.SUBMITTING,  # recorded as on its way: it is sent right away
            spec_hash=asked,
            content_hash=chunk.content_hash,
            idempotency_key=idempotency_key(spec.name, asked, chunk.content_hash, salt),
            file_name=chunk.path.name,
            rows=chunk.rows,
            endpoint=spec.endpoint,
            tier=spec.tier,
            salt=salt or None,
            reasons=json.dumps(reasons, sort_keys=True),
            fields=",".join(sorted(spec.struct)) if spec.field_subset else None,
            target=ctx.target_id,
            profile_target=ctx.profile_target,
            project=ctx.project_name,
        )
        assert chunk.kept is not None
        if ctx.lease is not None:
            ctx.lease.confirm()  # the lease is checked before money is spent, not after
        written = chunk.meta.get("job_id")
        if written:
            job = dataclasses.replace(job, job_id=str(written))
        ctx.ledger.add_job(job, None if written else chunk.kept.select([KEY_HASH_COLUMN, HASH_COLUMN]))
        failpoint("written")
        failpoint("submitting")
        outcome = JobOutcome(job.job_id, job.file_name, job.rows, S.SUBMITTING.value)
        t = Tracked(job, S.SUBMITTING, outcome, file=chunk.path, holds_slot=holds_slot)
        # What the file sent waits on disk until its result is merged: memory does not grow with the jobs in flight.
        t.sent = spill(sent_rows(chunk.kept, spec.source.key), chunk.path.with_suffix(SENT_SUFFIX))
        if EXISTS_COLUMN in chunk.kept.column_names:
            # none of the file's keys is in the target: its result is inserted, not upserted
            t.extra["all_new"] = not _any_true(chunk.kept.column(EXISTS_COLUMN))
        if self.price is not None:
            t.reserved = self.price * chunk.rows
            self.spend(t.reserved)
        self.driver.track(t)
        ctx.reporter.on("extracted", spec.name, rows=chunk.rows)
        self.driver.submit(t)

    # ------------------------------------------------------------------ host hooks for the driver

    def _room(self) -> float | None:
        rooms = []
        if self.ctx.spec.budget.max_cost_cents is not None:
            rooms.append(self.ctx.spec.budget.max_cost_cents - self.sync_spent)
        run_room = self.ctx.budget.room()
        if run_room is not None:
            rooms.append(run_room)
        return min(rooms) if rooms else None

    def spend(self, cents: float) -> None:
        """Hold (or give back) budget for this sync and the run."""
        self.sync_spent += cents
        self.ctx.budget.spend(cents)

    def release_slot(self) -> None:
        """Give an extraction slot back."""
        if self.producer is not None:
            self.producer.release()

    def answered(self, price: float | None) -> None:
        """A submission was answered: its estimate's per-row price (when it quoted one) fits the files that
        waited for it."""
        if price is not None:
            if self.price_confirmed and self.price is not None and abs(price - self.price) > 1e-9:
                self.ctx.note(
                    f"the API now quotes {price:g} cents per row (was {self.price:g}): the files left are fitted "
                    "with it"
                )
            self.price, self.price_confirmed = price, price > 0
        if not self.awaiting_estimate:
            return
        self.awaiting_estimate = False
        waiting, self.waiting_files = self.waiting_files, []
        for chunk, holds_slot in waiting:
            self._on_file(chunk, holds_slot=holds_slot)

    def stop_sync(self, status: str, message: str, *, partial_ok: bool = False) -> None:
        """Stop submitting for this sync (jobs under way are still finished)."""
        r = self.result
        # a budget reached is a cap doing its job: a warning, and the sync succeeds (run --fail-on-budget: exit 1)
        warn = partial_ok or status == "budget_reached"
        if self.stop_reason is None:
            (r.warnings if warn else r.errors).append(message)
            self.ctx.note(message, "warning" if warn else "error")
        self.stop_reason = self.stop_reason or status
        if self.producer is not None:
            self.producer.stop()
        for chunk, holds_slot in self.waiting_files:
            if status == "budget_reached":
                r.rows_unsent += chunk.rows
            chunk.path.unlink(missing_ok=True)
            if holds_slot:
                self.release_slot()
        self.waiting_files = []
        self.awaiting_estimate = False
        if status == "budget_reached":
            if r.status in ("ok", "nothing_to_do"):
                r.status = status
        elif not partial_ok and r.status in ("ok", "partial", "nothing_to_do", "budget_reached"):
            r.status = status


def _one_pass_above() -> int:
    """:data:`PROBE_SOURCE_ROWS`, or the number of rows :data:`PROBE_SOURCE_ENV` sets."""
    raw = os.environ.get(PROBE_SOURCE_ENV, "").strip()
    if not raw:
        return PROBE_SOURCE_ROWS
    try:
        rows = int(raw)
    except ValueError:
        rows = -1
    if rows < 0:
        raise ConfigError(f"{PROBE_SOURCE_ENV}={raw!r} is not a number of rows", hint=f"e.g. {PROBE_SOURCE_ENV}=100000")
    return rows
