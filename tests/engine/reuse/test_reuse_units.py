"""The answer store's pure parts: what makes two syncs' rows the same question, when a sync stores and takes
answers, an answer's round trip through the store (typed again exactly as a result file is), and the SQL that
finds the newest answer within reuse.max_age and prunes the old ones."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sixtyfour_sync.config.models import SyncSpec
from sixtyfour_sync.config.profiles import parse_target_config
from sixtyfour_sync.engine.ledger.store import Ledger
from sixtyfour_sync.engine.results.parse import parse_result
from sixtyfour_sync.engine.reuse.answers import answered_text, store_rows, with_answer_columns
from sixtyfour_sync.engine.reuse.question import question_id, stores_answers, takes_answers
from sixtyfour_sync.engine.reuse.sql import matched_sql, prune_sql, stored_answers_sql
from sixtyfour_sync.engine.rows.select import ANSWER, HASH_COLUMN, build_selection
from sixtyfour_sync.errors import ConfigError
from sixtyfour_sync.warehouse.duckdb import DuckDBAdapter
from sixtyfour_sync.warehouse.types import TableRef

STRUCT: dict[str, Any] = {
    "email": "Email",
    "employees": {"description": "Employees", "type": "int"},
    "revenue": {"description": "Revenue", "type": "float"},
    "public": {"description": "Listed", "type": "bool"},
    "tags": {"description": "Tags", "type": "list"},
    "address": {"description": "Address", "type": "object"},
}


def spec(**over: Any) -> SyncSpec:
    base: dict[str, Any] = {
        "name": "s",
        "endpoint": "people",
        "source": {"table": "src", "key": "id", "columns": ["name"]},
        "struct": STRUCT,
        "target": {"table": "out"},
        "field_confidence": True,
    }
    return SyncSpec.model_validate({**base, **over})


# --- the question ------------------------------------------------------------------------------------------------


def test_two_syncs_asking_the_same_of_the_same_columns_ask_one_question() -> None:
    a = spec()
    b = spec(name="other", source={"table": "contacts", "key": "cid"}, target={"table": "elsewhere", "prefix": "x_"})
    assert question_id(a, ["name"]) == question_id(b, ["name"])


@pytest.mark.parametrize(
    "change",
    [
        {"tier": "medium"},
        {"endpoint": "company", "tier": "low"},
        {"research_plan": "look harder"},
        {"field_confidence": False},
        {"struct": {**STRUCT, "email": "Work email"}},
        {"struct": {k: v for k, v in STRUCT.items() if k != "tags"}},
    ],
)
def test_anything_the_api_is_asked_makes_another_question(change: dict[str, Any]) -> None:
    assert question_id(spec(**change), ["name"]) != question_id(spec(), ["name"])


def test_other_input_columns_or_their_order_make_another_question() -> None:
    assert question_id(spec(), ["first", "last"]) != question_id(spec(), ["last", "first"])
    assert question_id(spec(), ["name"]) != question_id(spec(), ["full_name"])


def test_when_a_sync_stores_and_takes_answers() -> None:
    s = spec()
    assert stores_answers(s, own_pass=True) and takes_answers(s, own_pass=True, full_refresh=False)
    assert not takes_answers(s, own_pass=True, full_refresh=True)  # --full-refresh asks every row again
    assert not stores_answers(s, own_pass=False)  # an escalation tier asks another question
    assert not takes_answers(spec(refresh={"when": "always"}), own_pass=True, full_refresh=False)
    off = spec(reuse=False)
    assert not stores_answers(off, own_pass=True) and not takes_answers(off, own_pass=True, full_refresh=False)
    assert not stores_answers(s.only_fields(["email"]), own_pass=True)  # a "new fields" step answers part of it


def test_reuse_max_age_defaults_to_refresh_max_age_then_30_days() -> None:
    assert spec().reuse_max_age == timedelta(days=30)
    assert spec(refresh={"max_age": "7d"}).reuse_max_age == timedelta(days=7)
    assert spec(refresh={"max_age": "7d"}, reuse={"max_age": "12h"}).reuse_max_age == timedelta(hours=12)
    assert spec(reuse={"enabled": False}).reuse.enabled is False


def test_a_bad_reuse_setting_is_refused_by_name(tmp_path: Path) -> None:
    from sixtyfour_sync.config.loading import load_models

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "s.yml").write_text(
        "syncs:\n  - name: s\n    endpoint: people\n    source: {table: t, key: id}\n    struct: {email: Email}\n"
        "    target: {table: out}\n    reuse:\n      max_age: 0\n"
    )
    with pytest.raises(ConfigError) as err:
        load_models(tmp_path)
    text = str(err.value) + "".join(str(p) for p in err.value.problems)
    assert "reuse.max_age" in text and "s.yml" in text


# --- an answer's round trip --------------------------------------------------------------------------------------


def _typed_result() -> pa.Table:
    """Result rows as the parser types them: two enriched rows asking two questions, one failed row, and a copy."""
    return pa.table(
        {
            "id": [1, 2, 3, 4],
            "email": ["a@x.com", " spaced ", None, "a@x.com"],
            "employees": pa.array([12, None, None, 12], pa.int64()),
            "revenue": [0.1, 1e300, None, 0.1],
            "public": [True, False, None, True],
            "tags": ['["a", "b"]', "[]", None, '["a", "b"]'],
            "address": ['{"city": "Paris", "zip": null}', None, None, '{"city": "Paris", "zip": null}'],
            "email_confidence": pa.array([90, 40, None, 90], pa.int64()),
            **{f"{f}_confidence": pa.array([50, None, None, 50], pa.int64()) for f in STRUCT if f != "email"},
            "_sixtyfour_status": ["enriched", "enriched", "failed", "enriched"],
            "__sent_hash": ["h1", "h2", "h3", "h1"],
        }
    )


def test_every_answer_is_stored_with_the_fields_asked_and_nothing_else() -> None:
    out = answered_text(spec(), _typed_result(), "__sent_hash")
    got = dict(zip(out.column("input_hash").to_pylist(), out.column("answer").to_pylist(), strict=True))
    assert set(got) == {"h1", "h2", "h3"}
    assert got["h3"] is None  # the API returned the row and could not enrich it: an answer with no values
    import json

    values = json.loads(got["h1"])  # the struct's fields, then their confidences, each as its text
    assert len(values) == 2 * len(STRUCT) and values[:2] == ["a@x.com", "12"]


def test_a_stored_answer_is_typed_again_to_the_same_values() -> None:
    s = spec()
    result = _typed_result()
    stored = answered_text(s, result, "__sent_hash")
    rows = store_rows(stored, job_id="j")
    assert rows.num_rows == 4 and rows.column_names == ["job_id", "input_hash", "answer"]  # one per row answered
    # two new keys take them, as the store's SQL hands them over
    by_hash = dict(zip(stored.column("input_hash").to_pylist(), stored.column("answer").to_pylist(), strict=True))
    taking = pa.table({"id": [10, 11], HASH_COLUMN: ["h1", "h2"], ANSWER: [by_hash["h1"], by_hash["h2"]]})
    parsed = parse_result(
        with_answer_columns(s, taking, ["id"]), key_types={"id": pa.int64()}, struct=s.struct, field_confidence=True
    )
    got = parsed.table
    for column in [*STRUCT, *(f"{f}_confidence" for f in STRUCT), "_sixtyfour_status"]:
        assert got.column(column).to_pylist() == result.column(column).slice(0, 2).to_pylist(), column


def test_a_failed_answer_taken_is_a_failed_row_again() -> None:
    s = spec()
    stored = answered_text(s, _typed_result().slice(2, 1), "__sent_hash")  # the failed row only
    assert stored.column("answer").to_pylist() == [None]
    taking = pa.table({"id": [30], HASH_COLUMN: ["h3"], ANSWER: stored.column("answer")})
    parsed = parse_result(
        with_answer_columns(s, taking, ["id"]), key_types={"id": pa.int64()}, struct=s.struct, field_confidence=True
    )
    assert parsed.table.column("_sixtyfour_status").to_pylist() == ["failed"]


def test_a_wide_answer_is_stored_and_read_back_whole() -> None:
    wide = spec(struct={f"f{i:03d}": f"Field {i}" for i in range(250)}, field_confidence=False)
    result = pa.table(
        {
            "id": [1, 2],
            **{f"f{i:03d}": [f"v{i}", None if i % 2 else f"w{i}"] for i in range(250)},
            "_sixtyfour_status": ["enriched", "enriched"],
            "__sent_hash": ["a", "b"],
        }
    )
    stored = answered_text(wide, result, "__sent_hash")
    taking = pa.table({"id": [7, 8], HASH_COLUMN: ["a", "b"], ANSWER: stored.column("answer")})
    back = with_answer_columns(wide, taking, ["id"])
    for i in range(250):
        assert back.column(f"f{i:03d}").to_pylist() == result.column(f"f{i:03d}").to_pylist()


# --- the SQL -----------------------------------------------------------------------------------------------------


def test_the_newest_answer_within_max_age_answers_new_rows_and_old_ones_are_pruned(tmp_path: Path) -> None:
    s = spec(struct={"email": "Email"}, field_confidence=False)
    adapter = DuckDBAdapter(parse_target_config({"type": "duckdb", "path": str(tmp_path / "w.duckdb")}))
    try:
        ledger = Ledger(adapter)
        ledger.ensure()
        with adapter.session() as session:
            session.execute("CREATE TABLE src (id INTEGER, name VARCHAR)")
            session.execute("INSERT INTO src VALUES (1, 'ada'), (2, 'ada'), (3, 'bob'), (4, 'cy'), (5, NULL)")
        stored = stored_answers_sql(adapter, ledger.answers, ledger.jobs, question="q", max_age_seconds=5 * 86400)
        sel = build_selection(adapter, s, source_sql="SELECT * FROM src", inputs=["name"],
                              target=TableRef("out", "main"), target_columns=None, spec_hash=s.spec_hash(),
                              group_questions=False, stored=stored)  # fmt: skip
        with adapter.session() as session:
            hashes = dict(session.fetchall(f"SELECT name, {adapter.row_hash_sql(['name'])} FROM src WHERE id < 5"))
        now = datetime.now(timezone.utc)
        stored = [  # (inputs, answer, job and task, merged, question)
            ("ada", '["old@x"]', "t-old", now - timedelta(days=3), "q"),
            ("ada", '["new@x"]', "t-new", now - timedelta(days=1), "q"),
            ("ada", None, "t-failed", now, "q"),  # a later failure takes nothing back
            ("bob", '["bob@x"]', "t-bob", now - timedelta(days=10), "q"),  # older than max_age
            ("cy", '["cy@x"]', "t-cy", now, "another"),
        ]
        with adapter.session() as session:
            session.insert(
                ledger.answers, [{"job_id": t, "input_hash": hashes[n], "answer": a} for n, a, t, _, _ in stored]
            )
            session.insert(ledger.jobs, [
                {"job_id": t, "run_id": "r", "sync_name": "s", "state": "merged", "task_id": t, "tier": "low",
                 "merged_at": at, "question": q}
                for _, _, t, at, q in stored
            ])  # fmt: skip
        with adapter.session() as session:
            every = session.fetchall(sel.sql)
            found = {r[0]: r for r in session.fetchall(matched_sql(adapter, sel))}
        assert [r[0] for r in every] == [1, 2, 3, 4, 5]  # every row, in key order, each once
        # the stored columns come last: the answer, the task that got it, its job, tier and time
        found = {k: (str(v[-5]), v[-4]) for k, v in found.items()}
        # ada's two keys take the newest enriched answer; bob's is too old; cy's answers another question
        assert {k: v[1] for k, v in found.items()} == {1: "t-new", 2: "t-new"}
        assert '"new@x"' in found[1][0]
        with adapter.session() as session:
            deleted = session.execute_count(prune_sql(adapter, ledger.answers, ledger.jobs, max_age_seconds=2 * 86400))
        assert deleted == 2  # the 3- and 10-day-old answers
    finally:
        adapter.close()


def test_the_lookup_by_hashes_picks_as_the_joined_selection_does() -> None:
    from sixtyfour_sync.engine.runner_reuse import _best_answers

    now = datetime.now(timezone.utc)
    answers = pa.table(
        {
            "input_hash": ["a", "a", "a", "b", "b"],
            "answer": ['["old"]', '["new"]', None, None, None],
            "job_id": ["j1", "j2", "j3", "j4", "j5"],
            "task_id": ["t1", "t2", "t3", "t4", "t5"],
            "tier": ["low"] * 5,
            "answered_at": [now - timedelta(days=2), now - timedelta(days=1), now, now - timedelta(hours=1), now],
        }
    )
    best = {r["input_hash"]: r["task_id"] for r in _best_answers(answers).to_pylist()}
    # a: the newest enriched answer, though a failure came after it; b: only failures, the newest of them
    assert best == {"a": "t2", "b": "t5"}


def test_the_lookup_sql_is_offered_where_a_json_list_parameter_is_read(tmp_path: Path) -> None:
    from sixtyfour_sync.engine.reuse.sql import lookup_sql

    adapter = DuckDBAdapter(parse_target_config({"type": "duckdb", "path": str(tmp_path / "w.duckdb")}))
    try:
        sql = lookup_sql(adapter, "SELECT 'x' AS input_hash UNION ALL SELECT 'y' UNION ALL SELECT 'z'")
        assert sql is not None
        with adapter.session() as session:
            assert sorted(r[0] for r in session.fetchall(sql, ['["x", "z", "w"]'])) == ["x", "z"]
    finally:
        adapter.close()
