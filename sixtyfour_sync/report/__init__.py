"""``sixtyfour-sync report``: one self-contained HTML page about the runs and the enriched tables.

:func:`write_report` loads the project, gathers the numbers from the ledger and the targets
(:mod:`.collect`, all aggregated in SQL) and writes the page (:mod:`.render`, pure) atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sixtyfour_sync.engine.project import DbtProject
from sixtyfour_sync.report.collect import collect_report
from sixtyfour_sync.report.location import default_report_path
from sixtyfour_sync.report.model import Report
from sixtyfour_sync.report.render import render_html

__all__ = ["Report", "collect_report", "render_html", "write_report"]


def write_report(
    project_dir: Path | str = ".",
    *,
    out: Path | str | None = None,
    select: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    run_limit: int = 100,
    profiles_dir: Path | str | None = None,
    profile: str | None = None,
    target: str | None = None,
    env: Mapping[str, str] | None = None,
    dbt_project_dir: Path | str | None = None,
    vars: Mapping[str, Any] | None = None,
    target_path: Path | str | None = None,
    now: datetime | None = None,
) -> tuple[Path, Report]:
    """Write the report of the selected syncs to ``out``; return its path and what it shows.

    Without ``out``, the page goes to dbt's target directory in a dbt project or with a target directory set
    (``target_path``, ``DBT_TARGET_PATH``), else to ``report.html`` in the current directory (:mod:`.location`).
    Reads only: nothing is created in the warehouse (a project never run gets a page that says so).
    """
    from sixtyfour_sync.dbt import write_atomically
    from sixtyfour_sync.engine.project import Project
    from sixtyfour_sync.errors import ConfigError

    project = Project.load(
        Path(project_dir),
        profiles_dir=Path(profiles_dir) if profiles_dir else None,
        profile=profile,
        target=target,
        env=env,
        dbt_project_dir=Path(dbt_project_dir) if dbt_project_dir else None,
        vars=vars,
        target_path=target_path,
    )
    with project:
        syncs = project.select(select, exclude)
        if not syncs:
            raise ConfigError("--select/--exclude leave no sync to report on", hint="loosen the selection")
        report = collect_report(project, syncs, run_limit=run_limit, now=now)
    if out is None:
        out = default_report_path(project.dbt or DbtProject(project.project_dir), target_path=target_path, env=env)
    path = Path(out).expanduser().resolve()
    write_atomically(path, render_html(report))
    return path, report
