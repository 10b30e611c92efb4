"""Leases: at most one run works on a sync at a time, on any machine.

A lease is a row of ``_sixtyfour_sync_leases`` per sync and target (:func:`lease_name`). It is taken by ONE
conditional statement (free, expired, ours, or held by a process on this host that is gone) whose affected row
count says whether it
worked, so two runs can never both believe they hold it, even where primary keys are not enforced
(Snowflake): a second check after taking it sees a duplicate row held by someone else and gives the lease
back. Expiry is compared with the warehouse's own clock, never a host's.

While a sync runs, a timer thread renews the lease on its own connection; the engine confirms it before
every submission and checks it before every ledger write, and :class:`LeaseLostError` stops the run before
its next side effect when a renewal found someone else holding it or the lease ran out unrenewed.

The timer's renewal does not wait for a warehouse another process holds (a DuckDB file a ``dbt build`` has
open while the run waits for the API): it tries again at its next turn. When the renewals could not reach the
warehouse for the lease's lifetime, a check renews it at once (waiting for the warehouse as any write does):
the lease is still this run's when no one took it meanwhile, which the renewal's conditional update tells.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from sixtyfour_sync.engine.ledger.store import Ledger, utcnow
from sixtyfour_sync.errors import SixtyfourSyncError, WarehouseBusyError, WarehouseError
from sixtyfour_sync.warehouse.adapter import Adapter

__all__ = ["LEASE_SECONDS", "Lease", "LeaseHeldError", "LeaseLostError", "lease_name", "pid_alive"]

log = logging.getLogger("sixtyfour_sync.engine.lease")

#: How long a lease lives without a renewal (warehouse clock).
LEASE_SECONDS = 180.0
#: How often the timer thread renews it.
RENEW_EVERY = 30.0


def lease_name(sync_name: str, target_id: str) -> str:
    """The lease of a sync writing one target: syncs of one name writing other targets (dev and prod sharing a
    ledger) run side by side."""
    return f"{sync_name} -> {target_id}"


class LeaseHeldError(SixtyfourSyncError):
    """Another run holds the sync; this run does not touch its rows."""


class LeaseLostError(SixtyfourSyncError):
    """This run's lease was taken by another run or ran out: it stops before its next side effect."""

    hint = "jobs in flight are kept in the ledger; the run that holds the lease (or the next run) finishes them"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _now_epoch_sql(adapter: Adapter) -> str:
    return adapter.now_epoch_sql()


class Lease:
    """The lease of one sync for one run, renewed in the background while held.

    ``adapter`` should be a connection of its own (the engine passes a sibling of the main one), since the
    renewal thread uses it while the main thread works.
    """

    def __init__(
        self,
        ledger: Ledger,
        sync_name: str,
        run_id: str,
        *,
        seconds: float = LEASE_SECONDS,
        renew_every: float = RENEW_EVERY,
        clock: Any = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.adapter = ledger.adapter
        self.sync_name = sync_name
        self.run_id = run_id
        self.seconds = seconds
        self.renew_every = renew_every
        self._clock = clock
        self._lock = threading.Lock()
        self._held = False
        self._lost: str | None = None
        self._last_ok = 0.0
        self._unrenewed: str | None = None  # why the last renewal failed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- SQL -----------------------------------------------------------------------------------------

    def _q(self, name: str) -> str:
        return self.adapter.quote(name, what="ledger column")

    def _ensure_row(self) -> None:
        """The sync's lease row exists (free when new): one statement, safe when two first runs race."""
        with self.adapter.session() as s:
            s.insert_if_absent(self.ledger.leases, {"sync_name": self.sync_name, "expires_epoch": 0.0}, ["sync_name"])

    def _holders(self) -> list[dict[str, Any]]:
        with self.adapter.session() as s:
            rows = s.select(
                self.ledger.leases,
                {"sync_name": self.sync_name},
                columns=["run_id", "host", "pid", "expires_epoch"],
            )
            now = s.fetchone(f"SELECT {_now_epoch_sql(self.adapter)}")
        clock = float(now[0]) if now and now[0] is not None else time.time()
        for r in rows:
            r["live"] = r["run_id"] is not None and float(r["expires_epoch"] or 0) >= clock
            r["left"] = float(r["expires_epoch"] or 0) - clock
        return rows

    def _dead_here(self, holder: Mapping[str, Any]) -> bool:
        return holder["host"] == self.ledger.host and not pid_alive(int(holder["pid"] or 0))

    # -- life cycle ------------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the lease or raise :class:`LeaseHeldError` naming who holds it and for how long.

        A write conflict with a run taking the same lease at the same instant (DuckDB and Snowflake refuse one
        of two concurrent writers) is tried again after a moment, when the other run's write is visible.
        """
        for attempt in range(6):
            try:
                self._try_acquire()
                return
            except LeaseHeldError:
                raise
            except Exception:
                if attempt == 5:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _try_acquire(self) -> None:
        a, q = self.adapter, self._q
        self._ensure_row()
        stale = [str(h["run_id"]) for h in self._holders() if h["run_id"] and self._dead_here(h)]
        now = _now_epoch_sql(a)
        free = f"{q('run_id')} IS NULL OR {q('run_id')} = ? OR {q('expires_epoch')} < {now}"
        free += "".join(f" OR {q('run_id')} = ?" for _ in stale)
        sql = (
            f"UPDATE {a.table_sql(self.ledger.leases)} SET {q('run_id')} = ?, {q('host')} = ?, {q('pid')} = ?, "
            f"{q('acquired_at')} = ?, {q('expires_epoch')} = {now} + {float(self.seconds)}, "
            f"{q('renewed_epoch')} = {now} WHERE {q('sync_name')} = ? AND ({free})"
        )
        params = [self.run_id, self.ledger.host, self.ledger.pid, utcnow(), self.sync_name, self.run_id, *stale]
        with a.session() as s:
            taken = s.execute_count(sql, params)
        others = [h for h in self._holders() if h["live"] and h["run_id"] != self.run_id]
        if taken == 0 or others:
            if taken:
                self._give_back()
            holders = self._holders()
            holder = others[0] if others else (holders[0] if holders else None)
            raise self._held_error(holder)
        self._held = True
        self._last_ok = self._clock()
        self._start_thread()

    def _held_error(self, holder: Mapping[str, Any] | None) -> LeaseHeldError:
        if not holder or not holder.get("run_id"):
            return LeaseHeldError(f"sync {self.sync_name!r} was taken by another run just now")
        left = max(0, int(holder.get("left") or 0))
        return LeaseHeldError(
            f"sync {self.sync_name!r} is being run by run {holder['run_id']} (host {holder['host']}, "
            f"pid {holder['pid']}); its lease expires in {left}s",
            hint="wait for that run to finish; if it died on another machine, the lease frees itself "
            f"after {int(self.seconds)}s",
        )

    def renew(self) -> None:
        """Extend the lease now; mark it lost when someone else holds it."""
        if not self._held:
            return
        a, q = self.adapter, self._q
        now = _now_epoch_sql(a)
        sql = (
            f"UPDATE {a.table_sql(self.ledger.leases)} SET {q('expires_epoch')} = {now} + {float(self.seconds)}, "
            f"{q('renewed_epoch')} = {now} WHERE {q('sync_name')} = ? AND {q('run_id')} = ?"
        )
        with self._lock:
            try:
                with a.session() as s:
                    n = s.execute_count(sql, [self.sync_name, self.run_id])
            except WarehouseBusyError as exc:
                self._unrenewed = str(exc)
                log.info("the lease of %s is renewed once the warehouse is free (%s)", self.sync_name, exc)
                return
            except WarehouseError as exc:
                self._unrenewed = str(exc)
                log.warning("renewing the lease of %s failed (%s); trying again", self.sync_name, exc)
                return
            if n == 0:
                self._lost = "another run took it over"
            else:
                self._last_ok = self._clock()
                self._unrenewed = None

    @property
    def held(self) -> bool:
        """Whether this run took the lease (and has not given it back)."""
        return self._held

    def check(self) -> None:
        """Raise :class:`LeaseLostError` when the lease is no longer this run's."""
        if not self._held:
            return
        if self._lost is None and self._stale():
            self.renew()  # the timer could not reach the warehouse: ask it now whether the lease is still ours
        if self._lost is None and self._stale():
            why = f" ({self._unrenewed})" if self._unrenewed else ""
            self._lost = f"it was not renewed for {self.seconds:.0f}s{why}"
        if self._lost is not None:
            raise LeaseLostError(f"the lease of sync {self.sync_name!r} was lost: {self._lost}")

    def _stale(self) -> bool:
        return bool(self._clock() - self._last_ok > self.seconds - 5.0)

    def confirm(self) -> None:
        """Renew now and check: done before each submission, the side effect that costs money."""
        self.renew()
        self.check()

    def release(self) -> None:
        """Stop renewing and give the lease back (only if it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._held:
            self._give_back()
            self._held = False

    def _give_back(self) -> None:
        a, q = self.adapter, self._q
        sql = (
            f"UPDATE {a.table_sql(self.ledger.leases)} SET {q('run_id')} = NULL, {q('expires_epoch')} = 0 "
            f"WHERE {q('sync_name')} = ? AND {q('run_id')} = ?"
        )
        with self._lock:
            try:
                with a.session() as s:
                    s.execute_count(sql, [self.sync_name, self.run_id])
            except WarehouseError as exc:
                log.warning("giving back the lease of %s failed (%s); it expires by itself", self.sync_name, exc)

    def _start_thread(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.renew_every):
                with self.adapter.background():  # a warehouse held elsewhere is not waited for here
                    self.renew()
                if self._lost is not None:
                    return

        self._thread = threading.Thread(target=loop, name=f"lease-{self.sync_name}", daemon=True)
        self._thread.start()

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
