"""The per-row price a plan uses, and where it came from."""

from __future__ import annotations

from dataclasses import dataclass

from sixtyfour_sync.config.models import SyncSpec
from sixtyfour_sync.engine.ledger.store import Ledger

__all__ = ["Price", "resolve_price"]


@dataclass(frozen=True)
class Price:
    """A per-row price and where it came from."""

    cents_per_row: float
    source: str


def resolve_price(spec: SyncSpec, ledger: Ledger | None, prices: dict[tuple[str, str], float] | None) -> Price | None:
    """The per-row price to plan with: the sync's ``budget.price_cents_per_row``, the project's ``prices:``,
    what the ledger learned for the endpoint and tier, or None when nothing is known."""
    if spec.budget.price_cents_per_row is not None and spec.question_tier == spec.tier:
        return Price(spec.budget.price_cents_per_row, "budget.price_cents_per_row")  # the sync's own tier only
    if prices and (spec.endpoint, spec.tier) in prices:
        return Price(prices[(spec.endpoint, spec.tier)], "prices: in the project")
    if ledger is not None and ledger.exists():
        learned = ledger.learned_price(spec.endpoint, spec.tier)
        if learned is not None:
            price, when = learned
            date = "" if when is None else f" on {str(when)[:10]}"
            return Price(price, f"learned from the API's estimate{date}")
    return None
