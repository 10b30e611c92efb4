"""``sixtyfour-sync emulator``: placeholder until the emulator lands."""

from __future__ import annotations

import click


@click.command("emulator")
def emulator_command() -> None:
    """Serve the local Sixtyfour API emulator."""
    raise click.UsageError("the emulator is not available yet")
