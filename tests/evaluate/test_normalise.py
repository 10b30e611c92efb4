"""How answers and labels compare: text, emails, URLs, numbers within a tolerance, booleans, lists as sets."""

from __future__ import annotations

from typing import Any

import pytest

from sixtyfour_sync.evaluate.normalise import LabelValueError, Tolerances, is_empty, normalise, parse_label, same


@pytest.mark.parametrize(
    ("kind", "answer", "label"),
    [
        ("str", "Head of  Data", " head of data "),
        ("str", "Ada.Lovelace@Acme.COM", "ada.lovelace@acme.com"),
        ("str", "https://www.Acme.com/", "acme.com"),
        ("str", "http://acme.com//", "www.acme.com"),
        ("str", "https://www.linkedin.com/in/ada-lovelace-123", "linkedin.com/in/ada-lovelace-123/"),
        ("enum", "Senior", "senior"),
        ("int", 1200, "1,200"),
        ("int", "42", 42.0),
        ("float", 100.0, "100.9"),
        ("bool", True, "yes"),
        ("bool", "false", "0"),
        ("list[str]", '["python", "SQL"]', "sql; python"),
        ("list[str]", ["a", "b", "a"], "b, a"),
        ("list[int]", "[1, 2]", "[2, 1]"),
        ("dict", '{"b": "X", "a": 1}', '{"a": 1.0, "b": "x"}'),
        ("object_list", '[{"name": "Ada"}]', '[{"name": "ada"}]'),
    ],
)
def test_same(kind: str, answer: Any, label: Any) -> None:
    assert same(kind, answer, label, Tolerances().of("x", kind))


@pytest.mark.parametrize(
    ("kind", "answer", "label", "tolerance"),
    [
        ("str", "ada@acme.com", "contact@acme.com", 0.0),
        ("str", "https://www.acme.com", "https://www.old-acme.com", 0.0),
        ("int", 100, 101, 0.0),
        ("float", 100.0, 102.0, 0.01),
        ("bool", True, "no", 0.0),
        ("list[str]", '["a"]', "a; b", 0.0),
        ("int", "lots", "3", 0.0),  # an answer that is not of its type matches nothing
    ],
)
def test_not_same(kind: str, answer: Any, label: Any, tolerance: float) -> None:
    assert not same(kind, answer, label, tolerance)


def test_tolerances_per_type_and_field() -> None:
    tol = Tolerances(by_field={"revenue": 0.1})
    assert tol.of("employees", "int") == 0.0 and tol.of("ratio", "float") == 0.01 and tol.of("revenue", "int") == 0.1
    assert same("int", 1000, 1099, tol.of("revenue", "int")) and not same("int", 1000, 1200, 0.1)


def test_empty_and_bad_labels() -> None:
    assert all(is_empty(v) for v in (None, "", "  ", [], {}, float("nan")))
    assert not any(is_empty(v) for v in (0, False, "0", [0]))
    assert parse_label("int", " ") is None and parse_label("int", "7") == "7"
    for kind, value, message in (
        ("int", "seven", "'seven' is not a number"),
        ("bool", "maybe", "'maybe' is not true or false"),
        ("dict", "{oops", "'{oops' is not JSON"),
        ("list[int]", "[1, oops", "is not a JSON array"),
        ("list[int]", "1; x", "'x' is not a number"),
    ):
        with pytest.raises(LabelValueError, match=message):
            normalise(kind, value)
