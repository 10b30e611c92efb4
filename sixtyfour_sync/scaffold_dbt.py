"""``sixtyfour-sync init`` inside a dbt project: a ``ref:`` sync on the dbt project's own profile.

The dbt project is the nearest directory at or above the one given that holds ``dbt_project.yml``. The sync
file goes to ``sixtyfour/<sync>.yml`` there: beside dbt_project.yml, outside every folder dbt parses (dbt v2
refuses keys it does not know in the YAML it parses), and read by every command run from the dbt project
(:data:`sixtyfour_sync.config.loading.SYNC_DIRS`). The profile is dbt_project.yml's ``profile:`` in the
profiles.yml found as every command finds it (:func:`sixtyfour_sync.config.profiles.locate_profiles_file`):
when there is one, no profiles.yml is written; when there is none, one is written where it will be read. The
model is picked from the manifest's models (:func:`sixtyfour_sync.dbt.manifest_models`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sixtyfour_sync.errors import ConfigError, ConfigProblem
from sixtyfour_sync.scaffold import (
    InitAnswers,
    InitOutcome,
    Prompt,
    ask_warehouse,
    asker,
    other_profiles,
    render_model,
    render_profiles,
)

__all__ = [
    "DBT_PARSED_PATHS",
    "SYNC_DIR",
    "ProfileFinding",
    "default_key",
    "find_dbt_project",
    "find_profile",
    "init_dbt_project",
    "parsed_dirs",
]

#: Where init writes sync definitions in a dbt project (one of sixtyfour_sync.config.loading.SYNC_DIRS).
SYNC_DIR = "sixtyfour"

#: The dbt_project.yml keys naming folders dbt parses, with dbt's defaults (``docs-paths`` defaults to all).
DBT_PARSED_PATHS: dict[str, tuple[str, ...]] = {
    "model-paths": ("models",),
    "seed-paths": ("seeds",),
    "snapshot-paths": ("snapshots",),
    "analysis-paths": ("analyses",),
    "macro-paths": ("macros",),
    "test-paths": ("tests",),
    "function-paths": ("functions",),
    "docs-paths": (),
}


def find_dbt_project(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` (which need not exist yet) holding ``dbt_project.yml``."""
    here = start.expanduser().resolve()
    for directory in (here, *here.parents):
        if (directory / "dbt_project.yml").is_file():
            return directory
    return None


def parsed_dirs(dbt_root: Path, data: Mapping[str, Any] | None) -> list[Path]:
    """The folders dbt parses in this project (dbt_project.yml's ``*-paths``, else dbt's defaults)."""
    found: list[Path] = []
    for key, default in DBT_PARSED_PATHS.items():
        value = (data or {}).get(key)
        names: Sequence[Any] = value if isinstance(value, list) else default
        found += [(dbt_root / str(n)).resolve() for n in names if isinstance(n, str)]
    return found


def _check_sync_dir(dbt_root: Path, data: Mapping[str, Any] | None) -> Path:
    sync_dir = (dbt_root / SYNC_DIR).resolve()
    for parsed in parsed_dirs(dbt_root, data):
        if parsed == sync_dir or parsed in sync_dir.parents or sync_dir in parsed.parents:
            raise ConfigError(
                problems=[
                    ConfigProblem(
                        str(dbt_root / "dbt_project.yml"),
                        None,
                        f"dbt parses {parsed}, which overlaps {sync_dir}, where init writes sync definitions",
                        hint="dbt v2 refuses the keys of a sync in the YAML it parses: keep sixtyfour/ out of "
                        "dbt's *-paths",
                    )
                ]
            )
    return sync_dir


@dataclass(frozen=True)
class ProfileFinding:
    """The profiles.yml commands in the dbt project will read, and whether it holds the profile."""

    #: The file that will be read (None: none exists yet).
    file: Path | None
    reason: str
    has_profile: bool = False
    #: Its other profiles; None when it cannot be read.
    others: list[str] | None = None
    #: Where init writes one when none will be read.
    write_to: Path | None = None


def find_profile(
    dbt_root: Path, profile: str, profiles_dir: Path | None, env: Mapping[str, str], home: Path | None = None
) -> ProfileFinding:
    """The profiles.yml read from ``dbt_root`` (``--profiles-dir``, ``SIXTYFOUR_SYNC_PROFILES_DIR``,
    ``DBT_PROFILES_DIR``, the project directory, ``~/.dbt``), or where to write one when there is none."""
    from sixtyfour_sync.config.profiles import locate_profiles_file

    try:
        choice = locate_profiles_file(project_dir=dbt_root, profiles_dir=profiles_dir, env=env, home=home)
    except ConfigError:
        explicit = [
            (why, Path(d).expanduser())
            for why, d in (
                ("--profiles-dir", profiles_dir),
                ("SIXTYFOUR_SYNC_PROFILES_DIR", env.get("SIXTYFOUR_SYNC_PROFILES_DIR")),
                ("DBT_PROFILES_DIR", env.get("DBT_PROFILES_DIR")),
            )
            if d
        ]
        why, directory = explicit[0] if explicit else ("the project directory", dbt_root)
        return ProfileFinding(None, why, write_to=directory / "profiles.yml")
    others = other_profiles(choice.file, profile)
    has = False
    if others is not None:
        from sixtyfour_sync.config.yamlfile import load_yaml

        data = load_yaml(choice.file).data
        has = isinstance(data, Mapping) and isinstance(data.get(profile), Mapping)
    return ProfileFinding(choice.file, choice.reason, has, others)


def default_key(manifest: Mapping[str, Any] | None, node: Mapping[str, Any] | None) -> str:
    """The key column to propose for a model: what the manifest says identifies its rows, else a documented
    ``id`` or ``*_id`` column, else ``id``."""
    from sixtyfour_sync.dbt import model_key_columns

    if manifest is None or node is None:
        return "id"
    keys = model_key_columns(dict(manifest), dict(node))
    if keys:
        return keys[0]
    columns = node.get("columns")
    names = [str(c) for c in columns] if isinstance(columns, Mapping) else []
    return next((c for c in names if c.lower() == "id" or c.lower().endswith("_id")), "id")


def _write_profiles(out: InitOutcome, path: Path, a: InitAnswers) -> None:
    """Write the dbt project's profile where it will be read (no profiles.yml was found)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_profiles(a), encoding="utf-8")
    out.say(
        "init.wrote",
        f"wrote {path} (profile {a.profile}, read by dbt and sixtyfour-sync: no profiles.yml was found)",
        path=str(path),
    )


def _say_profile(
    out: InitOutcome, found: ProfileFinding, a: InitAnswers, dbt_root: Path, target: str | None, env: Mapping[str, str]
) -> None:
    """Say which profile and target the sync will use, or what to do when the profiles.yml lacks the profile."""
    assert found.file is not None
    if not found.has_profile:
        holds = f"it holds: {', '.join(found.others)}" if found.others else "it cannot be read"
        out.say(
            "init.profiles",
            f"warning: {found.file} ({found.reason}) has no profile {a.profile!r} ({holds}). Add it there: dbt needs "
            "it as well. init writes no second profiles.yml (it would not be read) and never rewrites one that "
            "holds other profiles, --force or not",
            path=str(found.file),
        )
        return
    from sixtyfour_sync.config.profiles import load_target

    try:
        resolved = load_target(
            project_dir=dbt_root, profiles_dir=found.file.parent, profile=a.profile, target=target, env=env
        )
    except ConfigError as exc:
        problem = exc.problems[0] if exc.problems else exc
        out.say(
            "init.profiles",
            f"warning: profile {a.profile!r} in {found.file}: {problem}; `sixtyfour-sync debug` says more",
            path=str(found.file),
        )
        return
    out.say(
        "init.profiles",
        f"profile: {resolved.describe()} from {found.file} ({found.reason}); no profiles.yml written",
        path=str(found.file),
        profile=resolved.profile,
        target=resolved.target,
    )


def _pick_model(
    flags: Mapping[str, Any], manifest: dict[str, Any] | None, why_none: str, ask: Any
) -> tuple[str, dict[str, Any] | None]:
    """The model the sync reads: ``--model``, else a choice among the manifest's models (the first, by name,
    without a terminal)."""
    from sixtyfour_sync.dbt import find_node, manifest_models

    given = flags.get("model")
    models = manifest_models(manifest) if manifest is not None else []
    names = [str(n["name"]) for n in models]
    if given is not None:
        node = find_node(manifest, str(given)) if manifest is not None else None
        if manifest is not None and node is None:
            raise ConfigError(
                f"init: --model {given!r} is not a model, seed or snapshot in the manifest "
                f"(models: {', '.join(names[:20]) or 'none'})",
                hint="check the name, or run `dbt parse` so the manifest is current",
            )
        return str(given), node
    if not names:
        raise ConfigError(
            f"init: no dbt model to choose from ({why_none})",
            hint="run `dbt parse` in the dbt project so target/manifest.json lists its models, or pass --model NAME",
        )
    name = ask("model", f"dbt model to enrich ({len(names)} in the manifest)", names[0], names)
    return name, next(n for n in models if n["name"] == name)


def init_dbt_project(
    dbt_root: Path,
    flags: Mapping[str, Any],
    *,
    interactive: bool,
    force: bool,
    profiles_dir: Path | None,
    profile: str | None,
    target: str | None,
    target_path: Path | None,
    env: Mapping[str, str],
    prompt: Prompt | None = None,
    echo: Callable[[str, str, dict[str, Any]], None] | None = None,
) -> InitOutcome:
    """Write ``sixtyfour/<sync>.yml`` (a ``ref:`` sync) in the dbt project at ``dbt_root``; a profiles.yml only
    when none would be read."""
    from sixtyfour_sync.config.profiles import DEFAULT_PROFILE
    from sixtyfour_sync.config.yamlfile import load_yaml
    from sixtyfour_sync.dbt import load_manifest
    from sixtyfour_sync.engine.project import read_dbt_project

    dbt = read_dbt_project(dbt_root)
    raw = load_yaml(dbt_root / "dbt_project.yml").data
    sync_dir = _check_sync_dir(dbt_root, raw if isinstance(raw, Mapping) else None)
    out = InitOutcome(run_dir=dbt_root, echo=echo)
    out.say("init.dbt", f"dbt project: {dbt_root} (profile: {dbt.profile or 'none set'})", path=str(dbt_root))
    a = InitAnswers(profile=profile or dbt.profile or DEFAULT_PROFILE, in_dbt_project=True)
    found = find_profile(dbt_root, a.profile, profiles_dir, env)
    if found.file is None:
        ask_warehouse(a, flags, interactive, prompt)
    else:
        _say_profile(out, found, a, dbt_root, target, env)
        given = [f"--{k.replace('_', '-')}" for k in _CONNECTION_FLAGS if flags.get(k) is not None]
        if given:
            out.say("init.ignored", f"ignored {', '.join(given)}: the sync uses profile {a.profile!r} of {found.file}")
    ask = asker(flags, interactive, prompt)
    manifest, node = None, None
    if flags.get("table") is not None and flags.get("model") is None:
        a.table = str(flags["table"])  # a table, not a model: no manifest needed
    else:
        target_dir = dbt.target_dir(target_path, env)
        try:
            manifest = load_manifest(dbt_root, target_dir=target_dir)
            why_none = f"{target_dir / 'manifest.json'} lists no model of this project"
        except ConfigError as exc:
            why_none = f"{target_dir / 'manifest.json'}: {exc.problems[0].message if exc.problems else exc}"
            out.before.append("dbt parse")
        a.ref, node = _pick_model(flags, manifest, why_none, ask)
    name = (a.ref or a.table).replace(".", "_").replace("-", "_")
    a.endpoint = ask("endpoint", "Endpoint", "people", ["people", "company"])
    a.key = ask("key", "Key column", default_key(manifest, node))
    cols = ask("columns", "Input columns, comma-separated (empty: all but the key)", "")
    a.columns = [c.strip() for c in cols.split(",") if c.strip()]
    a.sync_name = ask("sync_name", "Sync name", f"enrich_{name}")
    a.target_table = f"{name}_enriched"
    a.check()
    path = sync_dir / f"{a.sync_name}.yml"
    if path.exists() and not force:
        raise ConfigError(f"{path} exists", hint="pass --force to overwrite it, or choose another --sync-name")
    if found.write_to is not None:
        _write_profiles(out, found.write_to, a)
    sync_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(render_model(a), encoding="utf-8")
    source = f"source.ref: {a.ref}" if a.ref else f"source.table: {a.table}"
    out.say("init.wrote", f"wrote {path} ({source})", path=str(path))
    if out.before:
        out.say("init.manifest", f"no manifest yet ({why_none}): run `dbt parse` before `plan`")
    return out


#: The flags that describe a new profile's connection (ignored when the dbt project's profile exists).
_CONNECTION_FLAGS = ("warehouse", "host", "user", "database", "schema", "account", "http_path", "duckdb_path")
