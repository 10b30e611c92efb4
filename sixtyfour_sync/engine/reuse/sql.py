"""The answer store's SQL: which rows of a selection a stored answer answers, how many, and pruning."""

from __future__ import annotations

from sixtyfour_sync.engine.rows.select import ANSWER_JOB, HASH_COLUMN, Selection
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.types import TableRef

__all__ = [
    "count_reusable_sql",
    "has_answers_sql",
    "lookup_sql",
    "matched_sql",
    "prune_sql",
    "stored_answers_sql",
]


def stored_answers_sql(
    adapter: Adapter, answers: TableRef, jobs: TableRef, *, question: str, max_age_seconds: int
) -> str:
    """The stored answers to ``question`` merged within ``max_age_seconds``, with the job's task, tier and time (the
    answers are the jobs' that merged them): the relation a selection joins (``build_selection(stored=...)``)."""
    q = adapter.quote
    x, j = "x", "j"
    age = adapter.age_seconds_sql(f"{j}.{q('merged_at')}")
    asked = "'" + question.replace("'", "''") + "'"
    return (
        f"SELECT {x}.{q('input_hash')}, {x}.{q('answer')}, {x}.{q('job_id')}, {j}.{q('task_id')}, {j}.{q('tier')}, "
        f"{j}.{q('merged_at')} AS {q('answered_at')} FROM {adapter.table_sql(answers)} {x} "
        f"JOIN {adapter.table_sql(jobs)} {j} ON {j}.{q('job_id')} = {x}.{q('job_id')} "
        f"WHERE {j}.{q('question')} = {asked} AND {age} <= {int(max_age_seconds)}"
    )


def lookup_sql(adapter: Adapter, stored: str) -> str | None:
    """The stored answers (``stored``: :func:`stored_answers_sql`) to the input hashes of one parameter, a JSON
    array of text: every answer to each (the caller picks); None where the warehouse takes no such parameter."""
    values = adapter.dialect.json_text_values
    if values is None:
        return None
    q = adapter.quote
    return f"SELECT * FROM ({stored}) {adapter.subquery_alias('a')} WHERE a.{q('input_hash')} IN ({values})"


def matched_sql(adapter: Adapter, selection: Selection) -> str:
    """The rows of a selection joined to the store that take a stored answer."""
    q = adapter.quote
    return f"SELECT * FROM ({selection.sql}) {adapter.subquery_alias('s')} WHERE s.{q(ANSWER_JOB)} IS NOT NULL"


def count_reusable_sql(adapter: Adapter, selection: Selection) -> str:
    """``SELECT`` the rows of a selection joined to the store that take a stored answer, and the questions
    (distinct input hashes) among them."""
    q = adapter.quote
    return (
        f"SELECT COUNT(*), COUNT(DISTINCT r.{q(HASH_COLUMN)}) FROM ({matched_sql(adapter, selection)}) "
        f"{adapter.subquery_alias('r')}"
    )


def has_answers_sql(adapter: Adapter, jobs: TableRef) -> str:
    """``SELECT 1`` when a job's merge kept answers to the question (``?``): else there is nothing to look up."""
    q = adapter.quote
    return adapter.limit_sql(f"SELECT 1 FROM {adapter.table_sql(jobs)} WHERE {q('question')} = ?", 1)


def prune_sql(adapter: Adapter, answers: TableRef, jobs: TableRef, *, max_age_seconds: int) -> str:
    """``DELETE`` the stored answers merged longer than ``max_age_seconds`` ago (no sync would take them)."""
    q = adapter.quote
    age = adapter.age_seconds_sql(q("merged_at"))
    old = (
        f"SELECT {q('job_id')} FROM {adapter.table_sql(jobs)} WHERE {q('question')} IS NOT NULL "
        f"AND {age} > {int(max_age_seconds)}"
    )
    return f"DELETE FROM {adapter.table_sql(answers)} WHERE {q('job_id')} IN ({old})"
