"""The vectorised hash and generator agree with their pure-Python references."""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from sixtyfour_sync.emulator.generate import generate_output, reference_output
from sixtyfour_sync.emulator.hashing import NULL_HASH, hash_str, hash_strings, row_hash, row_hashes

ALL_TYPES_STRUCT: dict[str, Any] = {
    "email": "The individual's email address",
    "linkedin": "LinkedIn URL",
    "title": "Job title",
    "phone": "Phone",
    "website": "Website",
    "employee_count": {"description": "Employees", "type": "int"},
    "revenue": {"description": "Revenue in USD", "type": "float"},
    "is_hiring": {"description": "Hiring now?", "type": "boolean"},
    "skills": {"description": "Skills", "type": "list"},
    "scores": {"description": "Scores", "type": "list[int]"},
    "ratios": {"description": "Ratios", "type": "list[float]"},
    "flags": {"description": "Flags", "type": "list[bool]"},
    "meta": {"description": "Metadata", "type": "dict"},
    "address": "Office address",
    "summary": "A short bio",
    "favourite_colour": {"description": "anything", "type": "string"},
    "full_name": "Name",
}

ROWS: list[dict[str, Any]] = [
    {"first_name": "Ada", "last_name": "Lovelace", "domain": "https://www.Example.com/x", "company": "Acme"},
    {"first_name": "", "last_name": None, "domain": "", "company": "Ünïcode GmbH"},
    {"first_name": "Jean-Luc", "last_name": "Picard", "domain": " starfleet.org ", "company": None},
    {"first_name": "李", "last_name": "O'Brien", "domain": "x.io:8080", "company": 'Q, "Continuum"'},
] + [{"first_name": f"n{i}", "last_name": f"l{i}", "domain": f"d{i}.com", "company": f"c{i}"} for i in range(60)]


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.table({k: pa.array([r.get(k) for r in rows], pa.string()) for k in rows[0]})


def _decode(struct: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name, spec in struct.items():
        kind = spec.get("type", "str") if isinstance(spec, dict) else "str"
        if kind.startswith("list") and out.get(name) is not None:
            out[name] = json.loads(out[name])
    return out


def test_vectorised_string_hash_matches_scalar() -> None:
    values = ["", "a", None, "héllo wörld", "x" * 5000, "ab", "ba", '\n"quoted"']
    arr = pa.array(values, pa.string())
    assert [int(h) for h in hash_strings(arr)] == [hash_str(v) for v in values]
    # Slices (non-zero offsets) and large strings hash the same.
    assert [int(h) for h in hash_strings(arr.slice(2, 4))] == [hash_str(v) for v in values[2:6]]
    assert [int(h) for h in hash_strings(arr.cast(pa.large_string()))] == [hash_str(v) for v in values]
    assert hash_str(None) == NULL_HASH != hash_str("")
    assert hash_str("ab") != hash_str("ba")


def test_row_hash_matches_scalar_across_chunks() -> None:
    col = pa.chunked_array([["a", None], ["c"]])
    got = row_hashes([col, col], ["x", "y"], 7, 3)
    assert [int(h) for h in got] == [row_hash([v, v], ["x", "y"], 7) for v in ("a", None, "c")]


@pytest.mark.parametrize("field_confidence", [True, False])
def test_generator_agrees_with_reference(field_confidence: bool) -> None:
    out, failed = generate_output(
        _table(ROWS),
        ALL_TYPES_STRUCT,
        endpoint="people",
        field_confidence=field_confidence,
        columns=None,
        seed=3,
        failure_rate=0.2,
    )
    ref = reference_output(
        ALL_TYPES_STRUCT,
        ROWS,
        endpoint="people",
        field_confidence=field_confidence,
        columns=None,
        seed=3,
        failure_rate=0.2,
    )
    assert [_decode(ALL_TYPES_STRUCT, r) for r in out.to_pylist()] == ref
    assert failed == sum(1 for r in ref if r["email"] is None)
    assert 0 < failed < len(ROWS)


def test_company_endpoint_and_columns_subset_agree() -> None:
    struct = {
        "website": "site",
        "linkedin": "li",
        "email": "generic inbox",
        "industry": "sector",
        "employee_count": {"description": "n", "type": "integer"},
    }
    out, _ = generate_output(
        _table(ROWS),
        struct,
        endpoint="company",
        field_confidence=True,
        columns=["company", "domain"],
        seed=0,
        failure_rate=0.0,
    )
    ref = reference_output(
        struct, ROWS, endpoint="company", field_confidence=True, columns=["company", "domain"], seed=0, failure_rate=0.0
    )
    assert out.to_pylist() == ref
    assert ref[0]["website"] == "https://www.example.com"
    assert ref[0]["linkedin"] == "https://www.linkedin.com/company/acme"


def test_values_are_plausible_and_deterministic() -> None:
    struct = {"email": "e", "linkedin": "l", "address": "a"}
    first = reference_output(
        struct, ROWS[:3], endpoint="people", field_confidence=False, columns=None, seed=0, failure_rate=0.0
    )
    again = reference_output(
        struct, ROWS[:3], endpoint="people", field_confidence=False, columns=None, seed=0, failure_rate=0.0
    )
    reseeded = reference_output(
        struct, ROWS[:3], endpoint="people", field_confidence=False, columns=None, seed=1, failure_rate=0.0
    )
    assert first == again
    assert first != reseeded
    assert first[0]["email"] == "ada.lovelace@example.com"
    assert first[0]["linkedin"].startswith("https://www.linkedin.com/in/ada-lovelace-")
    assert first[2]["email"] == "jeanluc.picard@starfleet.org"
    assert "\n" in first[0]["address"]


def test_values_depend_only_on_feeding_columns() -> None:
    rows = [dict(r, lead_id=str(i)) for i, r in enumerate(ROWS[:5])]
    moved = [dict(r, lead_id=str(i + 100)) for i, r in enumerate(ROWS[:5])]
    feed = ["first_name", "last_name", "domain", "company"]
    a = reference_output(
        {"title": "t"}, rows, endpoint="people", field_confidence=True, columns=feed, seed=0, failure_rate=0.3
    )
    b = reference_output(
        {"title": "t"}, moved, endpoint="people", field_confidence=True, columns=feed, seed=0, failure_rate=0.3
    )
    assert [r["title"] for r in a] == [r["title"] for r in b]


def test_failure_share_is_close_to_the_rate() -> None:
    n = 20_000
    table = pa.table({"name": pa.array([f"person {i}" for i in range(n)])})
    _, failed = generate_output(
        table, {"email": "e"}, endpoint="people", field_confidence=False, columns=None, seed=0, failure_rate=0.05
    )
    assert 0.04 * n < failed < 0.06 * n


def test_csv_round_trip_keeps_multiline_and_quotes() -> None:
    out, _ = generate_output(
        _table(ROWS), ALL_TYPES_STRUCT, endpoint="people", field_confidence=True, columns=None, seed=0, failure_rate=0.0
    )
    buf = io.BytesIO()
    pacsv.write_csv(out, buf)
    back = pacsv.read_csv(io.BytesIO(buf.getvalue()), convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    assert back.column("summary").to_pylist() == out.column("summary").to_pylist()
    assert any("\n" in v for v in back.column("summary").to_pylist())
    assert back.column("company").to_pylist()[3] == 'Q, "Continuum"'
