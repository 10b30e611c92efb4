"""``?`` placeholders in the drivers' styles, found by sqlglot's tokenizer for the warehouse's dialect.

Every statement the warehouse layer runs is written with ``?`` placeholders; a driver with another
paramstyle gets them rewritten here. Only real placeholders are touched: sqlglot's tokenizer knows each
dialect's strings and comments (PostgreSQL ``$$``/``$tag$`` quoting, ``E'...'`` escapes, standard strings in
which a backslash is a character, nested block comments; MySQL backslash escapes, backticks and ``#``
comments; Snowflake ``$$`` strings). PostgreSQL's jsonb operators ``?``, ``?|`` and ``?&`` are not
placeholders: right after an operand (a name, a literal, a closing bracket) a ``?`` is an operator; a
placeholder always stands where an operand goes (``x = ?``, ``(?, ?)``, ``?::int``).
"""

from __future__ import annotations

from functools import lru_cache

from sqlglot import Token, TokenType
from sqlglot.dialects.dialect import Dialect as SqlglotDialect
from sqlglot.errors import TokenError

__all__ = ["convert_qmark", "count_qmarks", "placeholder_positions", "sqlglot_dialect"]

#: Tokens after which a ``?`` is PostgreSQL's jsonb key-exists operator, not a placeholder.
_OPERAND_END = frozenset(
    {
        TokenType.VAR,
        TokenType.IDENTIFIER,
        TokenType.STRING,
        TokenType.NUMBER,
        TokenType.R_PAREN,
        TokenType.R_BRACKET,
        TokenType.HEREDOC_STRING,
        TokenType.NATIONAL_STRING,
        TokenType.BYTE_STRING,
        TokenType.BIT_STRING,
        TokenType.HEX_STRING,
        TokenType.RAW_STRING,
        TokenType.UNICODE_STRING,
        TokenType.NULL,
        TokenType.TRUE,
        TokenType.FALSE,
    }
)


#: Tokens that may start with ? but hold no placeholder (quoted text and names).
_NOT_PLACEHOLDERS = _OPERAND_END - {TokenType.R_PAREN, TokenType.R_BRACKET}


@lru_cache(maxsize=16)
def sqlglot_dialect(name: str) -> SqlglotDialect:
    """sqlglot's dialect of this name ("" for its default)."""
    return SqlglotDialect.get_or_raise(name or None)


@lru_cache(maxsize=512)
def placeholder_positions(sql: str, dialect: str = "") -> tuple[int, ...]:
    """Offsets of the ``?`` placeholders in ``sql`` (literals, quoted names and comments excluded)."""
    if "?" not in sql:
        return ()
    try:
        tokens: list[Token] = sqlglot_dialect(dialect).tokenize(sql)
    except TokenError as exc:
        raise ValueError(f"cannot read this SQL to find its ? placeholders: {exc}") from None
    jsonb_operator = dialect == "postgres"
    out: list[int] = []
    previous: Token | None = None
    for tok in tokens:
        # sqlglot folds a ? into the operator after it in some spellings (`?::int`, `?||`): a token that
        # starts with ? is a placeholder wherever an operand goes.
        operator = jsonb_operator and previous is not None and previous.token_type in _OPERAND_END
        if tok.text.startswith("?") and not operator and tok.token_type not in _NOT_PLACEHOLDERS:
            out.append(tok.start)
        previous = tok
    return tuple(out)


def count_qmarks(sql: str, dialect: str = "") -> int:
    """The number of ``?`` placeholders."""
    return len(placeholder_positions(sql, dialect))


def convert_qmark(sql: str, placeholder: str = "%s", *, escape_percent: bool = True, dialect: str = "") -> str:
    """``sql`` with each ``?`` placeholder replaced by ``placeholder``.

    ``placeholder`` may contain ``{n}`` for the 1-based position (``$1``, ``:1``) or ``{i}`` for the
    0-based one (``:p0``). With ``escape_percent`` every ``%`` elsewhere is doubled, as pyformat drivers
    (psycopg, pymysql) require once parameters are passed.
    """
    positions = placeholder_positions(sql, dialect)
    numbered = "{" in placeholder
    out: list[str] = []
    last = 0
    for i, pos in enumerate(positions):
        piece = sql[last:pos]
        out.append(piece.replace("%", "%%") if escape_percent else piece)
        out.append(placeholder.format(n=i + 1, i=i) if numbered else placeholder)
        last = pos + 1
    rest = sql[last:]
    out.append(rest.replace("%", "%%") if escape_percent else rest)
    return "".join(out)
