"""The command group that imports a subcommand's module only when that subcommand runs.

``sixtyfour-sync --version`` and ``--help`` import none of the commands' modules: ``--help`` lists each command
with the short help kept in :data:`COMMANDS`, which tests/test_startup.py checks against the commands themselves.
Click documents this pattern as a "lazily loaded group".
"""

from __future__ import annotations

import importlib
from typing import Any

import click

#: name -> (module, attribute, the first paragraph of the command's help).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "cancel": ("sixtyfour_sync.cli.ledger", "cancel", "Cancel the unfinished jobs of a run."),
    "dbt-sources": (
        "sixtyfour_sync.cli.project",
        "dbt_sources",
        "A dbt sources YAML for the target tables, with freshness, so dbt models can source() them.",
    ),
    "debug": (
        "sixtyfour_sync.cli.project",
        "debug",
        "Like `dbt debug`: which profile and target and why, the connection, schemas, manifest, API key, balance.",
    ),
    "demo": (
        "sixtyfour_sync.cli.project",
        "demo",
        "The whole pipeline on sample data: DuckDB and the in-process emulator; no key, no network.",
    ),
    "emulator": (
        "sixtyfour_sync.emulator.cli",
        "emulator_command",
        "Serve the local Sixtyfour API emulator (for development, tests and the demo).",
    ),
    "evaluate": (
        "sixtyfour_sync.cli.evaluate",
        "evaluate",
        "Measure how right a sync's answers are: sample rows to label, then score them against the labels.",
    ),
    "init": (
        "sixtyfour_sync.cli.project",
        "init",
        "Scaffold profiles.yml and a commented models file, interactively or from flags.",
    ),
    "ls": (
        "sixtyfour_sync.cli.ledger",
        "ls_command",
        "List the syncs a selection picks: name, endpoint, tier, source, target, tags. Reads the models only.",
    ),
    "plan": (
        "sixtyfour_sync.cli.runs",
        "plan",
        "Dry run: rows that would be sent per sync and why, files, estimated cost. Calls no API.",
    ),
    "report": (
        "sixtyfour_sync.cli.ledger",
        "report",
        "One self-contained HTML page: runs, costs, fill rates, confidences, statuses, tiers, held jobs, errors.",
    ),
    "run": (
        "sixtyfour_sync.cli.runs",
        "run",
        "Finish unfinished jobs, then select, submit, poll, download, parse and upsert.",
    ),
    "schema": (
        "sixtyfour_sync.cli.project",
        "schema_command",
        "Print the JSON Schema of the sync YAML (models/*.yml), for editors and CI.",
    ),
    "status": ("sixtyfour_sync.cli.ledger", "status", "Runs and jobs from the ledger, with costs."),
    "validate": (
        "sixtyfour_sync.cli.runs",
        "validate",
        "Check every profile, model, connection, source and target table; list every problem at once.",
    ),
    "webhooks": (
        "sixtyfour_sync.cli.webhooks",
        "webhooks",
        "Webhook-driven completion: receive Sixtyfour's deliveries and finish the jobs they announce.",
    ),
}


class LazyGroup(click.Group):
    """A group whose subcommands are named in :data:`COMMANDS` and imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        module_name, attribute, _ = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module_name}.{attribute} is not a click command")
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands and their short help, from the table: listing them imports none of them."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows: list[tuple[str, str]] = []
        for name in names:
            if name in COMMANDS and name not in self.commands:
                rows.append((name, click.Command(name, help=COMMANDS[name][2]).get_short_help_str(limit)))
                continue
            command: Any = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
