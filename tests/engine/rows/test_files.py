"""JSONL chunking: row and byte limits, determinism, JSON validity, bounded batches."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from sixtyfour_sync.engine.jobs.keys import idempotency_key
from sixtyfour_sync.engine.rows.files import file_sha256, spill, write_chunks
from sixtyfour_sync.errors import LimitExceededError


def _batches(n: int, size: int = 7) -> list[pa.RecordBatch]:
    out = []
    for start in range(0, n, size):
        ids = list(range(start, min(n, start + size)))
        out.append(
            pa.RecordBatch.from_pydict(
                {
                    "id": ids,
                    "name": [f'n{i}\n"q"' for i in ids],
                    "score": [float("nan") if i == 3 else i / 2 for i in ids],
                }
            )
        )
    return out


def test_files_respect_chunk_rows_and_hold_every_row_once(tmp_path: Path) -> None:
    files = list(write_chunks(_batches(50), out_dir=tmp_path, prefix="s", chunk_rows=20))
    assert [f.rows for f in files] == [20, 20, 10]
    ids = []
    for f in files:
        lines = f.path.read_text().splitlines()
        assert len(lines) == f.rows
        rows = [json.loads(line) for line in lines]  # valid JSON: NaN became null
        ids += [r["id"] for r in rows]
        assert f.content_hash == file_sha256(f.path)
        assert f.path.name == f"s-{f.content_hash[:16]}.jsonl"
    assert ids == list(range(50))
    row3 = json.loads(files[0].path.read_text().splitlines()[3])
    assert row3 == {"id": 3, "name": 'n3\n"q"', "score": None}
    assert not list(tmp_path.glob("*.part"))


def test_same_rows_give_the_same_files_and_keys(tmp_path: Path) -> None:
    a = list(write_chunks(_batches(30), out_dir=tmp_path / "a", prefix="s", chunk_rows=30))
    b = list(write_chunks(_batches(30, size=4), out_dir=tmp_path / "b", prefix="s", chunk_rows=30))
    assert a[0].content_hash == b[0].content_hash
    key = idempotency_key("enrich leads", "spec", a[0].content_hash)
    assert key == idempotency_key("enrich leads", "spec", b[0].content_hash)
    assert len(key) <= 255 and " " not in key


def test_files_over_the_byte_limit_are_split(tmp_path: Path) -> None:
    files = list(write_chunks(_batches(40), out_dir=tmp_path, prefix="s", chunk_rows=40, max_bytes=600))
    assert sum(f.rows for f in files) == 40
    assert all(f.bytes <= 600 for f in files)
    assert len(files) > 1


def test_a_single_row_over_the_limit_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LimitExceededError, match="single row"):
        list(write_chunks(_batches(1), out_dir=tmp_path, prefix="s", chunk_rows=10, max_bytes=10))


def test_a_spilled_table_reads_back_equal_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    table = pa.table(
        {
            "lead_id": pa.array([3, 1, None, 2], pa.int64()),
            "_sixtyfour_input_hash": ["a" * 32, "b" * 32, None, "c" * 32],
        }
    )
    spilled = spill(table, tmp_path / "f.sent.arrow")
    assert spilled.num_rows == 4
    assert [p.name for p in tmp_path.iterdir()] == ["f.sent.arrow"]
    back = spilled.load()
    assert back.equals(table)  # same types, same order, NULLs kept
    assert spilled.load().equals(table)  # read as often as needed
    spilled.discard()
    spilled.discard()  # twice is fine
    assert list(tmp_path.iterdir()) == []
