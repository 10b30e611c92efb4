"""One DuckDB database as this process holds it: shared by an adapter and its siblings, let go between uses.

DuckDB lets one process at a time write a database file, and the file stays locked while any connection of
the process has the database open (a cursor, an unfinished result). A run spends most of its life waiting for
the API: :meth:`DuckDBFile.release`, called where the run goes to wait (engine/runner.py), closes every
connection the process holds on the file, so another process (``dbt build``, a notebook) can take the lock
meanwhile. The next use opens the file again, waiting up to the profile's ``lock_wait_seconds`` while someone
else holds it.

- Uses are counted: a transaction or a stream holds the file from its start to its end, and a release while
  any is under way does nothing, so nothing loses its connection mid-work. Between transactions nothing lives
  on a connection (staged rows are registered and dropped inside a transaction; settings are applied again on
  every opening), so closing there changes nothing but the cost of the next opening.
- Only the explicit release lets go, never a timer: a bulk phase keeps one connection and reconnects nowhere.
- One thread opens the file at a time. The others wanting it wait for that opening; when it fails after a wait
  at least as long as theirs, they fail with it, so a file held past the wait fails every waiter once.
- After an opening waited its whole ``lock_wait_seconds`` in vain, the next ones try once without waiting
  (:data:`AFTER_GIVING_UP`), until one succeeds: a run stopping for that reason records what it can of its end
  without waiting the whole time again for each write.
- :meth:`DuckDBFile.waiting_at_most` bounds the current thread's wait (the lease's background renewal tries once
  and again later, rather than wait).
- An in-memory database, MotherDuck and a connection handed in by the caller are never released.
- Within a process DuckDB shares one database instance per file, so the file is free only once every adapter
  on it has let go: :func:`release_path` lets go of it in each one of this process where nothing is under way.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator

import duckdb

from sixtyfour_sync.errors import WarehouseBusyError, WarehouseError

__all__ = ["AFTER_GIVING_UP", "DuckDBFile", "connect_waiting", "holder_of", "is_lock_error", "release_path"]

log = logging.getLogger("sixtyfour_sync.warehouse.duckdb")

#: Seconds an opening waits for the file once an earlier one waited its whole ``lock_wait_seconds`` in vain.
AFTER_GIVING_UP = 0.0
_HOLDER = re.compile(r"held in (.+?) \(PID (\d+)\)")

#: Opens and configures the database, waiting up to the given seconds for a file another process holds.
Opener = Callable[[float], duckdb.DuckDBPyConnection]
#: Prepares a new cursor (the settings every cursor pins).
Prepare = Callable[[duckdb.DuckDBPyConnection], None]


_FILES: weakref.WeakSet[DuckDBFile] = weakref.WeakSet()
_FILES_LOCK = threading.Lock()


def release_path(path: str) -> int:
    """Let go of the database at ``path`` in every :class:`DuckDBFile` of this process where nothing is under
    way; how many let go now."""
    with _FILES_LOCK:
        files = [f for f in _FILES if f.path == path]
    return sum(f.release() for f in files)


def holder_of(text: str) -> str:
    """Who DuckDB's lock error says holds the file, as `` by <program> (PID n)``; ``""`` when it does not say."""
    m = _HOLDER.search(text)
    return f" by {m.group(1)} (PID {m.group(2)})" if m else ""


def is_lock_error(exc: BaseException) -> bool:
    """Whether ``exc`` is DuckDB refusing a file another process holds."""
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def connect_waiting(path: str, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
    """``duckdb.connect``, waiting up to ``wait`` seconds while another process holds the file's lock (said once,
    with who holds it, when the wait begins)."""
    started = time.monotonic()
    deadline = started + wait
    delay = 0.05
    told = False
    while True:
        try:
            con = duckdb.connect(path, read_only=read_only)
        except duckdb.IOException as exc:
            if not is_lock_error(exc) or time.monotonic() + delay > deadline:
                raise
            if not told:
                told = True
                who = holder_of(str(exc))
                log.warning("duckdb: %s is held%s; waiting up to %gs for it (lock_wait_seconds)", path, who, wait)
        else:
            if told:
                log.info("duckdb: %s is free again after %.1fs", path, time.monotonic() - started)
            return con
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


class DuckDBFile:
    """The connections of one adapter (and its siblings) to one DuckDB database (see the module docstring).

    ``opener(wait)`` opens and configures the database; ``prepare(cursor)`` readies each new cursor. A
    ``connection`` handed in is used as it is and never released (closed on :meth:`close` only when ``owns``).
    """

    def __init__(
        self,
        path: str,
        opener: Opener,
        prepare: Prepare,
        *,
        wait: float,
        releasable: bool,
        connection: duckdb.DuckDBPyConnection | None = None,
        owns: bool = True,
    ) -> None:
        #: The database's path as the adapter resolved it.
        self.path = path
        self._opener = opener
        self._prepare = prepare
        #: Seconds an opening waits for a file another process holds (the profile's ``lock_wait_seconds``).
        self.wait = wait
        self.releasable = releasable and connection is None
        self._owns = owns
        self._con = connection
        self._cond = threading.Condition(threading.Lock())
        self._users = 0
        self._slots: dict[int, duckdb.DuckDBPyConnection | None] = {}
        self._next_slot = 0
        self._opening: float | None = None  # the wait of the opening under way
        self._attempts = 0
        self._failure: WarehouseError | None = None
        self._gave_up = False
        self._closed = False
        self._local = threading.local()
        #: How many times the file was opened, and let go (for tests and logs).
        self.openings = 0
        self.releases = 0
        with _FILES_LOCK:
            _FILES.add(self)

    @property
    def is_open(self) -> bool:
        """Whether this process holds the database open now."""
        return self._con is not None

    # -- uses ----------------------------------------------------------------------------------------------

    def connection(self) -> duckdb.DuckDBPyConnection:
        """The process's connection to the database, opened when it is not (valid until the next release)."""
        with self._cond:
            return self._open_locked()

    def enter(self) -> duckdb.DuckDBPyConnection:
        """Begin a use (a transaction, a stream): the database stays open until the matching :meth:`leave`."""
        with self._cond:
            con = self._open_locked()
            self._users += 1
            return con

    def leave(self) -> None:
        """End a use begun by :meth:`enter`."""
        with self._cond:
            self._users = max(0, self._users - 1)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new prepared cursor, closed by the caller (who has entered: a release would close it)."""
        con = self.connection()
        cur = con.cursor()
        try:
            self._prepare(cur)
        except BaseException:
            cur.close()
            raise
        return cur

    def new_slot(self) -> int:
        """A place for a sibling's own cursor (see :meth:`slot`)."""
        with self._cond:
            self._next_slot += 1
            self._slots[self._next_slot] = None
            return self._next_slot

    def slot(self, slot: int) -> duckdb.DuckDBPyConnection:
        """The slot's cursor: made on first use and again after each release (the caller has entered)."""
        with self._cond:
            con = self._open_locked()
            if slot not in self._slots:
                raise WarehouseError("duckdb: the connection is closed")
            cur = self._slots[slot]
            if cur is None:
                cur = con.cursor()
                try:
                    self._prepare(cur)
                except BaseException:
                    cur.close()
                    raise
                self._slots[slot] = cur
            return cur

    def drop_slot(self, slot: int) -> None:
        """Close a slot's cursor for good (a sibling closed)."""
        with self._cond:
            cur = self._slots.pop(slot, None)
        if cur is not None:
            with contextlib.suppress(duckdb.Error):
                cur.close()

    # -- letting go ----------------------------------------------------------------------------------------

    def release(self) -> bool:
        """Close every connection on the database when nothing uses it, so another process may take the file;
        the next use opens it again. Whether it was let go now."""
        with self._cond:
            if not self.releasable or self._closed or self._con is None or self._users or self._opening is not None:
                return False
            self._close_locked()
            self.releases += 1
            return True

    def close(self) -> None:
        """Close everything for good."""
        with self._cond:
            self._closed = True
            self._close_locked()

    @contextlib.contextmanager
    def waiting_at_most(self, seconds: float) -> Iterator[None]:
        """Openings made by this thread within the block wait at most ``seconds`` for the file."""
        previous = getattr(self._local, "wait", None)
        self._local.wait = seconds
        try:
            yield
        finally:
            self._local.wait = previous

    # -- inside the lock -----------------------------------------------------------------------------------

    def _close_locked(self) -> None:
        cursors = [c for c in self._slots.values() if c is not None]
        self._slots = dict.fromkeys(self._slots)
        con, self._con = self._con, None
        for cur in cursors:
            with contextlib.suppress(duckdb.Error):
                cur.close()
        if con is not None and self._owns:
            with contextlib.suppress(duckdb.Error):
                con.close()

    def _wait_here(self) -> float:
        mine = getattr(self._local, "wait", None)
        wait = self.wait if mine is None else min(mine, self.wait)
        return min(wait, AFTER_GIVING_UP) if self._gave_up else wait

    def _open_locked(self) -> duckdb.DuckDBPyConnection:
        wait = self._wait_here()
        while True:
            if self._closed:
                raise WarehouseError("duckdb: the connection is closed")
            if self._con is not None:
                return self._con
            if self._opening is None:
                break
            # Another thread is opening it: wait for that, and share its failure unless this thread waits longer.
            shared, attempt = self._opening >= wait, self._attempts
            while self._opening is not None:
                self._cond.wait()
            failure = self._failure
            if shared and self._con is None and failure is not None and self._attempts == attempt + 1:
                raise type(failure)(failure.message, hint=failure.hint) from failure
        self._opening = wait
        self._cond.release()
        try:
            con = self._opener(wait)
        except BaseException as exc:
            self._cond.acquire()
            self._opening = None
            self._attempts += 1
            self._failure = exc if isinstance(exc, WarehouseError) else None
            if isinstance(exc, WarehouseBusyError) and wait >= self.wait:
                self._gave_up = True
            self._cond.notify_all()
            raise
        self._cond.acquire()
        self._opening = None
        self._attempts += 1
        self._failure = None
        self._gave_up = False
        self._cond.notify_all()
        if self._closed:
            con.close()
            raise WarehouseError("duckdb: the connection is closed")
        self._con = con
        self.openings += 1
        return con
