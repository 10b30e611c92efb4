"""Letting go of a DuckDB file between transactions (warehouse/duckdb_file.py): another process can write it
meanwhile, the next use opens it again, and nothing under way ever loses its connection."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sixtyfour_sync.config.profiles import parse_target_config
from sixtyfour_sync.errors import WarehouseBusyError
from sixtyfour_sync.warehouse import TableRef, connect
from sixtyfour_sync.warehouse.duckdb import DuckDBAdapter
from sixtyfour_sync.warehouse.duckdb_file import AFTER_GIVING_UP


def _adapter(db: Path, **extra: Any) -> DuckDBAdapter:
    adapter = connect(parse_target_config({"type": "duckdb", "path": str(db), **extra}))
    assert isinstance(adapter, DuckDBAdapter)
    return adapter


def _other_process_writes(db: Path, *, within: float = 0.0) -> str:
    """Another process opens the file for writing (trying for up to ``within`` seconds) and adds a row: "ok", or
    DuckDB's error."""
    code = textwrap.dedent(
        f"""
        import duckdb, time
        deadline = time.monotonic() + {within}
        while True:
            try:
                con = duckdb.connect({str(db)!r})
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    print(exc)
                    raise SystemExit
                time.sleep(0.05)
        if True:
            con.execute("INSERT INTO t VALUES (99)")
            con.close()
            print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return (out.stdout + out.stderr).strip()


@contextmanager
def holding(db: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the file open for writing until the block ends (or its stdin is closed)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys\ncon = duckdb.connect({str(db)!r})\nprint('ready', flush=True)\nsys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield holder
    finally:
        assert holder.stdin is not None
        if not holder.stdin.closed:
            holder.stdin.close()
        holder.wait(timeout=30)


def _let_go(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.close()


def _table(adapter: DuckDBAdapter) -> TableRef:
    with adapter.session() as s:
        s.execute('CREATE TABLE IF NOT EXISTS "main"."t" (id BIGINT)')
        s.execute('INSERT INTO "main"."t" VALUES (1)')
    return TableRef("t")


def _ids(adapter: DuckDBAdapter) -> list[int]:
    with adapter.session() as s:
        return [int(r[0]) for r in s.fetchall('SELECT id FROM "main"."t" ORDER BY id')]


def test_released_the_file_is_another_process_s_and_the_next_use_opens_it_again(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    with _adapter(db, settings={"threads": 1}) as adapter:
        _table(adapter)
        assert "Conflicting lock" in _other_process_writes(db)  # held while open
        assert adapter.release() is True
        assert _other_process_writes(db) == "ok"  # another process writes meanwhile
        assert _ids(adapter) == [1, 99]  # opened again, and sees what it wrote
        with adapter.session() as s:  # configured again: the pinned settings and the profile's
            assert s.fetchall("SELECT current_setting('TimeZone'), current_setting('threads')")[0] == ("UTC", 1)
        assert adapter.release() is True and adapter.release() is False  # nothing left to let go


def test_nothing_under_way_loses_its_connection(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    with _adapter(db) as adapter:
        _table(adapter)
        with adapter.session() as s:
            s.execute('INSERT INTO "main"."t" VALUES (2)')
            assert adapter.release() is False  # a transaction is under way: kept
            s.execute('INSERT INTO "main"."t" VALUES (3)')
        stream = adapter.stream('SELECT id FROM "main"."t"', batch_rows=1)
        first = next(stream)
        assert adapter.release() is False  # a read is under way: kept
        rest = [b.num_rows for b in stream]
        assert first.num_rows == 1 and sum(rest) == 2
        assert adapter.release() is True  # the stream ended: let go
        assert _other_process_writes(db) == "ok"
        abandoned = adapter.stream('SELECT id FROM "main"."t"', batch_rows=1)
        next(abandoned)
        abandoned.close()  # closed early: it no longer holds the file
        assert adapter.release() is True
        assert _other_process_writes(db) == "ok"


def test_siblings_share_the_file_and_let_go_with_it(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    with _adapter(db) as adapter:
        _table(adapter)
        sibling = adapter.sibling()
        with sibling.session() as s:
            s.execute('INSERT INTO "main"."t" VALUES (5)')
            assert adapter.release() is False  # the sibling's transaction holds the file
        assert _ids(sibling) == [1, 5]
        assert sibling.release() is True  # either of them lets go of the whole file (the sibling's cursor too)
        assert _other_process_writes(db) == "ok"
        assert _ids(sibling) == [1, 5, 99] and _ids(adapter) == [1, 5, 99]  # both open it again
        sibling.close()
        assert _ids(adapter) == [1, 5, 99]


def test_every_adapter_of_the_process_on_the_file_lets_go(tmp_path: Path) -> None:
    """Two profile targets on one file (dev and prod schemas) share DuckDB's instance: both must let go."""
    db = tmp_path / "w.duckdb"
    with _adapter(db) as adapter, _adapter(db, schema="prod") as other:
        _table(adapter)
        assert other.table_exists(TableRef("t", schema="main"))  # open, idle
        with other.session():
            assert adapter.release() is True
            assert "Conflicting lock" in _other_process_writes(db)  # the other one is in a transaction
        assert adapter.release() is False  # nothing left of its own, but the other one, idle now, lets go too
        assert _other_process_writes(db) == "ok"
        assert other.table_exists(TableRef("t", schema="main"))  # opened again
        assert adapter.release() is False and other._file.is_open is False  # let go with it
        assert _other_process_writes(db) == "ok"
        assert _ids(adapter) == [1, 99, 99]


def test_an_in_memory_database_is_never_let_go() -> None:
    with connect(parse_target_config({"type": "duckdb", "path": ":memory:"})) as adapter:
        assert isinstance(adapter, DuckDBAdapter)
        with adapter.session() as s:
            s.execute("CREATE TABLE t (id BIGINT)")
        assert adapter.release() is False
        assert adapter.table_exists(TableRef("t"))


def test_opening_again_waits_for_the_holder_and_says_who_it_is(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "w.duckdb"
    with _adapter(db, lock_wait_seconds=30) as adapter:
        _table(adapter)
        assert adapter.release()
        with caplog.at_level(logging.INFO, "sixtyfour_sync.warehouse.duckdb"), holding(db) as holder:
            threading.Timer(1.0, _let_go, [holder]).start()
            started = time.monotonic()
            assert _ids(adapter) == [1]  # waited, then went on
            waited = time.monotonic() - started
        assert waited >= 0.5
        assert "is held by" in caplog.text and f"(PID {holder.pid}); waiting up to 30s" in caplog.text
        assert "is free again after" in caplog.text


def test_a_holder_past_the_wait_is_a_clear_error_and_the_next_openings_do_not_wait_it_all_again(
    tmp_path: Path,
) -> None:
    db = tmp_path / "w.duckdb"
    with _adapter(db, lock_wait_seconds=3) as adapter:
        _table(adapter)
        assert adapter.release()
        with holding(db) as holder:
            started = time.monotonic()
            with pytest.raises(WarehouseBusyError) as info:
                _ids(adapter)
            assert 2.5 <= time.monotonic() - started < 10
            text = str(info.value)
            assert f"(PID {holder.pid})" in text and "was not let go within 3s (lock_wait_seconds)" in text
            assert info.value.hint and "lock_wait_seconds" in info.value.hint
            started = time.monotonic()
            with pytest.raises(WarehouseBusyError):
                _ids(adapter)  # a run stopping for it records its end without waiting the whole time again
            assert time.monotonic() - started < AFTER_GIVING_UP + 1.5
        assert _ids(adapter) == [1]  # free again: it opens


def test_threads_waiting_for_one_opening_share_its_outcome(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    with _adapter(db, lock_wait_seconds=2) as adapter:
        _table(adapter)
        sibling = adapter.sibling()
        assert adapter.release()
        failures: list[BaseException] = []

        def use(a: DuckDBAdapter) -> None:
            try:
                _ids(a)
            except BaseException as exc:
                failures.append(exc)

        with holding(db):
            started = time.monotonic()
            threads = [threading.Thread(target=use, args=(a,)) for a in (adapter, sibling, adapter, sibling)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            elapsed = time.monotonic() - started
        assert len(failures) == 4 and all(isinstance(f, WarehouseBusyError) for f in failures)
        assert elapsed < 2 * 2  # one wait for all of them, not one after another
        sibling.close()


def test_background_work_does_not_wait_and_leaves_the_file_as_it_found_it(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    with _adapter(db, lock_wait_seconds=30) as adapter:
        _table(adapter)
        sibling = adapter.sibling()
        assert adapter.release()
        with sibling.background():
            assert _ids(sibling) == [1]
        assert _other_process_writes(db) == "ok"  # let go again after the background work
        with holding(db):
            started = time.monotonic()
            with pytest.raises(WarehouseBusyError), sibling.background():
                _ids(sibling)
            assert time.monotonic() - started < 2  # it did not wait
        assert _ids(adapter) == [1, 99]  # the foreground still waits as usual (and the holder is gone)
        with sibling.background():  # the file was open: background work leaves it open
            _ids(sibling)
        assert "Conflicting lock" in _other_process_writes(db)
        sibling.close()


def test_releasing_from_another_thread_never_breaks_work_under_way(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    with _adapter(db) as adapter:
        _table(adapter)
        sibling = adapter.sibling()
        stop = threading.Event()
        errors: list[BaseException] = []
        released = 0

        def releaser() -> None:
            nonlocal released
            while not stop.is_set():
                released += int(adapter.release())
                time.sleep(0.001)

        def writer(a: DuckDBAdapter, start: int) -> None:
            try:
                for i in range(start, start + 40):
                    with a.session() as s:
                        s.execute('INSERT INTO "main"."t" VALUES (?)', [i])
                        s.execute('INSERT INTO "main"."t" VALUES (?)', [-i])
                    assert sum(b.num_rows for b in a.stream('SELECT id FROM "main"."t"')) >= 3
                    time.sleep(0.005 * (i % 3))  # moments when nothing is under way
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=releaser)]
        threads += [threading.Thread(target=writer, args=(a, n)) for a, n in ((adapter, 100), (sibling, 200))]
        for t in threads[1:]:
            t.start()
        threads[0].start()
        for t in threads[1:]:
            t.join(120)
        stop.set()
        threads[0].join(10)
        assert errors == []
        ids = _ids(adapter)
        assert len(ids) == 1 + 2 * 80 and sorted(set(ids)) == sorted(ids)  # every transaction whole, none twice
        assert released > 0  # it really let go between them
        sibling.close()


@pytest.mark.slow
def test_the_lease_is_renewed_without_holding_or_waiting_for_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from sixtyfour_sync.engine.ledger.lease import Lease
    from sixtyfour_sync.engine.ledger.store import Ledger

    db = tmp_path / "w.duckdb"
    with _adapter(db, lock_wait_seconds=30) as adapter:
        _table(adapter)
        ledger = Ledger(adapter)
        ledger.ensure()
        lease_adapter = adapter.sibling()
        lease = Lease(Ledger(lease_adapter, schema=ledger.schema), "s", "run-a", seconds=6.0, renew_every=1.0)
        lease.acquire()
        try:
            assert adapter.release()
            time.sleep(1.5)  # a renewal: it lets go of the file again (a moment later, the next one takes it)
            assert lease_adapter._file.openings >= 2 and lease_adapter._file.releases >= 2
            assert _other_process_writes(db, within=3.0) == "ok"
            with caplog.at_level(logging.INFO, "sixtyfour_sync.engine.lease"), holding(db) as holder:
                threading.Timer(5.0, _let_go, [holder]).start()
                time.sleep(2.0)  # unrenewed past the check's margin (seconds - 5): the timer cannot reach the file
                assert "is renewed once the warehouse is free" in caplog.text
                started = time.monotonic()
                lease.check()  # asks the warehouse, waiting for the holder: still this run's lease
                assert time.monotonic() - started > 1.0
            assert lease.held and lease._lost is None
        finally:
            lease.release()
            lease_adapter.close()
