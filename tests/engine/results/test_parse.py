"""Result parsing: formats, BOM, multi-line fields, types, confidence, failed rows, odd layouts."""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sixtyfour_sync.config.models import StructField
from sixtyfour_sync.engine.results.parse import ResultParseError, parse_result, rows_to_table

STRUCT = {
    "email": StructField(description="email"),
    "employees": StructField(description="n", type="int"),
    "revenue": StructField(description="r", type="float"),
    "public": StructField(description="p", type="bool"),
    "tags": StructField(description="t", type="list[str]"),
}
KEYS = {"lead_id": pa.int64()}


def _rows(parsed) -> dict[int, dict]:
    return {r["lead_id"]: r for r in parsed.table.to_pylist()}


def test_csv_with_bom_multiline_types_and_failed_rows(tmp_path: Path) -> None:
    body = (
        "lead_id,name,email,employees,revenue,public,tags,email_confidence,employees_confidence,notes\n"
        '1,"Ann ""A"" Lee",ann@x.com,120,1.5,true,"[""a"",""b""]",90,80,"line one\nline two"\n'
        "2,Bob,,,,,,,,\n"
        "3,Cy,cy@y.io,3.0,2,no,not json,101,x,\n"
    )
    path = tmp_path / "r.csv"
    path.write_bytes(codecs.BOM_UTF8 + body.encode())
    parsed = parse_result(path, fmt="csv", key_types=KEYS, struct=STRUCT, field_confidence=True)
    rows = _rows(parsed)
    assert parsed.rows_read == 3
    assert rows[1]["email"] == "ann@x.com"
    assert rows[1]["employees"] == 120 and rows[1]["revenue"] == 1.5 and rows[1]["public"] is True
    assert json.loads(rows[1]["tags"]) == ["a", "b"]
    assert rows[1]["email_confidence"] == 90
    assert rows[1]["_sixtyfour_status"] == "enriched"
    assert rows[2]["_sixtyfour_status"] == "failed"
    assert rows[2]["email"] is None
    assert rows[3]["employees"] == 3 and rows[3]["public"] is False
    assert rows[3]["tags"] is None  # invalid JSON is dropped and counted
    assert rows[3]["email_confidence"] is None  # out of 0-100
    assert parsed.cast_failures == {"tags": 1}
    assert parsed.extra_columns == ["name", "notes"]
    assert parsed.enriched == 2 and parsed.failed == 1


def test_jsonl_and_missing_field_and_confidence_json(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    lines = [
        {"lead_id": 5, "email": "e@x", "employees": 7, "field_confidence": {"email": 70}},
        {"lead_id": 6, "email": None, "employees": "n/a"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    struct = {"email": STRUCT["email"], "employees": STRUCT["employees"], "title": StructField(description="t")}
    parsed = parse_result(path, fmt="jsonl", key_types=KEYS, struct=struct, field_confidence=True)
    rows = _rows(parsed)
    assert parsed.missing_columns == ["title"]
    assert rows[5]["email_confidence"] == 70 and rows[5]["employees_confidence"] is None
    assert rows[6]["_sixtyfour_status"] == "failed"
    assert parsed.cast_failures == {"employees": 1}


def test_duplicate_and_null_keys_are_counted_and_resolved(tmp_path: Path) -> None:
    table = rows_to_table(
        [
            {"lead_id": 1, "email": "old@x"},
            {"lead_id": 1, "email": None},
            {"lead_id": 1, "email": "new@x"},
            {"lead_id": None, "email": "z@x"},
        ]
    )
    parsed = parse_result(table, key_types=KEYS, struct={"email": STRUCT["email"]}, field_confidence=False)
    assert parsed.duplicate_keys == 2 and parsed.null_keys == 1
    assert parsed.table.to_pylist() == [{"lead_id": 1, "email": "new@x", "_sixtyfour_status": "enriched"}]


def test_json_array_and_composite_string_key(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"results": [{"org": "a", "email": "x@a", "e": "1"}]}))
    parsed = parse_result(
        path,
        fmt="json",
        key_types={"org": pa.string(), "e": pa.int32()},
        struct={"email": STRUCT["email"]},
        field_confidence=False,
    )
    assert parsed.table.to_pylist() == [{"org": "a", "e": 1, "email": "x@a", "_sixtyfour_status": "enriched"}]


def test_missing_key_column_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("id,email\n1,a@b\n")
    with pytest.raises(ResultParseError, match=r"r\.csv.*lead_id"):
        parse_result(path, fmt="csv", key_types=KEYS, struct={"email": STRUCT["email"]}, field_confidence=False)


def test_unparseable_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"lead_id": 1}\n{broken\n')
    with pytest.raises(ResultParseError, match=r"r\.jsonl \(jsonl\) cannot be read: not valid JSON") as err:
        parse_result(path, fmt="jsonl", key_types=KEYS, struct={"email": STRUCT["email"]}, field_confidence=False)
    assert "broken" not in str(err.value)  # the file's own bytes are never quoted


def test_only_the_columns_the_merge_reads_are_parsed(tmp_path: Path) -> None:
    """The inputs the API echoes back are skipped by the parser, and still reported as extra columns."""
    from sixtyfour_sync.engine.results.parse import read_result_table

    path = tmp_path / "r.csv"
    path.write_text('city,lead_id,notes,email\nParis,1,"two\nlines",a@x.com\n,2,,\n')
    table = read_result_table(path, "csv", columns={"lead_id", "email", "absent"})
    assert table.column_names == ["lead_id", "email"]
    # read exactly as written: an empty field is the empty string (typing decides what is empty, per field)
    assert table.to_pylist() == [{"lead_id": "1", "email": "a@x.com"}, {"lead_id": "2", "email": ""}]
    parsed = parse_result(path, fmt="csv", key_types=KEYS, struct={"email": STRUCT["email"]}, field_confidence=False)
    assert parsed.extra_columns == ["city", "notes"] and parsed.rows_read == 2
    assert _rows(parsed)[1]["email"] == "a@x.com"


# ---------------------------------------------------------------------------------------------- struct types

TYPED = {
    "name": StructField(description="n"),
    "level": StructField(description="l", type="enum", values=["junior", "senior"]),
    "langs": StructField(description="g", type="list[enum]", values=["en", "de"]),
    "hq": StructField(description="h", type="object", subfields=[{"name": "city", "description": "c"}]),
    "offices": StructField(description="o", type="object_list"),
    "meta": StructField(description="m", type="dict"),
    "tags": StructField(description="t", type="list"),
    "score": StructField(description="s", type="float"),
    "founded": StructField(description="f", type="date"),
}


def _csv(tmp_path: Path, header: str, *lines: str) -> Path:
    path = tmp_path / "typed.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def test_text_types_keep_the_words_na_null_nan_and_only_an_empty_field_is_null(tmp_path: Path) -> None:
    words = ["NA", "null", "nan", "N/A", "NULL", "NaN", "None", "#N/A", " "]
    lines = [f'{i},"{w}","{w}","{w}"' for i, w in enumerate(words, 1)] + ['99,,"",']
    path = _csv(tmp_path, "lead_id,name,level,founded", *lines)
    struct = {k: TYPED[k] for k in ("name", "level", "founded")}
    parsed = parse_result(path, fmt="csv", key_types=KEYS, struct=struct, field_confidence=False)
    rows = _rows(parsed)
    for i, w in enumerate(words, 1):
        assert (rows[i]["name"], rows[i]["level"], rows[i]["founded"]) == (w, w, w)
        assert rows[i]["_sixtyfour_status"] == "enriched"
    assert (rows[99]["name"], rows[99]["level"], rows[99]["founded"]) == (None, None, None)
    assert rows[99]["_sixtyfour_status"] == "failed"
    assert parsed.cast_failures == {}
    # every value but the two allowed ones is outside the enum: kept, and counted
    assert parsed.outside_enum == {"level": len(words)}


def test_non_finite_floats_are_null_and_counted(tmp_path: Path) -> None:
    values = ["1.5", "inf", "-inf", "nan", "NaN", "Infinity", "1e400", "-1e400", "1e300", "x"]
    path = _csv(tmp_path, "lead_id,score", *(f"{i},{v}" for i, v in enumerate(values, 1)))
    parsed = parse_result(path, fmt="csv", key_types=KEYS, struct={"score": TYPED["score"]}, field_confidence=False)
    got = [r["score"] for r in parsed.table.to_pylist()]
    assert got == [1.5, None, None, None, None, None, None, None, 1e300, None]
    assert parsed.cast_failures == {"score": 8}


def test_json_types_need_their_shape_and_json_null_is_no_answer(tmp_path: Path) -> None:
    header = "lead_id,hq,offices,meta,tags,langs"
    obj, arr = '"{""city"": ""Paris""}"', '"[{""city"": ""Oslo""}]"'
    path = _csv(
        tmp_path,
        header,
        f'1,{obj},{arr},"{{""a"": 1}}","[""x""]","[""en"", ""de""]"',
        f'2,{arr},{obj},"[1, 2]","{{""a"": 1}}","""en"""',  # wrong shapes (dict takes any JSON)
        "3,null,null,null,null,null",  # the JSON literal null: no answer, not a failure
        "4,{broken,[1,nope,[,[en]",  # invalid JSON
        '5,"{}","[]","3","[]","[""fr"", ""en""]"',  # empty object and arrays are answers
    )
    struct = {k: TYPED[k] for k in ("hq", "offices", "meta", "tags", "langs")}
    parsed = parse_result(path, fmt="csv", key_types=KEYS, struct=struct, field_confidence=False)
    rows = _rows(parsed)
    assert json.loads(rows[1]["hq"]) == {"city": "Paris"} and json.loads(rows[1]["offices"]) == [{"city": "Oslo"}]
    assert json.loads(rows[1]["meta"]) == {"a": 1} and json.loads(rows[1]["langs"]) == ["en", "de"]
    assert [rows[2][k] for k in struct] == [None, None, "[1, 2]", None, None]
    assert [rows[3][k] for k in struct] == [None] * 5 and rows[3]["_sixtyfour_status"] == "failed"
    assert [rows[4][k] for k in struct] == [None] * 5
    assert [rows[5][k] for k in struct] == ["{}", "[]", "3", "[]", '["fr", "en"]']
    assert parsed.cast_failures == {"hq": 2, "offices": 2, "meta": 1, "tags": 2, "langs": 2}
    assert parsed.outside_enum == {"langs": 1}  # ["fr", "en"]


def test_every_type_from_jsonl_with_nested_values(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    lines = [
        {"lead_id": 1, "name": "NA", "level": "senior", "langs": ["de"], "hq": {"city": "Rome"},
         "offices": [{"city": "Oslo"}, {"city": "Lima"}], "meta": {"k": [1]}, "tags": ["a"], "score": 2.5,
         "founded": "1999"},
        {"lead_id": 2, "name": None, "level": "Senior", "langs": ["de", "it"], "hq": None, "offices": [],
         "meta": None, "tags": None, "score": None, "founded": None},
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    parsed = parse_result(path, fmt="jsonl", key_types=KEYS, struct=TYPED, field_confidence=False)
    rows = _rows(parsed)
    one = rows[1]
    assert (one["name"], one["level"], one["score"], one["founded"]) == ("NA", "senior", 2.5, "1999")
    assert json.loads(one["langs"]) == ["de"] and json.loads(one["hq"]) == {"city": "Rome"}
    assert json.loads(one["offices"]) == [{"city": "Oslo"}, {"city": "Lima"}]
    assert json.loads(one["meta"]) == {"k": [1]} and json.loads(one["tags"]) == ["a"]
    assert rows[2]["offices"] == "[]" and rows[2]["hq"] is None and rows[2]["name"] is None
    assert parsed.cast_failures == {}
    assert parsed.outside_enum == {"level": 1, "langs": 1}  # compared exactly: "Senior" is not "senior"


# ------------------------------------------------------------------ whatever the bytes: a table or the one error

_EXAMPLES = int(os.environ.get("SIXTYFOUR_SYNC_PROPERTY_EXAMPLES", "150"))
_PREFIXES = [b"", b"lead_id,email\n", b"\xef\xbb\xbflead_id,email,title\n", b'{"lead_id": 1, "email": "a"}\n', b"["]


@settings(max_examples=_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=st.sampled_from(_PREFIXES), body=st.binary(max_size=400), fmt=st.sampled_from(["csv", "jsonl", "json"]))
def test_any_bytes_parse_to_a_result_or_the_one_parse_error(
    tmp_path_factory: pytest.TempPathFactory, prefix: bytes, body: bytes, fmt: str
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / f"r.{fmt}"
    path.write_bytes(prefix + body)
    try:
        parsed = parse_result(path, fmt=fmt, key_types=KEYS, struct=STRUCT, field_confidence=True)
    except ResultParseError as exc:
        text = str(exc)
        assert len(text) <= 400 and "\x00" not in text
        assert all(ch.isprintable() for ch in text)
    else:
        assert parsed.table.num_rows <= parsed.rows_read
        assert set(parsed.table.column_names) >= {"lead_id", "email", "_sixtyfour_status"}


@pytest.mark.parametrize("spelling", ["NA", "null", "NULL", "N/A", "nan", "NaN", "#N/A", "None", "", " "])
def test_keys_and_text_answers_are_read_exactly_as_written(tmp_path: Path, spelling: str) -> None:
    """No spelling is a null marker: a text key ``NA`` ties back as ``NA``, a country code ``NA`` is stored."""
    key_types = {"code": pa.string()}
    struct = {"country": STRUCT["email"].model_copy(update={"description": "Country code"})}
    path = tmp_path / "r.csv"
    quoted = '"' + spelling + '"'
    path.write_text(f"code,country\n{quoted},NA\nplain,{spelling}\n")
    parsed = parse_result(path, fmt="csv", key_types=key_types, struct=struct, field_confidence=False)
    rows = {r["code"]: r for r in parsed.table.to_pylist()}
    assert set(rows) == {spelling, "plain"} and parsed.null_keys == 0
    assert rows[spelling]["country"] == "NA" and rows[spelling]["_sixtyfour_status"] == "enriched"
    # an empty text answer is no answer; any word is an answer
    expected = None if spelling == "" else spelling
    assert rows["plain"]["country"] == expected
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text(f'{{"code": "{spelling}", "country": "NA"}}\n')
    parsed = parse_result(jsonl, fmt="jsonl", key_types=key_types, struct=struct, field_confidence=False)
    assert parsed.table.to_pylist() == [{"code": spelling, "country": "NA", "_sixtyfour_status": "enriched"}]


def test_the_parts_of_one_result_are_read_whole_and_stacked(tmp_path: Path) -> None:
    """Every file of the final block, each in its own format; a key in two parts is one answer, reported."""
    one, two, three = tmp_path / "r.csv", tmp_path / "r.part1.jsonl", tmp_path / "r.part2.csv"
    one.write_text("lead_id,email,employees\n1,a@x,10\n2,b@x,20\n")
    two.write_text('{"lead_id": 3, "email": "c@x", "employees": 30}\n{"lead_id": 2, "email": null}\n')
    three.write_text("\ufefflead_id,employees,email\n4,,d@x\n")
    struct = {"email": STRUCT["email"], "employees": STRUCT["employees"]}
    parsed = parse_result(
        [(one, "csv"), (two, "jsonl"), (three, "csv")], key_types=KEYS, struct=struct, field_confidence=False
    )
    assert parsed.parts == 3 and parsed.rows_read == 5 and parsed.duplicate_keys == 1
    rows = _rows(parsed)
    assert sorted(rows) == [1, 2, 3, 4]
    assert rows[2]["email"] == "b@x"  # the enriched answer beats the empty one
    assert rows[4] == {"lead_id": 4, "email": "d@x", "employees": None, "_sixtyfour_status": "enriched"}


def test_a_field_one_part_lacks_is_missing_and_a_part_without_the_key_is_unreadable(tmp_path: Path) -> None:
    one, two = tmp_path / "r.csv", tmp_path / "r.part1.csv"
    one.write_text("lead_id,email,employees\n1,a@x,10\n")
    two.write_text("lead_id,email\n2,b@x\n")
    struct = {"email": STRUCT["email"], "employees": STRUCT["employees"]}
    parsed = parse_result([(one, "csv"), (two, "csv")], key_types=KEYS, struct=struct, field_confidence=False)
    assert parsed.missing_columns == ["employees"]  # asked again next run rather than taken as answered
    two.write_text("id,email\n2,b@x\n")
    with pytest.raises(ResultParseError, match=r"r\.part1\.csv.*lead_id"):
        parse_result([(one, "csv"), (two, "csv")], key_types=KEYS, struct=struct, field_confidence=False)


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_a_json_array_is_read_element_by_element_across_any_buffer_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    from sixtyfour_sync.engine.results import jsonrecords

    monkeypatch.setattr(jsonrecords, "_CHUNK", chunk)
    path = tmp_path / "r.json"
    rows = [{"lead_id": i, "email": f"e{i}@x", "tags": ["a", i], "n": 12345678901234567890} for i in range(1, 6)]
    path.write_text("\ufeff  [\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]  \n")
    table, names = jsonrecords.read_records(path, {"lead_id", "email", "tags", "n"}, array=True)
    assert names == ["lead_id", "email", "tags", "n"]
    assert table.column("lead_id").to_pylist() == ["1", "2", "3", "4", "5"]
    assert table.column("tags").to_pylist()[0] == '["a",1]'
    assert table.column("n").to_pylist()[0] == "12345678901234567890"  # no rounding through a double
    wrapped = tmp_path / "w.json"
    wrapped.write_text(json.dumps({"results": rows}))
    assert jsonrecords.read_records(wrapped, {"lead_id"}, array=True)[0].num_rows == 5
    for bad, message in (("[1, 2]", "not a JSON object"), ('[{"a": 1}', "not closed"), ("nope", "not an array")):
        path.write_text(bad)
        with pytest.raises(ValueError, match=message):
            jsonrecords.read_records(path, None, array=True)
