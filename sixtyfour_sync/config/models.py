"""Sync definitions: ``models/*.yml`` (CONTRACT.md, "A sync definition").

Every file is parsed with line numbers, ``{{ env_var(...) }}`` is rendered, and every problem in every file is
reported at once, each with file, line, dotted path and a hint.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from sixtyfour_sync.config.structtypes import (
    ENUM_TYPES,
    JSON_TYPES,
    KNOWN_TYPES,
    OBJECT_TYPES,
    SUBFIELD_API_NAMES,
    SUBFIELD_TYPE_ALIASES,
    canonical_subfield_type,
    canonical_type,
    enum_description,
    is_known_type,
)
from sixtyfour_sync.config.yamlfile import LineMap, load_yaml
from sixtyfour_sync.errors import ConfigError, ConfigProblem

__all__ = [
    "BOOKKEEPING_COLUMNS",
    "MAX_CHUNK_ROWS",
    "SYNC_DIRS",
    "BudgetSpec",
    "ModelFile",
    "Models",
    "RefreshSpec",
    "SourceSpec",
    "StructField",
    "SubField",
    "SyncSpec",
    "TargetSpec",
    "build_api_config",
    "load_models",
    "load_project_models",
    "parse_duration",
]

MAX_CHUNK_ROWS = 100_000
BOOKKEEPING_COLUMNS = (
    "_sixtyfour_status",
    "_sixtyfour_enriched_at",
    "_sixtyfour_task_id",
    "_sixtyfour_input_hash",
    "_sixtyfour_spec_hash",
    "_sixtyfour_tier",
)

_TIERS = {
    "people": ("micro", "low", "medium", "high", "xhigh", "scout"),
    "company": ("micro", "low", "medium", "high"),
}
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
#: Top-level keys of dbt's own YAML files, which sit in the same models/ folder inside a dbt project.
_DBT_KEYS = {
    "version", "models", "sources", "seeds", "snapshots", "macros", "exposures", "metrics", "semantic_models",
    "saved_queries", "unit_tests", "data_tests", "groups", "analyses",
}  # fmt: skip
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str | int | float) -> timedelta:
    """``"90d"``, ``"12h"``, ``"30m"``, ``"45s"``, ``"2w"`` or a number of seconds, as a timedelta."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90d, 12h or 30m")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    m = _DURATION_RE.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration; use a number and a unit: 90d, 12h, 30m, 45s, 2w")
    return timedelta(seconds=int(m.group(1)) * _DURATION_UNITS[m.group(2)])


def _identifier(value: str, what: str) -> str:
    if not _FIELD_RE.match(value):
        raise ValueError(
            f"{what} {value!r} is not a safe column name: use letters, digits and _ "
            "(not starting with a digit, at most 63 characters)"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class SubField(_Strict):
    """One subfield of an object or object_list field: a key of the object the API answers."""

    name: str = Field(min_length=1, description="The key of this value in the answered object.")
    description: str = Field(min_length=1, description="What to find, in plain words.")
    type: str = Field(
        default="str",
        description="The value's type: str, int, float, bool or dict (the API's subfield types; aliases string, "
        "integer, boolean). Sent as string, int, float, bool, dict.",
        json_schema_extra={"enum": list[JsonValue](SUBFIELD_TYPE_ALIASES)},
    )

    @field_validator("type")
    @classmethod
    def _subfield_type(cls, v: str) -> str:
        canonical = canonical_subfield_type(v)
        if canonical is None:
            raise ValueError(f"subfield type {v!r} is not offered; use one of: {', '.join(SUBFIELD_TYPE_ALIASES)}")
        return canonical

    def api_value(self) -> dict[str, str]:
        """The subfield as sent: the API's ``StructField`` shape."""
        return {"name": self.name, "description": self.description, "type": SUBFIELD_API_NAMES[self.type]}


_UNKNOWN_TYPE = (
    "type {type!r} is not one the API is known to accept; it is sent as written and stored as text; the API's "
    "answer (422) decides"
)


class StructField(_Strict):
    """One output field: what to ask for and the type to cast the answer to."""

    description: str = Field(
        min_length=1, description="What to find, in plain words; sent to the API as the field's description."
    )
    type: str = Field(
        default="str",
        description="The type of the answer: "
        + ", ".join(KNOWN_TYPES)
        + " (aliases string, integer, boolean, list[string], list[integer], list[boolean], list[object]; case "
        "and spaces do not matter). See [Struct types](#struct-types) for what each sends, stores and reads. "
        "Another name is sent as written and stored as text, with a warning: the API decides.",
        json_schema_extra={"examples": list[JsonValue](KNOWN_TYPES)},
    )
    values: list[str] | None = Field(
        default=None,
        validation_alias=AliasChoices("values", "enum"),
        description="enum and list[enum] only: the allowed answers (distinct, non-empty strings; the key enum "
        "works too). They are sent at the end of the description (One of: ...); an answer outside them is "
        "kept and counted in the run's warnings.",
    )
    subfields: list[SubField] | None = Field(
        default=None,
        description="object and object_list only: the keys of each answered object, as a mapping (name: "
        "description, or name: {description, type}) or as a list of {name, description, type}. Without "
        "subfields the API chooses the keys.",
    )
    min_confidence: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="This field's confidence threshold (0-100), over the sync's min_confidence: an answer below "
        "it is not written. Needs field_confidence: true.",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_values_key(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "values" in data and "enum" in data:
            raise ValueError("give the allowed answers once: values or enum, not both")
        return data

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        canonical = canonical_type(v)
        if not canonical:
            raise ValueError(f"type is empty; use one of: {', '.join(KNOWN_TYPES)}")
        return canonical

    @field_validator("values", mode="before")
    @classmethod
    def _values_are_text(cls, v: Any) -> Any:
        if isinstance(v, list):
            for i, item in enumerate(v):
                if not isinstance(item, str):
                    raise ValueError(f"values[{i}] is {item!r}, not a string: quote it (values are compared as text)")
        return v

    @field_validator("values")
    @classmethod
    def _values(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if v is None:
            return v
        kind = info.data.get("type")
        if kind is not None and kind not in ENUM_TYPES:
            raise ValueError(f"values is only for type enum or list[enum] (this field's type is {kind!r})")
        if not v:
            raise ValueError("values is empty: list the allowed answers, or leave values out")
        if any(not item for item in v):
            raise ValueError("values holds an empty string")
        dupes = sorted({item for item in v if v.count(item) > 1})
        if dupes:
            raise ValueError(f"values lists {', '.join(repr(d) for d in dupes)} more than once")
        return v

    @field_validator("subfields", mode="before")
    @classmethod
    def _subfield_forms(cls, v: Any) -> Any:
        if not isinstance(v, Mapping):
            return v
        out = []
        for name, value in v.items():
            if isinstance(value, Mapping):
                if "name" in value and value["name"] != name:
                    raise ValueError(f"subfield {name!r} names itself {value['name']!r}: give one name")
                out.append({"name": str(name), **value})
            else:
                out.append({"name": str(name), "description": value})
        return out

    @field_validator("subfields")
    @classmethod
    def _subfields(cls, v: list[SubField] | None, info: ValidationInfo) -> list[SubField] | None:
        if v is None:
            return v
        kind = info.data.get("type")
        if kind is not None and kind not in OBJECT_TYPES:
            raise ValueError(f"subfields is only for type object or object_list (this field's type is {kind!r})")
        if not v:
            raise ValueError("subfields is empty: name the keys of the object, or leave subfields out")
        names = [s.name for s in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"subfields names {', '.join(repr(d) for d in dupes)} more than once")
        return v

    @property
    def is_json(self) -> bool:
        """Lists, dicts, objects and list[enum] are stored as JSON."""
        return self.type in JSON_TYPES

    @property
    def known(self) -> bool:
        """Whether the type is one of the API's schema (else it is sent as written and stored as text)."""
        return is_known_type(self.type)

    def warning(self) -> str | None:
        """What the API may refuse in this field (an unknown type), or None."""
        return None if self.known else _UNKNOWN_TYPE.format(type=self.type)

    def api_value(self) -> str | dict[str, Any]:
        """The field as sent in ``config.struct``: a plain description for a plain ``str`` field, else
        ``{description, type}`` (enum values appended to the description; ``subfields`` in the API's
        ``StructField`` shape)."""
        if self.type == "str":
            return self.description
        description = self.description
        if self.values is not None:
            description = enum_description(description, self.values)
        out: dict[str, Any] = {"description": description, "type": self.type}
        if self.subfields is not None:
            out["subfields"] = [s.api_value() for s in self.subfields]
        return out

    def hash_extras(self) -> dict[str, Any]:
        """What the stamp covers besides the description and type: the values and subfields, when given (so a
        field without them keeps the stamp it always had)."""
        extras: dict[str, Any] = {}
        if self.values is not None:
            extras["values"] = list(self.values)
        if self.subfields is not None:
            extras["subfields"] = [[s.name, s.description, s.type] for s in self.subfields]
        return extras


class SourceSpec(_Strict):
    """Where the rows come from: a table, a SQL query or a dbt model, and the key that identifies a row."""

    table: str | None = Field(
        default=None, description="A source table (or view). Give exactly one of table, sql and ref."
    )
    schema_: str | None = Field(
        default=None,
        alias="schema",
        description="The schema of source.table; default: the profile target's schema. Never created.",
    )
    database: str | None = Field(
        default=None, description="The database (catalog) of source.table, when not the target's."
    )
    sql: str | None = Field(default=None, description="A SELECT whose rows are the source (instead of table or ref).")
    ref: str | None = Field(
        default=None,
        description="A dbt model (or seed, snapshot) name, resolved to its relation through target/manifest.json; "
        "the manifest must have been built for the same target.",
    )
    key: Annotated[
        list[str],
        WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}),
    ] = Field(
        description="The column (or list of columns) that identifies a row. Always sent, to tie results back; "
        "rows with a NULL or duplicated key are reported and never sent."
    )
    columns: list[str] | None = Field(
        default=None,
        description="The input columns sent for research. The key always travels in the file to tie results back; "
        "it steers the research only when listed here too (key: domain with columns: [name, domain]: the natural "
        "key of a company is its best input). Default: every source column but the key.",
    )
    where: str | None = Field(default=None, description="A SQL filter on the source rows, e.g. \"country = 'US'\".")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, str_strip_whitespace=True)

    @field_validator("key", mode="before")
    @classmethod
    def _key_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("key")
    @classmethod
    def _key_names(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("the key needs at least one column")
        if len(set(v)) != len(v):
            raise ValueError("the key lists a column twice")
        return [_identifier(k, "key column") for k in v]

    @field_validator("columns")
    @classmethod
    def _column_names(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("columns is empty: list the columns to send, or leave it out to send all")
        if len(set(v)) != len(v):
            raise ValueError("columns lists a column twice")
        return [_identifier(c, "column") for c in v]

    @model_validator(mode="after")
    def _one_source(self) -> SourceSpec:
        given = [k for k in ("table", "sql", "ref") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of table, sql or ref" + (f" (found {', '.join(given)})" if given else "")
            )
        return self


class TargetSpec(_Strict):
    """Where enriched columns are written."""

    table: str = Field(
        description="The table the enriched columns are written to; created when missing. Only the columns this "
        "sync owns are written, so other tools may write the same table."
    )
    schema_: str | None = Field(
        default=None,
        alias="schema",
        description="The schema of the target table; default: the profile target's schema (created when missing). "
        "The ledger lives there too unless the profile sets ledger_schema.",
    )
    database: str | None = Field(
        default=None, description="The database (catalog) of the target table, when not the target's."
    )
    prefix: str = Field(
        default="",
        description="Prefix for the struct columns in the target (e.g. sf_ gives sf_email, sf_email_confidence).",
    )
    adopt_columns: list[str] = Field(
        default_factory=list,
        description="Columns of an existing target the sync may write though it did not create them (the ledger "
        "knows which it created). A struct column that already exists in the table, written by another tool, is "
        "otherwise refused before anything is paid for, so a sync never overwrites what it does not own. Never "
        "an input column of a source that is the target itself.",
    )
    on_source_delete: Literal["keep", "flag", "delete"] = Field(
        default="keep",
        description="What a run does to a target row the sync wrote whose key is gone from the source: keep "
        "(default: the row stays, unmarked), flag (sets _sixtyfour_source_deleted_at to when the run saw it gone, "
        "and clears it if the key comes back) or delete (removes the row; only for a target that holds nothing "
        "but this sync's columns). Done in the warehouse by one statement at the end of each run, never on rows "
        "the sync did not write.",
    )
    on_source_delete_scope: Literal["source", "selection"] | None = Field(
        default=None,
        description="With on_source_delete and a source.where: what 'gone from the source' means. source: gone "
        "from the table, query or model itself (a row the filter leaves out is not deleted); selection: no longer "
        "selected by the filter either (a lead moving from US to DE under where: country = 'US' counts as "
        "deleted). Required then, so a filter is never mistaken for a deletion.",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, str_strip_whitespace=True)

    @property
    def tracks_deletions(self) -> bool:
        """Whether a run flags or deletes target rows whose key is gone from the source."""
        return self.on_source_delete != "keep"

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if v and not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,30}$", v):
            raise ValueError(f"prefix {v!r} must be letters, digits and _ (not starting with a digit)")
        return v


_Duration = Annotated[
    timedelta | None,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": "^\\s*\\d+\\s*[smhdw]\\s*$"},
                {"type": "number", "minimum": 0},
                {"type": "null"},
            ]
        }
    ),
]


class RefreshSpec(_Strict):
    """Which rows a run selects."""

    when: Literal["missing", "changed", "stale", "always"] = Field(
        default="changed",
        description="Which rows a run sends: missing (never enriched), changed (also rows whose inputs or "
        "struct/tier/options changed, and rows older than max_age when set), stale (never enriched or older than "
        "max_age), always (every row, as run --full-refresh).",
    )
    max_age: _Duration = Field(
        default=None,
        description="Re-enrich rows enriched longer ago than this (with when: stale or changed): 90d, 12h, 30m, "
        "45s, 2w, or seconds.",
    )
    retry_failed_after: _Duration = Field(
        default=None,
        description="A row the API could not enrich is not paid for again before this much time has passed "
        "(never, when unset). A changed question is a new one.",
    )
    limit: Annotated[int, Field(gt=0)] | None = Field(default=None, description="At most this many rows per run.")

    @field_validator("max_age", "retry_failed_after", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return None if v is None else parse_duration(v)

    @model_validator(mode="after")
    def _stale_needs_age(self) -> RefreshSpec:
        if self.when == "stale" and self.max_age is None:
            raise ValueError("when: stale needs max_age (for example max_age: 90d)")
        return self


class BudgetSpec(_Strict):
    """Spending limits for one run of the sync."""

    max_cost_cents: Annotated[int, Field(ge=0)] | None = Field(
        default=None,
        description="Never submit work estimated above this many cents in one run of this sync (run "
        "--max-cost-cents caps every sync of the run).",
    )
    price_cents_per_row: Annotated[float, Field(ge=0)] | None = Field(
        default=None,
        description="The price of one row in cents, for plan's estimates and the budget before the API has "
        "quoted one (Sixtyfour publishes no price table; the API's own estimate is the truth once known).",
    )


class SyncSpec(_Strict):
    """One sync: rows from a source, enriched by an endpoint, written to a target."""

    _question_tier: str | None = PrivateAttr(default=None)
    #: For a "new fields" step: the sync's whole spec, whose question the step's answers complete.
    _whole: SyncSpec | None = PrivateAttr(default=None)

    name: str = Field(
        description="Unique across models/; what --select matches. Letters, digits, _, - and . (at most 128)."
    )
    description: str | None = Field(default=None, description="Free text; becomes the dbt source table's description.")
    tags: list[str] = Field(default_factory=list, description="Tags for --select tag:NAME.")
    enabled: bool = Field(default=True, description="false: left out of every run unless selected by its exact name.")
    endpoint: Literal["people", "company"] = Field(
        description="people (POST /bulk-intelligence/people) or company (POST /bulk-intelligence/company)."
    )
    source: SourceSpec = Field(description="Where the rows come from, and their key.")
    struct: dict[str, StructField] = Field(
        description="What to get back: field name -> a description, or {description, type} (with values for an "
        "enum, subfields for an object). One target column per field (plus <field>_confidence with "
        "field_confidence)."
    )
    tier: str = Field(
        default="low",
        description="Research depth: micro, low (default), medium, high; people also xhigh and scout. high, xhigh "
        "and scout are gated: 403 without access.",
        json_schema_extra={"enum": list[JsonValue](sorted(set(_TIERS["people"]) | set(_TIERS["company"])))},
    )
    escalate: list[str] = Field(
        default_factory=list,
        description="Tier escalation: the tiers to ask next, in order (escalate: [medium, high]). Once the run has "
        "merged the answers at `tier`, rows that came back failed, with a requested field empty, or below "
        "min_confidence are asked again at the next tier, within the budget; a row is never asked twice at one "
        "tier for one question. The tier of each answer is in _sixtyfour_tier.",
    )
    field_confidence: bool = Field(
        default=False, description="Ask for a 0-100 confidence per field, stored as <field>_confidence."
    )
    min_confidence: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Confidence gating (needs field_confidence: true): a field answered below this confidence "
        "(0-100) is not written (the stored value stays if it answered the same question, and is cleared otherwise: "
        "docs/config.md, the overwrite rule); the answer's confidence goes to <field>_confidence and "
        "_sixtyfour_field_status says low_confidence for that field. A struct field's own min_confidence wins. "
        "Changing it asks nothing again.",
    )
    overwrite: Literal["always", "keep_more_confident", "higher_confidence"] = Field(
        default="always",
        description="What an answer does to a stored value (docs/config.md, the overwrite rule). always (default): "
        "an answer to the question asked now replaces the stored value whenever it meets min_confidence. "
        "keep_more_confident: between answers to the same question (same inputs, same field definition), a stored "
        "value with a higher confidence stays; an answer to a new question still replaces it. higher_confidence is "
        "an older name of keep_more_confident.",
    )
    research_plan: str | None = Field(
        default=None,
        description="Free-text guidance for the research (sent as config.research_plan); part of the question, "
        "so changing it re-enriches rows under when: changed.",
    )
    webhook_url: str | None = Field(
        default=None,
        description="An https:// URL (at most 2083 characters) the API POSTs a signed delivery to when a job "
        "ends. It must resolve to a public address: the API refuses localhost, loopback and private addresses, and "
        "so does every command here before anything is written. Point it at the public HTTPS address in front of "
        "`sixtyfour-sync webhooks serve`, which finishes the jobs; `run` still polls unless given --no-wait.",
    )
    target: TargetSpec = Field(description="Where the enriched columns are written.")
    refresh: RefreshSpec = Field(default_factory=RefreshSpec, description="Which rows a run selects.")
    budget: BudgetSpec = Field(default_factory=BudgetSpec, description="Spending limits and the price per row.")
    chunk_rows: Annotated[int, Field(gt=0, le=MAX_CHUNK_ROWS)] = Field(
        default=MAX_CHUNK_ROWS,
        description="Rows per submitted file, at most 100,000 (files also stay under 100 MB).",
    )
    profile: str | None = Field(
        default=None, description="The profiles.yml profile for this sync (default: the file's)."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"sync name {v!r}: use letters, digits, _, - and . (at most 128 characters)")
        return v

    @field_validator("struct", mode="before")
    @classmethod
    def _struct_forms(cls, v: Any) -> Any:
        if not isinstance(v, Mapping):
            return v
        out: dict[Any, Any] = {}
        for key, value in v.items():
            out[key] = {"description": value} if isinstance(value, str) else value
        return out

    @field_validator("struct")
    @classmethod
    def _struct_fields(cls, v: dict[str, StructField]) -> dict[str, StructField]:
        if not v:
            raise ValueError("struct is empty: name at least one field to get back")
        for name in v:
            _identifier(name, "struct field")
            if name.lower().startswith("_sixtyfour"):
                raise ValueError(f"struct field {name!r}: names starting with _sixtyfour are reserved")
        return v

    @field_validator("tier")
    @classmethod
    def _tier(cls, v: str, info: ValidationInfo) -> str:
        # a field validator (not a model one) so a bad tier is reported with every other problem
        endpoint = info.data.get("endpoint")
        tiers = _TIERS.get(endpoint or "", ())
        if tiers and v not in tiers:
            raise ValueError(f"tier {v!r} is not offered by the {endpoint} endpoint; use one of: {', '.join(tiers)}")
        return v

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, v: str | None) -> str | None:
        if v is not None and (not v.startswith("https://") or len(v) > 2083):
            raise ValueError("webhook_url must be an https:// URL of at most 2083 characters")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> SyncSpec:
        tiers = _TIERS[self.endpoint]
        if self.tier not in tiers:
            raise ValueError(
                f"tier {self.tier!r} is not offered by the {self.endpoint} endpoint; use one of: " + ", ".join(tiers)
            )
        lower_key = {k.lower() for k in self.source.key}
        inputs = {c.lower() for c in (self.source.columns or [])}
        for name in self.struct:
            if name.lower() in lower_key or name.lower() in inputs:
                raise ValueError(
                    f"struct field {name!r} has the name of a source column; the result file would hold two "
                    "columns of that name: rename the field"
                )
        for i, step in enumerate(self.escalate):
            if step not in tiers:
                raise ValueError(
                    f"escalate[{i}]: tier {step!r} is not offered by the {self.endpoint} endpoint; use one of: "
                    + ", ".join(tiers)
                )
            if step == self.tier or step in self.escalate[:i]:
                raise ValueError(
                    f"escalate[{i}]: tier {step!r} is already asked (tier: {self.tier}, escalate: "
                    f"{self.escalate}); each tier appears once"
                )
        if self.target.tracks_deletions and self.source.where and self.target.on_source_delete_scope is None:
            raise ValueError(
                f"target.on_source_delete: {self.target.on_source_delete} with a source.where: say what 'deleted' "
                "means with target.on_source_delete_scope: source (gone from the source itself; a row the filter "
                "leaves out is kept) or selection (a row the filter no longer selects counts as deleted)"
            )
        gated = [n for n, f in self.struct.items() if f.min_confidence is not None]
        if (self.min_confidence is not None or gated) and not self.field_confidence:
            where = "min_confidence" if self.min_confidence is not None else f"struct.{gated[0]}.min_confidence"
            raise ValueError(f"{where} needs field_confidence: true (the API then sends a confidence per field)")
        for col in self.output_columns():
            if col.lower() in lower_key:
                raise ValueError(f"target column {col!r} would overwrite the key: change target.prefix")
        clash = _column_clash(self.column_origins())
        if clash:
            raise ValueError(clash)
        return self

    def column_origins(self) -> list[tuple[str, str]]:
        """Every target column this sync writes, with where it comes from (for messages)."""
        out = [(self.column_for(f), f"struct field {f!r}") for f in self.struct]
        if self.field_confidence:
            out += [(self.column_for(f"{f}_confidence"), f"the confidence of struct field {f!r}") for f in self.struct]
        out += [(c, "a bookkeeping column") for c in self.output_columns() if c.startswith("_sixtyfour")]
        return out

    def escalated(self, tier: str) -> SyncSpec:
        """This sync asked at ``tier`` (an escalation step): same question, same stamp, another depth."""
        step = self.model_copy(update={"tier": tier, "escalate": []})
        step._question_tier = self._question_tier or self.tier
        return step

    @property
    def question_tier(self) -> str:
        """The tier the sync's question is defined at (``tier``; for an escalation step, the sync's tier)."""
        return self._question_tier or self.tier

    def threshold(self, field: str) -> int | None:
        """The confidence below which an answer for ``field`` is not written (None: no gating)."""
        own = self.struct[field].min_confidence
        return own if own is not None else self.min_confidence

    @property
    def overwrite_policy(self) -> Literal["always", "keep_more_confident"]:
        """The overwrite rule's policy (``higher_confidence`` is an older name of ``keep_more_confident``)."""
        return "always" if self.overwrite == "always" else "keep_more_confident"

    @property
    def gating(self) -> bool:
        """Whether any field is gated by confidence."""
        return self.field_confidence and any(self.threshold(f) is not None for f in self.struct)

    # -- derived -----------------------------------------------------------------------------------

    def column_for(self, field: str) -> str:
        """The target column that holds ``field``."""
        return f"{self.target.prefix}{field}"

    def bookkeeping(self, name: str) -> str:
        """The target column of one bookkeeping value (``status``, ``enriched_at``, ``task_id``...).

        Bookkeeping is per sync: ``_sixtyfour_<name>`` without a ``target.prefix``, ``_sixtyfour_<prefix><name>``
        with one, so two syncs that share a target table (kept apart by their prefixes) never overwrite each
        other's hashes and statuses.
        """
        return f"_sixtyfour_{self.target.prefix}{name}"

    def bookkeeping_columns(self) -> list[str]:
        """This sync's bookkeeping columns, in the order of :data:`BOOKKEEPING_COLUMNS`."""
        return [self.bookkeeping(c.removeprefix("_sixtyfour_")) for c in BOOKKEEPING_COLUMNS]

    def output_columns(self) -> list[str]:
        """Every column this sync owns in the target, in order: fields, confidences, bookkeeping."""
        cols = [self.column_for(f) for f in self.struct]
        if self.field_confidence:
            cols += [self.column_for(f"{f}_confidence") for f in self.struct]
        cols += self.bookkeeping_columns()
        if self.gating:
            cols.append(self.bookkeeping("field_status"))
        if self.target.on_source_delete == "flag":
            cols.append(self.bookkeeping("source_deleted_at"))
        return cols

    def only_fields(self, names: Iterable[str]) -> SyncSpec:
        """This sync asking just ``names`` (fields added or changed since a row was answered).

        Its answers complete the rows' earlier ones, so they are stamped with the whole sync's question.
        """
        wanted = set(names)
        step = self.model_copy(update={"struct": {k: f for k, f in self.struct.items() if k in wanted}})
        step._whole = self._whole or self
        return step

    @property
    def field_subset(self) -> bool:
        """Whether this is a "new fields" step asking part of the sync's struct."""
        return self._whole is not None

    def field_hashes(self) -> dict[str, str]:
        """Each struct field's own hash (its description and type, and its values and subfields when given): a
        change in one re-asks only that one."""
        out = {}
        for k, f in sorted(self.struct.items()):
            what: list[Any] = [f.description, f.type]
            extras = f.hash_extras()
            if extras:  # only when given: a field without them keeps the hash it always had
                what.append(extras)
            out[k] = hashlib.sha256(json.dumps(what, ensure_ascii=False).encode()).hexdigest()[:16]
        return out

    def warnings(self) -> list[str]:
        """What this definition allows but the API may refuse (an unknown struct type); never an error."""
        return [f"struct field {name}: {w}" for name, f in self.struct.items() if (w := f.warning()) is not None]

    def question_base(self) -> dict[str, Any]:
        """What every field of the question shares: a change here re-asks every field."""
        return {
            "endpoint": self.endpoint,
            "tier": self._question_tier or self.tier,
            "field_confidence": self.field_confidence,
            "research_plan": self.research_plan or None,
        }

    def spec_definition(self, fields: Iterable[str] | None = None) -> dict[str, Any]:
        """What :meth:`spec_hash` covers, kept in the ledger so a stamp tells which fields it answered."""
        wanted = set(self.struct) if fields is None else set(fields)
        return {"base": self.question_base(), "fields": {k: h for k, h in self.field_hashes().items() if k in wanted}}

    def stamp_definitions(self, missing: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
        """The stamps a merge of this spec's answers writes (the whole question; without ``missing`` fields,
        when a result lacked them), each with its definition."""
        whole = self._whole or self
        out = {whole.spec_hash(): whole.spec_definition()}
        lacking = set(missing)
        if lacking:
            answered = set(whole.struct) - lacking
            out[whole.spec_hash(answered)] = whole.spec_definition(answered)
        if self.field_subset and whole.escalate:
            for done in (False, True):
                out.update([self.through_stamp(done=done)])
        return out

    @property
    def ladder(self) -> list[str]:
        """The tiers the sync asks at, in order: its own, then ``escalate``."""
        whole = self._whole or self
        return [whole._question_tier or whole.tier, *whole.escalate]

    def through_stamp(self, tier: str | None = None, *, done: bool = False) -> tuple[str, dict[str, Any]]:
        """A "new fields" step's stamp for rows whose new fields were asked up to ``tier`` (this step's): waiting
        for the next tier (``done`` False), or asked above the row's own tier and finished there (``done``); with
        its definition, as the ledger keeps it (engine/steps/field_changes.py)."""
        whole = self._whole or self
        definition = {
            **whole.spec_definition(),
            "through": {"fields": sorted(self.struct), "tier": tier or self.tier, "done": done},
        }
        blob = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return "t" + hashlib.sha256(blob.encode()).hexdigest()[:31], definition

    def spec_hash(self, fields: Iterable[str] | None = None) -> str:
        """Hash of what is asked (endpoint, struct, tier, options): a change re-enriches under ``changed``.

        With ``fields``, the hash of the question as far as those fields were answered: a result that lacked a
        requested column is stamped with it, so the next run does not take the missing fields as answered. For
        a "new fields" step, the whole sync's hash (its other fields were answered before).
        """
        if self._whole is not None:
            asked = set(self.struct) if fields is None else set(fields)
            return self._whole.spec_hash((set(self._whole.struct) - set(self.struct)) | asked)
        wanted = set(self.struct) if fields is None else set(fields)
        struct = {k: f for k, f in self.struct.items() if k in wanted}
        spec = {
            "endpoint": self.endpoint,
            "struct": {
                k: {"description": f.description, "type": f.type, **f.hash_extras()} for k, f in sorted(struct.items())
            },
            # an escalated answer is stamped with the question as the sync asks it (at its own tier)
            "tier": self._question_tier or self.tier,
            "field_confidence": self.field_confidence,
            "research_plan": self.research_plan or None,
        }
        blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _column_clash(origins: Sequence[tuple[str, str]]) -> str | None:
    """Two origins writing one column (names compared as a warehouse that folds case compares them)."""
    seen: dict[str, tuple[str, str]] = {}
    for column, origin in origins:
        first = seen.get(column.lower())
        if first is not None and first[1] != origin:
            return (
                f"{first[1]} and {origin} would both be written to the column {column!r} (names compare without "
                "case in most warehouses): rename one of them"
            )
        seen.setdefault(column.lower(), (column, origin))
    return None


def build_api_config(sync: SyncSpec, input_columns: Sequence[str]) -> dict[str, Any]:
    """The ``config`` object sent with each file: exactly what the API documents, nothing else.

    ``input_columns`` are the columns that feed the enrichment; the key columns travel in the file too (to tie
    results back) but are kept out of ``columns`` so they do not steer the research, unless ``source.columns``
    lists them (a key that is also an input, sent once).
    """
    struct = {name: f.api_value() for name, f in sync.struct.items()}
    config: dict[str, Any] = {"struct": struct, "tier": sync.tier}
    if sync.field_confidence:
        config["field_confidence"] = True
    listed = {c.lower() for c in sync.source.columns or ()}
    cols = [c for c in input_columns if c not in sync.source.key or c.lower() in listed]
    if cols:
        config["columns"] = cols
    if sync.research_plan:
        config["research_plan"] = sync.research_plan
    if sync.webhook_url:
        config["webhook_url"] = sync.webhook_url
    return config


class ModelFile(_Strict):
    """One models/*.yml file."""

    version: int | None = Field(default=None, description="Accepted for symmetry with dbt's YAML files; unused.")
    profile: str | None = Field(
        default=None,
        description="The profiles.yml profile for the syncs of this file (default: --profile, dbt_project.yml's "
        "profile:, else sixtyfour).",
    )
    prices: dict[Literal["people", "company"], dict[str, Annotated[float, Field(ge=0)]]] = Field(
        default_factory=dict,
        description="Per-row prices in cents, per endpoint and tier (prices: {people: {low: 5}}), for plan's "
        "estimates and the budget before the API has quoted a price. They apply to every sync of the project "
        "(a sync's budget.price_cents_per_row wins); two files may not give one endpoint and tier two prices.",
    )
    syncs: list[SyncSpec] = Field(default_factory=list, description="The sync definitions of this file.")

    @field_validator("prices")
    @classmethod
    def _price_tiers(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for endpoint, tiers in v.items():
            unknown = [t for t in tiers if t not in _TIERS[endpoint]]
            if unknown:
                raise ValueError(
                    f"prices.{endpoint}: tier {unknown[0]!r} is not offered by the {endpoint} endpoint; use one "
                    f"of: {', '.join(_TIERS[endpoint])}"
                )
        return v


@dataclass(frozen=True)
class LoadedSync:
    """A validated sync and where it was defined."""

    spec: SyncSpec
    file: Path
    line: int | None
    profile: str | None
    #: Lines of the file and the sync's index in ``syncs:``, so errors can point at one key.
    lines: LineMap | None = field(default=None, compare=False, repr=False)
    index: int = 0

    def line_of(self, *path: str | int) -> int | None:
        """The line of a key inside this sync (``line_of("source", "table")``), else the sync's line."""
        if self.lines is None:
            return self.line
        return self.lines.line_for(("syncs", self.index, *path)) or self.line

    def warnings(self) -> list[ConfigProblem]:
        """The sync's :meth:`SyncSpec.warnings`, each located (file, line, path); never an error."""
        return [
            ConfigProblem(
                str(self.file), f"{self.spec.name}.struct.{name}.type", w, line=self.line_of("struct", name, "type")
            )
            for name, f in self.spec.struct.items()
            if (w := f.warning()) is not None
        ]


def _keys_at(loc: tuple[str | int, ...]) -> list[str]:
    """The keys the model at ``loc`` (a location in a models file) accepts, by their YAML names."""
    import typing

    model: Any = ModelFile
    in_mapping = False
    for part in loc:
        if isinstance(part, int) or model is None or in_mapping:
            in_mapping = False
            continue
        field = model.model_fields.get("schema_" if part == "schema" else str(part))
        if field is None:
            return []
        model = None
        in_mapping = typing.get_origin(field.annotation) is dict
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        candidates += [a for c in list(candidates) for a in typing.get_args(c)]
        for c in candidates:
            if isinstance(c, type) and issubclass(c, BaseModel):
                model = c
                break
    if model is None:
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _yaml_path(loc: tuple[str | int, ...], lines: LineMap) -> tuple[str | int, ...]:
    """``loc`` as the YAML spells it: a list index the model made from a mapping (``subfields`` written as
    ``name: description``) becomes that mapping's key, so the problem points at its line."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, int) and (*out, part) not in lines.lines:
            here = tuple(out)
            keys = [p[-1] for p in lines.lines if len(p) == len(here) + 1 and p[: len(here)] == here]
            if 0 <= part < len(keys) and all(isinstance(k, str) for k in keys):
                part = keys[part]
        out.append(part)
    return tuple(out)


def _problems_from(exc: ValidationError, file: Path, lines: LineMap) -> list[ConfigProblem]:
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # pydantic reports the alias-free field name for aliased fields
        loc = _yaml_path(tuple("schema" if p == "schema_" else p for p in loc), lines)
        msg = err["msg"].removeprefix("Value error, ")
        hint = None
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}"
            hint = f"check the spelling; keys here: {', '.join(_keys_at(loc[:-1]))}"
        elif err["type"] == "missing":
            msg = f"missing required key {loc[-1]!r}"
        dotted = ".".join(str(p) for p in loc)
        problems.append(ConfigProblem(str(file), dotted or None, msg, line=lines.line_for(loc), hint=hint))
    return problems


def _render(
    data: Any, file: Path, env: Mapping[str, str] | None, variables: Mapping[str, Any] | None, lines: LineMap
) -> Any:
    from sixtyfour_sync.config.envvars import render_templates

    return render_templates(data, file=file, env=env, vars=variables, lines=lines)


#: Where a project's sync definitions are: ``models/``, and ``sixtyfour/`` (in a dbt project: beside
#: dbt_project.yml, outside the folders dbt parses, whose YAML dbt v2 refuses unknown keys in; docs/dbt.md).
SYNC_DIRS = ("models", "sixtyfour")


def model_files(project_dir: Path) -> list[Path]:
    """Every .yml and .yaml file below the project's :data:`SYNC_DIRS`, in a stable order."""
    found: list[Path] = []
    for name in SYNC_DIRS:
        root = project_dir / name
        if root.is_dir():
            found += sorted(p for p in root.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
    return found


@dataclass(frozen=True)
class Models:
    """Every sync of a project, and the prices its files give (per endpoint and tier, in cents per row)."""

    syncs: list[LoadedSync]
    prices: dict[tuple[str, str], float] = field(default_factory=dict)
    #: Under ``lenient`` loading: every problem found (``syncs`` then holds only the definitions without one).
    problems: list[ConfigProblem] = field(default_factory=list)


def load_models(
    project_dir: Path,
    *,
    files: Iterable[Path] | None = None,
    env: Mapping[str, str] | None = None,
    vars: Mapping[str, Any] | None = None,
) -> list[LoadedSync]:
    """Load and validate every sync; raise one ConfigError listing every problem in every file.

    ``vars`` are what ``{{ var('name') }}`` renders to (``--vars`` over ``dbt_project.yml``'s ``vars:``).
    """
    return load_project_models(project_dir, files=files, env=env, vars=vars).syncs


def load_project_models(
    project_dir: Path,
    *,
    files: Iterable[Path] | None = None,
    env: Mapping[str, str] | None = None,
    vars: Mapping[str, Any] | None = None,
    lenient: bool = False,
) -> Models:
    """:func:`load_models`, with the project's ``prices:`` (every file's, checked to agree).

    ``lenient`` (for ``validate``) raises nothing for problems in the files: they are returned in ``problems``,
    with every sync that has none of its own (a sync of a file with a mistake elsewhere in it included), so the
    checks that follow can still look at those.
    """
    paths = list(files) if files is not None else model_files(project_dir)
    problems: list[ConfigProblem] = []
    loaded: list[LoadedSync] = []
    prices: dict[tuple[str, str], float] = {}
    price_at: dict[tuple[str, str], str] = {}
    if not paths:
        raise ConfigError(
            problems=[
                ConfigProblem(
                    str(project_dir / "models"),
                    None,
                    "no sync definitions found (in models/ or sixtyfour/)",
                    hint="create models/<name>.yml, or sixtyfour/<name>.yml in a dbt project "
                    "(see `sixtyfour-sync init`)",
                )
            ]
        )
    for path in paths:
        try:
            doc = load_yaml(path)
            raw = doc.data
            if isinstance(raw, Mapping) and "syncs" not in raw and set(map(str, raw)) & _DBT_KEYS:
                continue  # a dbt properties file (models/ is shared with dbt): its Jinja is dbt's, not ours
            data = _render(raw, path, env, vars, doc.lines)
        except ConfigError as exc:
            problems.extend(exc.problems or [ConfigProblem(str(path), None, str(exc))])
            continue
        if data is None:
            problems.append(ConfigProblem(str(path), None, "the file is empty", hint="add a `syncs:` list"))
            continue
        if isinstance(data, Mapping) and "syncs" not in data and set(map(str, data)) & _DBT_KEYS:
            continue  # a dbt properties file (models/ is shared with dbt inside a dbt project)
        if isinstance(data, Mapping) and "syncs" not in data and "prices" in data:
            data = {**data, "syncs": []}  # a file that only sets the project's prices
        if not isinstance(data, Mapping) or "syncs" not in data:
            problems.append(ConfigProblem(str(path), None, "expected a mapping with a `syncs:` list", line=1))
            continue
        try:
            model = ModelFile.model_validate(data)
        except ValidationError as exc:
            problems.extend(_problems_from(exc, path, doc.lines))
            if lenient:
                loaded.extend(_sound_syncs(data, path, doc.lines))
            continue
        for endpoint, tiers in model.prices.items():
            for tier, cents in tiers.items():
                where = f"{path}:{doc.lines.line_for(('prices', endpoint, tier)) or '?'}"
                if (endpoint, tier) in prices and prices[(endpoint, tier)] != cents:
                    problems.append(
                        ConfigProblem(
                            str(path),
                            f"prices.{endpoint}.{tier}",
                            f"{cents} cents, but {price_at[(endpoint, tier)]} says {prices[(endpoint, tier)]}",
                            line=doc.lines.line_for(("prices", endpoint, tier)),
                            hint="give each endpoint and tier one price, in one file",
                        )
                    )
                    continue
                prices[(endpoint, tier)] = cents
                price_at[(endpoint, tier)] = where
        for i, spec in enumerate(model.syncs):
            loaded.append(
                LoadedSync(
                    spec, path, doc.lines.line_for(("syncs", i)), spec.profile or model.profile, doc.lines, index=i
                )
            )
    seen: dict[str, LoadedSync] = {}
    for item in loaded:
        first = seen.get(item.spec.name)
        if first is not None:
            problems.append(
                ConfigProblem(
                    str(item.file),
                    "name",
                    f"duplicate sync name {item.spec.name!r} (also defined in {first.file}:{first.line})",
                    line=item.line,
                    hint="sync names must be unique across models/",
                )
            )
        else:
            seen[item.spec.name] = item
    problems.extend(_shared_target_problems(list(seen.values())))
    if problems and lenient:
        return Models(list(seen.values()), prices, problems)
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) in sync definitions:", problems=problems)
    return Models(loaded, prices)


def _sound_syncs(data: Mapping[str, Any], path: Path, lines: LineMap) -> list[LoadedSync]:
    """The syncs of a file that failed validation that are valid on their own (each checked alone, with the
    file's top-level keys); none when the file's own keys are wrong."""
    entries = data.get("syncs")
    if not isinstance(entries, list):
        return []
    top = {k: v for k, v in data.items() if k != "syncs"}
    try:
        ModelFile.model_validate({**top, "syncs": []})
    except ValidationError:
        return []
    out = []
    for i, entry in enumerate(entries):
        try:
            model = ModelFile.model_validate({**top, "syncs": [entry]})
        except ValidationError:
            continue
        spec = model.syncs[0]
        out.append(LoadedSync(spec, path, lines.line_for(("syncs", i)), spec.profile or model.profile, lines, index=i))
    return out


def _shared_target_problems(syncs: Sequence[LoadedSync]) -> list[ConfigProblem]:
    """Syncs writing one target table must write different columns (compared by name, without case) and key it
    alike; their struct columns and bookkeeping would otherwise overwrite each other (and every run would select
    every row of both again)."""
    by_table: dict[tuple[str, ...], list[LoadedSync]] = {}
    for item in syncs:
        t = item.spec.target
        where = (item.profile or "", (t.database or "").lower(), (t.schema_ or "").lower(), t.table.lower())
        by_table.setdefault(where, []).append(item)
    problems = []
    for items in by_table.values():
        for i, item in enumerate(items):
            for first in items[:i]:
                problem = _shared_problem(first, item)
                if problem:
                    problems.append(problem)
    return problems


def _shared_problem(first: LoadedSync, item: LoadedSync) -> ConfigProblem | None:
    a, b = first.spec, item.spec
    where = f"syncs {a.name!r} ({first.file}:{first.line}) and {b.name!r} both write table {b.target.table!r}"
    if [k.lower() for k in a.source.key] != [k.lower() for k in b.source.key]:
        return ConfigProblem(
            str(item.file),
            f"{b.name}.source.key",
            f"{where} but key it differently ({', '.join(a.source.key)} and {', '.join(b.source.key)})",
            line=item.line,
            hint="syncs sharing a table share its key; give one of them its own table",
        )
    mine = {c.lower(): c for c in a.output_columns()}
    both = sorted(c for c in b.output_columns() if c.lower() in mine)
    if not both:
        return None
    return ConfigProblem(
        str(item.file),
        f"{b.name}.target",
        f"{where}, and both would write the column(s) {', '.join(both[:5])}{', ...' if len(both) > 5 else ''}: "
        "their values and bookkeeping would overwrite each other",
        line=item.line,
        hint="give each sync sharing the table its own target.prefix (e.g. prefix: co_), or its own table",
    )
