"""``status`` and ``cancel``: what the ledgers say of runs and jobs, and stopping jobs."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sixtyfour_sync.commands._shared import (
    S,
    _client,
    _no_guard,
    _project,
    run_account,
)
from sixtyfour_sync.engine.jobs.cancel import cancel_job, cancel_row
from sixtyfour_sync.engine.jobs.states import ACTIVE, HELD
from sixtyfour_sync.engine.ledger.lease import Lease, LeaseHeldError, lease_name
from sixtyfour_sync.engine.ledger.store import Ledger, new_run_id
from sixtyfour_sync.engine.plan.columns import target_ref
from sixtyfour_sync.engine.project import Project
from sixtyfour_sync.errors import ConfigError


def _ledgers(project: Project, select: Sequence[str] | None) -> Iterator[Ledger]:
    """The existing ledger of each warehouse the selected syncs use, once each; each knows the target of every
    selected sync it holds jobs for (:attr:`Ledger.targets`)."""
    found: dict[int, Ledger] = {}
    for loaded in project.select(select):
        adapter = project.adapter_for(loaded)
        ledger = found.get(id(adapter))
        if ledger is None:
            ledger = found[id(adapter)] = Ledger(adapter)
        ledger.targets[loaded.spec.name] = adapter.table_sql(target_ref(loaded.spec))
    for ledger in found.values():
        if ledger.exists():
            yield ledger


@contextlib.contextmanager
def open_ledgers(
    project_dir: Path | str = ".",
    *,
    select: Sequence[str] | None = None,
    profiles_dir: Path | str | None = None,
    profile: str | None = None,
    target: str | None = None,
    env: Mapping[str, str] | None = None,
    dbt_project_dir: Path | str | None = None,
    vars: Mapping[str, Any] | None = None,
) -> Iterator[list[Ledger]]:
    """The existing ledgers of the selected syncs' warehouses, connected for the block, then closed."""
    project = _project(project_dir, profiles_dir, profile, target, env, dbt_project_dir, vars)
    with project:
        yield list(_ledgers(project, select))


@dataclass
class StatusReport:
    """Runs and jobs from the ledger."""

    runs: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    #: Paid answers the target refused, held (not asked again) until they merge: sync, job, task, key, reason.
    quarantined: list[dict[str, Any]] = field(default_factory=list)


def status(
    project_dir: Path | str = ".",
    *,
    run_id: str | None = None,
    select: Sequence[str] | None = None,
    profiles_dir: Path | str | None = None,
    profile: str | None = None,
    target: str | None = None,
    env: Mapping[str, str] | None = None,
    limit: int = 10,
    dbt_project_dir: Path | str | None = None,
    vars: Mapping[str, Any] | None = None,
) -> StatusReport:
    """The latest runs (or one run) and their jobs, with costs, from the ledger."""
    project = _project(project_dir, profiles_dir, profile, target, env, dbt_project_dir, vars)
    runs: list[dict[str, Any]] = []
    jobs: list[dict[str, Any]] = []
    quarantined: list[dict[str, Any]] = []
    with project:
        for ledger in _ledgers(project, select):
            names = set(select) if select else None
            quarantined.extend(
                {k: q.get(k) for k in ("sync_name", "job_id", "task_id", "key_text", "reason", "quarantined_at")}
                for q in ledger.quarantined()
                if names is None or q["sync_name"] in names
            )
            these = ledger.list_runs(limit=10_000)
            these = [r for r in these if r["run_id"] == run_id] if run_id else these[:limit]
            for r in these:  # the numbers every view shows, from the ledger's facts (engine/ledger/accounting.py)
                acc = run_account(ledger, str(r["run_id"]))
                r.update(acc.counts())
                r["charged_later_cents"] = acc.total("charged_later_cents")
                r["resumed_charged_cents"] = acc.resumed_charged_cents
                r["replays"] = acc.total("replays")
            runs.extend(these)
            ids = {r["run_id"] for r in these}
            jobs.extend(
                j
                for j in ledger.job_rows()
                if j["run_id"] in ids or (not run_id and j["state"] in {x.value for x in ACTIVE | HELD})
            )
    if run_id and not runs:
        raise ConfigError(f"run {run_id!r} is not in the ledger", hint="`sixtyfour-sync status` lists the recent runs")
    return StatusReport(runs, jobs, quarantined)


def cancel(
    project_dir: Path | str = ".",
    *,
    run_id: str | None = None,
    select: Sequence[str] | None = None,
    profiles_dir: Path | str | None = None,
    profile: str | None = None,
    target: str | None = None,
    api_key: str | None = None,
    api_url: str | None = None,
    env: Mapping[str, str] | None = None,
    dbt_project_dir: Path | str | None = None,
    vars: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Cancel the unfinished jobs of a run (default: every unfinished job), holding each sync's lease.

    A running job is moved to ``cancelling`` before the API is asked, then to ``cancelled``; a job the API
    already finished stays for the next run to merge. A file never sent is cancelled without a call. A job
    whose submission may be under way is left alone (it may have reached the API). Jobs of a sync that another
    run is working on are not touched: stop that run first.
    """
    env_map = os.environ if env is None else env
    project = _project(project_dir, profiles_dir, profile, target, env, dbt_project_dir, vars)
    out: list[dict[str, Any]] = []
    with project, _client(api_key, api_url, env_map) as api:
        for loaded in project.select(select):
            adapter = project.adapter_for(loaded)
            ledger = Ledger(adapter)
            if not ledger.exists():
                continue
            sync_name, target_id = loaded.spec.name, adapter.table_sql(target_ref(loaded.spec))
            states = [S.WRITTEN, S.SUBMITTING, S.SUBMITTED]
            # only the jobs whose answers go to this target: another target's (sharing the ledger) are its own
            jobs = ledger.jobs_for(sync_name=sync_name, run_id=run_id, states=states, target=target_id)
            if not jobs:
                continue
            holder = f"cancel-{new_run_id()}"
            lease = Lease(ledger, lease_name(sync_name, target_id), holder, renew_every=15.0)
            try:
                lease.acquire()
            except LeaseHeldError as exc:
                out.extend(cancel_row(j, error=f"not cancelled: {exc}") for j in jobs)
                continue
            ledger.guard = lease.check
            try:
                for job in jobs:
                    out.append(cancel_job(ledger, api, job, holder))
            finally:
                ledger.guard = _no_guard
                lease.release()
    return out
