"""The suggested min_confidence: the lowest whose labelled answers at or above it reach the target precision."""

from __future__ import annotations

from sixtyfour_sync.evaluate.score import Outcome, Scored
from sixtyfour_sync.evaluate.threshold import suggest_threshold

C, W, M = Outcome.CORRECT, Outcome.WRONG, Outcome.MISSING


def _scored(*items: tuple[int | None, Outcome], field: str = "email") -> list[Scored]:
    return [Scored(field, "low", conf, outcome) for conf, outcome in items]


def test_lowest_threshold_reaching_the_target() -> None:
    # confidences: 40 W, 50 W, 60 C, 65 W, 70 C, 80 C, 90 C, 95 C; a missing one never counts
    scored = _scored((40, W), (50, W), (60, C), (65, W), (70, C), (80, C), (90, C), (95, C), (30, M))
    s = suggest_threshold(scored, "email", 0.8)
    # >= 51: 60 C, 65 W, 70..95 C -> 5/6 = 0.83
    assert (s.min_confidence, s.kept, s.held_back) == (51, 6, 2) and abs((s.precision or 0) - 5 / 6) < 1e-9
    s = suggest_threshold(scored, "email", 0.9)
    assert (s.min_confidence, s.precision, s.kept, s.held_back) == (66, 1.0, 4, 4)
    s = suggest_threshold(scored, "email", 0.5)
    assert (s.min_confidence, s.precision, s.kept) == (0, 5 / 8, 8)


def test_no_threshold_reaches_it() -> None:
    s = suggest_threshold(_scored((90, W), (80, C)), "email", 0.9)
    assert (s.min_confidence, s.precision, s.kept, s.held_back) == (None, None, 0, 2)
    assert suggest_threshold([], "email", 0.9).min_confidence is None
    assert suggest_threshold(_scored((90, C), field="title"), "email", 0.9).min_confidence is None


def test_answers_without_confidence_count_at_every_threshold() -> None:
    # an unconfident wrong answer can never be gated away
    s = suggest_threshold(_scored((None, W), (None, C), (70, C), (80, C)), "email", 0.75)
    assert (s.min_confidence, s.kept) == (0, 4)
    s = suggest_threshold(_scored((None, W), (60, W), (70, C), (80, C)), "email", 0.75)
    assert s.min_confidence is None
