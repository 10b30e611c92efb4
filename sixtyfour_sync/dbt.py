"""dbt integration: ``source.ref`` through ``target/manifest.json``, ``--only-rebuilt`` through
``target/run_results.json``, and the ``dbt-sources`` YAML for the target tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from sixtyfour_sync.config.models import BOOKKEEPING_COLUMNS, LoadedSync
from sixtyfour_sync.errors import ConfigError, ConfigProblem
from sixtyfour_sync.warehouse.base import TableRef

__all__ = ["load_manifest", "rebuilt_models", "resolve_ref", "sources_yaml"]

_CACHE: dict[tuple[str, float], dict[str, Any]] = {}

BOOKKEEPING_DESCRIPTIONS = {
    "_sixtyfour_status": "enriched, or failed when the API could not enrich the row (earlier values are kept)",
    "_sixtyfour_enriched_at": "when the row was last enriched or attempted (UTC)",
    "_sixtyfour_task_id": "the Sixtyfour job that produced the row",
    "_sixtyfour_input_hash": "hash of the inputs that were sent",
    "_sixtyfour_spec_hash": "hash of the endpoint, struct, tier and options that were asked",
}


def _read_json(path: Path, what: str, hint: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(problems=[ConfigProblem(str(path), None, f"no dbt {what}", hint=hint)])
    key = (str(path), path.stat().st_mtime)
    if key not in _CACHE:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(
                problems=[ConfigProblem(str(path), None, f"cannot read the dbt {what}: {exc}", hint=hint)]
            ) from exc
        if not isinstance(data, dict):
            raise ConfigError(
                problems=[ConfigProblem(str(path), None, f"the dbt {what} is not a JSON object", hint=hint)]
            )
        _CACHE[key] = data
    return _CACHE[key]


def load_manifest(dbt_dir: Path) -> dict[str, Any]:
    """The dbt manifest (``target/manifest.json``), read once per modification."""
    return _read_json(
        dbt_dir / "target" / "manifest.json",
        "manifest: source.ref needs target/manifest.json",
        "run `dbt compile` (or `dbt build`) in the dbt project first",
    )


def _stale_sql(dbt_dir: Path, node: dict[str, Any], manifest_path: Path) -> bool:
    original = node.get("original_file_path")
    if not isinstance(original, str):
        return False
    sql = dbt_dir / original
    return sql.is_file() and sql.stat().st_mtime > manifest_path.stat().st_mtime


def resolve_ref(dbt_dir: Path, name: str, *, file: Path | None = None) -> TableRef:
    """The relation (database, schema, alias) dbt builds for model ``name``."""
    manifest = load_manifest(dbt_dir)
    nodes = manifest.get("nodes") or {}
    hits = [
        n
        for n in nodes.values()
        if isinstance(n, dict) and n.get("resource_type") in ("model", "seed", "snapshot") and n.get("name") == name
    ]
    where = str(file) if file else None
    if not hits:
        raise ConfigError(
            problems=[
                ConfigProblem(
                    where,
                    "source.ref",
                    f"dbt model {name!r} is not in target/manifest.json",
                    hint="check the name, then run `dbt compile` so the manifest is current",
                )
            ]
        )
    node = hits[0]
    if _stale_sql(dbt_dir, node, dbt_dir / "target" / "manifest.json"):
        raise ConfigError(
            problems=[
                ConfigProblem(
                    where,
                    "source.ref",
                    f"target/manifest.json is older than the SQL of model {name!r}",
                    hint="run `dbt compile` (or `dbt build`) so the manifest matches the project",
                )
            ]
        )
    alias = node.get("alias") or node.get("name")
    return TableRef(str(alias), node.get("schema"), node.get("database"))


def rebuilt_models(dbt_dir: Path) -> set[str]:
    """Names of the models that succeeded in the last dbt invocation (``target/run_results.json``)."""
    data = _read_json(
        dbt_dir / "target" / "run_results.json",
        "run results: --only-rebuilt needs target/run_results.json",
        "run `dbt build` (or `dbt run`) first",
    )
    names = set()
    for r in data.get("results") or []:
        if not isinstance(r, dict) or r.get("status") != "success":
            continue
        uid = str(r.get("unique_id") or "")
        parts = uid.split(".")
        if len(parts) >= 3 and parts[0] in ("model", "seed", "snapshot"):
            names.add(parts[-1])
    return names


def sources_yaml(
    syncs: Sequence[LoadedSync],
    *,
    schema_for: dict[str, str | None],
    database_for: dict[str, str | None],
    source_name: str = "sixtyfour",
) -> str:
    """A dbt ``sources:`` YAML for the syncs' target tables, column descriptions taken from the structs."""
    groups: dict[tuple[str | None, str | None], list[dict[str, Any]]] = {}
    for loaded in syncs:
        spec = loaded.spec
        schema = spec.target.schema_ or schema_for.get(spec.name)
        database = spec.target.database or database_for.get(spec.name)
        columns: list[dict[str, Any]] = [
            {"name": k, "description": "key of the source row", "data_tests": ["not_null", "unique"]}
            for k in spec.source.key
        ]
        for field, f in spec.struct.items():
            columns.append({"name": spec.column_for(field), "description": f.description})
        if spec.field_confidence:
            for field in spec.struct:
                columns.append(
                    {"name": spec.column_for(f"{field}_confidence"), "description": f"confidence (0-100) in {field}"}
                )
        for col in BOOKKEEPING_COLUMNS:
            columns.append({"name": col, "description": BOOKKEEPING_DESCRIPTIONS[col]})
        table = {
            "name": spec.target.table,
            "description": (spec.description or f"Enriched by sixtyfour-sync sync {spec.name!r}")
            + f" ({spec.endpoint} endpoint, tier {spec.tier})",
            "meta": {"sixtyfour_sync": spec.name},
            "columns": columns,
        }
        groups.setdefault((database, schema), []).append(table)
    sources = []
    for i, ((database, schema), tables) in enumerate(
        sorted(groups.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1])))
    ):
        src: dict[str, Any] = {"name": source_name if len(groups) == 1 else f"{source_name}_{i + 1}"}
        if database:
            src["database"] = database
        if schema:
            src["schema"] = schema
        src["tables"] = tables
        sources.append(src)
    return yaml.safe_dump({"version": 2, "sources": sources}, sort_keys=False, allow_unicode=True, width=120)
