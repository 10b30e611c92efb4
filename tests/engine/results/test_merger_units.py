"""The merger on a DuckDB file: answers and the ledger's moves in one transaction, a refused row held alone,
and the counts the run's accounting reads. A hand-written result, a real ledger, no API."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest

from sixtyfour_sync.api import ResultDownload
from sixtyfour_sync.config.models import LoadedSync, SyncSpec
from sixtyfour_sync.config.profiles import DuckDBTarget
from sixtyfour_sync.engine.context import EngineSettings, Reporter, SyncContext
from sixtyfour_sync.engine.jobs.driver import JobDriver, Tracked
from sixtyfour_sync.engine.jobs.scheduler import StopToken
from sixtyfour_sync.engine.jobs.states import JobState
from sixtyfour_sync.engine.ledger.store import Job, Ledger, LedgerConflictError, read_account, utcnow
from sixtyfour_sync.engine.results import quarantine
from sixtyfour_sync.engine.results.parse import parse_result
from sixtyfour_sync.engine.results.target_table import ensure_target
from sixtyfour_sync.engine.results.upsert import plan_merge
from sixtyfour_sync.engine.rows.select import HASH_COLUMN, KEY_PREFIX_COLUMN
from sixtyfour_sync.engine.summary import JobOutcome, SyncResult
from sixtyfour_sync.errors import WarehouseBusyError, WarehouseError
from sixtyfour_sync.warehouse.duckdb import DuckDBAdapter
from sixtyfour_sync.warehouse.types import TableRef

S = JobState
RUN = "run-1"
SPEC = SyncSpec.model_validate(
    {"name": "s", "endpoint": "people", "source": {"table": "t", "key": "id"},
     "struct": {"email": "Email", "employees": {"description": "n", "type": "int"}}, "target": {"table": "x"},
     "field_confidence": True, "min_confidence": 50}
)  # fmt: skip
#: What was sent: four rows (key, input hash, key-hash prefix).
SENT = pa.table(
    {
        "id": pa.array([1, 2, 3, 4], pa.int64()),
        HASH_COLUMN: ["h1", "h2", "h3", "h4"],
        KEY_PREFIX_COLUMN: ["p1", "p2", "p3", "p4"],
    }
)
#: What came back: 1 enriched, 2 enriched with a weak email (held back by min_confidence), 3 failed, 4 missing.
RESULT = pa.table(
    {
        "id": ["1", "2", "3"],
        "email": ["a@x.com", "b@x.com", None],
        "employees": ["10", "1000", None],
        "email_confidence": ["90", "20", None],
        "employees_confidence": ["80", "90", None],
        HASH_COLUMN: ["h1", "h2", "h3"],
    }
)


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.adapter = DuckDBAdapter(DuckDBTarget(type="duckdb", path=str(tmp_path / "w.duckdb")))
        self.ledger = Ledger(self.adapter)
        self.ledger.ensure()
        self.result = SyncResult("s")
        self.ctx = SyncContext(
            loaded=LoadedSync(SPEC, tmp_path / "models.yml", None, None),
            adapter=self.adapter,
            ledger=self.ledger,
            client=None,  # type: ignore[arg-type]
            run_id=RUN,
            settings=EngineSettings(state_dir=tmp_path),
            budget=None,  # type: ignore[arg-type]
            reporter=Reporter(),
            recorder=None,  # type: ignore[arg-type]
            stop=StopToken(),
            scheduler=None,  # type: ignore[arg-type]
            lease=None,
            result=self.result,
            target=TableRef("x"),
            spec_hash=SPEC.spec_hash(),
            key_types={"id": pa.int64()},
            results_dir=tmp_path,
        )
        host = SimpleNamespace(price=None, spend=lambda c: None, release_slot=lambda: None)
        self.driver = JobDriver(self.ctx, host)  # type: ignore[arg-type]
        self.tmp = tmp_path

    def job(self, job_id: str = "job-1", *, sent: pa.Table | None = SENT, charge: float = 4.0) -> Tracked:
        job = Job(job_id, RUN, "s", S.SUBMITTING, "h", "c", f"key-{job_id}", f"{job_id}.jsonl", 4,
                  tier="low", target=self.ctx.target_id)  # fmt: skip
        self.ledger.add_job(job, None)
        self.ledger.transition(job_id, S.SUBMITTING, S.SUBMITTED, task_id=f"task-{job_id}", estimated_cost_cents=4.0)
        t = Tracked(job=job, state=S.SUBMITTED, outcome=JobOutcome(job_id, job.file_name, 4, "submitted"),
                    sent=sent, task_id=f"task-{job_id}")  # fmt: skip
        # What polling found: the job completed and was charged (recorded with the merge, engine/jobs/driver.py).
        t.extra["completed"] = {"api_status": "completed", "charged_cents": charge, "api_charge_cents": charge}
        self.driver.track(t)
        return t

    def merge(self, *items: tuple[Tracked, pa.Table]) -> None:
        for t, result in items:
            parsed = parse_result(result, key_types={"id": pa.int64()}, struct=SPEC.struct, field_confidence=True,
                                  carry=[HASH_COLUMN])  # fmt: skip
            plan = plan_merge(SPEC, parsed, t.sent, task_id=t.task_id, now=utcnow(), file_label=t.job.file_name)
            path = self.tmp / f"{t.job_id}.jsonl"
            path.write_text("{}\n")
            self.driver.merger.pending.append((t, ResultDownload(path, "jsonl", "download", 3, None), plan))
        self.driver.merger.flush()

    def target(self) -> dict[int, dict[str, Any]]:
        if not self.adapter.table_exists(TableRef("x")):
            return {}
        with self.adapter.session() as s:
            return {r["id"]: r for r in s.select(TableRef("x"), None)}

    def state(self, job_id: str = "job-1") -> JobState:
        job = self.ledger.job(job_id)
        assert job is not None
        return job.state

    def row(self, job_id: str = "job-1") -> dict[str, Any]:
        [row] = [r for r in self.ledger.job_rows() if r["job_id"] == job_id]
        return row


def test_a_merge_writes_the_answers_and_the_jobs_moves_together(tmp_path: Path) -> None:
    w = World(tmp_path)
    t = w.job()
    w.merge((t, RESULT))
    rows = w.target()
    assert rows[1]["email"] == "a@x.com" and rows[1]["employees"] == 10
    assert rows[2]["email"] is None and rows[2]["email_confidence"] == 20  # held back: below min_confidence
    assert rows[2]["employees"] == 1000
    assert [rows[i]["_sixtyfour_status"] for i in (1, 2, 3, 4)] == ["enriched", "enriched", "failed", "failed"]
    assert {r["_sixtyfour_task_id"] for r in rows.values()} == {"task-job-1"}
    row = w.row()
    assert row["state"] == "merged" and t.state is S.MERGED
    # completed (with its charge), downloaded and merged were recorded, in that order, by this run
    assert row["completed_at"] <= row["downloaded_at"] <= row["merged_at"]
    assert row["charged_cents"] == 4.0 and row["charged_by"] == RUN and row["finished_by"] == RUN
    assert row["result_file"] == "job-1.jsonl" and row["result_format"] == "jsonl"
    assert not (tmp_path / "job-1.jsonl").exists()  # a merged result's file is removed


def test_the_counts_are_the_ones_the_accounting_reads(tmp_path: Path) -> None:
    w = World(tmp_path)
    t = w.job()
    w.merge((t, RESULT))
    row = w.row()
    assert (row["rows_enriched"], row["rows_failed"], row["rows_not_returned"]) == (2, 1, 1)
    assert row["rows_merged"] == 4  # every sent row is written: enriched, failed, and the one not returned
    assert row["rows_returned"] == 3  # the API answered three rows: what fill rates are over
    assert json.loads(row["filled"]) == {"email": 1, "employees": 2}  # b@x.com was gated, not filled
    assert json.loads(row["gated"]) == {"email": 1, "employees": 0}
    own = read_account(w.ledger, RUN).syncs["s"].own
    assert (own.rows_sent, own.rows_merged, own.returned, own.charged_cents) == (4, 4, 3, 4.0)
    assert own.filled == {"email": 1, "employees": 2} and own.gated == {"email": 1, "employees": 0}
    assert own.fill_rate == {"email": pytest.approx(1 / 3), "employees": pytest.approx(2 / 3)}
    # the run's own tally says the same as the ledger
    r = w.result
    assert (r.rows_merged, r.returned, r.filled) == (4, 3, {"email": 1, "employees": 2})
    assert r.gated == {"email": 1, "employees": 0}
    assert t.outcome.rows_enriched == 2 and t.outcome.rows_not_returned == 1


def test_a_ledger_write_that_fails_leaves_the_target_unchanged(tmp_path: Path, monkeypatch: Any) -> None:
    """Another run moved the job first: the merge's transaction is rolled back, answers and moves alike."""
    w = World(tmp_path)
    t = w.job()
    real = w.ledger.transition

    def lost_race(job_id: str, expected: JobState, new: JobState, **kw: Any) -> None:
        if new is S.MERGED:
            raise LedgerConflictError(f"job {job_id} was expected to be {expected.value} but is cancelled")
        real(job_id, expected, new, **kw)

    monkeypatch.setattr(w.ledger, "transition", lost_race)
    with pytest.raises(LedgerConflictError):
        w.merge((t, RESULT))
    assert w.target() == {}  # the table was made, no answer in it
    row = w.row()
    assert row["state"] == "submitted"  # completed and downloaded, written before the failure, rolled back too
    assert row["charged_cents"] is None and row["completed_at"] is None and row["downloaded_at"] is None


def test_a_warehouse_error_in_the_ledger_write_keeps_the_target_and_the_job_as_they_were(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The ledger's statement fails (the warehouse refused it): nothing of the merge is written."""
    w = World(tmp_path)
    t = w.job(sent=SENT.drop_columns([KEY_PREFIX_COLUMN]))  # rows cannot be held one by one: the file is held
    real = w.ledger.record_specs

    def refused(*args: Any, **kw: Any) -> None:
        raise WarehouseError("duckdb: the ledger table is locked")

    monkeypatch.setattr(w.ledger, "record_specs", refused)
    w.merge((t, RESULT))
    monkeypatch.setattr(w.ledger, "record_specs", real)
    assert w.target() == {}
    row = w.row()
    # The job is paid and kept: recorded completed (with its charge) and downloaded, for the next run to merge.
    assert row["state"] == "downloaded" and row["charged_cents"] == 4.0 and "locked" in row["error"]
    assert t.state is S.DOWNLOADED and w.result.status == "partial" and w.result.rows_merged == 0


def test_a_warehouse_out_of_reach_stops_the_merge_and_leaves_the_job_to_the_next_run(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Another process held the DuckDB file past lock_wait_seconds: not a refusal of the rows. The run stops; the
    job stays in flight (the next run polls it, finds it done and merges it), nothing is held or annotated."""
    w = World(tmp_path)
    t = w.job()

    def held(*args: Any, **kw: Any) -> None:
        raise WarehouseBusyError("duckdb: w.duckdb is locked by dbt (PID 7)")

    monkeypatch.setattr(w.ledger, "record_specs", held)
    with pytest.raises(WarehouseBusyError, match="PID 7"):
        w.merge((t, RESULT))
    monkeypatch.undo()
    assert w.target() == {} and w.ledger.quarantined("s") == []
    row = w.row()
    assert row["state"] == "submitted" and row["error"] is None and row["charged_cents"] is None
    assert t.state is S.SUBMITTED and t.extra["completed"]["charged_cents"] == 4.0  # as it was before the merge


def test_halving_a_refused_merge_stops_at_once_when_the_warehouse_is_out_of_reach() -> None:
    tried: list[tuple[int, int]] = []

    def attempt(start: int, stop: int) -> None:
        tried.append((start, stop))
        raise WarehouseBusyError("duckdb: w.duckdb is locked by dbt (PID 7)")

    with pytest.raises(WarehouseBusyError):
        quarantine.find_refused(attempt, 8)
    assert len(tried) == 1  # no row was taken for refused


def test_a_row_the_target_refuses_is_held_alone_and_the_rest_merges(tmp_path: Path) -> None:
    w = World(tmp_path)
    t = w.job()
    ensure_target(w.ctx)
    with w.adapter.session() as s:  # someone narrowed a column: 1000 employees no longer fits
        s.execute('ALTER TABLE main."x" ALTER COLUMN "employees" TYPE TINYINT')
    w.merge((t, RESULT))
    rows = w.target()
    assert sorted(rows) == [1, 3, 4] and rows[1]["employees"] == 10
    [held] = w.ledger.quarantined("s")
    assert json.loads(held["key_text"]) == {"id": 2} and held["key_prefix"] == "p2" and held["job_id"] == "job-1"
    assert "TINYINT" in held["reason"] or "out of range" in held["reason"]
    row = w.row()
    assert row["state"] == "merged" and row["rows_quarantined"] == 1 and row["charged_cents"] == 4.0
    assert row["rows_merged"] == 3 and row["rows_enriched"] == 1  # the held row is counted as held, not merged
    assert w.result.rows_quarantined == 1 and w.result.status == "partial"
    own = read_account(w.ledger, RUN).syncs["s"].own
    assert (own.rows_merged, own.rows_quarantined, own.charged_cents) == (3, 1, 4.0)


def test_a_batch_merges_files_together_and_one_bad_file_does_not_hold_the_others(tmp_path: Path) -> None:
    w = World(tmp_path)
    good = w.job("job-1")
    other = pa.table({"id": pa.array([11, 12], pa.int64()), HASH_COLUMN: ["h11", "h12"], KEY_PREFIX_COLUMN: ["q", "r"]})
    bad = w.job("job-2", sent=other, charge=2.0)
    broken = pa.table(
        {"id": ["11", "12"], "email": ["c@x.com", "d@x.com"], "employees": ["5", "99999"],
         "email_confidence": ["90", "90"], "employees_confidence": ["90", "90"], HASH_COLUMN: ["h11", "h12"]}
    )  # fmt: skip
    ensure_target(w.ctx)
    with w.adapter.session() as s:
        s.execute('ALTER TABLE main."x" ALTER COLUMN "employees" TYPE SMALLINT')  # 99999 does not fit
    w.merge((good, RESULT), (bad, broken))
    assert sorted(w.target()) == [1, 2, 3, 4, 11]
    assert w.state("job-1") is S.MERGED and w.state("job-2") is S.MERGED
    assert not w.row("job-1")["rows_quarantined"] and w.row("job-2")["rows_quarantined"] == 1
    assert [json.loads(q["key_text"]) for q in w.ledger.quarantined("s")] == [{"id": 12}]


def _fail_merged_once(w: World, monkeypatch: Any, job_id: str = "job-1") -> None:
    """The warehouse refuses the ledger's `merged` statement once (after `completed` was written in the same
    transaction): a blip, not a lost race."""
    real, failed = w.ledger.transition, []

    def blip(jid: str, expected: JobState, new: JobState, **kw: Any) -> None:
        if new is S.MERGED and jid == job_id and not failed:
            failed.append(jid)
            raise WarehouseError("duckdb: connection reset")
        real(jid, expected, new, **kw)

    monkeypatch.setattr(w.ledger, "transition", blip)


def test_a_warehouse_error_at_the_merged_move_writes_neither_answers_nor_moves(
    tmp_path: Path, monkeypatch: Any
) -> None:
    w = World(tmp_path)
    t = w.job()
    _fail_merged_once(w, monkeypatch)
    w.merge((t, RESULT))  # the rows all merge on their own: the whole merge is tried again, with its ledger write
    assert w.row()["state"] == "merged" and len(w.target()) == 4


def test_a_batch_whose_ledger_write_failed_is_merged_file_by_file(tmp_path: Path, monkeypatch: Any) -> None:
    w = World(tmp_path)
    a = w.job("job-1", sent=SENT.drop_columns([KEY_PREFIX_COLUMN]))
    other = pa.table({"id": pa.array([11], pa.int64()), HASH_COLUMN: ["h11"]})
    b = w.job("job-2", sent=other)
    answer = pa.table(
        {"id": ["11"], "email": ["c@x.com"], "employees": ["5"], "email_confidence": ["90"],
         "employees_confidence": ["90"], HASH_COLUMN: ["h11"]}
    )  # fmt: skip
    _fail_merged_once(w, monkeypatch, "job-2")
    w.merge((a, RESULT), (b, answer))
    assert w.state("job-1") is S.MERGED and w.state("job-2") is S.MERGED
