"""One question per inputs, the pure parts: which rows ask, how files hold the rows that share a question, how a
result is shared with them, and the SQL that orders and counts them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from sixtyfour_sync.engine.results.parse import ParsedResult
from sixtyfour_sync.engine.rows.extract import Questions, first_of_each_question, mark_duplicated
from sixtyfour_sync.engine.rows.files import ASKS, head_chunk, split_at_questions, tail_chunk, write_chunks
from sixtyfour_sync.engine.rows.select import HASH_COLUMN, KEY_HASH_COLUMN, KEY_ROWS_COLUMN


def _rows(keys: list[int], hashes: list[str]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "id": keys,
            "name": [f"n-{h}" for h in hashes],
            HASH_COLUMN: hashes,
            KEY_HASH_COLUMN: [f"k{k:016d}" for k in keys],
        }
    )


# --- which rows ask ---------------------------------------------------------------------------------------------


def test_the_first_row_of_each_run_of_inputs_asks_across_batches() -> None:
    q = Questions()
    a = q.pair(_rows([1, 5, 2, 3], ["a", "a", "b", "c"]))
    b = q.pair(_rows([7, 4], ["c", "d"]))  # 7 shares its inputs with 3, the last row of the batch before
    assert a.column(ASKS).to_pylist() == [True, False, True, True]
    assert b.column(ASKS).to_pylist() == [False, True]
    assert q.followers == 2


def test_an_empty_batch_gets_the_column_too() -> None:
    assert Questions().pair(_rows([], [])).schema.names[-1] == ASKS


def test_first_of_each_question_puts_each_question_first_then_its_rows_in_key_order() -> None:
    rows = pa.Table.from_batches([_rows([1, 2, 3, 4, 5], ["b", "a", "b", "c", "a"])])
    out = first_of_each_question(rows)
    assert out.column("id").to_pylist() == [1, 3, 2, 5, 4]
    assert out.column(ASKS).to_pylist() == [True, False, True, False, True]


def test_a_key_the_whole_source_holds_twice_is_counted_as_such_in_every_bucket() -> None:
    batch = _rows([1, 2], ["a", "b"]).append_column(KEY_ROWS_COLUMN, pa.array([1, 1], pa.int64()))
    out = mark_duplicated(batch, pa.array([f"k{2:016d}"]))
    assert out.column(KEY_ROWS_COLUMN).to_pylist() == [1, 2]
    assert mark_duplicated(batch, None) is batch


# --- files ------------------------------------------------------------------------------------------------------


def _asking(keys: list[int], hashes: list[str]) -> list[pa.RecordBatch]:
    return [Questions().pair(_rows(keys, hashes))]


def test_a_file_holds_one_row_per_question_and_keeps_the_rows_that_share_it(tmp_path: Path) -> None:
    # questions: a (1, 9), b (2), c (3, 8, 7), d (4), e (5)
    batches = _asking([1, 9, 2, 3, 8, 7, 4, 5], ["a", "a", "b", "c", "c", "c", "d", "e"])
    keep = ["id", KEY_HASH_COLUMN, HASH_COLUMN, ASKS]
    files = list(write_chunks(batches, out_dir=tmp_path, prefix="s", chunk_rows=3, keep=keep, asks=ASKS,
                              drop=[KEY_HASH_COLUMN]))  # fmt: skip
    assert [f.rows for f in files] == [3, 2]  # questions, not rows
    sent = [[json.loads(line)["id"] for line in f.path.read_text().splitlines()] for f in files]
    assert sent == [[1, 2, 3], [4, 5]]
    assert all(ASKS not in json.loads(f.path.read_text().splitlines()[0]) for f in files)
    assert files[0].kept is not None and files[0].kept.column("id").to_pylist() == [1, 9, 2, 3, 8, 7]


def test_a_question_is_never_split_between_two_files_whatever_the_batches(tmp_path: Path) -> None:
    q = Questions()
    batches = [q.pair(_rows([1, 2], ["a", "b"])), q.pair(_rows([6, 7], ["b", "b"])), q.pair(_rows([3], ["c"]))]
    files = list(write_chunks(batches, out_dir=tmp_path, prefix="s", chunk_rows=2, keep=["id", ASKS], asks=ASKS))
    assert [f.kept.column("id").to_pylist() for f in files if f.kept is not None] == [[1, 2, 6, 7], [3]]
    assert [f.rows for f in files] == [2, 1]


def test_the_same_rows_give_the_same_file_as_a_rebuild_reads_them(tmp_path: Path) -> None:
    """A rebuild reads the job's rows in key order and finds the same first rows: the same bytes."""
    first = list(write_chunks(_asking([1, 9, 2, 3, 8], ["a", "a", "b", "c", "c"]), out_dir=tmp_path / "a",
                              prefix="s", chunk_rows=10, asks=ASKS, keep=["id", ASKS]))  # fmt: skip
    by_key = pa.Table.from_batches([_rows([1, 2, 3, 8, 9], ["a", "b", "c", "c", "a"])])
    rebuilt = list(write_chunks(first_of_each_question(by_key).to_batches(), out_dir=tmp_path / "b", prefix="s",
                                chunk_rows=10, asks=ASKS, keep=["id", ASKS]))  # fmt: skip
    assert first[0].content_hash == rebuilt[0].content_hash


def test_a_file_over_the_byte_limit_is_split_between_questions(tmp_path: Path) -> None:
    batches = _asking(list(range(1, 41)), [f"h{i // 2}" for i in range(40)])  # 20 questions of 2 rows
    files = list(write_chunks(batches, out_dir=tmp_path, prefix="s", chunk_rows=40, max_bytes=600, asks=ASKS,
                              keep=["id", HASH_COLUMN, ASKS]))  # fmt: skip
    assert len(files) > 1 and sum(f.rows for f in files) == 20
    for f in files:
        assert f.kept is not None and f.kept.num_rows == 2 * f.rows  # each question with both its rows


def test_cutting_a_file_keeps_each_question_with_its_rows(tmp_path: Path) -> None:
    (chunk,) = write_chunks(_asking([1, 9, 2, 3, 8], ["a", "a", "b", "c", "c"]), out_dir=tmp_path, prefix="s",
                            chunk_rows=10, asks=ASKS, keep=["id", ASKS])  # fmt: skip
    assert chunk.rows == 3 and chunk.kept is not None
    assert split_at_questions(chunk.kept, 1, ASKS) == 2 and split_at_questions(chunk.kept, 3, ASKS) == 5
    head, tail = head_chunk(chunk, 2), tail_chunk(chunk, 2)
    assert head.kept is not None and head.kept.column("id").to_pylist() == [1, 9, 2]
    assert tail.kept is not None and tail.kept.column("id").to_pylist() == [3, 8]
    assert [json.loads(line)["id"] for line in tail.path.read_text().splitlines()] == [3]


# --- sharing an answer ------------------------------------------------------------------------------------------


def test_each_sent_row_without_a_result_of_its_own_gets_the_answer_of_its_inputs() -> None:
    from sixtyfour_sync.engine.results.upsert import reconcile

    from_api = pa.table(
        {"id": [1, 2], "email": ["a@x", None], "_sixtyfour_status": ["enriched", "failed"], HASH_COLUMN: ["a", "b"]}
    )
    sent = pa.table({"id": [1, 9, 2, 7, 5], HASH_COLUMN: ["a", "a", "b", "b", "z"]})
    parsed = _parsed(from_api)
    rec = reconcile(parsed, sent, ["id"])
    got = {r["id"]: (r["email"], r["_sixtyfour_status"], r["__sent_hash"]) for r in rec.returned.to_pylist()}
    assert got == {
        1: ("a@x", "enriched", "a"),
        9: ("a@x", "enriched", "a"),
        2: (None, "failed", "b"),
        7: (None, "failed", "b"),  # a failed answer is shared too
    }
    assert rec.shared == 2
    assert rec.missing.column("id").to_pylist() == [5]  # its question came back without a row: not answered


def test_a_result_merged_with_shared_answers_counts_them() -> None:
    from datetime import datetime, timezone

    from sixtyfour_sync.config.models import SyncSpec
    from sixtyfour_sync.engine.results.upsert import plan_merge

    spec = SyncSpec.model_validate(
        {
            "name": "s",
            "endpoint": "people",
            "source": {"table": "t", "key": "id", "columns": ["name"]},
            "struct": {"email": "Email"},
            "target": {"table": "out"},
        }
    )
    from_api = pa.table({"id": [1], "email": ["a@x"], "_sixtyfour_status": ["enriched"], HASH_COLUMN: ["a"]})
    sent = pa.table({"id": [1, 9, 8], HASH_COLUMN: ["a", "a", "a"]})
    plan = plan_merge(spec, _parsed(from_api), sent, task_id="t1", now=datetime.now(timezone.utc), file_label="f")
    assert (plan.enriched, plan.deduplicated, plan.not_returned, plan.rows) == (3, 2, 0, 3)
    assert plan.parts[0].data.column("id").to_pylist() == [1, 9, 8]


def _parsed(table: pa.Table) -> ParsedResult:
    return ParsedResult(table=table, rows_read=table.num_rows)


# --- the SQL ----------------------------------------------------------------------------------------------------


def test_the_selection_puts_the_rows_sharing_inputs_after_the_first_of_them(tmp_path: Path) -> None:
    from sixtyfour_sync.config.models import SyncSpec
    from sixtyfour_sync.config.profiles import parse_target_config
    from sixtyfour_sync.engine.rows.select import build_selection, count_questions_sql
    from sixtyfour_sync.warehouse.duckdb import DuckDBAdapter
    from sixtyfour_sync.warehouse.types import TableRef

    spec = SyncSpec.model_validate(
        {
            "name": "s",
            "endpoint": "people",
            "source": {"table": "src", "key": "id", "columns": ["name"]},
            "struct": {"email": "Email"},
            "target": {"table": "out"},
        }
    )
    adapter = DuckDBAdapter(parse_target_config({"type": "duckdb", "path": str(tmp_path / "w.duckdb")}))
    try:
        with adapter.session() as s:
            s.execute("CREATE TABLE src (id INTEGER, name VARCHAR)")
            s.execute("INSERT INTO src VALUES (5, 'x'), (1, 'y'), (4, 'x'), (2, 'z'), (3, 'y'), (6, 'x'), (6, 'w')")
        sel = build_selection(adapter, spec, source_sql="SELECT * FROM src", inputs=["name"],
                              target=TableRef("out", "main"), target_columns=None, spec_hash="h")  # fmt: skip
        with adapter.session() as s:
            ids = [r[0] for r in s.fetchall(sel.sql)]
            # y: 1, 3; z: 2; x: 4, 5 -> by the first key of each group; 6 is held twice: a group of its own key
            assert ids[:5] == [1, 3, 2, 4, 5] and ids[5:] == [6, 6]
            assert tuple(s.fetchone(count_questions_sql(adapter, sel)) or ()) == (5, 3)
    finally:
        adapter.close()


def test_a_rebuilt_file_asks_once_per_question_unless_its_job_had_every_row_ask(tmp_path: Path) -> None:
    """A job's file held one row per question; a job written before that held every row: each is rebuilt as
    it was, by the number of rows its file held against the keys the ledger kept."""
    from sixtyfour_sync.config.models import SyncSpec
    from sixtyfour_sync.config.profiles import parse_target_config
    from sixtyfour_sync.engine.ledger.rowkeys import key_prefix
    from sixtyfour_sync.engine.rows.extract import rebuild_file
    from sixtyfour_sync.engine.rows.select import build_selection, rebuild_sql
    from sixtyfour_sync.warehouse.duckdb import DuckDBAdapter
    from sixtyfour_sync.warehouse.types import TableRef

    spec = SyncSpec.model_validate(
        {
            "name": "s",
            "endpoint": "people",
            "source": {"table": "src", "key": "id", "columns": ["name"]},
            "struct": {"email": "Email"},
            "target": {"table": "out"},
        }
    )
    adapter = DuckDBAdapter(parse_target_config({"type": "duckdb", "path": str(tmp_path / "w.duckdb")}))
    try:
        with adapter.session() as s:
            s.execute("CREATE TABLE src (id INTEGER, name VARCHAR)")
            s.execute("INSERT INTO src VALUES (3, 'x'), (1, 'y'), (2, 'x')")
        sel = build_selection(adapter, spec, source_sql="SELECT * FROM src", inputs=["name"],
                              target=TableRef("out", "main"), target_columns=None, spec_hash="h")  # fmt: skip
        hashes = pa.concat_arrays([b.column(KEY_HASH_COLUMN) for b in adapter.stream(rebuild_sql(adapter, sel))])
        keys = key_prefix(hashes)
        once = rebuild_file(adapter, sel, keys, out_dir=tmp_path / "a", prefix="s", file_rows=2)
        every = rebuild_file(adapter, sel, keys, out_dir=tmp_path / "b", prefix="s", file_rows=3)
        assert once is not None and every is not None
        assert [json.loads(line)["id"] for line in once.path.read_text().splitlines()] == [1, 2]
        assert [json.loads(line)["id"] for line in every.path.read_text().splitlines()] == [1, 2, 3]
    finally:
        adapter.close()


def test_the_group_by_form_orders_the_rows_as_the_window_does(tmp_path: Path) -> None:
    """DuckDB finds each question's first key with one GROUP BY joined back (``groups_by_join``); the window the
    other warehouses use gives the same rows in the same order: on a first run, and against an existing target
    (new and changed rows), with NULL and repeated keys among them, in buckets."""
    import dataclasses

    from sixtyfour_sync.config.models import SyncSpec
    from sixtyfour_sync.config.profiles import parse_target_config
    from sixtyfour_sync.engine.rows.select import build_selection
    from sixtyfour_sync.warehouse.duckdb import DuckDBAdapter
    from sixtyfour_sync.warehouse.types import TableRef

    spec = SyncSpec.model_validate(
        {
            "name": "s",
            "endpoint": "people",
            "source": {"table": "src", "key": "id", "columns": ["name"]},
            "struct": {"email": "Email"},
            "target": {"table": "out"},
        }
    )
    adapter = DuckDBAdapter(parse_target_config({"type": "duckdb", "path": str(tmp_path / "w.duckdb")}))
    try:
        with adapter.session() as s:
            s.execute("CREATE TABLE src AS SELECT i AS id, 'n' || (i * 7 % 23) AS name FROM range(1, 200) t(i)")
            s.execute("INSERT INTO src VALUES (5, 'n1'), (NULL, 'n2'), (NULL, 'n3')")
            s.execute(
                "CREATE TABLE out AS SELECT id, CAST(NULL AS VARCHAR) AS email, 'enriched' AS _sixtyfour_status, "
                "md5(name) AS _sixtyfour_input_hash, 'h' AS _sixtyfour_spec_hash, now() AS _sixtyfour_enriched_at "
                "FROM src WHERE id % 3 = 0"
            )
        target = TableRef("out", "main")
        columns = adapter.get_columns(target)

        def rows(by_join: bool, target_columns: Any, bucket: tuple[int, int] | None) -> list[tuple[Any, ...]]:
            adapter.__dict__["dialect"] = dataclasses.replace(DuckDBAdapter.dialect, groups_by_join=by_join)
            try:
                sel = build_selection(adapter, spec, source_sql="SELECT * FROM src", inputs=["name"], target=target,
                                      target_columns=target_columns, spec_hash="h", bucket=bucket)  # fmt: skip
                assert ("MATERIALIZED" in sel.sql) is by_join
                with adapter.session() as s:
                    return s.fetchall(sel.sql)
            finally:
                del adapter.__dict__["dialect"]

        for target_columns in (None, columns):
            for bucket in (None, (0, 2), (1, 2)):
                joined, windowed = rows(True, target_columns, bucket), rows(False, target_columns, bucket)
                assert [r[0] for r in joined] == [r[0] for r in windowed]
                assert sorted(map(str, joined)) == sorted(map(str, windowed))  # the rows of one bad key tie
                assert len({r[0] for r in joined}) > 10
    finally:
        adapter.close()
