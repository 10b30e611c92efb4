"""``validate``: every problem in every file, each phase run, each problem said once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sixtyfour_sync.commands._shared import (
    _EMPTY_HINT,
    _empty_selection,
    _project,
)
from sixtyfour_sync.config.models import LoadedSync
from sixtyfour_sync.engine.ledger.store import Ledger
from sixtyfour_sync.engine.plan.checks import check_sync
from sixtyfour_sync.engine.plan.columns import owned_columns, resolve_inputs, resolve_key_types, target_ref
from sixtyfour_sync.engine.plan.planner import plan_sync
from sixtyfour_sync.engine.results import targets
from sixtyfour_sync.engine.rows.extract import denormalize
from sixtyfour_sync.engine.rows.select import source_relation_sql
from sixtyfour_sync.errors import ConfigError, ConfigProblem, SixtyfourSyncError
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.keytypes import transport_sql
from sixtyfour_sync.warehouse.types import TableRef


@dataclass
class ValidationReport:
    """Every problem found by ``validate``; empty means all is well."""

    problems: list[ConfigProblem] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    #: What the definitions allow but the API may refuse (an unknown struct type), located; never a failure.
    warnings: list[ConfigProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


def validate(
    project_dir: Path | str = ".",
    *,
    select: Sequence[str] | None = None,
    profiles_dir: Path | str | None = None,
    profile: str | None = None,
    target: str | None = None,
    env: Mapping[str, str] | None = None,
    dbt_project_dir: Path | str | None = None,
    exclude: Sequence[str] | None = None,
    vars: Mapping[str, Any] | None = None,
    target_path: Path | str | None = None,
    fail_on_empty: bool = False,
) -> ValidationReport:
    """Load every profile and model, connect, and check sources and targets; list every problem.

    Every phase runs for every sync it can: a mistake in one sync's definition or profile target does not hide
    the warehouse checks of the others (a sync with a mistake of its own is not connected for). A problem that
    several syncs share (one profile target for all) is listed once. A selection that picks no sync is a
    warning (a problem under ``fail_on_empty``) saying why.
    """
    report = ValidationReport()
    try:
        project = _project(
            project_dir, profiles_dir, profile, target, env, dbt_project_dir, vars, target_path, lenient=True
        )
    except ConfigError as exc:
        report.problems.extend(exc.problems or [ConfigProblem(None, None, str(exc), hint=exc.hint)])
        return _once(report)
    report.problems.extend(project.problems)
    with project:
        try:
            syncs = project.select(select, exclude)
        except ConfigError as exc:
            report.problems.extend(exc.problems or [ConfigProblem(None, None, str(exc), hint=exc.hint)])
            return _once(report)
        if not syncs and not project.problems:
            empty = ConfigProblem(None, None, _empty_selection(project, select, exclude), hint=_EMPTY_HINT)
            (report.problems if fail_on_empty else report.warnings).append(empty)
        for loaded in syncs:
            report.warnings.extend(loaded.warnings())
        connectable = []
        for loaded in syncs:
            found = project.check_targets([loaded])
            report.problems.extend(found)
            if not found:
                connectable.append(loaded)
        for loaded in connectable:
            where = str(loaded.file)
            try:
                adapter = project.adapter_for(loaded)
                ref = check_sync(project, loaded, adapter)
                plan_sync(adapter, loaded, ref_table=ref)
                _check_target(adapter, loaded, ref)
                report.checked.append(loaded.spec.name)
            except ConfigError as exc:
                report.problems.extend(
                    exc.problems or [ConfigProblem(where, loaded.spec.name, str(exc), line=loaded.line)]
                )
            except SixtyfourSyncError as exc:
                report.problems.append(
                    ConfigProblem(where, loaded.spec.name, str(exc), line=loaded.line, hint=exc.hint)
                )
    return _once(report)


def _once(report: ValidationReport) -> ValidationReport:
    """Each problem and warning listed once, in the order found (syncs sharing a profile target share its
    problem)."""
    report.problems = list(dict.fromkeys(report.problems))
    report.warnings = list(dict.fromkeys(report.warnings))
    return report


def _check_target(adapter: Adapter, loaded: LoadedSync, ref_table: TableRef | None) -> None:
    """What ``run`` checks before paying (engine/results/targets.py), read-only: types, keys, ownership, and a row like
    the sync's tried and rolled back (when the target already has every column the sync writes)."""
    spec = loaded.spec
    tgt = target_ref(spec)
    tid = adapter.table_sql(tgt)
    ledger = Ledger(adapter)
    source = TableRef(spec.source.table, spec.source.schema_, spec.source.database) if spec.source.table else None
    inputs: list[str] = []
    if source is not None and adapter.table_sql(source) == tid:
        inputs = resolve_inputs(adapter, loaded, source_relation_sql(adapter, spec, ref_table))
    problems = targets.check(adapter, ledger if ledger.exists() else None, loaded, tgt, tid, inputs_of_target=inputs)
    if not problems and adapter.table_exists(tgt):
        existing = adapter.get_columns(tgt)
        if all(adapter.find_column(existing, c.name) for c in owned_columns(spec)):
            sample = _first_key(adapter, loaded, source_relation_sql(adapter, spec, ref_table))
            refusal = None if sample is None else targets.dry_run(adapter, spec, tgt, sample)
            if refusal is not None:
                problems.append(f"a row like this sync's was refused: {refusal}")
    if problems:
        raise targets.refuse(loaded, tgt, problems)


def _first_key(adapter: Adapter, loaded: LoadedSync, source_sql: str) -> dict[str, Any] | None:
    """The key of one source row with a whole key, as a selection hands it over (for a trial row), or None."""
    spec = loaded.spec
    kinds = resolve_key_types(adapter, loaded, source_sql)
    text = adapter.dialect.text_type
    cols = ", ".join(
        f"{transport_sql(adapter.quote(k, what='key column'), kinds[k], adapter.dialect.types, text)} AS "
        f"{adapter.quote(k, what='key column')}"
        for k in spec.source.key
    )
    whole = " AND ".join(f"{adapter.quote(k, what='key column')} IS NOT NULL" for k in spec.source.key)
    sql = adapter.limit_sql(f"SELECT {cols} FROM ({source_sql}) {adapter.subquery_alias('k')} WHERE {whole}", 1)
    for batch in adapter.stream(sql):
        if batch.num_rows:
            first = denormalize(adapter, batch).slice(0, 1)
            lower = {n.lower(): first.column(i) for i, n in enumerate(first.schema.names)}
            return {k: lower[k.lower()] for k in spec.source.key}
    return None
