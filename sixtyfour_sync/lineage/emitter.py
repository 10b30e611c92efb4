"""Sending a run's OpenLineage events: what each sync reads and writes, gathered from the project and its
warehouse, turned into events (sixtyfour_sync/lineage/events.py) and handed to the OpenLineage client.

Imported only when OpenLineage is configured (sixtyfour_sync/lineage/__init__.py). The client is made once per
invocation with no arguments, so it reads its configuration as everywhere else: ``OPENLINEAGE_URL`` (with
``OPENLINEAGE_API_KEY``, ``OPENLINEAGE_ENDPOINT``), ``OPENLINEAGE_CONFIG`` or an ``openlineage.yml`` (in the
working directory or ``~/.openlineage/``), ``OPENLINEAGE__...`` variables, ``OPENLINEAGE_DISABLED``.

Nothing here may fail a run: describing a sync, building an event and sending it are each guarded; a failure is
a warning. After a transport error the run sends no more events (each would wait for the same endpoint).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import RunEvent

from sixtyfour_sync._redact import redact, register_secret
from sixtyfour_sync.lineage import DEFAULT_NAMESPACE, NAMESPACE_ENV, Listener, NoLineage, warn_once
from sixtyfour_sync.lineage.events import Parent, SyncFacts, end_event, run_uuid, start_event
from sixtyfour_sync.lineage.naming import DatasetId, dataset_id
from sixtyfour_sync.warehouse.types import NameKind, TableRef

if TYPE_CHECKING:
    from sixtyfour_sync.config.models import LoadedSync
    from sixtyfour_sync.engine.project import Project
    from sixtyfour_sync.engine.summary import RunResult
    from sixtyfour_sync.warehouse.adapter import Adapter

__all__ = ["OpenLineageListener", "describe_sync", "parent_from", "tables_in"]

log = logging.getLogger("sixtyfour_sync.lineage")


class OpenLineageListener:
    """Emits a START event as each sync starts and its end event once the run's numbers are known."""

    def __init__(self, client: Any, namespace: str, command: str, parent: Parent | None = None) -> None:
        self.client = client
        self.namespace = namespace
        self.command = command
        self.parent = parent
        self._facts: dict[str, SyncFacts] = {}
        self._off = False

    @classmethod
    def create(cls, command: str, environ: Mapping[str, str], reason: str) -> Listener:
        """The listener, with a client made from the environment's configuration (a warning and no events when
        that configuration cannot be used)."""
        config = environ.get("OPENLINEAGE_CONFIG")
        if reason == "OPENLINEAGE_CONFIG" and config and not Path(config).is_file():
            warn_once(
                "config-file", "OPENLINEAGE_CONFIG names %s, which is not a file: no lineage events are sent", config
            )
            return NoLineage()
        register_secret(environ.get("OPENLINEAGE_API_KEY"))
        try:
            client = _quiet_client(environ)
            _scrub_source_location(client)
        except Exception as exc:
            warn_once(
                "client",
                "OpenLineage (%s) could not start its client: %s; no lineage events are sent",
                reason,
                _safe(exc),
            )
            return NoLineage()
        return cls(client, environ.get(NAMESPACE_ENV) or DEFAULT_NAMESPACE, command, parent_from(environ))

    def sync_started(self, project: Project, loaded: LoadedSync, run_id: str, started_at: float) -> None:
        """Describe the sync and send its START event."""
        name = loaded.spec.name
        try:
            facts = describe_sync(
                project, loaded, run_id=run_id, command=self.command, started_at=started_at, namespace=self.namespace
            )
            facts.parent = self.parent
            event = start_event(facts)
        except Exception as exc:
            log.warning("OpenLineage: the events of sync %s are not sent: %s", name, _safe(exc))
            return
        self._facts[name] = facts
        self._emit(event, name)

    def run_ended(self, result: RunResult) -> None:
        """Send the end event of every sync that started, with the numbers the run's result now holds."""
        outcomes = {s.name: s for s in result.syncs}
        try:
            for name, facts in self._facts.items():
                one = outcomes.get(name)
                try:
                    event = end_event(
                        facts,
                        one,
                        ended_at=time.time(),
                        error=None if one is not None else result.error or "the run stopped before this sync ended",
                        fail_on_budget=result.fail_on_budget,
                    )
                except Exception as exc:
                    log.warning("OpenLineage: the end event of sync %s is not sent: %s", name, _safe(exc))
                    continue
                self._emit(event, name)
        finally:
            self._facts.clear()
            try:
                self.client.close(10.0)
            except Exception as exc:
                log.warning("OpenLineage: closing the client failed: %s", _safe(exc))

    def _emit(self, event: RunEvent, sync: str) -> None:
        if self._off:
            return
        try:
            self.client.emit(event)
        except Exception as exc:
            self._off = True
            kind = event.eventType.value if event.eventType else "run"
            log.warning(
                "OpenLineage: sending the %s event of sync %s failed (%s); this run sends no more lineage events",
                kind,
                sync,
                _safe(exc),
                extra={"event": "lineage.transport_error"},
            )


def _quiet_client(environ: Mapping[str, str]) -> Any:
    """The client, made without its "will use ... transport" line in a run's output (unless
    ``OPENLINEAGE_CLIENT_LOGGING`` asks for its logs)."""
    said = logging.getLogger("openlineage.client.client")
    level = said.level
    if not environ.get("OPENLINEAGE_CLIENT_LOGGING"):
        said.setLevel(logging.WARNING)
    try:
        return OpenLineageClient()
    finally:
        said.setLevel(level)


def _safe(exc: BaseException) -> str:
    return redact(f"{type(exc).__name__}: {exc}")[:500]


def _scrub_source_location(client: Any) -> None:
    """Without the user/password a git remote may carry (a CI clone's token): the client's sourceCodeLocation
    facet, when its configuration turns it on, reads the remote URL from .git/config."""
    location = getattr(getattr(client.config, "facets", None), "source_code_location", None)
    if location is None or location.disabled or location.repo_url:
        return  # off (the default), set by hand, or a client without the facet
    try:
        from openlineage.client.git import get_git_repo_url
    except ImportError:
        return
    url = get_git_repo_url()
    parts = urlsplit(url or "")
    if parts.username or parts.password:
        location.repo_url = urlunsplit(parts._replace(netloc=parts.hostname or ""))


def parent_from(environ: Mapping[str, str]) -> Parent | None:
    """The parent run an orchestrator names in ``OPENLINEAGE_PARENT_ID`` (``namespace/job/run-uuid``), with
    ``OPENLINEAGE_ROOT_PARENT_ID`` as its root; None when unset or malformed."""

    def parse(text: str) -> Parent | None:
        parts = text.strip().split("/")
        if len(parts) != 3 or not all(parts):
            return None
        try:
            uuid.UUID(parts[2])
        except ValueError:
            return None
        return Parent(parts[0], parts[1], parts[2])

    parent = parse(environ.get("OPENLINEAGE_PARENT_ID", ""))
    if parent is None:
        if environ.get("OPENLINEAGE_PARENT_ID"):
            warn_once("parent", "OPENLINEAGE_PARENT_ID is not namespace/job/run-uuid: the events name no parent")
        return None
    root = parse(environ.get("OPENLINEAGE_ROOT_PARENT_ID", ""))
    return Parent(parent.namespace, parent.name, parent.run_id, root=root)


def tables_in(sql: str, dialect: str) -> list[TableRef]:
    """The tables a SELECT reads (its CTEs left out), each once."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(sql, read=dialect)
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    found: list[TableRef] = []
    for t in tree.find_all(exp.Table):
        if not t.name or (not t.db and t.name.lower() in ctes):
            continue
        ref = TableRef(t.name, t.db or None, t.catalog or None)
        if ref not in found:
            found.append(ref)
    return found


def _current_catalog(adapter: Adapter) -> str | None:
    """The catalog a Databricks connection is in when the profile names none (as the warehouse says), or None."""
    try:
        for batch in adapter.stream("SELECT current_catalog()"):
            if batch.num_rows:
                return str(batch.column(0)[0].as_py())
    except Exception as exc:  # the name then lacks its catalog; the sync says what is wrong with the connection
        log.debug("OpenLineage: the current catalog is unknown: %s", _safe(exc))
    return None


def _inputs(
    project: Project, loaded: LoadedSync, adapter: Adapter, ident: Callable[[TableRef], DatasetId]
) -> tuple[list[DatasetId], list[str]]:
    """The relations the sync reads, and the input columns it sends (empty when unknown)."""
    from sixtyfour_sync.engine.plan.checks import ref_table
    from sixtyfour_sync.engine.plan.columns import resolve_inputs
    from sixtyfour_sync.engine.rows.select import source_relation_sql

    spec, src = loaded.spec, loaded.spec.source
    try:
        if src.sql:
            return [ident(t) for t in tables_in(src.sql, adapter.dialect.sqlglot)], []
        table = ref_table(project, loaded) if src.ref else TableRef(src.table or "", src.schema_, src.database)
    except Exception as exc:  # a query the parser cannot read, a manifest without the model: the sync says so
        log.debug("OpenLineage: the inputs of %s are unknown: %s", spec.name, _safe(exc))
        return [], []
    if table is None:
        return [], []
    inputs = [ident(table)]
    if src.columns:
        return inputs, list(src.columns)
    try:
        return inputs, resolve_inputs(adapter, loaded, source_relation_sql(adapter, spec, table))
    except Exception as exc:  # the sync itself says what is wrong with its source
        log.debug("OpenLineage: the input columns of %s are unknown: %s", spec.name, _safe(exc))
        return inputs, []


def describe_sync(
    project: Project, loaded: LoadedSync, *, run_id: str, command: str, started_at: float, namespace: str
) -> SyncFacts:
    """What a sync's events say about it: its job, its datasets, its columns."""
    from sixtyfour_sync.engine.plan.columns import owned_columns, target_ref

    spec = loaded.spec
    adapter = project.adapter_for(loaded)
    config: Any = adapter.config

    def norm(name: str, kind: NameKind) -> str:
        return adapter.normalize_identifier(name, kind)

    catalog = None
    if getattr(config, "type", None) == "databricks" and not config.catalog:
        catalog = _current_catalog(adapter)

    def ident(table: TableRef) -> DatasetId:
        return dataset_id(config, table, normalize=norm, default_schema=adapter.default_schema, catalog=catalog)

    inputs, columns = _inputs(project, loaded, adapter, ident)
    about = {spec.column_for(f): s.description for f, s in spec.struct.items()}
    if spec.field_confidence:
        about.update({spec.column_for(f"{f}_confidence"): f"the confidence (0-100) of {f}" for f in spec.struct})
    project_name = project.dbt.name if project.dbt and project.dbt.name else project.project_dir.name
    key = list(spec.source.key)
    return SyncFacts(
        job_namespace=namespace,
        job_name=f"{project_name}.{spec.name}",
        sync=spec.name,
        run_id=run_id,
        run_uuid=run_uuid(run_id, spec.name, started_at),
        command=command,
        started_at=started_at,
        endpoint=spec.endpoint,
        tier=spec.tier,
        target=ident(target_ref(spec)),
        inputs=inputs,
        description=spec.description,
        source_key=[norm(k, "column") for k in key],
        target_key=[norm(k, "column") for k in key],
        input_columns=[norm(c, "column") for c in columns],
        enriched_columns=[norm(c, "column") for c in about],
        hash_columns=[norm(spec.bookkeeping("input_hash"), "column")],
        schema=[(norm(k, "column"), None, "the source row's key") for k in key]
        + [(norm(c.name, "column"), adapter.sql_type(c.type), about.get(c.name)) for c in owned_columns(spec)],
    )
