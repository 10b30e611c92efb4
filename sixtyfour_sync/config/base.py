"""What every part of a sync definition shares: names, durations, the strict model base, the bookkeeping columns."""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import (
    BaseModel,
    ConfigDict,
)

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
