"""Identifier validation, folding and quoting: the one place a name from YAML becomes SQL.

The rule, the same on every backend:

1. Every identifier that reaches SQL is validated against a conservative pattern - ASCII letters,
   digits and ``_`` (and ``$`` where the dialect allows it in plain names), not starting with a digit,
   at most the dialect's maximum length. Quotes, semicolons, comment markers, whitespace, control
   characters and any non-ASCII character (confusables) raise :class:`UnsafeIdentifierError` naming
   the offending name and where it came from.
2. Every identifier is then *always* quoted.
3. Because quoting makes names case-sensitive on some warehouses, a name is first given the spelling the
   warehouse stores (:meth:`Names.normalize`), by the :class:`~sixtyfour_sync.warehouse.types.Quoting`
   policy: a part that dbt would not quote folds as an unquoted name would (Snowflake: ``dbt_John`` and
   ``firstName`` are ``DBT_JOHN`` and ``FIRSTNAME``, as dbt-snowflake creates them); a quoted part keeps
   its spelling. With no policy (``None``) the SQLAlchemy convention applies: an all-lower-case name folds,
   any other is exact. PostgreSQL names are used as written (dbt-postgres quotes); DuckDB, MySQL and SQLite
   compare names case-insensitively anyway.
4. Existing columns are matched with :meth:`Names.find_column`: exactly (after normalisation) first,
   then case-insensitively where the dialect is case-insensitive or the match is unique.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sixtyfour_sync.errors import UnsafeIdentifierError
from sixtyfour_sync.warehouse.dialect import Dialect
from sixtyfour_sync.warehouse.types import NameKind, Quoting, TableRef

__all__ = ["Names", "adapt_value", "strip_sql"]

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLAIN_DOLLAR = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_HINT = (
    "use letters, digits and '_' only, not starting with a digit; rename the column/table or select it under an alias"
)


@dataclass(frozen=True)
class Names:
    """A dialect's naming rules, bound to a quoting policy and the default schema (pure)."""

    dialect: Dialect
    quoting: Quoting | None = None
    default_schema: str | None = None

    @property
    def policy(self) -> Quoting:
        """The quoting policy in force: the given one, the dialect's dbt default where it says nothing."""
        default = self.dialect.default_quoting
        return default if self.quoting is None else self.quoting.over(default)

    # ------------------------------------------------------------------------------ validation
    def validate(self, name: str, *, what: str) -> str:
        """Return ``name`` when it is a safe identifier, else raise :class:`UnsafeIdentifierError`."""
        d = self.dialect
        if not isinstance(name, str) or not name:
            raise UnsafeIdentifierError(f"{what}: an empty name is not a valid identifier")
        pattern = _PLAIN_DOLLAR if d.allows_dollar else _PLAIN
        if not pattern.fullmatch(name):
            bad = next((c for c in name if not (c.isascii() and (c.isalnum() or c == "_"))), name[0])
            raise UnsafeIdentifierError(
                f"{what}: {name!r} is not a safe identifier for {d.name} (offending character {bad!r})", hint=_HINT
            )
        if len(name) > d.max_identifier_length:
            raise UnsafeIdentifierError(
                f"{what}: {name!r} is {len(name)} characters; {d.name} allows at most {d.max_identifier_length}",
                hint="use a shorter name (for struct fields, a shorter target.prefix or field name)",
            )
        return name

    # ------------------------------------------------------------------------------ folding
    def _fold(self, name: str) -> str:
        case = self.dialect.identifier_case
        return name.upper() if case == "upper" else name.lower() if case == "lower" else name

    def normalize(self, name: str, kind: NameKind = "column") -> str:
        """The stored spelling of a name we write (see the module docstring)."""
        if self.dialect.identifier_case == "preserve":
            return name
        quoted = self.policy.of(kind)
        if quoted is True:
            return name
        if quoted is False:
            return self._fold(name)
        return self._fold(name) if name == name.lower() else name

    def denormalize(self, name: str) -> str:
        """The spelling a caller used for a name read back (``LEAD_ID`` -> ``lead_id`` on Snowflake)."""
        if self.dialect.identifier_case == "upper" and name == name.upper():
            return name.lower()
        return name

    # ------------------------------------------------------------------------------ quoting
    def quote(self, name: str, *, what: str = "identifier", kind: NameKind = "column") -> str:
        """Validate, normalise and quote one identifier (always quoted)."""
        self.validate(name, what=what)
        start = self.dialect.quote_char
        end = self.dialect.quote_end or start
        return start + self.normalize(name, kind).replace(end, end + end) + end

    def schema_of(self, table: TableRef) -> str | None:
        """The table's schema, or the default one."""
        return table.schema if table.schema is not None else self.default_schema

    def table(self, table: TableRef) -> str:
        """The qualified, quoted name of ``table`` (the default schema when it names none)."""
        schema = self.schema_of(table)
        parts = []
        if table.database:
            parts.append(self.quote(table.database, what=f"database of table {table}", kind="database"))
        if schema:
            parts.append(self.quote(schema, what=f"schema of table {table}", kind="schema"))
        parts.append(self.quote(table.name, what="table name", kind="identifier"))
        return ".".join(parts)

    def columns(self, names: Iterable[str], *, what: str = "column", prefix: str = "") -> str:
        """``prefix."a", prefix."b"`` (comma-separated)."""
        return ", ".join(prefix + self.quote(n, what=what) for n in names)

    def find_column(self, columns: Iterable[str], name: str) -> str | None:
        """The stored name in ``columns`` that ``name`` refers to, or None."""
        names = list(columns)
        wanted = self.normalize(name)
        if wanted in names:
            return wanted
        if name in names:
            return name
        folded = [c for c in names if c.lower() == name.lower()]
        if len(folded) == 1 or (folded and self.dialect.case_insensitive):
            return folded[0]
        return None

    def order_term(self, term: str, *, what: str) -> str:
        """``name`` or ``name DESC``/``name ASC`` with the name quoted."""
        parts = term.split()
        if len(parts) == 2 and parts[1].upper() in ("ASC", "DESC"):
            return f"{self.quote(parts[0], what=what)} {parts[1].upper()}"
        return self.quote(term, what=what)

    def alias(self, alias: str) -> str:
        """How a derived table is aliased (``AS x``; some dialects reject ``AS``)."""
        return f"AS {alias}" if self.dialect.subquery_as else alias

    def key_join(self, key: Sequence[str], left: str, right: str) -> str:
        """``left."k1" = right."k1" AND ...``."""
        return " AND ".join(
            f"{left}.{self.quote(k, what='key column')} = {right}.{self.quote(k, what='key column')}" for k in key
        )


#: What makes the end of a query a question for the tokenizer: semicolons, comments (``--``, ``#``, ``/*``,
#: Snowflake's ``//``) and dollar-quoting; quotes too, unless each kind comes in pairs.
_NEEDS_TOKENS = (";", "--", "#", "/*", "//", "$")
_QUOTES = ("'", '"', "`")


def strip_sql(sql: str, dialect: str = "") -> str:
    """User SQL ready to nest in parentheses: nothing after its last token (no trailing semicolons, comments
    or whitespace: a trailing ``-- comment`` would swallow the closing parenthesis).

    Tokens are read with sqlglot's tokenizer for the warehouse's ``dialect`` (its strings, quoted names and
    comments: MySQL's ``#``, PostgreSQL's ``$$``); SQL the tokenizer cannot read is cut by the plain rule and
    ends with a line break, so the parenthesis still closes a trailing line comment.
    """
    text = sql.strip()
    if text and not any(m in text for m in _NEEDS_TOKENS) and all(text.count(q) % 2 == 0 for q in _QUOTES):
        return text  # no semicolon or comment, quotes closed: nothing can follow the last token
    # sqlglot (about 40 MB) loads here, for SQL with any of those: a model that names a table never needs it.
    from sqlglot import TokenType
    from sqlglot.errors import TokenError

    from sixtyfour_sync.warehouse.sql.placeholders import sqlglot_dialect

    try:
        tokens = [t for t in sqlglot_dialect(dialect).tokenize(text) if t.token_type != TokenType.SEMICOLON]
    except (TokenError, ValueError):
        tokens = None
    if tokens is not None:
        if not tokens:
            raise ValueError("empty SQL")
        return text[: tokens[-1].end + 1]
    while text.endswith(";"):
        text = text[:-1].rstrip()
    if not text:
        raise ValueError("empty SQL")
    return text + "\n"


def adapt_value(value: Any) -> Any:
    """A Python value as a driver should receive it (dicts and lists as JSON text, enums by value)."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    if isinstance(value, Enum):
        return value.value
    return value
