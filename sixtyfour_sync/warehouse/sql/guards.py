"""The SQL of a :class:`~sixtyfour_sync.warehouse.types.Guard`: whether a staged value replaces, keeps or clears
a stored one, row by row (pure; every upsert and MERGE builder uses it, so every warehouse decides alike).

For an existing row (``s`` the staged row, ``t`` the stored one)::

    CASE WHEN s.when AND (NOT same OR t.nb IS NULL OR s.nb >= t.nb) THEN s.col   -- write
         WHEN s.clear AND NOT same THEN NULL                                      -- clear
         ELSE t.col END                                                           -- keep

where ``same`` is ``COALESCE(t.a = s.a AND ..., FALSE)`` over the guard's ``same`` columns (a NULL stored hash
is another question). Without ``same`` columns ``not_below`` always applies and the ``clear`` flag decides
alone. A new row gets ``CASE WHEN s.when THEN s.col END``.

Names reach these builders as a ``quote`` callable, so nothing here decides how a dialect spells an identifier.
"""

from __future__ import annotations

from collections.abc import Callable

from sixtyfour_sync.warehouse.types import Guard

__all__ = ["clear_condition", "insert_value", "same_question", "update_value", "write_condition"]

Quote = Callable[[str], str]


def same_question(guard: Guard, quote: Quote, s: str = "s", t: str = "t") -> str | None:
    """SQL true where the stored row answered the staged row's question; None when the guard has no ``same``."""
    if not guard.same:
        return None
    equal = " AND ".join(f"{t}.{quote(c)} = {s}.{quote(c)}" for c in guard.same)
    return f"COALESCE({equal}, FALSE)"


def write_condition(guard: Guard, quote: Quote, s: str = "s", t: str = "t") -> str:
    """SQL true where the staged value replaces the stored one."""
    cond = f"{s}.{quote(guard.when)}"
    if guard.not_below is None:
        return cond
    nb = quote(guard.not_below)
    floor = f"{t}.{nb} IS NULL OR {s}.{nb} >= {t}.{nb}"
    same = same_question(guard, quote, s, t)
    if same is not None:
        floor = f"NOT {same} OR {floor}"
    return f"{cond} AND ({floor})"


def clear_condition(guard: Guard, quote: Quote, s: str = "s", t: str = "t") -> str | None:
    """SQL true where the stored value is cleared (it answered another question); None when it never is.

    Without ``same`` columns the ``clear`` flag decides alone (it was decided against the stored row already,
    as MySQL's stage does).
    """
    if guard.clear is None:
        return None
    same = same_question(guard, quote, s, t)
    flag = f"{s}.{quote(guard.clear)}"
    return flag if same is None else f"{flag} AND NOT {same}"


def update_value(guard: Guard | None, column: str, quote: Quote, value: str, s: str = "s", t: str = "t") -> str:
    """The value an existing row's ``column`` gets (``value``: the staged value's SQL, perhaps converted)."""
    if guard is None:
        return value
    stored = f"{t}.{quote(column)}"
    sql = f"CASE WHEN {write_condition(guard, quote, s, t)} THEN {value}"
    clear = clear_condition(guard, quote, s, t)
    if clear is not None:
        sql += f" WHEN {clear} THEN NULL"
    return f"{sql} ELSE {stored} END"


def insert_value(guard: Guard | None, quote: Quote, value: str, s: str = "s") -> str:
    """The value a new row gets: the staged one where ``when`` is true, else NULL."""
    if guard is None:
        return value
    return f"CASE WHEN {s}.{quote(guard.when)} THEN {value} END"
