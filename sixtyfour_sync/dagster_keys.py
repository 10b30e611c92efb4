"""The asset keys of :mod:`sixtyfour_sync.dagster`, as plain lists of strings (no dagster import here).

A sync's asset is the dbt source table ``dbt-sources`` writes for its target, so its key is the one dagster-dbt
gives that source by default (its translator's default key): ``meta.dagster.asset_key`` when set, else
``[source name, table name]``. The dbt node is the manifest's when dbt has parsed the sources file (found by its
``meta.sixtyfour_sync``), else a stand-in with the names ``dbt-sources`` would write
(:func:`sixtyfour_sync.dbt.source_tables`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sixtyfour_sync.config.models import LoadedSync

__all__ = ["default_key", "invalid_file_name", "manifest_sources", "model_props", "sync_source_props"]


def default_key(props: Mapping[str, Any]) -> list[str]:
    """The key dagster-dbt gives a dbt node by default.

    ``meta.dagster.asset_key`` (config's meta first) when set; a source: ``[source_name, name]``; a versioned
    model: ``[alias]``; a model with a custom schema: ``[config.schema, name]``; else ``[name]``.
    """
    config = props.get("config") or {}
    meta = config.get("meta") or props.get("meta") or {}
    configured = (meta.get("dagster") or {}).get("asset_key") if isinstance(meta, Mapping) else None
    if configured:
        return [str(part) for part in configured]
    if props.get("resource_type") == "source":
        return [str(props["source_name"]), str(props["name"])]
    if props.get("version"):
        return [str(props.get("alias") or props["name"])]
    schema = config.get("schema")
    return [str(schema), str(props["name"])] if schema else [str(props["name"])]


def model_props(ref: str, manifest: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The manifest's node of model (or seed, snapshot) ``ref``; a stand-in with its name when not there."""
    from sixtyfour_sync.dbt import find_node

    node = find_node(dict(manifest), ref) if manifest else None
    return node if node is not None else {"resource_type": "model", "name": ref, "config": {}, "meta": {}}


def _stand_in(source: str, table: str, names: Sequence[str]) -> dict[str, Any]:
    """The node dbt will have for a table ``dbt-sources`` writes, before dbt has parsed it."""
    meta: dict[str, Any] = {"sixtyfour_sync": names[0]}
    if len(names) > 1:
        meta["sixtyfour_syncs"] = list(names)
    return {
        "resource_type": "source",
        "unique_id": f"source.{source}.{table}",
        "source_name": source,
        "name": table,
        "identifier": table,
        "fqn": [source, table],
        "meta": meta,
        "config": {"meta": meta},
    }


def manifest_sources(manifest: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """Sync name -> the manifest's source node whose ``meta`` names it (``sixtyfour_sync``/``sixtyfour_syncs``)."""
    out: dict[str, Mapping[str, Any]] = {}
    sources = (manifest or {}).get("sources") or {}
    for uid in sorted(sources):
        node = sources[uid]
        meta = (node.get("config") or {}).get("meta") or node.get("meta") or {}
        if not isinstance(meta, Mapping):
            continue
        names = meta.get("sixtyfour_syncs") or [meta.get("sixtyfour_sync")]
        for name in names if isinstance(names, list) else []:
            if isinstance(name, str):
                out.setdefault(name, node)
    return out


def sync_source_props(
    syncs: Sequence[LoadedSync], manifest: Mapping[str, Any] | None, *, source_name: str, schema: str
) -> dict[str, Mapping[str, Any]]:
    """Sync name -> the dbt node of its target's source table (the manifest's, else the stand-in).

    ``syncs`` are all of the project's (the names ``dbt-sources`` gives depend on every target), ``source_name``
    and ``schema`` what ``dbt-sources`` was given.
    """
    from sixtyfour_sync.dbt import source_tables

    parsed = manifest_sources(manifest)
    out: dict[str, Mapping[str, Any]] = {}
    for (source, table), members in source_tables(syncs, source_name=source_name, schema=schema).items():
        names = [m.spec.name for m in members]
        for name in names:
            out[name] = parsed.get(name) or _stand_in(source, table, names)
    return out


def _ident(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "_"


def invalid_file_name(
    file: Path | str, project_dir: Path | str, select: Sequence[str] | None, exclude: Sequence[str] | None
) -> str:
    """The last part of the key standing in for a sync file that fails to load.

    The file's path in the project with every run of characters other than letters and digits made ``_``
    (``models/leads.yml`` -> ``models_leads_yml``); a selection is added after ``__``
    (``models_leads_yml__tag_daily``; a long one as a hash), so factories with different selections differ.
    """
    path = Path(file).resolve()
    try:
        rel = path.relative_to(Path(project_dir).resolve()).as_posix()
    except ValueError:
        rel = path.name
    name = _ident(rel)
    if select or exclude:
        selection = " ".join(select or ["all"]) + (" not " + " ".join(exclude) if exclude else "")
        suffix = _ident(selection)
        if len(suffix) > 48:
            suffix = "selection_" + hashlib.sha256(selection.encode()).hexdigest()[:10]
        name += "__" + suffix
    return name
