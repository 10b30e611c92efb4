"""A sync's target before anything is paid: checked, made ready, and the rows the target refused before
merged; rows deleted at the source handled after the pass."""

from __future__ import annotations

from typing import Any

from sixtyfour_sync.engine.results import quarantine, targets
from sixtyfour_sync.engine.results.target_table import ensure_target, key_columns
from sixtyfour_sync.engine.rows.deletions import check_delete, deletion_statements, scope_sql
from sixtyfour_sync.engine.rows.files import ChunkFile
from sixtyfour_sync.engine.runner_base import RunnerBase
from sixtyfour_sync.errors import SixtyfourSyncError
from sixtyfour_sync.warehouse.types import TableRef


class TargetSteps(RunnerBase):
    """The runner's work on the target."""

    # ------------------------------------------------------------------ the target, before paying

    def _source_is_target(self) -> bool:
        spec, a = self.ctx.spec, self.ctx.adapter
        if not spec.source.table:
            return False
        return a.table_sql(TableRef(spec.source.table, spec.source.schema_, spec.source.database)) == self.ctx.target_id

    def _prepare_target(self, first: ChunkFile) -> str | None:
        """Check the target before the first submission (engine/results/targets.py): None, or why the sync stops without
        paying. Nothing is written: the first merge creates or completes the target."""
        ctx, spec, a = self.ctx, self.ctx.spec, self.ctx.adapter
        inputs = self.inputs if self._source_is_target() else []
        try:
            problems = targets.check(a, ctx.ledger, ctx.loaded, ctx.target, ctx.target_id, inputs_of_target=inputs)
            if problems:
                return str(targets.refuse(ctx.loaded, ctx.target, problems))
            assert first.kept is not None
            sample = {k: first.kept.column(k).slice(0, 1) for k in spec.source.key}
            refusal = targets.dry_run(a, spec, ctx.target, sample, key_columns(ctx))
        except SixtyfourSyncError as exc:
            return f"the target {ctx.target} cannot be checked: {exc}; nothing was sent"
        if refusal is not None:
            return str(targets.refuse(ctx.loaded, ctx.target, [f"a row like this sync's was refused: {refusal}"]))
        return None

    # ------------------------------------------------------------------ rows gone from the source

    def _source_deletions(self) -> None:
        """``target.on_source_delete``: flag or delete the target rows whose key left the source (one statement)."""
        ctx, spec, a = self.ctx, self.ctx.spec, self.ctx.adapter
        if not spec.target.tracks_deletions or not self.step.own_pass:
            return
        source = TableRef(spec.source.table, spec.source.schema_, spec.source.database) if spec.source.table else None
        if source is not None and a.table_sql(source) == a.table_sql(ctx.target):
            return  # the target is the source: its rows go with the source's
        if not a.table_exists(ctx.target):
            return
        ensure_target(self.ctx)  # the flag column of a sync that just turned flagging on
        columns = a.get_columns(ctx.target)
        check_delete(spec, columns, spec.output_columns(), spec.source.key, where=str(ctx.loaded.file))
        statements = deletion_statements(
            a, spec, ctx.target, columns, scope_sql(a, spec, self.ref_table), key_types=ctx.key_specs
        )
        if ctx.lease is not None:
            ctx.lease.confirm()
        counts: dict[str, int] = {}
        with a.session() as s:
            for sql, what in statements:
                counts[what] = max(0, s.execute_count(sql))
        r = self.result
        r.source_deletion = "deleted" if spec.target.on_source_delete == "delete" else "flagged"
        r.rows_source_deleted = counts.get("deleted", 0) + counts.get("flagged", 0)
        r.rows_source_restored = counts.get("unflagged", 0)
        if r.status == "nothing_to_do" and (r.rows_source_deleted or r.rows_source_restored):
            r.status = "ok"

    # ------------------------------------------------------------------ quarantined answers

    def _merge_quarantined(self) -> None:
        """Merge the answers an earlier run held because the target refused them; say what is still held."""
        ctx = self.ctx
        held = ctx.ledger.quarantined(ctx.name, ctx.target_id) if ctx.ledger.exists() else []
        if not held:
            return
        key = list(ctx.spec.source.key)
        by_spec: dict[str, list[dict[str, Any]]] = {}
        for row in held:
            by_spec.setdefault(str(row["merge_spec"]), []).append(row)
        still: list[dict[str, Any]] = []
        for spec_text, rows in by_spec.items():
            part = quarantine.part_from_rows(quarantine.unpack_rows([str(r["row_data"]) for r in rows]), spec_text)
            ids = [str(r["quarantine_id"]) for r in rows]

            def attempt(start: int, stop: int, part: Any = part, ids: list[str] = ids) -> None:
                def release(session: Any) -> None:
                    ctx.ledger.release_quarantined(ids[start:stop], session)

                ctx.adapter.upsert(ctx.target, key, [quarantine.slice_part(part, start, stop)], before_commit=release)

            ensure_target(self.ctx)
            try:
                attempt(0, len(rows))
                refused: list[quarantine.Refused] | None = []
            except quarantine.REFUSALS:
                refused = quarantine.find_refused(attempt, len(rows))
            left = rows if refused is None else [rows[r.index] for r in refused]
            self.result.rows_released += len(rows) - len(left)
            still.extend(left)
        if self.result.rows_released:
            ctx.note(f"{self.result.rows_released:,} held row(s) the target refused before are merged now")
        if still:
            self.driver.partial(
                f"{len(still):,} paid row(s) the target refused are still held, not asked again (e.g. "
                f"{still[0]['key_text']}: {still[0]['reason']}); `sixtyfour-sync status` lists them"
            )
