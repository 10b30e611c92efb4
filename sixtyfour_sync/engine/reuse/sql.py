"""The answer store's SQL: which rows of a selection a stored answer answers, how many, and pruning."""

from __future__ import annotations

from typing import Any

from sixtyfour_sync.engine.rows.select import (
    HASH_COLUMN,
    KEY_HASH_COLUMN,
    KEY_ROWS_COLUMN,
    REASON_COLUMN,
    Selection,
)
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.types import TableRef

__all__ = [
    "ANSWER",
    "ANSWERED_AT",
    "ANSWER_TASK",
    "ANSWER_TIER",
    "REUSABLE_REASONS",
    "count_reusable_sql",
    "has_answers_sql",
    "prune_sql",
    "reusable_sql",
]

#: The reasons a row may take a stored answer for: it was never answered, its inputs or the question changed, or
#: its answer failed. Not ``stale`` (a ``max_age`` refresh asks for a newer answer than the one it has), nor
#: ``refresh`` (``--full-refresh`` / ``when: always`` ask again on purpose), nor the steps' own reasons.
REUSABLE_REASONS = ("new", "changed", "failed_retry")
#: The columns a reusable row carries besides its key, input hash and key hash.
ANSWER = "__sixtyfour_answer"
ANSWER_TASK = "__sixtyfour_answer_task"
ANSWERED_AT = "__sixtyfour_answered_at"
ANSWER_TIER = "__sixtyfour_answer_tier"


def _answers(adapter: Adapter, answers: TableRef, jobs: TableRef, max_age_seconds: int) -> str:
    """The stored answer per input hash of one question (``?``) answered within ``max_age_seconds``: the newest
    enriched one, else the newest; with the job's task, tier and time (the answers are the jobs' that merged them)."""
    q = adapter.quote
    x, j = "x", "j"
    age = adapter.age_seconds_sql(f"{j}.{q('merged_at')}")
    # an enriched answer first (a later failure does not take back what an earlier answer found), then the newest
    enriched = f"CASE WHEN {x}.{q('answer')} IS NOT NULL THEN 0 ELSE 1 END"
    order = f"{enriched}, {j}.{q('merged_at')} DESC, {x}.{q('job_id')} DESC"
    return (
        f"SELECT {x}.{q('input_hash')}, {x}.{q('answer')}, {j}.{q('task_id')}, {j}.{q('tier')}, "
        f"{j}.{q('merged_at')} AS {q('answered_at')}, "
        f"ROW_NUMBER() OVER (PARTITION BY {x}.{q('input_hash')} ORDER BY {order}) AS {q('rn')} "
        f"FROM {adapter.table_sql(answers)} {x} "
        f"JOIN {adapter.table_sql(jobs)} {j} ON {j}.{q('job_id')} = {x}.{q('job_id')} "
        f"WHERE {j}.{q('question')} = ? AND {age} <= {int(max_age_seconds)}"
    )


def reusable_sql(
    adapter: Adapter, selection: Selection, answers: TableRef, jobs: TableRef, *, question: str, max_age_seconds: int
) -> tuple[str, list[Any]]:
    """The selection's rows a stored answer answers, with that answer: the key, input hash and key hash, then the
    answer (JSON text), the task that answered it, its tier and when. Only rows with a good key (the selection's
    NULL and repeated keys are never sent, and never answered) and a reason in :data:`REUSABLE_REASONS`. A failed
    answer is an answer: a new key asking a question the API could not answer takes ``failed`` (asked again after
    ``refresh.retry_failed_after``, as the key that asked it would be), and a row due that retry takes only an
    enriched one."""
    q = adapter.quote
    s, a = "s", "a"
    keys = [*selection.key]
    cols = ", ".join(f"{s}.{q(c)}" for c in [*keys, HASH_COLUMN, KEY_HASH_COLUMN])
    reasons = ", ".join(f"'{r}'" for r in REUSABLE_REASONS)
    good = " AND ".join(
        [
            f"{s}.{q(REASON_COLUMN)} IN ({reasons})",
            # a failed row due a retry asks again unless the store has what it lacks: an enriched answer
            f"({s}.{q(REASON_COLUMN)} <> 'failed_retry' OR {a}.{q('answer')} IS NOT NULL)",
            f"{s}.{q(KEY_ROWS_COLUMN)} = 1",
            *(f"{s}.{q(k)} IS NOT NULL" for k in keys),
        ]
    )
    sql = (
        f"SELECT {cols}, {a}.{q('answer')} AS {q(ANSWER)}, {a}.{q('task_id')} AS {q(ANSWER_TASK)}, "
        f"{a}.{q('tier')} AS {q(ANSWER_TIER)}, {a}.{q('answered_at')} AS {q(ANSWERED_AT)} "
        f"FROM ({selection.sql}) {adapter.subquery_alias(s)} "
        f"JOIN ({_answers(adapter, answers, jobs, max_age_seconds)}) {adapter.subquery_alias(a)} "
        f"ON {a}.{q('input_hash')} = {s}.{q(HASH_COLUMN)} AND {a}.{q('rn')} = 1 WHERE {good}"
    )
    return sql, [*selection.params, question]


def count_reusable_sql(
    adapter: Adapter, selection: Selection, answers: TableRef, jobs: TableRef, *, question: str, max_age_seconds: int
) -> tuple[str, list[Any]]:
    """``SELECT`` the rows a stored answer answers and the questions (distinct input hashes) among them."""
    q = adapter.quote
    sql, params = reusable_sql(adapter, selection, answers, jobs, question=question, max_age_seconds=max_age_seconds)
    return (
        f"SELECT COUNT(*), COUNT(DISTINCT r.{q(HASH_COLUMN)}) FROM ({sql}) {adapter.subquery_alias('r')}",
        params,
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
