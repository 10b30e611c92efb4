"""The stratified sample: round-robin over (tier, band), the same rows for the same seed, bounded memory."""

from __future__ import annotations

from sixtyfour_sync.evaluate.sample import Sampler, row_band


def _rows() -> list[tuple[tuple[int], str, list[int | None], int]]:
    rows = []
    for i in range(1000):
        tier = "low" if i % 10 else "medium"  # 900 low, 100 medium
        conf = 95 if i % 100 else 40  # 990 high band, 10 low band
        rows.append(((i,), tier, [conf, None], i))
    return rows


def test_round_robin_over_strata() -> None:
    sampler = Sampler(20, seed=1)
    sampler.add_all(_rows())
    assert sampler.strata() == {("low", "90-100"): 20, ("medium", "90-100"): 20, ("medium", "0-49"): 10}
    picked = sampler.pick()
    assert len(picked) == 20
    counts: dict[tuple[str, str], int] = {}
    for stratum, _ in picked:
        counts[stratum] = counts.get(stratum, 0) + 1
    # rare strata are as present as common ones (low first, then medium by band order)
    assert counts == {("low", "90-100"): 7, ("medium", "0-49"): 7, ("medium", "90-100"): 6}
    assert len({row for _, row in picked}) == 20


def test_deterministic_per_seed_and_small_populations() -> None:
    def pick(seed: int) -> list[int]:
        s = Sampler(15, seed=seed)
        s.add_all(_rows())
        return [row for _, row in s.pick()]

    assert pick(3) == pick(3) and pick(3) != pick(4)
    small = Sampler(50)
    small.add_all(_rows()[:7])
    assert sorted(row for _, row in small.pick()) == list(range(7))
    assert row_band([None, None]) == "none" and row_band([85, 60, None]) == "50-69"
