"""``dbt-sources`` and ``ls``: the syncs as dbt sources, and as a list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sixtyfour_sync.commands._shared import (
    _project,
    _select,
)
from sixtyfour_sync.config.models import LoadedSync


def dbt_sources(
    project_dir: Path | str = ".",
    *,
    select: Sequence[str] | None = None,
    profiles_dir: Path | str | None = None,
    profile: str | None = None,
    target: str | None = None,
    env: Mapping[str, str] | None = None,
    dbt_project_dir: Path | str | None = None,
    source_name: str = "sixtyfour",
    exclude: Sequence[str] | None = None,
    schema: str | None = None,
    vars: Mapping[str, Any] | None = None,
    fail_on_empty: bool = False,
) -> str:
    """A dbt sources YAML for the target tables; no connection is made.

    Targets that follow the profile's schema get ``schema`` (default ``{{ target.schema }}``, dbt's current
    target), so the file works for every dbt target.
    """
    from sixtyfour_sync.dbt import TARGET_SCHEMA, sources_yaml

    project = _project(project_dir, profiles_dir, profile, target, env, dbt_project_dir, vars)
    syncs = _select(project, select, exclude, fail_on_empty=fail_on_empty)
    return sources_yaml(syncs, source_name=source_name, schema=schema or TARGET_SCHEMA)


def list_syncs(
    project_dir: Path | str = ".",
    *,
    select: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    dbt_project_dir: Path | str | None = None,
    vars: Mapping[str, Any] | None = None,
    fail_on_empty: bool = False,
    **_profile: Any,
) -> list[LoadedSync]:
    """The syncs a selection picks, in file order (what ``ls`` lists); reads the models only, connects nowhere.

    A selection that picks no sync logs a warning saying why (``fail_on_empty``: raises a ConfigError).
    """
    project = _project(project_dir, None, None, None, env, dbt_project_dir, vars)
    return _select(project, select, exclude, fail_on_empty=fail_on_empty)
