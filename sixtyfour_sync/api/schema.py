"""Client-side checks of a submission before anything is sent.

The API rejects a bad config (422) or file (400/413) anyway, but checking first gives every problem at
once, with a path and a hint, and costs no request. The rules follow the API doc's config table and
limits. :func:`validate_config` returns the exact JSON text that is sent, so the size limit is measured
on what the server will see.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from sixtyfour_sync.config.structtypes import API_STRUCT_TYPES
from sixtyfour_sync.errors import ConfigError, ConfigProblem, LimitExceededError

__all__ = [
    "COMPANY_ONLY_KEYS",
    "COMPANY_TIERS",
    "FILE_FORMATS",
    "MAX_CONFIG_CHARS",
    "MAX_FILE_BYTES",
    "MAX_FILE_ROWS",
    "PEOPLE_TIERS",
    "RESULT_FORMATS",
    "STRUCT_TYPES",
    "Endpoint",
    "FileCheck",
    "check_upload_file",
    "encode_config",
    "file_format",
    "validate_config",
]

Endpoint = Literal["people", "company"]

MAX_CONFIG_CHARS = 300_000
MAX_FILE_ROWS = 100_000
MAX_FILE_BYTES = 100 * 1024 * 1024
MAX_WEBHOOK_URL = 2083

PEOPLE_TIERS = ("micro", "low", "medium", "high", "xhigh", "scout")
COMPANY_TIERS = ("micro", "low", "medium", "high")
RESULT_FORMATS = ("csv", "ndjson", "json")
#: The struct types the API's current schema lists. Another name is not refused here: the API's 422 decides.
STRUCT_TYPES = API_STRUCT_TYPES
#: The keys of a struct field given as an object, and of one of its subfields (the schema's ``StructField``).
_FIELD_KEYS = ("description", "type", "subfields")
_SUBFIELD_KEYS = ("name", "description", "type", "subfields")
COMPANY_ONLY_KEYS = ("find_people", "people_focus_prompt", "lead_struct", "full_org_chart")
_COMMON_KEYS = (
    "struct", "tier", "field_confidence", "webhook_url", "columns", "research_plan",
    "result_formats", "save_json",
)  # fmt: skip
#: File extension -> format name used in errors and content types.
FILE_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def encode_config(config: Mapping[str, Any]) -> str:
    """The config as the compact JSON string sent in the ``config`` form part."""
    return json.dumps(config, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class _Problems:
    def __init__(self, source: str | None) -> None:
        self.source = source
        self.items: list[ConfigProblem] = []

    def add(self, path: str, message: str, hint: str | None = None) -> None:
        self.items.append(ConfigProblem(file=self.source, path=path, message=message, hint=hint))


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _check_type(spec: Mapping[Any, Any], where: str, problems: _Problems) -> None:
    # Any non-empty name passes: the API's schema grows, and its 422 is the judge of a name it does not know.
    if "type" in spec and (not isinstance(spec["type"], str) or not spec["type"].strip()):
        problems.add(
            f"{where}.type", f"must be a non-empty string, got {spec['type']!r}", "e.g. " + ", ".join(STRUCT_TYPES)
        )


def _check_subfields(value: object, where: str, problems: _Problems) -> None:
    if not isinstance(value, list) or not value:
        problems.add(where, f"must be a non-empty list of {{name, description, type}}, got {_type_name(value)}")
        return
    seen: set[str] = set()
    for i, sub in enumerate(value):
        here = f"{where}[{i}]"
        if not isinstance(sub, Mapping):
            problems.add(here, f"must be {{name, description, type}}, got {_type_name(sub)}")
            continue
        for extra in sorted(str(k) for k in sub if k not in _SUBFIELD_KEYS):
            problems.add(f"{here}.{extra}", "unknown key", "allowed keys: " + ", ".join(_SUBFIELD_KEYS))
        name = sub.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.add(f"{here}.name", "a non-empty name string is required")
        elif name in seen:
            problems.add(f"{here}.name", f"{name!r} appears twice")
        else:
            seen.add(name)
        if not isinstance(sub.get("description"), str):
            problems.add(f"{here}.description", "a description string is required")
        _check_type(sub, here, problems)
        if "subfields" in sub:
            _check_subfields(sub["subfields"], f"{here}.subfields", problems)


def _check_struct(value: object, path: str, problems: _Problems) -> None:
    if not isinstance(value, Mapping):
        problems.add(path, f"must be a mapping of field name -> description, got {_type_name(value)}")
        return
    for name, spec in value.items():
        where = f"{path}.{name}"
        if not isinstance(name, str) or not name.strip():
            problems.add(f"{path}.{name!r}", "field names must be non-empty strings")
            continue
        if isinstance(spec, str):
            if not spec.strip():
                problems.add(where, "description must not be empty", "say what the field should hold")
            continue
        if not isinstance(spec, Mapping):
            problems.add(
                where,
                f"must be a description string or {{description, type}}, got {_type_name(spec)}",
            )
            continue
        for extra in sorted(str(k) for k in spec if k not in _FIELD_KEYS):
            problems.add(f"{where}.{extra}", "unknown key", "allowed keys: " + ", ".join(_FIELD_KEYS))
        description = spec.get("description")
        if not isinstance(description, str) or not description.strip():
            problems.add(f"{where}.description", "a non-empty description string is required")
        _check_type(spec, where, problems)
        if "subfields" in spec:
            _check_subfields(spec["subfields"], f"{where}.subfields", problems)


def _check_bool(config: Mapping[str, Any], key: str, problems: _Problems) -> None:
    if key in config and not isinstance(config[key], bool):
        problems.add(key, f"must be true or false, got {_type_name(config[key])}")


def _check_str(config: Mapping[str, Any], key: str, problems: _Problems) -> None:
    if key in config and not isinstance(config[key], str):
        problems.add(key, f"must be a string, got {_type_name(config[key])}")


def _public_host(host: str) -> bool:
    """False for localhost and for literal addresses that are not global (loopback, private, link-local)."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return False
    try:
        return ipaddress.ip_address(name).is_global
    except ValueError:
        return True  # a name: where it resolves is the API's to check


def _check_webhook(value: object, problems: _Problems) -> None:
    if not isinstance(value, str):
        problems.add("webhook_url", f"must be a string, got {_type_name(value)}")
        return
    if not 1 <= len(value) <= MAX_WEBHOOK_URL:
        problems.add(
            "webhook_url",
            f"length {len(value):,} is outside 1-{MAX_WEBHOOK_URL:,} characters",
        )
        return
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        problems.add("webhook_url", "is not a valid URL")
        return
    if parts.scheme.lower() != "https" or not host:
        problems.add("webhook_url", "must be an https:// URL with a host", "the API refuses plain http")
    elif not _public_host(host):
        problems.add(
            "webhook_url",
            f"host {host} is not a public address",
            "the API delivers only to a public HTTPS address: put `sixtyfour-sync webhooks serve` behind a "
            "public HTTPS endpoint (a load balancer, a reverse proxy or a tunnel) and give its URL",
        )
    if any(c.isspace() for c in value):
        problems.add("webhook_url", "must not contain whitespace")


def _check_str_list(
    config: Mapping[str, Any], key: str, problems: _Problems, allowed: tuple[str, ...] | None = None
) -> None:
    if key not in config:
        return
    value = config[key]
    if not isinstance(value, list):
        problems.add(key, f"must be a list of strings, got {_type_name(value)}")
        return
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            problems.add(f"{key}[{i}]", f"must be a non-empty string, got {item!r}")
        elif allowed is not None and item not in allowed:
            problems.add(f"{key}[{i}]", f"unknown value {item!r}", "one of: " + ", ".join(allowed))


def validate_config(endpoint: str, config: Mapping[str, Any], *, source: str | None = None) -> str:
    """Check a submission config for ``endpoint`` and return its JSON text (what is sent).

    Raises :class:`ConfigError` listing every problem (each with a dotted path and, where useful, a
    hint), or :class:`LimitExceededError` when the encoded config is over 300,000 characters.
    ``source`` names the file the config came from, for the messages.
    """
    problems = _Problems(source)
    if endpoint not in ("people", "company"):
        problems.add("endpoint", f"unknown endpoint {endpoint!r}", "people or company")
        raise ConfigError("invalid submission", problems=problems.items)
    if not isinstance(config, Mapping):
        problems.add("config", f"must be a mapping, got {_type_name(config)}")
        raise ConfigError(f"invalid {endpoint} config", problems=problems.items)

    allowed = set(_COMMON_KEYS) | (set(COMPANY_ONLY_KEYS) if endpoint == "company" else set())
    for key in config:
        if key in allowed:
            continue
        if key in COMPANY_ONLY_KEYS:
            problems.add(str(key), "only allowed on the company endpoint", "remove it or use endpoint: company")
        else:
            problems.add(str(key), "unknown key", "allowed keys: " + ", ".join(sorted(allowed)))

    if "struct" in config:
        _check_struct(config["struct"], "struct", problems)
        if endpoint == "company" and isinstance(config["struct"], Mapping) and not config["struct"]:
            problems.add("struct", "must name at least one field for the company endpoint")
    elif endpoint == "company":
        problems.add("struct", "is required for the company endpoint", "list the fields to return")

    if "tier" in config:
        tiers = PEOPLE_TIERS if endpoint == "people" else COMPANY_TIERS
        tier = config["tier"]
        if not isinstance(tier, str) or tier not in tiers:
            problems.add("tier", f"{tier!r} is not a {endpoint} tier", "one of: " + ", ".join(tiers))

    for key in ("field_confidence", "save_json"):
        _check_bool(config, key, problems)
    if "webhook_url" in config:
        _check_webhook(config["webhook_url"], problems)
    _check_str_list(config, "columns", problems)
    _check_str(config, "research_plan", problems)
    _check_str_list(config, "result_formats", problems, RESULT_FORMATS)

    if endpoint == "company":
        _check_bool(config, "find_people", problems)
        _check_bool(config, "full_org_chart", problems)
        _check_str(config, "people_focus_prompt", problems)
        if "lead_struct" in config:
            _check_struct(config["lead_struct"], "lead_struct", problems)

    if problems.items:
        raise ConfigError(f"invalid {endpoint} config", problems=problems.items)

    try:
        encoded = encode_config(config)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"invalid {endpoint} config",
            problems=[ConfigProblem(source, "config", f"cannot be encoded as JSON: {exc}")],
        ) from exc
    if len(encoded) > MAX_CONFIG_CHARS:
        raise LimitExceededError(
            "config size (JSON-encoded characters)",
            limit=MAX_CONFIG_CHARS,
            actual=len(encoded),
            hint="shorten struct descriptions or research_plan",
        )
    return encoded


@dataclass(frozen=True)
class FileCheck:
    """What :func:`check_upload_file` found: the format, the data rows and the size in bytes."""

    path: Path
    format: str
    rows: int
    size: int


def file_format(path: Path) -> str:
    """``csv``, ``json`` or ``jsonl`` from the file name; ConfigError for anything the API refuses."""
    fmt = FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            problems=[
                ConfigProblem(
                    file=str(path),
                    path=None,
                    message=f"unsupported file type {path.suffix or '(none)'!r}",
                    hint="the API accepts .csv, .json, .jsonl and .ndjson",
                )
            ]
        )
    return fmt


def _count_jsonl(path: Path) -> int:
    rows = 0
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                rows += 1
    return rows


def _count_csv(path: Path) -> int:
    # csv.reader handles quoted fields that span lines, which a newline count would get wrong.
    with path.open("r", encoding="utf-8-sig", newline="", errors="replace") as fh:
        records = sum(1 for record in csv.reader(fh) if record)
    return max(0, records - 1)  # the header is not a row


_JSON_CHUNK = 2 << 20
_QUOTE, _BACKSLASH, _COMMA = 0x22, 0x5C, 0x2C
_OPEN_OBJECT, _OPEN_ARRAY, _CLOSE_OBJECT, _CLOSE_ARRAY = 0x7B, 0x5B, 0x7D, 0x5D


def _count_json_array(path: Path) -> int:
    """Objects in a top-level JSON array, counted with vectorised numpy passes over 2 MB chunks.

    No Python object per row or per token, so memory stays bounded (``json.load`` of 100 MB needs
    gigabytes) and it beats a regex token scan several times over: quotes preceded by an even run of
    backslashes open or close strings; brackets outside strings give the depth; commas and ``{`` at
    depth 1 give the elements and the objects.
    """
    import numpy as np

    in_string = False
    depth = 0
    backslashes = 0  # the run of backslashes that ended the previous chunk
    commas = objects = 0
    started = False
    with path.open("rb") as fh:
        while chunk := fh.read(_JSON_CHUNK):
            if not started:
                head = chunk.lstrip(b"\xef\xbb\xbf \t\r\n")
                if not head:
                    continue
                if not head.startswith(b"["):
                    raise ConfigError(
                        problems=[ConfigProblem(str(path), None, "a .json file must hold an array of row objects")]
                    )
                started = True
            a = np.frombuffer(chunk, dtype=np.uint8)
            n = a.size
            quotes = np.flatnonzero(a == _QUOTE)
            is_bs = a == _BACKSLASH
            if is_bs.any():
                positions = np.arange(n, dtype=np.int32)
                last_other = np.maximum.accumulate(np.where(is_bs, -1, positions))
                # Backslashes right before each quote, counting a run carried over from the last chunk.
                before = quotes - 1
                prev = np.where(before >= 0, last_other[np.maximum(before, 0)], -1)
                run = np.where(before >= 0, before - prev, 0) + np.where(prev < 0, backslashes, 0)
                real = quotes[(run % 2) == 0]
                tail = n - 1 - int(last_other[-1])
                backslashes = tail + backslashes if tail == n else tail
            else:
                # Only a run carried from the last chunk can escape a quote at byte 0.
                real = quotes[1:] if quotes.size and quotes[0] == 0 and backslashes % 2 else quotes
                backslashes = 0
            toggles = np.zeros(n, dtype=np.int32)
            toggles[real] = 1
            inside = ((np.cumsum(toggles, dtype=np.int32) + int(in_string)) & 1).astype(bool)
            outside = ~inside
            delta = ((a == _OPEN_OBJECT) | (a == _OPEN_ARRAY)).astype(np.int32)
            delta -= (a == _CLOSE_OBJECT) | (a == _CLOSE_ARRAY)
            delta[inside] = 0
            depth_after = np.cumsum(delta, dtype=np.int64) + depth
            at_one = (depth_after - delta) == 1
            commas += int(np.count_nonzero((a == _COMMA) & outside & at_one))
            objects += int(np.count_nonzero((a == _OPEN_OBJECT) & outside & at_one))
            in_string = bool(inside[-1])
            depth = int(depth_after[-1])
    if depth != 0 or in_string:
        raise ConfigError(problems=[ConfigProblem(str(path), None, "is not valid JSON (unbalanced brackets)")])
    if objects == 0 and commas == 0:
        return 0
    if commas + 1 != objects:
        raise ConfigError(
            problems=[ConfigProblem(str(path), None, "every element of the JSON array must be a row object")]
        )
    return objects


def check_upload_file(
    path: Path | str,
    *,
    max_rows: int = MAX_FILE_ROWS,
    max_bytes: int = MAX_FILE_BYTES,
) -> FileCheck:
    """Check a file against the API's upload limits before submitting it.

    The size comes from the file system (checked first, so an oversized file is never read); rows are
    counted streaming (JSONL/NDJSON non-blank lines, CSV records after the header, JSON array elements).
    Raises :class:`LimitExceededError` naming the limit and the actual value, or :class:`ConfigError`
    for an unreadable, empty or unsupported file.
    """
    path = Path(path)
    fmt = file_format(path)
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise ConfigError(
            problems=[ConfigProblem(str(path), None, f"cannot read the file: {exc.strerror or exc}")]
        ) from exc
    if size > max_bytes:
        raise LimitExceededError(
            f"{path.name}: file size (bytes)",
            limit=max_bytes,
            actual=size,
            hint="split it into smaller files",
        )
    try:
        if fmt == "jsonl":
            rows = _count_jsonl(path)
        elif fmt == "csv":
            rows = _count_csv(path)
        else:
            rows = _count_json_array(path) if size else 0
    except (OSError, csv.Error, ValueError, io.UnsupportedOperation) as exc:
        raise ConfigError(problems=[ConfigProblem(str(path), None, f"cannot read the file as {fmt}: {exc}")]) from exc
    if rows == 0:
        raise ConfigError(problems=[ConfigProblem(str(path), None, "the file holds no rows to enrich")])
    if rows > max_rows:
        raise LimitExceededError(
            f"{path.name}: rows per file", limit=max_rows, actual=rows, hint="split it into smaller files"
        )
    return FileCheck(path=path, format=fmt, rows=rows, size=size)
