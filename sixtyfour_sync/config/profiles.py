"""``profiles.yml`` in dbt's format: finding it, picking the profile and target, validating the output.

Lookup order (CONTRACT.md): ``--profiles-dir``, ``SIXTYFOUR_SYNC_PROFILES_DIR``, ``DBT_PROFILES_DIR``, the
project directory, ``~/.dbt/``. A directory given explicitly (flag or variable) must hold a
``profiles.yml``; the project directory and ``~/.dbt/`` are only tried. The profile is ``--profile``, else
the model file's ``profile:``, else ``dbt_project.yml``'s ``profile:``, else ``sixtyfour``; the target is
``--target``, else the profile's ``target:`` (else its only output).

``{{ env_var('NAME') }}`` is rendered in the chosen profile only, so an unset variable used by another
profile does not break this one. A relative DuckDB ``path`` resolves against the project directory, as
dbt resolves it against the directory it runs in.

Each output is validated by a pydantic model chosen by ``type:`` with unknown keys rejected, except the
dbt keys this tool accepts and ignores (:data:`IGNORED_DBT_KEYS`). Passwords, private-key passphrases,
tokens and SQLAlchemy URLs are held as :class:`~sixtyfour_sync._redact.Secret`: they never print.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from sixtyfour_sync.config.envvars import render_env_vars
from sixtyfour_sync.config.targets import (
    _TARGET_ADAPTER,
    _TYPES,
    _UNSUPPORTED_TYPES,
    IGNORED_DBT_KEYS,
    BigQueryTarget,
    DatabricksTarget,
    DuckDBTarget,
    PostgresTarget,
    QuotingConfig,
    SnowflakeTarget,
    SqlAlchemyTarget,
    TargetConfig,
    quoting_from_dbt_project,
)
from sixtyfour_sync.config.yamlfile import LineMap, load_yaml
from sixtyfour_sync.errors import ConfigError, ConfigProblem

__all__ = [
    "DEFAULT_PROFILE",
    "IGNORED_DBT_KEYS",
    "BigQueryTarget",
    "DatabricksTarget",
    "DuckDBTarget",
    "PostgresTarget",
    "ProfilesChoice",
    "QuotingConfig",
    "ResolvedTarget",
    "SnowflakeTarget",
    "SqlAlchemyTarget",
    "TargetConfig",
    "find_profiles_file",
    "load_target",
    "locate_profiles_file",
    "parse_target_config",
    "quoting_from_dbt_project",
]

DEFAULT_PROFILE = "sixtyfour"
PROFILES_FILE = "profiles.yml"


@dataclass(frozen=True)
class ResolvedTarget:
    """The chosen profile output and where it came from."""

    profile: str
    target: str
    file: Path
    config: TargetConfig
    #: The project directory (relative DuckDB paths resolve against it).
    project_dir: Path | None = None
    #: Why this profiles.yml, profile and target were chosen (for ``debug``).
    file_reason: str = ""
    target_reason: str = ""
    shadowed: tuple[Path, ...] = ()
    #: dbt_project.yml's ``quoting:`` (see :func:`quoting_from_dbt_project`); a Snowflake output's own wins.
    quoting: QuotingConfig | None = None

    def describe(self) -> str:
        """``profile.target (type ...)`` - safe to print."""
        return f"{self.profile}.{self.target}: {self.config.describe()}"


def _keys_of(kind: str) -> list[str]:
    """The keys an output of ``type: kind`` takes (by their YAML names)."""
    import typing

    for cls in typing.get_args(typing.get_args(TargetConfig)[0]):
        fields = getattr(cls, "model_fields", {})
        if "type" in fields and kind in typing.get_args(fields["type"].annotation):
            return sorted(
                name if not f.alias or f.alias == name else f"{name} (or {f.alias})"
                for name, f in fields.items()
                if name != "type"
            )
    return []


def _problems_from_validation(
    exc: ValidationError, file: Path, prefix: tuple[str | int, ...], lines: LineMap | None
) -> list[ConfigProblem]:
    out: list[ConfigProblem] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        kind = None
        # The discriminated union adds the type name as the first location part.
        if loc and loc[0] in _TYPES:
            kind, loc = loc[0], loc[1:]
        msg = str(err["msg"]).removeprefix("Value error, ")
        hint = None
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}"
            hint = f"check the spelling; keys of type {kind}: {', '.join(_keys_of(str(kind)))}" if kind else None
        elif err["type"] == "missing":
            msg = f"missing required key {loc[-1]!r}"
            if kind == "postgres" and loc == ("database",):
                # PostgresTarget.dbname is read from `database`, its alias; dbt users write dbname.
                msg = "missing required key 'dbname' (or 'database')"
        full = (*prefix, *loc)
        out.append(
            ConfigProblem(
                str(file),
                ".".join(str(p) for p in full),
                msg,
                line=lines.line_for(full) if lines else None,
                hint=hint,
            )
        )
    return out


def parse_target_config(
    data: Mapping[str, Any],
    *,
    file: Path | str = "<profiles.yml>",
    where: tuple[str | int, ...] = (),
    lines: LineMap | None = None,
) -> TargetConfig:
    """Validate one output mapping into its target config; ConfigError listing every problem."""
    path = Path(file)
    if not isinstance(data, Mapping):
        raise ConfigError(problems=[ConfigProblem(str(file), ".".join(map(str, where)) or None, "must be a mapping")])
    kind = data.get("type")
    if kind not in _TYPES:
        dotted = ".".join(str(p) for p in (*where, "type"))
        line = lines.line_for((*where, "type")) if lines else None
        if kind is None:
            msg, hint = "missing required key 'type'", f"one of: {', '.join(_TYPES)}"
        elif str(kind) in _UNSUPPORTED_TYPES:
            msg = f"type {kind!r} has no native adapter"
            hint = f"use type: sqlalchemy with url: {_UNSUPPORTED_TYPES[str(kind)]}"
        else:
            msg, hint = f"unknown type {kind!r}", f"one of: {', '.join(_TYPES)}"
        raise ConfigError(problems=[ConfigProblem(str(file), dotted, msg, line=line, hint=hint)])
    try:
        config: TargetConfig = _TARGET_ADAPTER.validate_python(dict(data))
    except ValidationError as exc:
        raise ConfigError(problems=_problems_from_validation(exc, path, where, lines)) from None
    return config


@dataclass(frozen=True)
class ProfilesChoice:
    """Which ``profiles.yml`` wins and why; ``shadowed`` are other files that exist but lose."""

    file: Path
    reason: str
    shadowed: tuple[Path, ...] = ()


def _candidates(
    project_dir: Path, profiles_dir: Path | None, env: Mapping[str, str], home: Path | None
) -> list[tuple[str, Path, bool]]:
    """(why, directory, explicit) in the documented lookup order."""
    out: list[tuple[str, Path, bool]] = []
    if profiles_dir is not None:
        out.append(("--profiles-dir", Path(profiles_dir).expanduser(), True))
    for var in ("SIXTYFOUR_SYNC_PROFILES_DIR", "DBT_PROFILES_DIR"):
        if env.get(var):
            out.append((f"{var}={env[var]}", Path(env[var]).expanduser(), True))
    out.append(("the project directory", project_dir.expanduser(), False))
    out.append(("~/.dbt", (home or Path.home()) / ".dbt", False))
    return out


def locate_profiles_file(
    *,
    project_dir: Path,
    profiles_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> ProfilesChoice:
    """The ``profiles.yml`` that wins, why, and which others it shadows; ConfigError listing what was tried."""
    env = os.environ if env is None else env
    chosen: tuple[str, Path] | None = None
    shadowed: list[Path] = []
    tried = []
    for why, directory, explicit in _candidates(project_dir, profiles_dir, env, home):
        candidate = directory / PROFILES_FILE
        if chosen is not None:
            if candidate.is_file() and candidate.resolve() != chosen[1].resolve():
                shadowed.append(candidate)
            continue
        if candidate.is_file():
            chosen = (why, candidate)
        elif explicit:
            raise ConfigError(
                problems=[
                    ConfigProblem(
                        str(candidate),
                        None,
                        f"no {PROFILES_FILE} in {directory} (from {why.split('=')[0]})",
                        hint=f"create it (`sixtyfour-sync init`) or fix {why.split('=')[0]}",
                    )
                ]
            )
        else:
            tried.append(str(candidate))
    if chosen is None:
        raise ConfigError(
            problems=[
                ConfigProblem(
                    None,
                    None,
                    f"no {PROFILES_FILE} found (tried {', '.join(tried)})",
                    hint="create one (`sixtyfour-sync init`), or pass --profiles-dir / set "
                    "SIXTYFOUR_SYNC_PROFILES_DIR or DBT_PROFILES_DIR",
                )
            ]
        )
    return ProfilesChoice(chosen[1], chosen[0], tuple(shadowed))


def find_profiles_file(
    *,
    project_dir: Path,
    profiles_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Path:
    """Where ``profiles.yml`` is, in the documented lookup order; ConfigError listing what was tried."""
    return locate_profiles_file(project_dir=project_dir, profiles_dir=profiles_dir, env=env, home=home).file


def load_target(
    *,
    project_dir: Path,
    profiles_dir: Path | None = None,
    profile: str | None = None,
    target: str | None = None,
    default_profile: str | None = None,
    env: Mapping[str, str] | None = None,
    vars: Mapping[str, Any] | None = None,
    dbt_project_dir: Path | None = None,
) -> ResolvedTarget:
    """Find profiles.yml, pick the profile and target, render env vars and validate the output.

    ``profile`` is the ``--profile`` flag; ``default_profile`` the model file's or dbt_project.yml's
    ``profile:`` (the caller resolves which); both unset means ``sixtyfour``. The ``quoting:`` of the
    dbt_project.yml in ``dbt_project_dir`` (default: the project directory), when there is one, comes along
    in :attr:`ResolvedTarget.quoting`.
    """
    env_map = os.environ if env is None else env
    choice = locate_profiles_file(project_dir=project_dir, profiles_dir=profiles_dir, env=env_map)
    file = choice.file
    doc = load_yaml(file)
    profile_name = profile or default_profile or DEFAULT_PROFILE
    prof, outputs = _profile_outputs(doc.data, profile_name, file, doc.lines)
    # Render only what is used, so variables of other profiles and targets need not be set.
    target_name, target_reason = _choose_target(
        target, prof, outputs, profile_name, file=file, lines=doc.lines, env=env_map, vars=vars
    )
    where = (profile_name, "outputs", target_name)
    output = render_env_vars(outputs[target_name], file=file, env=env_map, vars=vars, path=where, lines=doc.lines)
    config = parse_target_config(output, file=file, where=where, lines=doc.lines)
    quoting = _dbt_project_quoting(dbt_project_dir or project_dir)
    return ResolvedTarget(
        profile=profile_name,
        target=target_name,
        file=file,
        config=config,
        project_dir=project_dir,
        file_reason=choice.reason,
        target_reason=target_reason,
        shadowed=choice.shadowed,
        quoting=quoting,
    )


def _profile_outputs(
    data: Any, profile_name: str, file: Path, lines: LineMap
) -> tuple[Mapping[Any, Any], Mapping[Any, Any]]:
    """The profile ``profile_name`` of a parsed profiles.yml and its outputs; ConfigError when either is missing."""
    name = str(file)
    if not isinstance(data, Mapping):
        raise ConfigError(problems=[ConfigProblem(name, None, "must be a mapping of profile names")])
    profiles = [k for k, v in data.items() if k != "config" and isinstance(v, Mapping)]
    if profile_name not in data or not isinstance(data[profile_name], Mapping):
        raise ConfigError(
            problems=[
                ConfigProblem(
                    name,
                    None,
                    f"profile {profile_name!r} not found in {file}; "
                    f"available: {', '.join(map(str, profiles)) or 'none'}",
                    hint="pass --profile, or set profile: in dbt_project.yml or the model file",
                )
            ]
        )
    prof = data[profile_name]
    outputs = prof.get("outputs")
    if not isinstance(outputs, Mapping) or not outputs:
        raise ConfigError(
            problems=[
                ConfigProblem(
                    name,
                    f"{profile_name}.outputs",
                    "the profile has no outputs",
                    line=lines.line_for((profile_name,)),
                    hint="add outputs: {dev: {type: duckdb, path: warehouse.duckdb}}",
                )
            ]
        )
    return prof, outputs


def _choose_target(
    target: str | None,
    prof: Mapping[Any, Any],
    outputs: Mapping[Any, Any],
    profile_name: str,
    *,
    file: Path,
    lines: LineMap,
    env: Mapping[str, str],
    vars: Mapping[str, Any] | None,
) -> tuple[str, str]:
    """The target to use among the profile's outputs and why it was chosen; ConfigError when none fits."""
    name = str(file)
    target_name = target or render_env_vars(
        prof.get("target"), file=file, env=env, vars=vars, path=(profile_name, "target"), lines=lines
    )
    target_reason = "--target" if target else "the profile's target:"
    if target_name is None and len(outputs) == 1:
        target_name = next(iter(outputs))
        target_reason = "the profile's only output"
    if target_name is None:
        raise ConfigError(
            problems=[
                ConfigProblem(
                    name,
                    profile_name,
                    f"profile {profile_name!r} has no target: and several outputs ({', '.join(map(str, outputs))})",
                    line=lines.line_for((profile_name,)),
                    hint="pass --target or set target: in the profile",
                )
            ]
        )
    target_name = str(target_name)
    if target_name not in outputs:
        raise ConfigError(
            problems=[
                ConfigProblem(
                    name,
                    f"{profile_name}.outputs",
                    f"target {target_name!r} not found in profile {profile_name!r}; "
                    f"available: {', '.join(map(str, outputs))}",
                    line=lines.line_for((profile_name, "outputs")),
                    hint="pass --target with one of them, or fix target: in the profile",
                )
            ]
        )
    return target_name, target_reason


def _dbt_project_quoting(directory: Path) -> QuotingConfig | None:
    """dbt_project.yml's ``quoting:`` (None without the file or the block); ConfigError when it is invalid."""
    path = directory / "dbt_project.yml"
    if not path.is_file():
        return None
    doc = load_yaml(path)
    data = doc.data if isinstance(doc.data, Mapping) else None
    try:
        return quoting_from_dbt_project(data)
    except ValidationError as exc:
        raise ConfigError(problems=_problems_from_validation(exc, path, ("quoting",), doc.lines)) from None
