"""The struct types: every name the API's schema knows, the aliases a sync definition may use, and their shapes.

Pure data and small functions, shared by the config models, the client-side config checks, the result parser and
the generated reference (``docs/config.md``, "Struct types"). A type name that is not here is not refused: it is
sent to the API as written (lower-cased, without spaces), stored as text and read as text; the API's answer (a
422 when it does not know the name) decides.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

__all__ = [
    "API_STRUCT_TYPES",
    "ENUM_TYPES",
    "JSON_TYPES",
    "KNOWN_TYPES",
    "OBJECT_TYPES",
    "SUBFIELD_API_NAMES",
    "SUBFIELD_TYPE_ALIASES",
    "TYPE_ALIASES",
    "canonical_subfield_type",
    "canonical_type",
    "enum_description",
    "is_known_type",
    "json_shape",
    "type_key",
]

#: YAML spelling (lower case, no spaces) -> the canonical name, which is also the name sent to the API.
TYPE_ALIASES: dict[str, str] = {
    "str": "str",
    "string": "str",
    "int": "int",
    "integer": "int",
    "float": "float",
    "bool": "bool",
    "boolean": "bool",
    "list": "list",
    "list[str]": "list[str]",
    "list[string]": "list[str]",
    "list[int]": "list[int]",
    "list[integer]": "list[int]",
    "list[float]": "list[float]",
    "list[bool]": "list[bool]",
    "list[boolean]": "list[bool]",
    "dict": "dict",
    "enum": "enum",
    "list[enum]": "list[enum]",
    "object": "object",
    "object_list": "object_list",
    "list[object]": "object_list",
}
#: The canonical struct types, in the order the reference lists them.
KNOWN_TYPES: tuple[str, ...] = tuple(dict.fromkeys(TYPE_ALIASES.values()))
#: The names the API's current schema lists for a struct field's type (what the client-side check knows).
API_STRUCT_TYPES: tuple[str, ...] = (
    "str", "string", "int", "integer", "float", "bool", "boolean", "dict", "enum", "list[enum]", "object",
    "object_list", "list", "list[str]", "list[int]", "list[float]", "list[bool]", "list[boolean]",
)  # fmt: skip
#: Stored as JSON (the warehouse's JSON type, or text where it has none).
JSON_TYPES = frozenset({"list", "list[str]", "list[int]", "list[float]", "list[bool]", "dict", "list[enum]", "object",
                        "object_list"})  # fmt: skip
#: Types that take ``values`` (the allowed answers).
ENUM_TYPES = frozenset({"enum", "list[enum]"})
#: Types that take ``subfields``.
OBJECT_TYPES = frozenset({"object", "object_list"})
#: A subfield's type: YAML spelling -> canonical name.
SUBFIELD_TYPE_ALIASES: dict[str, str] = {
    "str": "str",
    "string": "str",
    "int": "int",
    "integer": "int",
    "float": "float",
    "bool": "bool",
    "boolean": "bool",
    "dict": "dict",
}
#: A subfield's canonical type -> the name the API's ``StructField`` schema gives it.
SUBFIELD_API_NAMES: dict[str, str] = {"str": "string", "int": "int", "float": "float", "bool": "bool", "dict": "dict"}


def type_key(name: str) -> str:
    """A type name as compared: lower case, without whitespace (``List[ Str ]`` is ``list[str]``)."""
    return "".join(name.split()).lower()


def canonical_type(name: str) -> str:
    """The canonical name of a struct type; an unknown name comes back as :func:`type_key` made it."""
    key = type_key(name)
    return TYPE_ALIASES.get(key, key)


def canonical_subfield_type(name: str) -> str | None:
    """The canonical name of a subfield type, or None when the schema does not offer it for subfields."""
    return SUBFIELD_TYPE_ALIASES.get(type_key(name))


def is_known_type(name: str) -> bool:
    """Whether a canonical type name is one of the API's schema."""
    return name in KNOWN_TYPES


def json_shape(name: str) -> Literal["object", "array", "any"] | None:
    """What a JSON-typed answer must be: a JSON object, a JSON array, any JSON value (``dict``); None: not JSON."""
    if name not in JSON_TYPES:
        return None
    if name == "object":
        return "object"
    if name == "dict":
        return "any"
    return "array"


def enum_description(description: str, values: Sequence[str]) -> str:
    """The description sent for an enum field: the allowed values follow it, each as a JSON string.

    The API's ``StructField`` has no key for the allowed values, so the description carries them:
    ``Seniority level. One of: "junior", "senior".``
    """
    text = description.rstrip()
    listed = ", ".join(json.dumps(v, ensure_ascii=False) for v in values)
    sep = " " if text.endswith((".", "!", "?")) else ". "
    return f"{text}{sep}One of: {listed}."
