"""``status``, ``ls``, ``cancel`` and ``report``: what the ledger says."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from sixtyfour_sync.cli.flags import (
    _fail_on_empty,
    _say,
    _sel,
)
from sixtyfour_sync.cli_options import GlobalOptions, global_options, selection_options
from sixtyfour_sync.errors import ConfigError


@click.command()
@global_options
@selection_options(what="Syncs whose runs and jobs to show", default="every sync")
@click.option("--run", "run_id", default=None, help="One run's jobs (default: the latest runs).")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=10, show_default=True, help="How many runs.")
@click.option("--wide", "-w", is_flag=True, help="Full task and run ids, every column.")
@click.pass_obj
def status(
    opts: GlobalOptions,
    select: tuple[str, ...],
    exclude: tuple[str, ...],
    run_id: str | None,
    limit: int,
    wide: bool,
) -> None:
    """Runs and jobs from the ledger, with costs."""
    from sixtyfour_sync.commands import status as do_status
    from sixtyfour_sync.ui import print_status

    chosen = _sel(select)
    if exclude:
        chosen = _resolved_names(opts, select, exclude)
    report = do_status(run_id=run_id, select=chosen, limit=limit, **opts.common())
    print_status(report.runs, report.jobs, opts.log_format, wide=wide, quarantined=report.quarantined)


def _resolved_names(opts: GlobalOptions, select: tuple[str, ...], exclude: tuple[str, ...]) -> list[str]:
    """The names a --select/--exclude pair picks (for commands whose engine call takes names only)."""
    from sixtyfour_sync.engine.project import Project

    project = Project.load(
        opts.project_dir.resolve(),
        env=None,
        vars=opts.vars,
        dbt_project_dir=opts.dbt_project_dir,
        target_path=opts.target_path,
    )
    names = [s.spec.name for s in project.select(_sel(select), _sel(exclude))]
    if not names:
        raise ConfigError("--select/--exclude leave no sync", hint="loosen --exclude")
    return names


@click.command("ls")
@global_options
@selection_options(what="Syncs to list")
@_fail_on_empty
@click.option(
    "--output",
    "output",
    type=click.Choice(["table", "name", "json"]),
    default=None,
    help="table (the default), name (one per line, for scripts) or json (also under --log-format json).",
)
@click.pass_obj
def ls_command(
    opts: GlobalOptions, select: tuple[str, ...], exclude: tuple[str, ...], fail_on_empty: bool, output: str | None
) -> None:
    """List the syncs a selection picks: name, endpoint, tier, source, target, tags. Reads the models only."""
    from sixtyfour_sync.commands import list_syncs
    from sixtyfour_sync.ui import print_syncs

    syncs = list_syncs(select=_sel(select), exclude=_sel(exclude), fail_on_empty=fail_on_empty, **opts.common())
    print_syncs(syncs, output or ("json" if opts.log_format == "json" else "table"))


@click.command()
@global_options
@selection_options(what="Syncs whose unfinished jobs to cancel", default="every sync")
@click.option("--run", "run_id", default=None, help="Cancel this run's unfinished jobs (default: all unfinished).")
@click.pass_obj
def cancel(opts: GlobalOptions, select: tuple[str, ...], exclude: tuple[str, ...], run_id: str | None) -> None:
    """Cancel the unfinished jobs of a run."""
    from sixtyfour_sync.commands import cancel as do_cancel

    chosen = _resolved_names(opts, select, exclude) if exclude else _sel(select)
    done = do_cancel(run_id=run_id, select=chosen, **opts.common())
    if opts.log_format == "json":
        click.echo(json.dumps({"event": "cancel", "cancelled": done}))
        if any("error" in d for d in done):
            sys.exit(1)
        return
    if not done:
        click.echo("No unfinished jobs to cancel.")
    for d in done:
        click.echo(f"{d['sync']}: task {d['task_id']}: {d.get('status') or 'error: ' + str(d.get('error'))}")
    if any("error" in d for d in done):
        sys.exit(1)


@click.command()
@global_options
@selection_options(what="Syncs to show in the report")
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the HTML page (replaced atomically). Default: report.html in dbt's target directory in "
    "a dbt project or with --target-path/DBT_TARGET_PATH, else in the current directory.",
)
@click.option(
    "--runs",
    "run_limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="How many of the latest runs to show.",
)
@click.pass_obj
def report(
    opts: GlobalOptions, select: tuple[str, ...], exclude: tuple[str, ...], out: Path | None, run_limit: int
) -> None:
    """One self-contained HTML page: runs, costs, fill rates, confidences, statuses, tiers, held jobs, errors."""
    from sixtyfour_sync.report import write_report

    path, shown = write_report(
        select=_sel(select),
        exclude=_sel(exclude),
        out=out,
        run_limit=run_limit,
        target_path=opts.target_path,
        **opts.common(),
    )
    _say(
        opts,
        "report.written",
        f"wrote {path} ({len(shown.runs)} run(s), {len(shown.syncs)} sync(s))",
        path=str(path),
        runs=len(shown.runs),
        syncs=[s.name for s in shown.syncs],
    )
