"""The ledger's compare-and-set moves and the leases, on every warehouse (fakesnow for Snowflake).

Case 9 of the money-safety contract: a lease is taken by one conditional statement (row count checked), on the
warehouse's clock, also where primary keys are not enforced; a lost lease stops the run before its next side
effect. Case 10: every ledger write is a compare-and-set on the state it expects.
"""

from __future__ import annotations

import threading
import time
import uuid

import pyarrow as pa
import pytest

from sixtyfour_sync.engine.jobs.states import IllegalTransitionError, JobState
from sixtyfour_sync.engine.ledger.lease import Lease, LeaseHeldError, LeaseLostError
from sixtyfour_sync.engine.ledger.store import Job, Ledger, LedgerConflictError
from sixtyfour_sync.engine.ledger.tables import INPUT_HASH, KEY_HASH
from sixtyfour_sync.warehouse import Adapter

S = JobState


def _ledger(backend: Adapter) -> Ledger:
    ledger = Ledger(backend)
    ledger.ensure()
    return ledger


def _job(n: int = 3) -> tuple[Job, pa.Table]:
    job_id = uuid.uuid4().hex
    job = Job(
        job_id=job_id,
        run_id="run-1",
        sync_name="s",
        state=S.WRITTEN,
        spec_hash="spec",
        content_hash=f"content-{job_id[:6]}",
        idempotency_key=f"key-{job_id}",
        file_name="f.jsonl",
        rows=n,
        endpoint="people",
        tier="low",
    )
    keys = pa.table({KEY_HASH: [f"{i:016x}{0:016x}" for i in range(n)], INPUT_HASH: [f"h{i}" for i in range(n)]})
    return job, keys


# ------------------------------------------------------------------ compare-and-set


def test_moves_are_compare_and_set(backend: Adapter) -> None:
    ledger = _ledger(backend)
    job, keys = _job()
    ledger.add_job(job, keys)
    assert ledger.job_keys(job.job_id).num_rows == 3
    ledger.transition(job.job_id, S.WRITTEN, S.SUBMITTING)
    with pytest.raises(LedgerConflictError, match="expected to be written but is submitting"):
        ledger.transition(job.job_id, S.WRITTEN, S.SUBMITTING)  # a second writer that lost the race
    with pytest.raises(IllegalTransitionError):
        ledger.transition(job.job_id, S.SUBMITTING, S.MERGED)
    ledger.transition(job.job_id, S.SUBMITTING, S.SUBMITTED, task_id="t-1", estimated_cost_cents=6.0)
    ledger.annotate(job.job_id, S.SUBMITTED, error="a note \x00 with a NUL")
    got = ledger.job(job.job_id)
    assert got is not None and got.state is S.SUBMITTED and got.task_id == "t-1"
    assert got.error is not None and "\x00" not in got.error
    with pytest.raises(LedgerConflictError):
        ledger.annotate(job.job_id, S.WRITTEN, error="stale")
    # the row keys stay while the job holds its rows, and go when it ends
    held = ledger.held_keys("s", [S.SUBMITTED])
    assert held is not None and sorted(held.to_pylist()) == [f"{i:016x}" for i in range(3)]
    stored = ledger.job_keys(job.job_id)
    assert stored.column("input_hash").to_pylist() == ["h0", "h1", "h2"]
    ledger.transition(job.job_id, S.SUBMITTED, S.CANCELLED)
    assert ledger.held_keys("s", [S.SUBMITTED]) is None  # an ended job holds no rows
    ledger.prune_keys()  # and its keys go at the next pruning
    assert ledger.job_keys(job.job_id).num_rows == 0
    assert ledger.dead_job_for("s", "spec", job.content_hash) is not None


def test_a_refused_job_can_be_discarded(backend: Adapter) -> None:
    ledger = _ledger(backend)
    job, keys = _job()
    ledger.add_job(job, keys)
    ledger.transition(job.job_id, S.WRITTEN, S.SUBMITTING)
    assert not ledger.discard_job(job.job_id, S.WRITTEN)  # not in that state: nothing deleted
    assert ledger.discard_job(job.job_id, S.SUBMITTING)
    assert ledger.job(job.job_id) is None and ledger.job_keys(job.job_id).num_rows == 0


def test_learned_prices_are_kept_per_endpoint_and_tier(backend: Adapter) -> None:
    ledger = _ledger(backend)
    assert ledger.learned_price("people", "low") is None
    ledger.learn_price("people", "low", 2.0, job_id="j1", sync_name="s")
    ledger.learn_price("people", "low", 2.5, job_id="j2", sync_name="s")
    ledger.learn_price("company", "medium", 5.0, job_id="j3", sync_name="t")
    learned = ledger.learned_price("people", "low")
    assert learned is not None and learned[0] == 2.5
    assert ledger.learned_price("company", "medium") is not None


# ------------------------------------------------------------------ leases


def test_a_lease_is_held_until_released(backend: Adapter) -> None:
    ledger = _ledger(backend)
    with Lease(ledger, "s", "run-a"):
        with pytest.raises(LeaseHeldError, match="is being run by run run-a"):
            Lease(ledger, "s", "run-b").acquire()
        with Lease(ledger, "other-sync", "run-b"):
            pass  # another sync is free
    with Lease(ledger, "s", "run-b"):
        pass


def test_expiry_follows_the_warehouse_clock(backend: Adapter, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = _ledger(backend)
    held = Lease(ledger, "s", "run-a")
    held.acquire()
    # A host whose clock runs a day ahead still sees the lease held: expiry is the warehouse's.
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 86_400)
    with pytest.raises(LeaseHeldError):
        Lease(ledger, "s", "run-b").acquire()
    monkeypatch.undo()
    # Expired on the warehouse's clock (no renewal for the lease's lifetime): another run takes it.
    with backend.session() as s:
        s.update(ledger.leases, {"expires_epoch": 0.0}, {"sync_name": "s"})
    with Lease(ledger, "s", "run-b"):
        pass
    held._stop.set()  # the first run's renewals stopped long ago


def test_a_lease_held_by_a_process_that_is_gone_on_this_host_is_free(backend: Adapter) -> None:
    ledger = _ledger(backend)
    lease = Lease(ledger, "s", "run-dead")
    lease.acquire()
    lease._stop.set()
    with backend.session() as s:
        s.update(ledger.leases, {"pid": 2**22 + 12345}, {"sync_name": "s"})  # no such process
    with Lease(ledger, "s", "run-b"):
        pass


def test_a_lost_lease_stops_the_run_before_its_next_side_effect(backend: Adapter) -> None:
    ledger = _ledger(backend)
    lease = Lease(ledger, "s", "run-a")
    lease.acquire()
    try:
        lease.confirm()
        with backend.session() as s:  # another run took it over (say, after this one stalled)
            s.update(ledger.leases, {"run_id": "run-b"}, {"sync_name": "s"})
        with pytest.raises(LeaseLostError, match="another run took it over"):
            lease.confirm()
        ledger.guard = lease.check
        job, keys = _job()
        with pytest.raises(LeaseLostError):
            ledger.add_job(job, keys)
        assert ledger.job(job.job_id) is None
    finally:
        lease._stop.set()


def test_a_duplicate_lease_row_held_by_another_run_is_seen(backend: Adapter) -> None:
    """Snowflake does not enforce primary keys: two first runs may both insert the sync's row."""
    from sixtyfour_sync.engine.ledger.tables import _LEASE_COLUMNS
    from sixtyfour_sync.warehouse import Column, LogicalType

    if backend.dialect.insert_if_absent == "on_conflict":
        pytest.skip("the lease row is inserted with ON CONFLICT here, which needs (and has) the primary key")
    ledger = _ledger(backend)
    with backend.session() as s:  # the lease table as real Snowflake keeps it: no key enforced
        s.execute(f"DROP TABLE {backend.table_sql(ledger.leases)}")
        s.execute(backend.create_table_sql(ledger.leases, [], [Column("sync_name", LogicalType.TEXT), *_LEASE_COLUMNS]))
    with Lease(ledger, "s", "run-a"):
        pass
    with backend.session() as s:
        s.insert(ledger.leases, [{"sync_name": "s", "run_id": "run-x", "host": "h", "pid": 1, "expires_epoch": 4e9}])
    with pytest.raises(LeaseHeldError, match="run-x"):
        Lease(ledger, "s", "run-b").acquire()
    with backend.session() as s:
        held = s.select(ledger.leases, {"sync_name": "s"})
    assert {r["run_id"] for r in held} == {None, "run-x"}  # the refused run left nothing behind


def test_only_one_of_many_racing_runs_takes_the_lease(backend: Adapter) -> None:

    _ledger(backend)
    racers = 6
    adapters = [backend.sibling() for _ in range(racers)]
    winners: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(racers)

    def race(i: int) -> None:
        lease = Lease(Ledger(adapters[i], schema=backend.ledger_schema), "s", f"run-{i}")
        start.wait()
        try:
            lease.acquire()
        except LeaseHeldError:
            return
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            return
        winners.append(f"run-{i}")
        lease._stop.set()

    threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for a in adapters:
        if a is not backend:
            a.close()
    assert not errors, errors
    assert len(winners) == 1, winners


def test_a_lease_unrenewed_for_its_lifetime_is_still_ours_when_no_one_took_it(backend: Adapter) -> None:
    """The timer could not reach the warehouse (a DuckDB file a dbt build held): a check asks the warehouse
    before calling the lease lost. Still this run's row: renewed, the run goes on; taken meanwhile: lost."""
    ledger = _ledger(backend)
    now = [1000.0]
    lease = Lease(ledger, "s", "run-a", renew_every=3600, clock=lambda: now[0])
    lease.acquire()
    try:
        now[0] += lease.seconds * 2
        lease.check()  # renewed now: no error
        assert lease._last_ok == now[0]
        with backend.session() as s:  # expired on the warehouse's clock, and another run took it meanwhile
            s.update(ledger.leases, {"run_id": "run-b", "expires_epoch": 0.0}, {"sync_name": "s"})
        now[0] += lease.seconds * 2
        with pytest.raises(LeaseLostError, match="another run took it over"):
            lease.check()
    finally:
        lease._stop.set()
