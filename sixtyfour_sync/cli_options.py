"""Command-line plumbing shared by every command: dbt-style global options and multi-word selectors.

As in dbt, the global options (``--project-dir``, ``--profiles-dir``, ``--profile``, ``--target``, ``--vars``,
``--target-path``, ``--log-format``, ``--debug``, ``--dbt-project-dir``) are accepted before or after the
subcommand (``sixtyfour-sync plan --target dev``); given after, they win. ``--select a b`` takes every word up
to the next option, as dbt's selectors do.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

import click
from click.core import ParameterSource

from sixtyfour_sync.logging import configure_logging

__all__ = ["GlobalOptions", "MultiOption", "command_line", "global_options", "scan_argv", "selection_options"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class GlobalOptions:
    """Options shared by every command."""

    project_dir: Path = field(default_factory=lambda: Path("."))
    profiles_dir: Path | None = None
    profile: str | None = None
    target: str | None = None
    debug: bool = False
    log_format: str = "text"
    dbt_project_dir: Path | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    target_path: Path | None = None

    def common(self) -> dict[str, Any]:
        """The keyword arguments every engine function takes."""
        return {
            "project_dir": self.project_dir,
            "profiles_dir": self.profiles_dir,
            "profile": self.profile,
            "target": self.target,
            "dbt_project_dir": self.dbt_project_dir,
            "vars": self.vars,
        }


def scan_argv(argv: list[str]) -> tuple[str, bool]:
    """``(log_format, debug)`` from raw arguments, so errors raised before parsing ends are formatted right."""
    fmt, debug = "text", False
    for i, arg in enumerate(argv):
        if arg == "--debug":
            debug = True
        elif arg == "--log-format" and i + 1 < len(argv):
            fmt = argv[i + 1]
        elif arg.startswith("--log-format="):
            fmt = arg.split("=", 1)[1]
    return ("json" if fmt == "json" else "text"), debug


def _store(
    attr: str, convert: Callable[[Any], Any] | None = None
) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is None or value is False or ctx.resilient_parsing:
            return
        opts = ctx.ensure_object(GlobalOptions)
        from_env = param.name is not None and ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT
        if from_env and getattr(opts, attr, None) is not None:
            return  # given on the command line (before the command's name): the environment does not override it
        setattr(opts, attr, convert(value) if convert else value)
        if attr in ("log_format", "debug"):
            configure_logging(opts.log_format, debug=opts.debug)

    return callback


def _parse_vars(value: str) -> dict[str, Any]:
    from sixtyfour_sync.config.envvars import parse_vars

    return parse_vars(value)


_DIR = click.Path(file_okay=False, path_type=Path)


def global_options(f: F) -> F:
    """Add the global options to a command (and to the group), each stored in :class:`GlobalOptions`."""
    specs: list[tuple[tuple[str, ...], dict[str, Any], str, Callable[[Any], Any] | None]] = [
        (("--project-dir",), {"type": _DIR, "help": "Directory holding models/ (or sixtyfour/ in a dbt "
         "project; default: the current one)."},
         "project_dir", None),
        (("--profiles-dir",), {"type": _DIR, "help": "Directory holding profiles.yml "
         "(before SIXTYFOUR_SYNC_PROFILES_DIR and DBT_PROFILES_DIR)."}, "profiles_dir", None),
        (("--dbt-project-dir",), {"type": _DIR, "help": "The dbt project (dbt_project.yml, target/) when it is "
         "not the project directory."}, "dbt_project_dir", None),
        (("--profile",), {"help": "Profile name in profiles.yml."}, "profile", None),
        (("--target", "-t"), {"envvar": ["SIXTYFOUR_SYNC_TARGET", "DBT_TARGET"], "help": "Target (output) name "
         "within the profile. Default: SIXTYFOUR_SYNC_TARGET, DBT_TARGET (as dbt reads it), the profile's "
         "target:."}, "target", None),
        (("--vars",), {"metavar": "YAML", "help": "Variables for {{ var('name') }}, as dbt takes them: "
         "'{key: value}' (YAML or JSON)."}, "vars", _parse_vars),
        (("--target-path",), {"type": click.Path(file_okay=False), "help": "dbt's target directory "
         "(manifest.json; run results are written there). Default: DBT_TARGET_PATH, dbt_project.yml's "
         "target-path, target/."}, "target_path", Path),
        (("--debug",), {"is_flag": True, "default": None, "help": "Verbose logs and full tracebacks."},
         "debug", None),
        (("--log-format",), {"type": click.Choice(["text", "json"]), "help": "json: one JSON object per line, "
         "errors included (for schedulers)."}, "log_format", None),
    ]  # fmt: skip
    for decls, kwargs, attr, convert in reversed(specs):
        f = click.option(*decls, expose_value=False, is_eager=True, callback=_store(attr, convert), **kwargs)(f)
    return f


class MultiOption(click.Option):
    """An option that takes every following word up to the next option (``--select a b tag:x``), like dbt's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["multiple"] = True
        super().__init__(*args, **kwargs)

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            opt = parser._long_opt.get(name) or parser._short_opt.get(name)
            if opt is None:
                continue
            original = opt.process

            def process(value: Any, state: Any, original: Any = original) -> None:
                original(value, state)
                while state.rargs and not state.rargs[0].startswith("-"):
                    original(state.rargs.pop(0), state)

            opt.process = process


_SELECT_SYNTAX = (
    "as dbt selects: names (globs allowed), tag:NAME, path:FILE, endpoint:people; several words are a union, a "
    "comma intersects (tag:a,tag:b)."
)


def complete_selector(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion for ``--select``/``--exclude``: the project's sync names and ``tag:`` values, and the
    methods. Reads the models files as plain YAML (fast, no Jinja, no profile); never fails: a file it cannot
    read is skipped."""
    from click.shell_completion import CompletionItem

    try:
        head, sep, _ = incomplete.rpartition(",")
        prefix = head + sep
        options = [(f"{prefix}{c}", h) for c, h in _selector_candidates(_completion_project_dir(ctx))]
        methods = [(f"{prefix}{m}", "method") for m in ("tag:", "path:", "endpoint:people", "endpoint:company")]
        return [
            CompletionItem(value, help=help_text)
            for value, help_text in options + methods
            if value.startswith(incomplete)
        ]
    except Exception:  # completion must never print a traceback into a shell
        return []


def _completion_project_dir(ctx: click.Context) -> Path:
    """``--project-dir`` from the words being completed (the options store nothing while completing)."""
    words = shlex.split(os.environ.get("COMP_WORDS", ""))
    for i, word in enumerate(words):
        if word == "--project-dir" and i + 1 < len(words):
            return Path(words[i + 1])
        if word.startswith("--project-dir="):
            return Path(word.split("=", 1)[1])
    return Path(".")


def _selector_candidates(project_dir: Path) -> list[tuple[str, str]]:
    """``(word, help)`` for every sync name and tag in ``project_dir/models``."""
    import yaml

    from sixtyfour_sync.config.loading import model_files

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    names: list[tuple[str, str]] = []
    tags: dict[str, None] = {}
    for path in model_files(project_dir):
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 (a safe loader)
        except (OSError, ValueError, yaml.YAMLError):
            continue
        syncs = data.get("syncs") if isinstance(data, dict) else None
        for sync in syncs if isinstance(syncs, list) else []:
            if not isinstance(sync, dict) or not isinstance(sync.get("name"), str):
                continue
            names.append((sync["name"], f"{sync.get('endpoint', '')} sync in {path.name}".strip()))
            raw = sync.get("tags")
            for tag in raw if isinstance(raw, list) else [raw] if isinstance(raw, str) else []:
                tags[f"tag:{tag}"] = None
    return names + [(t, "tag") for t in tags]


@overload
def selection_options(f: F) -> F: ...


@overload
def selection_options(*, what: str = ..., default: str = ...) -> Callable[[F], F]: ...


def selection_options(
    f: F | None = None, *, what: str = "Syncs to run", default: str = "every enabled sync"
) -> F | Callable[[F], F]:
    """``--select`` and ``--exclude`` in dbt's syntax; ``what`` starts the help of ``--select`` (what the command
    does with the syncs it selects). Both complete sync names and tags in the shell."""

    def decorate(f: F) -> F:
        f = click.option(
            "--exclude",
            "exclude",
            cls=MultiOption,
            shell_complete=complete_selector,
            help="Syncs to leave out, with the same syntax as --select.",
        )(f)
        return click.option(
            "--select",
            "-s",
            "select",
            cls=MultiOption,
            shell_complete=complete_selector,
            help=f"{what}, {_SELECT_SYNTAX} Default: {default}.",
        )(f)

    return decorate(f) if f is not None else decorate


def _runnable(path: str, from_dir: Path | None) -> str:
    """``path`` as a person can type it in ``from_dir``: its bare name when PATH finds this very file there,
    else a path relative to ``from_dir`` (the current directory by default)."""
    found = shutil.which(Path(path).name)
    if found and os.path.realpath(found) == os.path.realpath(path):
        return Path(path).name
    here = os.path.abspath(from_dir) if from_dir is not None else os.getcwd()
    full = os.path.abspath(path)
    rel = os.path.relpath(full, here)
    shown = rel if not rel.startswith("..") or rel.count("..") <= 2 else full
    return shlex.quote(shown if os.sep in shown else os.path.join(".", shown))


def command_line(from_dir: Path | None = None, *, argv0: str | None = None) -> str:
    """How to run sixtyfour-sync again, from ``from_dir`` (default: here), as it was run this time.

    ``sixtyfour-sync`` when that is on PATH; ``.venv/bin/sixtyfour-sync`` (relative to ``from_dir``) when it was
    run by its path and PATH does not find it; ``<python> -m sixtyfour_sync`` when run as a module.
    """
    arg = sys.argv[0] if argv0 is None else argv0
    name = Path(arg).name
    if name == "__main__.py" or arg in ("-m", "-c", ""):
        return f"{_runnable(sys.executable, from_dir)} -m sixtyfour_sync"
    if os.sep not in arg:
        return arg if shutil.which(arg) else "sixtyfour-sync"
    return _runnable(arg, from_dir)
