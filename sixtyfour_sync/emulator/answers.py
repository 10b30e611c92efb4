"""Wrong answers: the emulator's ground truth and its tier-dependent, confidence-calibrated error.

Off by default (``EmulatorSettings.answer_errors``): every tier then answers the values of its own seed, as it
always did. On, each input row has one true value per field, the same at every tier: the value generated with
the emulator's ``seed`` (:func:`sixtyfour_sync.emulator.truth.truth_rows` returns it). At each tier a
deterministic share of the answered fields (``tier_error_rates``) is wrong: a value that differs from the
truth. The confidence the field returns is calibrated: a right answer draws it from 50-99, a wrong one from
35-79, so every answer at 80 or above is right and a ``min_confidence`` threshold really raises precision.

A wrong value is the field's value under another seed; where that happens to equal the truth (a small
vocabulary, or a value the inputs fix, such as an email built from the name and the domain), a second seed,
then a plain alteration: an email's mailbox becomes ``contact`` (``info`` when it was ``contact``), a URL's
host gets ``old-`` in front, any other text `` (former)`` at the end, a number moves by a quarter plus one, a
boolean flips. Enums, lists and objects keep the second seed's value, which may equal the truth (then the
answer is right after all: it is scored as it is).

Everything is computed two ways with identical results, like the rest of the generator: vectorised over
Arrow arrays (output files) and per row in plain Python (``reference_output``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.emulator.expressions import Num
from sixtyfour_sync.emulator.hashing import MASK64, U64, mix64, salted, salted_vec

__all__ = [
    "RIGHT_CONFIDENCE",
    "WRONG_CONFIDENCE",
    "AnswerErrors",
    "alter_py",
    "alter_vec",
    "confidence_num",
    "wrong_mask_py",
    "wrong_mask_vec",
    "wrong_row_hash",
    "wrong_row_hashes",
]

#: The confidence ranges of right and wrong answers (inclusive).
RIGHT_CONFIDENCE = (50, 99)
WRONG_CONFIDENCE = (35, 79)

_WRONG_SALT = 0xBAD
_ALT_SALTS = (0xA17, 0xA18)


@dataclass(frozen=True)
class AnswerErrors:
    """How one tier errs: the truth's seed, the tier's own seed and the share of wrong answers."""

    truth_seed: int
    tier_seed: int
    error_rate: float

    @property
    def threshold(self) -> int:
        """A 53-bit hash below this is a wrong answer."""
        return int(max(0.0, min(1.0, self.error_rate)) * (1 << 53))

    @property
    def tag(self) -> int:
        """What sets this tier's wrong values apart from another tier's."""
        return mix64(self.tier_seed & MASK64)


def wrong_row_hashes(truth_rows: U64, errors: AnswerErrors, attempt: int) -> U64:
    """The row hashes a wrong value is drawn from (attempt 0 or 1), derived from the truth's."""
    return salted_vec(truth_rows ^ np.uint64(errors.tag), _ALT_SALTS[attempt])


def wrong_row_hash(truth_row: int, errors: AnswerErrors, attempt: int) -> int:
    """Scalar :func:`wrong_row_hashes`."""
    return salted(truth_row ^ errors.tag, _ALT_SALTS[attempt])


def wrong_mask_vec(field_hashes: U64, errors: AnswerErrors) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Which rows answer this field wrong (from the tier's per-field row hashes)."""
    out: np.ndarray[Any, np.dtype[np.bool_]] = (salted_vec(field_hashes, _WRONG_SALT) >> np.uint64(11)) < np.uint64(
        errors.threshold
    )
    return out


def wrong_mask_py(field_hash: int, errors: AnswerErrors) -> bool:
    """Scalar :func:`wrong_mask_vec`."""
    return (salted(field_hash, _WRONG_SALT) >> 11) < errors.threshold


def confidence_num(base: Num, wrong: bool) -> Num:
    """The confidence of a right or a wrong answer: the field's own salt, the calibrated range."""
    lo, hi = WRONG_CONFIDENCE if wrong else RIGHT_CONFIDENCE
    return Num(lo, hi, base.salt)


_MAILBOX = re.compile(r"^[^@]*@")
_URL_HOST = re.compile(r"^([a-z]+://)(www\.)?")


def alter_py(kind: str, value: Any) -> Any:
    """A value that is not ``value`` (see the module docstring); enums, lists and objects are kept."""
    if value is None:
        return None
    if kind == "bool":
        return not value
    if kind == "int":
        return int(value) + abs(int(value)) // 4 + 1
    if kind == "float":
        return float(value) * 1.25 + 1.0
    if kind != "str":
        return value
    text = str(value)
    if "@" in text:
        box = "info@" if text.startswith("contact@") else "contact@"
        return _MAILBOX.sub(box, text, count=1)
    if _URL_HOST.match(text):
        return _URL_HOST.sub(r"\1\2old-", text, count=1)
    return text + " (former)"


def alter_vec(kind: str, values: pa.Array) -> pa.Array:
    """Vectorised :func:`alter_py`."""
    if kind == "bool":
        return pc.invert(values)
    if kind == "int":
        return pc.add(pc.add(values, pc.divide(pc.abs(values), 4)), 1)
    if kind == "float":
        return pc.add(pc.multiply(values, 1.25), 1.0)
    if kind != "str":
        return values
    at = pc.fill_null(pc.match_substring(values, "@"), False)
    contact = pc.fill_null(pc.starts_with(values, "contact@"), False)
    mailbox = pc.if_else(
        contact,
        pc.replace_substring_regex(values, r"^[^@]*@", "info@", max_replacements=1),
        pc.replace_substring_regex(values, r"^[^@]*@", "contact@", max_replacements=1),
    )
    url = pc.fill_null(pc.match_substring_regex(values, r"^[a-z]+://"), False)
    hosted = pc.replace_substring_regex(values, r"^([a-z]+://)(www\.)?", r"\1\2old-", max_replacements=1)
    former = pc.binary_join_element_wise(values, pa.scalar(" (former)"), "")
    return pc.if_else(at, mailbox, pc.if_else(url, hosted, former))


def choose_wrong_vec(kind: str, truth: pa.Array, draws: Sequence[Callable[[], pa.Array]]) -> pa.Array:
    """Per row, the first drawn value that differs from the truth, else the truth altered."""
    out = alter_vec(kind, truth)
    # Walk the draws backwards so the first one that differs wins.
    for draw in reversed(draws):
        value = draw()
        differs = pc.fill_null(pc.not_equal(value, truth), True)
        out = pc.if_else(differs, value, out)
    return out
