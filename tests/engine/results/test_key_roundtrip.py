"""Property tests: a key of every supported type comes back from the API as exactly the key that was sent.

Each example writes keys to a JSONL file as the engine does (``write_chunks``), reads the file as the API
(the emulator's upload parser keeps every value's JSON text), echoes the keys back in a result (inline, CSV
or JSON lines), parses that result (``parse_result``: the keys cast back to their type) and reconciles it with
what was sent. Every key must tie back to itself: none missing, none unexpected, the value identical (a
2^53+1 passed through a double would come back as 2^53, and tie nothing). The keys read back from the file
itself, as a resumed run reads them, must be the same too.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import struct
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sixtyfour_sync.config.models import StructField
from sixtyfour_sync.emulator.uploads import parse_upload, read_parsed
from sixtyfour_sync.engine.ledger.localdb import duck_type, ident, json_path, literal, local_duckdb
from sixtyfour_sync.engine.results.parse import parse_result
from sixtyfour_sync.engine.results.upsert import reconcile
from sixtyfour_sync.engine.rows.files import write_chunks
from sixtyfour_sync.engine.rows.select import HASH_COLUMN
from sixtyfour_sync.warehouse.keytypes import KeyType, classify_arrow

STRUCT = {"email": StructField(description="email")}
KEY = "k"

D38 = decimal.Context(prec=60)


def _dec(text: str) -> decimal.Decimal:
    return decimal.Decimal(text)


def _decimals(precision: int, scale: int) -> st.SearchStrategy[decimal.Decimal]:
    biggest = _dec("9" * (precision - scale) + ("." + "9" * scale if scale else ""))
    step = _dec(1).scaleb(-scale)
    edges = [biggest, -biggest, step, -step, _dec(0), _dec(2**53 + 1).quantize(step, context=D38)]
    edges = [e for e in edges if abs(e) <= biggest]
    general = st.decimals(min_value=-biggest, max_value=biggest, places=scale, allow_nan=False, allow_infinity=False)
    quantized = st.one_of(st.sampled_from(edges), general).map(lambda d: d.quantize(step, context=D38))
    return quantized.filter(lambda d: abs(d) <= biggest)  # rounding to the scale may step past the largest


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=30)

#: (Arrow type as the engine holds the key, strategy of Python values, edge values always tried)
CASES: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "bigint": (
        pa.int64(),
        st.one_of(
            st.sampled_from([2**53 + 1, -(2**53) - 1, 2**63 - 1, -(2**63), 0, -1]),
            st.integers(-(2**63), 2**63 - 1),
        ),
    ),
    "ubigint": (
        pa.uint64(),
        st.one_of(st.sampled_from([2**63 + 1, 2**64 - 1, 2**53 + 1, 0]), st.integers(0, 2**64 - 1)),
    ),
    "decimal(18,0)": (pa.decimal128(18, 0), _decimals(18, 0)),
    "decimal(20,0)": (pa.decimal128(20, 0), _decimals(20, 0)),
    "decimal(38,10)": (pa.decimal128(38, 10), _decimals(38, 10)),
    "decimal(38,0)": (pa.decimal128(38, 0), _decimals(38, 0)),
    "double": (
        pa.float64(),
        st.one_of(
            st.sampled_from([-0.0, 0.0, 5e-324, 1.7976931348623157e308, 0.1, float(2**53 + 2), -1.5e-300]),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
    ),
    "text": (pa.string(), st.one_of(st.sampled_from(["ümlaut ✓", "日本語", "a\"b'c\\d", "\t", "🦆"]), _TEXT)),
    "uuid": (pa.string(), st.uuids().map(str)),
    "hugeint-as-text": (
        pa.string(),
        st.one_of(st.sampled_from([2**127 - 1, -(2**127), 2**64 + 1]), st.integers(-(2**127), 2**127 - 1)).map(str),
    ),
    "date": (pa.date32(), st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31))),
    "timestamp": (
        pa.timestamp("us"),
        st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    ),
    "timestamptz": (
        pa.timestamp("us", tz="UTC"),
        st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)).map(
            lambda d: d.replace(tzinfo=dt.timezone.utc)
        ),
    ),
    "boolean": (pa.bool_(), st.booleans()),
}


def _same(a: Any, b: Any) -> bool:
    """Equal, and a float's sign too (-0.0 is not 0.0 here)."""
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    return bool(a == b) and type(a) is type(b)


def _echo(upload: pa.Table, fmt: str, tmp: Path) -> Any:
    """The API's answer: every row echoed with its key and input hash as text, and a found email."""
    result = pa.table(
        {
            KEY: upload.column(KEY),
            HASH_COLUMN: upload.column(HASH_COLUMN),
            "email": pa.array([f"person{i}@example.com" for i in range(upload.num_rows)]),
        }
    )
    if fmt == "inline":
        return result
    path = tmp / f"result.{fmt}"
    if fmt == "csv":
        pacsv.write_csv(result, str(path))
    else:
        local_duckdb().register("_echo", result)
        try:
            local_duckdb().execute(f"COPY (SELECT * FROM _echo) TO {literal(str(path))} (FORMAT json)")
        finally:
            local_duckdb().unregister("_echo")
    return [(path, fmt)]


def _round_trip(arrow: pa.DataType, values: list[Any], fmt: str, tmp: Path) -> None:
    keys = pa.array(values, arrow)
    sent = pa.table({KEY: keys, HASH_COLUMN: pa.array([f"h{i}" for i in range(len(values))])})
    out = tmp / "files"
    (chunk,) = write_chunks(sent.to_batches(), out_dir=out, prefix="p", chunk_rows=10_000, keep=[KEY, HASH_COLUMN],
                            keys=[KEY])  # fmt: skip
    dest = tmp / "upload.arrow"
    parse_upload(chunk.path, "jsonl", chunk.path.name, dest)
    upload = read_parsed(dest)
    parsed = parse_result(_echo(upload, fmt, tmp), fmt=fmt, key_types={KEY: arrow}, struct=STRUCT,
                          field_confidence=False, carry=[HASH_COLUMN])  # fmt: skip
    assert parsed.null_keys == 0, upload.column(KEY).to_pylist()
    rec = reconcile(parsed, sent, [KEY])
    assert rec.unexpected == 0 and rec.missing.num_rows == 0, (values, parsed.table.column(KEY).to_pylist())
    # each returned row carries the hash of the sent row it tied to: the key must be that row's key
    hashes = rec.returned.column("__sent_hash").to_pylist()
    back = dict(zip(hashes, rec.returned.column(KEY).cast(arrow).to_pylist(), strict=True))
    for i, v in enumerate(keys.to_pylist()):
        assert _same(back[f"h{i}"], v), (v, back[f"h{i}"])
    # A resumed run reads what a file sent back from the file itself.
    sql = (
        f"SELECT TRY_CAST(json_extract_string(json, {json_path(KEY)}) AS {duck_type(arrow)}) AS {ident(KEY)} "
        f"FROM read_ndjson_objects({literal(str(chunk.path))})"
    )
    again = local_duckdb().sql(sql).to_arrow_table().column(KEY).cast(arrow).to_pylist()
    assert all(_same(a, b) for a, b in zip(again, keys.to_pylist(), strict=True)), (again, values)
    chunk.path.unlink()


def _unique(values: list[Any]) -> list[Any]:
    seen: dict[Any, Any] = {}
    for v in values:
        mark = struct.pack(">d", v) if isinstance(v, float) else v
        if isinstance(v, float) and v == 0.0:
            mark = 0.0  # -0.0 and 0.0 are one key to SQL (the selection would report them as a duplicate)
        seen.setdefault(mark, v)
    return list(seen.values())


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("fmt", ["inline", "csv", "jsonl"])
def test_keys_of_every_supported_type_tie_back_exactly(case: str, fmt: str, tmp_path_factory: Any) -> None:
    arrow, values = CASES[case]
    assert classify_arrow(arrow) is not None

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(values, min_size=1, max_size=12))
    def check(vs: list[Any]) -> None:
        vs = _unique(vs)
        if case == "text":
            # text keys differing only in case or surrounding spaces are tied back loosely on purpose: one each
            folded: dict[str, str] = {}
            for v in vs:
                folded.setdefault(v.strip().lower(), v)
            vs = list(folded.values())
        _round_trip(arrow, vs, fmt, tmp_path_factory.mktemp("rt"))

    check()


def test_the_edges_named_in_the_contract(tmp_path: Path) -> None:
    """2^53+1, 2^63+1, 2^64-1, negative zero, the largest DECIMAL(38,10) and unicode text, one by one."""
    for arrow, values in [
        (pa.int64(), [2**53 + 1, 2**53]),
        (pa.uint64(), [2**63 + 1, 2**64 - 1, 2**64 - 2]),
        (pa.decimal128(20, 0), [_dec(2**53 + 1), _dec(2**53), _dec(2**64 - 1)]),
        (pa.float64(), [-0.0]),
        (pa.decimal128(38, 10), [_dec("9999999999999999999999999999.9999999999"), _dec("-0.0000000001")]),
        (pa.string(), ["ünïcødé ✓ 日本語 🦆", "ÜNÏCØDÉ"]),
    ]:
        _round_trip(arrow, values, "jsonl", tmp_path)


def test_exact_numbers_travel_as_json_strings(tmp_path: Path) -> None:
    """A decimal or unsigned 64-bit key is written as a JSON string, which no JSON parser turns into a double."""
    import json

    sent = pa.table(
        {
            "d": pa.array([_dec("12345678901234567890.1234567890")], pa.decimal128(38, 10)),
            "u": pa.array([2**64 - 1], pa.uint64()),
            "i": pa.array([2**53 + 1], pa.int64()),
            "amount": pa.array([_dec("1.50")], pa.decimal128(10, 2)),
        }
    )
    (chunk,) = write_chunks(sent.to_batches(), out_dir=tmp_path, prefix="p", chunk_rows=10, keys=["d", "u", "i"])
    row = json.loads(chunk.path.read_text())
    assert row["d"] == "12345678901234567890.1234567890"
    assert row["u"] == "18446744073709551615"
    assert row["i"] == 2**53 + 1  # a BIGINT key stays a number, as before
    assert row["amount"] == 1.5  # an input keeps its JSON number


def test_nan_and_infinite_float_keys_are_skipped_like_null_ones() -> None:
    from sixtyfour_sync.engine.rows.extract import missing_key

    col = pa.array([1.0, math.nan, math.inf, -math.inf, None, -0.0])
    assert missing_key(col).to_pylist() == [False, True, True, True, True, False]


@pytest.mark.parametrize(
    ("arrow", "kind"),
    [
        (pa.time64("us"), None),
        (pa.month_day_nano_interval(), None),
        (pa.binary(), None),
        (pa.timestamp("ns"), None),
        (pa.decimal256(76, 38), None),
        (pa.uint64(), "unsigned"),
        (pa.decimal128(38, 10), "decimal"),
    ],
)
def test_arrow_types_the_sync_cannot_carry_are_refused(arrow: pa.DataType, kind: str | None) -> None:
    kt: KeyType | None = classify_arrow(arrow)
    assert (kt.kind if kt else None) == kind
