"""Choosing the rows a run sends, in SQL, inside the warehouse.

The source (a table, a query or a dbt model, with its ``where``) is read once. Each row gets a hash of its
input columns and of its key, computed by the warehouse, a count of the rows that share its key (a NULL or
duplicated key is reported and never sent), and is joined to the target's bookkeeping columns. Only the
rows that need work come back (and those with a bad key, to be counted), labelled with the reason:

- ``new``: never enriched (no target row, or a target row the sync never wrote);
- ``changed``: the input hash or the spec hash differs from what was enriched;
- ``stale``: enriched longer ago than ``max_age``;
- ``failed_retry``: the API could not enrich it, and ``retry_failed_after`` has passed;
- ``refresh``: ``when: always`` or ``--full-refresh``;
- ``escalate``: a tier-escalation step (``escalate:``): the row's current answer came from the step before,
  for this question and these inputs, and it failed, left a requested field empty, or was below
  ``min_confidence`` (only these rows are selected in that step).

Which reasons count depends on ``refresh.when``: ``missing`` sends new rows (and failed retries); ``changed``
(the default) adds changed rows, and stale ones when ``max_age`` is set; ``stale`` sends new and stale rows;
``always`` sends everything. A row the API could not enrich is not paid for again for the same question until
``retry_failed_after`` has passed (never, when it is not set); a changed question is a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.config.models import SyncSpec
from sixtyfour_sync.engine.ledger.rowkeys import key_prefix
from sixtyfour_sync.engine.rows.files import ASKS
from sixtyfour_sync.warehouse.adapter import Adapter
from sixtyfour_sync.warehouse.keytypes import KeyType, join_key_sql, transport_sql
from sixtyfour_sync.warehouse.sql.identifiers import strip_sql
from sixtyfour_sync.warehouse.types import LogicalType, TableRef

__all__ = [
    "ANSWER",
    "ANSWERED_AT",
    "ANSWER_JOB",
    "ANSWER_TASK",
    "ANSWER_TIER",
    "ASKS_COLUMN",
    "DELIBERATE",
    "EXISTS_COLUMN",
    "HASH_COLUMN",
    "KEY_HASH_COLUMN",
    "KEY_PREFIX_COLUMN",
    "KEY_ROWS_COLUMN",
    "REASONS",
    "REASON_COLUMN",
    "REUSABLE_REASONS",
    "STORED_COLUMNS",
    "Selection",
    "answered_at_sql",
    "bucket_count",
    "bucket_predicate",
    "build_selection",
    "count_by_reason_sql",
    "count_questions_sql",
    "drop_held",
    "duplicated_keys_sql",
    "inputs_repeat_sql",
    "keep_keys",
    "questions_may_repeat",
    "rebuild_sql",
    "source_relation_sql",
    "stamp_counts_sql",
    "weak_answer_sql",
]

HASH_COLUMN = "_sixtyfour_input_hash"
KEY_HASH_COLUMN = "_sixtyfour_key_hash"
#: What a file sent keeps of each row's key hash: the prefix the ledger stores (rowkeys.key_prefix), so a row
#: the target refuses can be held by it.
KEY_PREFIX_COLUMN = "_sixtyfour_key_prefix"
REASON_COLUMN = "_sixtyfour_reason"
#: Whether the target already has a row for the key (a file of rows it has none of is inserted, not upserted).
EXISTS_COLUMN = "_sixtyfour_in_target"
#: How many source rows share the key (a NULL or duplicated key is never sent).
KEY_ROWS_COLUMN = "_sixtyfour_key_rows"
#: Whether a row asks its question: true for the first row (in key order) of the selected rows that share their
#: inputs, false for the others, which it answers (one question is paid once). The selection orders the rows so
#: that those sharing inputs come together, the first first; the reader sets the flag (engine/rows/extract.py).
ASKS_COLUMN = ASKS
REASONS = ("new", "changed", "stale", "failed_retry", "refresh", "escalate", "new_fields")
#: The reasons a row may take a stored answer for (the answer store, engine/reuse/): it was never answered, its
#: inputs or the question changed, or its answer failed (then only an enriched answer). Not ``stale`` (a
#: ``max_age`` refresh asks for a newer answer than the one it has), nor ``refresh`` (``--full-refresh`` /
#: ``when: always`` ask again on purpose), nor the steps' own reasons.
REUSABLE_REASONS = ("new", "changed", "failed_retry")
#: What a selection joined to the answer store (``build_selection(stored=...)``) carries of the stored answer a
#: row takes: the answer (NULL: the API could not enrich it), the task and job that got it, its tier and time. A
#: row without one has them all NULL.
ANSWER = "__sixtyfour_answer"
ANSWER_TASK = "__sixtyfour_answer_task"
ANSWER_JOB = "__sixtyfour_answer_job"
ANSWER_TIER = "__sixtyfour_answer_tier"
ANSWERED_AT = "__sixtyfour_answered_at"
STORED_COLUMNS = (ANSWER, ANSWER_TASK, ANSWER_JOB, ANSWER_TIER, ANSWERED_AT)
#: Reasons that ask a question again on purpose: their files get a run-specific Idempotency-Key.
DELIBERATE = frozenset({"stale", "failed_retry", "refresh"})


@dataclass(frozen=True)
class Selection:
    """The SQL of a selection and what it returns.

    ``sql`` returns the key columns, the inputs, the input hash (carried in the file, not researched), the key
    hash, the reason, whether the target already has a row for the key, and how many source rows share the key.
    Rows come in key order, except that the rows sharing their inputs follow the first of them (which asks for
    them all). It returns every row that needs work, and also every row whose key is NULL
    or duplicated (never sent: the reader drops and reports them), so one pass over the source both selects
    and checks keys. ``hashed_sql`` is the source with both hashes, before the join with the target, which
    a resume uses to rebuild a lost file by its key hashes. Parameters are :attr:`params`, in order.
    """

    sql: str
    key: list[str]
    inputs: list[str]
    hashed_sql: str = ""
    params: tuple[Any, ...] = ()
    #: The key columns handed over as text (``CAST({} AS ...)`` templates, see warehouse/keytypes.py).
    transport: tuple[tuple[str, str], ...] = ()

    @property
    def sent_columns(self) -> list[str]:
        """Columns written to the files: key, inputs, and the input hash (carried, not researched)."""
        return [*self.key, *self.inputs, HASH_COLUMN]


def source_relation_sql(adapter: Adapter, sync: SyncSpec, ref_table: TableRef | None = None) -> str:
    """``SELECT * FROM <table|(sql)|ref> WHERE <where>`` for the sync's source."""
    src = sync.source
    if src.sql:
        return adapter.source_sql(sql=src.sql, where=src.where)
    table = ref_table if src.ref else TableRef(src.table or "", src.schema_, src.database)
    if table is None:
        raise ValueError(f"sync {sync.name}: source.ref {src.ref!r} was not resolved to a table")
    return adapter.source_sql(table=table, where=src.where)


def bucket_predicate(adapter: Adapter, alias: str, key: Sequence[str], bucket: tuple[int, int] | None) -> str:
    """``hash(key) % n = b`` on ``alias``'s key, or "" (no buckets, or the dialect has no cheap hash)."""
    template = adapter.dialect.bucket_hash
    if bucket is None or template is None or bucket[1] <= 1:
        return ""
    b, n = bucket
    cols = ", ".join(f"{alias}.{adapter.quote(k, what='key column')}" for k in key)
    return f"({template.format(cols)} % {int(n)}) = {int(b)}"


def bucket_count(adapter: Adapter, source_rows: int, rows_per_bucket: int = 100_000) -> int:
    """How many buckets to read a source of ``source_rows`` rows in (1 where the dialect sorts it all)."""
    if adapter.dialect.bucket_hash is None or source_rows <= rows_per_bucket:
        return 1
    return -(-source_rows // rows_per_bucket)


def build_selection(
    adapter: Adapter,
    sync: SyncSpec,
    *,
    source_sql: str,
    inputs: Sequence[str],
    target: TableRef,
    target_columns: Mapping[str, LogicalType | str] | None,
    spec_hash: str,
    full_refresh: bool = False,
    bucket: tuple[int, int] | None = None,
    escalate_from: str | None = None,
    not_whole: Sequence[str] = (),
    failed_current: Sequence[str] = (),
    field_stamps: Sequence[str] | None = None,
    key_types: Mapping[str, KeyType] | None = None,
    group_questions: bool = True,
    probe: bool = False,
    stored: str | None = None,
) -> Selection:
    """The selection query for a sync (``target_columns`` None: the target table does not exist yet).

    ``key_types`` (the source key's types) make the join with an existing target compare like with like
    (a key an earlier version stored as text is compared with the source key's text) and hand over the keys
    carried as text (:func:`~sixtyfour_sync.warehouse.keytypes.transport_sql`).

    Rows that unfinished or held jobs own are left out by the reader (:func:`drop_held`), by key hash.
    ``bucket`` ``(b, n)`` restricts the selection to the rows whose inputs hash to bucket ``b`` of ``n``, so a
    big source is sorted a bucket at a time (see :func:`bucket_count`) and the rows sharing their inputs are in
    the same one. A key the source holds twice with other inputs can then fall in two buckets: the reader is
    told such keys (:func:`duplicated_keys_sql`).

    ``group_questions`` False (no two source rows share their inputs: :func:`inputs_repeat_sql`): the rows come
    in key order, and buckets are cut by key on both sides of the join, which costs less.

    ``probe``: the same rows, in the same order, in one pass that does not count rows per key (every row's
    ``_sixtyfour_key_rows`` is 1), for a source whose keys were checked unique (:func:`repeated_keys_sql`): a
    refresh that changes few rows reads the source once, as a plain diff would (engine/runner_submit.py). Only
    the rows selected are grouped and sorted, and the key hash is computed for them alone.

    ``stored``: the answer store's answers to the sync's question (engine/reuse/sql.py ``stored_answers_sql``):
    each row that may take one (:data:`REUSABLE_REASONS`, a good key) carries the best of them in
    :data:`STORED_COLUMNS`, in the same pass; the rows keep their order.
    """
    q = adapter.quote
    key = list(sync.source.key)
    extra = STORED_COLUMNS if stored is not None else ()
    asked = list(inputs)
    hashed, inputs = _hashed_sql(adapter, key, asked, source_sql=source_sql, bucket=bucket, by_inputs=group_questions)
    out_cols = ", ".join(f"s.{q(c)}" for c in [*key, *inputs, HASH_COLUMN, KEY_HASH_COLUMN, KEY_ROWS_COLUMN])
    transport = _transport(adapter, key, key_types)
    bad_key = " OR ".join([f"r.{q(KEY_ROWS_COLUMN)} <> 1", *(f"r.{q(k)} IS NULL" for k in key)])

    if target_columns is None and escalate_from is not None:
        target_columns = {}  # no target yet: nothing to escalate (every condition below is false)
    if target_columns is None:
        reason = "'refresh'" if (full_refresh or sync.refresh.when == "always") else "'new'"
        rows = (
            f"SELECT {out_cols}, {reason} AS {q(REASON_COLUMN)}, {adapter.dialect.false_literal} AS "
            f"{q(EXISTS_COLUMN)} FROM ({hashed}) {adapter.subquery_alias('s')}"
        )
        if stored is not None:
            rows = _with_stored(adapter, rows, key, inputs, stored)
        sql = _grouped_sql(adapter, rows, key, inputs, transport, where="", group=group_questions, extra=extra)
        return Selection(sql=sql, key=key, inputs=list(inputs), hashed_sql=hashed, transport=transport)

    col = _target_column(adapter, target_columns)
    first_key = col(key[0])
    spec_lit = "'" + spec_hash.replace("'", "''") + "'"
    reason = _reason_sql(
        adapter,
        sync,
        col,
        hash_sql=f"s.{q(HASH_COLUMN)}",
        first_key=first_key,
        spec_lit=spec_lit,
        full_refresh=full_refresh,
        escalate_from=escalate_from,
        not_whole=not_whole,
        failed_current=failed_current,
        field_stamps=field_stamps,
    )
    target_sql, on = _target_join(
        adapter, key, target, target_columns, col, key_types=key_types, bucket=None if group_questions else bucket
    )
    exists = f"({first_key} IS NOT NULL)" if first_key != "NULL" else adapter.dialect.false_literal
    unkeyed, _ = _hashed_sql(
        adapter,
        key,
        asked,
        source_sql=source_sql,
        bucket=bucket,
        key_rows=not probe,
        key_hash=False,
        by_inputs=group_questions,
    )
    joined_cols = ", ".join(f"s.{q(c)}" for c in [*key, *inputs, HASH_COLUMN, KEY_ROWS_COLUMN])
    joined = (
        f"SELECT {joined_cols}, {reason} AS {q(REASON_COLUMN)}, {exists} AS {q(EXISTS_COLUMN)} "
        f"FROM ({unkeyed}) {adapter.subquery_alias('s')} LEFT JOIN {target_sql} t ON {on}"
    )
    where = f"r.{q(REASON_COLUMN)} IS NOT NULL OR {bad_key}"
    # the key hash is computed for the rows the filter keeps, not for every source row
    kept = (
        f"SELECT {_keyed_columns(adapter, key, inputs, ())} FROM ({joined}) {adapter.subquery_alias('r')} WHERE {where}"
    )
    if stored is not None:
        kept = _with_stored(adapter, kept, key, inputs, stored)
    sql = _grouped_sql(adapter, kept, key, inputs, transport, where="", group=group_questions, extra=extra)
    return Selection(sql=sql, key=key, inputs=list(inputs), hashed_sql=hashed, transport=transport)


def _with_stored(adapter: Adapter, rows: str, key: Sequence[str], inputs: Sequence[str], stored: str) -> str:
    """``rows`` (the selected rows, with their key hash) each with the stored answer it takes, if any: joined by
    the input hash for a row with a good key and a reason in :data:`REUSABLE_REASONS` (a failed row due a retry
    only to an enriched answer); of several answers, an enriched one first (a later failure does not take back
    what an earlier answer found), then the newest."""
    q = adapter.quote
    k, a, m = "k", "a", "m"
    reasons = ", ".join(f"'{r}'" for r in REUSABLE_REASONS)
    eligible = " AND ".join(
        [
            f"{a}.{q('input_hash')} = {k}.{q(HASH_COLUMN)}",
            f"{k}.{q(REASON_COLUMN)} IN ({reasons})",
            f"({k}.{q(REASON_COLUMN)} <> 'failed_retry' OR {a}.{q('answer')} IS NOT NULL)",
            f"{k}.{q(KEY_ROWS_COLUMN)} = 1",
            *(f"{k}.{q(c)} IS NOT NULL" for c in key),
        ]
    )
    best = (
        f"CASE WHEN {a}.{q('answer')} IS NOT NULL THEN 0 ELSE 1 END, {a}.{q('answered_at')} DESC, "
        f"{a}.{q('job_id')} DESC"
    )
    carried = [*key, *inputs, HASH_COLUMN, KEY_ROWS_COLUMN, REASON_COLUMN, EXISTS_COLUMN, KEY_HASH_COLUMN]
    joined = (
        f"SELECT {', '.join(f'{k}.{q(c)}' for c in carried)}, {a}.{q('answer')} AS {q(ANSWER)}, "
        f"{a}.{q('task_id')} AS {q(ANSWER_TASK)}, {a}.{q('job_id')} AS {q(ANSWER_JOB)}, "
        f"{a}.{q('tier')} AS {q(ANSWER_TIER)}, {a}.{q('answered_at')} AS {q(ANSWERED_AT)}, "
        f"ROW_NUMBER() OVER (PARTITION BY {k}.{q(KEY_HASH_COLUMN)} ORDER BY {best}) AS {q('__sixtyfour_rn')} "
        f"FROM ({rows}) {adapter.subquery_alias(k)} LEFT JOIN ({stored}) {adapter.subquery_alias(a)} ON {eligible}"
    )
    # a row with no answer is one row (every row of a NULL or repeated key among them); of a row's answers, one
    out = ", ".join(f"{m}.{q(c)}" for c in [*carried, *STORED_COLUMNS])
    return (
        f"SELECT {out} FROM ({joined}) {adapter.subquery_alias(m)} "
        f"WHERE {m}.{q(ANSWER_JOB)} IS NULL OR {m}.{q('__sixtyfour_rn')} = 1"
    )


def repeated_keys_sql(adapter: Adapter, sync: SyncSpec, source_sql: str) -> str:
    """``SELECT COUNT(*)`` of the keys the source holds more than once (one GROUP BY over the key): 0 lets a
    selection skip counting rows per key (``probe``)."""
    q = adapter.quote
    key_cols = ", ".join(f"c.{q(k, what='key column')}" for k in sync.source.key)
    inner = strip_sql(source_sql, adapter.dialect.sqlglot)
    grouped = f"SELECT {key_cols} FROM ({inner}) {adapter.subquery_alias('c')} GROUP BY {key_cols} HAVING COUNT(*) > 1"
    return f"SELECT COUNT(*) FROM ({grouped}) {adapter.subquery_alias('d')}"


def _grouped_sql(
    adapter: Adapter,
    rows: str,
    key: list[str],
    inputs: Sequence[str],
    transport: Sequence[tuple[str, str]],
    *,
    where: str,
    group: bool = True,
    extra: Sequence[str] = (),
) -> str:
    """The selection's rows (``rows``, alias ``r``, filtered by ``where``) in the order files are written: by the
    first key of the rows sharing the row's inputs, then by key; with the ``extra`` columns ``rows`` carries.

    Rows with a good key are grouped by their input hash: the first of a group (in key order) asks the question,
    the others follow it and take its answer. A row with a NULL or duplicated key (never sent) is a group of its
    own key, so the rows of one key stay together, as the key checks read them. ``group`` False: key order.
    """
    q = adapter.quote
    columns = [*key, *inputs, HASH_COLUMN, KEY_HASH_COLUMN, KEY_ROWS_COLUMN, REASON_COLUMN, EXISTS_COLUMN, *extra]
    if not group:
        outer = _outer_columns(adapter, "r", columns, transport)
        order = ", ".join(f"r.{q(k)}" for k in key)
        filtered = f" WHERE {where}" if where else ""
        return f"SELECT {outer} FROM ({rows}) {adapter.subquery_alias('r')}{filtered} ORDER BY {order}"
    good = " AND ".join([f"r.{q(KEY_ROWS_COLUMN)} = 1", *(f"r.{q(k)} IS NOT NULL" for k in key)])
    question = f"CASE WHEN {good} THEN r.{q(HASH_COLUMN)} ELSE r.{q(KEY_HASH_COLUMN)} END"
    if adapter.dialect.groups_by_join and len(key) == 1:
        return _grouped_by_join_sql(adapter, rows, key[0], columns, transport, question=question, where=where)
    window = f"OVER (PARTITION BY {question} ORDER BY {', '.join(f'r.{q(k)}' for k in key)})"
    firsts = [f"__sixtyfour_first_{i}" for i in range(len(key))]
    grouped = (
        "SELECT r.*"
        + "".join(f", FIRST_VALUE(r.{q(k)}) {window} AS {q(f)}" for k, f in zip(key, firsts, strict=True))
        + f" FROM ({rows}) {adapter.subquery_alias('r')}"
        + (f" WHERE {where}" if where else "")
    )
    outer = _outer_columns(adapter, "g", columns, transport)
    order = ", ".join(f"g.{q(c)}" for c in [*firsts, *key])
    return f"SELECT {outer} FROM ({grouped}) {adapter.subquery_alias('g')} ORDER BY {order}"


def _grouped_by_join_sql(
    adapter: Adapter,
    rows: str,
    key: str,
    columns: Sequence[str],
    transport: Sequence[tuple[str, str]],
    *,
    question: str,
    where: str,
) -> str:
    """:func:`_grouped_sql`'s order for a one-column key, without the window: the rows are read once (a
    materialized CTE), the first key of each question is one ``MIN`` per question over the question and key
    alone, joined back, and the rows are sorted once by (first key, key). The window sorted every column of the
    rows by question; this hashes two. ``MIN`` skips NULL keys as the window's ``FIRST_VALUE`` (nulls last) did:
    a question of good keys has none, and the rows of a NULL key share one question of their own."""
    q = adapter.quote
    first, asked, firsts = "__sixtyfour_first_0", "__sixtyfour_question", "__sixtyfour_firsts"
    read = "__sixtyfour_rows"
    body = f"SELECT r.*, {question} AS {q(asked)} FROM ({rows}) {adapter.subquery_alias('r')}" + (
        f" WHERE {where}" if where else ""
    )
    grouped = (
        f"WITH {q(read)} AS MATERIALIZED ({body}), {q(firsts)} AS (SELECT f.{q(asked)}, MIN(f.{q(key)}) AS "
        f"{q(first)} FROM {q(read)} f GROUP BY f.{q(asked)}) SELECT r.*, m.{q(first)} FROM {q(read)} r JOIN "
        f"{q(firsts)} m ON r.{q(asked)} = m.{q(asked)}"
    )
    outer = _outer_columns(adapter, "g", columns, transport)
    return f"SELECT {outer} FROM ({grouped}) {adapter.subquery_alias('g')} ORDER BY g.{q(first)}, g.{q(key)}"


def _hashed_sql(
    adapter: Adapter,
    key: list[str],
    inputs: Sequence[str],
    *,
    source_sql: str,
    bucket: tuple[int, int] | None,
    key_rows: bool = True,
    key_hash: bool = True,
    by_inputs: bool = True,
) -> tuple[str, list[str]]:
    """The source's rows (of ``bucket`` when given) with their row hash, key hash and count of rows per key,
    and the inputs that travel beside the key (a key column that is also an input travels once, as the key)."""
    q = adapter.quote
    key_cols = ", ".join(f"c.{q(k, what='key column')}" for k in key)
    # A key column that is also an input travels once, under its own name: the file carries it for both.
    hashed_inputs = list(inputs)
    lower_key = {k.lower() for k in key}
    kept = [c for c in inputs if c.lower() not in lower_key]
    input_cols = "".join(f", c.{q(c, what='source column')}" for c in kept)
    row_hash = adapter.row_hash_sql(hashed_inputs or key, alias="c")
    key_hash_sql = adapter.row_hash_sql(key, alias="c")
    inner = strip_sql(source_sql, adapter.dialect.sqlglot)
    # by the inputs: the rows sharing them (one question) are read in the same bucket
    where_bucket = bucket_predicate(adapter, "c", (hashed_inputs or key) if by_inputs else key, bucket)
    hashed = (
        f"SELECT {key_cols}{input_cols}, {row_hash} AS {q(HASH_COLUMN)}, "
        + (f"{key_hash_sql} AS {q(KEY_HASH_COLUMN)}, " if key_hash else "")
        + (f"COUNT(*) OVER (PARTITION BY {key_cols})" if key_rows else "1")
        + f" AS {q(KEY_ROWS_COLUMN)} "
        f"FROM ({inner}) {adapter.subquery_alias('c')}" + (f" WHERE {where_bucket}" if where_bucket else "")
    )
    return hashed, kept


def _target_column(adapter: Adapter, target_columns: Mapping[str, LogicalType | str]) -> Callable[[str], str]:
    """How the selection names a column of the existing target (alias ``t``): ``NULL`` when it has none such."""

    def col(name: str) -> str:
        stored = adapter.find_column(target_columns, name)
        return "NULL" if stored is None else f"t.{adapter.quote_char}{stored}{adapter.quote_char}"

    return col


def _target_join(
    adapter: Adapter,
    key: list[str],
    target: TableRef,
    target_columns: Mapping[str, LogicalType | str],
    col: Callable[[str], str],
    *,
    key_types: Mapping[str, KeyType] | None,
    bucket: tuple[int, int] | None = None,
) -> tuple[str, str]:
    """The target's side of the selection's join (cut to the key ``bucket`` when given) and the join condition."""
    q = adapter.quote
    on = " AND ".join(
        f"t.{q(k)} = {key_join_sql(adapter, f's.{q(k)}', k, key_types, target_columns)}"
        if col(k) != "NULL"
        else "FALSE"
        for k in key
    )
    target_sql = adapter.table_sql(target)
    t_bucket = bucket_predicate(adapter, "t0", key, bucket)
    if t_bucket:  # the target's side of the join is cut to the same bucket, so each join stays small
        target_sql = f"(SELECT * FROM {target_sql} {adapter.subquery_alias('t0')} WHERE {t_bucket})"
    return target_sql, on


def _reason_sql(
    adapter: Adapter,
    sync: SyncSpec,
    col: Callable[[str], str],
    *,
    hash_sql: str,
    first_key: str,
    spec_lit: str,
    full_refresh: bool,
    escalate_from: str | None,
    not_whole: Sequence[str],
    failed_current: Sequence[str],
    field_stamps: Sequence[str] | None,
) -> str:
    """Why each joined row is selected (``new``, ``changed``, ``stale``, ``failed_retry``, ``refresh``,
    ``new_fields``, an escalation's reason), or NULL: one CASE over the target's bookkeeping columns."""
    status, at = col(sync.bookkeeping("status")), col(sync.bookkeeping("enriched_at"))
    in_hash, sp_hash = col(sync.bookkeeping("input_hash")), col(sync.bookkeeping("spec_hash"))
    is_new = f"({first_key} IS NULL OR {status} IS NULL)"
    stamp_changed = f"{sp_hash} <> {spec_lit}"
    if not_whole:  # enriched rows of these stamps lack only some fields (asked by a "new fields" step), or none
        stamp_changed = f"({stamp_changed} AND NOT ({status} = 'enriched' AND {sp_hash} IN ({_literals(not_whole)})))"
    if failed_current:  # failed rows that asked the question as it is now, but for fields since removed
        stamp_changed = (
            f"({stamp_changed} AND NOT ({status} = 'failed' AND {sp_hash} IN ({_literals(failed_current)})))"
        )
    changed = f"({in_hash} IS NULL OR {in_hash} <> {hash_sql} OR {sp_hash} IS NULL OR {stamp_changed})"

    def older_than(seconds: float) -> str:
        if at == "NULL":
            return "TRUE"
        return f"({at} IS NULL OR {adapter.age_seconds_sql(at)} > {int(seconds)})"

    refresh = sync.refresh
    retry = (
        f"({status} = 'failed' AND {older_than(refresh.retry_failed_after.total_seconds())})"
        if refresh.retry_failed_after is not None
        else "FALSE"
    )
    stale = (
        f"({status} = 'enriched' AND {older_than(refresh.max_age.total_seconds())})"
        if refresh.max_age is not None
        else "FALSE"
    )
    when = "always" if full_refresh else refresh.when
    cases = [f"WHEN {is_new} THEN 'new'"]
    if when in ("changed",):
        cases.append(f"WHEN {changed} THEN 'changed'")
    if when in ("changed", "stale"):
        cases.append(f"WHEN {stale} THEN 'stale'")
    cases.append(f"WHEN {retry} THEN 'failed_retry'")
    fallback = "'refresh'" if when == "always" else "NULL"
    reason = f"CASE {' '.join(cases)} ELSE {fallback} END"
    if field_stamps is not None:  # a "new fields" step: enriched rows of these stamps, inputs unchanged
        reason = (
            f"CASE WHEN {first_key} IS NOT NULL AND {status} = 'enriched' AND {sp_hash} IN "
            f"({_literals(field_stamps)}) AND {in_hash} = {hash_sql} THEN 'new_fields' ELSE NULL END"
            if field_stamps and first_key != "NULL"
            else "NULL"
        )
    if escalate_from is not None:  # an escalation step selects only the weak answers of the step before
        reason = _escalation_reason(
            sync, col, s_hash=hash_sql, spec_lit=spec_lit, previous=escalate_from, first_key=first_key
        )
    return reason


def key_join_sql(
    adapter: Adapter,
    expr: str,
    k: str,
    key_types: Mapping[str, KeyType] | None,
    target_columns: Mapping[str, LogicalType | str] | None,
) -> str:
    """The source side (``expr``) of a comparison with the target's key column ``k``: cast to what an existing
    target stores where it was written with another type (see ``warehouse.keytypes.join_key_sql``)."""
    if key_types is None or not target_columns:
        return expr
    stored = adapter.find_column(target_columns, k)
    return join_key_sql(
        expr,
        key_types.get(k),
        target_columns[stored] if stored is not None else None,
        text_type=adapter.dialect.text_type,
        double_type=adapter.dialect.type_name(LogicalType.DOUBLE),
    )


def _transport(
    adapter: Adapter, key: Sequence[str], key_types: Mapping[str, KeyType] | None
) -> tuple[tuple[str, str], ...]:
    if not key_types:
        return ()
    text = adapter.dialect.text_type
    return tuple(
        (k, transport_sql("{}", kt, adapter.dialect.types, text))
        for k in key
        if (kt := key_types.get(k)) is not None and kt.transport
    )


def _keyed_columns(
    adapter: Adapter, key: list[str], inputs: Sequence[str], transport: Sequence[tuple[str, str]]
) -> str:
    """The selection's columns over the joined rows (alias ``r``), the key hash computed there: for the rows the
    join's filter keeps, not for every source row."""
    q = adapter.quote
    columns = [*key, *inputs, HASH_COLUMN, KEY_ROWS_COLUMN, REASON_COLUMN, EXISTS_COLUMN]
    listed = _outer_columns(adapter, "r", columns, transport)
    if listed == "*":
        listed = ", ".join(f"r.{q(c)}" for c in columns)
    return f"{listed}, {adapter.row_hash_sql(key, alias='r')} AS {q(KEY_HASH_COLUMN)}"


def _outer_columns(adapter: Adapter, alias: str, columns: Sequence[str], transport: Sequence[tuple[str, str]]) -> str:
    """The columns by name, the keys carried as text rendered as such (``*`` for a selection without any)."""
    q = adapter.quote
    if not transport and alias == "r":
        return "*"
    as_text = dict(transport)
    return ", ".join(
        f"{as_text[c].format(f'{alias}.{q(c)}')} AS {q(c)}" if c in as_text else f"{alias}.{q(c)}" for c in columns
    )


def _literals(values: Sequence[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def stamp_counts_sql(adapter: Adapter, sync: SyncSpec, target: TableRef, target_columns: Mapping[str, Any]) -> str:
    """``SELECT status, stamp, COUNT(*)`` over the target's answered rows of this sync (one GROUP BY)."""

    def col(name: str) -> str:
        stored = adapter.find_column(target_columns, name)
        return "NULL" if stored is None else f"t.{adapter.quote_char}{stored}{adapter.quote_char}"

    sp_hash, status = col(sync.bookkeeping("spec_hash")), col(sync.bookkeeping("status"))
    if "NULL" in (sp_hash, status):
        return ""
    return (
        f"SELECT {status}, {sp_hash}, COUNT(*) FROM {adapter.table_sql(target)} t WHERE {status} IN "
        f"('enriched', 'failed') AND {sp_hash} IS NOT NULL GROUP BY {status}, {sp_hash}"
    )


def _escalation_reason(
    sync: SyncSpec,
    col: Any,
    *,
    s_hash: str,
    spec_lit: str,
    previous: str,
    first_key: str,
) -> str:
    """``'escalate'`` for a row whose current answer, from tier ``previous``, failed, left a field empty or
    was held back below min_confidence; NULL otherwise (rows not in the target are never escalated)."""
    if first_key == "NULL":
        return "NULL"
    in_hash = col(sync.bookkeeping("input_hash"))
    same = f"{first_key} IS NOT NULL AND {answered_at_sql(sync, col, previous, spec_lit)} AND {in_hash} = {s_hash}"
    return f"CASE WHEN {same} AND {weak_answer_sql(sync, col)} THEN 'escalate' ELSE NULL END"


def answered_at_sql(sync: SyncSpec, col: Any, tier: str, spec_lit: str) -> str:
    """A target row's current answer came from ``tier`` for this question (``col``: name -> column SQL)."""
    stored_tier, sp_hash = col(sync.bookkeeping("tier")), col(sync.bookkeeping("spec_hash"))
    prev = "'" + tier.replace("'", "''") + "'"
    base = "'" + sync.question_tier.replace("'", "''") + "'"
    answered_at = f"COALESCE({stored_tier}, {base})" if stored_tier != "NULL" else base
    return f"{answered_at} = {prev} AND {sp_hash} = {spec_lit}"


def weak_answer_sql(sync: SyncSpec, col: Any) -> str:
    """A target row's answer is weak: failed, a requested field empty, or a field held below min_confidence."""
    weak = [
        f"{col(sync.bookkeeping('status'))} = 'failed'",
        *(f"{col(sync.column_for(f))} IS NULL" for f in sync.struct),
    ]
    field_status = col(sync.bookkeeping("field_status"))
    if field_status != "NULL":
        weak.append(f"{field_status} LIKE '%low_confidence%'")
    return f"({' OR '.join(weak)})"


def rebuild_sql(adapter: Adapter, selection: Selection) -> str:
    """The source rows a lost file may be rebuilt from: the hashed source (good keys only), by key.

    Ordered by key, as the selection orders them, so an unchanged source gives the same file again; the
    reader keeps the rows whose key hash the job holds (:func:`keep_keys`).
    """
    q = adapter.quote
    cols = _outer_columns(
        adapter, "h", [*selection.key, *selection.inputs, HASH_COLUMN, KEY_HASH_COLUMN], selection.transport
    )
    order = ", ".join(f"h.{q(k)}" for k in selection.key)
    return (
        f"SELECT {cols} FROM ({selection.hashed_sql}) {adapter.subquery_alias('h')} "
        f"WHERE h.{q(KEY_ROWS_COLUMN)} = 1 ORDER BY {order}"
    )


def sent_rows(kept: pa.Table, key: Sequence[str]) -> pa.Table:
    """What a file sent, as the merge needs it: the key, the input hash and the key hash's stored prefix."""
    return kept.select([*key, HASH_COLUMN]).append_column(KEY_PREFIX_COLUMN, key_prefix(kept.column(KEY_HASH_COLUMN)))


def drop_held(batch: pa.RecordBatch, held: pa.Array | None) -> pa.RecordBatch:
    """``batch`` without the rows whose key a job still holds (``held``: stored key prefixes)."""
    if held is None or len(held) == 0 or batch.num_rows == 0:
        return batch
    mine = pc.is_in(key_prefix(batch.column(KEY_HASH_COLUMN)), value_set=held)
    return batch.filter(pc.invert(mine)) if pc.any(mine).as_py() else batch


def keep_keys(batch: pa.RecordBatch, keys: pa.Array) -> pa.RecordBatch:
    """``batch``'s rows whose key prefix is among ``keys``."""
    return batch.filter(pc.is_in(key_prefix(batch.column(KEY_HASH_COLUMN)), value_set=keys))


def questions_may_repeat(sync: SyncSpec, inputs: Sequence[str]) -> bool:
    """Whether two rows of the sync can ask the same question: not when the inputs hashed include a key column
    (or are the key), which tells every row apart."""
    lower_key = {k.lower() for k in sync.source.key}
    return bool(inputs) and not any(c.lower() in lower_key for c in inputs)


def inputs_repeat_sql(adapter: Adapter, inputs: Sequence[str], source_sql: str) -> str:
    """``SELECT`` how many source rows may repeat another's inputs, by the dialect's cheap hash (rows with
    distinct hashes have distinct inputs; 0: none does); "" where the dialect has no cheap hash."""
    template = adapter.dialect.repeat_hash or adapter.dialect.bucket_hash
    if template is None or not inputs:
        return ""
    cols = ", ".join(f"c.{adapter.quote(c, what='source column')}" for c in inputs)
    inner = strip_sql(source_sql, adapter.dialect.sqlglot)
    return f"SELECT COUNT(*) - COUNT(DISTINCT {template.format(cols)}) FROM ({inner}) {adapter.subquery_alias('c')}"


def duplicated_keys_sql(adapter: Adapter, selection: Selection, source_sql: str) -> str:
    """The key hashes the source holds more than once (one GROUP BY over the source), for a selection read in
    buckets: a key held twice with other inputs is in two buckets, where each counts it once."""
    q = adapter.quote
    cols = ", ".join(f"c.{q(k, what='key column')}" for k in selection.key)
    inner = strip_sql(source_sql, adapter.dialect.sqlglot)
    return (
        f"SELECT {adapter.row_hash_sql(selection.key, alias='c')} FROM ({inner}) {adapter.subquery_alias('c')} "
        f"GROUP BY {cols} HAVING COUNT(*) > 1"
    )


def count_questions_sql(adapter: Adapter, selection: Selection, limit: int | None = None) -> str:
    """``SELECT rows, questions`` over the rows a run would send (good keys only; at most ``limit``), for
    ``plan``: rows sharing their inputs ask one question, so a run pays for the questions, not the rows."""
    q = adapter.quote
    good = " AND ".join([f"x.{q(KEY_ROWS_COLUMN)} = 1", *(f"x.{q(k)} IS NOT NULL" for k in selection.key)])
    rows = (
        f"SELECT x.{q(KEY_HASH_COLUMN)}, x.{q(HASH_COLUMN)} FROM ({selection.sql}) {adapter.subquery_alias('x')} "
        f"WHERE {good}"
    )
    if limit is not None:
        rows = adapter.limit_sql(rows, limit)
    return (
        f"SELECT COUNT(DISTINCT y.{q(KEY_HASH_COLUMN)}), COUNT(DISTINCT y.{q(HASH_COLUMN)}) FROM ({rows}) "
        f"{adapter.subquery_alias('y')}"
    )


def count_by_reason_sql(adapter: Adapter, selection: Selection, limit: int | None = None) -> str:
    """``SELECT reason, count(*)`` over the rows a run would send (good keys only; at most ``limit``), for
    ``plan``. A key a target holds twice is counted once, as the run sends it once."""
    q = adapter.quote
    good = " AND ".join([f"x.{q(KEY_ROWS_COLUMN)} = 1", *(f"x.{q(k)} IS NOT NULL" for k in selection.key)])
    rows = (
        f"SELECT x.{q(REASON_COLUMN)}, x.{q(KEY_HASH_COLUMN)} FROM ({selection.sql}) {adapter.subquery_alias('x')} "
        f"WHERE {good}"
    )
    if limit is not None:
        rows = adapter.limit_sql(rows, limit)
    return (
        f"SELECT y.{q(REASON_COLUMN)}, COUNT(DISTINCT y.{q(KEY_HASH_COLUMN)}) FROM ({rows}) "
        f"{adapter.subquery_alias('y')} GROUP BY y.{q(REASON_COLUMN)}"
    )
