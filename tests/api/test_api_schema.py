"""Client-side config and file checks, before any request."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from sixtyfour_sync.api import MAX_CONFIG_CHARS, check_upload_file, validate_config
from sixtyfour_sync.errors import ConfigError, LimitExceededError


def _problems(exc: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return {p.path or "": p.message + (f" | {p.hint}" if p.hint else "") for p in exc.value.problems}


def test_valid_configs_return_the_sent_json() -> None:
    config = {
        "struct": {
            "email": "The individual's email address",
            "employee_count": {"description": "Employees", "type": "int"},
            "tags": {"description": "Tags", "type": "list[str]"},
        },
        "tier": "xhigh",
        "field_confidence": True,
        "webhook_url": "https://hooks.example.com/sixtyfour",
        "columns": ["first_name", "domain"],
        "research_plan": "look at the company site",
        "result_formats": ["csv", "json"],
        "save_json": False,
    }
    encoded = validate_config("people", config)
    assert json.loads(encoded) == config
    company = {"struct": {"website": "Company website"}, "tier": "high", "find_people": True, "full_org_chart": False}
    assert json.loads(validate_config("company", company)) == company
    assert validate_config("people", {}) == "{}"  # struct is optional on people


def test_unknown_key_and_company_only_keys_on_people() -> None:
    with pytest.raises(ConfigError) as exc:
        validate_config("people", {"struct": {"a": "b"}, "colour": "red", "find_people": True})
    problems = _problems(exc)
    assert problems["colour"].startswith("unknown key")
    assert "only allowed on the company endpoint" in problems["find_people"]


def test_tier_per_endpoint() -> None:
    validate_config("people", {"tier": "scout"})
    with pytest.raises(ConfigError) as exc:
        validate_config("company", {"struct": {"a": "b"}, "tier": "scout"})
    assert "'scout' is not a company tier" in _problems(exc)["tier"]
    assert "micro, low, medium, high" in _problems(exc)["tier"]


def test_company_requires_struct() -> None:
    with pytest.raises(ConfigError) as exc:
        validate_config("company", {"tier": "low"})
    assert "required for the company endpoint" in _problems(exc)["struct"]
    with pytest.raises(ConfigError, match="at least one field"):
        validate_config("company", {"struct": {}})


@pytest.mark.parametrize(
    ("struct", "path", "text"),
    [
        ({"email": ""}, "struct.email", "must not be empty"),
        ({"email": 5}, "struct.email", "got int"),
        ({"email": {"type": "str"}}, "struct.email.description", "description string is required"),
        ({"email": {"description": "x", "type": ""}}, "struct.email.type", "must be a non-empty string"),
        ({"email": {"description": "x", "type": 3}}, "struct.email.type", "must be a non-empty string"),
        ({"o": {"description": "x", "type": "object", "subfields": {"a": "b"}}}, "struct.o.subfields", "got dict"),
        ({"o": {"description": "x", "type": "object", "subfields": []}}, "struct.o.subfields", "non-empty list"),
        ({"o": {"description": "x", "subfields": [{"description": "d"}]}}, "struct.o.subfields[0].name", "required"),
        ({"o": {"description": "x", "subfields": [{"name": "a"}]}}, "struct.o.subfields[0].description", "required"),
        (
            {"o": {"description": "x", "subfields": [{"name": "a", "description": "d", "kind": "int"}]}},
            "struct.o.subfields[0].kind",
            "unknown key",
        ),
        (
            {
                "o": {
                    "description": "x",
                    "subfields": [{"name": "a", "description": "d"}, {"name": "a", "description": "e"}],
                }
            },
            "struct.o.subfields[1].name",
            "appears twice",
        ),
        ({"email": {"description": "x", "values": ["a"]}}, "struct.email.values", "unknown key"),
        ({"email": {"description": "x", "kind": "str"}}, "struct.email.kind", "unknown key"),
        ({"": "empty name"}, "struct.''", "non-empty strings"),
    ],
)
def test_struct_forms(struct: dict[str, Any], path: str, text: str) -> None:
    with pytest.raises(ConfigError) as exc:
        validate_config("people", {"struct": struct})
    assert text in _problems(exc)[path]


def test_every_struct_type_of_the_schema_passes_and_an_unknown_one_is_left_to_the_api() -> None:
    from sixtyfour_sync.api.schema import STRUCT_TYPES

    for kind in ("enum", "list[enum]", "object", "object_list", "string", "list[bool]"):
        assert kind in STRUCT_TYPES
    struct: dict[str, Any] = {f"f{i}": {"description": "d", "type": kind} for i, kind in enumerate(STRUCT_TYPES)}
    struct["hq"] = {
        "description": "HQ",
        "type": "object",
        "subfields": [{"name": n, "description": n, "type": t} for n, t in
                      (("a", "string"), ("b", "int"), ("c", "float"), ("d", "bool"), ("e", "dict"))],
    }  # fmt: skip
    struct["offices"] = {"description": "O", "type": "object_list", "subfields": [{"name": "city", "description": "c"}]}
    struct["founded"] = {"description": "Founding date", "type": "date"}  # not in the schema: the API decides
    assert json.loads(validate_config("people", {"struct": struct})) == {"struct": struct}
    assert json.loads(validate_config("company", {"struct": struct, "lead_struct": struct}))["lead_struct"] == struct


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as exc:
        validate_config(
            "people",
            {
                "struct": "nope",
                "tier": "ultra",
                "field_confidence": "yes",
                "webhook_url": "http://insecure.example.com/hook",
                "columns": ["ok", 3],
                "research_plan": 7,
                "result_formats": ["xml"],
                "save_json": 1,
            },
        )
    paths = set(_problems(exc))
    assert paths == {
        "struct",
        "tier",
        "field_confidence",
        "webhook_url",
        "columns[1]",
        "research_plan",
        "result_formats[0]",
        "save_json",
    }
    assert "https" in _problems(exc)["webhook_url"]


def test_webhook_url_length() -> None:
    long_url = "https://example.com/" + "a" * 2100
    with pytest.raises(ConfigError, match="outside 1-2,083 characters"):
        validate_config("people", {"webhook_url": long_url})
    with pytest.raises(ConfigError, match="outside 1-2,083"):
        validate_config("people", {"webhook_url": ""})


@pytest.mark.parametrize(
    "url",
    [
        "https://localhost/h",
        "https://127.0.0.1:8443/h",
        "https://10.1.2.3/h",
        "https://[::1]/h",
        "https://169.254.1.1/",
    ],
)
def test_webhook_url_must_be_a_public_address(url: str) -> None:
    with pytest.raises(ConfigError) as exc:
        validate_config("people", {"webhook_url": url})
    assert "not a public address" in _problems(exc)["webhook_url"]


@pytest.mark.parametrize("url", ["https://hooks.example.com/h", "https://8.8.8.8/h", "https://[2001:4860::8888]/h"])
def test_public_webhook_urls_pass(url: str) -> None:
    validate_config("people", {"webhook_url": url})


def test_config_size_limit_names_limit_and_actual() -> None:
    plan = "x" * (MAX_CONFIG_CHARS - len('{"research_plan":""}'))
    assert len(validate_config("people", {"research_plan": plan})) == MAX_CONFIG_CHARS
    with pytest.raises(LimitExceededError) as exc:
        validate_config("people", {"research_plan": plan + "y"})
    assert exc.value.limit == 300_000 and exc.value.actual == 300_001
    assert "300,001 exceeds the limit of 300,000" in str(exc.value)


def test_unknown_endpoint() -> None:
    with pytest.raises(ConfigError, match="unknown endpoint 'persons'"):
        validate_config("persons", {})


# -- files ------------------------------------------------------------------------------------------


def test_jsonl_rows_counted(tmp_path: Path) -> None:
    path = tmp_path / "rows.ndjson"
    path.write_text('{"a":1}\n\n{"a":2}\n{"a":3}')
    check = check_upload_file(path)
    assert (check.rows, check.format, check.size) == (3, "jsonl", path.stat().st_size)


def test_csv_rows_counted_with_multiline_fields_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text('\ufeffid,note\n1,"line one\nline two"\n2,plain\n3,"a, ""quoted"" one"\n', encoding="utf-8")
    assert check_upload_file(path).rows == 3


def test_json_array_counted_without_parse(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    rows = [{"id": i, "note": 'has ] and , and { and "quotes"', "nested": {"a": [1, 2]}} for i in range(5)]
    path.write_text(json.dumps(rows, indent=1))
    assert check_upload_file(path).rows == 5
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must be a row object"):
        check_upload_file(path)
    path.write_text('{"not": "an array"}')
    with pytest.raises(ConfigError, match="array of row objects"):
        check_upload_file(path)


def test_row_limit_names_limit_and_actual(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(f'{{"a":{i}}}\n' for i in range(11)))
    with pytest.raises(LimitExceededError) as exc:
        check_upload_file(path, max_rows=10)
    assert (exc.value.limit, exc.value.actual) == (10, 11)
    assert "rows per file: 11 exceeds the limit of 10" in str(exc.value)


def test_default_row_limit_is_100k(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    with path.open("w") as fh:
        fh.write('{"a":1}\n' * 100_001)
    with pytest.raises(LimitExceededError) as exc:
        check_upload_file(path)
    assert (exc.value.limit, exc.value.actual) == (100_000, 100_001)


def test_size_limit_checked_first_on_a_sparse_file(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    with path.open("wb") as fh:
        fh.truncate(100 * 1024 * 1024 + 1)  # sparse: no disk used, and never read
    with pytest.raises(LimitExceededError) as exc:
        check_upload_file(path)
    assert exc.value.limit == 104_857_600 and exc.value.actual == 104_857_601
    assert "file size (bytes)" in str(exc.value)


def test_unsupported_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unsupported file type '\.xlsx'"):
        check_upload_file(tmp_path / "rows.xlsx")
    with pytest.raises(ConfigError, match="cannot read the file"):
        check_upload_file(tmp_path / "missing.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("id,name\n")
    with pytest.raises(ConfigError, match="no rows"):
        check_upload_file(empty)
    os.chmod(empty, 0o644)


TRICKY_ROWS = [
    {"id": 1, "s": 'quote " and backslash \\ and \\" both', "n": None},
    {"id": 2, "s": "brackets ] [ } { , inside", "list": [1, [2, {"x": "]"}]], "t": True},
    {"id": 3, "s": "ends with backslash \\", "u": "naïve ✓"},
    {"id": 4, "s": "\\\\\\\\", "nested": {"a": {"b": {"c": []}}}},
]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 2 << 20])
def test_json_array_count_is_exact_across_chunk_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    from sixtyfour_sync.api import schema

    monkeypatch.setattr(schema, "_JSON_CHUNK", chunk)
    path = tmp_path / "rows.json"
    path.write_text("\ufeff  " + json.dumps(TRICKY_ROWS * 3, ensure_ascii=False, indent=2), encoding="utf-8")
    assert check_upload_file(path).rows == 12
    path.write_text(json.dumps(TRICKY_ROWS)[:-1])
    with pytest.raises(ConfigError, match="unbalanced"):
        check_upload_file(path)
    path.write_text(json.dumps([*TRICKY_ROWS, "scalar"]))
    with pytest.raises(ConfigError, match="must be a row object"):
        check_upload_file(path)
    path.write_text("[]")
    with pytest.raises(ConfigError, match="no rows"):
        check_upload_file(path)
