"""How an answer and a label are compared: normalised by the field's type, numbers within a tolerance.

- text: case-folded, runs of white space made one space, trimmed; an email is lower-cased (case folding does
  it); a URL loses its scheme, a leading ``www.`` and trailing slashes (``https://www.Acme.com/`` is
  ``acme.com``);
- numbers (``int``, ``float``): parsed, then equal within a relative tolerance per type (:class:`Tolerances`;
  exact for integers, 1% for floats by default);
- booleans: ``true``/``false``, ``yes``/``no``, ``1``/``0``;
- lists: compared as sets of normalised items; a label may be a JSON array or text split on ``;`` (or on
  ``,`` when it has no ``;``);
- objects and dicts: JSON, compared with their text values normalised.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "LabelValueError",
    "Tolerances",
    "is_empty",
    "normalise",
    "parse_label",
    "same",
]

_SPACES = re.compile(r"\s+")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")
#: A host (and path) without a scheme: ``linkedin.com/in/ada/``.
_BARE_URL = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)+(/\S*)?$")
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
_NUMBERS = ("int", "float")
_JSON_OBJECTS = ("dict", "object")


class LabelValueError(ValueError):
    """A label that cannot be read as its field's type (the message says why)."""


@dataclass(frozen=True)
class Tolerances:
    """How far apart two numbers may be and still be the same answer: a relative tolerance per type, and per
    field where given (``abs(a - b) <= tol * max(abs(a), abs(b))``)."""

    by_type: Mapping[str, float] = field(default_factory=lambda: {"int": 0.0, "float": 0.01})
    by_field: Mapping[str, float] = field(default_factory=dict)

    def of(self, field_name: str, kind: str) -> float:
        """The tolerance of one field."""
        if field_name in self.by_field:
            return float(self.by_field[field_name])
        return float(self.by_type.get(kind, 0.0))


def is_empty(value: Any) -> bool:
    """No answer (or no label): NULL, blank text, an empty list or object."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple, set, dict)):
        return not value
    return False


def _text(value: Any) -> str:
    text = _SPACES.sub(" ", str(value)).strip().casefold()
    if _SCHEME.match(text) or text.startswith("www.") or _BARE_URL.match(text):
        text = _SCHEME.sub("", text, count=1).removeprefix("www.").rstrip("/")
    return text


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise LabelValueError(f"{value!r} is not a number")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().replace(",", "").replace("_", "")
    try:
        return float(text)
    except ValueError:
        raise LabelValueError(f"{str(value)!r} is not a number") from None


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().casefold()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise LabelValueError(f"{str(value)!r} is not true or false")


def _items(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple, set)):
        return list(value)
    text = str(value).strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            raise LabelValueError(f"{text!r} is not a JSON array") from None
        if isinstance(parsed, list):
            return parsed
    sep = ";" if ";" in text else ","
    return [part for part in (p.strip() for p in text.split(sep)) if part]


def _json(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return value
    try:
        return json.loads(str(value))
    except ValueError:
        raise LabelValueError(f"{str(value)!r} is not JSON") from None


def _deep(value: Any) -> Any:
    """Text leaves normalised, keys sorted: a canonical, comparable form of a JSON value."""
    if isinstance(value, dict):
        return tuple(sorted((str(k).casefold(), _deep(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_deep(v) for v in value)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return _text(value)


def normalise(kind: str, value: Any) -> Any:
    """The comparable form of a non-empty answer or label of a field of type ``kind`` (the struct type).

    Raises :class:`LabelValueError` when the value cannot be read as that type.
    """
    if kind in _NUMBERS:
        return _number(value)
    if kind == "bool":
        return _bool(value)
    if kind.startswith("list") or kind == "object_list":
        items = _items(value)
        if kind == "list[int]" or kind == "list[float]":
            return frozenset(_number(i) for i in items)
        if kind == "list[bool]":
            return frozenset(_bool(i) for i in items)
        return frozenset(_deep(i) if isinstance(i, (dict, list)) else _text(i) for i in items)
    if kind in _JSON_OBJECTS:
        return _deep(_json(value))
    return _text(value)


def parse_label(kind: str, value: Any) -> Any:
    """A label checked against its field's type: None when empty (not scored); raises LabelValueError."""
    if is_empty(value):
        return None
    normalise(kind, value)
    return value


def same(kind: str, answer: Any, label: Any, tolerance: float = 0.0) -> bool:
    """Whether a non-empty answer matches a non-empty label of a field of type ``kind``.

    An answer that cannot be read as its type matches nothing.
    """
    want = normalise(kind, label)
    try:
        got = normalise(kind, answer)
    except LabelValueError:
        return False
    if kind in _NUMBERS:
        assert isinstance(got, float) and isinstance(want, float)
        return abs(got - want) <= tolerance * max(abs(got), abs(want))
    return bool(got == want)
