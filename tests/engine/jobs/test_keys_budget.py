"""Idempotency-Keys that say exactly which question is asked, and budgets decided before every file."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from sixtyfour_sync.api.client import validate_idempotency_key
from sixtyfour_sync.engine.jobs.budget import fit_file
from sixtyfour_sync.engine.jobs.keys import idempotency_key, salt_for


def test_the_same_question_gets_the_same_key() -> None:
    assert idempotency_key("s", "spec", "content") == idempotency_key("s", "spec", "content")


def test_every_part_of_the_question_changes_the_key() -> None:
    base = idempotency_key("s", "spec", "content")
    assert idempotency_key("t", "spec", "content") != base
    assert idempotency_key("s", "spec2", "content") != base
    assert idempotency_key("s", "spec", "content2") != base
    assert idempotency_key("s", "spec", "content", salt_for(run_id="r1")) != base
    assert idempotency_key("s", "spec", "content", salt_for(after_job="j1")) != base
    assert idempotency_key("s", "spec", "content", salt_for(run_id="r1")) != idempotency_key(
        "s", "spec", "content", salt_for(run_id="r2")
    )


@given(
    name=st.text(min_size=1, max_size=300),
    spec=st.text(max_size=100),
    content=st.text(min_size=64, max_size=64, alphabet="0123456789abcdef"),
    salt=st.text(max_size=200),
)
def test_keys_are_valid_and_never_cut_the_distinguishing_part(name: str, spec: str, content: str, salt: str) -> None:
    key = idempotency_key(name, spec, content, salt)
    assert validate_idempotency_key(key) == key
    assert len(key) <= 255
    assert key != idempotency_key(name, spec, content, salt + "x")  # a long salt is not cut off


@given(rows=st.integers(1, 100_000), room=st.floats(0, 1e7), price=st.floats(0.01, 100))
def test_a_budget_is_never_exceeded_by_more_than_one_row(rows: int, room: float, price: float) -> None:
    fit = fit_file(rows, room, price)
    assert 0 <= fit.rows <= rows
    assert fit.rows * price <= room + 1e-6
    if fit.rows < rows:  # the next row would not have fitted
        assert (fit.rows + 1) * price > room - 1e-6
    assert fit.stop == (fit.rows == 0)


def test_an_unknown_price_sends_one_row_first() -> None:
    fit = fit_file(5000, 100.0, None)
    assert fit.rows == 1 and fit.learn_price
    assert fit_file(5000, 0.0, None).stop
    assert fit_file(5000, None, None).rows == 5000  # no budget: no need to learn first
    assert math.isclose(fit_file(10, 5.0, 2.0).rows, 2)


@given(n=st.integers(0, 3000))
def test_row_keys_pack_and_unpack(n: int) -> None:
    import pyarrow as pa

    from sixtyfour_sync.engine.ledger.rowkeys import KEY_PREFIX_CHARS, PART_CHARS, pack, unpack

    keys = pa.array([f"{i:016x}{i * 3:016x}" for i in range(n)])
    hashes = pa.array([f"{i * 7:032x}" for i in range(n)])
    parts = pack(keys, hashes)
    assert all(len(p) <= PART_CHARS for p in parts)
    table = unpack(parts)
    assert table.column("key").to_pylist() == [k[:KEY_PREFIX_CHARS] for k in keys.to_pylist()]
    assert table.column("input_hash").to_pylist() == hashes.to_pylist()
