"""The Python API behind the commands: ``validate``, ``plan``, ``run``, ``status``, ``cancel``.

Orchestrators (Airflow, Dagster, cron) call these directly::

    from sixtyfour_sync import run
    result = run("path/to/project", select=["tag:daily"], max_cost_cents=50_000)
    if result.exit_code != 0: ...
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sixtyfour_sync.api import SixtyfourClient
from sixtyfour_sync.api.poll import poll_interval_from_env
from sixtyfour_sync.config.models import LoadedSync, SyncSpec
from sixtyfour_sync.engine.context import EngineSettings, Reporter, RunRecorder
from sixtyfour_sync.engine.invalid_files import sound_syncs
from sixtyfour_sync.engine.jobs.budget import Budget
from sixtyfour_sync.engine.jobs.cancel import cancel_job, cancel_row
from sixtyfour_sync.engine.jobs.scheduler import StopToken
from sixtyfour_sync.engine.jobs.states import ACTIVE, HELD, JobState
from sixtyfour_sync.engine.ledger.accounting import RunAccount
from sixtyfour_sync.engine.ledger.lease import Lease, LeaseHeldError, lease_name, pid_alive
from sixtyfour_sync.engine.ledger.store import Ledger, new_run_id, read_account
from sixtyfour_sync.engine.plan.approval import ApprovedPlan, approved_from, capped, hold_to, plan_document, read_plan
from sixtyfour_sync.engine.plan.checks import check_sync
from sixtyfour_sync.engine.plan.columns import owned_columns, resolve_inputs, resolve_key_types, target_ref
from sixtyfour_sync.engine.plan.planner import plan_sync
from sixtyfour_sync.engine.project import Project
from sixtyfour_sync.engine.results import targets
from sixtyfour_sync.engine.rows.extract import denormalize
from sixtyfour_sync.engine.rows.select import source_relation_sql
from sixtyfour_sync.engine.runner import SyncRunner
from sixtyfour_sync.engine.selectors import explain_empty
from sixtyfour_sync.engine.steps.escalation import escalate
from sixtyfour_sync.engine.steps.new_fields import ask_new_fields
from sixtyfour_sync.engine.summary import RunResult, SyncPlan, SyncResult
from sixtyfour_sync.errors import ApiKeyRefusedError, ConfigError, ConfigProblem, SixtyfourSyncError
from sixtyfour_sync.lineage import lineage_listener
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.keytypes import transport_sql
from sixtyfour_sync.warehouse.types import TableRef

__all__ = ["ValidationReport", "cancel", "dbt_sources", "list_syncs", "plan", "run", "status", "validate"]

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
    return SixtyfourClient(key, base_url=api_url or env.get(API_URL_ENV) or None)


@dataclass
class ValidationReport:
    """Every problem found by ``validate``; empty means all is well."""

    problems: list[ConfigProblem] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    #: What the definitions allow but the API may refuse (an unknown struct type), located; never a failure.
    warnings: list[ConfigProblem] = field(default_factory=list)

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
    fail_on_empty: bool = False,
) -> ValidationReport:
    """Load every profile and model, connect, and check sources and targets; list every problem.

    Every phase runs for every sync it can: a mistake in one sync's definition or profile target does not hide
    the warehouse checks of the others (a sync with a mistake of its own is not connected for). A problem that
    several syncs share (one profile target for all) is listed once. A selection that picks no sync is a
    warning (a problem under ``fail_on_empty``) saying why.
    """
    report = ValidationReport()
    try:
        project = _project(
            project_dir, profiles_dir, profile, target, env, dbt_project_dir, vars, target_path, lenient=True
        )
    except ConfigError as exc:
        report.problems.extend(exc.problems or [ConfigProblem(None, None, str(exc), hint=exc.hint)])
        return _once(report)
    report.problems.extend(project.problems)
    with project:
        try:
            syncs = project.select(select, exclude)
        except ConfigError as exc:
            report.problems.extend(exc.problems or [ConfigProblem(None, None, str(exc), hint=exc.hint)])
            return _once(report)
        if not syncs and not project.problems:
            empty = ConfigProblem(None, None, _empty_selection(project, select, exclude), hint=_EMPTY_HINT)
            (report.problems if fail_on_empty else report.warnings).append(empty)
        for loaded in syncs:
            report.warnings.extend(loaded.warnings())
        connectable = []
        for loaded in syncs:
            found = project.check_targets([loaded])
            report.problems.extend(found)
            if not found:
                connectable.append(loaded)
        for loaded in connectable:
            where = str(loaded.file)
            try:
                adapter = project.adapter_for(loaded)
                ref = check_sync(project, loaded, adapter)
                plan_sync(adapter, loaded, ref_table=ref)
                _check_target(adapter, loaded, ref)
                report.checked.append(loaded.spec.name)
            except ConfigError as exc:
                report.problems.extend(
                    exc.problems or [ConfigProblem(where, loaded.spec.name, str(exc), line=loaded.line)]
                )
            except SixtyfourSyncError as exc:
                report.problems.append(
                    ConfigProblem(where, loaded.spec.name, str(exc), line=loaded.line, hint=exc.hint)
                )
    return _once(report)


def _once(report: ValidationReport) -> ValidationReport:
    """Each problem and warning listed once, in the order found (syncs sharing a profile target share its
    problem)."""
    report.problems = list(dict.fromkeys(report.problems))
    report.warnings = list(dict.fromkeys(report.warnings))
    return report


def _check_target(adapter: Adapter, loaded: LoadedSync, ref_table: TableRef | None) -> None:
    """What ``run`` checks before paying (engine/results/targets.py), read-only: types, keys, ownership, and a row like
    the sync's tried and rolled back (when the target already has every column the sync writes)."""
    spec = loaded.spec
    tgt = target_ref(spec)
    tid = adapter.table_sql(tgt)
    ledger = Ledger(adapter)
    source = TableRef(spec.source.table, spec.source.schema_, spec.source.database) if spec.source.table else None
    inputs: list[str] = []
    if source is not None and adapter.table_sql(source) == tid:
        inputs = resolve_inputs(adapter, loaded, source_relation_sql(adapter, spec, ref_table))
    problems = targets.check(adapter, ledger if ledger.exists() else None, loaded, tgt, tid, inputs_of_target=inputs)
    if not problems and adapter.table_exists(tgt):
        existing = adapter.get_columns(tgt)
        if all(adapter.find_column(existing, c.name) for c in owned_columns(spec)):
            sample = _first_key(adapter, loaded, source_relation_sql(adapter, spec, ref_table))
            refusal = None if sample is None else targets.dry_run(adapter, spec, tgt, sample)
            if refusal is not None:
                problems.append(f"a row like this sync's was refused: {refusal}")
    if problems:
        raise targets.refuse(loaded, tgt, problems)


def _first_key(adapter: Adapter, loaded: LoadedSync, source_sql: str) -> dict[str, Any] | None:
    """The key of one source row with a whole key, as a selection hands it over (for a trial row), or None."""
    spec = loaded.spec
    kinds = resolve_key_types(adapter, loaded, source_sql)
    text = adapter.dialect.text_type
    cols = ", ".join(
        f"{transport_sql(adapter.quote(k, what='key column'), kinds[k], adapter.dialect.types, text)} AS "
        f"{adapter.quote(k, what='key column')}"
        for k in spec.source.key
    )
    whole = " AND ".join(f"{adapter.quote(k, what='key column')} IS NOT NULL" for k in spec.source.key)
    sql = adapter.limit_sql(f"SELECT {cols} FROM ({source_sql}) {adapter.subquery_alias('k')} WHERE {whole}", 1)
    for batch in adapter.stream(sql):
        if batch.num_rows:
            first = denormalize(adapter, batch).slice(0, 1)
            lower = {n.lower(): first.column(i) for i, n in enumerate(first.schema.names)}
            return {k: lower[k.lower()] for k in spec.source.key}
    return None


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
    preview: int | None = None,
    fail_on_empty: bool = False,
) -> list[SyncPlan]:
    """What ``run`` would send and spend, per sync. Writes to no warehouse and calls no API.

    ``preview`` N writes, per sync, the first N rows a run would send as the JSONL file and the ``config``
    JSON it would submit, under ``<target dir>/sixtyfour_preview/<sync>/``.

    Every sync is checked first (:func:`~sixtyfour_sync.engine.plan.checks.check_sync`): one ConfigError lists the
    problems of all of them. A selection that picks no sync logs a warning saying why (``fail_on_empty``: raises
    a ConfigError instead).
    """
    project = _project(project_dir, profiles_dir, profile, target, env, dbt_project_dir, vars, target_path)
    with project:
        syncs = _select(project, select, exclude, fail_on_empty=fail_on_empty)
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
                prices=project.prices,
                preview_rows=preview,
                preview_dir=(project.target_dir or project.project_dir / "target") / "sixtyfour_preview" / s.spec.name,
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
    stop: StopToken | None = None,
    retry_lost: bool = False,
    retry_unreadable: bool = False,
    submit_retry_seconds: float | None = None,
    no_wait: bool = False,
    only_tasks: Sequence[str] | None = None,
    command: str = "run",
    plan: ApprovedPlan | Sequence[SyncPlan] | Path | str | None = None,
    fail_on_empty: bool = False,
    fail_on_budget: bool = False,
    skip_invalid_files: bool = False,
) -> RunResult:
    """Finish unfinished jobs, then select, submit, poll, download, parse and upsert; return the outcome.

    ``no_wait`` submits what is selected, records the jobs and returns without polling them (a webhook
    receiver or the next run finishes them). ``only_tasks`` finishes just those tasks of the selected syncs
    and selects nothing new (what ``webhooks serve`` does when a delivery arrives); a sync whose lease
    another run holds is then ``locked``, not failed.

    ``only_rebuilt`` keeps only the syncs whose ``source.ref`` model succeeded in the last dbt invocation
    (``target/run_results.json``): the recipe ``dbt build && sixtyfour-sync run --only-rebuilt``. ``stop`` lets
    a caller ask the run to stop (the CLI sets it on Ctrl-C/SIGTERM): nothing more is submitted, calls under
    way are recorded, and the run ends ``interrupted``. A sync that fails does not stop the others unless
    ``fail_fast``; the result's exit code is the worst. A selection that picks no sync logs a warning saying
    why and the run does nothing (``fail_on_empty``: raises a ConfigError first).

    ``plan`` executes an approved plan (a file ``plan -o`` wrote, or the plans a caller showed for approval):
    only its syncs run, each planned again first and refused when its definition changed or its data or price
    grew past what was approved (:func:`~sixtyfour_sync.engine.plan.approval.hold_to`); the others are capped at the
    approved rows and at the approved estimate plus one row's price.

    ``skip_invalid_files`` leaves out the syncs of every file that fails to load instead of refusing the run
    (:mod:`sixtyfour_sync.engine.invalid_files`; each Dagster asset runs so).
    """
    env_map = os.environ if env is None else env
    started = time.monotonic()
    project = _project(
        project_dir, profiles_dir, profile, target, env, dbt_project_dir, vars, target_path, lenient=skip_invalid_files
    )
    if skip_invalid_files:
        project.syncs = sound_syncs(project.syncs, project.problems)
    syncs = _select(project, select, exclude, fail_on_empty=fail_on_empty)
    skipped: list[SyncResult] = []
    if only_rebuilt:
        syncs, skipped = _only_rebuilt(project, syncs)
    approved = _approved(plan, project)
    if approved is not None:
        skipped += [
            SyncResult(name, status="failed", errors=[f"{name}: in the approved plan, not in the project"])
            for name in sorted(set(approved.syncs) - {s.spec.name for s in project.syncs})
        ]
        syncs = [s for s in syncs if s.spec.name in approved.syncs]
    own_client = client is None
    api = client or _client(api_key, api_url, env_map)
    token = stop or StopToken()
    settings = EngineSettings(
        state_dir=Path(state_dir) if state_dir else project.project_dir / ".sixtyfour",
        poll_interval=poll_interval_from_env(),
        max_wait_seconds=max_wait_seconds,
        retry_lost=retry_lost,
        retry_unreadable=retry_unreadable,
        prices=dict(project.prices),
        no_wait=no_wait,
        only_tasks=None if only_tasks is None else frozenset(only_tasks),
    )
    if submit_retry_seconds is not None:
        settings.submit_retry_seconds = submit_retry_seconds
    budget = Budget(None if max_cost_cents is None else float(max_cost_cents))
    result = RunResult(new_run_id(), fail_on_budget=fail_on_budget)
    result.syncs.extend(skipped)
    lineage = lineage_listener(command)  # OpenLineage events, when configured (docs/lineage.md)
    names = [s.spec.name for s in syncs]
    recorders: dict[int, RunRecorder] = {}
    crashed = False
    try:
        with project:
            try:
                if syncs:
                    _check_key(api)
                for loaded in syncs:
                    if token.requested:
                        result.syncs.append(SyncResult(loaded.spec.name, status="skipped", errors=[token.reason or ""]))
                        continue
                    adapter = project.adapter_for(loaded)
                    recorder = recorders.get(id(adapter))
                    if recorder is None:
                        recorder = recorders[id(adapter)] = RunRecorder(
                            Ledger(adapter), result.run_id, command, names, only_tasks=only_tasks is not None
                        )
                    began = time.time()
                    lineage.sync_started(project, loaded, result.run_id, began)
                    outcome: SyncResult | None = None
                    try:
                        outcome = _run_one(
                            project,
                            loaded,
                            adapter,
                            recorder,
                            api,
                            settings,
                            budget,
                            reporter,
                            full_refresh,
                            token,
                            approved,
                        )
                    finally:  # the steps it ran, for the run's numbers (engine/ledger/accounting.py)
                        recorder.flush(outcome.status if outcome is not None else "failed")
                    one = outcome
                    one.started_at, one.completed_at = began, time.time()
                    # what the definition allows but the API may refuse (an unknown struct type): said first
                    one.warnings[:0] = [w for w in loaded.spec.warnings() if w not in one.warnings]
                    result.syncs.append(one)
                    failed = fail_fast and one.status in (
                        ("failed", "budget_reached") if fail_on_budget else ("failed",)
                    )
                    if one.status == "no_credits" or result.error or failed:
                        # Out of credits, or the key was refused: the other syncs would be refused too.
                        # --fail-fast: stop at the first failure.
                        if one.status == "no_credits":
                            why = "out of credits"
                        elif result.error:
                            why = "the API refused the key"
                        else:
                            why = f"--fail-fast after {loaded.spec.name} failed"
                        done = {r.name for r in result.syncs}
                        result.syncs.extend(
                            SyncResult(r.spec.name, status="skipped", errors=[f"skipped: {why}"])
                            for r in syncs
                            if r.spec.name not in done
                        )
                        break
            except ApiKeyRefusedError as exc:
                # Not a crash: every job is kept as it was; the run reports it and ends (exit 1).
                result.error = str(exc)
                if exc.hint:
                    result.error += f" ({exc.hint})"
            except BaseException as exc:
                result.error = f"{type(exc).__name__}: {exc}"
                crashed = True
                raise
            finally:
                result.duration_seconds = time.monotonic() - started
                if token.requested:
                    result.interrupted_exit = token.exit_code
                by_name = {loaded.spec.name: loaded for loaded in syncs}
                for recorder in recorders.values():
                    _close_run(recorder, result, by_name, crashed=crashed)
                result.recorded = any(r.opened for r in recorders.values())
                lineage.run_ended(result)  # after the run's numbers are taken from the ledger
    finally:
        if own_client:
            api.close()
    return result


def _check_key(api: SixtyfourClient) -> None:
    """Ask the API whether it takes the key before anything is written (GET /check-balance)."""
    from sixtyfour_sync.api import AuthenticationError, PermissionDeniedError
    from sixtyfour_sync.api.errors import ApiError

    try:
        api.check_balance()
    except (AuthenticationError, PermissionDeniedError) as exc:
        raise ConfigError(
            f"the API refused the key: {exc}; nothing was sent or written",
            hint=f"check {API_KEY_ENV} (`sixtyfour-sync debug` tests it)",
        ) from exc
    except ApiError as exc:  # the balance is only a courtesy check: the submission itself will tell
        log.info("checking the balance failed (%s); going on", exc)


def _close_run(
    recorder: RunRecorder, result: RunResult, syncs: Mapping[str, LoadedSync], *, crashed: bool = False
) -> None:
    """Take the numbers of the run's syncs in this ledger from the ledger's facts (engine/ledger/accounting.py), and
    record the run's outcome where the run left a row (always, even after a crash)."""
    if not recorder.opened:
        return
    try:
        acc = run_account(recorder.ledger, result.run_id, syncs)
    except SixtyfourSyncError as exc:
        log.warning("reading the facts of run %s failed: %s", result.run_id, exc)
        acc = None
    if acc is not None:
        for sync in result.syncs:
            if sync.name in acc.syncs and sync.name in syncs:
                spec = syncs[sync.name].spec
                sync.apply(acc.syncs[sync.name], tiers=[spec.tier, *spec.escalate] if spec.escalate else [])
    status = "crashed" if crashed and result.interrupted_exit is None else result.status
    try:
        counts = acc.counts() if acc is not None else {}
        recorder.ledger.close_run(result.run_id, status, counts, result.error)
    except SixtyfourSyncError as exc:
        log.warning("recording the end of run %s failed: %s", result.run_id, exc)


def run_account(ledger: Ledger, run_id: str, syncs: Mapping[str, LoadedSync] | None = None) -> RunAccount:
    """A run's numbers from one ledger's facts: the one function every view of a run reads."""
    return read_account(ledger, run_id, {name: loaded.spec.tier for name, loaded in (syncs or {}).items()})


def _sibling(adapter: Adapter) -> tuple[Adapter, bool]:
    """A connection of its own to the same warehouse (for the lease's renewals), and whether it is new."""
    return adapter.sibling(), True


def _run_one(
    project: Project,
    loaded: LoadedSync,
    adapter: Adapter,
    recorder: RunRecorder,
    api: SixtyfourClient,
    settings: EngineSettings,
    budget: Budget,
    reporter: Reporter | None,
    full_refresh: bool,
    stop: StopToken,
    approved: ApprovedPlan | None = None,
) -> SyncResult:
    name = loaded.spec.name
    ledger = recorder.ledger
    try:
        ref = check_sync(project, loaded, adapter)  # a missing table or column is a located error, not a crash
    except ConfigError as exc:
        return SyncResult(name, status="failed", errors=[str(p) for p in exc.problems] or [str(exc)])
    notes: list[str] = []
    if approved is not None:  # the plan approved, planned again: refused if it grew, else capped at it
        now = plan_sync(adapter, loaded, ref_table=ref, full_refresh=full_refresh, prices=project.prices)
        hold = hold_to(approved.syncs.get(name), now, definition=now.definition)
        if hold.refusal is not None:
            return SyncResult(name, status="failed", errors=[f"{name}: not run: {hold.refusal}"])
        loaded = dataclasses.replace(loaded, spec=capped(loaded.spec, hold))
        notes = hold.notes
    runner = SyncRunner(
        loaded=loaded,
        adapter=adapter,
        ledger=ledger,
        client=api,
        run_id=recorder.run_id,
        settings=settings,
        budget=budget,
        recorder=recorder,
        stop=stop,
        reporter=reporter,
        ref_table=ref,
        full_refresh=full_refresh,
    )
    resolved = project.target_for(loaded)
    runner.ctx.profile_target = f"{resolved.profile}.{resolved.target}"
    runner.ctx.project_name = project.dbt.name if project.dbt and project.dbt.name else project.project_dir.name
    try:
        runner.prepare()  # local checks first: a sync that cannot work writes nothing
    except SixtyfourSyncError as exc:
        return SyncResult(name, status="failed", errors=[str(exc)])
    ledger.ensure()
    lease_adapter, own = _sibling(adapter)
    lease = Lease(Ledger(lease_adapter, schema=ledger.schema), lease_name(name, runner.ctx.target_id), recorder.run_id)
    try:
        try:
            lease.acquire()
        except LeaseHeldError as exc:
            if settings.only_tasks is not None:  # the run holding it finishes those jobs itself
                return SyncResult(name, status="locked", warnings=[str(exc)])
            return SyncResult(name, status="failed", errors=[str(exc)])
        ledger.close_stale_runs([recorder.run_id], _run_alive(ledger))
        ledger.prune_keys()
        runner.ctx.lease = lease
        try:
            result = runner.run()

            def step_runner(sub: SyncSpec, **kind: Any) -> SyncRunner:  # a step after the sync's own pass
                step = SyncRunner(
                    loaded=dataclasses.replace(loaded, spec=sub), adapter=adapter, ledger=ledger, client=api,
                    run_id=recorder.run_id, settings=settings, budget=budget, recorder=recorder, stop=stop,
                    reporter=reporter, ref_table=ref, lease=lease, **kind,
                )  # fmt: skip
                step.ctx.profile_target, step.ctx.project_name = runner.ctx.profile_target, runner.ctx.project_name
                return step

            result.warnings.extend(notes)
            if settings.only_tasks is None:
                ask_new_fields(result, runner, stop=stop, make_runner=lambda sub, st: step_runner(sub, field_stamps=st))
                if loaded.spec.escalate:
                    escalate(result, runner, stop=stop, make_runner=lambda sub, p: step_runner(sub, escalate_from=p))
            return result
        except ApiKeyRefusedError:
            raise
        except SixtyfourSyncError as exc:
            runner.result.status = "failed"
            if str(exc) not in runner.result.errors:
                runner.result.errors.append(str(exc))
            return runner.result
    finally:
        if lease.held:
            with contextlib.suppress(SixtyfourSyncError):
                ledger.prune_keys()
        lease.release()
        if own:
            lease_adapter.close()


def _approved(plan: ApprovedPlan | Sequence[SyncPlan] | Path | str | None, project: Project) -> ApprovedPlan | None:
    """The approved plan a run executes: read from its file, or made from the plans a caller showed."""
    if plan is None or isinstance(plan, ApprovedPlan):
        return plan
    if isinstance(plan, (str, Path)):
        return read_plan(plan)
    doc = plan_document(list(plan), project=project.project_dir.name, target=None, created_at="")
    return approved_from(doc, Path("<the plan shown>"))


def _run_alive(ledger: Ledger) -> Any:
    def alive(row: Mapping[str, Any]) -> bool:
        if row.get("host") == ledger.host:
            return pid_alive(int(row.get("pid") or 0))
        return True  # another machine's run: its leases expire by themselves; its row is closed by that run

    return alive


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
    fail_on_empty: bool = False,
) -> str:
    """A dbt sources YAML for the target tables; no connection is made.

    Targets that follow the profile's schema get ``schema`` (default ``{{ target.schema }}``, dbt's current
    target), so the file works for every dbt target.
    """
    from sixtyfour_sync.dbt import TARGET_SCHEMA, sources_yaml

    project = _project(project_dir, profiles_dir, profile, target, env, dbt_project_dir, vars)
    syncs = _select(project, select, exclude, fail_on_empty=fail_on_empty)
    return sources_yaml(syncs, source_name=source_name, schema=schema or TARGET_SCHEMA)


def list_syncs(
    project_dir: Path | str = ".",
    *,
    select: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    dbt_project_dir: Path | str | None = None,
    vars: Mapping[str, Any] | None = None,
    fail_on_empty: bool = False,
    **_profile: Any,
) -> list[LoadedSync]:
    """The syncs a selection picks, in file order (what ``ls`` lists); reads the models only, connects nowhere.

    A selection that picks no sync logs a warning saying why (``fail_on_empty``: raises a ConfigError).
    """
    project = _project(project_dir, None, None, None, env, dbt_project_dir, vars)
    return _select(project, select, exclude, fail_on_empty=fail_on_empty)
