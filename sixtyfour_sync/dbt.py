"""dbt integration: resolving ``source.ref`` through ``target/manifest.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sixtyfour_sync.errors import ConfigError, ConfigProblem
from sixtyfour_sync.warehouse.base import TableRef

__all__ = ["load_manifest", "resolve_ref"]

_MANIFESTS: dict[tuple[str, float], dict[str, Any]] = {}


def load_manifest(project_dir: Path) -> dict[str, Any]:
    """The dbt manifest of the project (``target/manifest.json``), read once per modification."""
    path = project_dir / "target" / "manifest.json"
    if not path.is_file():
        raise ConfigError(
            problems=[
                ConfigProblem(
                    str(path),
                    None,
                    "no dbt manifest: source.ref needs target/manifest.json",
                    hint="run `dbt compile` (or `dbt build`) in the dbt project first",
                )
            ]
        )
    key = (str(path), path.stat().st_mtime)
    if key not in _MANIFESTS:
        try:
            _MANIFESTS[key] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(
                problems=[
                    ConfigProblem(str(path), None, f"cannot read the dbt manifest: {exc}", hint="run `dbt compile`")
                ]
            ) from exc
    return _MANIFESTS[key]


def resolve_ref(project_dir: Path, name: str, *, file: Path | None = None) -> TableRef:
    """The relation (database, schema, alias) dbt builds for model ``name``."""
    manifest = load_manifest(project_dir)
    nodes = manifest.get("nodes") or {}
    hits = [
        n
        for n in nodes.values()
        if isinstance(n, dict) and n.get("resource_type") in ("model", "seed", "snapshot") and n.get("name") == name
    ]
    if not hits:
        raise ConfigError(
            problems=[
                ConfigProblem(
                    str(file) if file else None,
                    "source.ref",
                    f"dbt model {name!r} is not in target/manifest.json",
                    hint="check the name, then run `dbt compile` so the manifest is current",
                )
            ]
        )
    node = hits[0]
    alias = node.get("alias") or node.get("name")
    return TableRef(str(alias), node.get("schema"), node.get("database"))
