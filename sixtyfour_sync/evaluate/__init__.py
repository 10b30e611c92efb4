"""Measure how right the answers are against what a team knows (``sixtyfour-sync evaluate``; docs/evaluate.md).

Pure parts, no I/O: :mod:`.normalise` (how an answer and a label compare), :mod:`.score` (RECON's correct /
wrong / missing, per field, tier and confidence band), :mod:`.threshold` (the ``min_confidence`` a target
precision needs), :mod:`.sample` (a stratified sample to label), :mod:`.labels` (reading a labels file, every
problem located). The command itself is :mod:`sixtyfour_sync.commands.evaluating`.
"""

from __future__ import annotations

from sixtyfour_sync.evaluate.normalise import Tolerances, normalise, same
from sixtyfour_sync.evaluate.score import BANDS, Counts, Outcome, Scored, band_of, score_answer, score_rows, tally
from sixtyfour_sync.evaluate.threshold import Suggestion, suggest_threshold

__all__ = [
    "BANDS",
    "Counts",
    "Outcome",
    "Scored",
    "Suggestion",
    "Tolerances",
    "band_of",
    "normalise",
    "same",
    "score_answer",
    "score_rows",
    "suggest_threshold",
    "tally",
]
