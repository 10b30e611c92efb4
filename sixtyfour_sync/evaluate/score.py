"""RECON's scoring: each labelled field of each row is correct, wrong or missing; counts per field, tier and
confidence band, with accuracy = c / total, precision = c / (c + w) and coverage = (c + w) / total.

A field is *missing* when the answer is empty and the label has a value; a label left empty is not scored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sixtyfour_sync.evaluate.normalise import Tolerances, is_empty, same

__all__ = [
    "BANDS",
    "NO_BAND",
    "Counts",
    "Outcome",
    "Scored",
    "band_of",
    "score_answer",
    "score_rows",
    "tally",
]

#: Confidence bands, as (label, lowest, highest) inclusive.
BANDS: tuple[tuple[str, int, int], ...] = (
    ("0-49", 0, 49),
    ("50-69", 50, 69),
    ("70-79", 70, 79),
    ("80-89", 80, 89),
    ("90-100", 90, 100),
)
#: The band of an answer without a confidence.
NO_BAND = "none"
#: Every band label, lowest first.
BAND_ORDER = (*(b[0] for b in BANDS), NO_BAND)


class Outcome(str, Enum):
    """What one labelled field of one row scored."""

    CORRECT = "correct"
    WRONG = "wrong"
    MISSING = "missing"


def band_of(confidence: Any) -> str:
    """The band label of a confidence (0-100; below 0 is the lowest band, above 100 the highest), or
    :data:`NO_BAND`."""
    if confidence is None or is_empty(confidence):
        return NO_BAND
    value = float(confidence)
    for label, _lo, hi in BANDS:
        if value <= hi:
            return label
    return BANDS[-1][0]


def score_answer(kind: str, answer: Any, label: Any, tolerance: float = 0.0) -> Outcome | None:
    """One field of one row: None when the label is empty (not scored)."""
    if is_empty(label):
        return None
    if is_empty(answer):
        return Outcome.MISSING
    return Outcome.CORRECT if same(kind, answer, label, tolerance) else Outcome.WRONG


@dataclass(frozen=True)
class Scored:
    """One scored field of one labelled row."""

    field: str
    tier: str
    confidence: int | None
    outcome: Outcome

    @property
    def band(self) -> str:
        """The confidence band of the answer."""
        return band_of(self.confidence)


@dataclass
class Counts:
    """Correct, wrong and missing answers, and RECON's ratios over them."""

    correct: int = 0
    wrong: int = 0
    missing: int = 0

    def add(self, outcome: Outcome) -> None:
        """Count one outcome."""
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)

    @property
    def total(self) -> int:
        """Every scored answer."""
        return self.correct + self.wrong + self.missing

    @property
    def answered(self) -> int:
        """Answers with a value (c + w)."""
        return self.correct + self.wrong

    @property
    def accuracy(self) -> float | None:
        """c / total."""
        return self.correct / self.total if self.total else None

    @property
    def precision(self) -> float | None:
        """c / (c + w)."""
        return self.correct / self.answered if self.answered else None

    @property
    def coverage(self) -> float | None:
        """(c + w) / total."""
        return self.answered / self.total if self.total else None

    def as_dict(self) -> dict[str, Any]:
        """The counts and ratios, for JSON."""
        return {
            "correct": self.correct,
            "wrong": self.wrong,
            "missing": self.missing,
            "total": self.total,
            "accuracy": self.accuracy,
            "precision": self.precision,
            "coverage": self.coverage,
        }


def score_rows(
    rows: Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]],
    kinds: Mapping[str, str],
    tolerances: Tolerances,
) -> list[Scored]:
    """Score (answer row, label row) pairs; an answer row holds each field's value, ``<field>_confidence`` and
    ``tier``; a label row holds the labelled fields (empty: not scored)."""
    out: list[Scored] = []
    for answer, label in rows:
        tier = str(answer.get("tier") or "unknown")
        for name, kind in kinds.items():
            if name not in label:
                continue
            outcome = score_answer(kind, answer.get(name), label[name], tolerances.of(name, kind))
            if outcome is None:
                continue
            conf: Any = answer.get(f"{name}_confidence")
            out.append(Scored(name, tier, None if is_empty(conf) else int(conf), outcome))
    return out


def tally(
    scored: Iterable[Scored], *, by: tuple[str, ...] = ("field", "tier", "band")
) -> dict[tuple[str, ...], Counts]:
    """Counts grouped by the named attributes of :class:`Scored` (``field``, ``tier``, ``band``), sorted."""
    groups: dict[tuple[str, ...], Counts] = {}
    for s in scored:
        key = tuple(str(getattr(s, name)) for name in by)
        groups.setdefault(key, Counts()).add(s.outcome)
    return {k: groups[k] for k in sorted(groups, key=_order)}


def _order(key: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple((BAND_ORDER.index(part), part) if part in BAND_ORDER else (-1, part) for part in key)
