"""A stratified sample of enriched rows to label: by tier and confidence band, the same rows every time.

Each row gets a stratum (its tier and the band of its lowest field confidence) and a rank (a hash of its key
and the seed); the sample takes rows round-robin over the strata, lowest rank first, so a rare tier or band is
as present as a common one. Streaming: at most ``n`` rows per stratum are kept in memory.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sixtyfour_sync.evaluate.score import BAND_ORDER, band_of

__all__ = ["Sampler", "row_band"]


def row_band(confidences: Sequence[Any]) -> str:
    """A row's band: that of its lowest field confidence (``none`` without any)."""
    present = [c for c in confidences if c is not None]
    return band_of(min(present)) if present else band_of(None)


def _rank(key: Sequence[Any], seed: int) -> bytes:
    text = "\x1f".join("" if k is None else str(k) for k in key)
    return hashlib.blake2b(f"{seed}\x1e{text}".encode(), digest_size=8).digest()


@dataclass
class Sampler:
    """Feed rows (key, tier, confidences, the row itself) with :meth:`add`; :meth:`pick` the sample."""

    n: int
    seed: int = 0
    _strata: dict[tuple[str, str], list[tuple[bytes, int, Any]]] = field(default_factory=dict)
    _seen: int = 0

    def add(self, key: Sequence[Any], tier: str | None, confidences: Sequence[Any], row: Any) -> None:
        """Consider one row."""
        stratum = (tier or "unknown", row_band(confidences))
        heap = self._strata.setdefault(stratum, [])
        self._seen += 1
        # a max-heap of the n lowest ranks (negated bytes are not orderable: invert them instead)
        entry = (bytes(255 - b for b in _rank(key, self.seed)), self._seen, row)
        if len(heap) < self.n:
            heapq.heappush(heap, entry)
        elif entry[0] > heap[0][0]:
            heapq.heapreplace(heap, entry)

    def add_all(self, rows: Iterable[tuple[Sequence[Any], str | None, Sequence[Any], Any]]) -> None:
        """:meth:`add` each row."""
        for row in rows:
            self.add(*row)

    def strata(self) -> dict[tuple[str, str], int]:
        """The rows kept per stratum (at most ``n`` each)."""
        return {k: len(v) for k, v in self._strata.items()}

    def pick(self) -> list[tuple[tuple[str, str], Any]]:
        """Up to ``n`` rows, round-robin over the strata (tier, then band order), lowest rank first."""
        ordered = {
            k: [e[2] for e in sorted(v, key=lambda e: e[0], reverse=True)]
            for k, v in sorted(self._strata.items(), key=lambda kv: (kv[0][0], BAND_ORDER.index(kv[0][1])))
        }
        out: list[tuple[tuple[str, str], Any]] = []
        depth = 0
        while len(out) < self.n and any(depth < len(rows) for rows in ordered.values()):
            for stratum, rows in ordered.items():
                if depth < len(rows) and len(out) < self.n:
                    out.append((stratum, rows[depth]))
            depth += 1
        return out
