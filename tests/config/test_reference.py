"""The config reference is generated from the models: the shipped schema and docs/config.md never drift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sixtyfour_sync.config.models import SyncSpec
from sixtyfour_sync.config.reference import (
    SCHEMA_URL,
    build_schema,
    main,
    markdown_reference,
    schema_text,
    shipped_schema,
)
from sixtyfour_sync.scaffold import InitAnswers, render_model

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_schema_and_docs_match_the_models() -> None:
    assert shipped_schema() == schema_text(), "run: python -m sixtyfour_sync.config.reference --write"
    assert (ROOT / "docs" / "config.md").read_text(encoding="utf-8") == markdown_reference()
    assert main(["--check"]) == 0


def test_every_key_of_every_model_is_described() -> None:
    schema = build_schema()
    missing = []
    for name, definition in schema["$defs"].items():
        for key, prop in definition.get("properties", {}).items():
            ref = prop.get("$ref", "").rsplit("/", 1)[-1]
            if not prop.get("description") and not schema["$defs"].get(ref, {}).get("description"):
                missing.append(f"{name}.{key}")
    assert not missing
    assert set(SyncSpec.model_fields) - {"schema_"} <= set(schema["$defs"]["SyncSpec"]["properties"])
    doc = markdown_reference()
    for key in ("research_plan", "webhook_url", "price_cents_per_row", "retry_failed_after", "`schema`"):
        assert key in doc
    assert "public address" in doc  # webhook_url's rule


def test_the_schema_accepts_the_example_models_and_the_scaffold_and_rejects_typos() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(build_schema())
    examples = sorted((ROOT / "models").glob("*.yml"))
    assert examples
    for path in examples:
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, (path, [e.message for e in errors])
    for endpoint in ("people", "company"):
        model = yaml.safe_load(render_model(InitAnswers(endpoint=endpoint)))
        assert not list(validator.iter_errors(model))
    sync = {"name": "x", "endpoint": "people", "source": {"table": "t", "key": "id", "colums": ["a"]}}
    sync |= {"struct": {"e": "E"}, "target": {"table": "o"}, "refresh": {"max_age": "ninety days"}}
    bad = {"syncs": [sync]}
    messages = " ".join(e.message for e in validator.iter_errors(bad))
    assert "colums" in messages and "ninety days" in messages


def test_the_scaffold_points_editors_at_the_schema() -> None:
    first = render_model(InitAnswers()).splitlines()[0]
    assert first == f"# yaml-language-server: $schema={SCHEMA_URL}"
    assert json.loads(schema_text())["$id"] == SCHEMA_URL


def test_unknown_key_hints_list_the_keys_that_exist_there(tmp_path: Path) -> None:
    from sixtyfour_sync.config.loading import load_models
    from sixtyfour_sync.config.profiles import load_target
    from sixtyfour_sync.errors import ConfigError

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.yml").write_text(
        "syncs:\n  - name: a\n    endpoint: people\n    source: {table: t, key: id, colums: [x]}\n"
        "    struct: {e: {description: E, kind: int}}\n    target: {table: o}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_models(tmp_path)
    hints = {p.path: p.hint for p in info.value.problems}
    assert "table, schema, database, sql, ref, key, columns, where" in (hints["syncs.0.source.colums"] or "")
    assert "description, type" in (hints["syncs.0.struct.e.kind"] or "")
    (tmp_path / "profiles.yml").write_text("sixtyfour:\n  outputs:\n    dev: {type: postgres, host: h, user: u, "
                                           "dbname: d, passwrd: x}\n")  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_target(project_dir=tmp_path, env={})
    [problem] = info.value.problems
    assert "password (or pass)" in (problem.hint or "") and "profiles.example" not in (problem.hint or "")


def test_the_schema_takes_every_struct_form_and_flags_bad_subfield_types() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(build_schema())
    struct = {
        "seniority": {"description": "Level", "type": "enum", "values": ["junior", "senior"]},
        "languages": {"description": "Languages", "type": "list[enum]", "enum": ["en", "de"]},
        "hq": {"description": "HQ", "type": "object", "subfields": {"city": "City", "n": {"description": "N",
                                                                                           "type": "int"}}},
        "offices": {"description": "Offices", "type": "object_list",
                    "subfields": [{"name": "city", "description": "City", "type": "string"}]},
        "founded": {"description": "Founded", "type": "date"},  # not known: a warning, never an error
    }  # fmt: skip
    sync = {"name": "x", "endpoint": "people", "source": {"table": "t", "key": "id"}, "struct": struct}
    sync["target"] = {"table": "o"}
    assert not list(validator.iter_errors({"syncs": [sync]}))
    struct["hq"]["subfields"]["n"]["type"] = "date"
    assert list(validator.iter_errors({"syncs": [sync]}))


def test_the_docs_map_every_struct_type_to_a_column_per_warehouse() -> None:
    from sixtyfour_sync.config.structtypes import KNOWN_TYPES

    doc = markdown_reference()
    table = doc.split("## Struct types", 1)[1].split("\n## ", 1)[0]
    header = (
        "| type | sent to the API | read from the result | DuckDB | PostgreSQL | MySQL/MariaDB | SQLite | Snowflake"
    )
    assert header in table
    rows = [line for line in table.splitlines() if line.startswith("| `") or line.startswith("| any other")]
    assert [r.split("`")[1] for r in rows[: len(KNOWN_TYPES)]] == list(KNOWN_TYPES)
    cells = {r.split("`")[1]: [c.strip() for c in r.strip("|").split("|")] for r in rows[: len(KNOWN_TYPES)]}
    assert cells["object"][3:] == ["`JSON`", "`JSONB`", "`JSON`", "`TEXT`", "`VARIANT`", "`JSON`", "`STRING`"]
    assert cells["enum"][3:] == ["`VARCHAR`", "`TEXT`", "`LONGTEXT`", "`TEXT`", "`VARCHAR`", "`STRING`", "`STRING`"]
    assert rows[-1].startswith("| any other name")
