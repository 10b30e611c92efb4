"""When results waiting to be merged make a batch: new rows in big batches, updates one file's worth at a time."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pyarrow as pa

from sixtyfour_sync.engine.results.merger import BATCH_ROWS, MAX_BATCH_FILES, UPDATE_BATCH_ROWS, Merger
from sixtyfour_sync.warehouse.duckdb import DuckDBAdapter
from sixtyfour_sync.warehouse.postgres import PostgresAdapter
from sixtyfour_sync.warehouse.types import UpsertPart


def _item(rows: int, *, insert_only: bool) -> tuple[Any, Any, Any]:
    part = UpsertPart(pa.table({"id": pa.array(range(rows), pa.int64())}), ("v",), insert_only=insert_only)
    return (None, None, SimpleNamespace(rows=rows, parts=[part]))


def _merger(*items: tuple[Any, Any, Any], adapter: Any = DuckDBAdapter) -> Merger:
    ctx = SimpleNamespace(adapter=adapter)  # full() reads only what waits and the warehouse's batch size
    m = Merger(ctx=ctx, driver=None)  # type: ignore[arg-type]
    m.pending = list(items)
    return m


def test_new_rows_wait_for_a_quarter_million() -> None:
    assert UPDATE_BATCH_ROWS < BATCH_ROWS == DuckDBAdapter.capabilities.insert_batch_rows
    assert not _merger(_item(100_000, insert_only=True), _item(100_000, insert_only=True)).full()
    assert _merger(*[_item(100_000, insert_only=True)] * 3).full()


def test_the_warehouse_sets_how_many_new_rows_make_a_batch() -> None:
    """PostgreSQL merges new rows a file at a time: its only connection is not held for long."""
    assert PostgresAdapter.capabilities.insert_batch_rows == 100_000
    assert _merger(_item(100_000, insert_only=True), adapter=PostgresAdapter).full()
    assert not _merger(_item(60_000, insert_only=True), adapter=PostgresAdapter).full()
    assert not _merger(_item(100_000, insert_only=True), adapter=DuckDBAdapter).full()


def test_an_update_batch_is_one_file_of_a_hundred_thousand_rows() -> None:
    assert _merger(_item(100_000, insert_only=False)).full()
    assert not _merger(_item(40_000, insert_only=False), _item(40_000, insert_only=False)).full()
    assert _merger(*[_item(40_000, insert_only=False)] * 3).full()


def test_one_update_among_new_rows_makes_the_batch_an_update_batch() -> None:
    assert _merger(_item(60_000, insert_only=True), _item(60_000, insert_only=False)).full()


def test_many_small_files_make_a_batch_by_count() -> None:
    assert _merger(*[_item(10, insert_only=True)] * MAX_BATCH_FILES).full()
    assert not _merger(*[_item(10, insert_only=True)] * (MAX_BATCH_FILES - 1)).full()
