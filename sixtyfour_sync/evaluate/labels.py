"""Reading labels: a CSV file or a warehouse table holding the key and any struct fields, every problem located.

A labels file may be the sample ``evaluate --sample`` wrote, filled in: its answer, confidence, tier and band
columns (``<field>_answer``, ``<field>_confidence``, ``_sixtyfour_tier``, ``_sixtyfour_band``) are read past.
Any other column must be a key column or a struct field. Column names match case-insensitively. Problems (a
missing key column, an unknown or repeated column, a row with too few or too many cells, an empty or repeated
key, a label that is not of its field's type) are collected, each with its file, line and column, and raised
together as one :class:`~sixtyfour_sync.errors.ConfigError`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sixtyfour_sync.errors import ConfigError, ConfigProblem
from sixtyfour_sync.evaluate.normalise import LabelValueError, is_empty, normalise

__all__ = ["SAMPLE_BAND", "SAMPLE_TIER", "Labels", "key_text", "labels_from_rows", "read_labels_csv"]

#: Columns of a sample file that are not labels.
SAMPLE_TIER = "_sixtyfour_tier"
SAMPLE_BAND = "_sixtyfour_band"
_IGNORED_SUFFIXES = ("_answer", "_confidence")

#: A key as text, one part per key column.
KeyText = tuple[str, ...]


def key_text(values: Sequence[Any]) -> KeyText:
    """A key as text, so a labels file's ``5`` matches a stored ``5`` whatever the key column's type."""
    out: list[str] = []
    for v in values:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        out.append("" if v is None else str(v).strip())
    return tuple(out)


@dataclass
class Labels:
    """Labelled rows by key: the labelled fields' raw values (None: left empty, not scored)."""

    source: str
    fields: list[str]
    rows: dict[KeyText, dict[str, Any]] = field(default_factory=dict)
    #: The line (file) or row number (table) of each key, for messages.
    lines: dict[KeyText, int] = field(default_factory=dict)


def _loc(source: str, line: int | None, column: str | None, message: str, hint: str | None = None) -> ConfigProblem:
    return ConfigProblem(
        file=source, path=f"column {column}" if column else None, message=message, line=line, hint=hint
    )


def labels_from_rows(
    source: str,
    header: Sequence[str],
    rows: Iterable[tuple[int, Sequence[Any]]],
    key: Sequence[str],
    kinds: Mapping[str, str],
    *,
    sync: str = "the sync",
    header_line: int | None = 1,
) -> Labels:
    """Labels from a header and numbered rows (line numbers of a file, row numbers of a table).

    ``kinds`` maps each struct field to its type. Raises ConfigError with every problem found.
    """
    problems: list[ConfigProblem] = []
    wanted = {k.casefold(): ("key", k) for k in key}
    for name in kinds:
        wanted.setdefault(name.casefold(), ("field", name))
    ignored = {SAMPLE_TIER, SAMPLE_BAND} | {f"{n}{s}".casefold() for n in kinds for s in _IGNORED_SUFFIXES}
    roles: list[tuple[str, str] | None] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(header):
        name = str(raw).strip().lstrip("\ufeff")
        folded = name.casefold()
        if folded in seen:
            problems.append(_loc(source, header_line, name, f"column {name!r} appears twice"))
            roles.append(None)
            continue
        seen[folded] = i
        if folded in wanted:
            roles.append(wanted[folded])
        elif folded in ignored:
            roles.append(None)
        else:
            roles.append(None)
            problems.append(
                _loc(
                    source,
                    header_line,
                    name,
                    f"{name!r} is neither a key column nor a struct field of {sync}",
                    hint=f"labels hold the key ({', '.join(key)}) and struct fields ({', '.join(kinds)})",
                )
            )
    for k in key:
        if k.casefold() not in seen:
            problems.append(_loc(source, header_line, k, f"the key column {k!r} is missing"))
    fields = [r[1] for r in roles if r is not None and r[0] == "field"]
    if not fields:
        problems.append(_loc(source, header_line, None, f"no struct field of {sync} to score: add a column per field"))
    if problems:
        raise ConfigError(f"{source}: the labels cannot be read", problems=problems)
    key_at = [seen[k.casefold()] for k in key]
    field_at = [(i, r[1]) for i, r in enumerate(roles) if r is not None and r[0] == "field"]
    labels = Labels(source, fields)
    for line, cells in rows:
        if len(cells) != len(header):
            problems.append(_loc(source, line, None, f"the row has {len(cells)} cells; the header has {len(header)}"))
            continue
        kt = key_text([cells[i] for i in key_at])
        if any(not part for part in kt):
            problems.append(_loc(source, line, ", ".join(key), "the key is empty"))
            continue
        if kt in labels.lines:
            problems.append(
                _loc(
                    source,
                    line,
                    ", ".join(key),
                    f"key {', '.join(kt)} is labelled twice (first on line {labels.lines[kt]})",
                )
            )
            continue
        values: dict[str, Any] = {}
        for i, name in field_at:
            value = cells[i]
            if is_empty(value):
                values[name] = None
                continue
            try:
                normalise(kinds[name], value)
            except LabelValueError as exc:
                problems.append(_loc(source, line, str(header[i]).strip(), f"{exc} (field {name} is {kinds[name]})"))
                continue
            values[name] = value
        labels.rows[kt] = values
        labels.lines[kt] = line
    if problems:
        raise ConfigError(f"{source}: the labels cannot be read", problems=problems)
    return labels


def read_labels_csv(path: Path, key: Sequence[str], kinds: Mapping[str, str], *, sync: str = "the sync") -> Labels:
    """Labels from a CSV file (UTF-8, a header row; quoted cells may span lines)."""
    source = str(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read the labels file {source}: {exc.strerror or exc}") from exc
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise ConfigError(
                    f"{source}: the labels cannot be read",
                    problems=[_loc(source, 1, None, "the file is empty: it needs a header row")],
                )
            rows: list[tuple[int, list[str]]] = []
            start = reader.line_num + 1
            for cells in reader:
                if any(c.strip() for c in cells):  # blank lines are read past
                    rows.append((start, cells))
                start = reader.line_num + 1
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{source}: the labels cannot be read",
                problems=[_loc(source, reader.line_num or 1, None, f"not a readable CSV file: {exc}")],
            ) from exc
    return labels_from_rows(source, header, rows, key, kinds, sync=sync)
