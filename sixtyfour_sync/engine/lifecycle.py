"""One sync's life in a run: its checks, the approved plan it is held to, its lease, its own pass, its "new
fields" and escalation steps, and its outcome."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sixtyfour_sync.api import SixtyfourClient
from sixtyfour_sync.config.models import LoadedSync
from sixtyfour_sync.engine.context import EngineSettings, Reporter, RunRecorder
from sixtyfour_sync.engine.jobs.budget import Budget
from sixtyfour_sync.engine.jobs.scheduler import StopToken
from sixtyfour_sync.engine.ledger.lease import Lease, LeaseHeldError, lease_name, pid_alive
from sixtyfour_sync.engine.ledger.store import Ledger
from sixtyfour_sync.engine.plan.approval import ApprovedPlan, capped, hold_to
from sixtyfour_sync.engine.plan.checks import check_sync
from sixtyfour_sync.engine.plan.planner import plan_sync
from sixtyfour_sync.engine.plan.step import Step
from sixtyfour_sync.engine.project import Project
from sixtyfour_sync.engine.runner import SyncRunner
from sixtyfour_sync.engine.steps.escalation import escalate
from sixtyfour_sync.engine.steps.new_fields import ask_new_fields
from sixtyfour_sync.engine.summary import SyncResult
from sixtyfour_sync.errors import ApiKeyRefusedError, ConfigError, SixtyfourSyncError
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.types import TableRef


def run_sync(
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
    """Run one sync: checked first (a sync that cannot work writes nothing), held to its approved plan when there
    is one, then under its lease its own pass and the steps after it; the outcome, never an exception for the
    sync's own problems (a refused API key stops the whole run: raised)."""
    name = loaded.spec.name
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
    resolved = project.target_for(loaded)
    life = _SyncLife(
        loaded=loaded,
        adapter=adapter,
        recorder=recorder,
        api=api,
        settings=settings,
        budget=budget,
        reporter=reporter,
        stop=stop,
        ref=ref,
        profile_target=f"{resolved.profile}.{resolved.target}",
        project_name=project.dbt.name if project.dbt and project.dbt.name else project.project_dir.name,
    )
    runner = life.runner(Step.own(loaded.spec), full_refresh=full_refresh)
    try:
        runner.prepare()  # local checks first: a sync that cannot work writes nothing
    except SixtyfourSyncError as exc:
        return SyncResult(name, status="failed", errors=[str(exc)])
    return life.under_lease(runner, notes)


@dataclass
class _SyncLife:
    """What every step of one sync shares in a run."""

    loaded: LoadedSync
    adapter: Adapter
    recorder: RunRecorder
    api: SixtyfourClient
    settings: EngineSettings
    budget: Budget
    reporter: Reporter | None
    stop: StopToken
    ref: TableRef | None
    profile_target: str
    project_name: str
    lease: Lease | None = None

    def runner(self, step: Step, *, full_refresh: bool = False) -> SyncRunner:
        """The runner of one step of the plan: the sync's own pass, a "new fields" step or an escalation step."""
        runner = SyncRunner(
            step=step,
            loaded=self.loaded,
            adapter=self.adapter,
            ledger=self.recorder.ledger,
            client=self.api,
            run_id=self.recorder.run_id,
            settings=self.settings,
            budget=self.budget,
            recorder=self.recorder,
            stop=self.stop,
            reporter=self.reporter,
            ref_table=self.ref,
            lease=self.lease,
            full_refresh=full_refresh,
        )
        runner.ctx.profile_target, runner.ctx.project_name = self.profile_target, self.project_name
        return runner

    def under_lease(self, runner: SyncRunner, notes: list[str]) -> SyncResult:
        """Take the sync's lease, close the runs left running by processes that are gone, then run its steps."""
        name, ledger = self.loaded.spec.name, self.recorder.ledger
        ledger.ensure()
        lease_adapter = self.adapter.sibling()  # a connection of its own for the lease's renewals
        lease = Lease(ledger.beside(lease_adapter), lease_name(name, runner.ctx.target_id), self.recorder.run_id)
        try:
            try:
                lease.acquire()
            except LeaseHeldError as exc:
                if self.settings.only_tasks is not None:  # the run holding it finishes those jobs itself
                    return SyncResult(name, status="locked", warnings=[str(exc)])
                return SyncResult(name, status="failed", errors=[str(exc)])
            ledger.close_stale_runs([self.recorder.run_id], run_alive(ledger))
            ledger.prune_keys()
            self.lease = runner.ctx.lease = lease
            return self._steps(runner, notes)
        finally:
            if lease.held:
                with contextlib.suppress(SixtyfourSyncError):
                    ledger.prune_keys()
            lease.release()
            lease_adapter.close()

    def _steps(self, runner: SyncRunner, notes: list[str]) -> SyncResult:
        """The sync's own pass, then its "new fields" steps and its escalation (engine/steps/)."""
        try:
            result = runner.run()
            result.warnings.extend(notes)
            if self.settings.only_tasks is None:
                ask_new_fields(result, runner, stop=self.stop, make_runner=self.runner)
                if self.loaded.spec.escalate:
                    escalate(result, runner, stop=self.stop, make_runner=self.runner)
            return result
        except ApiKeyRefusedError:
            raise
        except SixtyfourSyncError as exc:
            runner.result.status = "failed"
            if str(exc) not in runner.result.errors:
                runner.result.errors.append(str(exc))
            return runner.result


def run_alive(ledger: Ledger) -> Any:
    """Whether the process of a run row is alive (a run of another host: assumed so)."""

    def alive(row: Mapping[str, Any]) -> bool:
        if row.get("host") == ledger.host:
            return pid_alive(int(row.get("pid") or 0))
        return True  # another machine's run: its leases expire by themselves; its row is closed by that run

    return alive
