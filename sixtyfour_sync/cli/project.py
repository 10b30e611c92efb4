"""``debug``, ``schema``, ``init``, ``dbt-sources`` and ``demo``."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from sixtyfour_sync.cli.flags import (
    _fail_on_empty,
    _say,
    _sel,
)
from sixtyfour_sync.cli_options import GlobalOptions, command_line, global_options, selection_options
from sixtyfour_sync.scaffold import WAREHOUSES


@click.command()
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


@click.command("schema")
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


@click.command()
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


@click.command("dbt-sources")
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


@click.command()
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
