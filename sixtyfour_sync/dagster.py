"""Dagster assets for sixtyfour-sync: one asset per enriched table, between the dbt assets it reads and feeds.

::

    from dagster import Definitions
    from sixtyfour_sync.dagster import build_sync_assets

    defs = Definitions(assets=[dbt_assets, *build_sync_assets("/opt/analytics", select=["tag:daily"])])

**Keys line up with dagster-dbt's.** A sync's asset is keyed by the dbt source table ``sixtyfour-sync
dbt-sources`` writes for its target (``source('sixtyfour', 'leads_enriched')``), with the key dagster-dbt gives
that source by default: ``meta.dagster.asset_key`` when the table sets one, else ``[source name, table name]``
(``['sixtyfour', 'leads_enriched']``). When the manifest has the sources file parsed, the table is found there by
its ``meta.sixtyfour_sync`` (whatever ``--source-name`` wrote it); before that, the key is the one
``dbt-sources`` would write (:func:`sixtyfour_sync.dbt.source_tables`, with ``source_name`` and
``source_schema`` as given to ``dbt-sources``). The dbt models selecting from the source are then downstream of
the sync, and the sync is downstream of the model its ``source.ref`` names (dagster-dbt's key for it:
``meta.dagster.asset_key``, else the alias of a versioned model, else ``[config.schema, name]`` with a custom
schema, else ``[name]``). Syncs that share a target table share its asset. ``key_prefix`` goes in front of the
syncs' keys; ``dbt_translator`` (a ``DagsterDbtTranslator``) gives the keys the dbt assets use instead of the
defaults, for both the sources and the models.

**A broken sync file fails its own asset.** A file under ``models/`` that fails to load (a YAML typo, a schema
error, a sync name used twice) does not stop the code location loading: its syncs are left out, a warning is
logged, and an asset keyed after the file (:func:`invalid_file_key`) stands in for them; materialising it fails,
not retried, with the file's errors (file, line, key). The other syncs' assets and the dbt assets load and run.

Each asset runs its syncs with :func:`sixtyfour_sync.run`. Progress and the engine's log lines go to
``context.log``; the materialisation carries rows, cost and fill rate as metadata. A partial run (exit 3: jobs
still running or some failed) raises a retryable :class:`dagster.Failure`, so the asset's retry policy runs it
again and the next attempt finishes the jobs (nothing is paid twice). A failure (exit 1) or a configuration error
raises a Failure that is not retried: config errors, budget and credits need a person.
"""

# No ``from __future__ import annotations`` here: dagster reads the asset function's ``context`` annotation at
# definition time and refuses it as a string.

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

try:
    import dagster as dg
    from dagster import AssetExecutionContext
except ImportError as exc:  # pragma: no cover - exercised only without dagster installed
    from sixtyfour_sync.errors import MissingDriverError

    raise MissingDriverError("sixtyfour_sync.dagster needs the 'dagster' package", hint="pip install dagster") from exc

from sixtyfour_sync import dagster_keys as keys
from sixtyfour_sync.config.models import LoadedSync
from sixtyfour_sync.engine.invalid_files import invalid_files
from sixtyfour_sync.engine.project import Project
from sixtyfour_sync.engine.runner import Reporter
from sixtyfour_sync.engine.summary import RunResult, SyncResult
from sixtyfour_sync.errors import ConfigError, ConfigProblem

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "INVALID_FILE_KEY",
    "ContextReporter",
    "DbtTranslator",
    "build_sync_assets",
    "dbt_asset_key",
    "dbt_default_key",
    "invalid_file_key",
    "sync_asset_keys",
    "sync_metadata",
    "table_metadata",
]

#: Retry a partial run after 10 minutes, up to 6 times (jobs still running are finished, not paid again).
DEFAULT_RETRY_POLICY = dg.RetryPolicy(max_retries=6, delay=600)
#: The first part of the key of the asset that stands in for a sync file that fails to load.
INVALID_FILE_KEY = "sixtyfour_invalid_file"
log = logging.getLogger("sixtyfour_sync.dagster")


class DbtTranslator(Protocol):
    """What is used of a ``dagster_dbt.DagsterDbtTranslator``: the key of a dbt node (as the manifest has it)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey: ...


def dbt_default_key(props: Mapping[str, Any]) -> dg.AssetKey:
    """The key dagster-dbt gives a dbt node by default (:func:`sixtyfour_sync.dagster_keys.default_key`)."""
    return dg.AssetKey(keys.default_key(props))


def _key(props: Mapping[str, Any], translator: DbtTranslator | None) -> dg.AssetKey:
    return translator.get_asset_key(props) if translator is not None else dbt_default_key(props)


def dbt_asset_key(
    ref: str, node: Mapping[str, Any] | None = None, translator: DbtTranslator | None = None
) -> dg.AssetKey:
    """The key dagster-dbt gives dbt model ``ref`` (its manifest ``node`` when known)."""
    props = {"resource_type": "model", "name": ref, "config": {}, **node} if node is not None else None
    return _key(props or keys.model_props(ref, None), translator)


def sync_asset_keys(
    syncs: Sequence[LoadedSync],
    manifest: Mapping[str, Any] | None = None,
    *,
    source_name: str = "sixtyfour",
    source_schema: str | None = None,
    translator: DbtTranslator | None = None,
) -> dict[str, dg.AssetKey]:
    """Each sync's asset key: the key dagster-dbt gives the dbt source table of its target.

    ``syncs`` are all the project's syncs, ``manifest`` the dbt manifest when there is one, ``source_name`` and
    ``source_schema`` what ``dbt-sources`` was given (used until the manifest has the sources file).
    """
    from sixtyfour_sync.dbt import TARGET_SCHEMA

    props = keys.sync_source_props(syncs, manifest, source_name=source_name, schema=source_schema or TARGET_SCHEMA)
    return {name: _key(p, translator) for name, p in props.items()}


def invalid_file_key(
    file: Path | str,
    project_dir: Path | str,
    *,
    select: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    key_prefix: Sequence[str] = (),
) -> dg.AssetKey:
    """The key of the asset standing in for a sync file that fails to load:
    ``[*key_prefix, "sixtyfour_invalid_file", <file>]`` (:func:`sixtyfour_sync.dagster_keys.invalid_file_name`:
    ``models/leads.yml`` -> ``models_leads_yml``, ``models_leads_yml__tag_daily`` with ``select=["tag:daily"]``).
    """
    return dg.AssetKey([*key_prefix, INVALID_FILE_KEY, keys.invalid_file_name(file, project_dir, select, exclude)])


class ContextReporter(Reporter):
    """Engine progress as ``context.log`` lines."""

    def __init__(self, log: logging.Logger | Any) -> None:
        self.log = log

    def on(self, event_name: str, sync: str, **data: Any) -> None:
        """Log one engine event."""
        if event_name == "note":
            level = str(data.get("level") or "info")
            getattr(self.log, level if level in ("warning", "error") else "info")(f"{sync}: {data.get('message')}")
        elif event_name == "plan":
            self.log.info(f"{sync}: {data.get('rows', 0):,} row(s) to send in {data.get('files', 0)} file(s)")
        elif event_name == "submitted":
            self.log.info(f"{sync}: submitted {data.get('rows', 0):,} rows as task {data.get('task_id')}")
        elif event_name == "merged":
            self.log.info(f"{sync}: merged {data.get('rows', 0):,} rows")
        elif event_name == "job_done":
            self.log.info(f"{sync}: a job ended {data.get('state')}")


class _ToContext(logging.Handler):
    """Forwards the engine's own log records (``sixtyfour_sync.*``) to ``context.log``."""

    def __init__(self, log: Any) -> None:
        super().__init__(logging.INFO)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelname.lower()
        getattr(self.log, level if level in ("debug", "info", "warning", "error") else "info")(record.getMessage())


def sync_metadata(result: RunResult, sync: SyncResult) -> dict[str, Any]:
    """What a materialisation records: run id, status, rows, cost, fill rate."""
    fill = sync.fill_rate
    return {
        "run_id": result.run_id,
        "status": sync.status,
        "rows_selected": sync.rows_selected,
        "rows_sent": sync.rows_sent,
        "rows_enriched": sync.rows_enriched,
        "rows_failed": sync.rows_failed,
        "rows_not_returned": sync.rows_not_returned,
        "rows_deduplicated": sync.rows_deduplicated,
        "rows_reused": sync.rows_reused,
        "jobs": len(sync.jobs),
        "estimated_cost_usd": round(sync.estimated_cost_cents / 100, 4),
        "charged_usd": round(sync.charged_cents / 100, 4),
        "saved_usd": round(sync.saved_cents / 100, 4),
        "reused_saved_usd": round(sync.reused_saved_cents / 100, 4),
        "fill_rate": dg.MetadataValue.json({k: round(v, 4) for k, v in fill.items()}),
        "mean_fill_rate": round(sum(fill.values()) / len(fill), 4) if fill else 0.0,
    }


_SUMMED = (
    "rows_selected",
    "rows_sent",
    "rows_enriched",
    "rows_failed",
    "rows_not_returned",
    "rows_deduplicated",
    "rows_reused",
    "jobs",
)


def table_metadata(result: RunResult, syncs: Sequence[SyncResult]) -> dict[str, Any]:
    """:func:`sync_metadata` of the one sync, or for a table several syncs write: totals, and each sync's."""
    if len(syncs) == 1:
        return sync_metadata(result, syncs[0])
    each = {s.name: sync_metadata(result, s) for s in syncs}
    out: dict[str, Any] = {"run_id": result.run_id, "status": result.status}
    out.update({k: sum(int(m[k]) for m in each.values()) for k in _SUMMED})
    for k in ("estimated_cost_usd", "charged_usd", "saved_usd", "reused_saved_usd"):
        out[k] = round(sum(float(m[k]) for m in each.values()), 4)
    out["syncs"] = dg.MetadataValue.json(
        {name: {k: v for k, v in m.items() if k != "fill_rate" and k != "run_id"} for name, m in each.items()}
    )
    return out


def _load_project(project_dir: Path | str, args: Mapping[str, Any]) -> Project:
    """The project, loaded leniently: a broken file's problems are kept in ``problems``, never raised."""
    return Project.load(
        Path(project_dir),
        profiles_dir=Path(args["profiles_dir"]) if args.get("profiles_dir") else None,
        profile=args.get("profile"),
        target=args.get("target"),
        env=args.get("env"),
        dbt_project_dir=Path(args["dbt_project_dir"]) if args.get("dbt_project_dir") else None,
        vars=args.get("vars"),
        target_path=args.get("target_path"),
        lenient=True,
    )


def _manifest(project: Project) -> Mapping[str, Any] | None:
    from sixtyfour_sync.dbt import load_manifest

    try:
        return load_manifest(project.dbt_dir or project.project_dir, target_dir=project.target_dir)
    except ConfigError:
        return None  # not built yet: dagster-dbt's default keys from the names alone


def _problems_text(problems: Sequence[ConfigProblem]) -> str:
    return "\n".join(f"  - {p}" for p in problems)


def _check_files(project_dir: Path | str, args: Mapping[str, Any], files: Sequence[Path]) -> None:
    """Fail (not retried) when one of ``files`` no longer loads, with its problems."""
    try:
        broken = invalid_files(_load_project(project_dir, args).problems)
    except ConfigError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    for f in files:
        if f.resolve() in broken:
            raise dg.Failure(
                description=f"{f} fails to load now:\n{_problems_text(broken[f.resolve()])}",
                allow_retries=False,
            )


def _make_asset(
    key: dg.AssetKey,
    members: Sequence[LoadedSync],
    deps: list[dg.AssetKey],
    run_kwargs: dict[str, Any],
    *,
    group_name: str,
    retry_policy: dg.RetryPolicy | None,
) -> dg.AssetsDefinition:
    names = [m.spec.name for m in members]
    first = members[0].spec
    files = sorted({m.file for m in members})
    description = first.description if len(members) == 1 else None

    @dg.asset(
        key=key,
        deps=deps,
        group_name=group_name,
        retry_policy=retry_policy,
        description=description
        or f"{first.target.table}: enriched by Sixtyfour ({', '.join(names)}; {first.endpoint}, tier {first.tier})",
        kinds={"sixtyfour"},
        tags={f"sixtyfour/{t}": "" for m in members for t in m.spec.tags},
        metadata={
            "syncs": ", ".join(names),
            "target_table": first.target.table,
            "endpoint": first.endpoint,
            "tier": first.tier,
            "defined_in": ", ".join(str(f) for f in files),
        },
    )
    def _sync_asset(context: AssetExecutionContext) -> dg.MaterializeResult[Any]:
        from sixtyfour_sync.commands import run

        _check_files(run_kwargs["project_dir"], run_kwargs, files)
        handler = _ToContext(context.log)
        engine_log = logging.getLogger("sixtyfour_sync")
        engine_log.addHandler(handler)
        try:
            result = run(select=names, reporter=ContextReporter(context.log), skip_invalid_files=True, **run_kwargs)
        except ConfigError as exc:  # a definition that changed since the code location loaded, a missing key...
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        finally:
            engine_log.removeHandler(handler)
        found = {s.name: s for s in result.syncs}
        syncs = [found.get(n) or SyncResult(n, status="failed") for n in names]
        metadata = table_metadata(result, syncs)
        for s in syncs:
            for warning in s.warnings:
                context.log.warning(f"{s.name}: {warning}")
        problems = "; ".join(e for s in syncs for e in s.errors) or result.error or result.status
        label = ", ".join(names)
        if result.exit_code == 3:
            raise dg.Failure(
                description=f"{label}: partial ({problems}); a retry finishes the unfinished jobs without paying again",
                metadata=metadata,
                allow_retries=True,
            )
        if result.exit_code != 0:
            raise dg.Failure(description=f"{label}: {problems}", metadata=metadata, allow_retries=False)
        return dg.MaterializeResult(metadata=metadata)

    return _sync_asset


def _invalid_file_asset(
    key: dg.AssetKey,
    file: Path,
    problems: Sequence[ConfigProblem],
    project_dir: Path | str,
    args: Mapping[str, Any],
    group_name: str,
) -> dg.AssetsDefinition:
    shown = str(file)
    at_load = _problems_text(problems)

    @dg.asset(
        key=key,
        group_name=group_name,
        description=f"{shown} failed to load, so its syncs are not assets. Its errors:\n{at_load}",
        kinds={"sixtyfour"},
        metadata={"file": shown, "problems": dg.MetadataValue.json([str(p) for p in problems])},
    )
    def _invalid_file(context: AssetExecutionContext) -> dg.MaterializeResult[Any]:
        try:
            now = invalid_files(_load_project(project_dir, args).problems).get(file.resolve())
        except ConfigError as exc:
            raise dg.Failure(description=f"{shown} failed to load:\n{at_load}\n{exc}", allow_retries=False) from exc
        if now is None:
            raise dg.Failure(
                description=f"{shown} loads now: reload the code location so its syncs become assets "
                f"(it failed to load with:\n{at_load})",
                allow_retries=False,
            )
        raise dg.Failure(
            description=f"{shown} fails to load, so its syncs are not assets; fix it, then reload the code "
            f"location:\n{_problems_text(now)}",
            metadata={"file": shown, "problems": dg.MetadataValue.json([str(p) for p in now])},
            allow_retries=False,
        )

    return _invalid_file


def _select(
    project: Project, select: Sequence[str] | None, exclude: Sequence[str] | None, broken: bool
) -> list[LoadedSync]:
    """``project.select``; with a broken file, a word naming only its syncs is left out instead of raising."""
    from sixtyfour_sync.engine.selectors import parse_selector, select_syncs

    try:
        return list(project.select(select, exclude))
    except ConfigError:
        if not broken:
            raise
    root = project.project_dir
    chosen: set[str] = set()
    for atoms in parse_selector(select) or [[]]:
        try:
            chosen |= {
                s.spec.name for s in select_syncs(project.syncs, [",".join(atoms)] if atoms else None, root=root)
            }
        except ConfigError as exc:
            log.warning("%s (a sync file fails to load: its syncs cannot be selected)", exc)
    for atoms in parse_selector(exclude):
        if not chosen:
            break
        try:
            chosen = {s.spec.name for s in select_syncs(project.syncs, sorted(chosen), [",".join(atoms)], root=root)}
        except ConfigError as exc:
            log.warning("%s (a sync file fails to load: its syncs cannot be excluded)", exc)
    return [s for s in project.syncs if s.spec.name in chosen]


def build_sync_assets(
    project_dir: Path | str,
    *,
    select: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    key_prefix: Sequence[str] = (),
    group_name: str = "sixtyfour",
    retry_policy: dg.RetryPolicy | None = DEFAULT_RETRY_POLICY,
    profiles_dir: Path | str | None = None,
    profile: str | None = None,
    target: str | None = None,
    dbt_project_dir: Path | str | None = None,
    vars: Mapping[str, Any] | None = None,
    target_path: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    source_name: str = "sixtyfour",
    source_schema: str | None = None,
    dbt_translator: DbtTranslator | None = None,
    **run_options: Any,
) -> list[dg.AssetsDefinition]:
    """One asset per target table of the selected syncs, and one per sync file that fails to load.

    Keys: see the module's text (``source_name``/``source_schema`` as given to ``dbt-sources``, used until the
    manifest has the sources file). ``run_options`` go to :func:`sixtyfour_sync.run` (``max_cost_cents``,
    ``max_wait_seconds``, ``api_key``, ``api_url``...). Loading reads the YAML and the manifest only: no
    warehouse connection, no API call.
    """
    args: dict[str, Any] = {
        "profiles_dir": profiles_dir,
        "profile": profile,
        "target": target,
        "dbt_project_dir": dbt_project_dir,
        "vars": vars,
        "target_path": target_path,
        "env": env,
    }
    project = _load_project(project_dir, args)
    broken = invalid_files(project.problems)  # a problem of no one file raises, as a strict load would
    project.syncs = [s for s in project.syncs if s.file.resolve() not in broken]
    manifest = _manifest(project)
    sync_keys = sync_asset_keys(
        project.syncs, manifest, source_name=source_name, source_schema=source_schema, translator=dbt_translator
    )
    by_key: dict[dg.AssetKey, list[LoadedSync]] = {}
    for loaded in _select(project, select, exclude, bool(broken)):
        by_key.setdefault(dg.AssetKey([*key_prefix, *sync_keys[loaded.spec.name].path]), []).append(loaded)
    run_kwargs: dict[str, Any] = {"project_dir": project_dir, **args, **run_options}
    assets = []
    for key, members in by_key.items():
        refs = list(dict.fromkeys(str(m.spec.source.ref) for m in members if m.spec.source.ref))
        deps = [_key(keys.model_props(r, manifest), dbt_translator) for r in refs]
        assets.append(_make_asset(key, members, deps, run_kwargs, group_name=group_name, retry_policy=retry_policy))
    taken = set(by_key)
    for file, problems in broken.items():
        key = invalid_file_key(file, project.project_dir, select=select, exclude=exclude, key_prefix=key_prefix)
        n = 1
        while key in taken:
            n += 1
            key = dg.AssetKey([*key.path[:-1], f"{key.path[-1]}_{n}"])
        taken.add(key)
        log.warning(
            "%s fails to load, so its syncs are not assets; asset %s fails with its errors until it is fixed:\n%s",
            file,
            key.to_user_string(),
            _problems_text(problems),
        )
        assets.append(_invalid_file_asset(key, file, problems, project_dir, args, group_name))
    return assets
