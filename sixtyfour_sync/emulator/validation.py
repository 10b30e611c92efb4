"""Server-side validation of the submit ``config``: every violation as a FastAPI-style 422 item.

Independent of the client's own checks on purpose: the emulator is the server's view. Items look
like ``{"loc": ["body", "config", "struct", "email", "type"], "msg": "...", "type": "..."}``.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from sixtyfour_sync.emulator.generate import SUBFIELD_TYPES as _SUBFIELD_TYPES
from sixtyfour_sync.emulator.generate import TYPE_ALIASES as _TYPE_ALIASES
from sixtyfour_sync.emulator.settings import COMPANY_ONLY_KEYS, CONFIG_KEYS, TIERS

__all__ = ["ErrorItem", "check_columns", "is_loopback_host", "parse_config", "validate_config", "webhook_url_problem"]

ErrorItem = dict[str, Any]
_RESULT_FORMATS = ("csv", "ndjson", "json")
_BASE = ("body", "config")


def _err(loc: tuple[Any, ...], msg: str, kind: str) -> ErrorItem:
    return {"loc": [*_BASE, *loc], "msg": msg, "type": kind}


def parse_config(text: str | None, max_chars: int) -> tuple[dict[str, Any] | None, list[ErrorItem]]:
    """Decode the ``config`` form field: the object, or the 422 items saying why not."""
    if text is None:
        return None, [{"loc": [*_BASE], "msg": "Field required", "type": "missing"}]
    if len(text) > max_chars:
        msg = f"Config must be at most {max_chars} characters; got {len(text)}"
        return None, [{"loc": [*_BASE], "msg": msg, "type": "string_too_long"}]
    try:
        value = json.loads(text)
    except ValueError as exc:
        return None, [{"loc": [*_BASE], "msg": f"Invalid JSON: {exc}", "type": "json_invalid"}]
    if not isinstance(value, dict):
        return None, [{"loc": [*_BASE], "msg": "Config should be a JSON object", "type": "dict_type"}]
    return value, []


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def webhook_url_problem(url: str, *, allow_insecure: bool) -> str | None:
    """Why a webhook URL is refused, or None. Checked at submission and again at delivery."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port
    except ValueError:
        return "Input should be a valid URL"
    if not host:
        return "Input should be a valid URL, the host is missing"
    loopback = is_loopback_host(host)
    if parts.scheme == "http" and allow_insecure and loopback:
        return None
    if parts.scheme != "https":
        return "URL scheme should be 'https'"
    if allow_insecure and loopback:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None if host.lower() != "localhost" else "Webhook URL must resolve to a public address"
    if not address.is_global:
        return "Webhook URL must resolve to a public address"
    return None


def _check_struct(value: Any, loc: tuple[Any, ...], required: bool) -> list[ErrorItem]:
    if value is None:
        return [_err(loc, "Field required", "missing")] if required else []
    if not isinstance(value, dict):
        return [_err(loc, "Input should be a valid dictionary", "dict_type")]
    if not value:
        return [_err(loc, "Struct should have at least 1 field", "too_short")]
    errors: list[ErrorItem] = []
    for name, spec in value.items():
        here = (*loc, name)
        if not name.strip():
            errors.append(_err(here, "Field names must not be empty", "value_error"))
        if isinstance(spec, str):
            if not spec.strip():
                errors.append(_err(here, "String should have at least 1 character", "string_too_short"))
            continue
        if not isinstance(spec, dict):
            errors.append(
                _err(here, "Input should be a description string or an object with description and type", "model_type")
            )
            continue
        for key in spec:
            if key not in ("description", "type", "subfields"):
                errors.append(_err((*here, key), "Extra inputs are not permitted", "extra_forbidden"))
        desc = spec.get("description")
        if desc is None:
            errors.append(_err((*here, "description"), "Field required", "missing"))
        elif not isinstance(desc, str):
            errors.append(_err((*here, "description"), "Input should be a valid string", "string_type"))
        typename = spec.get("type")
        if typename is not None and (not isinstance(typename, str) or typename.strip().lower() not in _TYPE_ALIASES):
            allowed = ", ".join(f"'{t}'" for t in _TYPE_ALIASES)
            errors.append(_err((*here, "type"), f"Input should be one of {allowed}", "enum"))
        if "subfields" in spec:
            errors += _check_subfields(spec["subfields"], (*here, "subfields"))
    return errors


def _check_subfields(value: Any, loc: tuple[Any, ...]) -> list[ErrorItem]:
    """A ``subfields`` list of the schema's ``StructField``: ``{name, description, type}``."""
    if value is None:
        return []
    if not isinstance(value, list):
        return [_err(loc, "Input should be a valid list", "list_type")]
    errors: list[ErrorItem] = []
    for i, sub in enumerate(value):
        here = (*loc, i)
        if not isinstance(sub, dict):
            errors.append(_err(here, "Input should be a valid dictionary or instance of StructField", "model_type"))
            continue
        for key in sub:
            if key not in ("name", "description", "type", "subfields"):
                errors.append(_err((*here, key), "Extra inputs are not permitted", "extra_forbidden"))
        for key in ("name", "description"):
            if key not in sub:
                errors.append(_err((*here, key), "Field required", "missing"))
            elif not isinstance(sub[key], str):
                errors.append(_err((*here, key), "Input should be a valid string", "string_type"))
        typename = sub.get("type", "string")
        if not isinstance(typename, str) or typename.strip().lower() not in _SUBFIELD_TYPES:
            allowed = ", ".join(f"'{t}'" for t in _SUBFIELD_TYPES)
            errors.append(_err((*here, "type"), f"Input should be {allowed}", "enum"))
        if sub.get("subfields"):
            errors.append(_err((*here, "subfields"), "Subfields cannot have subfields", "value_error"))
    return errors


def _check_bool(config: Mapping[str, Any], key: str) -> list[ErrorItem]:
    if key in config and not isinstance(config[key], bool):
        return [_err((key,), "Input should be a valid boolean", "bool_type")]
    return []


def _check_str(config: Mapping[str, Any], key: str) -> list[ErrorItem]:
    if key in config and not isinstance(config[key], str):
        return [_err((key,), "Input should be a valid string", "string_type")]
    return []


def _check_str_list(config: Mapping[str, Any], key: str) -> list[ErrorItem]:
    if key not in config:
        return []
    value = config[key]
    if not isinstance(value, list):
        return [_err((key,), "Input should be a valid list", "list_type")]
    if not value:
        return [_err((key,), "List should have at least 1 item", "too_short")]
    return [
        _err((key, i), "Input should be a valid string", "string_type")
        for i, item in enumerate(value)
        if not isinstance(item, str)
    ]


def validate_config(config: Mapping[str, Any], endpoint: str, *, allow_insecure_webhooks: bool) -> list[ErrorItem]:
    """Every schema violation of a decoded config for ``endpoint`` (empty when valid)."""
    allowed = set(CONFIG_KEYS) | (set(COMPANY_ONLY_KEYS) if endpoint == "company" else set())
    errors = [_err((key,), "Extra inputs are not permitted", "extra_forbidden") for key in config if key not in allowed]
    errors += _check_struct(config.get("struct"), ("struct",), required=endpoint == "company")
    if "tier" in config:
        tiers = TIERS[endpoint]
        if config["tier"] not in tiers:
            listed = ", ".join(f"'{t}'" for t in tiers)
            errors.append(_err(("tier",), f"Input should be {listed}", "enum"))
    for key in ("field_confidence", "save_json", "find_people", "full_org_chart"):
        if key in allowed:
            errors += _check_bool(config, key)
    for key in ("research_plan", "people_focus_prompt"):
        if key in allowed:
            errors += _check_str(config, key)
    errors += _check_str_list(config, "columns")
    errors += _check_str_list(config, "result_formats")
    if isinstance(config.get("result_formats"), list):
        for i, fmt in enumerate(config["result_formats"]):
            if isinstance(fmt, str) and fmt not in _RESULT_FORMATS:
                errors.append(_err(("result_formats", i), "Input should be 'csv', 'ndjson' or 'json'", "enum"))
    if "lead_struct" in config and endpoint == "company":
        errors += _check_struct(config["lead_struct"], ("lead_struct",), required=False)
    if "webhook_url" in config:
        url = config["webhook_url"]
        if not isinstance(url, str):
            errors.append(_err(("webhook_url",), "URL input should be a string", "url_type"))
        elif not url:
            errors.append(_err(("webhook_url",), "URL should have at least 1 character", "url_too_short"))
        elif len(url) > 2083:
            errors.append(_err(("webhook_url",), "URL should have at most 2083 characters", "url_too_long"))
        else:
            problem = webhook_url_problem(url, allow_insecure=allow_insecure_webhooks)
            if problem:
                kind = "url_scheme" if "scheme" in problem else "url_parsing"
                errors.append(_err(("webhook_url",), problem, kind))
    return errors


def check_columns(columns: Any, file_columns: list[str]) -> list[ErrorItem]:
    """``columns`` entries absent from the uploaded file (checked once the file is read)."""
    if not isinstance(columns, list):
        return []
    present = set(file_columns)
    return [
        _err(("columns", i), f"Column '{name}' is not in the uploaded file", "value_error")
        for i, name in enumerate(columns)
        if isinstance(name, str) and name not in present
    ]
