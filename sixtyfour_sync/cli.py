"""The ``sixtyfour-sync`` command line (CONTRACT.md, "Commands").

Global options go before or after the subcommand, as in dbt (see :mod:`sixtyfour_sync.cli_options`). Under
``--log-format json`` every line the process writes, start-up and config errors included, is one JSON object.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from sixtyfour_sync import __version__
from sixtyfour_sync._redact import redact
from sixtyfour_sync.cli_options import GlobalOptions, command_line, global_options, scan_argv, selection_options
from sixtyfour_sync.errors import ConfigError, SixtyfourSyncError
from sixtyfour_sync.logging import configure_logging, error_event
from sixtyfour_sync.scaffold import WAREHOUSES

__all__ = ["GlobalOptions", "cli", "main"]

log = logging.getLogger("sixtyfour_sync.cli")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sixtyfour-sync")
@global_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Enrich warehouse rows with Sixtyfour's Bulk Intelligence API and upsert the results back."""
    opts = ctx.ensure_object(GlobalOptions)
    configure_logging(opts.log_format, debug=opts.debug)


def _sel(values: tuple[str, ...]) -> list[str] | None:
    return list(values) or None


_full_refresh = click.option("--full-refresh", is_flag=True, help="Every selected row again (a run pays again).")
_max_cost = click.option(
    "--max-cost-cents", type=click.IntRange(min=0), default=None, help="The run's budget: stop before exceeding it."
)
_only_rebuilt = click.option(
    "--only-rebuilt",
    is_flag=True,
    help="Only syncs whose source.ref model succeeded in the last dbt invocation (target/run_results.json).",
)
_fail_on_empty = click.option(
    "--fail-on-empty",
    is_flag=True,
    help="Exit 1 when --select/--exclude leave no sync (default: a warning that says why, and exit 0).",
)
_yes = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation on a terminal.")
_max_wait = click.option(
    "--max-wait",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop waiting for jobs after this many seconds (exit 3; the next run picks them up).",
)
_no_wait = click.option(
    "--no-wait",
    is_flag=True,
    help="Submit everything selected, record the jobs and exit 0 without waiting for them: `webhooks serve` "
    "or the next run finishes them.",
)
_fail_fast = click.option(
    "--fail-fast", "-x", is_flag=True, help="Stop at the first sync that fails (default: run the others)."
)
_fail_on_budget = click.option(
    "--fail-on-budget",
    is_flag=True,
    help="Exit 1 when a sync reaches its budget (default: it sends what fits, warns and exits 0, as a cap should).",
)
_retry_lost = click.option(
    "--retry-lost",
    is_flag=True,
    help="Look for lost jobs again (the API answered 404); ask the rows of those still unknown again.",
)
RUN_EXIT_CODES = """\b
Exit codes:
  0    success; also "nothing to do" (the selection picks no sync), and
       --no-wait once everything selected is submitted
  1    failure: config, API key, out of credits, bad data, an internal
       error (it says so); --fail-on-empty with no sync selected;
       --fail-on-budget when a sync reached its budget (without it, a
       budget reached is a warning: status budget_reached, exit 0)
  2    bad command-line usage
  3    partial: some jobs failed, or were still running when the run
       stopped waiting (--max-wait); the next run picks them up
  130  stopped by Ctrl-C (SIGINT); 143 by SIGTERM
"""

_retry_unreadable = click.option(
    "--retry-unreadable",
    is_flag=True,
    help="Download unreadable results again; ask the rows of those still unreadable again.",
)


@cli.command()
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


def _write_artifact(opts: GlobalOptions, command: str, payload: Any, started: float) -> None:
    from sixtyfour_sync.artifacts import write_run_results

    path = write_run_results(
        payload,
        command=command,
        started=started,
        project_dir=opts.project_dir,
        dbt_project_dir=opts.dbt_project_dir,
        target_path=opts.target_path,
        args=sys.argv[1:],
    )
    log.debug("wrote %s", path)


@cli.command()
@global_options
@selection_options(what="Syncs to plan")
@_full_refresh
@_max_cost
@_only_rebuilt
@_fail_on_empty
@_yes
@_max_wait
@_no_wait
@_fail_fast
@_fail_on_budget
@_retry_lost
@_retry_unreadable
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
    import os

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


@cli.command(epilog=RUN_EXIT_CODES)
@global_options
@selection_options
@_full_refresh
@_max_cost
@_only_rebuilt
@_fail_on_empty
@_yes
@_max_wait
@_no_wait
@_fail_fast
@_fail_on_budget
@_retry_lost
@_retry_unreadable
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


@cli.command()
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


@cli.command("ls")
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


@cli.command()
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


@cli.command()
@global_options
@selection_options(what="Syncs whose profile, target, connection and manifest to check")
@click.pass_obj
def debug(opts: GlobalOptions, select: tuple[str, ...], exclude: tuple[str, ...]) -> None:
    """Like `dbt debug`: which profile and target and why, the connection, schemas, manifest, API key, balance."""
    from sixtyfour_sync.debug import print_checks, run_checks

    checks = run_checks(select=_sel(select), exclude=_sel(exclude), target_path=opts.target_path, **opts.common())
    print_checks(checks, opts.log_format)
    if any(c.ok is False for c in checks):
        sys.exit(1)


@cli.command("schema")
@global_options
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write it to this file.")
@click.pass_obj
def schema_command(opts: GlobalOptions, output: Path | None) -> None:
    """Print the JSON Schema of the sync YAML (models/*.yml), for editors and CI."""
    from sixtyfour_sync.config.reference import schema_text

    text = schema_text()
    if output is None:
        click.echo(text, nl=False)
        return
    from sixtyfour_sync.dbt import write_atomically

    write_atomically(output, text)
    _say(opts, "schema.written", f"wrote {output}", path=str(output))


def _say(opts: GlobalOptions, event_name: str, text: str, **fields: Any) -> None:
    """One line for a person, or one JSON object under --log-format json."""
    if opts.log_format == "json":
        click.echo(json.dumps({"event": event_name, "message": text, **fields}, default=str))
    else:
        click.echo(text)


@cli.command()
@global_options
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--warehouse", type=click.Choice(list(WAREHOUSES)), default=None)
@click.option("--endpoint", type=click.Choice(["people", "company"]), default=None)
@click.option("--sync-name", default=None, help="Name of the sync (default enrich_<table>).")
@click.option("--table", default=None, help="Source table.")
@click.option("--key", default=None, help="Key column of the source table.")
@click.option("--columns", default=None, help="Comma-separated input columns (default: all but the key).")
@click.option("--schema", default=None, help="Warehouse schema.")
@click.option(
    "--database", default=None, help="Database (postgres, snowflake), project (bigquery), catalog (databricks)."
)
@click.option("--host", default=None, help="Host (postgres, databricks).")
@click.option("--http-path", default=None, help="SQL warehouse HTTP path (databricks).")
@click.option("--user", default=None, help="User (postgres, snowflake).")
@click.option("--account", default=None, help="Account (snowflake).")
@click.option("--path", "duckdb_path", default=None, help="DuckDB file (duckdb).")
@click.option(
    "--model",
    default=None,
    help="In a dbt project: the dbt model the sync reads (source.ref). Default: picked from the manifest's models "
    "(the first by name with --no-input).",
)
@click.option("--no-input", is_flag=True, help="Never prompt: use the flags and defaults (for scripts).")
@click.option(
    "--force", is_flag=True, help="Overwrite the sync file (never a profiles.yml that holds another profile)."
)
@click.pass_obj
def init(opts: GlobalOptions, /, directory: Path, no_input: bool, force: bool, **flags: Any) -> None:
    """Scaffold profiles.yml and a commented models file, interactively or from flags.

    Inside a dbt project (dbt_project.yml here or above): a ref: sync in sixtyfour/ on the dbt project's profile,
    and no profiles.yml unless none is found (docs/dbt.md).
    """
    from sixtyfour_sync.scaffold import run_init

    interactive = not no_input and sys.stdin.isatty()
    outcome = run_init(
        directory,
        flags,
        interactive=interactive,
        force=force,
        profiles_dir=opts.profiles_dir,
        profile=opts.profile,
        target=opts.target,
        target_path=opts.target_path,
        env=os.environ,
        echo=lambda event_name, text, fields: _say(opts, event_name, text, **fields),
    )
    exe = command_line(outcome.run_dir)
    steps = " && ".join([*outcome.before, f"{exe} debug", f"{exe} plan"])
    _say(opts, "init.next", f"next: cd {shlex.quote(str(outcome.run_dir))} && {steps}")


@cli.command("dbt-sources")
@global_options
@selection_options(what="Syncs whose target tables to write as dbt sources")
@click.option("--name", "source_name", default="sixtyfour", show_default=True, help="The dbt source name.")
@click.option(
    "--schema",
    "schema",
    default=None,
    help="Schema written for targets that follow the profile (default: {{ target.schema }}, dbt's current "
    "target; e.g. \"{{ var('enriched_schema') }}\").",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the YAML to this file (atomically: dbt never reads half a file). Default: stdout.",
)
@_fail_on_empty
@click.pass_obj
def dbt_sources(
    opts: GlobalOptions,
    select: tuple[str, ...],
    exclude: tuple[str, ...],
    source_name: str,
    schema: str | None,
    output: Path | None,
    fail_on_empty: bool,
) -> None:
    """A dbt sources YAML for the target tables, with freshness, so dbt models can source() them."""
    from sixtyfour_sync.commands import dbt_sources as make

    text = make(
        select=_sel(select),
        exclude=_sel(exclude),
        source_name=source_name,
        schema=schema,
        fail_on_empty=fail_on_empty,
        **opts.common(),
    )
    if output is None:
        click.echo(text, nl=False)
        return
    from sixtyfour_sync.dbt import write_atomically

    write_atomically(output, text)
    _say(opts, "dbt_sources.written", f"wrote {output}", path=str(output))


@cli.command()
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


@cli.command()
@global_options
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default="sixtyfour-demo",
    show_default=True,
    help="Where to write the demo project (replaced if it holds an earlier demo).",
)
@click.option("--job-seconds", type=click.FloatRange(min=0), default=2.0, show_default=True, help="Emulated job time.")
@click.pass_obj
def demo(opts: GlobalOptions, directory: Path, job_seconds: float) -> None:
    """The whole pipeline on sample data: DuckDB and the in-process emulator; no key, no network."""
    from sixtyfour_sync.demo import run_demo

    sys.exit(run_demo(directory, log_format=opts.log_format, job_seconds=job_seconds))


@cli.group()
def webhooks() -> None:
    """Webhook-driven completion: receive Sixtyfour's deliveries and finish the jobs they announce."""


@webhooks.command("serve")
@global_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any free).")
@click.option(
    "--finish-wait",
    type=click.FloatRange(min=0),
    default=120.0,
    show_default=True,
    help="Longest a finish polls a job the API has not ended yet (holding no lease) before trying again later.",
)
@click.option(
    "--give-up-after",
    type=click.FloatRange(min=1),
    default=3600.0,
    show_default=True,
    help="Seconds after a delivery when a task still unfinished is left to the next `run`.",
)
@click.pass_obj
def webhooks_serve(opts: GlobalOptions, host: str, port: int, finish_wait: float, give_up_after: float) -> None:
    """Listen for deliveries (plain HTTP: put it behind the public HTTPS address given as webhook_url).

    Each delivery is checked against SIXTYFOUR_WEBHOOK_SECRET (401 when it does not match or is over 300 s
    old), recorded once by its event id (the signed body's event_id), and answered at once; its job is then
    finished in the background: the API is asked until it ends the job, without the sync's lease, then the
    lease is taken for fresh links, download and merge. Ctrl-C or SIGTERM stops after the finish under way.
    """
    import os
    import time

    from sixtyfour_sync.engine.jobs.scheduler import StopToken
    from sixtyfour_sync.engine.jobs.signals import handle_signals
    from sixtyfour_sync.receiver.app import build_server, webhook_secret
    from sixtyfour_sync.ui import LogReporter

    secret = webhook_secret(os.environ)
    if not os.environ.get("SIXTYFOUR_API_KEY"):
        raise ConfigError(
            "no API key: set SIXTYFOUR_API_KEY", hint="finishing a job asks the API for its status and its result"
        )
    token = StopToken()
    server = build_server(
        host,
        port,
        secret=secret,
        project=opts.common(),
        api_url=os.environ.get("SIXTYFOUR_API_URL") or None,
        finish_wait_seconds=finish_wait,
        give_up_after=give_up_after,
        stop=token,
        reporter=LogReporter(),
    )
    with handle_signals(token), server.running():
        _say(opts, "webhooks.listening", f"listening on {server.url} (POST deliveries; GET /healthz)", url=server.url)
        sys.stdout.flush()
        while not token.requested:
            time.sleep(0.2)
    _say(opts, "webhooks.stopped", f"stopped ({token.reason})", reason=token.reason)


def _register_commands() -> None:
    from sixtyfour_sync.emulator.cli import emulator_command

    cli.add_command(emulator_command, "emulator")


_register_commands()


def _fail(fmt: str, exc: BaseException, exit_code: int, *, hint: str | None = None, kind: str = "error") -> None:
    """Report an error as text or as one JSON object on stderr, then exit."""
    problems = [vars(p) for p in getattr(exc, "problems", []) or []]
    if fmt == "json":
        error_event(exc, exit_code=exit_code, kind=kind, hint=hint, problems=problems)
        sys.exit(exit_code)
    message = redact(str(exc))
    if kind == "internal":
        message = (
            f"Internal error ({type(exc).__name__}): {message}\n"
            "This is a bug in sixtyfour-sync; rerun with --debug for the traceback and report it."
        )
    elif kind == "error":
        message = f"Error: {message}"
    click.echo(message, err=True)
    if hint:
        click.echo(f"Hint: {redact(hint)}", err=True)
    sys.exit(exit_code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and map errors to CONTRACT.md's exit codes."""
    args = list(argv if argv is not None else sys.argv[1:])
    fmt, debug = scan_argv(args)
    if fmt == "json":
        configure_logging("json", debug=debug)
    try:
        cli.main(args=args, prog_name="sixtyfour-sync", standalone_mode=False)
    except click.exceptions.Abort:
        _fail(fmt, RuntimeError("Aborted."), 1, kind="abort")
    except click.ClickException as exc:  # usage errors: exit 2
        if fmt == "json":
            _fail(fmt, RuntimeError(exc.format_message()), exc.exit_code, kind="usage")
        exc.show()
        sys.exit(exc.exit_code)
    except SixtyfourSyncError as exc:
        if debug:
            log.exception("failed")
        _fail(fmt, exc, exc.exit_code, hint=exc.hint)
    except KeyboardInterrupt:
        _fail(fmt, RuntimeError("Interrupted."), 130, kind="interrupt")
    except Exception as exc:  # an internal error: say so, traceback only with --debug
        if debug:
            log.exception("internal error")
        _fail(fmt, exc, 1, kind="internal")
    sys.exit(0)
