"""``validate``, ``plan`` and ``run``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from sixtyfour_sync._redact import redact
from sixtyfour_sync.cli.flags import (
    RUN_EXIT_CODES,
    _fail_on_empty,
    _sel,
    _write_artifact,
    log,
    run_options,
)
from sixtyfour_sync.cli_options import GlobalOptions, global_options, selection_options


@click.command()
@global_options
@selection_options(what="Syncs to check")
@_fail_on_empty
@click.pass_obj
def validate(opts: GlobalOptions, select: tuple[str, ...], exclude: tuple[str, ...], fail_on_empty: bool) -> None:
    """Check every profile, model, connection, source and target table; list every problem at once."""
    from sixtyfour_sync.commands import validate as do_validate

    report = do_validate(
        select=_sel(select),
        exclude=_sel(exclude),
        target_path=opts.target_path,
        fail_on_empty=fail_on_empty,
        **opts.common(),
    )
    if opts.log_format == "json":
        problems = [vars(p) for p in report.problems]
        warnings = [vars(w) for w in report.warnings]
        click.echo(
            json.dumps(
                {
                    "event": "validate",
                    "ok": report.ok,
                    "checked": report.checked,
                    "problems": problems,
                    "warnings": warnings,
                }
            )
        )
    else:
        for w in report.warnings:
            click.echo(f"warning: {redact(str(w))}", err=True)
        for p in report.problems:
            click.echo(f"error: {redact(str(p))}", err=True)
        if report.ok:
            click.echo(f"OK: {len(report.checked)} sync(s) valid: {', '.join(report.checked)}")
        else:
            click.echo(f"{len(report.problems)} problem(s) found.", err=True)
    if not report.ok:
        sys.exit(1)


@click.command()
@global_options
@selection_options(what="Syncs to plan")
@run_options
@click.option(
    "--preview",
    type=click.IntRange(min=1),
    metavar="N",
    help="Also write the first N rows a run would send, as the exact JSONL file and config JSON it would "
    "submit, to <target-path>/sixtyfour_preview/<sync>/, and show them.",
)
@click.option(
    "--out",
    "-o",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save the plan to this JSON file, for `run --plan FILE` to execute once it is approved.",
)
@click.pass_obj
def plan(
    opts: GlobalOptions,
    /,
    select: tuple[str, ...],
    exclude: tuple[str, ...],
    full_refresh: bool,
    max_cost_cents: int | None,
    only_rebuilt: bool,
    fail_on_empty: bool,
    preview: int | None,
    out: Path | None,
    **_run_only: Any,
) -> None:
    """Dry run: rows that would be sent per sync and why, files, estimated cost. Calls no API.

    Takes every option `run` takes, so a run's command line plans as it is (--yes, --max-wait, --no-wait and
    --fail-fast change nothing in a plan). --preview N writes and shows what the first file would hold.
    """
    import time

    from sixtyfour_sync.commands import plan as do_plan
    from sixtyfour_sync.ui import print_plans

    started = time.time()
    plans = do_plan(
        select=_sel(select),
        exclude=_sel(exclude),
        full_refresh=full_refresh,
        max_cost_cents=max_cost_cents,
        only_rebuilt=only_rebuilt,
        target_path=opts.target_path,
        preview=preview,
        fail_on_empty=fail_on_empty,
        **opts.common(),
    )
    _write_artifact(opts, "plan", plans, started)
    print_plans(plans, opts.log_format)
    if out is not None:
        _save_plan(opts, plans, out)


def _save_plan(opts: GlobalOptions, plans: Any, out: Path) -> None:
    """``plan -o FILE``: the plan as ``run --plan FILE`` executes it (engine/plan/approval.py), written whole or not at
    all."""
    import datetime as dt
    import json

    from sixtyfour_sync.engine.plan.approval import plan_document

    doc = plan_document(
        plans,
        project=Path(opts.project_dir).resolve().name,
        target=opts.target,
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    tmp = out.with_name(f".{out.name}.part")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    click.echo(f"plan saved to {out}: run it with `sixtyfour-sync run --plan {out}`", err=True)


@click.command(epilog=RUN_EXIT_CODES)
@global_options
@selection_options
@run_options
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Execute an approved plan (`plan -o FILE`): only its syncs, at most its rows and its estimate plus one "
    "row's price; a sync whose definition changed or whose data grew since is refused and says so.",
)
@click.pass_obj
def run(
    opts: GlobalOptions,
    select: tuple[str, ...],
    exclude: tuple[str, ...],
    full_refresh: bool,
    max_cost_cents: int | None,
    only_rebuilt: bool,
    fail_on_empty: bool,
    yes: bool,
    max_wait: float | None,
    no_wait: bool,
    fail_fast: bool,
    fail_on_budget: bool,
    retry_lost: bool,
    retry_unreadable: bool,
    plan_file: Path | None,
) -> None:
    """Finish unfinished jobs, then select, submit, poll, download, parse and upsert.

    Ctrl-C (or SIGTERM) stops submitting, records the calls under way and exits 130 (143); the next run picks
    up the jobs in flight. A second Ctrl-C, a second or more after the first, exits at once.
    """
    import time

    from sixtyfour_sync.commands import plan as do_plan
    from sixtyfour_sync.commands import run as do_run
    from sixtyfour_sync.engine.jobs.scheduler import StopToken
    from sixtyfour_sync.engine.jobs.signals import handle_signals
    from sixtyfour_sync.ui import RichReporter, make_reporter, print_run

    common: dict[str, Any] = {
        "select": _sel(select),
        "exclude": _sel(exclude),
        "full_refresh": full_refresh,
        "max_cost_cents": max_cost_cents,
        "only_rebuilt": only_rebuilt,
        "fail_on_empty": fail_on_empty,
        "target_path": opts.target_path,
        **opts.common(),
    }
    approved: Any = plan_file
    if plan_file is None and not yes and sys.stdin.isatty() and sys.stdout.isatty():
        from sixtyfour_sync.commands import selection_log
        from sixtyfour_sync.ui import print_plans

        selection_log.disabled = True  # the run says "nothing to do" itself; once is enough
        try:
            plans = do_plan(**common)
        finally:
            selection_log.disabled = False
        rows = sum(p.rows for p in plans)
        if rows:
            print_plans(plans, opts.log_format)  # the plan the run then executes, capped at what it shows
            known = [p.estimated_cost_cents for p in plans if p.rows and p.estimated_cost_cents is not None]
            cost = (
                f"about ${sum(known) / 100:,.2f}" if len(known) == sum(1 for p in plans if p.rows) else "cost unknown"
            )
            click.confirm(f"Send {rows:,} row(s) to Sixtyfour ({cost})?", abort=True)
            approved = plans
    started = time.time()
    reporter = make_reporter(opts.log_format)
    token = StopToken()

    def stopping(name: str) -> None:
        log.warning(
            "%s: finishing the calls under way, submitting nothing more (press Ctrl-C again to quit at once)", name
        )

    with handle_signals(token, stopping):  # until the summary is out: a signal's repeats must not cut it short
        try:
            result = do_run(
                max_wait_seconds=max_wait,
                no_wait=no_wait,
                fail_fast=fail_fast,
                reporter=reporter,
                stop=token,
                retry_lost=retry_lost,
                retry_unreadable=retry_unreadable,
                fail_on_budget=fail_on_budget,
                plan=approved,
                **common,
            )
        finally:
            if isinstance(reporter, RichReporter):
                reporter.close()
        _write_artifact(opts, "run", result, started)
        print_run(result, opts.log_format)
    sys.exit(result.exit_code)
