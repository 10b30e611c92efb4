"""The ledger: what every run did and where every submitted file stands, kept in the warehouse.

Tables in the ledger schema (the target's schema unless the profile sets ``ledger_schema``), so a scheduled
job on a throwaway machine resumes where the last one stopped:

- ``_sixtyfour_sync_runs``: one row per run (counts, costs, outcome);
- ``_sixtyfour_sync_jobs``: one row per file, moving through :class:`~sixtyfour_sync.engine.jobs.states.JobState`;
  every move is a compare-and-set on the state the writer expects, committed before the side effect that
  follows it. A lost race raises :class:`LedgerConflictError`: it is never a silent overwrite;
- ``_sixtyfour_sync_job_keys``: the row keys of each unfinished file (a hash of the key, computed by the
  warehouse, and the hash of the inputs that were sent), packed in a few rows per job
  (:mod:`sixtyfour_sync.engine.ledger.rowkeys`) and written before the job is submitted, so another machine can
  rebuild a lost file, a selection can leave out rows that a job still holds, and a merge knows what was sent.
  Those of ended jobs are pruned at the start and end of each sync's run;
- ``_sixtyfour_sync_prices``: per-row prices learned from the API's estimates, per endpoint and tier;
- ``_sixtyfour_sync_columns``: the target columns each sync created, so a sync never writes a column it does
  not own (another tool's) unless told to (``target.adopt_columns``);
- ``_sixtyfour_sync_quarantine``: paid answers the target refused (a CHECK constraint, a trigger, a value too
  long for a column someone narrowed), one row each with its key, the warehouse's reason and the answer itself;
  their rows are held (never asked again) until they merge (see :mod:`sixtyfour_sync.engine.results.quarantine`);
- ``_sixtyfour_sync_steps``: what each run did in each step of each sync (status, selection by reason),
  which with the jobs is everything a run's numbers are derived from (:mod:`sixtyfour_sync.engine.ledger.accounting`);
- ``_sixtyfour_sync_evaluations``: the scores ``sixtyfour-sync evaluate`` measured against labels, one row per
  evaluation, field, tier and confidence band (:mod:`sixtyfour_sync.engine.ledger.evaluations`);
- ``_sixtyfour_sync_leases``: see :mod:`sixtyfour_sync.engine.ledger.lease`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa

from sixtyfour_sync.engine.jobs.states import JobState
from sixtyfour_sync.engine.ledger.accounting import JobFacts, ReuseCount, RunAccount, StepFacts, account
from sixtyfour_sync.engine.ledger.job import Job, LedgerConflictError
from sixtyfour_sync.engine.ledger.jobs import JobRecords
from sixtyfour_sync.engine.ledger.records import (
    ColumnRecords,
    EventRecords,
    PriceRecords,
    QuarantineRecords,
    SpecRecords,
)
from sixtyfour_sync.engine.ledger.runs import RunRecords, new_run_id
from sixtyfour_sync.engine.ledger.tables import (
    ACTIVE_STATES,
    COLUMNS_TABLE,
    EVENTS_TABLE,
    JOB_KEYS_TABLE,
    JOBS_TABLE,
    KEY_HASH,
    LEASES_TABLE,
    PRICES_TABLE,
    QUARANTINE_TABLE,
    RUNS_TABLE,
    SPECS_TABLE,
    STEPS_TABLE,
    utcnow,
)
from sixtyfour_sync.warehouse.adapter import Adapter

__all__ = [
    "ACTIVE_STATES",
    "COLUMNS_TABLE",
    "EVENTS_TABLE",
    "JOBS_TABLE",
    "JOB_KEYS_TABLE",
    "KEY_HASH",
    "LEASES_TABLE",
    "PRICES_TABLE",
    "QUARANTINE_TABLE",
    "RUNS_TABLE",
    "SPECS_TABLE",
    "STEPS_TABLE",
    "Job",
    "Ledger",
    "LedgerConflictError",
    "new_run_id",
    "read_account",
    "utcnow",
]


class Ledger(RunRecords, JobRecords, ColumnRecords, QuarantineRecords, PriceRecords, SpecRecords, EventRecords):
    """Reads and writes the ledger tables through one adapter; each part lives in its own module (runs.py,
    jobs.py, records.py) on the tables of tables.py.

    ``guard`` is called before every write; the engine passes its lease check, so a run that lost its lease
    stops before its next side effect.
    """

    def beside(self, adapter: Adapter) -> Ledger:
        """The same ledger through another connection (a lease's renewals, the row keys the extraction writes):
        tables this one has made sure of are not checked again."""
        other = Ledger(adapter, schema=self.schema)
        other._ensured = self._ensured
        return other

    def held_keys(self, sync_name: str, states: Sequence[JobState], target: str | None = None) -> pa.Array | None:
        """The key prefixes that jobs of ``sync_name`` (for ``target``) in ``states`` hold, and those of its
        quarantined answers; None when there are none."""
        jobs = self.jobs_for(sync_name=sync_name, states=states, target=target)
        held = [self.job_keys(j.job_id).column("key") for j in jobs]
        quarantined = [r["key_prefix"] for r in self.quarantined(sync_name, target) if r["key_prefix"]]
        if quarantined:
            held.append(pa.chunked_array([pa.array(quarantined, pa.string())]))
        if not held:
            return None
        return pa.chunked_array([c for col in held for c in col.chunks], type=pa.string()).combine_chunks()


def read_account(ledger: Ledger, run_id: str, own_tiers: Mapping[str, str] | None = None) -> RunAccount:
    """A run's numbers from this ledger's facts (engine/ledger/accounting.py): what every view of a run shows."""
    jobs = [JobFacts.from_row(r) for r in ledger.run_job_rows(run_id)]
    steps = [StepFacts.from_row(r) for r in ledger.step_rows(run_id)]
    reuses = [ReuseCount.from_row(r) for r in ledger.reuse_rows(run_id)]
    row = ledger.run_row(run_id)
    finished = row.get("finished_at") if row else None
    return account(run_id, jobs, steps, run_finished=finished, own_tiers=own_tiers, reuses=reuses)
