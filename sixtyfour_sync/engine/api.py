"""The Python API behind the commands: ``validate``, ``plan``, ``run``, ``status``, ``cancel``.

Orchestrators (Airflow, Dagster, cron) call these directly::

    from sixtyfour_sync import run
    result = run("path/to/project", select=["tag:daily"], max_cost_cents=50_000)
    if result.exit_code != 0: ...
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sixtyfour_sync.api import SixtyfourClient
from sixtyfour_sync.api.poll import poll_interval_from_env
from sixtyfour_sync.config.models import LoadedSync
from sixtyfour_sync.engine.checks import check_sync
from sixtyfour_sync.engine.ledger import ACTIVE_STATES, LeaseHeldError, Ledger, new_run_id
from sixtyfour_sync.engine.project import Project
from sixtyfour_sync.engine.runner import Budget, EngineSettings, Reporter, SyncRunner, plan_sync, target_ref
from sixtyfour_sync.engine.summary import RunResult, SyncPlan, SyncResult
from sixtyfour_sync.errors import ConfigError, ConfigProblem, SixtyfourSyncError
from sixtyfour_sync.warehouse.base import Adapter, TableRef

__all__ = ["ValidationReport", "cancel", "dbt_sources", "plan", "run", "status", "validate"]

API_KEY_ENV = "SIXTYFOUR_API_KEY"


def _project(
    project_dir: Path | str,
    profiles_dir: Path | str | None,
    profile: str | None,
    target: str | None,
    env: Mapping[str, str] | None,
    dbt_project_dir: Path | str | None = None,
    vars: Mapping[str, Any] | None = None,
    target_path: Path | str | None = None,
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
    )


def _ref_table(project: Project, loaded: LoadedSync) -> TableRef | None:
    from sixtyfour_sync.engine.checks import ref_table

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


def _client(api_key: str | None, api_url: str | None, env: Mapping[str, str]) -> SixtyfourClient:
    key = api_key or env.get(API_KEY_ENV)
    if not key:
        raise ConfigError(
            f"no API key: set {API_KEY_ENV}",
            hint=f"export {API_KEY_ENV}=... (for the local emulator any non-empty key works)",
        )
    return SixtyfourClient(key, base_url=api_url)


@dataclass
class ValidationReport:
    """Every problem found by ``validate``; empty means all is well."""

    problems: list[ConfigProblem] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


def validate(
    project_dir: Path | str = ".",
    *,
    select: Sequence[str] | None = None,
    profiles_dir: Path | str | None = None,
    profile: str | None = None,
    target: str | None = None,
    env: Mapping[str, str] | None = None,
    dbt_project_dir: Path | str | None = None,
    exclude: Sequence[str] | None = None,
    vars: Mapping[str, Any] | None = None,
    target_path: Path | str | None = None,
) -> ValidationReport:
    """Load every profile and model, connect, and check sources and targets; list every problem."""
    report = ValidationReport()
    try:
        project = _project(project_dir, profiles_dir, profile, target, env, dbt_project_dir, vars, target_path)
    except ConfigError as exc:
        report.problems.extend(exc.problems or [ConfigProblem(None, None, str(exc))])
        return report
    with project:
        syncs = project.select(select, exclude)
        report.problems.extend(project.check_targets(syncs))
        if report.problems:
            return report
        for loaded in syncs:
            where = str(loaded.file)
            try:
                adapter = project.adapter_for(loaded)
                plan_sync(adapter, loaded, ref_table=check_sync(project, loaded, adapter))
                _check_target(adapter, loaded)
                report.checked.append(loaded.spec.name)
            except ConfigError as exc:
                report.problems.extend(
                    exc.problems or [ConfigProblem(where, loaded.spec.name, str(exc), line=loaded.line)]
                )
            except SixtyfourSyncError as exc:
                report.problems.append(
                    ConfigProblem(where, loaded.spec.name, str(exc), line=loaded.line, hint=exc.hint)
                )
    return report


def _check_target(adapter: Adapter, loaded: LoadedSync) -> None:
    from sixtyfour_sync.engine.runner import owned_columns
    from sixtyfour_sync.errors import DataError

    target = target_ref(loaded.spec)
    if not adapter.table_exists(target):
        return
    existing = adapter.get_columns(target)
    problems = []
    for col in owned_columns(loaded.spec):
        stored = adapter.find_column(existing, col.name)
        if stored is not None and not adapter.is_compatible(existing[stored], col.type):
            problems.append(f"column {stored!r} has type {existing[stored]}, the sync writes {col.type.value}")
    for k in loaded.spec.source.key:
        if adapter.find_column(existing, k) is None:
            problems.append(f"key column {k!r} is missing")
    if problems:
        raise DataError(
            f"target table {target} is not compatible: " + "; ".join(problems),
            hint="rename the struct field, set target.prefix, or point target.table at another table",
        )


def plan(
    project_dir: Path | str = ".",
    *,
    select: Sequence[str] | None = None,
    full_refresh: bool = False,
    max_cost_cents: int | None = None,
    profiles_dir: Path | str | None = None,
    profile: str | None = None,
    target: str | None = None,
    env: Mapping[str, str] | None = None,
    dbt_project_dir: Path | str | None = None,
    exclude: Sequence[str] | None = None,
    only_rebuilt: bool = False,
    vars: Mapping[str, Any] | None = None,
    target_path: Path | str | None = None,
) -> list[SyncPlan]:
    """What ``run`` would send and spend, per sync. Creates nothing and calls no API.

    Every sync is checked first (:func:`~sixtyfour_sync.engine.checks.check_sync`): one ConfigError lists the
    problems of all of them.
    """
    project = _project(project_dir, profiles_dir, profile, target, env, dbt_project_dir, vars, target_path)
    with project:
        syncs = project.select(select, exclude)
        if only_rebuilt:
            syncs, _ = _only_rebuilt(project, syncs)
        problems: list[ConfigProblem] = []
        refs: dict[str, TableRef | None] = {}
        for s in syncs:
            try:
                refs[s.spec.name] = check_sync(project, s, project.adapter_for(s))
            except ConfigError as exc:
                problems.extend(exc.problems or [ConfigProblem(str(s.file), s.spec.name, str(exc), line=s.line)])
        if problems:
            raise ConfigError(f"{len(problems)} problem(s) found:", problems=problems)
        return [
            plan_sync(
                project.adapter_for(s),
                s,
                ref_table=refs[s.spec.name],
                full_refresh=full_refresh,
                budget_cents=max_cost_cents,
            )
            for s in syncs
        ]


def run(
    project_dir: Path | str = ".",
    *,
    select: Sequence[str] | None = None,
    full_refresh: bool = False,
    max_cost_cents: int | None = None,
    profiles_dir: Path | str | None = None,
    profile: str | None = None,
    target: str | None = None,
    api_key: str | None = None,
    api_url: str | None = None,
    max_wait_seconds: float | None = None,
    state_dir: Path | str | None = None,
    reporter: Reporter | None = None,
    env: Mapping[str, str] | None = None,
    client: SixtyfourClient | None = None,
    dbt_project_dir: Path | str | None = None,
    only_rebuilt: bool = False,
    exclude: Sequence[str] | None = None,
    fail_fast: bool = False,
    vars: Mapping[str, Any] | None = None,
    target_path: Path | str | None = None,
) -> RunResult:
    """Finish unfinished jobs, then select, submit, poll, download, parse and upsert; return the outcome.

    ``only_rebuilt`` keeps only the syncs whose ``source.ref`` model succeeded in the last dbt invocation
    (``target/run_results.json``): the recipe ``dbt build && sixtyfour-sync run --only-rebuilt``.
    A sync that fails does not stop the others unless ``fail_fast``; the result's exit code is the worst.
    """
    env_map = os.environ if env is None else env
    started = time.monotonic()
    project = _project(project_dir, profiles_dir, profile, target, env, dbt_project_dir, vars, target_path)
    syncs = project.select(select, exclude)
    skipped: list[SyncResult] = []
    if only_rebuilt:
        syncs, skipped = _only_rebuilt(project, syncs)
    own_client = client is None
    api = client or _client(api_key, api_url, env_map)
    settings = EngineSettings(
        state_dir=Path(state_dir) if state_dir else project.project_dir / ".sixtyfour",
        poll_interval=poll_interval_from_env(),
        max_wait_seconds=max_wait_seconds,
    )
    budget = Budget(None if max_cost_cents is None else float(max_cost_cents))
    result = RunResult(new_run_id())
    result.syncs.extend(skipped)
    ledgers: dict[int, Ledger] = {}
    try:
        with project:
            for loaded in syncs:
                adapter = project.adapter_for(loaded)
                ledger = ledgers.get(id(adapter))
                if ledger is None:
                    ledger = ledgers[id(adapter)] = Ledger(adapter)
                    ledger.ensure()
                    ledger.start_run(result.run_id, "run", [s.spec.name for s in syncs])
                result.syncs.append(
                    _run_one(
                        project, loaded, adapter, ledger, api, result.run_id, settings, budget, reporter, full_refresh
                    )
                )
                last = result.syncs[-1].status
                if last == "no_credits" or (fail_fast and last in ("failed", "budget")):
                    # Out of credits: the other syncs would be refused too. --fail-fast: stop at the first failure.
                    why = "out of credits" if last == "no_credits" else f"--fail-fast after {loaded.spec.name} failed"
                    done = {r.name for r in result.syncs}
                    for rest in [s for s in syncs if s.spec.name not in done]:
                        result.syncs.append(SyncResult(rest.spec.name, status="skipped", errors=[f"skipped: {why}"]))
                    break
            result.duration_seconds = time.monotonic() - started
            for ledger in ledgers.values():
                ledger.finish_run(result.run_id, result.status, _run_counts(result), result.error)
    finally:
        if own_client:
            api.close()
    return result


def _run_one(
    project: Project,
    loaded: LoadedSync,
    adapter: Adapter,
    ledger: Ledger,
    api: SixtyfourClient,
    run_id: str,
    settings: EngineSettings,
    budget: Budget,
    reporter: Reporter | None,
    full_refresh: bool,
) -> SyncResult:
    name = loaded.spec.name
    try:
        ledger.acquire(name, run_id)
    except LeaseHeldError as exc:
        return SyncResult(name, status="failed", errors=[str(exc)])
    try:
        try:
            ref = check_sync(project, loaded, adapter)
        except ConfigError as exc:
            return SyncResult(name, status="failed", errors=[str(p) for p in exc.problems] or [str(exc)])
        runner = SyncRunner(
            loaded=loaded,
            adapter=adapter,
            extract_adapter=None,
            ledger=ledger,
            client=api,
            run_id=run_id,
            settings=settings,
            budget=budget,
            reporter=reporter,
            ref_table=ref,
            full_refresh=full_refresh,
        )
        try:
            return runner.run()
        except SixtyfourSyncError as exc:
            runner.result.status = "failed"
            if str(exc) not in runner.result.errors:
                runner.result.errors.append(str(exc))
            return runner.result
    finally:
        ledger.release([name], run_id)


def _run_counts(result: RunResult) -> dict[str, Any]:
    s = result.syncs
    return {
        "rows_selected": sum(x.rows_selected for x in s),
        "rows_sent": sum(x.rows_sent for x in s),
        "rows_enriched": sum(x.rows_enriched for x in s),
        "rows_failed": sum(x.rows_failed for x in s),
        "rows_not_returned": sum(x.rows_not_returned for x in s),
        "rows_unexpected": sum(x.rows_unexpected for x in s),
        "jobs": sum(len(x.jobs) for x in s),
        "estimated_cost_cents": result.estimated_cost_cents,
        "charged_cents": result.charged_cents,
    }


def _ledgers(project: Project, select: Sequence[str] | None) -> Iterator[Ledger]:
    """The existing ledger of each warehouse the selected syncs use, once each."""
    seen: set[int] = set()
    for loaded in project.select(select):
        adapter = project.adapter_for(loaded)
        if id(adapter) not in seen:
            seen.add(id(adapter))
            ledger = Ledger(adapter)
            if ledger.exists():
                yield ledger


@dataclass
class StatusReport:
    """Runs and jobs from the ledger."""

    runs: list[dict[str, Any]]
    jobs: list[dict[str, Any]]


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
    with project:
        for ledger in _ledgers(project, select):
            these = ledger.list_runs(limit=10_000)
            these = [r for r in these if r["run_id"] == run_id] if run_id else these[:limit]
            runs.extend(these)
            ids = {r["run_id"] for r in these}
            jobs.extend(
                j for j in ledger.job_rows() if j["run_id"] in ids or (not run_id and j["state"] in ACTIVE_STATES)
            )
    if run_id and not runs:
        raise ConfigError(f"run {run_id!r} is not in the ledger", hint="`sixtyfour-sync status` lists the recent runs")
    return StatusReport(runs, jobs)


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
    """Cancel the unfinished (submitted) jobs of a run (default: every unfinished job)."""
    env_map = os.environ if env is None else env
    project = _project(project_dir, profiles_dir, profile, target, env, dbt_project_dir, vars)
    out: list[dict[str, Any]] = []
    with project, _client(api_key, api_url, env_map) as api:
        for ledger in _ledgers(project, select):
            for job in ledger.jobs_for(run_id=run_id, states=("submitted",)):
                if not job.task_id:
                    continue
                try:
                    answer = api.cancel(job.task_id)
                    ledger.set_job(job.job_id, "cancelled", api_status=answer.status)
                    out.append(
                        {"job_id": job.job_id, "task_id": job.task_id, "sync": job.sync_name, "status": "cancelled"}
                    )
                except SixtyfourSyncError as exc:
                    out.append({"job_id": job.job_id, "task_id": job.task_id, "sync": job.sync_name, "error": str(exc)})
    return out


def dbt_sources(
    project_dir: Path | str = ".",
    *,
    select: Sequence[str] | None = None,
    profiles_dir: Path | str | None = None,
    profile: str | None = None,
    target: str | None = None,
    env: Mapping[str, str] | None = None,
    dbt_project_dir: Path | str | None = None,
    source_name: str = "sixtyfour",
    exclude: Sequence[str] | None = None,
    schema: str | None = None,
    vars: Mapping[str, Any] | None = None,
) -> str:
    """A dbt sources YAML for the target tables; no connection is made.

    Targets that follow the profile's schema get ``schema`` (default ``{{ target.schema }}``, dbt's current
    target), so the file works for every dbt target.
    """
    from sixtyfour_sync.dbt import TARGET_SCHEMA, sources_yaml

    project = _project(project_dir, profiles_dir, profile, target, env, dbt_project_dir, vars)
    syncs = project.select(select, exclude)
    return sources_yaml(syncs, source_name=source_name, schema=schema or TARGET_SCHEMA)
