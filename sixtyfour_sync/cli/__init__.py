"""The ``sixtyfour-sync`` command line (CONTRACT.md, "Commands").

Global options go before or after the subcommand, as in dbt (see :mod:`sixtyfour_sync.cli_options`). Under
``--log-format json`` every line the process writes, start-up and config errors included, is one JSON object.
"""

from __future__ import annotations

import logging
import sys

import click

from sixtyfour_sync import __version__
from sixtyfour_sync._redact import redact
from sixtyfour_sync.cli.lazy import LazyGroup
from sixtyfour_sync.cli_options import GlobalOptions, global_options, scan_argv
from sixtyfour_sync.errors import SixtyfourSyncError
from sixtyfour_sync.logging import configure_logging, error_event

__all__ = ["GlobalOptions", "cli", "main"]

log = logging.getLogger("sixtyfour_sync.cli")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sixtyfour-sync")
@global_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Enrich warehouse rows with Sixtyfour's Bulk Intelligence API and upsert the results back."""
    opts = ctx.ensure_object(GlobalOptions)
    configure_logging(opts.log_format, debug=opts.debug)


# The subcommands are imported when one runs (cli/lazy.py): --version and --help import none of them.


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
