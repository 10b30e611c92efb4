"""The struct: each field a sync asks for, its type, values and subfields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import (
    AliasChoices,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sixtyfour_sync.config.base import (
    _Strict,
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
