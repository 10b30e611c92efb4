"""dbt integration: ``source.ref`` through ``target/manifest.json``, ``--only-rebuilt`` through
``target/run_results.json``, and the ``dbt-sources`` YAML for the target tables.

``target/`` is dbt's target directory: ``--target-path``, ``DBT_TARGET_PATH`` or ``dbt_project.yml``'s
``target-path`` move it, as they move dbt's (see :class:`sixtyfour_sync.engine.project.DbtProject`).

The manifest is read as JSON, never through dbt-core: manifest v12 (dbt-core 1.8 and later) and v20 (dbt v2, the
Fusion engine, whose nodes carry the same fields and leave out the empty ones) are known; older ones name the
same node fields and are read too; a newer one is read with a warning; a file that is not a manifest is refused.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from sixtyfour_sync.config.models import BOOKKEEPING_COLUMNS, LoadedSync, SyncSpec
from sixtyfour_sync.errors import ConfigError, ConfigProblem
from sixtyfour_sync.warehouse.types import TableRef

__all__ = [
    "KNOWN_MANIFEST_VERSIONS",
    "REBUILDING_COMMANDS",
    "TARGET_SCHEMA",
    "dbt_command",
    "find_node",
    "freshness_for",
    "load_manifest",
    "manifest_models",
    "manifest_version",
    "model_key_columns",
    "node_relation",
    "rebuilt_models",
    "resolve_ref",
    "source_tables",
    "sources_yaml",
    "write_atomically",
]

_CACHE: dict[tuple[str, float], dict[str, Any]] = {}
log = logging.getLogger("sixtyfour_sync.dbt")

#: The dbt commands that build models (``args.which`` in run_results.json); ``compile``, ``test``, ``docs
#: generate``, ``show`` and the others write run results too, with "success" for nodes they did not build.
REBUILDING_COMMANDS = frozenset({"run", "build", "seed", "snapshot"})
_DBT_COMMANDS = REBUILDING_COMMANDS | {
    "clean", "clone", "compile", "debug", "deps", "docs", "freshness", "init", "list", "ls", "parse", "retry",
    "run-operation", "show", "source", "test",
}  # fmt: skip

BOOKKEEPING_DESCRIPTIONS = {
    "_sixtyfour_status": "enriched, or failed when the API could not enrich the row (earlier values are kept)",
    "_sixtyfour_enriched_at": "when the row was last enriched or attempted (UTC)",
    "_sixtyfour_task_id": "the Sixtyfour job that produced the row",
    "_sixtyfour_input_hash": "hash of the inputs that were sent",
    "_sixtyfour_spec_hash": "hash of the endpoint, struct, tier and options that were asked",
    "_sixtyfour_tier": "the research tier that gave the row's answer (a deeper one after escalation)",
}


def _read_json(
    path: Path, what: str, hint: str, check: Callable[[Path, dict[str, Any]], None] | None = None
) -> dict[str, Any]:
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
        if check is not None:
            check(path, data)  # once per modification of the file: its warnings are not repeated
        _CACHE[key] = data
    return _CACHE[key]


def _target(dbt_dir: Path, target_dir: Path | None) -> Path:
    return target_dir if target_dir is not None else dbt_dir / "target"


#: The manifest versions read as known: v12 (dbt-core 1.8 to 1.11) and v20 (dbt v2, the Fusion engine: v12's
#: nodes, with the fields that are empty left out).
KNOWN_MANIFEST_VERSIONS = frozenset({12, 20})
_SCHEMA_VERSION = re.compile(r"/dbt/([A-Za-z_-]+)/v(\d+)(?:\.json)?/?$")
_MANIFEST_HINT = (
    "run `dbt parse` (or `dbt compile`, `dbt build`) in the dbt project so target/manifest.json is a manifest"
)


def manifest_version(data: dict[str, Any]) -> tuple[str | None, int | None]:
    """The artifact kind and version a dbt JSON file says it is (``metadata.dbt_schema_version``, e.g.
    ``https://schemas.getdbt.com/dbt/manifest/v12.json`` is ``("manifest", 12)``); ``(None, None)`` when it
    does not say."""
    meta = data.get("metadata")
    url = meta.get("dbt_schema_version") if isinstance(meta, dict) else None
    match = _SCHEMA_VERSION.search(url) if isinstance(url, str) else None
    if match is None:
        return None, None
    return match.group(1), int(match.group(2))


def _check_manifest(path: Path, data: dict[str, Any]) -> None:
    """Refuse what cannot be read as a manifest; warn about a version newer than the known ones."""
    kind, version = manifest_version(data)
    if kind is not None and kind != "manifest":
        raise ConfigError(
            problems=[
                ConfigProblem(
                    str(path), None, f"this is a dbt {kind} file (v{version}), not a manifest", hint=_MANIFEST_HINT
                )
            ]
        )
    if not isinstance(data.get("nodes"), dict):
        raise ConfigError(
            problems=[
                ConfigProblem(
                    str(path),
                    "nodes",
                    "the manifest has no `nodes` object, so no model can be looked up in it"
                    + (f" (manifest v{version})" if version is not None else ""),
                    hint=_MANIFEST_HINT,
                )
            ]
        )
    if version is not None and version not in KNOWN_MANIFEST_VERSIONS and version > min(KNOWN_MANIFEST_VERSIONS):
        known = ", ".join(f"v{v}" for v in sorted(KNOWN_MANIFEST_VERSIONS))
        log.warning(
            "%s is manifest v%s, which this version of sixtyfour-sync does not know (it knows %s): it is read "
            "like v%s; upgrade sixtyfour-sync if a source.ref resolves to the wrong relation",
            path,
            version,
            known,
            max(KNOWN_MANIFEST_VERSIONS),
        )


def load_manifest(dbt_dir: Path, *, target_dir: Path | None = None) -> dict[str, Any]:
    """The dbt manifest (``<target>/manifest.json``), read once per modification.

    A file that says it is another dbt artifact, or has no ``nodes``, is a ConfigError; a version newer than
    :data:`KNOWN_MANIFEST_VERSIONS` is read with a warning.
    """
    return _read_json(
        _target(dbt_dir, target_dir) / "manifest.json",
        "manifest: source.ref needs target/manifest.json",
        "run `dbt compile` (or `dbt build`) in the dbt project first (with the same --target-path)",
        _check_manifest,
    )


def find_node(manifest: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The model, seed or snapshot called ``name`` in a manifest."""
    for n in (manifest.get("nodes") or {}).values():
        if isinstance(n, dict) and n.get("resource_type") in ("model", "seed", "snapshot") and n.get("name") == name:
            return n
    return None


def _stale_sql(dbt_dir: Path, node: dict[str, Any], manifest_path: Path) -> bool:
    original = node.get("original_file_path")
    if not isinstance(original, str):
        return False
    sql = dbt_dir / original
    return sql.is_file() and sql.stat().st_mtime > manifest_path.stat().st_mtime


def resolve_ref(
    dbt_dir: Path, name: str, *, file: Path | None = None, target_dir: Path | None = None, line: int | None = None
) -> TableRef:
    """The relation (database, schema, alias) dbt builds for model ``name``."""
    manifest = load_manifest(dbt_dir, target_dir=target_dir)
    node = find_node(manifest, name)
    where = str(file) if file else None
    if node is None:
        models = sorted(
            str(n.get("name"))
            for n in (manifest.get("nodes") or {}).values()
            if isinstance(n, dict) and n.get("resource_type") in ("model", "seed", "snapshot")
        )
        raise ConfigError(
            problems=[
                ConfigProblem(
                    where,
                    "source.ref",
                    f"dbt model {name!r} is not in the manifest (models: {', '.join(models[:20]) or 'none'})",
                    line=line,
                    hint="check the name, then run `dbt compile` so the manifest is current",
                )
            ]
        )
    if _stale_sql(dbt_dir, node, _target(dbt_dir, target_dir) / "manifest.json"):
        raise ConfigError(
            problems=[
                ConfigProblem(
                    where,
                    "source.ref",
                    f"target/manifest.json is older than the SQL of model {name!r}",
                    line=line,
                    hint="run `dbt compile` (or `dbt build`) so the manifest matches the project",
                )
            ]
        )
    return node_relation(node)


def node_relation(node: dict[str, Any]) -> TableRef:
    """The relation of a manifest node: its alias (else its name), schema and database.

    dbt v2 writes ``""`` for a database or schema it has none for; that is no name, as a missing key is.
    """
    alias = node.get("alias") or node.get("name")
    schema, database = node.get("schema"), node.get("database")
    return TableRef(str(alias), str(schema) if schema else None, str(database) if database else None)


def manifest_models(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The models of the manifest's own project (not those of installed packages), by name.

    A manifest that does not name its project (``metadata.project_name``) gives every model.
    """
    meta = manifest.get("metadata")
    project = meta.get("project_name") if isinstance(meta, dict) else None
    models = [
        n
        for n in (manifest.get("nodes") or {}).values()
        if isinstance(n, dict)
        and n.get("resource_type") == "model"
        and isinstance(n.get("name"), str)
        and (not project or n.get("package_name") in (None, project))
    ]
    return sorted(models, key=lambda n: (str(n["name"]), str(n.get("unique_id", ""))))


def model_key_columns(manifest: dict[str, Any], node: dict[str, Any]) -> list[str]:
    """The columns that identify a model's rows, as its manifest says: ``primary_key`` (dbt-core 1.7 and later
    work it out from constraints and tests), else the column of a ``unique`` test on the model (the first by
    name); else none."""
    primary = node.get("primary_key")
    if isinstance(primary, list) and primary and all(isinstance(c, str) for c in primary):
        return list(primary)
    uid = node.get("unique_id")
    unique: set[str] = set()
    for n in (manifest.get("nodes") or {}).values():
        if not isinstance(n, dict) or n.get("resource_type") != "test":
            continue
        test, column = n.get("test_metadata"), n.get("column_name")
        depends = n.get("depends_on")
        parents = depends.get("nodes") if isinstance(depends, dict) else None
        attached = n.get("attached_node") or (parents[0] if isinstance(parents, list) and parents else None)
        if isinstance(test, dict) and test.get("name") == "unique" and attached == uid and isinstance(column, str):
            unique.add(column)
    return sorted(unique)[:1]


def dbt_command(run_results: dict[str, Any]) -> str | None:
    """The dbt command that wrote a run_results.json: ``args.which``, else the command word of
    ``args.invocation_command`` (or the metadata's); None when the file does not say."""
    args = run_results.get("args")
    args = args if isinstance(args, dict) else {}
    which = args.get("which")
    if isinstance(which, str) and which:
        return which
    meta = run_results.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    for command in (args.get("invocation_command"), meta.get("invocation_command"), meta.get("command")):
        if isinstance(command, str):
            words = command.split()
            found = next((w for w in words[1:] if w in _DBT_COMMANDS), None)
            if found is not None:
                return found
    return None


def rebuilt_models(dbt_dir: Path, *, target_dir: Path | None = None) -> set[str]:
    """Names of the models that succeeded in the last dbt invocation (``target/run_results.json``).

    Only an invocation that builds counts (``run``, ``build``, ``seed``, ``snapshot``): after ``dbt compile``,
    ``test`` or ``docs generate`` no model was rebuilt. A file that does not say which command wrote it is read
    as before (each successful model, seed or snapshot).
    """
    path = _target(dbt_dir, target_dir) / "run_results.json"
    data = _read_json(
        path,
        "run results: --only-rebuilt needs target/run_results.json",
        "run `dbt build` (or `dbt run`) first",
    )
    command = dbt_command(data)
    if command is not None and command not in REBUILDING_COMMANDS:
        log.warning(
            "%s was written by `dbt %s`, which rebuilds no model: --only-rebuilt counts only dbt %s",
            path,
            command,
            ", ".join(sorted(REBUILDING_COMMANDS)),
        )
        return set()
    names = set()
    for r in data.get("results") or []:
        if not isinstance(r, dict) or r.get("status") != "success":
            continue
        uid = str(r.get("unique_id") or "")
        parts = uid.split(".")
        if len(parts) >= 3 and parts[0] in ("model", "seed", "snapshot"):
            names.add(parts[-1])
    return names


#: What ``dbt-sources`` writes as the schema of a target that follows the profile: dbt's current target schema,
#: so ``dbt build --target ci`` reads the CI schema.
TARGET_SCHEMA = "{{ target.schema }}"
DEFAULT_FRESHNESS = timedelta(days=7)


def _period(age: timedelta) -> dict[str, Any]:
    seconds = max(int(age.total_seconds()), 60)
    if seconds % 86400 == 0:
        return {"count": seconds // 86400, "period": "day"}
    if seconds % 3600 == 0 or seconds > 86400:
        return {"count": math.ceil(seconds / 3600), "period": "hour"}
    return {"count": math.ceil(seconds / 60), "period": "minute"}


def freshness_for(spec: SyncSpec) -> dict[str, Any]:
    """dbt's freshness block on ``_sixtyfour_enriched_at``: warn after ``refresh.max_age`` (else 7 days), error
    after twice that (the newest enrichment older than max_age means no run has refreshed anything since)."""
    warn = spec.refresh.max_age or DEFAULT_FRESHNESS
    return {"warn_after": _period(warn), "error_after": _period(warn * 2)}


def _columns(spec: SyncSpec) -> list[dict[str, Any]]:
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
    for generic, col in zip(BOOKKEEPING_COLUMNS, spec.bookkeeping_columns(), strict=True):
        columns.append({"name": col, "description": BOOKKEEPING_DESCRIPTIONS[generic]})
    if spec.gating:
        columns.append(
            {
                "name": spec.bookkeeping("field_status"),
                "description": "fields of the last answer held back below min_confidence (JSON), else null",
            }
        )
    return columns


def _table_entry(specs: Sequence[SyncSpec]) -> dict[str, Any]:
    """One source table for the syncs that write it (several when they share the target, each its columns)."""
    first = specs[0]
    columns: list[dict[str, Any]] = []
    seen: set[str] = set()
    for spec in specs:
        for column in _columns(spec):
            if column["name"].lower() not in seen:  # a shared key is listed once
                seen.add(column["name"].lower())
                columns.append(column)
    if len(specs) == 1:
        description = first.description or f"Enriched by sixtyfour-sync sync {first.name!r}"
        meta: dict[str, Any] = {"sixtyfour_sync": first.name}
    else:
        description = "Enriched by sixtyfour-sync syncs " + ", ".join(repr(s.name) for s in specs)
        meta = {"sixtyfour_sync": first.name, "sixtyfour_syncs": [s.name for s in specs]}
    return {
        "name": first.target.table,
        "description": description + f" ({first.endpoint} endpoint, tier {first.tier})",
        "meta": meta,
        "loaded_at_field": first.bookkeeping("enriched_at"),
        "freshness": freshness_for(first),
        "columns": columns,
    }


def source_tables(
    syncs: Sequence[LoadedSync], *, source_name: str = "sixtyfour", schema: str = TARGET_SCHEMA
) -> dict[tuple[str, str], list[LoadedSync]]:
    """Where :func:`sources_yaml` puts each target table: ``(dbt source name, table name)`` and its syncs.

    Targets that follow the profile share the source ``source_name``; each other (database, schema) gets a
    source of its own, ``<source_name>_2``, ``_3``... in a stable order. Syncs that share a target table share
    its entry. ``source('<source name>', '<table>')`` reads it in dbt, and ``[<source name>, <table>]`` is the
    key dagster-dbt gives it by default.
    """
    groups: dict[tuple[str | None, str], dict[str, list[LoadedSync]]] = {}
    for loaded in syncs:
        t = loaded.spec.target
        tables = groups.setdefault((t.database, t.schema_ or schema), {})
        tables.setdefault(t.table, []).append(loaded)
    out: dict[tuple[str, str], list[LoadedSync]] = {}
    ordered = sorted(groups.items(), key=lambda kv: (kv[0][1] != schema, str(kv[0][0]), kv[0][1]))
    for i, (_, tables) in enumerate(ordered):
        name = source_name if i == 0 else f"{source_name}_{i + 1}"
        for table, members in tables.items():
            out[(name, table)] = members
    return out


def sources_yaml(syncs: Sequence[LoadedSync], *, source_name: str = "sixtyfour", schema: str = TARGET_SCHEMA) -> str:
    """A dbt ``sources:`` YAML for the syncs' target tables, column descriptions taken from the structs.

    A sync whose ``target.schema`` is set gets that schema; the others follow the profile, and are written with
    ``schema`` (default ``{{ target.schema }}``, or e.g. ``{{ var('enriched_schema') }}``), so the same file
    works for every dbt target. Each table has ``loaded_at_field`` (the sync's ``_sixtyfour_enriched_at``
    column) and a freshness block, for ``dbt source freshness``, and ``meta: {sixtyfour_sync: <sync name>}``,
    by which :mod:`sixtyfour_sync.dagster` finds the table in the manifest. Syncs sharing a target table share
    one table entry (dbt refuses a table listed twice).
    """
    sources: dict[str, dict[str, Any]] = {}
    for (name, _table), members in source_tables(syncs, source_name=source_name, schema=schema).items():
        if name not in sources:
            target = members[0].spec.target
            src: dict[str, Any] = {"name": name}
            if target.database:
                src["database"] = target.database
            src["schema"] = target.schema_ or schema
            src["tables"] = []
            sources[name] = src
        sources[name]["tables"].append(_table_entry([m.spec for m in members]))
    return yaml.safe_dump(
        {"version": 2, "sources": list(sources.values())}, sort_keys=False, allow_unicode=True, width=120
    )


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and one rename.

    A reader (dbt, say) sees the old file or the new one, never half of one; a failure leaves the old one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
