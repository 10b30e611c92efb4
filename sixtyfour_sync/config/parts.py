"""The parts of a sync: its source, target, refresh rule and budget."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from sixtyfour_sync.config.base import (
    _identifier,
    _Strict,
    parse_duration,
)


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
    limit: Annotated[int, Field(gt=0)] | None = Field(
        default=None,
        description=(
            "At most this many rows sent per run: rows sharing their inputs are one row sent, whose answer every "
            "one of them gets (docs/paying-once.md)."
        ),
    )

    @field_validator("max_age", "retry_failed_after", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return None if v is None else parse_duration(v)

    @model_validator(mode="after")
    def _stale_needs_age(self) -> RefreshSpec:
        if self.when == "stale" and self.max_age is None:
            raise ValueError("when: stale needs max_age (for example max_age: 90d)")
        return self


#: How long a stored answer is reused when neither ``reuse.max_age`` nor ``refresh.max_age`` says.
DEFAULT_REUSE_AGE = timedelta(days=30)


class ReuseSpec(_Strict):
    """Answers kept in the ledger's answer store, given to a new key whose question was asked before."""

    enabled: bool = Field(
        default=True,
        description="false: this sync neither takes stored answers nor stores its own (reuse: false says the same).",
    )
    max_age: _Duration = Field(
        default=None,
        description="Take a stored answer only when it was answered at most this long ago (default: "
        "refresh.max_age, else 30d): 30d, 12h, or seconds. Stored answers older than the longest max_age of "
        "the syncs a run loads are pruned.",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return {"enabled": v} if isinstance(v, bool) else v

    @field_validator("max_age", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return None if v is None else parse_duration(v)

    @field_validator("max_age")
    @classmethod
    def _positive(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v.total_seconds() <= 0:
            raise ValueError("reuse.max_age must be longer than 0 seconds (reuse: false turns reuse off)")
        return v


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
