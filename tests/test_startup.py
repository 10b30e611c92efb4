"""Start-up: what importing the package and the command line loads, and the lazily loaded commands' help.

Nothing here is timed (bench/startup.py measures); these tests pin the import graph that keeps ``--version`` and
``--help`` fast, and check that loading commands on first use changed nothing a user sees.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from sixtyfour_sync.cli import cli
from sixtyfour_sync.cli.lazy import COMMANDS, LazyGroup

#: Top-level modules the command line must not load before a command needs them.
HEAVY = (
    "duckdb", "psycopg", "snowflake", "google", "databricks", "sqlalchemy", "werkzeug", "pydantic", "pyarrow",
    "httpx", "rich", "sqlglot", "numpy", "yaml",
)  # fmt: skip
#: The project's own modules that pull those in (or the commands themselves), also not loaded by --help.
OWN_HEAVY = (
    "sixtyfour_sync.report", "sixtyfour_sync.emulator.app", "sixtyfour_sync.engine", "sixtyfour_sync.commands",
    "sixtyfour_sync.config.profiles", "sixtyfour_sync.config.targets", "sixtyfour_sync.config.models",
    "sixtyfour_sync.warehouse", "sixtyfour_sync.api", "sixtyfour_sync.cli.runs", "sixtyfour_sync.emulator.cli",
)  # fmt: skip

PROBE = """
import contextlib, io, json, sys
{code}
print(json.dumps(sorted(sys.modules)))
"""


def _modules_after(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code)], capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert out.returncode == 0, out.stderr
    loaded: list[str] = json.loads(out.stdout.splitlines()[-1])
    return [m for m in loaded if any(m == h or m.startswith(h + ".") for h in (*HEAVY, *OWN_HEAVY))]


@pytest.mark.parametrize(
    "code",
    [
        "import sixtyfour_sync",
        "import sixtyfour_sync.cli",
        "from sixtyfour_sync import __version__",
        "import sixtyfour_sync.config, sixtyfour_sync.cli_options, sixtyfour_sync.config.schema_url",
    ],
)
def test_importing_the_package_loads_no_driver_no_emulator_no_model(code: str) -> None:
    assert _modules_after(code) == []


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["-h"], ["--version", "--help"]])
def test_version_and_help_load_no_command(args: list[str]) -> None:
    code = (
        "from sixtyfour_sync.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()) as out:\n"
        f"    main({args!r})\n"
        "assert 'sixtyfour-sync' in out.getvalue() or 'Usage' in out.getvalue(), out.getvalue()"
    )
    assert _modules_after(code) == []


def test_the_table_names_every_command_and_its_real_short_help() -> None:
    ctx = click.Context(cli)
    for name, (module, attribute, short) in COMMANDS.items():
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command) and not command.hidden
        assert cli.get_command(ctx, name) is command
        assert command.name == name, f"{module}.{attribute} is named {command.name!r}, the table says {name!r}"
        for limit in (30, 45, 60, 200):
            assert command.get_short_help_str(limit) == click.Command(name, help=short).get_short_help_str(limit), (
                name,
                limit,
            )


@pytest.mark.parametrize("width", [60, 80, 120])
def test_help_lists_the_same_commands_as_when_all_are_loaded(width: int) -> None:
    ctx = click.Context(cli)
    commands = [c for c in (cli.get_command(ctx, n) for n in COMMANDS) if c is not None]
    lazy = LazyGroup(  # nothing loaded: the table speaks
        name="sixtyfour-sync", params=cli.params, help=cli.help, context_settings=cli.context_settings
    )
    eager = click.Group(
        name="sixtyfour-sync",
        commands=commands,
        params=cli.params,
        help=cli.help,
        context_settings=cli.context_settings,
    )
    assert len(commands) == len(COMMANDS)
    said = CliRunner().invoke(lazy, ["--help"], terminal_width=width)
    want = CliRunner().invoke(eager, ["--help"], terminal_width=width)
    assert said.exit_code == want.exit_code == 0, said.output
    assert not lazy.commands, "--help loaded a command"
    assert said.output == want.output
    assert all(f"\n  {name} " in said.output for name in COMMANDS)


def test_completion_lists_every_command_with_its_help() -> None:
    env = {
        **os.environ,
        "_SIXTYFOUR_SYNC_COMPLETE": "bash_complete",
        "COMP_WORDS": "sixtyfour-sync ",
        "COMP_CWORD": "1",
    }
    out = subprocess.run([sys.executable, "-m", "sixtyfour_sync"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    names = [line.split(",", 1)[1] for line in out.stdout.splitlines() if line.startswith("plain,")]
    assert sorted(names) == sorted(COMMANDS)
    env["_SIXTYFOUR_SYNC_COMPLETE"] = "zsh_complete"
    out = subprocess.run([sys.executable, "-m", "sixtyfour_sync"], capture_output=True, text=True, env=env, timeout=60)
    assert "Dry run: rows that would be sent per sync" in out.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_loads_and_shows_its_help(name: str) -> None:
    # The command itself, not through the group: the group's callback would configure this process's logging.
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    out = CliRunner().invoke(command, ["--help"], prog_name=f"sixtyfour-sync {name}", terminal_width=200)
    assert out.exit_code == 0, out.output
    assert out.output.startswith(f"Usage: sixtyfour-sync {name}"), out.output
    assert " ".join(COMMANDS[name][2].split())[:30] in " ".join(out.output.split())


def test_an_unknown_command_is_a_usage_error() -> None:
    out = CliRunner().invoke(cli, ["plna"])
    assert out.exit_code == 2 and "No such command 'plna'" in out.output


@pytest.mark.parametrize(
    ("package", "names"),
    [
        ("sixtyfour_sync.commands", None),
        ("sixtyfour_sync.ui", None),
        ("sixtyfour_sync.config", None),
        ("sixtyfour_sync", ("plan", "run", "status", "cancel", "validate", "dbt_sources")),
    ],
)
def test_lazily_loaded_names_all_resolve(package: str, names: tuple[str, ...] | None) -> None:
    module = importlib.import_module(package)
    for name in names or module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        module.nope  # noqa: B018
