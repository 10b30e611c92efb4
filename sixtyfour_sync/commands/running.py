"""``run``: one run over the selected syncs, each sync's life in engine/lifecycle.py; the run's numbers from
the ledger's facts (engine/ledger/accounting.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sixtyfour_sync.api import SixtyfourClient
from sixtyfour_sync.api.poll import poll_interval_from_env
from sixtyfour_sync.commands._shared import (
    API_KEY_ENV,
    _client,
    _only_rebuilt,
    _project,
    _select,
    log,
    run_account,
)
from sixtyfour_sync.config.models import LoadedSync
from sixtyfour_sync.engine.context import EngineSettings, Reporter, RunRecorder
from sixtyfour_sync.engine.invalid_files import sound_syncs
from sixtyfour_sync.engine.jobs.budget import Budget
from sixtyfour_sync.engine.jobs.scheduler import StopToken
from sixtyfour_sync.engine.ledger.store import Ledger, new_run_id
from sixtyfour_sync.engine.lifecycle import run_sync
from sixtyfour_sync.engine.plan.approval import ApprovedPlan, approved_from, plan_document, read_plan
from sixtyfour_sync.engine.project import Project
from sixtyfour_sync.engine.reuse.store import prune_answers
from sixtyfour_sync.engine.summary import RunResult, SyncPlan, SyncResult
from sixtyfour_sync.errors import ApiKeyRefusedError, ConfigError, SixtyfourSyncError
from sixtyfour_sync.lineage import lineage_listener


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
    syncs, skipped, approved = _chosen(project, select, exclude, fail_on_empty, only_rebuilt, plan)
    own_client = client is None
    api = client or _client(api_key, api_url, env_map)
    settings = _settings(project, state_dir, max_wait_seconds, retry_lost, retry_unreadable, no_wait, only_tasks)
    if submit_retry_seconds is not None:
        settings.submit_retry_seconds = submit_retry_seconds
    result = RunResult(new_run_id(), fail_on_budget=fail_on_budget)
    result.syncs.extend(skipped)
    one_run = _Run(
        project=project,
        api=api,
        settings=settings,
        budget=Budget(None if max_cost_cents is None else float(max_cost_cents)),
        reporter=reporter,
        full_refresh=full_refresh,
        stop=stop or StopToken(),
        approved=approved,
        result=result,
        command=command,
        names=[s.spec.name for s in syncs],
        only_tasks=only_tasks is not None,
        fail_fast=fail_fast,
    )
    try:
        with project:
            one_run.execute(syncs, started)
    finally:
        if own_client:
            api.close()
    return result


def _chosen(
    project: Project,
    select: Sequence[str] | None,
    exclude: Sequence[str] | None,
    fail_on_empty: bool,
    only_rebuilt: bool,
    plan: ApprovedPlan | Sequence[SyncPlan] | Path | str | None,
) -> tuple[list[LoadedSync], list[SyncResult], ApprovedPlan | None]:
    """The syncs the run runs, those it reports as skipped or refused without running, and the approved plan."""
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
    return syncs, skipped, approved


def _settings(
    project: Project,
    state_dir: Path | str | None,
    max_wait_seconds: float | None,
    retry_lost: bool,
    retry_unreadable: bool,
    no_wait: bool,
    only_tasks: Sequence[str] | None,
) -> EngineSettings:
    return EngineSettings(
        state_dir=Path(state_dir) if state_dir else project.project_dir / ".sixtyfour",
        poll_interval=poll_interval_from_env(),
        max_wait_seconds=max_wait_seconds,
        retry_lost=retry_lost,
        retry_unreadable=retry_unreadable,
        prices=dict(project.prices),
        no_wait=no_wait,
        only_tasks=None if only_tasks is None else frozenset(only_tasks),
    )


@dataclass
class _Run:
    """One invocation of ``run``: its syncs one after the other, each run by engine/lifecycle.py, then the run's
    numbers taken from each ledger it wrote (:func:`_close_run`)."""

    project: Project
    api: SixtyfourClient
    settings: EngineSettings
    budget: Budget
    reporter: Reporter | None
    full_refresh: bool
    stop: StopToken
    approved: ApprovedPlan | None
    result: RunResult
    command: str
    names: list[str]
    only_tasks: bool
    fail_fast: bool
    recorders: dict[int, RunRecorder] = field(default_factory=dict)

    def execute(self, syncs: list[LoadedSync], started: float) -> None:
        result, crashed = self.result, False
        lineage = lineage_listener(self.command)  # OpenLineage events, when configured (docs/lineage.md)
        try:
            if syncs:
                _check_key(self.api)
            for loaded in syncs:
                if self.stop.requested:
                    result.syncs.append(SyncResult(loaded.spec.name, status="skipped", errors=[self.stop.reason or ""]))
                    continue
                lineage.sync_started(self.project, loaded, result.run_id, time.time())
                one = self._one(loaded)
                result.syncs.append(one)
                why = self._stop_others(loaded, one)
                if why is not None:
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
            if self.stop.requested:
                result.interrupted_exit = self.stop.exit_code
            by_name = {loaded.spec.name: loaded for loaded in syncs}
            for recorder in self.recorders.values():
                _close_run(recorder, result, by_name, crashed=crashed)
            result.recorded = any(r.opened for r in self.recorders.values())
            lineage.run_ended(result)  # after the run's numbers are taken from the ledger

    def _recorder(self, adapter: Any) -> RunRecorder:
        """The run's recorder in the ledger of this sync's warehouse (one per warehouse)."""
        recorder = self.recorders.get(id(adapter))
        if recorder is None:
            recorder = self.recorders[id(adapter)] = RunRecorder(
                Ledger(adapter), self.result.run_id, self.command, self.names, only_tasks=self.only_tasks
            )
        return recorder

    def _one(self, loaded: LoadedSync) -> SyncResult:
        adapter = self.project.adapter_for(loaded)
        recorder = self._recorder(adapter)
        began = time.time()
        outcome: SyncResult | None = None
        try:
            outcome = run_sync(
                self.project,
                loaded,
                adapter,
                recorder,
                self.api,
                self.settings,
                self.budget,
                self.reporter,
                self.full_refresh,
                self.stop,
                self.approved,
            )
        finally:  # the steps it ran, for the run's numbers (engine/ledger/accounting.py)
            recorder.flush(outcome.status if outcome is not None else "failed")
        outcome.started_at, outcome.completed_at = began, time.time()
        # what the definition allows but the API may refuse (an unknown struct type): said first
        outcome.warnings[:0] = [w for w in loaded.spec.warnings() if w not in outcome.warnings]
        return outcome

    def _stop_others(self, loaded: LoadedSync, one: SyncResult) -> str | None:
        """Why the syncs after this one are skipped, or None: out of credits or the key refused (the others
        would be refused too), or ``--fail-fast`` after a failure."""
        failing = ("failed", "budget_reached") if self.result.fail_on_budget else ("failed",)
        if one.status == "no_credits":
            return "out of credits"
        if self.result.error:
            return "the API refused the key"
        if self.fail_fast and one.status in failing:
            return f"--fail-fast after {loaded.spec.name} failed"
        return None


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
    ages = [loaded.spec.reuse_max_age for loaded in syncs.values() if loaded.spec.reuse.enabled]
    # the store grows only when answers are merged: a run that merged none (a refresh with nothing to do) leaves it
    grew = any(s.rows_merged or s.resumed.rows_merged for s in result.syncs)
    if ages and grew and not crashed:
        try:  # the answer store holds what a sync could still take: nothing older than the longest reuse.max_age
            prune_answers(recorder.ledger, max_age_seconds=int(max(ages).total_seconds()))
        except SixtyfourSyncError as exc:
            log.warning("pruning the answer store failed: %s", exc)


def _approved(plan: ApprovedPlan | Sequence[SyncPlan] | Path | str | None, project: Project) -> ApprovedPlan | None:
    """The approved plan a run executes: read from its file, or made from the plans a caller showed."""
    if plan is None or isinstance(plan, ApprovedPlan):
        return plan
    if isinstance(plan, (str, Path)):
        return read_plan(plan)
    doc = plan_document(list(plan), project=project.project_dir.name, target=None, created_at="")
    return approved_from(doc, Path("<the plan shown>"))
