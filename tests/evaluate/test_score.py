"""RECON's counts: correct, wrong, missing, a label left empty not scored; per field, tier and band."""

from __future__ import annotations

import pytest

from sixtyfour_sync.evaluate.normalise import Tolerances
from sixtyfour_sync.evaluate.score import Counts, Outcome, Scored, band_of, score_answer, score_rows, tally

KINDS = {"email": "str", "employees": "int"}


def _answers() -> list[tuple[dict[str, object], dict[str, object]]]:
    return [
        # right email (case), wrong employees
        ({"email": "A@x.io", "email_confidence": 92, "employees": 10, "employees_confidence": 40, "tier": "low"},
         {"email": "a@x.io", "employees": "12"}),
        # missing email, right employees; email label present
        ({"email": None, "email_confidence": None, "employees": 5, "employees_confidence": 71, "tier": "low"},
         {"email": "b@x.io", "employees": "5"}),
        # email label empty (not scored), employees missing
        ({"email": "c@x.io", "email_confidence": 55, "employees": None, "employees_confidence": 80, "tier": "medium"},
         {"email": "", "employees": "7"}),
        # wrong email at medium, employees label absent from the row's labels
        ({"email": "d@x.io", "email_confidence": 88, "employees": 1, "employees_confidence": 99, "tier": "medium"},
         {"email": "dd@x.io"}),
        # no tier recorded, no confidence
        ({"email": "e@x.io", "employees": 3}, {"email": "E@X.IO", "employees": "3"}),
    ]  # fmt: skip


def test_score_answer() -> None:
    assert score_answer("str", "x", "") is None and score_answer("str", None, None) is None
    assert score_answer("str", None, "x") is Outcome.MISSING and score_answer("str", "", "x") is Outcome.MISSING
    assert score_answer("str", "X ", "x") is Outcome.CORRECT and score_answer("str", "y", "x") is Outcome.WRONG


def test_exact_counts_per_field_tier_and_band() -> None:
    scored = score_rows(_answers(), KINDS, Tolerances())
    assert len(scored) == 8  # 10 pairs, 2 not scored
    by_field = tally(scored, by=("field",))
    assert by_field[("email",)] == Counts(correct=2, wrong=1, missing=1)
    assert by_field[("employees",)] == Counts(correct=2, wrong=1, missing=1)
    email = by_field[("email",)]
    assert (email.accuracy, email.precision, email.coverage) == (0.5, pytest.approx(2 / 3), 0.75)
    by_tier = tally(scored, by=("field", "tier"))
    assert by_tier == {
        ("email", "low"): Counts(1, 0, 1),
        ("email", "medium"): Counts(0, 1, 0),
        ("email", "unknown"): Counts(1, 0, 0),
        ("employees", "low"): Counts(1, 1, 0),
        ("employees", "medium"): Counts(0, 0, 1),
        ("employees", "unknown"): Counts(1, 0, 0),
    }
    by_band = tally(scored, by=("field", "band"))
    assert list(by_band) == [
        ("email", "80-89"),
        ("email", "90-100"),
        ("email", "none"),
        ("employees", "0-49"),
        ("employees", "70-79"),
        ("employees", "80-89"),
        ("employees", "none"),
    ]
    assert by_band[("email", "none")] == Counts(1, 0, 1)  # the missing one has no confidence, the untiered one
    assert by_band[("employees", "80-89")] == Counts(0, 0, 1)  # a gated answer: its confidence, no value


def test_bands_and_empty_counts() -> None:
    assert [band_of(c) for c in (None, 0, 49, 50, 69, 70, 79, 80, 89, 90, 100, 120, -3)] == [
        "none", "0-49", "0-49", "50-69", "50-69", "70-79", "70-79", "80-89", "80-89", "90-100", "90-100", "90-100",
        "0-49",
    ]  # fmt: skip
    empty = Counts()
    assert (empty.accuracy, empty.precision, empty.coverage) == (None, None, None)
    only_missing = Counts(missing=2)
    assert only_missing.precision is None and only_missing.accuracy == 0.0 and only_missing.coverage == 0.0
    assert Scored("f", "low", 75, Outcome.CORRECT).band == "70-79"
