"""Dagster assets for sixtyfour-sync: one asset per sync, downstream of the dbt assets its ``source.ref`` names.

::

    from dagster import Definitions
    from sixtyfour_sync.dagster import build_sync_assets

    defs = Definitions(assets=[*dbt_assets, *build_sync_assets("/opt/analytics", select=["tag:daily"])])

Each asset runs its sync with :func:`sixtyfour_sync.run`. Progress and the engine's log lines go to
``context.log``; the materialisation carries rows, cost and fill rate as metadata. A partial run (exit 3: jobs
still running or some failed) raises a retryable :class:`dagster.Failure`, so the asset's retry policy runs it
again and the next attempt finishes the jobs (nothing is paid twice). A failure (exit 1) raises a Failure that
is not retried: config errors, budget and credits need a person.

The asset key is the sync name (with ``key_prefix``); the dependency on a dbt model is the key dagster-dbt gives
it by default (``meta.dagster.asset_key``, else ``[config.schema, name]`` with a custom schema, else ``[name]``),
read from the manifest when it is there.
"""

# No ``from __future__ import annotations`` here: dagster reads the asset function's ``context`` annotation at
# definition time and refuses it as a string.

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

try:
    import dagster as dg
    from dagster import AssetExecutionContext
except ImportError as exc:  # pragma: no cover - exercised only without dagster installed
    from sixtyfour_sync.errors import MissingDriverError

    raise MissingDriverError("sixtyfour_sync.dagster needs the 'dagster' package", hint="pip install dagster") from exc

from sixtyfour_sync.config.models import LoadedSync
from sixtyfour_sync.engine.runner import Reporter
from sixtyfour_sync.engine.summary import RunResult, SyncResult

__all__ = ["DEFAULT_RETRY_POLICY", "ContextReporter", "build_sync_assets", "dbt_asset_key", "sync_metadata"]

#: Retry a partial run after 10 minutes, up to 6 times (jobs still running are finished, not paid again).
DEFAULT_RETRY_POLICY = dg.RetryPolicy(max_retries=6, delay=600)


def dbt_asset_key(ref: str, node: Mapping[str, Any] | None = None) -> dg.AssetKey:
    """The key dagster-dbt gives dbt model ``ref`` by default (its manifest ``node`` when known)."""
    if node is None:
        return dg.AssetKey([ref])
    config = node.get("config") or {}
    meta = config.get("meta") or node.get("meta") or {}
    configured = (meta.get("dagster") or {}).get("asset_key") if isinstance(meta, Mapping) else None
    if configured:
        return dg.AssetKey(list(configured))
    schema = config.get("schema")
    return dg.AssetKey([schema, ref] if schema else [ref])


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
        "jobs": len(sync.jobs),
        "estimated_cost_usd": round(sync.estimated_cost_cents / 100, 4),
        "charged_usd": round(sync.charged_cents / 100, 4),
        "fill_rate": dg.MetadataValue.json({k: round(v, 4) for k, v in fill.items()}),
        "mean_fill_rate": round(sum(fill.values()) / len(fill), 4) if fill else 0.0,
    }


def _manifest_nodes(project: Any) -> dict[str, Mapping[str, Any]]:
    from sixtyfour_sync.dbt import find_node, load_manifest
    from sixtyfour_sync.errors import ConfigError

    refs = {s.spec.source.ref for s in project.syncs if s.spec.source.ref}
    if not refs:
        return {}
    try:
        manifest = load_manifest(project.dbt_dir or project.project_dir, target_dir=project.target_dir)
    except ConfigError:
        return {}  # not built yet: keys from the names alone (dagster-dbt's default for a plain model)
    return {ref: node for ref in refs if (node := find_node(manifest, str(ref))) is not None}


def _make_asset(
    loaded: LoadedSync,
    deps: list[dg.AssetKey],
    run_kwargs: dict[str, Any],
    *,
    key_prefix: Sequence[str],
    group_name: str,
    retry_policy: dg.RetryPolicy | None,
) -> dg.AssetsDefinition:
    spec = loaded.spec
    name = spec.name

    @dg.asset(
        key=dg.AssetKey([*key_prefix, name]),
        deps=deps,
        group_name=group_name,
        retry_policy=retry_policy,
        description=spec.description
        or f"{spec.target.table}: enriched by Sixtyfour ({spec.endpoint}, tier {spec.tier})",
        kinds={"sixtyfour"},
        tags={f"sixtyfour/{t}": "" for t in spec.tags},
        metadata={"target_table": spec.target.table, "endpoint": spec.endpoint, "tier": spec.tier},
    )
    def _sync_asset(context: AssetExecutionContext) -> dg.MaterializeResult[Any]:
        from sixtyfour_sync.commands import run

        handler = _ToContext(context.log)
        engine_log = logging.getLogger("sixtyfour_sync")
        engine_log.addHandler(handler)
        try:
            result = run(select=[name], reporter=ContextReporter(context.log), **run_kwargs)
        finally:
            engine_log.removeHandler(handler)
        sync = next((s for s in result.syncs if s.name == name), SyncResult(name, status="failed"))
        metadata = sync_metadata(result, sync)
        for warning in sync.warnings:
            context.log.warning(f"{name}: {warning}")
        problems = "; ".join(sync.errors) or result.error or sync.status
        if result.exit_code == 3:
            raise dg.Failure(
                description=f"{name}: partial ({problems}); a retry finishes the unfinished jobs without paying again",
                metadata=metadata,
                allow_retries=True,
            )
        if result.exit_code != 0:
            raise dg.Failure(description=f"{name}: {problems}", metadata=metadata, allow_retries=False)
        return dg.MaterializeResult(metadata=metadata)

    return _sync_asset


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
    **run_options: Any,
) -> list[dg.AssetsDefinition]:
    """One asset per selected sync; ``run_options`` go to :func:`sixtyfour_sync.run` (``max_cost_cents``,
    ``max_wait_seconds``, ``api_key``, ``api_url``...). Loading reads the YAML and the manifest only: no
    warehouse connection, no API call."""
    from sixtyfour_sync.engine.project import Project

    project = Project.load(
        Path(project_dir),
        profiles_dir=Path(profiles_dir) if profiles_dir else None,
        profile=profile,
        target=target,
        env=env,
        dbt_project_dir=Path(dbt_project_dir) if dbt_project_dir else None,
        vars=vars,
        target_path=target_path,
    )
    nodes = _manifest_nodes(project)
    run_kwargs: dict[str, Any] = {
        "project_dir": project_dir,
        "profiles_dir": profiles_dir,
        "profile": profile,
        "target": target,
        "dbt_project_dir": dbt_project_dir,
        "vars": vars,
        "target_path": target_path,
        "env": env,
        **run_options,
    }
    assets = []
    for loaded in project.select(select, exclude):
        ref = loaded.spec.source.ref
        deps = [dbt_asset_key(ref, nodes.get(ref))] if ref else []
        assets.append(
            _make_asset(
                loaded, deps, run_kwargs, key_prefix=key_prefix, group_name=group_name, retry_policy=retry_policy
            )
        )
    return assets
