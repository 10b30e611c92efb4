"""Spending limits, decided before every submission (pure arithmetic, no I/O).

A budget is never enforced by cancelling a paid job. Under a budget, the first file of a run (per endpoint and
tier) is a single row unless the API has quoted the price in this run already: a price the ledger learned or the
config gives may have moved since. The row's answer is kept and merged, and its estimate is the price. After
that, each file is fitted with the price the API quoted for the file before it (the next file waits for that
estimate), and a file that does not fit is cut to the rows that do, so a budget is never exceeded by more than
one row's price (at the price quoted when the file is sent).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

__all__ = ["Budget", "Fit", "fit_file"]


@dataclass
class Budget:
    """A spending limit shared by the syncs of a run (``--max-cost-cents``), in cents."""

    limit_cents: float | None
    spent_cents: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def room(self) -> float | None:
        """Cents left (None: no limit)."""
        with self.lock:
            return None if self.limit_cents is None else self.limit_cents - self.spent_cents

    def spend(self, cents: float) -> None:
        """Hold (or, negative, give back) cents."""
        with self.lock:
            self.spent_cents += cents


@dataclass(frozen=True)
class Fit:
    """What to do with the next file: send ``rows`` of it (all, some, or one to learn the price), or none."""

    rows: int
    learn_price: bool = False
    reason: str | None = None

    @property
    def stop(self) -> bool:
        """Nothing can be sent within the budget."""
        return self.rows == 0


def fit_file(rows: int, room: float | None, price: float | None) -> Fit:
    """How many of a file's ``rows`` to send with ``room`` cents left at ``price`` cents per row.

    ``room`` None means no budget; ``price`` None means the price is not known yet.
    """
    if room is None:
        return Fit(rows)
    if price is None or price <= 0:
        # The first file of a run without a price the API quoted in it: one row to learn the price (at most one
        # row over budget). A price of 0 is no price: it never switches the budget off.
        return Fit(1, learn_price=True) if room > 0 else Fit(0, reason="the budget is used up")
    fits = math.floor((room + 1e-9) / price)
    if fits <= 0:
        return Fit(0, reason=f"the budget left ({room:,.2f} cents) does not cover one row at {price:g} cents")
    return Fit(min(rows, fits))
