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


NEW_TYPES_STRUCT: dict[str, Any] = {
    "seniority": {
        "description": 'Seniority level. One of: "junior", "senior", "Sr. \\"Lead\\", EMEA".',
        "type": "enum",
    },
    "department": {"description": "Department", "type": "enum"},
    "languages": {"description": 'Languages. One of: "en", "de", "fr".', "type": "list[enum]"},
    "hq": {
        "description": "Headquarters",
        "type": "object",
        "subfields": [
            {"name": "city", "description": "City", "type": "string"},
            {"name": "employees", "description": "Staff", "type": "int"},
            {"name": "ratio", "description": "Ratio", "type": "float"},
            {"name": "public", "description": "Listed?", "type": "bool"},
            {"name": "extra", "description": "More", "type": "dict"},
            {"name": "full_name", "description": "Founder", "type": "string"},
            {"name": "summary", "description": "About", "type": "string"},
        ],
    },
    "anything": {"description": "Free-form", "type": "object"},
    "offices": {"description": "Offices", "type": "object_list", "subfields": [{"name": "city", "description": "c"}]},
}
_PARSED = {"list[enum]", "object", "object_list"}


def test_every_new_type_is_generated_plausibly_and_agrees_with_the_reference() -> None:
    kwargs: dict[str, Any] = {"endpoint": "people", "field_confidence": True, "columns": None, "failure_rate": 0.1}
    out, _ = generate_output(_table(ROWS), NEW_TYPES_STRUCT, seed=5, **kwargs)
    ref = reference_output(NEW_TYPES_STRUCT, ROWS, seed=5, **kwargs)
    decoded = []
    for row in out.to_pylist():
        for name, spec in NEW_TYPES_STRUCT.items():
            if spec["type"] in _PARSED and row[name] is not None:
                row[name] = json.loads(row[name])  # the files hold JSON text: valid JSON, always
        decoded.append(row)
    assert decoded == ref
    assert ref == reference_output(NEW_TYPES_STRUCT, ROWS, seed=5, **kwargs)  # deterministic
    assert ref != reference_output(NEW_TYPES_STRUCT, ROWS, seed=6, **kwargs)
    answered = [r for r in ref if r["hq"] is not None]
    assert answered
    levels = {r["seniority"] for r in answered}
    assert levels <= {"junior", "senior", 'Sr. "Lead", EMEA'} and len(levels) > 1  # the values the description lists
    assert {r["department"] for r in answered} <= {"engineering", "sales", "marketing", "finance", "operations"}
    for r in answered:
        assert 1 <= len(r["languages"]) <= 3 and set(r["languages"]) <= {"en", "de", "fr"}
        hq = r["hq"]
        assert list(hq) == ["city", "employees", "ratio", "public", "extra", "full_name", "summary"]
        assert isinstance(hq["city"], str) and isinstance(hq["employees"], int) and isinstance(hq["ratio"], float)
        assert isinstance(hq["public"], bool) and isinstance(hq["extra"], dict)
        assert isinstance(r["anything"], dict) and r["anything"]
        assert 1 <= len(r["offices"]) <= 3 and all(list(o) == ["city"] for o in r["offices"])
    # input text with quotes, backslashes and line breaks stays valid JSON inside an object
    names = [(r["hq"]["full_name"], f"{row['first_name']} {row['last_name']}") for r, row in zip(ref, ROWS, strict=True)
             if r["hq"] is not None and row["first_name"] and row["last_name"]]  # fmt: skip
    assert names and all(got == want for got, want in names)
    assert ("李 O'Brien", "李 O'Brien") in names or ref[3]["hq"] is None
    assert any("\n" in r["hq"]["summary"] for r in answered)


def test_enum_values_are_read_back_from_the_description() -> None:
    from sixtyfour_sync.emulator.fields import enum_values

    assert enum_values('Level. One of: "a", "b, c", "d\\"e".') == ("a", "b, c", 'd"e')
    assert enum_values("Level. One of: a, b, c.") == ("a", "b", "c")
    assert enum_values("Level") == ()


def test_text_inside_generated_objects_is_escaped_as_json() -> None:
    rows = [{"first_name": 'Jo"e\\', "last_name": "Line\nBreak\x01\t", "domain": "", "company": ""}]
    offices = {"description": "o", "type": "object_list", "subfields": [{"name": "full_name", "description": "n"}]}
    struct = {"hq": NEW_TYPES_STRUCT["hq"], "offices": offices}
    kwargs: dict[str, Any] = {"endpoint": "people", "field_confidence": False, "columns": None, "failure_rate": 0.0}
    out, _ = generate_output(_table(rows), struct, seed=1, **kwargs)
    [ref] = reference_output(struct, rows, seed=1, **kwargs)
    [row] = out.to_pylist()
    assert json.loads(row["hq"]) == ref["hq"] and json.loads(row["offices"]) == ref["offices"]
    assert ref["hq"]["full_name"] == 'Jo"e\\ Line\nBreak\t'  # other control characters are dropped
    assert all(o["full_name"] == 'Jo"e\\ Line\nBreak\t' for o in ref["offices"])
