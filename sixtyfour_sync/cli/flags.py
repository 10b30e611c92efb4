"""What the commands share: their common options, and saying a result as text or as one JSON object."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from sixtyfour_sync.cli_options import GlobalOptions

log = logging.getLogger("sixtyfour_sync.cli")


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


def _say(opts: GlobalOptions, event_name: str, text: str, **fields: Any) -> None:
    """One line for a person, or one JSON object under --log-format json."""
    if opts.log_format == "json":
        click.echo(json.dumps({"event": event_name, "message": text, **fields}, default=str))
    else:
        click.echo(text)


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


def run_options(f: Any) -> Any:
    """The options of a run, which ``plan`` takes too (the plan it shows, and saves, is the run they make)."""
    for option in reversed(
        (_full_refresh, _max_cost, _only_rebuilt, _fail_on_empty, _yes, _max_wait, _no_wait, _fail_fast,
         _fail_on_budget, _retry_lost, _retry_unreadable)
    ):  # fmt: skip
        f = option(f)
    return f
