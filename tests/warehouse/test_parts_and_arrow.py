"""Upsert parts checked before anything runs, and the Arrow helpers (no database)."""

from __future__ import annotations

import datetime as dt
import decimal

import pyarrow as pa
import pytest

from sixtyfour_sync.errors import DataError, UnsafeIdentifierError
from sixtyfour_sync.warehouse.arrow import conform_batches, dedupe_last, unify_type
from sixtyfour_sync.warehouse.dialect import POSTGRES
from sixtyfour_sync.warehouse.parts import apply_insert_guards, prepare_part
from sixtyfour_sync.warehouse.sql.identifiers import Names
from sixtyfour_sync.warehouse.types import Guard, TableRef, UpsertPart

T = TableRef("leads")
NAMES = Names(POSTGRES)
GUARDS = {"email": Guard(when="__write_email", not_below="email_confidence")}


def _rows() -> pa.Table:
    return pa.table(
        {
            "lead_id": [1, 2, 1],
            "email": ["a", "b", "a2"],
            "email_confidence": [10, 20, 30],
            "__write_email": [True, False, None],
            "status": ["enriched", "failed", "enriched"],
            "ignored": [0, 0, 0],
        }
    )


def test_prepare_keeps_key_set_and_guard_columns_and_dedupes_last_wins() -> None:
    part = prepare_part(NAMES, T, ["lead_id"], UpsertPart(_rows(), ["email", "status"], guards=GUARDS))
    assert part.data.column_names == ["lead_id", "email", "status", "__write_email", "email_confidence"]
    assert part.set_columns == ("email", "status") and part.flag_columns == ("__write_email",)
    assert part.duplicates_dropped == 1
    assert part.data.to_pylist()[1]["email"] == "a2"  # the later row of key 1


def test_insert_guards_null_the_value_where_the_flag_is_not_true() -> None:
    part = prepare_part(NAMES, T, ["lead_id"], UpsertPart(_rows(), ["email", "status"], guards=GUARDS))
    rows = apply_insert_guards(part).to_pylist()
    assert rows == [
        {"lead_id": 2, "email": None, "status": "failed"},
        {"lead_id": 1, "email": None, "status": "enriched"},  # flag NULL: not written
    ]


@pytest.mark.parametrize(
    ("guards", "message"),
    [
        ({"title": Guard(when="__w")}, "not among the set columns"),
        ({"email": Guard(when="status")}, "is a key or set column"),
        ({"email": Guard(when="__w", not_below="lead_id")}, "compares the key column"),
        ({"email": Guard(when="missing_flag")}, "no column"),
        ({"email": Guard(when="ignored")}, "must be boolean"),
    ],
)
def test_guards_that_cannot_work_are_refused_before_writing(guards: dict[str, Guard], message: str) -> None:
    data = _rows().append_column("__w", pa.array([True, True, True]))
    with pytest.raises(DataError, match=message):
        prepare_part(NAMES, T, ["lead_id"], UpsertPart(data, ["email", "status"], guards=guards))


def test_null_keys_and_unsafe_names_are_refused() -> None:
    with pytest.raises(DataError, match=r"1 row\(s\) have a NULL key"):
        prepare_part(NAMES, T, ["lead_id"], UpsertPart(pa.table({"lead_id": [1, None], "e": ["a", "b"]}), ["e"]))
    with pytest.raises(UnsafeIdentifierError):
        prepare_part(NAMES, T, ["lead_id"], UpsertPart(_rows(), ['email"; --']))


def test_all_null_flags_become_booleans() -> None:
    data = pa.table({"lead_id": [1], "email": ["a"], "__write_email": pa.nulls(1)})
    part = prepare_part(NAMES, T, ["lead_id"], UpsertPart(data, ["email"], guards={"email": Guard("__write_email")}))
    assert part.data.schema.field("__write_email").type == pa.bool_()


def test_dedupe_last_on_composite_keys() -> None:
    table = pa.table({"a": [1, 1, 2, 1], "b": ["x", "y", "x", "x"], "v": [1, 2, 3, 4]})
    out, dropped = dedupe_last(table, ["a", "b"])
    assert dropped == 1 and sorted(out.to_pylist(), key=lambda r: r["v"]) == [
        {"a": 1, "b": "y", "v": 2},
        {"a": 2, "b": "x", "v": 3},
        {"a": 1, "b": "x", "v": 4},
    ]


def test_conform_batches_casts_varying_chunks_to_one_schema() -> None:
    utc = dt.timezone.utc
    at = dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=utc)
    chunks = [
        pa.record_batch(
            {"n": pa.array([1], pa.int8()), "at": pa.array([at], pa.timestamp("ns", tz="+02:00")), "x": pa.nulls(1)}
        ),
        pa.record_batch(
            {"n": pa.array([300], pa.int32()), "at": pa.array([at], pa.timestamp("us", tz="UTC")), "x": ["t"]}
        ),
        pa.record_batch(
            {
                "n": pa.array([decimal.Decimal(5)], pa.decimal128(38, 0)),
                "at": pa.array([at.replace(tzinfo=None)], pa.timestamp("ms")).cast(pa.timestamp("ms", tz="UTC")),
                "x": ["u"],
            }
        ),
    ]
    out = list(conform_batches(chunks))
    # A column NULL in every row so far cannot know its type yet; from its first typed batch on it keeps it.
    assert pa.types.is_null(out[0].schema.field("x").type)
    assert out[1].schema == out[2].schema
    schema = out[2].schema
    assert all(b.schema.field("n").type == pa.int64() for b in out)
    assert all(b.schema.field("at").type == pa.timestamp("us", tz="UTC") for b in out)
    assert schema.field("x").type == pa.string()
    assert [b.column("n")[0].as_py() for b in out] == [1, 300, 5]


def test_conform_batches_with_declared_types_and_overflow() -> None:
    declared = [pa.int64(), None]
    chunk = pa.record_batch({"n": pa.array([decimal.Decimal(2) ** 70], pa.decimal128(38, 0)), "v": ["a"]})
    with pytest.raises(DataError, match="column 'n' changes type"):
        list(conform_batches([chunk], declared))
    assert unify_type(pa.large_string()) == pa.string()
