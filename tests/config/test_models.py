"""Sync definitions: valid files load, every problem is reported at once with file, line and path."""

from __future__ import annotations

from pathlib import Path

import pytest

from sixtyfour_sync.config.loading import load_models
from sixtyfour_sync.config.models import SyncSpec, build_api_config, parse_duration
from sixtyfour_sync.engine.plan.columns import owned_columns
from sixtyfour_sync.errors import ConfigError
from sixtyfour_sync.warehouse.types import LogicalType

GOOD = """\
profile: local
syncs:
  - name: enrich_leads
    tags: [daily]
    endpoint: people
    source:
      table: leads
      key: lead_id
      columns: [first_name, last_name, company]
      where: "country = 'US'"
    struct:
      email: The individual's email address
      employee_count: {description: Employees at their company, type: integer}
      skills: {description: Skills, type: "list[str]"}
    tier: low
    field_confidence: true
    target:
      table: leads_enriched
      prefix: "sf_"
    refresh:
      when: stale
      max_age: 90d
      retry_failed_after: 30d
      limit: 1000
    budget:
      max_cost_cents: 5000
    chunk_rows: 5000
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    path = models / name
    path.write_text(text)
    return path


def test_a_valid_file_loads_with_defaults_and_derived_values(tmp_path: Path) -> None:
    _write(tmp_path, "leads.yml", GOOD)
    [loaded] = load_models(tmp_path)
    spec = loaded.spec
    assert loaded.profile == "local"
    assert loaded.line == 3
    assert spec.source.key == ["lead_id"]
    assert spec.struct["employee_count"].type == "int"
    assert spec.struct["skills"].is_json
    assert spec.refresh.max_age is not None and spec.refresh.max_age.days == 90
    assert spec.output_columns()[:3] == ["sf_email", "sf_employee_count", "sf_skills"]
    assert "sf_email_confidence" in spec.output_columns()
    assert spec.output_columns()[-6:][0] == "_sixtyfour_sf_status"  # bookkeeping follows target.prefix
    config = build_api_config(spec, ["lead_id", "first_name", "last_name", "company"])
    assert config == {
        "struct": {
            "email": "The individual's email address",
            "employee_count": {"description": "Employees at their company", "type": "int"},
            "skills": {"description": "Skills", "type": "list[str]"},
        },
        "tier": "low",
        "field_confidence": True,
        "columns": ["first_name", "last_name", "company"],
    }


def test_spec_hash_changes_with_the_question_not_with_the_target(tmp_path: Path) -> None:
    _write(tmp_path, "a.yml", GOOD)
    base = load_models(tmp_path)[0].spec.spec_hash()
    _write(tmp_path, "a.yml", GOOD.replace("limit: 1000", "limit: 5"))
    assert load_models(tmp_path)[0].spec.spec_hash() == base
    _write(tmp_path, "a.yml", GOOD.replace("tier: low", "tier: medium"))
    assert load_models(tmp_path)[0].spec.spec_hash() != base


def test_every_problem_in_every_file_is_listed_with_line_and_path(tmp_path: Path) -> None:
    bad = GOOD.replace("tier: low", "tier: xhigh").replace("endpoint: people", "endpoint: company")
    bad = bad.replace("    chunk_rows: 5000\n", "    chunk_rows: 500000\n    colour: blue\n")
    _write(tmp_path, "a.yml", bad)
    _write(tmp_path, "b.yml", "syncs:\n  - name: x\n    endpoint: people\n")
    with pytest.raises(ConfigError) as info:
        load_models(tmp_path)
    text = str(info.value)
    problems = info.value.problems
    assert any(p.path == "syncs.0.colour" and "unknown key" in p.message and p.line == 28 for p in problems)
    assert any(p.path == "syncs.0.chunk_rows" and p.line == 27 for p in problems)
    assert any("b.yml" in (p.file or "") and p.path == "syncs.0.source" for p in problems)
    assert any(p.path == "syncs.0.tier" and "not offered by the company endpoint" in p.message for p in problems)
    assert "a.yml" in text and "b.yml" in text


def test_tier_is_checked_per_endpoint(tmp_path: Path) -> None:
    _write(tmp_path, "a.yml", GOOD.replace("endpoint: people", "endpoint: company").replace("tier: low", "tier: xhigh"))
    with pytest.raises(ConfigError, match="tier 'xhigh' is not offered by the company endpoint"):
        load_models(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("key: lead_id", 'key: "lead_id; drop table x"'), "not a safe column name"),
        (("email: The", '"e-mail": The'), "not a safe column name"),
        (("type: integer", "type: integer, values: [a]"), "values is only for type enum"),
        (("table: leads\n", "table: leads\n      sql: select 1\n"), "exactly one of table, sql or ref"),
        (("max_age: 90d", "max_age: ninety days"), "not a duration"),
        (('prefix: "sf_"', 'prefix: "1x"'), "prefix '1x'"),
        (("skills:", "company:"), "name of a source column"),
    ],
)
def test_bad_values_are_explained(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    _write(tmp_path, "a.yml", GOOD.replace(*change))
    with pytest.raises(ConfigError, match=message):
        load_models(tmp_path)


def test_webhook_must_be_https(tmp_path: Path) -> None:
    _write(tmp_path, "a.yml", GOOD.replace("tier: low", "tier: low\n    webhook_url: http://example.com/h"))
    with pytest.raises(ConfigError, match="https"):
        load_models(tmp_path)


def test_duplicate_sync_names_across_files(tmp_path: Path) -> None:
    _write(tmp_path, "a.yml", GOOD)
    _write(tmp_path, "b.yml", GOOD)
    with pytest.raises(ConfigError, match="duplicate sync name 'enrich_leads'"):
        load_models(tmp_path)


def test_duplicate_yaml_key_and_malformed_yaml(tmp_path: Path) -> None:
    _write(tmp_path, "a.yml", GOOD.replace("    tier: low\n", "    tier: low\n    tier: medium\n"))
    _write(tmp_path, "b.yml", "syncs:\n  - name: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_models(tmp_path)
    text = str(info.value)
    assert "duplicate key 'tier'" in text
    assert "b.yml:2" in text or "b.yml:3" in text


def test_env_vars_render_in_models(tmp_path: Path) -> None:
    _write(tmp_path, "a.yml", GOOD.replace("table: leads_enriched", "table: \"{{ env_var('TARGET_T', 'dflt') }}\""))
    assert load_models(tmp_path, env={"TARGET_T": "t_from_env"})[0].spec.target.table == "t_from_env"
    assert load_models(tmp_path, env={})[0].spec.target.table == "dflt"


def test_no_models_is_an_error_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no sync definitions"):
        load_models(tmp_path)


@pytest.mark.parametrize(("text", "seconds"), [("90d", 90 * 86400), ("12h", 43200), ("2w", 1209600), (30, 30)])
def test_durations(text: str | int, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_dbt_properties_files_in_models_are_left_to_dbt(tmp_path: Path) -> None:
    _write(tmp_path, "a.yml", GOOD)
    _write(tmp_path, "schema.yml", "version: 2\nmodels:\n  - name: stg_leads\n    description: x\n")
    _write(tmp_path, "other.yml", "colour: blue\n")
    with pytest.raises(ConfigError) as info:
        load_models(tmp_path)
    assert [p.file.endswith("other.yml") for p in info.value.problems] == [True]
    (tmp_path / "models" / "other.yml").unlink()
    assert [s.spec.name for s in load_models(tmp_path)] == ["enrich_leads"]


# ---------------------------------------------------------------------------------------------- struct types

TYPED = """\
syncs:
  - name: typed
    endpoint: people
    source: {table: leads, key: lead_id}
    struct:
      seniority: {description: Seniority level, type: enum, values: [junior, senior]}
      languages: {description: Languages spoken, type: "List[ Enum ]", enum: [en, de]}
      hq:
        description: Headquarters
        type: object
        subfields:
          city: City
          employees: {description: Staff there, type: integer}
      offices:
        description: Offices
        type: "list[object]"
        subfields:
          - {name: city, description: City, type: string}
          - {name: open, description: "Open now?", type: boolean}
      anything: {description: Free-form, type: object}
      founded: {description: Founding date, type: Date}
    target: {table: out}
"""


def _spec_of(struct: dict) -> SyncSpec:
    return SyncSpec.model_validate(
        {"name": "s", "endpoint": "people", "source": {"table": "t", "key": "id"}, "struct": struct,
         "target": {"table": "o"}}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("str", "str"), ("String", "str"), ("int", "int"), ("INTEGER", "int"), ("float", "float"), ("bool", "bool"),
        ("boolean", "bool"), ("list", "list"), ("list[str]", "list[str]"), ("list[ string ]", "list[str]"),
        ("list[int]", "list[int]"), ("list[integer]", "list[int]"), ("list[float]", "list[float]"),
        ("list[bool]", "list[bool]"), ("List[Boolean]", "list[bool]"), ("dict", "dict"), ("enum", "enum"),
        ("list[enum]", "list[enum]"), ("Object", "object"), ("object_list", "object_list"),
        ("list[object]", "object_list"), ("Date Time", "datetime"),
    ],
)  # fmt: skip
def test_every_type_alias_is_canonicalised(written: str, canonical: str) -> None:
    field = _spec_of({"f": {"description": "d", "type": written}}).struct["f"]
    assert field.type == canonical
    assert field.known == (canonical != "datetime")


def test_the_new_types_load_and_are_sent_in_the_api_shape(tmp_path: Path) -> None:
    _write(tmp_path, "typed.yml", TYPED)
    [loaded] = load_models(tmp_path)
    spec = loaded.spec
    assert spec.struct["seniority"].values == ["junior", "senior"]
    assert spec.struct["languages"].type == "list[enum]" and spec.struct["languages"].values == ["en", "de"]
    hq, offices = spec.struct["hq"], spec.struct["offices"]
    assert [(s.name, s.type) for s in hq.subfields or []] == [("city", "str"), ("employees", "int")]
    assert offices.type == "object_list" and [s.type for s in offices.subfields or []] == ["str", "bool"]
    assert [f.is_json for f in spec.struct.values()] == [False, True, True, True, True, False]
    config = build_api_config(spec, ["lead_id", "name"])
    assert config["struct"] == {
        "seniority": {"description": 'Seniority level. One of: "junior", "senior".', "type": "enum"},
        "languages": {"description": 'Languages spoken. One of: "en", "de".', "type": "list[enum]"},
        "hq": {
            "description": "Headquarters",
            "type": "object",
            "subfields": [
                {"name": "city", "description": "City", "type": "string"},
                {"name": "employees", "description": "Staff there", "type": "int"},
            ],
        },
        "offices": {
            "description": "Offices",
            "type": "object_list",
            "subfields": [
                {"name": "city", "description": "City", "type": "string"},
                {"name": "open", "description": "Open now?", "type": "bool"},
            ],
        },
        "anything": {"description": "Free-form", "type": "object"},
        "founded": {"description": "Founding date", "type": "date"},
    }
    # what is sent passes the client-side check (an unknown type included: the API decides)
    from sixtyfour_sync.api import validate_config

    validate_config("people", config)


def test_an_unknown_type_is_a_located_warning_not_an_error(tmp_path: Path) -> None:
    _write(tmp_path, "typed.yml", TYPED)
    [loaded] = load_models(tmp_path)
    message = (
        "type 'date' is not one the API is known to accept; it is sent as written and stored as text; the API's "
        "answer (422) decides"
    )
    assert loaded.spec.warnings() == [f"struct field founded: {message}"]
    [warning] = loaded.warnings()
    assert (warning.file, warning.line, warning.path) == (str(tmp_path / "models" / "typed.yml"), 21,
                                                          "typed.struct.founded.type")  # fmt: skip
    assert warning.message == message
    assert "founded" in [c.name for c in owned_columns(loaded.spec)]
    assert {c.name: c.type for c in owned_columns(loaded.spec)}["founded"] is LogicalType.TEXT


def test_column_types_of_every_struct_type() -> None:
    spec = _spec_of(
        {t: {"description": "d", "type": t} for t in ("str", "int", "float", "bool", "list", "dict", "enum")}
        | {"le": {"description": "d", "type": "list[enum]"}, "o": {"description": "d", "type": "object"},
           "ol": {"description": "d", "type": "object_list"}, "li": {"description": "d", "type": "list[int]"},
           "u": {"description": "d", "type": "date"}}
    )  # fmt: skip
    types = {c.name: c.type for c in owned_columns(spec)}
    L = LogicalType
    assert {k: types[k] for k in spec.struct} == {
        "str": L.TEXT, "int": L.BIGINT, "float": L.DOUBLE, "bool": L.BOOLEAN, "list": L.JSON, "dict": L.JSON,
        "enum": L.TEXT, "le": L.JSON, "o": L.JSON, "ol": L.JSON, "li": L.JSON, "u": L.TEXT,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("change", "path", "line", "message"),
    [
        (("type: enum, values: [junior, senior]", "type: str, values: [junior, senior]"),
         "syncs.0.struct.seniority.values", 6, "values is only for type enum or list[enum] (this field's type is 'str"),
        (("values: [junior, senior]", "values: [junior, junior]"), "syncs.0.struct.seniority.values", 6,
         "values lists 'junior' more than once"),
        (("values: [junior, senior]", "values: []"), "syncs.0.struct.seniority.values", 6, "values is empty"),
        (("values: [junior, senior]", "values: [junior, 3]"), "syncs.0.struct.seniority.values", 6,
         "values[1] is 3, not a string"),
        (("values: [junior, senior]", 'values: [junior, ""]'), "syncs.0.struct.seniority.values", 6,
         "values holds an empty string"),
        (("enum: [en, de]", "enum: [en, de], values: [fr]"), "syncs.0.struct.languages", 7, "values or enum"),
        (("employees: {description: Staff there, type: integer}", "employees: {description: Staff there, type: date}"),
         "syncs.0.struct.hq.subfields.employees.type", 13, "subfield type 'date' is not offered; use one of: str, "
         "string, int, integer, float, bool, boolean, dict"),
        (("{name: open, description: \"Open now?\", type: boolean}", "{name: open, description: x, type: object}"),
         "syncs.0.struct.offices.subfields.1.type", 19, "subfield type 'object' is not offered"),
        (("{name: open, description: \"Open now?\", type: boolean}", "{name: city, description: x}"),
         "syncs.0.struct.offices.subfields", 17, "subfields names 'city' more than once"),
        (("city: City", "city: {type: int}"), "syncs.0.struct.hq.subfields.city.description", 12,
         "missing required key 'description'"),
        (("anything: {description: Free-form, type: object}",
          "anything: {description: Free-form, type: int, subfields: {a: A}}"),
         "syncs.0.struct.anything.subfields", 20, "subfields is only for type object or object_list"),
        (("type: Date", 'type: " "'), "syncs.0.struct.founded.type", 21, "type is empty"),
    ],
)  # fmt: skip
def test_struct_type_problems_are_located(
    tmp_path: Path, change: tuple[str, str], path: str, line: int, message: str
) -> None:
    assert change[0] in TYPED
    _write(tmp_path, "typed.yml", TYPED.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_models(tmp_path)
    [problem] = info.value.problems
    assert (problem.path, problem.line) == (path, line)
    assert message in problem.message
    assert problem.file == str(tmp_path / "models" / "typed.yml")


#: The stamps of a struct written before values and subfields existed, computed on the code before them:
#: an existing sync must keep its stamps (a changed stamp re-asks and re-pays every row).
PINNED_STRUCT = {
    "email": "The individual's email address",
    "employee_count": {"description": "Employees at their company", "type": "integer"},
    "skills": {"description": "Skills", "type": "list[str]"},
    "revenue": {"description": "Revenue", "type": "float"},
    "hiring": {"description": "Hiring?", "type": "boolean"},
    "meta": {"description": "Meta", "type": "dict"},
    "any": {"description": "Any list", "type": "list"},
}


def test_the_stamps_of_existing_structs_do_not_change() -> None:
    spec = SyncSpec.model_validate(
        {"name": "pin", "endpoint": "people", "source": {"table": "leads", "key": "lead_id"}, "struct": PINNED_STRUCT,
         "target": {"table": "out"}}
    )  # fmt: skip
    assert spec.field_hashes() == {
        "any": "76ade94c0b0d5fb9", "email": "ac3354bb972a11a0", "employee_count": "14174f6fbfe30a7b",
        "hiring": "5362696517dbf524", "meta": "040f73b418f63e3f", "revenue": "64334f40ff2c5446",
        "skills": "fe10f3463f413f5a",
    }  # fmt: skip
    assert spec.spec_hash() == "0cfb5794021229796aadd69ed1ae727e"
    assert spec.spec_hash(["email", "skills"]) == "43d95aa8c96c3c21a67ff927f80b1f17"


def test_values_and_subfields_are_part_of_the_question() -> None:
    def hashes(field: dict) -> tuple[str, str]:
        spec = _spec_of({"f": field})
        return spec.field_hashes()["f"], spec.spec_hash()

    bare = hashes({"description": "Level", "type": "enum"})
    valued = hashes({"description": "Level", "type": "enum", "values": ["a", "b"]})
    assert bare != valued != hashes({"description": "Level", "type": "enum", "values": ["a", "c"]})
    assert valued == hashes({"description": "Level", "type": "ENUM", "enum": ["a", "b"]})
    obj = hashes({"description": "HQ", "type": "object"})
    with_subs = hashes({"description": "HQ", "type": "object", "subfields": {"city": "City"}})
    assert obj != with_subs
    assert with_subs == hashes(
        {"description": "HQ", "type": "object", "subfields": [{"name": "city", "description": "City", "type": "str"}]}
    )
    assert with_subs != hashes({"description": "HQ", "type": "object", "subfields": {"city": "Town"}})


def _sync(name: str, struct: dict[str, str], *, key: str = "lead_id", prefix: str = "", confidence: bool = False):
    return {
        "name": name,
        "endpoint": "people",
        "source": {"table": "leads", "key": key},
        "struct": struct,
        "field_confidence": confidence,
        "target": {"table": "leads_enriched", "prefix": prefix},
    }


@pytest.mark.parametrize(
    ("struct", "confidence", "both"),
    [
        ({"Email": "e", "email": "e"}, False, ("'Email'", "'email'")),
        ({"a": "a", "a_confidence": "c"}, True, ("'a_confidence'", "confidence of struct field 'a'")),
    ],
)
def test_struct_fields_whose_columns_collide_are_refused_naming_both(
    struct: dict[str, str], confidence: bool, both: tuple[str, str]
) -> None:
    with pytest.raises(ValueError, match="would both be written to the column") as err:
        SyncSpec.model_validate(_sync("s", struct, confidence=confidence))
    assert all(name in str(err.value) for name in both)


def test_syncs_sharing_a_table_are_checked_by_the_columns_they_write(tmp_path: Path) -> None:
    import yaml

    a = _sync("a", {"x_email": "Email"})
    b = _sync("b", {"email": "Email"}, prefix="x_")  # another prefix, the same column x_email
    c = _sync("c", {"phone": "Phone"}, key="email", prefix="c_")  # another key on the same table
    _write(tmp_path, "two.yml", yaml.safe_dump({"syncs": [a, b, c]}))
    with pytest.raises(ConfigError) as err:
        load_models(tmp_path)
    text = " ".join(str(p) for p in err.value.problems)
    assert "both would write the column(s) x_email" in text
    assert "key it differently (lead_id and email)" in text
