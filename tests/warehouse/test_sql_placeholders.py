"""``?`` placeholders found by sqlglot's tokenizer: literals, comments and jsonb operators are left alone."""

from __future__ import annotations

import pytest

from sixtyfour_sync.warehouse.sql.placeholders import convert_qmark, count_qmarks


def test_quoted_text_and_comments_keep_their_question_marks() -> None:
    sql = "SELECT '?', \"a?\", x FROM t WHERE a = ? AND b LIKE '50%' -- what?\n AND c = ?"
    assert convert_qmark(sql, dialect="postgres") == (
        "SELECT '?', \"a?\", x FROM t WHERE a = %s AND b LIKE '50%%' -- what?\n AND c = %s"
    )


def test_postgres_dollar_quoting_and_escape_strings() -> None:
    sql = "SELECT $$a ? b$$, $tag$ it's ? $tag$, E'it\\'s ?', ? FROM t"
    assert convert_qmark(sql, dialect="postgres") == "SELECT $$a ? b$$, $tag$ it's ? $tag$, E'it\\'s ?', %s FROM t"


def test_postgres_standard_strings_end_at_a_backslash_quote() -> None:
    # With standard_conforming_strings (pinned on), 'a\' is a complete string: the ? after it is a parameter.
    assert count_qmarks("SELECT 'a\\', ?", "postgres") == 1
    # MySQL reads the same backslash as an escape, so there the ? is inside the string.
    assert count_qmarks("SELECT 'a\\', ?'", "mysql") == 0


def test_postgres_nested_comments() -> None:
    sql = "SELECT /* outer /* inner ? */ still ? */ ?"
    assert convert_qmark(sql, dialect="postgres") == "SELECT /* outer /* inner ? */ still ? */ %s"


def test_jsonb_operators_are_not_placeholders() -> None:
    sql = (
        "SELECT * FROM t WHERE tags ? 'vip' AND tags ?| array['a'] AND tags ?& array['b'] "
        "AND id = ? AND (data->'k') ? 'x'"
    )
    assert count_qmarks(sql, "postgres") == 1
    assert convert_qmark(sql, dialect="postgres").endswith("AND id = %s AND (data->'k') ? 'x'")
    # Where a value goes, ? is a placeholder, also where sqlglot reads it together with what follows.
    assert count_qmarks("SELECT ?, f(?), x IN (?, ?) FROM t WHERE a = ? LIMIT ?", "postgres") == 6
    assert convert_qmark("SELECT ?::int, ?||'x', a ?| b", dialect="postgres") == "SELECT %s::int, %s||'x', a ?| b"
    assert convert_qmark("SELECT ?::int", dialect="duckdb") == "SELECT %s::int"


def test_mysql_backticks_hash_comments_and_backslash_escapes() -> None:
    sql = "SELECT 'a\\'?', `b?`, \"c?\" # comment ?\n , ? FROM t"
    assert convert_qmark(sql, dialect="mysql") == "SELECT 'a\\'?', `b?`, \"c?\" # comment ?\n , %s FROM t"


def test_snowflake_dollar_strings() -> None:
    assert count_qmarks("SELECT $$ a ? $$, '?', ?", "snowflake") == 1


@pytest.mark.parametrize(
    ("style", "expected"),
    [(":p{i}", "SELECT :p0, '?', :p1"), ("${n}", "SELECT $1, '?', $2"), (":{n}", "SELECT :1, '?', :2")],
)
def test_numbered_styles(style: str, expected: str) -> None:
    assert convert_qmark("SELECT ?, '?', ?", style, escape_percent=False) == expected


def test_percent_is_doubled_only_for_pyformat() -> None:
    assert convert_qmark("SELECT '5%', ?", "%s") == "SELECT '5%%', %s"
    assert convert_qmark("SELECT '5%', ?", "?", escape_percent=False) == "SELECT '5%', ?"
    assert convert_qmark("SELECT 1") == "SELECT 1"


def test_unreadable_sql_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="cannot read this SQL"):
        count_qmarks("SELECT 'unterminated ?", "postgres")
