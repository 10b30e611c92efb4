"""Budgets hold when prices move: a price the ledger learned or the config gives is checked with a one-row first
file under a budget, every file is fitted with the price the API quoted for the one before it, and a price of 0
never switches a budget off. A budget is never exceeded by more than one row's price."""

from __future__ import annotations

from typing import Any

import pytest

from sixtyfour_sync import commands as api
from sixtyfour_sync.emulator import Emulator
from tests.e2e.conftest import E2EProject, run_cli
from tests.e2e.warehouses import Warehouse, setup_leads


def _run(project: E2EProject, **kw: Any) -> api.RunResult:
    return api.run(project.dir, api_key=project.api_key, api_url=project.url, env=project.env, **kw)


def _charged(emu: Emulator) -> int:
    return sum(j.estimate_cents for j in emu.jobs.values())


def _learn(project: E2EProject, wh: Warehouse, cents: int) -> None:
    """A first run at ``cents`` per row, so the ledger learns that price."""
    project.emulator.settings.prices_cents["low"] = cents  # type: ignore[index]
    setup_leads(wh, 5)
    assert _run(project).exit_code == 0
    learned = wh.query("SELECT price_cents_per_row FROM {t:_sixtyfour_sync_prices}")
    assert learned == [(float(cents),)]


@pytest.mark.parametrize("known", ["learned", "configured"])
def test_a_price_that_rose_never_overruns_the_budget(project: E2EProject, wh: Warehouse, known: str) -> None:
    if known == "learned":
        _learn(project, wh, 2)
        extra = "budget:\n  max_cost_cents: 200\n"
    else:
        extra = "budget:\n  max_cost_cents: 200\n  price_cents_per_row: 2\n"
    project.write_model(chunk_rows=100, extra=extra)
    setup_leads(wh, 305)
    before = _charged(project.emulator)
    project.emulator.settings.prices_cents["low"] = 20  # type: ignore[index]  # the API's price moved
    result = _run(project)
    s = result.syncs[0]
    spent = _charged(project.emulator) - before
    assert spent <= 200 + 20, spent  # at most one row's price over
    assert s.status == "budget_reached" and result.exit_code == 0  # a cap doing its job: a warning
    assert [j.row_count for j in project.emulator.jobs.values()][-2:] == [1, 9]  # the probe, then what fits
    assert any("20 cents per row" in w for w in s.warnings)  # the stop message quotes the price now quoted


def test_a_price_of_zero_never_switches_the_budget_off(project: E2EProject, wh: Warehouse) -> None:
    _learn(project, wh, 0)
    project.write_model(chunk_rows=100, extra="budget:\n  max_cost_cents: 100\n")
    setup_leads(wh, 205)
    before = _charged(project.emulator)
    project.emulator.settings.prices_cents["low"] = 10  # type: ignore[index]
    result = _run(project)
    assert _charged(project.emulator) - before <= 100 + 10
    assert result.syncs[0].status == "budget_reached"


class _RaiseAfter(api.Reporter):
    """Raise the API's price once ``n`` files were submitted."""

    def __init__(self, emu: Emulator, n: int, cents: int) -> None:
        self.emu, self.n, self.cents, self.seen = emu, n, cents, 0

    def on(self, event_name: str, sync: str, **data: Any) -> None:
        if event_name == "submitted":
            self.seen += 1
            if self.seen == self.n:
                self.emu.settings.prices_cents["low"] = self.cents  # type: ignore[index]


def test_a_price_that_moves_within_a_run_refits_the_files_left(project: E2EProject, wh: Warehouse) -> None:
    project.emulator.settings.prices_cents["low"] = 2  # type: ignore[index]
    project.write_model(chunk_rows=50, extra="budget:\n  max_cost_cents: 600\n")
    setup_leads(wh, 400)
    result = _run(project, reporter=_RaiseAfter(project.emulator, 2, 10))
    spent = _charged(project.emulator)
    # 1 row + 50 rows at 2 cents (102), then every file is fitted with the price quoted for the one before:
    # the first file at 10 cents is the only one sent at a stale price
    assert spent <= 600 + 50 * (10 - 2), spent
    assert result.syncs[0].status == "budget_reached"
    out = run_cli(project, "status")
    assert out.returncode == 0
