"""Sync definitions: ``models/*.yml`` (CONTRACT.md, "A sync definition").

Every file is parsed with line numbers, ``{{ env_var(...) }}`` is rendered, and every problem in every file is
reported at once, each with file, line, dotted path and a hint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    JsonValue,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sixtyfour_sync.config.base import (
    _NAME_RE,
    _TIERS,
    BOOKKEEPING_COLUMNS,
    MAX_CHUNK_ROWS,
    _identifier,
    _Strict,
    parse_duration,
)
from sixtyfour_sync.config.fields import StructField, SubField
from sixtyfour_sync.config.parts import DEFAULT_REUSE_AGE, BudgetSpec, RefreshSpec, ReuseSpec, SourceSpec, TargetSpec
from sixtyfour_sync.config.yamlfile import LineMap
from sixtyfour_sync.errors import ConfigProblem

__all__ = [
    "BOOKKEEPING_COLUMNS",
    "MAX_CHUNK_ROWS",
    "BudgetSpec",
    "LoadedSync",
    "ModelFile",
    "RefreshSpec",
    "SourceSpec",
    "StructField",
    "SubField",
    "SyncSpec",
    "TargetSpec",
    "build_api_config",
    "parse_duration",
]


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
    reuse: ReuseSpec = Field(
        default_factory=ReuseSpec,
        description="The answer store (docs/paying-once.md): a new key whose question (the same inputs, endpoint, "
        "tier, struct and options) was answered and merged within reuse.max_age takes that answer without a call. "
        "reuse: false turns it off; --full-refresh, when: always and max_age refreshes never reuse.",
    )
    chunk_rows: Annotated[int, Field(gt=0, le=MAX_CHUNK_ROWS)] = Field(
        default=MAX_CHUNK_ROWS,
        description=(
            "Rows per submitted file, at most 100,000 (files also stay under 100 MB). Rows sharing their inputs "
            "ask one question and travel as one row (docs/paying-once.md): a file holds this many questions, each "
            "with every key it answers."
        ),
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
    def reuse_max_age(self) -> timedelta:
        """How old a stored answer this sync takes: ``reuse.max_age``, else ``refresh.max_age``, else 30 days."""
        return self.reuse.max_age or self.refresh.max_age or DEFAULT_REUSE_AGE

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
