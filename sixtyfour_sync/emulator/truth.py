"""The ground truth of the emulator's synthetic data: the right answer of each field for each input row.

With ``EmulatorSettings.answer_errors`` on, every tier answers these values except its share of wrong ones
(:mod:`.answers`); a test or the demo writes a labels file from them and ``sixtyfour-sync evaluate`` scores the
answers against it. The truth depends on the feeding inputs, the field (name, type, description) and the
endpoint, and on the emulator's ``seed``: never on the tier.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sixtyfour_sync.emulator.generate import parse_struct, reference_output

__all__ = ["truth_rows"]


def truth_rows(
    struct: Mapping[str, Any] | None,
    rows: Iterable[Mapping[str, Any]],
    *,
    endpoint: str = "people",
    columns: Sequence[str] | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The true value of every struct field for each row, in order (a dict per row: field -> value).

    ``columns`` are the feeding inputs (as the sync sends them in ``columns``); ``seed`` the emulator's. Values
    are typed as the emulator's preview and :func:`reference_output` type them (lists and objects parsed).
    """
    names = [f.name for f in parse_struct(struct, endpoint)]
    out = reference_output(
        struct, rows, endpoint=endpoint, field_confidence=False, columns=columns, seed=seed, failure_rate=0.0
    )
    return [{n: r[n] for n in names} for r in out]
