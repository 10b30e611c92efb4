"""An in-memory DuckDB per thread, for vectorised work on local files and Arrow tables.

Opening a DuckDB connection costs tens of milliseconds; a run parses and checks every result file with SQL,
so each thread keeps one connection and reuses it. Names registered on it are unique per use and removed
afterwards.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import pyarrow as pa

__all__ = ["local_duckdb", "registered"]

_local = threading.local()


def local_duckdb() -> duckdb.DuckDBPyConnection:
    """This thread's in-memory DuckDB connection (UTC session)."""
    con: duckdb.DuckDBPyConnection | None = getattr(_local, "con", None)
    if con is None:
        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone = 'UTC'")
        _local.con = con
    return con


@contextmanager
def registered(*tables: pa.Table) -> Iterator[tuple[duckdb.DuckDBPyConnection, list[str]]]:
    """Register Arrow tables under fresh names on this thread's connection; unregister them afterwards."""
    con = local_duckdb()
    names = [f"t_{uuid.uuid4().hex[:12]}" for _ in tables]
    for name, table in zip(names, tables, strict=True):
        con.register(name, table)
    try:
        yield con, names
    finally:
        for name in names:
            con.unregister(name)
