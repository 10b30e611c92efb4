"""The overwrite rule: what a merge does to a stored value, field by field (pure; docs/config.md has the table).

A target row's values answer one question: its inputs (``_sixtyfour_input_hash``) and the question asked
(``_sixtyfour_spec_hash``: endpoint, tier, struct fields, options). An answer to the question asked now is
always more current than an answer to an earlier one, whatever their confidences:

- an answer that meets ``min_confidence`` replaces the stored value; only between answers to the SAME
  question (same inputs, same field definitions), and only with ``overwrite: keep_more_confident``, does a
  stored value with a higher confidence stay;
- an answer below ``min_confidence`` is not written; the stored value stays if it answered the same question,
  and is cleared otherwise (``_sixtyfour_field_status`` says ``low_confidence``), so an earlier question's
  answer is never left standing as if it answered this one;
- a row the API could not enrich (or that did not come back) keeps values that answered the same question
  (a retry, a refresh) and has values that answered another question cleared.

:func:`decide` states the rule; :func:`value_guard` and :func:`confidence_guard` turn it into the guards the
upsert evaluates in SQL, against the stored hashes, on every warehouse
(:mod:`sixtyfour_sync.warehouse.sql.guards`). Tests hold the SQL to :func:`decide` case by case.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from sixtyfour_sync.warehouse.types import Guard

__all__ = ["OVERWRITE_POLICIES", "Outcome", "confidence_guard", "decide", "same_question_columns", "value_guard"]

#: ``always``: every answer to the question asked now replaces the stored one (when it meets min_confidence);
#: ``keep_more_confident``: between answers to the same question, a more confident stored value stays.
OVERWRITE_POLICIES = ("always", "keep_more_confident")
Policy = Literal["always", "keep_more_confident"]


class Outcome(str, Enum):
    """What happens to a stored value."""

    WRITE = "write"
    KEEP = "keep"
    CLEAR = "clear"


def decide(
    *,
    answered: bool,
    meets_threshold: bool,
    same_question: bool,
    stored_more_confident: bool,
    policy: Policy,
) -> Outcome:
    """The outcome for one field of one existing row.

    ``answered``: the row came back enriched (a field left empty by an enriched answer is an answer: empty);
    ``meets_threshold``: the field's confidence meets its ``min_confidence`` (True when there is none);
    ``same_question``: the stored row answered the same question (same input hash and spec hash);
    ``stored_more_confident``: the stored confidence is known and above the new answer's (or the new one has none).
    """
    if answered and meets_threshold:
        if policy == "keep_more_confident" and same_question and stored_more_confident:
            return Outcome.KEEP
        return Outcome.WRITE
    return Outcome.KEEP if same_question else Outcome.CLEAR


def same_question_columns(input_hash: str, spec_hash: str) -> tuple[str, str]:
    """The bookkeeping columns that are equal when a stored row answered the staged row's question."""
    return (input_hash, spec_hash)


def value_guard(
    *,
    write: str,
    unwritten: str,
    same: tuple[str, ...],
    confidence: str | None,
    policy: Policy,
) -> Guard:
    """The guard of a field's value column.

    ``write``: staged flag, the row was answered and the field meets its threshold; ``unwritten``: its negation
    (not answered, or below the threshold); ``confidence``: the field's confidence column, when asked.
    """
    floor = confidence if confidence is not None and policy == "keep_more_confident" else None
    return Guard(when=write, not_below=floor, same=same, clear=unwritten)


def confidence_guard(
    *, answered: str, unanswered: str, same: tuple[str, ...], confidence: str, policy: Policy
) -> Guard:
    """The guard of a field's confidence column: written with every answer (a gated answer's confidence is
    kept, to say why it was not written), kept or cleared with the value otherwise."""
    floor = confidence if policy == "keep_more_confident" else None
    return Guard(when=answered, not_below=floor, same=same, clear=unanswered)


#: The cases of the rule's table: (the answer, the stored value, decide()'s arguments but the policy).
_CASES: tuple[tuple[str, str, dict[str, bool]], ...] = (
    ("answered, meets min_confidence", "same question, not more confident", dict(answered=True, meets_threshold=True, same_question=True, stored_more_confident=False)),  # noqa: E501
    ("answered, meets min_confidence", "same question, more confident", dict(answered=True, meets_threshold=True, same_question=True, stored_more_confident=True)),  # noqa: E501
    ("answered, meets min_confidence", "another question (any confidence)", dict(answered=True, meets_threshold=True, same_question=False, stored_more_confident=True)),  # noqa: E501
    ("answered, below min_confidence", "same question", dict(answered=True, meets_threshold=False, same_question=True, stored_more_confident=False)),  # noqa: E501
    ("answered, below min_confidence", "another question", dict(answered=True, meets_threshold=False, same_question=False, stored_more_confident=False)),  # noqa: E501
    ("not enriched (failed, or not returned)", "same question", dict(answered=False, meets_threshold=True, same_question=True, stored_more_confident=False)),  # noqa: E501
    ("not enriched (failed, or not returned)", "another question", dict(answered=False, meets_threshold=True, same_question=False, stored_more_confident=False)),  # noqa: E501
)  # fmt: skip


def rule_table() -> list[str]:
    """The rule as a Markdown table, computed by :func:`decide` (docs/config.md shows it)."""
    lines = [
        "| the answer, for a field | the stored value answered | `always` (default) | `keep_more_confident` |",
        "|---|---|---|---|",
    ]
    for answer, stored, args in _CASES:
        cells = [decide(policy=p, **args).value for p in OVERWRITE_POLICIES]  # type: ignore[arg-type]
        lines.append(f"| {answer} | {stored} | {cells[0]} | {cells[1]} |")
    return lines
