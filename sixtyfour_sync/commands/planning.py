"""``plan``: what a run would send and what it would cost, sync by sync."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sixtyfour_sync.commands._shared import (
    _only_rebuilt,
    _project,
    _select,
)
from sixtyfour_sync.engine.plan.checks import check_sync
from sixtyfour_sync.engine.plan.planner import plan_sync
from sixtyfour_sync.engine.summary import SyncPlan
from sixtyfour_sync.errors import ConfigError, ConfigProblem
from sixtyfour_sync.warehouse.types import TableRef


def plan(
    project_dir: Path | str = ".",
    *,
    select: Sequence[str] | None = None,
    full_refresh: bool = False,
    max_cost_cents: int | None = None,
    profiles_dir: Path | str | None = None,
    profile: str | None = None,
    target: str | None = None,
    env: Mapping[str, str] | None = None,
    dbt_project_dir: Path | str | None = None,
    exclude: Sequence[str] | None = None,
    only_rebuilt: bool = False,
    vars: Mapping[str, Any] | None = None,
    target_path: Path | str | None = None,
    preview: int | None = None,
    fail_on_empty: bool = False,
) -> list[SyncPlan]:
    """What ``run`` would send and spend, per sync. Writes to no warehouse and calls no API.

    ``preview`` N writes, per sync, the first N rows a run would send as the JSONL file and the ``config``
    JSON it would submit, under ``<target dir>/sixtyfour_preview/<sync>/``.

    Every sync is checked first (:func:`~sixtyfour_sync.engine.plan.checks.check_sync`): one ConfigError lists the
    problems of all of them. A selection that picks no sync logs a warning saying why (``fail_on_empty``: raises
    a ConfigError instead).
    """
    project = _project(project_dir, profiles_dir, profile, target, env, dbt_project_dir, vars, target_path)
    with project:
        syncs = _select(project, select, exclude, fail_on_empty=fail_on_empty)
        if only_rebuilt:
            syncs, _ = _only_rebuilt(project, syncs)
        problems: list[ConfigProblem] = []
        refs: dict[str, TableRef | None] = {}
        for s in syncs:
            try:
                refs[s.spec.name] = check_sync(project, s, project.adapter_for(s))
            except ConfigError as exc:
                problems.extend(exc.problems or [ConfigProblem(str(s.file), s.spec.name, str(exc), line=s.line)])
        if problems:
            raise ConfigError(f"{len(problems)} problem(s) found:", problems=problems)
        return [
            plan_sync(
                project.adapter_for(s),
                s,
                ref_table=refs[s.spec.name],
                full_refresh=full_refresh,
                budget_cents=max_cost_cents,
                prices=project.prices,
                preview_rows=preview,
                preview_dir=(project.target_dir or project.project_dir / "target") / "sixtyfour_preview" / s.spec.name,
            )
            for s in syncs
        ]
