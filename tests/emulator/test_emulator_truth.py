"""The ground truth and the wrong answers: vectorised and reference agree, every tier answers the truth but its
share of wrong answers, wrong answers differ from the truth, and confidences are calibrated to them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sixtyfour_sync.emulator import EmulatorSettings
from sixtyfour_sync.emulator.answers import AnswerErrors, alter_py, alter_vec
from sixtyfour_sync.emulator.generate import generate_output, reference_output
from sixtyfour_sync.emulator.truth import truth_rows
from tests.emulator.test_emulator_generate import ALL_TYPES_STRUCT, ROWS, _decode, _table

MANY = [
    {"first_name": f"F{i % 37}", "last_name": f"L{i % 53}", "company": f"Co {i % 11}", "domain": f"d{i % 17}.com"}
    for i in range(3000)
]
SMALL = {
    "email": "The individual's email address",
    "title": "Job title",
    "employee_count": {"description": "Employees", "type": "int"},
}


def _errors(rate: float, tier_seed: int = 3) -> AnswerErrors:
    return AnswerErrors(truth_seed=3, tier_seed=tier_seed, error_rate=rate)


def test_generator_with_errors_agrees_with_reference() -> None:
    kwargs: dict[str, Any] = {"endpoint": "people", "field_confidence": True, "columns": None, "failure_rate": 0.2}
    errors = _errors(0.4, tier_seed=99)
    out, failed = generate_output(_table(ROWS), ALL_TYPES_STRUCT, seed=99, errors=errors, **kwargs)
    ref = reference_output(ALL_TYPES_STRUCT, ROWS, seed=99, errors=errors, **kwargs)
    assert [_decode(ALL_TYPES_STRUCT, r) for r in out.to_pylist()] == ref
    assert failed == sum(1 for r in ref if r["email"] is None)


def test_off_by_default_and_unchanged_without_errors() -> None:
    settings = EmulatorSettings()
    assert settings.answer_errors is False and settings.tier_errors("low") is None
    on = EmulatorSettings(answer_errors=True, seed=5)
    low, medium = on.tier_errors("low"), on.tier_errors("medium")
    assert low is not None and medium is not None
    assert (low.truth_seed, low.error_rate) == (5, 0.3) and (medium.truth_seed, medium.error_rate) == (5, 0.17)
    with pytest.raises(ValueError, match="tier_error_rates"):
        EmulatorSettings(tier_error_rates={"low": 1.5})


@pytest.mark.parametrize(("tier_seed", "rate"), [(3, 0.3), (12345, 0.17)])
def test_each_tier_answers_the_truth_but_its_wrong_share(tier_seed: int, rate: float) -> None:
    truth = truth_rows(SMALL, MANY, seed=3)
    answers = reference_output(
        SMALL,
        MANY,
        endpoint="people",
        field_confidence=True,
        columns=None,
        seed=tier_seed,
        failure_rate=0.0,
        errors=_errors(rate, tier_seed),
    )
    for field in SMALL:
        wrong = [a for a, t in zip(answers, truth, strict=True) if a[field] != t[field]]
        right = [a for a, t in zip(answers, truth, strict=True) if a[field] == t[field]]
        # the share is the rate, within sampling noise (3000 rows); pure values (the email) are wrong too
        assert abs(len(wrong) / len(MANY) - rate) < 0.03, (field, len(wrong))
        confs_wrong = [a[f"{field}_confidence"] for a in wrong]
        confs_right = [a[f"{field}_confidence"] for a in right]
        assert min(confs_wrong) >= 35 and max(confs_wrong) <= 79
        assert min(confs_right) >= 50 and max(confs_right) <= 99
        # calibrated: precision at or above 80 is 1, below 50 it is 0
        assert all(c < 80 for c in confs_wrong) and all(c >= 50 for c in confs_right)


def test_truth_is_the_same_at_every_tier_and_deterministic() -> None:
    assert truth_rows(SMALL, MANY[:50], seed=3) == truth_rows(SMALL, MANY[:50], seed=3)
    assert truth_rows(SMALL, MANY[:50], seed=3) != truth_rows(SMALL, MANY[:50], seed=4)
    # the low tier's right answers are the truth (its seed is the emulator's own seed)
    first = truth_rows(SMALL, MANY[:1], seed=3)[0]
    assert first["email"] == "f0.l0@d0.com" and isinstance(first["employee_count"], int)


@pytest.mark.parametrize(
    ("kind", "value", "altered"),
    [
        ("str", "ada.lovelace@acme.com", "contact@acme.com"),
        ("str", "contact@acme.com", "info@acme.com"),
        ("str", "https://www.acme.com", "https://www.old-acme.com"),
        ("str", "https://x.com/ada", "https://old-x.com/ada"),
        ("str", "Head of Data", "Head of Data (former)"),
        ("int", 100, 126),
        ("int", -8, -5),
        ("float", 2.0, 3.5),
        ("bool", True, False),
        ("enum", "low", "low"),
    ],
)
def test_alteration_vectorised_and_scalar(kind: str, value: Any, altered: Any) -> None:
    import pyarrow as pa

    assert alter_py(kind, value) == altered
    assert alter_vec(kind, pa.array([value])).to_pylist() == [altered]


def test_emulator_serves_wrong_answers_and_reference_predicts_them() -> None:
    from sixtyfour_sync.emulator import Emulator

    emu = Emulator(EmulatorSettings(answer_errors=True, seed=3, failure_rate=0.0))
    try:
        low = emu.reference_output(SMALL, MANY[:200], field_confidence=True, tier="low")
        high = emu.reference_output(SMALL, MANY[:200], field_confidence=True, tier="high")
        truth = emu.truth(SMALL, MANY[:200])
    finally:
        emu.close()
    wrong_low = sum(a["title"] != t["title"] for a, t in zip(low, truth, strict=True))
    wrong_high = sum(a["title"] != t["title"] for a, t in zip(high, truth, strict=True))
    assert wrong_high < wrong_low
    assert json.dumps(truth[0], sort_keys=True)  # plain JSON values
