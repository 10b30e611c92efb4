"""The state one sync's runner keeps, which each of its parts (engine/runner.py, engine/runner_target.py,
engine/runner_resume.py, engine/runner_submit.py) reads and changes."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.api import SixtyfourClient
from sixtyfour_sync.config.models import LoadedSync, SyncSpec
from sixtyfour_sync.engine.context import EngineSettings, Reporter, RunRecorder, SyncContext
from sixtyfour_sync.engine.jobs.budget import Budget
from sixtyfour_sync.engine.jobs.driver import JobDriver
from sixtyfour_sync.engine.jobs.scheduler import Scheduler, StopToken
from sixtyfour_sync.engine.jobs.states import JobState
from sixtyfour_sync.engine.ledger.lease import Lease
from sixtyfour_sync.engine.ledger.store import Ledger
from sixtyfour_sync.engine.plan.columns import target_ref
from sixtyfour_sync.engine.plan.step import Step
from sixtyfour_sync.engine.rows.extract import Producer, ScanStats
from sixtyfour_sync.engine.rows.files import ChunkFile
from sixtyfour_sync.engine.rows.select import (
    Selection,
)
from sixtyfour_sync.engine.steps.field_changes import FieldChanges
from sixtyfour_sync.engine.summary import SyncResult
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.types import TableRef

log = logging.getLogger("sixtyfour_sync.engine")
S = JobState
#: Beside a file in flight: what it sent (its keys and input hashes), until its result is merged.
SENT_SUFFIX = ".sent.arrow"


class RunnerBase:
    """What a sync's runner holds: its context (engine/context.py), its job driver and the state of its pass.
    The parts are mixed into :class:`~sixtyfour_sync.engine.runner.SyncRunner`."""

    def __init__(
        self,
        *,
        loaded: LoadedSync,
        adapter: Adapter,
        ledger: Ledger,
        client: SixtyfourClient,
        run_id: str,
        settings: EngineSettings,
        budget: Budget,
        recorder: RunRecorder,
        stop: StopToken | None = None,
        lease: Lease | None = None,
        reporter: Reporter | None = None,
        ref_table: TableRef | None = None,
        full_refresh: bool = False,
        extract_adapter: Any = None,
        step: Step | None = None,
    ) -> None:
        #: The plan's step this runner executes (engine/plan/step.py); the sync's own pass when not given.
        self.step = step or Step.own(loaded.spec)
        loaded = dataclasses.replace(loaded, spec=self.step.spec) if loaded.spec is not self.step.spec else loaded
        spec = loaded.spec
        self.ctx = SyncContext(
            loaded=loaded,
            adapter=adapter,
            ledger=ledger,
            client=client,
            run_id=run_id,
            settings=settings,
            budget=budget,
            reporter=reporter or Reporter(),
            recorder=recorder,
            stop=stop or StopToken(),
            scheduler=Scheduler(settings.api_workers, f"sf-{spec.name}"),
            lease=lease,
            result=SyncResult(spec.name),
            target=target_ref(spec),
            spec_hash=spec.spec_hash(),
            files_dir=settings.state_dir / "files" / spec.name,
            results_dir=settings.state_dir / "results" / spec.name,
        )
        self.driver = JobDriver(self.ctx, self)
        self.ref_table = ref_table
        self.full_refresh = full_refresh
        self.extract_adapter = extract_adapter
        #: The sync's own pass: what the target's stamps still need (see engine/steps/field_changes.py).
        self.changes: FieldChanges | None = None
        #: The target's columns as the step's selection first read them (``(None,)``: no target yet).
        self.target_columns: tuple[dict[str, Any] | None] | None = None
        self.price: float | None = None
        self.sync_spent = 0.0
        self.stop_reason: str | None = None
        self.inputs: list[str] = []
        self.source_sql = ""
        #: Whether the selection groups the rows sharing their inputs (engine/rows/select.py); False when the
        #: source's rows all have inputs of their own (engine/runner_submit.py asks).
        self.group_questions = True
        self.producer: Producer | None = None
        self.keys_adapter: Adapter | None = None
        self.scan: ScanStats | None = None
        #: Files waiting for the price to be learned (the first, one-row file is in flight), with whether
        #: each holds an extraction slot.
        self.waiting_files: list[tuple[ChunkFile, bool]] = []
        #: Under a budget, the next file waits for the estimate of the one submitted before it: files are fitted
        #: with the price the API quotes now, so a price that moved is seen before anything more is sent.
        self.awaiting_estimate = False
        #: Whether this run has seen the API quote the price (a price from the ledger or the config is checked
        #: with a one-row first file under a budget: it may have moved since).
        self.price_confirmed = False
        #: Whether the target was checked (and made ready) before this runner's first submission.
        self.target_checked = False
        self.prepared = False
        self.step_recorded = False
        self._started = time.monotonic()

    @property
    def result(self) -> SyncResult:
        """The outcome so far."""
        return self.ctx.result

    # what each part asks of the others

    def _selections(  # pragma: no cover
        self, *, buckets: int = 1, probe: bool = False, stored: str | None = None
    ) -> list[Selection]:
        raise NotImplementedError

    def _field_changes(self, columns: Mapping[str, Any]) -> FieldChanges | None:  # pragma: no cover
        raise NotImplementedError

    def _take_stored(self, source_rows: int) -> None:
        raise NotImplementedError  # pragma: no cover - ReuseSteps'

    def _stored(self) -> str | None:
        raise NotImplementedError  # pragma: no cover - ReuseSteps'

    def _split_stored(self, batches: list[pa.RecordBatch], *, probe: bool) -> list[pa.RecordBatch]:
        raise NotImplementedError  # pragma: no cover - ReuseSteps'

    def _loop(self) -> None:  # pragma: no cover - SyncRunner's
        raise NotImplementedError

    def stop_sync(self, status: str, message: str, *, partial_ok: bool = False) -> None:  # pragma: no cover
        raise NotImplementedError

    def _prepare_target(self, first: ChunkFile) -> str | None:  # pragma: no cover - TargetSteps'
        raise NotImplementedError

    def spend(self, cents: float) -> None:  # pragma: no cover - SubmitSteps'
        raise NotImplementedError

    def release_slot(self) -> None:  # pragma: no cover - SubmitSteps'
        raise NotImplementedError

    def answered(self, price: float | None) -> None:  # pragma: no cover - SubmitSteps'
        raise NotImplementedError


def _no_guard() -> None:
    return None


def _any_true(column: pa.ChunkedArray) -> bool:
    """Whether any value of a flag column is true; warehouses without a boolean type send 0/1."""
    if not pa.types.is_boolean(column.type):
        column = (
            pc.not_equal(column, pa.scalar(0, column.type))
            if pa.types.is_integer(column.type)
            else pc.cast(column, pa.bool_())
        )
    return bool(pc.any(column).as_py())


def asked_hash(spec: SyncSpec, stamp: str) -> str:
    """The hash of the question a job asks: the sync's stamp, plus the tier for an escalation step.

    Escalated answers are stamped with the sync's question, but the same rows asked at another tier are
    another question for the API: without the tier in the Idempotency-Key, a step whose file equals an earlier
    file (every row of it weak) would be answered with the earlier job, as a replay.
    """
    parts = []
    if spec.tier != spec.question_tier:
        parts.append(f"@{spec.tier}")
    if spec.field_subset:  # a "new fields" job asks part of the question: another question for the API
        parts.append("+" + ",".join(sorted(spec.struct)))
    if not parts:
        return stamp
    return hashlib.sha256((stamp + "".join(parts)).encode()).hexdigest()[:32]
