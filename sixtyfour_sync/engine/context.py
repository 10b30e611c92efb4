"""What one sync's run shares between its parts: settings, the warehouse, the ledger, the API, the outcome."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from sixtyfour_sync.api import SixtyfourClient
from sixtyfour_sync.config.models import LoadedSync, SyncSpec
from sixtyfour_sync.engine.jobs.budget import Budget
from sixtyfour_sync.engine.jobs.scheduler import Scheduler, StopToken
from sixtyfour_sync.engine.ledger.lease import Lease
from sixtyfour_sync.engine.ledger.store import Ledger
from sixtyfour_sync.engine.summary import SyncResult
from sixtyfour_sync.errors import SixtyfourSyncError
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.keytypes import KeyType
from sixtyfour_sync.warehouse.types import TableRef

__all__ = ["REFUSED", "EngineSettings", "Reporter", "RunRecorder", "SyncContext"]

log = logging.getLogger("sixtyfour_sync.engine")
#: Outcomes of a sync that, before anything was accepted, leave no trace in the ledger.
REFUSED = frozenset({"failed", "budget_reached", "no_credits", "interrupted", "skipped", "locked"})


class Reporter:
    """Receives progress events; the CLI draws bars or prints lines. The default does nothing."""

    def on(self, event_name: str, sync: str, **data: Any) -> None:
        """One event: ``plan``, ``extracted``, ``file``, ``submitted``, ``job_done``, ``merged``, ``note``."""


@dataclass
class EngineSettings:
    """Knobs of a run that are not in the sync definitions."""

    state_dir: Path
    poll_interval: float | None = None
    max_wait_seconds: float | None = None
    api_workers: int = 4
    files_ahead: int = 2
    batch_rows: int = 50_000
    keep_files: bool = False
    #: Poll lost jobs again, and release the rows of those still unknown and of refused resumptions.
    retry_lost: bool = False
    #: Download unreadable results again, and release the rows of those still unreadable.
    retry_unreadable: bool = False
    #: How long one file keeps retrying its submission (429, 5xx) within a run before the next run takes over.
    submit_retry_seconds: float = 900.0
    #: Per-row prices given in the project (``prices:``), per (endpoint, tier).
    prices: dict[tuple[str, str], float] = field(default_factory=dict)
    #: ``run --no-wait``: submit, record, and leave the jobs to a webhook receiver or the next run.
    no_wait: bool = False
    #: Finish only these tasks (a webhook receiver): no other job is touched and no new row is selected.
    only_tasks: frozenset[str] | None = None


class RunRecorder:
    """The run's row in one ledger, written only once the run has done something a ledger must remember.

    A run that was refused before its first request was accepted (a bad key, a config the API rejects,
    402 on the first file) changes nothing in the ledger.
    """

    def __init__(
        self, ledger: Ledger, run_id: str, command: str, syncs: list[str], *, only_tasks: bool = False
    ) -> None:
        self.ledger = ledger
        #: A webhook receiver's run: recorded only when it finished something.
        self.only_tasks = only_tasks
        self.run_id = run_id
        self.command = command
        self.syncs = syncs
        self.opened = False
        self._seq = 0
        #: Steps of the sync under way, written by :meth:`flush` once it is done.
        self.steps: list[dict[str, Any]] = []

    def next_seq(self) -> int:
        """The order of the next step recorded in this run."""
        self._seq += 1
        return self._seq

    def flush(self, status: str) -> None:
        """Write the steps of the sync that just ended (its final ``status``). A sync refused before anything was
        accepted writes nothing, as the run does not; one with nothing to do is recorded, so the run id it
        shows is in the ledger."""
        steps, self.steps = self.steps, []
        if self.only_tasks and not self.opened:
            return
        if not self.opened and status in REFUSED:
            return
        try:
            self.ensure()
            for row in steps:
                self.ledger.record_step(row)
        except SixtyfourSyncError as exc:  # the sync's outcome stands; the run's numbers then lack its selection
            log.warning("recording the steps of run %s failed: %s", self.run_id, exc)

    def ensure(self) -> None:
        """Write the run row now, if it is not written yet."""
        if not self.opened:
            self.ledger.ensure()
            self.ledger.open_run(self.run_id, self.command, self.syncs)
            self.opened = True


@dataclass
class SyncContext:
    """Everything the parts of one sync's run share."""

    loaded: LoadedSync
    adapter: Adapter
    ledger: Ledger
    client: SixtyfourClient
    run_id: str
    settings: EngineSettings
    budget: Budget
    reporter: Reporter
    recorder: RunRecorder
    stop: StopToken
    scheduler: Scheduler
    lease: Lease | None
    result: SyncResult
    target: TableRef
    spec_hash: str
    key_types: dict[str, pa.DataType] = field(default_factory=dict)
    #: The source key's types (warehouse/keytypes.py): the target's key columns get them.
    key_specs: dict[str, KeyType] = field(default_factory=dict)
    api_config: dict[str, Any] = field(default_factory=dict)
    files_dir: Path = Path()
    results_dir: Path = Path()
    #: Whether the target table has been created and has every column this sync owns.
    target_ready: bool = False
    #: Where the answers go, as the ledger records it for each job (see :attr:`target_id`), with the profile's
    #: target (``profile.target``) and the project, for people reading the ledger.
    profile_target: str | None = None
    project_name: str | None = None
    #: The question this step's answers answer in the answer store (engine/reuse/question.py); None when the step
    #: neither stores nor takes answers.
    question: str | None = None

    @property
    def target_id(self) -> str:
        """The target table, qualified as the warehouse names it: jobs, leases and held rows are kept per target,
        so targets sharing a ledger (dev and prod) never finish each other's jobs."""
        return self.adapter.table_sql(self.target)

    @property
    def spec(self) -> SyncSpec:
        """The sync definition."""
        return self.loaded.spec

    @property
    def name(self) -> str:
        """The sync's name."""
        return self.loaded.spec.name

    def note(self, message: str, level: str = "info") -> None:
        """Tell the user something about this sync as it happens."""
        self.reporter.on("note", self.name, message=message, level=level)
