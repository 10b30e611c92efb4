"""Located checks of a sync against the warehouse and the dbt manifest, before anything runs.

Each user mistake becomes a :class:`ConfigProblem` with the sync's file and line, the key, what is wrong and what
exists instead: a missing schema or source table (with the similar tables of that schema), a missing key or
input column (with the source's columns), a ``source.sql`` that does not run, a ``source.ref`` whose manifest was
built for another target. Nothing is created: a source schema that does not exist is reported, never made.
``validate``, ``plan`` and ``run`` call :func:`check_sync` before a sync does any work.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from sixtyfour_sync.config.models import LoadedSync
from sixtyfour_sync.config.profiles import ResolvedTarget
from sixtyfour_sync.engine.project import Project
from sixtyfour_sync.errors import ConfigError, ConfigProblem, SixtyfourSyncError
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.types import TableRef

__all__ = ["check_sync", "list_tables", "manifest_mismatch", "ref_table", "similar"]


def similar(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """The candidates closest to ``name`` (case-insensitive), best first."""
    pool = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower(), list(pool), n=n, cutoff=0.6)
    prefix = [c for k, c in pool.items() if k.startswith(name.lower()[:4]) and c not in close]
    return [pool[c] for c in close] + prefix[: max(0, n - len(close))]


def _few(names: list[str], n: int = 15) -> str:
    shown = ", ".join(names[:n])
    return (shown + f", ... ({len(names)} in all)") if len(names) > n else (shown or "none")


def list_tables(adapter: Adapter, schema: str | None, database: str | None = None) -> list[str]:
    """The tables and views in ``schema`` (default: the target's schema), sorted."""
    info = f"{adapter.quote(database, what='database')}.information_schema" if database else "information_schema"
    sql = f"SELECT DISTINCT table_name FROM {info}.tables"
    params: list[Any] = []
    schema = schema if schema is not None else adapter.default_schema
    if schema is not None:
        if adapter.dialect.case_insensitive:
            sql += " WHERE LOWER(table_schema) = LOWER(?)"
        else:
            sql += " WHERE table_schema = ?"
        params.append(adapter.normalize_identifier(schema))
    with adapter.session() as s:
        rows = s.fetchall(sql, params)
    names = {adapter.denormalize_identifier(str(r[0])) for r in rows}
    return sorted(n for n in names if not n.lower().startswith("_sixtyfour_sync_"))  # the ledger's own tables


def _schemas(adapter: Adapter) -> list[str]:
    with adapter.session() as s:
        rows = s.fetchall("SELECT DISTINCT schema_name FROM information_schema.schemata")
    return sorted({str(r[0]) for r in rows} - {"information_schema", "pg_catalog", "pg_toast"})


def _problem(loaded: LoadedSync, key: tuple[str, ...], message: str, hint: str | None = None) -> ConfigProblem:
    dotted = ".".join((loaded.spec.name, *key))
    return ConfigProblem(str(loaded.file), dotted, message, line=loaded.line_of(*key), hint=hint)


def _table_problems(
    adapter: Adapter, loaded: LoadedSync, table: TableRef, key: tuple[str, ...], what: str, hint: str
) -> list[ConfigProblem]:
    """The table exists (and so does its schema), or a problem saying what exists instead."""
    schema = table.schema if table.schema is not None else adapter.default_schema
    if schema is not None and not table.database and not adapter.schema_exists(schema):
        schemas = _schemas(adapter)
        near = similar(schema, schemas)
        origin = "" if table.schema is not None else " (the profile target's schema)"
        return [
            _problem(
                loaded,
                (*key[:-1], "schema") if key[-1] == "table" and table.schema is not None else key,
                f"schema {schema!r}{origin} of {what} {table} does not exist"
                + (f" (similar: {', '.join(near)})" if near else "")
                + f"; schemas: {_few(schemas)}",
                hint="fix the schema; sixtyfour-sync never creates a source schema",
            )
        ]
    if adapter.table_exists(table):
        return []
    tables = list_tables(adapter, schema, table.database)
    near = similar(table.name, tables)
    where = f"schema {schema}" if schema else "the default schema"
    return [
        _problem(
            loaded,
            key,
            f"{what} {table} does not exist in {where}"
            + (f" (similar: {', '.join(near)})" if near else "")
            + f"; tables there: {_few(tables)}",
            hint=hint,
        )
    ]


def _column_problems(adapter: Adapter, loaded: LoadedSync, columns: Mapping[str, Any]) -> list[ConfigProblem]:
    """Key and input columns missing from the source: one problem per key (key, columns), naming what exists."""
    spec = loaded.spec
    available = list(columns)
    problems = []
    for key, wanted in (("key", spec.source.key), ("columns", spec.source.columns or [])):
        missing = [c for c in wanted if adapter.find_column(available, c) is None]
        if not missing:
            continue
        what = "key column" if key == "key" else "column"
        near = list(dict.fromkeys(n for c in missing for n in similar(c, available, 2)))
        names = ", ".join(repr(c) for c in missing)
        problems.append(
            _problem(
                loaded,
                ("source", key),
                f"{what}{'s' if len(missing) > 1 else ''} {names} {'are' if len(missing) > 1 else 'is'} not in "
                f"the source" + (f" (similar: {', '.join(near)})" if near else ""),
                hint=f"source columns: {_few(available, 30)}",
            )
        )
    return problems


def _query_columns(
    adapter: Adapter, loaded: LoadedSync, table: TableRef | None
) -> tuple[list[str], list[ConfigProblem]]:
    """The source query's columns (run with LIMIT 0), or a problem at source.sql / source.where."""
    from sixtyfour_sync.engine.plan.columns import query_columns
    from sixtyfour_sync.engine.rows.select import source_relation_sql

    src = loaded.spec.source
    try:
        return query_columns(adapter, source_relation_sql(adapter, loaded.spec, table)), []
    except Exception as exc:  # the driver's own error for SQL the user wrote: report it where it is
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        key: tuple[str, ...] = ("source", "sql") if src.sql else ("source", "where")
        what = ".".join(key)
        if not src.sql and not src.where:
            if isinstance(exc, SixtyfourSyncError):
                raise
            key, what = ("source",), "reading the source"
        return [], [
            _problem(loaded, key, f"{what} does not run: {text}", hint="run the query in the warehouse to fix it")
        ]


def ref_table(project: Project, loaded: LoadedSync) -> TableRef | None:
    """The relation a ``source.ref`` names, through the manifest in the dbt target directory."""
    ref = loaded.spec.source.ref
    if not ref:
        return None
    from sixtyfour_sync.dbt import resolve_ref

    return resolve_ref(
        project.dbt_dir or project.project_dir,
        ref,
        file=loaded.file,
        target_dir=project.target_dir,
        line=loaded.line_of("source", "ref"),
    )


def _expected_database(resolved: ResolvedTarget) -> str | None:
    config: Any = resolved.config
    if config.type == "duckdb":
        if getattr(config, "database", None):
            return str(config.database)
        path = str(config.path)
        if path == ":memory:":
            return "memory"
        from pathlib import Path

        return Path(path).stem
    for attr in ("dbname", "database", "project", "catalog"):
        value = getattr(config, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


def manifest_mismatch(node: Mapping[str, Any], manifest: Mapping[str, Any], resolved: ResolvedTarget) -> str | None:
    """Why a manifest node was not built for this profile target, or None when it matches.

    dbt writes a model to the target's schema, or to ``<target schema>_<custom>`` (or ``<custom>``) with a
    custom schema; its database is the target's. A manifest built with another ``--target`` fails this.
    """
    config: Any = resolved.config
    adapter_type = (manifest.get("metadata") or {}).get("adapter_type")
    if isinstance(adapter_type, str) and adapter_type != config.type and config.type != "sqlalchemy":
        where = f"{resolved.profile}.{resolved.target}"
        return f"the manifest was built by dbt-{adapter_type}, but target {where} is {config.type}"
    schema = str(node.get("schema") or "")
    target_schema = str(getattr(config, "schema", None) or "")
    custom = (node.get("config") or {}).get("schema")
    if schema and target_schema:
        allowed = {target_schema.lower()}
        if isinstance(custom, str) and custom:
            allowed |= {f"{target_schema}_{custom}".lower(), custom.lower()}
        if schema.lower() not in allowed:
            return (
                f"the manifest puts it in schema {schema!r}, but target {resolved.profile}.{resolved.target} "
                f"uses schema {target_schema!r}"
            )
    database, expected = node.get("database"), _expected_database(resolved)
    if isinstance(database, str) and database and expected and database.lower() != expected.lower():
        return (
            f"the manifest puts it in database {database!r}, but target {resolved.profile}.{resolved.target} "
            f"uses {expected!r}"
        )
    return None


def _ref_problems(project: Project, loaded: LoadedSync, resolved: ResolvedTarget) -> list[ConfigProblem]:
    from sixtyfour_sync.dbt import find_node, load_manifest

    manifest = load_manifest(project.dbt_dir or project.project_dir, target_dir=project.target_dir)
    node = find_node(manifest, str(loaded.spec.source.ref))
    reason = None if node is None else manifest_mismatch(node, manifest, resolved)
    if reason is None:
        return []
    return [
        _problem(
            loaded,
            ("source", "ref"),
            f"dbt model {loaded.spec.source.ref!r}: {reason}",
            hint=f"run `dbt compile --target {resolved.target}` (or dbt build) so the manifest matches, "
            "or pass the --target dbt used",
        )
    ]


def check_sync(project: Project, loaded: LoadedSync, adapter: Adapter) -> TableRef | None:
    """Check one sync's source against the warehouse (and the manifest); raise one ConfigError with every problem.

    Returns the resolved ``source.ref`` table (None for other sources), so callers resolve it once.
    """
    spec = loaded.spec
    src = spec.source
    problems: list[ConfigProblem] = []
    table: TableRef | None = None
    if src.ref:
        table = ref_table(project, loaded)
        problems += _ref_problems(project, loaded, project.target_for(loaded))
        if not problems and table is not None:
            problems += _table_problems(
                adapter,
                loaded,
                table,
                ("source", "ref"),
                f"the relation of dbt model {src.ref!r},",
                "run `dbt build` (for this target) so the model exists",
            )
    elif src.table:
        problems += _table_problems(
            adapter,
            loaded,
            TableRef(src.table, src.schema_, src.database),
            ("source", "table"),
            "source table",
            "fix source.table (and source.schema), or create the table first",
        )
    if problems:
        raise ConfigError(problems=problems)
    columns, problems = _query_columns(adapter, loaded, table)
    if not problems:
        problems = _column_problems(adapter, loaded, dict.fromkeys(columns))
    if problems:
        raise ConfigError(problems=problems)
    return table
