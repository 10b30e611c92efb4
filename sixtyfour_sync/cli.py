"""The ``sixtyfour-sync`` command line (CONTRACT.md, "Commands")."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from sixtyfour_sync import __version__
from sixtyfour_sync._redact import redact
from sixtyfour_sync.errors import SixtyfourSyncError
from sixtyfour_sync.logging import configure_logging

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
    profile: str | None,
    target: str | None,
    debug: bool,
    log_format: str,
) -> None:
    """Enrich warehouse rows with Sixtyfour's Bulk Intelligence API and upsert the results back."""
    configure_logging(log_format, debug=debug)
    ctx.obj = GlobalOptions(project_dir, profiles_dir, profile, target, debug, log_format)


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
