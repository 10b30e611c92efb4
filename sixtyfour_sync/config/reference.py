"""The config reference, generated from the pydantic models: a JSON Schema and ``docs/config.md``.

The schema ships in the package (``sync.schema.json``, printed by ``sixtyfour-sync schema``) and is what the
``# yaml-language-server: $schema=...`` line of scaffolded models points editors at. Both files are generated;
a test fails when either drifts from the models. Regenerate them with::

    python -m sixtyfour_sync.config.reference --write
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from sixtyfour_sync.config.schema_url import SCHEMA_FILE, SCHEMA_URL

__all__ = [
    "SCHEMA_FILE",
    "SCHEMA_URL",
    "build_schema",
    "markdown_reference",
    "schema_text",
    "shipped_schema",
    "struct_types_section",
]

_ORDER = ("SyncSpec", "SourceSpec", "StructField", "SubField", "TargetSpec", "RefreshSpec", "BudgetSpec")
_TITLES = {
    "SyncSpec": "syncs[]: one sync",
    "SourceSpec": "source",
    "StructField": "struct.FIELD",
    "SubField": "struct.FIELD.subfields",
    "TargetSpec": "target",
    "RefreshSpec": "refresh",
    "BudgetSpec": "budget",
}


def build_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a ``models/*.yml`` file."""
    from sixtyfour_sync.config.models import ModelFile

    schema = ModelFile.model_json_schema(by_alias=True)
    struct = schema["$defs"]["SyncSpec"]["properties"]["struct"]
    # a struct field is a plain description or {description, type} (the model folds the first into the second)
    struct["additionalProperties"] = {"anyOf": [{"type": "string", "minLength": 1}, {"$ref": "#/$defs/StructField"}]}
    struct["minProperties"] = 1
    struct["propertyNames"] = {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,62}$"}
    _struct_field_schema(schema["$defs"])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_URL,
        "title": "sixtyfour-sync sync definitions (models/*.yml)",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def _struct_field_schema(defs: dict[str, Any]) -> None:
    """``values`` may be spelled ``enum``; ``subfields`` may be a mapping of name -> description or
    {description, type} (the model folds both into its list)."""
    field = defs["StructField"]
    props = field["properties"]
    sub = defs["SubField"]["properties"]
    props["subfields"]["anyOf"] = [
        {"type": "array", "items": {"$ref": "#/$defs/SubField"}, "minItems": 1},
        {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "anyOf": [
                    {"type": "string", "minLength": 1},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"description": sub["description"], "type": sub["type"]},
                        "required": ["description"],
                    },
                ]
            },
        },
        {"type": "null"},
    ]
    alias = {k: v for k, v in props["values"].items() if k not in ("title", "description")}
    alias["description"] = "Another name for values (give one of the two)."
    ordered: dict[str, Any] = {}
    for key, value in props.items():
        ordered[key] = value
        if key == "values":
            ordered["enum"] = alias
    field["properties"] = ordered


def schema_text() -> str:
    """The generated schema as the shipped file holds it."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


def shipped_schema() -> str:
    """The schema file shipped in the package."""
    return resources.files("sixtyfour_sync.config").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return f"[{_TITLES.get(name, name)}](#{_anchor(name)})"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    if "anyOf" in prop:
        kinds = [_type(p) for p in prop["anyOf"] if p.get("type") != "null"]
        return " or ".join(dict.fromkeys(kinds))
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"mapping of name to {_type(prop['additionalProperties'])}"
    if kind == "object" and "properties" in prop:
        return "{" + ", ".join(prop["properties"]) + "}"
    if kind == "string" and "pattern" in prop and "[smhdw]" in prop["pattern"]:
        return "duration (`90d`, `12h`, `30m`, `45s`, `2w`)"
    return str(kind)


def _anchor(name: str) -> str:
    title = _TITLES.get(name, name)
    return "".join(ch for ch in title.lower().replace(" ", "-") if ch.isalnum() or ch in "-_")


def _default(prop: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" not in prop or prop["default"] is None:
        return ""
    return f"`{json.dumps(prop['default'])}`"


def _table(definition: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    required = set(definition.get("required", []))
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, prop in definition.get("properties", {}).items():
        text = prop.get("description")
        if text is None and "$ref" in prop:  # pydantic drops a description equal to the model's docstring
            text = defs[prop["$ref"].rsplit("/", 1)[-1]].get("description", "")
        text = str(text or "").replace("|", "\\|").replace("<", "&lt;")
        lines.append(f"| `{key}` | {_type(prop)} | {_default(prop, key in required)} | {text} |")
    return lines


def markdown_reference(schema: dict[str, Any] | None = None) -> str:
    """``docs/config.md``: every key of the sync YAML, generated from the schema."""
    schema = schema or build_schema()
    defs = schema["$defs"]
    out = [
        "# Sync definitions: every key",
        "",
        "<!-- Generated from sixtyfour_sync/config/models.py by "
        "`python -m sixtyfour_sync.config.reference --write`; do not edit by hand. -->",
        "",
        "A `models/*.yml` file holds `syncs:`, a list of syncs, and optionally `profile:` for all of them. Every",
        "string value may use `{{ env_var('NAME', 'default') }}` and `{{ var('name', default) }}` (values from",
        "`--vars` or `dbt_project.yml`'s `vars:`). Unknown keys are errors. The JSON Schema of this file is",
        f"`sixtyfour-sync schema` (shipped as `sixtyfour_sync/config/{SCHEMA_FILE}`); start a file with",
        "",
        "```yaml",
        f"# yaml-language-server: $schema={SCHEMA_URL}",
        "```",
        "",
        "and editors with the YAML language server validate and complete it (`sixtyfour-sync init` writes that",
        "line). Offline: `sixtyfour-sync schema -o .sixtyfour-sync.schema.json` and point `$schema=` at that file.",
        "",
        "## The file",
        "",
        *_table(schema, defs),
    ]
    for name in _ORDER:
        definition = defs[name]
        about = str(definition.get("description", "")).strip()
        out += ["", f"## {_TITLES[name]}", "", about, "", *_table(definition, defs)]
        if name == "SubField":
            out += ["", *struct_types_section()]
        if name == "SourceSpec":
            out += ["", *key_types_section()]
    out += ["", *_overwrite_rule()]
    return "\n".join(out) + "\n"


#: What each struct type sends and how its answer is read (the rules of sixtyfour_sync/engine/rows/casts.py).
_SENT = {
    "str": "the description alone (a plain string)",
    "enum": '`{description, "type": "enum"}`; with `values`, the description ends `One of: "a", "b".`',
    "list[enum]": '`{description, "type": "list[enum]"}`; with `values`, as enum',
    "object": '`{description, "type": "object", "subfields": [{name, description, type}]}` (subfields when '
    "given; subfield types go as string, int, float, bool, dict)",
    "object_list": '`{description, "type": "object_list", "subfields": [...]}`, as object',
    "other": "`{description, type}`, the type as written (lower case, no spaces); `validate`, `plan` and `run` warn",
}
_JSON_ARRAY = "valid JSON text that is an array (items not checked), kept as written; NULL when empty, `null`, "
_READ = {
    "str": "the text as it came; NULL only when empty (`NA`, `null`, `nan`, `N/A` are kept as text)",
    "int": "an exact integer (`3.0`, `1e3` too); NULL when empty or not an integer",
    "float": "a finite number; NULL when empty, not a number, `inf`, `-inf`, `nan` or overflowing (`1e400`)",
    "bool": "true/false, t/f, yes/no, y/n, 1/0 (any case); NULL otherwise",
    "list": _JSON_ARRAY + "invalid JSON or not an array",
    "dict": "any valid JSON text, kept as written; NULL when empty, `null` or invalid JSON",
    "enum": "as str; an answer outside `values` is kept and counted in the run's warnings",
    "list[enum]": "as list; an array with an item outside `values` is kept and counted in the run's warnings",
    "object": "valid JSON text that is an object, kept as written; NULL when empty, `null`, invalid JSON or not "
    "an object",
    "object_list": "as list (an array of objects)",
    "other": "as str",
}
_WAREHOUSES = (
    ("DuckDB", "duckdb"),
    ("PostgreSQL", "postgres"),
    ("MySQL/MariaDB", "mysql"),
    ("SQLite", "sqlite"),
    ("Snowflake", "snowflake"),
    ("BigQuery", "bigquery"),
    ("Databricks", "databricks"),
)


def struct_types_section() -> list[str]:
    """The "Struct types" section: every type, what is sent, how the answer is read, the column per warehouse."""
    from sixtyfour_sync.config.models import StructField
    from sixtyfour_sync.config.structtypes import KNOWN_TYPES, TYPE_ALIASES
    from sixtyfour_sync.engine.plan.columns import field_logical_type
    from sixtyfour_sync.warehouse.types import TYPE_NAMES

    lines = [
        "## Struct types",
        "",
        "What each `type` sends to the API, how its answer is read from the result file, and the column it gets in "
        "a new target table on each warehouse.",
        "",
        "- A non-empty answer that does not read as its type is stored as NULL and counted as a cast failure; a row "
        "whose fields are all NULL is `failed`.",
        "- Lists (`list[enum]` and `object_list` too) are stored as JSON on every warehouse, never as native arrays, "
        "so existing targets keep their columns.",
        "- The API's `StructField` has no key for allowed values: `values` travel at the end of the description. "
        "Answers are compared with them exactly (case matters); one outside them is kept and counted.",
        "- On MariaDB, `JSON` is `LONGTEXT` with a `JSON_VALID` check; SQLite and Databricks hold JSON as text.",
        "",
        "| type | sent to the API | read from the result | " + " | ".join(name for name, _ in _WAREHOUSES) + " |",
        "|---|---|---|" + "---|" * len(_WAREHOUSES),
    ]
    for kind in (*KNOWN_TYPES, "other"):
        aliases = [a for a, c in TYPE_ALIASES.items() if c == kind and a != kind]
        label = f"`{kind}`" + (f" ({', '.join(f'`{a}`' for a in aliases)})" if aliases else "")
        if kind == "other":
            label = "any other name (e.g. `date`)"
        sent = _SENT.get(kind, f'`{{description, "type": "{kind}"}}`')
        read = _READ.get(kind, "as list")  # list[str], list[int], list[float], list[bool]
        logical = field_logical_type(StructField(description="x", type="date" if kind == "other" else kind))
        cells = [f"`{TYPE_NAMES[dialect][logical]}`" for _, dialect in _WAREHOUSES]
        lines.append(f"| {label} | {sent} | {read} | " + " | ".join(cells) + " |")
    return lines


#: The key types of the table in docs/config.md: a label, and the key type it stands for.
def _key_rows() -> list[tuple[str, Any]]:
    from sixtyfour_sync.warehouse.keytypes import KeyType

    return [
        ("text (`VARCHAR`, `TEXT`, `CHAR`, `STRING`, an enum)", KeyType("text")),
        ("integer up to 64 bits (`BIGINT`, `INTEGER`, `SMALLINT`, `INT UNSIGNED`...)", KeyType("integer")),
        ("unsigned 64-bit integer (`UBIGINT`, `BIGINT UNSIGNED`)", KeyType("unsigned")),
        ("DuckDB `HUGEINT` / `UHUGEINT`", KeyType("hugeint", source="HUGEINT")),
        ("exact decimal `DECIMAL(p,s)` / `NUMERIC(p,s)` / `NUMBER(p,s)`", KeyType("decimal", 20, 4)),
        ("PostgreSQL `numeric` without a precision", KeyType("decimal")),
        ("float (`DOUBLE`, `REAL`, `FLOAT`)", KeyType("float")),
        ("`BOOLEAN`", KeyType("boolean")),
        ("`DATE`", KeyType("date")),
        ("`TIMESTAMP` (no time zone: `DATETIME`, `TIMESTAMP_NTZ`)", KeyType("timestamp")),
        (
            "`TIMESTAMP WITH TIME ZONE` (`TIMESTAMPTZ`, `TIMESTAMP_TZ`/`_LTZ`, BigQuery `TIMESTAMP`)",
            KeyType("timestamptz"),
        ),
        ("`UUID`", KeyType("uuid")),
    ]


def key_types_section() -> list[str]:
    """The "Key types" section: the key types the sync carries and the type the target's key column gets."""
    from sixtyfour_sync.warehouse.keytypes import key_sql_type
    from sixtyfour_sync.warehouse.types import KEY_TYPE_NAMES, TYPE_NAMES, LogicalType

    lines = [
        "## Key types",
        "",
        "The target's key columns are created with the source key's own type, so every later run compares keys",
        "like with like and no exact number ever becomes a double. The type is read from the warehouse (DuckDB's",
        "`DESCRIBE`, PostgreSQL's `format_type`, MySQL's column type of the query) or, elsewhere, from how its rows",
        "arrive. `DECIMAL(20,4)` stands for any precision and scale, which the target keeps.",
        "",
        "| source key type | " + " | ".join(name for name, _ in _WAREHOUSES) + " |",
        "|---|" + "---|" * len(_WAREHOUSES),
    ]
    for label, kt in _key_rows():
        cells = []
        for _, dialect in _WAREHOUSES:
            only = {"hugeint": "duckdb"}.get(kt.kind) or (
                "postgres" if kt.kind == "decimal" and kt.precision is None else None
            )
            if only is not None and dialect != only:
                cells.append("-")  # a type only that warehouse has
                continue
            text = KEY_TYPE_NAMES.get(dialect, {}).get(LogicalType.TEXT) or TYPE_NAMES[dialect][LogicalType.TEXT]
            cells.append(f"`{key_sql_type(dialect, kt, text)}`")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "- Refused as keys, by `validate`, `plan` and `run` before anything is paid for (the message names the key,",
        "  its type and the supported types): `TIME`, `INTERVAL`, `BLOB`/`bytea`/`BINARY`, bit strings, JSON,",
        "  `VARIANT`, arrays, structs, maps, geography, nanosecond timestamps (DuckDB `TIMESTAMP_NS`), BigQuery",
        "  `BIGNUMERIC` and `money`. Cast such a key in `source.sql` (an id as text, say) or key the sync by another",
        "  column.",
        "- A float key is exact in its own type and kept; a NaN or infinite key is skipped and reported like a NULL",
        "  one (no file can carry it). A decimal or unsigned 64-bit key is written to the file as a JSON string, so",
        "  no JSON parser turns it into a double; DuckDB's `HUGEINT` and MySQL's unsigned and decimal keys travel",
        "  as text between the warehouse and the result, and the warehouse converts them back on merge.",
        "- Timestamps are carried to the microsecond. A UUID is text of its canonical form where the warehouse has",
        "  no UUID type. Snowflake's `NUMBER(38,0)` (its `INTEGER`/`BIGINT`) is read as a 64-bit integer; declare a",
        "  wider key `NUMBER(p,0)` with p from 19 to 37 to carry values beyond 2^63 exactly. bqemulator's `NUMERIC`",
        "  holds fewer digits than BigQuery's (38, scale 9).",
        "- A target an earlier version created with a text key (a PostgreSQL `uuid`, `date` or `numeric` key) or",
        "  a double key (an exact number) keeps working: the source key is cast to the stored type wherever keys",
        "  are compared.",
    ]
    return lines


def _overwrite_rule() -> list[str]:
    from sixtyfour_sync.engine.results.overwrite import rule_table

    return [
        "## The overwrite rule",
        "",
        "What a merge does to each stored field (and its `<field>_confidence`), decided row by row in SQL against",
        "the stored hashes, on every warehouse (`sixtyfour_sync/engine/results/overwrite.py` states it; this table is",
        "computed from it). A stored value *answered the same question* when the row's `_sixtyfour_input_hash`",
        "(its inputs) and `_sixtyfour_spec_hash` (endpoint, tier, the field definitions, options) equal the new",
        "answer's; a row whose inputs or field definitions changed is another question. An answer to an earlier",
        "question never outranks the answer to the question asked now, whatever the confidences.",
        "",
        *rule_table(),
        "",
        "- *write*: the new answer (an enriched row that left the field empty writes it empty) and its confidence.",
        "- *keep*: the stored value and its confidence stay. For an answer below `min_confidence` the new",
        "  confidence is still written to `<field>_confidence`, and `_sixtyfour_field_status` says",
        "  `low_confidence` for the field.",
        "- *clear*: the stored value (and, for a row not enriched, its confidence) becomes NULL, so an earlier",
        "  question's answer is never left standing as if it answered this one; below `min_confidence`,",
        "  `_sixtyfour_field_status` says `low_confidence`.",
        "- A new row gets the answer where it would be written, else NULL.",
        "- `--full-refresh` and a `max_age` refresh of unchanged inputs ask the same question again: the same rule",
        "  applies (with `keep_more_confident`, a more confident stored value stays). Without `field_confidence`",
        "  there is no threshold and no confidence: an enriched answer is written, a row not enriched keeps or",
        "  clears by the same question test.",
    ]


def _paths(root: Path) -> tuple[Path, Path]:
    return root / "sixtyfour_sync" / "config" / SCHEMA_FILE, root / "docs" / "config.md"


def main(argv: list[str] | None = None) -> int:
    """``--write``: regenerate the shipped schema and docs/config.md; ``--check``: exit 1 when they drift."""
    args = argv if argv is not None else sys.argv[1:]
    root = Path(__file__).resolve().parents[2]
    schema_path, doc_path = _paths(root)
    wanted = {schema_path: schema_text(), doc_path: markdown_reference()}
    if "--write" in args:
        for path, text in wanted.items():
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        return 0
    stale = [str(p) for p, text in wanted.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    for p in stale:
        print(f"out of date: {p} (run python -m sixtyfour_sync.config.reference --write)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
