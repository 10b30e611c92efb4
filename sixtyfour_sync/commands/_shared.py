"""What every command does first: load the project, select its syncs, make the API client."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sixtyfour_sync.config.models import LoadedSync
from sixtyfour_sync.engine.jobs.states import JobState
from sixtyfour_sync.engine.ledger.accounting import RunAccount
from sixtyfour_sync.engine.ledger.store import Ledger, read_account
from sixtyfour_sync.engine.project import Project
from sixtyfour_sync.engine.selectors import explain_empty
from sixtyfour_sync.engine.summary import SyncResult
from sixtyfour_sync.errors import ConfigError
from sixtyfour_sync.warehouse.types import TableRef

if TYPE_CHECKING:
    from sixtyfour_sync.api import SixtyfourClient

API_KEY_ENV = "SIXTYFOUR_API_KEY"
API_URL_ENV = "SIXTYFOUR_API_URL"
log = logging.getLogger("sixtyfour_sync.engine")
#: Where "nothing to do" is said when a selection picks no sync (a logger of its own, so a caller can quiet it).
selection_log = logging.getLogger("sixtyfour_sync.selection")
S = JobState


def _no_guard() -> None:
    return None


def _project(
    project_dir: Path | str,
    profiles_dir: Path | str | None,
    profile: str | None,
    target: str | None,
    env: Mapping[str, str] | None,
    dbt_project_dir: Path | str | None = None,
    vars: Mapping[str, Any] | None = None,
    target_path: Path | str | None = None,
    *,
    lenient: bool = False,
) -> Project:
    return Project.load(
        Path(project_dir),
        profiles_dir=Path(profiles_dir) if profiles_dir else None,
        profile=profile,
        target=target,
        env=env,
        dbt_project_dir=Path(dbt_project_dir) if dbt_project_dir else None,
        vars=vars,
        target_path=target_path,
        lenient=lenient,
    )


def _ref_table(project: Project, loaded: LoadedSync) -> TableRef | None:
    from sixtyfour_sync.engine.plan.checks import ref_table

    return ref_table(project, loaded)


def _only_rebuilt(project: Project, syncs: list[LoadedSync]) -> tuple[list[LoadedSync], list[SyncResult]]:
    """The syncs whose source.ref model succeeded in the last dbt invocation, and the others as skipped."""
    from sixtyfour_sync.dbt import rebuilt_models

    rebuilt = rebuilt_models(project.dbt_dir or project.project_dir, target_dir=project.target_dir)
    kept = [s for s in syncs if s.spec.source.ref and s.spec.source.ref in rebuilt]
    skipped = [
        SyncResult(
            s.spec.name, status="skipped", warnings=["skipped: its dbt model was not rebuilt in the last dbt run"]
        )
        for s in syncs
        if s not in kept
    ]
    return kept, skipped


def _empty_selection(project: Project, select: Sequence[str] | None, exclude: Sequence[str] | None) -> str:
    why = explain_empty(project.syncs, select, exclude, root=project.project_dir)
    return f"nothing to do: {why or 'no sync selected'}"


_EMPTY_HINT = "a comma intersects (tag:a,tag:b is what has both); separate words are a union (tag:a tag:b)"


def _select(
    project: Project, select: Sequence[str] | None, exclude: Sequence[str] | None, *, fail_on_empty: bool = False
) -> list[LoadedSync]:
    """The selected syncs; when there are none, a warning that says why (an error under ``fail_on_empty``)."""
    syncs = project.select(select, exclude)
    if not syncs:
        message = _empty_selection(project, select, exclude)
        if fail_on_empty:
            raise ConfigError(message, hint=_EMPTY_HINT + "; without --fail-on-empty this exits 0")
        selection_log.warning(message, extra={"event": "selection.empty"})
    return syncs


def _client(api_key: str | None, api_url: str | None, env: Mapping[str, str]) -> SixtyfourClient:
    key = api_key or env.get(API_KEY_ENV)
    if not key:
        raise ConfigError(
            f"no API key: set {API_KEY_ENV}",
            hint=f"export {API_KEY_ENV}=... (for the local emulator any non-empty key works)",
        )
    from sixtyfour_sync.api.client import SixtyfourClient  # httpx: only commands that call the API load it

    return SixtyfourClient(key, base_url=api_url or env.get(API_URL_ENV) or None)


def run_account(ledger: Ledger, run_id: str, syncs: Mapping[str, LoadedSync] | None = None) -> RunAccount:
    """A run's numbers from one ledger's facts: the one function every view of a run reads."""
    return read_account(ledger, run_id, {name: loaded.spec.tier for name, loaded in (syncs or {}).items()})
