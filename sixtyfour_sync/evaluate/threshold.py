"""The ``min_confidence`` a field needs for a target precision, measured on the labelled answers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sixtyfour_sync.evaluate.score import Outcome, Scored

__all__ = ["Suggestion", "suggest_threshold"]


@dataclass(frozen=True)
class Suggestion:
    """The lowest threshold whose labelled answers at or above it reach the target precision."""

    field: str
    target_precision: float
    #: The suggested ``min_confidence`` (0: every answer already reaches it); None: no threshold does.
    min_confidence: int | None
    #: Precision of the labelled answers at or above it, and how many of them (c + w) there are.
    precision: float | None
    kept: int
    #: Labelled answers (c + w) it would hold back.
    held_back: int


def suggest_threshold(scored: Iterable[Scored], field: str, target_precision: float) -> Suggestion:
    """The lowest integer ``min_confidence`` such that the labelled answers of ``field`` with a confidence at
    or above it have precision >= ``target_precision``.

    Only answers with a value and a confidence count (a missing answer has no precision); answers without a
    confidence are never gated and count at every threshold.
    """
    answered = [s for s in scored if s.field == field and s.outcome is not Outcome.MISSING]
    unconfident = [s for s in answered if s.confidence is None]
    confident = sorted((s for s in answered if s.confidence is not None), key=lambda s: s.confidence or 0)
    base_c = sum(s.outcome is Outcome.CORRECT for s in unconfident)
    base_n = len(unconfident)
    # Thresholds only matter just above each distinct confidence: the lowest integer giving a precision is
    # 0 or one more than a confidence of a labelled answer.
    candidates = sorted({0} | {(s.confidence or 0) + 1 for s in confident})
    for t in candidates:
        kept = [s for s in confident if (s.confidence or 0) >= t]
        n = len(kept) + base_n
        if not n:
            break
        c = sum(s.outcome is Outcome.CORRECT for s in kept) + base_c
        if c / n >= target_precision:
            return Suggestion(field, target_precision, t, c / n, n, len(answered) - n)
    return Suggestion(field, target_precision, None, None, 0, len(answered))
