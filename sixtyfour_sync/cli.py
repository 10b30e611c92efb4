"""The ``sixtyfour-sync`` command line (CONTRACT.md, "Commands")."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from sixtyfour_sync import __version__
from sixtyfour_sync._redact import redact
from sixtyfour_sync.errors import SixtyfourSyncError
from sixtyfour_sync.logging import configure_logging
from sixtyfour_sync.scaffold import WAREHOUSES

__all__ = ["cli", "main"]

log = logging.getLogger("sixtyfour_sync.cli")


@dataclass
class GlobalOptions:
    """Options shared by every command."""

    project_dir: Path
    profiles_dir: Path | None
    profile: str | None
    target: str | None
    debug: bool
    log_format: str
    dbt_project_dir: Path | None = None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sixtyfour-sync")
@click.option(
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="Directory holding models/ (and dbt_project.yml, profiles.yml when present).",
)
@click.option(
    "--profiles-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory holding profiles.yml (before SIXTYFOUR_SYNC_PROFILES_DIR and DBT_PROFILES_DIR).",
)
@click.option(
    "--dbt-project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The dbt project (dbt_project.yml, target/manifest.json) when it is not the project directory.",
)
@click.option("--profile", default=None, help="Profile name in profiles.yml.")
@click.option("--target", default=None, help="Target (output) name within the profile.")
@click.option("--debug", is_flag=True, help="Verbose logs and full tracebacks.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one structured event per line, for schedulers.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    project_dir: Path,
    profiles_dir: Path | None,
    dbt_project_dir: Path | None,
    profile: str | None,
    target: str | None,
    debug: bool,
    log_format: str,
) -> None:
    """Enrich warehouse rows with Sixtyfour's Bulk Intelligence API and upsert the results back."""
    configure_logging(log_format, debug=debug)
    ctx.obj = GlobalOptions(project_dir, profiles_dir, profile, target, debug, log_format, dbt_project_dir)


_select = click.option(
    "--select",
    "-s",
    "select",
    multiple=True,
    help="Sync names (globs allowed) or tag:NAME; repeat or separate with spaces. Default: every enabled sync.",
)


def _common(opts: GlobalOptions) -> dict[str, Any]:
    return {
        "project_dir": opts.project_dir,
        "profiles_dir": opts.profiles_dir,
        "profile": opts.profile,
        "target": opts.target,
        "dbt_project_dir": opts.dbt_project_dir,
    }


@cli.command()
@_select
@click.pass_obj
def validate(opts: GlobalOptions, select: tuple[str, ...]) -> None:
    """Check every profile, model, connection and target table; list every problem at once."""
    from sixtyfour_sync.engine.api import validate as do_validate

    report = do_validate(select=select or None, **_common(opts))
    if opts.log_format == "json":
        click.echo(
            json.dumps({"ok": report.ok, "checked": report.checked, "problems": [vars(p) for p in report.problems]})
        )
    else:
        for p in report.problems:
            click.echo(f"error: {redact(str(p))}", err=True)
        if report.ok:
            click.echo(f"OK: {len(report.checked)} sync(s) valid: {', '.join(report.checked)}")
        else:
            click.echo(f"{len(report.problems)} problem(s) found.", err=True)
    if not report.ok:
        sys.exit(1)


@cli.command()
@_select
@click.option("--full-refresh", is_flag=True, help="Plan as if every row had to be enriched again.")
@click.option("--max-cost-cents", type=click.IntRange(min=0), default=None, help="The budget to plan against.")
@click.pass_obj
def plan(opts: GlobalOptions, select: tuple[str, ...], full_refresh: bool, max_cost_cents: int | None) -> None:
    """Dry run: rows that would be sent per sync and why, files, estimated cost. Calls no API."""
    from sixtyfour_sync.engine.api import plan as do_plan
    from sixtyfour_sync.ui import print_plans

    plans = do_plan(select=select or None, full_refresh=full_refresh, max_cost_cents=max_cost_cents, **_common(opts))
    print_plans(plans, opts.log_format)


@cli.command()
@_select
@click.option("--full-refresh", is_flag=True, help="Enrich every selected row again (pays again).")
@click.option(
    "--max-cost-cents", type=click.IntRange(min=0), default=None, help="Stop before the estimate exceeds this."
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation on a terminal.")
@click.option(
    "--max-wait",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop waiting for jobs after this many seconds (exit 3; the next run picks them up).",
)
@click.option(
    "--only-rebuilt",
    is_flag=True,
    help="Only syncs whose source.ref model succeeded in the last dbt invocation (target/run_results.json).",
)
@click.option(
    "--retry-lost",
    is_flag=True,
    help="Look for lost jobs again (the API answered 404) and ask the rows of those still unknown again.",
)
@click.option(
    "--retry-unreadable",
    is_flag=True,
    help="Download unreadable results again; ask the rows of those still unreadable again.",
)
@click.pass_obj
def run(
    opts: GlobalOptions,
    select: tuple[str, ...],
    full_refresh: bool,
    max_cost_cents: int | None,
    yes: bool,
    max_wait: float | None,
    only_rebuilt: bool,
    retry_lost: bool,
    retry_unreadable: bool,
) -> None:
    """Finish unfinished jobs, then select, submit, poll, download, parse and upsert.

    Ctrl-C (or SIGTERM) stops submitting, records the calls under way and exits 130 (143); the next run picks
    up the jobs in flight. A second Ctrl-C exits at once.
    """
    from sixtyfour_sync.engine.api import plan as do_plan
    from sixtyfour_sync.engine.api import run as do_run
    from sixtyfour_sync.engine.scheduler import StopToken, handle_signals
    from sixtyfour_sync.ui import RichReporter, make_reporter, print_run

    if not yes and sys.stdin.isatty() and sys.stdout.isatty():
        plans = do_plan(
            select=select or None, full_refresh=full_refresh, max_cost_cents=max_cost_cents, **_common(opts)
        )
        rows = sum(p.rows for p in plans)
        if rows:
            known = [p.estimated_cost_cents for p in plans if p.rows and p.estimated_cost_cents is not None]
            cost = (
                f"about ${sum(known) / 100:,.2f}" if len(known) == sum(1 for p in plans if p.rows) else "cost unknown"
            )
            click.confirm(f"Send {rows:,} row(s) to Sixtyfour ({cost})?", abort=True)
    reporter = make_reporter(opts.log_format)
    token = StopToken()

    def stopping(name: str) -> None:
        log.warning(
            "%s: finishing the calls under way, submitting nothing more (press Ctrl-C again to quit at once)", name
        )

    try:
        with handle_signals(token, stopping):
            result = do_run(
                select=select or None,
                full_refresh=full_refresh,
                max_cost_cents=max_cost_cents,
                max_wait_seconds=max_wait,
                only_rebuilt=only_rebuilt,
                reporter=reporter,
                stop=token,
                retry_lost=retry_lost,
                retry_unreadable=retry_unreadable,
                **_common(opts),
            )
    finally:
        if isinstance(reporter, RichReporter):
            reporter.close()
    print_run(result, opts.log_format)
    sys.exit(result.exit_code)


@cli.command()
@_select
@click.option("--run", "run_id", default=None, help="One run's jobs (default: the latest runs).")
@click.pass_obj
def status(opts: GlobalOptions, select: tuple[str, ...], run_id: str | None) -> None:
    """Runs and jobs from the ledger, with costs."""
    from sixtyfour_sync.engine.api import status as do_status
    from sixtyfour_sync.ui import print_status

    report = do_status(run_id=run_id, select=select or None, **_common(opts))
    print_status(report.runs, report.jobs, opts.log_format)


@cli.command()
@_select
@click.option("--run", "run_id", default=None, help="Cancel this run's unfinished jobs (default: all unfinished).")
@click.pass_obj
def cancel(opts: GlobalOptions, select: tuple[str, ...], run_id: str | None) -> None:
    """Cancel the unfinished jobs of a run."""
    from sixtyfour_sync.engine.api import cancel as do_cancel

    done = do_cancel(run_id=run_id, select=select or None, **_common(opts))
    if opts.log_format == "json":
        click.echo(json.dumps({"cancelled": done}))
        return
    if not done:
        click.echo("No unfinished jobs to cancel.")
    for d in done:
        click.echo(f"{d['sync']}: task {d['task_id']}: {d.get('status') or 'error: ' + str(d.get('error'))}")
    if any("error" in d for d in done):
        sys.exit(1)


@cli.command()
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
@click.option("--no-input", is_flag=True, help="Never prompt: use the flags and defaults (for scripts).")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def init(directory: Path, no_input: bool, force: bool, **flags: Any) -> None:
    """Scaffold profiles.yml and a commented models file, interactively or from flags."""
    from sixtyfour_sync.scaffold import InitAnswers, write_project

    interactive = not no_input and sys.stdin.isatty()
    a = InitAnswers()

    def ask(name: str, prompt: str, default: str, choices: list[str] | None = None) -> str:
        given = flags.get(name)
        if given is not None:
            return str(given)
        if not interactive:
            return default
        kind = click.Choice(choices) if choices else str
        return str(click.prompt(prompt, default=default, type=kind))

    a.warehouse = ask("warehouse", "Warehouse", "duckdb", list(WAREHOUSES))
    if a.warehouse == "duckdb":
        a.duckdb_path = ask("duckdb_path", "DuckDB file", "warehouse.duckdb")
    elif a.warehouse == "postgres":
        a.host = ask("host", "Host", "localhost")
        a.user = ask("user", "User", "postgres")
        a.database = ask("database", "Database", "analytics")
    elif a.warehouse == "snowflake":
        a.account = ask("account", "Account (orgname-accountname)", "myorg-myaccount")
        a.user = ask("user", "User", "ENRICH")
        a.database = ask("database", "Database", "ANALYTICS")
    elif a.warehouse == "bigquery":
        a.database = ask("database", "GCP project id", "my-gcp-project")
    elif a.warehouse == "databricks":
        a.host = ask("host", "Workspace host", "dbc-1234.cloud.databricks.com")
        a.http_path = ask("http_path", "SQL warehouse HTTP path", "/sql/1.0/warehouses/0123456789abcdef")
        a.database = ask("database", "Catalog", "main")
    a.schema = ask("schema", "Schema", {"duckdb": "main", "postgres": "public"}.get(a.warehouse, "analytics"))
    a.endpoint = ask("endpoint", "Endpoint", "people", ["people", "company"])
    a.table = ask("table", "Source table", "leads" if a.endpoint == "people" else "companies")
    a.key = ask("key", "Key column", "lead_id" if a.endpoint == "people" else "company_id")
    cols = ask("columns", "Input columns, comma-separated (empty: all but the key)", "")
    a.columns = [c.strip() for c in cols.split(",") if c.strip()]
    a.sync_name = ask("sync_name", "Sync name", f"enrich_{a.table}")
    for path in write_project(directory, a, force=force):
        click.echo(f"wrote {path}")
    click.echo(f"next: cd {directory} && sixtyfour-sync validate && sixtyfour-sync plan")


@cli.command("dbt-sources")
@_select
@click.option("--name", "source_name", default="sixtyfour", show_default=True, help="The dbt source name.")
@click.pass_obj
def dbt_sources(opts: GlobalOptions, select: tuple[str, ...], source_name: str) -> None:
    """Print a dbt sources YAML for the target tables, so dbt models can source() them."""
    from sixtyfour_sync.engine.api import dbt_sources as make

    click.echo(make(select=select or None, source_name=source_name, **_common(opts)), nl=False)


@cli.command()
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


def _register_commands() -> None:
    from sixtyfour_sync.emulator.cli import emulator_command

    cli.add_command(emulator_command, "emulator")


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and map errors to CONTRACT.md's exit codes."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="sixtyfour-sync", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:  # usage errors: exit 2
        exc.show()
        sys.exit(exc.exit_code)
    except SixtyfourSyncError as exc:
        if debug:
            log.exception("failed")
        click.echo(f"Error: {redact(str(exc))}", err=True)
        if exc.hint:
            click.echo(f"Hint: {redact(exc.hint)}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # an internal error: say so, traceback only with --debug
        if debug:
            log.exception("internal error")
        click.echo(
            f"Internal error ({type(exc).__name__}): {redact(str(exc))}\n"
            "This is a bug in sixtyfour-sync; rerun with --debug for the traceback and report it.",
            err=True,
        )
        sys.exit(1)
    sys.exit(0)
